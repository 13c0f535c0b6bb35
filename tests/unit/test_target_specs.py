"""Target specs: URLs through a registry, one spec expanding to many, kinds imported lazily,
and bad specs as one-line errors."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from lab import targets
from lab.errors import LabError
from lab.targets import expand, parse


def test_the_kinds_and_their_parts():
    s = parse("ssh://alice@db1.example:2222?disposable=1&StrictHostKeyChecking=no")
    assert (s.kind, s.user, s.host, s.port) == ("ssh", "alice", "db1.example", 2222)
    assert s.flag("disposable") and s.query["StrictHostKeyChecking"] == "no"
    assert parse("sandbox").kind == "sandbox"
    assert parse("rootfs:///srv/root").path == "/srv/root"
    assert parse("vagrant:debian12") == parse("vagrant://debian12")  # the old form still works


def test_one_spec_is_many_machines():
    assert expand("sandbox") == ["sandbox"]
    assert expand("rootfs") == ["rootfs://debian11", "rootfs://debian12", "rootfs://debian13"]
    assert expand("rootfs://debian12") == ["rootfs://debian12"]
    assert expand("ssh://h") == ["ssh://h"]


def test_an_ssh_config_names_its_hosts(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host web1 web2  # two\n  HostName 10.0.0.1\nHost *.internal\nHost !bad db\nMatch all\n")
    query = urllib.parse.urlencode({"disposable": "1", "ssh_config": str(cfg)})
    assert expand(f"ssh-config://{cfg}?disposable=1") == [
        f"ssh://{h}?{query}" for h in ("web1", "web2", "db")
    ]
    made = targets.kind_of(parse("ssh://web1")).make(parse(expand(f"ssh-config://{cfg}")[0]))
    assert made.transport.ssh_config == str(cfg) and made.transport.user is None  # the config's User decides


def test_an_ansible_inventory_names_its_hosts_and_groups(tmp_path):
    inv = tmp_path / "hosts.ini"
    inv.write_text(
        "lone ansible_host=10.0.0.9\n"
        "[web]\nweb1 ansible_host=10.0.0.1 ansible_user=deploy ansible_port=2222\n"
        "web2 ansible_host=10.0.0.2 ansible_ssh_private_key_file=/k/id\n"
        "[db]\ndb1\n; a comment\n[prod:children]\nweb\ndb\n[prod:vars]\nx=1\n"
    )
    assert expand(f"ansible://{inv}?group=web") == [
        "ssh://deploy@10.0.0.1:2222",
        "ssh://10.0.0.2?IdentityFile=%2Fk%2Fid",
    ]
    assert len(expand(f"ansible://{inv}?group=prod")) == 3  # web and db through :children
    assert len(expand(f"ansible://{inv}")) == 4
    with pytest.raises(LabError, match=r"no group \[nope\]"):
        expand(f"ansible://{inv}?group=nope")


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("docker://x", "unknown target 'docker://x'; kinds: sandbox, rootfs"),
        ("ssh://h:port", "the port is not a number"),
        ("ssh://", "an ssh target needs a host"),
        ("ansible:///nowhere/inv", "cannot read /nowhere/inv"),
        ("rootfs://debian99", "rootfs target needs a platform"),
        ("rootfs:///nowhere", "neither a directory nor a tarball"),
    ],
)
def test_a_bad_spec_is_one_line(spec, error):
    with pytest.raises(LabError, match=error) as e:
        kind = targets.kind_of(parse(spec))
        kind.make(parse(expand(spec)[0]))
    assert "\n" not in str(e.value)


def test_a_kind_is_imported_only_when_a_spec_names_it():
    code = "\n".join(
        [
            "import sys",
            "from lab.targets import expand",
            "expand('rootfs')",
            "print('lab.targets.vagrant' in sys.modules)",
        ]
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_a_new_kind_is_one_module_and_one_line(monkeypatch):
    """What a newcomer writes (tests/newkind.py): a transport and a make(); no check is read."""
    monkeypatch.setitem(targets.KINDS, "echo", "tests.newkind")
    made = targets.get_target("echo://x")
    try:
        assert made.transport.wrap(["id"]) == ["env", "NSSLAB_VIA=echo", "id"]
    finally:
        targets.close_all()


def test_login_paths_leave_out_the_paths_whose_program_is_missing():
    """On a host without sudo, systemd or sshd (this one), those login paths say nothing about
    the module: they are skipped, named, instead of failing it."""
    import os
    import shutil

    from lab.checks.login_paths import ABSENT, NEEDS

    done = subprocess.run(["sh", "-c", ABSENT], capture_output=True, text=True, timeout=10)
    absent = set(done.stdout.splitlines())
    assert absent <= set(NEEDS)
    assert ("sudo -u" in absent) == (shutil.which("sudo") is None)
    assert ("systemd User=" in absent) == (
        not os.path.isdir("/run/systemd/system") or not shutil.which("systemd-run")
    )
    assert ("ssh + TAB" in absent) == (
        shutil.which("sshd") is None and not os.access("/usr/sbin/sshd", os.X_OK)
    )


def test_a_root_filesystem_tarball_is_unpacked_once_and_a_hostile_one_refused(tmp_path, monkeypatch):
    import io
    import tarfile

    from lab import roots

    monkeypatch.setattr(roots, "CACHE", tmp_path / "cache")

    def tarball(name: str, members: dict[str, bytes]) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w") as tar:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    good = tarball("image.tar", {"bin/sh": b"#!", "etc/passwd": b"root:x:0:0::/root:/bin/sh\n"})
    root = roots.unpack(good)
    assert (root / "etc/passwd").read_text().startswith("root:") and roots.unpack(good) == root
    bad = tarball("evil.tar", {"../../escaped": b"x"})
    with pytest.raises(LabError, match="would land outside the root filesystem"):
        roots.unpack(bad)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "cache" / "escaped").exists()
