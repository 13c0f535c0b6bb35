"""The per-module verdict table `nsslab run` prints, drawn with rich: coloured on a terminal,
plain words in a log (see lab.progress.console), no box lines, so a grep for `fork-child hang`
or a reason wrapped over lines reads the same as before."""

from __future__ import annotations

import io
import re

from rich.console import Console, ConsoleOptions, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from lab.progress import console, write
from lab.runner import ModuleReport

STYLE = {
    "pass": "green",
    "warn": "yellow",
    "fail": "red",
    "hang": "bold magenta",
    "crash": "bold red",
    "error": "red",
    "skip": "dim",
}


# Control characters a module's output may carry (an ESC sequence in a gecos, a daemon's log):
# shown as \xNN, never sent to the terminal, which would obey them. Tab and newline stay.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
WORD_CAP = 200  # a word longer than this (a 50 kB token) is folded: no row is padded to its width


def visible(text: str) -> str:
    return CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def details(c) -> list[str]:
    """The lines under a check's reason: its claims (warn, fail, hang, crash) and forensics."""
    lines = list(c.claims()) if c.status in ("warn", "fail", "hang", "crash") else []
    if c.evidence:
        lines.append(f"cause: {c.cause} — {c.evidence['explanation']}")
        proof = c.evidence.get("frames") or []
        if proof:
            tail = f" … {proof[-1]} ({len(proof)} frames)" if proof[1:] else ""
            lines.append(f"proof: {proof[0]}{tail}")
        if c.evidence.get("file"):
            lines.append(f"evidence: {c.evidence['file']}")
    return lines


class ModuleTable:
    """A module's verdicts: the head line, a row per check, the services' lines."""

    def __init__(self, report: ModuleReport) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        r = self.report
        head = Text(visible(f"{r.name}  [{r.library}]  on {r.target}: "))
        head.append(r.verdict.upper(), style=STYLE.get(r.verdict, ""))
        head.append(f" ({r.seconds:.1f} s)")
        yield head
        if r.error:
            yield Text(visible(f"  error: {r.error}"))
            yield Text("")
            return
        reasons = [Text(visible("\n".join([c.reason, *details(c)]))) for c in r.checks]
        # A word is never split (a reproducer's path must paste back whole): the reason column
        # is at least as wide as the longest word, the table wider than the screen if need be;
        # on a terminal only up to its width (else every row wraps), and never past WORD_CAP.
        fixed = 2 + 16 + 7 + 8 + 2  # the indent; check, status, time, each with the gap after it; 2 gaps
        cap = max(options.max_width - fixed, 40) if console.is_terminal else WORD_CAP
        longest = min(max((len(w) for t in reasons for w in t.plain.split()), default=0), cap)
        table = Table(
            box=None, padding=(0, 1, 0, 0), show_edge=False, width=max(options.max_width, fixed + longest)
        )
        table.add_column("", width=1)  # the indent: two spaces with its gap
        table.add_column("check", no_wrap=True, min_width=15)
        table.add_column("status", no_wrap=True, min_width=6)
        table.add_column("time", no_wrap=True, justify="right", min_width=7)
        table.add_column(" reason", min_width=max(longest, 10) + 1, ratio=1)  # a wider gap before it
        for c, reason in zip(r.checks, reasons, strict=True):
            status = Text(c.status, style=STYLE.get(c.status, ""))
            table.add_row("", c.id, status, f"{c.seconds:.2f}s", Padding(reason, (0, 0, 0, 1)))
        yield table
        if any(r.needs(c) for c in r.checks):  # once per module: every reproducer needs the same
            yield Text(visible("  the reproducers above need, as the lab installed it:"))
            for line in r.setup:  # whole, however long: a path must paste back
                yield Text(visible(f"    {line}"), no_wrap=True, overflow="ignore")
        for svc in r.services:  # the backend the answers came from, and how it ended
            said = " | ".join((svc.get("tail") or "").splitlines()[-2:])  # whole lines, the last two
            yield Text(
                visible(
                    f"  service {svc['name']}: ready in {svc.get('ready_seconds')} s, "
                    f"stopped (exit {svc.get('exit')}); log tail: {said or 'empty'}"
                )
            )
        yield Text("")  # a blank line before the next module's


def table(report: ModuleReport) -> ModuleTable:
    return ModuleTable(report)


def render(report: ModuleReport, width: int | None = None) -> str:
    """The table as plain text (no colour), as a log gets it."""
    out = console(io.StringIO(), tty=False)
    if width:
        out.width = width
    write(out, table(report))
    return out.file.getvalue().rstrip("\n") + "\n"
