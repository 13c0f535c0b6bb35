"""`sandbox`: this machine, the module only inside a private mount namespace (see overlay.py)."""

from __future__ import annotations

from lab.targets import Spec
from lab.targets.overlay import MOUNT_TAG, Overlay, processes_in
from lab.targets.target import Target
from lab.targets.transport import Local

__all__ = ["MOUNT_TAG", "Sandbox", "expand", "make", "processes_in"]


def Sandbox() -> Target:
    return Target("sandbox", Local(), Overlay(python="/usr/bin/python3"), python="/usr/bin/python3")


def expand(spec: Spec) -> list[str]:
    return ["sandbox"]


def make(spec: Spec, keep: bool = False) -> Target:
    return Sandbox()
