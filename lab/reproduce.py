"""`nsslab reproduce stns`: the 2019 diagnosis of the libnss_stns freeze, replayed step by
step on the built-in Go module, printing real output at each step (the script is
shared/notes/stns-freeze.md). Everything runs in a sandbox that is torn down at the end;
every wait is bounded by the step timeout."""

from __future__ import annotations

import platform
import re
import shlex
import textwrap
from pathlib import Path

import pexpect

from lab import elf
from lab.checks.base import Context
from lab.checks.tab_completion import (
    BASH_COMPLETION,
    RCFILE,
    TABS,
    Attempt,
    Shell,
    login_env,
    unique_prefix,
)
from lab.elf import lib_names
from lab.errors import CommandTimeout, LabError
from lab.forensics import Diagnosis, diagnose_hang
from lab.forensics.gdb import parse
from lab.module import ensure_built, load
from lab.targets import get_target
from lab.targets.sandbox import MOUNT_TAG

GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
STEPS = 11
FIXES = [
    "Write the NSS module in C (STNS v2 did): no runtime, no threads in the caller, fork-safe.",
    "Keep Go, but out of process: a thin C module talks over a Unix socket to a Go daemon with a "
    "cache (STNS v2's cache-stnsd, and other projects' C shim + Go executable).",
    "Do not ship -buildmode=c-shared into processes that fork: the Go team supports c-shared "
    "with fork only when the child execs at once (golang/go#15538).",
]


WATCH_LINES = re.compile(
    r"^(#\d|Breakpoint \d,|Thread \d+ .* hit|Old value|New value|\$\d|Hardware watchpoint)"
)
FUNC = re.compile(r"#\d+\s+(?:0x[0-9a-f]+ in )?([^\s(]+)")
PARKED = re.compile(r"^runtime\.(futex|futexsleep|notesleep|mPark|stopm|stoplockedm|schedule|park_m|gopark)$")


# ---- narration: each sentence that states a result is computed from this run's figures


def strace_story(out: str, library: str) -> str:
    """What `strace -f -e trace=openat,clone,clone3 id USER` showed about threads and forks."""
    lines = out.splitlines()
    if not any("openat" in line or "clone" in line for line in lines):
        return f"strace printed no openat or clone calls ({out[:80] or 'nothing'}): nothing to read in it."
    clones = [i for i, line in enumerate(lines) if re.search(r"\bclone3?\(", line) and "resumed" not in line]
    threads = [i for i in clones if "CLONE_THREAD" in lines[i]]
    forks = len(clones) - len(threads)
    pids = set(re.findall(r"\[pid\s+(\d+)\]", out))
    opened = next((i for i, line in enumerate(lines) if library in line and "openat" in line), None)
    said = [f"`strace -f` shows {len(pids)} other pid(s) and {len(clones)} clone call(s)"]
    if not clones:
        said[0] += ": `id` started no thread and no process."
    elif forks == 0:
        said[0] += (
            f"; all {len(threads)} carry CLONE_THREAD: the other pids are threads of `id`, "
            "and `id` never forks."
        )
    else:
        said[0] += (
            f"; {forks} of them without CLONE_THREAD: `id` created {forks} process(es), "
            f"and {len(threads)} thread(s)."
        )
    if opened is None:
        said.append(f"{library} was not opened.")
    elif threads and all(i > opened for i in threads):
        said.append(
            f"Every thread was started after {library} was opened: the module's Go runtime started them."
        )
    elif threads:
        before = sum(i < opened for i in threads)
        said.append(f"{before} thread(s) were started before {library} was opened: not all are the module's.")
    return " ".join(said)


def symptom_story(user: str, answer: str, frozen: Attempt, first: Attempt) -> str:
    worked = answer.startswith("uid=")
    return (
        f"As {user}, `id {user}` {'answered' if worked else 'did not answer with an id line'} and the "
        f"completion {'froze' if frozen.status == 'hang' else 'did not freeze (' + frozen.status + ')'}; "
        f"as root, the first completion {'worked' if first.status == 'pass' else 'ended in ' + first.status}."
    )


def backtrace_story(frames: list[str], module: str, child: dict, stuck: float | None) -> str:
    """How the frozen child's frames read, bottom-up, from the frames themselves."""
    if not frames:
        return "No frame was kept: gdb gave no backtrace that passes through the module, nothing to read."
    names = [m.group(1) for f in frames if (m := FUNC.search(f))]
    threads = [m.group(1) for f in frames if not f.startswith("goroutine") and (m := FUNC.search(f))]
    entry = next(
        (n for n in names if re.search(rf"_nss_{re.escape(module)}_\w+$", n) and "cgoexp" not in n), None
    )
    callback = next((n for n in names if n == "runtime.cgocallback"), None)
    parked = [n for n in threads if PARKED.match(n)]
    said = []
    if entry and callback:
        said.append(f"Read bottom-up: C called {entry}, which entered Go from a C context ({callback});")
    elif entry:
        said.append(f"Read bottom-up: C called {entry}; no cgocallback frame shows how it entered Go;")
    else:
        said.append(f"No frame names an _nss_{module}_ entry point;")
    if parked:
        said.append(
            f"the thread is parked by the Go scheduler ({' ← '.join(parked)}) and sleeps on a "
            "futex until another thread of the runtime wakes it."
        )
    else:
        said.append(f"the innermost frame is {names[0] if names else '?'}, not a Go scheduler wait.")
    n = child.get("threads")
    if parked and n == 1:
        said.append(
            f"This process has 1 thread: no other thread is there to wake it (stuck {stuck} s when seen)."
        )
    elif parked:
        said.append(f"This process has {n} threads, so a wake-up could still come from one of them.")
    return " ".join(said)


def fork_story(child: dict, shell_pid: int | None, shell: str) -> str:
    parent = child.get("parent") or {}
    if not parent.get("alive"):
        return "The frozen process's parent is gone: no thread count to compare."
    mine = parent.get("pid") == shell_pid
    of = shell if mine else f"pid {parent.get('pid')}, not {shell} ({shell_pid})"
    if not parent.get("fork_without_exec"):
        return f"Its parent is {of}, but the frozen process runs another program: not a plain fork."
    n, m = child.get("threads"), parent.get("threads")
    if n == 1 and isinstance(m, int) and m > 1:
        return (
            f"The frozen process is a fork of {of} without exec (same program, same command line: "
            f"a subshell like the `$(compgen …)` above), and it has 1 thread where its parent has {m}: "
            "fork copied only the calling thread."
        )
    return (
        f"It is a fork of {of} without exec, but it has {n} thread(s) and its parent {m}: "
        "fork's one-thread copy is not what is seen."
    )


def init_story(logged: list[int], user: str, parent: int | None, child: int | None) -> str:
    in_parent, in_child = parent in logged, child in logged
    said = (
        f"init ran in {user}'s bash ({parent}): {'yes' if in_parent else 'no'}; "
        f"in the frozen child ({child}): {'yes' if in_child else 'no'}."
    )
    if in_parent and not in_child:
        return (
            said
            + " The child's Go runtime was started in its parent, before the fork; the child never ran init."
        )
    if in_child:
        return said + " The child ran init itself: its runtime was not simply inherited."
    return said + " Neither logged init: the log does not show where the child's runtime started."


def flag_story(
    value: str | None, child_ran_init: bool, threads: int | None, parent_threads: int | None
) -> str:
    if value is None:
        return "The flag could not be read: nothing to conclude from it."
    if value.strip() == "1":
        if child_ran_init:
            return "The flag says 'initialised', and init did run in this process: the flag is its own."
        return (
            "The flag says 'initialised' though init never ran in this process: it is the parent's memory, "
            f"copied by fork; the parent's threads were not ({threads} here, {parent_threads} in the parent)."
        )
    if value.strip() == "0":
        return (
            "The flag says 'not initialised': an exported function would wait for init here, "
            "not run into a runtime whose threads are gone."
        )
    return f"The flag reads {value!r}, neither 0 nor 1: nothing to conclude from it."


def watch_story(out: str, goarch: str) -> str:
    """What the gdb run with a breakpoint on the c-shared entry and a watchpoint on the flag showed."""
    entry = f"_rt0_{goarch}_lib"
    lines = out.splitlines()
    hit = next((i for i, line in enumerate(lines) if line.startswith("Breakpoint 1,")), None)
    if hit is None or entry not in lines[hit]:
        return f"The breakpoint on {entry} was not hit: gdb did not show where the runtime starts."
    watched = next((i for i, line in enumerate(lines) if "hit Hardware watchpoint" in line), len(lines))
    callers = [m.group(1) for line in lines[hit:watched] if (m := FUNC.match(line))]
    chain = [f for f in ("call_init", "_dl_init", "module_load") if f in callers]
    said = [
        f"{entry} was called by "
        + (" ← ".join(chain) if chain else " ← ".join(callers[1:4]) or "nothing gdb showed")
    ]
    if {"call_init", "_dl_init"} <= set(chain):
        said[0] += ": the dynamic loader ran it as a constructor"
        said[0] += (
            ", inside glibc NSS's module_load (the dlopen of the module)." if "module_load" in chain else "."
        )
    else:
        said[0] += ": not shown to be a constructor run by the loader."
    before = re.search(r"^\$1 = (\S+)", "\n".join(lines[hit:watched]), re.M)
    if before:
        said.append(f"runtime_init_done was {before.group(1)} when it started.")
    if watched == len(lines):
        said.append("The watchpoint on runtime_init_done never fired: gdb did not show who sets it.")
        return " ".join(said)
    thread = re.match(r"Thread (\d+)", lines[watched])
    old = re.search(r"^Old value = (.+)$", out, re.M)
    new = re.search(r"^New value = (.+)$", out, re.M)
    setter = next((m.group(1) for line in lines[watched:] if (m := FUNC.match(line))), "?")
    said.append(
        f"It changed from {old.group(1) if old else '?'} to {new.group(1) if new else '?'} in {setter}, "
        f"on thread {thread.group(1) if thread else '?'}"
        + (
            ", a thread the runtime started (the process began with one)."
            if thread and thread.group(1) != "1"
            else "."
        )
    )
    return " ".join(said)


def proof_story(
    lib: str,
    user: str,
    mine_start: list[str],
    child_mapped: list[str],
    child_ran_init: bool,
    root_start: list[str],
    first: Attempt,
    during_root: list[int],
    root_pid: int | None,
) -> str:
    if lib in mine_start:
        said = [f"{user}'s bash had {lib} mapped from start-up, before any completion."]
    else:
        said = [f"{user}'s bash did not have {lib} mapped at start-up."]
    if lib in child_mapped and not child_ran_init:
        said.append("The frozen child has it mapped without having run init: it inherited the mapping.")
    elif lib in child_mapped:
        said.append("The frozen child has it mapped and ran init itself.")
    else:
        said.append("The frozen child does not have it mapped.")
    children = [p for p in during_root if p != root_pid]
    if lib in root_start:
        said.append("root's bash had it mapped at start too.")
    elif children:
        said.append(
            f"root's bash had not: during its first completion init ran in pid "
            f"{', '.join(map(str, children))}, a process that loaded the library itself."
        )
    else:
        said.append("root's bash had not, and no other process ran init during its first completion.")
    done = "worked" if first.status == "pass" else f"ended in {first.status}"
    said.append(f"That completion {done} ({first.seconds:.2f} s).")
    return " ".join(said)


def root_story(
    lib: str,
    root_start: list[str],
    root_now: list[str],
    root_ran_init: bool,
    again: Attempt,
    cause: str | None,
) -> str:
    if lib in root_now and lib not in root_start:
        said = (
            f"root's bash now has {lib} mapped (none at start): completing the name made it load the module"
        )
        said += ", and init ran in it." if root_ran_init else "."
    elif lib in root_now:
        said = f"root's bash had {lib} mapped from the start."
    else:
        said = f"root's bash still has no {lib} mapped."
    if again.status == "hang":
        return f"{said} Its next completion froze" + (
            f" too, with the same cause ({cause})."
            if cause == "go-runtime-after-fork"
            else f" (cause: {cause or 'not named'})."
        )
    return f"{said} Its next completions did not freeze ({again.status}: {again.text})."


def reproduce_stns(module_dir: Path, step_timeout: float = 20.0) -> int:
    module = load(module_dir)
    ensure_built(module)
    info = elf.inspect(module.library)
    if not info.is_go:
        raise LabError(f"{module.library} is not a Go c-shared library: nothing to reproduce")
    target = get_target("sandbox")
    print(
        f"nsslab reproduce stns: the libnss_stns freeze, replayed on {module.name} "
        f"({info.go_version or 'Go'}, -buildmode=c-shared) in a sandbox\n"
    )
    target.install(module)
    workdir = Path(target.workdir)
    try:
        return Replay(Context(target, module, info, step_timeout=step_timeout)).run()
    finally:
        target.uninstall()
        mounts = sum(MOUNT_TAG in line for line in Path("/proc/mounts").read_text().splitlines())
        left = "left behind" if workdir.exists() else "gone"
        print(f"\nsandbox removed: workdir {left}, {mounts} lab mounts left")


class Replay:
    def __init__(self, ctx: Context) -> None:
        self.ctx, self.target, self.module = ctx, ctx.target, ctx.module
        self.user = ctx.module.users[0]
        self.other = ctx.module.users[1] if len(ctx.module.users) > 1 else self.user
        self.log = f"{self.target.workdir}/init.log"
        self.step = 0
        self.shells: list[Shell] = []
        self.window: dict[int, str] = {}  # pid in golab's init log -> while what it was first logged

    # ---- output

    def title(self, text: str) -> None:
        self.step += 1
        print(f"\n[{self.step}/{STEPS}] {text}")

    def say(self, text: str) -> None:
        print(textwrap.fill(text, 100, initial_indent="    ", subsequent_indent="    "))

    def show(self, lines: list[str] | str, prefix: str = "      ") -> None:
        for line in lines.splitlines() if isinstance(lines, str) else lines:
            print(prefix + line)

    def sh(self, command: str) -> str:
        print(f"    $ {command}")
        try:
            done = self.target.run(["sh", "-c", command], timeout=self.ctx.step_timeout)
        except CommandTimeout as e:
            return f"(no answer: {e})"
        return (done.stdout + done.stderr).rstrip()

    # ---- the replay

    def run(self) -> int:
        target = self.target
        target.run(["sh", "-c", f": > {self.log} && chmod 666 {self.log}"])
        rc = f"{target.workdir}/bashrc"
        target.run(["sh", "-c", f"cat > {rc} && chmod 644 {rc}"], stdin=RCFILE)
        try:
            return self.replay(rc)
        finally:
            for shell in self.shells:
                shell.close()

    def replay(self, rc: str) -> int:
        u, name, lib = self.user, self.module.name, self.module.library.name
        self.title("What NSS is: glibc loads the module named in nsswitch.conf into the caller")
        self.show(self.sh("grep -E '^(passwd|group|initgroups):' /etc/nsswitch.conf"))
        exported = [s for s in self.ctx.elf.nss_symbols if s.startswith(f"_nss_{name}_")]
        self.say(f"{lib} exports {len(exported)} functions named _nss_<service>_<function>:")
        self.show(textwrap.wrap(" ".join(exported), 94))
        self.strace_id()

        self.title(f"Symptom? As {u.name}: `id {u.name}`, then `ls ~<TAB>`; the same completion as root")
        bash = ["/bin/bash", "--noprofile", "--rcfile", rc, "-i"]
        mine = self.shell(u.name, self.target.as_user(u.uid, u.gid, self.module.gids_of(u), bash), u.home)
        mine_start = mine.nss_modules()
        self.mark(f"while {u.name}'s bash started")
        print(f"    {u.name}$ id {u.name}")
        answer = mine.run_line(f"id {u.name}")
        self.show(answer)
        self.mark(f"during `id {u.name}`")
        prefix, rest = self.completion()
        frozen = self.tab(mine, prefix, rest, u.name, TABS)
        self.mark(f"during {u.name}'s completion")
        root = self.shell("root", bash, "/root")
        root_start = root.nss_modules()
        self.mark("while root's bash started")
        first = self.tab(root, prefix, rest, "root", 1)
        self.mark("during root's first completion")
        self.say(symptom_story(u.name, answer, frozen, first))
        if frozen.status != "hang":
            print(f"\nnot reproduced: {u.name}'s completion did not freeze in {TABS} tries ({frozen.text})")
            return 1

        processes = (frozen.evidence or {}).get("processes", [])
        diagnosis = diagnose_hang(processes, name) if processes else None
        pid = diagnosis.pid if diagnosis and diagnosis.pid else None
        child = next((p for p in processes if p.get("pid") == pid), processes[-1] if processes else {})
        parent = child.get("parent") or {}
        report = parse((child.get("gdb") or {}).get("text", ""))
        goroutines = (
            ", `goroutine N bt` via runtime-gdb.py" if report.goroutines else ", no goroutines listed"
        )
        self.title(f"First gdb look at the frozen process {child.get('pid')} (gdb -p PID, bt; goroutines)")
        frames = diagnosis.frames if diagnosis else []
        if frames:
            self.say(
                f"The hang snapshot attached gdb to it (`thread apply all bt`{goroutines}); "
                "the frames lab.forensics kept from what gdb printed, innermost first:"
            )
            self.show(frames)
        self.say(backtrace_story(frames, name, child, (frozen.evidence or {}).get("stuck_seconds")))

        self.title("Hypothesis: fork. fork copies only the calling thread")
        self.show(
            [
                f"frozen process {child.get('pid')} ({child.get('cmdline', '')[:40]}): "
                f"{child.get('threads')} thread(s)",
                f"its parent, {u.name}'s bash {parent.get('pid')}: {parent.get('threads')} thread(s) "
                f"({'forked without exec' if parent.get('fork_without_exec') else 'not a plain fork'})",
            ]
        )
        self.show(self.sh(f"grep -nF \"compgen -P '~' -u\" {BASH_COMPLETION}"))
        self.say(fork_story(child, mine.pid, f"{u.name}'s bash"))

        self.title("Was the Go runtime initialised in the frozen process? (init() logs its pid)")
        log = self.sh(f"cat {self.log}")
        self.show(log or "(empty)")
        logged = [int(p) for p in re.findall(r"pid (\d+)", log)]
        who = {mine.pid: f"{u.name}'s bash", root.pid: "root's bash", child.get("pid"): "the frozen child"}
        self.show(
            [
                f"pid {p}: {who.get(p, 'another process')}, logged {self.window.get(p, 'later')}"
                for p in logged
            ]
        )
        self.say(init_story(logged, u.name, parent.get("pid"), child.get("pid")))

        self.title("_cgo_wait_runtime_init_done() trusts a flag: runtime_init_done in the frozen child")
        value = self.read_flag(child.get("pid"), report.go.get("runtime_init_done"))
        self.say(flag_story(value, child.get("pid") in logged, child.get("threads"), parent.get("threads")))

        self.title("Where is the flag set, and when? (gdb: break on the Go entry, watch the flag)")
        self.say(watch_story(self.watch_init(), GOARCH))

        self.title("The proof: which shells have the module mapped (lsof -p $$ | grep libnss)")
        mapped = self.target.nss_modules(parent["pid"]) if parent.get("alive") else []
        child_mapped = lib_names(child.get("nss_modules", []))
        self.show(
            [
                f"{u.name}'s bash at start: {', '.join(mine_start) or 'no NSS module'}",
                f"{u.name}'s bash now: {', '.join(mapped) or 'no NSS module'}",
                f"the frozen child {child.get('pid')}: {', '.join(child_mapped) or 'no NSS module'}",
                f"root's bash at start: {', '.join(root_start) or 'no NSS module'}",
            ]
        )
        during_root = [p for p in logged if self.window.get(p) == "during root's first completion"]
        self.say(
            proof_story(
                lib,
                u.name,
                mine_start,
                child_mapped,
                child.get("pid") in logged,
                root_start,
                first,
                during_root,
                root.pid,
            )
        )

        self.title(f"And root's shell, after completing ~{prefix}?")
        root_now = root.nss_modules()
        self.show(f"root's bash now: {', '.join(root_now) or 'no NSS module'}")
        again = self.tab(root, prefix, rest, "root", TABS)
        again_cause = None
        if again.evidence and again.evidence.get("processes"):
            again_cause = diagnose_hang(again.evidence["processes"], name).cause
        self.say(root_story(lib, root_start, root_now, root.pid in logged, again, again_cause))

        self.title("Named cause (lab.forensics)")
        self.cause(diagnosis)
        self.title("Fix options")
        for fix in FIXES:
            print(textwrap.fill(fix, 100, initial_indent="    - ", subsequent_indent="      "))
        ok = diagnosis is not None and diagnosis.cause == "go-runtime-after-fork"
        print(f"\nreproduced: {'yes' if ok else 'the freeze, but the cause was not proven'}")
        return 0 if ok else 1

    # ---- pieces

    def shell(self, who: str, argv: list[str], home: str) -> Shell:
        try:
            shell = Shell(self.ctx, argv, login_env(who, home, GOLAB_INIT_LOG=self.log), who)
        except (pexpect.TIMEOUT, pexpect.EOF):
            raise LabError(f"bash as {who} did not start within {self.ctx.step_timeout:g} s") from None
        self.shells.append(shell)
        return shell

    def completion(self) -> tuple[str, str]:
        if self.target.run(["test", "-r", BASH_COMPLETION]).rc != 0:
            raise LabError(f"{BASH_COMPLETION} is missing in the target (Debian package bash-completion)")
        names = self.target.local_users() | {x.name for x in self.module.users}
        prefix = unique_prefix(self.other.name, names)
        if not prefix:
            raise LabError(f"no unique completion prefix for {self.other.name}")
        return prefix, self.other.name[len(prefix) :]

    def tab(self, shell: Shell, prefix: str, rest: str, who: str, tries: int) -> Attempt:
        done = Attempt("fail", "not tried", 0.0)
        for n in range(1, tries + 1):
            print(f"    {who}$ ls ~{prefix}<TAB>" + (f"   (try {n})" if n > 1 else ""))
            done = shell.complete(prefix, rest)
            self.show(f"{done.status}: {done.text} ({done.seconds:.2f} s)")
            if done.status != "pass":
                break
        return done

    def strace_id(self) -> None:
        u = self.user
        if self.target.run(["sh", "-c", "command -v strace"]).rc != 0:
            self.say("(strace is not installed in the target: skipping the system-call view)")
            return
        out = self.sh(f"strace -f -e trace=openat,clone,clone3 id {shlex.quote(u.name)} 2>&1")
        opened = [
            line for line in out.splitlines() if "openat" in line and ("libnss" in line or "/etc/" in line)
        ]
        self.show([re.sub(r"^\[pid\s+\d+\] ", "", line)[:110] for line in opened if "ENOENT" not in line][:8])
        self.say(strace_story(out, self.module.library.name))

    def mark(self, when: str) -> None:
        """Notes which pids golab's init log gained since the last look, and while what."""
        log = self.target.run(["cat", self.log], timeout=self.ctx.step_timeout).stdout
        for pid in re.findall(r"pid (\d+)", log):
            self.window.setdefault(int(pid), when)

    def read_flag(self, pid: int | None, snapshot: str | None) -> str | None:
        """runtime_init_done as gdb prints it in the frozen child, attached now; or, if the
        child is gone, the value the hang snapshot's gdb read, labelled as such."""
        alive = pid is not None and self.target.run(["test", "-d", f"/proc/{pid}"]).rc == 0
        if alive:
            out = self.sh(
                "gdb -batch -nx -iex 'set debuginfod enabled off' -iex 'set auto-load no' "
                f"-p {pid} -ex 'print runtime_init_done'"
            )
            self.show([line[:110] for line in out.splitlines() if line.strip()] or ["(gdb printed nothing)"])
            found = re.search(r"^\$\d+ = (.+)$", out, re.M)
            if found:
                return found.group(1).strip()
            self.say("gdb printed no value for runtime_init_done.")
        else:
            self.say(f"the frozen child {pid} is gone: no gdb to attach now.")
        if snapshot is not None:
            self.show(f"value read by the hang snapshot's gdb script (gdb.parse_and_eval): {snapshot}")
        return snapshot

    def watch_init(self) -> str:
        script = "\n".join(
            [
                "set breakpoint pending on",
                f"break _rt0_{GOARCH}_lib",
                "run",
                "bt 14",
                "print runtime_init_done",
                "watch runtime_init_done",
                "continue",
                "bt 2",
                "kill",
            ]
        )
        path = f"{self.target.workdir}/watch.gdb"
        self.target.run(["sh", "-c", f"cat > {path}"], stdin=script)
        argv = [self.target.python, "-I", "-S", "-c", f"import pwd; pwd.getpwnam({self.user.name!r})"]
        print(f"    $ gdb -batch -x {path} --args {shlex.join(argv)}")
        try:
            gdb = self.target.probe("gdb-run", path, "--", *argv, timeout=self.ctx.step_timeout)[0]
        except CommandTimeout as e:
            gdb = {"error": str(e)}
        if gdb.get("error"):
            self.say(f"gdb: {gdb['error']}")
        out = gdb.get("text", "")
        self.show([line[:120] for line in out.splitlines() if WATCH_LINES.match(line)])
        return out

    def cause(self, diagnosis: Diagnosis | None) -> None:
        if diagnosis is None:
            self.say("no evidence was collected")
            return
        self.show(f"cause: {diagnosis.cause}", prefix="    ")
        self.say(diagnosis.explanation)
        for fact in diagnosis.facts:
            self.say(f"- {fact}")
