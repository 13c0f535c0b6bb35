"""One module installed on one target, as every front end uses it: `nsslab run` (lab.runner),
the pytest plugin (lab.plugin) and the benchmarks. open() loads, builds and installs the
module and runs the gates; run() runs checks, each once, side by side; close() uninstalls.
A module may be opened again after close() (the plugin switches modules on one target):
what already ran is kept, only the install is redone."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab import elf, progress
from lab.checks import GATES, ORDER, REGISTRY, Context
from lab.errors import LabError
from lab.module import Module, User, ensure_built, load
from lab.results import CheckResult, ModuleReport
from lab.targets import get_target, shown
from lab.targets.target import Target

# Where a check goes in the queue when checks run side by side: the long ones first.
LONGEST_FIRST = dict.fromkeys(ORDER, 9) | {
    "login-paths": 0, "threads": 1, "tab-completion": 2, "fork-child": 3, "keys": 4, "growth": 5, "setxid": 6,
}  # fmt: skip


class ModuleSession:
    def __init__(
        self,
        path: str | Path,
        target_spec: str = "sandbox",
        step_timeout: float = 20.0,
        keep: bool = False,
        only: list[str] | None = None,
    ) -> None:
        self.path, self.spec, self.keep, self.step_timeout = path, target_spec, keep, step_timeout
        self.only = only
        self.report = ModuleReport(name=Path(path).name, library=str(path), target=shown(target_spec))
        self.results: dict[str, CheckResult] = {}
        self.ctx: Context | None = None
        self.opened_at: float | None = None

    @property
    def target(self) -> Target:
        assert self.ctx, "open() first"
        return self.ctx.target

    @property
    def key(self) -> str:
        """What the progress display calls this module's work: `clab on sandbox`."""
        return f"{self.report.name} on {self.report.target}"

    @property
    def installed(self) -> bool:
        return self.ctx is not None and self.ctx.target.installed is not None

    def open(self) -> bool:
        """Installs the module and runs the gates (once). False, with report.error set, when
        the module could not be loaded, built or installed: nothing else can run."""
        if self.report.error:
            return False
        if self.installed:
            return True
        self.opened_at = time.monotonic()
        try:
            module = self.ctx.module if self.ctx else self.prepare()
            progress.phase(self.key, "installing")
            target = get_target(self.spec, self.keep)
            target.install(module)
        except Exception as e:  # one line per module, whatever went wrong; the others still run
            why = str(e) if isinstance(e, LabError) else f"internal error: {type(e).__name__}: {e}"
            self.report.error = why
            self.report.seconds += time.monotonic() - self.opened_at
            return False
        if self.ctx is None:
            self.ctx = Context(target, module, elf.inspect(module.library), step_timeout=self.step_timeout)
        for check_id in GATES:
            if check_id not in self.results:
                self.keep_result(announced(self.key, check_id, self.ctx, self.gates()))
                loaded = check_id == "load" and self.results["load"].status == "pass"
                if loaded and not module.has_expectations:
                    discover(self.ctx)
        return True

    def prepare(self) -> Module:
        module = load(self.path)
        self.report.name, self.report.library = module.name, str(module.library)
        unknown = set(module.expect) - set(ORDER)
        if unknown:
            raise LabError(f"{module.manifest}: [expect] names unknown checks {sorted(unknown)}")
        only = self.only
        self.report.expect = {k: v for k, v in module.expect.items() if not only or k in only or k in GATES}
        ensure_built(module)
        return module

    def gates(self) -> list[CheckResult]:
        return [self.results[g] for g in GATES if g in self.results]

    def keep_result(self, result: CheckResult) -> None:
        self.results[result.id] = result
        self.report.checks = [self.results[c] for c in ORDER if c in self.results]

    def run(self, ids: list[str], lanes: int = 0) -> list[CheckResult]:
        """The results of the checks IDS, in that order: those not run yet run now, up to
        LANES at once (0: as many as the target allows)."""
        unknown = [c for c in ids if c not in REGISTRY]
        if unknown:
            raise LabError(f"unknown checks {unknown}; known: {', '.join(ORDER)}")
        if not self.open():
            return [CheckResult("error", self.report.error or "", id=c) for c in ids]
        todo = [c for c in ids if c not in self.results]
        lanes = min(lanes, self.target.lanes) if lanes else self.target.lanes
        progress.phase(self.key, f"running {len(todo)} checks", total=len(set(self.results) | set(todo)))
        for result in side_by_side(todo, self.ctx, self.gates(), lanes, self.key):
            self.keep_result(result)
        return [self.results[c] for c in ids]

    def check(self, check_id: str) -> CheckResult:
        return self.run([check_id], 1)[0]

    def close(self) -> None:
        """Uninstalls (safe to call twice); the services' records go into the report."""
        if self.ctx is None:
            progress.done(self.key, f"{self.report.verdict.upper()} ({self.report.seconds:.1f} s)")
            return
        target = self.ctx.target
        try:
            target.uninstall()
        finally:
            self.report.services = [{k: v for k, v in s.items() if k != "log"} for s in target.services]
            if self.opened_at is not None:
                self.report.seconds += time.monotonic() - self.opened_at
                self.opened_at = None
            progress.done(self.key, f"{self.report.verdict.upper()} ({self.report.seconds:.1f} s)")


def side_by_side(
    ids: list[str], ctx: Context, gates: list[CheckResult], lanes: int, key: str = ""
) -> list[CheckResult]:
    """Runs the checks IDS, up to LANES at once, and returns their results in IDS' order.

    Checks cannot disturb each other's verdicts: each runs its own probe processes (their
    scratch files are unique), claims a hang only from stillness plus the kind of wait (a
    starved process is runnable, never still), and a timing claim carries its own control
    measured in the same conditions. The longest start first, so the lanes end together.
    KEY: what the progress display calls the module's work (`clab on sandbox`)."""
    if lanes <= 1 or len(ids) <= 1:
        return [announced(key, c, ctx, gates) for c in ids]
    pool = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="check")
    try:
        futures = {c: pool.submit(announced, key, c, ctx, gates) for c in sorted(ids, key=LONGEST_FIRST.get)}
        return [futures[c].result() for c in ids]
    finally:
        # On Ctrl-C the running checks' commands end with the target (uninstall kills them).
        pool.shutdown(wait=False, cancel_futures=True)


def announced(key: str, check_id: str, ctx: Context, gates: list[CheckResult]) -> CheckResult:
    """run_check, told to the progress display: running from when it starts, then its verdict."""
    progress.check_started(key, check_id)
    result = run_check(check_id, ctx, gates)
    progress.check_done(key, result)
    return result


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
