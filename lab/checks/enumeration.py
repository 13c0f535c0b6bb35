from __future__ import annotations

from collections import Counter

from lab.checks.base import CheckResult, Claim, Context, backend_down, brief, check, summary, verdict
from lab.elf import ENUMERATION
from lab.errors import CommandTimeout
from lab.probe.entrypoints import ENOENT, ERANGE, ERRNO_SENTINEL, GLIBC_FIRST, LISTING_LIMIT

UNTOUCHED = ERRNO_SENTINEL  # the module left errno alone


@check("enumeration")
def enumeration(ctx: Context) -> CheckResult:
    """Drives set*ent/get*ent_r/end*ent directly, growing the buffer on ERANGE as glibc
    does: the listing must hold the manifest's entries (exactly them with `exact = true`),
    once each, and end with NOTFOUND/ENOENT; a second set*ent must rewind; a tiny buffer
    grown on ERANGE must give the same listing (the entry is retried, not skipped);
    passwd and group enumeration interleaved must both end; and get*ent_r without a prior
    set*ent, or after end*ent, must not crash. What glibc's own `getent -s NAME DB` lists
    (1 KiB first buffer, doubled on ERANGE) decides whether a real caller loses entries.

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
    # two fresh workers that share nothing: side by side (a slow module's listings take half a minute)
    (value, bad), (_, crashed) = ctx.together(
        lambda: ctx.direct("enumerate", "enumeration", databases=dbs, limit=LISTING_LIMIT),
        lambda: ctx.direct("without-setent", "get*ent_r without set*ent", databases=dbs, limit=LISTING_LIMIT),
    )
    problems = [] if bad else listing_problems(ctx, value, dbs)
    worst = bad or crashed
    if worst:
        extra = [crashed.reason] if bad and crashed else []
        texts = [worst.reason, *extra, *(p.text for p in problems)]
        return CheckResult(worst.status, summary(texts), worst.details, worst.evidence)
    details = {"listings": value, "problems": [p.__dict__ for p in problems]}
    found = verdict(problems, details)
    if found:
        return found
    counts = ", ".join(f"{db} {len(value[db]['plain']['names'])}" for db in dbs)
    exact = "exactly the manifest" if ctx.module.exact else "every declared entry"
    return CheckResult(
        "pass",
        f"listed {exact} ({counts}); rewinds; ERANGE retries keep the entry; "
        "passwd/group interleaved end; get*ent_r without set*ent is harmless",
        details,
    )


def listing_problems(ctx: Context, value: dict, dbs: list[str]) -> list[Claim]:
    m = ctx.module
    declared = {
        "passwd": [u.name for u in m.users],
        "group": [g.name for g in m.groups],
        "shadow": [s.name for s in m.shadow],
    }
    problems: list[Claim] = []
    for db in dbs:
        setent, getent, _ = ENUMERATION[db]
        plain = value[db]["plain"]
        names = plain["names"]
        glibc = glibc_listing(ctx, db)
        shown = f"getent -s {m.name} {db}"
        if plain["looped"]:
            problems.append(
                Claim(
                    "fail",
                    f"{getent}() does not end: {brief(names[-4:])} came round again after "
                    f"{len(names)} entries",
                    f"`{shown}`, compgen -u and ~ completion never return",
                    f"timeout 10 {shown} | wc -l",
                )
            )
            continue
        if m.has_expectations or m.shadow:
            want = declared[db]
            missing = [n for n in want if n not in names]
            twice = [n for n, c in Counter(names).items() if c > 1]
            if missing:
                problems.append(
                    Claim(
                        "fail", f"{getent}() listing misses {brief(missing)}", f"`{shown}` misses them", shown
                    )
                )
            if ctx.module.exact:
                extra = [n for n in dict.fromkeys(names) if n not in want]
                if extra:
                    problems.append(
                        Claim(
                            "fail",
                            f"{getent}() lists {brief(extra)}, which the manifest does not declare "
                            "(exact = true)",
                            "the listing holds entries the manifest says do not exist",
                            shown,
                        )
                    )
            if twice:
                problems.append(
                    Claim(
                        "warn",
                        f"{getent}() lists {brief(twice)} more than once",
                        "`getent` and compgen show duplicates; lookups by name are unaffected",
                        shown,
                    )
                )
        lost_by_glibc = [n for n in names if glibc is not None and n not in glibc]
        if lost_by_glibc:
            problems.append(
                Claim(
                    "fail",
                    f"glibc's own `{shown}` (a {GLIBC_FIRST}-byte buffer, doubled on ERANGE) lists "
                    f"{len(glibc or [])} of the module's {len(names)} entries; "
                    f"it loses {brief(lost_by_glibc)}",
                    f"`getent {db}`, compgen -u and ~ completion lose those entries",
                    shown,
                    f"the module's own listing with a {64 << 10}-byte buffer has all {len(names)}",
                )
            )
        problems += end_problems(getent, plain["end"], shown, lost_by_glibc)
        rewound = value[db]["rewound"]["names"]
        if rewound != names:
            after = value[db]["after_partial"]
            problems.append(
                Claim(
                    "fail",
                    f"a second {setent}() after reading {after} did not rewind: the listing restarted "
                    f"with {rewound[:3]} instead of {names[:3]}",
                    "a process that lists again after a partial read (setpwent without endpwent) "
                    "misses entries",
                )
            )
        small = value[db]["small_buffer"]
        lost = [n for n in names if n not in small["names"]]
        if lost and small["retries"] and not lost_by_glibc:  # a refused buffer is erange's finding
            end = small["end"] or {}
            # after the first lost entry, did the listing go on (skipped) or stop (the rest lost)?
            after = names[names.index(lost[0]) + 1 :]
            goes_on = any(n in small["names"] for n in after)
            then = (
                "the entry that did not fit is skipped, the listing goes on"
                if goes_on
                else ("the entry that did not fit and every one after it are lost")
            )
            problems.append(
                Claim(
                    "warn",
                    f"{getent}() starting with an 8-byte buffer grown on ERANGE lost {brief(lost)} "
                    f"(it ended {end.get('status')}, {errno_text(end.get('errno'))}, at {end.get('size')} "
                    f"bytes): {then}",
                    f"no caller here: glibc's `{shown}` got all {len(names)}, since no entry outgrew its "
                    f"{GLIBC_FIRST}-byte first buffer; an entry over 1 KiB would be lost the same way",
                    control=f"the same listing with a {64 << 10}-byte buffer has all {len(names)}",
                )
            )
    mixed = value.get("interleaved")
    if mixed:
        if mixed["looped"]:
            problems.append(
                Claim(
                    "fail",
                    "getpwent_r()/getgrent_r() interleaved never end (guest-oslogin#160): passwd gave "
                    f"{brief(mixed['names']['passwd'])}",
                    "a program listing users and groups together (nscd, a directory sync) never ends",
                )
            )
        else:
            for db in ("passwd", "group"):
                if mixed["names"][db] != value[db]["plain"]["names"]:
                    problems.append(
                        Claim(
                            "fail",
                            f"interleaved with the other database, {ENUMERATION[db][1]}() listed "
                            f"{mixed['names'][db][:5]} instead of {value[db]['plain']['names'][:5]}",
                            "a program listing users and groups together gets a wrong listing",
                        )
                    )
    return problems


def end_problems(getent: str, end: dict, shown: str, lost: list[str]) -> list[Claim]:
    """How the listing ended. glibc moves on to the next service whatever a module ends
    with, so the status alone breaks no caller; a stale errno does (see below)."""
    if end["status"] != "NOTFOUND":
        return [
            Claim(
                "warn",
                f"{getent}() ended the listing with {end['status']} (errno {end['errno']}), not NOTFOUND"
                + backend_down(end["status"], end["errno"]),
                "glibc ends this service's part of the listing either way; only where this module is the "
                "last source does a caller that reads errno after getpwent's NULL see it",
                shown,
            )
        ]
    if end["errno"] not in (ENOENT, 0, UNTOUCHED):
        hint = " (glibc turns a stray ERANGE into EINVAL)" if end["errno"] == ERANGE else ""
        return [
            Claim(
                "fail",
                f"{getent}() ended with errno {end['errno']}, not ENOENT: callers see an error{hint}",
                "a caller that follows POSIX (errno = 0, getpwent() until NULL, then errno) reports "
                "the end of the listing as a failure",
                shown,
            )
        ]
    return []


def errno_text(errno: int | None) -> str:
    return "errno untouched" if errno == UNTOUCHED else f"errno {errno}"


def glibc_listing(ctx: Context, db: str) -> list[str] | None:
    """What a real caller lists through glibc from this module alone; None when getent
    itself could not run (the direct listing then stands alone)."""
    try:
        done = ctx.target.run(["getent", "-s", ctx.module.name, db], timeout=60)
    except CommandTimeout:
        return None
    if done.rc not in (0, 2):
        return None
    return [line.split(":", 1)[0] for line in done.stdout.splitlines() if line]
