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
        if bad.status in ("hang", "crash"):  # an error is the lab's trouble, not the module's
            bad.impact = (
                f"every process that resolves a user or group through the module (id, sshd, cron, sudo) "
                f"{'never returns from' if bad.status == 'hang' else 'dies in'} its first lookup"
            )
            bad.reproduce = getent
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
