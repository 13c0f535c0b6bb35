"""The verdict table (lab.report.table, drawn with rich): plain words in a log, colours only on
a terminal, words never split, nothing in a reason read as markup."""

from __future__ import annotations

import io

from lab.progress import console, write
from lab.report.table import render, table
from lab.results import CheckResult, ModuleReport

PATH = "~/.cache/nsslab/debs/libnss-ldapd+0.9.12-4+deb12u1_amd64-built-for-the-reproducer-of-this-bug.deb"


def report() -> ModuleReport:
    r = ModuleReport(name="ldapd", library="/x/libnss_ldap.so.2", target="sandbox", seconds=9.5)
    r.checks = [
        CheckResult("pass", "loaded [in 0.1 s] :smile:", id="load", seconds=0.1),
        CheckResult(
            "fail",
            "getpwnam('pyama') answered a wrong uid "
            + "and then some more words " * 4
            + f"reproduce: {PATH}",
            id="lookup",
            seconds=1.25,
            impact="id pyama says 0",
            reproduce=f"dpkg -i {PATH}",
            control="the same call in files",
        ),
        CheckResult("hang", "child hung", id="fork-child", seconds=20.0),
    ]
    r.services = [{"name": "nslcd", "ready_seconds": 0.4, "exit": 0, "tail": "one\ntwo\nthree"}]
    return r


def test_every_check_status_time_and_reason_is_there_in_plain_words():
    text = render(report(), width=100)
    lines = text.splitlines()
    assert lines[0] == "ldapd  [/x/libnss_ldap.so.2]  on sandbox: HANG (9.5 s)"
    assert lines[1].split() == ["check", "status", "time", "reason"]
    assert lines[2].split()[:4] == ["load", "pass", "0.10s", "loaded"]
    assert "loaded [in 0.1 s] :smile:" in text  # not markup, not an emoji
    assert any(line.split()[:3] == ["fork-child", "hang", "20.00s"] for line in lines)
    joined = " ".join(text.split())
    assert "id pyama says 0" in joined and "the same call in files" in joined  # the fail's claims
    assert "service nslcd: ready in 0.4 s, stopped (exit 0); log tail: two | three" in text
    assert "\x1b" not in text and not any(line != line.rstrip() for line in lines)


def test_a_long_path_is_never_split_even_on_a_narrow_screen():
    for width in (80, 100, 200):
        text = render(report(), width=width)
        assert sum(PATH in line for line in text.splitlines()) == 2, text  # the reason's and the claim's
        assert " ".join(text.split()).count("and then some more words") == 4


def test_colours_on_a_terminal_only_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")  # a log stays plain words whatever this says
    log = io.StringIO()
    write(console(log), table(report()))
    assert "\x1b[" not in log.getvalue() and "fork-child      hang" in log.getvalue()
    tty = io.StringIO()
    write(console(tty, tty=True), table(report()))
    assert "\x1b[" in tty.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty = io.StringIO()
    write(console(tty, tty=True), table(report()))
    assert "\x1b[3" not in tty.getvalue()  # no foreground colour (bold may stay)


def test_a_module_that_never_ran_gets_its_error_line():
    r = ModuleReport("armlab", "/x/libnss_armlab.so.2", "sandbox", error="built for EM_AARCH64")
    assert render(r).splitlines() == [
        "armlab  [/x/libnss_armlab.so.2]  on sandbox: ERROR (0.0 s)",
        "  error: built for EM_AARCH64",
    ]


def test_control_characters_a_module_sends_are_shown_not_obeyed():
    """A gecos or a daemon's log with terminal escapes: the table shows them as \\xNN."""
    r = report()
    r.checks[0] = CheckResult("pass", "name evil\x1b[2J\x1b]0;owned\x07 and\r a CR", id="load")
    r.services[0]["tail"] = "log\x1b[7;99mred"
    for text in (render(r, width=100), rendered_on_a_terminal(r, 100)):
        assert "\x1b[2J" not in text and "\x07" not in text and "\r" not in text and "\x1b[7;99m" not in text
        assert "\\x1b[2J\\x1b]0;owned\\x07" in text and "\\x1b[7;99mred" in text.replace("\n", "")


def rendered_on_a_terminal(r: ModuleReport, width: int) -> str:
    out = io.StringIO()
    tty = console(out, tty=True)
    tty.width = width
    write(tty, table(r))
    return out.getvalue()


def test_a_huge_word_does_not_pad_every_row_to_its_width():
    r = report()
    r.checks[0] = CheckResult("pass", "x" * 50_000, id="load")
    longest = max(len(line) for line in render(r, width=100).splitlines())
    assert longest < 300  # folded past 200 characters, not one 50,000-column table
    r.checks[0] = CheckResult("pass", "p/" * 45, id="load")  # 90 characters on an 80-column terminal
    plain = [line for line in rendered_on_a_terminal(r, 80).splitlines() if "lookup" in line]
    assert plain and all(len(strip_ansi(line)) <= 80 for line in plain)


def strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
