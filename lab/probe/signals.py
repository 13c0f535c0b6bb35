"""The signals a module sends to the lab's own processes, read instead of ending them: the
monitor (the worker's parent) blocks them and reads each with its sender; the sentinel,
leading the worker's process group, hears those sent to the whole group (kill(0, sig))."""

from __future__ import annotations

import ctypes
import os
import signal
import time

from .procfs import descendants

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


def signal_event(signo: int, pid: int, code: int, to: str, by_step: bool, window: tuple) -> dict:
    """SI_USER (0) is kill(), SI_TKILL (-6) tgkill/raise, SI_QUEUE (-1) sigqueue. WINDOW:
    the CLOCK_MONOTONIC span it was sent in (after the last look that found nothing)."""
    try:
        name = signal.Signals(signo).name
    except ValueError:
        name = f"signal {signo}"
    return {"signal": name, "to": to, "from": pid, "code": code, "by_step": by_step, "window": list(window)}
