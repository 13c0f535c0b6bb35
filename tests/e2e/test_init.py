"""`nsslab init LIB`: a first manifest from what the library lists in the sandbox. The one it
writes for clab holds clab's users and groups and passes `nsslab run`; bad input, a listing
that hangs or crashes, and an existing manifest are one line and exit 1, nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.module import ensure_built, load
from lab.runner import run_module
from tests.conftest import MODULES, ROOT

BOUND = 60  # seconds: init itself must end long before this (its listing bound is 20 s, or --step-timeout)


def nsslab(*args: str, timeout: float = BOUND) -> subprocess.CompletedProcess:
    """The CLI as a user runs it (the worktree's lab: cwd first on sys.path)."""
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsslab: "), done.stderr
    return lines[0]


def built_copy(tmp_path: Path, name: str) -> Path:
    """The module's library built in nss_modules/, copied into TMP_PATH (init writes beside it)."""
    module = load(MODULES / name)
    ensure_built(module)
    return Path(shutil.copy(module.library, tmp_path / module.library.name))


def declared(manifest: Path) -> tuple[list[dict], list[dict]]:
    """[[users]] and [[groups]] as parsed data (members as sets: their order is the module's)."""
    data = tomllib.loads(manifest.read_text())
    groups = [g | {"members": sorted(g.get("members", []))} for g in data.get("groups", [])]
    return data.get("users", []), groups


def mapped_anywhere(fragment: str) -> list[int]:
    """Processes that still have a library named like FRAGMENT mapped (a worker left behind)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if fragment in Path(f"/proc/{pid}/maps").read_text():
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.sandbox
def test_init_on_clab_writes_its_users_and_groups_and_the_manifest_passes(tmp_path):
    library = built_copy(tmp_path, "clab")
    shutil.copy(MODULES / "clab" / "users.db", tmp_path / "users.db")
    done = nsslab("init", str(library), "--file", f"/etc/clab.db={tmp_path / 'users.db'}")
    assert done.returncode == 0, done.stderr
    manifest = tmp_path / "module.toml"
    assert done.stdout.splitlines() == [
        f"wrote {manifest}",
        "clab: 3 users, 3 groups, 3 shadow names (no hashes written); "
        "databases passwd, group, shadow, initgroups",
        f"next: nsslab run {manifest}",
    ]
    assert declared(manifest) == declared(MODULES / "clab" / "module.toml")
    data = tomllib.loads(manifest.read_text())
    assert data["name"] == "clab" and data["library"] == "libnss_clab.so.2"
    assert data["databases"] == ["passwd", "group", "shadow", "initgroups"]
    assert data["files"] == {"/etc/clab.db": "users.db"}
    assert "shadow" not in data and "expect" not in data and "enumerable" not in data
    assert "$6$nsslab$" not in manifest.read_text()  # pyama's hash: never copied
    module = load(manifest)
    assert module.library == tmp_path / "libnss_clab.so.2"
    assert [u.name for u in module.users] == ["pyama", "taro", "hanako"]
    report = run_module(manifest, "sandbox")
    assert report.passed, [
        (c.id, c.status, c.reason) for c in report.checks if c.status not in ("pass", "skip")
    ]
    assert {c.id: c.status for c in report.checks}["lookup"] == "pass"  # compared to what init wrote


@pytest.mark.sandbox
def test_an_existing_manifest_is_kept_without_force_and_replaced_with_it(tmp_path):
    library = built_copy(tmp_path, "clab")
    manifest = tmp_path / "module.toml"
    manifest.write_text("# mine\n")
    line = one_line_error(nsslab("init", str(library)))
    assert line == f"nsslab: {manifest} exists; --force overwrites it"
    assert manifest.read_text() == "# mine\n"
    # with --force, and without /etc/clab.db in the sandbox: clab lists nobody, and init says so
    done = nsslab("init", str(library), "--force")
    assert done.returncode == 0, done.stderr
    assert "clab: 0 users, 0 groups, 0 shadow names" in done.stdout
    assert "note: no users listed: add [[users]] by hand" in done.stdout
    data = tomllib.loads(manifest.read_text())
    assert "users" not in data and "groups" not in data and "files" not in data
    text = manifest.read_text()
    assert "# [files]" in text and "strace -f -e trace=openat getent passwd SOMEONE" in text
    assert "# [[users]]" in text and "# [expect]" in text and "# [[services]]" in text
    assert load(manifest).users == []


@pytest.mark.sandbox
def test_a_library_without_a_listing_gets_enumerable_false(tmp_path):
    library = built_copy(tmp_path, "noenumlab")  # clab's code without set/get/end*ent
    done = nsslab("init", str(library), "--file", f"/etc/clab.db={MODULES / 'clab' / 'users.db'}")
    assert done.returncode == 0, done.stderr
    assert (
        "noenumlab: 0 users, 0 groups; databases passwd, group, shadow, initgroups; no listing" in done.stdout
    )
    data = tomllib.loads((tmp_path / "module.toml").read_text())
    assert data["enumerable"] is False and "users" not in data
    assert data["files"] == {"/etc/clab.db": os.path.relpath(MODULES / "clab" / "users.db", tmp_path)}
    assert load(tmp_path / "module.toml").enumerable is False


def test_a_file_not_named_like_a_module_is_one_line(tmp_path):
    for name in ("clab.so", "libnss_clab.so.3", "nss_clab.so.2"):
        (tmp_path / name).write_bytes(b"\x7fELF")
        line = one_line_error(nsslab("init", str(tmp_path / name)))
        assert line == f"nsslab: {tmp_path / name}: glibc only loads modules named libnss_<service>.so.2"
    assert not (tmp_path / "module.toml").exists()


def test_a_library_that_is_no_elf_file_or_is_missing_is_one_line(tmp_path):
    (tmp_path / "libnss_text.so.2").write_text("hello")
    assert one_line_error(nsslab("init", str(tmp_path / "libnss_text.so.2"))).endswith(": not an ELF file")
    assert one_line_error(nsslab("init", str(tmp_path / "libnss_gone.so.2"))).endswith(": no such file")
    assert not (tmp_path / "module.toml").exists()


# A module whose listing deadlocks (a mutex it already holds, in setpwent) or crashes
# (getpwent_r): what init must turn into one line, not a hang or a traceback.
BAD_LISTING = r"""
#include <nss.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
enum nss_status _nss_SVC_getpwnam_r(const char *n, struct passwd *p, char *b, size_t l, int *e)
{ (void)n; (void)p; (void)b; (void)l; *e = 2; return NSS_STATUS_NOTFOUND; }
enum nss_status _nss_SVC_setpwent(int stayopen)
{
	(void)stayopen;
#ifdef HANG
	pthread_mutex_lock(&lock);
	pthread_mutex_lock(&lock);
#endif
	return NSS_STATUS_SUCCESS;
}
enum nss_status _nss_SVC_getpwent_r(struct passwd *p, char *b, size_t l, int *e)
{
	(void)p; (void)b; (void)l;
#ifdef CRASH
	raise(SIGSEGV);
#endif
	*e = 2;
	return NSS_STATUS_NOTFOUND;
}
enum nss_status _nss_SVC_endpwent(void) { return NSS_STATUS_SUCCESS; }
"""


@pytest.mark.sandbox
@pytest.mark.parametrize(
    "plant, said",
    [
        ("HANG", "hang while listing passwd (getpwall): getpwall() in the parent never returned: "),
        ("CRASH", "crash while listing passwd (getpwall): process killed by SIGSEGV during getpwall()"),
    ],
)
def test_a_listing_that_hangs_or_crashes_is_one_line_and_writes_nothing(tmp_path, plant, said):
    if not shutil.which("cc"):
        pytest.skip("needs a C compiler")
    name = f"init{plant.lower()}lab"
    (tmp_path / "bad.c").write_text(BAD_LISTING.replace("SVC", name))
    library = tmp_path / f"libnss_{name}.so.2"
    cc = ["cc", "-shared", "-fPIC", f"-D{plant}", f"-Wl,-soname,{library.name}", "-o", library]
    subprocess.run([*cc, tmp_path / "bad.c", "-lpthread"], check=True)
    started = time.monotonic()
    line = one_line_error(nsslab("init", str(library)))
    assert time.monotonic() - started < 20  # a provable hang is declared in about 0.5 s
    assert line.startswith(f"nsslab: {name}: {said}") and line.endswith("; no manifest written")
    if plant == "HANG":
        assert "stuck in futex" in line and f"libnss_{name}.so.2 mapped" in line
    assert not (tmp_path / "module.toml").exists()
    assert mapped_anywhere(f"libnss_{name}.so.2") == []  # the worker and its sandbox are gone


@pytest.mark.sandbox
def test_a_planted_module_that_never_loads_ends_init_at_the_step_bound(tmp_path):
    """ctorhanglab's constructor waits for a daemon socket forever (sleep(1) in a loop: slow,
    not provably stuck), so the first lookup, here the listing, never returns."""
    library = built_copy(tmp_path, "ctorhanglab")
    started = time.monotonic()
    line = one_line_error(nsslab("init", str(library), "--step-timeout", "3"))
    assert time.monotonic() - started < 30
    assert line.startswith(
        "nsslab: ctorhanglab: hang while listing passwd (getpwall): getpwall() in the parent gave no answer "
        "within 3 s"
    ), line
    assert not (tmp_path / "module.toml").exists()
    assert mapped_anywhere("libnss_ctorhanglab.so.2") == []


@pytest.mark.sandbox
def test_a_debian_module_extrausers_with_quotes_in_a_gecos(tmp_path):
    """libnss-extrausers from Debian 12, unpacked by the lab (cached after the first run), over
    files of our own: a gecos with quotes, a backslash and a '#', a group without members, and
    a real-looking hash in its shadow file that must not reach the manifest."""
    from lab import packages

    try:
        tree = packages.fetch(["libnss-extrausers"])
    except LabError as e:
        pytest.skip(f"libnss-extrausers not available: {e}")
    library = Path(shutil.copy(packages.resolve(tree, "/usr/lib/libnss_extrausers.so.2"), tmp_path))
    gecos = 'Deb "One", back\\slash #1'
    (tmp_path / "passwd").write_text(
        f"deb1:x:20001:20000:{gecos}:/home/deb1:/bin/bash\ndeb2:x:20002:20000::/home/deb2:/bin/sh\n"
    )
    (tmp_path / "group").write_text("debgrp:x:20000:deb1,deb2\nnobodyhere:x:20001:\n")
    (tmp_path / "shadow").write_text("deb1:$6$secret$hashhash:19700:0:99999:7:::\ndeb2:!:19700::::::\n")
    files = [f"--file=/var/lib/extrausers/{f}={tmp_path / f}" for f in ("passwd", "group", "shadow")]
    done = nsslab("init", str(library), *files)
    assert done.returncode == 0, done.stderr
    assert (
        "extrausers: 2 users, 2 groups, 2 shadow names (no hashes written); databases passwd, group, shadow"
        in (done.stdout)
    )
    manifest = tmp_path / "module.toml"
    users, groups = declared(manifest)
    assert users == [
        {
            "name": "deb1",
            "uid": 20001,
            "gid": 20000,
            "gecos": gecos,
            "home": "/home/deb1",
            "shell": "/bin/bash",
        },
        {"name": "deb2", "uid": 20002, "gid": 20000, "gecos": "", "home": "/home/deb2", "shell": "/bin/sh"},
    ]
    assert groups == [
        {"name": "debgrp", "gid": 20000, "members": ["deb1", "deb2"]},
        {"name": "nobodyhere", "gid": 20001, "members": []},
    ]
    assert "$6$secret" not in manifest.read_text()
    assert load(manifest).users[0].gecos == gecos


@pytest.mark.sandbox
def test_a_system_library_gets_its_manifest_in_the_current_directory(tmp_path):
    """glibc's own libnss_compat (libc6: on every Debian): nothing is written into /usr/lib;
    the manifest names the library by its absolute path and loads from where it was written."""
    library = Path("/usr/lib/x86_64-linux-gnu/libnss_compat.so.2")
    before = sorted(os.listdir(library.parent))
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "init", str(library)],
        cwd=tmp_path, capture_output=True, text=True, timeout=BOUND,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(library.parent)) == before
    data = tomllib.loads((tmp_path / "module.toml").read_text())
    assert data["library"] == str(library) and data["name"] == "compat"
    assert load(tmp_path / "module.toml").library == library


@pytest.mark.sandbox
def test_a_module_that_prints_on_stdout_gets_no_banner_taken_for_a_name(tmp_path):
    """stdoutlab (clab printing a debug line per lookup): the shadow names are clab's three,
    and a manifest named other than *.toml is refused (`nsslab run` would read it as a library)."""
    library = built_copy(tmp_path, "stdoutlab")
    db = f"/etc/clab.db={MODULES / 'clab' / 'users.db'}"
    line = one_line_error(nsslab("init", str(library), "--file", db, "--output", str(tmp_path / "m.txt")))
    assert line.endswith("m.txt: a manifest's name ends in .toml")
    done = nsslab("init", str(library), "--file", db)
    assert done.returncode == 0, done.stderr
    want = sorted(s["name"] for s in tomllib.loads((MODULES / "clab" / "module.toml").read_text())["shadow"])
    assert f", {len(want)} shadow names" in done.stdout
    text = (tmp_path / "module.toml").read_text()
    [said] = [line for line in text.splitlines() if line.startswith("# shadow: the module lists")]
    assert sorted(json.loads(said.split("name(s): ", 1)[1].rstrip("."))) == want
