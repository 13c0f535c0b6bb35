"""Causes the probe saw happen rather than read from backtraces: a signal and who sent it
(siginfo, read by the monitor and by the sentinel in the worker's process group), a process
still running after the call that started it (/proc, the monitor being the step's
subreaper), a child's exit status taken before its parent's waitpid (ECHILD, and the
SIGCHLD handler's address). Each rests on that one recorded fact and names the call."""

from __future__ import annotations

from lab.forensics.causes import Diagnosis

OBSERVED = {
    "signals-own-group": "the module signalled its caller's whole process group (kill(0, sig))",
    "signals-parent": "the module signalled its caller's parent (kill(getppid(), sig))",
    "outlives-call": "the module started a process that was still running after the call returned",
    "child-reaped-elsewhere": "a SIGCHLD handler took the caller's child: the caller's waitpid() got ECHILD",
}
LAB_CALLS = {"mapped", "threads"}  # the probe's own bookkeeping, never through the module
SI_CODES = {0: "kill()", -1: "sigqueue()", -6: "tgkill()", 128: "the kernel"}


def call_name(call: dict) -> str:
    arg = call.get("arg")
    if call["fn"].startswith("nss:"):
        return f"the direct {call['fn'][4:]} calls"
    return f"{call['fn']}({arg!r})" if arg is not None else f"{call['fn']}()"


def calls_within(result: dict, low: float, high: float) -> list[str]:
    """The calls that were running at some moment in [LOW, HIGH] (CLOCK_MONOTONIC times
    the worker put on each call's begin and answer)."""
    spans, open_calls = [], {}
    for e in result.get("events", []):
        key = (e.get("where"), e.get("fn"), repr(e.get("arg")))
        if e.get("ev") == "begin":
            open_calls[key] = e
        elif e.get("ev") == "call" and key in open_calls:
            spans.append((open_calls.pop(key), e.get("t")))
    spans += [(begin, None) for begin in open_calls.values()]
    return [
        call_name(b)
        for b, end in spans
        if b["fn"] not in LAB_CALLS
        and b.get("t") is not None
        and b["t"] <= high
        and (end is None or end >= low)
    ]


def diagnose_observed(result: dict, name: str) -> Diagnosis | None:
    lib = f"libnss_{name}.so"
    worker = result.get("worker")
    for s in result.get("signals", []):
        if not s.get("by_step"):
            continue
        during = calls_within(result, *s["window"]) or ["the step"]
        who = "the process making the call" if s["from"] == worker else "a process of the step"
        how = SI_CODES.get(s["code"], f"si_code {s['code']}")
        data = {**{k: s[k] for k in ("signal", "to", "from", "code")}, "calls": during}
        fact = f"{s['signal']} from pid {s['from']} ({who}) by {how} during {' or '.join(during)}"
        if s["to"] == "group":
            return Diagnosis(
                "signals-own-group",
                f"{fact} reached the lab's sentinel, which shares nothing with the caller but its "
                f"process group: the module signalled the whole group (kill(0, {s['signal']}) or killpg)",
                [],
                [fact],
                data=data,
            )
        return Diagnosis(
            "signals-parent",
            f"{fact} went to the caller's parent (the lab's monitor, which blocks it and read it with "
            f"sigtimedwait): the module signalled the process that started its caller",
            [],
            [fact],
            data=data,
        )
    left = result.get("leftovers") or []
    if left:
        facts = [leftover_fact(p, result) for p in left]
        calls = sorted({call_name(p["call"]) for p in left if p.get("call")}) or ["the step"]
        held = result.get("held_open") or []
        return Diagnosis(
            "outlives-call",
            f"{' and '.join(calls)} left {len(left)} process(es) running after it returned: "
            + "; ".join(facts)
            + (f"; the caller's {' and '.join(held)} had no EOF when it exited" if held else "")
            + "; the lab killed it",
            [],
            facts,
            data={"leftovers": left, "held_open": held, "calls": calls},
        )
    reaped = next(
        (e for e in result.get("events", []) if e.get("ev") == "child-exit" and e.get("reaped")), None
    )
    if reaped:
        before = [
            call_name(e) for e in result["events"] if e.get("ev") == "call" and e.get("where") == "parent"
        ]
        handler = reaped.get("sigchld") or {}
        where = handler.get("object", "")
        if handler.get("handler") == "SIG_IGN":
            how = "SIGCHLD is now ignored (SIG_IGN), so the kernel discards every child's exit status"
        elif where:
            how = f"the SIGCHLD handler, now at {handler['handler']} in {where}, reaped it first"
        else:
            how = "someone else reaped it first"
        return Diagnosis(
            "child-reaped-elsewhere",
            f"waitpid() for a child forked after {', '.join(before) or 'the module was used'} failed with "
            f"{reaped['reaped']} once the child had exited: {how}",
            [],
            [how],
            data={
                "errno": reaped["reaped"],
                "handler": handler.get("handler"),
                "object": where,
                "in_module": lib in where.rsplit("/", 1)[-1],
                "calls": before,
            },
        )
    return None


def leftover_fact(p: dict, result: dict) -> str:
    what = f"pid {p['pid']} ({p.get('comm') or '?'}"
    if p.get("pgid") != result.get("pgid"):
        what += ", outside the caller's process group"
    if p.get("sid") == p.get("pgid"):
        what += ", in a session of its own"
    what += ")"
    if p.get("after_exit") is not None:
        what += f" still running {p['after_exit']:g} s after the caller exited,"
    if p.get("sleep") is not None:
        what += f" asleep for {p['sleep']:g} s"
    if p.get("holds"):
        names = {
            "channel": "the lab's channel",
            "stdout": "the caller's stdout",
            "stderr": "the caller's stderr",
        }
        what += f", holding {', '.join(names.get(h, h) for h in p['holds'])} open"
    return what
