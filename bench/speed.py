#!/usr/bin/env python3
"""Prints how fast the lab answers (figures, not assertions):

- time to verdict per built-in module (whole `nsslab run` of one module, build excluded);
- time to declare a hang: a forked child of a golab-loaded process, N times;
- the evidence for each hang (gdb attach to the hung child, before the kill; goal <= 2 s)
  and for a crash (the step re-run under gdb);
- the slow module's (300 ms per lookup) wall time for the same step, which must pass;
- how verdict time grows with a directory's size: libnss-extrausers serving 100, 1,000,
  10,000 and 50,000 users and a group of all of them (nss_modules/debian/bigdir/make.py);
- what the caller-side checks (issue 13: side effects, descriptors, growth, the result
  contract, hostile keys, identity, hazards) add to clab's time to verdict; goal <= 3 s.

Run as root: .venv/bin/python bench/speed.py [N]   (or: bench/speed.py caller-checks)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab import elf
from lab.checks import Context
from lab.module import ensure_built, load
from lab.runner import run_module
from lab.targets.sandbox import Sandbox

MODULES = Path(__file__).resolve().parent.parent / "nss_modules"


def figures(values: list[float]) -> str:
    return (
        f"min {min(values):.3f} s, median {statistics.median(values):.3f} s, "
        f"max {max(values):.3f} s (n={len(values)})"
    )


def fork_step(name: str, repeat: int) -> list[dict]:
    module = load(MODULES / name)
    ensure_built(module)
    sandbox = Sandbox()
    sandbox.install(module)
    try:
        ctx = Context(sandbox, module, elf.inspect(module.library))
        call = {"fn": "getpwall"}  # setpwent/getpwent_r/endpwent, what compgen -u does
        return sandbox.scenario(
            [ctx.step(f"bench {i}", [call], before=[ctx.first_lookup()], fork=True) for i in range(repeat)]
        )
    finally:
        sandbox.uninstall()


CALLER_CHECKS = ("side-effects", "descriptors", "growth", "result-contract", "keys", "identity", "hazards")


def main() -> None:
    if sys.argv[1:] == ["caller-checks"]:
        caller_checks(3)
        return
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    print("time to verdict (one module, all checks, sandbox):")
    for name in ("golab", "clab", "slowlab"):
        ensure_built(load(MODULES / name))
        started = time.monotonic()
        report = run_module(MODULES / name)
        print(
            f"  {name:8} {report.verdict:6} {time.monotonic() - started:6.2f} s  "
            + ", ".join(f"{c.id} {c.seconds:.2f}" for c in report.checks)
        )
    golab = fork_step("golab", repeat)
    hangs = [r for r in golab if r["outcome"] == "hang"]
    print(f"\ntime to declare a hang (golab, forked child enumerating): {len(hangs)}/{len(golab)} hung")
    if hangs:
        print(f"  step start to verdict: {figures([r['hang']['declared_after'] for r in hangs])}")
        print(f"  stuck before declared: {figures([r['hang']['stuck_seconds'] for r in hangs])}")
        print(f"  evidence (gdb, before the kill): {figures([r['hang']['evidence_seconds'] for r in hangs])}")
    crashes = [c for name in ("abortlab", "segvlab") for c in run_module(MODULES / name).checks if c.evidence]
    print("\nevidence for a crash (the step re-run under gdb):")
    for c in crashes:
        print(f"  {c.id}: {c.cause}, gdb re-run {c.evidence['raw'].get('seconds')} s")
    slow = fork_step("slowlab", repeat)
    print(
        f"\nslow module (300 ms per lookup), same step: "
        f"{sum(r['outcome'] == 'exited' and r['code'] == 0 for r in slow)}/{len(slow)} answered"
    )
    print(f"  wall time: {figures([r['seconds'] for r in slow])}")
    big_directories((100, 1_000, 10_000, 50_000))
    caller_checks(3)


def caller_checks(runs: int) -> None:
    """The seconds the caller-side checks take within clab's whole run, RUNS times."""
    print(f"\ncaller-side checks on clab (goal: <= 3 s added to the verdict), {runs} runs:")
    added, whole = [], []
    for _ in range(runs):
        started = time.monotonic()
        report = run_module(MODULES / "clab")
        whole.append(time.monotonic() - started)
        mine = [c for c in report.checks if c.id in CALLER_CHECKS]
        added.append(sum(c.seconds for c in mine))
        print(f"  {report.verdict:5} " + ", ".join(f"{c.id} {c.status} {c.seconds:.2f}" for c in mine))
    print(f"  added: {figures(added)}")
    print(f"  whole verdict: {figures(whole)}")


def big_directories(sizes: tuple[int, ...]) -> None:
    """Verdict time per directory size, and the checks that take longest."""
    print("\nverdict time by directory size (libnss-extrausers, a group of every user):")
    make = MODULES / "debian" / "bigdir" / "make.py"
    for count in sizes:
        with tempfile.TemporaryDirectory(prefix="nsslab-bench-") as tmp:
            subprocess.run([sys.executable, str(make), str(count), tmp], check=True, timeout=120)
            started = time.monotonic()
            report = run_module(tmp)
            took = time.monotonic() - started
        slowest = sorted(report.checks, key=lambda c: -c.seconds)[:3]
        print(
            f"  {count:>6} users: {report.verdict:5} {took:6.2f} s  "
            + ", ".join(f"{c.id} {c.seconds:.2f}" for c in slowest)
            + (f"  error: {report.error}" if report.error else "")
        )


if __name__ == "__main__":
    main()
