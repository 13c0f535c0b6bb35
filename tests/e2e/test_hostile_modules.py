"""A module must not be able to break the lab: it writes to the caller's stdout or closes
the caller's descriptors, signals its process group or its parent, reaps the caller's
children, leaves a daemon running, never returns from its constructor, or exits; the lab
still judges every check, names what it did, and leaves no process behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.runner import run_module
from lab.targets.overlay import Overlay, namespace_of, processes_in
from tests.conftest import MODULES, checks

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


# ---------------------------------------------------------------- modules that act on the caller's process


def cmdlines() -> dict[int, str]:
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def watched():
    """Runs a planted module once, and records what of its run was still running just before
    the sandbox's own sweep (uninstall kills whatever is in the namespace), so the test sees
    what the probe itself cleaned up, and on the host afterwards (anything naming the
    sandbox's workdir, or the planted daemon)."""
    cache: dict[str, tuple] = {}

    def run(name: str):
        if name in cache:
            return cache[name]
        seen: dict = {}
        original = Overlay.uninstall

        def uninstall(self) -> None:
            if self.holder is not None and "workdir" not in seen:
                seen["workdir"] = str(self.staging)
                namespace = namespace_of(self.holder_pid)
                seen["in_sandbox"] = [
                    cmdlines().get(p, "?") for p in processes_in(namespace) if p != self.holder_pid
                ]
            original(self)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Overlay, "uninstall", uninstall)
            report = run_module(MODULES / name)
        seen["on_host"] = [c for c in cmdlines().values() if seen["workdir"] in c or "clab-cached" in c]
        cache[name] = (report, seen)
        return cache[name]

    return run


def assert_clean(report, seen: dict) -> None:
    assert [(x.id, x.reason) for x in report.checks if x.status == "error"] == []
    assert report.unexpected() == []  # the manifest's [expect], every other check pass or skip
    assert seen["in_sandbox"] == [], "the probe left these running"
    assert seen["on_host"] == []


def test_a_module_that_signals_its_own_group_is_named_and_the_lab_survives(watched):
    report, seen = watched("killgrouplab")
    load = checks(report)["load"]
    assert load.status == "crash" and load.cause == "signals-own-group"
    assert load.details["observed"]["signal"] == "SIGTERM" and load.details["observed"]["to"] == "group"
    assert load.details["observed"]["calls"] == ["getpwnam('pyama')"]
    assert load.evidence["raw"] is None  # no gdb re-run: a SIGTERM would not stop it, kill(0) would end gdb
    assert_clean(report, seen)


def test_a_module_that_signals_its_parent_is_named_and_the_monitor_survives(watched):
    report, seen = watched("killparentlab")
    load = checks(report)["load"]
    assert load.status == "fail" and load.cause == "signals-parent"
    assert load.details["observed"]["signal"] == "SIGTERM" and load.details["observed"]["to"] == "parent"
    assert load.details["observed"]["calls"] == ["getpwnam('pyama')"]
    assert "mapped" not in load.details  # gated: `getent`'s parent in the other checks would be the lab
    assert {c.status for c in report.checks if c.id not in ("elf", "load")} == {"skip"}
    assert_clean(report, seen)


def test_a_sigchld_handler_that_reaps_every_child_is_named_in_fork_child(watched):
    report, seen = watched("reaperlab")
    c = checks(report)
    fork = c["fork-child"]
    assert fork.status == "fail" and fork.cause == "child-reaped-elsewhere"
    assert fork.details["reaped"]["errno"] == "ECHILD" and fork.details["reaped"]["in_module"]
    assert fork.details["reaped"]["object"].endswith("libnss_reaperlab.so.2")
    # the control: children of a parent that never used the module came back with their status
    assert [s for s in fork.details["passed"] if s.startswith("fresh ")]
    assert all(s.startswith("after-use ") for s in fork.details["causes"])
    assert c["load"].status == "pass"
    assert_clean(report, seen)


def test_a_background_process_that_outlives_the_call_is_killed_and_named(watched):
    report, seen = watched("daemonlab")
    load = checks(report)["load"]
    assert load.status == "fail" and load.cause == "outlives-call"
    left = load.details["observed"]["leftovers"]
    assert len(left) == 1 and left[0]["comm"] == "clab-cached" and left[0]["sleep"] == 3600.0
    assert left[0]["call"]["fn"] == "getpwnam" and {"stdout", "stderr"} <= set(left[0]["holds"])
    assert left[0]["sid"] == left[0]["pgid"]  # setsid: a session, and so a group, of its own
    assert "outside the caller's process group" in load.reason
    assert load.details["observed"]["held_open"] == ["stderr", "stdout"]
    # the probe did not wait for the pipes' EOF (an hour) nor for the step's bound (20 s)
    assert load.seconds < 5, load.seconds
    assert_clean(report, seen)


def test_a_constructor_that_never_returns_is_a_bounded_load_hang_naming_it(watched):
    report, seen = watched("ctorhanglab")
    load = checks(report)["load"]
    assert load.status == "hang" and load.cause == "hang-in-parent"
    assert load.evidence["data"] == {"constructor": "wait_for_daemon"}
    assert "constructor wait_for_daemon never returns" in load.reason
    assert any("call_init" in f for f in load.evidence["frames"])
    assert load.seconds < 20 + 30 + 10  # the step's bound, one gdb attach, slack
    assert_clean(report, seen)


def test_exit_and_quick_exit_in_a_lookup_name_the_call_and_the_status(watched):
    for name, call, status in (("exitlab", "exit", 3), ("quickexitlab", "_exit", 4)):
        report, seen = watched(name)
        load = checks(report)["load"]
        assert load.status == "crash" and load.cause == "exit-in-module", (name, load.reason)
        data = load.evidence["data"]
        assert (data["call"], data["status"], data["function"]) == (call, status, f"_nss_{name}_getpwnam_r")
        said = f"exited with status {status} inside getpwnam('pyama') in the parent: _nss_{name}_getpwnam_r"
        assert f"{said} called {call}({status})" in load.reason
        assert_clean(report, seen)
