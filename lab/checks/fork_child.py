from __future__ import annotations

import json
import shlex

from lab.checks.base import CheckResult, Context, answers, check, judge, label, wrong_answer

FORKS = 5  # children per entry point after use: the freeze is a race, one child may win it
# The listing calls, by the database whose set/get/end*ent they need.
LISTING = {"getpwall": "passwd", "getgrall": "group"}
# Each probe call as the same call in Python, for a reproducer that needs no lab.
PYTHON = {
    "getpwnam": "pwd.getpwnam({arg})",
    "getpwuid": "pwd.getpwuid({arg})",
    "getpwall": "pwd.getpwall()",
    "getgrnam": "grp.getgrnam({arg})",
    "getgrgid": "grp.getgrgid({arg})",
    "getgrall": "grp.getgrall()",
    "getgrouplist": "os.getgrouplist({arg}, {gid})",
}


@check("fork-child")
def fork_child(ctx: Context) -> CheckResult:
    """A process that already used the module forks, and the child calls each entry
    point (getpwnam, getpwuid, set/get/endpwent, getgrnam, getgrgid, initgroups); also a
    child whose parent never used it. Every child must answer within the bound; after
    use, up to five children in turn per entry point, since the freeze is a race.

    The STNS freeze: bash had loaded the Go module for its own user, bash-completion's
    `compgen -u` ran in a forked subshell, `_nss_stns_setpwent` entered the Go runtime,
    whose threads did not survive fork, and the shell froze in runtime.futex. The same
    happens to any module that holds a lock or needs a thread across fork.

    The listing calls (getpwall, getgrall: set/get/end*ent) are left out, and the reason
    says so, where the module offers no listing (`enumerable = false`, or no set*ent)."""
    warm = ctx.first_lookup()
    can_list = ctx.listings()
    calls, left_out = [], {}
    for call in ctx.entry_calls():
        db = LISTING.get(call["fn"])
        if db and can_list.get(db):
            left_out[label(call)] = can_list[db]
        else:
            calls.append(call)
    steps, by_id = [], {}
    for call in calls:
        by_id[f"after-use {label(call)}"] = by_id[f"fresh {label(call)}"] = call
        steps.append(ctx.step(f"after-use {label(call)}", [call], before=[warm], fork=True, repeat=FORKS))
        steps.append(ctx.step(f"fresh {label(call)}", [call], fork=True))
    # every step forks its own children from its own worker: they cannot disturb each other,
    # and a module that freezes each one (golab: 7 of 14) then costs a third of the wait
    results = ctx.target.scenario(steps, side_by_side=min(3, ctx.target.lanes))
    bad, wrong, ok = [], [], []
    for result in results:
        outcome = judge(result, ctx.module.name, result["id"])
        if outcome:
            bad.append(outcome)
            continue
        child = [a for a in answers(result) if a["where"] == "child"]
        problems = [p for p in (wrong_answer(ctx.module, a) for a in child) if p]
        (wrong if problems else ok).append(f"{result['id']}: {problems[0]}" if problems else result["id"])
    # The control: a wrong answer that a child of a parent that never used the module gives
    # too is the module's answer in any process (the lookup and enumeration checks judge
    # it), not something fork did.
    everywhere = [w for w in wrong if w.startswith("fresh ")]
    same_anyway = {w.split(": ", 1)[0].removeprefix("fresh ") for w in everywhere}
    wrong = [
        w
        for w in wrong
        if w.split(": ", 1)[0].removeprefix("after-use ").removeprefix("fresh ") not in same_anyway
    ]
    details = {
        "wrong_in_any_process": everywhere,
        "steps": {r["id"]: r["outcome"] for r in results},
        "passed": ok,
        "failures": [b.reason for b in bad] + wrong,
        "causes": {b.details["step"]: b.cause for b in bad},
        "left_out": left_out,
    }
    unlisted = "; left out " + ", ".join(f"{c} ({why})" for c, why in left_out.items()) if left_out else ""
    fresh_ok = sum(1 for s in ok if s.startswith("fresh"))
    control = f"{fresh_ok} children of a parent that never used the module answered the same calls"
    children = sum(1 for r in results for e in r["events"] if e.get("ev") == "forked")
    if bad:
        worst = next((b for b in bad if b.status == "crash"), bad[0])
        step = worst.details["step"]
        if worst.cause == "child-reaped-elsewhere":
            return reaped(worst, len(bad), len(results), warm, details, control)
        return CheckResult(
            worst.status,
            f"{len(bad)} of {len(results)} entry-point steps failed; first: "
            f"{worst.reason}; {fresh_ok} children of a parent that never used the "
            f"module passed{unlisted}",
            details,
            worst.evidence,
            impact="a process that resolved a user and then forks without exec (bash's completion "
            "subshell running compgen -u, a daemon's worker) "
            + ("dies" if worst.status == "crash" else "never returns")
            + f" in the child's {label(by_id[step])}",
            reproduce=reproducer(warm, by_id[step], step.startswith("after-use")),
            control=control,
        )
    if wrong:
        step = wrong[0].split(": ", 1)[0]
        return CheckResult(
            "fail",
            f"wrong answer in a forked child: {wrong[0]}{unlisted}",
            details,
            impact="a forked child (a daemon's worker, a shell's subshell) resolves users and groups "
            "differently from its parent",
            reproduce=reproducer(warm, by_id[step], step.startswith("after-use")),
            control=control,
        )
    anyway = (
        f"; {len(same_anyway)} call(s) answer wrong in any process, fork or not (see lookup): "
        + ", ".join(sorted(same_anyway))
        if same_anyway
        else ""
    )
    return CheckResult(
        "pass",
        f"{children} forked children ({FORKS} per entry point after use, 1 fresh) answered every "
        f"entry point as a process that never forked does{unlisted}{anyway}",
        details,
    )


def reproducer(warm: dict, call: dict, after_use: bool) -> str:
    """The step as a Python one-liner: the parent resolves a user first (after use), forks,
    and the child makes the call; a hung child leaves the command waiting."""
    child = PYTHON[call["fn"]].format(arg=json.dumps(call.get("arg")), gid=json.dumps(call.get("gid")))
    parent = PYTHON[warm["fn"]].format(arg=json.dumps(warm.get("arg"))) + "; " if after_use else ""
    program = (
        f"import grp, os, pwd; {parent}pid = os.fork(); "
        f"os._exit(print({child}) or 0) if pid == 0 else print(os.waitpid(pid, 0))"
    )
    return f"python3 -c {shlex.quote(program)}"


def reaped(
    worst: CheckResult, failed: int, steps: int, warm: dict, details: dict, control: str
) -> CheckResult:
    """The parent lost its child's exit status (ECHILD): not the child's lookup but what the
    parent's earlier lookup left in the process (a SIGCHLD handler that reaps every child)."""
    seen = worst.details.get("observed", {})
    where = seen.get("object") or "the process"
    parent = PYTHON[warm["fn"]].format(arg=json.dumps(warm.get("arg")))
    program = (
        f"import grp, os, pwd, time; {parent}; pid = os.fork(); "
        "os._exit(7) if pid == 0 else time.sleep(0.5); print(os.waitpid(pid, 0))"
    )
    return CheckResult(
        "fail",
        f"{failed} of {steps} entry-point steps failed; first: {worst.reason}",
        details | {"reaped": seen},
        worst.evidence,
        impact="a program that resolved a user and later waits for a child it forked loses the child's exit "
        f"status to the SIGCHLD handler in {where.rsplit('/', 1)[-1]}: waitpid() fails with ECHILD, pclose() "
        "returns -1, Python's subprocess reports status 0 for a child that failed, and a daemon's own "
        "SIGCHLD handler (a worker pool, bash's job control) is replaced",
        reproduce=f"python3 -c {shlex.quote(program)}  # ChildProcessError: [Errno 10] No child processes",
        control=f"{control}: a parent that never used the module got every child's status",
    )
