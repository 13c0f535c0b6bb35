"""The module's own threads, blocked on a descriptor the caller has since closed (stdlib
only, Python 3.9). Part of the `descriptors` check's reuse step (fds.reuse).

A module with a runtime of its own (Go's c-shared runtime, an async client) keeps threads
that wait on its descriptors between calls: Go's netpoller sits in epoll_pwait on its epoll
descriptor until the next timer. A caller that closes everything from 3 up and opens its own
files does not wake that thread; the thread's next wait, when its timer ends, is on the
caller's file: "runtime: epollwait on fd 4 failed with 22", then `fatal error: runtime:
netpoll failed`, SIGABRT (golang/go#11498). No lookup is needed, so a check that only looks
during its calls sees it or not depending on how long its earlier parts took.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time

from ..procfs import current_call, read

# Waits on one descriptor (arg 0), and the argument that holds a timeout in ms (None: the
# wait has no timeout of its own, or it is behind a pointer).
FD_WAITS: dict[str, int | None] = {
    "epoll_wait": 3,
    "epoll_pwait": 3,
    "epoll_pwait2": None,
    "read": None,
    "recvfrom": None,
    "recvmsg": None,
    "accept": None,
    "accept4": None,
}
SAMPLE = 0.05
GRACE = 0.5  # after a thread woke: what it does next (Go polls its descriptor again at once)


def syscall(tid: int) -> list[str]:
    return read(f"/proc/self/task/{tid}/syscall").split()


def timed(waits: list[dict], bound: float) -> list[dict]:
    """The waits that end by themselves within BOUND seconds, the longest last."""
    return sorted(
        (w for w in waits if w["timeout"] is not None and w["timeout"] <= bound), key=lambda w: w["timeout"]
    )


def blocked_on(numbers: set[int], looks: int = 5) -> list[dict]:
    """The threads other than this one blocked in a wait on one of NUMBERS: the thread, its
    name, the call, the descriptor, and the timeout in seconds (None: none it ends by itself),
    as the thread passed it when it entered the wait (/proc shows no time left).
    Looked at up to LOOKS times SAMPLE apart while the process has other threads: one that
    was between two waits (Go's netpoller, just after a lookup) is in the next."""
    for _ in range(looks):
        found = blocked_now(numbers)
        if found or len(os.listdir("/proc/self/task")) == 1:
            return found
        time.sleep(SAMPLE)
    return []


def blocked_now(numbers: set[int]) -> list[dict]:
    me = threading.get_native_id()
    out = []
    for name in sorted(os.listdir("/proc/self/task"), key=int):
        tid = int(name)
        fields = syscall(tid)
        found = current_call(fields) if tid != me else None
        if found is None or found[0] not in FD_WAITS or found[1][0] not in numbers:
            continue
        call, args = found
        arg = FD_WAITS[call]
        ms = ctypes.c_int(args[arg]).value if arg is not None else -1
        out.append(
            {
                "tid": tid,
                "comm": read(f"/proc/self/task/{tid}/comm").strip(),
                "call": call,
                "fd": args[0],
                "timeout": ms / 1000 if ms >= 0 else None,
                "syscall": fields,
            }
        )
    return out


def await_wakes(waits: list[dict], bound: float) -> float:
    """Waits (wall time: the module's own timers are) until each thread whose wait ends
    within BOUND seconds has woken, then GRACE more. Marks each wait "woke" (seconds, or
    None: it did not within the bound, or it has no timeout). Returns the seconds waited."""
    started = time.monotonic()
    pending = timed(waits, bound)
    for w in waits:
        w["woke"] = None
    if not pending:
        return strip(waits, 0.0)
    deadline = started + pending[-1]["timeout"] + GRACE
    while pending and time.monotonic() < deadline:
        time.sleep(SAMPLE)
        for w in list(pending):
            now = syscall(w["tid"])
            if now != ["running"] and now != w["syscall"]:  # another call (or gone): it woke
                w["woke"] = round(time.monotonic() - started, 3)
                pending.remove(w)
    time.sleep(GRACE)
    return strip(waits, round(time.monotonic() - started, 3))


def strip(waits: list[dict], waited: float) -> float:
    for w in waits:
        w.pop("syscall", None)  # raw: only for telling a wake apart
    return waited
