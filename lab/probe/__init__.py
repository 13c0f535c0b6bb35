"""The probe: runs inside the target, stdlib only, speaks JSON lines on stdout.

The same files are copied into every target (sandbox, VM) and run there as root with the
target's own python3 (3.9 up: Debian 11's, in a root filesystem), so what it measures is the
target's glibc and the target's /proc. There they are a directory, `<workdir>/probe`, run as
`python3 -I -S <workdir>/probe ARGS`: its __main__.py is launcher.py and this package is
nsslab_probe beside it (shipped() lists the files). Inside the package every import is
relative, so the same files are lab.probe here.

    probe scenario SPEC   run SPEC's steps, each in a fresh worker process group (monitor)
    probe worker STEP     (internal) perform one step and report every call (worker)
    probe watch PID       report when the process tree under PID hangs or exits (hangwatch)
    probe as-user UID GID GIDS -- ARGV   exec ARGV as UID without any NSS lookup
    probe kill-tree PID   SIGKILL PID and all its descendants
    probe maps PID        the NSS modules mapped into PID
    probe gdb-run SCRIPT -- ARGV   gdb SCRIPT on ARGV, bounded (for guided replays)
    probe sysinfo JSON    this target's machine, glibc, and where {"libs"} resolve

The modules: cli (the commands), protocol (emit, the worker's channel, where the probe
is), procfs (/proc reading), clock (time budgets count the probe's own time, not a busy
machine's), hangwatch, gdb (evidence), worker, monitor with signals and leftovers (what a
module does to the lab's processes), entrypoints (the direct calls into `_nss_<name>_*`)
and direct/ (the caller-side checks' in-target tests, one area each).
"""

from __future__ import annotations

from .gdb import GDB_TIMEOUT

# Not `import typing`: every probe process imports this package, and typing (like pathlib,
# imported by shipped() alone) costs each of them milliseconds at start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["GDB_TIMEOUT", "shipped"]


def shipped() -> list[tuple[str, Path]]:
    """What a target gets, as (path in the probe directory, local file) pairs: launcher.py as
    __main__.py, and every .py of this package, subpackages included, under nsslab_probe/."""
    from pathlib import Path

    here = Path(__file__).resolve().parent
    files = sorted(p for p in here.rglob("*.py") if "__pycache__" not in p.parts)
    return [("__main__.py", here / "launcher.py")] + [
        (f"nsslab_probe/{p.relative_to(here).as_posix()}", p) for p in files
    ]
