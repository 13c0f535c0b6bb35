"""Evidence from gdb. Before a hung process is killed, and after a step crashed, the probe
gathers it for the lab's diagnosis: gdb backtraces of every thread (and goroutine, for Go),
the mapped objects, futex owners. It only collects; naming the cause happens in lab/forensics
(lab/forensics/gdb.py reads what GDB_REPORT and GDB_CRASH print).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time

from .procfs import kill_group, kill_pids, read, tree
from .protocol import SCRATCH, itself

# Hard bound per gdb run. An attach takes 0.5-0.8 s on the host, 6-9 s in a TCG VM (once
# 10.3 s: a bound of 10 s lost the evidence); a gdb that finishes costs only its own time.
GDB_TIMEOUT = 30.0
GDB_MAX_PROCESSES = 3  # the deepest hung processes get a backtrace, in parallel
GDB_OUTPUT_LIMIT = 200_000
FATAL_SIGNALS = "SIGSEGV SIGABRT SIGBUS SIGFPE SIGILL SIGSYS SIGTRAP"


GDB_COMMON = """set pagination off
set width 0
set confirm off
set print frame-info location-and-address
set print frame-arguments none
set print entry-values no
"""
GDB_REPORT = """info threads
thread apply all bt
python
def _nsslab_report():
    inferior = gdb.selected_inferior()
    if not inferior.pid:
        return
    print("nsslab-maps-begin")
    print(open("/proc/%d/maps" % inferior.pid).read().rstrip())
    print("nsslab-maps-end")
    try:
        allgs = gdb.parse_and_eval("'runtime.allgs'")
    except gdb.error:
        return  # not a Go process
    for name in ("runtime_init_done", "'runtime.iscgo'"):
        try:
            print("nsslab-go %s = %s" % (name.strip("'"), gdb.parse_and_eval(name)))
        except gdb.error as e:
            print("nsslab-go %s unknown: %s" % (name.strip("'"), e))
    if not GO_SCRIPT:
        print("nsslab-go goroutines unavailable: no runtime-gdb.py in the target")
        return
    gdb.execute("source " + GO_SCRIPT)
    for n, ptr in enumerate(SliceValue(allgs)):
        if n >= 64:
            print("nsslab-go more goroutines not shown")
            break
        status = ptr["atomicstatus"]
        try:
            status = int(status)
        except gdb.error:
            status = int(status["value"])  # Go >= 1.20 wraps it in atomic.Uint32
        if status == 6:  # _Gdead
            continue
        goid = int(ptr["goid"])
        print("Goroutine %d (status %d):" % (goid, status))
        try:
            gdb.execute("goroutine %d bt" % goid)
        except gdb.error as e:
            print("  no backtrace: %s" % e)
_nsslab_report()
end
"""
# The re-run's own stdout and stderr go nowhere: a module's printf (a fake "#0 …" frame, a
# "nsslab-maps-begin") must not land in the text the lab reads its proof from.
GDB_CRASH = """set startup-with-shell off
set inferior-tty /dev/null
handle all nostop noprint pass
handle {fatal} stop print nopass
catch syscall exit_group
run
python
def _nsslab_signal():
    if not gdb.selected_inferior().pid:
        print("nsslab-crash not reproduced under gdb")
        return
    try:
        signo = int(gdb.parse_and_eval("$_siginfo")["si_signo"])
    except gdb.error:
        signo = 0
    if signo in (0, 5):  # stopped at the exit_group catchpoint, not by a signal
        for register in ("$rdi", "$x0"):
            try:
                print("nsslab-crash exit %d" % int(gdb.parse_and_eval(register)))
                return
            except gdb.error:
                pass
        print("nsslab-crash exit ?")
        return
    print("nsslab-crash signal %d" % signo)
    if signo in (4, 7, 8, 11):  # SIGILL, SIGBUS, SIGFPE, SIGSEGV carry the faulting address
        fault = gdb.parse_and_eval("$_siginfo")["_sifields"]["_sigfault"]["si_addr"]
        print("nsslab-crash fault-address 0x%x" % int(fault))
_nsslab_signal()
end
"""


def go_gdb_script() -> str:
    """The Go toolchain's gdb helpers (goroutine listing), if a Go toolchain is installed."""
    found = sorted(
        glob.glob("/usr/lib/go*/src/runtime/runtime-gdb.py")
        + glob.glob("/usr/local/go/src/runtime/runtime-gdb.py")
    )
    return found[-1] if found else ""


def run_gdb(args: list[str], script: str, env: dict | None = None, timeout: float = GDB_TIMEOUT) -> dict:
    """Starts gdb (its own process group, killed past TIMEOUT) on SCRIPT; returns its text."""
    if not shutil.which("gdb"):
        return {"error": "gdb is not installed in the target"}
    text = GDB_COMMON + script.replace("GO_SCRIPT", repr(go_gdb_script()))
    fd, path = tempfile.mkstemp(prefix="nsslab-gdb-", suffix=".gdb", dir=SCRATCH)
    os.write(fd, text.encode())
    os.close(fd)
    start = time.monotonic()
    argv = ["gdb", "-batch", "-nx", "-iex", "set debuginfod enabled off", "-iex", "set auto-load no"]
    proc = subprocess.Popen(
        [*argv, "-x", path, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env or {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
    )
    return {"proc": proc, "path": path, "start": start, "deadline": start + timeout}


def finish_gdb(job: dict) -> dict:
    if "error" in job:
        return job
    proc = job["proc"]
    try:
        out, _ = proc.communicate(timeout=max(0.1, job["deadline"] - time.monotonic()))
        result = {"text": out.decode(errors="replace")[-GDB_OUTPUT_LIMIT:]}
    except subprocess.TimeoutExpired:
        kill_pids(tree(proc.pid))  # gdb and the program it runs
        out, _ = proc.communicate()
        result = {"text": out.decode(errors="replace")[-GDB_OUTPUT_LIMIT:], "error": "gdb timed out"}
    kill_group(proc.pid)
    os.unlink(job["path"])
    result["seconds"] = round(time.monotonic() - job["start"], 3)
    return result


def attach_backtraces(procs: list[dict], step: str = "") -> None:
    """Adds gdb backtraces to the deepest hung processes (not the ones only waiting for
    their children), attaching to them in parallel while they are still stuck.

    A one-thread process frozen exactly as one already traced in this scenario (the same
    blocking syscall at the same code address and the same code addresses on its stack:
    the same frames) gets that backtrace, its thread and process ids rewritten to its own
    and marked with where it was taken, instead of a second gdb attach. Only one thread:
    with several, gdb's thread numbers could not be matched to this process's threads."""
    leaves = [p for p in procs if any(t["wait"] != "children" for t in p["tasks"])] or procs
    jobs = []
    for p in leaves[-GDB_MAX_PROCESSES:]:
        alone = len(p["tasks"]) == 1
        p["frozen_as"] = key = frozen_signature(p["pid"]) if alone else None
        seen = TRACED.get(key) if key else None
        if seen:
            # one thread: its id is the pid, named as gdb names them
            text = re.sub(
                rf"(?<=LWP ){seen['pid']}\b|(?<=process ){seen['pid']}\b", str(p["pid"]), seen["gdb"]["text"]
            )
            same = {"step": seen["step"], "pid": seen["pid"]}
            p["gdb"] = {**seen["gdb"], "text": text, "same_as": same, "seconds": 0.0}
        else:
            jobs.append((p, key, run_gdb(["-p", str(p["pid"])], GDB_REPORT)))
    for p, key, job in jobs:
        p["gdb"] = finish_gdb(job)
        if key and p["gdb"].get("text") and not p["gdb"].get("error"):
            TRACED[key] = {"gdb": p["gdb"], "step": step, "pid": p["pid"]}
    for p in leaves:
        p.pop("frozen_as", None)  # a key, not evidence


TRACED: dict = {}  # frozen signature -> the backtrace taken for it in this scenario
STACK_SCAN = 16384  # bytes above each thread's stack pointer read for return addresses


def frozen_signature(pid: int) -> tuple | None:
    """Each thread's blocking syscall, code address and the code addresses on its stack
    (return addresses: its frames), as module+offset so another process's layout compares
    equal; None when a thread is not in a syscall (nothing stable to compare)."""
    maps = []
    for line in read(f"/proc/{pid}/maps").splitlines():
        f = line.split()
        if len(f) >= 6 and "x" in f[1]:
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            maps.append((lo, hi, int(f[2], 16), os.path.basename(f[5])))

    def where(addr: int) -> str | None:
        for lo, hi, off, name in maps:
            if lo <= addr < hi:
                return f"{name}+{addr - lo + off:#x}"
        return None

    threads = []
    try:
        mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return None
    try:
        for tid in sorted(os.listdir(f"/proc/{pid}/task")):
            fields = read(f"/proc/{pid}/task/{tid}/syscall").split()
            if len(fields) != 9:  # "running", or not in a syscall
                return None
            sp, pc = int(fields[7], 16), int(fields[8], 16)
            try:
                data = os.pread(mem, STACK_SCAN, sp)
            except OSError:
                data = b""
            words = struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8])
            threads.append((fields[0], where(pc), tuple(w for w in map(where, words) if w)))
    except OSError:
        return None
    finally:
        os.close(mem)
    return tuple(sorted(threads, key=repr))


def crash_backtrace(step: dict, in_child: bool) -> dict:
    """Runs STEP again under gdb, stopping at the first fatal signal: the signal, the
    faulting address, every thread's backtrace and the maps at the moment of the crash."""
    follow = "set follow-fork-mode child\n" if in_child else ""
    fd, path = tempfile.mkstemp(prefix="nsslab-step-", suffix=".json", dir=SCRATCH)
    os.write(fd, json.dumps(step).encode())
    os.close(fd)
    try:
        job = run_gdb(
            ["--args", *itself("worker", f"@{path}")],
            follow + GDB_CRASH.format(fatal=FATAL_SIGNALS) + GDB_REPORT,
            env=step.get("env"),
            timeout=step.get("timeout", 20.0) + GDB_TIMEOUT,
        )
        return finish_gdb(job)
    finally:
        os.unlink(path)
