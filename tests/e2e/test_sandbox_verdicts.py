"""Known-bad modules are flagged with the right cause; known-good ones pass."""

from __future__ import annotations

import pytest

from tests.conftest import checks

pytestmark = pytest.mark.sandbox


def test_golab_freezes_forked_children_in_the_go_runtime(lab_run):
    fork = checks(lab_run("golab"))["fork-child"]
    assert fork.status == "hang", fork.reason
    hung = [step for step, outcome in fork.details["steps"].items() if outcome == "hang"]
    assert len(hung) >= 4, hung  # a race per call, but 5 children per entry point: most entries hang
    assert all(step.startswith("after-use") for step in hung), "a child of a fresh parent must pass"
    evidence = fork.evidence["raw"]["processes"][-1]
    assert evidence["threads"] == 1  # fork copied one thread; the runtime's others are gone
    assert [t["wait"] for t in evidence["tasks"]] == ["self"]  # a private futex, forever
    assert any(m.endswith("libnss_golab.so.2") for m in evidence["nss_modules"])


def test_golab_freezes_tab_completion_like_stns(lab_run):
    tab = checks(lab_run("golab"))["tab-completion"]
    assert tab.status == "hang", tab.reason
    attempts = tab.details["attempts"]
    pyama = [a["status"] for who, a in attempts.items() if who.startswith("pyama")]
    root = [a["status"] for who, a in attempts.items() if who.startswith("root")]
    assert pyama[-1] == "hang"  # the module user's own shell froze (TAB is retried: it is a race)
    assert root[0] == "pass"  # root's first completion loads the module fresh in the child
    assert root[-1] == "hang" and len(root) >= 2  # ... and poisons root's own shell
    assert any("golab" in note for note in tab.details["notes"] if note.startswith("pyama"))


def test_golab_aborts_when_privileges_are_dropped_setpriv_style(lab_run):
    setxid = checks(lab_run("golab"))["setxid"]
    assert setxid.status == "crash", setxid.reason
    assert "setpriv order" in setxid.reason and "SIGABRT" in setxid.reason
    assert "su order ok" in setxid.reason  # setgroups/setresgid/setresuid in that order survives


def test_golab_runtime_starts_at_load_and_answers_in_a_fresh_process(lab_run):
    c = checks(lab_run("golab"))
    assert c["go-runtime"].status == "pass", c["go-runtime"].reason
    before, after, again = c["go-runtime"].details["threads"]
    assert before == 1 and after > 1 and again >= after - 1
    assert c["load"].status == "pass" and c["lookup"].status == "pass"


@pytest.mark.parametrize("name", ["clab", "slowlab", "biglab"])
def test_good_modules_pass_every_check(lab_run, name):
    report = lab_run(name)
    assert report.error is None
    assert [(c.id, c.status) for c in report.checks if c.status not in ("pass", "skip")] == []
    assert checks(report)["go-runtime"].status == "skip"  # not Go: skipped, with a reason
    assert report.passed and report.verdict == "pass"


def test_slow_module_is_not_called_hung(lab_run):
    slow = checks(lab_run("slowlab"))
    assert slow["fork-child"].status == "pass"
    assert slow["tab-completion"].status == "pass"
    assert slow["load"].details and "0.3" in slow["load"].reason  # it really is slow


def test_lookup_hang_in_the_parent_is_a_quick_load_hang(lab_run):
    report = lab_run("hangparent")
    load = checks(report)["load"]
    assert load.status == "hang" and "in the parent never returned" in load.reason
    after = report.checks[[c.id for c in report.checks].index("load") + 1 :]
    assert after and all(c.status == "skip" for c in after)


def test_crashing_constructor_is_a_crash_not_a_traceback(lab_run):
    load = checks(lab_run("ctorcrash"))["load"]
    assert load.status == "crash" and "SIGSEGV" in load.reason
