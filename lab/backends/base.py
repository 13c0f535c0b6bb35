"""What every target offers the checks. A backend only says how to install a module and
how to wrap a command so it runs inside the target; running with a bound, talking to the
probe, interactive shells and the testinfra host are built on that, once, here."""

from __future__ import annotations

import abc
import json
import os
import select
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import testinfra.backend.base
import testinfra.backend.ssh
import testinfra.host

from lab.elf import lib_names
from lab.errors import CommandTimeout, LabError
from lab.module import Module
from lab.probe import GDB_TIMEOUT

LAB = Path(__file__).resolve().parent.parent
# What runs inside a target: the probe, and the direct entry-point calls it loads from beside it.
# The caller-side checks' tests are lab/probe_*.py, loaded by entrypoints.py from beside it.
PROBE_FILES = (LAB / "probe.py", LAB / "entrypoints.py", *sorted(LAB.glob("probe_*.py")))
DEFAULT_TIMEOUT = 10.0
EVIDENCE_BOUND = 2 * GDB_TIMEOUT + 5  # two gdb runs, and slack


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


class Target(abc.ABC):
    """A place where a module is installed and checks run (sandbox, VM, ssh host)."""

    name: str = "target"
    python = "python3"  # the target's own interpreter runs the probe
    full_system = False  # sshd, PAM, systemd as PID 1: the login paths can be driven

    @abc.abstractmethod
    def install(self, module: Module) -> None:
        """Makes MODULE what glibc loads for its databases in every process of the target."""

    @abc.abstractmethod
    def uninstall(self) -> None:
        """Removes what install() did; must be safe to call twice."""

    @abc.abstractmethod
    def wrap(self, argv: list[str], tty: bool = False) -> list[str]:
        """The local command that runs ARGV as root inside the target (on a terminal with TTY)."""

    def close(self) -> None:  # noqa: B027 - most targets have nothing to end
        """Ends the target itself once every module has run (a VM is destroyed)."""

    @property
    @abc.abstractmethod
    def probe_path(self) -> str:
        """Where install() put probe.py inside the target."""

    @property
    @abc.abstractmethod
    def module_path(self) -> str:
        """Where install() put libnss_<name>.so.2 inside the target."""

    @property
    def library_dir(self) -> str:
        return self.module_path.rsplit("/", 1)[0]

    @property
    @abc.abstractmethod
    def workdir(self) -> str:
        """A directory inside the target, readable by every user, for the lab's files."""

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

    def scenario(self, steps: list[dict]) -> list[dict]:
        """Runs probe steps (see probe.py) and returns one result per step."""
        # A step may run to its timeout, then gather evidence: gdb attached to a hang
        # (probe.GDB_TIMEOUT) or the step again under gdb after a crash (timeout + GDB_TIMEOUT).
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

    @property
    def host(self) -> testinfra.host.Host:
        """testinfra's host, whose commands run in the target with this target's bound."""
        return testinfra.host.Host(TestinfraBridge(self))


class Watcher:
    """A running `probe.py watch`: reports once whether a process tree hung."""

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


def bounded_run(
    argv: list[str], timeout: float, what: str = "", input: str | bytes | None = None, **kwargs: Any
) -> subprocess.CompletedProcess:
    """subprocess.run in its own process group, the whole group killed past TIMEOUT
    (subprocess.run alone kills only the child: vagrant's ssh or debootstrap's dpkg live on),
    and the bound reported as a CommandTimeout saying WHAT (by default the command) took too long."""
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise CommandTimeout(f"{what or f'`{shlex.join(argv)}`'} took over {timeout:g} s") from None
    except BaseException:  # Ctrl-C: an orphaned `vagrant up` would hold its VM
        kill_group(proc)
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass  # unkillable (D state); the caller reports what it measured anyway


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
        return self.result(done.rc, self.encode(cmd), done.stdout.encode(), done.stderr.encode())


class BoundedSshBackend(testinfra.backend.ssh.SshBackend):
    """testinfra's own ssh backend, for targets reached over ssh (from their ssh-config).
    testinfra waits for ssh without a bound (its timeout is only ssh's ConnectTimeout), so
    each ssh runs in its own process group, killed past BOUND like every other call."""

    NAME = "nsslab-ssh"
    __test__ = False  # not a pytest class

    def __init__(self, hostspec: str, bound: float = DEFAULT_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(hostspec, **kwargs)
        self.bound = bound

    def run_local(self, command: str, *args: str) -> testinfra.backend.base.CommandResult:
        line = self.quote(command, *args)
        done = bounded_run(
            ["/bin/sh", "-c", line],
            self.bound,
            f"testinfra over ssh: `{line[-120:]}`",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if done.returncode == 255:  # ssh's own failure (testinfra would raise its whole result)
            why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise LabError(f"testinfra over ssh to {self.host.name} failed: {why[0]}")
        return self.result(done.returncode, self.encode(line), done.stdout, done.stderr)
