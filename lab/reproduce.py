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
from lab.backends import get_target
from lab.backends.sandbox import MOUNT_TAG
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
from lab.errors import CommandTimeout, LabError
from lab.forensics import Diagnosis, diagnose_hang
from lab.forensics.gdb import parse
from lab.module import ensure_built, load

GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
STEPS = 11
FIXES = [
    "Write the NSS module in C (STNS v2 did): no runtime, no threads in the caller, fork-safe.",
    "Keep Go, but out of process: a thin C module talks over a Unix socket to a Go daemon with a "
    "cache (STNS v2's cache-stnsd, and other projects' C shim + Go executable).",
    "Do not ship -buildmode=c-shared into processes that fork: the Go team supports c-shared "
    "with fork only when the child execs at once (golang/go#15538).",
]


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
        u, name = self.user, self.module.name
        self.title("What NSS is: glibc loads the module named in nsswitch.conf into the caller")
        self.show(self.sh("grep -E '^(passwd|group|initgroups):' /etc/nsswitch.conf"))
        exported = [s for s in self.ctx.elf.nss_symbols if s.startswith(f"_nss_{name}_")]
        self.say(
            f"{self.module.library.name} exports {len(exported)} functions named _nss_<service>_<function>:"
        )
        self.show(textwrap.wrap(" ".join(exported), 94))
        self.strace_id()

        self.title(f"Symptom: logged in as {u.name}, `id` works but `ls ~<TAB>` freezes; root's works")
        bash = ["/bin/bash", "--noprofile", "--rcfile", rc, "-i"]
        mine = self.shell(u.name, self.target.as_user(u.uid, u.gid, self.module.gids_of(u), bash), u.home)
        print(f"    {u.name}$ id {u.name}")
        self.show(mine.run_line(f"id {u.name}"))
        prefix, rest = self.completion()
        frozen = self.tab(mine, prefix, rest, u.name, TABS)
        root = self.shell("root", bash, "/root")
        root_start = root.nss_modules()
        first = self.tab(root, prefix, rest, "root", 1)
        if frozen.status != "hang":
            print(f"\nnot reproduced: {u.name}'s completion did not freeze in {TABS} tries ({frozen.text})")
            return 1

        diagnosis = diagnose_hang(frozen.evidence["processes"], name) if frozen.evidence else None
        child = frozen.evidence["processes"][-1] if frozen.evidence else {}
        self.title("First gdb look at the frozen process (gdb -p PID, bt; goroutines via runtime-gdb.py)")
        if diagnosis and diagnosis.frames:
            self.show(diagnosis.frames)
            self.say(
                "Read bottom-up: C called the exported function, which entered Go from a C context "
                "(cgocallback); the runtime looks for an M to run the goroutine, parks on a futex and "
                "waits for a wake-up that never comes."
            )
        else:
            self.say(f"no backtrace: {diagnosis.explanation if diagnosis else 'no evidence'}")

        self.title("Hypothesis: fork. fork copies only the calling thread")
        parent = child.get("parent") or {}
        self.show(
            [
                f"frozen process {child.get('pid')} ({child.get('cmdline', '')[:40]}): "
                f"{child.get('threads')} thread(s)",
                f"its parent, {u.name}'s bash {parent.get('pid')}: {parent.get('threads')} thread(s) "
                f"({'forked without exec' if parent.get('fork_without_exec') else 'not a plain fork'})",
            ]
        )
        self.say(
            "bash-completion ran `compgen -u` in a forked subshell. The parent's Go runtime threads "
            "were not copied into it."
        )

        self.title("Was the Go runtime initialised in the frozen process? (init() logs its pid)")
        log = self.sh(f"cat {self.log}")
        self.show(log or "(empty)")
        pids = {int(p) for p in re.findall(r"pid (\d+)", log)}
        self.say(
            f"init ran in {u.name}'s bash ({parent.get('pid')}): "
            f"{'yes' if parent.get('pid') in pids else 'no'}; in the frozen child ({child.get('pid')}): "
            f"{'yes' if child.get('pid') in pids else 'no, never'}. The other pids loaded the module "
            "themselves (`id`, root's completion child)."
        )

        self.title("_cgo_wait_runtime_init_done() trusts a flag: runtime_init_done in the frozen child")
        init = parse((child.get("gdb") or {}).get("text", "")).go.get("runtime_init_done", "?")
        self.show(f"(gdb) print runtime_init_done\n$1 = {init}")
        self.say("The flag says 'initialised': it was copied from the parent's memory, its threads were not.")

        self.title("Where is the flag set, and when? (gdb: break on the Go entry, watch the flag)")
        self.watch_init()

        self.title("The proof: which shells have the module mapped (lsof -p $$ | grep libnss)")
        mapped = ", ".join(self.target.nss_modules(parent["pid"]) if parent.get("alive") else []) or "none"
        self.show(
            [
                f"{u.name}'s bash: {mapped}  (it resolved its own user at start-up)",
                f"root's bash at start: {', '.join(root_start) or 'no NSS module'}",
            ]
        )
        self.say(
            f"{u.name}'s shell carries an initialised Go runtime, so its forked children freeze. In "
            f"root's shell the child loads the library fresh and runs init: root's first completion "
            f"{'worked' if first.status == 'pass' else 'did not work (' + first.status + ')'} "
            f"({first.seconds:.2f} s)."
        )

        self.title(f"Root is not safe either: completing ~{prefix} made root's bash resolve the user")
        self.show(f"root's bash now: {', '.join(root.nss_modules()) or 'no NSS module'}")
        again = self.tab(root, prefix, rest, "root", TABS)
        self.say(
            "root's shell now carries the runtime too: its next completion froze the same way."
            if again.status == "hang"
            else f"root's next completions did not freeze this time ({again.status}): it is a race."
        )

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
        clones = [line for line in out.splitlines() if "clone" in line and "resumed" not in line]
        threads = sum("CLONE_THREAD" in line for line in clones)
        pids = set(re.findall(r"\[pid\s+(\d+)\]", out))
        self.say(
            f"`strace -f` shows {len(pids)} other pids, but all "
            f"{threads} of {len(clones)} clone calls carry CLONE_THREAD: they are the Go runtime's threads, "
            "started inside `id` when the module loaded. `id` itself never forks."
        )

    def watch_init(self) -> None:
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
        keep = re.compile(
            r"^(#\d|Breakpoint \d,|Thread \d+ .* hit|Old value|New value|\$\d|Hardware watchpoint)"
        )
        self.show([line[:120] for line in out.splitlines() if keep.match(line)])
        self.say(
            f"_rt0_{GOARCH}_lib is a constructor: the dynamic loader calls it (call_init, _dl_init) when "
            "glibc's NSS dlopens the module (module_load). It starts the runtime, whose thread sets "
            "runtime_init_done = 1 in x_cgo_notify_runtime_init_done. That happens once per load; a "
            "forked child inherits the flag but runs no constructor."
        )

    def cause(self, diagnosis: Diagnosis | None) -> None:
        if diagnosis is None:
            self.say("no evidence was collected")
            return
        self.show(f"cause: {diagnosis.cause}", prefix="    ")
        self.say(diagnosis.explanation)
        for fact in diagnosis.facts:
            self.say(f"- {fact}")
