"""What the library file says about itself, read with pyelftools (no readelf, no loading)."""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from lab.errors import LabError

# The entry points glibc looks up per database; one present means the database is served.
ENTRY_POINTS = {
    "passwd": ("getpwnam_r", "getpwuid_r", "setpwent", "getpwent_r", "endpwent"),
    "group": ("getgrnam_r", "getgrgid_r", "setgrent", "getgrent_r", "endgrent"),
    "shadow": ("getspnam_r", "setspent", "getspent_r", "endspent"),
    "initgroups": ("initgroups_dyn",),
}
GO_VERSION = re.compile(rb"go1\.[0-9]+(\.[0-9]+)?((rc|beta)[0-9]+)?")
MACHINES = {
    "x86_64": "EM_X86_64",
    "aarch64": "EM_AARCH64",
    "i686": "EM_386",
    "ppc64le": "EM_PPC64",
    "s390x": "EM_S390",
    "riscv64": "EM_RISCV",
}


@dataclass
class ElfInfo:
    path: Path
    machine: str
    nss_symbols: list[str] = field(default_factory=list)
    is_go: bool = False
    go_version: str | None = None


def inspect(path: Path) -> ElfInfo:
    """Raises LabError with one line when PATH is no shared object glibc could load here."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf["e_type"] != "ET_DYN":
                raise LabError(f"{path}: an ELF {elf['e_type']}, not a shared object")
            machine = elf["e_machine"]
            want = MACHINES.get(platform.machine())
            if want and machine != want:
                raise LabError(f"{path}: built for {machine}, this machine is {platform.machine()}")
            dynsym = elf.get_section_by_name(".dynsym")
            names = [s.name for s in dynsym.iter_symbols() if s["st_shndx"] != "SHN_UNDEF"] if dynsym else []
            buildinfo = elf.get_section_by_name(".go.buildinfo")
            info = ElfInfo(
                path=path, machine=machine, nss_symbols=sorted(n for n in names if n.startswith("_nss_"))
            )
            info.is_go = buildinfo is not None or "crosscall2" in names
            if buildinfo is not None:
                info.go_version = go_version(buildinfo.data())
            return info
    except ELFError:
        raise LabError(f"{path}: not an ELF file") from None
    except (ValueError, KeyError, AttributeError, IndexError) as e:  # pyelftools on corrupt input
        raise LabError(f"{path}: unreadable ELF ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise LabError(f"{path}: {e.strerror}") from None


def go_version(data: bytes) -> str | None:
    """The 'go1.x' string that the Go linker writes into .go.buildinfo (binary bytes follow it)."""
    found = GO_VERSION.search(data)
    return found.group().decode() if found else None


def served_databases(path: Path, service: str) -> list[str]:
    symbols = set(inspect(path).nss_symbols)
    return [
        db for db, entries in ENTRY_POINTS.items() if any(f"_nss_{service}_{e}" in symbols for e in entries)
    ]


def lib_names(paths: list[str]) -> list[str]:
    """Mapped objects by file name: /usr/lib/x86_64-linux-gnu/libnss_golab.so.2 -> libnss_golab.so.2."""
    return [p.rsplit("/", 1)[-1] for p in paths]
