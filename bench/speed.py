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
  contract, hostile keys, identity, hazards) add to clab's time to verdict;
- `verdicts N [LANES ...]`: clab, golab and slowlab N times each, checks one at a time and side by side
  (goals: clab <= 3 s, golab <= 8 s, slowlab <= 40 s), with every hang's declared-after time
  and no hang on slowlab;
- `matrix`: clab, golab and execstacklab on the three root filesystems (`--target rootfs`)
  and on the three VMs (`--target vagrant`), side by side, and the ratio; goal: rootfs < 60 s;
- `plugin N`: clab and golab through `nsslab run --expect`, through the pytest plugin in one
  process, with `-n 2 --dist loadgroup` and with plain `-n 2`, N times each, and the outcomes.

Run as root: .venv/bin/python bench/speed.py [N] | caller-checks | verdicts [N] | matrix [--no-vm]
             | plugin [N]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab import config, elf
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
    if sys.argv[1:2] == ["verdicts"]:
        lanes = [int(x) for x in sys.argv[3:]] or [1, config.CHECK_LANES]
        verdicts(int(sys.argv[2]) if len(sys.argv) > 2 else 3, lanes)
        return
    if sys.argv[1:2] == ["matrix"]:
        matrix(vms="--no-vm" not in sys.argv)
        return
    if sys.argv[1:2] == ["plugin"]:
        plugin(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
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


def hang_times(report, key: str = "declared_after") -> list[float]:
    """A figure of every hang whose evidence the checks kept: declared_after (from the step's
    start: the worker's start-up, the module's load, the fork, then the stillness window) or
    stuck_seconds (the stillness proven before it was declared)."""
    out = []
    for c in report.checks:
        raw = (c.evidence or {}).get("raw") or {}
        if isinstance(raw, dict) and raw.get(key) is not None:
            out.append(raw[key])
    return out


def verdicts(runs: int, lanes_tried: list[int]) -> None:
    """Time to verdict of clab, golab and slowlab, RUNS times, with each number of lanes."""
    goals = {"clab": 3, "golab": 8, "slowlab": 40}
    for name in goals:
        ensure_built(load(MODULES / name))
    for lanes in lanes_tried:
        print(f"\ntime to verdict, sandbox, {lanes} check(s) at a time, {runs} runs (goal in brackets):")
        for name, goal in goals.items():
            took, declared, stuck, statuses = [], [], [], set()
            for _ in range(runs):
                started = time.monotonic()
                report = run_module(MODULES / name, lanes=lanes)
                took.append(time.monotonic() - started)
                declared += hang_times(report)
                stuck += hang_times(report, "stuck_seconds")
                statuses |= {
                    f"{c.id}:{c.status}" for c in report.checks if c.status in ("hang", "crash", "error")
                }
            print(f"  {name:8} [{goal:>2} s] {figures(took)}")
            if declared:
                print(f"           hangs declared after: {figures(declared)}; still for: {figures(stuck)}")
            print(f"           hang/crash/error: {', '.join(sorted(statuses)) or 'none'}")


def matrix(vms: bool) -> None:
    """The glibc matrix on root filesystems and on VMs, one after the other, same modules."""
    modules = [str(MODULES / n) for n in ("clab", "golab", "execstacklab")]
    for n in modules:
        ensure_built(load(n))
    took = {}
    for target in ("rootfs", "vagrant") if vms else ("rootfs",):
        with tempfile.TemporaryDirectory(prefix="nsslab-bench-") as tmp:
            started = time.monotonic()
            argv = [sys.executable, "-m", "lab.cli", "run", "--expect", "--target", target, *modules]
            done = subprocess.run([*argv, "--json", f"{tmp}/m.json", "--report-dir", tmp],
                                  capture_output=True, text=True, timeout=7200)  # fmt: skip
            took[target] = time.monotonic() - started
            doc = (
                json.loads(Path(tmp, "m.json").read_text())
                if Path(tmp, "m.json").exists()
                else {"modules": []}
            )
        verdicts = {(m["target"], m["name"]): m["verdict"] for m in doc["modules"]}
        print(f"--target {target}: {took[target]:.1f} s, rc {done.returncode}")
        for (where, name), verdict in sorted(verdicts.items()):
            print(f"  {where:22} {name:13} {verdict}")
    if "vagrant" in took:
        print(f"VMs / root filesystems: {took['vagrant'] / took['rootfs']:.1f}x")


def plugin(runs: int) -> None:
    """The same two modules' 44 checks through each front end, from a fresh process each time."""
    manifests = [str(MODULES / n / "module.toml") for n in ("clab", "golab")]
    for n in manifests:
        ensure_built(load(n))
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *manifests]
    ways = {
        "nsslab run --expect": [sys.executable, "-m", "lab.cli", "run", "--expect", "-q", *manifests],
        "pytest": pytest,
        "pytest -n 2 --dist loadgroup": [*pytest, "-n", "2", "--dist", "loadgroup"],
        "pytest -n 2": [*pytest, "-n", "2"],
    }
    print("clab + golab, 44 checks, sandbox, from a fresh process:")
    for way, argv in ways.items():
        took, said = [], ""
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="nsslab-bench-") as tmp:
                started = time.monotonic()
                where = "--report-dir" if "lab.cli" in argv else "--nss-report-dir"
                done = subprocess.run(
                    [*argv, where, tmp], capture_output=True, text=True, timeout=900, cwd=tmp
                )
                took.append(time.monotonic() - started)
            said = f"rc {done.returncode}; " + (done.stdout.strip().splitlines() or [""])[-1].strip("= ")
        print(f"  {way:30} {figures(took)}  ({said})")


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
