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

from lab import services
from lab.backends.base import PROBE_FILES, Target, kill_group
from lab.errors import LabError
from lab.install import nss_library_dir, nsswitch
from lab.module import Module

MOUNT_TAG = "nsslab"  # the overlay's source name: `grep nsslab /proc/mounts` finds leaks
TREE_DIRS = ("/usr", "/etc", "/var", "/opt")  # where an unpacked package tree is overlaid


class Sandbox(Target):
    name = "sandbox"
    python = "/usr/bin/python3"

    def __init__(self) -> None:
        self.holder: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._module_path = ""
        # [[services]] started for the module: {name, pid, ready_seconds, log, tail, exit};
        # kept after uninstall() (the log file goes with the workdir, its tail stays here)
        self.services: list[dict] = []

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
        self.services = []
        try:
            self._start(module)
            self.services = services.start(self, module.services, self._workdir)
        except BaseException:
            self.uninstall()  # a half-built sandbox must not leak its workdir or holder
            raise

    def _start(self, module: Module) -> None:
        for source in PROBE_FILES:
            shutil.copy(source, f"{self.workdir}/{source.name}")
        self._module_path = str(nss_library_dir() / f"libnss_{module.name}.so.2")
        try:
            script = self._mount_script(module)
        except OSError as e:
            raise LabError(f"sandbox set-up failed: {e.strerror}: {e.filename}") from None
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

    def _mount_script(self, module: Module) -> str:
        """Read-only overlays, shortest mount point first, each made of the lab's layer, the
        package tree's dir and the host's own dir; then the writable state dirs on top.

        The host's dirs are bound under the workdir before any overlay is mounted, so every
        layer is a plain directory (an overlay of an overlay would hit the kernel's stacking
        limit on a container's overlay root)."""
        assert self._workdir
        lab = dict(self._layers(module))
        tree = {
            d: str(module.tree) + d for d in TREE_DIRS if module.tree and os.path.isdir(str(module.tree) + d)
        }
        if module.tree and any(str(module.tree).startswith(d + "/") for d in TREE_DIRS):
            raise LabError(
                f"the package tree {module.tree} lies under {', '.join(TREE_DIRS)}: overlayfs refuses it"
            )
        lines = ["set -e"]
        points = sorted(set(lab) | set(tree), key=len)
        for i, point in enumerate(points):
            lines.append(
                f"mkdir -p {self._workdir}/host/{i} && mount --bind {point} {self._workdir}/host/{i}"
            )
        for i, point in enumerate(points):
            below = [p + point[len(d) :] for d, p in tree.items() if point == d or point.startswith(d + "/")]
            layers = [lab[point]] if point in lab else []
            layers += [p for p in below if os.path.isdir(p)] + [f"{self._workdir}/host/{i}"]
            lines.append(f"mount -t overlay {MOUNT_TAG} -o ro,lowerdir={':'.join(layers)} {point}")
        for i, point in enumerate(module.state):
            base = self._workdir / "state" / str(i)
            for d in ("upper", "work", "empty"):
                (base / d).mkdir(parents=True)
            lower = (
                str(module.tree) + point
                if module.tree and os.path.isdir(str(module.tree) + point)
                else base / "empty"
            )
            options = f"lowerdir={lower},upperdir={base}/upper,workdir={base}/work"
            lines.append(f"mount -t overlay {MOUNT_TAG} -o {options} {point}")
        return "\n".join([*lines, "echo ready", "exec cat >/dev/null", ""])

    def _layers(self, module: Module) -> list[tuple[str, str]]:
        """Builds one overlay layer per existing directory that receives files; returns
        (mount point, layer dir) pairs."""
        assert self._workdir
        placed: dict[str, tuple[str, object]] = {
            self.module_path: ("file", module.library),
            "/etc/nsswitch.conf": ("text", nsswitch(module, Path("/etc/nsswitch.conf").read_text())),
        }
        placed |= {target: ("file", source) for target, source in module.files.items()}
        for point in module.state:  # a state dir needs a mount point: the tree, or an empty dir
            tree_has = module.tree and os.path.isdir(str(module.tree) + point)
            if not os.path.isdir(point) and not tree_has:
                placed.setdefault(point, ("dir", None))
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
                copy_owned_by_root(Path(what), dest, module.modes.get(target))
                if target == self.module_path:
                    dest.chmod(0o755)
            elif kind == "dir":
                dest.mkdir(mode=0o755, exist_ok=True)
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
        services.stop(self.services)  # SIGTERM first: a daemon may clean up after itself
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


def copy_owned_by_root(source: Path, dest: Path, mode: int | None) -> None:
    """SOURCE (a file or a directory) at DEST with its own modes (a helper the module runs
    stays executable) or MODE, owned by root like a package's files."""
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy(source, dest)
    for path in [dest, *dest.rglob("*")] if dest.is_dir() else [dest]:
        os.lchown(path, 0, 0)
    if mode is not None:
        dest.chmod(mode)


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
