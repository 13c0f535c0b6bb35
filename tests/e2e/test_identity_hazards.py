"""identity: planted modules whose entries collide with the files database or system ids are named
with the entry and the files entry it meets; clab and golab pass. hazards: golab passes on this
kernel, and fails once a return probe is armed on its installed library (this kernel's tracefs,
shared with the sandbox; the probe is removed whatever happens)."""

from __future__ import annotations

import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from lab import elf
from lab.checks import Context
from lab.module import ensure_built, load
from lab.session import run_check
from lab.targets.sandbox import Sandbox
from tests.conftest import MODULES, checks

pytestmark = pytest.mark.sandbox

TRACEFS = "/sys/kernel/tracing"
GROUP = "nsslab_e2e"


@pytest.mark.parametrize(
    ("module", "kind", "name", "uid", "files"),
    [
        ("namecollidelab", "name", "daemon", 40001, {"files_id": 1}),
        ("uidcollidelab", "id", "eve", 1, {"files_name": "daemon"}),
        ("rootlab", "zero", "toor", 0, {"files_name": "root"}),
    ],
)
def test_a_collision_with_the_files_database_fails_naming_both_entries(
    lab_run, module, kind, name, uid, files
):
    c = checks(lab_run(module))["identity"]
    assert c.status == "fail", c.reason
    assert [(x["kind"], x["name"], x["id"]) for x in c.details["collisions"]] == [(kind, name, uid)]
    assert files.items() <= c.details["collisions"][0].items()
    assert c.impact and c.reproduce and c.control


def test_a_system_range_uid_is_a_warning(lab_run):
    c = checks(lab_run("sysidlab"))["identity"]
    assert c.status == "warn", c.reason
    assert [(x["kind"], x["name"], x["id"]) for x in c.details["collisions"]] == [("system", "sysid", 500)]
    assert c.details["sys_max"]["passwd"] == 999  # Debian's login.defs leaves SYS_UID_MAX commented


@pytest.mark.parametrize("module", ["clab", "golab"])
def test_the_reference_modules_collide_with_nothing(lab_run, module):
    c = checks(lab_run(module))["identity"]
    assert c.status == "pass", c.reason
    assert c.details["collisions"] == [] and c.details["served"] == {"passwd": 3, "group": 3}
    assert {db: [t["status"] for t in tries] for db, tries in c.details["invented"].items()} == {
        "passwd": ["NOTFOUND"] * 3,
        "group": ["NOTFOUND"] * 3,
    }


def test_golab_passes_hazards_on_this_kernel_and_clab_skips(lab_run):
    go = checks(lab_run("golab"))["hazards"]
    assert go.status == "pass", go.reason
    assert go.details["vdso"]["scanned"] and go.details["vdso"]["size"] > 0  # this kernel's own vDSO, read
    if not go.details["vdso"]["probes"]:  # a kernel with probes still passes: go1.19 is past the fix
        assert "no stack probes" in go.reason
    assert go.details["uprobes"]["tracefs"]  # read, mounted privately if need be
    assert checks(lab_run("clab"))["hazards"].status == "skip"


def file_offset(library, symbol: str) -> int:
    with open(library, "rb") as f:
        e = ELFFile(f)
        value = next(
            s["st_value"] for s in e.get_section_by_name(".symtab").iter_symbols() if s.name == symbol
        )
        seg = next(
            s
            for s in e.iter_segments()
            if s["p_type"] == "PT_LOAD" and s["p_vaddr"] <= value < s["p_vaddr"] + s["p_filesz"]
        )
        return value - seg["p_vaddr"] + seg["p_offset"]


def tracefs(script: str, wrap=lambda argv: argv) -> subprocess.CompletedProcess:
    """SCRIPT with tracefs mounted in a private mount namespace (nothing stays mounted)."""
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f"mount -t tracefs nodev {TRACEFS} && {script}",
    ]
    return subprocess.run(wrap(argv), capture_output=True, text=True, timeout=20)


def remove_probes() -> str:
    """Disables and deletes this test's events, from the host's side (works with the sandbox gone)."""
    tracefs(
        f"for e in {TRACEFS}/events/{GROUP}/*/enable; do [ -f $e ] && echo 0 > $e; done; "
        f"ours=$(grep -o '^[pr]:{GROUP}/[^ ]*' {TRACEFS}/uprobe_events); "
        f'for e in $ours; do echo "-:${{e#?:}}" >> {TRACEFS}/uprobe_events; done; true'
    )
    return tracefs(f"cat {TRACEFS}/uprobe_events").stdout


def test_a_return_probe_on_golab_is_named_and_an_armed_one_fails():
    with open("/proc/filesystems") as f:
        has_tracefs = "tracefs" in f.read()
    if not has_tracefs:
        pytest.skip("this kernel has no tracefs")
    module = load(MODULES / "golab")
    ensure_built(module)
    offset = file_offset(module.library, "main.load")
    target = Sandbox()
    target.install(module)
    results = {}
    try:
        ctx = Context(target, module, elf.inspect(module.library))
        # on a copy of the library the target does not load (another inode): nothing to say
        done = tracefs(
            f"echo 'r:{GROUP}/other {module.library.resolve()}:{offset:#x}' >> {TRACEFS}/uprobe_events"
        )
        if done.returncode:
            pytest.skip(f"cannot define a uprobe here: {done.stderr.strip()}")
        results["other"] = run_check("hazards", ctx, [])
        installed = f"r:{GROUP}/ret {target.module_path}:{offset:#x}"
        done = tracefs(f"echo '{installed}' >> {TRACEFS}/uprobe_events", target.wrap)  # the target's path
        assert done.returncode == 0, done.stderr
        results["defined"] = run_check("hazards", ctx, [])
        assert tracefs(f"echo 1 > {TRACEFS}/events/{GROUP}/ret/enable").returncode == 0
        results["armed"] = run_check("hazards", ctx, [])
    finally:
        left = remove_probes()
        target.uninstall()
    assert GROUP not in left, left  # nothing of ours stays registered in the kernel

    other = results["other"]
    assert other.status == "pass", other.reason
    ours = [e for e in other.details["uprobes"]["events"] if e["group"] == GROUP]
    assert [(e["event"], e["on_module"]) for e in ours] == [("other", False)]

    defined = results["defined"]
    assert defined.status == "warn", defined.reason
    ret = next(e for e in defined.details["uprobes"]["events"] if e["event"] == "ret")
    assert ret["on_module"] and ret["enabled"] is False and ret["symbol"] == "main.load"

    armed = results["armed"]
    assert armed.status == "fail", armed.reason
    ret = next(e for e in armed.details["uprobes"]["events"] if e["event"] == "ret")
    assert ret["on_module"] and ret["enabled"] is True
    aborted = [c for c in armed.details["callers"] if c["rc"] is not None and c["rc"] < 0]
    assert aborted and "unexpected return pc for main.load" in aborted[0]["said"]
    assert aborted[0]["corrupt"] and aborted[0]["said"] in armed.control  # the control quotes the line seen
