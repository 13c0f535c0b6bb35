"""Real third-party modules from Debian 12, unpacked (never installed) and checked in the
sandbox: extrausers, db, systemd, and sss behind a real sssd started as a [[services]] entry.
Only load and lookup are asserted; the other checks' verdicts are the lab's findings."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import lab.runner
from lab.runner import ModuleReport, run_module
from tests.conftest import MODULES, checks

pytestmark = pytest.mark.sandbox

HOST_FILES = ("/etc/nsswitch.conf", "/var/lib/dpkg/status")
DEBIAN = ("extrausers", "db", "systemd", "sss")


def digests() -> dict[str, str]:
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in HOST_FILES}


def processes(comm: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith(comm):
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def debian_run():
    """Each module once: its report, the target it ran in, the host's files before and after."""
    cache: dict[str, tuple[ModuleReport, object, dict, dict]] = {}

    def run(name: str):
        if name not in cache:
            seen = []
            real = lab.runner.get_target

            def recording(*args, **kwargs):
                seen.append(real(*args, **kwargs))
                return seen[-1]

            before = digests()
            lab.runner.get_target = recording  # to read target.services after the run
            try:
                report = run_module(MODULES / "debian" / name)
            finally:
                lab.runner.get_target = real
            cache[name] = (report, seen[0] if seen else None, before, digests())
        return cache[name]

    return run


@pytest.mark.parametrize("name", DEBIAN)
def test_debian_module_loads_and_answers_as_declared(debian_run, name):
    report, _, _, _ = debian_run(name)
    assert report.error is None, report.error
    c = checks(report)
    assert [x.id for x in report.checks if x.status == "error"] == []
    assert c["load"].status == "pass", c["load"].reason
    assert c["lookup"].status == "pass", c["lookup"].reason  # id, getent by name and id, as declared


@pytest.mark.parametrize("name", DEBIAN)
def test_host_files_are_untouched(debian_run, name):
    _, _, before, after = debian_run(name)
    assert before == after


def test_sssd_was_started_ready_and_stopped(debian_run):
    report, target, _, _ = debian_run("sss")
    assert report.error is None, report.error
    (sssd,) = target.services
    assert sssd["name"] == "sssd" and sssd["ready_seconds"] is not None and sssd["ready_seconds"] < 30
    assert "exit" in sssd, "uninstall stops the service"
    assert processes("sssd") == []  # sssd, sssd_be, sssd_nss: none left running
    assert not Path("/run/sssd.pid").exists()  # its state stayed in the sandbox


def test_modules_without_services_start_none(debian_run):
    _, target, _, _ = debian_run("extrausers")
    assert target.services == []
