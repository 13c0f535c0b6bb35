"""side-effects in the sandbox: each planted module is named for what it did to its caller,
read from details["changes"]; clab passes; the check leaves no process, mount or file."""

from __future__ import annotations

import glob
import subprocess

import pytest

from lab.runner import run_module
from tests.conftest import MODULES, checks

pytestmark = pytest.mark.sandbox
POINT = ("getpwnam_r", "getpwuid_r", "getgrnam_r", "getgrgid_r", "getspnam_r")


@pytest.fixture(scope="module")
def side_effects():
    """side-effects alone (with its gates) per module: a second each, not a whole run."""
    cache: dict = {}

    def run(name: str):
        if name not in cache:
            report = run_module(MODULES / name, only=["side-effects"])
            assert report.error is None, report.error
            cache[name] = checks(report)["side-effects"]
        return cache[name]

    return run


def kinds(result, kind: str) -> list[dict]:
    return [c for c in result.details["changes"] if c["kind"] == kind]


def test_clab_passes_with_every_entry_point_called(side_effects):
    r = side_effects("clab")
    assert r.status == "pass", r.reason
    called = {c["fn"] for c in r.details["calls"]}
    assert {"getpwnam_r", "getspnam_r", "setgrent", "getgrent_r", "endspent", "initgroups_dyn"} <= called
    assert r.details["unmeasured"] == {}  # the syslog capture worked too
    assert r.details["control"]["syslog"]["ident"]  # and saw the caller's own ident
    assert r.details["not_called"] == []  # every call fitted in the budget, none left out


def test_stdout_fails_per_entry_point(side_effects):
    r = side_effects("stdoutlab")
    assert r.status == "fail"
    written = kinds(r, "stdout")
    assert set(POINT) <= {c["fn"] for c in written}
    first = next(c for c in written if c["entry"] == "getpwnam_r('pyama')")
    assert "clab debug: lookup pyama" in first["sample"]


def test_stderr_warns(side_effects):
    r = side_effects("stderrlab")
    assert r.status == "warn"
    assert "clab debug: getpwnam_r pyama" in kinds(r, "stderr")[0]["sample"]
    assert not kinds(r, "stdout")


def test_sigpipe_ignored_fails_with_the_inheriting_child(side_effects):
    r = side_effects("sigpipelab")
    assert r.status == "fail"
    change = kinds(r, "signal")[0]
    assert (change["signal"], change["before"], change["after"]) == ("SIGPIPE", "SIG_DFL", "SIG_IGN")
    assert "SIGPIPE" in change["child"]["ignored"]
    assert "SIGPIPE" not in r.details["control"]["spawn"]["ignored"]


def test_signals_left_blocked_fail_with_the_inheriting_child(side_effects):
    r = side_effects("sigmasklab")
    assert r.status == "fail"
    change = kinds(r, "mask")[0]
    assert set(change["blocked"]) == {"SIGTERM", "SIGCHLD"}
    assert {"SIGTERM", "SIGCHLD"} <= set(change["child"]["blocked"])
    assert r.details["control"]["spawn"]["blocked"] == []


def test_errno_after_success_warns(side_effects):
    r = side_effects("errnolab")
    assert r.status == "warn"
    assert {(c["fn"], c["name"]) for c in kinds(r, "errno")} == {("getpwnam_r", "ENOENT")}


def test_openlog_ident_fails_with_the_callers_tagged_line(side_effects):
    r = side_effects("openloglab")
    assert r.status == "fail"
    change = kinds(r, "syslog")[0]
    assert change["after"]["ident"] == "clabmod[PID]" and change["after"]["facility"] == 4  # LOG_AUTH
    assert change["before"]["ident"] != "clabmod[PID]"


@pytest.mark.parametrize(
    "module, kind, field, want",
    [
        ("envlab", "env", "after", "file"),
        ("umasklab", "umask", "after", "0077"),
        ("cwdlab", "cwd", "after", "/etc"),
    ],
)
def test_process_state_changes_warn_with_before_and_after(side_effects, module, kind, field, want):
    r = side_effects(module)
    assert r.status == "warn"
    change = kinds(r, kind)[0]
    assert change[field] == want and change["before"] != want
    assert change["fn"] in POINT


def test_the_check_leaves_no_process_mount_or_file(side_effects):
    for module in ("clab", "openloglab", "sigmasklab"):  # a syslog line, a child spawned after each call
        r = side_effects(module)
        assert r.details["leftover"] == {"fds": [], "mounts": [], "files": [], "children": []}, module
    with open("/proc/self/mounts") as f:
        assert [line for line in f if " /dev/log " in line] == []
    assert glob.glob("/tmp/nsslab-*/nsslab-log-*") == []  # the socket's directory went with the worker's
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "cat /proc/self/status" not in ps  # the helper child that shows what a child inherits
