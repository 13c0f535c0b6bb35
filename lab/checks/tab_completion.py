from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

import pexpect

from lab.checks.base import CheckResult, Context, check, describe_hang, forensic
from lab.forensics import diagnose_hang

BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"
READY = "NSSLAB-READY"
TABS = 3  # completions tried per shell (root gets one more: its first only loads the module)
RCFILE = f"""PS1='nsslab$ '
HISTFILE=/dev/null
. {BASH_COMPLETION}
bind 'set bell-style none' 2>/dev/null
echo "{READY} $$"
"""


class ShellDidNotStart(pexpect.TIMEOUT):
    """No prompt came: carries the last thing the terminal showed, and whether the other
    end closed it (CLOSED) or just never answered."""

    def __init__(self, seen: str, closed: bool) -> None:
        super().__init__(seen)
        self.seen, self.closed = seen, closed


@dataclass
class Attempt:
    status: str  # pass, hang, crash, fail
    text: str
    seconds: float
    evidence: dict | None = None  # the hang watch's report

    def diagnosed(self, module: str, step: str) -> dict | None:
        """The named cause of a frozen completion, with its proof (None if it did not hang)."""
        if not self.evidence:
            return None
        return forensic(diagnose_hang(self.evidence.get("processes", []), module), self.evidence, step)


class Shell:
    """An interactive bash in the target, driven like a person at a terminal."""

    def __init__(self, ctx: Context, argv: list[str], env: dict[str, str], who: str) -> None:
        self.ctx, self.target, self.who = ctx, ctx.target, who
        self.proc = self.target.spawn(argv, env, timeout=ctx.step_timeout)
        self.pid: int | None = None
        try:
            self.proc.expect(rf"{READY} (\d+)", timeout=ctx.step_timeout)
            self.pid = int(self.proc.match.group(1))
            self.proc.expect_exact("nsslab$ ", timeout=ctx.step_timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as e:
            seen = " ".join(str(self.proc.before or "").split())[-200:]
            self.close()
            raise ShellDidNotStart(seen, isinstance(e, pexpect.EOF)) from None

    def run_line(self, line: str) -> str:
        """Types LINE and returns what it printed before the next prompt."""
        self.proc.sendline(line)
        self.proc.expect_exact("nsslab$ ", timeout=self.ctx.step_timeout)
        return "\n".join(self.proc.before.replace("\r", "").splitlines()[1:])

    def nss_modules(self) -> list[str]:
        assert self.pid is not None
        return self.target.nss_modules(self.pid)

    def complete(self, prefix: str, rest: str) -> Attempt:
        """Types `ls ~PREFIX<TAB>` and waits for REST to be inserted, or a provable hang."""
        assert self.pid is not None
        started = time.monotonic()
        self.proc.send(f"ls ~{prefix}\t")
        watch = self.target.start_watch(self.pid, self.ctx.quick, self.ctx.slow, self.ctx.step_timeout)
        try:
            while time.monotonic() - started < self.ctx.step_timeout:
                report = None
                try:
                    shown = self.shows(rest, 0.05)
                    if not shown:
                        report = watch.poll()
                        # an idle shell may have printed the completion just after the last look
                        shown = bool(report) and report["outcome"] == "idle" and self.shows(rest, 1.0)
                except pexpect.EOF:
                    return Attempt(
                        "crash", f"bash exited while completing ~{prefix}", time.monotonic() - started
                    )
                if shown:
                    self.proc.send("\x15")  # Ctrl-U: clear the line for the next attempt
                    return Attempt(
                        "pass", f"completed ~{prefix} to ~{prefix}{rest}", time.monotonic() - started
                    )
                if report and report["outcome"] == "idle":
                    return Attempt(
                        "fail",
                        f"`ls ~{prefix}<TAB>` offered nothing: the shell is back "
                        f"at the prompt without ~{prefix}{rest}",
                        time.monotonic() - started,
                    )
                if report and report["outcome"] == "hang":
                    return Attempt(
                        "hang",
                        f"`ls ~{prefix}<TAB>` froze: {describe_hang(report['hang'])}",
                        time.monotonic() - started,
                        report["hang"],
                    )
            return Attempt(
                "hang",
                f"`ls ~{prefix}<TAB>` did not complete within {self.ctx.step_timeout:g} s",
                time.monotonic() - started,
            )
        finally:
            watch.stop()

    def shows(self, text: str, timeout: float) -> bool:
        """Whether the terminal shows TEXT within TIMEOUT seconds (EOF if bash is gone)."""
        try:
            self.proc.expect(re.escape(text), timeout=timeout)
            return True
        except pexpect.TIMEOUT:
            return False

    def close(self) -> None:
        if self.pid:
            self.target.probe("kill-tree", str(self.pid))
        self.proc.close(force=True)


def login_env(who: str, home: str, **extra: str) -> dict[str, str]:
    """The environment a login gives WHO's shell (no NSS lookup needed to build it)."""
    return {
        "HOME": home,
        "USER": who,
        "LOGNAME": who,
        "TERM": "dumb",
        "SHELL": "/bin/bash",
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        **extra,
    }


def unique_prefix(name: str, others: set[str]) -> str | None:
    """The shortest prefix only NAME has. The whole name will do (deb1 beside deb0, deb2):
    bash then completes `~deb1` to `~deb1/`, through the same forked `compgen -u`."""
    for n in range(2, len(name) + 1):
        if not any(o.startswith(name[:n]) for o in others - {name}):
            return name[:n]
    return None


def completion(name: str, prefix: str) -> str:
    """What TAB must insert after ~PREFIX: the rest of the name, or the slash after a whole one."""
    return name[len(prefix) :] or "/"


@check("tab-completion")
def tab_completion(ctx: Context) -> CheckResult:
    """`ls ~<prefix><TAB>` in a real interactive bash with bash-completion completes.

    As a module-served user (bash loaded the module for its own user at start-up, so
    the completion's forked `compgen -u` subshell inherits a half-dead runtime), and as
    root twice: the first completion loads the module fresh in the child and works, but
    it also makes root's bash resolve ~user itself, so the second completion freezes.
    This is how the STNS freeze was seen by its users: the shell stopped answering.

    Skipped where the module offers no passwd listing (`enumerable = false`, or no
    set/get/endpwent): compgen -u lists users by enumeration, so nothing could complete."""
    target, m = ctx.target, ctx.module
    if target.run(["test", "-r", BASH_COMPLETION]).rc != 0 or target.run(["test", "-x", "/bin/bash"]).rc:
        return CheckResult("skip", f"bash or {BASH_COMPLETION} is not installed in the target")
    why = ctx.listings().get("passwd", "the module serves no passwd database")
    if why:
        return CheckResult(
            "skip",
            f"bash's ~user completion lists users with setpwent/getpwent (compgen -u), and {why}: "
            "the module's users cannot be completed, by design, so there is no completion to test",
            {"listing": why},
        )
    names = target.local_users() | {u.name for u in m.users}
    user = next((u for u in m.users if unique_prefix(u.name, names) and u.uid > 0), None)
    if user is None:
        return CheckResult("skip", "no module user whose name has a unique completion prefix")
    prefix = unique_prefix(user.name, names)
    assert prefix
    rest = completion(user.name, prefix)
    rc = f"{target.workdir}/bashrc"
    target.run(["sh", "-c", f"cat > {shlex.quote(rc)} && chmod 644 {shlex.quote(rc)}"], stdin=RCFILE)
    bash = ["/bin/bash", "--noprofile", "--rcfile", rc, "-i"]
    runs: list[tuple[str, Attempt]] = []
    notes: list[str] = []
    for who, argv, home, uid_user in (
        (user.name, target.as_user(user.uid, user.gid, m.gids_of(user), bash), user.home, user),
        ("root", bash, "/root", None),
    ):
        try:
            shell = Shell(ctx, argv, login_env(who, home), who)
        except (pexpect.TIMEOUT, pexpect.EOF):
            runs.append(
                (
                    who,
                    Attempt(
                        "hang", f"bash as {who} did not start within {ctx.step_timeout:g} s", ctx.step_timeout
                    ),
                )
            )
            continue
        try:
            notes.append(
                f"{who}'s bash has {', '.join(shell.nss_modules()) or 'no NSS module'} mapped at start"
            )
            # Root's first completion is the one that loads the module into its shell. The
            # freeze is a race in the Go scheduler per call, so press TAB again, as a person
            # at a frozen-looking prompt would, before calling a shell safe.
            for attempt in range(1, TABS + (uid_user is None) + 1):
                done = shell.complete(prefix, rest)
                runs.append((f"{who} #{attempt}", done))
                if done.status != "pass":
                    break
                if uid_user is None and attempt == 1:
                    notes.append(
                        f"after it, root's bash has {', '.join(shell.nss_modules()) or 'none'} mapped"
                    )
        finally:
            shell.close()
    details = {
        "attempts": {
            who: {"status": a.status, "text": a.text, "seconds": round(a.seconds, 3)} for who, a in runs
        },
        "notes": notes,
    }
    failed = [(who, a) for who, a in runs if a.status != "pass"]
    summary = "; ".join(f"{who}: {a.status} ({a.seconds:.2f} s)" for who, a in runs)
    if failed:
        who, worst = next(((w, a) for w, a in failed if a.status == "hang"), failed[0])
        evidence = worst.diagnosed(m.name, f"{who}: ls ~{prefix}<TAB>")
        as_root = who.startswith("root")
        start = "bash -i" if as_root else f"su - {user.name}"
        presses = (
            "twice (the first loads the module, the second runs in a child of it)" if as_root else "once"
        )
        shell_of = f"the interactive shell of {'root' if as_root else user.name}"
        impact = {
            "hang": f"{shell_of} stops answering at `ls ~{prefix}<TAB>` until killed from elsewhere",
            "crash": f"{shell_of} dies at `ls ~{prefix}<TAB>`",
            "fail": f"`~{prefix}<TAB>` does not complete to ~{user.name} although the manifest declares "
            "the user (compgen -u lists users by enumeration)",
        }.get(worst.status)
        passed = [w for w, a in runs if a.status == "pass"]
        return CheckResult(
            worst.status,
            f"as {who}, {worst.text} [{summary}]",
            details,
            evidence,
            impact=impact,
            reproduce=f"{start}, then type `ls ~{prefix}` and press TAB {presses}",
            control=f"completions that worked: {', '.join(passed)}" if passed else None,
        )
    return CheckResult("pass", f"`ls ~{prefix}<TAB>` completed [{summary}]", details)
