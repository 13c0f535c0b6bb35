"""The descriptors verdict on recorded-shape observations (lab/probe/direct/fds.py: descriptors),
without running anything: both directions for each of its three parts."""

from __future__ import annotations

import copy

from lab.checks.descriptors import after_close, judge
from lab.probe.direct.fds import AFTER_CLOSE
from lab.results import CheckResult

SOCKET = "socket:[2171268] (AF_UNIX, peer '/var/lib/sss/pipes/nss')"
HELD = {"4": {"target": "/var/lib/sss/mc/passwd", "cloexec": True}, "5": {"target": SOCKET, "cloexec": True}}


def phase(name: str, calls: int, held: dict | None = None, inherited: dict | None = None) -> dict:
    return {"phase": name, "calls": calls, "held": held or {}, "inherited": {"fds": inherited or {}}}


def flat(done: int, count: int = 6, step: int = 100) -> list[list[int]]:
    return [[n, count] for n in range(0, done + 1, step)]


# A sound module that keeps a cache file and a socket, both FD_CLOEXEC (libnss_sss's shape).
CLEAN = {
    "rlimit": 1024,
    "seconds": 0.3,
    "listed": ["passwd", "group"],
    "phases": [
        phase("load", 0),
        phase("lookups", 20, HELD),
        phase("listing", 6, HELD),
        phase("after all", 1200, HELD),
    ],
    "lookups": {"done": 1000, "asked": 1000, "samples": flat(1000, 8), "held": HELD},
    "threads": {"done": 200, "asked": 200, "samples": flat(200, 8, 20), "stuck": False, "held": HELD},
    "reuse": {
        "module_held": HELD,
        "numbers": [3, 4, 5],
        "calls": 20,
        "listing_calls": 6,
        "files": {n: [{"state": "intact"}, {"state": "intact", "after": "listing"}] for n in ("3", "4", "5")},
    },
}


def observed(**changes) -> dict:
    obs = copy.deepcopy(CLEAN)
    obs.update(changes)
    return obs


def test_a_sound_module_passes_and_its_cloexec_descriptors_are_named_not_blamed():
    got = judge(CLEAN, "deb1")
    assert got.status == "pass", got.reason
    assert got.details["kept"] == {"4": "/var/lib/sss/mc/passwd", "5": SOCKET}
    assert got.details["inherited"] == {} and got.details["reuse_problems"] == []
    assert "FD_CLOEXEC" in got.reason and "8 -> 8 over 1000 lookups" in got.reason


def test_a_descriptor_without_cloexec_after_lookups_fails_with_what_it_is():
    obs = observed()
    obs["phases"][1] = phase(
        "lookups", 20, {"4": {"target": "/etc/clab.db", "cloexec": False}}, {"4": "/etc/clab.db"}
    )
    got = judge(obs, "pyama")
    assert got.status == "fail"
    assert got.details["inherited"] == {"lookups": {"4": "/etc/clab.db"}}
    assert "every program the caller execs inherits fd 4 (/etc/clab.db)" in got.reason
    assert "right after dlopen" in got.control  # the load phase inherited nothing
    assert "close_fds=False" in got.reproduce and '"pyama"' in got.reproduce


def test_a_descriptor_inherited_right_after_load_is_the_constructors():
    obs = observed()
    obs["phases"][0] = phase("load", 0, inherited={"3": "/var/log/module.log"})
    got = judge(obs)
    assert got.status == "fail" and "before any call" in got.reason
    assert "FD_CLOEXEC" in got.control  # the lab's own descriptors are not inherited


def test_one_descriptor_per_thread_fails_with_the_extrapolation_to_emfile():
    obs = observed(
        threads={"done": 200, "asked": 200, "samples": [[n, 8 + n] for n in range(0, 201, 20)], "held": HELD},
        rlimit=1024,
    )
    got = judge(obs)
    assert got.status == "fail"
    assert got.details["growth"]["threads"] == {"total": 200, "first_half": 100, "second_half": 100}
    assert "+200 descriptors over 200 thread cycles (1.00 per thread" in got.reason
    assert "RLIMIT_NOFILE of 1,024 (208 open now)" in got.reason and "~816 more threads" in got.reason
    assert "1000 lookups in one thread: +0" in got.control


def test_growth_in_one_thread_fails_too():
    obs = observed(
        lookups={
            "done": 1000,
            "asked": 1000,
            "samples": [[n, 6 + n // 100] for n in range(0, 1001, 100)],
            "held": {},
        }
    )
    got = judge(obs)
    assert got.status == "fail" and got.details["growth"]["lookups"]["total"] == 10
    assert "0.01 per lookup" in got.reason


def test_a_descriptor_opened_once_then_flat_is_not_growth():
    samples = [[0, 6], [100, 7]] + [[n, 7] for n in range(200, 1001, 100)]
    got = judge(observed(lookups={"done": 1000, "asked": 1000, "samples": samples, "held": {}}))
    assert got.status == "pass", got.reason
    assert got.details["growth"]["lookups"] == {"total": 1, "first_half": 1, "second_half": 0}
    assert "one change of +1, then flat" in got.reason


def test_a_slow_module_is_judged_on_what_fitted_and_says_so():
    obs = observed(
        lookups={"done": 3, "asked": 1000, "samples": [[0, 6], [1, 6], [2, 6], [3, 6]], "held": {}},
        threads={"done": 1, "asked": 200, "samples": [[0, 6], [1, 6]], "held": {}},
    )
    got = judge(obs)
    assert got.status == "pass"
    assert "over 3 lookups (of 1000: the budget ran out)" in got.reason
    assert "over 1 thread create->lookup->join cycles (of 200: the budget ran out)" in got.reason


def test_too_few_samples_never_fail_on_growth():
    obs = observed(threads={"done": 1, "asked": 200, "samples": [[0, 6], [1, 7]], "held": {}})
    assert judge(obs).status == "pass"


def test_a_module_that_writes_to_and_closes_the_callers_file_fails():
    obs = observed()
    obs["reuse"]["module_held"] = {"4": {"target": "/dev/null", "cloexec": True}}
    written = {
        "state": "written",
        "size": 685,
        "was": 640,
        "at": 7,
        "text": "clab request getpwnam_r pyama\n",
    }
    obs["reuse"]["files"]["4"] = [written, {"state": "closed", "after": "listing"}]
    got = judge(obs, "pyama")
    assert got.status == "fail"
    problem = got.details["reuse_problems"][0]
    assert problem.startswith(
        "fd 4 (the module's /dev/null before the caller closed it): wrote into it at offset 7"
    )
    assert problem.endswith("then closed it in the listing")
    assert "fds [3, 5]" in got.control  # the numbers the module never held stayed untouched


def test_a_module_that_reopens_its_own_at_the_callers_number_fails():
    obs = observed()
    obs["reuse"]["files"]["5"] = [
        {"state": "replaced", "now": "socket:[99] (AF_UNIX, peer '/var/lib/sss/pipes/nss')"}
    ]
    got = judge(obs)
    assert got.status == "fail"
    assert "fd 5 (the module's socket:[2171268]" in got.details["reuse_problems"][0]
    assert "the number now holds socket:[99]" in got.reason


def test_a_module_that_moves_the_callers_offset_fails():
    obs = observed()
    obs["reuse"]["files"]["3"] = [{"state": "moved", "offset": 640, "was": 7}]
    got = judge(obs)
    assert got.status == "fail" and "moved its offset from 7 to 640" in got.reason


def python_of(reproduce: str) -> str:
    """The program of a `python3 -c '...'  # comment` reproducer, as the shell passes it."""
    import shlex

    return shlex.split(reproduce, comments=True)[2]


def test_the_reproducers_are_python_that_survives_a_miss_and_uses_the_phases_calls():
    # No manifest user: the key is the unknown name, which pwd.getpwnam would raise on;
    # libc's getpwnam through ctypes returns NULL instead.
    obs = observed(
        phases=[*CLEAN["phases"][:2], phase("listing", 6, HELD, {"7": "/etc/group"}), CLEAN["phases"][3]]
    )
    got = judge(obs)
    assert got.status == "fail" and "pwd." not in got.reproduce
    program = python_of(got.reproduce)
    compile(program, "reproduce", "exec")
    assert "libc.setgrent(); libc.getgrent(); libc.endgrent()" in program  # the listing leaked it
    assert "getpwnam" not in program


def test_the_reuse_reproducer_leaves_nothing_and_shows_writes_and_offsets():
    obs = observed()
    obs["reuse"]["files"] = {n: [{"state": "moved", "offset": 640, "was": 7}] for n in ("3", "4", "5")}
    got = judge(obs)
    program = python_of(got.reproduce)
    compile(program, "reproduce", "exec")
    assert "os.unlink" in program and '"written"' in program and '"moved"' in program
    # every file touched and none measured before: said plainly
    assert got.control.startswith("no control")
    obs["reuse"]["before"] = {n: {"state": "intact"} for n in ("3", "4", "5")}
    assert "before the module's calls" in judge(obs).control


def go_wait(woke: float | None, timeout: float | None = 4.9) -> dict:
    return {"tid": 4321, "comm": "python3", "call": "epoll_pwait", "fd": 4, "timeout": timeout, "woke": woke}


def test_a_module_thread_that_woke_and_left_the_files_alone_passes_and_is_said():
    obs = observed()
    obs["reuse"].update(waits=[go_wait(4.95)], waited=5.45)
    got = judge(obs)
    assert got.status == "pass", got.reason
    assert (
        "nor by the module's 1 thread(s) that woke from waits on those numbers (within 5.45 s)" in got.reason
    )


def test_a_module_thread_still_asleep_on_the_callers_number_is_a_warn_not_a_fail():
    obs = observed()
    obs["reuse"].update(waits=[go_wait(None, timeout=None)], waited=0.0)
    got = judge(obs)
    assert got.status == "warn", got.reason
    assert (
        "thread 4321 (python3) is still blocked in epoll_pwait on fd 4, its /var/lib/sss/mc/passwd"
        in got.reason
    )
    assert "(no timeout)" in got.reason and got.impact.startswith("none seen")


def test_a_write_when_the_modules_thread_woke_is_named_as_such():
    obs = observed()
    obs["reuse"].update(waits=[go_wait(4.9)], waited=5.4)
    wrote = {"state": "written", "size": 641, "was": 640, "at": 640, "text": "\x01"}
    obs["reuse"]["files"]["5"] = [
        {"state": "intact"},
        {"state": "intact", "after": "listing"},
        {**wrote, "after": "wake"},
    ]
    got = judge(obs)
    assert got.status == "fail"
    assert got.details["reuse_problems"][0].endswith("'\\x01' when its own thread woke")


def crashed(progress: str) -> CheckResult:
    stderr = (
        "runtime: epollwait on fd 4 failed with 22\nfatal error: runtime: netpoll failed\n\nruntime stack:\n"
    )
    details = {"step": "descriptors", "progress": progress, "stderr": stderr}
    return CheckResult("crash", "descriptor checks: process killed by SIGABRT", details)


def test_a_crash_after_the_callers_close_is_a_claim_with_the_modules_last_words():
    got = after_close(
        crashed(f"descriptors: {AFTER_CLOSE}, waiting 4.9 s for the module's thread 9"), "pyama"
    )
    assert got.status == "crash"
    assert got.reason.endswith(
        "the module said: 'runtime: epollwait on fd 4 failed with 22', 'fatal error: runtime: netpoll failed'"
    )
    assert "killed" in got.impact and "only after the caller closed them" in got.control
    assert "os.closerange(3, 256)" in got.reproduce and 'print("alive")' in got.reproduce


def test_a_crash_before_the_close_is_left_as_it_was():
    before = crashed("descriptors: 200 threads, each created, making one lookup, joined")
    got = after_close(copy.deepcopy(before), "pyama")
    assert got == before and got.impact is None
