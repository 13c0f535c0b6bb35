"""A target is a transport (how a command reaches the machine), an installer (how the
module gets there: an overlay in a private namespace, or in place with an undo record) and,
for machines the lab creates, a provisioner. Running with a bound, talking to the probe,
interactive shells and the testinfra host are built on the transport's wrap(), once, here,
so no check knows which kind of target it runs on: it asks for a capability instead."""

from __future__ import annotations

import functools
import json
import os
import select
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pexpect
import testinfra.backend.base
import testinfra.host

from lab import config, services
from lab.elf import lib_names
from lab.errors import LabError
from lab.module import Module
from lab.probe import GDB_TIMEOUT, shipped
from lab.proc import bounded_run, kill_group
from lab.targets.overlay import Installed
from lab.targets.transport import Ssh, Transport

DEFAULT_TIMEOUT = config.COMMAND
EVIDENCE_BOUND = 2 * GDB_TIMEOUT + 5  # two gdb runs, and slack

# What a check may ask of a target (Target.caps):
FULL_SYSTEM = "full-system"  # sshd, PAM and systemd as PID 1 serve logins with the module installed
DISPOSABLE = "disposable"  # the machine may be changed for good (authorized_keys, units): a VM


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


class Installer(Protocol):
    # probe_files: (path under the workdir's probe/, local file), as lab.probe.shipped() lists them
    def install(self, via: Transport, module: Module, probe_files: list[tuple[str, Path]]) -> Installed: ...

    def uninstall(self) -> None: ...


class Provisioner(Protocol):
    """Makes the machine exist: up() returns the transport that reaches it, close() ends it."""

    def up(self) -> Transport: ...

    def close(self) -> None: ...


@dataclass
class Target:
    """A place where a module is installed and checks run (sandbox, rootfs, VM, ssh host)."""

    name: str
    transport: Transport | None  # None: the provisioner makes one
    installer: Installer
    provisioner: Provisioner | None = None
    caps: frozenset[str] = frozenset()
    python: str = "python3"  # the target's own interpreter runs the probe
    lanes: int = config.CHECK_LANES  # checks run side by side (a TCG guest: one at a time)
    installed: Installed | None = field(default=None, repr=False)
    ended: list[dict] = field(default_factory=list, repr=False)  # services of the last install
    unreachable: str = ""  # why the machine could not be reached or made, once

    def install(self, module: Module) -> None:
        """Makes MODULE what glibc loads for its databases in every process of the target."""
        if self.unreachable:  # one unreachable host is one error per module, not one wait each
            raise LabError(self.unreachable)
        try:
            if self.transport is None:
                assert self.provisioner, f"{self.name}: no transport and nothing to make one"
                self.transport = self.provisioner.up()
            self.transport.open()
        except LabError as e:
            self.unreachable = str(e)
            raise
        self.installed = self.installer.install(self.transport, module, shipped())
        try:
            self.installed.services = services.start(self, module.services, self.installed.logdir)
        except BaseException:
            self.uninstall()
            raise

    def uninstall(self) -> None:
        """Removes what install() did; safe to call twice. The services' records stay (the
        report reads how each ended)."""
        installed, self.installed = self.installed, None  # from here no command enters (see wrap)
        if installed:
            services.stop(installed.services)  # SIGTERM first: a daemon may clean up after itself
            self.ended = installed.services
        self.installer.uninstall()

    def close(self) -> None:
        """Ends the target itself once every module has run (a VM is destroyed)."""
        if self.transport:
            self.transport.close()
        if self.provisioner:
            self.transport = None
            self.provisioner.close()

    def wrap(self, argv: list[str], tty: bool = False) -> list[str]:
        """The local command that runs ARGV as root inside the target (on a terminal with TTY).
        Refused once uninstall() began: a check still running beside an interrupted run must
        not start a process the teardown has already swept past."""
        return self._installed().transport.wrap(argv, tty)

    def _installed(self) -> Installed:
        installed = self.installed
        if installed is None:
            raise LabError(f"{self.name}: nothing installed (the module's run is over)")
        return installed

    @property
    def services(self) -> list[dict]:
        """The module's [[services]] as run for this install (kept after uninstall in the report)."""
        return self.installed.services if self.installed else self.ended

    @property
    def probe_path(self) -> str:
        """The probe as the target runs it: a directory (__main__.py and the nsslab_probe package)."""
        return f"{self.workdir}/probe"

    @property
    def module_path(self) -> str:
        return self._installed().module_path

    @property
    def library_dir(self) -> str:
        return self.module_path.rsplit("/", 1)[0]

    @property
    def workdir(self) -> str:
        """A directory inside the target, readable by every user, for the lab's files."""
        return self._installed().workdir

    # ---- built on wrap()

    def run(self, argv: list[str], timeout: float = DEFAULT_TIMEOUT, stdin: str = "") -> Result:
        """Runs ARGV in the target; kills its whole process group past TIMEOUT."""
        done = bounded_run(
            self.wrap(argv),
            timeout,
            f"`{shlex.join(argv)}`",
            input=stdin,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def probe(self, *args: str, timeout: float = 120.0) -> list[dict]:
        """Runs a probe command and returns its JSON lines."""
        done = self.run([self.python, "-I", "-S", self.probe_path, *args], timeout=timeout)
        try:
            events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        except json.JSONDecodeError:
            events = []
        if done.rc != 0 or not events:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise LabError(f"probe {args[0]} failed in {self.name}: {tail}")
        return events

    def scenario(self, steps: list[dict], side_by_side: int = 1) -> list[dict]:
        """Runs probe steps (see lab/probe/monitor.py) and returns one result per step, in order.

        With SIDE_BY_SIDE > 1 the steps are dealt to that many probes running at once: for
        steps that are independent by construction (each is its own worker process, as
        fork-child's are), so a module that freezes every step costs a fraction of the wait."""
        if side_by_side > 1 and len(steps) > 1:
            hands = [steps[i::side_by_side] for i in range(side_by_side)]
            with ThreadPoolExecutor(max_workers=len(hands), thread_name_prefix="steps") as pool:
                dealt = list(pool.map(self.scenario, hands))
            return [dealt[i % side_by_side][i // side_by_side] for i in range(len(steps))]
        # A step may run to its timeout, then gather evidence: gdb attached to a hang
        # (GDB_TIMEOUT) or the step again under gdb after a crash (timeout + GDB_TIMEOUT).
        bound = sum(2 * s.get("timeout", 20.0) + EVIDENCE_BOUND for s in steps)
        return [
            e
            for e in self.probe("scenario", json.dumps({"steps": steps}), timeout=bound)
            if e.get("ev") == "step"
        ]

    def start_watch(self, pid: int, quick: float, slow: float, timeout: float) -> Watcher:
        argv = [
            self.python,
            "-I",
            "-S",
            self.probe_path,
            "watch",
            str(pid),
            str(quick),
            str(slow),
            str(timeout),
        ]
        return Watcher(
            subprocess.Popen(
                self.wrap(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
            )
        )

    def spawn(self, argv: list[str], env: dict[str, str], timeout: float = 10.0) -> pexpect.spawn:
        """An interactive process in the target on a pseudo-terminal, for pexpect."""
        local = self.wrap(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv], tty=True)
        return pexpect.spawn(
            local[0],
            local[1:],
            timeout=timeout,
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(40, 200),
        )

    def as_user(self, uid: int, gid: int, gids: list[int], argv: list[str]) -> list[str]:
        """ARGV run as UID with no NSS lookup on the way (su/setpriv would resolve names)."""
        return [
            self.python,
            "-I",
            "-S",
            self.probe_path,
            "as-user",
            str(uid),
            str(gid),
            ",".join(map(str, gids)),
            "--",
            *argv,
        ]

    def sysinfo(self, libs: list[str], dirs: list[str]) -> dict:
        """The target's machine and glibc, and where each of LIBS resolves there (None: nowhere)."""
        return self.probe("sysinfo", json.dumps({"libs": libs, "dirs": dirs}))[0]

    def nss_modules(self, pid: int) -> list[str]:
        """The file names of the NSS modules mapped into PID (what `lsof | grep libnss` shows)."""
        return lib_names(self.probe("maps", str(pid))[0]["nss_modules"])

    def local_users(self) -> set[str]:
        """Names in the target's own /etc/passwd, i.e. the users no module serves."""
        return {line.split(":")[0] for line in self.run(["cat", "/etc/passwd"]).stdout.splitlines()}

    @functools.cached_property
    def host(self) -> testinfra.host.Host:
        """testinfra's host, one per target, whose commands run in the target through its
        transport with this target's bound (testinfra's own ssh backend would open its own
        connections with options built a second time)."""
        bound = DEFAULT_TIMEOUT if self.transport is None or self.transport.local else config.REMOTE_CALL
        return testinfra.host.Host(TestinfraBridge(self, bound))


class Watcher:
    """A running `probe watch`: reports once whether a process tree hung."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.buffer = b""

    def poll(self) -> dict | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.buffer += chunk
        if b"\n" in self.buffer:
            return json.loads(self.buffer.split(b"\n", 1)[0])
        return None

    def stop(self) -> None:
        kill_group(self.proc)


class TestinfraBridge(testinfra.backend.base.BaseBackend):
    """Lets testinfra's modules (host.user, host.group, host.file …) run in a Target."""

    NAME = "nsslab"
    __test__ = False  # not a pytest class

    def __init__(self, target: Target, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(target.name, **kwargs)
        self.target = target
        self.timeout = timeout

    def run(self, command: str, *args: str, **kwargs: Any) -> testinfra.backend.base.CommandResult:
        cmd = self.get_command(command, *args)
        done = self.target.run(["/bin/sh", "-c", cmd], timeout=self.timeout)
        if done.rc == 255 and isinstance(self.target.transport, Ssh):  # ssh's own failure, not the command's
            why = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise LabError(f"{self.target.name}: ssh failed: {why[0]}")
        return self.result(done.rc, self.encode(cmd), done.stdout.encode(), done.stderr.encode())
