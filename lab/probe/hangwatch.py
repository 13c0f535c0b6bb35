"""The hang watch: which processes of a tree are hung, and the evidence of each.

Hang detection never guesses from elapsed time alone. A thread is stuck when its
scheduler counters and its current syscall stop changing; the tree is declared hung
quickly when every thread is stuck in a wait that nothing outside the tree can end
(a private futex with no timeout, wait4 on stuck children, a read on a pipe whose
writers are all stuck). A thread in a timed sleep is slow, not hung: it is left to the
step's deadline.
"""

from __future__ import annotations

import ctypes
import os
import struct
import time

from .procfs import current_call, nss_modules, processes, read, stat_fields, thread_state

QUICK_WINDOW = 0.5  # stuck in waits only the tree itself could end
SLOW_WINDOW = 5.0  # stuck in waits the outside world could still end (socket, tty)
SAMPLE_EVERY = 0.05
FUTEX_WAITS = {0, 6, 9, 11, 13}  # WAIT, LOCK_PI, WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2
FUTEX_PRIVATE = 0x80


def signature(t: dict) -> tuple:
    """What must stay the same for thread T to count as stuck."""
    return (t["state"], t["progress"], tuple(t["syscall"]))


def classify_wait(pid: int, t: dict) -> str:
    """What could end thread T's wait: 'running', 'timed' (a clock), 'self' (only a thread
    of this process: a private futex with no timeout), 'children' (wait4), 'pipe:[N]'
    (a read on a pipe), 'tty' (a shell waiting for its user), or 'external'."""
    if t["state"] == "R":
        return "running"
    call = current_call(t["syscall"]) if t["state"] in ("S", "D") else None
    if call is None:
        return "external"
    name, args = call
    t["call"] = name
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
