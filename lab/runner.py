"""Runs the checks on modules in targets and collects the verdicts (`nsslab run`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from lab import config
from lab.checks import GATES, ORDER
from lab.module import ensure_built, load
from lab.results import ModuleReport
from lab.session import ModuleSession
from lab.targets import close

__all__ = ["ModuleReport", "run_matrix", "run_module"]


def run_module(
    path: str | Path,
    target_spec: str = "sandbox",
    only: list[str] | None = None,
    step_timeout: float = 20.0,
    keep: bool = False,
    lanes: int = 0,
) -> ModuleReport:
    """Every check (or ONLY those) on one module in one target; the module is uninstalled after."""
    session = ModuleSession(path, target_spec, step_timeout, keep, only)
    try:
        if session.open():
            session.run([c for c in ORDER if c not in GATES and (not only or c in only)], lanes)
    finally:
        session.close()
    return session.report


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
