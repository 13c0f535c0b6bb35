#!/usr/bin/env python3
"""The probe: runs inside the target, stdlib only, speaks JSON lines on stdout.

The same file is copied into every target (sandbox, VM) and run there as root with the
target's own python3, so what it measures is the target's glibc and the target's /proc.

    probe.py scenario SPEC   run SPEC's steps, each in a fresh worker process group
    probe.py worker STEP     (internal) perform one step and report every call
    probe.py watch PID       report when the process tree under PID hangs or exits
    probe.py as-user UID GID GIDS -- ARGV   exec ARGV as UID without any NSS lookup
    probe.py kill-tree PID   SIGKILL PID and all its descendants
    probe.py maps PID        the NSS modules mapped into PID
    probe.py gdb-run SCRIPT -- ARGV   gdb SCRIPT on ARGV, bounded (for guided replays)
    probe.py sysinfo JSON    this target's machine, glibc, and where {"libs"} resolve

Calls named "nss:*" go straight to a module's entry points (entrypoints.py, beside this
file). The worker notes where it is in a small progress file, so a crash or hang in the
middle of a long call (a buffer-size sweep) names the entry point and size.

Hang detection never guesses from elapsed time alone. A thread is stuck when its
scheduler counters and its current syscall stop changing; the tree is declared hung
quickly when every thread is stuck in a wait that nothing outside the tree can end
(a private futex with no timeout, wait4 on stuck children, a read on a pipe whose
writers are all stuck). A thread in a timed sleep is slow, not hung: it is left to the
step's deadline.

A module may act on the process it runs in, and the lab must survive it and say what it
did: the worker's process group is led by a sentinel that hears a signal sent to the whole
group (kill(0, sig)); the monitor, the worker's parent, blocks the termination signals and
reads them with their sender instead of dying; it is the subreaper of the step, so a daemon
the module double-forks is adopted, named with the call that started it, and killed; and
the worker waits for a forked child the way a busy caller does, so a SIGCHLD handler that
reaps every child shows as ECHILD.

Before a hung process is killed, and after a step crashed, the probe gathers evidence for
the lab's diagnosis: gdb backtraces of every thread (and goroutine, for Go), the mapped
objects, futex owners. It only collects; naming the cause happens in lab/forensics.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import glob
import grp
import importlib.util
import json
import os
import platform
import pwd
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

QUICK_WINDOW = 0.5  # stuck in waits only the tree itself could end
SLOW_WINDOW = 5.0  # stuck in waits the outside world could still end (socket, tty)
SAMPLE_EVERY = 0.05

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
FUTEX_WAITS = {0, 6, 9, 11, 13}  # WAIT, LOCK_PI, WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2
FUTEX_PRIVATE = 0x80
# Hard bound per gdb run. An attach takes 0.5-0.8 s on the host, 6-9 s in a TCG VM (once
# 10.3 s: a bound of 10 s lost the evidence); a gdb that finishes costs only its own time.
GDB_TIMEOUT = 30.0
GDB_MAX_PROCESSES = 3  # the deepest hung processes get a backtrace, in parallel
GDB_OUTPUT_LIMIT = 200_000
OUTPUT_KEPT = 65536  # bytes of a worker's stdout and stderr kept (the count is exact)
FATAL_SIGNALS = "SIGSEGV SIGABRT SIGBUS SIGFPE SIGILL SIGSYS SIGTRAP"
# Catchable signals whose default action ends a process. The monitor blocks them and reads
# them with sigtimedwait, and so does the sentinel in the worker's process group: a module
# that signals its caller's parent or its own group is named instead of ending the lab (the
# lab itself only ever ends a probe with SIGKILL). The worker restores the default mask and
# dispositions first thing, so the module sees what `id` would be.
CAUGHT = (
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36  # orphans of the worker's descendants become the monitor's children
LEFTOVER_GRACE = 0.5  # a process of the step still running this long after the worker exited is left over


# Where emit() writes. The worker, which loads the module, speaks on a FIFO of its own
# (CHANNEL), not on stdout: a module's debug printf goes to the worker's stdout, which the
# monitor keeps as the module's output, and a module that closes or replaces descriptors
# is found out by the check after every call (channel_intact) instead of garbling the lab.
CHANNEL = {"fd": 1, "path": None, "id": None}


# The probe's own scratch files (progress record, channel FIFO, gdb scripts) live beside it,
# in the directory the target made for it and removes with it: a run killed mid-step (Ctrl-C,
# SIGKILL of the probe's group) leaves nothing in the target's /tmp.
SCRATCH = os.path.dirname(os.path.abspath(__file__))


def emit(obj: dict) -> None:
    # os.write, not print: forked children must not share Python's stdout buffer.
    data = (json.dumps(obj) + "\n").encode()
    while data:
        data = data[os.write(CHANNEL["fd"], data) :]


def open_channel(path: str) -> None:
    """The worker's end of the monitor's FIFO, moved up out of the low numbers a module
    reuses (it may still close everything from 3 up: channel_intact() notices)."""
    fd = os.open(path, os.O_WRONLY)
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 900)
    os.close(fd)
    st = os.fstat(high)
    CHANNEL.update(fd=high, path=path, id=(st.st_dev, st.st_ino))


def channel_intact() -> str | None:
    """None when the channel is still the FIFO it was; else what happened to it, after the
    channel was opened again by its path (the monitor still holds the FIFO open)."""
    if CHANNEL["path"] is None:
        return None
    try:
        st = os.fstat(CHANNEL["fd"])
        if (st.st_dev, st.st_ino) == CHANNEL["id"]:
            return None
        what = "replaced"
    except OSError:
        what = "closed"
    open_channel(CHANNEL["path"])
    return what


# ---------------------------------------------------------------- /proc reading


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


def signature(t: dict) -> tuple:
    """What must stay the same for thread T to count as stuck."""
    return (t["state"], t["progress"], tuple(t["syscall"]))


def classify_wait(pid: int, t: dict) -> str:
    """What could end thread T's wait: 'running', 'timed' (a clock), 'self' (only a thread
    of this process: a private futex with no timeout), 'children' (wait4), 'pipe:[N]'
    (a read on a pipe), 'tty' (a shell waiting for its user), or 'external'."""
    if t["state"] == "R":
        return "running"
    if t["state"] not in ("S", "D") or not t["syscall"] or t["syscall"][0] in ("running", "-1"):
        return "external"
    nr = int(t["syscall"][0])
    args = [int(a, 16) for a in t["syscall"][1:7]]
    name = t["call"] = SYSCALLS.get(nr, f"syscall {nr}")
    if name in ("nanosleep", "clock_nanosleep"):
        return "timed"
    if name == "futex":
        if args[1] & 0x7F not in FUTEX_WAITS:
            return "external"
        if args[3]:
            return "timed"
        return "self" if args[1] & FUTEX_PRIVATE else "external"
    if name == "poll":
        return "timed" if ctypes.c_int(args[2]).value >= 0 else on_terminal(pid)
    if name in ("epoll_wait", "epoll_pwait"):
        return "timed" if ctypes.c_int(args[3]).value >= 0 else "external"
    if name in ("ppoll", "epoll_pwait2", "rt_sigtimedwait"):
        return "timed" if args[2] else on_terminal(pid) if name == "ppoll" else "external"
    if name in ("select", "pselect6"):
        return "timed" if args[4] else on_terminal(pid)
    if name in ("wait4", "waitid"):
        return "children"
    if name == "read":
        try:
            target = os.readlink(f"/proc/{pid}/fd/{args[0]}")
        except OSError:
            return "external"
        if target.startswith("pipe:"):
            return target
        if target.startswith(("/dev/pts/", "/dev/tty")):
            return "tty"
    return "external"


def on_terminal(pid: int) -> str:
    """An untimed select/poll by a process whose stdin is a terminal: readline waiting for
    keys (an idle shell), never counted as a hang."""
    try:
        return "tty" if os.readlink(f"/proc/{pid}/fd/0").startswith(("/dev/pts/", "/dev/tty")) else "external"
    except OSError:
        return "external"


def pipe_writers(pipe: str) -> set[int]:
    """Every process holding a write end of PIPE ('pipe:[inode]')."""
    writers = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{name}/fd/{fd}") != pipe:
                    continue
            except OSError:
                continue
            flags = read(f"/proc/{name}/fdinfo/{fd}").split("flags:")[-1].split()
            if flags and int(flags[0], 8) & 3:  # O_WRONLY or O_RDWR
                writers.add(int(name))
    return writers


class HangWatch:
    """Samples processes and names the ones that are hung, with the evidence.

    A process is hung when every thread has been stuck for the quick window in a wait
    that only the process itself or already-hung processes could end: a private futex
    with no timeout, wait4 on children that are all hung, a read on a pipe whose every
    writer is hung. After the slow window, waits on the outside world (sockets, shared
    futexes) count too. A timed sleep or a read from a terminal never does.
    """

    def __init__(self, quick: float = QUICK_WINDOW, slow: float = SLOW_WINDOW) -> None:
        self.quick, self.slow = quick, slow
        self.last: dict[tuple[int, int], tuple] = {}
        self.since: dict[tuple[int, int], float] = {}

    def sample(self, pids: set[int]) -> dict | None:
        now = time.monotonic()
        threads = snapshot(pids)
        idle: dict[int, float] = {}
        for pid, states in threads.items():
            for t in states:
                key = (pid, t["tid"])
                sig = signature(t)
                if self.last.get(key) != sig or t["state"] == "R":
                    self.last[key], self.since[key] = sig, now
                idle[pid] = min(idle.get(pid, 1e9), now - self.since[key])
        for key in [k for k in self.last if k[0] not in threads]:
            del self.last[key], self.since[key]
        candidates = {pid for pid, seconds in idle.items() if seconds >= self.quick}
        if not candidates:
            return None
        kinds = {pid: [classify_wait(pid, t) for t in threads[pid]] for pid in candidates}
        if candidates == set(threads) and all(k == "tty" for ks in kinds.values() for k in ks):
            return {"idle": True, "processes": evidence(threads)}
        kids: dict[int, set[int]] = {}
        for pid, (ppid, _) in processes().items():
            kids.setdefault(ppid, set()).add(pid)
        writers: dict[str, set[int]] = {}
        hung: set[int] = set()

        def ends_only_in(pid: int, kind: str, slow: bool) -> bool:
            if kind == "self" or (slow and kind == "external"):
                return True
            if kind == "children":
                return bool(kids.get(pid)) and kids[pid] <= hung
            if kind.startswith("pipe:"):  # no writer left at all means EOF is on its way
                held = writers.setdefault(kind, pipe_writers(kind))
                return bool(held) and held <= hung | {pid}
            return False

        for slow in (False, True):
            changed = True
            while changed:
                changed = False
                for pid in candidates - hung:
                    if slow and idle[pid] < self.slow:
                        continue
                    if all(ends_only_in(pid, k, slow) for k in kinds[pid]):
                        hung.add(pid)
                        changed = True
            if hung:
                again = snapshot(hung)
                if not self.unchanged(hung, again):
                    return None
                return {
                    "stuck_seconds": round(min(idle[p] for p in hung), 3),
                    "outside_wait": slow,
                    "processes": evidence(again),
                }
        return None

    def unchanged(self, pids: set[int], now: dict[int, list[dict]]) -> bool:
        """Whether PIDS, snapshotted again as NOW, are still in the waits they were judged in.
        Judging takes a scan of /proc, and a pipe writer or child that exits during it wakes
        its reader: without this a reader about to get EOF was once called hung (slowlab's
        `compgen -u` subshell)."""
        return set(now) == pids and all(
            self.last.get((pid, t["tid"])) == signature(t) for pid, states in now.items() for t in states
        )


def snapshot(pids: set[int]) -> dict[int, list[dict]]:
    """The live threads of PIDS, by pid."""
    threads = {}
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        live = [t for t in (thread_state(pid, tid) for tid in tids) if t["state"] not in ("Z", "X", "?")]
        if live:
            threads[pid] = live
    return threads


def evidence(threads: dict[int, list[dict]]) -> list[dict]:
    out = []
    for pid, states in sorted(threads.items()):
        out.append(
            {
                "pid": pid,
                "cmdline": read(f"/proc/{pid}/cmdline").replace("\0", " ").strip(),
                "threads": len(states),
                "nss_modules": nss_modules(pid),
                "parent": parent_facts(pid),
                "tasks": [
                    {
                        "tid": t["tid"],
                        "comm": t["comm"],
                        "state": t["state"],
                        "wait": classify_wait(pid, t),
                        "call": t.get("call"),
                        "wchan": t["wchan"],
                        "syscall": " ".join(t["syscall"][:5]),
                        "futex": futex_word(pid, t),
                    }
                    for t in states
                ],
            }
        )
    return out


def parent_facts(pid: int) -> dict:
    """What the parent had when PID hung: a child made by fork without exec shares its
    parent's image and inherited its loaded modules, but only one of its threads."""
    fields = stat_fields(f"/proc/{pid}/stat")
    ppid = int(fields[1]) if len(fields) > 1 else 0
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{ppid}/task"))
        same_exe = os.readlink(f"/proc/{pid}/exe") == os.readlink(f"/proc/{ppid}/exe")
    except OSError:
        return {"pid": ppid, "alive": False}
    return {
        "pid": ppid,
        "alive": True,
        "threads": len(tids),
        "nss_modules": nss_modules(ppid),
        "fork_without_exec": same_exe and read(f"/proc/{pid}/cmdline") == read(f"/proc/{ppid}/cmdline"),
        "tids": tids[:200],  # to recognise a lock owner as a parent thread
    }


def futex_word(pid: int, t: dict) -> dict | None:
    """For a futex wait, the words at its address. For a pthread mutex these are
    __lock, __count and __owner: the owner's tid tells who holds the lock."""
    if t.get("call") != "futex" or len(t["syscall"]) < 2:
        return None
    addr = int(t["syscall"][1], 16)
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        try:
            lock, count, owner = struct.unpack("=iIi", os.pread(fd, 12, addr))
        finally:
            os.close(fd)
    except (OSError, struct.error):
        return {"addr": hex(addr)}
    return {"addr": hex(addr), "word": lock, "count": count, "owner": owner}


# ---------------------------------------------------------------- gdb


GDB_COMMON = """set pagination off
set width 0
set confirm off
set print frame-info location-and-address
set print frame-arguments none
set print entry-values no
"""
GDB_REPORT = """info threads
thread apply all bt
python
def _nsslab_report():
    inferior = gdb.selected_inferior()
    if not inferior.pid:
        return
    print("nsslab-maps-begin")
    print(open("/proc/%d/maps" % inferior.pid).read().rstrip())
    print("nsslab-maps-end")
    try:
        allgs = gdb.parse_and_eval("'runtime.allgs'")
    except gdb.error:
        return  # not a Go process
    for name in ("runtime_init_done", "'runtime.iscgo'"):
        try:
            print("nsslab-go %s = %s" % (name.strip("'"), gdb.parse_and_eval(name)))
        except gdb.error as e:
            print("nsslab-go %s unknown: %s" % (name.strip("'"), e))
    if not GO_SCRIPT:
        print("nsslab-go goroutines unavailable: no runtime-gdb.py in the target")
        return
    gdb.execute("source " + GO_SCRIPT)
    for n, ptr in enumerate(SliceValue(allgs)):
        if n >= 64:
            print("nsslab-go more goroutines not shown")
            break
        status = ptr["atomicstatus"]
        try:
            status = int(status)
        except gdb.error:
            status = int(status["value"])  # Go >= 1.20 wraps it in atomic.Uint32
        if status == 6:  # _Gdead
            continue
        goid = int(ptr["goid"])
        print("Goroutine %d (status %d):" % (goid, status))
        try:
            gdb.execute("goroutine %d bt" % goid)
        except gdb.error as e:
            print("  no backtrace: %s" % e)
_nsslab_report()
end
"""
GDB_CRASH = """set startup-with-shell off
handle all nostop noprint pass
handle {fatal} stop print nopass
catch syscall exit_group
run
python
def _nsslab_signal():
    if not gdb.selected_inferior().pid:
        print("nsslab-crash not reproduced under gdb")
        return
    try:
        signo = int(gdb.parse_and_eval("$_siginfo")["si_signo"])
    except gdb.error:
        signo = 0
    if signo in (0, 5):  # stopped at the exit_group catchpoint, not by a signal
        for register in ("$rdi", "$x0"):
            try:
                print("nsslab-crash exit %d" % int(gdb.parse_and_eval(register)))
                return
            except gdb.error:
                pass
        print("nsslab-crash exit ?")
        return
    print("nsslab-crash signal %d" % signo)
    if signo in (4, 7, 8, 11):  # SIGILL, SIGBUS, SIGFPE, SIGSEGV carry the faulting address
        fault = gdb.parse_and_eval("$_siginfo")["_sifields"]["_sigfault"]["si_addr"]
        print("nsslab-crash fault-address 0x%x" % int(fault))
_nsslab_signal()
end
"""


def go_gdb_script() -> str:
    """The Go toolchain's gdb helpers (goroutine listing), if a Go toolchain is installed."""
    found = sorted(
        glob.glob("/usr/lib/go*/src/runtime/runtime-gdb.py")
        + glob.glob("/usr/local/go/src/runtime/runtime-gdb.py")
    )
    return found[-1] if found else ""


def run_gdb(args: list[str], script: str, env: dict | None = None, timeout: float = GDB_TIMEOUT) -> dict:
    """Starts gdb (its own process group, killed past TIMEOUT) on SCRIPT; returns its text."""
    if not shutil.which("gdb"):
        return {"error": "gdb is not installed in the target"}
    text = GDB_COMMON + script.replace("GO_SCRIPT", repr(go_gdb_script()))
    fd, path = tempfile.mkstemp(prefix="nsslab-gdb-", suffix=".gdb", dir=SCRATCH)
    os.write(fd, text.encode())
    os.close(fd)
    start = time.monotonic()
    argv = ["gdb", "-batch", "-nx", "-iex", "set debuginfod enabled off", "-iex", "set auto-load no"]
    proc = subprocess.Popen(
        [*argv, "-x", path, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env or {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
    )
    return {"proc": proc, "path": path, "start": start, "deadline": start + timeout}


def finish_gdb(job: dict) -> dict:
    if "error" in job:
        return job
    proc = job["proc"]
    try:
        out, _ = proc.communicate(timeout=max(0.1, job["deadline"] - time.monotonic()))
        result = {"text": out.decode(errors="replace")[-GDB_OUTPUT_LIMIT:]}
    except subprocess.TimeoutExpired:
        kill_pids(tree(proc.pid))  # gdb and the program it runs
        out, _ = proc.communicate()
        result = {"text": out.decode(errors="replace")[-GDB_OUTPUT_LIMIT:], "error": "gdb timed out"}
    kill_group(proc.pid)
    os.unlink(job["path"])
    result["seconds"] = round(time.monotonic() - job["start"], 3)
    return result


def attach_backtraces(procs: list[dict], step: str = "") -> None:
    """Adds gdb backtraces to the deepest hung processes (not the ones only waiting for
    their children), attaching to them in parallel while they are still stuck.

    A process frozen exactly as one already traced in this scenario (the same blocking
    syscall at the same code address and the same code addresses on the stack, in every
    thread: the same frames) gets that backtrace, marked with where it was taken, instead
    of a second gdb attach (fork-child freezes golab the same way seven times)."""
    leaves = [p for p in procs if any(t["wait"] != "children" for t in p["tasks"])] or procs
    jobs = []
    for p in leaves[-GDB_MAX_PROCESSES:]:
        p["frozen_as"] = key = frozen_signature(p["pid"])
        seen = TRACED.get(key) if key else None
        if seen:
            p["gdb"] = {**seen["gdb"], "same_as": {"step": seen["step"], "pid": seen["pid"]}, "seconds": 0.0}
        else:
            jobs.append((p, key, run_gdb(["-p", str(p["pid"])], GDB_REPORT)))
    for p, key, job in jobs:
        p["gdb"] = finish_gdb(job)
        if key and p["gdb"].get("text") and not p["gdb"].get("error"):
            TRACED[key] = {"gdb": p["gdb"], "step": step, "pid": p["pid"]}
    for p in leaves:
        p.pop("frozen_as", None)  # a key, not evidence


TRACED: dict = {}  # frozen signature -> the backtrace taken for it in this scenario
STACK_SCAN = 16384  # bytes above each thread's stack pointer read for return addresses


def frozen_signature(pid: int) -> tuple | None:
    """Each thread's blocking syscall, code address and the code addresses on its stack
    (return addresses: its frames), as module+offset so another process's layout compares
    equal; None when a thread is not in a syscall (nothing stable to compare)."""
    maps = []
    for line in read(f"/proc/{pid}/maps").splitlines():
        f = line.split()
        if len(f) >= 6 and "x" in f[1]:
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            maps.append((lo, hi, int(f[2], 16), os.path.basename(f[5])))

    def where(addr: int) -> str | None:
        for lo, hi, off, name in maps:
            if lo <= addr < hi:
                return f"{name}+{addr - lo + off:#x}"
        return None

    threads = []
    try:
        mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return None
    try:
        for tid in sorted(os.listdir(f"/proc/{pid}/task")):
            fields = read(f"/proc/{pid}/task/{tid}/syscall").split()
            if len(fields) != 9:  # "running", or not in a syscall
                return None
            sp, pc = int(fields[7], 16), int(fields[8], 16)
            try:
                data = os.pread(mem, STACK_SCAN, sp)
            except OSError:
                data = b""
            words = struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8])
            threads.append((fields[0], where(pc), tuple(w for w in map(where, words) if w)))
    except OSError:
        return None
    finally:
        os.close(mem)
    return tuple(sorted(threads, key=repr))


def crash_backtrace(step: dict, in_child: bool) -> dict:
    """Runs STEP again under gdb, stopping at the first fatal signal: the signal, the
    faulting address, every thread's backtrace and the maps at the moment of the crash."""
    follow = "set follow-fork-mode child\n" if in_child else ""
    fd, path = tempfile.mkstemp(prefix="nsslab-step-", suffix=".json", dir=SCRATCH)
    os.write(fd, json.dumps(step).encode())
    os.close(fd)
    try:
        job = run_gdb(
            ["--args", sys.executable, "-I", "-S", os.path.abspath(__file__), "worker", f"@{path}"],
            follow + GDB_CRASH.format(fatal=FATAL_SIGNALS) + GDB_REPORT,
            env=step.get("env"),
            timeout=step.get("timeout", 20.0) + GDB_TIMEOUT,
        )
        return finish_gdb(job)
    finally:
        os.unlink(path)


# ---------------------------------------------------------------- calls (in the worker)


def as_dict(entry) -> dict:
    if isinstance(entry, pwd.struct_passwd):
        return {
            "name": entry.pw_name,
            "uid": entry.pw_uid,
            "gid": entry.pw_gid,
            "gecos": entry.pw_gecos,
            "home": entry.pw_dir,
            "shell": entry.pw_shell,
        }
    return {"name": entry.gr_name, "gid": entry.gr_gid, "members": list(entry.gr_mem)}


def drop_privileges(order: str, uid: int, gid: int, groups: list[int]) -> str:
    """Drop root the way a login path does. 'su' is su/sshd/sudo's order; 'setpriv'
    keeps capabilities across the uid change (PR_SET_KEEPCAPS, a per-thread flag) and
    sets the gid after it, which setpriv and capability-aware daemons do."""
    if order == "su":
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS
        os.setresuid(uid, uid, uid)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
        data = (ctypes.c_uint32 * 6)()
        libc.capget(header, data)
        data[0], data[3] = data[1], data[4]  # effective = permitted
        libc.capset(header, data)
        os.setresgid(gid, gid, gid)
        os.setgroups(groups)
    return f"uid={os.getresuid()} gid={os.getresgid()} groups={os.getgroups()}"


PROGRESS_FD: int | None = None
PROGRESS_PATH: str | None = None


def note(text: str) -> None:
    """Where the worker is now: one fixed-size record, overwritten in place (opened again
    when a module closed the descriptor under us)."""
    global PROGRESS_FD
    if PROGRESS_FD is None or PROGRESS_PATH is None:
        return
    record = text.encode()[:1000].ljust(1024)
    try:
        os.pwrite(PROGRESS_FD, record, 0)
    except OSError:
        PROGRESS_FD = os.open(PROGRESS_PATH, os.O_WRONLY | os.O_CLOEXEC)
        os.pwrite(PROGRESS_FD, record, 0)


def entrypoints():
    """entrypoints.py from beside this file (-I keeps this directory off sys.path), under
    the name its sibling probe_*.py files import it by."""
    if "nsslab_entrypoints" in sys.modules:
        return sys.modules["nsslab_entrypoints"]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entrypoints.py")
    spec = importlib.util.spec_from_file_location("nsslab_entrypoints", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["nsslab_entrypoints"] = module
    spec.loader.exec_module(module)
    return module


def call(spec: dict):
    fn, arg = spec["fn"], spec.get("arg")
    if fn.startswith("nss:"):
        return entrypoints().run(spec, note)
    if fn == "getpwnam":
        return as_dict(pwd.getpwnam(arg))
    if fn == "getpwuid":
        return as_dict(pwd.getpwuid(arg))
    if fn == "getgrnam":
        return as_dict(grp.getgrnam(arg))
    if fn == "getgrgid":
        return as_dict(grp.getgrgid(arg))
    if fn == "getpwall":  # setpwent, getpwent_r until the end, endpwent
        return [as_dict(e) for e in pwd.getpwall()]
    if fn == "getgrall":
        return [as_dict(e) for e in grp.getgrall()]
    if fn == "getgrouplist":  # initgroups_dyn
        return sorted(os.getgrouplist(arg, spec["gid"]))
    if fn == "threads":
        return len(os.listdir("/proc/self/task"))
    if fn == "mapped":
        return nss_modules(os.getpid())
    if fn == "dlopen":
        try:
            ctypes.CDLL(arg)
            return "loaded"
        except OSError as e:
            return str(e)
    if fn == "drop":
        return drop_privileges(spec["order"], spec["uid"], spec["gid"], spec["groups"])
    raise ValueError(f"unknown call {fn}")


# The monitor and the sentinel: processes of the lab's that a module's process may see,
# not ones it started (the step says their pids).
LAB_PIDS: list[int] = []


RUNNING: set[int] = set()  # what spawned() found after the last call


def spawned() -> set[int]:
    """Processes running now that the worker's calls started: its own children, and the
    orphans the monitor (the subreaper, LAB_PIDS[0], one thread) adopted from a double fork."""
    out = children(os.getpid())
    if LAB_PIDS:
        out.update(map(int, read(f"/proc/{LAB_PIDS[0]}/task/{LAB_PIDS[0]}/children").split()))
    return out - set(LAB_PIDS) - {os.getpid()}  # LAB_PIDS ends with the worker itself


def run_calls(calls: list[dict], where: str) -> None:
    for spec in calls:
        # "t" (CLOCK_MONOTONIC, one clock for every process) places a signal the monitor read
        emit({"ev": "begin", "where": where, "fn": spec["fn"], "arg": spec.get("arg"), "t": time.monotonic()})
        start = time.monotonic()
        result = {"ev": "call", "where": where, "fn": spec["fn"], "arg": spec.get("arg")}
        try:
            result |= {"ok": True, "value": call(spec)}
        except KeyError as e:
            result |= {"ok": False, "notfound": True, "error": str(e)}
        except Exception as e:  # a module's failure is data for the check, not a probe crash
            result |= {"ok": False, "error": f"{type(e).__name__}: {e}"}
        result["seconds"] = round(time.monotonic() - start, 4)
        result["t"] = time.monotonic()
        lost = channel_intact()
        if lost:  # the module closed or replaced the caller's descriptors during the call
            result["channel"] = lost
        now = spawned()
        left = now - RUNNING  # new since the call before: one look per call
        RUNNING.clear()
        RUNNING.update(now)
        if left:  # still running after the call returned: the monitor kills them at the step's end
            result["spawned"] = [
                {"pid": p, "cmdline": read(f"/proc/{p}/cmdline").replace("\0", " ").strip()[:200]}
                for p in sorted(left)
            ]
        emit(result)


def normal_caller() -> None:
    """The worker as `id` starts: no signal blocked (the monitor blocks CAUGHT, and a mask
    is inherited across exec), every disposition the default (Python ignores SIGPIPE and
    SIGXFSZ and catches SIGINT)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(sig) not in (signal.SIG_DFL, None):
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass


def sigchld_handler() -> dict:
    """What handles SIGCHLD in this process now: SIG_DFL, SIG_IGN, or a handler's address
    and the object it lies in (read with sigaction; sa_handler leads glibc's struct)."""
    buf = ctypes.create_string_buffer(256)
    if ctypes.CDLL(None).sigaction(signal.SIGCHLD, None, buf) != 0:
        return {}
    handler = struct.unpack_from("P", buf.raw)[0]
    if handler in (0, 1):
        return {"handler": ("SIG_DFL", "SIG_IGN")[handler]}
    return {"handler": hex(handler), "object": object_at(os.getpid(), handler)}


def object_at(pid: int, address: int) -> str:
    for line in read(f"/proc/{pid}/maps").splitlines():
        span, *rest = line.split()
        low, high = (int(x, 16) for x in span.split("-"))
        if low <= address < high:
            return rest[-1] if len(rest) >= 5 else "anonymous memory"
    return "no mapped object"


def worker(step: dict) -> None:
    global PROGRESS_FD, PROGRESS_PATH
    normal_caller()
    LAB_PIDS[:] = [*step.get("lab_pids", []), os.getpid()]  # a forked child must not count its parent
    RUNNING.update(spawned())
    if step.get("channel"):
        open_channel(step["channel"])
    if step.get("progress"):
        PROGRESS_PATH = step["progress"]
        PROGRESS_FD = os.open(PROGRESS_PATH, os.O_WRONLY | os.O_CLOEXEC)
    run_calls(step.get("before", []), "parent")
    if not step.get("fork"):
        run_calls(step.get("calls", []), "parent")
        return
    # Fork hazards are races (which thread held what at fork time): several children in
    # turn, stopping at the first that does not come back cleanly.
    for _ in range(step.get("repeat", 1)):
        pid = os.fork()
        if pid == 0:
            try:
                emit({"ev": "forked", "pid": os.getpid()})
                run_calls(step.get("calls", []), "child")
            finally:
                os._exit(0)
        try:
            # As a caller busy elsewhere waits (popen/pclose, a daemon's pool): the child has
            # exited before waitpid (WNOWAIT leaves it there), so a SIGCHLD handler that
            # reaps every child takes it first and waitpid fails with ECHILD.
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            emit({"ev": "child-exit", "code": None, "reaped": "ECHILD", "sigchld": sigchld_handler()})
            break
        code = os.waitstatus_to_exitcode(status)
        emit({"ev": "child-exit", "code": code})
        if code != 0:
            break


# ---------------------------------------------------------------- the monitor


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Interrupted(Exception):
    """A signal from outside the step (a user, an init system) asked the probe to end."""

    def __init__(self, signo: int) -> None:
        super().__init__(signo)
        self.signo = signo


def guard_monitor() -> None:
    """The scenario's process adopts the orphans of the worker's descendants (a module's
    daemon) and blocks CAUGHT, which run_step reads with sigtimedwait."""
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for sig in CAUGHT:
        signal.signal(sig, signal.SIG_DFL)  # an inherited SIG_IGN discards a signal, blocked or not
    signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT)


def start_sentinel(inherited: list[int]) -> tuple[int, int]:
    """A process that leads the worker's process group and only listens: a module that
    signals its own group (kill(0, SIGTERM)) reaches it too, and it writes "signo pid code"
    for each signal on the pipe whose read end is returned. Leading the group, it makes the
    group exist before the worker runs; it dies with the monitor (PR_SET_PDEATHSIG)."""
    r, w = os.pipe()
    monitor = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # it must never hold the lab's pipes open
                os.dup2(null, fd)
            for fd in (r, null, *inherited):
                os.close(fd)
            while os.getppid() == monitor:
                info = signal.sigtimedwait(CAUGHT, 0.5)
                if info:  # heard at once: it was sent just now
                    now = time.monotonic()
                    os.write(w, f"{info.si_signo} {info.si_pid} {info.si_code} {now}\n".encode())
        finally:
            os._exit(0)
    os.setpgid(pid, pid)  # as a shell does: whichever of the two runs first, the group exists
    os.close(w)
    return pid, r


def reap(pids: set[int], bound: float = 2.0) -> None:
    """Waits for PIDS (killed children of the monitor), bounded: one in D state stays."""
    left, end = set(pids), time.monotonic() + bound
    while left and time.monotonic() < end:
        for pid in list(left):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    left.discard(pid)
            except ChildProcessError:  # not ours, or gone
                left.discard(pid)
        if left:
            time.sleep(0.001)


def running(sentinel: int) -> set[int]:
    """The monitor's live descendants besides the sentinel (the worker has been reaped)."""
    return {
        p
        for p in descendants(os.getpid()) - {sentinel}
        if stat_fields(f"/proc/{p}/stat")[:1] not in ([], ["Z"])
    }


def end_leftovers(spare: set[int], held: dict[str, str]) -> list[dict]:
    """Every process of the step still running outside the lab's own (SPARE): what it was
    and which of HELD (name -> /proc fd link: the worker's pipes, the channel) it kept open,
    then SIGKILL. As the subreaper the monitor is the parent of every orphan, so they are
    its descendants; a leftover may fork while being looked at, hence the rounds."""
    found: list[dict] = []
    for _ in range(5):
        pids = descendants(os.getpid()) - spare
        if not pids:
            break
        for pid in sorted(pids):
            fields = stat_fields(f"/proc/{pid}/stat")
            if not fields or fields[0] in ("Z", "X"):
                continue  # exited on its own: only a zombie of the monitor's to reap
            links = set()
            for fd in os.listdir(f"/proc/{pid}/fd") if os.path.isdir(f"/proc/{pid}/fd") else []:
                try:
                    links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass
            found.append(
                {
                    "pid": pid,
                    "cmdline": read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()[:200],
                    "comm": read(f"/proc/{pid}/comm").strip(),
                    "pgid": int(fields[2]),
                    "sid": int(fields[3]),
                    "holds": sorted(name for name, link in held.items() if link in links),
                    "sleep": asleep_for(pid),
                }
            )
        kill_pids(pids)
        reap(pids)
    return found


def asleep_for(pid: int) -> float | None:
    """The seconds a process asked to sleep, when it is in a relative nanosleep now."""
    syscall = read(f"/proc/{pid}/syscall").split()
    if len(syscall) < 4 or not syscall[0].isdigit():
        return None
    name, args = SYSCALLS.get(int(syscall[0])), [int(a, 16) for a in syscall[1:7]]
    if name == "nanosleep":
        address = args[0]
    elif name == "clock_nanosleep" and not args[1] & 1:  # not TIMER_ABSTIME
        address = args[2]
    else:
        return None
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        try:
            seconds, nanos = struct.unpack("=qq", os.pread(fd, 16, address))
        finally:
            os.close(fd)
    except (OSError, struct.error):
        return None
    return seconds + nanos / 1e9


class Reader:
    """The worker's stdout and stderr (kept, a chatty module's tail only) and the lab's
    channel and sentinel pipe (parsed), read without ever blocking."""

    def __init__(self, out: int, err: int, channel: int, heard: int) -> None:
        self.out, self.err, self.channel, self.heard = out, err, channel, heard
        self.open = {out, err}
        self.buf = {out: b"", err: b"", channel: b"", heard: b""}
        self.spilled: dict[int, int] = {}

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([*self.open, self.channel, self.heard], [], [], timeout)
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                self.open.discard(fd)
            self.buf[fd] += chunk or b""
            if fd in (self.out, self.err) and len(self.buf[fd]) > OUTPUT_KEPT:  # count, keep the tail
                self.spilled[fd] = self.spilled.get(fd, 0) + len(self.buf[fd]) - OUTPUT_KEPT
                self.buf[fd] = self.buf[fd][-OUTPUT_KEPT:]

    def drain(self, bound: float = 0.0) -> None:
        """Reads what is there (up to BOUND s for the pipes' EOF): once the worker has exited,
        a pipe without EOF is held open by another process."""
        end = time.monotonic() + bound
        while True:
            before = {fd: len(b) for fd, b in self.buf.items()}, set(self.open)
            self.read(0)
            moved = before != ({fd: len(b) for fd, b in self.buf.items()}, self.open)
            if not moved and (not self.open or time.monotonic() >= end):
                return
            if not moved:
                time.sleep(0.01)

    def lines(self, fd: int) -> list[bytes]:
        lines = self.buf[fd].split(b"\n")
        self.buf[fd] = lines.pop()
        return [line for line in lines if line.strip()]


def run_step(step: dict) -> dict:
    """Runs STEP in a fresh worker under the hang watch, in a process group of its own led
    by a sentinel; ends with no process of the step left running (see end_leftovers)."""
    deadline = step.get("timeout", 20.0)
    watch = HangWatch(step.get("quick", QUICK_WINDOW), step.get("slow", SLOW_WINDOW))
    fd, progress = tempfile.mkstemp(prefix="nsslab-progress-", dir=SCRATCH)
    os.close(fd)
    os.chmod(progress, 0o622)  # reopened by a worker that dropped root, if a module closed it
    step = {**step, "progress": progress}
    box = tempfile.mkdtemp(prefix="nsslab-channel-", dir=SCRATCH)
    channel = os.path.join(box, "events")
    os.mkfifo(channel)
    # a worker that dropped root (setxid) must still be able to open it again: write for all
    os.chmod(box, 0o711)
    os.chmod(channel, 0o622)
    events_fd = os.open(channel, os.O_RDONLY | os.O_NONBLOCK)
    keep_open = os.open(channel, os.O_WRONLY | os.O_NONBLOCK)  # no EOF while the worker reopens it
    sentinel, heard = start_sentinel([events_fd, keep_open])
    start = LOOKED[0] = time.monotonic()
    out: dict = {"id": step["id"], "signals": [], "pgid": sentinel}
    events: list[dict] = []
    proc = None
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                os.path.abspath(__file__),
                "worker",
                json.dumps({**step, "channel": channel, "lab_pids": [os.getpid(), sentinel]}),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            # process_group (3.11) keeps subprocess's vfork; preexec_fn forces a full fork
            **(
                {"process_group": sentinel}
                if sys.version_info >= (3, 11)
                else {"preexec_fn": lambda: os.setpgid(0, sentinel)}
            ),
            env=step.get("env") or {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        out["worker"] = proc.pid
        io = Reader(proc.stdout.fileno(), proc.stderr.fileno(), events_fd, heard)
        held = {
            "stdout": os.readlink(f"/proc/self/fd/{io.out}"),
            "stderr": os.readlink(f"/proc/self/fd/{io.err}"),
            "channel": channel,
        }
        members = {proc.pid}  # every pid seen in the step: a signal from one of them is the module's
        while True:
            io.read(SAMPLE_EVERY)
            events += [parse_event(line) for line in io.lines(events_fd)]
            out["signals"] += caught(members, "parent") + heard_by_sentinel(io, members)
            if proc.poll() is not None:
                exited = time.monotonic()
                io.drain()
                # The worker is gone, yet its stdout or stderr has a writer, or it left a process
                # behind: a helper about to exit gets a moment, then the rest is a leftover.
                end = exited + LEFTOVER_GRACE
                while (io.open or running(sentinel)) and time.monotonic() < end:
                    io.drain(bound=0.05)
                if io.open or running(sentinel):
                    out["held_open"] = sorted(
                        n for n, fd in (("stdout", io.out), ("stderr", io.err)) if fd in io.open
                    )
                    out["leftovers"] = end_leftovers({sentinel}, held)
                    for left in out["leftovers"]:
                        left["after_exit"] = round(time.monotonic() - exited, 3)
                    io.drain(bound=2.0)
                if -proc.returncode in CAUGHT and not io.buf[heard]:  # the sentinel may have heard it too
                    select.select([heard], [], [], 0.5)
                    io.read(0)
                out["signals"] += heard_by_sentinel(io, members)
                events += [parse_event(line) for line in drain(events_fd, io.buf[events_fd]) if line.strip()]
                out["outcome"] = "exited"
                out["code"] = proc.returncode
                break
            pids = group(sentinel) - {sentinel}
            members |= pids
            hung = watch.sample(pids)
            if hung and not hung.get("idle"):
                hung["declared_after"] = round(time.monotonic() - start, 3)
                attach_backtraces(hung["processes"], step.get("id", ""))
                hung["evidence_seconds"] = round(time.monotonic() - start - hung["declared_after"], 3)
                out |= {"outcome": "hang", "hang": hung}
                break
            if time.monotonic() - start > deadline:
                hung = {"processes": evidence(snapshot(group(sentinel) - {sentinel}))}
                attach_backtraces(hung["processes"])
                out |= {"outcome": "timeout", "timeout": deadline, "hang": hung}
                break
    finally:
        kill_group(sentinel)  # the sentinel, the worker and whatever stayed in their group
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # unkillable (D state): report it, do not wait forever
                out["unreaped"] = proc.pid
        reap({sentinel})
        # what left the group (setsid) and outlived the step: a module's daemon
        spare = {sentinel} | ({proc.pid} if proc is not None else set())
        out["leftovers"] = out.get("leftovers", []) + end_leftovers(spare, held if proc else {})
        for fd in (keep_open, events_fd, heard):
            os.close(fd)
        shutil.rmtree(box, ignore_errors=True)
    started_by = {p["pid"]: e for e in events if e.get("ev") == "call" for p in e.get("spawned", [])}
    for left in out["leftovers"]:
        call = started_by.get(left["pid"])
        left["call"] = {"fn": call["fn"], "arg": call.get("arg"), "where": call["where"]} if call else None
    out["events"] = events
    out["stderr"] = io.buf[io.err].decode(errors="replace")[-2000:]
    # what the module (or glibc on its behalf) wrote to the caller's stdout: never the lab's channel
    out["stdout"] = io.buf[io.out].decode(errors="replace")[-2000:]
    out["stdout_bytes"] = len(io.buf[io.out]) + io.spilled.get(io.out, 0)
    out["seconds"] = round(time.monotonic() - start, 3)
    out["progress"] = read(progress).strip()
    # gdb stops at a fatal signal or exit_group: a SIGTERM from kill(0) would not stop it
    fatal = {int(getattr(signal, name)) for name in FATAL_SIGNALS.split()}
    child_crash = any(e.get("ev") == "child-exit" and -(e.get("code") or 0) in fatal for e in events)
    exited_in_call = out.get("outcome") == "exited" and out["code"] >= 0 and in_call(events)
    if -out.get("code", 0) in fatal or child_crash or exited_in_call:
        begun = [e for e in events if e.get("ev") == "begin"]
        in_child = child_crash or (exited_in_call and begun[-1].get("where") == "child")
        out["crash"] = crash_backtrace(step, in_child=in_child)
        out["leftovers"] += end_leftovers(set(), {})  # a daemon the re-run under gdb started
    os.unlink(progress)
    return out


LOOKED = [0.0]  # when caught() last found nothing pending


def caught(members: set[int], to: str) -> list[dict]:
    """The signals sent to the monitor (the worker's parent) since the last look. One from
    outside the step ends the probe, as it would have without the block."""
    got = []
    while True:
        info = signal.sigtimedwait(CAUGHT, 0)
        now = time.monotonic()
        if info is None:
            LOOKED[0] = now
            return got
        if info.si_pid not in members and info.si_pid not in descendants(os.getpid()):
            raise Interrupted(info.si_signo)
        got.append(signal_event(info.si_signo, info.si_pid, info.si_code, to, True, (LOOKED[0], now)))


def heard_by_sentinel(io: Reader, members: set[int]) -> list[dict]:
    got = []
    for line in io.lines(io.heard):
        signo, pid, code, heard = line.split()
        at = float(heard)
        got.append(signal_event(int(signo), int(pid), int(code), "group", int(pid) in members, (at, at)))
    return got


def signal_event(signo: int, pid: int, code: int, to: str, by_step: bool, window: tuple) -> dict:
    """SI_USER (0) is kill(), SI_TKILL (-6) tgkill/raise, SI_QUEUE (-1) sigqueue. WINDOW:
    the CLOCK_MONOTONIC span it was sent in (after the last look that found nothing)."""
    try:
        name = signal.Signals(signo).name
    except ValueError:
        name = f"signal {signo}"
    return {"signal": name, "to": to, "from": pid, "code": code, "by_step": by_step, "window": list(window)}


def parse_event(line: bytes) -> dict:
    """A line on the channel; one that is not the worker's JSON was written to the lab's own
    descriptor by number (a module writing to an fd it did not open)."""
    try:
        event = json.loads(line)
    except ValueError:
        return {"ev": "garbage", "text": line[:200].decode(errors="replace")}
    return event if isinstance(event, dict) else {"ev": "garbage", "text": repr(event)[:200]}


def drain(fd: int, rest: bytes) -> list[bytes]:
    """What is left in the FIFO once the worker has gone."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        rest += chunk
    return rest.split(b"\n")


def in_call(events: list[dict]) -> bool:
    """The worker ended between a call's begin and its answer: something called exit()."""
    begun = sum(1 for e in events if e.get("ev") == "begin")
    return begun > sum(1 for e in events if e.get("ev") == "call")


def scenario(spec: dict) -> None:
    guard_monitor()
    try:
        for step in spec["steps"]:
            emit({"ev": "step", **run_step(step)})
    except Interrupted as e:  # the step's processes are gone (run_step's finally): end as asked
        signal.pthread_sigmask(signal.SIG_UNBLOCK, CAUGHT)
        os.kill(os.getpid(), e.signo)
        raise SystemExit(128 + e.signo) from None


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


def kill_pids(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_tree(root: int) -> None:
    pids = tree(root)
    kill_pids(pids)
    emit({"ev": "killed", "pids": sorted(pids)})


def main(argv: list[str]) -> int:
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


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as e:
        if e.errno == errno.EPIPE:
            sys.exit(1)
        raise
