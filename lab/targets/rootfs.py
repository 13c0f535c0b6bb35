"""`rootfs`: a root filesystem on this machine, entered with mount and pid namespaces.

The glibc matrix without booting: Debian 11, 12 and 13 (glibc 2.31, 2.36, 2.41) built once
by lab.roots, or a root the user points at (rootfs:///srv/root, rootfs:///tmp/image.tar
from `docker export`). The module is installed by the same overlay as the sandbox, so the
tree is never written. No sshd, PAM stack or systemd runs there: the checks that need a
whole system skip, with that reason.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab import boxes, roots
from lab.errors import LabError
from lab.targets import Spec
from lab.targets.overlay import Overlay
from lab.targets.target import Target
from lab.targets.transport import Local


def expand(spec: Spec) -> list[str]:
    if spec.host or spec.path:
        return [spec.text]
    return [f"rootfs://{p}" for p in boxes.PLATFORMS]


def parallel(count: int) -> int:
    """One root per core: each keeps a core busy, and a starved step would look still."""
    return max(1, min(count, os.cpu_count() or 1))


def make(spec: Spec, keep: bool = False) -> Target:
    if spec.path:  # rootfs:///abs/dir or rootfs:///abs/image.tar
        given = Path(spec.path)
        if given.is_file():
            root = roots.unpack(given)
        elif given.is_dir():
            root = given
        else:
            raise LabError(f"{spec.text}: {given} is neither a directory nor a tarball")
        if not (root / "bin/sh").exists() and not (root / "usr/bin/sh").exists():
            raise LabError(f"{spec.text}: {root} has no /bin/sh: not a root filesystem")
    else:
        if spec.host not in boxes.PLATFORMS:
            raise LabError(
                f"rootfs target needs a platform: rootfs://{'|'.join(boxes.PLATFORMS)} or rootfs:///DIR"
            )
        root = roots.root_dir(spec.host) if roots.present(spec.host) else roots.build(spec.host)
    return Target(spec.text, Local(), Overlay(root=root))
