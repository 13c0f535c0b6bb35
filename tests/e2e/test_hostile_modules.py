"""A module must not be able to break the lab: it writes to the caller's stdout or closes
the caller's descriptors, and the lab still judges every check, naming what it did."""

from __future__ import annotations

import pytest

from tests.conftest import checks

pytestmark = pytest.mark.sandbox


def test_debug_output_on_stdout_is_a_finding_not_a_broken_lab(lab_run):
    report = lab_run("stdoutlab")
    c = checks(report)
    assert [x.id for x in report.checks if x.status == "error"] == []
    assert c["load"].status == "fail" and "clab debug: lookup pyama" in c["load"].details["stdout"]
    assert c["load"].details["mapped"]  # it loaded: the other checks ran
    assert c["lookup"].status == "fail" and "clab debug" in c["lookup"].details["output"]
    for check in ("erange", "enumeration", "consistency", "threads", "fork-child", "tab-completion"):
        assert c[check].status == "pass", (check, c[check].reason)  # the direct calls are unaffected


def test_a_module_that_closes_the_callers_descriptors_is_named(lab_run):
    report = lab_run("closefdlab")
    c = checks(report)
    assert [x.id for x in report.checks if x.status in ("error", "crash")] == []
    assert c["load"].status == "fail" and c["load"].details["descriptor"] == "closed"
    for check in ("erange", "enumeration", "consistency", "setxid", "fork-child"):
        assert c[check].status == "pass", (check, c[check].reason)  # the channel was reopened each time
