from __future__ import annotations

from pathlib import Path

import pytest

from lab import module
from lab.errors import LabError
from lab.install import nsswitch
from lab.module import load
from tests.conftest import MODULES

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "data.db").write_text("x")
    path = tmp_path / "module.toml"
    path.write_text(text)
    return path


def test_builtin_manifest_is_read_with_users_groups_and_files():
    m = module.load(ROOT / "nss_modules" / "clab")
    assert m.name == "clab" and m.library.name == "libnss_clab.so.2"
    assert {u.name for u in m.users} == {"pyama", "taro", "hanako"}
    assert m.files == {"/etc/clab.db": ROOT / "nss_modules" / "clab" / "users.db"}
    pyama = next(u for u in m.users if u.name == "pyama")
    assert m.gids_of(pyama) == [2000, 2001]  # primary pepabo + member of design
    assert m.has_expectations


@pytest.mark.parametrize(
    "text, message",
    [
        ('library = "x.so"', "missing required field 'name'"),
        ('name = "bad-name"\nlibrary = "x"', "not a valid NSS service name"),
        ('name = "a"\nlibrary = "x"\ndatabases = ["hosts"]', "unknown databases ['hosts']"),
        ('name = "a"\nlibrary = "x"\n[files]\n"etc/a" = "data.db"', "must be an absolute path"),
        ('name = "a"\nlibrary = "x"\n[files]\n"/etc/a" = "missing.db"', "does not exist"),
        ('name = "a"\nlibrary = "x"\n[[users]]\nname = "u"', "bad [[users]]"),
        ('name = = "a"', "not a valid manifest"),
    ],
)
def test_bad_manifests_give_one_line_errors(tmp_path, text, message):
    with pytest.raises(LabError, match=message.replace("[", r"\[").replace("]", r"\]")):
        module.load(write(tmp_path, text))


def test_bare_library_must_be_named_like_glibc_loads_it(tmp_path):
    lib = tmp_path / "nss_thing.so"
    lib.write_text("not even an ELF")
    with pytest.raises(LabError, match=r"libnss_<service>\.so\.2"):
        module.load(lib)


def test_failing_build_is_one_line(tmp_path):
    path = write(tmp_path, 'name = "a"\nlibrary = "libnss_a.so.2"\nbuild = "echo boom >&2; exit 3"')
    with pytest.raises(LabError, match=r"build `.*` failed: boom"):
        module.ensure_built(module.load(path))


def test_nsswitch_points_served_databases_at_files_then_the_module():
    m = module.Module(name="clab", library=Path("x"), databases=["passwd", "group", "initgroups"])
    out = nsswitch(m, "passwd: files systemd\ngroup: files systemd\nhosts: files dns\n")
    assert "passwd: files clab" in out and "group: files clab" in out
    assert "hosts: files dns" in out and "systemd" not in out
    only_shadow = module.Module(name="s", library=Path("x"), databases=["shadow"])
    assert nsswitch(only_shadow, "passwd: files\n") == "passwd: files\nshadow: files s\n"


def test_expect_table_is_read_and_checked(tmp_path):
    ok = write(tmp_path, 'name = "a"\nlibrary = "x"\n[expect]\nfork-child = "hang"')
    assert module.load(ok).expect == {"fork-child": "hang"}
    with pytest.raises(LabError, match=r"\[expect\] statuses must be one of"):
        module.load(write(tmp_path, 'name = "a"\nlibrary = "x"\n[expect]\nfork-child = "frozen"'))


def test_extends_inherits_data_but_not_identity(tmp_path):
    planted = load(MODULES / "overflowlab")
    clab = load(MODULES / "clab")
    assert planted.name == "overflowlab" and planted.expect == {"erange": "fail"}
    assert planted.users == clab.users and planted.groups == clab.groups and planted.shadow == clab.shadow
    assert planted.files == {"/etc/clab.db": (MODULES / "clab" / "users.db").resolve()}
    loop = tmp_path / "module.toml"
    loop.write_text('extends = "module.toml"\nname = "x"\nlibrary = "libnss_x.so.2"\n')
    with pytest.raises(LabError, match="loops back"):
        load(loop)
