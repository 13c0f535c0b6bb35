"""side-effects' judgment on fixture observations (the shape lab/probe/direct/host.py returns)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lab.checks.base import UNKNOWN_NAME
from lab.checks.side_effects import judge, plan, snippet
from lab.module import User
from lab.probe.direct.host import parse_line

LIB = "/usr/lib/x86_64-linux-gnu/libnss_x.so.2"
SPAWN_CLEAN = {"ignored": ["SIG32", "SIG33"], "blocked": [], "wait": "ok"}
SYSLOG_CLEAN = {"ident": "python3", "facility": 1, "line": "<14>Dec  1 12:00:00 python3: m-1"}
CALL = {"fn": "getpwnam_r", "db": "passwd", "key": "pyama"}


def observed(*changes: dict, calls: int = 3) -> dict:
    entry = {"entry": "getpwnam_r('pyama')", "fn": "getpwnam_r", "call": CALL}
    return {
        "library": LIB,
        "calls": [{"entry": "getpwnam_r('pyama')", "fn": "getpwnam_r", "status": "SUCCESS", "errno": 0}]
        * calls,
        "changes": [{**entry, **c} for c in changes],
        "not_called": [],
        "unmeasured": {},
        "control": {"spawn": SPAWN_CLEAN, "syslog": SYSLOG_CLEAN},
        "seconds": 0.05,
    }


def test_nothing_changed_passes_with_the_figures():
    r = judge(observed(), "x")
    assert r.status == "pass" and r.reason.startswith("3 calls of 1 entry points")


def test_stdout_fails_with_the_bytes_and_the_entry_point():
    r = judge(observed({"kind": "stdout", "bytes": 27, "sample": "x debug: lookup pyama\n"}), "x")
    assert r.status == "fail" and "27 bytes written to the caller's stdout by getpwnam_r('pyama')" in r.reason
    assert "scp" in r.impact and r.reproduce.endswith("| od -c | head -3")
    compile(r.reproduce.split('"')[1], "reproduce", "exec")  # the one-liner is Python


def test_stderr_alone_is_a_warn():
    r = judge(observed({"kind": "stderr", "bytes": 5, "sample": "oops\n"}), "x")
    assert r.status == "warn" and "stderr" in r.reason


def test_stdout_fails_before_a_stderr_warn():
    r = judge(
        observed(
            {"kind": "stderr", "bytes": 5, "sample": "e"}, {"kind": "stdout", "bytes": 3, "sample": "o"}
        ),
        "x",
    )
    assert r.status == "fail" and "stdout" in r.reason and "stderr" in r.reason


SIGPIPE = {"kind": "signal", "signal": "SIGPIPE", "before": "SIG_DFL", "after": "SIG_IGN"}


def test_sigpipe_ignored_fails_when_an_execd_child_inherits_it():
    child = {"ignored": ["SIGPIPE", "SIG32", "SIG33"], "blocked": [], "wait": "ok"}
    r = judge(observed({**SIGPIPE, "child": child}), "x")
    assert r.status == "fail" and "SIGPIPE SIG_DFL -> SIG_IGN" in r.reason and "child" in r.reason
    assert "SIGPIPE not ignored" in r.control and "yes | head" in r.reproduce


def test_sigpipe_ignored_warns_when_the_child_was_not_shown_to_inherit_it():
    assert judge(observed({**SIGPIPE, "child": SPAWN_CLEAN}), "x").status == "warn"
    ignored_before = {"control": {"spawn": {"ignored": ["SIGPIPE"], "blocked": [], "wait": "ok"}}}
    value = (
        observed({**SIGPIPE, "child": {"ignored": ["SIGPIPE"], "blocked": [], "wait": "ok"}}) | ignored_before
    )
    assert judge(value, "x").status == "warn"  # the child ignored it before any call too


def test_blocked_signals_fail_only_when_inherited():
    mask = {"kind": "mask", "blocked": ["SIGTERM", "SIGCHLD"], "unblocked": []}
    shown = judge(
        observed({**mask, "child": {"ignored": [], "blocked": ["SIGTERM", "SIGCHLD"], "wait": "ok"}}), "x"
    )
    assert shown.status == "fail" and "SIGTERM, SIGCHLD" in shown.reason and "execvp('cat'" in shown.reproduce
    assert judge(observed({**mask, "child": SPAWN_CLEAN}), "x").status == "warn"


def test_a_sigchld_handler_fails_when_waitpid_got_echild():
    change = {"kind": "signal", "signal": "SIGCHLD", "before": "SIG_DFL", "after": "handler 0x7f00"}
    reaped = judge(observed({**change, "child": {**SPAWN_CLEAN, "wait": "ECHILD"}}), "x")
    assert reaped.status == "fail" and "ECHILD" in reaped.reason
    assert judge(observed({**change, "child": SPAWN_CLEAN}), "x").status == "warn"


def test_another_signal_handler_is_a_warn_naming_the_signal():
    r = judge(
        observed({"kind": "signal", "signal": "SIGALRM", "before": "SIG_DFL", "after": "handler 0x1"}), "x"
    )
    assert r.status == "warn" and "SIGALRM SIG_DFL -> handler 0x1" in r.reason


def test_a_changed_syslog_ident_fails_with_both_lines():
    after = {"ident": "clabmod[PID]", "facility": 4, "line": "<38>Dec  1 12:00:00 clabmod[9]: m-2"}
    r = judge(observed({"kind": "syslog", "before": SYSLOG_CLEAN, "after": after}), "x")
    assert r.status == "fail" and "'clabmod[PID]' (auth), not 'python3' (user)" in r.reason
    assert "python3: m-1" in r.control


def test_errno_after_success_is_a_warn_that_says_whether_glibc_passes_it_on():
    point = judge(observed({"kind": "errno", "errno": 2, "name": "ENOENT"}), "x")
    assert point.status == "warn" and "errno ENOENT (2)" in point.reason and "set errno to 0" in point.impact
    listing = {"kind": "errno", "errno": 2, "name": "ENOENT", "fn": "getpwent_r", "entry": "getpwent_r()"}
    got = judge(observed(listing), "x")
    assert got.status == "warn" and "hand errno to the caller as the module left it" in got.impact
    setent = {**listing, "fn": "setpwent", "entry": "setpwent(1)"}
    assert "as the module left it" in judge(observed(setent), "x").impact


@pytest.mark.parametrize(
    "change, text",
    [
        ({"kind": "umask", "before": "0022", "after": "0077"}, "umask '0022' -> '0077'"),
        ({"kind": "cwd", "before": "/", "after": "/etc"}, "cwd '/' -> '/etc'"),
        (
            {"kind": "env", "name": "X_B", "before": None, "after": "1"},
            "environment variable X_B unset -> '1'",
        ),
        ({"kind": "locale", "before": "C", "after": "C.UTF-8"}, "locale 'C' -> 'C.UTF-8'"),
        (
            {"kind": "rlimit", "name": "RLIMIT_NOFILE", "before": [1024, 4096], "after": [64, 4096]},
            "RLIMIT_NOFILE",
        ),
        (
            {"kind": "fd", "fd": 0, "before": "/dev/null", "after": None},
            "1 of the caller's descriptors closed after getpwnam_r('pyama'): 0 ('/dev/null')",
        ),
        ({"kind": "process", "pid": 42, "process": "sleep 9 (state S)"}, "pid 42 sleep 9"),
    ],
)
def test_other_changes_warn_with_before_and_after(change, text):
    r = judge(observed(change), "x")
    assert r.status == "warn" and text in r.reason, r.reason
    assert r.impact and r.reproduce
    compile(r.reproduce.split('"')[1], "reproduce", "exec")


def test_the_same_change_in_many_entry_points_is_one_finding():
    value = observed({"kind": "umask", "before": "0022", "after": "0077"})
    value["changes"] += [{**value["changes"][0], "fn": "getgrgid_r", "entry": "getgrgid_r(2000)"}]
    r = judge(value, "x")
    assert "2 calls of getpwnam_r, getgrgid_r" in r.reason and len(r.details["changes"]) == 2


def test_the_reproducers_are_python_for_every_entry_point():
    for call in (
        CALL,
        {"fn": "getpwuid_r", "db": "passwd", "key": 10301},
        {"fn": "setgrent", "db": "group"},
        {"fn": "getgrent_r", "db": "group"},
        {"fn": "endspent", "db": "shadow"},
        {"fn": "initgroups_dyn", "key": "pyama", "gid": 2000},
        {"fn": "getpwnam_r", "db": "passwd", "key": "o'brien"},
    ):
        code = snippet(LIB, "x", call)
        compile(code, "snippet", "exec")
        assert f"_nss_x_{call['fn']}" in code


def test_syslog_lines_parse_to_ident_and_facility():
    got = parse_line("<38>Dec  1 12:00:00 clabmod[4242]: MARK", "MARK")
    assert got["ident"] == "clabmod[PID]" and got["facility"] == 4
    assert parse_line("<14>Dec 11 01:02:03 python3: MARK", "MARK")["ident"] == "python3"


def test_plan_calls_every_exported_entry_point_once_first():
    present = {
        "getpwnam_r",
        "getpwuid_r",
        "getgrgid_r",
        "setpwent",
        "getpwent_r",
        "endpwent",
        "initgroups_dyn",
    }
    module = SimpleNamespace(name="x", databases=["passwd", "group", "initgroups"])
    user = User(name="pyama", uid=10301, gid=2000, gecos="", home="/", shell="/bin/sh")
    ctx = SimpleNamespace(
        module=module,
        elf=SimpleNamespace(entry_points=lambda _: present),
        queries=lambda: [["passwd", "name", "pyama"], ["passwd", "id", 10301], ["passwd", "name", "taro"]],
        enumerable=lambda: ["passwd"],
        user=user,
    )
    calls = plan(ctx)
    first = [c["fn"] for c in calls if c.get("first")]
    assert sorted(first) == sorted(present) and len(first) == len(present)
    assert first.index("setpwent") < first.index("getpwent_r") < first.index("endpwent")
    rest = [c for c in calls if not c.get("first")]
    assert {"fn": "getpwnam_r", "db": "passwd", "key": UNKNOWN_NAME} in rest
    assert {"fn": "getpwnam_r", "db": "passwd", "key": "taro"} in rest
    assert next(c for c in calls if c["fn"] == "initgroups_dyn")["key"] == "pyama"


def test_closed_descriptors_are_one_finding_listing_them():
    closed = [{"kind": "fd", "fd": n, "before": f"/tmp/f{n}", "after": None} for n in (3, 4, 5, 6, 900)]
    r = judge(observed(*closed, {"kind": "fd", "fd": 1, "before": "/tmp/out", "after": "/dev/null"}), "x")
    assert r.status == "warn"
    assert "5 of the caller's descriptors closed after" in r.reason and "3 ('/tmp/f3')" in r.reason
    assert "(+1 more)" in r.reason and "1 of the caller's descriptors pointing elsewhere" in r.reason


def test_the_mask_impact_names_the_signals_blocked():
    mask = {"kind": "mask", "blocked": ["SIGHUP"], "unblocked": []}
    got = judge(observed({**mask, "child": {"ignored": [], "blocked": ["SIGHUP"], "wait": "ok"}}), "x")
    assert got.status == "fail" and "SIGHUP" in got.impact and "SIGTERM" not in got.impact
    assert got.reproduce.endswith("| grep ^SigBlk")
