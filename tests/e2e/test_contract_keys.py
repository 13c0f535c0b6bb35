"""result-contract and keys on the planted modules (each fails with its own cause, read from
details) and on the good ones (they pass)."""

from __future__ import annotations

import pytest

from tests.conftest import checks

pytestmark = pytest.mark.sandbox


def test_a_static_pw_dir_that_another_thread_rewrites_fails(lab_run):
    c = checks(lab_run("staticptrlab"))["result-contract"]
    assert c.status == "fail" and c.details["causes"] == ["static-pointer"]
    changed = [o["changed"]["home"] for o in c.details["overwritten"] if o["changed"]]
    assert changed and all(x["before"] != x["after"] for x in changed)
    home = next(a["fields"]["home"] for a in c.details["answers"] if a["status"] == "SUCCESS")
    assert "libnss_staticptrlab.so.2" in home["outside"]["region"] and home["outside"]["writable"]


def test_a_null_gecos_warns(lab_run):
    c = checks(lab_run("nullfieldlab"))["result-contract"]
    assert c.status == "warn" and c.details["causes"] == ["null-field"]  # getent prints it empty
    nulls = [a["query"] for a in c.details["answers"] if a.get("fields", {}).get("gecos", {}).get("null")]
    assert nulls == ["getpwnam_r('hanako')", "getpwuid_r(10303)"]


def test_a_module_that_assumes_a_zeroed_buffer_fails_and_glibc_shows_it(lab_run):
    c = checks(lab_run("dirtybuflab"))["result-contract"]
    assert c.status == "fail" and c.details["causes"] == ["dirty-buffer"]
    wrong = [r for r in c.details["reused_buffer"] if not r.get("same")]
    assert {r["query"] for r in wrong} == {"getpwnam_r('hanako')", "getpwuid_r(10303)"}
    assert all(r["want"]["gecos"] == "" and r["got"]["gecos"].endswith("/home/hanako") for r in wrong)
    assert "glibc's `getent -s dirtybuflab passwd" in c.reason  # the real caller's reused buffer


def test_a_case_insensitive_match_fails(lab_run):
    c = checks(lab_run("casefoldlab"))["keys"]
    assert c.status == "fail"
    case = {r["key"]: r for r in c.details["keys"] if r["kind"] == "case"}
    assert case["PYAMA"]["status"] == "SUCCESS" and case["PYAMA"]["name"] == "pyama"
    assert all(r["status"] == "NOTFOUND" for r in c.details["keys"] if r["kind"] == "wildcard")


def test_a_wildcard_retried_for_seconds_fails_on_its_latency(lab_run):
    c = checks(lab_run("wildcardlab"))["keys"]
    assert c.status == "fail"
    star = next(r for r in c.details["keys"] if r.get("key") == "*")
    assert star["status"] == "NOTFOUND" and star["seconds"] >= 2.9 and c.details["hit_ms"] < 100
    # bounded: the budget cut the rest (3 s a pattern key), nothing waited them out
    assert c.details["cut_short"] and "'a' * 1048576" not in {k["label"] for k in c.details["keys"]}


def test_a_long_name_copied_onto_the_stack_crashes_and_names_the_key(lab_run):
    c = checks(lab_run("longkeylab"))["keys"]
    assert c.status == "crash"
    crashed = {x["key"] for x in c.details["crashes"]}
    assert "getpwnam_r('a' * 65536)" in crashed
    asked = {r["label"]: r["status"] for r in c.details["keys"] if r["db"] == "passwd"}
    # after the crash the longer key is not asked, the shorter one is: the crash's evidence
    # (a gdb re-run) does not use up the keys' budget
    assert asked["'a' * 256"] == "NOTFOUND" and asked["'a' * 1048576"] == "not asked"


@pytest.mark.parametrize("name", ["clab", "slowlab"])
def test_the_good_modules_pass_both(lab_run, name):
    c = checks(lab_run(name))
    assert c["result-contract"].status == "pass", c["result-contract"].reason
    assert c["keys"].status == "pass", c["keys"].reason
    if name == "slowlab":  # 300 ms a call: its misses cost what its hits do, no latency finding
        assert c["keys"].details["hit_ms"] > 250
