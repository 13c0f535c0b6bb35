"""What installing a module means, whatever the target: the files to place, and where."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.module import Module

NSSWITCH_DATABASES = ("passwd", "group", "shadow")


def nsswitch(module: Module, current: str) -> str:
    """CURRENT nsswitch.conf with `files <name>` for every database the module serves.

    initgroups is not listed: glibc then asks the group database's services, whose
    initgroups_dyn entry answers it."""
    served = [db for db in NSSWITCH_DATABASES if db in module.databases]
    if "initgroups" in module.databases and "group" not in served:
        served.append("group")
    lines = [line for line in current.splitlines() if line.split(":", 1)[0].strip() not in served]
    lines += [f"{db}: files {module.name}" for db in served]
    return "\n".join(lines) + "\n"


def nss_library_dir() -> Path:
    """The directory where glibc finds libnss_files.so.2, i.e. where modules belong."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    for line in out.splitlines():
        if "libnss_files.so.2" in line and "=>" in line:
            return Path(line.split("=>")[1].strip()).resolve().parent
    return Path("/usr/lib/x86_64-linux-gnu")
