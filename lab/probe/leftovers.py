"""The processes of a step still running after its worker: what each was, then SIGKILL.
The monitor is the subreaper of the step, so a daemon the module double-forks is adopted
by it, found here among its descendants, and named with the call that started it."""

from __future__ import annotations

import os
import struct
import time

from .procfs import current_call, descendants, kill_pids, read, stat_fields

LEFTOVER_GRACE = 0.5  # a process of the step still running this long after the worker exited is left over


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
    call = current_call(read(f"/proc/{pid}/syscall").split())
    if call is None:
        return None
    name, args = call
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
