"""The probe's commands (see the package's docstring): the scenario of steps, the worker,
and the small ones the lab's checks run in a target."""

from __future__ import annotations

import errno
import glob
import json
import os
import platform
import subprocess
import sys
import time

from .gdb import attach_backtraces, finish_gdb, run_gdb
from .hangwatch import SAMPLE_EVERY, HangWatch
from .monitor import scenario
from .procfs import kill_pids, nss_modules, read, tree
from .protocol import emit
from .worker import worker


def watch_tree(root: int, quick: float, slow: float, timeout: float) -> None:
    """Reports once: 'hang' with evidence, 'exited', or 'timeout'."""
    w = HangWatch(quick, slow)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        pids = tree(root)
        if not pids:
            emit({"ev": "watch", "outcome": "exited"})
            return
        hung = w.sample(pids)
        if hung:
            if not hung.get("idle"):
                attach_backtraces(hung["processes"])
            emit(
                {
                    "ev": "watch",
                    "outcome": "idle" if hung.get("idle") else "hang",
                    "hang": hung,
                    "seconds": round(time.monotonic() - start, 3),
                }
            )
            return
        time.sleep(SAMPLE_EVERY)
    emit({"ev": "watch", "outcome": "timeout"})


def as_user(uid: int, gid: int, groups: list[int], argv: list[str]) -> None:
    """Become UID without resolving anything: no NSS lookup may happen on the way."""
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    os.execvp(argv[0], argv)


def sysinfo(libs: list[str], dirs: list[str]) -> dict:
    """What decides whether a library loads here: machine, glibc, and where each of LIBS
    (DT_NEEDED names) resolves: DIRS (the library's RUNPATH), ld.so.cache, the default dirs."""
    cache: dict[str, str] = {}
    try:
        out = subprocess.run(
            ["ldconfig", "-p"], capture_output=True, text=True, timeout=10, env={"PATH": "/usr/sbin:/sbin"}
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        if "=>" in line:
            name, path = line.split("=>", 1)
            cache.setdefault(name.split()[0], path.strip())
    defaults = ["/lib64", "/usr/lib64", "/lib", "/usr/lib", *glob.glob("/usr/lib/*-linux-gnu*")]
    found = {}
    for lib in libs:
        candidates = [os.path.join(d, lib) for d in dirs] + [cache.get(lib, "")]
        candidates += [os.path.join(d, lib) for d in defaults]
        found[lib] = next((c for c in candidates if c and os.path.exists(c)), None)
    version = os.confstr("CS_GNU_LIBC_VERSION") or "unknown"
    return {"machine": platform.machine(), "glibc": version.split()[-1], "libs": found}


def kill_tree(root: int) -> None:
    pids = tree(root)
    kill_pids(pids)
    emit({"ev": "killed", "pids": sorted(pids)})


def main(argv: list[str]) -> int:
    """The launcher's entry (the shipped __main__.py): the command's exit status, and 1 without
    a traceback when whoever reads the probe's output has gone (EPIPE)."""
    try:
        return command(argv)
    except OSError as e:
        if e.errno == errno.EPIPE:
            return 1
        raise


def command(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "scenario":
        scenario(json.loads(args[0]))
    elif cmd == "worker":  # the step as JSON, or @FILE holding it (gdb splits arguments at spaces)
        worker(json.loads(read(args[0][1:]) if args[0].startswith("@") else args[0]))
    elif cmd == "watch":
        root, quick, slow, timeout = int(args[0]), *map(float, args[1:4])
        watch_tree(root, quick, slow, timeout)
    elif cmd == "as-user":
        sep = args.index("--")
        uid, gid, groups = int(args[0]), int(args[1]), [int(g) for g in args[2].split(",") if g]
        as_user(uid, gid, groups, args[sep + 1 :])
    elif cmd == "kill-tree":
        kill_tree(int(args[0]))
    elif cmd == "gdb-run":
        sep = args.index("--")
        emit({"ev": "gdb", **finish_gdb(run_gdb(["--args", *args[sep + 1 :]], read(args[0])))})
    elif cmd == "sysinfo":
        spec = json.loads(args[0])
        emit({"ev": "sysinfo", **sysinfo(spec.get("libs", []), spec.get("dirs", []))})
    elif cmd == "maps":
        emit({"ev": "maps", "nss_modules": nss_modules(int(args[0]))})
    else:
        print(f"probe: unknown command {cmd}", file=sys.stderr)
        return 2
    return 0
