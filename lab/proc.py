"""The one way the lab runs an external command on this machine: in its own process group,
the whole group killed past a bound (subprocess.run alone kills only the child: vagrant's
ssh or debootstrap's dpkg would live on), and also killed on Ctrl-C."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
from typing import Any

from lab import config
from lab.errors import CommandTimeout


def bounded_run(
    argv: list[str], timeout: float, what: str = "", input: str | bytes | None = None, **kwargs: Any
) -> subprocess.CompletedProcess:
    """subprocess.run in its own process group, bounded by TIMEOUT; the bound is reported as
    a CommandTimeout saying WHAT (by default the command) took too long."""
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise CommandTimeout(f"{what or f'`{shlex.join(argv)}`'} took over {timeout:g} s") from None
    except BaseException:  # Ctrl-C: an orphaned `vagrant up` would hold its VM
        kill_group(proc)
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def tool(*argv: str, timeout: float = config.TOOL) -> subprocess.CompletedProcess:
    """A local helper (virsh, pgrep, ssh -O exit), text output captured, bounded; a missing
    binary or a timeout is rc 127 / 124 with the reason in stderr, as a shell would say."""
    try:
        return bounded_run(
            list(argv),
            timeout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: not installed")
    except CommandTimeout as e:
        return subprocess.CompletedProcess(list(argv), 124, "", str(e))


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=config.KILL_WAIT)
    except subprocess.TimeoutExpired:
        pass  # unkillable (D state); the caller reports what it measured anyway


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, unwound like Ctrl-C so every finally block tears its target down
    (killed by the default action, a run would leave its sandbox workdir behind)."""


def terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def trap() -> dict[int, object]:
    """SIGTERM and SIGHUP raise Terminated from now on (in the main thread only: handlers
    live there); returns the handlers to put back with untrap()."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}


def untrap(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
