"""The clock of the probe's time budgets: the probe's own time, not the machine's.

A budget ("20,000 lookups, or 1 s of calls") decides how much of a sweep runs, and a sweep
cut short changes what the lab may claim: growth skips a module that fits too few lookups,
erange samples its sizes, keys leaves keys unasked. On a loaded machine (a CI runner, or the
lab's own checks side by side on 2 cores) wall time also counts the time the probe sat ready
to run with no CPU to run on, so a fast module looked slow: a fresh-clone CI run skipped
libnss-db's growth (33 us a lookup here) as if 2,000 lookups could not fit in 1 s.

now() is wall time less that wait: the runqueue time of the process's threads, field 2 of
/proc/self/task/*/schedstat (ns). Time the module spends blocked (a socket, a lock, a sleep)
still counts, as a caller would wait for it. What is left out of an interval between two
reads is at most (1 - 1/CAP) of that interval's wall time (so threads waiting side by side
are not counted twice over either): a budget of B seconds ends within CAP * B (+ REFRESH) of
wall time whatever the load, and a worker whose budgets add up to B within CAP * B (its step
bound is 90 s; identity's budgets, the largest, add up to ~16 s). Without schedstat (a kernel
without CONFIG_SCHED_INFO) it is wall time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

CAP = 3.0  # at most this many seconds of wall time per second of the clock
REFRESH = 0.01  # seconds of wall time between two reads of schedstat (a read took 15 us here)
TASKS = "/proc/self/task"


def thread_waits() -> dict[str, int]:
    """Each live thread's runqueue wait in ns; empty when schedstat cannot be read."""
    got: dict[str, int] = {}
    try:
        tasks = os.listdir(TASKS)
    except OSError:
        return got
    for tid in tasks:
        try:
            with open(f"{TASKS}/{tid}/schedstat", "rb") as f:
                got[tid] = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return got


class Clock:
    def __init__(
        self,
        wall: Callable[[], float] = time.monotonic,
        waits: Callable[[], dict[str, int]] = thread_waits,
    ) -> None:
        self.wall, self.waits = wall, waits
        self.lock = threading.Lock()
        self.started = self.read_at = wall()
        self.excluded = 0.0  # seconds of runqueue wait left out so far
        # thread id -> its runqueue wait (ns) at the last read; what the threads waited before
        # this clock existed (the interpreter's start) is not this clock's to leave out
        self.seen: dict[str, int] = waits()
        self.last = 0.0  # the last value given: a read may leave out up to REFRESH already given

    def refresh(self, wall: float) -> None:
        waits = self.waits()
        # A thread seen before adds what it waited since; a new one (or a reused id, whose
        # figure went down) all of it; one that ended keeps what was counted for it.
        fresh = 0
        for tid, ns in waits.items():
            before = self.seen.get(tid, 0)
            fresh += ns - before if ns >= before else ns
        self.seen = waits
        # Per interval, so that every stretch of time, a budget's included, advances the clock
        # by at least 1/CAP of its wall time (an idle start earns no credit for later).
        self.excluded += min(fresh / 1e9, (wall - self.read_at) * (1 - 1 / CAP))
        self.read_at = wall

    def now(self) -> float:
        """Seconds on the budget's scale; compare only with other now() values."""
        with self.lock:  # the checks' threads may ask at once; the value never goes back
            wall = self.wall()
            if wall - self.read_at >= REFRESH:
                self.refresh(wall)
            self.last = max(self.last, wall - self.excluded)
            return self.last

    def waited(self) -> float:
        """Seconds of runqueue wait left out so far (said in a result, so that a reader sees
        the machine was busy)."""
        return round(self.excluded, 3)


_clock = Clock()  # one per process: a worker is a fresh process per step
now = _clock.now
waited = _clock.waited
