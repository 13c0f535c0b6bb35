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

from lab.forensics.gdb import CURRENT, FRAME, GOROUTINE, THREAD
from lab.report import save
from lab.results import IMPACT_CLASS, SEVERITY, CheckResult
from lab.runner import ModuleReport

TEMPLATES = Path(__file__).resolve().parent / "templates"
# A proving frame as lab.forensics writes it (gdb.Frame.__str__, prefixed with its stack when
# that is not the stack the cause is read from): "[goroutine 17: |thread 4242: ]#N func[ at
# file:line][ [lib]]". The stack, number, function and file:line pin it to one backtrace line.
PROOF = re.compile(r"^(?:(goroutine|thread) (\d+): )?#(\d+) (.+?)(?: at (\S+))?(?: \[[^\]]*\])?$")
# A crash re-run names the thread that got the signal: 'Thread 1 "python3" received signal SIGABRT'.
SIGNALLED = re.compile(r'^Thread (\d+)(?: "[^"]*")? received signal ')

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
    library: str
    targets: int  # distinct targets
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
    same futex call is not the proof). On a tie gdb's current thread (the one that got the
    signal) is it; if that does not settle it, none of the tied stacks is marked."""
    segments: list[Segment] = []
    stacks: dict[Scope, list[tuple[int, int, Key]]] = {}  # scope -> (segment, line, key) of its frames
    scope: Scope = None
    numbers: dict[int, Scope] = {}  # gdb's thread number -> its stack
    current: int | None = None  # gdb's thread number of its current thread
    in_maps = False
    for line in text.splitlines():
        in_maps = in_maps or line == "nsslab-maps-begin"
        if not segments or segments[-1].maps != in_maps:
            segments.append(Segment(in_maps))
        segments[-1].lines.append((line, None))
        if in_maps:  # addresses, not frames
            in_maps = line != "nsslab-maps-end"
            continue
        if m := CURRENT.match(line) or SIGNALLED.match(line):
            current = int(m.group(1))
        elif m := THREAD.match(line):
            scope = ("thread", next((int(g) for g in m.groups()[1:] if g), int(m.group(1))))
            numbers[int(m.group(1))] = scope
        elif m := GOROUTINE.match(line):
            scope = ("goroutine", int(m.group(1)))
        elif m := FRAME.match(line):
            n, _, func, source, _ = m.groups()
            key = (int(n), func, PurePosixPath(source).name if source else "")
            stacks.setdefault(scope, []).append((len(segments) - 1, len(segments[-1].lines) - 1, key))
    wanted = proof_keys(frames)
    unnamed = {key: frame for frame, (where, key) in wanted.items() if where is None}
    held = {s: sum(k in unnamed for *_, k in stacks[s]) for s in stacks if s is None or s[0] == "thread"}
    top = [s for s, n in held.items() if n and n == max(held.values())]
    if len(top) > 1:  # a tie: gdb's current thread is the proof's, or no guess is made
        top = [numbers[current]] if current in numbers and numbers[current] in top else []
    best = set(top)  # the one stack the unnamed frames are marked in, if any
    for where, found in stacks.items():
        named = {key: frame for frame, (w, key) in wanted.items() if w == where}
        if where in best:
            named = unnamed | named
        for seg, i, key in found:
            if key in named:
                segments[seg].lines[i] = (segments[seg].lines[i][0], named[key])
    return segments


def frames_for(evidence: dict, pid) -> list[str]:
    """The proving frames to mark in process PID's backtrace: the diagnosis read one process
    (its pid in the evidence) and its frames are that one's; with no pid named, any process."""
    frames = evidence.get("frames") or []
    return frames if evidence.get("pid") is None or evidence.get("pid") == pid else []


def located(evidence: dict) -> set[str]:
    """The proving frames that stand marked in some gdb text the page shows for EVIDENCE."""
    raw = evidence.get("raw") or {}
    texts = [
        ((p.get("gdb") or {}).get("text", ""), frames_for(evidence, p.get("pid")))
        for p in raw.get("processes", [])
    ]
    texts.append((raw.get("text", ""), evidence.get("frames") or []))
    return {
        proof for text, frames in texts for seg in backtrace(text, frames) for _, proof in seg.lines if proof
    }


def matrices(reports: list[ModuleReport]) -> list[Matrix]:
    """A matrix for each module (name and library: two builds of one module are two) that ran
    on more than one target, checks in the order run."""
    by_module: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(reports):
        by_module.setdefault((r.name, r.library), []).append(i)
    out = []
    for (name, library), indexes in by_module.items():
        targets = len({reports[i].target for i in indexes})
        if targets < 2:
            continue
        checks = list(dict.fromkeys(c.id for i in indexes for c in reports[i].checks))
        rows = [(i, reports[i], {c.id: c for c in reports[i].checks}) for i in indexes]
        out.append(Matrix(name, library, targets, checks, rows))
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
    env.globals["frames_for"] = frames_for
    env.globals["located"] = located
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
