from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab import elf
from lab.errors import LabError

C_MODULE = "int _nss_tiny_getpwnam_r(void) { return 0; }\nint _nss_tiny_getgrgid_r(void) { return 0; }\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    if not shutil.which("cc"):
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("elf")
    (d / "tiny.c").write_text(C_MODULE)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", d / "libnss_tiny.so.2", d / "tiny.c"], check=True)
    subprocess.run(["cc", "-c", "-fPIC", "-o", d / "tiny.o", d / "tiny.c"], check=True)
    return d


def test_nss_entry_points_and_databases_are_read_from_dynsym(tiny):
    info = elf.inspect(tiny / "libnss_tiny.so.2")
    assert info.nss_symbols == ["_nss_tiny_getgrgid_r", "_nss_tiny_getpwnam_r"]
    assert not info.is_go
    assert elf.served_databases(tiny / "libnss_tiny.so.2", "tiny") == ["passwd", "group"]


def test_text_file_is_not_an_elf(tmp_path):
    fake = tmp_path / "libnss_fake.so.2"
    fake.write_text("hello")
    with pytest.raises(LabError, match="not an ELF file"):
        elf.inspect(fake)


def test_object_file_is_not_a_shared_object(tiny):
    with pytest.raises(LabError, match="not a shared object"):
        elf.inspect(tiny / "tiny.o")


def test_wrong_architecture_is_named(tiny, tmp_path):
    other = tmp_path / "libnss_arm.so.2"
    data = bytearray((tiny / "libnss_tiny.so.2").read_bytes())
    data[18:20] = (183 if elf.platform.machine() != "aarch64" else 62).to_bytes(2, "little")
    other.write_bytes(bytes(data))
    with pytest.raises(LabError, match=r"built for EM_(AARCH64|X86_64), this machine is"):
        elf.inspect(other)


def test_go_version_is_found_in_buildinfo():
    assert elf.go_version(b"\xff Go buildinf:\x08\x02go1.19.8\x00rest") == "go1.19.8"
    assert elf.go_version(b"\x08go1.19.8\xee\x01") == "go1.19.8"  # seen in a real build
    assert elf.go_version(b"go1.22rc1 ") == "go1.22rc1"
    assert elf.go_version(b"nothing here") is None
