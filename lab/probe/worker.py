"""The worker: the process that loads the module and makes a step's calls, reporting each.

Calls named "nss:*" go straight to a module's entry points (entrypoints). The worker
notes where it is in a small progress file, so a crash or hang in the middle of a long call
(a buffer-size sweep) names the entry point and size. It waits for a forked child the way a
busy caller does, so a SIGCHLD handler that reaps every child shows as ECHILD.
"""

from __future__ import annotations

import ctypes
import grp
import os
import pwd
import signal
import struct
import time

from .procfs import children, nss_modules, read
from .protocol import channel_intact, emit, open_channel


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


def call(spec: dict):
    fn, arg = spec["fn"], spec.get("arg")
    if fn.startswith("nss:"):
        from . import entrypoints  # the direct calls: loaded by the steps that make them

        return entrypoints.run(spec, note)
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
