"""Turning recorded probe answers into verdicts, without running anything."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from lab.checks.base import describe_hang, judge, wrong_answer
from lab.module import Group, Module, User
from lab.report.machine import as_dict, write_junit
from lab.report.table import render
from lab.results import CheckResult
from lab.runner import ModuleReport

# Recorded from golab: a forked child of a process that had loaded the module.
GO_CHILD_HANG = {
    "id": "after-use getpwnam('pyama')",
    "outcome": "hang",
    "seconds": 0.61,
    "hang": {
        "stuck_seconds": 0.536,
        "outside_wait": False,
        "processes": [
            {
                "pid": 3092,
                "cmdline": "python3 probe worker",
                "threads": 1,
                "nss_modules": ["/usr/lib/x86_64-linux-gnu/libnss_golab.so.2"],
                "tasks": [
                    {
                        "tid": 3092,
                        "comm": "python3",
                        "state": "S",
                        "wait": "self",
                        "call": "futex",
                        "wchan": "futex_do_wait",
                        "syscall": "202 0xc000034148 0x80 0x0 0x0",
                    }
                ],
            }
        ],
    },
    "events": [
        {"ev": "begin", "where": "parent", "fn": "getpwnam", "arg": "pyama"},
        {"ev": "call", "where": "parent", "fn": "getpwnam", "arg": "pyama", "ok": True},
        {"ev": "forked", "pid": 3092},
        {"ev": "begin", "where": "child", "fn": "getpwnam", "arg": "pyama"},
    ],
}
SETPRIV_ABORT = {
    "id": "setpriv",
    "outcome": "exited",
    "code": -6,
    "seconds": 0.05,
    "stderr": "",
    "events": [{"ev": "begin", "where": "parent", "fn": "drop", "arg": None}],
}
RETURNED = {"id": "ok", "outcome": "exited", "code": 0, "events": [], "seconds": 0.01}

MODULE = Module(
    name="m",
    library=Path("libnss_m.so.2"),
    databases=["passwd", "group"],
    users=[User("pyama", 10301, 2000, "", "/home/pyama", "/bin/bash")],
    groups=[Group("pepabo", 2000, ("pyama", "taro"))],
    manifest=Path("module.toml"),
)


def test_hang_names_the_call_the_thread_and_the_module():
    outcome = judge(GO_CHILD_HANG, "golab")
    assert outcome.status == "hang"
    assert "getpwnam('pyama') in the child never returned" in outcome.reason
    assert "futex (self)" in outcome.reason and "libnss_golab.so.2" in outcome.reason
    assert describe_hang(GO_CHILD_HANG["hang"]).startswith("1 thread(s) stuck in futex (self)")
    # /proc alone proves no cause: without a backtrace the diagnosis says so, and claims nothing
    assert outcome.cause == "unknown" and "no backtrace" in outcome.evidence["explanation"]


def test_abort_is_a_crash_with_the_signal_and_the_call():
    outcome = judge(SETPRIV_ABORT, "golab", "setpriv order")
    assert outcome.status == "crash"
    assert "killed by SIGABRT during drop() in the parent" in outcome.reason


def test_timeout_is_a_hang_that_says_it_was_not_proven():
    outcome = judge({**RETURNED, "outcome": "timeout", "timeout": 20.0}, "golab")
    assert outcome.status == "hang" and "not provably stuck" in outcome.reason


def test_returned_step_has_no_bad_outcome():
    assert judge(RETURNED, "golab") is None
    assert (
        judge({**RETURNED, "code": 1, "stderr": "x"}, "golab").evidence is None
    )  # an error is not diagnosed
    assert judge({**RETURNED, "code": 1, "stderr": "Traceback\nValueError: x"}, "golab").status == "error"


def test_answers_are_compared_with_the_manifest():
    good = {
        "fn": "getpwnam",
        "arg": "pyama",
        "ok": True,
        "value": {
            "name": "pyama",
            "uid": 10301,
            "gid": 2000,
            "gecos": "",
            "home": "/home/pyama",
            "shell": "/bin/bash",
        },
    }
    assert wrong_answer(MODULE, good) is None
    bad_uid = {**good, "value": {**good["value"], "uid": 1}}
    assert "the manifest says" in wrong_answer(MODULE, bad_uid)
    members_any_order = {
        "fn": "getgrgid",
        "arg": 2000,
        "ok": True,
        "value": {"name": "pepabo", "gid": 2000, "members": ["taro", "pyama"]},
    }
    assert wrong_answer(MODULE, members_any_order) is None
    missing = {"fn": "getpwall", "ok": True, "value": [{"name": "root"}]}
    assert "missing ['pyama']" in wrong_answer(MODULE, missing)
    not_found = {"fn": "getpwnam", "arg": "pyama", "ok": False, "notfound": True, "error": "KeyError"}
    assert "failed" in wrong_answer(MODULE, not_found)
    unknown = {"fn": "getpwnam", "arg": "nsslab-no-such-entry", "ok": False, "notfound": True}
    assert wrong_answer(MODULE, unknown) is None


def report() -> ModuleReport:
    r = ModuleReport(name="golab", library="/x/libnss_golab.so.2", target="sandbox", seconds=6.3)
    r.checks = [
        CheckResult("pass", "loaded", id="load", seconds=0.1),
        CheckResult("skip", "not Go", id="go-runtime"),
        CheckResult("hang", "child hung", {"steps": {}}, id="fork-child", seconds=3.3),
    ]
    return r


def test_verdict_is_the_worst_status_and_skips_do_not_fail():
    r = report()
    assert r.verdict == "hang" and not r.passed
    r.checks = r.checks[:2]
    assert r.verdict == "pass" and r.passed
    assert ModuleReport("x", "y", "sandbox", error="not an ELF file").verdict == "error"


def test_json_keeps_the_documented_keys():
    doc = json.loads(json.dumps(as_dict([report()])))
    m = doc["modules"][0]
    assert {"name", "library", "verdict", "checks"} <= set(m)
    assert {"id", "status", "reason", "seconds"} <= set(m["checks"][0])
    assert m["verdict"] == "hang"


def test_junit_marks_failures_and_skips(tmp_path):
    write_junit([report()], tmp_path / "j.xml")
    cases = ET.parse(tmp_path / "j.xml").getroot().findall(".//testcase")
    assert [c.get("name") for c in cases] == ["load", "go-runtime", "fork-child"]
    assert cases[1].find("skipped") is not None and cases[2].find("failure").get("type") == "hang"


def test_table_shows_every_check_and_the_verdict():
    text = render(report())
    assert "HANG" in text and "fork-child" in text and "child hung" in text


def test_expect_mode_requires_listed_statuses_and_passes_elsewhere():
    r = report()
    r.expect = {"fork-child": "hang"}
    assert r.unexpected() == []
    r.expect = {"fork-child": "crash", "setxid": "crash"}
    assert r.unexpected() == ["fork-child hang, expected crash", "setxid did not run, expected crash"]
    r.expect = {}
    assert r.unexpected() == ["fork-child hang, expected pass"]
