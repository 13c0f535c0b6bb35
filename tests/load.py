"""Busy processes beside a test, for what a loaded machine (a CI runner) does to the lab."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

# each ends by itself within a minute, should this process be killed before it stops them
SPIN = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass"


@contextlib.contextmanager
def busy(count: int) -> Iterator[None]:
    """COUNT processes spinning on a CPU for the time of the block, each in its own session."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", SPIN], start_new_session=True))
        yield
    finally:
        for p in procs:  # all killed first, then reaped: one slow reap leaves no other spinning
            p.kill()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
