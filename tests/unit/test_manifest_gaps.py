"""What the manifest leaves out is the manifest's gap (a warn with the line to add), what
it declares and the library lacks stays a fail; the checks that need a listing leave it
out where the module offers none. Symbol sets only: nothing is built or loaded."""

from __future__ import annotations

import ast
import shlex
from types import SimpleNamespace

from lab.checks.base import Context
from lab.checks.fork_child import reproducer
from lab.checks.static import entry_point_findings
from lab.elf import ENTRY_POINTS, ENUMERATION

CLAB = {e for db in ("passwd", "group", "shadow", "initgroups") for e in ENTRY_POINTS[db]}
NOENUM = CLAB - {e for trio in ENUMERATION.values() for e in trio}
ALL = ["passwd", "group", "shadow", "initgroups"]


def by_severity(found) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in found:
        out.setdefault(f.severity, []).append(f)
    return out


def test_a_database_the_manifest_leaves_out_is_a_warn_with_the_line_to_add():
    found = by_severity(entry_point_findings(CLAB, "x", ["passwd", "group", "initgroups"], True))
    assert "fail" not in found
    [gap] = found["warn"]
    assert gap.kind == "unlisted-database"
    assert gap.line == 'databases = ["passwd", "group", "shadow", "initgroups"]'


def test_a_database_the_manifest_lists_without_its_lookups_stays_a_fail():
    found = by_severity(entry_point_findings(CLAB - {"getspnam_r"}, "x", ALL, True))
    [fail] = found["fail"]
    assert fail.kind == "entry-points" and "_nss_x_getspnam_r" in fail.text
    assert "warn" not in found


def test_no_listing_at_all_without_enumerable_false_is_a_warn_not_a_fail():
    found = by_severity(entry_point_findings(NOENUM, "x", ALL, True))
    assert "fail" not in found
    [gap] = found["warn"]
    assert (gap.kind, gap.line) == ("no-listing", "enumerable = false")


def test_no_listing_with_enumerable_false_is_no_finding():
    found = by_severity(entry_point_findings(NOENUM, "x", ALL, False))
    assert "fail" not in found and "warn" not in found


def test_a_listing_with_enumerable_false_is_only_noted():
    found = by_severity(entry_point_findings(CLAB, "x", ALL, False))
    assert "fail" not in found and "warn" not in found
    assert any("enumerable = false" in f.text for f in found["info"])


def test_a_partial_trio_stays_a_fail_and_one_database_without_listing_is_only_noted():
    partial = by_severity(entry_point_findings(CLAB - {"getpwent_r"}, "x", ALL, True))
    assert [f.kind for f in partial["fail"]] == ["entry-points"]
    no_shadow_listing = CLAB - set(ENUMERATION["shadow"])
    found = by_severity(entry_point_findings(no_shadow_listing, "x", ALL, True))
    assert "fail" not in found and "warn" not in found


def ctx(present: set[str], databases: list[str], enumerable: bool = True) -> Context:
    module = SimpleNamespace(name="x", databases=databases, enumerable=enumerable)
    elf = SimpleNamespace(entry_points=lambda service: present)
    return Context(target=None, module=module, elf=elf)  # type: ignore[arg-type]


def test_listings_say_which_listing_the_checks_may_count_on():
    assert ctx(CLAB, ALL).listings() == {"passwd": None, "group": None, "shadow": None}
    left = ctx(CLAB, ALL, enumerable=False).listings()
    assert set(left) == {"passwd", "group", "shadow"} and all(left.values())
    missing = ctx(NOENUM, ["passwd", "group"]).listings()
    assert all(missing.values()) and "setpwent" in missing["passwd"]
    assert ctx(CLAB, ["passwd"]).listings() == {"passwd": None}  # only the manifest's databases


def test_fork_reproducer_is_a_python_program():
    command = reproducer(
        {"fn": "getpwnam", "arg": "pyama"}, {"fn": "getgrouplist", "arg": "pyama", "gid": 2000}, True
    )
    argv = shlex.split(command)
    assert argv[:2] == ["python3", "-c"]
    ast.parse(argv[2])
    assert 'pwd.getpwnam("pyama")' in argv[2] and 'os.getgrouplist("pyama", 2000)' in argv[2]
    fresh = shlex.split(reproducer({"fn": "getpwnam", "arg": "pyama"}, {"fn": "getpwall"}, False))[2]
    ast.parse(fresh)
    assert "getpwnam" not in fresh  # a fresh parent never used the module
