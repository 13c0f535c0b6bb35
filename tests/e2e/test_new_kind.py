"""A kind written without reading the checks runs every check: tests/newkind.py."""

from __future__ import annotations

import pytest

from lab import targets
from lab.runner import run_module
from tests import newkind
from tests.conftest import MODULES

pytestmark = pytest.mark.sandbox


def test_every_check_runs_through_a_new_kind(monkeypatch):
    monkeypatch.setitem(targets.KINDS, "echo", "tests.newkind")
    try:
        report = run_module(MODULES / "clab", "echo://here")
    finally:
        targets.close_all()
    assert report.target == "echo://here" and report.error is None
    assert report.verdict == "pass", [(c.id, c.status, c.reason) for c in report.checks if c.status != "pass"]
    assert len(report.checks) == 22
    assert newkind.Echo.commands > 50  # every probe step, shell and query went through the new transport
