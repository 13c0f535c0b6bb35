"""What the library file says about itself, read with pyelftools (no readelf, no loading).

Only reading happens here; what the facts mean on a given target (is this glibc new
enough, is this stack allowed) is judged by lab/checks/static.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from lab.errors import LabError

# The entry points glibc looks up per database: the point lookups a database needs, and
# the enumeration trio (`getent passwd`, compgen -u).
LOOKUPS = {
    "passwd": ("getpwnam_r", "getpwuid_r"),
    "group": ("getgrnam_r", "getgrgid_r"),
    "shadow": ("getspnam_r",),
    "initgroups": ("initgroups_dyn",),
}
ENUMERATION = {
    "passwd": ("setpwent", "getpwent_r", "endpwent"),
    "group": ("setgrent", "getgrent_r", "endgrent"),
    "shadow": ("setspent", "getspent_r", "endspent"),
    "initgroups": (),
}
ENTRY_POINTS = {db: LOOKUPS[db] + ENUMERATION[db] for db in LOOKUPS}
GO_VERSION = re.compile(rb"go1\.[0-9]+(\.[0-9]+)?((rc|beta)[0-9]+)?")
GLIBC_VERSION = re.compile(r"^GLIBC_(\d+)\.(\d+)(?:\.(\d+))?$")
MACHINES = {
    "x86_64": "EM_X86_64",
    "aarch64": "EM_AARCH64",
    "i686": "EM_386",
    "ppc64le": "EM_PPC64",
    "s390x": "EM_S390",
    "riscv64": "EM_RISCV",
}
DF_STATIC_TLS = 0x10
PF_X = 0x1


@dataclass
class ElfInfo:
    path: Path
    machine: str
    elf_type: str = "ET_DYN"
    elf_class: int = 64
    soname: str | None = None
    needed: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    nss_symbols: list[str] = field(default_factory=list)
    is_go: bool = False
    go_version: str | None = None
    go_markers: list[str] = field(default_factory=list)  # what gave Go away
    static_tls: bool = False  # DF_STATIC_TLS: needs a slot in the static TLS block
    tls_size: int = 0  # PT_TLS memsz
    gnu_stack: dict | None = None  # {"exec": bool, "size": memsz}; None: no PT_GNU_STACK
    glibc_versions: list[str] = field(default_factory=list)  # GLIBC_x.y it needs, oldest first

    @property
    def newest_glibc(self) -> str | None:
        return self.glibc_versions[-1] if self.glibc_versions else None

    def entry_points(self, service: str) -> set[str]:
        prefix = f"_nss_{service}_"
        return {s[len(prefix) :] for s in self.nss_symbols if s.startswith(prefix)}

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "path"}
        return {"path": str(self.path), **out, "newest_glibc": self.newest_glibc}


def version_key(version: str) -> tuple[int, ...]:
    """GLIBC_2.34 -> (2, 34); anything else sorts first."""
    m = GLIBC_VERSION.match(version) or GLIBC_VERSION.match(f"GLIBC_{version}")
    return tuple(int(g) for g in m.groups() if g) if m else (0,)


def inspect(path: Path) -> ElfInfo:
    """Raises LabError with one line when PATH is no ELF file at all."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            info = ElfInfo(
                path=path, machine=elf["e_machine"], elf_type=elf["e_type"], elf_class=elf.elfclass
            )
            read_dynamic(elf, info)
            read_segments(elf, info)
            read_versions(elf, info)
            read_go(elf, info)
            return info
    except ELFError:
        raise LabError(f"{path}: not an ELF file") from None
    except (ValueError, KeyError, AttributeError, IndexError, TypeError) as e:  # pyelftools on corrupt input
        raise LabError(f"{path}: unreadable ELF ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise LabError(f"{path}: {e.strerror}") from None


def read_dynamic(elf: ELFFile, info: ElfInfo) -> None:
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                kind = tag.entry.d_tag
                if kind == "DT_SONAME":
                    info.soname = tag.soname
                elif kind == "DT_NEEDED":
                    info.needed.append(tag.needed)
                elif kind in ("DT_RUNPATH", "DT_RPATH"):
                    info.runpath += (tag.runpath if kind == "DT_RUNPATH" else tag.rpath).split(":")
                elif kind == "DT_FLAGS":
                    info.static_tls = bool(tag.entry.d_val & DF_STATIC_TLS)
    dynsym = elf.get_section_by_name(".dynsym")
    names = [s.name for s in dynsym.iter_symbols() if s["st_shndx"] != "SHN_UNDEF"] if dynsym else []
    info.nss_symbols = sorted(n for n in names if n.startswith("_nss_"))
    markers = {
        n for n in names if n in ("crosscall2", "_cgo_init", "_rt0_amd64_lib") or n.startswith("_cgo_")
    }
    info.go_markers = sorted(markers, key=lambda n: (n.startswith("_cgo_") and n != "_cgo_init", n))[:5]


def read_segments(elf: ELFFile, info: ElfInfo) -> None:
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_GNU_STACK":
            info.gnu_stack = {"exec": bool(segment["p_flags"] & PF_X), "size": segment["p_memsz"]}
        elif segment["p_type"] == "PT_TLS":
            info.tls_size = segment["p_memsz"]


def read_versions(elf: ELFFile, info: ElfInfo) -> None:
    versions = set()
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for _, auxiliaries in section.iter_versions():
                versions |= {a.name for a in auxiliaries if GLIBC_VERSION.match(a.name)}
    info.glibc_versions = sorted(versions, key=version_key)


def read_go(elf: ELFFile, info: ElfInfo) -> None:
    buildinfo = elf.get_section_by_name(".go.buildinfo")
    if buildinfo is not None:
        info.go_markers = [".go.buildinfo", *info.go_markers][:5]
        info.go_version = go_version(buildinfo.data())
    info.is_go = buildinfo is not None or "crosscall2" in info.go_markers


def go_version(data: bytes) -> str | None:
    """The 'go1.x' string that the Go linker writes into .go.buildinfo (binary bytes follow it)."""
    found = GO_VERSION.search(data)
    return found.group().decode() if found else None


def served_databases(path: Path, service: str) -> list[str]:
    present = inspect(path).entry_points(service)
    return [db for db, entries in ENTRY_POINTS.items() if present & set(entries)]


def lib_names(paths: list[str]) -> list[str]:
    """Mapped objects by file name: /usr/lib/x86_64-linux-gnu/libnss_golab.so.2 -> libnss_golab.so.2."""
    return [p.rsplit("/", 1)[-1] for p in paths]
