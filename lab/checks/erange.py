from __future__ import annotations

from lab.checks.base import CheckResult, Claim, Context, check, differences, verdict
from lab.checks.reproducer import lookup_script
from lab.errors import CommandTimeout
from lab.probe.entrypoints import BIG, DATABASES, GLIBC_FIRST

BUDGET = 10.0  # seconds for the whole sweep; slow modules get sampled sizes, not a timeout
CONSEQUENCE = {
    "NOTFOUND": "glibc reports the entry as missing instead of retrying with a bigger buffer",
    "UNAVAIL": "glibc takes the service as down instead of retrying with a bigger buffer",
    "TRYAGAIN": "glibc retries with a bigger buffer only for ERANGE; this fails with EAGAIN",
}
# point-lookup entry point -> its database (getent's name for it), from the probe's one table
GETENT = {fn: db for db, (_, lookups, _) in DATABASES.items() for fn in lookups.values()}


@check("erange")
def erange(ctx: Context) -> CheckResult:
    """Calls every point-lookup entry point (getpwnam_r, getpwuid_r, getgrnam_r,
    getgrgid_r, getspnam_r) for each manifest entry, and get*ent_r on the biggest entry of
    each listing, with every buffer size from 0 up to what the answer needs, and 64 KiB,
    with guard bytes after the buffer (glibc's bug17079 test). Only the exact answer, or
    NSS_STATUS_TRYAGAIN with errno ERANGE, may come back. Reports per entry point the
    smallest buffer that gave the answer next to the answer's size.

    Severity follows the callers: a write past the buffer is a fail at any size (heap
    corruption; glibc's own getpwnam meets it whenever an entry is just longer than its
    1024·2^k buffer); a wrong status or a cut answer is a fail when a buffer of 1 KiB or
    more shows it (glibc's dispatch starts at 1024 bytes, as does sysconf's
    _SC_GETPW_R_SIZE_MAX), a warn when only smaller buffers, which no real caller passes, do.

    Catches the module that copies strings without checking buflen (a heap overflow in
    whatever called getpwnam_r; a 137-member group took STNS down), the one that truncates
    fields to fit, and the one that answers NOTFOUND for a small buffer, so users with long
    group lists or gecos fields vanish."""
    queries, listings = ctx.queries(), ctx.enumerable()
    if not queries and not listings:
        return CheckResult("skip", "no manifest entries to look up and nothing to enumerate")
    value, bad = ctx.direct("erange", "buffer-size sweep", queries=queries, listings=listings, budget=BUDGET)
    if bad:
        return bad
    findings = [f for q in value["queries"] for f in judge_query(ctx, q)]
    tried = sum(q["tried"] for q in value["queries"])
    cut = sum(bool(q.get("cut_short") or q.get("sampled")) for q in value["queries"])
    sizes = {
        q["query"]: {k: q.get(k) for k in ("needed", "fitted", "reference_size")} for q in value["queries"]
    }
    details = {"queries": value["queries"], "sizes": sizes, "problems": [f["text"] for f in findings]}
    # lead with what a real caller meets: a point lookup with a reproducer, the biggest buffer
    ranked = sorted(findings, key=lambda f: ("scripts" not in f, -f["largest"]))
    found = verdict([as_claim(f) for f in ranked], details)
    if found:
        return found
    if not tried:  # nothing answered SUCCESS: no buffer handling was seen, so nothing is claimed
        statuses = sorted(
            {(q["reference"] or {"status": "an empty listing"})["status"] for q in value["queries"]}
        )
        return CheckResult(
            "skip", f"no lookup answered SUCCESS ({', '.join(statuses)}): no buffer size to sweep", details
        )
    sampled = f"; {cut} sweep(s) sampled, the module is slow" if cut else ""
    return CheckResult(
        "pass",
        f"{len(value['queries'])} sweeps, {tried} buffer sizes in all: "
        f"exact answer or TRYAGAIN/ERANGE, guard bytes intact{sampled}",
        details,
    )


def as_claim(f: dict) -> Claim:
    keys = ("status", "text", "impact", "reproduce", "control", "scripts")
    return Claim(**{k: f[k] for k in keys if k in f})


def judge_query(ctx: Context, q: dict) -> list[dict]:
    """The findings of one sweep, each with its status, figures, impact and reproducer."""
    out = []
    needed, fitted = q.get("needed"), q.get("fitted")
    for kind, seen in q["problems"].items():
        largest = seen["largest"]
        reached = kind in ("overflow", "roomy") or largest >= GLIBC_FIRST
        first = seen.get("last", seen["first"]) if largest >= GLIBC_FIRST else seen["first"]
        text = describe(q["query"], kind, {**seen, "first": first}, reached)
        if not reached:
            fits = f"fits from {fitted} bytes" if fitted is not None else "did not fit within the sweep"
            text += (
                f", only below {GLIBC_FIRST} bytes (largest {largest}); the answer takes about "
                f"{needed} bytes and {fits}"
            )
        finding = {"status": "fail" if reached else "warn", "text": text, "largest": largest}
        finding["impact"] = (
            impact(kind, first, needed)
            if reached
            else (
                f"no real caller: glibc's dispatch passes {GLIBC_FIRST} bytes and more, and every size from "
                f"{largest + 1} up was right"
            )
        )
        if fitted is not None:
            finding["control"] = (
                f"the same call with a {fitted}-byte buffer or more gives the right {needed}-byte answer"
            )
        finding |= reproducer(ctx, q["query"], first["size"], text)
        if reached and finding.get("getent"):
            said, broke = real_caller(ctx, finding["getent"], q["reference"]["value"])
            finding["text"] += said
            if broke is False:  # glibc's own buffers missed it: name the caller that does meet it
                finding["impact"] = (
                    f"a {q['query'].split('(')[0]} caller with a {first['size']}-byte buffer (1 KiB or more) "
                    f"gets it; glibc's own 1024·2^k buffers happened to miss it for this entry"
                )
        out.append(finding)
    ref = q.get("reference_size") or 0
    if needed and fitted is None and ref > 2 * needed and ref > GLIBC_FIRST:
        retries = (ref // GLIBC_FIRST).bit_length() - 1
        fn = q["query"].split("(")[0]
        finding = {
            "status": "warn",
            "text": f"{q['query']} needs a {ref}-byte buffer for a {needed}-byte answer",
            "largest": 0,
            "impact": f"glibc's own lookups retry {retries} time(s) and allocate {ref} bytes each; a {fn} "
            f"caller with a fixed buffer under {ref} bytes (sysconf(_SC_GETPW_R_SIZE_MAX) says 1024) gets "
            "ERANGE, for an entry that exists or not",
            "control": f"glibc's growing buffer ends at {ref} bytes with the right answer",
        }
        out.append(finding | reproducer(ctx, q["query"], GLIBC_FIRST, finding["text"]))
    return out


def impact(kind: str, first: dict, needed: int | None) -> str:
    if kind == "overflow":
        return (
            f"heap corruption in the caller: a {first['size']}-byte buffer short of the {needed}-byte answer "
            f"gets {first['bytes']} byte(s) written past it; glibc's getpwnam meets it for any entry "
            f"just over {GLIBC_FIRST}·2^k bytes"
        )
    if kind == "roomy":
        return f"a get*_r caller with a {BIG}-byte buffer gets another answer than glibc's own lookup"
    if kind == "truncated":
        return "glibc accepts SUCCESS and never retries: `id`, `getent` and logins get the cut field"
    return CONSEQUENCE.get(first["status"], "undefined status for a short buffer") + (
        f", for an entry of {needed} bytes"
    )


def reproducer(ctx: Context, query: str, size: int, what: str) -> dict:
    """A getent line for a point lookup, and a ctypes program calling the entry point with
    the buffer that showed it."""
    fn, _, rest = query.partition("(")
    if fn not in GETENT or "at entry" in query:
        return {}
    key = rest.rstrip(")").strip("'")
    db = GETENT[fn]
    key_value: object = int(key) if key.isdigit() else key
    script = lookup_script(str(ctx.module.library.resolve()), ctx.module.name, db, fn, key_value, size, what)
    getent = ["getent", "-s", ctx.module.name, db, key]
    return {
        "reproduce": f"python3 {{repro.py}} {size}   # with the module's config in place; through glibc: "
        + " ".join(getent),
        "scripts": {"repro.py": script},
        "getent": getent,
    }


def real_caller(ctx: Context, argv: list[str], want: dict | None) -> tuple[str, bool | None]:
    """What glibc's own dispatch (1 KiB first, doubled on ERANGE) makes of it, in the target:
    whether `getent` prints the whole answer the roomy reference call gave (None: not told)."""
    shown = " ".join(argv)
    try:
        done = ctx.target.run(argv, timeout=20)
    except CommandTimeout:
        return f"; `{shown}` did not return in 20 s", True
    if done.rc != 0:
        return f"; glibc's `{shown}` exits {done.rc} (no such entry)", True
    fields = done.stdout.strip().split(":")
    if want and "members" in want and len(fields) >= 4:
        got, total = len([m for m in fields[3].split(",") if m]), len(want["members"] or [])
        return f"; glibc's `{shown}` prints {got} of {total} members", got != total
    if want and "shell" in want and len(fields) >= 7:
        same = fields[4:7] == [want["gecos"], want["home"], want["shell"]]
        return f"; glibc's `{shown}` prints {'the whole' if same else 'a cut'} entry", not same
    return f"; glibc's `{shown}` prints {done.stdout.strip()[:80]!r}", None


def describe(query: str, kind: str, seen: dict, reached: bool = True) -> str:
    first = seen["first"]
    sizes = ", ".join(map(str, seen["sizes"][:4])) + (" …" if seen["count"] > 4 else "")
    at = f"with a {first['size']}-byte buffer"
    if seen["count"] > 1:
        at += f" ({seen['count']} sizes: {sizes})"
    if kind == "overflow":
        past = f"{first['bytes']} byte(s) past the end of the buffer"
        return f"{query} wrote {past} {at}, status {first['status']}"
    if kind in ("truncated", "roomy"):
        wrong = differences(first["got"], first["want"])
        what = "a truncated answer" if kind == "truncated" else "another answer than with a smaller buffer"
        return f"{query} returned SUCCESS {at} with {what}: {wrong}"
    status, errno = first["status"], first["errno"]
    why = f": {CONSEQUENCE.get(status, 'undefined')}" if reached else ""
    return f"{query} returned {status} (errno {errno}) {at}, not TRYAGAIN/ERANGE{why}"
