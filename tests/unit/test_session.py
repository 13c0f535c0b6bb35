"""ModuleSession on a fake target: what the plugin relies on when modules share a target,
checks are asked for twice, a run is cut off, or the library is no ELF file."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab import progress, session
from lab.results import CheckResult


class FakeTarget:
    lanes = 2

    def __init__(self) -> None:
        self.installed: object | None = None
        self.installs: list[str] = []
        self.services: list[dict] = []

    def install(self, module) -> None:
        self.installed = SimpleNamespace(module_path=f"/lib/libnss_{module.name}.so.2")  # as Installed
        self.installs.append(module.name)

    def uninstall(self) -> None:
        self.installed = None


@pytest.fixture
def target(monkeypatch):
    fake = FakeTarget()
    monkeypatch.setattr(session, "get_target", lambda spec, keep=False: fake)
    monkeypatch.setattr(session.elf, "inspect", lambda path: SimpleNamespace(path=path))
    monkeypatch.setattr(session.ModuleSession, "prepare", lambda self: module(Path(self.path).name))
    for gate in ("elf", "load"):
        monkeypatch.setitem(session.REGISTRY, gate, lambda ctx: CheckResult("pass", "ok"))
    return fake


def module(name: str) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        library=Path(f"/x/libnss_{name}.so.2"),
        has_expectations=True,
        databases=["passwd"],
        packages=[],  # these four: what lab.install.setup reads
        files={},
        modes={},
        services=[],
    )


def counting(monkeypatch, check_id: str, seconds: float = 0.0) -> list[int]:
    runs: list[int] = []

    def check(ctx):
        runs.append(1)
        time.sleep(seconds)
        return CheckResult("pass", f"run {len(runs)}")

    monkeypatch.setitem(session.REGISTRY, check_id, check)
    return runs


def test_a_check_asked_for_twice_runs_once(target, monkeypatch):
    runs = counting(monkeypatch, "lookup", 0.1)
    one = session.ModuleSession("a")
    assert [r.reason for r in one.run(["lookup", "lookup"])] == ["run 1", "run 1"]
    assert one.result("lookup").reason == "run 1" and len(runs) == 1
    one.close()


def test_two_modules_on_one_target_each_install_and_close_only_their_own(target, monkeypatch):
    counting(monkeypatch, "lookup")
    a, b = session.ModuleSession("a"), session.ModuleSession("b")
    assert a.open() and a.installed
    a.close()
    assert b.open() and b.installed and not a.installed
    assert a.open() and a.installed  # A again: installed again, not taken for B's install
    assert not b.installed
    b.close()  # B's install is gone already: closing it must not remove A's
    assert a.installed and target.installs == ["a", "b", "a"]
    a.close()
    assert target.installed is None


def test_a_check_cut_off_by_close_does_not_overwrite_the_next_run(target, monkeypatch):
    started = threading.Event()
    runs = iter([("cut off", 0.5), ("second", 0.05)])  # the cut-off run returns last

    def check(ctx):
        reason, seconds = next(runs)
        started.set()
        time.sleep(seconds)
        return CheckResult("pass", reason)

    monkeypatch.setitem(session.REGISTRY, "threads", check)
    one = session.ModuleSession("a")
    one.start(["threads"])
    assert started.wait(5)
    one.close()  # Ctrl-C or a module switch while the check runs
    again = one.result("threads")  # reopens, runs it again
    time.sleep(0.6)  # the first run has returned by now
    assert again.reason == "second" and one.results["threads"].reason == "second"


def test_a_check_cut_off_by_close_is_not_logged_and_the_module_line_says_it_was_cut(target, monkeypatch):
    """A CI log once said `slowlab on sandbox: lookup error` and then `PASS` after a SIGTERM:
    neither was a verdict. The cut-off check says nothing; the module's line says it was cut."""
    started = threading.Event()

    def check(ctx):
        started.set()
        time.sleep(0.3)
        return CheckResult("error", "the target's install is gone")

    monkeypatch.setitem(session.REGISTRY, "threads", check)
    log = io.StringIO()
    with progress.shown(progress.Plain(log)):
        one = session.ModuleSession("a")
        one.start(["threads"])
        assert started.wait(5)
        one.close()  # SIGTERM while the check runs
        time.sleep(0.5)  # the cut-off check has returned by now
    lines = log.getvalue().splitlines()
    assert not any("threads" in line for line in lines[lines.index("a on sandbox: running 1 checks") + 1 :])
    assert lines[-1].startswith("a on sandbox: cut off with 1 check(s) unfinished (the finished ones: PASS")


def test_a_library_that_is_no_elf_file_is_one_error_and_is_not_left_installed(target, monkeypatch):
    def broken(path):
        raise session.LabError(f"{path}: not an ELF file")

    monkeypatch.setattr(session.elf, "inspect", broken)
    one = session.ModuleSession("a")
    results = [one.result(c) for c in ("lookup", "threads", "keys")]
    assert {r.status for r in results} == {"error"} and "not an ELF file" in results[0].reason
    assert target.installs == ["a"] and target.installed is None  # tried once, removed
    one.close()
