from __future__ import annotations

import json
import re
import shlex

from lab.checks.base import UNKNOWN_NAME, CheckResult, Claim, Context, brief, check, summary, verdict
from lab.probe.direct.fds import AFTER_CLOSE

LOOKUPS = 1000  # in one thread: the descriptor count must stay flat
THREADS = 200  # thread create -> one lookup -> join cycles
BUDGET = 3.0  # seconds of calls in the probe (clab needs ~0.2 s; a 300 ms-per-call module gets ~10 calls)
WAKE = 6.0  # seconds the reuse step waits for the module's own threads to wake (Go: golab's 5 s timer)
MISS_ID = 4242424
EMFILE_DEFAULT = 1024  # the soft RLIMIT_NOFILE most daemons run with (systemd's default, sshd's)


@check("descriptors")
def descriptors(ctx: Context) -> CheckResult:
    """What the module does with descriptors in the process it runs in.

    (a) A program the caller fork+execs after lookups and after the listing must inherit
    only 0, 1 and 2: a descriptor the module keeps without FD_CLOEXEC goes to every shell
    sshd starts and every job cron runs (compute-image-packages#838: cache_oslogin's
    fopen() without "e" leaked /etc/oslogin_passwd.cache). A descriptor kept WITH
    FD_CLOEXEC (a socket to a daemon, a cache file) is normal and only named.
    (b) The count must stay flat over 1,000 lookups and over 200 thread
    create->lookup->join cycles (SSSD#6328, #7189: libnss_sss opened a socket per thread
    and never closed it; threaded daemons died of EMFILE).
    (c) A caller that closed every descriptor from 3 up and opened its own at the same
    numbers must get them back untouched after more lookups (SSSD#6592: the next
    getpwnam() replaced a daemon's TCP socket with sssd's Unix socket; SSSD#6986:
    sss_nss_mc_destroy_ctx() closed it). A thread of the module blocked on one of those
    numbers (Go's netpoller in epoll_pwait until its next timer) is waited for: when it wakes
    it is the caller's file it polls, and a Go runtime aborts ("runtime: netpoll failed",
    golang/go#11498).

    Bounded by a time budget: a slow module is judged on the calls that fitted, and the
    reason says how many."""
    hits = ctx.queries()
    present = ctx.elf.entry_points(ctx.module.name)
    misses = [
        [db, by, key]
        for db, by, key, fn in (
            ("passwd", "name", UNKNOWN_NAME, "getpwnam_r"),
            ("passwd", "id", MISS_ID, "getpwuid_r"),
            ("group", "name", UNKNOWN_NAME, "getgrnam_r"),
            ("group", "id", MISS_ID, "getgrgid_r"),
            ("shadow", "name", UNKNOWN_NAME, "getspnam_r"),
        )
        if db in ctx.module.databases and fn in present
    ]
    if not hits + misses:
        return CheckResult("skip", "no point-lookup entry point to call")
    value, bad = ctx.direct(
        "descriptors",
        "descriptor checks",
        queries=hits + misses,
        listings=ctx.enumerable(),
        lookups=LOOKUPS,
        threads=THREADS,
        budget=BUDGET,
        wake=WAKE,
    )
    if bad:
        return after_close(bad, reproducer_key(ctx))
    return judge(value, reproducer_key(ctx))


def reproducer_key(ctx: Context) -> str:
    return ctx.user.name if ctx.user else UNKNOWN_NAME


def judge(obs: dict, key: str = UNKNOWN_NAME) -> CheckResult:
    """The verdict on the probe's observations (lab/probe/direct/fds.py: descriptors)."""
    claims = [
        c
        for c in (inherit_claim(obs, key), *growth_claims(obs, key), reuse_claim(obs, key), wait_claim(obs))
        if c
    ]
    details = {
        "phases": obs["phases"],
        "lookups": obs["lookups"],
        "threads": obs["threads"],
        "reuse": obs["reuse"],
        "rlimit": obs["rlimit"],
        "seconds": obs.get("seconds"),
        "inherited": leaks(obs),
        "kept": kept(obs),
        "growth": {k: rise(obs[k]) for k in ("lookups", "threads")},
        "reuse_problems": reuse_problems(obs),
        "waits": obs["reuse"].get("waits", []),
    }
    found = verdict(claims, details)
    if found:
        return found
    return CheckResult("pass", pass_reason(obs), details)


# ---------------------------------------------------------------- (a) inherited across exec


def leaks(obs: dict) -> dict[str, dict[str, str]]:
    """Per phase, the descriptors beyond 0-2 a fork+exec'd helper inherited."""
    return {p["phase"]: p["inherited"].get("fds", {}) for p in obs["phases"] if p["inherited"].get("fds")}


def kept(obs: dict) -> dict[str, str]:
    """Descriptors the module holds with FD_CLOEXEC after all the calls (not inherited)."""
    last = obs["phases"][-1]["held"]
    return {str(fd): e["target"] for fd, e in last.items() if e["cloexec"]}


def inherit_claim(obs: dict, key: str) -> Claim | None:
    found = leaks(obs)
    if not found:
        return None
    phase, fds = next(iter(found.items()))
    what = ", ".join(f"fd {n} ({t})" for n, t in fds.items())
    when = {
        "load": "right after the module was loaded, before any call",
        "lookups": "after its point lookups",
        "listing": "after the listing (set/get/end*ent)",
        "after all": f"after {obs['lookups']['done']} lookups and {obs['threads']['done']} threads",
    }[phase]
    first = next(p for p in obs["phases"] if p["phase"] == phase)
    control = (
        "a helper exec'd right after dlopen, before any call, inherited only 0, 1 and 2"
        if phase != "load"
        else "the lab's own descriptors are all FD_CLOEXEC: its channel (fd 900+) was not inherited"
    )
    program = (
        f"import ctypes, subprocess; libc = ctypes.CDLL(None); {phase_calls(obs, phase, key)}; "
        'subprocess.run(["ls", "-l", "/proc/self/fd/"], close_fds=False)'
    )
    return Claim(
        "fail",
        f"every program the caller execs inherits {what}: a helper fork+exec'd {when} had it "
        f"({first['calls']} calls in that phase)",
        impact="every program a caller fork+execs without closing its descriptors first, as the lab's "
        "helper was (a shell that expanded ~user or showed \\u passes it to every command it runs, a "
        "daemon to its helper scripts), gets the module's descriptor; it stays open as long as they run, "
        "readable (or writable) by code running as another user after setuid",
        reproduce=f"python3 -c {shlex.quote(program)}  # with the module in nsswitch.conf",
        control=control,
    )


LISTINGS = {"passwd": "pw", "group": "gr", "shadow": "sp"}


def lookups(key: str) -> str:
    """glibc's own dispatch through libc (NULL on a miss, no exception): the lab's kinds of
    lookups, a hit or miss by name and misses by id, in passwd and group."""
    k = f"{json.dumps(key)}.encode()"
    return f"libc.getpwnam({k}), libc.getpwuid({MISS_ID}), libc.getgrnam({k}), libc.getgrgid({MISS_ID})"


def listing(dbs: list[str]) -> str:
    return "; ".join(
        f"libc.set{x}ent(); libc.get{x}ent(); libc.end{x}ent()" for x in map(LISTINGS.get, dbs) if x
    )


def phase_calls(obs: dict, phase: str, key: str) -> str:
    """The calls of the phase after which the helper inherited the descriptor."""
    if phase == "listing" and listing(obs.get("listed", [])):
        return listing(obs["listed"])
    if phase == "after all" and listing(obs.get("listed", [])):
        return f"{lookups(key)}; {listing(obs['listed'])}"
    return lookups(key)


# ---------------------------------------------------------------- (b) flat count


def rise(part: dict) -> dict:
    """Descriptors gained over the part, in each half of it."""
    samples = part["samples"]
    if len(samples) < 3:
        return {"total": samples[-1][1] - samples[0][1], "first_half": None, "second_half": None}
    mid = samples[len(samples) // 2]
    return {
        "total": samples[-1][1] - samples[0][1],
        "first_half": mid[1] - samples[0][1],
        "second_half": samples[-1][1] - mid[1],
    }


def growth_claims(obs: dict, key: str) -> list[Claim]:
    out = []
    for part, unit in (("lookups", "lookup"), ("threads", "thread")):
        got = obs[part]
        r = rise(got)
        if not (r["first_half"] and r["first_half"] > 0 and r["second_half"] and r["second_half"] > 0):
            continue  # flat, or one rise that stopped: a descriptor opened once
        rate = r["total"] / got["done"]
        now = got["samples"][-1][1]
        limit = obs["rlimit"]
        to_emfile = (
            f"at the caller's RLIMIT_NOFILE of {limit:,} ({now} open now) open() fails with EMFILE "
            f"after ~{max(limit - now, 0) / rate:,.0f} more {unit}s"
        )
        if limit > EMFILE_DEFAULT:
            to_emfile += f" (a daemon with the usual 1,024: ~{max(EMFILE_DEFAULT - now, 0) / rate:,.0f})"
        new = sorted(set(got["held"]) - set(obs["phases"][0]["held"]), key=int)
        sample = ", ".join(f"fd {fd} {got['held'][fd]['target']}" for fd in new[:3])
        if part == "threads":
            program = (
                f"import ctypes, os, threading; libc = ctypes.CDLL(None); q = lambda: ({lookups(key)}); "
                "ts = [threading.Thread(target=q) for _ in range(200)]; "
                '[(t.start(), t.join()) for t in ts]; print(len(os.listdir("/proc/self/fd")))'
            )
            impact = (
                "a threaded daemon that resolves users in short-lived threads (a web server, a JVM, "
                "sssd's own clients) runs out of descriptors and fails every accept() and open()"
            )
            control = f"{obs['lookups']['done']} lookups in one thread: {rise(obs['lookups'])['total']:+d}"
        else:
            program = (
                f"import ctypes, os; libc = ctypes.CDLL(None); [({lookups(key)}) for _ in range(250)]; "
                'print(len(os.listdir("/proc/self/fd")))'
            )
            impact = (
                "a long-running caller (sshd, nscd, a daemon that looks users up) runs out of descriptors"
            )
            control = (
                "the count (every open descriptor, the lab's included) was taken between calls, and "
                "the lab opens nothing per call: the growth is the module's"
            )
        out.append(
            Claim(
                "fail",
                f"{r['total']:+d} descriptors over {got['done']} {unit} cycles ({rate:.2f} per {unit}, "
                f"still rising in the second half: {r['second_half']:+d}); {to_emfile}"
                + (f"; new: {sample}" if sample else ""),
                impact=impact,
                reproduce=f"python3 -c {shlex.quote(program)}  # with the module in nsswitch.conf",
                control=control,
            )
        )
    return out


# ---------------------------------------------------------------- (c) the caller's own fds


def reuse_problems(obs: dict) -> list[str]:
    """What the module did to each of the caller's files, after the lookups and after the
    listing ("wrote 40 bytes ..., then closed it")."""
    reuse = obs["reuse"]
    held = reuse["module_held"]
    out = []
    for n, states in sorted(reuse["files"].items(), key=lambda x: int(x[0])):
        whose = f" (the module's {held[n]['target']} before the caller closed it)" if n in held else ""
        said, last = [], None
        for got in states:
            text = state_text(got)
            if text and got["state"] != last:
                when = {"listing": " in the listing", "wake": " when its own thread woke"}.get(
                    got.get("after"), ""
                )
                said.append(text + when)
            last = got["state"]
            if last in ("closed", "replaced"):
                break  # the file is gone: what the number holds later is not the caller's
        if said:
            out.append(f"fd {n}{whose}: " + ", then ".join(said))
    return out


def state_text(got: dict) -> str | None:
    state = got["state"]
    if state == "closed":
        return "closed it"
    if state == "replaced":
        return f"closed it (or dup2'd over it): the number now holds {got['now']}"
    if state == "written":
        return (
            f"wrote into it at offset {got['at']} ({got['was']} -> {got['size']} bytes): {got['text'][:60]!r}"
        )
    if state == "moved":
        return f"moved its offset from {got['was']} to {got['offset']}"
    return None


def reuse_claim(obs: dict, key: str) -> Claim | None:
    problems = reuse_problems(obs)
    if not problems:
        return None
    reuse = obs["reuse"]
    untouched = [int(n) for n, s in reuse["files"].items() if all(g["state"] == "intact" for g in s)]
    before = reuse.get("before", {})
    intact_before = sorted(int(n) for n, g in before.items() if g["state"] == "intact")
    if untouched:
        control = (
            "the caller's files at numbers the module never held stayed untouched: "
            f"fds {brief(sorted(untouched))}"
        )
    elif before and len(intact_before) == len(reuse["files"]):
        control = (
            f"all {len(intact_before)} of the caller's files (fds {brief(intact_before)}) were checked right "
            "after it opened them, before the module's calls: same file, content and offset"
        )
    else:
        control = None
    # glibc's own dispatch, a hit and misses (a miss goes past a cache to the daemon), the
    # caller's files with data in them (libnss_sss 2.8 closes a "socket" with unread data);
    # unlinked temporary files, so nothing is left behind; each is shown before and after.
    k = f"{json.dumps(key)}.encode()"
    program = (
        "import ctypes, os, tempfile; libc = ctypes.CDLL(None); "
        f"q = lambda: [libc.getpwnam({k}), libc.getpwuid({MISS_ID}), "
        f"libc.getpwnam({json.dumps(UNKNOWN_NAME)}.encode())]; q(); os.closerange(3, 256); "
        'D = b"caller data\\n" * 8; '
        "mk = lambda t: (os.unlink(t[1]), os.write(t[0], D), os.lseek(t[0], 7, 0), t[0])[-1]; "
        "fds = [mk(tempfile.mkstemp()) for i in range(8)]; ino = {fd: os.fstat(fd).st_ino for fd in fds}; "
        'st = lambda fd: "closed" if not os.path.exists("/proc/self/fd/%d" % fd) else '
        'os.readlink("/proc/self/fd/%d" % fd) if os.fstat(fd).st_ino != ino[fd] else '
        '"written" if os.pread(fd, 4096, 0) != D else "moved" if os.lseek(fd, 0, 1) != 7 else "ok"; '
        'print("before:", [(fd, st(fd)) for fd in fds]); '
        f"q(); {listing(obs.get('listed', [])) or 'libc.setpwent(); libc.getpwent(); libc.endpwent()'}; "
        'print("after:", [(fd, st(fd)) for fd in fds])'
    )
    calls = reuse["calls"] + reuse.get("listing_calls", 0)
    return Claim(
        "fail",
        f"after the caller closed fds 3 and up and opened its own files at those numbers, {calls} calls "
        "into the module touched them: " + summary(problems, 2),
        impact="a daemon that closes its descriptors when it starts (daemonizing) and opens its own at "
        "the same numbers gets its TCP socket, log or database file written to, read from or closed by "
        "the next lookup (SSSD#6592, #6986)",
        reproduce=f"python3 -c {shlex.quote(program)}  # a sound module: every fd 'ok' before and after",
        control=control
        or "no control: the module touched every one of the caller's files, and none was measured "
        "before its calls",
    )


def wait_claim(obs: dict) -> Claim | None:
    """A thread of the module still blocked on a number the caller has reopened, that did not
    wake within the lab's wait: what it does then is unseen, so a warn."""
    reuse = obs["reuse"]
    asleep = [w for w in reuse.get("waits", []) if w.get("woke") is None]
    if not asleep:
        return None
    w = asleep[0]
    was = reuse["module_held"].get(str(w["fd"]), {}).get("target", "?")
    if w["timeout"] is None:
        until = "no timeout"
    elif w["timeout"] > WAKE:
        until = f"a {w['timeout']:.1f} s timeout, longer than the lab's {WAKE:g} s wait"
    else:
        until = f"a {w['timeout']:.1f} s timeout, not seen to end while the lab waited"
    return Claim(
        "warn",
        f"the module's thread {w['tid']} ({w['comm']}) is still blocked in {w['call']} on fd {w['fd']}, its "
        f"{was} until the caller closed fds 3 and up and the caller's file now ({until}): when it wakes "
        "it uses the caller's file",
        impact="none seen: the thread did not wake while the lab waited; a caller that closed its "
        "descriptors and runs on meets whatever the thread does to its file then",
        control=f"fd {w['fd']} was the module's {was} in the descriptor table read right before the caller "
        "closed it; the thread's wait was read from /proc after the caller's file took the number",
    )


def after_close(bad: CheckResult, key: str) -> CheckResult:
    """A crash or hang after the caller closed fds 3 and up and opened its own: the module used
    a number it held (a lookup's code, or its own thread waking), so it is a claim of (c)."""
    if bad.status not in ("crash", "hang") or AFTER_CLOSE not in bad.details.get("progress", ""):
        return bad
    said = [
        line.strip()
        for line in bad.details.get("stderr", "").splitlines()
        if re.search(r"\bfd \d+|^fatal error", line.strip())
    ][:2]
    if said:
        bad.reason += "; the module said: " + ", ".join(repr(line) for line in said)
    k = f"{json.dumps(key)}.encode()"
    program = (
        "import ctypes, os, tempfile, time; libc = ctypes.CDLL(None); "
        f"q = lambda: [libc.getpwnam({k}), libc.getpwuid({MISS_ID}), "
        f"libc.getpwnam({json.dumps(UNKNOWN_NAME)}.encode())]; q(); os.closerange(3, 256); "
        "fds = [(os.unlink(p), fd)[1] for fd, p in (tempfile.mkstemp() for i in range(8))]; q(); "
        f'time.sleep({WAKE:g}); q(); print("alive")'
    )
    bad.impact = (
        "a daemon that resolves a user, then closes its descriptors from 3 up (daemonizing) and opens its "
        "own, is killed by the module's use of a number it held; when the module's own thread is what wakes "
        "on it, no further lookup is needed"
        if bad.status == "crash"
        else "a daemon that resolves a user, then closes its descriptors from 3 up (daemonizing) and opens "
        "its own, freezes in its next call into the module"
    )
    bad.control = (
        "the same process's earlier parts (its point lookups, the listing, 1,000 lookups in one thread, 200 "
        "thread create->lookup->join cycles) ran with the module's descriptors in place; the "
        f"{bad.status} came only after the caller closed them"
    )
    bad.reproduce = (
        f"python3 -c {shlex.quote(program)}  # with the module in nsswitch.conf; a sound one: alive"
    )
    return bad


# ---------------------------------------------------------------- pass


def pass_reason(obs: dict) -> str:
    lookups, threads, reuse = obs["lookups"], obs["threads"], obs["reuse"]
    parts = [
        f"a fork+exec'd program inherited only 0-2 after load, {obs['phases'][1]['calls']} lookups"
        + (f", the listing of {'/'.join(obs['listed'])}" if obs["listed"] else "")
        + " and everything below",
        f"descriptors {count_text(lookups, 'lookups')}, "
        f"{count_text(threads, 'thread create->lookup->join cycles')}",
        f"the caller's own files at fds {brief(reuse['numbers'])} untouched by "
        f"{reuse['calls'] + reuse.get('listing_calls', 0)} calls after it closed 3 and up",
    ]
    woke = [w for w in reuse.get("waits", []) if w.get("woke") is not None]
    if woke:
        parts[-1] += (
            f", nor by the module's {len(woke)} thread(s) that woke from waits on those numbers "
            f"(within {reuse['waited']:g} s)"
        )
    k = kept(obs)
    if k:
        parts.append(
            f"keeps {len(k)} descriptor(s) open with FD_CLOEXEC (not inherited): "
            + ", ".join(f"fd {n} {t}" for n, t in list(k.items())[:3])
        )
    return "; ".join(parts)


def count_text(part: dict, what: str) -> str:
    samples = part["samples"]
    scope = "" if part["done"] >= part["asked"] else f" (of {part['asked']}: the budget ran out)"
    r = rise(part)
    once = f" (one change of {r['total']:+d}, then flat)" if r["total"] else ""
    return f"{samples[0][1]} -> {samples[-1][1]} over {part['done']} {what}{scope}{once}"
