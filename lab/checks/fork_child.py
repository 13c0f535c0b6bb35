from __future__ import annotations

from lab.checks.base import CheckResult, Context, answers, check, judge, label, wrong_answer

FORKS = 5  # children per entry point after use: the freeze is a race, one child may win it


@check("fork-child")
def fork_child(ctx: Context) -> CheckResult:
    """A process that already used the module forks, and the child calls each entry
    point (getpwnam, getpwuid, set/get/endpwent, getgrnam, getgrgid, initgroups); also a
    child whose parent never used it. Every child must answer within the bound; after
    use, up to five children in turn per entry point, since the freeze is a race.

    The STNS freeze: bash had loaded the Go module for its own user, bash-completion's
    `compgen -u` ran in a forked subshell, `_nss_stns_setpwent` entered the Go runtime,
    whose threads did not survive fork, and the shell froze in runtime.futex. The same
    happens to any module that holds a lock or needs a thread across fork."""
    warm = ctx.first_lookup()
    steps = []
    for call in ctx.entry_calls():
        steps.append(ctx.step(f"after-use {label(call)}", [call], before=[warm], fork=True, repeat=FORKS))
        steps.append(ctx.step(f"fresh {label(call)}", [call], fork=True))
    results = ctx.target.scenario(steps)
    bad, wrong, ok = [], [], []
    for result in results:
        outcome = judge(result, ctx.module.name, result["id"])
        if outcome:
            bad.append(outcome)
            continue
        child = [a for a in answers(result) if a["where"] == "child"]
        problems = [p for p in (wrong_answer(ctx.module, a) for a in child) if p]
        (wrong if problems else ok).append(f"{result['id']}: {problems[0]}" if problems else result["id"])
    details = {
        "steps": {r["id"]: r["outcome"] for r in results},
        "passed": ok,
        "failures": [b.reason for b in bad] + wrong,
        "causes": {b.details["step"]: b.cause for b in bad},
    }
    children = sum(1 for r in results for e in r["events"] if e.get("ev") == "forked")
    if bad:
        worst = next((b for b in bad if b.status == "crash"), bad[0])
        fresh_ok = sum(1 for s in ok if s.startswith("fresh"))
        return CheckResult(
            worst.status,
            f"{len(bad)} of {len(results)} entry-point steps failed; first: "
            f"{worst.reason}; {fresh_ok} children of a parent that never used the "
            "module passed",
            details,
            worst.evidence,
        )
    if wrong:
        return CheckResult("fail", f"wrong answer in a forked child: {wrong[0]}", details)
    return CheckResult(
        "pass",
        f"{children} forked children ({FORKS} per entry point after use, 1 fresh) answered every entry point",
        details,
    )
