"""How the probe reports: JSON lines by emit(), on stdout or, in the worker, on a channel of
its own (a FIFO the monitor made, and reads with parse_event and drain); where the probe is
(PROBE_DIR, itself()) and keeps its scratch files."""

from __future__ import annotations

import fcntl
import json
import os
import sys

# The directory the target runs as the probe, `python3 -I -S DIR ARGS`: DIR/__main__.py, and
# this package as DIR/nsslab_probe (running a directory puts it first on sys.path even under
# -I). The probe runs itself again by it (itself()): each step's worker, a crashed step under
# gdb. On the host, where this package is lab.probe, it is lab/.
PROBE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Where emit() writes. The worker, which loads the module, speaks on a FIFO of its own
# (CHANNEL), not on stdout: a module's debug printf goes to the worker's stdout, which the
# monitor keeps as the module's output, and a module that closes or replaces descriptors
# is found out by the check after every call (channel_intact) instead of garbling the lab.
CHANNEL = {"fd": 1, "path": None, "id": None}


# The probe's own scratch files (progress record, channel FIFO, gdb scripts, the in-target
# tests' files) live in its directory, which the target made for it and removes with it: a
# run killed mid-step (Ctrl-C, SIGKILL of the probe's group) leaves nothing in the target's /tmp.
SCRATCH = PROBE_DIR


def itself(*args: str) -> list[str]:
    """The command that runs the probe again with ARGS, by this interpreter, isolated as the
    lab runs it (-I -S: no user site, no environment, no site-packages)."""
    return [sys.executable, "-I", "-S", PROBE_DIR, *args]


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


# ---------------------------------------------------------------- the monitor's end


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
