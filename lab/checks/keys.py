from __future__ import annotations

import re
import shlex
import statistics
import time

from lab.checks.base import UNKNOWN_NAME, CheckResult, Claim, Context, check, summary, verdict
from lab.probe.entrypoints import DATABASES, ERANGE

BUDGET = 6.0  # seconds of calls in all; a slow module gets its most telling keys first
WALL_BOUND = 60.0  # seconds: the check ends, however many of its workers crash (each costs a gdb re-run)
SLOW = 1.0  # a miss this slow, where a hit takes a fraction of it, makes every `ls ~*` and login wait
# (the probe asks the first miss this slow once more: a second slow answer rules out a cold start)
RATIO = 5.0
NO_ID = 4294967295  # (uid_t)-1: chown's and setreuid's "leave unchanged", never a user
LONG = (65536, 1 << 20, 256)  # bytes of a long name, most telling first (CVE-2015-7510 took 16 MiB)
CRASHED = re.compile(r"\[key (\d+)\]")  # the probe's progress note names the key being asked


@check("keys")
def keys(ctx: Context) -> CheckResult:
    """Hostile but legal keys, each bounded (KEY_LIMIT in its own thread; a crash or hang
    costs only its own worker, the rest run in a fresh one): case variants of a real name,
    `*` and `a*`, names with `:`, a newline or `/`, names of 256 B, 64 KiB and 1 MiB, and
    uid/gid 0 and 4294967295. Each must come back NOTFOUND (or name the key itself), without
    a crash or hang, and a miss must not take seconds where a hit takes milliseconds.

    A case variant answered with the stored name breaks logins: OpenSSH >= 10.2 compares
    PAM_USER with pw_name ("fatal: PAM user mismatch", authd#1366, #1512), and nslcd rewrote
    the PAM user (nss-pam-ldapd#12). bash asks getpwnam("*") for `ls ~*`; a module that
    retries the pattern against its backend makes it wait (GoogleCloudPlatform/guest-oslogin#136,
    as issue 13 cites it; not found in the search corpus). nss-mymachines' unbounded alloca
    crashed on a long name (CVE-2015-7510, systemd#2002).
    uid/gid 0 answers are the identity check's business; here they only must not crash or hang."""
    spec, hits = key_list(ctx)
    if not spec:
        return CheckResult("skip", "no point-lookup entry point to ask")
    results, crashes = run_keys(ctx, spec, hits)
    if results is None:
        return crashes[0][1]  # the worker failed before any key: that outcome as it is
    claims, details = judge(
        results["keys"], results["hits"], ctx.module.name, str(ctx.module.library.resolve())
    )
    details["crashes"] = [
        {"index": i, "key": query(spec[i]), "status": b.status, "reason": b.reason} for i, b in crashes
    ]
    details["cut_short"] = results["cut_short"]
    if crashes:
        i, bad = crashes[0]
        k = spec[i]
        shown = [f"{query(spec[j])}: {outcome(b)}" for j, b in crashes]
        return CheckResult(
            bad.status,
            summary(shown, 2) + (f"; also {summary(details['problems'], 1)}" if details["problems"] else ""),
            details | {"step": bad.details},
            evidence=bad.evidence,
            impact="any program that looks up a name it was given dies or freezes with it: sshd for a login "
            "name, `id`, sudo, a web server resolving ~user (CVE-2015-7510 was a 16 MiB name)",
            reproduce=long_reproducer(k, ctx.module.name, str(ctx.module.library.resolve())),
        )
    # each claim carries its own control (the plain miss, a second ask); the hit's latency
    # figure rules out nothing for a wrong answer, so it is no fallback
    found = verdict(claims, details)
    if found:
        return found
    asked = [r for r in results["keys"] if r["status"] not in ("not asked", "error")]
    ids = [
        f"{r['query']} -> {r.get('name')!r}" for r in asked if r["kind"] == "id" and r["status"] == "SUCCESS"
    ]
    answered = f"; {', '.join(ids)} (the identity check's business)" if ids else ""
    cut = f"; {len(spec) - len(asked)} keys not asked, the module is slow" if results["cut_short"] else ""
    return CheckResult(
        "pass",
        f"{len(asked)} hostile keys: NOTFOUND or the key's own entry, no crash or hang; slowest miss "
        f"{details['slowest_miss'] * 1000:.1f} ms next to a hit of {details['hit_ms']:.1f} ms{answered}{cut}",
        details,
    )


def outcome(bad: CheckResult) -> str:
    """'killed by SIGSEGV', 'never returned' … from a worker's outcome."""
    said = re.search(
        r"killed by \w+|exited with status \d+|never returned|gave no answer within [\d.]+ s", bad.reason
    )
    return said.group(0) if said else bad.status


def key_list(ctx: Context) -> tuple[list[dict], list[dict]]:
    """The keys to ask, most telling first, and the real names' lookups for the hit latency."""
    m, present = ctx.module, ctx.elf.entry_points(ctx.module.name)
    real = {"passwd": m.users, "group": m.groups, "shadow": m.shadow}
    names, ids = [], []
    for db in ("passwd", "group", "shadow"):
        fns = DATABASES[db][1]
        if db not in m.databases:
            continue
        if fns["name"] in present:
            names.append((db, real[db][0].name if real[db] else None))
        if "id" in fns and fns["id"] in present:
            ids.append(db)
    tiers: list[list[dict]] = [[] for _ in range(7)]
    for db, name in names:
        k = lambda key, kind, db=db, **kw: {"db": db, "by": "name", "key": key, "kind": kind, **kw}  # noqa: E731
        if name:
            variants = dict.fromkeys(v for v in (name.upper(), name.capitalize()) if v != name)
            tiers[0] += [k(v, "case", of=name) for v in variants]
        tiers[1] += [k("*", "wildcard"), k("a*", "wildcard")]
        tiers[2] += [k("a", "long", repeat=n, label=f"'a' * {n}") for n in LONG[:2]]
        tiers[3] += [k("a", "long", repeat=LONG[2], label=f"'a' * {LONG[2]}")]
        base = name or "root"
        tiers[4] += [k(f"{base}:x", "colon", of=base), k(f"{base}\n", "newline", of=base)]
        tiers[4] += [k(f"./{base}", "slash", of=base)]
        if name and not name.startswith("a"):
            tiers[5] += [k(f"{name[0]}*", "wildcard")]
        tiers[6] += [k(UNKNOWN_NAME, "miss")]
    for db in ids:
        tiers[5] += [{"db": db, "by": "id", "key": key, "kind": "id"} for key in (0, NO_ID)]
    hits = [{"db": db, "by": "name", "key": name, "kind": "hit"} for db, name in names if name]
    return [k for tier in tiers for k in tier], hits


def run_keys(ctx: Context, spec: list[dict], hits: list[dict]) -> tuple[dict | None, list]:
    """Asks every key, in as few workers as the module allows: a crash or hang ends a worker, the
    key that did it is left out, the others are asked again in a fresh one."""
    done: dict[int, dict] = {}
    crashes: list[tuple[int, CheckResult]] = []
    got_hits: list[dict] = []
    cut = False
    # The budget is what the workers' keys took on the probe's clock (a busy machine does not
    # use it up, lab/probe/clock.py); a crashed worker's time, mostly its gdb evidence, is not
    # counted, and WALL_BOUND ends the check however many workers crash.
    spent, started = 0.0, time.monotonic()
    while True:
        left = [i for i in range(len(spec)) if i not in done and i not in dict(crashes)]
        if not left or spent >= BUDGET or time.monotonic() - started > WALL_BOUND:
            cut = cut or bool(left)
            break
        budget = max(BUDGET - spent, 0.5)
        value, bad = ctx.direct(
            "keys", "hostile keys", keys=spec, hits=hits, only=left, budget=budget, slow=SLOW
        )
        if bad:
            at = CRASHED.search(bad.reason)
            if not at:
                return None, [(-1, bad)]
            i = int(at.group(1))
            crashes.append((i, bad))
            for j in longer(spec, i):  # they would crash the same way: not asked, not claimed
                done[j] = {
                    **spec[j],
                    "index": j,
                    "query": query(spec[j]),
                    "status": "not asked",
                    "seconds": 0.0,
                    "why": f"{query(spec[i])} crashed",
                }
            continue
        spent += value.get("spent", 0.0)
        for r in value["keys"]:
            done[r["index"]] = r
        got_hits = value["hits"] or got_hits
        cut = value["cut_short"]
        if value["stuck"] is None:
            break
    ordered = [done[i] for i in sorted(done)]
    return {"keys": ordered, "hits": got_hits, "cut_short": cut}, crashes


def longer(spec: list[dict], i: int) -> list[int]:
    """The keys of the same entry point and kind as SPEC[i], at least as long."""
    k = spec[i]
    if not k.get("repeat"):
        return []
    return [
        j
        for j, o in enumerate(spec)
        if j != i and o["db"] == k["db"] and o["by"] == k["by"] and o.get("repeat", 0) >= k["repeat"]
    ]


def query(k: dict) -> str:
    fn = DATABASES[k["db"]][1][k["by"]]
    return f"{fn}({k.get('label') or repr(k['key'])})"


def judge(results: list[dict], hits: list[dict], service: str, library: str) -> tuple[list[Claim], dict]:
    """Claims from the probe's answers to each key (pure: unit-tested on fixture dicts)."""
    hit = statistics.median([h["seconds"] for h in hits]) if hits else None
    plain = [r["seconds"] for r in results if r.get("kind") == "miss" and r["status"] == "NOTFOUND"]
    base = hit if hit is not None else (statistics.median(plain) if plain else None)
    claims: list[Claim] = []
    # The control for "answered another name": the plain unknown name. A module that answers
    # that too answers every miss (status-codes' finding), not hostile keys in particular.
    any_miss = {r["db"] for r in results if r.get("kind") == "miss" and r["status"] == "SUCCESS"}
    missed = {r["db"] for r in results if r.get("kind") == "miss" and r["status"] == "NOTFOUND"}
    covered = [r for r in results if r["db"] in any_miss and r["status"] == "SUCCESS" and not r.get("same")]
    # a second ask of a slow miss: slow again rules out a cold start (a first connection, a cache fill)
    again = [r["again_seconds"] for r in results if "again_seconds" in r]
    stays = bool(again) and base is not None and all(slow(a, base) for a in again)
    said = "a hit of a real name takes" if hit is not None else f"the plain miss {UNKNOWN_NAME!r} takes"
    for r in results:
        if r not in covered:
            claims += judge_one(r, base, service, r["db"] in missed, said, stays)
    if covered:
        claims.append(
            Claim(
                "warn",
                f"{len(covered)} hostile keys answered with another entry (first {covered[0]['query']}), "
                f"but so was the plain unknown name {UNKNOWN_NAME!r}: the module answers every miss in "
                f"{'/'.join(sorted(any_miss))}",
                impact="not claimed here: an answer for any unknown name is the status-codes check's finding",
                reproduce=f"getent -s {service} {covered[0]['db']} {UNKNOWN_NAME}",
            )
        )
    misses = [r for r in results if r["status"] not in ("SUCCESS", "not asked", "error")]
    slowest = max(misses, key=lambda r: r["seconds"], default=None)
    control = None
    if base is not None:
        control = f"{'a hit of a real name' if hit is not None else 'a plain miss'} took {base * 1000:.1f} ms"
        if plain:
            control += f", the plain miss {UNKNOWN_NAME!r} {statistics.median(plain) * 1000:.1f} ms"
    details = {
        "keys": results,
        "hits": hits,
        "hit_ms": (base or 0.0) * 1000,
        "slowest_miss": slowest["seconds"] if slowest else 0.0,
        "slowest_key": slowest["query"] if slowest else None,
        "problems": [c.text for c in claims],
        "control": control,
    }
    return claims, details


def slow(seconds: float, base: float) -> bool:
    return seconds >= SLOW and seconds >= RATIO * base


def judge_one(
    r: dict,
    base: float | None,
    service: str,
    missed: bool = False,
    said: str = "a hit takes",
    stays: bool = False,
) -> list[Claim]:
    """MISSED: the plain unknown name came back NOTFOUND from this entry point's db; SAID: what
    BASE is; STAYS: a slow miss asked again was slow again (no cold start)."""
    if r["status"] in ("not asked", "error"):  # left out after a crash; ctypes refused the key
        return []
    shown = f"getent -s {service} {r['db']} {shlex.quote(raw_key(r))}"
    out = []
    if r["status"] == "no answer":
        return [
            Claim(
                "fail",
                f"{r['query']} gave no answer within {r['seconds']:.1f} s",
                impact="a caller that asks for this key freezes: bash's `ls ~*`, a login with this name",
                reproduce=f"time {shown}" if r["kind"] != "long" else None,
            )
        ]
    if r["status"] == "SUCCESS":
        name = r.get("name")
        if r["kind"] == "id":
            if r["query"].endswith(f"({NO_ID})"):
                out.append(
                    Claim(
                        "warn",
                        f"{r['query']} answered {name!r}: {NO_ID} is (uid_t)-1, 'leave unchanged' to chown "
                        "and setreuid",
                        impact="no caller shown broken: a file chowned to -1 keeps its owner, yet `ls -l` "
                        "of a file with that id would name this entry",
                        reproduce=shown,
                    )
                )
        elif not r.get("same"):
            out.append(answered_other(r, name, shown, missed))
    elif r["status"] != "NOTFOUND" and not (r["status"] == "TRYAGAIN" and r["errno"] == ERANGE):
        out.append(
            Claim(
                "warn",
                f"{r['query']} returned {r['status']} (errno {r['errno']}), not NOTFOUND",
                impact="callers still get no entry; glibc goes on to the next source for UNAVAIL and hands "
                "EAGAIN to the caller for TRYAGAIN",
                reproduce=shown if r["kind"] != "long" else None,
            )
        )
    elif r["status"] == "TRYAGAIN":
        out.append(
            Claim(
                "warn",
                f"{r['query']} still said ERANGE with a {r.get('size', 0)}-byte buffer",
                impact="glibc grows its buffer until memory runs out for this key, then reports ERANGE",
            )
        )
    if r["status"] != "SUCCESS" and base is not None and slow(r["seconds"], base):
        text = f"{r['query']} took {r['seconds']:.2f} s to answer {r['status']}, where {said} "
        text += f"{base * 1000:.1f} ms"
        if "again_seconds" in r:
            text += f"; asked again, {r['again_seconds']:.2f} s"
        confirmed = slow(r["again_seconds"], base) if "again_seconds" in r else stays
        out.append(
            Claim(
                "fail" if confirmed else "warn",
                text + ("" if confirmed else ": not slow twice, a cold start is not ruled out"),
                impact="every caller that asks this: bash's `ls ~*` and tab completion wait that long per "
                "lookup, each unknown-user login and ssh probe waits (GoogleCloudPlatform/guest-oslogin#136, "
                "as issue 13 cites it; not found in the search corpus)",
                reproduce=f"time {shown}" if r["kind"] != "long" else None,
                control=f"the same key asked a second time took {r['again_seconds']:.2f} s (no cold start)"
                if confirmed and "again_seconds" in r
                else "another slow miss asked a second time was slow again (no cold start)"
                if confirmed
                else None,
            )
        )
    return out


def answered_other(r: dict, name: str | None, shown: str, missed: bool) -> Claim:
    kind = r["kind"]
    if kind == "case":
        impact = (
            "a login as this name becomes another user name: OpenSSH >= 10.2 compares PAM_USER with pw_name "
            "and drops the connection ('fatal: PAM user mismatch', authd#1366/#1512); nslcd rewrote the PAM "
            "user "
            "(nss-pam-ldapd#12)"
        )
    elif kind == "wildcard":
        impact = (
            f"bash's `~{raw_key(r)}` expands to {name!r}'s home: `ls ~*`, `rm -r ~*` act on that directory"
        )
    else:
        impact = (
            "a name that is not the user's resolves to the user: a login, sudoers or ACL check with it "
            "acts as that user"
        )
    return Claim(
        "fail",
        f"{r['query']} answered SUCCESS with the entry {name!r}, which is not the key",
        impact=impact,
        reproduce=shown if kind != "long" else None,
        control=f"the plain unknown name {UNKNOWN_NAME!r} came back NOTFOUND from {r['db']}"
        if missed
        else None,
    )


def raw_key(r: dict) -> str:
    """The key as the module got it (long keys only carry their label)."""
    return str(r.get("key", r["label"]))


def long_reproducer(k: dict, service: str, library: str) -> str:
    fn = DATABASES[k["db"]][1][k["by"]]
    key = f"b'{k['key']}'*{k['repeat']}" if k.get("repeat") else repr(str(k["key"]).encode())
    return (
        f"python3 -c \"import ctypes as c;l=c.CDLL('{library}');b=c.create_string_buffer(4096);e=c.c_int();"
        f'print(l._nss_{service}_{fn}({key},c.create_string_buffer(64),b,4096,c.byref(e)))"'
        + (
            f"   # through glibc: getent -s {service} {k['db']} $(python3 -c \"print('a'*{k['repeat']})\")"
            if k.get("repeat") and k["repeat"] <= 65536
            else ""
        )
    )
