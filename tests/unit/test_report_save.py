"""Report files: what a module put into a reason is written whatever it holds, and a path
that cannot be written is one line, before the run when it can be known then."""

from __future__ import annotations

import json

import pytest

from lab.errors import LabError
from lab.report import save, writable
from lab.report.machine import write_json, write_junit
from lab.results import CheckResult, ModuleReport


def test_a_reason_with_a_lone_surrogate_is_written_escaped(tmp_path):
    name = b"caf\xe9".decode("utf-8", "surrogateescape")  # a name Python decoded from bytes
    broke = CheckResult("fail", f"{name} broke", id="lookup")
    report = ModuleReport("x", "/x/libnss_x.so.2", "sandbox", checks=[broke])
    write_junit([report], tmp_path / "j.xml")
    assert "caf\\udce9 broke" in (tmp_path / "j.xml").read_text(encoding="utf-8")
    write_json([report], tmp_path / "j.json")
    [module] = json.loads((tmp_path / "j.json").read_text())["modules"]
    assert module["checks"][0]["reason"] == f"{name} broke"


def test_an_unwritable_path_is_one_line(tmp_path):
    with pytest.raises(LabError, match="no such directory"):
        writable(tmp_path / "gone" / "r.html")
    writable(tmp_path / "r.html", None)  # fine
    (tmp_path / "ro").mkdir()
    with pytest.raises(LabError, match=r"ro/r.html: Is a directory|ro: Is a directory"):
        save(tmp_path / "ro", "x")
