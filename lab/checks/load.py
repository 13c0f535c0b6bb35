from __future__ import annotations

from lab.checks.base import CheckResult, Context, answers, backend_down, check, judge, label


@check("load")
def load(ctx: Context) -> CheckResult:
    """The module loads in a fresh process and its first lookup returns.

    glibc swallows a failed dlopen (an unresolved symbol, a Go library's STATIC_TLS
    block not fitting after start-up, a constructor that exits) and just skips the
    service, so users silently vanish; a constructor that crashes, or a first lookup
    that never returns, takes down or stalls every process on the machine (sshd, cron,
    sudo), not only the forked ones."""
    name = ctx.module.name
    first = ctx.first_lookup()
    result = ctx.target.scenario([ctx.step("load", [first, {"fn": "mapped"}, {"fn": "threads"}])])[0]
    key = first.get("arg")
    getent = f"getent {'passwd' if first['fn'] == 'getpwnam' else 'group'} {key}"
    bad = judge(result, ctx.module.name, f"first lookup {label(first)} in a fresh process")
    if bad:
        if bad.status in ("hang", "crash", "fail"):  # an error is the lab's trouble, not the module's
            bad.impact = (
                f"every process that resolves a user or group through the module (id, sshd, cron, sudo) "
                f"{'never returns from' if bad.status == 'hang' else 'dies in'} its first lookup"
            )
            bad.reproduce = getent
            hostile(bad, getent)
        return bad
    got = answers(result)
    mapped = [p for p in got[1].get("value", []) if p.endswith(f"libnss_{name}.so.2")]
    if not mapped:
        library = f"libnss_{name}.so.2"
        why = answers(ctx.target.scenario([ctx.step("dlopen", [{"fn": "dlopen", "arg": library}])])[0])
        error = why[0].get("value") if why else "unknown"
        return CheckResult(
            "fail",
            f"glibc did not load the module: {error}",
            {"dlopen": error},
            impact="glibc skips a module it cannot load without a word: its users and groups do not "
            "exist for any program (`id` says no such user)",
            reproduce=f"{getent}; python3 -c 'import ctypes; ctypes.CDLL(\"{library}\")'",
            control=f"dlopen({library!r}) in the target: {error}",
        )
    answer = "" if got[0].get("ok") else f", which found no entry ({got[0].get('error')})"
    down = "" if got[0].get("ok") else backend_state(ctx, first)
    loaded = (
        f"loaded by {label(first)}{answer} in {got[0]['seconds']:.3f} s; "
        f"{got[2]['value']} thread(s) after load"
    )
    lost = next((a for a in got if a.get("channel")), None)
    if lost:  # the worker's channel sits at fd 900+, opened before the lookup: the module did it
        return CheckResult(
            "fail",
            f"{label(lost)} {lost['channel']} a descriptor of the caller's that it never opened (the lab's "
            f"channel, reopened by path); {loaded}",
            {"mapped": mapped, "descriptor": lost["channel"]},
            impact="a caller's open files, sockets and pipes are closed or replaced under it by a lookup: "
            "sshd's connection, a daemon's log, a JVM's sockets (then reused by the next open)",
            reproduce=f'python3 -c \'import os, pwd; r, w = os.pipe(); pwd.getpwnam("{key}"); '
            'os.fstat(w); print("descriptors intact")\'',
            control="the channel was checked after every call; it was intact before this one",
        )
    printed = result.get("stdout", "")
    if printed:  # the probe's channel is not stdout: whatever is there, the module put there
        shown = printed.strip().splitlines()[0][:120] if printed.strip() else repr(printed[:40])
        return CheckResult(
            "fail",
            f"{label(first)} wrote {result.get('stdout_bytes')} byte(s) to the caller's stdout "
            f"({shown!r}); {loaded}",
            {"mapped": mapped, "stdout": printed},
            impact=f"every program that resolves a user prints it: `{getent}` output is no longer glibc's "
            "format, and scp, rsync and git over ssh break when sshd's child writes it into the session",
            reproduce=f"{getent} | od -c | head",
            control="the lab's own channel is a FIFO, not stdout: these bytes came from the lookup",
        )
    if down:  # a fact about the target, said once and plainly; the checks below judge its effect
        return CheckResult(
            "warn",
            f"{loaded}; {down}",
            {"mapped": mapped, "backend": down},
            impact="on this target every caller finds none of the module's entries until its backend "
            "runs; the checks below judge what callers see",
            reproduce=getent,
        )
    return CheckResult("pass", loaded, {"mapped": mapped})


def backend_state(ctx: Context, first: dict) -> str:
    """Why the first lookup found nothing, from the entry point itself: UNAVAIL with an errno
    that says the module's daemon or socket is not there is the target's state, not a miss."""
    db = "passwd" if first["fn"] == "getpwnam" else "group"
    value, bad = ctx.direct("unknown", "the first lookup, direct", queries=[[db, "name", first.get("arg")]])
    if bad or not value:
        return ""
    a = value["answers"][0]
    why = backend_down(a["status"], a["errno"])
    return f"{a['query']} answers {a['status']}{why}" if why else ""


def hostile(bad: CheckResult, getent: str) -> None:
    """What a module that acts on its caller's process (lab.forensics.observed, an exit, a
    constructor that never returns) does to the real caller, and how to see it without the
    lab. Such a `load` carries no `mapped`: the other checks would each meet it again, with
    the lab's own process as the caller's parent, so they are skipped."""
    data = (bad.evidence or {}).get("data") or {}
    survived = f"sh -c '{getent}; echo survived'; echo \"sh ended with status $?\""
    if bad.cause == "signals-own-group":
        bad.impact = (
            f"every program that resolves a user or group through the module sends {data['signal']} to its "
            "own process group: the non-interactive shell that ran it (a cron job, a script) dies with it, "
            "and so do its pipeline neighbours"
        )
        bad.reproduce = survived
        bad.control = (
            "the sentinel that heard it is the lab's own, idle process: it shares nothing with the worker "
            f"but the process group, and siginfo names the worker (pid {data['from']}) as the sender"
        )
    elif bad.cause == "signals-parent":
        bad.impact = (
            f"the process that resolves a user or group sends {data['signal']} to its parent: the shell or "
            "daemon that ran `id` is killed (a script's shell; the listening sshd whose connection child "
            "resolves the login name)"
        )
        bad.reproduce = survived
        bad.control = (
            f"the monitor blocks {data['signal']} only while it runs a step and reads it with "
            f"sigtimedwait: siginfo names the worker (pid {data['from']}) as the sender, during "
            + " or ".join(data["calls"])
        )
    elif bad.cause == "outlives-call":
        held = any({"stdout", "stderr"} & set(p.get("holds", [])) for p in data["leftovers"])
        bad.impact = (
            "every process that resolves a user or group leaves a process running ("
            + "; ".join(
                f"{p.get('comm') or p['pid']}" + (f", asleep for {p['sleep']:g} s" if p.get("sleep") else "")
                for p in data["leftovers"]
            )
            + ")"
            + (
                f", holding the caller's stdout and stderr: `x=$({getent})` in a script waits until it "
                "exits, and so does ssh for the session's end"
                if held
                else ""
            )
        )
        names = " ".join(sorted({p["comm"] for p in data["leftovers"] if p.get("comm")}))
        bad.reproduce = (
            f"timeout 10 sh -c 'x=$({getent}); echo returned'; "
            'echo "status $? (124: still waiting after 10 s)"'
            + (f"; ps -o pid,sid,etime,comm -C {names.replace(' ', ',')}" if names else "")
        )
        bad.control = (
            "the process was not among the worker's children and adopted orphans before the call, "
            "and was after it"
        )
    elif bad.cause == "exit-in-module":
        bad.impact = (
            "every program that resolves a user or group through the module ends inside the lookup "
            f"with status {data['status']}, printing nothing of its own"
            + (" (_exit: not even its atexit handlers or buffered output)" if data["call"] == "_exit" else "")
            + ": `id`, sshd's session child, cron"
        )
        bad.reproduce = f'{getent}; echo "exited with status $?"'
    elif data.get("constructor"):
        bad.reason += f": {bad.evidence['explanation']}"
        bad.impact = (
            "every process that loads the module (id, sshd, cron, sudo) never returns from its first lookup: "
            "dlopen waits in the constructor, holding glibc's loader lock, so its other threads' dlopen "
            "stall too"
        )
        bad.reproduce = f'timeout 30 {getent}; echo "status $? (124: still loading after 30 s)"'
