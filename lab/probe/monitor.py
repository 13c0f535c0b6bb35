"""The monitor: runs each step of a scenario in a fresh worker and reports what happened.

A module may act on the process it runs in, and the lab must survive it and say what it
did: the worker's process group is led by a sentinel that hears a signal sent to the whole
group (kill(0, sig)); the monitor, the worker's parent, blocks the termination signals and
reads them with their sender instead of dying (signals.py); it is the subreaper of the
step, so a daemon the module double-forks is adopted, named with the call that started it,
and killed (leftovers.py); a hang is judged by the hang watch (hangwatch.py) and a crash is
run again under gdb (gdb.py).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .gdb import FATAL_SIGNALS, attach_backtraces, crash_backtrace
from .hangwatch import QUICK_WINDOW, SAMPLE_EVERY, SLOW_WINDOW, HangWatch, evidence, snapshot
from .leftovers import LEFTOVER_GRACE, end_leftovers, reap, running
from .procfs import group, kill_group, read
from .protocol import SCRATCH, drain, emit, itself, parse_event
from .signals import CAUGHT, LOOKED, Interrupted, caught, guard_monitor, signal_event, start_sentinel

OUTPUT_KEPT = 65536  # bytes of a worker's stdout and stderr kept (the count is exact)


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


def clip(text: str, kept: int = 2000) -> str:
    """The worker's stderr, its head and tail: a runtime's crash dump says why in its first
    lines (Go: "fatal error: ..."), glibc's last words come last."""
    if len(text) <= kept:
        return text
    head = text[: kept // 2].rpartition("\n")[0] or text[: kept // 2]  # whole lines where there are any
    tail = text[-kept // 2 :].partition("\n")[2] or text[-kept // 2 :]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters ...]\n{tail}"


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
            itself("worker", json.dumps({**step, "channel": channel, "lab_pids": [os.getpid(), sentinel]})),
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
    out["stderr"] = clip(io.buf[io.err].decode(errors="replace"))
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


def heard_by_sentinel(io: Reader, members: set[int]) -> list[dict]:
    got = []
    for line in io.lines(io.heard):
        signo, pid, code, heard = line.split()
        at = float(heard)
        got.append(signal_event(int(signo), int(pid), int(code), "group", int(pid) in members, (at, at)))
    return got


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
