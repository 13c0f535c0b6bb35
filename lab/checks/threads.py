from __future__ import annotations

from lab.checks.base import CheckResult, Context, check, differences, summary

THREADS = 8
SECONDS = 2.0


@check("threads")
def threads(ctx: Context) -> CheckResult:
    """Eight threads call the point-lookup entry points at once, mixed, for two seconds;
    every answer must equal the single-threaded one.

    Catches modules that keep the entry being built in static storage, use strtok or
    getpwent-style cursors in lookups, or share one connection without a lock: a
    threaded daemon (sssd's clients, nscd, a web server resolving users) gets another
    user's home or groups, now and then, in production."""
    queries = ctx.queries()
    if not queries:
        return CheckResult("skip", "no manifest entries to look up")
    value, bad = ctx.direct(
        "threads", f"{THREADS} threads of lookups", queries=queries, threads=THREADS, seconds=SECONDS
    )
    if bad:
        return bad
    details = value
    single = value["single"]
    if not value.get("answered", True):  # every reference answer was a miss: nothing to race on
        return CheckResult(
            "skip", "no lookup answered SUCCESS in one thread: no answer to compare across threads", details
        )
    if value["wrong"] and single["wrong"]:
        example = single["examples"][0]
        return CheckResult(
            "warn",
            f"{value['wrong']} of {value['calls']} concurrent lookups answered differently, but so did "
            f"{single['wrong']} of {single['calls']} of the same calls with the same buffer in one thread "
            f"({example['query']}: {differences(example['got'], example['want'])}): "
            "not a thread-safety defect",
            details,
            impact="not claimed: the answers change without threads (a changing backend, or state kept "
            "between calls); the lookup and consistency checks judge the answers themselves",
            control=f"{single['calls']} single-threaded calls, {single['wrong']} differing",
        )
    if value["wrong"]:
        examples = [
            f"{e['query']} gave {e['status']}: {differences(e['got'], e['want'])}" for e in value["examples"]
        ]
        return CheckResult(
            "fail",
            f"{value['wrong']} of {value['calls']} concurrent lookups in {value['threads']} threads "
            f"answered wrong (not thread-safe): {summary(examples, 2)}",
            details,
            impact="a threaded caller (sssd's clients, nscd, a JVM or web server resolving users) now and "
            "then gets another user's fields",
            control=f"the same {single['calls']} calls with the same {64 << 10}-byte buffer in one thread "
            "all answered right",
        )
    if value["stuck"]:
        return CheckResult(
            "hang", f"{value['stuck']} of {value['threads']} lookup threads never returned", details
        )
    return CheckResult(
        "pass",
        f"{value['calls']} lookups in {value['threads']} threads over {SECONDS:g} s, every answer equal "
        "to the same call's in one thread",
        details,
    )
