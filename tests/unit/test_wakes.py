"""lab/probe/direct/wakes.py on real threads of this process: a thread blocked on a descriptor
is found with its call and timeout, waited for when its wait ends within the bound, and not
when it has none; a number no thread waits on finds nothing."""

from __future__ import annotations

import os
import select
import threading
import time

from lab.probe.direct import wakes


def blocked(target, *args) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    time.sleep(0.2)  # in its wait by now
    return t


def test_a_thread_in_epoll_wait_is_found_and_waited_for_until_it_wakes():
    ep = select.epoll()
    try:
        t = blocked(ep.poll, 1.5)
        (w,) = wakes.blocked_on({ep.fileno()})
        assert w["call"] in ("epoll_wait", "epoll_pwait") and w["fd"] == ep.fileno()
        assert 1.0 < w["timeout"] <= 1.5  # what was left of it when it entered the kernel
        assert wakes.blocked_on({ep.fileno() + 100}) == []  # not a number it waits on
        started = time.monotonic()
        waited = wakes.await_wakes([w], bound=6.0)
        assert w["woke"] is not None and w["woke"] <= 1.6
        assert abs(waited - (w["woke"] + wakes.GRACE)) < 0.2
        assert time.monotonic() - started < 3.0 and "syscall" not in w
        t.join(1)
    finally:
        ep.close()


def test_a_wait_with_no_timeout_or_past_the_bound_is_not_waited_for():
    r, w = os.pipe()
    ep = select.epoll()
    try:
        blocked(os.read, r, 1)
        blocked(ep.poll, 30.0)
        found = {x["fd"]: x for x in wakes.blocked_on({r, ep.fileno()})}
        assert found[r]["call"] == "read" and found[r]["timeout"] is None
        assert found[ep.fileno()]["timeout"] > 20
        started = time.monotonic()
        assert wakes.await_wakes(list(found.values()), bound=6.0) == 0.0
        assert time.monotonic() - started < 0.5
        assert [x["woke"] for x in found.values()] == [None, None]
    finally:
        os.write(w, b"x")  # ends the read
        for fd in (r, w):
            os.close(fd)
        ep.close()
