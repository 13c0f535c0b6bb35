"""The run-state file: what this run made (namespaces and their workdirs, VMs, ssh master
connections), written as it is made and dropped as it is undone, so that what a killed run
(SIGKILL, a lost CI runner) left behind is known as the lab's own and can be removed:
`nsslab clean`, and at the start of every `nsslab run`.

One JSON file per run under STATE_DIR (a tmpfs: a reboot ends everything it lists anyway),
named by the run's pid and its start time, so a reused pid is not taken for a live run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from lab import config
from lab.proc import tool

STATE_DIR = Path(os.environ.get("NSSLAB_STATE_DIR", "/run/nsslab"))
_LOCK = threading.Lock()


def started(pid: int) -> str | None:
    """PID's start time in clock ticks since boot (None: no such process)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _path() -> Path:
    return STATE_DIR / f"run-{os.getpid()}-{started(os.getpid())}.json"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def add(key: str, **info: object) -> None:
    """Records that this run made KEY (a namespace, a VM, an ssh master): INFO says how to undo it."""
    with _LOCK:
        path = _path()
        items = _read(path)
        items[key] = info
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(items))
        partial.rename(path)  # never half a file, even when killed here


def drop(key: str) -> None:
    with _LOCK:
        path = _path()
        items = _read(path)
        items.pop(key, None)
        if items:
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps(items))
            partial.rename(path)
        else:
            path.unlink(missing_ok=True)


def leftovers() -> dict[Path, dict]:
    """The state files of runs that are gone (their pid dead, or reused by another process)."""
    out = {}
    for path in sorted(STATE_DIR.glob("run-*.json")) if STATE_DIR.is_dir() else []:
        _, pid, start = [*path.stem.split("-", 2), "", ""][:3]
        if not pid.isdigit():
            continue  # not a file of the lab's naming: not ours to judge
        if started(int(pid)) != start:
            out[path] = _read(path)
    return out


def sweep() -> list[str]:
    """Removes what runs that are gone left behind; returns one line per thing removed."""
    said = []
    for path, items in leftovers().items():
        for key, info in items.items():
            said.append(f"{key}: {undo(info)}")
        path.unlink(missing_ok=True)
    return said


def undo(info: dict) -> str:
    kind = info.get("kind")
    if kind == "namespace":
        workdir = str(info.get("workdir", ""))
        if not labs_workdir(workdir):  # only ever the lab's own
            return f"{workdir} left alone (not a workdir of the lab's)"
        killed = kill_namespace(str(info.get("mntns", "")), workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        return f"{killed} process(es) killed, {workdir} removed"
    if kind == "remote":
        staging = str(info.get("staging", ""))
        if labs_workdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
        return f"{info.get('workdir')} is left on {info.get('target')}: remove it there (not reached)"
    if kind == "ssh-master":
        tool("ssh", "-o", f"ControlPath={info.get('control')}", "-O", "exit", str(info.get("host")))
        Path(str(info.get("control"))).unlink(missing_ok=True)
        return "master connection closed"
    if kind == "vm":
        from lab.targets import vagrant  # only a run that had VMs pays for importing vagrant

        machine = vagrant.VagrantMachine(str(info.get("platform")))
        try:
            machine.close()
        except Exception as e:
            return f"could not destroy: {e}"
        finally:
            vagrant.cleanup()
        return "VM destroyed"
    return "unknown record, left alone"


def labs_workdir(path: str) -> bool:
    """PATH is a workdir the overlay made: nsslab-* directly in the temp dir, no way around it."""
    p = Path(path)
    return (
        bool(path)
        and p.name.startswith("nsslab-")
        and p.resolve().parent == Path(tempfile.gettempdir()).resolve()
    )


def kill_namespace(mntns: str, workdir: str) -> int:
    """SIGKILLs every process of the dead run's namespace MNTNS, and waits (bounded) for them
    to go. A namespace's number is reused once it is freed, so a process counts only when its
    mount table also shows the run's workdir (the overlay's binds are under it)."""
    if not mntns.startswith("mnt:["):
        return 0
    found = [pid for pid in _pids() if _ns(pid) == mntns and workdir in _mountinfo(pid)]
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + config.KILL_WAIT
    while any(_ns(pid) == mntns for pid in found) and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(found)


def _mountinfo(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None
