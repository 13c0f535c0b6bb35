"""erange's sweep plan (lab/probe/entrypoints.py: sweep) on a scripted clock: a sample planned
from one stalled call is planned again from three calls' median, and a really slow module
keeps its sample, said as such."""

from __future__ import annotations

import pytest

from lab.probe import entrypoints as ep

VALUE = {"name": "pyama", "passwd": "x", "gecos": "", "dir": "/home/pyama", "shell": "/bin/bash"}


class Script:
    """The probe's clock, moved only by the calls: each costs COSTS[i] (the last one repeats)."""

    def __init__(self, costs: list[float]) -> None:
        self.t, self.costs, self.calls = 0.0, costs, 0

    def now(self) -> float:
        return self.t

    def attempt(self, size: int) -> ep.Answer:
        self.t += self.costs[min(self.calls, len(self.costs) - 1)]
        self.calls += 1
        if size >= ep.answer_size(VALUE):
            return ep.Answer(1, 0, dict(VALUE), 0)
        return ep.Answer(-2, ep.ERANGE, None, 0)


def run(monkeypatch, costs: list[float], first_call: float, budget: float) -> dict:
    script = Script(costs)
    monkeypatch.setattr(ep, "clock", script)
    reference = ep.Answer(1, 0, dict(VALUE), 0)
    return ep.sweep("getpwnam_r('pyama')", reference, script.attempt, first_call, budget)


def test_a_sample_planned_from_one_stalled_call_becomes_the_whole_sweep(monkeypatch):
    # the reference call took 0.5 s (a stall); every sweep call takes 20 us: 2 s is plenty
    got = run(monkeypatch, [20e-6], first_call=0.5, budget=2.0)
    assert not got["sampled"] and not got.get("cut_short")
    assert got["tried"] == got["estimate"] + 2  # every size from 0 to the estimate, and the roomy one
    assert got["fitted"] == got["needed"] == ep.answer_size(VALUE)


def test_a_module_slow_in_every_call_keeps_its_sample(monkeypatch):
    got = run(monkeypatch, [0.3], first_call=0.3, budget=2.0)
    assert got["sampled"] and got["tried"] < got["estimate"]


@pytest.mark.parametrize("stalls", [1, 2])
def test_the_median_of_three_is_not_fooled_by_one_stall_in_the_three(monkeypatch, stalls):
    costs = [0.5] * stalls + [20e-6] * (3 - stalls)
    got = run(monkeypatch, costs, first_call=0.5, budget=2.0)
    assert got["sampled"] is (stalls == 2)  # two of three stalled: the median says slow, so a sample
