"""What only a whole system shows, on a real VM (a box built offline): the sandbox's verdicts
from a booted Debian 12, the login paths (sshd, su, sudo, systemd), --keep, a boot that fails.
The glibc matrix (Debian 11, 12, 13) runs on root filesystems: tests/e2e/test_rootfs_targets.py.

Part of `./nsslab.sh test` (and `tox -e vm`, `./nsslab.sh test-vm` alone). Measured here under
TCG (no usable KVM): about 3 min for the box the first time, then about 1 min per boot; four
modules on debian12 about 11 min; --keep about 3 min; the failed-boot case about 5 min."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import boxes
from lab.checks import growth
from lab.cli import main
from lab.runner import run_module
from lab.targets import vagrant
from tests.conftest import MODULES

pytestmark = pytest.mark.vagrant
DEBIAN12 = ("golab", "clab", "noshadowlab", "execstacklab")
EARLIER_NETWORK = Path("/etc/libvirt/qemu/networks/vagrant-libvirt.xml")
NETWORK_XML = """<network>
  <name>vagrant-libvirt</name>
  <forward mode="nat"/>
  <bridge name="virbr1" stp="on" delay="0"/>
  <ip address="192.168.121.1" netmask="255.255.255.0">
    <dhcp><range start="192.168.121.1" end="192.168.121.254"/></dhcp>
  </ip>
</network>
"""
LIBVIRT_STATE = ("/etc/libvirt/qemu/*.xml", "/etc/libvirt/qemu/networks/*.xml", "/etc/libvirt/storage/*.xml")


def virtualization_missing() -> str | None:
    """Only a machine that cannot run qemu at all skips; TCG needs no KVM."""
    for tool in ("vagrant", "qemu-system-x86_64", "debootstrap", "virsh"):
        if not shutil.which(tool):
            return f"{tool} is not installed (./nsslab.sh test-vm installs it)"
    return None


def host_state() -> dict:
    """What a VM run may not leave behind: libvirt definitions, VMs, daemons, vagrant."""
    running = subprocess.run(
        ["ps", "-eo", "comm="], capture_output=True, text=True, timeout=30
    ).stdout.split()
    return {
        "libvirt definitions": sorted(f for pattern in LIBVIRT_STATE for f in glob.glob(pattern)),
        "processes": sorted(
            {
                p
                for p in running
                if p.startswith(("qemu-system", "libvirtd", "virtlogd", "vagrant", "dnsmasq"))
            }
        ),
    }


@pytest.fixture(scope="session")
def before():
    if why := virtualization_missing():
        pytest.skip(why)
    return host_state()


class Tee(io.StringIO):
    """Kept here and passed on to the real stderr as it is written: a CI log still shows the
    run's progress while an 11-minute VM run goes on."""

    def __init__(self, out) -> None:
        super().__init__()
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(text)
        return super().write(text)

    def flush(self) -> None:
        self.out.flush()


def run_json(tmp_path, *argv: str, progress: list | None = None) -> tuple[int, dict]:
    """`nsslab run ARGV` in this process; its progress lines (stderr, not a terminal: one plain
    line per step, as in a CI log) are appended to PROGRESS."""
    out = tmp_path / "verdicts.json"
    said = Tee(sys.stderr)
    with contextlib.redirect_stderr(said):
        rc = main(["run", *argv, "--json", str(out), "--report-dir", str(tmp_path / "evidence")])
    if progress is not None:
        progress += said.getvalue().splitlines()
    doc = json.loads(out.read_text())
    return rc, doc


def by_module(doc: dict, target: str) -> dict:
    return {m["name"]: {c["id"]: c for c in m["checks"]} for m in doc["modules"] if m["target"] == target}


def libvirtd_running() -> bool:
    return subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, timeout=30).returncode == 0


@contextlib.contextmanager
def network_left_from_before():
    """vagrant-libvirt's network as an earlier, killed run leaves it: defined, not running."""
    if EARLIER_NETWORK.exists():
        yield  # the host has it already
        return
    if libvirtd_running():
        subprocess.run(["virsh", "net-define", "/dev/stdin"], input=NETWORK_XML, text=True, timeout=60)
    else:
        EARLIER_NETWORK.parent.mkdir(parents=True, exist_ok=True)
        EARLIER_NETWORK.write_text(NETWORK_XML)  # libvirtd reads it when it starts
    try:
        yield
    finally:
        if libvirtd_running():
            subprocess.run(["virsh", "net-undefine", "vagrant-libvirt"], capture_output=True, timeout=60)
        EARLIER_NETWORK.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def debian12(before, tmp_path_factory):
    """Four modules on one VM. vagrant-libvirt's network is there before the run, as a user
    or a killed run leaves it: the run must leave it there."""
    boxes.build("debian12")
    modules = [str(MODULES / n) for n in DEBIAN12]
    said: list[str] = []
    with network_left_from_before():
        rc, doc = run_json(
            tmp_path_factory.mktemp("debian12"), "--target", "vagrant://debian12", *modules, progress=said
        )
        network_kept = EARLIER_NETWORK.exists()
    return rc, by_module(doc, "vagrant://debian12"), network_kept, said


def too_slow_here(c: dict) -> bool:
    """growth skipped because this target (qemu's TCG) cannot fit the lookups it needs in its
    budget: its own figures say so (the lookups measured), not a verdict on the module."""
    d = c.get("details") or {}
    return c["status"] == "skip" and d.get("done", growth.MINIMUM) < growth.MINIMUM


def test_vm_gives_the_sandbox_verdicts(debian12):
    rc, got, _, _ = debian12
    assert rc == 1  # golab, noshadowlab and execstacklab do not pass
    for name in DEBIAN12:
        sandbox = run_module(MODULES / name)
        slow = {check for check, c in got[name].items() if too_slow_here(c)}
        assert slow <= {"growth"}, (name, slow)  # only a budget-bound check may, and it says why
        skip = {"login-paths", *slow}  # login-paths is a VM-only check
        same = {c.id: c.status for c in sandbox.checks if c.id not in skip}
        vm = {check: c["status"] for check, c in got[name].items() if check not in skip}
        assert vm == same, name
    assert got["golab"]["fork-child"]["cause"] == "go-runtime-after-fork"
    assert got["golab"]["setxid"]["cause"] == "setxid-abort"


def test_a_ci_log_shows_the_vm_boot_and_each_check_as_it_ends(debian12):
    """Progress without a terminal: a line when the VM starts booting and when it is destroyed,
    one per check with its status as it ends, the same statuses the JSON has."""
    _, got, _, said = debian12
    assert said.index("vagrant://debian12: booting VM") < said.index("vagrant://debian12: destroying VM")
    for name in DEBIAN12:
        for check, c in got[name].items():
            assert any(
                line.startswith(f"{name} on vagrant://debian12: {check} {c['status']} (") for line in said
            ), (name, check)


def test_a_network_that_was_there_before_the_run_stays(debian12):
    """vagrant-libvirt's destroy takes its management network away even when it found it
    there (CI failed on that); the lab removes only what its own run created."""
    assert debian12[2]


def test_login_paths_pass_for_a_good_module(debian12):
    clab = debian12[1]["clab"]["login-paths"]
    assert clab["status"] == "pass", clab["reason"]
    for path in ("su -: ok", "sudo -u: ok", "systemd User=: ok", "ssh + TAB: 3 completion(s)"):
        assert path in clab["reason"]


def test_login_paths_show_the_go_module_breaking_logins(debian12):
    golab = debian12[1]["golab"]["login-paths"]
    assert golab["status"] in ("hang", "crash"), golab["reason"]
    paths = golab["details"]["paths"]
    assert paths["ssh + TAB"]["status"] == "hang", paths["ssh + TAB"]["text"]
    assert "sshd: pyama [priv]" in paths["ssh + TAB"]["text"]  # sshd's forked child froze
    assert golab["cause"] == "go-runtime-after-fork", golab["evidence"]


def test_login_paths_confirm_the_missing_shadow_entry(debian12):
    """The sandbox's shadow check says pam_unix will deny these logins; the VM shows it."""
    got = debian12[1]["noshadowlab"]
    assert got["shadow"]["status"] == "fail"
    paths = got["login-paths"]["details"]["paths"]
    assert paths["su -"]["status"] == "fail" and "Authentication failure" in paths["su -"]["text"]
    assert paths["ssh + TAB"]["status"] == "fail"
    assert "PAM account configuration" in paths["ssh + TAB"]["text"], paths["ssh + TAB"]["text"]
    assert paths["sudo -u"]["status"] == "pass"  # root's sudo asks no password: only the login is refused


def test_keep_leaves_the_vm_up_with_the_module_and_the_next_run_reuses_it(before, tmp_path, capsys):
    """--keep: a human can log in with the module in place; a later run takes the VM over,
    puts the kept module's files back and installs its own, without a boot. (Not golab: with
    it in nsswitch.conf every ssh login froze here, vagrant's too.)"""
    boxes.build("debian12")
    id_file = vagrant.ROOT / ".vagrant/machines/debian12/libvirt/id"

    def in_vm(script: str) -> str:
        return vagrant.BoundedVagrant(120).ssh(vm_name="debian12", command=script)

    try:
        rc, doc = run_json(
            tmp_path, "--target", "vagrant://debian12", "--keep", "--check", "load", str(MODULES / "clab")
        )
        assert rc == 0, doc
        assert "vagrant://debian12 kept up, libnss_clab installed" in capsys.readouterr().out
        assert in_vm("getent passwd pyama").startswith("pyama:")  # answered by the kept module
        domain = id_file.read_text()

        rc, doc = run_json(
            tmp_path,
            "--target",
            "vagrant://debian12",
            "--keep",
            "--check",
            "load",
            str(MODULES / "execstacklab"),
        )
        assert doc["modules"][0]["error"] is None
        assert id_file.read_text() == domain  # the same VM, not a new boot
        state = in_vm("grep ^passwd: /etc/nsswitch.conf; ls /lib/x86_64-linux-gnu/ | grep libnss_ || true")
        assert "execstacklab" in state and "clab" not in state.replace("execstacklab", ""), state
    finally:
        vagrant.LIBVIRT.pop("kept", None)
        vagrant.VagrantMachine("debian12").close()
        vagrant.cleanup()
    assert not id_file.exists()


def test_a_vm_that_never_boots_is_an_error_with_its_console(before, tmp_path, monkeypatch):
    boxes.build("debian12")
    # initramfs never finds its root: it looks for at least 30 s (rootdelay only lengthens
    # that), then says so on the console and waits. Under TCG that is 2.5-3 min after boot.
    monkeypatch.setenv("NSSLAB_KERNEL_ARGS", "root=/dev/nsslab-nowhere")
    monkeypatch.setenv("NSSLAB_UP_TIMEOUT", "300")
    rc, doc = run_json(tmp_path, "--target", "vagrant://debian12", str(MODULES / "clab"))
    assert rc == 1
    error = doc["modules"][0]["error"]
    assert "`vagrant up debian12" in error and "serial console:" in error
    assert "nsslab-nowhere" in error, error  # the guest's own words on why it did not come up


def test_nothing_is_left_behind(before):
    """Runs last in this file: no VM, network, pool, daemon or vagrant process remains."""
    assert host_state() == before
