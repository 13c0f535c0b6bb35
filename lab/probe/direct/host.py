"""What an entry point leaves behind in the process that called it (the side-effects check).

Runs inside the target in the probe's worker (stdlib only, Python 3.9). Around every call
it records what a caller owns and the module has no business changing: bytes on fds 1
and 2, signal dispositions and mask, errno after a SUCCESS, umask, cwd, the C environment,
the locale, rlimits, the caller's descriptors, child processes still running, and the
ident of the caller's next syslog() line. Between calls the caller's state is put back,
so every entry point is measured on its own. Observations only; lab/checks/side_effects.py
judges them.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import resource
import select
import signal
import socket
import tempfile
import time

from .. import clock
from .. import entrypoints as ep
from ..protocol import SCRATCH

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_CHILD_SUBREAPER = 36
LC_ALL = 6
LOG_INFO, LOG_USER = 6, 1 << 3
SIGACTION_SIZE = 512  # more than glibc's struct sigaction on any architecture (152 on x86-64)
SPAWN_WAIT = 2.0  # bound on the helper child we fork+exec to see what it inherits
OUTPUT_SAMPLE = 200
SETTLE = 0.2  # seconds a daemonizing fork gets to finish before the children are read
SKIP_SIGNALS = {signal.SIGKILL, signal.SIGSTOP}
RLIMITS = {n: getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")}


class Libc:
    def __init__(self) -> None:
        self.c = ctypes.CDLL(None, use_errno=True)
        self.c.setlocale.restype = ctypes.c_char_p
        self.c.setlocale.argtypes = [ctypes.c_int, ctypes.c_char_p]
        self.c.syslog.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]
        self.c.openlog.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        self.c.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        self.c.malloc.restype = ctypes.c_void_p
        self.c.malloc.argtypes = [ctypes.c_size_t]
        self.c.free.argtypes = [ctypes.c_void_p]

    def check(self, ret: int, what: str) -> None:
        if ret != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"{what}: {os.strerror(e)}")


# ---------------------------------------------------------------- what a caller owns


def dispositions(libc: Libc) -> dict[int, bytes]:
    """Every signal's struct sigaction as bytes (restorable as they are)."""
    out = {}
    for sig in signal.valid_signals():
        if sig in SKIP_SIGNALS:
            continue
        raw = ctypes.create_string_buffer(SIGACTION_SIZE)
        if libc.c.sigaction(int(sig), None, raw) == 0:  # glibc's own (32, 33) say EINVAL
            out[int(sig)] = raw.raw
    return out


def handler_name(raw: bytes) -> str:
    address = int.from_bytes(raw[: ctypes.sizeof(ctypes.c_void_p)], "little" if is_little() else "big")
    return {0: "SIG_DFL", 1: "SIG_IGN"}.get(address, f"handler {address:#x}")


def is_little() -> bool:
    import sys

    return sys.byteorder == "little"


def sig_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return (
            f"SIGRTMIN+{sig - signal.SIGRTMIN}" if signal.SIGRTMIN <= sig <= signal.SIGRTMAX else f"SIG{sig}"
        )


def c_environ() -> dict[str, str]:
    """The C environment (os.environ is Python's copy from startup: a module's setenv is not in it)."""
    env = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
    out, i = {}, 0
    while env and env[i] is not None:
        name, _, value = env[i].decode(errors="replace").partition("=")
        out[name] = value
        i += 1
    return out


def status_field(field: str) -> str:
    with open("/proc/thread-self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def umask() -> str:
    got = status_field("Umask")
    if got:
        return got
    old = os.umask(0o022)
    os.umask(old)
    return f"{old:04o}"


def descriptors() -> dict[int, str]:
    listing = f"/proc/{os.getpid()}/fd"
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if target != listing:
            out[int(name)] = target
    return out


def children() -> dict[int, str]:
    """Processes whose parent is this one (with the subreaper set: also orphans of our children)."""
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids |= {int(p) for p in f.read().split()}
        except OSError:
            pass
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            if not cmd:  # forked, not yet exec'd (or a zombie): its name
                with open(f"/proc/{pid}/comm") as f:
                    cmd = f"[{f.read().strip()}]"
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        out[pid] = f"{cmd or '?'} (state {state})"
    return out


def state(libc: Libc, out: dict) -> dict:
    try:
        cwd = os.getcwd()
    except OSError as e:
        cwd = f"<{e.strerror}>"
    limits = {}
    for name, res in RLIMITS.items():
        try:
            limits[name] = list(resource.getrlimit(res))
        except (OSError, ValueError):
            pass
    return {
        "stdout": out["stdout"].size(),
        "stderr": out["stderr"].size(),
        "signals": dispositions(libc),
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "umask": umask(),
        "cwd": cwd,
        "env": c_environ(),
        "locale": (libc.c.setlocale(LC_ALL, None) or b"").decode(errors="replace"),
        "rlimits": limits,
        "fds": descriptors(),
        "children": children(),
    }


def compare(before: dict, after: dict, caller_fds: dict[int, str]) -> list[dict]:
    """What changed between two states, one dict per change."""
    changes: list[dict] = []
    for stream in ("stdout", "stderr"):
        grown = after[stream][0] - before[stream][0]
        if grown > 0:
            changes.append({"kind": stream, "bytes": grown, "sample": after[stream][1][-OUTPUT_SAMPLE:]})
    for sig in sorted(set(before["signals"]) | set(after["signals"])):
        b, a = before["signals"].get(sig), after["signals"].get(sig)
        if b != a and (b is None or a is None or handler_name(b) != handler_name(a)):
            changes.append(
                {
                    "kind": "signal",
                    "signal": sig_name(sig),
                    "before": handler_name(b) if b else "?",
                    "after": handler_name(a) if a else "?",
                }
            )
    added = sorted(set(after["blocked"]) - set(before["blocked"]))
    removed = sorted(set(before["blocked"]) - set(after["blocked"]))
    if added or removed:
        changes.append(
            {
                "kind": "mask",
                "blocked": [sig_name(s) for s in added],
                "unblocked": [sig_name(s) for s in removed],
            }
        )
    for field in ("umask", "cwd", "locale"):
        if before[field] != after[field]:
            changes.append({"kind": field, "before": before[field], "after": after[field]})
    for name in sorted(set(before["env"]) | set(after["env"])):
        if before["env"].get(name) != after["env"].get(name):
            changes.append(
                {
                    "kind": "env",
                    "name": name,
                    "before": before["env"].get(name),
                    "after": after["env"].get(name),
                }
            )
    for name in sorted(before["rlimits"]):
        if before["rlimits"][name] != after["rlimits"].get(name):
            changes.append(
                {
                    "kind": "rlimit",
                    "name": name,
                    "before": before["rlimits"][name],
                    "after": after["rlimits"].get(name),
                }
            )
    # Only the caller's descriptors (open before any call): the module's own come and go,
    # and the descriptors check judges what it keeps.
    for fd, target in sorted(caller_fds.items()):
        if before["fds"].get(fd) == target and after["fds"].get(fd) != target:
            changes.append({"kind": "fd", "fd": fd, "before": target, "after": after["fds"].get(fd)})
    for pid, what in sorted(after["children"].items()):
        if pid not in before["children"]:
            changes.append({"kind": "process", "pid": pid, "process": what})
    return changes


class Capture:
    """A temporary file standing in for fd 1 or 2 (unlinked: nothing is left on disk)."""

    def __init__(self, fd: int, where: str) -> None:
        self.target = fd
        self.saved = fcntl_dup(fd)
        with tempfile.TemporaryFile(dir=where) as tmp:
            self.file = fcntl_dup(tmp.fileno())
        os.dup2(self.file, fd)
        self.id = os.fstat(self.file).st_ino

    def size(self) -> list:
        try:
            end = os.fstat(self.file).st_size
        except OSError:  # a module closed our descriptor: fd 1 or 2 may still be the file
            if not self.recover():
                return [0, ""]
            end = os.fstat(self.file).st_size
        data = os.pread(self.file, OUTPUT_SAMPLE, max(end - OUTPUT_SAMPLE, 0))
        return [end, data.decode(errors="replace")]

    def recover(self) -> bool:
        try:
            if os.fstat(self.target).st_ino == self.id:
                self.file = fcntl_dup(self.target)
                return True
        except OSError:
            pass
        return False

    def put_back(self) -> None:
        """fd 1 or 2 points at the capture again (a module replaced or closed it)."""
        try:
            if os.fstat(self.target).st_ino == self.id:
                return
        except OSError:
            pass
        try:
            os.dup2(self.file, self.target)
        except OSError:  # ours is gone too: what fd 1/2 became is in the changes
            pass

    def close(self) -> None:
        for fd in (self.saved, self.file):
            try:
                os.fstat(fd)
            except OSError:
                continue
            if fd == self.saved:
                os.dup2(self.saved, self.target)
            os.close(fd)


def fcntl_dup(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 800)  # out of the low numbers a module reuses


# ---------------------------------------------------------------- shown: a child and a syslog line


def spawn_probe() -> dict:
    """What a fork+exec'd child starts with: SigIgn/SigBlk of `cat /proc/self/status`, and
    whether our waitpid() still gets it (a SIGCHLD handler that reaps, or SIGCHLD ignored,
    takes it away: ECHILD). posix_spawn, as a real caller's, keeps ignored signals and the mask."""
    cat = next((p for p in ("/bin/cat", "/usr/bin/cat") if os.path.exists(p)), None)
    if cat is None:
        return {"error": "no cat to exec"}
    r, w = os.pipe()
    try:
        pid = os.posix_spawn(
            cat,
            ["cat", "/proc/self/status"],
            {"PATH": "/usr/bin:/bin"},
            file_actions=[(os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_CLOSE, r)],
        )
    except OSError as e:
        os.close(r)
        os.close(w)
        return {"error": f"posix_spawn: {e.strerror}"}
    os.close(w)
    data, deadline = b"", time.monotonic() + SPAWN_WAIT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([r], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(r, 65536) if ready else b""
        if not chunk:
            break
        data += chunk
    os.close(r)
    waited = "timeout"
    while time.monotonic() < deadline + SPAWN_WAIT:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            waited = "ECHILD"
            break
        if got:
            waited = "ok"
            break
        time.sleep(0.005)
    if waited == "timeout":
        kill(pid)
    fields = dict(line.split(":", 1) for line in data.decode(errors="replace").splitlines() if ":" in line)
    return {
        "ignored": mask_names(fields.get("SigIgn", "0")),
        "blocked": mask_names(fields.get("SigBlk", "0")),
        "wait": waited,
    }


def mask_names(hexmask: str) -> list[str]:
    bits = int(hexmask.strip() or "0", 16)
    return [sig_name(n + 1) for n in range(64) if bits >> n & 1]


def settle(before: dict[int, str], first: dict[int, str]) -> dict[int, str]:
    """Children as they are once a daemonizing fork has finished: the intermediate child
    exits and its child comes back to us (subreaper). Bounded: SETTLE seconds at most."""
    now, deadline = first, time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        time.sleep(0.01)
        later = children()
        if later == now:
            break
        now = later
    merged = {**first, **now}  # the latest reading of each; one gone by now was still there after the call
    return {pid: what for pid, what in merged.items() if pid not in before}


def sweep(baseline: set[int]) -> list[int]:
    """Ends every child not there before the first call (orphans come back to us while
    the subreaper is set): nothing the module started outlives the test."""
    killed: list[int] = []
    deadline = time.monotonic() + SETTLE * 2
    while time.monotonic() < deadline:
        extra = [pid for pid in children() if pid not in baseline and pid not in killed]
        if not extra:
            break
        for pid in extra:
            kill(pid)
        killed += extra
        time.sleep(0.01)
    return killed


KILL_WAIT = 2.0  # seconds a SIGKILLed child gets to be reaped
UNREAPED: list[int] = []  # children killed but not reaped in time: data for the result


def kill(pid: int) -> bool:
    """SIGKILL and reap, polled against a deadline: a blocking waitpid() could wait forever
    (under a module's SIGCHLD SIG_IGN it waits for every child). False, and the pid in
    UNREAPED, when the child was not reaped in time."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return True
        except ChildProcessError:  # not ours to reap (SIGCHLD ignored: the kernel reaped it)
            return True
        time.sleep(0.005)
    UNREAPED.append(pid)
    return False


class Syslog:
    """The caller's next syslog() line, caught without touching the host's syslog: this
    worker gets a private mount namespace, and for the one syslog() call a tmpfs covers
    /dev with our own datagram socket bound in at /dev/log (glibc's _PATH_LOG)."""

    def __init__(self, libc: Libc, where: str) -> None:
        self.libc = libc
        self.count = 0
        libc.check(libc.c.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        libc.check(libc.c.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
        self.dir = tempfile.mkdtemp(prefix="nsslab-log-", dir=where)
        self.path = os.path.join(self.dir, "log")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            fd = fcntl_dup(self.sock.detach())  # out of the low numbers, like the captures
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM, fileno=fd)
            self.sock.bind(self.path)
            self.sock.setblocking(False)
        except OSError:  # nothing of ours left behind: the caller records syslog as unmeasured
            self.close()
            raise

    def line(self) -> dict:
        """Sends one marked line through libc's syslog() and reads what arrived."""
        self.count += 1
        marker = f"nsslab-side-effects-marker-{os.getpid()}-{self.count}"
        c = self.libc.c
        self.libc.check(c.mount(b"tmpfs", b"/dev", b"tmpfs", 0, b"size=16k,mode=755"), "mount tmpfs on /dev")
        try:
            os.close(os.open("/dev/log", os.O_CREAT | os.O_WRONLY, 0o666))
            self.libc.check(c.mount(self.path.encode(), b"/dev/log", None, MS_BIND, None), "bind /dev/log")
            c.syslog(LOG_INFO, b"%s", marker.encode())
        finally:
            c.umount2(b"/dev", MNT_DETACH)
        lines = []
        while True:
            try:
                lines.append(self.sock.recv(65536).decode(errors="replace"))
            except BlockingIOError:
                break  # OSError (EBADF: a module closed our socket) goes to the caller
        mine = next((x for x in lines if x.rstrip("\n").endswith(marker)), None)
        others = [x for x in lines if x is not mine]
        if mine is None:
            return {"ident": None, "line": None, "other_lines": others[:3]}
        return {**parse_line(mine.rstrip("\n"), marker), "other_lines": others[:3]}

    def reset(self) -> None:
        """The caller's syslog state back to glibc's defaults: no ident, LOG_USER, no options."""
        self.libc.c.openlog(None, 0, LOG_USER)
        self.libc.c.closelog()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # a module closed it: it is gone either way
            pass
        for remove, path in ((os.unlink, self.path), (os.rmdir, self.dir)):
            try:
                remove(path)
            except OSError:  # never created (bind failed), or already gone
                pass


def parse_line(text: str, marker: str) -> dict:
    """'<38>Dec  1 12:00:00 clabmod[42]: MARK' -> ident 'clabmod[42]', facility 4 (auth)."""
    m = re.match(r"<(\d+)>(?:\w{3} [ \d]\d \d\d:\d\d:\d\d )?(.*?): " + re.escape(marker) + "$", text)
    if not m:
        return {"ident": None, "line": text}
    pri = int(m.group(1))
    ident = re.sub(r"\[\d+\]$", "[PID]", m.group(2))  # the pid differs per process, the tag does not
    return {"ident": ident, "facility": pri >> 3, "line": text}


# ---------------------------------------------------------------- the calls


class Caller:
    """The module's entry points called the way glibc calls them, with errno readable: the
    library opened again (same handle) through a use_errno CDLL."""

    def __init__(self, module: ep.Module, spec: dict, libc: Libc) -> None:
        self.lib = ctypes.CDLL(spec["library"], use_errno=True)
        self.service = spec["service"]
        self.note = module.note
        self.libc = libc

    def __call__(self, call: dict) -> dict:
        fn_name, db = call["fn"], call.get("db")
        fn = getattr(self.lib, f"_nss_{self.service}_{fn_name}")
        fn.restype = ctypes.c_int
        err = ctypes.c_int(ep.ERRNO_SENTINEL)
        keep: list = []
        if fn_name.startswith("set"):
            args: list = [ctypes.c_int(1)]
        elif fn_name.startswith("end"):
            args = []
        elif fn_name == "initgroups_dyn":
            array = self.libc.c.malloc(4 * 16)
            ctypes.c_uint.from_address(array).value = call["gid"]
            start, size, groups = ctypes.c_long(1), ctypes.c_long(16), ctypes.c_void_p(array)
            keep = [start, size, groups]
            args = [ctypes.c_char_p(call["key"].encode()), ctypes.c_uint(call["gid"])]
            args += [ctypes.byref(start), ctypes.byref(size), ctypes.byref(groups), ctypes.c_long(-1)]
            args.append(ctypes.byref(err))
        else:
            record = ep.DATABASES[db][0]()
            buf = ctypes.create_string_buffer(ep.BIG)
            keep = [record, buf]
            args = []
            if "key" in call:
                key = call["key"]
                args.append(
                    ctypes.c_uint(key) if isinstance(key, int) else ctypes.c_char_p(str(key).encode())
                )
            args += [ctypes.byref(record), buf, ctypes.c_size_t(ep.BIG), ctypes.byref(err)]
        self.note(f"side-effects: {entry(call)}")
        ctypes.set_errno(0)  # what glibc's callers find before: errno is theirs
        status = fn(*args)
        after = ctypes.get_errno()
        if fn_name == "initgroups_dyn":
            self.libc.c.free(keep[2])
        return {"status": ep.STATUS.get(status, f"status {status}"), "errno": after}


def entry(call: dict) -> str:
    if "key" in call:
        return f"{call['fn']}({call['key']!r})"
    return f"{call['fn']}({'1' if call['fn'].startswith('set') else ''})"


def side_effects(module: ep.Module, spec: dict) -> dict:
    """spec: calls [{fn, db, key?, gid?, first?}] in order; budget (s) for the calls not
    marked first (every entry point is called once, whatever its speed)."""
    libc = Libc()
    where = SCRATCH  # the probe's own directory, removed with it
    result: dict = {"calls": [], "changes": [], "not_called": [], "unmeasured": {}}
    UNREAPED.clear()
    started = time.monotonic()
    ep.memory()  # the probe's own descriptors are open before the first snapshot
    pipe_was = signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as a C caller (sshd) has it
    xfsz_was = signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    out = {"stdout": Capture(1, where), "stderr": Capture(2, where)}
    log: Syslog | None = None
    try:
        log = Syslog(libc, where)
    except OSError as e:
        result["unmeasured"]["syslog"] = str(e)
    libc.c.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # a daemonized grandchild comes back to us
    caller = Caller(module, spec, libc)
    base_children = children()
    shown: dict[str, dict] = {}
    try:
        result["control"] = {"spawn": spawn_probe()}
        result["control"]["syslog"] = syslog_line(log, result) or {}  # opens glibc's connection now
        base = state(libc, out)
        # The caller's descriptors are everything open now but our own instruments (the
        # captures' files and the syslog socket): the probe's channel and files count.
        ours = {fd for capture in out.values() for fd in (capture.saved, capture.file)}
        ours |= {log.sock.fileno()} if log else set()
        caller_fds = {fd: target for fd, target in base["fds"].items() if fd not in ours}
        deadline = clock.now() + spec.get("budget", 0.3)
        for call in spec["calls"]:
            if not call.get("first") and clock.now() > deadline:
                result["not_called"].append(entry(call))
                continue
            before = state(libc, out)
            t0 = time.monotonic()
            got = caller(call)
            seconds = time.monotonic() - t0
            libc.c.fflush(None)  # a module's printf without fflush reaches the caller all the same
            after = state(libc, out)
            name = entry(call)
            if set(after["children"]) - set(before["children"]):
                after["children"] = settle(before["children"], after["children"])
            changes = compare(before, after, caller_fds)
            if got["status"] == "SUCCESS" and got["errno"] != 0:
                changes.append(
                    {"kind": "errno", "errno": got["errno"], "name": errno.errorcode.get(got["errno"])}
                )
            line = syslog_line(log, result)
            was = result["control"].get("syslog", {})
            if line and (line.get("ident"), line.get("facility")) != (was.get("ident"), was.get("facility")):
                changes.append({"kind": "syslog", "before": was, "after": line})
            signals = [c for c in changes if c["kind"] in ("signal", "mask")]
            if signals:  # what a child inherits: once per distinct change (a fork+exec costs ~10 ms)
                key = json.dumps(signals, sort_keys=True)
                shown[key] = shown.get(key) or spawn_probe()
                for c in signals:
                    c["child"] = shown[key]
            for c in changes:
                c.update(entry=name, fn=call["fn"], call={k: v for k, v in call.items() if k != "first"})
            result["changes"] += changes
            result["calls"].append({"entry": name, "fn": call["fn"], **got, "seconds": round(seconds, 4)})
            restore(libc, base, after, changes, out, log)
    finally:
        result["swept"] = sweep(set(base_children))
        libc.c.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        for capture in out.values():
            capture.close()
        if log:
            log.reset()
            log.close()
        signal.signal(signal.SIGPIPE, pipe_was)
        signal.signal(signal.SIGXFSZ, xfsz_was)
    result["unreaped"] = list(UNREAPED)  # killed but not reaped within KILL_WAIT: named, not waited for
    result["leftover"] = leftover(out, log, where)
    result["seconds"] = round(time.monotonic() - started, 3)
    result["library"] = spec["library"]
    return result


def leftover(out: dict, log: Syslog | None, where: str) -> dict:
    """What of the test's own is still there after it cleaned up (all empty, or a lab bug)."""
    ours = [fd for capture in out.values() for fd in (capture.saved, capture.file)]
    ours += [log.sock.fileno()] if log and log.sock.fileno() >= 0 else []
    still = [fd for fd in ours if os.path.exists(f"/proc/self/fd/{fd}")]
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point, fstype = fields[4], fields[fields.index("-") + 1]
            if point == "/dev/log" or (point == "/dev" and fstype == "tmpfs"):
                mounts.append(line.strip())
    files = [n for n in os.listdir(where) if n.startswith("nsslab-log-")]
    return {"fds": still, "mounts": mounts, "files": files, "children": sorted(children())}


def syslog_line(log: Syslog | None, result: dict) -> dict | None:
    """The caller's next syslog() line, or None when it cannot be caught (any more)."""
    if log is None or "syslog" in result["unmeasured"]:
        return None
    try:
        return log.line()
    except OSError as e:  # a module closed our socket, or /dev could not be covered
        result["unmeasured"]["syslog"] = f"after {len(result['calls'])} calls: {e}"
        return None


def restore(libc: Libc, base: dict, now: dict, changes: list[dict], out: dict, log: Syslog | None) -> None:
    """The caller's state as it was before the first call, so the next entry point is
    measured on its own (a module that ignores SIGPIPE in every lookup is named for each)."""
    for sig, raw in base["signals"].items():
        if now["signals"].get(sig) != raw:
            buf = ctypes.create_string_buffer(raw, SIGACTION_SIZE)
            libc.c.sigaction(sig, buf, None)
    signal.pthread_sigmask(signal.SIG_SETMASK, base["blocked"])
    os.umask(int(base["umask"], 8))
    try:
        os.chdir(base["cwd"])
    except OSError:
        pass
    for name in set(base["env"]) | set(now["env"]):
        if base["env"].get(name) != now["env"].get(name):
            if name in base["env"]:
                libc.c.setenv(name.encode(), base["env"][name].encode(), 1)
            else:
                libc.c.unsetenv(name.encode())
    if now["locale"] != base["locale"]:
        libc.c.setlocale(LC_ALL, base["locale"].encode())
    for name, limits in base["rlimits"].items():
        if now["rlimits"].get(name) != limits:
            try:
                resource.setrlimit(RLIMITS[name], tuple(limits))
            except (OSError, ValueError):
                pass
    for c in changes:
        if c["kind"] == "process":  # the lab ends what the module left running
            kill(c["pid"])
        if c["kind"] == "syslog" and log:
            log.reset()
    for capture in out.values():
        capture.put_back()


TESTS = {"side-effects": side_effects}
