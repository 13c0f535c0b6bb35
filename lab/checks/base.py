"""What every check shares: its context, its outcome, and reading the probe's answers."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lab.elf import ENUMERATION, ElfInfo, lib_names
from lab.forensics import OBSERVED, Diagnosis, diagnose
from lab.forensics.causes import signal_name
from lab.module import Group, Module, User
from lab.results import CheckResult
from lab.targets.target import Target

UNKNOWN_NAME = "nsslab-no-such-entry"
DIRECT_TIMEOUT = 90.0  # a step of direct entry-point calls (see Context.direct)


def forensic(diagnosis: Diagnosis | None, raw: dict | None, step: str | None = None) -> dict | None:
    """The evidence a report carries: the named cause, its proof, and the raw material."""
    if diagnosis is None:
        return None
    return diagnosis.as_dict() | {"step": step, "raw": raw}


@dataclass
class Context:
    target: Target
    module: Module
    elf: ElfInfo
    step_timeout: float = 20.0  # a step that answers nothing by then is a hang
    quick: float = 0.5  # see lab.probe.hangwatch.HangWatch
    slow: float = 5.0

    @property
    def user(self) -> User | None:
        return self.module.users[0] if self.module.users else None

    @property
    def group(self) -> Group | None:
        return self.module.groups[0] if self.module.groups else None

    def step(
        self,
        id: str,
        calls: list[dict],
        before: list[dict] | None = None,
        fork: bool = False,
        repeat: int = 1,
        timeout: float | None = None,
    ) -> dict:
        return {
            "id": id,
            "before": before or [],
            "calls": calls,
            "fork": fork,
            "repeat": repeat,
            "timeout": timeout or self.step_timeout,
            "quick": self.quick,
            "slow": self.slow,
        }

    def queries(self) -> list[list]:
        """A point lookup per manifest entry, by name and by id, for the entry points the
        library has: [database, "name"|"id", key]."""
        m, present = self.module, self.elf.entry_points(self.module.name)
        out: list[list] = []
        for db, entries, fns in (
            ("passwd", m.users, {"name": "getpwnam_r", "id": "getpwuid_r"}),
            ("group", m.groups, {"name": "getgrnam_r", "id": "getgrgid_r"}),
            ("shadow", m.shadow, {"name": "getspnam_r"}),
        ):
            if db not in m.databases:
                continue
            for e in entries:
                for by, fn in fns.items():
                    if fn in present:
                        key = e.name if by == "name" else e.uid if db == "passwd" else e.gid
                        out.append([db, by, key])
        # What real callers ask beyond the manifest: `id` and `ls -l` look up each user's
        # primary group by gid, su and sshd (pam_unix) each user's shadow entry. An answer
        # there gets the same sweeps; a NOTFOUND there is no finding.
        extra: list[list] = []
        if "group" in m.databases and "getgrgid_r" in present:
            extra += [["group", "id", u.gid] for u in m.users]
        if "shadow" in m.databases and "getspnam_r" in present:
            extra += [["shadow", "name", u.name] for u in m.users]
        return out + [list(q) for q in dict.fromkeys(map(tuple, extra)) if list(q) not in out]

    def listings(self) -> dict[str, str | None]:
        """Per manifest database with a listing in principle (not initgroups): None when the
        checks may count on its listing (`getent passwd`, compgen -u), else why not. A
        listing is the library's to offer: `enumerable = false`, or no set/get/end*ent
        exported, means the checks leave it out instead of failing for it."""
        present = self.elf.entry_points(self.module.name)
        out: dict[str, str | None] = {}
        for db in self.module.databases:
            trio = ENUMERATION[db]
            if not trio:
                continue
            if not self.module.enumerable:
                out[db] = "the manifest says enumerable = false"
            elif not set(trio) <= present:
                missing = [e for e in trio if e not in present]
                out[db] = f"the library exports no {'/'.join(missing)}"
            else:
                out[db] = None
        return out

    def enumerable(self) -> list[str]:
        """The databases whose listing the checks may drive (see listings())."""
        can = self.listings()
        return [db for db in ("passwd", "group", "shadow") if db in can and can[db] is None]

    def together(self, *queries: Callable[[], Any]) -> list[Any]:
        """Runs QUERIES (each its own probe workers, sharing nothing) at once; their results in order."""
        if self.target.lanes <= 1:
            return [q() for q in queries]
        with ThreadPoolExecutor(max_workers=len(queries), thread_name_prefix="query") as pool:
            return list(pool.map(lambda q: q(), queries))

    def direct(self, test: str, what: str, **spec: Any) -> tuple[Any, CheckResult | None]:
        """Runs the probe's direct TEST (lab.probe.entrypoints, lab.probe.direct) on the library
        in a fresh worker. Returns its observations, or the outcome when the worker hung, crashed
        or exited."""
        call = {"fn": f"nss:{test}", "library": self.target.module_path, "service": self.module.name, **spec}
        # Dozens of calls in one step: a module that is slow in every call (a network round
        # trip) needs more than one lookup's bound. A real hang is still declared in 0.5 s.
        timeout = max(self.step_timeout, DIRECT_TIMEOUT)
        result = self.target.scenario([self.step(test, [call], timeout=timeout)])[0]
        bad = judge(result, self.module.name, what)
        if bad:
            return None, bad
        got = answers(result)
        if not got or not got[0].get("ok"):
            return None, CheckResult("error", f"{what}: {got[0].get('error') if got else 'no answer'}")
        return got[0]["value"], None

    def first_lookup(self) -> dict:
        """A lookup that goes through the module (and so loads it)."""
        if "passwd" in self.module.databases:
            return {"fn": "getpwnam", "arg": self.user.name if self.user else UNKNOWN_NAME}
        return {"fn": "getgrnam", "arg": self.group.name if self.group else UNKNOWN_NAME}

    def entry_calls(self) -> list[dict]:
        """One call per NSS entry point glibc would use, for the databases served."""
        m, u, g = self.module, self.user, self.group
        calls = []
        if "passwd" in m.databases:
            calls += [
                {"fn": "getpwnam", "arg": u.name if u else UNKNOWN_NAME},
                {"fn": "getpwuid", "arg": u.uid if u else 4242424},
                {"fn": "getpwall"},
            ]
        if "group" in m.databases:
            calls += [
                {"fn": "getgrnam", "arg": g.name if g else UNKNOWN_NAME},
                {"fn": "getgrgid", "arg": g.gid if g else 4242424},
                {"fn": "getgrall"},
            ]
        if u and ("initgroups" in m.databases or "group" in m.databases):
            calls.append({"fn": "getgrouplist", "arg": u.name, "gid": u.gid})
        return calls


Check = Callable[[Context], CheckResult]
REGISTRY: dict[str, Check] = {}


def check(id: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        REGISTRY[id] = fn
        return fn

    return register


# ---------------------------------------------------------------- reading probe results


def label(call: dict) -> str:
    if call["fn"].startswith("nss:"):
        return f"the direct {call['fn'][4:]} calls"
    arg = call.get("arg")
    return f"{call['fn']}({arg!r})" if arg is not None else f"{call['fn']}()"


def in_progress(result: dict) -> dict | None:
    """The call that had begun but not returned when the step ended."""
    pending = None
    for ev in result.get("events", []):
        if ev.get("ev") == "begin":
            pending = ev
        elif ev.get("ev") == "call":
            pending = None
    return pending


def describe_hang(hang: dict) -> str:
    """'1 thread parked in futex (self) for 0.5 s; libnss_golab.so.2 mapped'."""
    procs = hang.get("processes", [])
    if not procs:
        return "no answer"
    p = procs[-1]  # the deepest process: the one that is stuck, not its waiting parent
    waits = sorted({f"{t.get('call') or t.get('wchan') or '?'} ({t.get('wait')})" for t in p["tasks"]})
    mods = ", ".join(lib_names(p.get("nss_modules", []))) or "no NSS module"
    return (
        f"{p['threads']} thread(s) stuck in {', '.join(waits)} for "
        f"{hang.get('stuck_seconds', '?')} s; {mods} mapped"
    )


def judge(result: dict, module: str, where: str = "") -> CheckResult | None:
    """The non-pass outcome of a probe step (hang, crash, error), or None if it returned.
    A hang or crash carries its diagnosis (lab.forensics) as evidence; so does what the
    probe saw the module do to its caller's process while the step still returned (a signal
    to the parent, a process left running, a child reaped under the caller): a fail, since
    the caller that meets it breaks."""
    pending = in_progress(result)
    doing = f"{label(pending)} in the {pending['where']}" if pending else "the step"
    if pending and result.get("progress"):  # a long direct call notes where it is
        doing += f", at {result['progress']}"
    prefix = f"{where}: " if where else ""
    details = {"step": result.get("id"), "seconds": result.get("seconds")}
    if result.get("progress"):  # the direct call's last note: where in the step it ended
        details["progress"] = result["progress"]
    raw = result.get("crash") or result.get("hang")
    diagnosis = diagnose(result, module)
    evidence = forensic(diagnosis, raw, result.get("id"))
    cause = diagnosis.cause if diagnosis else None
    if diagnosis and cause in OBSERVED:
        details["observed"] = diagnosis.data
    if result.get("leftovers"):  # said whatever the outcome: the lab killed them
        details["leftovers"] = result["leftovers"]
    if result["outcome"] == "hang":
        reason = f"{prefix}{doing} never returned: {describe_hang(result['hang'])}"
        return CheckResult("hang", reason, details, evidence)
    if result["outcome"] == "timeout":
        return CheckResult(
            "hang",
            f"{prefix}{doing} gave no answer within {result['timeout']:g} s "
            "(threads were not provably stuck: slow or waiting outside)",
            details,
            evidence,
        )
    child_exit = next((e["code"] for e in result["events"] if e.get("ev") == "child-exit" and e["code"]), 0)
    code = result.get("code", 0)
    for who, c in (("forked child", child_exit), ("process", code)):
        if c < 0:
            details["stderr"] = result.get("stderr", "")
            glibc = [line for line in details["stderr"].splitlines() if "glibc" in line.lower()]
            extra = f" ({glibc[-1].strip()})" if glibc else ""
            if cause == "signals-own-group":  # the sentinel heard it: the module sent it
                extra += f": {diagnosis.explanation}"
            return CheckResult(
                "crash", f"{prefix}{who} killed by {signal_name(-c)} during {doing}{extra}", details, evidence
            )
    if pending and result["outcome"] == "exited":
        details["stderr"] = result.get("stderr", "")
        said = (details["stderr"].strip().splitlines() or [""])[-1]
        who, status = ("forked child", child_exit) if pending["where"] == "child" else ("process", code)
        text = f"{who} exited with status {status} inside {doing}"
        if cause == "exit-in-module":  # which call, from the frames at exit_group
            d = diagnosis.data
            text += f": {d['function']} called {d['call']}({d['status']})"
        return CheckResult(
            "crash",
            f"{prefix}{text}" + (f" (it printed: {said.strip()})" if said else ""),
            details,
            evidence,
        )
    if cause in OBSERVED:  # the step returned, but its caller would not have
        return CheckResult("fail", f"{prefix}{diagnosis.explanation}", details, evidence)
    if code != 0:
        last = (result.get("stderr", "").strip().splitlines() or ["no message"])[-1]
        return CheckResult("error", f"{prefix}probe failed: {last}", details)
    return None


def answers(result: dict) -> list[dict]:
    return [e for e in result.get("events", []) if e.get("ev") == "call"]


def summary(problems: list[str], limit: int = 3) -> str:
    """The first problems in full, then how many more."""
    more = len(problems) - limit
    return "; ".join(problems[:limit]) + (f" (+{more} more)" if more > 0 else "")


# errno values with which a module says its backend (a daemon, a socket, PID 1) is not there
BACKEND_DOWN = {
    errno.ENOENT,
    errno.ESRCH,
    errno.ECONNRESET,
    errno.ETIMEDOUT,
    errno.ECONNREFUSED,
    errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
}


def backend_down(status: str, code: int) -> str:
    """A plain statement when UNAVAIL's errno says the backend is missing in this target."""
    if status != "UNAVAIL" or code not in BACKEND_DOWN:
        return ""
    return f" (errno {code}, {os.strerror(code)}: the module's backend does not answer in this target)"


@dataclass
class Claim:
    """One thing a check found and what it rests on, before the check's claims become one verdict."""

    status: str  # fail: a real caller breaks; warn: no real caller meets it
    text: str
    impact: str
    reproduce: str | None = None
    control: str | None = None
    scripts: dict[str, str] = field(default_factory=dict)


def verdict(claims: list[Claim], details: dict, control: str | None = None) -> CheckResult | None:
    """Fails before warns; the first claim of that status speaks for the verdict (its impact,
    reproducer, control), the reason lists them all. None when nothing was found."""
    for status in ("fail", "warn"):
        chosen = [c for c in claims if c.status == status]
        if chosen:
            first = chosen[0]
            return CheckResult(
                status,
                summary([f.text for f in chosen]),
                details,
                impact=first.impact,
                reproduce=first.reproduce,
                control=first.control or control,
                scripts=first.scripts,
            )
    return None


def brief(names: list, first: int = 4) -> str:
    """A count and the first few: a directory's listing can hold 50,000 names."""
    if len(names) <= first:
        return repr(list(names))
    return f"{len(names)} entries ({', '.join(map(str, names[:first]))} …)"


def differences(got: dict | None, want: dict | None, word: str = "want") -> str:
    """ "home '/' (want '/home/pyama')" for the fields where two entries differ."""
    if got is None or want is None:
        return f"{got!r} ({word} {want!r})"
    return ", ".join(
        f"{k} {short(got.get(k))} ({word} {short(want.get(k))})" for k in want if got.get(k) != want.get(k)
    )


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- expected answers


def expected(module: Module, call: dict) -> Any:
    """What the manifest says CALL must return; None when the manifest does not say."""
    fn, arg = call["fn"], call.get("arg")
    users = {u.name: u for u in module.users}
    groups = {g.name: g for g in module.groups}
    if fn == "getpwnam" and arg in users:
        return user_dict(users[arg])
    if fn == "getpwuid":
        return next((user_dict(u) for u in module.users if u.uid == arg), None)
    if fn == "getgrnam" and arg in groups:
        return group_dict(groups[arg])
    if fn == "getgrgid":
        return next((group_dict(g) for g in module.groups if g.gid == arg), None)
    if fn == "getgrouplist" and arg in users:
        return module.gids_of(users[arg])
    return None


def user_dict(u: User) -> dict:
    return {"name": u.name, "uid": u.uid, "gid": u.gid, "gecos": u.gecos, "home": u.home, "shell": u.shell}


def group_dict(g: Group) -> dict:
    return {"name": g.name, "gid": g.gid, "members": sorted(g.members)}


def wrong_answer(module: Module, answer: dict) -> str | None:
    """Why ANSWER (a probe call event) is wrong, or None when it is right."""
    call = {"fn": answer["fn"], "arg": answer.get("arg")}
    if not answer.get("ok"):
        if answer.get("notfound") and (
            not module.has_expectations or call["arg"] == UNKNOWN_NAME or expected(module, call) is None
        ):
            return None
        return f"{label(call)} failed: {answer.get('error')}"
    value = answer["value"]
    if answer["fn"] in ("getgrnam", "getgrgid"):
        value = {**value, "members": sorted(value["members"])}
    if answer["fn"] in ("getpwall", "getgrall") and module.has_expectations:
        names = {e["name"] for e in value}
        want = module.users if answer["fn"] == "getpwall" else module.groups
        missing = [e.name for e in want if e.name not in names]
        return f"{label(call)} is missing {missing}" if missing else None
    if not module.has_expectations:
        return None
    want = expected(module, call)
    if want is not None and value != want:
        return f"{label(call)} returned {value}, the manifest says {want}"
    return None
