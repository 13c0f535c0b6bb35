"""The embedded target: a private mount namespace on this machine.

A holder process (`unshare --mount`) owns the namespace; every command enters it with
nsenter. Inside, read-only overlays put the module into the multiarch lib dir and a
private nsswitch.conf and the manifest's files into /etc, so every process there —
setuid ones, `su -`, bash's completion children — loads the candidate the way it would
on a real machine, while the host's /etc and lib dirs are never written. The mounts die
with the namespace, so nothing can leak past uninstall().
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from lab.backends.base import PROBE_FILES, Target, kill_group
from lab.errors import LabError
from lab.install import nss_library_dir, nsswitch
from lab.module import Module

MOUNT_TAG = "nsslab"  # the overlay's source name: `grep nsslab /proc/mounts` finds leaks


class Sandbox(Target):
    name = "sandbox"
    python = "/usr/bin/python3"

    def __init__(self) -> None:
        self.holder: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._module_path = ""

    @property
    def workdir(self) -> str:
        assert self._workdir, "install() first"
        return str(self._workdir)

    @property
    def probe_path(self) -> str:
        return f"{self.workdir}/probe.py"

    @property
    def module_path(self) -> str:
        assert self._module_path, "install() first"
        return self._module_path

    def install(self, module: Module) -> None:
        if os.geteuid() != 0:
            raise LabError("the sandbox needs root: it mounts inside a private namespace (try sudo)")
        for tool in ("unshare", "nsenter", "mount"):
            if not shutil.which(tool):
                raise LabError(f"the sandbox needs `{tool}` (Debian package util-linux/mount)")
        self._workdir = Path(tempfile.mkdtemp(prefix="nsslab-"))
        self._workdir.chmod(0o755)
        try:
            self._start(module)
        except BaseException:
            self.uninstall()  # a half-built sandbox must not leak its workdir or holder
            raise

    def _start(self, module: Module) -> None:
        for source in PROBE_FILES:
            shutil.copy(source, f"{self.workdir}/{source.name}")
        self._module_path = str(nss_library_dir() / f"libnss_{module.name}.so.2")
        try:
            mounts = self._layers(module)
        except OSError as e:
            raise LabError(f"sandbox set-up failed: {e.strerror}: {e.filename}") from None
        script = (
            "set -e\n"
            + "".join(
                f"mount -t overlay {MOUNT_TAG} -o ro,lowerdir={layer}:{point} {point}\n"
                for point, layer in mounts
            )
            + "echo ready\nexec cat >/dev/null\n"
        )
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.holder.stdout and self.holder.stderr
        ready = select.select([self.holder.stdout], [], [], 15)[0]
        if not ready or self.holder.stdout.readline().strip() != b"ready":
            kill_group(self.holder)
            err = self.holder.stderr.read().decode(errors="replace").strip().splitlines()
            raise LabError(f"sandbox set-up failed: {err[-1] if err else 'no answer in 15 s'}")

    def _layers(self, module: Module) -> list[tuple[str, str]]:
        """Builds one overlay layer per existing directory that receives files; returns
        (mount point, layer dir) pairs."""
        assert self._workdir
        placed: dict[str, tuple[str, object]] = {
            self.module_path: ("file", module.library),
            "/etc/nsswitch.conf": ("text", nsswitch(module, Path("/etc/nsswitch.conf").read_text())),
        }
        placed |= {target: ("file", source) for target, source in module.files.items()}
        for user in module.users:
            if user.home.startswith("/") and not os.path.exists(user.home):
                placed[user.home] = ("home", user)
        points: dict[str, str] = {}
        for target in sorted(placed, key=len):
            point = next((p for p in points if target.startswith(p + "/")), None)
            if point is None:
                point = existing_parent(target)
                if point == "/":
                    raise LabError(f"cannot place {target}: no directory of its path exists below /")
                points[point] = str(self._workdir / "layers" / str(len(points)))
            dest = Path(points[point] + target[len(point) :])
            dest.parent.mkdir(parents=True, exist_ok=True)
            kind, what = placed[target]
            if kind == "file":
                shutil.copy(what, dest)
                dest.chmod(0o755 if str(dest).endswith(".so.2") else 0o644)
            elif kind == "text":
                dest.write_text(str(what))
                dest.chmod(0o644)
            else:
                dest.mkdir(mode=0o750, exist_ok=True)
                os.chown(dest, what.uid, what.gid)
        for layer in points.values():  # parents made above must let every user through
            for d, _, _ in os.walk(layer):
                if not Path(d).stat().st_uid:
                    Path(d).chmod(0o755)
        return list(points.items())

    def wrap(self, argv: list[str], tty: bool = False) -> list[str]:  # pexpect gives the pty
        assert self.holder, "install() first"
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", *argv]

    def uninstall(self) -> None:
        if self.holder is not None:
            namespace = self._namespace()
            for pid in processes_in(namespace):  # anything a check left behind
                if pid != self.holder.pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            kill_group(self.holder)
            for pipe in (self.holder.stdin, self.holder.stdout, self.holder.stderr):
                if pipe:
                    pipe.close()
            self.holder = None
            deadline = time.monotonic() + 5
            while namespace and processes_in(namespace) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _namespace(self) -> str | None:
        try:
            return os.readlink(f"/proc/{self.holder.pid}/ns/mnt") if self.holder else None
        except OSError:
            return None


def existing_parent(path: str) -> str:
    parent = os.path.dirname(path.rstrip("/"))
    while not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    return parent


def processes_in(namespace: str | None) -> list[int]:
    if not namespace:
        return []
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/mnt") == namespace:
                    found.append(int(name))
            except OSError:
                pass
    return found
