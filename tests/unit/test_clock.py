"""The probe's budget clock (lab/probe/clock.py) on a scripted wall clock and scripted
schedstat figures: what a busy machine's CPU wait does to a budget, and its two bounds."""

from __future__ import annotations

import threading
import time

from lab.probe import clock
from tests.load import busy


class Script:
    """A wall clock set by hand and per-thread runqueue waits (ns) set by hand."""

    def __init__(self) -> None:
        self.t = 100.0
        self.threads: dict[str, int] = {}

    def wall(self) -> float:
        return self.t

    def waits(self) -> dict[str, int]:
        return dict(self.threads)


def scripted() -> tuple[Script, clock.Clock]:
    s = Script()
    return s, clock.Clock(s.wall, s.waits)


def test_wait_for_a_cpu_is_left_out_and_said():
    s, c = scripted()
    start = c.now()
    s.t += 1.0
    s.threads["1"] = 600_000_000  # 0.6 s of that second ready to run, without a CPU
    assert abs(c.now() - start - 0.4) < 1e-9
    assert c.waited() == 0.6


def test_without_schedstat_it_is_wall_time():
    s, c = scripted()
    start = c.now()
    s.t += 2.5
    assert c.now() - start == 2.5 and c.waited() == 0.0


def test_threads_waiting_side_by_side_never_count_more_than_the_interval_allows():
    s, c = scripted()
    c.now()
    s.t += 0.6
    s.threads.update({"1": 400_000_000, "2": 400_000_000, "3": 400_000_000})  # 1.2 s in 0.6 s
    c.now()
    assert c.waited() == 0.4  # (1 - 1/CAP) of the interval


def test_an_ended_thread_keeps_its_wait_and_a_reused_id_counts_afresh():
    s, c = scripted()
    c.now()
    s.t += 1.0
    s.threads["7"] = 300_000_000
    c.now()
    s.t += 1.0
    del s.threads["7"]  # the thread ended: what it waited stays left out
    c.now()
    assert c.waited() == 0.3
    s.t += 1.0
    s.threads["7"] = 100_000_000  # a new thread with the old id, lower figure: all of it is new
    c.now()
    assert c.waited() == 0.4


def test_it_never_runs_slower_than_a_third_of_wall_time():
    """The bound that keeps a worker inside its step bound on a machine that gives it no CPU."""
    s, c = scripted()
    start = c.now()
    for _ in range(100):
        s.t += 1.0
        s.threads["1"] = s.threads.get("1", 0) + 1_000_000_000  # all of each second waiting
        c.now()
    assert abs(c.now() - start - 100 / clock.CAP) < 1e-6


def test_an_idle_start_earns_no_credit_for_a_budget_later():
    """The floor holds per budget: ten idle seconds first do not let a later second of waiting
    stop the clock (a 1 s budget would then last 10 s of wall time, not 3)."""
    s, c = scripted()
    c.now()
    s.t += 10.0  # idle: no wait
    start = c.now()
    for _ in range(100):
        s.t += 0.01
        s.threads["1"] = s.threads.get("1", 0) + 10_000_000  # every moment waiting
        c.now()
    assert c.now() - start >= 1.0 / clock.CAP - 1e-9


def test_it_never_goes_back():
    s, c = scripted()
    seen = [c.now()]
    for step in range(50):
        s.t += 0.004  # reads every REFRESH only: the wait lands at once, after time given
        s.threads["1"] = s.threads.get("1", 0) + (3_000_000 if step % 2 else 0)
        seen.append(c.now())
    assert seen == sorted(seen)


def test_the_real_schedstat_is_read_and_moves_under_load():
    """On this kernel: a busy loop beside more busy processes than CPUs waits for a CPU, and the
    clock says so (a loaded CI runner is where the budgets used to be cut)."""
    assert str(threading.get_native_id()) in clock.thread_waits()  # this thread, among this process's
    with busy(4):
        c = clock.Clock()
        wall = time.monotonic()
        while time.monotonic() - wall < 1.0:
            c.now()
        assert c.waited() > 0.05
