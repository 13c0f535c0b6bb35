"""lab/probe/direct/wakes.py on real threads of this process: a thread blocked on a descriptor
is found with its call and timeout, waited for when its wait ends within the bound, and not
when it has none; a number no thread waits on finds nothing."""

from __future__ import annotations

import os
import select
import threading
import time

from lab.probe.direct import wakes
from lab.probe.monitor import clip


def blocked(numbers: set[int], count: int, target, *args) -> list[dict]:
    """Starts TARGET(*ARGS) in a thread; the waits on NUMBERS once COUNT are seen (10 s bound)."""
    threading.Thread(target=target, args=args, daemon=True).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = wakes.blocked_now(numbers)
        if len(found) >= count:
            return found
        time.sleep(0.01)
    raise AssertionError(f"no thread blocked on {numbers} within 10 s")


def test_a_thread_in_epoll_wait_is_found_and_waited_for_until_it_wakes():
    ep = select.epoll()
    try:
        (w,) = blocked({ep.fileno()}, 1, ep.poll, 1.5)
        assert w["call"] in ("epoll_wait", "epoll_pwait") and w["fd"] == ep.fileno()
        assert 0 < w["timeout"] <= 1.5  # what was left of it when it entered the kernel
        assert wakes.blocked_now({ep.fileno() + 100}) == []  # not a number it waits on
        waited = wakes.await_wakes([w], bound=6.0)
        assert w["woke"] is not None and w["woke"] <= w["timeout"] + 1.0
        assert abs(waited - (w["woke"] + wakes.GRACE)) < 0.5 and "syscall" not in w
    finally:
        ep.close()


def test_a_wait_with_no_timeout_or_past_the_bound_is_not_waited_for():
    r, w = os.pipe()
    ep = select.epoll()
    ep.register(r, select.EPOLLIN)  # the write below ends both waits
    try:
        blocked({r}, 1, os.read, r, 1)
        found = {x["fd"]: x for x in blocked({r, ep.fileno()}, 2, ep.poll, 30.0)}
        assert found[r]["call"] == "read" and found[r]["timeout"] is None
        assert found[ep.fileno()]["timeout"] > 20
        started = time.monotonic()
        assert wakes.await_wakes(list(found.values()), bound=6.0) == 0.0
        assert time.monotonic() - started < 0.5
        assert [x["woke"] for x in found.values()] == [None, None]
    finally:
        os.write(w, b"xx")  # one for the read, one left for the level-triggered epoll
        time.sleep(0.1)  # both threads return before their descriptors close
        for fd in (r, w):
            os.close(fd)
        ep.close()


def test_a_long_stderr_keeps_its_first_and_last_whole_lines():
    """A Go crash dump says why first ("fatal error: ..."); the goroutine stacks fill the rest."""
    dump = "runtime: epollwait on fd 4 failed with 22\nfatal error: runtime: netpoll failed\n"
    dump += "".join(f"goroutine {i} [select]:\n\tmain.fetch()\n" for i in range(500)) + "exit status 2\n"
    kept = clip(dump)
    lines = kept.splitlines()
    assert lines[:2] == ["runtime: epollwait on fd 4 failed with 22", "fatal error: runtime: netpoll failed"]
    assert lines[-1] == "exit status 2" and len(kept) <= 2100
    (marker,) = [line for line in lines if line.startswith("[... ")]
    assert int(marker.split()[1]) == len(dump) - sum(len(x) + 1 for x in lines if x != marker) + 1
    assert clip("short\n") == "short\n"
