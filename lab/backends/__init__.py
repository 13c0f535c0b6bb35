"""Where checks run. Each backend implements lab.backends.base.Target."""

from __future__ import annotations

from lab.backends.base import Target
from lab.errors import LabError


def get_target(spec: str) -> Target:
    """'sandbox' (the default, on this machine); VM targets come with the vagrant backend."""
    kind = spec.split(":", 1)[0]
    if kind == "sandbox":
        from lab.backends.sandbox import Sandbox

        return Sandbox()
    raise LabError(f"unknown target {spec!r}; known: sandbox")
