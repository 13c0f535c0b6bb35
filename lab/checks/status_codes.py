from __future__ import annotations

from lab.checks.base import UNKNOWN_NAME, CheckResult, Context, check, summary

UNKNOWN_ID = 4242424
ENOENT, UNTOUCHED = 2, 0x7A7A  # entrypoints.ERRNO_SENTINEL: the module left errno alone


@check("status-codes")
def status_codes(ctx: Context) -> CheckResult:
    """Looks up a name, a uid and a gid that do not exist through each point-lookup entry
    point: the answer must be NSS_STATUS_NOTFOUND with errno ENOENT (or 0, or untouched).

    Catches modules that answer SUCCESS for anyone (a default or stale entry: every typo
    becomes a valid login), and ones that say UNAVAIL or TRYAGAIN, which turns "no such
    user" into an error: `id x` fails, sudo and sshd log the service as down, and
    `[NOTFOUND=return]` in nsswitch.conf stops working."""
    present = ctx.elf.entry_points(ctx.module.name)
    queries = [
        [db, by, key]
        for db, by, key, fn in (
            ("passwd", "name", UNKNOWN_NAME, "getpwnam_r"),
            ("passwd", "id", UNKNOWN_ID, "getpwuid_r"),
            ("group", "name", UNKNOWN_NAME, "getgrnam_r"),
            ("group", "id", UNKNOWN_ID, "getgrgid_r"),
            ("shadow", "name", UNKNOWN_NAME, "getspnam_r"),
        )
        if db in ctx.module.databases and fn in present
    ]
    if not queries:
        return CheckResult("skip", "no point-lookup entry point to ask")
    value, bad = ctx.direct("unknown", "lookup of unknown keys", queries=queries)
    if bad:
        return bad
    problems = []
    for a in value["answers"]:
        if a["status"] == "SUCCESS":
            problems.append(f"{a['query']} returned SUCCESS for an entry that does not exist: {a['value']}")
        elif a["status"] != "NOTFOUND":
            problems.append(f"{a['query']} returned {a['status']} (errno {a['errno']}), not NOTFOUND")
        elif a["errno"] not in (ENOENT, 0, UNTOUCHED):
            problems.append(f"{a['query']} returned NOTFOUND with errno {a['errno']}, not ENOENT or 0")
    details = {"answers": value["answers"]}
    if problems:
        return CheckResult("fail", summary(problems), details)
    return CheckResult("pass", f"{len(queries)} unknown keys: NOTFOUND with errno ENOENT/0", details)
