"""A target kind as a newcomer writes it: one transport, and make(). (The tests register it
under `echo://`; the lab's own kinds are listed in lab.targets.KINDS the same way.)"""

from __future__ import annotations

from lab.targets import Spec
from lab.targets.overlay import Overlay
from lab.targets.target import Target
from lab.targets.transport import Transport


class Echo(Transport):
    """This machine, with a mark in every command's environment."""

    local = True
    commands = 0  # how many went through here (the test reads it)

    def wrap(self, argv: list[str], tty: bool = False) -> list[str]:
        Echo.commands += 1
        return ["env", "NSSLAB_VIA=echo", *argv]


def expand(spec: Spec) -> list[str]:
    return [spec.text]


def make(spec: Spec, keep: bool = False) -> Target:
    return Target(spec.text, Echo(), Overlay())
