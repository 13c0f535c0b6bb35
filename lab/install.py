"""What installing a module means, whatever the target: the files to place, and where."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.module import Module

NSSWITCH_DATABASES = ("passwd", "group", "shadow")


def switched(module: Module) -> dict[str, str]:
    """The nsswitch.conf lines the lab writes, by database: `files <name>` for each served.

    initgroups is not listed: glibc then asks the group database's services, whose
    initgroups_dyn entry answers it."""
    served = [db for db in NSSWITCH_DATABASES if db in module.databases]
    if "initgroups" in module.databases and "group" not in served:
        served.append("group")
    return {db: f"{db}: files {module.name}" for db in served}


def nsswitch(module: Module, current: str) -> str:
    """CURRENT nsswitch.conf with switched(MODULE)'s lines in place of its own for those databases."""
    ours = switched(module)
    lines = [line for line in current.splitlines() if line.split(":", 1)[0].strip() not in ours]
    return "\n".join([*lines, *ours.values()]) + "\n"


def setup(module: Module, module_path: str) -> list[str]:
    """What the lab put in the target, which a reproducer run without the lab needs as well
    (`getent -s extrausers passwd` shows the defect only with the manifest's files in place)."""
    out = [f"the library as {module_path} (from {module.library})"]
    if module.packages:
        out.append(f"unpacked from the Debian package(s) {', '.join(module.packages)}, not installed")
    out.append("/etc/nsswitch.conf: " + "; ".join(switched(module).values()))
    for target, source in module.files.items():
        mode = f", mode {module.modes[target]:04o}" if target in module.modes else ""
        out.append(f"{target} from {source}{mode}")
    for s in module.services:
        out.append(f"the service {s.name} running: {' '.join(s.command)}")
    return out


def nss_library_dir() -> Path:
    """The directory where glibc finds libnss_files.so.2, i.e. where modules belong."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    for line in out.splitlines():
        if "libnss_files.so.2" in line and "=>" in line:
            return Path(line.split("=>")[1].strip()).resolve().parent
    return Path("/usr/lib/x86_64-linux-gnu")
