from __future__ import annotations

from lab.checks.base import CheckResult, Context, answers, check, judge

# How login paths give up root once they have resolved the user through the module.
ORDERS = {
    "su": "setgroups, setresgid, setresuid (su, sshd, sudo)",
    "setpriv": "PR_SET_KEEPCAPS, setresuid, capset, setresgid, setgroups (setpriv, "
    "capability-keeping daemons)",
}


@check("setxid")
def setxid(ctx: Context) -> CheckResult:
    """A process resolves a user through the module, then drops privileges as login
    paths do; it must not abort.

    glibc makes setuid/setgid process-wide by signalling every thread (SIGSETXID) and
    aborts if any thread's result differs. A module that starts threads inside the
    caller (every Go c-shared module; C modules with refresh threads) breaks this:
    with PR_SET_KEEPCAPS only the calling thread keeps its capabilities, the module's
    threads get EPERM on setresgid, and `setpriv --reuid … --regid …` dies with SIGABRT."""
    user = ctx.user
    uid, gid, gids = (user.uid, user.gid, ctx.module.gids_of(user)) if user else (65534, 65534, [65534])
    warm = ctx.first_lookup()
    steps = [
        ctx.step(
            order,
            [
                {"fn": "threads"},
                {"fn": "drop", "order": order, "uid": uid, "gid": gid, "groups": gids},
                {"fn": "getpwuid", "arg": uid} if "passwd" in ctx.module.databases else {"fn": "threads"},
            ],
            before=[warm],
        )
        for order in ORDERS
    ]
    results = ctx.target.scenario(steps)
    failures, notes = [], []
    for order, result in zip(ORDERS, results, strict=True):
        threads = next((a["value"] for a in answers(result) if a["fn"] == "threads"), "?")
        outcome = judge(
            result, ctx.module.name, f"{order} order ({ORDERS[order]}) with {threads} thread(s) running"
        )
        if outcome is None:
            drop = next((a for a in answers(result) if a["fn"] == "drop"), None)
            if drop is None or not drop.get("ok"):
                outcome = CheckResult("fail", f"{order} order: {drop.get('error') if drop else 'no drop'}")
        if outcome:
            failures.append(outcome)
        else:
            notes.append(f"{order} order ok ({threads} thread(s))")
    details = {"orders": ORDERS, "results": [f.reason for f in failures] + notes}
    if failures:
        worst = next((f for f in failures if f.status == "crash"), failures[0])
        reason = worst.reason + (f"; {notes[0]}" if notes else "")
        order = next(o for o in ORDERS if worst.reason.startswith(o))
        who = "setpriv and capability-keeping daemons" if order == "setpriv" else "su, sshd and sudo"
        how = {"crash": "abort (SIGABRT)", "hang": "freeze"}.get(worst.status, "fail")
        name = user.name if user else "nobody"
        return CheckResult(
            worst.status,
            reason,
            details,
            worst.evidence,
            impact=f"{who} {how} when they drop root after resolving a user through the module",
            reproduce=(
                f"setpriv --reuid {uid} --regid {gid} --clear-groups id"
                if order == "setpriv"
                else f"su - {name} -c id"
            ),
            control=notes[0] if notes else None,
        )
    return CheckResult("pass", "; ".join(notes), details)
