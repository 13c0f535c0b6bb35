"""`nsslab checks` lists every check with its docstring and every cause the lab can name,
from their one source (ORDER/REGISTRY, CAUSES, OBSERVED)."""

from __future__ import annotations

import inspect

from lab.checks import ORDER, REGISTRY
from lab.cli import main
from lab.forensics import CAUSES, OBSERVED


def test_every_check_and_cause_is_listed(capsys):
    assert main(["checks"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for check_id in ORDER:
        assert check_id in lines, check_id
        first = inspect.getdoc(REGISTRY[check_id]).splitlines()[0]
        assert f"    {first}" in lines, check_id
    for cause in [*CAUSES, *OBSERVED]:
        assert any(line.split()[:1] == [cause] for line in lines), cause


def test_every_check_names_the_bug_it_catches():
    for check_id, fn in REGISTRY.items():
        assert len(inspect.getdoc(fn) or "") > 200, f"{check_id}: a docstring naming the real bug"
