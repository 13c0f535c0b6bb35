"""`container://PID`: a running container (or any process's namespaces), entered with nsenter.

A kind made of one transport: nsenter into PID's mount and pid namespaces and its root, with
the same overlay as the sandbox inside, so the container's own /etc and lib dirs are never
written. No engine is asked (there may be none): `docker inspect -f '{{.State.Pid}}' NAME`,
`podman inspect …` or `lxc-info -pH NAME` give the PID.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import LabError
from lab.targets import Spec
from lab.targets.overlay import Overlay
from lab.targets.target import Target
from lab.targets.transport import Enter, Local


def expand(spec: Spec) -> list[str]:
    return [spec.text]


def make(spec: Spec, keep: bool = False) -> Target:
    if not spec.host.isdigit() or not Path(f"/proc/{spec.host}/ns/mnt").exists():
        raise LabError(f"{spec.text}: no process {spec.host or '(none given)'} to enter: container://PID")
    return Target(spec.text, Enter(Local(), int(spec.host), root=True), Overlay())
