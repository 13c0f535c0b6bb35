"""python-vagrant and testinfra over the ssh transport, as the lab drives them: their own calls have
no bound, so the lab's subclasses must give every call one, kill what it started, and
say vagrant's reason for a failure. Fake `vagrant` and `ssh` executables stand in."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import testinfra.host

from lab.errors import CommandTimeout, LabError
from lab.targets.overlay import Installed
from lab.targets.target import Target, TestinfraBridge
from lab.targets.transport import Ssh
from lab.targets.vagrant import BoundedVagrant


def executable(path: Path, script: str) -> str:
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def fake_vagrant(tmp_path: Path, script: str, timeout: float = 10) -> BoundedVagrant:
    v = BoundedVagrant(timeout)
    v._vagrant_exe = executable(tmp_path / "vagrant", script)  # where python-vagrant looks first
    return v


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_python_vagrant_calls_reach_vagrant_with_its_arguments(tmp_path):
    v = fake_vagrant(tmp_path, 'echo "$@" >> "$(dirname "$0")/calls"\necho "Host debian12"\n')
    v.up(vm_name="debian12", provider="libvirt")
    assert v.ssh_config(vm_name="debian12").strip() == "Host debian12"
    v.destroy(vm_name="debian12")
    assert (tmp_path / "calls").read_text().splitlines() == [
        "up debian12 --provider=libvirt",
        "ssh-config debian12",
        "destroy debian12 --force",
    ]


def test_a_vagrant_that_never_returns_is_killed_with_its_children(tmp_path):
    v = fake_vagrant(tmp_path, 'sleep 300 &\necho $! > "$(dirname "$0")/child"\nwait\n', timeout=1)
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"`vagrant up debian12 --provider=libvirt` took over 1 s"):
        v.up(vm_name="debian12", provider="libvirt")
    assert time.monotonic() - started < 8
    child = int((tmp_path / "child").read_text())
    assert not alive(child), "the vagrant's own child (its ssh, qemu-img) must go with it"


def test_a_vagrant_failure_says_vagrant_s_reason(tmp_path):
    (tmp_path / "stderr").write_text(
        "/usr/lib/ruby/vagrant/x.rb:12:in `call': Call to virDomainCreate failed (Libvirt::Error)\n"
        "\tfrom /usr/lib/ruby/vendor_ruby/vagrant/y.rb:3:in `run'\n"
    )
    v = fake_vagrant(tmp_path, 'cat "$(dirname "$0")/stderr" >&2\nexit 1\n')
    with pytest.raises(LabError, match=r"`vagrant destroy debian12 --force` failed: Call to virDomainCreate"):
        v.destroy(vm_name="debian12")


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    """An `ssh` that runs its last argument here, as the remote shell would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(
        bin_dir / "ssh", 'for a; do last=$a; done\necho "$*" > "$(dirname "$0")/argv"\nexec sh -c "$last"\n'
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


def ssh_target(tmp_path: Path, bound: float = 10) -> Target:
    """A target reached over ssh, as if installed: its testinfra host runs through the transport."""
    ssh = Ssh("debian12", ssh_config=str(tmp_path / "ssh.cfg"))
    ssh._control = str(tmp_path / "sock")  # what open() sets once the master connection is up
    target = Target("ssh://debian12", ssh, installer=None)  # type: ignore[arg-type]
    target.installed = Installed(ssh, "/var/tmp/nsslab", "/lib/libnss_x.so.2", tmp_path)
    target.__dict__["host"] = testinfra.host.Host(TestinfraBridge(target, bound))
    return target


def test_testinfra_runs_over_the_targets_ssh_transport(fake_ssh, tmp_path):
    host = ssh_target(tmp_path).host
    assert host.file("/etc/passwd").exists
    assert host.run("exit 3").rc == 3
    argv = (fake_ssh / "argv").read_text()
    assert f"-F {tmp_path}/ssh.cfg" in argv and f"ControlPath={tmp_path}/sock" in argv
    assert " debian12 " in argv and "Port=" not in argv and "-p " not in argv  # the rest from the config


def test_an_ssh_failure_is_one_line(fake_ssh, tmp_path):
    (fake_ssh / "ssh").write_text(
        "#!/bin/sh\necho 'ssh: connect to host debian12: Connection refused' >&2\nexit 255\n"
    )
    with pytest.raises(LabError, match=r"^ssh://debian12: ssh failed: ssh: connect to host debian12"):
        ssh_target(tmp_path).host.run("true")


def test_a_testinfra_command_that_never_returns_is_bounded(fake_ssh, tmp_path):
    host = ssh_target(tmp_path, bound=1).host
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="took over 1 s"):
        host.run("sleep 300")
    assert time.monotonic() - started < 8
