from __future__ import annotations

from lab.checks.base import UNKNOWN_NAME, CheckResult, Claim, Context, backend_down, check, verdict
from lab.checks.erange import GETENT
from lab.probe.entrypoints import ENOENT, ERANGE
from lab.probe.entrypoints import ERRNO_SENTINEL as UNTOUCHED

UNKNOWN_ID = 4242424


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
    findings = [f for a in value["answers"] if (f := judge_answer(ctx.module.name, a))]
    details = {"answers": value["answers"]}
    found = verdict(
        findings,
        details,
        control=f"{len(value['answers']) - len(findings)} of {len(value['answers'])} unknown keys "
        "answered NOTFOUND",
    )
    if found:
        return found
    return CheckResult("pass", f"{len(queries)} unknown keys: NOTFOUND with errno ENOENT/0", details)


def judge_answer(service: str, a: dict) -> Claim | None:
    """What glibc's callers make of one answer for a key that does not exist."""
    query = a["query"]
    fn, _, rest = query.partition("(")
    db = GETENT[fn]
    shown = f"getent -s {service} {db} {rest.rstrip(')').strip(chr(39))}"
    if a["status"] == "SUCCESS":
        return Claim(
            status="fail",
            text=f"{query} returned SUCCESS for an entry that does not exist: {a['value']}",
            impact="a key nobody has resolves: `id` names a user that does not exist, every typo is a "
            "valid login name or id, useradd finds no free uid",
            reproduce=shown,
        )
    if a["status"] == "TRYAGAIN" and a["errno"] != ERANGE:
        return Claim(
            status="fail",
            text=f"{query} returned TRYAGAIN (errno {a['errno']}), not NOTFOUND",
            impact="glibc hands the caller EAGAIN: `id x` and sudo report a temporary failure, not "
            "'no such user'",
            reproduce=shown,
        )
    if a["status"] != "NOTFOUND":  # UNAVAIL (or ERANGE past glibc's growth): glibc asks the next source
        return Claim(
            status="warn",
            text=f"{query} returned {a['status']} (errno {a['errno']}), not NOTFOUND"
            + backend_down(a["status"], a["errno"]),
            impact="glibc goes on to the next source, so callers still get 'no such entry'; "
            "`[NOTFOUND=return]` in nsswitch.conf no longer applies, and sshd and sudo log the service "
            "as down",
            reproduce=shown,
        )
    if a["errno"] not in (ENOENT, 0, UNTOUCHED):
        return Claim(
            status="warn",
            text=f"{query} returned NOTFOUND with errno {a['errno']}, not ENOENT or 0",
            impact="glibc's callers get 'no such entry'; only a caller that reads errno after a miss "
            "sees the stray value",
            reproduce=shown,
        )
    return None
