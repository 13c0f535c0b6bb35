"""Debian packages a manifest names, downloaded and unpacked into one tree, never installed.

`dpkg -i` would run maintainer scripts (libnss-sss's postinst edits nsswitch.conf,
libpam-sss's the PAM stack) and write /var/lib/dpkg/status. Here only `apt-get download`,
`apt-get install --download-only` (with a private archives dir) and `dpkg-deb -x` run: the
host's /etc and dpkg database stay as they were, and the sandbox overlays the tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from lab import config
from lab.errors import LabError
from lab.proc import bounded_run

# Debian 12 is merged-/usr (/lib -> usr/lib): a package's lib/ content really lives in usr/lib.
MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
STAMP = "nsslab-tree.json"  # written last: a tree without it is half-unpacked and redone


def cache_root() -> Path:
    if env := os.environ.get("NSSLAB_DEB_CACHE"):
        return Path(env)
    # Not under /var/cache: the sandbox overlays /var with the tree, and overlayfs refuses
    # a layer inside the directory it covers (ELOOP).
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nsslab" / "debs"


def key(names: list[str]) -> str:
    """One cache entry per set of names: `-`-joined when short, else a hash."""
    joined = "+".join(sorted(set(names)))
    return joined if len(joined) <= 80 else hashlib.sha256(joined.encode()).hexdigest()[:16]


def fetch(names: list[str], log: list[str] | None = None) -> Path:
    """The unpacked tree of NAMES and the dependencies the host lacks; cached, so a second
    call runs no apt at all. LOG receives what was done and how long it took."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise LabError("packages need apt-get and dpkg-deb (Debian or Ubuntu)")
    for name in names:
        if not PACKAGE_NAME.match(name):
            raise LabError(f"packages: {name!r} is not a Debian package name")
    entry = cache_root() / key(names)
    tree = entry / "tree"
    if (tree / STAMP).exists():
        return tree
    ensure_candidates(names)  # before any cache dir exists: a typo leaves nothing behind
    debs = entry / "debs"
    (debs / "partial").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    download(names, debs)
    got = sorted(debs.glob("*.deb"))
    fetched = time.monotonic()
    unpack(got, tree)
    (tree / STAMP).write_text(json.dumps({"packages": sorted(names), "debs": [d.name for d in got]}) + "\n")
    if log is not None:
        log.append(
            f"{len(got)} .deb(s) downloaded in {fetched - started:.1f} s, unpacked in "
            f"{time.monotonic() - fetched:.1f} s into {tree}"
        )
    return tree


def apt(argv: list[str], cwd: Path | None = None) -> tuple[int, str]:
    done = bounded_run(
        argv,
        config.APT,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # apt says why on either
        text=True,
    )
    return done.returncode, done.stdout or ""


def download(names: list[str], debs: Path) -> None:
    """The named packages always (one may be installed here already, like libnss-systemd),
    and, through apt's resolver, the dependencies this host does not have."""
    quiet = ["-q", "-o", "APT::Sandbox::User=root"]  # _apt cannot write a root-owned cache
    rc, out = apt(["apt-get", *quiet, "download", *names], cwd=debs)
    if rc != 0:
        raise LabError(f"`apt-get download {' '.join(names)}` failed: {last_error(out)}")
    rc, out = apt(
        [
            *("apt-get", *quiet, "install", "--download-only", "-y", "--no-install-recommends"),
            *("-o", f"Dir::Cache::archives={debs}", *names),
        ]
    )
    if rc != 0:
        raise LabError(f"downloading the dependencies of {' '.join(names)} failed: {last_error(out)}")


def ensure_candidates(names: list[str]) -> None:
    """`apt-get update` once, and only when apt knows no candidate for a name."""
    missing = without_candidate(names)
    if missing:
        rc, out = apt(["apt-get", "-q", "update"])
        if rc != 0:
            raise LabError(f"`apt-get update` failed: {last_error(out)}")
        missing = without_candidate(missing)
    if missing:
        raise LabError(f"no Debian package {', '.join(missing)} (apt knows no candidate)")


def without_candidate(names: list[str]) -> list[str]:
    _, out = apt(["apt-cache", "policy", *names])
    known = {
        m[1]
        for m in re.finditer(r"^(\S+?)(?::\w+)?:\n\s+Installed: .*\n\s+Candidate: (?!\(none\))", out, re.M)
    }
    return [n for n in names if n not in known]


def last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "W:")) and "unsandboxed" not in line]
    return (errors or lines or ["no output"])[-1]


def unpack(debs: list[Path], tree: Path) -> None:
    """`dpkg-deb -x` each into TREE (no maintainer script runs), then merged-/usr."""
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    for deb in debs:
        done = bounded_run(
            ["dpkg-deb", "-x", str(deb), str(tree)],
            config.UNPACK,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            raise LabError(f"`dpkg-deb -x {deb.name}` failed: {last_error(done.stderr)}")
    merge_usr(tree)


def merge_usr(tree: Path) -> None:
    """Moves TREE/lib, lib64, bin, sbin … into TREE/usr/, where a merged-/usr system keeps
    them (overlaying TREE/lib onto /lib would replace the host's /lib -> usr/lib symlink)."""
    for top in MERGED:
        source = tree / top
        if source.is_dir() and not source.is_symlink():
            move_into(source, tree / "usr" / top)
            source.rmdir()


def move_into(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            move_into(entry, target)
            entry.rmdir()
        else:
            if target.is_symlink() or target.exists():
                # both lib/x and usr/lib/x: the /usr one wins, as dpkg on merged-/usr would keep one
                continue
            os.replace(entry, target)


def resolve(tree: Path, path: str) -> Path:
    """PATH (absolute, as on the installed system) inside TREE, following symlinks in the
    tree, never on the host: an absolute link target is read relative to TREE."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] in MERGED:
        parts.insert(0, "usr")
    here, hops = tree, 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            here = here.parent if here != tree else tree
            continue
        nxt = here / part
        if nxt.is_symlink():
            hops += 1
            if hops > 40:
                raise LabError(f"packages: {path} loops through symlinks in the unpacked tree")
            link = os.readlink(nxt)
            rest = [p for p in link.split("/") if p and p != "."]
            if link.startswith("/"):
                here = tree
                if rest and rest[0] in MERGED:
                    rest.insert(0, "usr")
            parts = rest + parts
            continue
        here = nxt
    if not here.exists():
        raise LabError(f"packages: {path} is not in the unpacked packages (looked in {tree})")
    return here
