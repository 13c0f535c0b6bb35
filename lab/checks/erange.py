from __future__ import annotations

from lab.checks.base import CheckResult, Context, check, differences, summary

BUDGET = 10.0  # seconds for the whole sweep; slow modules get sampled sizes, not a timeout
CONSEQUENCE = {
    "NOTFOUND": "glibc reports the entry as missing instead of retrying with a bigger buffer",
    "UNAVAIL": "glibc takes the service as down instead of retrying with a bigger buffer",
    "TRYAGAIN": "glibc retries with a bigger buffer only for ERANGE; this fails with EAGAIN",
}


@check("erange")
def erange(ctx: Context) -> CheckResult:
    """Calls every point-lookup entry point (getpwnam_r, getpwuid_r, getgrnam_r,
    getgrgid_r, getspnam_r) for each manifest entry, and get*ent_r on the biggest entry of
    each listing, with every buffer size from 0 up to what the answer needs and guard
    bytes after the buffer (glibc's bug17079 test).
    Only the exact answer, or NSS_STATUS_TRYAGAIN with errno ERANGE, may come back.

    Catches the module that copies strings without checking buflen (a heap overflow in
    whatever called getpwnam_r: glibc starts at 1 KiB, and a 137-member group took STNS
    down), the one that truncates fields to fit, and the one that answers NOTFOUND for a
    small buffer, so users with long group lists or gecos fields vanish."""
    queries, listings = ctx.queries(), ctx.enumerable()
    if not queries and not listings:
        return CheckResult("skip", "no manifest entries to look up and nothing to enumerate")
    value, bad = ctx.direct("erange", "buffer-size sweep", queries=queries, listings=listings, budget=BUDGET)
    if bad:
        return bad
    problems: list[str] = []
    tried = cut = 0
    for q in value["queries"]:
        tried += q["tried"]
        cut += bool(q.get("cut_short"))
        for kind, seen in q["problems"].items():
            problems.append(describe(q["query"], kind, seen))
    details = {"queries": value["queries"], "problems": problems}
    if problems:
        return CheckResult("fail", summary(problems), details)
    sampled = f"; {cut} sweep(s) sampled, the module is slow" if cut else ""
    return CheckResult(
        "pass",
        f"{len(value['queries'])} sweeps, {tried} buffer sizes in all: "
        f"exact answer or TRYAGAIN/ERANGE, guard bytes intact{sampled}",
        details,
    )


def describe(query: str, kind: str, seen: dict) -> str:
    first = seen["first"]
    sizes = ", ".join(map(str, seen["sizes"][:4])) + (" …" if seen["count"] > 4 else "")
    at = f"with a {first['size']}-byte buffer"
    if seen["count"] > 1:
        at += f" ({seen['count']} sizes: {sizes})"
    if kind == "overflow":
        past = f"{first['bytes']} byte(s) past the end of the buffer"
        return f"{query} wrote {past} {at}, status {first['status']}"
    if kind == "truncated":
        wrong = differences(first["got"], first["want"])
        return f"{query} returned SUCCESS {at} with a truncated answer: {wrong}"
    status, errno = first["status"], first["errno"]
    why = CONSEQUENCE.get(status, "undefined")
    return f"{query} returned {status} (errno {errno}) {at}, not TRYAGAIN/ERANGE: {why}"
