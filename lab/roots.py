"""`nsslab rootfs build [PLATFORM]`: the Debian root filesystems the rootfs targets enter.

The same debootstrap as the boxes (lab.boxes), without kernel or boot: minbase plus bash,
bash-completion, python3, gdb and an sshd (the ssh target's tests log in to one). A tree is
built under a .partial name and renamed when complete, so a killed build is never mistaken
for a root; a root the user points at (a directory, or a tarball exported from a container
image) is used as it is.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
from pathlib import Path

from lab import boxes, progress
from lab.errors import LabError

CACHE = boxes.CACHE.parent / "rootfs"
INCLUDE = "openssh-server,procps,iproute2"
READY = ".nsslab-rootfs"  # written last: the tree is complete


def root_dir(platform: str) -> Path:
    return CACHE / platform


def present(platform: str) -> bool:
    return (root_dir(platform) / READY).exists()


def build(platform: str, force: bool = False) -> Path:
    """Builds (or reuses) PLATFORM's root filesystem; returns its directory."""
    if platform not in boxes.PLATFORMS:
        raise LabError(f"unknown platform {platform!r}; known: {', '.join(boxes.PLATFORMS)}")
    root = root_dir(platform)
    if present(platform) and not force:
        print(f"{platform}: cached root filesystem {root}")
        return root
    print(f"{platform}: building a root filesystem from {boxes.PLATFORMS[platform].suite}", flush=True)
    partial = root.with_name(platform + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with progress.phase(f"rootfs://{platform}", f"debootstrapping {platform}"):
            boxes.debootstrap(platform, partial, INCLUDE)
        (partial / "etc/hostname").write_text(f"{platform}\n")
        (partial / READY).write_text(f"{platform} {boxes.PLATFORMS[platform].glibc}\n")
        shutil.rmtree(root, ignore_errors=True)
        partial.rename(root)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


def unpack(tarball: Path) -> Path:
    """A root filesystem from TARBALL (`docker export`, `podman export`), unpacked once into the cache."""
    stat = tarball.stat()
    root = CACHE / "tar" / f"{tarball.name}-{stat.st_size}-{int(stat.st_mtime)}"
    if (root / READY).exists():
        return root
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(partial, members=safe_members(tar, tarball))
        (partial / READY).write_text(f"from {tarball}\n")
        partial.rename(root)
    except (tarfile.TarError, OSError) as e:
        raise LabError(f"cannot unpack {tarball} as a root filesystem: {e}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


def safe_members(tar: tarfile.TarFile, tarball: Path) -> list[tarfile.TarInfo]:
    """Every member but device nodes (the target gets this machine's /dev, `docker export`
    has a console in it), refusing one that would land outside the tree (an absolute path,
    `..`, a hard link out); symbolic links inside a root may point anywhere in it. (Python
    3.11.2, Debian 12's, has no extraction filters.)"""
    members = [m for m in tar.getmembers() if not m.isdev()]
    for m in members:
        if m.name.startswith("/") or ".." in Path(m.name).parts:
            raise LabError(f"{tarball}: {m.name!r} would land outside the root filesystem")
        if m.islnk() and (m.linkname.startswith("/") or ".." in Path(m.linkname).parts):
            raise LabError(f"{tarball}: hard link {m.name!r} -> {m.linkname!r} points outside the tree")
    return members


def main(platforms: list[str], force: bool = False) -> int:
    for platform in platforms or list(boxes.PLATFORMS):
        build(platform, force)
    print("done", file=sys.stderr)
    return 0


if __name__ == "__main__":  # python -m lab.roots debian12 …
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
