"""The non-destructive installer: the module exists only inside a private mount namespace.

A holder process (`unshare --mount`, started over any transport) owns the namespace. In it,
read-only overlays put the module into the target's lib dir and a private nsswitch.conf and
the manifest's files into /etc, so every process there (setuid ones, `su -`, bash's
completion children) loads the candidate the way it would on a real machine, while the
machine's own /etc and lib dirs are never written. The mounts die with the namespace.

With a ROOT (a root filesystem on this machine) the holder also gets a pid namespace, /proc,
/dev, /sys and a fresh /tmp and /run, and commands enter it with that root: the checks then
run on that tree's glibc, bash and bash-completion.

What the installer needs to know of the machine (its lib dir, nsswitch.conf, which paths
exist) it asks the machine itself, in one command, so the same code serves this host, a
root filesystem and an ssh host. Layers are built here and shipped when the machine is not
this one.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab import config
from lab.errors import LabError
from lab.install import nsswitch
from lab.module import Module
from lab.proc import bounded_run, kill_group
from lab.targets import state
from lab.targets.transport import Chroot, Enter, Transport

q = shlex.quote

MOUNT_TAG = "nsslab"  # the overlay's source name: `grep nsslab /proc/mounts` finds leaks
TREE_DIRS = ("/usr", "/etc", "/var", "/opt")  # where an unpacked package tree is overlaid
ROOT_WORKDIR = "/run/nsslab"  # the lab's files inside a root filesystem

# Run by the machine's python3: what install() must know of it, as one JSON line.
FACTS = r"""
import json, os, subprocess, sys
paths = json.loads(sys.argv[1])
def parent(p):
    p = os.path.dirname(p.rstrip("/")) or "/"
    while not os.path.isdir(p):
        p = os.path.dirname(p) or "/"
    return p
libdir = None
for ldconfig in ("ldconfig", "/sbin/ldconfig"):
    try:
        out = subprocess.run([ldconfig, "-p"], stdout=subprocess.PIPE, universal_newlines=True).stdout
    except OSError:
        continue
    for line in out.splitlines():
        if "libnss_files.so.2" in line and "=>" in line:
            libdir = os.path.dirname(os.path.realpath(line.split("=>")[1].strip()))
            break
    break
conf = "/etc/nsswitch.conf"
print(json.dumps({
    "libdir": libdir or "/usr/lib/x86_64-linux-gnu",
    "nsswitch": open(conf).read() if os.path.exists(conf) else "",
    "dirs": [p for p in paths if os.path.isdir(p)],
    "exists": [p for p in paths if os.path.lexists(p)],
    "parent": {p: parent(p) for p in paths},
}))
"""
# Kills every process of the namespace $1 holds but the holder (what a check left behind).
KILL_INSIDE = """ns=$(readlink /proc/$1/ns/mnt) || exit 0
[ "$ns" = "$(readlink /proc/self/ns/mnt)" ] && exit 0  # a reused pid: not a namespace of the lab's
for p in /proc/[0-9]*; do q=${p#/proc/}; [ "$q" = "$1" ] && continue
  [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && kill -9 "$q" 2>/dev/null; done; true"""


@dataclass
class Installed:
    """Where an installer put things, as the target sees them."""

    transport: Transport  # commands reach the installed world through this
    workdir: str
    module_path: str
    logdir: Path  # a local directory for service logs
    services: list[dict] = field(default_factory=list)


@dataclass
class Overlay:
    root: Path | None = None  # a root filesystem on this machine, entered with pid namespace
    python: str = "python3"
    holder: subprocess.Popen | None = None
    holder_pid: int = 0
    via: Transport | None = None
    remote_dir: str = ""  # the workdir as the outer machine sees it
    staging: Path | None = None  # local: the workdir itself, or what is shipped to it
    installed: Installed | None = None

    def install(self, via: Transport, module: Module, probe_files: list[tuple[str, Path]]) -> Installed:
        self.via = via
        try:
            return self._install(via, module, probe_files)
        except OSError as e:  # a library or [files] source that is not there: one line
            self.uninstall()
            raise LabError(f"target set-up failed: {e.strerror}: {e.filename}") from None
        except BaseException:
            self.uninstall()  # a half-built namespace must not leak its workdir or holder
            raise

    def _install(self, via: Transport, module: Module, probe_files: list[tuple[str, Path]]) -> Installed:
        if via.local and os.geteuid() != 0:
            raise LabError("the sandbox needs root: it mounts inside a private namespace (try sudo)")
        self.staging = Path(tempfile.mkdtemp(prefix="nsslab-"))
        self.staging.chmod(0o755)
        if via.local:
            self.remote_dir = str(self.staging)
        else:
            self.remote_dir = via.sh("d=$(mktemp -d /tmp/nsslab-XXXXXX) && chmod 755 $d && echo $d").strip()
        inside = ROOT_WORKDIR if self.root else self.remote_dir
        probe = self.staging / "probe"  # a directory: __main__.py and the nsslab_probe package
        for folder in sorted({probe / up for rel, _ in probe_files for up in Path(rel).parents}):
            folder.mkdir()
            folder.chmod(0o755)  # whatever the umask: a worker that dropped root reopens its channel there
        for rel, source in probe_files:
            shutil.copy(source, probe / rel)
        for path in [str(self.root or ""), *module.files, *module.state, *(u.home for u in module.users)]:
            if "," in path or ":" in path:  # overlayfs's option separators: no quoting reaches them
                raise LabError(f"cannot overlay {path!r}: a ',' or ':' in a path overlayfs is given")
        facts = self._facts(module)
        module_path = f"{facts['libdir']}/libnss_{module.name}.so.2"
        layers = self._layers(module, facts, module_path)
        tree = ""
        if module.tree and not via.local:
            tree = f"{self.remote_dir}/tree"
        elif module.tree:
            tree = str(module.tree)
            if any(tree.startswith(d + "/") for d in TREE_DIRS):
                raise LabError(
                    f"the package tree {tree} lies under {', '.join(TREE_DIRS)}: overlayfs refuses it"
                )
        if not via.local:
            self._ship(via, module)
        tree_dirs = [d for d in TREE_DIRS if module.tree and os.path.isdir(str(module.tree) + d)]
        script = self._script(module, layers, tree, tree_dirs, facts)
        self._start_holder(via, script)
        entry = Enter(via, self.holder_pid, root=bool(self.root))
        self.installed = Installed(entry, inside, module_path, self.staging)
        return self.installed

    def _facts(self, module: Module) -> dict:
        """The machine's lib dir, nsswitch.conf and which of the paths install() places exist."""
        assert self.via
        homes = [u.home for u in module.users if u.home.startswith("/")]
        paths = ["/etc/nsswitch.conf", *module.files, *module.state, *TREE_DIRS, *homes]
        argv = [self.python, "-I", "-S", "-c", FACTS, json.dumps(paths)]
        machine = Chroot(self.root) if self.root else self.via  # no namespace exists yet
        done = bounded_run(
            machine.wrap(argv), config.REMOTE_CALL, "asking the target what it has",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            return json.loads(done.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            why = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise LabError(f"the target's {self.python} did not answer: {why}") from None

    def _layers(self, module: Module, facts: dict, module_path: str) -> dict[str, str]:
        """One overlay layer per existing directory that receives files: {mount point: layer},
        the layer as the outer machine will see it."""
        assert self.staging
        dirs, exists, parents = set(facts["dirs"]), set(facts["exists"]), facts["parent"]
        parents[module_path] = facts["libdir"]
        placed: dict[str, tuple[str, object]] = {
            module_path: ("file", module.library),
            "/etc/nsswitch.conf": ("text", nsswitch(module, facts["nsswitch"])),
        }
        placed |= {target: ("file", source) for target, source in module.files.items()}
        for point in module.state:  # a state dir needs a mount point: the tree, or an empty dir
            tree_has = module.tree and os.path.isdir(str(module.tree) + point)
            if point not in dirs and not tree_has:
                placed.setdefault(point, ("dir", None))
        for user in module.users:
            if user.home.startswith("/") and user.home not in exists:
                placed[user.home] = ("home", user)
        points: dict[str, Path] = {}
        for target in sorted(placed, key=len):
            point = next((p for p in points if target.startswith(p + "/")), None)
            if point is None:
                point = parents[target]  # every placed path was asked about
                if point == "/":
                    raise LabError(f"cannot place {target}: no directory of its path exists below /")
                points[point] = self.staging / "layers" / str(len(points))
            dest = Path(str(points[point]) + target[len(point) :])
            dest.parent.mkdir(parents=True, exist_ok=True)
            kind, what = placed[target]
            if kind == "file":
                copy_owned_by_root(Path(str(what)), dest, module.modes.get(target))
                if target == module_path:
                    dest.chmod(0o755)
            elif kind == "dir":
                dest.mkdir(mode=0o755, exist_ok=True)
            elif kind == "text":
                dest.write_text(str(what))
                dest.chmod(0o644)
            else:
                dest.mkdir(mode=0o750, exist_ok=True)
                os.chown(dest, what.uid, what.gid)  # type: ignore[attr-defined]
        for layer in points.values():  # parents made above must let every user through
            for d, _, _ in os.walk(layer):
                if not Path(d).stat().st_uid:
                    Path(d).chmod(0o755)
        return {p: f"{self.remote_dir}/{layer.relative_to(self.staging)}" for p, layer in points.items()}

    def _ship(self, via: Transport, module: Module) -> None:
        """The staging dir (and the unpacked package tree) into the remote workdir, as one tar stream."""
        assert self.staging
        pack = self.staging.with_suffix(".tar")
        try:
            with tarfile.open(pack, "w") as tar:
                for item in self.staging.iterdir():
                    tar.add(item, arcname=item.name)
                if module.tree:
                    tar.add(module.tree, arcname="tree")
            with open(pack, "rb") as data:
                unpack = via.wrap(["tar", "-x", "-C", self.remote_dir])
                done = bounded_run(
                    unpack, config.REMOTE_CALL, "shipping the lab's files",
                    stdin=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                )  # fmt: skip
            if done.returncode != 0:
                raise LabError(f"shipping the lab's files failed: {done.stderr.decode().strip()[-200:]}")
        finally:
            pack.unlink(missing_ok=True)

    def _script(
        self, module: Module, layers: dict[str, str], tree: str, tree_dirs: list[str], facts: dict
    ) -> str:
        """Read-only overlays, shortest mount point first, each made of the lab's layer, the
        package tree's dir and the machine's own dir; then the writable state dirs on top.

        The machine's dirs are bound under the workdir before any overlay is mounted, so
        every layer is a plain directory (an overlay of an overlay would hit the kernel's
        stacking limit on a container's overlay root)."""
        root, work = str(self.root or ""), self.remote_dir
        lines = ["set -e"]
        if root:  # a mount point, as a real root is: a namespace made inside must be able to make it private
            lines.append(f"mount --bind {q(root)} {q(root)}")
        points = sorted(set(layers) | set(tree_dirs), key=len)
        for i, point in enumerate(points):
            lines.append(
                f"mkdir -p {q(f'{work}/host/{i}')} && mount --bind {q(root + point)} {q(f'{work}/host/{i}')}"
            )
        for i, point in enumerate(points):
            # the package tree's copy of this dir, where the tree has one (looked up in the local
            # tree: on an ssh host the shipped copy is the same files)
            parts = [layers[point]] if point in layers else []
            in_tree = any(point == d or point.startswith(d + "/") for d in tree_dirs)
            if in_tree and os.path.isdir(f"{module.tree}{point}"):
                parts.append(tree + point)
            parts.append(f"{work}/host/{i}")
            lines.append(
                f"mount -t overlay {MOUNT_TAG} -o {q('ro,lowerdir=' + ':'.join(parts))} {q(root + point)}"
            )
        for i, point in enumerate(module.state):
            base = f"{work}/state/{i}"
            lower = (
                tree + point
                if tree and module.tree and os.path.isdir(str(module.tree) + point)
                else f"{base}/empty"
            )
            lines.append(f"mkdir -p {q(base + '/upper')} {q(base + '/work')} {q(base + '/empty')}")
            options = f"lowerdir={lower},upperdir={base}/upper,workdir={base}/work"
            lines.append(f"mount -t overlay {MOUNT_TAG} -o {q(options)} {q(root + point)}")
        if self.root:  # a machine of its own: processes, devices, and a /tmp and /run of its own
            lines += [
                f"mount -t proc proc {q(root + '/proc')}",
                f"mount --rbind /dev {q(root + '/dev')}",
                f"mount --rbind /sys {q(root + '/sys')}",
                f"mount -t tmpfs -o mode=1777 {MOUNT_TAG} {q(root + '/tmp')}",
                f"mount -t tmpfs -o mode=755 {MOUNT_TAG} {q(root + '/run')}",
                f"mkdir -p {q(root + ROOT_WORKDIR)} && mount --bind {q(work)} {q(root + ROOT_WORKDIR)}",
                # ready only once chrooted: nsenter --root takes the holder's root as it is then
                f"exec chroot {q(root)} /bin/sh -c 'echo ready $$; exec cat >/dev/null'",
            ]
        else:
            lines += ["echo ready $$", "exec cat >/dev/null"]
        return "\n".join([*lines, ""])

    def _start_holder(self, via: Transport, script: str) -> None:
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if self.root:
            unshare += ["--pid", "--fork", "--kill-child"]
        self.holder = subprocess.Popen(
            via.wrap([*unshare, "--", "sh", "-c", script]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert self.holder.stdout and self.holder.stderr
        ready = select.select([self.holder.stdout], [], [], config.HOLDER_READY)[0]
        line = self.holder.stdout.readline().split() if ready else []
        if len(line) != 2 or line[0] != b"ready":
            kill_group(self.holder)
            err = self.holder.stderr.read().decode(errors="replace").strip().splitlines()
            raise LabError(
                f"target set-up failed: {err[-1] if err else f'no answer in {config.HOLDER_READY:g} s'}"
            )
        self.holder_pid = int(line[1])
        if self.root:  # pid 1 of its own namespace: from here it is unshare's child
            children = Path(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children").read_text().split()
            self.holder_pid = int(children[0])
        if via.local:  # a killed run's namespace and workdir are then known as the lab's own
            state.add(
                self._key, kind="namespace", mntns=namespace_of(self.holder_pid), workdir=str(self.staging)
            )
        else:
            state.add(
                self._key, kind="remote", target=getattr(via, "host", "?"), workdir=self.remote_dir,
                staging=str(self.staging),
            )  # fmt: skip

    def uninstall(self) -> None:
        if self.holder is not None and self.via is not None:
            try:
                self.via.sh(f"set -- {self.holder_pid}\n{KILL_INSIDE}", timeout=config.REMOTE_CALL)
            except LabError:
                pass  # the holder's end below takes a pid namespace's processes anyway
            namespace = namespace_of(self.holder_pid) if self.via.local else None
            kill_group(self.holder)
            for pipe in (self.holder.stdin, self.holder.stdout, self.holder.stderr):
                if pipe:
                    pipe.close()
            if namespace:  # and again, until none is left: one may have entered after the sweep
                deadline = time.monotonic() + config.KILL_WAIT
                while (left := processes_in(namespace)) and time.monotonic() < deadline:
                    for pid in left:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    time.sleep(0.05)
            self.holder = None
        if self.remote_dir and self.via is not None and not self.via.local:
            try:  # the namespace is gone, so its mounts are: only plain files are left there
                self.via.sh(f"rm -rf {shlex.quote(self.remote_dir)}")
            except LabError:
                pass
        if self.staging:
            shutil.rmtree(self.staging, ignore_errors=True)
            state.drop(self._key)
        self.staging, self.remote_dir, self.installed = None, "", None

    @property
    def _key(self) -> str:
        return f"namespace {self.staging}"


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


def namespace_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


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
