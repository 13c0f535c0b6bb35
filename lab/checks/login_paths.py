from __future__ import annotations

import shlex
import time

from lab.checks.base import CheckResult, Context, check, describe_hang, forensic, summary
from lab.checks.tab_completion import (
    RCFILE,
    TABS,
    Attempt,
    Shell,
    ShellDidNotStart,
    completion,
    login_env,
    unique_prefix,
)
from lab.forensics import diagnose_hang
from lab.probe import GDB_TIMEOUT
from lab.targets.target import DISPOSABLE, FULL_SYSTEM

KILLED = 137  # `timeout -s KILL` in the target: the command was still running at the bound


@check("login-paths")
def login_paths(ctx: Context) -> CheckResult:
    """On a whole system (VM targets): a real `ssh USER@localhost` through sshd, which
    forks per connection and resolves the user on the way, then `ls ~<prefix><TAB>` in
    that login shell; `su - USER -c id` and `sudo -u USER id` after root has already
    resolved a module user in the same process chain; a systemd service with `User=`.

    The STNS freeze was reported from exactly these paths: users logging in over ssh and
    completing a home directory, admins running `su -` and sudo into module users, and
    daemons started by systemd as a directory user. A module can pass in a bare process
    and still break one of them (a privilege drop aborting with its threads, a lock taken
    by PAM before fork)."""
    target, m = ctx.target, ctx.module
    if FULL_SYSTEM not in target.caps:
        return CheckResult(
            "skip", "needs a whole system (sshd, PAM, systemd): run with --target vagrant://PLATFORM"
        )
    if DISPOSABLE not in target.caps:  # it writes authorized_keys and starts a unit
        return CheckResult(
            "skip",
            "changes the machine (authorized_keys, a systemd unit): needs a disposable target"
            " (vagrant://PLATFORM, or ssh://HOST?disposable=1)",
        )
    names = target.local_users() | {u.name for u in m.users}
    user = next(
        (u for u in m.users if u.uid > 0 and u.home.startswith("/") and unique_prefix(u.name, names)), None
    )
    if user is None:
        return CheckResult("skip", "no module user with a home directory to log in as")
    bound = int(ctx.step_timeout)
    name = shlex.quote(user.name)
    # A path whose program is not on this machine says nothing about the module: left out, said so
    absent = set(target.run(["sh", "-c", ABSENT]).stdout.splitlines())
    results: dict[str, tuple[str, str, dict | None]] = {
        path: ("skip", f"not on this machine ({why})", None) for path, why in NEEDS.items() if path in absent
    }
    for path, command in (
        ("su -", f"id {name} >/dev/null; timeout -s KILL {bound} su - {name} -c id"),
        ("sudo -u", f"id {name} >/dev/null; timeout -s KILL {bound} sudo -n -u {name} id"),
        (
            "systemd User=",
            f"timeout -s KILL {bound} systemd-run --quiet --wait --pipe --collect -p User={name} id",
        ),
    ):
        if path in absent:
            continue
        done = target.run(["sh", "-c", command], timeout=bound + 15)
        results[path] = (*judge_command(done.rc, done.stdout, done.stderr, user.uid, bound), None)
    if "ssh + TAB" not in absent:
        results["ssh + TAB"] = ssh_and_complete(ctx, user, names)
    details = {"paths": {p: {"status": s, "text": t} for p, (s, t, _) in results.items()}}
    if all(s == "skip" for s, _, _ in results.values()):
        return CheckResult("skip", "; ".join(f"{p}: {t}" for p, (_, t, _) in results.items()), details)
    bad = [(p, s, t, e) for p, (s, t, e) in results.items() if s not in ("pass", "skip")]
    if bad:
        worst = next((b for b in bad if b[1] in ("hang", "crash")), bad[0])
        evidence = next((e for *_, e in bad if e), None)
        return CheckResult(worst[1], summary([f"{p}: {t}" for p, _, t, _ in bad]), details, evidence)
    return CheckResult("pass", "; ".join(f"{p}: {t}" for p, (_, t, _) in results.items()), details)


NEEDS = {  # each path, and what must be there for it to say anything
    "su -": "no su",
    "sudo -u": "no sudo",
    "systemd User=": "systemd is not PID 1",
    "ssh + TAB": "no sshd",
}
ABSENT = (  # prints the paths whose program is missing
    "command -v su >/dev/null || echo 'su -'; command -v sudo >/dev/null || echo 'sudo -u'; "
    "{ [ -d /run/systemd/system ] && command -v systemd-run >/dev/null; } || echo 'systemd User='; "
    "{ command -v sshd || [ -x /usr/sbin/sshd ]; } >/dev/null || echo 'ssh + TAB'"
)


def judge_command(rc: int, out: str, err: str, uid: int, bound: int) -> tuple[str, str]:
    if rc == KILLED:
        return "hang", f"still running after {bound} s (killed)"
    if rc == 0 and f"uid={uid}(" in out:
        return "pass", "ok"
    said = (err.strip().splitlines() or out.strip().splitlines() or ["no output"])[-1]
    status = "crash" if rc >= 128 or "Aborted" in err or "core dumped" in err else "fail"
    return status, f"exit {rc}: {said}"


def sshd_state(ctx: Context) -> tuple[str, list[int]]:
    """The sshd processes of the stuck login: threads, wait channel, NSS modules mapped;
    and the pids of those that map the module under test."""
    target = ctx.target
    found, suspects = [], []
    for line in target.run(["ps", "-eo", "pid=,nlwp=,wchan:24=,args="]).stdout.splitlines():
        pid, threads, wchan, args = [*line.split(None, 3), "", "", "", ""][:4]
        if args.startswith("sshd:") and "listener" not in args:
            mapped = target.nss_modules(int(pid))
            if any(ctx.module.name in m for m in mapped):
                suspects.append(int(pid))
            modules = ", ".join(mapped) or "no NSS module"
            found.append(f"`{args}` pid {pid}: {threads} thread(s) in {wchan}, {modules} mapped")
    return "; ".join(found[:3]) or "no sshd process left", suspects


def stuck_login(ctx: Context) -> tuple[str, dict | None]:
    """What the stuck login's sshd processes show, and when one that maps the module is
    provably hung, the probe's hang watch and gdb say why (as for a frozen shell)."""
    state, suspects = sshd_state(ctx)
    for pid in suspects:  # the [priv] parent first: its tree holds the forked children
        watch = ctx.target.start_watch(pid, ctx.quick, ctx.slow, ctx.slow + 5)
        deadline = time.monotonic() + ctx.slow + 10 + GDB_TIMEOUT  # the watch's own bound, plus gdb
        try:
            while (report := watch.poll()) is None and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            watch.stop()
        if report and report.get("outcome") == "hang":
            diagnosis = diagnose_hang(report["hang"]["processes"], ctx.module.name)
            evidence = forensic(diagnosis, report["hang"], f"ssh {ctx.module.name} login (sshd pid {pid})")
            return f"{state}; {describe_hang(report['hang'])}", evidence
    return state, None


def sshd_log(ctx: Context) -> str:
    """sshd's last messages in the journal (a fatal error or a killed child shows there)."""
    text = ctx.target.run(["journalctl", "-q", "--no-pager", "-o", "cat", "-n", "4", "-t", "sshd"]).stdout
    return " | ".join(line.strip() for line in text.splitlines()[-4:]) or "nothing"


def ssh_and_complete(ctx: Context, user, names: set[str]) -> tuple[str, str, dict | None]:
    """sshd as the user's way in, then completion in the login shell it started."""
    target = ctx.target
    key, home = f"{target.workdir}/login_key", shlex.quote(user.home)
    rc = f"{target.workdir}/login_bashrc"  # its own: tab-completion may be writing bashrc beside it
    target.run(["sh", "-c", f"cat > {rc} && chmod 644 {rc}"], stdin=RCFILE)
    target.run(["sh", "-c", f"rm -f {key} {key}.pub; ssh-keygen -q -t ed25519 -N '' -f {key}"])
    target.run(
        ["sh", "-c", f"mkdir -p {home}/.ssh && cp {key}.pub {home}/.ssh/authorized_keys && "
         f"chown -R {user.uid}:{user.gid} {home}/.ssh && chmod 700 {home}/.ssh"]
    )  # fmt: skip
    prefix = unique_prefix(user.name, names)
    assert prefix
    ssh = ["ssh", "-tt", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "BatchMode=yes", f"{user.name}@localhost", f"bash --noprofile --rcfile {rc} -i"]  # fmt: skip
    try:
        shell = Shell(ctx, ssh, login_env("root", "/root"), user.name)
    except ShellDidNotStart as e:
        said = f"the terminal showed {e.seen!r}" if e.seen else "the terminal showed nothing"
        if e.closed:
            return (
                "fail",
                f"sshd closed the login before a shell started ({said}); sshd logged: {sshd_log(ctx)}",
                None,
            )
        state, evidence = stuck_login(ctx)
        bound = f"{ctx.step_timeout:g} s"
        return "hang", f"the ssh login did not reach a prompt within {bound} ({said}); {state}", evidence
    try:
        attempts: list[Attempt] = []
        for _ in range(TABS):
            attempts.append(shell.complete(prefix, completion(user.name, prefix)))
            if attempts[-1].status != "pass":
                break
        last = attempts[-1]
        text = f"{len(attempts)} completion(s) of ~{prefix}: {last.text}"
        return last.status, text, last.diagnosed(ctx.module.name, f"ssh login: ls ~{prefix}<TAB>")
    finally:
        shell.close()
        target.run(["sh", "-c", f"rm -rf {home}/.ssh {key} {key}.pub"])
