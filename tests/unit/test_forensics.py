"""The classifier on recorded evidence: gdb output and /proc state captured from real runs
of the planted modules (tests/unit/fixtures/forensics, some taken with glibc's debug
symbols hidden from gdb). Each names its cause with proving frames; when the evidence
does not prove a cause, the answer is `unknown`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lab.forensics import CAUSES, diagnose_crash, diagnose_hang
from lab.forensics.gdb import parse

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "forensics").glob("*.json"))


def load(name: str) -> dict:
    return json.loads((Path(__file__).parent / "fixtures" / "forensics" / f"{name}.json").read_text())


def diagnose(fixture: dict, module: str | None = None):
    raw, name = fixture["raw"], module or fixture["module"]
    return diagnose_hang(raw["processes"], name) if "processes" in raw else diagnose_crash(raw, name)


def test_every_cause_is_recorded_from_a_real_module():
    recorded = {json.loads(f.read_text())["cause"] for f in FIXTURES}
    assert recorded == set(CAUSES) - {"unknown"}


@pytest.mark.parametrize("path", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_recorded_evidence_names_its_cause_with_proving_frames(path):
    fixture = json.loads(path.read_text())
    d = diagnose(fixture)
    assert d.cause == fixture["cause"], d.explanation
    assert d.explanation and d.frames
    lib = f"libnss_{fixture['module']}.so"
    assert any(lib in f or f"_nss_{fixture['module']}_" in f for f in d.frames), d.frames


@pytest.mark.parametrize("path", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_the_same_evidence_blames_no_other_module(path):
    """The frames prove a cause only for the library they are in."""
    d = diagnose(json.loads(path.read_text()), module="clab")
    assert d.cause == "unknown", d.explanation


def test_go_child_names_the_entry_point_and_the_parked_runtime():
    d = diagnose(load("golab-tab-completion"))
    assert "_nss_golab_setpwent" in d.explanation  # bash-completion's compgen -u, as in STNS
    funcs = " ".join(d.frames)
    for frame in ("runtime.futex", "runtime.notesleep", "runtime.stoplockedm", "runtime.cgocallback"):
        assert frame in funcs
    assert any("runtime_init_done = 1" in f for f in d.facts)


def test_lock_owner_is_a_parent_thread_that_fork_did_not_copy():
    fixture = load("forklock-fork-child")
    d = diagnose(fixture)
    child = fixture["raw"]["processes"][-1]
    owner = next(t["futex"]["owner"] for t in child["tasks"] if t.get("futex"))
    assert owner in child["parent"]["tids"] and owner not in [t["tid"] for t in child["tasks"]]
    assert f"tid {owner}, a thread of the parent" in d.explanation


def test_self_deadlock_is_a_hang_in_the_parent_not_a_fork_problem():
    d = diagnose(load("hangparent-load"))
    assert d.cause == "hang-in-parent" and "already holds" in d.explanation


def test_a_go_hang_without_inherited_runtime_is_not_called_a_fork_problem():
    fixture = copy.deepcopy(load("golab-fork-child"))
    for p in fixture["raw"]["processes"]:
        p["parent"]["nss_modules"] = []  # as if the parent had never loaded the module
    assert diagnose(fixture).cause == "hang-in-parent"


def test_a_forked_child_with_threads_of_its_own_proves_nothing():
    fixture = copy.deepcopy(load("forklock-fork-child"))
    for p in fixture["raw"]["processes"]:
        p["threads"] = 2
    assert diagnose(fixture).cause == "unknown"


def test_no_backtrace_means_unknown_with_the_reason():
    fixture = copy.deepcopy(load("golab-fork-child"))
    for p in fixture["raw"]["processes"]:
        p["gdb"] = {"error": "gdb is not installed in the target"}
    d = diagnose(fixture)
    assert d.cause == "unknown" and "gdb is not installed" in d.explanation and d.frames == []
    assert d.facts  # the /proc evidence is still reported


def test_a_crash_that_does_not_recur_under_gdb_is_unknown():
    d = diagnose_crash(
        {"text": "[Inferior 1 (process 9) exited normally]\nnsslab-crash not reproduced under gdb\n"}, "x"
    )
    assert d.cause == "unknown" and "did not happen again" in d.explanation


def test_an_abort_in_setresgid_without_module_threads_is_not_blamed_on_the_module():
    fixture = copy.deepcopy(load("forklock-setxid"))
    text = fixture["raw"]["text"].replace("libnss_forklock", "libnss_another")
    d = diagnose_crash({"text": text}, "forklock")
    assert d.cause == "unknown"


def test_parse_reads_threads_goroutines_maps_and_signal():
    report = parse(load("golab-setxid")["raw"]["text"])
    assert report.signal == 6 and report.reproduced
    assert len(report.threads) > 1 and report.crashed is not None
    assert any(path.endswith("libnss_golab.so.2") for _, _, path in report.maps)
    frames = [f for t in report.threads for f in t.frames]
    assert all(f.obj for f in frames if f.pc is not None and f.func != "??")
    segv = parse(load("ctorcrash-load")["raw"]["text"])
    assert segv.signal == 11 and segv.fault_address == 0
    go = parse(load("golab-fork-child")["raw"]["processes"][-1]["gdb"]["text"])
    assert go.goroutines and go.go["runtime_init_done"] == "1"


GO_TWO_THREADS = """\
Thread 2 (Thread 0x7f01 (LWP 901) "python3"):
#0  0x00007f in __GI___poll () at poll.c:29
#1  0x00007f in runtime.cgocallback () at /go/src/runtime/asm_amd64.s:994
#2  0x00007f in crosscall2 () at _cgo_export.c:10
#3  0x00007f in _nss_go_getpwnam_r () at _cgo_export.c:20

Thread 1 (Thread 0x7f00 (LWP 900) "python3"):
#0  0x00007f in runtime.futex () at /go/src/runtime/sys_linux_amd64.s:560
#1  0x00007f in runtime.notesleep () at /go/src/runtime/lock_futex.go:160
#2  0x00007f in runtime.stoplockedm () at /go/src/runtime/proc.go:2000
"""


def test_a_go_hang_names_the_c_callers_thread_so_every_proving_frame_is_found():
    """No runtime-gdb.py (no goroutines): the parked runtime thread and the C thread that came
    in through cgocallback are two stacks; the second one's frames say which, and the report
    marks all six where they stand."""
    from lab.forensics.causes import Culprit, go_wait
    from lab.forensics.gdb import parse
    from lab.report.html import backtrace

    frames, entry = go_wait(parse(GO_TWO_THREADS), Culprit("go"))
    assert entry == "_nss_go_getpwnam_r"
    assert [f for f in frames if f.startswith("thread 901: ")] == [
        "thread 901: #1 runtime.cgocallback at asm_amd64.s:994",
        "thread 901: #2 crosscall2 at _cgo_export.c:10",
        "thread 901: #3 _nss_go_getpwnam_r at _cgo_export.c:20",
    ]
    marked = [proof for seg in backtrace(GO_TWO_THREADS, frames) for _, proof in seg.lines if proof]
    assert sorted(marked) == sorted(frames)  # each proving frame marked once
