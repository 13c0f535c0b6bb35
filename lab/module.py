"""A module under test: its library, what it serves and what it must answer (module.toml)."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lab import elf
from lab.errors import LabError

DATABASES = ("passwd", "group", "shadow", "initgroups")
STATUSES = ("pass", "warn", "fail", "hang", "crash", "error", "skip")
LIBRARY_NAME = re.compile(r"^libnss_(?P<name>[A-Za-z0-9_]+)\.so(\.2)?$")
BUILD_TIMEOUT = 600.0


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
    manifest: Path | None = None
    build: str | None = None
    # check id -> the status a known-bad module must get (`nsslab run --expect`)
    expect: dict[str, str] = field(default_factory=dict)
    # True when users/groups were found by enumerating a bare library, not declared:
    # they drive the fork and shell checks but are no truth to compare lookups against.
    discovered: bool = False

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
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise LabError(f"{path}: not a valid manifest: {e}") from None
    except OSError as e:
        raise LabError(f"{path}: {e.strerror}") from None
    if "files" in data:
        data["files"] = {t: str(path.parent / src) for t, src in data["files"].items()}
    if "extends" not in data:
        return data
    base = (path.parent / data.pop("extends")).resolve()
    if base in seen:
        raise LabError(f"{path}: `extends` loops back to {base}")
    inherited = read_manifest(base, (*seen, base))
    for key in ("name", "library", "build", "expect"):
        inherited.pop(key, None)  # what a module is and must get is never inherited
    return inherited | data


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
    files = {target: Path(source) for target, source in data.get("files", {}).items()}
    for target, source in files.items():
        if not target.startswith("/"):
            raise LabError(f"{path}: [files] target {target!r} must be an absolute path")
        if not source.exists():
            raise LabError(f"{path}: [files] source {source} does not exist")
    return Module(
        name=name,
        library=library,
        databases=databases,
        files=files,
        users=users,
        groups=groups,
        shadow=shadow,
        enumerable=bool(data.get("enumerable", True)),
        manifest=path,
        build=data.get("build"),
        expect=expect,
    )


def ensure_built(module: Module) -> None:
    """Runs the manifest's build command when the library is missing or older than a source."""
    if module.build and stale(module):
        try:
            done = subprocess.run(
                module.build,
                shell=True,
                cwd=module.library.parent,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise LabError(f"{module.name}: build `{module.build}` took over {BUILD_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise LabError(f"{module.name}: build `{module.build}` failed: {last[0]}")
    if not module.library.exists():
        raise LabError(f"{module.name}: library {module.library} does not exist")


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
