"""The probe as a target gets it: lab.probe.shipped() laid out as a directory, run by the
host's own python3 the way Target.probe runs it (-I -S DIR), and importing nothing but the
standard library and itself."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lab.probe import shipped

PACKAGE = Path(__file__).resolve().parents[2] / "lab" / "probe"


def test_shipped_is_the_launcher_as_main_and_every_module_under_nsslab_probe():
    files = dict(shipped())
    assert files["__main__.py"] == PACKAGE / "launcher.py"
    modules = {f"nsslab_probe/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.py")}
    assert set(files) - {"__main__.py"} == modules
    assert {"nsslab_probe/__init__.py", "nsslab_probe/cli.py", "nsslab_probe/direct/host.py"} <= modules
    assert all(source.is_file() for source in files.values())


def test_the_shipped_probe_runs_as_a_directory(tmp_path):
    probe = tmp_path / "probe"
    for rel, source in shipped():
        (probe / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, probe / rel)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["python3", "-I", "-S", str(probe), *args], capture_output=True, text=True, timeout=60, cwd="/"
        )

    info = run("sysinfo", json.dumps({"libs": []}))
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["ev"] == "sysinfo"
    calls = [{"fn": "getpwuid", "arg": os.getuid()}, {"fn": "threads"}]
    step = {"id": "one", "calls": calls, "timeout": 20.0}
    done = run("scenario", json.dumps({"steps": [step]}))
    assert done.returncode == 0, done.stderr
    [result] = [json.loads(line) for line in done.stdout.splitlines()]
    assert result["outcome"] == "exited" and result["code"] == 0, result
    answers = [e for e in result["events"] if e["ev"] == "call"]
    assert [a["ok"] for a in answers] == [True, True], answers
    assert answers[0]["value"]["uid"] == os.getuid() and answers[1]["value"] == 1
    left = sorted(p.name for p in probe.iterdir() if p.name != "__pycache__")
    assert left == ["__main__.py", "nsslab_probe"]  # the step's scratch files (progress, channel) are gone
    assert run("no-such-command").returncode == 2


def test_the_probe_imports_only_the_standard_library_and_itself():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path), feature_version=(3, 9))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                itself = path.name == "launcher.py" and top == "nsslab_probe"
                assert top in sys.stdlib_module_names or itself, f"{path.relative_to(PACKAGE)} imports {name}"
