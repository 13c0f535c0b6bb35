"""The hang detector on real processes: quick for waits nobody else can end, patient with
timed sleeps, slow (but bounded) for waits on the outside world."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from lab.probe import hangwatch, procfs

DEADLOCK = "import threading; l = threading.Lock(); l.acquire(); l.acquire()"
OWN_PIPE = "import os; r, w = os.pipe(); os.read(r, 1)"
WAITS_ON_HUNG_CHILD = f"import os\nif os.fork() == 0:\n    {DEADLOCK}\nos.wait()"
SLEEPS_OFTEN = "import time\nwhile True: time.sleep(0.3)"
SLEEPS_LONG = "import time; time.sleep(100)"


def watch(
    proc: subprocess.Popen, for_seconds: float, quick: float = 0.5, slow: float = 1.5
) -> tuple[dict | None, float]:
    w = hangwatch.HangWatch(quick, slow)
    start = time.monotonic()
    while time.monotonic() - start < for_seconds:
        found = w.sample(procfs.tree(proc.pid))
        if found and not found.get("idle"):
            return found, time.monotonic() - start
        time.sleep(hangwatch.SAMPLE_EVERY)
    return None, time.monotonic() - start


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def start(code: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, **kw)
        procs.append(p)
        time.sleep(0.2)  # let it reach its wait
        return p

    yield start
    for p in procs:
        procfs.kill_group(p.pid)
        p.wait(timeout=10)


@pytest.mark.parametrize("code", [DEADLOCK, OWN_PIPE], ids=["futex-deadlock", "own-pipe"])
def test_self_waits_are_hung_within_the_quick_window(spawn, code):
    found, seconds = watch(spawn(code), 5.0)
    assert found is not None, "a process that can never wake up must be declared hung"
    assert not found["outside_wait"]
    assert seconds < 1.5
    waits = {t["wait"] for p in found["processes"] for t in p["tasks"]}
    assert waits & {"self", "pipe"} or any(w.startswith("pipe:") for w in waits)


def test_parent_waiting_on_a_hung_child_is_hung_too(spawn):
    found, _ = watch(spawn(WAITS_ON_HUNG_CHILD), 5.0)
    assert found is not None
    assert len(found["processes"]) == 2
    assert {t["wait"] for p in found["processes"] for t in p["tasks"]} == {"self", "children"}


@pytest.mark.parametrize("code", [SLEEPS_OFTEN, SLEEPS_LONG], ids=["sleeps-300ms", "sleeps-100s"])
def test_timed_sleeps_are_never_called_hung(spawn, code):
    found, _ = watch(spawn(code), 2.5)
    assert found is None


def test_outside_waits_need_the_slow_window(spawn):
    ours, theirs = socket.socketpair()  # we hold the other end: the child could still be answered
    fd = theirs.fileno()  # pass_fds keeps the number in the child
    proc = spawn(f"import socket; socket.socket(fileno={fd}).recv(1)", pass_fds=(fd,))
    found, seconds = watch(proc, 5.0, quick=0.5, slow=1.5)
    ours.close()
    assert found is not None and found["outside_wait"]
    assert seconds >= 1.5


def test_futex_classification_follows_the_syscall_arguments():
    def t(*syscall: str) -> dict:
        return {"state": "S", "syscall": list(syscall)}

    private_forever = t("202", "0xc000034148", "0x80", "0x0", "0x0", "0x0", "0x0")
    private_timed = t("202", "0xc000034148", "0x80", "0x0", "0x7ffd0000", "0x0", "0x0")
    shared_forever = t("202", "0x7f0000001000", "0x0", "0x0", "0x0", "0x0", "0x0")
    wake = t("202", "0x7f0000001000", "0x81", "0x1", "0x0", "0x0", "0x0")
    sleeping = t("35", "0x7ffd0000", "0x0", "0x0", "0x0", "0x0", "0x0")
    if procfs.SYSCALLS.get(202) != "futex":
        pytest.skip("syscall table for x86_64 only")
    assert hangwatch.classify_wait(0, private_forever) == "self"
    assert hangwatch.classify_wait(0, private_timed) == "timed"
    assert hangwatch.classify_wait(0, shared_forever) == "external"
    assert hangwatch.classify_wait(0, wake) == "external"
    assert hangwatch.classify_wait(0, sleeping) == "timed"
    assert hangwatch.classify_wait(0, {"state": "R", "syscall": ["running"]}) == "running"


# The reader's only writer is its child, which sleeps: the read waits on a live writer.
READS_FROM_SLEEPING_CHILD = """import os, time
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.close(r)
    time.sleep(100)
os.close(w)
os.read(r, 1)
time.sleep(100)
"""


def test_a_reader_whose_writer_exits_while_being_judged_is_not_hung(spawn, monkeypatch):
    """slowlab's `compgen -u` subshell ended during the /proc scan for its pipe's writers;
    bash, about to read EOF, was called hung. A verdict must still hold after the scan."""
    proc = spawn(READS_FROM_SLEEPING_CHILD)
    scan = hangwatch.pipe_writers

    def writer_exits_during_scan(pipe: str) -> set[int]:
        for pid in procfs.tree(proc.pid) - {proc.pid}:
            procfs.kill_pids({pid})
            deadline = time.monotonic() + 5
            while procfs.read(f"/proc/{pid}/stat") and "Z" not in procfs.stat_fields(f"/proc/{pid}/stat")[:1]:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        return scan(pipe)

    monkeypatch.setattr(hangwatch, "pipe_writers", writer_exits_during_scan)
    found, _ = watch(proc, 2.5)
    assert found is None, found
