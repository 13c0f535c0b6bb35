from __future__ import annotations

import errno
from collections import defaultdict

from lab.checks.base import UNKNOWN_NAME, CheckResult, Claim, Context, check, short, summary, verdict
from lab.elf import ENUMERATION

UNKNOWN_ID = 4242424
BUDGET = 0.3  # seconds for the calls beyond one per entry point (clab: all of them in ~0.1 s)
POINT = {
    "passwd": {"name": "getpwnam_r", "id": "getpwuid_r"},
    "group": {"name": "getgrnam_r", "id": "getgrgid_r"},
    "shadow": {"name": "getspnam_r"},
}
SYSLOG_FACILITIES = {0: "kern", 1: "user", 2: "mail", 3: "daemon", 4: "auth", 10: "authpriv"}


@check("side-effects")
def side_effects(ctx: Context) -> CheckResult:
    """Before and after every entry point the library exports (point lookups with the
    manifest's keys and an unknown one, set/get/end*ent, initgroups_dyn) compares what the
    calling process owns: bytes on fds 1 and 2, every signal's disposition and the signal
    mask, errno after a SUCCESS, umask, cwd, environment, locale, rlimits, the caller's
    descriptors, processes left running, and the ident of the caller's next syslog() line.

    A module runs inside sshd, sudo, systemd and scp. Writing to stdout corrupts `scp` and
    `rsync` over ssh (`scp -t` calls getpwuid() while its stdout is the protocol stream);
    SIGPIPE ignored or signals left blocked are inherited by every exec'd child (Flatcar#605:
    SIGPIPE toggled inside sshd, every session's `yes | head` misbehaved); openlog() in a
    library renames the caller's own syslog lines (pam_tacplus#111: a web server's lines
    became "PAM-tacplus" after the first TACACS+ login; authd#1043: the NSS module's lines
    in every program were tagged "authd"); errno left set after a success confuses callers
    that read it (systemd#9585, ENOENT after a clean getpwent loop)."""
    calls = plan(ctx)
    if not calls:
        return CheckResult("skip", "the library exports no entry point for the manifest's databases")
    value, bad = ctx.direct("side-effects", "entry points under watch", calls=calls, budget=BUDGET)
    if bad:
        return bad
    return judge(value, ctx.module.name)


def plan(ctx: Context) -> list[dict]:
    """Every exported entry point once ("first": called whatever the module's speed), then
    an unknown key per point lookup and the rest of the manifest's keys, while BUDGET lasts."""
    m, present = ctx.module, ctx.elf.entry_points(ctx.module.name)
    first: list[dict] = []
    rest: list[dict] = []
    seen: set[str] = set()
    for db, by, key in ctx.queries():
        call = {"fn": POINT[db][by], "db": db, "key": key}
        (rest if call["fn"] in seen else first).append(call)
        seen.add(call["fn"])
    for db, fns in POINT.items():
        for by, fn in fns.items():
            if db in m.databases and fn in present:
                call = {"fn": fn, "db": db, "key": UNKNOWN_NAME if by == "name" else UNKNOWN_ID}
                (rest if fn in seen else first).append(call)
                seen.add(fn)
    for db in ctx.enumerable():
        set_fn, get_fn, end_fn = ENUMERATION[db]
        first += [{"fn": set_fn, "db": db}, {"fn": get_fn, "db": db}, {"fn": end_fn, "db": db}]
    user = ctx.user
    if "initgroups_dyn" in present and ("initgroups" in m.databases or "group" in m.databases):
        who = {"key": user.name, "gid": user.gid} if user else {"key": UNKNOWN_NAME, "gid": UNKNOWN_ID}
        first.append({"fn": "initgroups_dyn", **who})
    return [{**c, "first": True} for c in first] + rest


# ---------------------------------------------------------------- judgment (pure)


def judge(value: dict, service: str) -> CheckResult:
    """The verdict on the probe's observations (lab/probe/direct/host.py)."""
    library = value.get("library", f"libnss_{service}.so.2")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in value["changes"]:
        groups[what_changed(c)].append(c)
    claims = [claim(key, seen, library, service, value.get("control", {})) for key, seen in groups.items()]
    called = len(value["calls"])
    details = {
        "changes": value["changes"],
        "calls": value["calls"],
        "not_called": value.get("not_called", []),
        "unmeasured": value.get("unmeasured", {}),
        "control": value.get("control", {}),
        "seconds": value.get("seconds"),
        "leftover": value.get("leftover", {}),  # the probe's own, after its cleanup: empty
    }
    found = verdict(
        claims,
        details,
        control=f"the same readings before each of the {called} calls (state put back after each)",
    )
    if found:
        warns = [c.text for c in claims if c.status == "warn"]
        if found.status == "fail" and warns:  # verdict() speaks for the fails; the warns still count
            found.reason += f"; also (warn): {summary(warns, 2)}"
        return found
    skipped = f", {len(details['not_called'])} more not called (budget)" if details["not_called"] else ""
    unmeasured = "; not measured: " + ", ".join(details["unmeasured"]) if details["unmeasured"] else ""
    return CheckResult(
        "pass",
        f"{called} calls of {len({c['fn'] for c in value['calls']})} entry points{skipped}: nothing on fds "
        "1/2; signals, mask, umask, cwd, environment, locale, rlimits, the caller's descriptors, processes "
        f"and syslog ident as before each call; errno 0 after every SUCCESS{unmeasured}",
        details,
    )


def what_changed(c: dict) -> tuple:
    """Changes that are the same defect, whichever entry point showed them."""
    kind = c["kind"]
    if kind == "signal":
        return (kind, c["signal"], c["before"], c["after"])
    if kind == "mask":
        return (kind, tuple(c["blocked"]), tuple(c["unblocked"]))
    if kind in ("env", "rlimit"):
        return (kind, c["name"], short(c["before"]), short(c["after"]))
    if kind in ("umask", "cwd", "locale"):
        return (kind, c["before"], c["after"])
    if kind == "syslog":
        return (kind, c["after"].get("ident"), c["after"].get("facility"))
    if kind == "fd":  # one finding for all closed, one for all replaced (closefdlab closes 3-1023)
        return (kind, c["after"] is None)
    if kind == "errno":
        return (kind, c["errno"], listing(c["fn"]))
    return (kind,)  # stdout, stderr, process: one finding each


def entries(seen: list[dict]) -> str:
    """'getpwnam_r('pyama')', or '20 calls of getpwnam_r, getpwuid_r, getgrnam_r, getgrgid_r (+1 more)'."""
    calls = list(dict.fromkeys(c["entry"] for c in seen))  # one call can change several things
    if len(calls) == 1:
        return calls[0]
    fns = list(dict.fromkeys(c["fn"] for c in seen))
    more = f" (+{len(fns) - 4} more)" if len(fns) > 4 else ""
    return f"{len(calls)} calls of {', '.join(fns[:4])}{more}"


def claim(key: tuple, seen: list[dict], library: str, service: str, control: dict) -> Claim:
    kind, first, where = key[0], seen[0], entries(seen)
    call = snippet(library, service, first.get("call", first))
    if kind == "stdout":
        total = sum(c["bytes"] for c in seen)
        return Claim(
            "fail",
            f"{total} bytes written to the caller's stdout by {where} (e.g. {first['sample'][-60:]!r})",
            impact="a program's stdout is its data: `scp -t`, the remote end of every scp, calls getpwuid() "
            "for its user while stdout is the protocol stream (and rsync maps owner names the same way), so "
            "copies to this host break",
            reproduce=f'python3 -c "{call}" | od -c | head -3',
            control="the lab's channel is not fd 1; fd 1 was the lab's capture file, its size read right "
            "before and right after each call: the bytes arrived during the module's call",
        )
    if kind == "stderr":
        total = sum(c["bytes"] for c in seen)
        return Claim(
            "warn",
            f"{total} bytes written to the caller's stderr by {where} (e.g. {first['sample'][-60:]!r})",
            impact="noise in every program's error output (`id`, `ls -l`, cron mails, ssh sessions); no "
            "caller's data stream is corrupted",
            reproduce=f'python3 -c "{call}" 2>&1 >/dev/null | od -c | head -3',
        )
    if kind == "signal":
        return signal_claim(first, where, call, control)
    if kind == "mask":
        return mask_claim(first, where, call, control)
    if kind == "syslog":
        return syslog_claim(first, where, call)
    if kind == "errno":
        return errno_claim(first, where, library, service)
    if kind == "fd":
        fds = sorted({c["fd"]: c for c in seen}.values(), key=lambda c: c["fd"])
        what = "closed" if first["after"] is None else "pointing elsewhere"
        listed = ", ".join(
            f"{c['fd']} ({short(c['before'])}" + (")" if c["after"] is None else f" -> {short(c['after'])})")
            for c in fds[:4]
        )
        more = f" (+{len(fds) - 4} more)" if len(fds) > 4 else ""
        return Claim(
            "warn",
            f"{len(fds)} of the caller's descriptors {what} after {where}: {listed}{more}",
            impact=IMPACT["fd"],
            reproduce=f'python3 -c "{measure("fd", first, "before")}; {call}; '
            f'{measure("fd", first, "after")}"',
            control="only descriptors the caller had open before the first call count; the module's own come "
            "and go",
        )
    if kind == "process":
        listed = "; ".join(f"pid {c['pid']} {c['process']}" for c in seen[:3])
        return Claim(
            "warn",
            f"{len(seen)} process(es) started by {where} still there after the call, running or unreaped "
            f"({listed}); the lab killed them",
            impact="a process of the module's outlives the lookup inside every caller (sshd, cron, a "
            "container's init), holding the caller's descriptors and keeping its pipes open",
            reproduce=f"python3 -c \"{call}; import os; os.system('ps --ppid %d' % os.getpid())\"",
        )
    before, after = change_text(first)
    return Claim(
        "warn",
        f"{describe(first)} {before} -> {after} after {where}",
        impact=IMPACT[kind],
        reproduce=f'python3 -c "{measure(kind, first, "before")}; {call}; {measure(kind, first, "after")}"',
        control=f"read again before each call (the lab puts the caller's state back after each): {before}",
    )


IMPACT = {
    "umask": "files the caller creates after the lookup get other permissions than it asked for",
    "cwd": "the caller's relative paths resolve elsewhere after the lookup",
    "env": "the variable goes to every program the caller execs afterwards; setenv in a library races "
    "with getenv in the caller's other threads",
    "locale": "the caller's number, date and character handling changes under it after a lookup",
    "rlimit": "the caller's limits (and its children's) change after a lookup",
    "fd": "the caller's descriptor is gone or points elsewhere: its next read or write fails with EBADF or "
    "reaches another file",
}


def describe(c: dict) -> str:
    kind = c["kind"]
    if kind in ("env", "rlimit"):
        return f"{'environment variable' if kind == 'env' else ''} {c['name']}".strip()
    return kind


def change_text(c: dict) -> tuple[str, str]:
    return tuple("unset" if c[k] is None else short(c[k]) for k in ("before", "after"))


def measure(kind: str, c: dict, tag: str) -> str:
    """A python3 statement printing what KIND measures (C-level: os.environ is a startup copy)."""
    lead = f"print('{tag}:', end=' '); "
    if kind == "umask":
        return lead + "import os; m=os.umask(0); os.umask(m); print(oct(m))"
    if kind == "cwd":
        return lead + "import os; print(os.getcwd())"
    if kind == "env":
        return (
            lead
            + "import ctypes; g=ctypes.CDLL(None).getenv; g.restype=ctypes.c_char_p; "
            + f"print(g(b'{c['name']}'))"
        )
    if kind == "locale":
        return (
            lead
            + "import ctypes; s=ctypes.CDLL(None).setlocale; s.restype=ctypes.c_char_p; print(s(6, None))"
        )
    if kind == "rlimit":
        return lead + f"import resource; print(resource.getrlimit(resource.{c['name']}))"
    return (
        lead
        + "import os; print(sorted((f, os.readlink('/proc/self/fd/'+f)) "
        + "for f in os.listdir('/proc/self/fd')))"
    )


def signal_claim(c: dict, where: str, call: str, control: dict) -> Claim:
    sig, child, before_child = c["signal"], c.get("child", {}), control.get("spawn", {})
    text = f"{sig} {c['before']} -> {c['after']} after {where}"
    exec_sh = (
        "import os; os.execv('/bin/sh', ['sh', '-c', 'grep -E ^Sig[IB] /proc/self/status; yes | head -n1'])"
    )
    pipe = "import signal; signal.signal(signal.SIGPIPE, signal.SIG_DFL); "
    if (
        c["after"] == "SIG_IGN"
        and sig in child.get("ignored", [])
        and sig not in before_child.get("ignored", [])
    ):
        inherited = f"; a fork+exec'd child then starts with {sig} ignored (SigIgn of its /proc/self/status)"
        if sig == "SIGPIPE":
            return Claim(
                "fail",
                text + inherited,
                impact="every program the caller starts afterwards (sshd's sessions, a shell's pipelines) "
                "keeps SIGPIPE ignored: `yes | head -1` prints 'Broken pipe' errors instead of ending "
                "quietly, producers in pipelines run on (Flatcar#605)",
                reproduce=f'python3 -c "{pipe}{call}; {exec_sh}"',
                control=f"the same child spawned before the first call: {sig} not ignored "
                f"(ignored: {before_child.get('ignored')})",
            )
        return Claim(
            "warn",
            text + inherited,
            impact=f"every program the caller starts afterwards ignores {sig}, as under nohup",
            reproduce=f'python3 -c "{pipe}{call}; {exec_sh}"',
            control="the same child spawned before the first call did not ignore it",
        )
    if sig == "SIGCHLD" and child.get("wait") == "ECHILD" and before_child.get("wait") == "ok":
        return Claim(
            "fail",
            f"{text}; the caller's waitpid() for a child it spawned then fails with ECHILD (the child was "
            "reaped behind its back)",
            impact="every program that forks and waits after a lookup (a shell, sshd, sudo, a daemon's "
            "process manager) loses its children's exit status: waitpid() says ECHILD",
            reproduce=f'python3 -c "{call}; import os, time; p=os.fork(); p or os._exit(3); time.sleep(0.2); '
            'print(os.waitpid(p, 0))"',
            control="the same spawn and waitpid() before the first call got the child's status",
        )
    return Claim(
        "warn",
        text,
        impact=f"the caller's own {sig} handling is replaced inside its process after a lookup; no caller "
        "was shown to break here",
        reproduce=f'python3 -c "{pipe}{call}; import ctypes; b=ctypes.create_string_buffer(512); '
        f'ctypes.CDLL(None).sigaction({SIGNUMS.get(sig, sig)}, None, b); print(b.raw[:8])"',
    )


SIGNUMS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGCHLD": 17}


def mask_claim(c: dict, where: str, call: str, control: dict) -> Claim:
    child, before_child = c.get("child", {}), control.get("spawn", {})
    blocked = c["blocked"]
    text = f"signals left blocked after {where}: {', '.join(blocked)}" if blocked else ""
    if c["unblocked"]:
        text += ("; " if text else "") + f"unblocked by {where}: {', '.join(c['unblocked'])}"
    # cat exec'd directly, as the lab's child: a shell (dash, bash) clears its mask at startup,
    # most programs do not; the grep runs in the maintainer's shell, outside the caller
    exec_sh = "import os; os.execvp('cat', ['cat', '/proc/self/status'])"
    inherited = [
        s for s in blocked if s in child.get("blocked", []) and s not in before_child.get("blocked", [])
    ]
    if inherited:
        return Claim(
            "fail",
            f"{text}; a fork+exec'd child then starts with {', '.join(inherited)} blocked (SigBlk of its "
            "/proc/self/status)",
            impact="the caller's thread, and every program it execs afterwards that does not clear its mask "
            f"(cat here; shells do clear it), no longer gets {', '.join(inherited)}: "
            + "; ".join(BLOCKED.get(s, f"{s} stays pending") for s in inherited),
            reproduce=f'python3 -c "{call}; {exec_sh}" | grep ^SigBlk',
            control=f"the same child spawned before the first call: blocked {before_child.get('blocked')}",
        )
    return Claim(
        "warn",
        text,
        impact="the calling thread's signal mask differs after the lookup; no exec'd child was shown to "
        "inherit it",
        reproduce=f'python3 -c "{call}; {exec_sh}" | grep ^SigBlk',
    )


# What a program that keeps a blocked signal blocked no longer does when it is sent.
BLOCKED = {
    "SIGTERM": "`kill` (SIGTERM) and systemd's stop leave it running",
    "SIGINT": "Ctrl-C does not stop it",
    "SIGHUP": "a hangup or a reload request (SIGHUP) does not reach it",
    "SIGQUIT": "Ctrl-\\ does not stop it",
    "SIGCHLD": "SIGCHLD-driven reaping of its children stalls",
    "SIGALRM": "alarm()-based timeouts never fire",
    "SIGPIPE": "a write to a closed pipe fails with EPIPE instead of ending it (`yes | head` runs on)",
    "SIGUSR1": "its SIGUSR1 requests (log reopening, status) are not handled",
    "SIGUSR2": "its SIGUSR2 requests are not handled",
}


def syslog_claim(c: dict, where: str, call: str) -> Claim:
    before, after = c["before"], c["after"]

    def tag(s: dict) -> str:
        return f"{s.get('ident')!r} ({SYSLOG_FACILITIES.get(s.get('facility'), s.get('facility'))})"

    return Claim(
        "fail",
        f"the caller's next syslog() line after {where} is tagged {tag(after)}, not {tag(before)}: "
        f"{after.get('line')!r}",
        impact="every program that resolves a user through the module (sshd, sudo, cron) logs its own lines "
        "under the module's name and facility from then on: alerts and log filters on the program's name "
        "miss them (pam_tacplus#111: a web server's lines became 'PAM-tacplus' after one login)",
        reproduce=f'python3 -c "{call}; import ctypes; '
        "ctypes.CDLL(None).syslog(6, b'%s', b'nsslab marker')\"; journalctl -n 5 | grep 'nsslab marker'"
        "  # writes one 'nsslab marker' line into this host's real journal",
        control=f"the same syslog() before the first call: {before.get('line')!r}",
    )


def errno_claim(c: dict, where: str, library: str, service: str) -> Claim:
    name = c.get("name") or errno.errorcode.get(c["errno"], str(c["errno"]))
    glibc = (
        "glibc's set/get/end*ent hand errno to the caller as the module left it, but errno means nothing "
        "after a success: only a caller that reads it without a failure sees it (as systemd#9585's "
        "getpwent() test program did)"
        if listing(c["fn"])
        else "glibc's getpwnam_r and its siblings set errno to 0 after a SUCCESS (nss/getXXbyYY_r.c): "
        "no caller going through glibc sees it"
    )
    lib = library.replace("'", "")
    return Claim(
        "warn",
        f"errno {name} ({c['errno']}) left set after a SUCCESS of {where}",
        impact=glibc,
        reproduce=f"python3 -c \"import ctypes as C; l=C.CDLL('{lib}', use_errno=True); "
        f'{call_only(c.get("call", c), service)}; print(r, C.get_errno())"',
    )


def listing(fn: str) -> bool:
    return fn.startswith(("set", "end")) or fn.endswith("ent_r")


# ---------------------------------------------------------------- reproducers


def snippet(library: str, service: str, c: dict) -> str:
    """A python3 statement list (for -c "...") that calls C's entry point the way glibc does."""
    return f"import ctypes as C; l=C.CDLL('{library}'); " + call_only(c, service)


def call_only(c: dict, service: str) -> str:
    fn, f = c["fn"], f"l._nss_{service}_{c['fn']}"
    entry_key = key_arg(c)
    if fn.startswith("set"):
        return f"r={f}(1)"
    if fn.startswith("end"):
        return f"r={f}()"
    setup = "s=C.create_string_buffer(256); b=C.create_string_buffer(65536); e=C.c_int(); "
    if fn == "initgroups_dyn":
        gid = c.get("gid", 0)
        return (
            "m=C.CDLL(None); m.malloc.restype=C.c_void_p; g=C.c_void_p(m.malloc(64)); n=C.c_long(1); "
            f"z=C.c_long(16); e=C.c_int(); r={f}({entry_key}, C.c_uint({gid}), C.byref(n), C.byref(z), "
            "C.byref(g), C.c_long(-1), C.byref(e))"
        )
    if fn.endswith("ent_r"):
        set_fn = f"l._nss_{service}_set{fn[3:-5]}ent"
        return f"{setup}{set_fn}(1); r={f}(s, b, 65536, C.byref(e))"
    return f"{setup}r={f}({entry_key}, s, b, 65536, C.byref(e))"


def key_arg(c: dict) -> str:
    key = c.get("key", c.get("entry", ""))
    if isinstance(key, int):
        return f"C.c_uint({key})"
    text = repr(str(key))
    if any(ch in text for ch in '"$`\\') or not str(key).isascii():  # nothing the shell's "..." would touch
        return f"bytes.fromhex('{str(key).encode().hex()}')"
    return "b" + text
