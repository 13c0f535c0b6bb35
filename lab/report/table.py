from __future__ import annotations

import shutil
import textwrap

from lab.runner import ModuleReport


def wrap(text: str, width: int) -> list[str]:
    """Lines for the table that never split a word: a reproducer's path with hyphens in it
    (~/.cache/nsslab/debs/libnss-ldapd+…) must paste back whole."""
    return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)


def render(report: ModuleReport) -> str:
    width = max(shutil.get_terminal_size((120, 20)).columns, 80)
    head = (
        f"{report.name}  [{report.library}]  on {report.target}: "
        f"{report.verdict.upper()} ({report.seconds:.1f} s)"
    )
    if report.error:
        return f"{head}\n  error: {report.error}\n"
    lines = [head, f"  {'check':<15} {'status':<6} {'time':>7}  reason"]
    indent = " " * 34
    for c in report.checks:
        wrapped = wrap(c.reason, width - len(indent)) or [""]
        lines.append(f"  {c.id:<15} {c.status:<6} {c.seconds:>6.2f}s  {wrapped[0]}")
        lines += [indent + w for w in wrapped[1:]]
        if c.status in ("warn", "fail", "hang", "crash"):
            for line in c.claims():
                lines += [indent + w for w in wrap(line, width - len(indent))]
        if c.evidence:
            cause = f"cause: {c.cause} — {c.evidence['explanation']}"
            lines += [indent + w for w in wrap(cause, width - len(indent))]
            proof = c.evidence.get("frames") or []
            if proof:
                tail = f" … {proof[-1]} ({len(proof)} frames)" if proof[1:] else ""
                lines.append(indent + f"proof: {proof[0]}{tail}")
            if c.evidence.get("file"):
                lines.append(indent + f"evidence: {c.evidence['file']}")
    for svc in report.services:  # the backend the answers came from, and how it ended
        said = " | ".join((svc.get("tail") or "").splitlines()[-2:])  # whole lines, the last two
        lines.append(
            f"  service {svc['name']}: ready in {svc.get('ready_seconds')} s, "
            f"stopped (exit {svc.get('exit')}); log tail: {said or 'empty'}"
        )
    return "\n".join(lines) + "\n"
