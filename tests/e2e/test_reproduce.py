"""`nsslab reproduce stns` replays the diagnosis with real output, ends, and leaves nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parent.parent.parent


def test_reproduce_stns_replays_the_diagnosis_and_cleans_up():
    before = set(Path("/tmp").glob("nsslab-*"))
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "reproduce", "stns"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "[11/11] Fix options" in out and "reproduced: yes" in out
    assert "hang: `ls ~ta<TAB>` froze" in out  # the module user's shell froze
    assert "pass: completed ~ta to ~taro" in out  # root's first completion worked
    assert "in the frozen child" in out and "no, never" in out  # init did not run in the child
    assert "$1 = 1" in out and "Old value = 0" in out and "New value = 1" in out  # the flag, where it is set
    assert "x_cgo_notify_runtime_init_done" in out and "_dl_init" in out
    assert "runtime.stoplockedm" in out and "_nss_golab_" in out and "cgocallback" in out
    assert "cause: go-runtime-after-fork" in out
    assert "workdir gone, 0 lab mounts left" in out
    assert set(Path("/tmp").glob("nsslab-*")) == before
    assert "Traceback" not in done.stderr
