"""Debian packages in manifests: the new fields' validation, merged-/usr, and the apt/dpkg-deb
command lines (fake executables on PATH: nothing is downloaded here)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from lab import packages
from lab.errors import LabError
from lab.module import load

BASE = 'name = "a"\nlibrary = "/usr/lib/libnss_a.so.2"\n'
SERVICE = '[[services]]\nname = "s"\ncommand = ["/x"]\n'


def manifest(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "data").write_text("x")
    path = tmp_path / "module.toml"
    path.write_text(BASE + textwrap.dedent(extra))
    return path


def test_new_fields_are_read(tmp_path):
    m = load(
        manifest(
            tmp_path,
            """
            packages = ["libnss-a"]
            state = ["/var/lib/a/", "/run"]
            [files]
            "/etc/a.conf" = { source = "data", mode = 0o600 }
            "/etc/b" = "data"
            [[services]]
            name = "ad"
            command = ["/usr/sbin/ad", "-i"]
            ready = { tcp = 8080 }
            """,
        )
    )
    assert m.packages == ["libnss-a"] and m.state == ["/var/lib/a", "/run"]
    assert m.files == {"/etc/a.conf": tmp_path / "data", "/etc/b": tmp_path / "data"}
    assert m.modes == {"/etc/a.conf": 0o600}
    (service,) = m.services
    assert service.command == ("/usr/sbin/ad", "-i") and service.ready == ("tcp", 8080)
    assert service.timeout == 20.0


@pytest.mark.parametrize(
    "extra, message",
    [
        ("packages = 'libnss-a'", "packages must be a list"),
        ('state = ["var/lib/a"]', "state must be a list of absolute"),
        ('state = ["/etc"]', "cannot be private writable"),
        ('[files]\n"/etc/a" = { source = "data", mode = "600" }', "mode must be an octal integer"),
        ('[files]\n"/etc/a" = { source = "data", owner = 0 }', "takes `source` and `mode` only"),
        ('[[services]]\ncommand = ["/x"]\nready = { tcp = 1 }', "needs a name"),
        ('[[services]]\nname = "s"\ncommand = []\nready = { tcp = 1 }', "command must be a non-empty list"),
        ('[[services]]\nname = "s"\ncommand = ["sssd"]\nready = { tcp = 1 }', "must be an absolute path"),
        (SERVICE + 'ready = { file = "/a" }', "unknown ready kind 'file'"),
        (SERVICE + "ready = { tcp = 70000 }", "ready.tcp must be a port"),
        (SERVICE + 'ready = { socket = "a" }', "ready.socket must be an absolute"),
        (SERVICE + "ready = { command = [] }", "ready.command must be"),
        (SERVICE + "ready = {}", "ready must be one of"),
        (SERVICE + "ready = { tcp = 1 }\ntimeout = 0", "timeout must be"),
        (SERVICE + "ready = { tcp = 1 }\nwait = 1", "unknown keys ['wait']"),
    ],
)
def test_bad_fields_are_one_line_errors(tmp_path, extra, message):
    with pytest.raises(LabError) as e:
        load(manifest(tmp_path, extra))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_source_the_build_makes_may_be_missing_at_load(tmp_path):
    extra = 'build = "true"\n[files]\n"/var/lib/misc/passwd.db" = "maps/passwd.db"\n'
    assert load(manifest(tmp_path, extra)).files["/var/lib/misc/passwd.db"] == tmp_path / "maps/passwd.db"
    with pytest.raises(LabError, match="does not exist"):
        load(manifest(tmp_path, extra.replace('build = "true"\n', "")))


def test_merged_usr_moves_lib_bin_sbin_under_usr(tmp_path):
    tree = tmp_path / "tree"
    (tree / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (tree / "lib/x86_64-linux-gnu/libnss_a-1.so").write_text("elf")
    os.symlink("libnss_a-1.so", tree / "lib/x86_64-linux-gnu/libnss_a.so.2")
    (tree / "sbin").mkdir()
    (tree / "sbin/ad").write_text("#!/bin/sh\n")
    (tree / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tree / "usr/lib/x86_64-linux-gnu/libother.so").write_text("elf")
    packages.merge_usr(tree)
    assert sorted(p.name for p in tree.iterdir()) == ["usr"]
    lib = tree / "usr/lib/x86_64-linux-gnu"
    assert sorted(p.name for p in lib.iterdir()) == ["libnss_a-1.so", "libnss_a.so.2", "libother.so"]
    assert os.readlink(lib / "libnss_a.so.2") == "libnss_a-1.so"  # relative links still hold
    assert (tree / "usr/sbin/ad").read_text() == "#!/bin/sh\n"


def test_resolve_follows_links_inside_the_tree_not_on_the_host(tmp_path):
    tree = tmp_path / "tree"
    (tree / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tree / "usr/lib/x86_64-linux-gnu/libnss_a-1.so").write_text("elf")
    # an absolute target: on the host it would be /usr/lib/..., which does not have it
    os.symlink("/lib/x86_64-linux-gnu/libnss_a-1.so", tree / "usr/lib/x86_64-linux-gnu/libnss_a.so.2")
    found = packages.resolve(tree, "/lib/x86_64-linux-gnu/libnss_a.so.2")
    assert found == tree / "usr/lib/x86_64-linux-gnu/libnss_a-1.so"
    with pytest.raises(LabError, match="not in the unpacked packages"):
        packages.resolve(tree, "/usr/lib/libnss_missing.so.2")


FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_LOG"
case "$(basename "$0") $1" in
  "apt-cache policy")
    for name; do [ "$name" = policy ] && continue
      [ "$name" = libnss-nothere ] && continue
      printf '%s:\\n  Installed: (none)\\n  Candidate: 1.0-1\\n' "$name"; done ;;
  "dpkg-deb -x") mkdir -p "$3/lib/x86_64-linux-gnu" && touch "$3/lib/x86_64-linux-gnu/$(basename "$2").so" ;;
esac
for arg; do case "$arg" in download) touch "$PWD/$(echo "$*" | awk '{print $NF}')_1.0_amd64.deb" ;; esac; done
for arg; do case "$arg" in Dir::Cache::archives=*) touch "${arg#*=}/libdep_2.0_amd64.deb" ;; esac; done
exit 0
"""


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apt-get", "apt-cache", "dpkg-deb"):
        (bin_dir / name).write_text(FAKE)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "commands.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("NSSLAB_DEB_CACHE", str(tmp_path / "cache"))
    return log


def test_fetch_downloads_named_packages_and_missing_deps_then_unpacks(fake_apt, tmp_path):
    tree = packages.fetch(["libnss-a"])
    debs = tmp_path / "cache/libnss-a/debs"
    sandboxed = "-q -o APT::Sandbox::User=root"
    assert fake_apt.read_text().splitlines() == [
        "apt-cache policy libnss-a",
        f"apt-get {sandboxed} download libnss-a",
        f"apt-get {sandboxed} install --download-only -y --no-install-recommends "
        f"-o Dir::Cache::archives={debs} libnss-a",
        f"dpkg-deb -x {debs}/libdep_2.0_amd64.deb {tree}",
        f"dpkg-deb -x {debs}/libnss-a_1.0_amd64.deb {tree}",
    ]
    assert sorted(p.name for p in (tree / "usr/lib/x86_64-linux-gnu").iterdir()) == [
        "libdep_2.0_amd64.deb.so",
        "libnss-a_1.0_amd64.deb.so",
    ]
    assert not (tree / "lib").exists()  # merged-/usr


def test_second_fetch_runs_nothing(fake_apt):
    first = packages.fetch(["libnss-a"])
    fake_apt.write_text("")
    assert packages.fetch(["libnss-a"]) == first
    assert fake_apt.read_text() == ""


def test_unknown_package_updates_once_then_is_one_line(fake_apt):
    with pytest.raises(LabError) as e:
        packages.fetch(["libnss-nothere"])
    assert str(e.value) == "no Debian package libnss-nothere (apt knows no candidate)"
    assert fake_apt.read_text().splitlines() == [
        "apt-cache policy libnss-nothere",
        "apt-get -q update",
        "apt-cache policy libnss-nothere",
    ]


def test_a_bad_name_never_reaches_apt(fake_apt):
    with pytest.raises(LabError, match="is not a Debian package name"):
        packages.fetch(["-o=Evil"])
    assert not fake_apt.exists()
