"""How verdicts leave the lab: a table for people, JSON, JUnit and HTML for machines and CI,
evidence files beside them."""

from __future__ import annotations

from pathlib import Path

from lab.errors import LabError


def save(path: Path, text: str) -> None:
    """TEXT into PATH as UTF-8. What a module put into a reason that UTF-8 cannot hold (a
    name Python decoded with surrogates) is written escaped, and a path that cannot be
    written is one line, not a traceback after an hour of VM runs."""
    try:
        path.write_text(text, encoding="utf-8", errors="backslashreplace")
    except OSError as e:
        raise LabError(f"{path}: {e.strerror or e}") from None


def writable(*paths: Path | None) -> None:
    """Says before a run, not after it, that an output file's directory is missing."""
    for path in paths:
        if path is not None and not path.absolute().parent.is_dir():
            raise LabError(f"{path}: no such directory")
