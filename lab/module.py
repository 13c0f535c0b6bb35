"""A module under test: its library, what it serves and what it must answer (module.toml)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lab import config, elf
from lab.errors import LabError
from lab.results import STATUSES

DATABASES = ("passwd", "group", "shadow", "initgroups")
LIBRARY_NAME = re.compile(r"^libnss_(?P<name>[A-Za-z0-9_]+)\.so(\.2)?$")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    gecos: str = ""
    home: str = "/"
    shell: str = "/bin/sh"


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shadow:
    """A shadow entry; -1 is an empty field in /etc/shadow ("never", "no limit")."""

    name: str
    password: str = "!"
    lastchg: int = -1
    min: int = -1
    max: int = -1
    warn: int = -1
    inact: int = -1
    expire: int = -1


READY_KINDS = ("socket", "command", "tcp")


@dataclass(frozen=True)
class Service:
    """A daemon the module talks to (sssd for libnss_sss), started in the target before the checks."""

    name: str
    command: tuple[str, ...]
    ready: tuple[str, object]  # ("socket", path) | ("command", argv) | ("tcp", port)
    timeout: float = 20.0


@dataclass
class Module:
    name: str
    library: Path
    databases: list[str]
    files: dict[str, Path] = field(default_factory=dict)
    users: list[User] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    shadow: list[Shadow] = field(default_factory=list)
    # False when the module deliberately offers no set/get/end*ent (no `getent passwd` listing)
    enumerable: bool = True
    # True when the listing must hold exactly the declared entries; by default it must hold
    # them (a real directory always has more users than a test names).
    exact: bool = False
    manifest: Path | None = None
    build: str | None = None
    # check id -> the status a known-bad module must get (`nsslab run --expect`)
    expect: dict[str, str] = field(default_factory=dict)
    # True when users/groups were found by enumerating a bare library, not declared:
    # they drive the fork and shell checks but are no truth to compare lookups against.
    discovered: bool = False
    # Debian packages unpacked (never installed) into `tree`, which the target overlays
    packages: list[str] = field(default_factory=list)
    tree: Path | None = None
    modes: dict[str, int] = field(default_factory=dict)  # [files] target -> mode, when declared
    state: list[str] = field(default_factory=list)  # private writable dirs (a daemon's state)
    services: list[Service] = field(default_factory=list)

    @property
    def has_expectations(self) -> bool:
        return self.manifest is not None and bool(self.users or self.groups)

    def gids_of(self, user: User) -> list[int]:
        """The user's groups as initgroups must report them: primary plus memberships."""
        return sorted({user.gid} | {g.gid for g in self.groups if user.name in g.members})


def load(path: str | Path) -> Module:
    """A manifest, a directory holding module.toml, or a bare libnss_<name>.so.2."""
    path = Path(path)
    if path.is_dir():
        path = path / "module.toml"
    if not path.exists():
        raise LabError(f"{path}: no such file")
    if path.suffix == ".toml":
        return from_manifest(path)
    return bare_library(path)


def bare_library(path: Path) -> Module:
    match = LIBRARY_NAME.match(path.name)
    if not match:
        raise LabError(f"{path}: glibc only loads modules named libnss_<service>.so.2")
    served = elf.served_databases(path, match["name"])
    return Module(name=match["name"], library=path.resolve(), databases=served or ["passwd"])


def read_manifest(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The manifest's table; `extends = "../clab/module.toml"` takes every key it does not
    set from that manifest ([files] sources stay relative to the file that names them)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))  # TOML is UTF-8, whatever the locale
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise LabError(f"{path}: not a valid manifest: {e}") from None
    except OSError as e:
        raise LabError(f"{path}: {e.strerror}") from None
    if "files" in data:
        data["files"] = {t: relative_source(path.parent, src) for t, src in data["files"].items()}
    if "extends" not in data:
        return data
    base = (path.parent / data.pop("extends")).resolve()
    if base in seen:
        raise LabError(f"{path}: `extends` loops back to {base}")
    inherited = read_manifest(base, (*seen, base))
    for key in ("name", "library", "build", "expect"):
        inherited.pop(key, None)  # what a module is and must get is never inherited
    return inherited | data


def relative_source(where: Path, source: object) -> object:
    """A [files] source is a path, or a table {source = PATH, mode = 0o600}."""
    if isinstance(source, dict) and "source" in source:
        return source | {"source": str(where / str(source["source"]))}
    return str(where / str(source))


def from_manifest(path: Path) -> Module:
    data = read_manifest(path.resolve())
    where = path.parent
    try:
        name = data["name"]
        library = where / data["library"]
    except KeyError as e:
        raise LabError(f"{path}: missing required field {e}") from None
    if not re.fullmatch(r"[A-Za-z0-9_]+", str(name)):
        raise LabError(f"{path}: name {name!r} is not a valid NSS service name")
    databases = list(data.get("databases", ["passwd", "group"]))
    unknown = set(databases) - set(DATABASES)
    if unknown:
        raise LabError(f"{path}: unknown databases {sorted(unknown)}; known: {list(DATABASES)}")
    try:
        users = [User(**u) for u in data.get("users", [])]
        groups = [Group(g["name"], g["gid"], tuple(g.get("members", []))) for g in data.get("groups", [])]
        shadow = [Shadow(**s) for s in data.get("shadow", [])]
    except (TypeError, KeyError) as e:
        raise LabError(f"{path}: bad [[users]], [[groups]] or [[shadow]] entry: {e}") from None
    expect = {str(k): str(v) for k, v in data.get("expect", {}).items()}
    bad = {k: v for k, v in expect.items() if v not in STATUSES}
    if bad:
        raise LabError(f"{path}: [expect] statuses must be one of {list(STATUSES)}, got {bad}")
    files, modes = read_files(path, data.get("files", {}), built=bool(data.get("build")))
    packages = data.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) and p for p in packages):
        raise LabError(f"{path}: packages must be a list of Debian package names")
    state = data.get("state", [])
    if not isinstance(state, list) or not all(isinstance(d, str) and d.startswith("/") for d in state):
        raise LabError(f"{path}: state must be a list of absolute directory paths")
    if any(d.rstrip("/") in ("", "/usr", "/etc") for d in state):
        raise LabError(f"{path}: state {state}: /, /usr and /etc cannot be private writable dirs")
    return Module(
        name=name,
        library=library,
        databases=databases,
        files=files,
        users=users,
        groups=groups,
        shadow=shadow,
        enumerable=bool(data.get("enumerable", True)),
        exact=bool(data.get("exact", False)),
        manifest=path,
        build=data.get("build"),
        expect=expect,
        packages=list(packages),
        modes=modes,
        state=[d.rstrip("/") for d in state],
        services=[read_service(path, i, s) for i, s in enumerate(data.get("services", []))],
    )


def read_files(path: Path, table: dict, built: bool) -> tuple[dict[str, Path], dict[str, int]]:
    """[files]: target -> source, and the modes declared (git keeps only 0644 and 0755, and
    sssd refuses a config that is not 0600). A source the build makes may not exist yet."""
    files, modes = {}, {}
    for target, source in table.items():
        if not target.startswith("/"):
            raise LabError(f"{path}: [files] target {target!r} must be an absolute path")
        if isinstance(source, dict):
            mode = source.get("mode")
            if set(source) - {"source", "mode"} or "source" not in source:
                raise LabError(f"{path}: [files] {target!r}: a table takes `source` and `mode` only")
            if mode is not None and (not isinstance(mode, int) or not 0 <= mode <= 0o7777):
                raise LabError(f"{path}: [files] {target!r}: mode must be an octal integer such as 0o600")
            if mode is not None:
                modes[target] = mode
            source = source["source"]
        files[target] = Path(source)
        if not built and not files[target].exists():
            raise LabError(f"{path}: [files] source {source} does not exist")
    return files, modes


def read_service(path: Path, index: int, entry: object) -> Service:
    """One [[services]] entry, every mistake a one-line error."""
    where = f"{path}: [[services]] #{index + 1}"
    if not isinstance(entry, dict):
        raise LabError(f"{where}: must be a table")
    unknown = set(entry) - {"name", "command", "ready", "timeout"}
    if unknown:
        raise LabError(f"{where}: unknown keys {sorted(unknown)}; known: name, command, ready, timeout")
    name, command, ready = entry.get("name"), entry.get("command"), entry.get("ready")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise LabError(f"{where}: needs a name (letters, digits, . _ -)")
    where = f"{path}: service {name}"
    if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
        raise LabError(f"{where}: command must be a non-empty list of strings")
    if not command[0].startswith("/"):
        raise LabError(f"{where}: command[0] must be an absolute path in the target, got {command[0]!r}")
    if not isinstance(ready, dict) or len(ready) != 1:
        raise LabError(
            f"{where}: ready must be one of {{socket = PATH}}, {{command = [...]}}, {{tcp = PORT}}"
        )
    kind, value = next(iter(ready.items()))
    if kind not in READY_KINDS:
        raise LabError(f"{where}: unknown ready kind {kind!r}; known: {', '.join(READY_KINDS)}")
    if kind == "socket" and not (isinstance(value, str) and value.startswith("/")):
        raise LabError(f"{where}: ready.socket must be an absolute path")
    if kind == "command" and not (
        isinstance(value, list) and value and all(isinstance(a, str) for a in value)
    ):
        raise LabError(f"{where}: ready.command must be a non-empty list of strings")
    if kind == "tcp" and not (isinstance(value, int) and 0 < value < 65536):
        raise LabError(f"{where}: ready.tcp must be a port number")
    timeout = entry.get("timeout", 20.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise LabError(f"{where}: timeout must be a positive number of seconds")
    value = tuple(value) if isinstance(value, list) else value
    return Service(name, tuple(command), (kind, value), float(timeout))


def ensure_built(module: Module) -> None:
    """Unpacks the manifest's packages, then runs its build command when the library is
    missing or older than a source. With packages, the build makes data (maps, configs),
    not the library: it runs every time, in the manifest's dir, with $NSSLAB_TREE set.
    One build at a time per module directory, also across processes (pytest-xdist workers
    start on the same module at once: the second finds the library fresh)."""
    if not (module.build or module.packages):
        return built(module)
    with build_lock(module.manifest.parent if module.manifest else module.library.parent):
        build(module)


@contextlib.contextmanager
def build_lock(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)  # flock on the directory: no lock file left behind
    try:
        deadline = time.monotonic() + config.BUILD
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"{directory}: another build held it over {config.BUILD:.0f} s") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


def build(module: Module) -> None:
    env = None
    if module.packages:
        from lab import packages  # apt is only for manifests that name packages

        module.tree = packages.fetch(module.packages)
        if (
            module.library.is_absolute()
            and module.manifest
            and not module.library.is_relative_to(module.manifest.parent)
        ):
            module.library = packages.resolve(module.tree, str(module.library))
        env = os.environ | {"NSSLAB_TREE": str(module.tree)}
    if module.build and (module.packages or stale(module)):
        cwd = module.manifest.parent if module.packages and module.manifest else module.library.parent
        try:
            done = subprocess.run(
                module.build,
                shell=True,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=config.BUILD,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise LabError(f"{module.name}: build `{module.build}` took over {config.BUILD:.0f} s") from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise LabError(f"{module.name}: build `{module.build}` failed: {last[0]}")
    built(module)


def built(module: Module) -> None:
    if not module.library.exists():
        raise LabError(f"{module.name}: library {module.library} does not exist")
    for source in module.files.values():
        if not source.exists():
            raise LabError(f"{module.name}: [files] source {source} does not exist (after the build)")


def stale(module: Module) -> bool:
    """The library is missing or older than a source in its directory, or in a directory
    the build command names (`make -f ../clab/Makefile` builds from ../clab)."""
    if not module.library.exists():
        return True
    built = module.library.stat().st_mtime
    here = module.library.parent
    dirs = {here} | {
        (here / word).resolve().parent
        for word in (module.build or "").split()
        if "/" in word and (here / word).exists()
    }
    sources = (
        p
        for d in dirs
        for p in d.iterdir()
        if p.suffix in (".c", ".h", ".go", ".mod", ".rs", ".map") or p.name == "Makefile"
    )
    return any(os.path.getmtime(p) > built for p in sources)
