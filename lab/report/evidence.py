"""One human-readable evidence file per hang or crash: the named cause, the frames that
prove it, and everything the probe saw (per-thread /proc state, mapped modules, gdb)."""

from __future__ import annotations

import re
from pathlib import Path

from lab.report import save
from lab.results import CheckResult, ModuleReport


def write_evidence(report: ModuleReport, directory: Path) -> list[Path]:
    """Writes DIRECTORY/<module>/<check>.txt for each check with evidence, and each
    finding's reproducer scripts beside it (a VM's under DIRECTORY/<module>/<target>/, so a
    matrix run keeps every platform's); records the paths in the results."""
    return [path for c in report.checks for path in write_check(report, c, directory)]


def write_check(report: ModuleReport, c: CheckResult, directory: Path) -> list[Path]:
    """One check's evidence file and reproducer scripts (the pytest plugin writes them as
    each item ends, so its failure text names files that exist)."""
    where = directory / safe(report.name)
    if report.target != "sandbox":
        where /= safe(report.target)
    written = write_scripts(c, where)
    if c.evidence and "file" not in c.evidence:
        path = where / f"{safe(c.id)}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        save(path, render(report, c))
        c.evidence["file"] = str(path)
        written.append(path)
    return written


def write_scripts(c: CheckResult, where: Path) -> list[Path]:
    """A reproducer a maintainer runs without the lab. `{name}` in the result's reproduce
    line becomes the written path; with no line, it is `python3 PATH`."""
    paths = []
    for name, text in c.scripts.items():
        path = where / f"{safe(c.id)}-{safe(name)}"
        path.parent.mkdir(parents=True, exist_ok=True)
        save(path, text)
        path.chmod(0o755)
        paths.append(path)
        c.reproduce = c.reproduce.replace(f"{{{name}}}", str(path)) if c.reproduce else f"python3 {path}"
    return paths


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"


def render(report: ModuleReport, c: CheckResult) -> str:
    e = c.evidence or {}
    out = [
        f"nsslab evidence: {report.name} [{report.library}], check {c.id}: {c.status} on {report.target}",
        "",
        f"cause: {e.get('cause')}",
        f"  {e.get('explanation')}",
        f"verdict: {c.reason}",
        f"step: {e.get('step')}",
        "",
        "proving frames (innermost first):",
        *(f"  {f}" for f in e.get("frames") or ["(none: nothing is claimed)"]),
        "",
        "facts:",
        *(f"  - {f}" for f in e.get("facts") or ["(none)"]),
        "",
    ]
    if report.needs(c):
        out += [f"reproduce: {c.reproduce}", "  which needs, as the lab installed it:"]
        out += [f"  - {line}" for line in report.needs(c)] + [""]
    raw = e.get("raw") or {}
    for p in raw.get("processes", []):
        out += process_section(p)
    if "text" in raw or "error" in raw:  # a crash re-run under gdb
        failed = f": {raw['error']}" if "error" in raw else ""
        out.append(f"crash re-run under gdb ({raw.get('seconds', '?')} s){failed}")
        out += ["  " + line for line in raw.get("text", "").splitlines()]
    return "\n".join(out) + "\n"


def process_section(p: dict) -> list[str]:
    parent = p.get("parent") or {}
    lines = [
        f"process {p['pid']}: {p.get('cmdline', '')}",
        f"  threads: {p.get('threads')}; NSS modules mapped: {', '.join(p.get('nss_modules', [])) or 'none'}",
    ]
    if parent.get("alive"):
        lines.append(
            f"  parent {parent['pid']}: {parent.get('threads')} thread(s), "
            f"{'forked without exec' if parent.get('fork_without_exec') else 'another program'}; "
            f"NSS modules mapped: {', '.join(parent.get('nss_modules', [])) or 'none'}"
        )
    lines.append("  tid       comm             state wait          call       wchan                futex")
    for t in p.get("tasks", []):
        futex = t.get("futex") or {}
        owner = futex.get("owner", 0)  # meaningful for a pthread mutex: a plausible tid
        fx = f"{futex.get('addr', '')} owner={owner}" if 0 < owner < 1 << 22 else futex.get("addr", "")
        lines.append(
            f"  {t['tid']:<9} {t['comm'][:16]:<16} {t['state']:<5} {t['wait'][:13]:<13} "
            f"{(t.get('call') or '-')[:10]:<10} {(t.get('wchan') or '-')[:20]:<20} {fx}"
        )
    gdb = p.get("gdb")
    if gdb:
        lines.append(f"  gdb ({gdb.get('seconds', '?')} s){': ' + gdb['error'] if 'error' in gdb else ''}")
        if same := gdb.get("same_as"):
            lines.append(
                f"  (taken in step {same['step']!r} from pid {same['pid']}, frozen the same way: the same"
                " blocking syscall, code address and code addresses on the stack in every thread)"
            )
        lines += ["    " + line for line in gdb.get("text", "").splitlines()]
    return [*lines, ""]
