"""Progress of long work: which check runs on which module and target, and for how long.

The lab's code reports events, each keyed by what it concerns: "<module> on <target>" for a
module's work (installing, its checks), the target's name for the target's own long steps
(a VM booting, a box or a root being built):

    progress.phase(key, "booting VM")        a long step begins (also `with progress.phase(...):`,
                                              which ends it, done or failed, when the block exits)
    progress.check_started(key, check_id)
    progress.check_done(key, result)          a CheckResult: its status and seconds
    progress.done(key, summary)               nothing more will happen under KEY

How they are shown is up to the front end, which installs a sink for the time of a run with
`with progress.shown(mode):` (`nsslab run`): Live redraws a line per key in place on a
terminal, Plain writes a line per event worth logging (CI logs), Quiet nothing. With no sink
installed (library use, tests) the events go nowhere. Every sink is safe to call from the
checks' threads and the targets' threads at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console, RenderableType
from rich.live import Live as RichLive
from rich.text import Text

HEARTBEAT = 30.0  # seconds of silence about a key before Plain says it is still at it
JOIN_BOUND = 2.0  # seconds stop() waits for the refresh/heartbeat thread


def console(file: IO[str], tty: bool | None = None) -> Console:
    """A rich Console on FILE: on a terminal its width and colours (NO_COLOR and TERM=dumb
    respected); anywhere else plain words, at least 100 columns wide, whatever FORCE_COLOR or
    TTY_COMPATIBLE say (a log must read and grep as text)."""
    if tty is None:
        tty = bool(getattr(file, "isatty", lambda: False)())
    width = None if tty else max(shutil.get_terminal_size((120, 20)).columns, 100)
    return Console(
        file=file,
        force_terminal=tty,
        color_system="auto" if tty else None,
        width=width,
        highlight=False,
        markup=False,
        emoji=False,
    )


def write(out: Console, renderable: RenderableType) -> None:
    """Prints RENDERABLE on OUT, never cropped; in a log without the spaces that pad its lines."""
    if out.is_terminal:
        out.print(renderable, crop=False)
        return
    with out.capture() as captured:
        out.print(renderable, crop=False)
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    out.file.flush()


@dataclass
class Activity:
    """What is going on under one key."""

    phase: str = ""
    since: float = 0.0  # when the phase began
    running: dict[str, float] = field(default_factory=dict)  # check id -> when it started
    finished: int = 0
    total: int | None = None
    said: float = 0.0  # when a line about this key was last written (Plain's heartbeat)

    def doing(self, now: float) -> str:
        """`tab-completion 3.2 s, threads 2.0 s`, or `booting VM 45 s`, or ''."""
        if self.running:
            return ", ".join(
                f"{c} {now - t:.1f} s" for c, t in sorted(self.running.items(), key=lambda i: i[1])
            )
        if self.phase:
            return f"{self.phase} {now - self.since:.0f} s"
        return ""

    def count(self) -> str:
        if self.total:
            return f"({self.finished}/{self.total} done)"
        return f"({self.finished} done)" if self.finished else ""


class Sink:
    """Shows nothing (no sink installed, or `--quiet`). The sinks that show progress track
    what goes on under each key (Tracking) and draw it their way."""

    def phase(self, key: str, text: str, total: int | None = None) -> None: ...

    def check_started(self, key: str, check_id: str) -> None: ...

    def check_done(self, key: str, result: Any) -> None: ...

    def done(self, key: str, summary: str) -> None: ...

    def finish(self, key: str, failed: bool) -> None:
        """The `with progress.phase(...)` block under KEY ended."""
        self.done(key, "failed" if failed else "done")

    def output(self, renderable: RenderableType) -> None:
        """Prints RENDERABLE (a module's table) to stdout, clear of the progress display."""
        write(console(sys.stdout), renderable)

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Tracking(Sink):
    """Keeps what goes on under each key, for the sinks that show it: they override the said_*
    hooks (called outside the lock) and tick(), called every PERIOD seconds from a thread of
    their own between start() and stop()."""

    period = 1.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.active: dict[str, Activity] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def phase(self, key: str, text: str, total: int | None = None) -> None:
        with self.lock:
            now = self.clock()
            a = self.active.setdefault(key, Activity())
            if a.phase == text and total is None:
                return  # said already: it goes on
            a.phase, a.since, a.said = text, now, now
            if total is not None:
                a.total = total
        self.said_phase(key, text)

    def check_started(self, key: str, check_id: str) -> None:
        with self.lock:
            a = self.active.setdefault(key, Activity())
            a.phase = ""  # the checks are what it does now
            a.running[check_id] = self.clock()

    def check_done(self, key: str, result: Any) -> None:
        with self.lock:
            a = self.active.setdefault(key, Activity())
            a.running.pop(result.id, None)
            a.finished += 1
            a.said = self.clock()
        self.said_check(key, result)

    def done(self, key: str, summary: str) -> None:
        with self.lock:
            self.active.pop(key, None)
        self.said_done(key, summary)

    def finish(self, key: str, failed: bool) -> None:
        with self.lock:
            a = self.active.get(key)
            last = f"{a.phase}: " if a and a.phase else ""
            took = f" after {self.clock() - a.since:.0f} s" if a and a.phase else ""
        self.done(key, f"{last}{'failed' if failed else 'done'}{took}")

    def said_phase(self, key: str, text: str) -> None: ...

    def said_check(self, key: str, result: Any) -> None: ...

    def said_done(self, key: str, summary: str) -> None: ...

    def tick(self) -> None: ...

    def start(self) -> None:
        self.thread = threading.Thread(target=self.ticking, name="progress", daemon=True)
        self.thread.start()

    def ticking(self) -> None:
        while not self.stopping.wait(self.period):
            try:
                self.tick()
            except Exception:  # a display that cannot draw must not end the run, nor go on failing
                return

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join(JOIN_BOUND)
            self.thread = None


class Quiet(Sink):
    """`nsslab run --quiet`: no progress at all."""


class Plain(Tracking):
    """A line per event worth logging, for a file or a CI log: a phase beginning, each check
    ending (status and seconds), a module done, and `still booting VM (60 s)` after every
    HEARTBEAT seconds without a line about a key that is still busy."""

    def __init__(
        self,
        file: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: float = HEARTBEAT,
        period: float = 1.0,
    ) -> None:
        super().__init__(clock)
        self.file, self.heartbeat, self.period = file, heartbeat, period
        self.writing = threading.Lock()

    def line(self, text: str) -> None:
        file = self.file or sys.stderr
        with self.writing:
            try:
                file.write(text + "\n")
                file.flush()
            except (OSError, ValueError):  # stderr closed or gone: progress is not worth failing for
                pass

    def logged(self, key: str) -> bool:
        """Whether KEY's heartbeats are written (Plain: every key's)."""
        return True

    def said_phase(self, key: str, text: str) -> None:
        self.line(f"{key}: {text}")

    def said_check(self, key: str, result: Any) -> None:
        self.line(f"{key}: {result.id} {result.status} ({result.seconds:.1f} s)")

    def said_done(self, key: str, summary: str) -> None:
        self.line(f"{key}: {summary}")

    def tick(self) -> None:
        due = []
        with self.lock:
            now = self.clock()
            for key, a in self.active.items():
                if self.logged(key) and (a.phase or a.running) and now - a.said >= self.heartbeat:
                    a.said = now
                    if a.running:
                        due.append(f"{key}: still running {a.doing(now)} {a.count()}".rstrip())
                    else:
                        due.append(f"{key}: still {a.phase} ({now - a.since:.0f} s)")
        for text in due:
            self.line(text)


class Steps(Plain):
    """Plain's lines for a front end that says each check itself (the pytest plugin): only the
    long steps of targets (a VM booting, a root being built) and `still ...` heartbeats."""

    def __init__(self, write: Callable[[str], None], heartbeat: float = HEARTBEAT) -> None:
        super().__init__(heartbeat=heartbeat)
        self.write = write

    def line(self, text: str) -> None:
        with self.writing:
            self.write(text)

    def logged(self, key: str) -> bool:
        return " on " not in key  # a target's own step, not a module's install or its checks

    def said_phase(self, key: str, text: str) -> None:
        if self.logged(key):
            super().said_phase(key, text)

    def said_check(self, key: str, result: Any) -> None: ...

    def said_done(self, key: str, summary: str) -> None:
        if self.logged(key):
            super().said_done(key, summary)


class Live(Tracking):
    """On a terminal: a line per busy key, redrawn about four times a second, e.g.

        clab on sandbox  tab-completion 3.2 s, threads 2.0 s  (14/22 done)
        vagrant://debian12  booting VM 45 s

    transient (gone when it stops, so the tables after it print as usual). While it runs,
    output() and anything printed to stdout (when stdout is this terminal too) or stderr go
    through its console, above the lines, so they do not garble each other."""

    period = 0.25

    def __init__(
        self,
        out: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
        redirect: bool | None = None,
    ) -> None:
        super().__init__(clock)
        self.console = out or console(sys.stderr, tty=True)
        # stdout and stderr pass through the display only when they are the same terminal as it
        redirect = out is None if redirect is None else redirect
        stdout_here = redirect and sys.stdout.isatty()
        self.live = RichLive(
            console=self.console,
            auto_refresh=False,  # our thread refreshes: it is joined when we stop, rich's is not
            transient=True,
            redirect_stdout=stdout_here,
            redirect_stderr=redirect,
            get_renderable=self.render,
        )
        self.stdout_here = stdout_here
        self.drawing = False

    def render(self) -> RenderableType:
        with self.lock:
            now = self.clock()
            lines = []
            for key, a in self.active.items():
                line = Text(key, style="bold")
                doing, count = a.doing(now), a.count()
                if doing:
                    line.append("  " + doing)
                if count:
                    line.append("  " + count, style="dim")
                lines.append(line)
        return Text("\n", no_wrap=True, overflow="ellipsis").join(lines)  # one row per key, cut if need be

    def output(self, renderable: RenderableType) -> None:
        self.tick()  # the lines drawn under it: as of now, not of the last tick
        if self.stdout_here:
            write(self.console, renderable)
        else:
            super().output(renderable)

    def said_done(self, key: str, summary: str) -> None:
        self.tick()  # its line goes now: a table printed next must not be followed by it

    def tick(self) -> None:
        if self.drawing:
            self.live.refresh()

    def start(self) -> None:
        self.live.start(refresh=True)
        self.drawing = True
        super().start()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.drawing = False
            self.live.stop()  # shows the cursor again, takes the lines away


NOTHING = Sink()
_sink: Sink = NOTHING


def current() -> Sink:
    return _sink


class Phase:
    """What phase() returns: used in a `with`, KEY is done (its last phase done or failed)
    when the block ends."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __enter__(self) -> Phase:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        _sink.finish(self.key, failed=kind is not None)


def phase(key: str, text: str, total: int | None = None) -> Phase:
    """KEY is at a long step, TEXT (`booting VM`); TOTAL: how many checks it will have run."""
    _sink.phase(key, text, total)
    return Phase(key)


def check_started(key: str, check_id: str) -> None:
    _sink.check_started(key, check_id)


def check_done(key: str, result: Any) -> None:
    _sink.check_done(key, result)


def done(key: str, summary: str) -> None:
    _sink.done(key, summary)


def output(renderable: RenderableType) -> None:
    _sink.output(renderable)


def make(mode: str) -> Sink:
    """live, plain or quiet; auto: Live when stderr is a terminal (not a dumb one), else Plain."""
    if mode == "auto":
        dumb = os.environ.get("TERM", "").lower() in ("dumb", "unknown")
        mode = "live" if sys.stderr.isatty() and not dumb else "plain"
    return {"live": Live, "plain": Plain, "quiet": Quiet}[mode]()


@contextlib.contextmanager
def shown(mode: str | Sink = "auto") -> Iterator[Sink]:
    """Shows the progress MODE's way (or through the sink given) for the time of the block,
    and always takes it away again, Ctrl-C included: the terminal is left as it was (cursor
    shown, lines gone) and no thread of it is left running."""
    global _sink
    sink = make(mode) if isinstance(mode, str) else mode
    previous = _sink
    sink.start()
    _sink = sink
    try:
        yield sink
    finally:
        _sink = previous
        sink.stop()
