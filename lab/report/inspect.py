"""`nsslab inspect LIB`: the static ELF facts of a library and what they mean here."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lab import elf
from lab.checks.static import Finding, findings
from lab.module import LIBRARY_NAME
from lab.probe.cli import sysinfo

VERDICT = {"blocker": "fail", "fail": "fail", "warn": "warn"}


def inspect_library(path: Path, as_json: bool = False) -> int:
    """Prints the facts and findings against this machine; 1 when glibc here (or a newer
    one) would refuse the library or it lacks entry points, else 0."""
    info = elf.inspect(path)
    service = service_name(path, info)
    present = info.entry_points(service)
    databases = [db for db, entries in elf.LOOKUPS.items() if present & set(entries)] or ["passwd"]
    enumerable = any(present & set(elf.ENUMERATION[db]) for db in databases)
    origin = str(path.resolve().parent)
    runpath = [d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin) for d in info.runpath]
    target = sysinfo(info.needed, runpath)
    found = findings(info, service, databases, enumerable, target)
    verdict = next((VERDICT[f.severity] for f in found if VERDICT.get(f.severity) == "fail"), None)
    verdict = verdict or ("warn" if any(f.severity == "warn" for f in found) else "pass")
    if as_json:
        out = {"library": str(path), "service": service, "verdict": verdict, "elf": info.as_dict()}
        print(json.dumps(out | {"target": target, "findings": [f.__dict__ for f in found]}, indent=2))
    else:
        print(render(path, info, service, databases, target, found, verdict))
    return 1 if verdict == "fail" else 0


def service_name(path: Path, info: elf.ElfInfo) -> str:
    """From the file name (libnss_<service>.so.2), else the soname, else the exports."""
    for name in (path.name, info.soname or ""):
        if m := LIBRARY_NAME.match(name):
            return m["name"]
    prefixes = {m.group(1) for s in info.nss_symbols if (m := re.match(r"_nss_(\w+?)_(get|set|end|init)", s))}
    return sorted(prefixes)[0] if prefixes else path.name


def render(
    path: Path,
    info: elf.ElfInfo,
    service: str,
    databases: list[str],
    target: dict,
    found: list[Finding],
    verdict: str,
) -> str:
    present = info.entry_points(service)
    stack = info.gnu_stack
    lines = [
        f"{path}: {info.machine} {info.elf_type} {info.elf_class}-bit, soname {info.soname or '-'}, "
        f"service {service!r}",
        "  entry points: "
        + ", ".join(
            f"{db} {len(present & set(elf.ENTRY_POINTS[db]))}/{len(elf.ENTRY_POINTS[db])}" for db in databases
        ),
        f"  glibc: needs {info.newest_glibc or 'no GLIBC_ version'}, this machine has {target['glibc']}",
        "  needs: "
        + (", ".join(f"{lib} ({where or 'MISSING'})" for lib, where in target["libs"].items()) or "nothing"),
        f"  Go: {info.go_version or 'yes, version unknown'} ({', '.join(info.go_markers[:3])})"
        if info.is_go
        else "  Go: no",
        f"  TLS: {'STATIC_TLS, ' if info.static_tls else ''}{info.tls_size} bytes",
        "  GNU_STACK: "
        + (
            f"{'executable' if stack['exec'] else 'not executable'}, size {stack['size']}"
            if stack
            else "absent"
        ),
        f"verdict: {verdict}",
    ]
    lines += [f"  {f.severity}: {f.text}" for f in found]
    return "\n".join(lines)
