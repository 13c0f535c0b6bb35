"""`nsslab box build [PLATFORM]`: Vagrant boxes built offline from Debian packages.

No Vagrant Cloud: debootstrap (minbase plus sshd, sudo, systemd, a kernel, python3, gdb)
into a directory, `mkfs.ext4 -d` turns it into a disk image without a loop device,
`qemu-img convert` makes it a qcow2, and the box boots that kernel directly (lv.kernel,
lv.initrd), so no boot loader is installed. Boxes are cached under ~/.cache/nsslab/boxes
and added to Vagrant as nsslab/<platform>.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab import config, progress
from lab.errors import LabError
from lab.proc import bounded_run

MIRROR = os.environ.get("NSSLAB_MIRROR", "http://deb.debian.org/debian")
CACHE = Path(os.environ.get("NSSLAB_CACHE", Path.home() / ".cache" / "nsslab")) / "boxes"
# Vagrant's own home for the lab: libvirt's qemu (another user) must read the box kernels,
# which it cannot under /root/.vagrant.d.
VAGRANT_HOME = Path(os.environ.get("NSSLAB_VAGRANT_HOME", "/var/lib/nsslab/vagrant"))
# debootstrap resolves dependencies naively: the base goes through --include, the rest
# (gdb pulls in packages with alternatives) through apt-get inside the new root.
BASE = "systemd-sysv,dbus,openssh-server,sudo,linux-image-amd64,ifupdown,isc-dhcp-client,iproute2,procps"
EXTRA = ["bash-completion", "python3", "gdb", "less"]
DISK_GB = 4
VAGRANT_KEY = Path("/usr/share/rubygems-integration/all/gems")  # the insecure key ships with vagrant


@dataclass(frozen=True)
class Platform:
    suite: str
    glibc: str  # what the suite ships: the matrix shows glibc-dependent differences


# The one platform list: the Vagrantfile reads the same file.
PLATFORMS = {
    name: Platform(**p)
    for name, p in json.loads((Path(__file__).parent / "platforms.json").read_text()).items()
}

BOX_VAGRANTFILE = """# Direct kernel boot: the image has no boot loader.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    here = File.dirname(__FILE__)
    lv.kernel = File.join(here, "vmlinuz")
    lv.initrd = File.join(here, "initrd.img")
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
  end
end
"""
INTERFACES = "auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n"


def box_name(platform: str) -> str:
    return f"nsslab/{platform}"


def box_file(platform: str) -> Path:
    return CACHE / f"{platform}.box"


def step(what: str, argv: list[str], timeout: float = config.BOX_STEP) -> None:
    """Runs one build step in its own process group, bounded, showing progress."""
    print(f"  {what} …", flush=True)
    started = time.monotonic()
    try:
        done = bounded_run(
            argv, timeout, f"box build: {what}", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except FileNotFoundError:
        raise LabError(f"box build: {argv[0]} is not installed") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LabError(f"box build: {what} failed: {tail[0]}")
    print(f"  {what}: {time.monotonic() - started:.0f} s", flush=True)


def build(platform: str, force: bool = False) -> Path:
    """Builds (or reuses) the box for PLATFORM and adds it to Vagrant."""
    if platform not in PLATFORMS:
        raise LabError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
    target = box_file(platform)
    if target.exists() and not force:
        print(f"{platform}: cached box {target}")
    else:
        print(f"{platform}: building from {PLATFORMS[platform].suite} ({MIRROR})", flush=True)
        with progress.phase(f"vagrant://{platform}", f"building box {platform}"):
            make_box(platform, target)
    VAGRANT_HOME.mkdir(parents=True, exist_ok=True)
    for d in (VAGRANT_HOME.parent, VAGRANT_HOME):
        d.chmod(0o755)
    add = [
        "env",
        f"VAGRANT_HOME={VAGRANT_HOME}",
        "vagrant",
        "box",
        "add",
        "--force",
        "--name",
        box_name(platform),
    ]
    step(f"vagrant box add {box_name(platform)}", [*add, str(target)], 600)
    for d, _, files in os.walk(VAGRANT_HOME / "boxes"):
        for name in [".", *files]:
            path = Path(d, name)
            path.chmod(path.stat().st_mode | 0o005)  # o+rx: libvirt's qemu opens kernel, initrd, image
    return target


def box_present(platform: str) -> bool:
    return any((VAGRANT_HOME / "boxes" / box_name(platform).replace("/", "-VAGRANTSLASH-")).glob("*/libvirt"))


def debootstrap(platform: str, root: Path, include: str) -> None:
    """A minbase PLATFORM tree at ROOT with INCLUDE and EXTRA (bash-completion, python3, gdb)."""
    suite = PLATFORMS[platform].suite
    step(
        "debootstrap", ["debootstrap", "--variant=minbase", f"--include={include}", suite, str(root), MIRROR]
    )
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    env = ["env", "DEBIAN_FRONTEND=noninteractive", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    step(
        "apt-get install " + " ".join(EXTRA),
        ["chroot", str(root), *env, "apt-get", "install", "-y", "-q", "--no-install-recommends", *EXTRA],
    )
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)


def make_box(platform: str, target: Path) -> None:
    work = CACHE / f"build-{platform}"
    shutil.rmtree(work, ignore_errors=True)
    root = work / "root"
    root.mkdir(parents=True)
    try:
        debootstrap(platform, root, BASE)
        configure(root, platform)
        image = work / "disk.raw"
        step(
            "mkfs.ext4 -d",
            ["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(image), f"{DISK_GB}G"],
        )
        step(
            "qemu-img convert",
            ["qemu-img", "convert", "-c", "-O", "qcow2", str(image), str(work / "box.img")],
        )
        kernel = sorted((root / "boot").glob("vmlinuz-*"))[-1]
        initrd = sorted((root / "boot").glob("initrd.img-*"))[-1]
        shutil.copy(kernel, work / "vmlinuz")
        shutil.copy(initrd, work / "initrd.img")
        (work / "metadata.json").write_text(
            json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GB})
        )
        (work / "Vagrantfile").write_text(BOX_VAGRANTFILE)
        print("  packing the box …", flush=True)
        partial = target.with_suffix(".partial")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(partial, "w") as tar:
            for name in ("metadata.json", "Vagrantfile", "box.img", "vmlinuz", "initrd.img"):
                tar.add(work / name, arcname=name)
        partial.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def configure(root: Path, platform: str) -> None:
    """What Vagrant expects of a box: a vagrant user with the insecure key and sudo, sshd,
    DHCP on eth0; plus a root fstab line for the direct-boot disk."""
    (root / "etc/hostname").write_text(f"{platform}\n")
    (root / "etc/fstab").write_text("LABEL=root / ext4 defaults 0 1\n")
    (root / "etc/network/interfaces").write_text(INTERFACES)
    (root / "etc/sudoers.d/vagrant").write_text("vagrant ALL=(ALL) NOPASSWD: ALL\n")
    (root / "etc/sudoers.d/vagrant").chmod(0o440)
    (root / "etc/ssh/sshd_config.d/nsslab.conf").write_text("UseDNS no\n")
    step("vagrant user", ["chroot", str(root), "useradd", "-m", "-s", "/bin/bash", "vagrant"], 60)
    key = next(VAGRANT_KEY.glob("vagrant-*/keys/vagrant.pub"), None)
    if key is None:
        raise LabError("box build: vagrant's insecure public key is missing (is vagrant installed?)")
    ssh = root / "home/vagrant/.ssh"
    ssh.mkdir(mode=0o700)
    shutil.copy(key, ssh / "authorized_keys")
    uid, gid = (int(x) for x in (root / "etc/passwd").read_text().split("vagrant:x:")[1].split(":")[:2])
    for path in (ssh, ssh / "authorized_keys", root / "home/vagrant"):
        os.chown(path, uid, gid)


def main(platforms: list[str], force: bool = False) -> int:
    for platform in platforms or ["debian12"]:
        build(platform, force)
    print("done", file=sys.stderr)
    return 0
