"""How a command reaches a machine: the one place each way's options live.

A transport only turns an argv into the local argv that runs it there (like a testinfra
backend's run(), but as argv, so pexpect can drive it on a terminal too). Copying files,
running with a bound and talking to the probe are built on wrap(), once, in Target.
"""

from __future__ import annotations

import abc
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lab import config
from lab.errors import LabError
from lab.proc import bounded_run, tool
from lab.targets import state


class Transport(abc.ABC):
    local = False  # the machine is this one: its paths are ours (a sandbox, a rootfs)

    @abc.abstractmethod
    def wrap(self, argv: list[str], tty: bool = False) -> list[str]:
        """The local command that runs ARGV as root there (on a terminal with TTY)."""

    def open(self) -> None:  # noqa: B027 - most transports have nothing to set up
        """Called before the first command (an ssh master connection is opened here)."""

    def close(self) -> None:  # noqa: B027
        """Ends what open() started."""

    def sh(self, script: str, timeout: float = config.REMOTE_CALL) -> str:
        """SCRIPT run there by sh, bounded; its stdout, or a LabError with its stderr's tail."""
        done = bounded_run(
            self.wrap(["sh", "-c", script]),
            timeout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            raise LabError(f"`{script[:80]}` failed: {done.stderr.strip()[-200:] or 'no output'}")
        return done.stdout

    def put(self, local: Path, remote: str, mode: str = "0644") -> None:
        """LOCAL to REMOTE: cat through the transport, so no scp quoting or staging dir."""
        with open(local, "rb") as data:
            done = bounded_run(
                self.wrap(["sh", "-c", f'cat > "$1" && chmod {mode} "$1"', "put", remote]),
                config.REMOTE_CALL,
                f"copying {local.name} to {remote}",
                stdin=data,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        if done.returncode != 0:
            raise LabError(f"copying {local.name} to {remote} failed: {done.stderr.decode().strip()[-200:]}")


class Local(Transport):
    """This machine, as root."""

    local = True

    def wrap(self, argv: list[str], tty: bool = False) -> list[str]:
        return list(argv)


@dataclass
class Chroot(Transport):
    """A root filesystem on this machine, before any namespace exists (for looking around)."""

    root: Path
    local = True

    def wrap(self, argv: list[str], tty: bool = False) -> list[str]:
        return ["chroot", str(self.root), *argv]


@dataclass
class Enter(Transport):
    """Into a holder process's namespaces, over the transport that reaches its machine:
    its mount namespace, and with ROOT its pid namespace and root directory too."""

    via: Transport
    pid: int
    root: bool = False

    @property
    def local(self) -> bool:  # type: ignore[override]
        return self.via.local and not self.root  # another root's paths are not ours

    def wrap(self, argv: list[str], tty: bool = False) -> list[str]:
        enter = ["nsenter", f"--target={self.pid}", "--mount"]
        if self.root:
            enter += ["--pid", "--root", "--wd"]
        return self.via.wrap([*enter, "--", *argv], tty)


@dataclass
class Ssh(Transport):
    """A host over ssh, as root, over one multiplexed connection per run (a TCG guest takes
    1-2 s per handshake; an ssh_config or a port from the spec say how to reach it)."""

    host: str
    user: str | None = "root"  # None: the ssh_config says
    port: int | None = None
    ssh_config: str | None = None
    identity: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    _control: str = ""

    def base(self) -> list[str]:
        argv = ["ssh"]
        if self.ssh_config:
            argv += ["-F", self.ssh_config]
        if self.identity:
            argv += ["-i", self.identity]
        if self.port:
            argv += ["-p", str(self.port)]
        opts = {"BatchMode": "yes", "ConnectTimeout": f"{config.SSH_CONNECT:g}"}
        if self.user:
            opts["User"] = self.user
        opts |= self.options
        if self._control:
            opts |= {"ControlMaster": "auto", "ControlPath": self._control, "ControlPersist": "600"}
        for key, value in opts.items():
            argv += ["-o", f"{key}={value}"]
        return argv

    def open(self) -> None:
        if self._control:
            return
        fd, path = tempfile.mkstemp(prefix="nsslab-ssh-", suffix=".sock")
        os.close(fd)
        os.unlink(path)  # ssh makes the socket itself
        self._control = path
        master = [*self.base(), "-o", "ControlMaster=yes", "-N", "-f", self.host]
        state.add(f"ssh {path}", kind="ssh-master", control=path, host=self.host)
        done = tool(*master, timeout=config.SSH_CONNECT + 10)
        if done.returncode != 0:
            self.close()
            why = (done.stderr.strip().splitlines() or ["no answer"])[-1]
            raise LabError(f"ssh {self.user + '@' if self.user else ''}{self.host}: {why}")

    def close(self) -> None:
        if self._control:
            tool(*self.base(), "-O", "exit", self.host, timeout=config.TOOL)
            Path(self._control).unlink(missing_ok=True)
            state.drop(f"ssh {self._control}")
            self._control = ""

    def wrap(self, argv: list[str], tty: bool = False) -> list[str]:
        return [*self.base(), "-tt" if tty else "-T", self.host, shlex.join(argv)]
