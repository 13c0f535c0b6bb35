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
        from lab.backends.vagrant import Vagrant
        from lab.boxes import PLATFORMS

        if platform not in PLATFORMS and not platform:
            raise LabError(f"vagrant target needs a platform: vagrant:{'|'.join(PLATFORMS)}")
        if spec not in OPEN:
            OPEN[spec] = Vagrant(platform, keep)
        return OPEN[spec]
    raise LabError(f"unknown target {spec!r}; known: sandbox, vagrant:PLATFORM")


def close_all() -> list[str]:
    """Ends every VM the run started; returns the errors (one line each)."""
    errors = []
    while OPEN:
        spec, target = OPEN.popitem()
        try:
            target.close()
        except Exception as e:  # a VM that will not die must not hide the verdicts
            errors.append(f"{spec}: {e}")
    if "lab.backends.vagrant" in sys.modules:
        sys.modules["lab.backends.vagrant"].cleanup()
    return errors
