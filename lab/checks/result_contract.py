from __future__ import annotations

import shlex

from lab.checks.base import CheckResult, Claim, Context, check, differences, verdict
from lab.errors import CommandTimeout

BUDGET = 6.0  # seconds of calls; a slow module gets fewer queries checked, not a timeout
# C names of the fields the probe reads, and each one's slot in the record (8-byte words on
# 64-bit; uid/gid share one) for the ctypes one-liner a maintainer runs
C_FIELD = {
    "passwd": {
        "name": "pw_name",
        "passwd": "pw_passwd",
        "gecos": "pw_gecos",
        "home": "pw_dir",
        "shell": "pw_shell",
    },
    "group": {"name": "gr_name", "passwd": "gr_passwd", "members": "gr_mem"},
    "shadow": {"name": "sp_namp", "password": "sp_pwdp"},
}
SLOT = {
    "passwd": {"name": 0, "passwd": 1, "gecos": 3, "home": 4, "shell": 5},
    "group": {"name": 0, "passwd": 1, "members": 3},
    "shadow": {"name": 0, "password": 1},
}
# Machines whose loads of a misaligned pointer work in hardware (slower, no trap); the rest
# (SPARC, MIPS, 32-bit ARM before v6, Alpha, PA-RISC …) raise SIGBUS: systemd#21935.
FORGIVING = {"EM_X86_64", "EM_386", "EM_AARCH64", "EM_PPC64", "EM_PPC", "EM_S390"}
GETENT = {
    "getpwnam_r": "passwd",
    "getpwuid_r": "passwd",
    "getgrnam_r": "group",
    "getgrgid_r": "group",
    "getspnam_r": "shadow",
}


@check("result-contract")
def result_contract(ctx: Context) -> CheckResult:
    """Every SUCCESS answer (each manifest entry's point lookups, and the listings) is read the
    way a caller keeps it: every string and gr_mem must lie inside the caller's buffer, no string
    field may be NULL, gr_mem must be pointer-aligned and NULL-terminated inside the buffer, and
    the same lookup into a reused, dirty buffer (glibc's getpwnam keeps one for every call) must
    give the same answer as into a zeroed one.

    A pointer into the library's static data that the next call rewrites gives a threaded
    caller another user's field (nss-systemd returned static strings: systemd#20679, glib
    crashed editing them); a NULL pw_gecos or pw_passwd crashed PHP's posix_getpwnam
    (php-src#22426; gr_name: #22433) and sshd's pwcopy() (openssh-portable#589); an unaligned
    gr_mem killed `ls` with SIGBUS on SPARC (systemd#21935); a module that assumes a zeroed
    buffer answers with the previous caller's bytes."""
    queries, listings = ctx.queries(), ctx.enumerable()
    if not queries and not listings:
        return CheckResult("skip", "no manifest entries to look up and nothing to enumerate")
    value, bad = ctx.direct(
        "result-contract", "result layout", queries=queries, listings=listings, budget=BUDGET
    )
    if bad:
        return bad
    claims, details = judge(value, ctx.elf.machine, str(ctx.module.library.resolve()), ctx.module.name)
    for claim, reused in details.pop("_dirty"):  # what glibc's own reused buffer makes of it
        line, said = glibc_reuse(ctx, reused)
        claim.text += said
        confirm(claim, reused, line)
    for claim, key in details.pop("_null"):  # what glibc's own getent prints for it
        claim.text += glibc_prints(ctx, [str(k) for k in key])
    found = verdict(claims, details)
    if found:
        return found
    if not details["checked"]:
        statuses = sorted({a["status"] for a in value["answers"]}) or ["no listing entries"]
        return CheckResult("skip", f"no lookup answered SUCCESS ({', '.join(statuses)}): no answer to read")
    cut = "; the module is slow, the sweep was cut at its budget" if value["cut_short"] else ""
    return CheckResult(
        "pass",
        f"{details['checked']} answers ({details['lookups']} point lookups, {details['listed']} listed "
        "entries): every string and gr_mem inside the caller's buffer, no NULL field, gr_mem aligned and "
        "NULL-terminated, "
        f"{details['reused']} lookups into a reused buffer gave the same answer{cut}",
        details,
    )


def judge(value: dict, machine: str, library: str, service: str) -> tuple[list[Claim], dict]:
    """The findings in the probe's observations (pure: unit-tested on fixture dicts)."""
    answers = [a for a in value["answers"] if a["status"] == "SUCCESS"]
    listed = [(db, e) for db, got in value["listings"].items() for e in got["entries"]]
    shapes = [(a["key"][0], a["query"], a) for a in answers]
    shapes += [
        (db, f"get{'pw' if db == 'passwd' else 'gr' if db == 'group' else 'sp'}ent_r() at {e['name']!r}", e)
        for db, e in listed
    ]
    tried = {o["query"]: o for o in value["overwritten"]}
    found: list[tuple[str, Claim]] = []  # (cause, claim)
    found += null_fields(shapes, library, service)
    found += strays(shapes, tried, value["listings"], library, service)
    found += members(shapes, machine, service)
    dirty = dirty_buffers(value["reused"], service)
    found += [("dirty-buffer" if r["control_same"] else "unstable-answer", c) for c, r in dirty]
    claims = [c for _, c in found]
    details = {
        "checked": len(shapes),
        "lookups": len(answers),
        "listed": len(listed),
        "reused": sum(bool(r.get("same")) for r in value["reused"]),
        "answers": value["answers"],
        "overwritten": value["overwritten"],
        "reused_buffer": value["reused"],
        "listings": {
            db: {k: v for k, v in got.items() if k != "entries"} | {"count": len(got["entries"])}
            for db, got in value["listings"].items()
        },
        "problems": [c.text for c in claims],
        "causes": sorted({cause for cause, _ in found}),
        "_dirty": dirty,
        "_null": [
            (c, key) for cause, c in found if cause == "null-field" for key in [null_key(c, value)] if key
        ],
    }
    return claims, details


def null_fields(shapes: list, library: str, service: str) -> list[tuple[str, Claim]]:
    seen: dict[tuple, list[str]] = {}
    for db, query, shape in shapes:
        nulls = [f for f, v in shape["fields"].items() if v.get("null")]
        nulls += ["members"] if shape.get("members", {}).get("null") else []
        for f in nulls:
            seen.setdefault((db, f), []).append(query)
    out = []
    for (db, f), queries in seen.items():
        more = f" (and {len(queries) - 1} more answers)" if len(queries) > 1 else ""
        claim = Claim(
            "warn",
            f"{queries[0]} returned SUCCESS with {C_FIELD[db][f]} NULL{more}",
            impact="no caller shown broken here (glibc's getent prints the field empty); callers that copy "
            "it without a check crashed on NULL upstream: PHP's posix_getpwnam/getgrnam (php-src#22426, "
            "#22433), sshd's pwcopy() strdup of pw_gecos (openssh-portable#589), not reproduced by the lab",
            reproduce=oneliner(library, service, queries[0], db, f),
        )
        out.append(("null-field", claim))
    return out


def strays(shapes: list, tried: dict, listings: dict, library: str, service: str) -> list[tuple[str, Claim]]:
    """Pointers outside the buffer, grouped by field and region; a fail where another call
    rewrote the first answer (TRIED: the probe's re-reads, by query)."""
    groups: dict[tuple, list] = {}
    for db, query, shape in shapes:
        for f, v in shape["fields"].items():
            if "outside" in v:
                groups.setdefault((db, f, region(v["outside"])), []).append(query)
        m = shape.get("members", {})
        if m.get("outside"):
            groups.setdefault((db, "members", region(m["outside"])), []).append(query)
        for mo in m.get("members_outside", [])[:1]:
            groups.setdefault((db, "members[]", region(mo)), []).append(query)
    listed = {(db, o["entry"]): o for db, got in listings.items() for o in got.get("overwritten", [])}
    out = []
    for (db, f, where), queries in groups.items():
        name = C_FIELD[db].get(f, "gr_mem[i]")
        more = f" ({len(queries)} answers, first {queries[0]})" if len(queries) > 1 else f" in {queries[0]}"
        text = f"{name} points outside the caller's buffer, into {where}{more}"
        first = next((q for q in queries if rewrite(q, f, name, db, tried, listed)), None)
        if first:
            shown = rewrite(first, f, name, db, tried, listed)
            race = next((tried[q] for q in queries if f in tried.get(q, {}).get("changed", {})), None)
            repro = (
                race_oneliner(library, service, race["query"], race["by"], db, f)
                if race
                else listing_oneliner(library, service, db, first.split(" at ", 1)[1].strip("'"), f)
            )
            claim = Claim(
                "fail" if repro else "warn",
                f"{text}: {shown}" + ("" if repro else " (no one-liner for this field: not claimed)"),
                impact="a threaded caller (sssd's clients, nscd, a JVM), or one that keeps two entries, gets "
                "another user's field in the first answer: the module's static data is shared by every call",
                reproduce=repro,
                control="the answer's fields inside the caller's buffer stayed the same",
            )
            out.append(("static-pointer", claim))
            continue
        others = sorted({b for q in queries for b in tried.get(q, {}).get("by", []) if isinstance(b, str)})
        why = (
            f"{len(others)} other lookups from another thread ({', '.join(others[:3])})"
            if others
            else "no other key"
        )
        claim = Claim(
            "warn",
            f"{text}; not rewritten by {why}",
            impact="no caller shown broken: the pointer outlives the caller's buffer, and a caller that "
            "edits its answer in place writes into the module's memory (systemd#20679: glib crashed on a "
            "read-only pw_passwd); getpwnam_r's contract is the caller's buffer",
        )
        out.append(("outside-pointer", claim))
    return out


def rewrite(query: str, f: str, name: str, db: str, tried: dict, listed: dict) -> str | None:
    """How the first answer's field changed under another call, if it did."""
    change = tried.get(query)
    if change and f in change["changed"]:
        c = change["changed"][f]
        return (
            f"{query}'s {name} {c['before']!r} became {c['after']!r} after {change['by']} from another thread"
        )
    entry = query.split(" at ", 1)[1].strip("'") if " at " in query else None
    o = listed.get((db, entry)) if entry else None
    if o and f in o["changed"]:
        c = o["changed"][f]
        return f"{query}'s {name} {c['before']!r} became {c['after']!r} after the next get*ent_r"
    return None


def region(w: dict) -> str:
    ro = "" if w.get("writable") else ", read-only"
    return f"{w['region']} ({w['perms']}{ro})" if w.get("perms") else w["region"]


def members(shapes: list, machine: str, service: str) -> list[tuple[str, Claim]]:
    unaligned, unterminated = [], []
    for db, query, shape in shapes:
        m = shape.get("members")
        if not m or m.get("null"):
            continue
        if not m["aligned"]:
            unaligned.append((query, m))
        if m.get("inside") and m.get("terminated") is False:
            unterminated.append((db, query, shape, m))
    out = []
    if unterminated:
        db, q, shape, m = unterminated[0]
        more = f" ({len(unterminated)} answers)" if len(unterminated) > 1 else ""
        beyond = m.get("beyond", 0)  # non-NULL words the probe read past the buffer's end
        text = (
            f"{q}: gr_mem runs out of the caller's buffer after {m['count']} pointers without its NULL{more}"
        )
        name = shape.get("value", {}).get("name") or (shape.get("key") or [None, None, None])[2]
        repro = f"getent -s {service} group {shlex.quote(str(name))}" if name is not None else None
        if beyond:
            claim = Claim(
                "fail",
                f"{text}; walking on as a caller does read {beyond} more non-NULL pointers past the buffer",
                impact="every caller walks gr_mem to its NULL: `id`, `getent group` and initgroups take "
                "words from beyond the buffer as members: garbage names or a crash",
                reproduce=repro,
                control=f"the array starts inside the buffer (offset {m['offset']}); its {m['count']} "
                "pointers there were read as the module wrote them",
            )
        else:
            claim = Claim(
                "warn",
                f"{text}; the word after the buffer was NULL or unreadable here: no member read beyond it",
                impact="no caller shown broken here: a caller walking gr_mem to its NULL reads past its "
                "buffer, and what it finds there depends on the caller's memory",
                reproduce=repro,
            )
        out.append(("members-unterminated", claim))
    if unaligned:
        q, m = unaligned[0]
        more = f" ({len(unaligned)} answers)" if len(unaligned) > 1 else ""
        here = (
            f"{machine} loads misaligned pointers in hardware: no caller breaks here"
            if machine in FORGIVING
            else f"not run on a trapping machine by the lab ({machine})"
        )
        claim = Claim(
            "warn",
            f"{q}: gr_mem at buffer offset {m['offset']} is not pointer-aligned{more}",
            impact=f"{here}; on SPARC, MIPS, Alpha, PA-RISC and 32-bit ARM before v6 a misaligned pointer "
            "load raises SIGBUS: `ls -l` and `id` died on SPARC (systemd#21935)",
        )
        out.append(("members-unaligned", claim))
    return out


def dirty_buffers(reused: list, service: str) -> list[tuple[Claim, dict]]:
    """A warn for each answer a reused buffer changed; confirm() makes it a fail once glibc's own
    getent, reusing its buffer the same way, is seen printing the wrong answer."""
    out = []
    for r in reused:
        if r.get("same"):
            continue
        before = f"holding {query_of(r['previous'])}'s answer" if r.get("previous") else "filled with 0xA5"
        wrong = differences(r["got"], r["want"], "zeroed buffer") if r["got"] else f"status {r['status']}"
        text = f"{r['query']} into a reused {r['size']}-byte buffer ({before}) answered {wrong}"
        keys = [str(r["previous"][2]), str(r["key"][2])] if r.get("previous") else []
        if r["control_same"]:
            claim = Claim(
                "warn",
                text,
                impact="not shown through glibc: its getpwnam/getgrgid reuse one buffer for every call, so "
                "a caller may get the previous caller's bytes"
                + ("" if r.get("previous") else "; a first call has no earlier answer for getent to leave"),
                reproduce=f"getent -s {service} {r['key'][0]} {shlex.join(keys)}"
                if keys and r["key"][0] != "shadow"
                else None,
            )
        else:
            claim = Claim(
                "warn",
                f"{text}, but a zeroed buffer also answered differently the second time: not claimed",
                impact="not claimed: the answers change between calls without the buffer (a changing "
                "backend)",
            )
        out.append((claim, r))
    return out


def confirm(claim: Claim, r: dict, line: str | None) -> None:
    """A fail when glibc's `getent DB PREV KEY` printed LINE for KEY, unlike the zeroed-buffer answer."""
    if not r.get("control_same") or line is None or not claim.reproduce:
        return
    shown = parsed(r["key"][0], line)
    if shown is None or shown == {f: r["want"].get(f) for f in shown}:
        return
    claim.status = "fail"
    claim.impact = (
        "glibc's getpwnam/getgrgid (and so `id`, `ls -l`, `getent` with several keys) reuse one buffer for "
        "every call: getent printed the previous caller's bytes in this answer"
    )
    off = [f for f in shown if shown[f] != r["want"].get(f)]
    claim.control = "the same lookup into a zeroed buffer, made twice, gave " + ", ".join(
        f"{f} {r['want'].get(f)!r} where getent printed {shown[f]!r}" for f in off
    )


def parsed(db: str, line: str) -> dict | None:
    """getent's line as entry() fields (None: not a line of DB's shape)."""
    p = line.split(":")
    try:
        if db == "passwd" and len(p) == 7:
            return {
                "name": p[0],
                "uid": int(p[2]),
                "gid": int(p[3]),
                "gecos": p[4],
                "home": p[5],
                "shell": p[6],
            }
        if db == "group" and len(p) == 4:
            return {"name": p[0], "gid": int(p[2]), "members": p[3].split(",") if p[3] else []}
    except ValueError:
        return None
    return None


def query_of(key: list) -> str:
    fn = {
        ("passwd", "name"): "getpwnam_r",
        ("passwd", "id"): "getpwuid_r",
        ("group", "name"): "getgrnam_r",
        ("group", "id"): "getgrgid_r",
        ("shadow", "name"): "getspnam_r",
    }[(key[0], key[1])]
    return f"{fn}({key[2]!r})"


def oneliner(library: str, service: str, query: str, db: str, field: str) -> str:
    """python3 -c calling the entry point directly and printing the field's pointer (None: NULL)."""
    fn = query.partition("(")[0]
    slot = SLOT[db][field]
    return (
        "python3 -c \"import ctypes as c;l=c.CDLL('"
        + library
        + "');r=(c.c_void_p*8)();b=c.create_string_buffer(4096);"
        f'e=c.c_int();print(l._nss_{service}_{fn}({arg(query)},r,b,4096,c.byref(e)),r[{slot}])"'
        f"   # status 1 and None: {C_FIELD[db][field]} is NULL"
    )


def race_oneliner(library: str, service: str, first: str, second: str, db: str, field: str) -> str | None:
    """python3 -c: the first lookup, the second from another thread, the first answer's field again."""
    if field not in SLOT[db]:
        return None
    fn = first.split("(")[0]
    args = [arg(q) for q in (first, second)]
    slot = SLOT[db][field]
    return (
        "python3 -c \"import ctypes as c,threading as t;l=c.CDLL('" + library + "');"
        f"f=l._nss_{service}_{fn};r,s=(c.c_void_p*8)(),(c.c_void_p*8)();"
        "b,d=c.create_string_buffer(4096),c.create_string_buffer(4096);e=c.c_int();"
        f"f({args[0]},r,b,4096,c.byref(e));print(c.string_at(r[{slot}]));"
        f"x=t.Thread(target=f,args=({args[1]},s,d,4096,c.byref(e)));x.start();x.join();"
        f"print(c.string_at(r[{slot}]))\"   # the first answer's {C_FIELD[db][field]}, before and after"
    )


def listing_oneliner(library: str, service: str, db: str, entry: str, field: str) -> str | None:
    """python3 -c: get*ent_r up to ENTRY, its field; the next get*ent_r (another buffer); the field again."""
    if field not in SLOT[db]:
        return None
    ent = {"passwd": "pw", "group": "gr", "shadow": "sp"}[db]
    return (
        "python3 -c \"import ctypes as c;l=c.CDLL('" + library + "');"
        f"f=l._nss_{service}_get{ent}ent_r;l._nss_{service}_set{ent}ent(0);r,s=(c.c_void_p*8)(),(c.c_void_p*8)();"
        "b,d=c.create_string_buffer(4096),c.create_string_buffer(4096);e=c.c_int();"
        f"any(f(r,b,4096,c.byref(e))!=1 or c.string_at(r[0])=={entry.encode()!r} for _ in range(100000));"
        f'a=c.string_at(r[{SLOT[db][field]}]);f(s,d,4096,c.byref(e));print(a,c.string_at(r[{SLOT[db][field]}]))"'
        f"   # {entry}'s {C_FIELD[db][field]}, before and after the next get{ent}ent_r"
    )


def arg(query: str) -> str:
    """The ctypes argument for a query's key: "getpwnam_r('pyama')" -> b'pyama'."""
    key = query.partition("(")[2].rstrip(")")
    return f"c.c_uint({key})" if key.isdigit() else f"b{key}"


def null_key(claim: Claim, value: dict) -> list | None:
    """[db, key] of the point lookup a NULL-field claim names first (None: a listed entry)."""
    first = claim.text.split(" returned ", 1)[0]
    return next(([a["key"][0], a["key"][2]] for a in value["answers"] if a["query"] == first), None)


def glibc_prints(ctx: Context, argv_tail: list[str]) -> str:
    argv = ["getent", "-s", ctx.module.name, *argv_tail]
    try:
        done = ctx.target.run(argv, timeout=20)
    except CommandTimeout:
        return f"; `{shlex.join(argv)}` did not return in 20 s"
    if done.rc < 0 or done.rc > 128:
        return f"; glibc's `{shlex.join(argv)}` died (exit {done.rc})"
    return f"; glibc's `{shlex.join(argv)}` prints {done.stdout.strip()[:100]!r} (exit {done.rc})"


def glibc_reuse(ctx: Context, r: dict) -> tuple[str | None, str]:
    """What glibc's own getent, which reuses one buffer for all its keys, prints for the entry:
    (its line for KEY or None, the words for the claim)."""
    if not r.get("previous") or r["key"][0] == "shadow":
        return None, ""
    db = r["key"][0]
    argv = ["getent", "-s", ctx.module.name, db, str(r["previous"][2]), str(r["key"][2])]
    try:
        done = ctx.target.run(argv, timeout=20)
    except CommandTimeout:
        return None, f"; `{shlex.join(argv)}` did not return in 20 s"
    lines = done.stdout.strip().splitlines()
    if len(lines) < 2:
        return None, f"; `{shlex.join(argv)}` printed {len(lines)} line(s)"
    return lines[1], f"; glibc's `{shlex.join(argv)}` prints {lines[1][:100]!r}"
