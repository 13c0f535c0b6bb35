"""`vagrant`: a real VM per platform (the Vagrantfile at the top of the checkout).

The provisioner brings the VM up once per run and hands over an ssh transport (as root, one
multiplexed connection, opened before any module is installed); the in-place installer
(inplace.py) puts each module where a package would and puts the originals back after it;
close() destroys the VM. With --keep the VM stays up with the last module still installed,
for a human to log in and poke at. vagrant itself is driven through python-vagrant, bounded."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import vagrant as python_vagrant  # python-vagrant: the top-level package, not this module

from lab import boxes, config, progress
from lab.boxes import VAGRANT_HOME
from lab.errors import LabError
from lab.proc import bounded_run, tool
from lab.targets import Spec, state
from lab.targets.inplace import InPlace
from lab.targets.target import DISPOSABLE, FULL_SYSTEM, Target
from lab.targets.transport import Ssh

ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout, where the Vagrantfile is
SERIAL_DIR = Path("/var/tmp/nsslab-serial")
QEMU_OVERHEAD_MB = 1024  # qemu's own memory beside the guest's (TCG's translation cache is most of it)
HOST_RESERVE_MB = 2048  # what the host keeps for itself, the lab and pexpect
# One `vagrant up` or `destroy` at a time: parallel vagrant-libvirt processes race to create
# the same network, pool and box volume, and a destroy removes the network it created when no
# running VM uses it, even while another platform's `up` is about to start a VM on it (CI saw
# debian13 fail so). Boots are a minute, destroys seconds; the checks run in parallel.
VAGRANT_LOCK = threading.Lock()


def matrix() -> dict[str, str]:
    """The platforms the Vagrantfile defines and their boxes, read the way it reads them:
    NSSLAB_PLATFORMS ("debian12 rocky9=generic/rocky9"), else the offline-built ones;
    NSSLAB_BOX_<PLATFORM> replaces one box."""
    spec = os.environ.get("NSSLAB_PLATFORMS", "").split()
    chosen = dict(p.partition("=")[::2] for p in spec) or dict.fromkeys(boxes.PLATFORMS, "")
    return {
        p: os.environ.get(f"NSSLAB_BOX_{p.upper()}") or box or boxes.box_name(p) for p, box in chosen.items()
    }


def vm_memory_mb() -> int:
    return int(os.environ.get("NSSLAB_VM_MEMORY", "1024"))  # the Vagrantfile reads the same


def parallel_slots(platforms: int, available_mb: int | None = None, cores: int | None = None) -> int:
    """How many VMs run at once: NSSLAB_PARALLEL if set, else as many as memory allows
    (guest plus qemu's own, keeping some for the host) and at most one per host core
    (a TCG guest keeps a core busy while checks run; starved guests would look hung)."""
    if os.environ.get("NSSLAB_PARALLEL"):
        return max(1, min(platforms, int(os.environ["NSSLAB_PARALLEL"])))
    if available_mb is None:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        available_mb = int(meminfo["MemAvailable"].split()[0]) // 1024
    by_memory = (available_mb - HOST_RESERVE_MB) // (vm_memory_mb() + QEMU_OVERHEAD_MB)
    return max(1, min(platforms, by_memory, cores or os.cpu_count() or 1))


def vagrant_env(driver: str | None = None) -> dict[str, str]:
    env = dict(os.environ, VAGRANT_HOME=str(VAGRANT_HOME), NSSLAB_SERIAL_DIR=str(SERIAL_DIR))
    env.pop("VAGRANT_CWD", None)
    if driver:
        env["NSSLAB_LIBVIRT_DRIVER"] = driver
    return env


class BoundedVagrant(python_vagrant.Vagrant):
    """python-vagrant on the checkout's Vagrantfile, every call bounded.

    python-vagrant runs vagrant with no timeout and in the lab's process group. The two
    runners its up, ssh_config, ssh and destroy go through (python-vagrant 1.0, pinned) are
    replaced: vagrant runs in its own process group, killed with its ssh and qemu-img
    children past TIMEOUT, and a failure says vagrant's own reason. (Streamed output and
    the sandbox plugin use other runners: the lab calls neither.)"""

    def __init__(self, timeout: float, driver: str | None = None) -> None:
        super().__init__(root=str(ROOT), env=vagrant_env(driver))
        self.timeout = timeout

    def _run_vagrant_command(self, args: list[str | None]) -> str:
        return self.bounded(args)

    def _call_vagrant_command(self, args: list[str | None]) -> None:
        self.bounded(args)

    def bounded(self, args: list[str | None]) -> str:
        try:
            argv = self._make_vagrant_command(args)
        except RuntimeError:  # python-vagrant's "vagrant executable cannot be found"
            raise LabError("vagrant is not installed (`./nsslab.sh box` installs it)") from None
        shown = " ".join(argv[1:])
        done = bounded_run(
            argv,
            self.timeout,
            f"`vagrant {shown}`",
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise LabError(f"`vagrant {shown}` failed: {vagrant_error(done.stderr or done.stdout)}")
        return done.stdout


def vagrant_error(output: str) -> str:
    """The line that says why: vagrant's own last message, or the message of a Ruby
    exception (its first line, `file:line:in `method': message (Class)`), not a backtrace frame."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("from /")] or ["no output"]
    return re.sub(r"^/\S+:\d+:in [`'][^']*': ", "", lines[-1])


class VagrantMachine:
    """The provisioner: brings PLATFORM's VM up (once per run) and returns the ssh transport
    to it as root; close() destroys it, unless --keep."""

    def __init__(self, platform: str, keep: bool = False) -> None:
        self.platform = platform
        self.keep = keep
        self.ssh: Ssh | None = None
        self.installer: InPlace | None = None  # to say what a kept VM still holds

    def up(self) -> Ssh:
        if self.ssh:
            return self.ssh
        box = matrix().get(self.platform)
        if box is None:
            raise LabError(f"the Vagrantfile defines no {self.platform}; platforms: {', '.join(matrix())}")
        if box == boxes.box_name(self.platform) and not boxes.box_present(self.platform):
            raise LabError(f"no box {box}: run `nsslab box build {self.platform}` first")
        SERIAL_DIR.mkdir(parents=True, exist_ok=True)
        (SERIAL_DIR / f"{self.platform}.log").unlink(missing_ok=True)  # this boot's console only
        queued = "waiting for another VM's vagrant" if VAGRANT_LOCK.locked() else "booting VM"
        with progress.phase(f"vagrant://{self.platform}", queued), VAGRANT_LOCK:
            progress.phase(f"vagrant://{self.platform}", "booting VM")
            ensure_libvirt()
            driver = libvirt_driver()
            state.add(f"vm {self.platform}", kind="vm", platform=self.platform)
            try:
                BoundedVagrant(float(os.environ.get("NSSLAB_UP_TIMEOUT", config.VM_UP)), driver).up(
                    vm_name=self.platform, provider="libvirt"
                )
            except LabError as e:
                raise LabError(f"{e}; serial console: {self.console_tail()}") from None
        # Root logs in with the box's key: every later command runs as root over one
        # connection, opened before any module is installed, so no sudo or login in the
        # control path ever loads the candidate (a module that freezes sudo must not
        # freeze the lab too).
        ssh_config = BoundedVagrant(60).ssh_config(vm_name=self.platform)
        keys = "install -d -m 700 /root/.ssh && cat ~vagrant/.ssh/authorized_keys >/root/.ssh/authorized_keys"
        BoundedVagrant(config.REMOTE_CALL).ssh(vm_name=self.platform, command=f"sudo -n sh -c '{keys}'")
        fd, path = tempfile.mkstemp(prefix="nsslab-ssh-", suffix=".cfg")
        os.write(fd, re.sub(r"(?m)^(\s*User) \S+$", r"\1 root", ssh_config).encode())
        os.close(fd)
        self.ssh = Ssh(self.platform, ssh_config=path)
        return self.ssh

    def console_tail(self, count: int = 4) -> str:
        """The last lines the guest printed on its serial console: why a boot went nowhere."""
        log = SERIAL_DIR / f"{self.platform}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", text)  # terminal escapes, carriage returns
        lines = [line.strip() for line in text.splitlines() if line.strip()][-count:]
        return " | ".join(lines) or "no console output"

    def close(self) -> None:
        """Destroys the VM (unless --keep) and forgets its ssh config."""
        if self.ssh:
            self.ssh.close()
            Path(str(self.ssh.ssh_config)).unlink(missing_ok=True)
            self.ssh = None
        if self.keep:
            LIBVIRT["kept"] = True  # cleanup() must not take its network or daemons away
            state.drop(f"vm {self.platform}")  # kept on purpose: not a leftover for the next run
            held = self.installer.module_name if self.installer else ""
            installed = f"libnss_{held} installed" if held else "no module installed"
            where = f"cd {ROOT} && VAGRANT_HOME={VAGRANT_HOME} vagrant"
            login, end = f"{where} ssh {self.platform}", f"{where} destroy -f {self.platform}"
            print(f"vagrant://{self.platform} kept up, {installed}: `{login}`; ends with `{end}`")
            return
        with progress.phase(f"vagrant://{self.platform}", "destroying VM"), VAGRANT_LOCK:
            try:
                BoundedVagrant(config.VM_DESTROY).destroy(vm_name=self.platform)
            finally:
                self.forget_domain()
                state.drop(f"vm {self.platform}")

    def forget_domain(self) -> None:
        """Removes the VM's libvirt domain and disks if `vagrant destroy` left them (a boot
        killed midway, a network already gone): libvirtd must not be stopped under a VM."""
        machine = ROOT / ".vagrant" / "machines" / self.platform / "libvirt" / "id"
        uuid = machine.read_text().strip() if machine.exists() else ""
        if uuid and virsh("dominfo", uuid):
            virsh("destroy", uuid)
            virsh("undefine", uuid, "--remove-all-storage")
        machine.unlink(missing_ok=True)


def expand(spec: Spec) -> list[str]:
    return [spec.text] if spec.host else [f"vagrant://{p}" for p in matrix()]


def parallel(count: int) -> int:
    return parallel_slots(count)


def make(spec: Spec, keep: bool = False) -> Target:
    if spec.host not in matrix():
        raise LabError(
            f"vagrant target needs a platform the Vagrantfile defines: vagrant://{'|'.join(matrix())}"
        )
    machine = VagrantMachine(spec.host, keep)
    machine.installer = InPlace(keep)
    caps = frozenset({FULL_SYSTEM, DISPOSABLE})
    # one check at a time: a TCG guest has no core to spare, and its bounds are already long
    return Target(f"vagrant://{spec.host}", None, machine.installer, machine, caps, lanes=1)


LIBVIRT: dict[str, object] = {}  # what existed before this run touched libvirt, and what it started


def virsh(*args: str) -> str:
    done = tool("virsh", "-q", *args)
    return done.stdout if done.returncode == 0 else ""


def ensure_libvirt() -> None:
    """libvirtd and virtlogd, started by hand where systemd is not PID 1; remembers what
    it started and which pools and networks were there, for cleanup()."""
    started = LIBVIRT.setdefault("daemons", [])
    for daemon in ("virtlogd", "libvirtd"):
        if tool("pgrep", "-x", daemon).returncode != 0:
            if not shutil.which(daemon):
                raise LabError(f"{daemon} is not installed (`./nsslab.sh box` installs libvirt)")
            tool(daemon, "-d")
            started.append(daemon)
    deadline = time.monotonic() + 15
    while not Path("/var/run/libvirt/libvirt-sock").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    for kind in ("pool", "net"):  # defined, and of those the ones running
        LIBVIRT.setdefault(kind, (libvirt_names(kind, "--all"), libvirt_names(kind)))
    LIBVIRT.setdefault("volumes", box_volumes())


def libvirt_names(kind: str, *flags: str) -> set[str]:
    return set(virsh(f"{kind}-list", "--name", *flags).split())


def box_volumes() -> set[tuple[str, str]]:
    """The boxes vagrant-libvirt uploaded into libvirt's pools, as (pool, volume)."""
    return {
        (pool, words[0])
        for pool in libvirt_names("pool", "--all")
        for words in map(str.split, virsh("vol-list", "--pool", pool).splitlines())
        if words and words[0].startswith("nsslab-VAGRANTSLASH-")
    }


def cleanup() -> None:
    """After the last VM is gone: libvirt as this run found it. Box volumes, pools and
    networks it added go, the ones it started stop, the daemons it started end. What was
    there before stays: a user's network, another checkout's kept VM and its box volume."""
    if not LIBVIRT or LIBVIRT.get("kept"):
        return  # a kept VM needs its volumes, network and daemons
    for pool, volume in box_volumes() - LIBVIRT["volumes"]:
        virsh("vol-delete", "--pool", pool, volume)
    for kind in ("pool", "net"):
        defined, running = LIBVIRT[kind]
        for name in libvirt_names(kind, "--all"):
            if name not in running:
                virsh(f"{kind}-destroy", name)  # stops it (and a network's dnsmasq)
            if name not in defined:
                virsh(f"{kind}-undefine", name)
    for daemon in LIBVIRT["daemons"]:
        tool("pkill", "-x", daemon)
    # Gone, not only signalled: the network's dnsmasq and the daemons take a moment to exit.
    for pattern in ["-f", "dnsmasq/vagrant-libvirt"], *(["-x", d] for d in LIBVIRT["daemons"]):
        deadline = time.monotonic() + 15
        while tool("pgrep", *pattern).returncode == 0:
            if time.monotonic() > deadline:
                tool("pkill", "-9", *pattern)
                break
            time.sleep(0.2)
    LIBVIRT.clear()


def libvirt_driver() -> str:
    """kvm when KVM really boots a Linux kernel here, else qemu (TCG). /dev/kvm existing is
    not enough: nested KVM may refuse a stock guest ("failed to set MSR 0x10a") or hang it."""
    return os.environ.get("NSSLAB_LIBVIRT_DRIVER") or ("kvm" if kvm_boots() else "qemu")


@functools.cache  # a fact of this host: asked once per run, whatever the platform
def kvm_boots() -> bool:
    """Boots a box's own kernel under `qemu -accel kvm` for up to 20 s: does it reach /init?"""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    kernels = sorted((VAGRANT_HOME / "boxes").glob("nsslab-VAGRANTSLASH-*/*/libvirt/vmlinuz"))
    if not kernels:
        return False  # boxes from elsewhere bring no kernel to try: TCG is slow but works
    kernel = kernels[-1]
    argv = [
        "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults",
        "-display", "none", "-no-reboot", "-serial", "stdio", "-kernel", str(kernel),
        "-initrd", str(kernel.parent / "initrd.img"),
        "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
    return b"Run /init" in out or b"Freeing unused kernel" in out
