"""A run killed with SIGKILL (a lost CI runner) cannot clean up; its run-state file says what
it made, and `nsslab clean` (or the next `nsslab run`) removes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import MODULES, ROOT
from tests.e2e.test_sandbox_hygiene import snapshot

pytestmark = pytest.mark.sandbox


def test_what_a_killed_run_left_is_known_and_removed(tmp_path):
    before = snapshot()
    env = dict(os.environ, NSSLAB_STATE_DIR=str(tmp_path / "state"))
    lab = [sys.executable, "-m", "lab.cli"]
    proc = subprocess.Popen(
        [*lab, "run", str(MODULES / "slowlab"), "--report-dir", str(tmp_path / "r")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        records: dict = {}
        while not records and time.monotonic() < deadline:
            time.sleep(0.2)
            for f in (tmp_path / "state").glob("run-*.json"):
                records = json.loads(f.read_text())
        assert records, "the run never recorded its namespace"
        time.sleep(2)  # checks under way: probes running inside the namespace
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # only the lab itself, as an OOM kill or a lost runner would
        proc.wait(timeout=10)
    (record,) = records.values()
    assert record["kind"] == "namespace" and os.path.isdir(record["workdir"])  # left behind, as expected
    done = subprocess.run([*lab, "clean"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{record['workdir']} removed" in done.stdout
    assert not os.path.exists(record["workdir"])
    assert snapshot() == before  # no process, mount or temp file of the killed run is left
    assert list((tmp_path / "state").glob("run-*.json")) == []
    again = subprocess.run([*lab, "clean"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.stdout.strip() == "nothing left by killed runs"
