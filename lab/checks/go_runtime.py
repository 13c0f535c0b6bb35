from __future__ import annotations

from lab.checks.base import CheckResult, Context, answers, check, judge, wrong_answer


@check("go-runtime")
def go_runtime(ctx: Context) -> CheckResult:
    """A Go (-buildmode=c-shared) module starts its runtime once, when it is loaded
    (`_rt0_amd64_lib` runs as a constructor), and answers in a fresh process.

    This is the premise of the STNS freeze: the runtime's threads start at load and
    exist only in the process that loaded it; no child ever runs init again. A failure
    here (no answer, a crash, or a second runtime) means the module is broken even
    before any fork."""
    if not ctx.elf.is_go:
        return CheckResult("skip", "not a Go library (no .go.buildinfo, no crosscall2)")
    lookup = ctx.first_lookup()
    calls = [{"fn": "threads"}, lookup, {"fn": "threads"}, lookup, {"fn": "threads"}, {"fn": "mapped"}]
    result = ctx.target.scenario([ctx.step("go-runtime", calls)])[0]
    bad = judge(result, ctx.module.name, "fresh process")
    if bad:
        return bad
    got = answers(result)
    before, after, again = got[0]["value"], got[2]["value"], got[4]["value"]
    mapped = [p for p in got[5]["value"] if p.endswith(f"libnss_{ctx.module.name}.so.2")]
    version = ctx.elf.go_version or "Go"
    details = {"threads": [before, after, again], "go_version": ctx.elf.go_version, "mapped": mapped}
    claims = {
        "impact": "the module's Go runtime misbehaves in a plain process, before any fork: every "
        "program that resolves its users is exposed",
        "reproduce": f"getent passwd {lookup['arg']}"
        if lookup["fn"] == "getpwnam"
        else f"getent group {lookup['arg']}",
    }
    for answer in (got[1], got[3]):
        problem = wrong_answer(ctx.module, answer)
        if problem:
            return CheckResult("fail", f"in a fresh process, {problem}", details, **claims)
    if len(mapped) != 1:
        return CheckResult("fail", f"library mapped {len(mapped)} times, expected once", details, **claims)
    if after <= before:
        return CheckResult(
            "fail",
            f"{version} runtime started no threads at load ({before} → {after}); "
            "this is not a working c-shared runtime",
            details,
            **claims,
        )
    return CheckResult(
        "pass",
        f"{version} runtime started at load ({before} → {after} threads), "
        f"a second lookup reused it ({again} threads)",
        details,
    )
