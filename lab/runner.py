"""Runs the checks on one module in one target and collects the verdicts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lab import config, elf
from lab.checks import GATES, ORDER, REGISTRY, Context
from lab.errors import LabError
from lab.module import Module, User, ensure_built, load
from lab.results import OK, CheckResult, worst
from lab.targets import close, get_target, shown

# Where a check goes in the queue when checks run side by side: the long ones first.
LONGEST_FIRST = dict.fromkeys(ORDER, 9) | {
    "login-paths": 0, "threads": 1, "tab-completion": 2, "fork-child": 3, "keys": 4, "growth": 5, "setxid": 6,
}  # fmt: skip


@dataclass
class ModuleReport:
    name: str
    library: str
    target: str
    checks: list[CheckResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    expect: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)  # wall clock: matrix runs overlap
    # the module's [[services]] as run in the target: name, pid, ready_seconds, exit, log tail
    services: list[dict] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        return worst(c.status for c in self.checks)

    @property
    def passed(self) -> bool:
        return not self.error and all(c.status in OK for c in self.checks)

    def unexpected(self) -> list[str]:
        """Where the verdicts differ from the manifest's [expect]; unlisted checks must pass or skip."""
        if self.error:
            return [f"error: {self.error}"]
        out = []
        for c in self.checks:
            want = self.expect.get(c.id)
            if (want and c.status != want) or (not want and c.status not in ("pass", "skip")):
                out.append(f"{c.id} {c.status}, expected {want or 'pass'}")
        ran = {c.id for c in self.checks}
        return out + [f"{k} did not run, expected {v}" for k, v in self.expect.items() if k not in ran]


def run_module(
    path: str | Path,
    target_spec: str = "sandbox",
    only: list[str] | None = None,
    step_timeout: float = 20.0,
    keep: bool = False,
    lanes: int = 0,
) -> ModuleReport:
    started = time.monotonic()
    report = ModuleReport(name=Path(path).name, library=str(path), target=shown(target_spec))
    try:
        module = load(path)
        report.name, report.library = module.name, str(module.library)
        unknown = set(module.expect) - set(ORDER)
        if unknown:
            raise LabError(f"{module.manifest}: [expect] names unknown checks {sorted(unknown)}")
        report.expect = {k: v for k, v in module.expect.items() if not only or k in only or k in GATES}
        ensure_built(module)
        info = elf.inspect(module.library)
        target = get_target(target_spec, keep)
        target.install(module)
    except Exception as e:  # one line per module, whatever went wrong; the others still run
        report.error = str(e) if isinstance(e, LabError) else f"internal error: {type(e).__name__}: {e}"
        report.seconds = time.monotonic() - started
        return report
    try:
        ctx = Context(target, module, info, step_timeout=step_timeout)
        for check_id in GATES:
            report.checks.append(run_check(check_id, ctx, report.checks))
            if check_id == "load" and report.checks[-1].status == "pass" and not module.has_expectations:
                discover(ctx)
        rest = [c for c in ORDER if c not in GATES and (not only or c in only)]
        report.checks += side_by_side(
            rest, ctx, report.checks, min(lanes, target.lanes) if lanes else target.lanes
        )
    finally:
        target.uninstall()
        report.services = [
            {k: v for k, v in s.items() if k != "log"} for s in getattr(target, "services", [])
        ]
    report.seconds = time.monotonic() - started
    return report


def run_matrix(
    paths: list[str],
    targets: list[str],
    on_report: Callable[[ModuleReport], None],
    slots: int = 1,
    **options,
) -> tuple[list[ModuleReport], list[str]]:
    """Every module on every target: each target runs the modules in order, up to SLOTS
    targets at once (VMs boot and check in parallel, each closed as soon as it is done so
    its memory goes to the next). Returns the reports in (target, module) order and the
    targets that would not close."""
    if len(targets) > 1 and slots > 1:
        for path in paths:  # every target installs the same build; make it once, up front
            try:
                ensure_built(load(path))
            except Exception:  # run_module reports it, once per target
                pass
    done: dict[str, list[ModuleReport]] = {}
    errors: list[str] = []
    gate, printing = threading.Semaphore(max(1, slots)), threading.Lock()

    # targets side by side share the cores: each runs fewer of its checks at once
    at_once = min(max(1, slots), len(targets))
    if at_once > 1 and not options.get("lanes"):
        options["lanes"] = max(1, round(config.CHECK_LANES / at_once))

    stopping = threading.Event()  # Ctrl-C: a target thread must not go on to the next module

    def one_target(spec: str) -> None:
        with gate:
            for path in paths:
                if stopping.is_set():
                    return
                report = run_module(path, spec, **options)
                done.setdefault(spec, []).append(report)
                with printing:
                    on_report(report)
            if error := close(spec):
                errors.append(error)

    if len(targets) == 1 or slots <= 1:
        for spec in targets:
            one_target(spec)
    else:
        threads = [threading.Thread(target=one_target, args=(t,), name=t, daemon=True) for t in targets]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            stopping.set()  # the caller's close_all() ends the targets these threads still hold
            raise
    return [r for spec in targets for r in done.get(spec, [])], errors


def side_by_side(ids: list[str], ctx: Context, gates: list[CheckResult], lanes: int) -> list[CheckResult]:
    """Runs the checks IDS, up to LANES at once, and returns their results in IDS' order.

    Checks cannot disturb each other's verdicts: each runs its own probe processes (their
    scratch files are unique), claims a hang only from stillness plus the kind of wait (a
    starved process is runnable, never still), and a timing claim carries its own control
    measured in the same conditions. The longest start first, so the lanes end together."""
    if lanes <= 1 or len(ids) <= 1:
        return [run_check(c, ctx, gates) for c in ids]
    pool = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="check")
    try:
        futures = {c: pool.submit(run_check, c, ctx, gates) for c in sorted(ids, key=LONGEST_FIRST.get)}
        return [futures[c].result() for c in ids]
    finally:
        # On Ctrl-C the running checks' commands end with the target (uninstall kills them).
        pool.shutdown(wait=False, cancel_futures=True)


def run_check(check_id: str, ctx: Context, done: list[CheckResult]) -> CheckResult:
    for gate in done:
        if gate.id == "elf" and gate.details.get("blocker"):
            why = gate.details.get("gate", "glibc refuses this library (see elf)")
            return CheckResult("skip", why, id=check_id)
        # a module that loaded and answered, but misbehaved doing it (stdout), still gets judged
        if gate.id == "load" and gate.status != "pass" and not gate.details.get("mapped"):
            # not always a failed dlopen: a load that killed its caller or left a daemon stops here too
            return CheckResult(
                "skip",
                f"load {gate.status}: nothing else is judged ({gate.cause or 'see load'})",
                id=check_id,
            )
    started = time.monotonic()
    try:
        result = REGISTRY[check_id](ctx)
    except LabError as e:
        result = CheckResult("error", str(e))
    except Exception as e:  # a bug in the lab must not hide the other checks' verdicts
        result = CheckResult("error", f"internal error in the lab: {type(e).__name__}: {e}")
    result.id, result.seconds = check_id, round(time.monotonic() - started, 3)
    return result


def discover(ctx: Context) -> None:
    """A bare library declares nobody: find the users it serves by enumeration, so the
    fork and shell checks have someone to ask for (they are not compared to anything)."""
    module: Module = ctx.module
    local = ctx.target.local_users()
    result = ctx.target.scenario([ctx.step("discover", [{"fn": "getpwall"}])])[0]
    found = next((e.get("value") or [] for e in result["events"] if e.get("ev") == "call"), [])
    module.users = [User(**u) for u in found if u["name"] not in local]
    module.discovered = bool(module.users)
