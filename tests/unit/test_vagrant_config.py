"""How the vagrant target reads the matrix, decides how many VMs run at once, records
what an install changed in the VM, and says why vagrant failed."""

from __future__ import annotations

import subprocess

import pytest

from lab.targets import inplace, vagrant


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("NSSLAB_PLATFORMS", "NSSLAB_PARALLEL", "NSSLAB_VM_MEMORY", "NSSLAB_BOX_DEBIAN12"):
        monkeypatch.delenv(name, raising=False)


def test_the_default_matrix_is_the_offline_boxes():
    assert vagrant.matrix() == {p: f"nsslab/{p}" for p in ("debian11", "debian12", "debian13")}


def test_platforms_and_boxes_can_be_chosen(monkeypatch):
    monkeypatch.setenv("NSSLAB_PLATFORMS", "debian12 rocky9=generic/rocky9")
    monkeypatch.setenv("NSSLAB_BOX_DEBIAN12", "debian/bookworm64")
    assert vagrant.matrix() == {"debian12": "debian/bookworm64", "rocky9": "generic/rocky9"}


@pytest.mark.parametrize(
    ("available_mb", "cores", "slots"),
    [
        (24000, 2, 2),  # this machine: the cores limit it
        (24000, 16, 3),  # never more than the platforms
        (4500, 16, 1),  # 1024 MB guests plus qemu's own, 2 GB kept for the host
        (1000, 16, 1),  # too little memory still runs, one at a time
    ],
)
def test_parallel_slots_follow_memory_and_cores(available_mb, cores, slots):
    assert vagrant.parallel_slots(3, available_mb, cores) == slots


def test_parallel_slots_can_be_forced(monkeypatch):
    monkeypatch.setenv("NSSLAB_PARALLEL", "1")
    assert vagrant.parallel_slots(3, 24000, 16) == 1
    monkeypatch.setenv("NSSLAB_VM_MEMORY", "4096")
    monkeypatch.delenv("NSSLAB_PARALLEL")
    assert vagrant.parallel_slots(3, 14000, 16) == 2


def test_the_console_tail_drops_terminal_escapes(tmp_path, monkeypatch):
    monkeypatch.setattr(vagrant, "SERIAL_DIR", tmp_path)
    (tmp_path / "debian12.log").write_text(
        "[    1.0] booting\r\n\x1b[0;1;31mALERT!\x1b[0m /dev/x does not exist\r\n\r\n(initramfs) "
    )
    assert vagrant.VagrantMachine("debian12").console_tail() == (
        "[    1.0] booting | ALERT! /dev/x does not exist | (initramfs)"
    )


def test_the_undo_script_undoes_the_newest_change_first(monkeypatch, tmp_path):
    """install() records each change in the VM as it makes it; the first record has no
    script to prepend to, and quoted paths survive."""
    monkeypatch.setattr(inplace, "UNDO", str(tmp_path / "undo.sh"))
    for line in ("echo library", "echo 'the nsswitch.conf'", "[ -e '/home/a b' ] || echo home"):
        subprocess.run(["sh", "-c", inplace.to_undo(line)], check=True, timeout=10)
    done = subprocess.run(["sh", inplace.UNDO], capture_output=True, text=True, timeout=10)
    assert done.stdout.splitlines() == ["home", "the nsswitch.conf", "library"]


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        # an exception inside vagrant-libvirt: the message, not the last backtrace frame
        (
            "/usr/share/rubygems-integration/all/gems/fog-libvirt-0.8.0/lib/fog/libvirt/requests/compute/"
            "vm_action.rb:7:in `create': Call to virDomainCreateWithFlags failed: Cannot get interface MTU"
            " on 'virbr1': No such device (Libvirt::Error)\n"
            "\tfrom /usr/share/rubygems-integration/all/gems/vagrant-2.3.4/lib/vagrant/batch_action.rb:86:in"
            " `block (2 levels) in run'\n",
            "Call to virDomainCreateWithFlags failed: Cannot get interface MTU on 'virbr1': No such device"
            " (Libvirt::Error)",
        ),
        # vagrant's own error: its last line
        ("Bringing machine 'debian12' up\nThe box 'nsslab/debian12' could not be found.\n", None),
        ("", "no output"),
    ],
)
def test_a_vagrant_failure_is_told_by_its_reason(output, reason):
    assert vagrant.vagrant_error(output) == (reason or output.splitlines()[-1])
