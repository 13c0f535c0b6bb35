from __future__ import annotations

import itertools
import json
import shlex

from lab.checks.base import UNKNOWN_NAME, CheckResult, Claim, Context, check, verdict

LOOKUPS = 20_000
WARMUP = 1_000
EVERY = 1_000  # lookups between footprint samples
# Seconds of the probe's own time (lab/probe/clock.py: a busy machine's CPU wait left out, at
# most 3x in wall time): clab does 20,000 in ~0.4 s, libnss-db in ~0.65 s; a 300 ms-per-call
# module is skipped
BUDGET = 1.0
MISS_KEYS = 16  # distinct missing keys per kind, cycled: a cache of misses fills in the warm-up
MISS_ID = 4242424
# The bound, per 1,000 lookups, on resident memory and on heap in use. A leak of the
# smallest glibc allocation (a 32-byte chunk) on every miss, with misses half the mix, is
# 16 KiB per 1,000 lookups (320 KiB over the run). The sound modules measured: RSS +0.0
# (clab) to +2.1 KiB per 1,000 (nss-systemd: pages touched once), heap +0.00 to +0.05 KiB.
# 8 KiB sits between. Heap in use is the sharper figure: a leak reuses memory already
# resident (memleaklab: heap +15 KiB per 1,000, RSS +0), RSS also sees mmap'ed growth.
BOUND_KIB = 8.0
MINIMUM = 2_000  # lookups after the warm-up: at the bound, 16 KiB, four pages of RSS


@check("growth")
def growth(ctx: Context) -> CheckResult:
    """Resident memory (VmRSS), heap in use (mallinfo), threads and mappings over 20,000
    mixed lookups after a 1,000-lookup warm-up: hits and misses, by name and by id, in
    each database, and initgroups; growth is reported per 1,000 lookups.

    Fails when resident memory or heap in use grows by more than 8 KiB per 1,000 lookups
    and is still growing in the second half of the run (a one-off jump, such as a cache
    filled once, is not a leak), or when the thread or mapping count keeps rising. The
    bound: one leaked 32-byte chunk (glibc's smallest) per miss, misses half the mix, is
    16 KiB per 1,000; in the sound modules measured (clab, extrausers, sss, systemd) the
    noise stayed under 2.1 KiB of RSS and 0.05 KiB of heap per 1,000.

    Catches systemd#7596: nss-systemd leaked memory on every getpwnam_r() of a user that
    does not exist; sshd facing password guessers, or any daemon asked about unknown users
    all day, grows until the OOM killer takes it.

    Bounded by a 1 s budget of the probe's own time (a busy machine's wait for a CPU is not
    counted, so a loaded CI runner does not make a fast module look slow): a module too slow
    for 2,000 lookups in it is skipped, with its per-call time."""
    present = ctx.elf.entry_points(ctx.module.name)
    hits = ctx.queries()
    misses = [
        [db, by, key(by, n)]
        for n in range(MISS_KEYS)
        for db, by, fn in (
            ("passwd", "name", "getpwnam_r"),
            ("passwd", "id", "getpwuid_r"),
            ("group", "name", "getgrnam_r"),
            ("group", "id", "getgrgid_r"),
            ("shadow", "name", "getspnam_r"),
        )
        if db in ctx.module.databases and fn in present
    ]
    if not hits + misses:
        return CheckResult("skip", "no point-lookup entry point to call")
    users = [[u.name, u.gid] for u in ctx.module.users] if "initgroups" in ctx.module.databases else []
    value, bad = ctx.direct(
        "growth",
        "growth over many lookups",
        queries=interleave(hits, misses),
        users=users,
        lookups=LOOKUPS,
        warmup=WARMUP,
        every=EVERY,
        budget=BUDGET,
        minimum=MINIMUM,
    )
    if bad:
        return bad
    return judge(value, ctx.module.name, ctx.user.name if ctx.user else "root", collected=ctx.elf.is_go)


STEADY = 8  # threads or mappings gained over the run, rising in every quarter, before it is a leak


def key(by: str, n: int) -> str | int:
    return MISS_ID + n if by == "id" else f"{UNKNOWN_NAME}-{n}"


def interleave(hits: list[list], misses: list[list]) -> list[list]:
    """Hits and misses in turn (as many misses as hits, or all when there are no hits), so
    every stretch of the run has both."""
    if not hits:
        return misses
    out = []
    for i in range(max(len(hits), len(misses))):
        out.append(hits[i % len(hits)])
        if misses:
            out.append(misses[i % len(misses)])
    return out


def per_1000(samples: list, field: str, start: int = 0) -> float:
    """Growth of FIELD per 1,000 lookups from sample START to the last."""
    (n0, f0), (n1, f1) = samples[start], samples[-1]
    return (f1[field] - f0[field]) * 1000 / max(n1 - n0, 1)


def scope(obs: dict) -> str:
    return "" if obs["done"] >= obs["asked"] else f" (of {obs['asked']:,}: the {BUDGET:g} s budget ran out)"


def judge(obs: dict, service: str = "MODULE", user: str = "root", collected: bool = False) -> CheckResult:
    """The verdict on the probe's observations (lab/probe/direct/fds.py: growth). COLLECTED: the
    module brings a garbage-collected runtime (Go), whose own heap and arenas grow until the
    collector's target (golab: RSS 26 -> 70 MiB over 110,000 lookups, then flat), far past
    a 1 s run: there only the C heap (malloc) is judged, and the reason says so."""
    samples = obs["samples"]
    kept = ("done", "warmup", "asked", "per_call", "calls", "samples", "seconds", "waited")
    details = {k: obs.get(k) for k in kept}
    if obs["done"] < MINIMUM:
        ms = obs["per_call"] * 1000
        waited = obs.get("waited")
        busy = f"; the probe also waited {waited:g} s for a CPU, not counted" if waited else ""
        return CheckResult(
            "skip",
            f"{obs['done']} lookups measured after a warm-up of {obs['warmup']} ({ms:,.1f} ms each): "
            f"a {BUDGET:g} s budget cannot fit the {MINIMUM:,} needed to tell a leak of one small "
            f"allocation per lookup from page noise{busy}",
            details,
        )
    mid = len(samples) // 2
    rates = {f: per_1000(samples, f) for f in ("rss", "heap", "threads", "maps")}
    late = {f: per_1000(samples, f, mid) for f in ("rss", "heap", "threads", "maps")}
    first, last = samples[0][1], samples[-1][1]
    details["per_1000"] = {
        "rss_kib": rates["rss"],
        "heap_bytes": rates["heap"],
        **{k: rates[k] for k in ("threads", "maps")},
    }
    claims = []
    mem = [
        (name, rates[f] / unit, late[f] / unit)
        for name, f, unit in (("resident memory", "rss", 1), ("heap in use", "heap", 1024))
    ]
    if collected:
        mem = [m for m in mem if m[0] != "resident memory"]
    leaking = [(name, r, lr) for name, r, lr in mem if r > BOUND_KIB and lr > BOUND_KIB / 2]
    # glibc's own dispatch (NULL on a miss: no exception, nothing kept), so the figure is what
    # any caller sees: four times the lookups, four times the growth. The lab's figure rests on
    # the whole mix and does not say which kind leaked, so the loop rotates over the kinds a
    # caller makes most (and the reproducer says which it leaves out).
    program = (
        "import ctypes, resource; libc = ctypes.CDLL(None); "
        f"q = [lambda n: libc.getpwnam(b'{UNKNOWN_NAME}-%d' % n), lambda n: libc.getpwuid({MISS_ID} + n), "
        f"lambda n: libc.getgrnam(b'{UNKNOWN_NAME}-%d' % n), lambda n: libc.getgrgid({MISS_ID} + n), "
        f"lambda n: libc.getpwnam({json.dumps(user)}.encode())]; "
        "any(q[n % 5](n % 16) and 0 for n in range(100000)); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 'KiB max RSS')"
    )
    reproduce = (
        f"valgrind --leak-check=full getent -s {service} passwd {UNKNOWN_NAME} {user} "
        "(a leak: 'definitely lost', one block per lookup); "
        f"python3 -c {shlex.quote(program)}, then with 400000 (it covers passwd and group misses by name "
        f"and id and passwd hits on {user}; the lab's mix also had group hits, shadow and initgroups: a "
        "leak only there needs getgrnam/getspnam/initgroups in the loop)"
    )
    if leaking:
        claims.append(
            Claim(
                "fail",
                "; ".join(
                    f"{name} grew {r:,.1f} KiB per 1,000 lookups ({lr:,.1f} in the second half)"
                    for name, r, lr in leaking
                )
                + f" over {obs['done']:,}{scope(obs)} mixed lookups after a warm-up of {obs['warmup']:,} "
                f"(RSS {first['rss']:,} -> {last['rss']:,} KiB, heap {first['heap'] / 1024:,.0f} -> "
                f"{last['heap'] / 1024:,.0f} KiB); bound {BOUND_KIB:g} KiB per 1,000"
                + f" ({max(r for _, r, _ in leaking) * 1000 / 1024:,.0f} MiB per million lookups)",
                impact="a long-running caller (sshd, cron, a daemon resolving users all day, nscd) grows "
                "without bound until the OOM killer or a restart",
                reproduce=reproduce,
                control="the lab's loop allocates nothing per call (one buffer and one record per query, "
                "built before the warm-up); the warm-up fills any cache first",
            )
        )
    for field, what in (("threads", "threads"), ("maps", "mappings"))[: 1 if collected else 2]:
        # A leak rises all along; a runtime that adds a worker thread or an arena now and then
        # (Go's scheduler: golab went 7 -> 9 threads) rises a little and stops.
        marks = [samples[round(i * (len(samples) - 1) / 4)][1][field] for i in range(5)]
        steps = [b - a for a, b in itertools.pairwise(marks)]
        if len(samples) >= 5 and all(d > 0 for d in steps) and last[field] - first[field] >= STEADY:
            claims.append(
                Claim(
                    "fail",
                    f"{what} {first[field]} -> {last[field]} over {obs['done']:,} lookups, rising in every "
                    f"quarter ({', '.join(f'{d:+d}' for d in steps)})",
                    impact=f"lookups leave {what} behind: a long-running caller runs out of "
                    + (
                        "threads (EAGAIN from pthread_create) and memory"
                        if field == "threads"
                        else "address space (vm.max_map_count, 65,530 mappings)"
                    ),
                    reproduce=reproduce,
                    control="the lab's loop starts no thread and maps nothing",
                )
            )
    found = verdict(claims, details)
    if found:
        return found
    return CheckResult(
        "pass",
        f"{obs['done']:,}{scope(obs)} mixed lookups ({obs['calls']} calls in rotation, hits and misses) "
        f"after a warm-up of {obs['warmup']:,}: resident memory {rates['rss']:+,.1f} KiB and heap "
        f"{rates['heap'] / 1024:+,.2f} KiB per 1,000 (bound {BOUND_KIB:g}); "
        f"threads {first['threads']} -> {last['threads']}, mappings {first['maps']} -> {last['maps']}"
        + (
            "; resident memory and mappings not judged: a Go runtime grows its own heap until its "
            "collector's target, past what a 1 s run sees"
            if collected
            else ""
        ),
        details,
    )
