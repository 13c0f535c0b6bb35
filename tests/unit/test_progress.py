"""lab.progress: what each sink shows of the lab's events, on a fake clock, and that nothing of
it is left running once shown() is over."""

from __future__ import annotations

import io
import re
import threading
import time
from types import SimpleNamespace

import pytest
from rich.console import Console
from rich.text import Text

from lab import progress, session
from lab.progress import Live, Plain, Quiet
from lab.results import CheckResult

KEY = "clab on sandbox"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+")


def screen(raw: str) -> list[str]:
    """What a terminal shows after RAW, for what rich's Live writes: text, carriage return,
    line feed, erase line (ESC[2K), cursor up (ESC[nA); colours and cursor visibility ignored."""
    rows, row, col = [""], 0, 0
    for m in CONTROL.finditer(raw):
        text = m.group(0)
        if text == "\r":
            col = 0
        elif text == "\n":
            row, col = row + 1, 0
            rows += [""] * (row + 1 - len(rows))
        elif m.group(2) == "K" and m.group(1) == "2":
            rows[row] = ""
        elif m.group(2) == "A":
            row = max(0, row - int(m.group(1) or 1))
        elif not text.startswith("\x1b"):
            line = rows[row].ljust(col)
            rows[row] = line[:col] + text + line[col + len(text) :]
            col += len(text)
    rows = [r.rstrip() for r in rows]
    while rows and not rows[-1]:
        rows.pop()
    return rows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def result(check_id: str, status: str = "pass", seconds: float = 1.25) -> CheckResult:
    return CheckResult(status, "because", id=check_id, seconds=seconds)


def plain(clock: Clock, heartbeat: float = 30.0) -> tuple[Plain, io.StringIO]:
    out = io.StringIO()
    return Plain(file=out, clock=clock, heartbeat=heartbeat), out


def test_plain_says_each_phase_and_each_check_done_with_its_status_and_seconds():
    clock = Clock()
    sink, out = plain(clock)
    sink.phase(KEY, "installing")
    sink.check_started(KEY, "elf")  # a start is not worth a line in a log
    sink.check_done(KEY, result("elf", "pass", 0.06))
    sink.phase(KEY, "running 2 checks", total=3)
    sink.check_started(KEY, "threads")
    sink.check_started(KEY, "fork-child")
    sink.check_done(KEY, result("fork-child", "hang", 20.4))
    sink.check_done(KEY, result("threads", "warn", 2.0))
    sink.done(KEY, "HANG (23.0 s)")
    assert out.getvalue().splitlines() == [
        "clab on sandbox: installing",
        "clab on sandbox: elf pass (0.1 s)",
        "clab on sandbox: running 2 checks",
        "clab on sandbox: fork-child hang (20.4 s)",
        "clab on sandbox: threads warn (2.0 s)",
        "clab on sandbox: HANG (23.0 s)",
    ]
    assert sink.active == {}


def test_plain_heartbeat_only_after_the_interval_of_silence_and_not_once_done():
    clock = Clock()
    sink, out = plain(clock, heartbeat=30)
    sink.phase("vagrant://debian12", "booting VM")
    clock.now += 29
    sink.tick()
    assert out.getvalue().splitlines() == ["vagrant://debian12: booting VM"]  # not yet
    clock.now += 1
    sink.tick()
    clock.now += 10
    sink.tick()  # 10 s after the last line: nothing
    clock.now += 20
    sink.tick()
    sink.done("vagrant://debian12", "VM up")
    clock.now += 60
    sink.tick()  # done: no more heartbeats
    assert out.getvalue().splitlines() == [
        "vagrant://debian12: booting VM",
        "vagrant://debian12: still booting VM (30 s)",
        "vagrant://debian12: still booting VM (60 s)",
        "vagrant://debian12: VM up",
    ]


def test_plain_heartbeat_names_the_checks_still_running():
    clock = Clock()
    sink, out = plain(clock, heartbeat=30)
    sink.phase(KEY, "running 3 checks", total=22)
    sink.check_started(KEY, "fork-child")
    clock.now += 5
    sink.check_started(KEY, "tab-completion")
    sink.check_done(KEY, result("keys"))
    clock.now += 31
    sink.tick()
    assert out.getvalue().splitlines()[-1] == (
        "clab on sandbox: still running fork-child 36.0 s, tab-completion 31.0 s (1/22 done)"
    )


def test_plain_heartbeat_comes_from_its_own_thread_when_the_interval_is_short():
    out = io.StringIO()
    sink = Plain(file=out, heartbeat=0.2, period=0.05)
    still = "rootfs://debian11: still debootstrapping debian11 ("
    with progress.shown(sink):
        progress.phase("rootfs://debian11", "debootstrapping debian11")
        deadline = time.monotonic() + 10
        while out.getvalue().count(still) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
    lines = out.getvalue().splitlines()
    assert lines[0] == "rootfs://debian11: debootstrapping debian11"
    assert len(lines) >= 3 and all(line.startswith(still) for line in lines[1:]), lines
    assert time.monotonic() - started < 1  # the thread was stopped and joined at once
    assert progress.current() is progress.NOTHING


def test_a_phase_used_as_a_block_ends_done_or_failed():
    clock = Clock()
    sink, out = plain(clock)
    with progress.shown(sink):
        with progress.phase("vagrant://debian12", "booting VM"):
            clock.now += 62
        with pytest.raises(RuntimeError), progress.phase("vagrant://debian13", "booting VM"):
            clock.now += 5
            raise RuntimeError("no box")
    assert out.getvalue().splitlines() == [
        "vagrant://debian12: booting VM",
        "vagrant://debian12: booting VM: done after 62 s",
        "vagrant://debian13: booting VM",
        "vagrant://debian13: booting VM: failed after 5 s",
    ]
    assert sink.active == {}


def test_quiet_and_no_sink_print_nothing(capsys):
    def events() -> None:
        progress.phase(KEY, "installing")
        progress.check_started(KEY, "elf")
        progress.check_done(KEY, result("elf"))
        with progress.phase("vagrant://debian12", "booting VM"):
            pass
        progress.done(KEY, "PASS (1.0 s)")

    events()  # library use: no sink installed
    with progress.shown("quiet") as sink:
        assert isinstance(sink, Quiet)
        events()
    assert capsys.readouterr() == ("", "")


def live(clock: Clock, width: int = 120) -> tuple[Live, io.StringIO]:
    out = io.StringIO()
    return Live(Console(file=out, force_terminal=True, width=width), clock=clock), out


def test_live_shows_the_running_checks_their_seconds_and_the_count():
    clock = Clock()
    sink, out = live(clock)
    sink.start()
    try:
        sink.phase("vagrant://debian12", "booting VM")
        sink.phase(KEY, "running 8 checks", total=22)
        for i in range(14):
            sink.check_done(KEY, result(f"c{i}"))
        sink.check_started(KEY, "tab-completion")
        clock.now += 1.2
        sink.check_started(KEY, "threads")
        clock.now += 2.0
        sink.tick()
        frame = ANSI.sub("", out.getvalue())
        assert "clab on sandbox  tab-completion 3.2 s, threads 2.0 s  (14/22 done)" in frame
        assert "vagrant://debian12  booting VM 3 s" in frame
        sink.done("vagrant://debian12", "VM up")
        sink.check_done(KEY, result("threads"))
        clock.now += 1.0
        sink.tick()
        last = ANSI.sub("", out.getvalue().rsplit("\x1b[2K", 1)[-1])
        assert last.strip() == "clab on sandbox  tab-completion 4.2 s  (15/22 done)"
    finally:
        sink.stop()
    raw = out.getvalue()
    assert raw.rindex("\x1b[?25h") > raw.rindex("\x1b[?25l")  # the cursor is back


def test_live_keeps_one_row_per_key_on_a_narrow_terminal():
    clock = Clock()
    sink, out = live(clock, width=40)
    with progress.shown(sink):
        for check_id in ("threads", "tab-completion", "fork-child", "keys"):
            progress.check_started(KEY, check_id)
        progress.phase("vagrant://debian12", "booting VM")
        clock.now += 3
        sink.tick()
        assert screen(out.getvalue()) == [
            "clab on sandbox  threads 3.0 s, tab-com…",
            "vagrant://debian12  booting VM 3 s",
        ]


def test_live_prints_a_table_above_its_lines_whole_and_leaves_none_of_them():
    clock = Clock()
    sink, out = live(clock, width=80)
    sink.stdout_here = True  # as when stdout is the same terminal
    head = "golab  [nss_modules/golab/libnss_golab.so.2]  on sandbox: HANG (30.1 s)"
    with pytest.raises(KeyboardInterrupt), progress.shown(sink):
        progress.check_started("golab on sandbox", "fork-child")
        progress.check_started(KEY, "threads")
        clock.now += 2.5
        sink.tick()
        assert screen(out.getvalue()) == [
            "golab on sandbox  fork-child 2.5 s",
            "clab on sandbox  threads 2.5 s",
        ]
        progress.check_done("golab on sandbox", result("fork-child", "hang"))
        progress.done("golab on sandbox", "HANG (30.1 s)")
        progress.output(Text(head))
        # the table whole, above the line of what still runs; none for the module done
        assert screen(out.getvalue()) == [head, "clab on sandbox  threads 2.5 s"]
        raise KeyboardInterrupt  # Ctrl-C with a check still running
    assert screen(out.getvalue()) == [head]  # its line gone with the display


def test_no_thread_is_left_after_shown_even_on_ctrl_c():
    before = set(threading.enumerate())
    clock = Clock()
    for sink in (live(clock)[0], Plain(file=io.StringIO(), period=0.05), Quiet()):
        with pytest.raises(KeyboardInterrupt), progress.shown(sink):
            progress.phase(KEY, "installing")
            assert progress.current() is sink
            raise KeyboardInterrupt
        assert progress.current() is progress.NOTHING
    assert set(threading.enumerate()) == before


def test_auto_is_plain_when_stderr_is_not_a_terminal(capsys):
    assert isinstance(progress.make("auto"), Plain)  # pytest's capture is no terminal


def test_checks_side_by_side_are_told_from_their_threads(monkeypatch):
    """The session's threads report each check as it starts and ends, under the module's key."""
    seen: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    class Recorder(progress.Sink):
        def check_started(self, key, check_id):
            with lock:
                seen.append(("started", key, check_id))

        def check_done(self, key, result):
            with lock:
                seen.append(("done", key, f"{result.id} {result.status}"))

    def slow(ctx):
        time.sleep(0.2)
        return CheckResult("pass", "slow")

    monkeypatch.setitem(session.REGISTRY, "threads", slow)
    monkeypatch.setitem(session.REGISTRY, "keys", slow)
    one = session.ModuleSession("clab", "sandbox")  # installed, as far as it can tell
    one.mine = object()
    one.ctx = SimpleNamespace(target=SimpleNamespace(installed=one.mine, lanes=2))
    with progress.shown(Recorder()):
        results = one.run(["keys", "threads"])
    assert [r.status for r in results] == ["pass", "pass"]
    assert sorted(seen[:2]) == [("started", KEY, "keys"), ("started", KEY, "threads")]  # both ran at once
    assert sorted(seen[2:]) == [("done", KEY, "keys pass"), ("done", KEY, "threads pass")]


def test_steps_for_pytest_say_only_a_targets_long_steps():
    """The plugin's items say each check; its lines are a VM booting, a root being built."""
    said: list[str] = []
    sink = progress.Steps(said.append)
    sink.phase(KEY, "installing")
    sink.check_done(KEY, result("elf", "pass", 0.06))
    sink.done(KEY, "PASS (3.0 s)")
    sink.phase("rootfs://debian11", "debootstrapping debian11")
    sink.done("rootfs://debian11", "done")
    assert said == ["rootfs://debian11: debootstrapping debian11", "rootfs://debian11: done"]
    said.clear()
    beats = progress.Steps(said.append, heartbeat=0)  # every tick is due
    beats.phase(KEY, "installing")
    beats.check_started(KEY, "fork-child")
    beats.phase("vagrant://debian12", "booting VM")
    beats.tick()  # a module's check running long is pytest's to show, not a line of ours
    assert said == ["vagrant://debian12: booting VM"] + [s for s in said[1:] if s.startswith("vagrant://")]
    assert len(said) == 2 and said[1].startswith("vagrant://debian12: still booting VM")
