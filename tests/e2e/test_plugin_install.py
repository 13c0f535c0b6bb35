"""The plugin as a module author gets it: `pip install` of nsslab into a fresh venv (not this
checkout's editable install), then one pytest line in a directory holding only their module's
sources and their own testinfra test; what the README's CI recipe does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from xml.etree import ElementTree as ET

import pytest

from tests.conftest import MODULES, ROOT
from tests.e2e.test_sandbox_hygiene import snapshot

pytestmark = pytest.mark.sandbox


def bounded(argv: list, cwd, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, start_new_session=True, check=False
    )


def install(tmp_path, *extra: str):
    """A fresh venv with nsslab pip-installed from a copy of its package (a wheel build, not
    this checkout's editable install), and EXTRA from PyPI."""
    source = tmp_path / "nsslab"  # what a wheel is built from: the package, its metadata
    shutil.copytree(ROOT / "lab", source / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp_path / "venv"
    done = bounded([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    assert done.returncode == 0, done.stderr
    pip = [venv / "bin/pip", "install", "-q", "--disable-pip-version-check"]
    done = bounded([*pip, str(source), *extra], tmp_path, 600)
    assert done.returncode == 0, done.stderr[-2000:]
    return venv


def authors_repository(tmp_path):
    """The author's repository: clab's sources and manifest, and their own testinfra tests."""
    author = tmp_path / "author"
    author.mkdir()
    for f in (MODULES / "clab").iterdir():
        if f.suffix in (".c", ".db", ".toml") or f.name == "Makefile":
            shutil.copy(f, author / f.name)
    (author / "tests").mkdir()
    (author / "tests" / "test_mine.py").write_text(
        "def test_pyama(nss_host):\n"
        '    assert nss_host.user("pyama").uid == 10301\n'
        "def test_wrong(nss_host):\n"
        '    assert nss_host.user("pyama").shell == "/bin/zsh"\n'
    )
    return author


def test_pip_install_and_one_pytest_line(tmp_path):
    venv = install(tmp_path)
    author = authors_repository(tmp_path)
    before = snapshot()
    done = bounded(
        [venv / "bin/python", "-m", "pytest", "module.toml", "tests/", "-p", "no:cacheprovider",
         "--junitxml=junit.xml", "--html=report.html"],
        author, 300,
    )  # fmt: skip
    assert snapshot() == before  # nothing of the run is left
    assert done.returncode == 1, done.stdout[-3000:]  # test_wrong, and only it
    assert "FAILED tests/test_mine.py::test_wrong[clab]" in done.stdout and " 1 failed" in done.stdout
    cases = {c.get("name"): c for c in ET.parse(author / "junit.xml").iter("testcase")}
    failed = {n for n, c in cases.items() if c.find("failure") is not None}
    assert failed == {"test_wrong[clab]"}
    assert "'/bin/bash' == '/bin/zsh'" in cases["test_wrong[clab]"].find("failure").get("message")
    assert len([n for n in cases if not n.startswith("test_")]) == 22  # the checks, as items
    page = (author / "report.html").read_text()
    assert 'data-module="clab"' in page and 'data-check="tab-completion" data-status="pass"' in page
    assert "clab on sandbox: pass" in done.stdout


def test_next_to_pytest_html_both_pages_are_written(tmp_path):
    """Where the author already uses pytest-html, --html stays pytest-html's (its page lists the
    lab's checks as tests, with their failure text) and --nss-html writes the lab's own page."""
    venv = install(tmp_path, "pytest-html>=4,<5")
    author = authors_repository(tmp_path)
    before = snapshot()
    done = bounded(
        [venv / "bin/python", "-m", "pytest", "module.toml", "tests/", "-p", "no:cacheprovider",
         "--html=theirs.html", "--self-contained-html", "--nss-html=lab.html"],
        author, 300,
    )  # fmt: skip
    assert snapshot() == before
    assert done.returncode == 1, done.stdout[-3000:]  # test_wrong, and only it
    assert "FAILED tests/test_mine.py::test_wrong[clab]" in done.stdout and " 1 failed" in done.stdout
    theirs = (author / "theirs.html").read_text()
    assert "module.toml::clab::tab-completion" in theirs and "test_wrong[clab]" in theirs
    ours = (author / "lab.html").read_text()
    assert 'data-module="clab"' in ours and 'data-check="tab-completion" data-status="pass"' in ours
    assert "HTML report: lab.html" in done.stdout
