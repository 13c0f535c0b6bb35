"""ELF facts read with pyelftools, and what they mean on a target (lab.checks.static)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab import elf
from lab.checks.static import findings
from lab.errors import LabError

C_MODULE = "int _nss_tiny_getpwnam_r(void) { return 0; }\nint _nss_tiny_getgrgid_r(void) { return 0; }\n"
HERE = {"machine": "x86_64", "glibc": "2.36", "libs": {"libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6"}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    if not shutil.which("cc"):
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("elf")
    (d / "tiny.c").write_text(C_MODULE)
    cc = ["cc", "-shared", "-fPIC", "-Wl,-soname,libnss_tiny.so.2"]
    subprocess.run([*cc, "-o", d / "libnss_tiny.so.2", d / "tiny.c"], check=True)
    subprocess.run([*cc, "-Wl,-z,execstack", "-o", d / "libnss_exec.so.2", d / "tiny.c"], check=True)
    subprocess.run(["cc", "-c", "-fPIC", "-o", d / "tiny.o", d / "tiny.c"], check=True)
    return d


def severities(found) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in found:
        out.setdefault(f.severity, []).append(f.text)
    return out


def test_nss_entry_points_and_databases_are_read_from_dynsym(tiny):
    info = elf.inspect(tiny / "libnss_tiny.so.2")
    assert info.nss_symbols == ["_nss_tiny_getgrgid_r", "_nss_tiny_getpwnam_r"]
    assert info.soname == "libnss_tiny.so.2"
    assert not info.is_go and not info.static_tls
    assert info.gnu_stack == {"exec": False, "size": 0}
    assert elf.served_databases(tiny / "libnss_tiny.so.2", "tiny") == ["passwd", "group"]


def test_missing_entry_points_are_named_per_database(tiny):
    info = elf.inspect(tiny / "libnss_tiny.so.2")
    got = severities(findings(info, "tiny", ["passwd", "group"], True, HERE))
    assert "blocker" not in got
    passwd = next(t for t in got["fail"] if t.startswith("passwd"))
    assert "_nss_tiny_getpwuid_r" in passwd and "_nss_tiny_getpwnam_r" not in passwd
    # no set/get/end*ent at all while the manifest does not say enumerable = false: the
    # manifest's gap, a warn naming the line to add, not the module's defect
    assert any("enumerable = false" in t and "no set/get/end*ent for passwd" in t for t in got["warn"])
    assert not any(
        "getpwent" in t for t in severities(findings(info, "tiny", ["passwd"], False, HERE))["fail"]
    )


def test_a_library_for_another_service_exports_nothing_glibc_calls(tiny):
    info = elf.inspect(tiny / "libnss_tiny.so.2")
    got = severities(findings(info, "other", ["passwd"], True, HERE))
    assert any("exports no _nss_other_* entry point" in t for t in got["blocker"])


def test_executable_stack_is_refused_from_glibc_2_41(tiny):
    info = elf.inspect(tiny / "libnss_exec.so.2")
    assert info.gnu_stack["exec"]
    older = severities(findings(info, "tiny", [], True, HERE))
    assert any("executable stack" in t and "2.41" in t for t in older["fail"])  # loads here, not later
    newer = severities(findings(info, "tiny", [], True, HERE | {"glibc": "2.41"}))
    assert any("executable stack" in t for t in newer["blocker"])


def test_newer_glibc_and_missing_libraries_are_blockers(tiny):
    info = elf.inspect(tiny / "libnss_tiny.so.2")
    info.glibc_versions = ["GLIBC_2.2.5", "GLIBC_2.38"]
    target = HERE | {"glibc": "2.36", "libs": {"libc.so.6": "/x", "libgone.so.1": None}}
    got = severities(findings(info, "tiny", [], True, target))
    assert any("needs GLIBC_2.38" in t and "2.36" in t for t in got["blocker"])
    assert any("libgone.so.1" in t for t in got["blocker"])
    assert not severities(findings(info, "tiny", [], True, HERE | {"glibc": "2.39"})).get("blocker")


def test_static_tls_warns_small_and_blocks_big(tiny):
    info = elf.inspect(tiny / "libnss_tiny.so.2")
    info.static_tls, info.tls_size = True, 8
    assert any("STATIC_TLS" in t for t in severities(findings(info, "tiny", [], True, HERE))["warn"])
    info.tls_size = 4096
    assert any("STATIC_TLS" in t for t in severities(findings(info, "tiny", [], True, HERE))["blocker"])
    info.tls_size = 0  # IE access to libc's own TLS (errno): nothing of its own to place
    assert not any("STATIC_TLS" in f.text for f in findings(info, "tiny", [], True, HERE))


def test_go_library_is_a_warning_with_its_version(tiny):
    info = elf.inspect(tiny / "libnss_tiny.so.2")
    info.is_go, info.go_version, info.go_markers = True, "go1.19.8", ["crosscall2"]
    warn = severities(findings(info, "tiny", [], True, HERE))["warn"]
    assert any("Go c-shared" in t and "go1.19.8" in t for t in warn)


def test_text_file_is_not_an_elf(tmp_path):
    fake = tmp_path / "libnss_fake.so.2"
    fake.write_text("hello")
    with pytest.raises(LabError, match="not an ELF file"):
        elf.inspect(fake)


def test_object_file_is_not_a_shared_object(tiny):
    info = elf.inspect(tiny / "tiny.o")
    assert info.elf_type == "ET_REL"
    assert any(
        "not a shared object" in t for t in severities(findings(info, "tiny", [], True, HERE))["blocker"]
    )


def test_wrong_architecture_is_named(tiny, tmp_path):
    other = tmp_path / "libnss_arm.so.2"
    data = bytearray((tiny / "libnss_tiny.so.2").read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    other.write_bytes(bytes(data))
    info = elf.inspect(other)
    got = severities(findings(info, "tiny", [], True, HERE))
    assert any("built for EM_AARCH64; the target is x86_64" in t for t in got["blocker"])


def test_go_version_is_found_in_buildinfo():
    assert elf.go_version(b"\xff Go buildinf:\x08\x02go1.19.8\x00rest") == "go1.19.8"
    assert elf.go_version(b"\x08go1.19.8\xee\x01") == "go1.19.8"  # seen in a real build
    assert elf.go_version(b"go1.22rc1 ") == "go1.22rc1"
    assert elf.go_version(b"nothing here") is None


def test_glibc_versions_sort_numerically():
    assert elf.version_key("GLIBC_2.9") < elf.version_key("GLIBC_2.14") < elf.version_key("2.36")
    assert elf.version_key("GLIBC_2.2.5") < elf.version_key("GLIBC_2.3")
