"""Probe side of the `descriptors` and `growth` checks (stdlib only, Python 3.9).

Both make many lookups fast: a Caller builds every call's arguments once (one 64 KiB
buffer, one record per query), so a loop of 20,000 lookups costs the module's time plus
~2 us each, and allocates nothing per call that could pass for the module's growth.
Each test returns observations; lab/checks/descriptors.py and growth.py judge them.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

from .. import clock, worker
from .. import entrypoints as ep
from ..protocol import CHANNEL, SCRATCH
from . import wakes

BUFFER = 1 << 16
HIGH = 900  # the probe's channel lives from here up (protocol.open_channel); the caller's range is below
# The program a caller execs: lists the descriptors it inherited (its listing's own
# directory descriptor is gone by the time readlink runs, so it is not in the answer).
HELPER = (
    "import json, os\n"
    "out = {}\n"
    "for n in os.listdir('/proc/self/fd'):\n"
    "    try:\n"
    "        out[n] = os.readlink('/proc/self/fd/' + n)\n"
    "    except OSError:\n"
    "        pass\n"
    "print(json.dumps(out))\n"
)
CALLER_FILE = b"nsslab: the caller's own file at fd %d\n"
AFTER_CLOSE = "after the caller closed fds 3 and up"  # in the notes of the steps that follow it


class Caller:
    """Point lookups (and initgroups_dyn) with their arguments built once."""

    def __init__(self, module: ep.Module, queries: list[list], users: list[list] | None = None) -> None:
        self.module = module
        self.buf = ctypes.create_string_buffer(BUFFER)
        self.err = ctypes.c_int(0)
        self.calls: list[tuple[str, object, tuple]] = []
        self.start: ctypes.c_long | None = None  # initgroups_dyn's fill count, reset before each call
        for db, by, key in queries:
            name = ep.DATABASES[db][1][by]
            fn = module.function(name)
            if fn is None:
                continue
            record = ep.DATABASES[db][0]()
            arg = ctypes.c_uint(key) if by == "id" else ctypes.c_char_p(str(key).encode())
            args = (arg, ctypes.byref(record), self.buf, ctypes.c_size_t(BUFFER), ctypes.byref(self.err))
            self.calls.append((f"{name}({key!r})", fn, args))
        fn = module.function("initgroups_dyn") if users else None
        if fn is not None:
            self.libc = module.libc
            self.libc.realloc.restype = ctypes.c_void_p
            self.libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            self.start, self.size = ctypes.c_long(1), ctypes.c_long(64)
            self.groups = ctypes.c_void_p(self.libc.malloc(64 * 4))
            for user, gid in users or []:
                args = (
                    ctypes.c_char_p(user.encode()),
                    ctypes.c_uint(gid),
                    ctypes.byref(self.start),
                    ctypes.byref(self.size),
                    ctypes.byref(self.groups),
                    ctypes.c_long(-1),
                    ctypes.byref(self.err),
                )
                self.calls.append((f"initgroups_dyn({user!r})", fn, args))

    def __len__(self) -> int:
        return len(self.calls)

    def call(self, i: int) -> int:
        _, fn, args = self.calls[i % len(self.calls)]
        if self.start is not None:
            self.start.value = 1  # the array holds the primary gid, as glibc passes it
        return fn(*args)

    def label(self, i: int) -> str:
        return self.calls[i % len(self.calls)][0]

    def run(self, count: int, deadline: float, first: int = 0) -> int:
        """Up to COUNT calls from index FIRST, while the deadline allows; returns how many."""
        done = 0
        while done < count and clock.now() < deadline:
            self.call(first + done)
            done += 1
        return done


# ---------------------------------------------------------------- descriptors


def probe_fds() -> set[int]:
    """The lab's own descriptors: its channel and progress file (the worker's; outside a worker
    the channel is stdout and there is no progress file) and entrypoints' /proc/self/mem. All
    are FD_CLOEXEC."""
    fds = {CHANNEL["fd"], worker.PROGRESS_FD}
    if ep.MEMORY is not None:
        fds.add(ep.MEMORY.fd)
    return {fd for fd in fds if isinstance(fd, int) and fd > 2}


def fd_table() -> dict[int, dict]:
    """Every open descriptor from 3 up that is not the lab's: what it is and its flags."""
    mine = probe_fds()
    out = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd in mine:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:  # the listing's own directory descriptor, closed by now
            continue
        out[fd] = {"target": describe(fd, target), "cloexec": bool(flags & fcntl.FD_CLOEXEC)}
    return out


def describe(fd: int, target: str) -> str:
    """'socket:[123] (AF_UNIX, peer /var/lib/sss/pipes/nss)' for a socket, else the path."""
    if not target.startswith("socket:"):
        return target
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return target
    try:
        peer = sock.getpeername()
        family = sock.family.name if hasattr(sock.family, "name") else str(sock.family)
    except OSError:
        peer, family = None, "socket"
    finally:
        sock.close()  # the duplicate only
    return f"{target} ({family}" + (f", peer {peer!r})" if peer else ")")


def inherited(timeout: float = 5.0) -> dict:
    """What a program the caller fork+execs inherits beyond 0, 1 and 2."""
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", HELPER],
            close_fds=False,  # as execve does: every descriptor without FD_CLOEXEC goes along
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        fds = json.loads(done.stdout or b"{}")
    except (subprocess.TimeoutExpired, ValueError, OSError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return {"fds": {n: t for n, t in sorted(fds.items(), key=lambda x: int(x[0])) if int(n) > 2}}


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # not the listing's own


def descriptors(module: ep.Module, spec: dict) -> dict:
    """(a) what an exec'd program inherits after load, lookups and the listing; (b) the
    descriptor count over many lookups and thread create->lookup->join cycles; (c) the
    caller closes everything from 3 up, opens its own files at those numbers, looks up
    more: its files must come back untouched. Bounded by spec["budget"] seconds."""
    started = time.monotonic()
    budget = spec.get("budget", 3.0)
    caller = Caller(module, spec["queries"])
    out: dict = {"rlimit": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "phases": []}

    def until(share: float) -> float:
        # each part its share from when it starts: a slow module's first parts overrun by a
        # call, and the last part (the caller's own files) must still make its calls
        return clock.now() + budget * share

    def phase(name: str, calls: int) -> None:
        out["phases"].append({"phase": name, "calls": calls, "held": fd_table(), "inherited": inherited()})

    module.note("descriptors: a program exec'd after dlopen")
    phase("load", 0)
    module.note(f"descriptors: {len(caller)} lookups, each once")
    phase("lookups", caller.run(len(caller), until(0.15)))
    listed = 0
    deadline = until(0.15)
    for db in spec.get("listings", []):
        module.note(f"descriptors: the {db} listing")
        module.setent(db)
        while clock.now() < deadline and module.getent(db).status == 1:
            listed += 1
        module.endent(db)
    if spec.get("listings"):
        phase("listing", listed)
    out["listed"] = spec.get("listings", [])
    out["lookups"] = flat_lookups(module, caller, spec.get("lookups", 1000), until(0.25))
    out["threads"] = flat_threads(module, caller, spec.get("threads", 200), until(0.25))
    phase("after all", out["lookups"]["done"] + out["threads"]["done"])
    out["reuse"] = reuse(module, caller, spec.get("listings", []), until(0.2), spec.get("wake", 6.0))
    out["seconds"] = round(time.monotonic() - started, 3)
    return out


def flat_lookups(module: ep.Module, caller: Caller, count: int, deadline: float) -> dict:
    module.note(f"descriptors: {count} lookups in one thread")
    samples, done = [[0, count_fds()]], 0
    step = max(count // 10, 1)
    while done < count and clock.now() < deadline:
        done += caller.run(min(step, count - done), deadline, done)
        samples.append([done, count_fds()])
    return {"done": done, "asked": count, "samples": samples, "held": fd_table()}


def flat_threads(module: ep.Module, caller: Caller, count: int, deadline: float) -> dict:
    module.note(f"descriptors: {count} threads, each created, making one lookup, joined")
    samples, done, stuck = [[0, count_fds()]], 0, False
    step = max(count // 10, 1)
    while done < count and clock.now() < deadline and not stuck:
        t = threading.Thread(target=caller.call, args=(done,), daemon=True)
        t.start()
        t.join(max(deadline - clock.now(), 0.0) * clock.CAP + 5.0)  # wall time: what is left may take CAP x
        stuck = t.is_alive()
        done += 1
        if done % step == 0 or done == count:
            samples.append([done, count_fds()])
    return {"done": done, "asked": count, "samples": samples, "stuck": stuck, "held": fd_table()}


def move_up(fd: int, path: str) -> int:
    """FD moved beside the channel; opened again by PATH when a module closed it."""
    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH)
        os.close(fd)
    except OSError:  # a module that closes the caller's descriptors closed this one too
        fresh = os.open(path, os.O_WRONLY if path != "/proc/self/mem" else os.O_RDONLY)
        high = fcntl.fcntl(fresh, fcntl.F_DUPFD_CLOEXEC, HIGH)
        os.close(fresh)
    return high


def reuse(module: ep.Module, caller: Caller, listings: list[str], deadline: float, wake: float) -> dict:
    """The SSSD#6592/#6986 caller: after the module cached its descriptors, it closes 3 up
    to the lab's channel, opens files of its own at those numbers, and looks up again; then
    waits (up to WAKE seconds) for the module's threads blocked on those numbers to wake."""
    # The lab's own descriptors move up beside its channel first: they are not the caller's,
    # and the progress note must not land in the caller's files.
    if isinstance(worker.PROGRESS_FD, int) and worker.PROGRESS_PATH:  # None outside a worker
        worker.PROGRESS_FD = move_up(worker.PROGRESS_FD, worker.PROGRESS_PATH)
    if ep.MEMORY is not None:
        ep.MEMORY.fd = move_up(ep.MEMORY.fd, "/proc/self/mem")
    held = fd_table()
    closed = sorted(fd for fd in held if fd < HIGH)
    for fd in closed:
        os.close(fd)
    numbers = sorted(set(closed) | {3, 4, 5})
    files: dict[int, dict] = {}
    where = SCRATCH  # the probe's own directory, removed with it
    for n in numbers:
        fd, path = tempfile.mkstemp(prefix="nsslab-caller-", dir=where)
        os.unlink(path)  # nothing left behind, whatever happens next
        if fd != n:
            os.dup2(fd, n, inheritable=False)
            os.close(fd)
        content = (CALLER_FILE % n) * 16
        os.write(n, content)
        os.lseek(n, 7, os.SEEK_SET)
        st = os.fstat(n)
        files[n] = {"id": [st.st_dev, st.st_ino], "offset": 7, "content": content}
    # The control: each file as the caller left it, measured the same way before the module's calls.
    before = {str(n): caller_file(n, want) for n, want in files.items()}
    module.note(f"descriptors: lookups {AFTER_CLOSE} and opened its own files")
    calls = caller.run(max(len(caller), 3), deadline)
    # Looked at twice: after the lookups, and after the listing (a module that writes to a
    # number in its lookups may close it in end*ent: both are named).
    seen = {str(n): [caller_file(n, want)] for n, want in files.items()}
    listed = 0
    for db in listings:
        if clock.now() > deadline:
            break
        module.setent(db)
        module.getent(db)
        module.endent(db)
        listed += 3
    if listed:
        for n, want in files.items():
            seen[str(n)].append({**caller_file(n, want), "after": "listing"})
    # The module's own threads still waiting on a number it held: they act when they wake,
    # with no call from the caller (Go's netpoller, on its next timer). Waited for, bounded.
    waits = wakes.blocked_on(set(closed))
    waited = 0.0
    timed = wakes.timed(waits, wake)
    if timed:
        w = timed[-1]
        named = "" if w["comm"] == main_comm() else f" ({w['comm']})"
        module.note(
            f"descriptors: {AFTER_CLOSE}, waiting {w['timeout']:.1f} s for the module's thread "
            f"{w['tid']}{named} to wake, blocked in {w['call']} on fd {w['fd']} "
            f"(its {held[w['fd']]['target']} until then, the caller's file now)"
        )
    if waits:
        waited = wakes.await_wakes(waits, wake)
    if any(w["woke"] is not None for w in waits):  # what the woken threads did, named as theirs
        for n, want in files.items():
            seen[str(n)].append({**caller_file(n, want), "after": "wake"})
    for n, want in files.items():
        if caller_file(n, want)["state"] in ("intact", "written", "moved"):
            os.close(n)  # still the caller's file: ours to close
    return {
        "module_held": {str(fd): held[fd] for fd in closed},
        "numbers": numbers,
        "calls": calls,
        "listing_calls": listed,
        "before": before,
        "files": seen,
        "waits": waits,
        "waited": waited,
    }


def main_comm() -> str:
    """The process's own thread name: a thread that has no other (Go's) says nothing."""
    with open("/proc/self/comm") as f:
        return f.read().strip()


def caller_file(n: int, want: dict) -> dict:
    """What became of the caller's file at fd N: intact, closed, replaced, written, moved."""
    try:
        st = os.fstat(n)
    except OSError:
        return {"state": "closed"}
    if [st.st_dev, st.st_ino] != want["id"]:
        try:
            now = describe(n, os.readlink(f"/proc/self/fd/{n}"))
        except OSError:
            now = "?"
        return {"state": "replaced", "now": now}
    offset = os.lseek(n, 0, os.SEEK_CUR)
    content = os.pread(n, max(st.st_size, len(want["content"])) + 1, 0)
    if content != want["content"]:
        common = min(len(content), len(want["content"]))
        first = next((i for i in range(common) if content[i] != want["content"][i]), common)
        return {
            "state": "written",
            "size": st.st_size,
            "was": len(want["content"]),
            "at": first,
            "text": content[first : first + 80].decode(errors="replace"),
        }
    if offset != want["offset"]:
        return {"state": "moved", "offset": offset, "was": want["offset"]}
    return {"state": "intact"}


# ---------------------------------------------------------------- growth


class MallInfo(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_int)
        for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
    ] + [(n, ctypes.c_int) for n in ("fordblks", "keepcost")]


def footprint(libc) -> dict:
    """Resident memory (KiB), heap bytes in use (glibc's mallinfo: exact, where RSS moves
    in pages), threads and mappings of this process."""
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.split()
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    info = libc.mallinfo()
    heap = (info.uordblks & 0xFFFFFFFF) + (info.hblkhd & 0xFFFFFFFF)  # int fields wrap past 2 GiB
    return {"rss": int(status["VmRSS"][0]), "heap": heap, "threads": int(status["Threads"][0]), "maps": maps}


def growth(module: ep.Module, spec: dict) -> dict:
    """Mixed lookups (hits and misses, by name and id, each database, initgroups) after a
    warm-up, with the footprint every spec["every"] lookups; bounded by spec["budget"] seconds
    of clock.now(). The time per call is measured over the whole run after the warm-up, never
    extrapolated from the warm-up's first calls (a cold first lookup, or a moment without a
    CPU, made a 33 us module look 100 times slower)."""
    started, begun = time.monotonic(), clock.now()
    budget, total, every = spec.get("budget", 1.0), spec.get("lookups", 20000), spec.get("every", 1000)
    caller = Caller(module, spec["queries"], spec.get("users"))
    libc = module.libc
    libc.mallinfo.restype = MallInfo
    deadline = begun + budget
    module.note(f"growth: {spec.get('warmup', 1000)} lookups of warm-up")
    # The window starts after the first lookup: a first connection (coldlab: 150 ms) is not
    # the warm-up's time, or a cold module would be measured with no cache filled.
    warm = caller.run(1, deadline)
    warm += caller.run(spec.get("warmup", 1000) - warm, min(clock.now() + budget * 0.1, deadline), warm)
    out: dict = {"calls": len(caller), "warmup": warm, "asked": total, "samples": []}
    out["samples"].append([0, footprint(libc)])
    measured, made = clock.now(), 0
    while made < total and clock.now() < deadline:
        module.note(f"growth: lookups {made}-{made + every} of {total} ({caller.label(warm + made)} …)")
        n = caller.run(min(every, total - made), deadline, warm + made)
        made += n
        if n == every or made == total:
            out["samples"].append([made, footprint(libc)])
    # a module too slow to make any lookup after its warm-up: the warm-up's own calls tell
    out["per_call"] = (clock.now() - measured) / made if made else (clock.now() - begun) / max(warm, 1)
    out["done"] = out["samples"][-1][0]  # the lookups up to the last footprint
    out["seconds"] = round(time.monotonic() - started, 3)
    out["waited"] = clock.waited()
    return out


TESTS = {"descriptors": descriptors, "growth": growth}
