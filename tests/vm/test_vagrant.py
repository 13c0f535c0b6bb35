"""The same checks on a real VM (Debian 12, box built offline), plus the login paths.

Opt-in: `./nsslab.sh test-vm` (or `tox -e vm`). About 3 min for the box the first time,
then about 1 min to boot under TCG and 8-9 min for golab, clab and execstacklab."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from lab import boxes
from lab.cli import main
from lab.runner import run_module
from tests.conftest import MODULES

pytestmark = pytest.mark.vagrant


def virtualization_missing() -> str | None:
    for tool in ("vagrant", "qemu-system-x86_64", "debootstrap", "virsh"):
        if not shutil.which(tool):
            return f"{tool} is not installed (./nsslab.sh test-vm installs it)"
    return None


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    if why := virtualization_missing():
        pytest.skip(why)
    boxes.build("debian12")
    out = tmp_path_factory.mktemp("vm") / "verdicts.json"
    modules = [str(MODULES / n) for n in ("golab", "clab", "execstacklab")]
    rc = main(["run", "--target", "vagrant:debian12", *modules, "--json", str(out)])
    doc = json.loads(out.read_text())
    return rc, {m["name"]: {c["id"]: c for c in m["checks"]} for m in doc["modules"]}


def test_vm_gives_the_sandbox_verdicts(verdicts):
    rc, got = verdicts
    assert rc == 1  # golab does not pass
    for name in ("golab", "clab", "execstacklab"):
        sandbox = run_module(MODULES / name)
        same = {c.id: c.status for c in sandbox.checks if c.id != "login-paths"}  # a VM-only check
        vm = {check: c["status"] for check, c in got[name].items() if check != "login-paths"}
        assert vm == same, name
    assert got["golab"]["fork-child"]["cause"] == "go-runtime-after-fork"


def test_login_paths_run_on_the_vm(verdicts):
    _, got = verdicts
    clab = got["clab"]["login-paths"]
    assert clab["status"] == "pass", clab["reason"]
    for path in ("su -: ok", "sudo -u: ok", "systemd User=: ok", "ssh + TAB: 3 completion(s)"):
        assert path in clab["reason"]
    golab = got["golab"]["login-paths"]
    assert golab["status"] in ("hang", "crash", "fail") and "su -: exit 1" in golab["reason"]


def test_nothing_is_left_behind(verdicts):
    listed = subprocess.run(["virsh", "list", "--all", "--name"], capture_output=True, text=True).stdout
    assert "debian12" not in listed
    networks = subprocess.run(["virsh", "net-list", "--all", "--name"], capture_output=True, text=True).stdout
    assert "vagrant-libvirt" not in networks
