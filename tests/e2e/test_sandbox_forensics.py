"""Real planted modules, real hangs and crashes: each gets the right cause, with proving
frames, in the report, the JSON and an evidence file; good modules get no cause at all."""

from __future__ import annotations

import json

import pytest

from lab.report.evidence import write_evidence
from lab.report.machine import write_json
from tests.conftest import checks

pytestmark = pytest.mark.sandbox

CAUSES = [
    ("golab", "fork-child", "go-runtime-after-fork"),
    ("golab", "tab-completion", "go-runtime-after-fork"),
    ("golab", "setxid", "setxid-abort"),
    ("forklock", "fork-child", "lock-held-across-fork"),
    ("forklock", "tab-completion", "lock-held-across-fork"),
    ("forklock", "setxid", "setxid-abort"),
    ("segvlab", "load", "segfault-in-module"),
    ("spooflab", "load", "segfault-in-module"),
    ("ctorcrash", "load", "segfault-in-module"),
    ("abortlab", "load", "abort-in-module"),
    ("hangparent", "load", "hang-in-parent"),
]


@pytest.mark.parametrize(("module", "check", "cause"), CAUSES)
def test_planted_defect_gets_its_cause(lab_run, module, check, cause):
    c = checks(lab_run(module))[check]
    assert c.status in ("hang", "crash"), c.reason
    assert c.cause == cause, c.evidence and c.evidence["explanation"]
    assert any(f"libnss_{module}.so" in f for f in c.evidence["frames"]), c.evidence["frames"]


def test_a_module_that_prints_a_fake_backtrace_does_not_write_the_proof(lab_run):
    """spooflab prints gdb-like frames and the lab's own marker lines on stdout and stderr,
    then crashes: the proof (frames, explanation, gdb's text) holds only the real frames, and
    what the module printed is still shown, as the module's output. Without the re-run's
    `set inferior-tty /dev/null` its lines were in gdb's text, beside the real backtrace."""
    load = checks(lab_run("spooflab"))["load"]
    assert load.status == "crash" and load.cause == "segfault-in-module"
    assert load.evidence["frames"][0].startswith("#0 spoof_crash at nss_spooflab.c")
    proof = json.dumps(load.evidence)
    assert "innocent_frame" not in proof and "blame_elsewhere" not in proof
    assert "innocent_frame" in load.details["stderr"]


@pytest.mark.parametrize("module", ["clab", "slowlab"])
def test_good_modules_get_no_cause(lab_run, module):
    report = lab_run(module)
    assert report.checks and all(c.evidence is None and c.cause is None for c in report.checks)


def test_hang_evidence_was_taken_before_the_kill(lab_run):
    fork = checks(lab_run("golab"))["fork-child"]
    hung = fork.evidence["raw"]["processes"][-1]
    assert hung["threads"] == 1 and hung["parent"]["threads"] > 1  # the child vs its parent
    assert "runtime.futex" in hung["gdb"]["text"] and "Goroutine" in hung["gdb"]["text"]


def test_cause_reaches_json_and_an_evidence_file(lab_run, tmp_path):
    report = lab_run("forklock")
    files = write_evidence(report, tmp_path / "evidence")
    assert {f.stem for f in files} == {"fork-child", "setxid", "tab-completion"}
    text = (tmp_path / "evidence" / "forklock" / "fork-child.txt").read_text()
    assert "cause: lock-held-across-fork" in text and "_nss_forklock_" in text and "gdb (" in text
    write_json([report], tmp_path / "r.json")
    got = {c["id"]: c for c in json.loads((tmp_path / "r.json").read_text())["modules"][0]["checks"]}
    assert got["fork-child"]["cause"] == "lock-held-across-fork"
    assert got["fork-child"]["evidence"]["frames"] and got["fork-child"]["evidence"]["file"]
    assert got["load"]["cause"] is None and got["load"]["evidence"] is None
