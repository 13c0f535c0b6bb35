from __future__ import annotations

from collections import Counter

from lab.checks.base import CheckResult, Context, check, summary
from lab.elf import ENUMERATION

ENOENT, ERANGE, UNTOUCHED = 2, 34, 0x7A7A


@check("enumeration")
def enumeration(ctx: Context) -> CheckResult:
    """Drives set*ent/get*ent_r/end*ent directly: the listing must hold exactly the
    manifest's entries, once each, and end with NOTFOUND/ENOENT; a second set*ent must
    rewind; a tiny buffer grown on ERANGE must give the same listing (the entry is
    retried, not skipped); passwd and group enumeration interleaved must both end; and
    get*ent_r without a prior set*ent, or after end*ent, must not crash.

    Catches what `getent passwd`, compgen -u and bash's ~user completion run into: the
    Google guest-oslogin module looping forever when passwd and group were enumerated
    together (guest-oslogin#160), cursors that advance on ERANGE and silently drop
    users, a stale errno that glibc turns into EINVAL, and a NULL handle dereferenced by
    a caller that skipped setpwent."""
    dbs = ctx.enumerable()
    if not dbs:
        return CheckResult(
            "skip",
            "no database with set/get/end*ent entry points"
            + ("" if ctx.module.enumerable else " (manifest: enumerable = false)"),
        )
    m = ctx.module
    limit = max(10_000, 10 * (len(m.users) + len(m.groups) + len(m.shadow)))
    value, bad = ctx.direct("enumerate", "enumeration", databases=dbs, limit=limit)
    problems = [] if bad else listing_problems(ctx, value, dbs, limit)
    _, crashed = ctx.direct("without-setent", "get*ent_r without set*ent", databases=dbs, limit=limit)
    worst = bad or crashed
    if worst:
        extra = [crashed.reason] if bad and crashed else []
        return CheckResult(
            worst.status, summary([worst.reason, *extra, *problems]), worst.details, worst.evidence
        )
    details = {"listings": value}
    if problems:
        return CheckResult("fail", summary(problems), details)
    counts = ", ".join(f"{db} {len(value[db]['plain']['names'])}" for db in dbs)
    return CheckResult(
        "pass",
        f"listed exactly the manifest ({counts}); rewinds; ERANGE retries keep the entry; "
        "passwd/group interleaved end; get*ent_r without set*ent is harmless",
        details,
    )


def listing_problems(ctx: Context, value: dict, dbs: list[str], limit: int) -> list[str]:
    m = ctx.module
    declared = {
        "passwd": [u.name for u in m.users],
        "group": [g.name for g in m.groups],
        "shadow": [s.name for s in m.shadow],
    }
    problems: list[str] = []
    for db in dbs:
        setent, getent, _ = ENUMERATION[db]
        plain = value[db]["plain"]
        names = plain["names"]
        if plain["looped"]:
            problems.append(
                f"{getent}() did not end after {limit} entries: it loops ({', '.join(names[:4])} …)"
            )
            continue
        if m.has_expectations or m.shadow:
            want = declared[db]
            missing = [n for n in want if n not in names]
            extra = [n for n in dict.fromkeys(names) if n not in want]
            twice = [n for n, c in Counter(names).items() if c > 1]
            if missing:
                problems.append(f"{getent}() listing misses {missing}")
            if extra:
                problems.append(f"{getent}() lists {extra}, which the manifest does not declare")
            if twice:
                problems.append(f"{getent}() lists {twice} more than once")
        end = plain["end"]
        if end["status"] != "NOTFOUND":
            problems.append(
                f"{getent}() ended the listing with {end['status']} (errno {end['errno']}), not NOTFOUND"
            )
        elif end["errno"] not in (ENOENT, 0, UNTOUCHED):
            hint = " (glibc turns a stray ERANGE into EINVAL)" if end["errno"] == ERANGE else ""
            problems.append(
                f"{getent}() ended with errno {end['errno']}, not ENOENT: callers see an error{hint}"
            )
        rewound = value[db]["rewound"]["names"]
        if rewound != names:
            after = value[db]["after_partial"]
            problems.append(
                f"a second {setent}() after reading {after} did not rewind: the listing restarted "
                f"with {rewound[:3]} instead of {names[:3]}"
            )
        small = value[db]["small_buffer"]
        lost = [n for n in names if n not in small["names"]]
        if lost and small["retries"]:  # a buffer refused outright is the erange check's finding
            problems.append(
                f"{getent}() with a buffer grown on ERANGE lost {lost[:4]}: the cursor moved on "
                "although the entry did not fit, so glibc's retry got the next one"
            )
    mixed = value.get("interleaved")
    if mixed:
        if mixed["looped"]:
            problems.append(
                "getpwent_r()/getgrent_r() interleaved never end (guest-oslogin#160): passwd gave "
                f"{mixed['names']['passwd'][:4]} … after {limit} calls"
            )
        else:
            for db in ("passwd", "group"):
                if mixed["names"][db] != value[db]["plain"]["names"]:
                    problems.append(
                        f"interleaved with the other database, {ENUMERATION[db][1]}() listed "
                        f"{mixed['names'][db][:5]} instead of {value[db]['plain']['names'][:5]}"
                    )
    return problems
