"""What pytest makes of a verdict (lab.plugin.items.judge), as `nsslab run --expect` judges it."""

from __future__ import annotations

import pytest

from lab.plugin.items import failure_text, judge
from lab.results import CheckResult


@pytest.mark.parametrize(
    ("status", "want", "kind"),
    [
        ("pass", None, "pass"),
        ("warn", None, "warn"),  # a warn breaks no real caller: the item passes, saying so
        ("skip", None, "skip"),
        ("fail", None, "fail"),
        ("hang", None, "fail"),
        ("crash", None, "fail"),
        ("error", None, "fail"),
        ("hang", "hang", "xfail"),  # a known finding, pinned in [expect]
        ("warn", "warn", "warn"),
        ("pass", "hang", "fail"),  # fixed but still pinned: like a strict xpass
        ("crash", "hang", "fail"),  # a different finding than the pinned one
        ("pass", "warn", "fail"),
    ],
)
def test_judge(status, want, kind):
    assert judge(CheckResult(status, "why"), want).kind == kind


def test_a_changed_verdict_says_both():
    outcome = judge(CheckResult("hang", "froze"), "pass")
    assert outcome.text == "expected pass (the manifest's [expect]), got hang"


def test_the_failure_text_carries_claims_cause_and_proof():
    result = CheckResult(
        "hang",
        "getpwnam in the child never returned",
        evidence={
            "cause": "go-runtime-after-fork",
            "explanation": "the runtime parks",
            "frames": ["#0 runtime.futex"],
        },
        impact="bash completion freezes",
        reproduce="ls ~py<TAB>",
        control="7 children of a parent that never used the module passed",
    )
    text = failure_text("golab::fork-child on sandbox", result, "hang", None).splitlines()
    assert text[0].startswith("golab::fork-child on sandbox: hang")
    assert "impact: bash completion freezes" in text and "reproduce: ls ~py<TAB>" in text
    assert "cause: go-runtime-after-fork: the runtime parks" in text and "  #0 runtime.futex" in text
    broken = failure_text("x::lookup on sandbox", result, "hang", "build failed")
    assert broken == "x::lookup on sandbox: error: build failed"
