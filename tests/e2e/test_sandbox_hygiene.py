"""The sandbox never touches the host and leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import testinfra

from lab.backends.sandbox import Sandbox
from lab.cli import main
from lab.errors import LabError
from lab.install import nss_library_dir
from lab.module import ensure_built, load
from tests.conftest import MODULES

pytestmark = pytest.mark.sandbox


def lab_processes() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(k in cmd for k in ("probe.py", "nsenter --mount", "unshare --mount", "nsslab-")):
            found.append(cmd)
    return found


def snapshot() -> dict:
    host = testinfra.get_host("local://")
    libdir = nss_library_dir()
    return {
        "nsswitch": hashlib.sha256(host.file("/etc/nsswitch.conf").content).hexdigest(),
        "etc": sorted(os.listdir("/etc")),
        "libnss": sorted(p for p in os.listdir(libdir) if p.startswith("libnss_")),
        "home": sorted(os.listdir("/home")),
        "mounts": Path("/proc/mounts").read_text().count("nsslab"),
        "processes": lab_processes(),
        "tmp": sorted(p for p in os.listdir("/tmp") if p.startswith("nsslab-")),
    }


def test_a_full_run_leaves_host_and_process_table_as_they_were(tmp_path, capsys):
    before = snapshot()
    rc = main(["run", str(MODULES / "golab"), "--json", str(tmp_path / "out.json")])
    after = snapshot()
    assert rc == 1  # golab does not pass
    assert after == before
    host = testinfra.get_host("local://")
    assert "golab" not in host.file("/etc/nsswitch.conf").content_string
    assert not host.file("/etc/golab.db").exists
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["modules"][0]["name"] == "golab"
    assert {c["id"] for c in doc["modules"][0]["checks"]} >= {"fork-child", "tab-completion", "setxid"}
    assert "golab" in capsys.readouterr().out


def test_inside_the_sandbox_glibc_sees_the_module_and_outside_it_does_not():
    sandbox = Sandbox()
    module = load(MODULES / "clab")
    ensure_built(module)
    sandbox.install(module)
    try:
        inside = sandbox.host
        assert inside.user("pyama").uid == 10301
        assert "passwd: files clab" in inside.file("/etc/nsswitch.conf").content_string
        assert inside.file("/home/pyama").user == "pyama"
    finally:
        sandbox.uninstall()
        sandbox.uninstall()  # twice is harmless
    assert not testinfra.get_host("local://").user("pyama").exists


def test_bad_input_gets_one_line_and_the_other_modules_still_run(tmp_path, capsys):
    text = tmp_path / "libnss_text.so.2"
    text.write_text("not a library")
    rc = main(
        ["run", str(text), str(tmp_path / "missing.toml"), str(MODULES / "clab"), "--check", "fork-child"]
    )
    out = capsys.readouterr().out
    assert rc == 1
    assert "not an ELF file" in out and "no such file" in out
    assert "Traceback" not in out
    assert "clab" in out and "1 of 3 modules passed" in out


def test_demo_and_planted_modules_match_their_manifests(capsys):
    assert main(["run"]) == 0  # the built-in demo: golab flagged, clab clean
    assert "every module got the verdicts" in capsys.readouterr().out
    planted = [str(MODULES / n) for n in ("hangparent", "ctorcrash", "slowlab")]
    assert main(["run", "--expect", "--check", "fork-child", *planted]) == 0


def test_failed_install_leaves_nothing(tmp_path):
    module = load(MODULES / "clab")
    module.library = tmp_path / "libnss_clab.so.2"  # missing
    before = snapshot()
    with pytest.raises(LabError, match="sandbox set-up failed"):
        Sandbox().install(module)
    assert snapshot() == before
