"""The manifest is the user's statement, not the module's defect: what it leaves out (a
database the library serves, `enumerable = false` for a library without listings) is a
warn from `elf` with the line to add, and the checks that depend on it do not fail; what
it declares and the library lacks (noshadowlab's shadow) stays a fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.runner import run_module
from tests.conftest import MODULES, checks

pytestmark = pytest.mark.sandbox

USERS = ["pyama", "taro", "hanako"]


def not_ok(report) -> list[tuple[str, str]]:
    return [(c.id, c.status) for c in report.checks if c.status not in ("pass", "skip")]


def manifest(tmp_path: Path, name: str, library: Path, build: str) -> Path:
    """clab's users, with `enumerable = false`."""
    path = tmp_path / name / "module.toml"
    path.parent.mkdir()
    path.write_text(
        f'extends = "{MODULES / "clab" / "module.toml"}"\n'
        f'name = "{name}"\nlibrary = "{library}"\nbuild = "{build}"\nenumerable = false\n'
    )
    return path


def test_a_database_the_manifest_leaves_out_is_a_warn_and_shadow_does_not_fail(lab_run):
    report = lab_run("unlistedshadowlab")
    c = checks(report)
    assert c["elf"].status == "warn"
    assert [g["line"] for g in c["elf"].details["manifest_gaps"]] == [
        'databases = ["passwd", "group", "shadow", "initgroups"]'
    ]
    assert c["elf"].impact and "nm -D --defined-only" in c["elf"].reproduce
    shadow = c["shadow"]
    assert shadow.status == "warn", shadow.reason
    assert shadow.details["unshadowed"] == USERS  # nsswitch.conf here does not ask the module
    assert shadow.details["module_answers"] == USERS  # ... but asked alone, it answers
    assert shadow.details["module_lacks"] == [] and shadow.details["mismatches"] == []
    assert shadow.impact and shadow.control and "getent -s unlistedshadowlab shadow" in shadow.reproduce
    assert not_ok(report) == [("elf", "warn"), ("shadow", "warn")]
    assert report.unexpected() == []


def test_a_library_without_shadow_entry_points_still_fails_shadow(lab_run):
    report = lab_run("noshadowlab")
    c = checks(report)
    assert c["elf"].status == "pass" and c["elf"].details["manifest_gaps"] == []
    assert c["shadow"].status == "fail"
    assert c["shadow"].details["unshadowed"] == USERS
    assert c["shadow"].impact and c["shadow"].control and c["shadow"].reproduce
    assert not_ok(report) == [("shadow", "fail")]
    assert report.unexpected() == []


def listing_left_out(c: dict) -> None:
    """lookup and fork-child pass without the listing parts, tab-completion skips."""
    lookup, fork = c["lookup"], c["fork-child"]
    assert lookup.status == "pass", lookup.reason
    assert lookup.details["listings_checked"] == []
    assert set(lookup.details["listings_left_out"]) == {"passwd", "group"}
    assert fork.status == "pass", fork.reason
    assert set(fork.details["left_out"]) == {"getpwall()", "getgrall()"}
    assert not any("getpwall" in step or "getgrall" in step for step in fork.details["steps"])
    assert c["tab-completion"].status == "skip" and c["tab-completion"].details["listing"]
    assert c["shadow"].status == "pass" and c["shadow"].details["listing_left_out"]


def test_a_library_without_listings_is_a_manifest_gap_not_a_defect(lab_run):
    report = lab_run("noenumlab")
    c = checks(report)
    assert c["elf"].status == "warn"
    assert [g["line"] for g in c["elf"].details["manifest_gaps"]] == ["enumerable = false"]
    assert c["elf"].impact and c["elf"].reproduce
    listing_left_out(c)
    assert c["enumeration"].status == "skip" and c["consistency"].status == "skip"
    assert not_ok(report) == [("elf", "warn")]
    assert report.unexpected() == []


def test_enumerable_false_is_honoured_without_listings(tmp_path):
    library = MODULES / "noenumlab" / "libnss_noenumlab.so.2"
    build = "make -f ../clab/Makefile NAME=noenumlab DB=clab PLANT=NOENUM"
    report = run_module(manifest(tmp_path, "noenumlab", library, build))
    c = checks(report)
    assert c["elf"].status == "pass" and c["elf"].details["manifest_gaps"] == []
    listing_left_out(c)
    assert not_ok(report) == []


def test_enumerable_false_is_honoured_on_a_library_that_lists(tmp_path):
    report = run_module(manifest(tmp_path, "clab", MODULES / "clab" / "libnss_clab.so.2", "make"))
    c = checks(report)
    assert c["elf"].status == "pass" and c["elf"].details["manifest_gaps"] == []
    listing_left_out(c)
    assert "the manifest says enumerable = false" in c["lookup"].details["listings_left_out"].values()
    assert not_ok(report) == []
