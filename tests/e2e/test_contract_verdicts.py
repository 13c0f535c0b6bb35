"""Each planted contract or ELF defect is failed by exactly the check that targets it, with
a reason naming the defect; good modules (plain, slow, big groups) pass every check."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import checks

pytestmark = pytest.mark.sandbox

PLANTED = [
    # module, check, status, words the reason must contain
    ("overflowlab", "erange", "fail", "past the end of the buffer"),
    ("truncatelab", "erange", "fail", "with a truncated answer: members"),
    ("smallbuflab", "erange", "fail", "group everyone` exits 2 (no such entry)"),
    ("statuslab", "status-codes", "fail", "SUCCESS for an entry that does not exist"),
    ("rewindlab", "enumeration", "fail", "did not rewind"),
    ("interleavelab", "enumeration", "fail", "interleaved never end (guest-oslogin#160)"),
    ("nosetentlab", "enumeration", "crash", "getpwent_r() before any setpwent()"),
    ("enderrnolab", "enumeration", "fail", "ended with errno 34, not ENOENT"),
    ("skiplab", "enumeration", "fail", "group` (a 1024-byte buffer, doubled on ERANGE) lists 23"),
    ("consistlab", "consistency", "fail", "shell '/bin/bash' (listed '/bin/sh')"),
    ("growlab", "initgroups", "fail", "past the array's end instead of growing it"),
    ("racelab", "threads", "fail", "answered wrong (not thread-safe)"),
    ("shadowlab", "shadow", "fail", "sp_expire of pyama: 0 (the account expired on 1970-01-01"),
    ("noshadowlab", "shadow", "fail", 'password field "x" but no shadow source has pyama, taro, hanako'),
    ("tlslab", "elf", "fail", "dlopen in the target says: /usr/lib"),
    ("execstacklab", "elf", "fail", "executable stack (PT_GNU_STACK is RWX): glibc >= 2.41 refuses"),
    ("newglibclab", "elf", "fail", "version `GLIBC_2.99' not found"),
    ("needlab", "elf", "fail", "libnsslab_gone.so.1: cannot open shared object file"),
    ("noentrylab", "elf", "fail", "exports no _nss_noentrylab_* entry point"),
    ("ctorexit", "load", "crash", "process exited with status 1 inside getpwnam('pyama')"),
]


@pytest.mark.parametrize(("name", "check", "status", "words"), PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_defect_fails_exactly_its_check(lab_run, name, check, status, words):
    report = lab_run(name)
    got = checks(report)[check]
    assert got.status == status, got.reason
    assert words in got.reason, got.reason
    others = [
        (c.id, c.status, c.reason)
        for c in report.checks
        if c.id != check and c.status not in ("pass", "skip") and c.id not in report.expect
    ]
    assert others == []
    assert report.unexpected() == []  # and its manifest's [expect] says so


def test_static_tls_refusal_is_confirmed_and_gates_the_rest(lab_run):
    report = lab_run("tlslab")
    assert "cannot allocate memory in static TLS block" in checks(report)["elf"].reason
    assert [c.status for c in report.checks[1:]] == ["skip"] * (len(report.checks) - 1)


def test_crash_and_exit_in_the_module_are_diagnosed(lab_run):
    assert checks(lab_run("nosetentlab"))["enumeration"].cause == "segfault-in-module"
    load = checks(lab_run("ctorexit"))["load"]
    assert load.cause == "exit-in-module" and "constructor" in load.evidence["explanation"]


@pytest.mark.parametrize("name", ["clab", "biglab", "slowlab"])
def test_good_modules_pass_every_contract_check(lab_run, name):
    c = checks(lab_run(name))
    for check in ("elf", "status-codes", "erange", "enumeration", "consistency", "initgroups", "threads"):
        assert c[check].status == "pass", (check, c[check].reason)


def test_big_groups_are_exercised_and_pass(lab_run):
    c = checks(lab_run("biglab"))
    assert "incl. everyone with 250 members" in c["initgroups"].reason
    assert "grown correctly 3 time(s)" in c["initgroups"].reason  # pyama (22 groups), taro, hanako
    assert c["lookup"].status == "pass"  # `id -G pyama` through glibc: 23 gids


def test_shadow_is_checked_where_the_manifest_lists_it(lab_run):
    assert checks(lab_run("clab"))["shadow"].status == "pass"
    assert checks(lab_run("slowlab"))["shadow"].status == "pass"
    golab = checks(lab_run("golab"))["shadow"]  # no shadow database, and password fields "*"
    assert golab.status == "pass" and "need none" in golab.reason


def test_slow_module_gets_a_bounded_sampled_sweep(lab_run):
    erange = checks(lab_run("slowlab"))["erange"]
    assert erange.status == "pass" and "sampled, the module is slow" in erange.reason


def test_a_defect_no_real_caller_meets_is_a_warn_with_its_figures(lab_run):
    """zerobuflab answers NOTFOUND only for a 0-byte buffer (glibc never passes one): warn."""
    erange = checks(lab_run("zerobuflab"))["erange"]
    assert erange.status == "warn", erange.reason
    sweeps = erange.details["queries"]
    assert all(q["problems"]["status"]["largest"] == 0 for q in sweeps if q["problems"])
    # every size was tried up to the fit (the budget is the probe's own time, lab/probe/clock.py,
    # so a loaded machine does not cut the sweep to a sample), and the fit is the answer's size
    fitted = [q for q in sweeps if q.get("fitted")]
    assert fitted and not any(q.get("cut_short") or q.get("sampled") for q in sweeps)
    assert all(q["fitted"] <= q["needed"] + 8 for q in fitted)
    assert erange.impact.startswith("no real caller")


def test_a_fail_names_the_real_caller_and_its_reproducer_shows_it(lab_run, tmp_path):
    """smallbuflab: glibc's own getgrnam (1 KiB, doubled) reports the 250-member group missing;
    the reproducer script, run without the lab, prints NOTFOUND with the failing buffer."""
    from lab.report.evidence import write_scripts

    erange = checks(lab_run("smallbuflab"))["erange"]
    assert erange.status == "fail" and "exits 2 (no such entry)" in erange.reason
    [script] = write_scripts(erange, tmp_path)
    size = erange.reproduce.split()[2]
    assert int(size) >= 1024
    # the module reads /etc/biglab.db: give it one in a private mount namespace, as a maintainer's
    # machine would have it installed
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "nss_modules/biglab/users.db", etc / "biglab.db")
    line = f"mount -t overlay nsslab-test -o ro,lowerdir={etc}:/etc /etc && /usr/bin/python3 {script} {size}"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", line],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    assert f"with a {size}-byte buffer: NOTFOUND, errno 2" in done.stdout, done.stdout + done.stderr
