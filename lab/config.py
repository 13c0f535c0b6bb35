"""Every bound the lab's host side waits with, in one place (the probe's own bounds live in
the probe: it runs inside the target, stdlib-only, and cannot import this).

An environment variable of the same name (NSSLAB_<NAME>) replaces a bound, for slower hosts;
a bound is never infinite."""

from __future__ import annotations

import os


def _bound(name: str, default: float) -> float:
    return float(os.environ.get(f"NSSLAB_{name}", default))


COMMAND = _bound("COMMAND_TIMEOUT", 10.0)  # one command in a target (cat, getent, a probe query)
REMOTE_CALL = _bound("CALL_TIMEOUT", 120.0)  # one command over ssh into a VM or host (TCG is slow)
SSH_CONNECT = _bound("SSH_CONNECT_TIMEOUT", 20.0)  # ssh's own ConnectTimeout
HOLDER_READY = _bound("HOLDER_TIMEOUT", 30.0)  # a namespace holder's mounts (over ssh: a TCG guest)
TOOL = _bound("TOOL_TIMEOUT", 60.0)  # virsh, pgrep, ldconfig, ssh -O exit: local helpers
VM_UP = _bound("UP_TIMEOUT", 600.0)  # vagrant up under TCG; vagrant-libvirt would wait 10 min
VM_DESTROY = _bound("DESTROY_TIMEOUT", 300.0)
BUILD = _bound("BUILD_TIMEOUT", 600.0)  # make / go build of a module
BOX_STEP = _bound("BOX_STEP_TIMEOUT", 1800.0)  # debootstrap over a slow mirror
APT = _bound("APT_TIMEOUT", 300.0)
UNPACK = _bound("UNPACK_TIMEOUT", 120.0)
# Checks of one module run side by side (see lab.session.ModuleSession.run). Most of a check's time
# is waiting (a stillness window, a slow module's answer, a 2 s thread run), so 6 lanes on 2
# cores: measured here, clab 7.4 -> 2.9 s, golab 17.9 -> 6.9 s, slowlab 202 -> 40 s, same verdicts.
CHECK_LANES = int(os.environ.get("NSSLAB_CHECK_LANES", "6"))
KILL_WAIT = 5.0  # after SIGKILL: a process in D state is reported, not waited for
