"""A verdict is a claim: fail only where a real caller breaks, warn for a deviation no real
caller meets, and a thread-safety claim only where the same call passes in one thread.
Judgments fed with the figures the probe reports (no target needed)."""

from __future__ import annotations

from types import SimpleNamespace

from lab.checks.base import Context
from lab.checks.enumeration import end_problems
from lab.checks.erange import judge_query
from lab.checks.threads import threads
from lab.module import Group, Module, User
from lab.results import CheckResult

EXPORTS = {"getpwnam_r", "getpwuid_r", "getgrnam_r", "getgrgid_r", "getspnam_r"}


def context(groups: list[Group] | None = None, direct=None) -> Context:
    module = Module(
        name="x",
        library=__import__("pathlib").Path("/nonexistent/libnss_x.so.2"),
        databases=["passwd", "group", "shadow"],
        users=[User("alice", 30001, 30000)],
        groups=groups or [],
    )
    elf = SimpleNamespace(entry_points=lambda name: EXPORTS)
    ctx = Context(target=None, module=module, elf=elf)  # type: ignore[arg-type]
    if direct:
        ctx.direct = direct  # type: ignore[method-assign]
    return ctx


def sweep(kind: str, sizes: list[int], **first) -> dict:
    problem = {"size": sizes[0], "kind": kind, **first}
    last = {**problem, "size": sizes[-1]}
    seen = {"count": len(sizes), "sizes": sizes[:8], "first": problem, "largest": max(sizes), "last": last}
    return {
        "query": "getpwnam_r('alice')",
        "problems": {kind: seen},
        "needed": 40,
        "fitted": 40,
        "tried": 50,
        "reference": {"value": None},
    }


def test_a_status_only_a_zero_byte_buffer_shows_is_a_warn():
    [f] = judge_query(context(), sweep("status", [0], status="NOTFOUND", errno=2))
    assert f["status"] == "warn"
    assert f["impact"].startswith("no real caller") and "every size from 1 up" in f["impact"]
    assert "fits from 40 bytes" in f["text"]


def test_a_status_a_buffer_of_1_kib_or_more_shows_is_a_fail(monkeypatch):
    monkeypatch.setattr("lab.checks.erange.real_caller", lambda ctx, argv, want: ("; glibc: exit 2", True))
    [f] = judge_query(context(), sweep("status", [0, 1024, 2047], status="NOTFOUND", errno=2))
    assert f["status"] == "fail" and "with a 2047-byte buffer" in f["text"] and "glibc: exit 2" in f["text"]
    assert f["reproduce"].endswith("getent -s x passwd alice") and "repro.py" in f["scripts"]


def test_a_write_past_the_buffer_is_a_fail_at_any_size(monkeypatch):
    monkeypatch.setattr("lab.checks.erange.real_caller", lambda ctx, argv, want: ("", None))
    [f] = judge_query(context(), sweep("overflow", [39], bytes=1, status="SUCCESS"))
    assert f["status"] == "fail" and f["impact"].startswith("heap corruption")


def test_threads_claims_nothing_when_one_thread_answers_wrong_too():
    value = {
        "calls": 100,
        "wrong": 7,
        "examples": [],
        "stuck": 0,
        "threads": 8,
        "single": {"calls": 5, "wrong": 2, "examples": [{"query": "q", "got": {"a": 1}, "want": {"a": 2}}]},
    }
    result = threads(context(direct=lambda *a, **k: (value, None)))
    assert result.status == "warn" and "not a thread-safety defect" in result.reason
    assert result.control == "5 single-threaded calls, 2 differing"
    value["single"] = {"calls": 5, "wrong": 0, "examples": []}
    value["examples"] = [{"query": "q", "got": {"a": 1}, "want": {"a": 2}, "status": "SUCCESS"}]
    result = threads(context(direct=lambda *a, **k: (value, None)))
    assert result.status == "fail" and "all answered right" in result.control


def test_a_listing_that_ends_unavail_is_a_warn_and_a_stale_errno_a_fail():
    [unavail] = end_problems("getpwent_r", {"status": "UNAVAIL", "errno": 112}, "getent -s x passwd", [])
    assert unavail.status == "warn"
    [stale] = end_problems("getpwent_r", {"status": "NOTFOUND", "errno": 34}, "getent -s x passwd", [])
    assert stale.status == "fail"
    assert end_problems("getpwent_r", {"status": "NOTFOUND", "errno": 2}, "getent -s x passwd", []) == []


def test_real_callers_questions_are_asked_beyond_the_manifest():
    """alice's primary group 30000 is not declared: `id` asks for it by gid all the same."""
    queries = context().queries()
    assert ["group", "id", 30000] in queries and ["shadow", "name", "alice"] in queries
    declared = context(groups=[Group("staff", 30000)]).queries()
    assert declared.count(["group", "id", 30000]) == 1


def test_the_result_carries_the_claim_to_every_report():
    r = CheckResult("fail", "r", impact="who breaks", control="ran alone", reproduce="getent -s x passwd")
    assert r.claims() == ["impact: who breaks", "control: ran alone", "reproduce: getent -s x passwd"]
    assert r.as_dict()["severity"] == "breaks-caller" and CheckResult("warn", "w").severity == "contract"


def test_nothing_answered_is_a_skip_not_a_pass():
    """A backend that is down answers UNAVAIL everywhere: erange has no buffer handling to judge."""
    from lab.checks.erange import erange

    value = {
        "queries": [
            {"query": "getpwnam_r('alice')", "reference": {"status": "UNAVAIL"}, "problems": {}, "tried": 0},
            {"query": "getpwent_r()", "reference": None, "problems": {}, "tried": 0},
        ]
    }
    result = erange(context(direct=lambda *a, **k: (value, None)))
    assert result.status == "skip" and "UNAVAIL" in result.reason
