"""`nsslab run`'s progress, as a user and a CI log get it: a plain line per check finished on
stderr when it is not a terminal (the tables on stdout as before), nothing with --quiet, and
on a terminal a live line naming the checks running, gone when the run ends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pexpect
import pytest

from lab.checks import ORDER
from lab.results import STATUSES
from tests.conftest import MODULES, ROOT
from tests.unit.test_progress import screen

pytestmark = pytest.mark.sandbox
BOUND = 300  # seconds: clab's run takes a few
DONE_LINE = re.compile(rf"^clab on sandbox: (\S+) ({'|'.join(STATUSES)}) \(\d+\.\d s\)$")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "lab.cli", "run", str(MODULES / "clab"), *args]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_not_a_terminal_a_plain_line_per_check_and_the_table_on_stdout(tmp_path):
    env = dict(os.environ, FORCE_COLOR="1")  # a log stays plain words whatever this says
    done = run("--report-dir", str(tmp_path), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    finished = [m.group(1) for line in done.stderr.splitlines() if (m := DONE_LINE.match(line))]
    assert sorted(finished) == sorted(ORDER) and len(finished) == 22, done.stderr
    assert "clab on sandbox: installing" in done.stderr.splitlines()
    assert re.search(r"^clab on sandbox: PASS \(\d+\.\d s\)$", done.stderr, re.M)
    assert "\x1b" not in done.stderr + done.stdout
    out = done.stdout.splitlines()
    assert out[0].startswith("clab  [") and out[0].endswith(" s)") and ": PASS (" in out[0]
    assert out[1].split() == ["check", "status", "time", "reason"]
    rows = {line.split()[0]: line.split()[1] for line in out[2:] if line.split() and line.split()[0] in ORDER}
    assert set(rows) == set(ORDER) and rows["login-paths"] == "skip" and rows["lookup"] == "pass"
    assert out[-1] == "1 of 1 modules passed"
    assert "clab on sandbox" not in done.stdout  # progress never goes to stdout


def test_quiet_no_progress_only_the_summary(tmp_path):
    done = run("--quiet", "--report-dir", str(tmp_path), "--json", str(tmp_path / "v.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines() == ["1 of 1 modules passed"]
    assert '"name": "clab"' in (tmp_path / "v.json").read_text()  # the verdicts are all there


def test_on_a_terminal_a_live_line_while_checks_run_and_a_sane_terminal_after(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    argv = ["-m", "lab.cli", "run", str(MODULES / "clab"), "--report-dir", str(tmp_path)]
    child = pexpect.spawn(
        sys.executable, argv, cwd=str(ROOT), env=env, dimensions=(50, 160), encoding="utf-8"
    )
    raw = ""
    try:  # pexpect's child leads its own session: its process group ends with it
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            try:
                raw += child.read_nonblocking(65536, timeout=max(0.1, deadline - time.monotonic()))
            except pexpect.EOF:
                break
        else:
            pytest.fail(f"no end in {BOUND} s: {raw[-2000:]}")
        child.close()
    finally:
        if child.isalive():
            os.killpg(child.pid, signal.SIGKILL)
            child.close(force=True)
    assert child.exitstatus == 0, raw[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    checks = "|".join(map(re.escape, ORDER))
    live = re.search(rf"clab on sandbox  (?:{checks}) \d+\.\d s", plain)
    table = plain.find("clab  [")
    assert live and 0 <= live.start() < table, plain[:3000]  # while it ran, before the table
    # sane after: the cursor shown again, the live lines gone, the table and the summary left
    assert raw.rindex("\x1b[?25h") > raw.rindex("\x1b[?25l")
    shown = screen(raw)
    assert not [line for line in shown if line.startswith("clab on sandbox")], shown
    assert shown[0].startswith("clab  [") and ": PASS (" in shown[0]
    assert shown[-1] == "1 of 1 modules passed"
