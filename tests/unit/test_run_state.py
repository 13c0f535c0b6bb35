"""The run-state file: a live run's records are its own; a dead run's are leftovers."""

from __future__ import annotations

import json
import os

from lab.targets import state


def test_a_live_run_is_not_a_leftover_and_a_dead_one_is(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    state.add("namespace /tmp/nsslab-x", kind="namespace", mntns="mnt:[1]", workdir="/tmp/nsslab-x")
    assert state.leftovers() == {}  # this process is alive
    gone = tmp_path / "run-999999999-123.json"
    gone.write_text(json.dumps({"vm debian12": {"kind": "vm", "platform": "debian12"}}))
    reused = tmp_path / f"run-{os.getpid()}-1.json"  # our pid, another start time: a reused pid
    reused.write_text("{}")
    assert set(state.leftovers()) == {gone, reused}
    state.drop("namespace /tmp/nsslab-x")
    assert not list(tmp_path.glob(f"run-{os.getpid()}-{state.started(os.getpid())}.json"))


def test_the_sweep_removes_only_the_labs_own_workdirs(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (tmp_path / "run-999999999-1.json").write_text(
        json.dumps({"ns": {"kind": "namespace", "mntns": "not-a-namespace", "workdir": str(elsewhere)}})
    )
    said = state.sweep()
    assert said == [f"ns: {elsewhere} left alone (not a workdir of the lab's)"]
    assert elsewhere.exists()  # not under /tmp/nsslab-: never the sweep's to remove
    assert not list(tmp_path.glob("run-*.json"))


def test_a_reused_namespace_number_kills_nothing(monkeypatch):
    """A dead run's namespace number may belong to another namespace by now (the kernel reuses
    freed ones): only processes whose mount table shows the run's workdir are the lab's."""
    killed = []
    monkeypatch.setattr(state.os, "kill", lambda pid, sig: killed.append(pid))
    ours = os.readlink("/proc/self/ns/mnt")  # every process of this machine's own namespace
    assert state.kill_namespace(ours, "/tmp/nsslab-gone-long-ago") == 0
    assert killed == []
    assert not state.labs_workdir("/tmp/nsslab-x/../../etc") and not state.labs_workdir("/etc/nsslab-x")
