"""The plugin's state in one pytest process (the controller, or one xdist worker): the modules
installed on targets, which checks this process will run, and teardown.

A target holds one module at a time: a module stays installed until another one needs its
target or the session ends, so a suite of one module installs it once, and author tests and
check items of that module share the install."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab import progress
from lab.checks import GATES
from lab.errors import LabError
from lab.proc import trap, untrap
from lab.report.evidence import write_check
from lab.results import CheckResult, ModuleReport
from lab.session import ModuleSession
from lab.targets import close_all, state

Key = tuple[str, str]  # (module path, target spec)


@dataclass(frozen=True)
class Options:
    targets: list[str]  # one spec per machine (expanded)
    modules: list[str]  # what nss_host and nss_lab are parametrized over
    step_timeout: float = 20.0
    keep: bool = False
    expect: bool = True  # judge against each manifest's [expect]
    report_dir: Path = Path("nsslab-report")
    html: Path | None = None


@dataclass
class Lab:
    options: Options
    prefetch: bool  # start all of a module's planned checks at its first item (see planned)
    planned: dict[Key, list[str]] = field(default_factory=dict)  # the check items this process runs
    sessions: dict[Key, ModuleSession] = field(default_factory=dict)
    holding: dict[str, Key] = field(default_factory=dict)  # target spec -> the module installed there
    started: set[Key] = field(default_factory=set)
    reported: set[Key] = field(default_factory=set)  # modules whose check items ran here
    shown: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # the progress display
    swept: bool = False
    signals: dict[int, Any] | None = None  # the handlers trap() replaced, once armed
    say: Callable[[str], None] | None = None  # where a target's long steps are told (see arm)

    def arm(self) -> None:
        """From now on SIGTERM unwinds like Ctrl-C, and a target's long steps (a VM booting, a
        root being built) are told between pytest's lines: only once the lab has work in this
        run, so a pytest run of someone else's tests keeps its signals and output as they were."""
        if self.signals is None:
            self.signals = trap()
        if self.say:  # once
            self.shown.enter_context(progress.shown(progress.Steps(self.say)))
            self.say = None

    def disarm(self) -> None:
        untrap(self.signals or {})
        self.signals = None

    def session(self, path: str, spec: str) -> ModuleSession:
        """PATH's session on SPEC, installed (the module installed there before is removed)."""
        key = (path, spec)
        self.arm()
        if not self.swept:  # before the first install: what a killed run left goes
            self.swept = True
            for line in state.sweep():
                print(f"nsslab: removed what a killed run left: {line}")
        if key not in self.sessions:
            self.sessions[key] = ModuleSession(path, spec, self.options.step_timeout, self.options.keep)
        session = self.sessions[key]
        holder = self.holding.get(spec)
        if holder and holder != key:
            other = self.sessions[holder]
            other.wait()
            other.close()
        self.holding[spec] = key
        session.open()
        return session

    def result(
        self, path: str, spec: str, check_id: str, item: bool = False
    ) -> tuple[CheckResult, ModuleSession]:
        """CHECK_ID's result. The first check item of a module starts the module's planned
        checks side by side, so the others are waited for, not run, when their items come
        (nss_lab.check() runs only its own: under xdist the module may be another worker's)."""
        key = (path, spec)
        done = self.sessions.get(key)
        if done and check_id in done.results:  # a verdict already in: no install for it
            result, session = done.results[check_id], done
        else:
            session = self.session(path, spec)
            if item and self.prefetch and key not in self.started:
                self.started.add(key)
                session.start(self.planned.get(key, [check_id]))
            result = session.result(check_id)
        if item:
            self.reported.add(key)
        write_check(session.report, result, self.options.report_dir)
        return result, session

    def opened(self, path: str, spec: str) -> ModuleSession:
        """For nss_host and nss_lab: the session, or a LabError saying why it could not open."""
        session = self.session(path, spec)
        if session.report.error:
            raise LabError(session.report.error)
        return session

    def reports(self) -> list[ModuleReport]:
        """The modules whose check items ran here, as the run's reports (an [expect] entry of
        a check that did not run, deselected with -k, is left out: it was not judged)."""
        out = []
        for key in self.reported:
            report = self.sessions[key].report
            ran = {c.id for c in report.checks} - set(GATES)
            expect = {k: v for k, v in report.expect.items() if k in ran or k in GATES}
            out.append(ModuleReport(**{**vars(report), "expect": expect}))
        return sorted(out, key=lambda r: (r.target, r.name))

    def close(self) -> list[str]:
        """Uninstalls every module and ends every target, a second Ctrl-C included (each is
        bounded); the errors, one line each."""
        errors = []
        try:
            for session in self.sessions.values():
                try:
                    session.close()
                except BaseException as e:  # the next one must still be removed
                    errors.append(f"{session.report.name} on {session.report.target}: {e!r}")
            self.holding.clear()
        finally:
            errors += close_all()
        return errors


LAB = pytest.StashKey[Lab]()  # config.stash[LAB]: this process's Lab
