"""[[services]]: the daemons a module talks to (sssd behind libnss_sss), run inside the target.

Each one is started through target.wrap() in its own process group, with stdout and stderr
in a log in the target's workdir, after install and before the checks; it must get ready
within its bound. stop() ends the group (SIGTERM, then SIGKILL), so nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import CommandTimeout, LabError
from lab.module import Service

if TYPE_CHECKING:
    from lab.targets.target import Target

POLL = 0.1
STOP_BOUND = 5.0
TAIL_LINES = 8


def tail(log: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def start(target: Target, services: list[Service], logdir: Path) -> list[dict]:
    """Starts SERVICES in order, each ready before the next; returns their records
    ({name, pid, ready_seconds, log, tail}), which stop() completes. On a failure, the ones
    already started are stopped and the error names the service and its log's last lines."""
    running: list[dict] = []
    try:
        for service in services:
            running.append(start_one(target, service, logdir))
    except BaseException:
        stop(running)
        raise
    return running


def start_one(target: Target, service: Service, logdir: Path) -> dict:
    log = logdir / f"service-{service.name}.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            target.wrap(list(service.command)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() ends the daemon's children too
        )
    record = {
        "name": service.name,
        "pid": proc.pid,
        "ready_seconds": None,
        "log": str(log),
        "tail": "",
        "proc": proc,
    }
    deadline = started + service.timeout
    while True:
        if proc.poll() is not None:
            record["tail"] = tail(log)
            stop([record])
            last = record["tail"].replace("\n", " | ")[-300:] or "no output"
            raise LabError(
                f"service {service.name} exited with {proc.returncode} before it was ready: {last}"
            )
        if ready(target, service, deadline - time.monotonic()):
            record["ready_seconds"] = round(time.monotonic() - started, 3)
            return record
        if time.monotonic() >= deadline:
            stop([record])  # keeps the tail
            last = record["tail"].replace("\n", " | ")[-300:] or "no output"
            what = f"{service.ready[0]} {service.ready[1]}"
            raise LabError(f"service {service.name} not ready ({what}) within {service.timeout:g} s: {last}")
        time.sleep(POLL)


def ready(target: Target, service: Service, left: float) -> bool:
    kind, value = service.ready
    if kind == "socket":
        argv = ["test", "-S", str(value)]
    elif kind == "tcp":
        argv = [target.python, "-c", f"import socket; socket.create_connection(('127.0.0.1', {value}), 1)"]
    else:
        argv = list(value)  # type: ignore[call-overload]
    try:
        return target.run(argv, timeout=max(1.0, min(left, 10.0))).rc == 0
    except CommandTimeout:
        return False


def stop(records: list[dict]) -> None:
    """SIGTERM to each service's group, SIGKILL past STOP_BOUND; keeps the log's tail."""
    for record in reversed(records):
        proc: subprocess.Popen | None = record.pop("proc", None)
        if proc is None:
            continue
        signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_BOUND)
        except subprocess.TimeoutExpired:
            pass
        signal_group(proc.pid, signal.SIGKILL)  # children that outlived their parent, too
        try:
            proc.wait(timeout=STOP_BOUND)
        except subprocess.TimeoutExpired:
            pass  # unkillable (D state): the target's teardown reports what is left
        record["exit"] = proc.returncode
        record["tail"] = tail(Path(record["log"]))


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
