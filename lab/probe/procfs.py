"""Reading /proc (stdlib only): processes and their trees, threads' scheduler state and
current syscall, mapped NSS modules; and ending processes found there (SIGKILL)."""

from __future__ import annotations

import os
import platform
import signal

# Syscall numbers by machine: which waits end on a timer and which can only be ended
# by another thread or process.
SYSCALLS = {
    "x86_64": {
        0: "read",
        7: "poll",
        23: "select",
        34: "pause",
        35: "nanosleep",
        45: "recvfrom",
        47: "recvmsg",
        42: "connect",
        43: "accept",
        61: "wait4",
        72: "fcntl",
        73: "flock",
        128: "rt_sigtimedwait",
        130: "rt_sigsuspend",
        202: "futex",
        230: "clock_nanosleep",
        232: "epoll_wait",
        247: "waitid",
        270: "pselect6",
        271: "ppoll",
        281: "epoll_pwait",
        288: "accept4",
        441: "epoll_pwait2",
    },
    "aarch64": {
        63: "read",
        73: "ppoll",
        72: "pselect6",
        22: "epoll_pwait",
        98: "futex",
        101: "nanosleep",
        115: "clock_nanosleep",
        260: "wait4",
        95: "waitid",
        133: "rt_sigsuspend",
        137: "rt_sigtimedwait",
        207: "recvfrom",
        212: "recvmsg",
        202: "accept",
        242: "accept4",
        203: "connect",
        32: "flock",
        25: "fcntl",
        441: "epoll_pwait2",
    },
}.get(platform.machine(), {})


def current_call(fields: list[str]) -> tuple[str, list[int]] | None:
    """The syscall a /proc/.../syscall line (split) shows a thread blocked in: its name (or
    "syscall N") and its six arguments; None when the thread is running or in none."""
    if len(fields) < 7 or not fields[0].isdigit():
        return None
    nr = int(fields[0])
    return SYSCALLS.get(nr, f"syscall {nr}"), [int(a, 16) for a in fields[1:7]]


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def stat_fields(path: str) -> list[str]:
    """Fields of a /proc stat file after the command name, which may contain spaces."""
    text = read(path)
    return text[text.rfind(")") + 2 :].split() if text else []


def processes() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgrp) for every process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = stat_fields(f"/proc/{name}/stat")
            if len(f) > 3:
                out[int(name)] = (int(f[1]), int(f[2]))
    return out


def tree(root: int) -> set[int]:
    procs = processes()
    found = {root} if root in procs else set()
    grew = True
    while grew:
        new = {p for p, (ppid, _) in procs.items() if ppid in found and p not in found}
        found |= new
        grew = bool(new)
    return found


def group(pgid: int) -> set[int]:
    return {p for p, (_, pg) in processes().items() if pg == pgid}


def children(pid: int) -> set[int]:
    """PID's children, from /proc/PID/task/*/children (a few bytes, not a scan of /proc),
    or from a scan where the kernel lacks that file."""
    if not HAVE_CHILDREN:
        return {p for p, (ppid, _) in processes().items() if ppid == pid}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return set()
    found: set[int] = set()
    for tid in tids:  # raw reads: this runs twice around every call in the worker
        try:
            fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY)
        except OSError:
            continue
        try:
            found.update(map(int, os.read(fd, 65536).split()))
        finally:
            os.close(fd)
    return found


HAVE_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")  # CONFIG_PROC_CHILDREN


def descendants(root: int) -> set[int]:
    found: set[int] = set()
    todo = children(root)
    while todo:
        found |= todo
        todo = {c for p in todo for c in children(p)} - found
    return found


def nss_modules(pid: int) -> list[str]:
    paths = {
        line.split()[-1]
        for line in read(f"/proc/{pid}/maps").splitlines()
        if "libnss_" in line and "/" in line
    }
    return sorted(paths)


def thread_state(pid: int, tid: int) -> dict:
    base = f"/proc/{pid}/task/{tid}"
    fields = stat_fields(f"{base}/stat")
    sched = read(f"{base}/schedstat").split()
    syscall = read(f"{base}/syscall").split()
    return {
        "tid": tid,
        "state": fields[0] if fields else "?",
        "progress": tuple(sched[:1] + sched[2:3]),  # run time, number of wake-ups
        "syscall": syscall,
        "wchan": read(f"{base}/wchan").strip(),
        "comm": read(f"{base}/comm").strip(),
    }


def kill_pids(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
