"""A module must not be able to break the lab: the probe's observations (a signal and its
sender, a process left running, a child reaped under the caller, an exit, a constructor
that never returns) become a verdict with a named cause. Fixture dicts in the probe's
result shape (lab/probe/monitor.py run_step), both directions; and the probe's /proc readers on
real processes of this host."""

from __future__ import annotations

import os
import subprocess
import time

from lab.checks.base import judge
from lab.forensics import OBSERVED, diagnose_crash, diagnose_hang
from lab.forensics.observed import calls_within
from lab.probe import leftovers, procfs

BEGIN = {"ev": "begin", "where": "parent", "fn": "getpwnam", "arg": "pyama", "t": 10.0}
ANSWER = {
    "ev": "call",
    "where": "parent",
    "fn": "getpwnam",
    "arg": "pyama",
    "ok": True,
    "value": {},
    "t": 10.5,
}
LAB_CALL = [
    {"ev": "begin", "where": "parent", "fn": "mapped", "arg": None, "t": 10.6},
    {"ev": "call", "where": "parent", "fn": "mapped", "arg": None, "ok": True, "value": [], "t": 10.7},
]
RETURNED = {
    "id": "load",
    "outcome": "exited",
    "code": 0,
    "worker": 100,
    "pgid": 99,
    "signals": [],
    "leftovers": [],
    "events": [BEGIN, ANSWER, *LAB_CALL],
    "stderr": "",
    "seconds": 0.2,
}


def signal_from(to: str, sender: int = 100, window: tuple = (10.2, 10.65)) -> dict:
    return {"signal": "SIGTERM", "to": to, "from": sender, "code": 0, "by_step": True, "window": list(window)}


def test_a_clean_step_has_no_finding():
    assert judge(RETURNED, "m") is None


def test_sigterm_heard_by_the_sentinel_names_the_group_signal_and_the_call():
    died = {
        **RETURNED,
        "code": -15,
        "events": [BEGIN],
        "signals": [signal_from("group", window=(10.1, 10.1))],
    }
    outcome = judge(died, "m")
    assert outcome.status == "crash" and outcome.cause == "signals-own-group"
    assert outcome.details["observed"] == {
        "signal": "SIGTERM",
        "to": "group",
        "from": 100,
        "code": 0,
        "calls": ["getpwnam('pyama')"],
    }
    # the same death without the sentinel's word: a crash by SIGTERM, no cause claimed
    alone = judge({**died, "signals": []}, "m")
    assert alone.status == "crash" and alone.cause is None and "SIGTERM" in alone.reason


def test_a_signal_to_the_parent_fails_even_though_the_step_returned():
    outcome = judge({**RETURNED, "signals": [signal_from("parent")]}, "m")
    assert outcome.status == "fail" and outcome.cause == "signals-parent"
    # the window (the last look that found nothing, then the look that found it) holds the
    # module's call and the lab's own `mapped`: only the call that goes through the module counts
    assert outcome.details["observed"]["calls"] == ["getpwnam('pyama')"]
    outside = {**signal_from("parent"), "by_step": False}  # not the step's (the probe re-raises those)
    assert judge({**RETURNED, "signals": [outside]}, "m") is None


def test_calls_within_a_window():
    events = RETURNED["events"]
    assert calls_within({"events": events}, 10.55, 10.9) == []  # only `mapped` ran then
    assert calls_within({"events": events}, 9.0, 10.0) == ["getpwnam('pyama')"]
    assert calls_within({"events": [BEGIN]}, 11.0, 12.0) == ["getpwnam('pyama')"]  # never answered


LEFTOVER = {
    "pid": 4242,
    "cmdline": "python3 probe worker",
    "comm": "clab-cached",
    "pgid": 4241,
    "sid": 4241,
    "holds": ["channel", "stderr", "stdout"],
    "sleep": 3600.0,
    "call": {"fn": "getpwnam", "arg": "pyama", "where": "parent"},
}


def test_a_process_left_running_is_named_with_the_call_that_started_it():
    outcome = judge({**RETURNED, "leftovers": [LEFTOVER], "held_open": ["stderr", "stdout"]}, "m")
    assert outcome.status == "fail" and outcome.cause == "outlives-call"
    seen = outcome.details["observed"]
    assert seen["calls"] == ["getpwnam('pyama')"] and seen["held_open"] == ["stderr", "stdout"]
    assert seen["leftovers"][0]["comm"] == "clab-cached"
    assert "asleep for 3600 s" in outcome.reason and "outside the caller's process group" in outcome.reason
    assert "in a session of its own" in outcome.reason


def test_a_leftover_after_a_hang_is_kept_but_the_hang_speaks():
    hung = {**RETURNED, "outcome": "hang", "hang": {"processes": []}, "leftovers": [LEFTOVER]}
    outcome = judge(hung, "m")
    assert outcome.status == "hang" and outcome.details["leftovers"] == [LEFTOVER]


def reaped(sigchld: dict) -> dict:
    return {
        **RETURNED,
        "events": [
            BEGIN,
            ANSWER,
            {"ev": "forked", "pid": 5},
            {"ev": "begin", "where": "child", "fn": "getpwuid", "arg": 10301, "t": 11.0},
            {
                "ev": "call",
                "where": "child",
                "fn": "getpwuid",
                "arg": 10301,
                "ok": True,
                "value": {},
                "t": 11.1,
            },
            {"ev": "child-exit", "code": None, "reaped": "ECHILD", "sigchld": sigchld},
        ],
    }


def test_echild_names_the_handler_and_the_object_it_lies_in():
    handler = {"handler": "0x7f00", "object": "/usr/lib/x86_64-linux-gnu/libnss_m.so.2"}
    outcome = judge(reaped(handler), "m")
    assert outcome.status == "fail" and outcome.cause == "child-reaped-elsewhere"
    assert outcome.details["observed"]["in_module"] is True
    assert outcome.details["observed"]["calls"] == ["getpwnam('pyama')"]
    other = judge(reaped({"handler": "SIG_IGN"}), "m")
    assert other.details["observed"]["in_module"] is False and "SIG_IGN" in other.reason
    # the child's exit status came back: nothing to say
    fine = reaped({})
    fine["events"][-1] = {"ev": "child-exit", "code": 0}
    assert judge(fine, "m") is None


def test_the_observed_causes_are_apart_from_the_backtrace_ones():
    from lab.forensics import CAUSES

    assert not set(OBSERVED) & set(CAUSES)


EXIT_TEXT = """nsslab-crash exit {status}
Thread 1 (Thread 0x7ffff7ca92c0 (LWP 9327) "python3"):
{top}#3  0x00007ffff76d2a13 in robust_before (c=..., st=...) at ../clab/plants_robust.c:90
#4  0x00007ffff76d2a13 in lookup (errnop=...) at ../clab/nss_clab.c:258
#5  0x00007ffff76d2a13 in _nss_m_getpwnam_r (name=...) at ../clab/nss_clab.c:313
nsslab-maps-begin
7ffff7c00000-7ffff7e00000 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffff76d0000-7ffff76d8000 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libnss_m.so.2
nsslab-maps-end
"""
EXIT_FRAMES = """#0  0x00007ffff7d7e409 in __GI__exit (status=...) at ../sysdeps/unix/sysv/linux/_exit.c:30
#1  0x00007ffff7ce8522 in __run_exit_handlers (status=...) at ./stdlib/exit.c:139
#2  0x00007ffff7ce869a in __GI_exit (status=...) at ./stdlib/exit.c:146
"""
QUICK_FRAMES = "#0  0x00007ffff7d7e409 in __GI__exit (status=...) at ../sysdeps/unix/sysv/linux/_exit.c:30\n"


def test_exit_and_quick_exit_are_told_apart_and_name_the_entry_point():
    d = diagnose_crash({"text": EXIT_TEXT.format(status=3, top=EXIT_FRAMES)}, "m")
    assert d.cause == "exit-in-module"
    assert d.data == {
        "call": "exit",
        "status": 3,
        "function": "_nss_m_getpwnam_r",
        "frame": "robust_before",
        "constructor": False,
    }
    q = diagnose_crash({"text": EXIT_TEXT.format(status=4, top=QUICK_FRAMES)}, "m")
    assert (q.data["call"], q.data["status"]) == ("_exit", 4)
    exited = {
        **RETURNED,
        "events": [BEGIN],
        "code": 4,
        "crash": {"text": EXIT_TEXT.format(status=4, top=QUICK_FRAMES)},
    }
    outcome = judge(exited, "m")
    assert outcome.status == "crash"
    assert (
        "process exited with status 4 inside getpwnam('pyama') in the parent: "
        "_nss_m_getpwnam_r called _exit(4)" in outcome.reason
    )


CTOR_HANG = """Thread 1 (Thread 0x7ffff7ca92c0 (LWP 9327) "python3"):
#0  0x00007ffff7d4f1b5 in __GI___clock_nanosleep (clock_id=...) at clock_nanosleep.c:71
#1  0x00007ffff7d53ec3 in __GI___nanosleep (req=...) at nanosleep.c:25
#2  0x00007ffff7d53dfa in __sleep (seconds=...) at sleep.c:55
#3  0x00007ffff76d2100 in wait_for_daemon () at ../clab/plants_robust.c:51
#4  0x00007ffff7fcf0fe in call_init (l=...) at ./elf/dl-init.c:70
#5  0x00007ffff7fcf1f4 in _dl_init (main_map=...) at ./elf/dl-init.c:117
#6  0x00007ffff7d9b6e4 in __GI__dl_catch_exception (exception=...) at ./elf/dl-error-skeleton.c:182
nsslab-maps-begin
7ffff7c00000-7ffff7e00000 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffff76d0000-7ffff76d8000 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libnss_m.so.2
7ffff7fc3000-7ffff7fe9000 r-xp 00000000 08:01 3 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
nsslab-maps-end
"""


def hung_process(text: str) -> dict:
    return {"pid": 7, "cmdline": "python3 probe worker", "threads": 1, "tasks": [], "gdb": {"text": text}}


def test_a_constructor_that_never_returns_is_named():
    d = diagnose_hang([hung_process(CTOR_HANG)], "m")
    assert d.cause == "hang-in-parent" and d.data == {"constructor": "wait_for_daemon"}
    assert "constructor wait_for_daemon never returns" in d.explanation
    assert any("call_init" in f for f in d.frames)
    # the same stack blames no other module
    assert diagnose_hang([hung_process(CTOR_HANG)], "clab").cause == "unknown"
    # a lookup that hangs after load is not a constructor
    lookup = (
        CTOR_HANG.replace("wait_for_daemon ()", "_nss_m_getpwnam_r ()")
        .replace("call_init", "getpwnam_r")
        .replace("_dl_init", "main")
    )
    assert diagnose_hang([hung_process(lookup)], "m").data == {}


# ---------------------------------------------------------------- the probe's readers, on this host


def test_children_descendants_and_the_sleep_a_process_asked_for():
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        deadline = time.monotonic() + 5
        while leftovers.asleep_for(sleeper.pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sleeper.pid in procfs.children(os.getpid())
        assert sleeper.pid in procfs.descendants(os.getppid())
        if os.geteuid() == 0:  # /proc/PID/syscall and mem of another process need root here
            assert leftovers.asleep_for(sleeper.pid) == 300.0
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sleeper.pid not in procfs.children(os.getpid())
