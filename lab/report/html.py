"""One self-contained HTML file for a run: the modules, every check's verdict and claims, and
each hang's or crash's evidence folded under its check, with the proving frames marked where
they stand in gdb's backtrace. No network: CSS inline, no scripts, fonts or images, folding by
<details>, so the file reads the same when mailed, attached to a CI run or opened offline."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from lab.forensics.gdb import FRAME, GOROUTINE, THREAD
from lab.report import save
from lab.results import IMPACT_CLASS, SEVERITY, CheckResult
from lab.runner import ModuleReport

TEMPLATES = Path(__file__).resolve().parent / "templates"
# A proving frame as lab.forensics writes it (gdb.Frame.__str__, prefixed with its stack when
# that is not the stack the cause is read from): "[goroutine 17: |thread 4242: ]#N func[ at
# file:line][ [lib]]". The stack, number, function and file:line pin it to one backtrace line.
PROOF = re.compile(r"^(?:(goroutine|thread) (\d+): )?#(\d+) (.+?)(?: at (\S+))?(?: \[[^\]]*\])?$")

Key = tuple[int, str, str]  # frame number, function, file:line (base name)
Scope = tuple[str, int] | None  # ("thread", LWP) or ("goroutine", id); None: outside any stack


@dataclass
class Segment:
    """A run of lines of gdb's output; the memory maps are kept apart so they can fold."""

    maps: bool
    lines: list[tuple[str, str | None]] = field(default_factory=list)  # (line, the proof it shows)


@dataclass
class Matrix:
    """One module on several targets: a row per target, a column per check."""

    module: str
    checks: list[str]
    rows: list[tuple[int, ModuleReport, dict[str, CheckResult]]]  # report index, report, checks by id


def proof_keys(frames: list[str]) -> dict[str, tuple[Scope, Key]]:
    out = {}
    for frame in frames:
        m = PROOF.match(frame)
        if m:
            kind, ident, n, func, source = m.groups()
            out[frame] = ((kind, int(ident)) if kind else None, (int(n), func, source or ""))
    return out


def backtrace(text: str, frames: list[str]) -> list[Segment]:
    """gdb's text line by line, each line that is one of FRAMES named with it. A frame that
    names its stack matches there only; the unnamed ones come from a single thread, so they
    are marked in the one thread stack that holds most of them (another thread parked in the
    same futex call is not the proof)."""
    segments: list[Segment] = []
    stacks: dict[Scope, list[tuple[int, int, Key]]] = {}  # scope -> (segment, line, key) of its frames
    scope: Scope = None
    in_maps = False
    for line in text.splitlines():
        in_maps = in_maps or line == "nsslab-maps-begin"
        if not segments or segments[-1].maps != in_maps:
            segments.append(Segment(in_maps))
        segments[-1].lines.append((line, None))
        if in_maps:  # addresses, not frames
            in_maps = line != "nsslab-maps-end"
            continue
        if m := THREAD.match(line):
            scope = ("thread", next((int(g) for g in m.groups()[1:] if g), int(m.group(1))))
        elif m := GOROUTINE.match(line):
            scope = ("goroutine", int(m.group(1)))
        elif m := FRAME.match(line):
            n, _, func, source, _ = m.groups()
            key = (int(n), func, PurePosixPath(source).name if source else "")
            stacks.setdefault(scope, []).append((len(segments) - 1, len(segments[-1].lines) - 1, key))
    wanted = proof_keys(frames)
    unnamed = {key: frame for frame, (where, key) in wanted.items() if where is None}
    threads = [s for s in stacks if s is None or s[0] == "thread"]
    best = max(threads, key=lambda s: sum(k in unnamed for *_, k in stacks[s]), default=None)
    for where, found in stacks.items():
        named = {key: frame for frame, (w, key) in wanted.items() if w == where}
        if where == best:
            named = unnamed | named
        for seg, i, key in found:
            if key in named:
                segments[seg].lines[i] = (segments[seg].lines[i][0], named[key])
    return segments


def matrices(reports: list[ModuleReport]) -> list[Matrix]:
    """A matrix for each module that ran on more than one target, checks in the order run."""
    by_module: dict[str, list[int]] = {}
    for i, r in enumerate(reports):
        by_module.setdefault(r.name, []).append(i)
    out = []
    for name, indexes in by_module.items():
        if len({reports[i].target for i in indexes}) < 2:
            continue
        checks = list(dict.fromkeys(c.id for i in indexes for c in reports[i].checks))
        rows = [(i, reports[i], {c.id: c for c in reports[i].checks}) for i in indexes]
        out.append(Matrix(name, checks, rows))
    return out


def version() -> str:
    try:
        return metadata.version("nsslab")
    except metadata.PackageNotFoundError:  # run from a checkout that was never pip-installed
        return "unknown"


def render_html(reports: list[ModuleReport]) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # reasons, gdb text and cmdlines come from the module under test
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["backtrace"] = backtrace
    started = min((r.started for r in reports), default=datetime.now(UTC).timestamp())
    return env.get_template("report.html.j2").render(
        reports=reports,
        matrices=matrices(reports),
        passed=sum(r.passed for r in reports),
        started=datetime.fromtimestamp(started, UTC),
        version=version(),
        severity=SEVERITY,
        impact_class=IMPACT_CLASS,
    )


def write_html(reports: list[ModuleReport], path: Path) -> None:
    save(path, render_html(reports))
