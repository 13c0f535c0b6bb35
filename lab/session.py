"""One module installed on one target, as every front end uses it: `nsslab run` (lab.runner),
the pytest plugin (lab.plugin) and the benchmarks. open() loads, builds and installs the
module and runs the gates; run() runs checks, each once, side by side; close() uninstalls.
A module may be opened again after close() (the plugin switches modules on one target):
what already ran is kept, only the install is redone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path

from lab import elf, progress
from lab.checks import GATES, ORDER, REGISTRY, Context
from lab.errors import LabError
from lab.install import setup
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
        self.pool: ThreadPoolExecutor | None = None
        self.mine: object | None = None  # the target's install record while it is this module's
        self.generation = 0  # each install's; a check of an install closed under it is dropped
        self.pending: dict[str, Future[CheckResult]] = {}
        self.lock = threading.Lock()  # results arrive from the pool's threads

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
        """This module is what the target has installed now (another module may share the target)."""
        return self.ctx is not None and self.mine is not None and self.ctx.target.installed is self.mine

    def open(self) -> bool:
        """Installs the module and runs the gates (once). False, with report.error set, when
        the module could not be loaded, built, installed or read: nothing else can run."""
        if self.report.error:
            return False
        if self.installed:
            return True
        self.opened_at = time.monotonic()
        target = None
        try:
            module = self.ctx.module if self.ctx else self.prepare()
            progress.phase(self.key, "installing")
            target = get_target(self.spec, self.keep)
            target.install(module)
            self.mine = target.installed
            self.report.setup = setup(module, self.mine.module_path)
            if self.ctx is None:  # a library that is no ELF file is found out here
                info = elf.inspect(module.library)
                self.ctx = Context(target, module, info, step_timeout=self.step_timeout)
            self.ctx.target = target  # a target closed in between (a VM destroyed) is made again
            for check_id in GATES:
                if check_id not in self.results:
                    self.keep_result(announced(self.key, check_id, self.ctx, self.gates()))
                    loaded = check_id == "load" and self.results["load"].status == "pass"
                    if loaded and not module.has_expectations:
                        discover(self.ctx)
        except Exception as e:  # one line per module, whatever went wrong; the others still run
            why = str(e) if isinstance(e, LabError) else f"internal error: {type(e).__name__}: {e}"
            self.report.error = why
            self.report.seconds += time.monotonic() - self.opened_at
            self.opened_at = None
            if target is not None and self.mine is not None and target.installed is self.mine:
                target.uninstall()  # nothing will run on it: it must not stay behind
            self.mine = None
            progress.done(self.key, f"ERROR: {why}")
            return False
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
        with self.lock:
            self.results[result.id] = result
            self.report.checks = [self.results[c] for c in ORDER if c in self.results]

    def start(self, ids: list[str], lanes: int = 0) -> None:
        """Starts the checks IDS not run or running yet, up to LANES at once (0: as many as the
        target allows), the longest first so the lanes end together; result() waits for one."""
        unknown = [c for c in ids if c not in REGISTRY]
        if unknown:
            raise LabError(f"unknown checks {unknown}; known: {', '.join(ORDER)}")
        if not self.open():
            return
        todo = [c for c in dict.fromkeys(ids) if c not in self.results and c not in self.pending]
        if self.pool is None:
            lanes = min(lanes, self.target.lanes) if lanes else self.target.lanes
            self.pool = ThreadPoolExecutor(max_workers=max(1, lanes), thread_name_prefix="check")
        gates = self.gates()
        if todo:
            total = len(set(self.results) | set(self.pending) | set(todo))
            progress.phase(self.key, f"running {len(todo)} checks", total=total)
        for c in sorted(todo, key=LONGEST_FIRST.get):
            self.pending[c] = self.pool.submit(self.run_one, c, gates, self.generation)

    def run_one(self, check_id: str, gates: list[CheckResult], generation: int) -> CheckResult:
        progress.check_started(self.key, check_id)
        result = run_check(check_id, self.ctx, gates)
        if generation == self.generation:  # not a check cut off by close() (Ctrl-C, teardown)
            self.keep_result(result)
            progress.check_done(self.key, result)  # a cut-off check's "error" is not its verdict
        return result

    def result(self, check_id: str) -> CheckResult:
        """CHECK_ID's result: run now unless start() began it (each check is bounded itself)."""
        if check_id in self.results:
            return self.results[check_id]
        if check_id not in self.pending:
            self.start([check_id])
        if self.report.error:
            return CheckResult("error", self.report.error, id=check_id)
        future = self.pending.get(check_id)
        if future is None:
            return self.results[check_id]
        try:
            return future.result()
        except CancelledError:
            return CheckResult("error", "the module's run ended before this check ran", id=check_id)

    def wait(self) -> None:
        """Lets the checks started finish (before another module takes the target)."""
        for check_id in list(self.pending):
            self.result(check_id)

    def run(self, ids: list[str], lanes: int = 0) -> list[CheckResult]:
        """The results of the checks IDS, in that order, run side by side (see start()).

        Checks cannot disturb each other's verdicts: each runs its own probe processes (their
        scratch files are unique), claims a hang only from stillness plus the kind of wait (a
        starved process is runnable, never still), and a timing claim carries its own control
        measured in the same conditions."""
        self.start(ids, lanes)
        return [self.result(c) for c in ids]

    def close(self) -> None:
        """Uninstalls (safe to call twice, and a no-op when another module holds the target
        now); the services' records go into the report. Checks still running (Ctrl-C) end
        with the install: their next command is refused, and what they return is dropped."""
        if self.pool:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        self.generation += 1
        cut = [c for c in self.pending if c not in self.results]
        self.pending = {c: f for c, f in self.pending.items() if c in self.results}
        if not self.installed:
            self.mine = None
            return
        target = self.ctx.target
        try:
            target.uninstall()
        finally:
            self.mine = None
            self.report.services = [{k: v for k, v in s.items() if k != "log"} for s in target.services]
            if self.opened_at is not None:
                self.report.seconds += time.monotonic() - self.opened_at
                self.opened_at = None
            said = f"{self.report.verdict.upper()} ({self.report.seconds:.1f} s)"
            if cut:  # Ctrl-C or SIGTERM: the verdict is only the finished checks'
                said = f"cut off with {len(cut)} check(s) unfinished (the finished ones: {said})"
            progress.done(self.key, said)


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
