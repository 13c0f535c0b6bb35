from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.proc import trap, untrap
from lab.runner import ModuleReport, run_module

pytest_plugins = ["pytester"]  # tests/e2e/test_plugin.py runs the plugin as an author would
SIGNALS = pytest.StashKey[dict]()
ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / "nss_modules"
# the machine's caches (root filesystems, boxes, .debs, Go's build cache), as seen before
# pytester points HOME at its own directory
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


@pytest.fixture(autouse=True)
def _machine_caches_for_pytester(request, monkeypatch):
    """A pytest run that pytester starts uses this machine's caches: with HOME in its tmp dir
    it would debootstrap its own root filesystems (45 s each) and rebuild Go from nothing."""
    if "pytester" in request.fixturenames:
        monkeypatch.setenv("XDG_CACHE_HOME", str(CACHE))
        monkeypatch.setenv("NSSLAB_CACHE", os.environ.get("NSSLAB_CACHE", str(CACHE / "nsslab")))


def pytest_configure(config):
    """SIGTERM to the suite (a CI runner cancelling the job) unwinds like Ctrl-C, so the run's
    finally blocks remove the sandbox a test holds (killed outright, its workdir stays)."""
    config.stash[SIGNALS] = trap()


def pytest_unconfigure(config):
    untrap(config.stash.get(SIGNALS, {}))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="the sandbox mounts in a private namespace: run as root")
        for item in items:
            if "sandbox" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def lab_run():
    """Runs a module once per session; tests share the (expensive) verdicts."""
    cache: dict[str, ModuleReport] = {}

    def run(name: str) -> ModuleReport:
        if name not in cache:
            cache[name] = run_module(MODULES / name)
        return cache[name]

    return run


def checks(report: ModuleReport) -> dict:
    return {c.id: c for c in report.checks}
