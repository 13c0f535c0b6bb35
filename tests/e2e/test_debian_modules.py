"""Real third-party modules from Debian 12, unpacked (never installed) and checked in the
sandbox: extrausers, db, systemd, and sss behind a real sssd started as a [[services]] entry.
Only load and lookup are asserted; the other checks' verdicts are the lab's findings."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from lab.runner import ModuleReport, run_module
from tests.conftest import MODULES, checks, outside_the_lab

pytestmark = pytest.mark.sandbox

HOST_FILES = ("/etc/nsswitch.conf", "/var/lib/dpkg/status")
DEBIAN = ("extrausers", "db", "systemd", "systemd-empty", "sss", "ldapd", "cache", "unknown")


def digests() -> dict[str, str]:
    """The files a maintainer script would write, by content, and the whole of /etc by
    name, size and mtime (a postinst that adds a user or a PAM line changes them)."""
    out = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in HOST_FILES}
    tree = hashlib.sha256()
    for root, dirs, files in os.walk("/etc"):
        dirs.sort()
        for name in sorted(files):
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            tree.update(f"{root}/{name} {st.st_size} {st.st_mtime_ns}\n".encode())
    out["/etc (names, sizes, mtimes)"] = tree.hexdigest()
    return out


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
    """Each module once: its report, and the host's files before and after."""
    cache: dict[str, tuple[ModuleReport, None, dict, dict]] = {}

    def run(name: str):
        if name not in cache:
            before = digests()
            report = run_module(MODULES / "debian" / name)
            cache[name] = (report, None, before, digests())
        return cache[name]

    return run


@pytest.mark.parametrize("name", DEBIAN)
def test_debian_module_gets_the_verdicts_its_ground_truth_shows(debian_run, name):
    """Each manifest's [expect] is what its groundtruth.sh showed by hand (see the comments
    there); every other check passes or skips: db and sss pass everything, systemd only warns."""
    report, _, _, _ = debian_run(name)
    assert report.error is None, report.error
    c = checks(report)
    assert [x.id for x in report.checks if x.status == "error"] == []
    assert c["load"].status == "pass", c["load"].reason
    assert report.unexpected() == []
    for result in report.checks:  # every finding says who breaks, and how to see it
        if result.status in ("warn", "fail"):
            assert result.impact, (result.id, result.reason)


def test_extrausers_listing_defect_is_shown_through_glibc_with_db_as_the_control(debian_run):
    """The same three users and groups: libnss-db lists them all through glibc, extrausers
    none, because its first entry (1.1 KiB) does not fit glibc's first 1024-byte buffer."""
    bad = checks(debian_run("extrausers")[0])["enumeration"]
    good = checks(debian_run("db")[0])["enumeration"]
    assert bad.status == "fail" and good.status == "pass"
    assert bad.reproduce == "getent -s extrausers passwd"
    assert "lists 0 of the module's 3 entries" in bad.reason
    assert "the module's own listing with a 65536-byte buffer has all 3" in bad.control
    problems = {p["text"].split(" ")[0]: p["status"] for p in bad.details["problems"]}
    assert problems["glibc's"] == "fail"


def test_the_reproducer_shows_the_defect_without_the_lab(debian_run):
    """extrausers' enumeration reproducer, `getent -s extrausers passwd`, run with only what
    its set-up lines name: it prints nothing, where libnss-db with the same users prints all
    three (the control); what the report tells a maintainer is enough to see it."""
    bad = debian_run("extrausers")[0]
    assert checks(bad)["enumeration"].reproduce == "getent -s extrausers passwd"
    assert bad.needs(checks(bad)["enumeration"]) == bad.setup
    lost = outside_the_lab(bad, "getent -s extrausers passwd")
    assert lost.returncode == 0 and lost.stdout == "", (lost.stdout, lost.stderr)
    assert outside_the_lab(bad, "getent -s extrausers passwd deb1").stdout.startswith("deb1:x:20001:")
    good = outside_the_lab(debian_run("db")[0], "getent -s db passwd")
    assert [line.split(":")[0] for line in good.stdout.splitlines()] == ["deb0", "deb1", "deb2"], good.stderr


def test_empty_membership_dropins_lose_the_group_in_initgroups_and_filled_ones_keep_it(debian_run):
    """nss-systemd 252 with the same records twice: each USER:GROUP.membership file empty
    (systemd#37945: skipped as masked) loses debextra in `id -G`, with `getent group` as the
    control; holding "{}" it keeps it. Both shown again without the lab, from the set-up lines."""
    bad_report, good_report = debian_run("systemd-empty")[0], debian_run("systemd")[0]
    bad, good = checks(bad_report), checks(good_report)
    assert bad["initgroups"].status == "fail" and "returned UNAVAIL (errno 3)" in bad["initgroups"].reason
    assert "through glibc, `id -G deb1` misses the declared gid(s) [20050]" in bad["initgroups"].reason
    assert bad["initgroups"].control.startswith("`getent -s systemd group 20050` lists the group")
    assert bad["lookup"].reason.startswith("`id -G deb1` (initgroups): got [20000], want [20000, 20050]")
    assert good["initgroups"].status == "pass" and good["lookup"].status == "pass"
    assert bad["initgroups"].reproduce == "id -G deb1; getent -s systemd group 20050"
    lost = outside_the_lab(bad_report, "id -G deb1; getent -s systemd group 20050")
    assert lost.stdout.split("\n")[:2] == ["20000", "debextra:x:20050:deb1"], lost.stderr
    kept = outside_the_lab(good_report, "id -G deb1")
    assert kept.stdout.split() == ["20000", "20050"], kept.stderr


@pytest.mark.parametrize("name", DEBIAN)
def test_host_files_are_untouched(debian_run, name):
    _, _, before, after = debian_run(name)
    assert before == after


def test_sssd_was_started_ready_and_stopped(debian_run):
    report, _, _, _ = debian_run("sss")
    assert report.error is None, report.error
    (sssd,) = report.services  # the target's records after uninstall, as the run left them
    assert sssd["name"] == "sssd" and sssd["ready_seconds"] is not None and sssd["ready_seconds"] < 30
    assert "exit" in sssd, "uninstall stops the service"
    assert processes("sssd") == []  # sssd, sssd_be, sssd_nss: none left running
    assert not Path("/run/sssd.pid").exists()  # its state stayed in the sandbox


def test_modules_without_services_start_none(debian_run):
    report, _, _, _ = debian_run("extrausers")
    assert report.error is None and report.services == []


def test_a_big_directory_is_judged_by_what_the_manifest_declares(tmp_path):
    """5,000 users and a 5,000-member group (75 KiB with its pointer array: more than the
    lab's first 64 KiB buffer), 2 users declared: no fail for the undeclared entries, the
    big group listed after a grown buffer, and reasons that give counts, not 5,000 names."""
    import sys

    make = MODULES / "debian" / "bigdir" / "make.py"
    subprocess.run([sys.executable, str(make), "5000", str(tmp_path / "big")], check=True, timeout=60)
    report = run_module(tmp_path / "big")
    assert report.error is None, report.error
    c = checks(report)
    listing = c["enumeration"].details["listings"]
    assert len(listing["passwd"]["plain"]["names"]) == 5002
    assert listing["group"]["plain"]["names"] == ["debgrp", "allstaff"]
    assert listing["interleaved"]["names"]["group"] == ["debgrp", "allstaff"]
    assert c["lookup"].status == "pass" and c["consistency"].status == "pass"
    assert c["enumeration"].status == "warn"  # only the lab's 8-byte start loses entries (see extrausers)
    assert all(len(x.reason) < 2000 for x in report.checks), [len(x.reason) for x in report.checks]
