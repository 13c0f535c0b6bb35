"""The plugin's state in one pytest process (the controller, or one xdist worker): the modules
installed on targets, which checks this process will run, and teardown.

A target holds one module at a time: a module stays installed until another one needs its
target or the session ends, so a suite of one module installs it once, and author tests and
check items of that module share the install."""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from lab.errors import LabError
from lab.report.evidence import write_check
from lab.results import CheckResult
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


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, unwound as pytest unwinds Ctrl-C: sessionfinish still tears down."""


@dataclass
class Lab:
    options: Options
    prefetch: bool  # start all of a module's planned checks at its first item (see planned)
    planned: dict[Key, list[str]] = field(default_factory=dict)  # the check items this process runs
    sessions: dict[Key, ModuleSession] = field(default_factory=dict)
    holding: dict[str, Key] = field(default_factory=dict)  # target spec -> the module installed there
    started: set[Key] = field(default_factory=set)
    signals: dict[int, Any] = field(default_factory=dict)
    shown: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # the progress display

    def session(self, path: str, spec: str) -> ModuleSession:
        """PATH's session on SPEC, installed (the module installed there before is removed)."""
        key = (path, spec)
        if not self.sessions:
            self.begin()
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

    def result(self, path: str, spec: str, check_id: str) -> tuple[CheckResult, ModuleSession]:
        """CHECK_ID's result; the first item of a module starts the module's planned checks
        side by side, so the others are waited for, not run, when their items come."""
        session = self.session(path, spec)
        if self.prefetch and (path, spec) not in self.started:
            self.started.add((path, spec))
            session.start(self.planned.get((path, spec), [check_id]))
        result = session.result(check_id)
        write_check(session.report, result, self.options.report_dir)
        return result, session

    def opened(self, path: str, spec: str) -> ModuleSession:
        """For nss_host and nss_lab: the session, or a LabError saying why it could not open."""
        session = self.session(path, spec)
        if session.report.error:
            raise LabError(session.report.error)
        return session

    def begin(self) -> None:
        """Before the first install: what a killed run left goes, and SIGTERM unwinds."""
        for line in state.sweep():
            print(f"nsslab: removed what a killed run left: {line}")
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self.signals[sig] = signal.signal(sig, interrupt)

    def close(self) -> list[str]:
        """Uninstalls every module and ends every target; the errors, one line each."""
        errors = []
        for session in self.sessions.values():
            try:
                session.close()
            except Exception as e:  # the next one must still be removed
                errors.append(f"{session.report.name} on {session.report.target}: {e}")
        self.holding.clear()
        errors += close_all()
        for sig, handler in self.signals.items():
            signal.signal(sig, handler)
        self.signals.clear()
        return errors


LAB = pytest.StashKey[Lab]()  # config.stash[LAB]: this process's Lab


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)
