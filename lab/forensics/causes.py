"""Names the cause of a hang or a crash from the probe's evidence, or says it cannot.

Each cause is claimed only with the frames that prove it (and, for fork causes, the /proc
facts: the child has one thread, its parent has the module loaded and more threads).
When the frames do not fit a known pattern the verdict is `unknown`, with the evidence
kept for a human: a wrong name would send a module author after the wrong bug.
"""

from __future__ import annotations

import re
import signal
from dataclasses import asdict, dataclass, field

from lab.elf import lib_names
from lab.forensics.gdb import Frame, GdbReport, Stack, is_libc, parse

CAUSES = {
    "go-runtime-after-fork": "a forked child called into a Go runtime whose threads fork did not copy",
    "lock-held-across-fork": "a forked child waits for a lock that a parent thread, not copied by fork, held",
    "setxid-abort": "glibc aborted a uid/gid change because threads the module started did not follow",
    "segfault-in-module": "the module's code touched memory it must not (SIGSEGV/SIGBUS)",
    "abort-in-module": "the module aborted the process (abort, assert, a fatal glibc check)",
    "exit-in-module": "the module called exit() inside a lookup or its constructor: the caller just ends",
    "hang-in-parent": "the lookup never returns even without fork: not a fork problem",
    "unknown": "evidence kept, nothing claimed",
}

# The Go scheduler parking an M: what the thread of a frozen child shows.
GO_WAITS = re.compile(
    r"^runtime\.(futex|futexsleep|notesleep|notetsleepg?|semasleep|mPark|stopm|stoplockedm|"
    r"schedule|park_m|findRunnable|findrunnable|gcStart|stopTheWorldWithSema|lock2|gopark)$"
)
GO_CALLBACK = re.compile(r"cgocallback|_cgoexp_|crosscall2")
LOCKS = re.compile(
    r"(pthread_mutex_(timed|clock)?lock|__lll_lock_wait|lll_lock|pthread_rwlock_(rd|wr|timedrd|timedwr)lock|"
    r"pthread_cond_(timed|clock)?wait|sem_(timed|clock)?wait|__futex_abstimed_wait)"
)
MUTEX = re.compile(r"pthread_mutex_|__lll_lock_wait|lll_lock")
SETXID = re.compile(r"(^|_)(setres[ug]id|setre[ug]id|sete[ug]id|set[ug]id|setgroups|nptl_setxid|setxid)")
ABORT = re.compile(r"(^|_)(abort|raise|pthread_kill)")
MAX_FRAMES = 12


@dataclass
class Diagnosis:
    cause: str
    explanation: str
    frames: list[str] = field(default_factory=list)  # the proving frames, innermost first
    facts: list[str] = field(default_factory=list)  # what /proc and gdb showed besides
    pid: int | None = None
    data: dict = field(default_factory=dict)  # the figures a check or test reads (call, status, signal)

    def as_dict(self) -> dict:
        return asdict(self)


class Culprit:
    """The module under diagnosis: which frames are its own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lib = f"libnss_{name}.so"

    def owns(self, frame: Frame) -> bool:
        if frame.lib:
            return frame.lib.startswith(self.lib)
        return f"_nss_{self.name}_" in frame.func

    def owns_or_unmapped(self, frame: Frame) -> bool:
        """For runtime frames: the module's, or of no known object (gdb printed no maps)."""
        return self.owns(frame) or not frame.lib

    def first(self, frames: list[Frame]) -> int | None:
        return next((i for i, f in enumerate(frames) if self.owns(f)), None)

    def mapped(self, paths: list[str]) -> bool:
        return any(name.startswith(self.lib) for name in lib_names(paths))


def diagnose(result: dict, name: str) -> Diagnosis | None:
    """The cause of a probe step's hang or crash, or of what the probe saw the module do to
    its caller's process (lab.forensics.observed); None when the step did none of that."""
    from lab.forensics.observed import diagnose_observed  # it builds on Diagnosis, defined here

    seen = diagnose_observed(result, name)
    if seen and result.get("outcome") not in ("hang", "timeout"):
        return seen
    if result.get("crash") is not None:
        return diagnose_crash(result["crash"], name)
    if result.get("outcome") in ("hang", "timeout"):
        return diagnose_hang((result.get("hang") or {}).get("processes", []), name)
    return None


# ---------------------------------------------------------------- hangs


def diagnose_hang(processes: list[dict], name: str) -> Diagnosis:
    module = Culprit(name)
    facts = [proc_fact(p) for p in processes]
    traced = [(p, parse(p["gdb"]["text"])) for p in processes if (p.get("gdb") or {}).get("text")]
    if not traced:
        why = next((p["gdb"]["error"] for p in processes if (p.get("gdb") or {}).get("error")), None)
        return Diagnosis(
            "unknown", f"no backtrace ({why or 'none was taken'}); /proc evidence kept", [], facts
        )
    for p, report in reversed(traced):  # the deepest process first
        found = hang_of(p, report, module)
        if found:
            found.facts = facts + found.facts
            return found
    return Diagnosis(
        "unknown",
        f"no stack of the hung process(es) passes through {module.lib}*: the module is not shown to be stuck",
        [],
        facts,
        traced[-1][0]["pid"],
    )


def hang_of(p: dict, report: GdbReport, module: Culprit) -> Diagnosis | None:
    stacks = report.threads + report.goroutines
    if not any(module.owns(f) for s in stacks for f in s.frames):
        return None
    parent = p.get("parent") or {}
    inherited = bool(
        parent.get("alive")
        and parent.get("fork_without_exec")
        and module.mapped(parent.get("nss_modules", []))
    )
    lone = p.get("threads") == 1
    go = go_wait(report, module)
    lock = lock_wait(report, module, p)
    pid = p["pid"]
    if inherited and lone and go:
        frames, entry = go
        init = report.go.get("runtime_init_done")
        return Diagnosis(
            "go-runtime-after-fork",
            f"forked child (1 thread; parent {parent['pid']} has {parent.get('threads')} and had "
            f"{module.lib}* loaded) called {entry} into the Go runtime it inherited; the runtime "
            "parks the thread waiting for Ms that fork did not copy, and Go's init ran only at "
            f"load, in the parent{f' (runtime_init_done = {init} here)' if init else ''}",
            frames,
            [f"Go runtime_init_done = {init} in the child: the flag was inherited, the threads were not"]
            if init
            else [],
            pid,
        )
    if inherited and lone and lock:
        frames, owner, primitive = lock
        return Diagnosis(
            "lock-held-across-fork",
            f"forked child (1 thread; parent {parent['pid']} has {parent.get('threads')}) waits in "
            f"{primitive} called from {module.lib}*; {owner}",
            frames,
            [],
            pid,
        )
    ctor = constructor_wait(stacks, module)
    if ctor and not inherited:
        frames, function = ctor
        return Diagnosis(
            "hang-in-parent",
            f"{module.lib}*'s constructor {function} never returns: dlopen, run by glibc for the first "
            f"lookup, waits in it (a thread is in {frames[0]}), holding glibc's loader lock",
            frames,
            [f"the constructor {function} runs under call_init/_dl_init: no lookup has begun"],
            pid,
            data={"constructor": function},
        )
    if not inherited:
        if lock:
            frames, owner, _ = lock
            why = f"it waits for a lock: {owner}"
        elif go:
            frames, entry = go
            why = f"{entry} waits inside the Go runtime"
        else:
            stack = next(s for s in stacks if any(module.owns(f) for f in s.frames))
            frames = path_to_module(stack.frames, module)
            why = f"a thread is in {frames[0]}"
        return Diagnosis(
            "hang-in-parent",
            f"the lookup never returns in a process that loaded {module.lib}* itself (no module state "
            f"inherited across fork): {why}",
            frames,
            [],
            pid,
        )
    return None  # inherited, but no pattern this lab can prove: the caller says unknown


def constructor_wait(stacks: list[Stack], module: Culprit) -> tuple[list[str], str] | None:
    """A stack where the module's code runs under the dynamic loader's call_init: its
    constructor (or an initializer it calls) has not returned."""
    for s in stacks:
        first = module.first(s.frames)
        if first is None:
            continue
        init = next((i for i, f in enumerate(s.frames[first:], first) if CTOR_CALLER.match(f.func)), None)
        own = [f for f in s.frames[first : init or first] if module.owns(f)]
        if init is not None and init - first <= 4:
            return [str(f) for f in s.frames[: init + 2]][-MAX_FRAMES:], own[-1].func if own else "?"
    return None


def go_wait(report: GdbReport, module: Culprit) -> tuple[list[str], str] | None:
    """The thread parked by the Go scheduler inside the module, and the goroutine that
    came in from C through cgocallback from an _nss_ entry point."""
    parked = next(
        (
            t
            for t in report.threads
            if any(GO_WAITS.match(f.func) and module.owns_or_unmapped(f) for f in t.frames[:8])
        ),
        None,
    )
    if parked is None:
        return None
    frames = [str(f) for f in parked.frames[:8] if f.func != "??"]
    callers = [s for s in report.goroutines + report.threads if entry_frame(s, module)]
    entry = "an _nss_ entry point"
    for s in callers:
        chain = [f for f in s.frames if GO_CALLBACK.search(f.func) or f"_nss_{module.name}_" in f.func]
        if any(GO_CALLBACK.search(f.func) for f in chain):
            entry = entry_frame(s, module) or entry
            # a frame of another stack than the parked one says which (the report marks it there)
            where = f"goroutine {s.id}: " if s.kind == "goroutine" else ""
            if s.kind == "thread" and s is not parked and s.tid:
                where = f"thread {s.tid}: "
            frames += [f"{where}{f}" for f in chain]
            return frames[: MAX_FRAMES + 4], entry
    if report.goroutines:
        return None  # goroutines were listed but none came from the module's entry: no proof
    return frames, entry  # no runtime-gdb.py: the parked runtime frames in the module are the proof


def entry_frame(stack: Stack, module: Culprit) -> str | None:
    for f in stack.frames:
        m = re.search(rf"(_nss_{re.escape(module.name)}_\w+)", f.func)
        if m:
            return m.group(1)
    return None


def lock_wait(report: GdbReport, module: Culprit, p: dict) -> tuple[list[str], str, str] | None:
    """A thread blocked in a lock primitive whose nearest caller outside libc is the module."""
    for t in report.threads:
        caller = next((j for j, f in enumerate(t.frames) if not is_libc(f)), None)
        locks = [i for i, f in enumerate(t.frames[:caller]) if LOCKS.search(f.func)]
        if caller is None or not locks or not module.owns(t.frames[caller]):
            continue
        mutex = any(MUTEX.search(f.func) for f in t.frames[:caller])
        return path_to_entry(t.frames, module), lock_owner(t, p, mutex), clean(t.frames[locks[-1]].func)
    return None


def lock_owner(t: Stack, p: dict, mutex: bool) -> str:
    task = next((k for k in p.get("tasks", []) if k.get("tid") == t.tid), None)
    futex = (task or {}).get("futex") or {}
    owner = futex.get("owner")
    if not mutex or not owner:
        return "the thread that would wake it does not exist in this process"
    own = {k.get("tid") for k in p.get("tasks", [])}
    parent = p.get("parent") or {}
    if owner == t.tid:
        return f"the mutex's owner is this very thread (tid {owner}): it takes a lock it already holds"
    if owner in parent.get("tids", []):
        return (
            f"the mutex's owner is tid {owner}, a thread of the parent (pid {parent['pid']}) "
            "that fork did not copy: nobody in the child can unlock it"
        )
    if owner not in own:
        return f"the mutex's owner, tid {owner}, does not exist in this process"
    return f"the mutex is held by tid {owner} of this process"


def path_to_entry(frames: list[Frame], module: Culprit) -> list[str]:
    """The innermost frames down to the module's _nss_ entry point (or its first frame)."""
    entry = next((i for i, f in enumerate(frames) if f"_nss_{module.name}_" in f.func), None)
    if entry is None or entry - (module.first(frames) or 0) > MAX_FRAMES:
        return path_to_module(frames, module)
    return [str(f) for f in frames[: entry + 1]][-MAX_FRAMES:]


def clean(func: str) -> str:
    """glibc's internal aliases read as the public name: __GI___pthread_mutex_lock → pthread_mutex_lock."""
    return func.removeprefix("__GI_").lstrip("_")


def path_to_module(frames: list[Frame], module: Culprit) -> list[str]:
    """The innermost frames down to (and including) the module's first frame."""
    i = module.first(frames)
    end = (i if i is not None else len(frames) - 1) + 1
    return [str(f) for f in frames[:end]][-MAX_FRAMES:]


def proc_fact(p: dict) -> str:
    parent = p.get("parent") or {}
    mods = ", ".join(lib_names(p.get("nss_modules", []))) or "no NSS module"
    pmods = ", ".join(lib_names(parent.get("nss_modules", []))) or "no NSS module"
    fact = f"pid {p['pid']} ({p.get('cmdline', '')[:60]}): {p.get('threads')} thread(s), {mods} mapped"
    if parent.get("alive"):
        how = "forked without exec" if parent.get("fork_without_exec") else "a different program"
        fact += f"; parent {parent['pid']} ({how}): {parent.get('threads')} thread(s), {pmods} mapped"
    return fact


# ---------------------------------------------------------------- crashes


def diagnose_crash(crash: dict, name: str) -> Diagnosis:
    module = Culprit(name)
    if not crash.get("text"):
        return Diagnosis("unknown", f"no crash backtrace ({crash.get('error') or 'gdb gave nothing'})")
    report = parse(crash["text"])
    if report.exit_status is not None and report.threads:
        return diagnose_exit(report, module)
    if not report.reproduced or report.signal is None or not report.threads:
        return Diagnosis(
            "unknown",
            "the crash did not happen again under gdb, so there are no frames to prove a cause; "
            "the first run's signal is all the evidence",
        )
    stack = report.crashed or report.threads[0]
    frames = stack.frames
    sig = signal_name(report.signal)
    others = [t for t in report.threads if t is not stack]
    helpers = [t for t in others if any(module.owns(f) for f in t.frames)]
    facts = [f"{sig} in thread {stack.tid}; {len(report.threads)} thread(s) at the time"]
    if report.fault_address is not None:
        where = report.object_at(report.fault_address).rsplit("/", 1)[-1] or "no mapped object"
        facts.append(f"faulting address {report.fault_address:#x} ({where})")
    if report.signal == signal.SIGABRT:
        abort_at = next((i for i, f in enumerate(frames) if ABORT.search(f.func)), None)
        inside = frames[: next((i for i, f in enumerate(frames) if not is_libc(f)), len(frames))]
        setxid_at = max((i for i, f in enumerate(inside) if SETXID.search(f.func)), default=None)
        if abort_at is not None and setxid_at is not None and helpers:
            call = clean(frames[setxid_at].func)
            return Diagnosis(
                "setxid-abort",
                f"glibc aborted in {call}: it changes the id of every thread "
                f"and {len(helpers)} of the {len(others)} other thread(s), started by {module.lib}*, "
                "did not follow (one gets EPERM, e.g. after PR_SET_KEEPCAPS)",
                [str(f) for f in frames[abort_at : setxid_at + 1]]
                + [f"thread {t.tid}: {next(f for f in t.frames if module.owns(f))}" for t in helpers[:3]],
                facts,
            )
        if blamed(frames, module):
            first = module.first(frames) or 0
            callee = clean(frames[first - 1].func) if first else "abort"
            return Diagnosis(
                "abort-in-module",
                f"{module.lib}* aborted the process: {frames[first].func} called {callee}",
                path_to_entry(frames, module),
                facts,
            )
    if report.signal in (signal.SIGSEGV, signal.SIGBUS):
        address_in_module = report.object_at(report.fault_address).rsplit("/", 1)[-1].startswith(module.lib)
        if blamed(frames, module) or address_in_module:
            first = module.first(frames)
            top = frames[0].func if frames[0].func != "??" else f"code of {frames[0].lib or '?'}"
            if first == 0:
                how = f"{sig} in {top}, code of {module.lib}*"
            elif first is not None:
                how = f"{sig} in {top}, called by {frames[first].func} of {module.lib}* with bad data"
            else:
                how = f"{sig}: the faulting address lies in {module.lib}*"
            return Diagnosis("segfault-in-module", how, path_to_entry(frames, module), facts)
    top = str(frames[0]) if frames else "no frames"
    return Diagnosis(
        "unknown",
        f"{sig} at {top}; no frame shows {module.lib}* caused it (only glibc frames between)",
        [str(f) for f in frames[:MAX_FRAMES]],
        facts,
    )


EXIT = re.compile(r"exit|Exit")
INIT = re.compile(r"^(call_init|_dl_init|dl_open_worker|_dl_catch_exception)$")
CTOR_CALLER = re.compile(r"^_*(call_init|dl_init)$")  # what runs a library's constructors


def diagnose_exit(report: GdbReport, module: Culprit) -> Diagnosis:
    """The process ended through exit_group in the middle of a call: whose exit() was it?"""
    stack = report.crashed or report.threads[0]
    frames = stack.frames
    first = module.first(frames)
    facts = [f"exit status {report.exit_status}; {len(report.threads)} thread(s) at the time"]
    if first is None or not all(EXIT.search(clean(f.func)) or is_libc(f) for f in frames[:first]):
        return Diagnosis(
            "unknown",
            "the process exited in the middle of a call, but no frame shows the module called exit()",
            [str(f) for f in frames[:MAX_FRAMES]],
            facts,
        )
    in_ctor = any(INIT.match(clean(f.func)) for f in frames[first + 1 : first + 4])
    entry = next((f.func for f in frames[first:] if f"_nss_{module.name}_" in f.func), frames[first].func)
    where = f"the constructor of {module.lib}* (run by dlopen)" if in_ctor else entry
    # exit() runs the caller's atexit handlers and flushes its stdio on the way (its frames
    # show); _exit() skips both
    call = (
        "exit"
        if any(f.func in ("exit", "__GI_exit", "__run_exit_handlers") for f in frames[:first])
        else "_exit"
    )
    return Diagnosis(
        "exit-in-module",
        f"{module.lib}* called {call}({report.exit_status}) from {where.replace(f' of {module.lib}*', '')}: "
        "every process that loads it "
        "(sshd, cron, sudo) ends on its first lookup",
        [str(f) for f in frames[: first + 4]],
        facts,
        data={
            "call": call,
            "status": report.exit_status,
            "function": where,
            "frame": frames[first].func,  # the module's innermost frame (a static helper, say)
            "constructor": in_ctor,
        },
    )


def blamed(frames: list[Frame], module: Culprit) -> bool:
    """The module's frame is the innermost one that is not glibc: the module crashed, or
    handed glibc the pointer or the condition that made it crash."""
    first = module.first(frames)
    return first is not None and all(is_libc(f) for f in frames[:first])


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
