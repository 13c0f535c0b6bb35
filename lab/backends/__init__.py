"""Where checks run. Each backend implements lab.backends.base.Target."""

from __future__ import annotations

import sys

from lab.backends.base import Target
from lab.errors import LabError

OPEN: dict[str, Target] = {}  # VMs live across the modules of a run; see close_all()


def get_target(spec: str, keep: bool = False) -> Target:
    """'sandbox' (the default, on this machine), or 'vagrant:PLATFORM' (a VM, reused by
    every module of the run)."""
    kind, _, platform = spec.partition(":")
    if kind == "sandbox":
        from lab.backends.sandbox import Sandbox

        return Sandbox()
    if kind == "vagrant":
        from lab.backends.vagrant import Vagrant, matrix

        if platform not in matrix():
            raise LabError(
                f"vagrant target needs a platform the Vagrantfile defines: vagrant:{'|'.join(matrix())}"
            )
        if spec not in OPEN:
            OPEN[spec] = Vagrant(platform, keep)
        return OPEN[spec]
    raise LabError(f"unknown target {spec!r}; known: sandbox, vagrant:PLATFORM")


def close(spec: str) -> str | None:
    """Ends the target SPEC if the run started it (a VM's memory goes to the next platform);
    returns the error, one line, if it would not end."""
    target = OPEN.pop(spec, None)
    try:
        if target:
            target.close()
    except Exception as e:  # a VM that will not die must not hide the verdicts
        return f"{spec}: {e}"
    return None


def close_all() -> list[str]:
    """Ends every VM the run started; returns the errors (one line each)."""
    errors = [error for spec in list(OPEN) if (error := close(spec))]
    if "lab.backends.vagrant" in sys.modules:
        sys.modules["lab.backends.vagrant"].cleanup()
    return errors
