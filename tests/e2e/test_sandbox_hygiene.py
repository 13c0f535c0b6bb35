"""The sandbox never touches the host and leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

from lab.cli import main
from lab.errors import LabError
from lab.install import nss_library_dir
from lab.module import ensure_built, load
from lab.targets.sandbox import Sandbox
from tests.conftest import MODULES

pytestmark = pytest.mark.sandbox


def lab_processes() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(k in cmd for k in ("/probe ", "nsenter --target", "unshare --mount", "nsslab-")):
            found.append(cmd)
    return found


def in_lab_namespaces() -> list[str]:
    """Every process whose mount table has one of the lab's overlays: a holder (just `cat`)
    or anything left inside a namespace, which the host's own /proc/mounts never shows."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if " - overlay nsslab " in Path(f"/proc/{pid}/mountinfo").read_text():
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return sorted(found)


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
        "in lab namespaces": in_lab_namespaces(),
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
    with pytest.raises(
        LabError, match=r"^target set-up failed: No such file or directory: .*libnss_clab.so.2$"
    ):
        Sandbox().install(module)
    assert snapshot() == before


def test_every_kind_of_bad_library_gets_a_verdict_and_the_rest_still_run(tmp_path, capsys):
    ensure_built(load(MODULES / "clab"))
    arm = tmp_path / "libnss_armlab.so.2"
    data = bytearray((MODULES / "clab" / "libnss_clab.so.2").read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    arm.write_bytes(bytes(data))
    (tmp_path / "helper.c").write_text("int helper(void) { return 0; }\n")
    noentry, obj = tmp_path / "libnss_noentry.so.2", tmp_path / "libnss_objlab.so.2"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", noentry, tmp_path / "helper.c"], check=True)
    subprocess.run(["cc", "-c", "-fPIC", "-o", obj, tmp_path / "helper.c"], check=True)
    modules = [arm, noentry, obj, MODULES / "ctorexit", MODULES / "clab"]
    rc = main(["run", *map(str, modules), "--check", "load"])
    out = " ".join(capsys.readouterr().out.split())  # the table wraps long reasons
    assert rc == 1 and "Traceback" not in out
    assert "built for EM_AARCH64; the target is x86_64" in out
    assert "exports no _nss_noentry_* entry point" in out
    assert "an ELF ET_REL, not a shared object" in out
    assert "process exited with status 1 inside getpwnam('pyama')" in out
    assert "1 of 5 modules passed; not passed: armlab, noentry, objlab, ctorexit" in out


def test_inspect_reads_headers_without_loading(capsys, tmp_path):
    for name in ("golab", "newglibclab"):
        ensure_built(load(MODULES / name))
    assert main(["inspect", str(MODULES / "golab" / "libnss_golab.so.2")]) == 0
    out = capsys.readouterr().out
    assert "Go: go1.19.8" in out and "verdict: warn" in out and "STATIC_TLS, 8 bytes" in out
    assert main(["inspect", str(MODULES / "newglibclab" / "libnss_newglibclab.so.2")]) == 1
    assert "blocker: needs GLIBC_2.99" in capsys.readouterr().out
    text = tmp_path / "libnss_text.so.2"
    text.write_text("hello")
    assert main(["inspect", str(text)]) == 1
    assert capsys.readouterr().err.strip() == f"nsslab: {text}: not an ELF file"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_leaves_nothing(sig):
    """Ctrl-C or SIGTERM mid-run (sssd running behind the module): the run unwinds, stops the
    service, leaves the namespace, and removes its workdir. Before the SIGTERM handler, the
    default action left the sandbox's /tmp/nsslab-* workdir behind."""
    before = snapshot()
    lab = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "run", str(MODULES / "debian" / "sss")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not any("sssd" in p for p in lab_processes_and_daemons()) and time.monotonic() < deadline:
        time.sleep(0.2)
    lab.send_signal(sig)
    out, _ = lab.communicate(timeout=60)
    assert lab.returncode == 128 + sig, out
    assert b"nsslab: interrupted" in out
    time.sleep(1)
    assert snapshot() == before
    assert not any("sssd" in p for p in lab_processes_and_daemons())


def lab_processes_and_daemons() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return found
