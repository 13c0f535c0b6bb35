"""The pytest plugin as a module author meets it: `pytest module.toml` in a fresh directory
(pytester, a real pytest process with the plugin loaded from its entry point), both ways: a
good module's items pass, a planted one's fail with its cause, and nothing is left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.conftest import MODULES
from tests.e2e.test_sandbox_hygiene import snapshot

pytestmark = pytest.mark.sandbox
BOUND = 300  # seconds for one pytest run in the subprocess


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, dict]]:
    """pytest ARGS in the pytester directory; the result and the JUnit testcases by name."""
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--junitxml={junit}", *args, timeout=BOUND
    )  # fmt: skip
    cases = {}
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            said = [child.tag for child in case if child.tag in ("failure", "skipped", "error")]
            outcome = said[0] if said else "passed"
            text = "".join(child.get("message", "") + (child.text or "") for child in case)
            cases[case.get("name")] = props | {"outcome": outcome, "text": text}
    return result, cases


def test_a_good_module_passes_as_items_named_by_check(pytester):
    before = snapshot()
    result, cases = run(pytester, str(MODULES / "clab" / "module.toml"), "-v")
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert "module.toml::clab::lookup PASSED" in result.stdout.str()
    assert len(cases) == 22
    failed = {n: c for n, c in cases.items() if c["outcome"] in ("failure", "error")}
    assert failed == {}
    # a skip is the check's own skip, said in JUnit: a Go-only check on C code, a whole-system one here
    skipped = {n for n, c in cases.items() if c["outcome"] == "skipped"}
    assert skipped == {"go-runtime", "hazards", "login-paths"}
    assert cases["lookup"]["status"] == "pass" and cases["lookup"]["target"] == "sandbox"
    assert snapshot() == before


def test_a_planted_module_fails_with_its_cause(pytester):
    result, cases = run(pytester, str(MODULES / "golab" / "module.toml"), "--nss-ignore-expect")
    assert result.ret == 1
    failed = {n for n, c in cases.items() if c["outcome"] == "failure"}
    assert failed == {"descriptors", "fork-child", "setxid", "tab-completion"}
    fork = cases["fork-child"]
    assert fork["status"] == "hang" and fork["cause"] == "go-runtime-after-fork"
    # the failure text carries the reason, the claims and the proof, not just a status
    assert "reason: " in fork["text"] and "runtime.futex" in fork["text"] and "reproduce: " in fork["text"]
    assert cases["setxid"]["status"] == "crash" and cases["setxid"]["cause"] == "setxid-abort"
    assert cases["descriptors"]["status"] == "crash" and cases["descriptors"]["cause"] == "abort-in-module"
    evidence = re.search(r"evidence: (\S+fork-child\.txt)", fork["text"])
    assert evidence and Path(pytester.path / evidence[1]).exists()  # the file it names was written
    assert cases["lookup"]["outcome"] == "passed"


def test_the_manifests_expect_turns_known_findings_into_xfails_and_a_change_into_a_failure(pytester):
    result, cases = run(pytester, str(MODULES / "golab" / "module.toml"), "-rx")
    assert result.ret == 0, result.stdout.str()[-3000:]
    outcomes = result.parseoutcomes()
    assert outcomes.get("xfailed") == 4 and "failed" not in outcomes
    assert "XFAIL" in result.stdout.str() and "expected hang" in result.stdout.str()
    # the same module with [expect] saying tab-completion passes: the hang is now a regression
    manifest = pytester.path / "golab" / "module.toml"
    manifest.parent.mkdir()
    manifest.write_text(f'extends = "{MODULES / "golab" / "module.toml"}"\nname = "golab"\n'
                        f'library = "{MODULES / "golab" / "libnss_golab.so.2"}"\n'
                        'build = "go build -buildmode=c-shared -o libnss_golab.so.2 ."\n'
                        '[expect]\ntab-completion = "pass"\n')  # fmt: skip
    result, cases = run(pytester, str(manifest), "-k", "tab-completion or lookup")
    assert result.ret == 1
    assert set(cases) == {"lookup", "tab-completion"}  # -k: the other 20 checks did not run
    assert "expected pass (the manifest's [expect]), got hang" in cases["tab-completion"]["text"]
    assert cases["lookup"]["outcome"] == "passed"


def test_author_tests_use_testinfra_and_the_lab_on_the_installed_module(pytester):
    pytester.makepyfile(
        test_mine="""
        import pytest

        def test_user(nss_host):
            assert nss_host.user("pyama").uid == 10301
            assert nss_host.group("pepabo").gid == 2000
            assert nss_host.run("id -un 10301").stdout.strip() == "pyama"
            assert nss_host.file("/etc/nsswitch.conf").contains("clab")

        def test_wrong_uid_fails(nss_host):
            assert nss_host.user("pyama").uid == 1

        def test_lab(nss_lab):
            assert nss_lab.call("getpwnam", "pyama")["value"]["home"] == "/home/pyama"
            assert nss_lab.call("getpwnam", "pyama", fork=True)["ok"]
            fork = nss_lab.check("fork-child")
            assert fork.status == "pass"
            with open("fork-seconds", "w") as f:
                f.write(str(fork.seconds))
            with open("workdirs", "a") as f:
                f.write(nss_lab.target.workdir + "\\n")

        @pytest.mark.nss_module("golab")
        def test_only_for_golab(nss_host):
            raise AssertionError("ran on a module it is not for")
        """
    )
    pytester.makepyfile(
        test_zlast="""
        def test_after_the_items(nss_lab):
            with open("workdirs", "a") as f:
                f.write(nss_lab.target.workdir + "\\n")
        """
    )
    before = snapshot()
    manifest = str(MODULES / "clab" / "module.toml")
    result, cases = run(pytester, "test_mine.py", manifest, "test_zlast.py", "-k", "not tab", "-v")
    assert result.ret == 1  # test_wrong_uid_fails, and nothing else
    failed = {n for n, c in cases.items() if c["outcome"] == "failure"}
    assert failed == {"test_wrong_uid_fails[clab]"}, result.stdout.str()[-3000:]
    assert "assert 10301 == 1" in cases["test_wrong_uid_fails[clab]"]["text"]
    assert cases["test_user[clab]"]["outcome"] == cases["fork-child"]["outcome"] == "passed"
    assert cases["test_only_for_golab[clab]"]["outcome"] == "skipped"  # the marker: not for clab
    # the check ran once: the author's nss_lab.check() and the item share its verdict
    assert cases["fork-child"]["seconds"] == (pytester.path / "fork-seconds").read_text()
    # one install served the author's tests in both files (pytest runs them before the items:
    # it groups tests by the session-scoped module parameter)
    workdirs = (pytester.path / "workdirs").read_text().split()
    assert len(workdirs) == 2 and workdirs[0] == workdirs[1]
    assert snapshot() == before


def test_a_module_that_does_not_build_is_one_line_per_item_and_one_build(pytester):
    broken = pytester.path / "broken"
    broken.mkdir()
    (broken / "module.toml").write_text(
        'name = "broken"\nlibrary = "libnss_broken.so.2"\n'
        'build = "echo tried >> builds.log; echo cc: no such file nss_broken.c >&2; exit 1"\n'
    )
    result, cases = run(pytester, str(broken / "module.toml"), "-n", "2")
    out = result.stdout.str()
    assert result.ret == 1 and len(cases) == 22
    assert {c["outcome"] for c in cases.values()} == {"failure"}
    assert all("build `echo tried" in c["text"] and "cc: no such file" in c["text"] for c in cases.values())
    assert "Traceback" not in out
    # one build per worker, not one per item (the session keeps the error; workers take turns)
    assert (broken / "builds.log").read_text().split() == ["tried", "tried"]


def test_plain_n_2_spreads_a_modules_checks_and_each_runs_once(pytester):
    result, cases = run(pytester, str(MODULES / "clab" / "module.toml"), "-n", "2", "-v")
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert len(cases) == 22 and not [n for n, c in cases.items() if c["outcome"] == "failure"]
    workers = {m[1] for line in result.stdout.lines if (m := re.match(r"\[(gw\d)\] .*::clab::", line))}
    assert workers == {"gw0", "gw1"}  # spread: each worker installed clab and ran its share


def test_several_targets_are_a_matrix(pytester):
    html = pytester.path / "report.html"
    result, cases = run(
        pytester, str(MODULES / "clab" / "module.toml"), "--nss-target", "sandbox",
        "--nss-target", "rootfs://debian11", "-k", "lookup or elf", f"--html={html}",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert set(cases) == {
        "lookup[sandbox]",
        "elf[sandbox]",
        "lookup[rootfs://debian11]",
        "elf[rootfs://debian11]",
    }
    assert {c["target"] for c in cases.values()} == {"sandbox", "rootfs://debian11"}
    matrix = re.search(r'<table class="matrix" data-module="clab"[^>]*>(.*?)</table>', html.read_text(), re.S)
    assert matrix, "no matrix for two targets"
    rows = re.findall(r'<tr data-target="([^"]+)">(.*?)</tr>', matrix[1], re.S)
    assert {target for target, _ in rows} == {"sandbox", "rootfs://debian11"}
    assert all('data-check="lookup" data-status="pass"' in row for _, row in rows)


def test_a_hang_seen_from_an_author_test_is_the_labs_diagnosis(pytester):
    pytester.makepyfile(
        test_go="""
        def test_forked_lookup(nss_lab):
            call = {"fn": "getpwnam", "arg": "pyama"}
            # Most forks of a process whose Go runtime has run freeze in the child, not every
            # one (2 of 30 single forks here went through): up to 5 forks, each its own worker.
            step = nss_lab.step("fork", [call], before=[call], fork=True, timeout=10)
            for _ in range(5):
                [result] = nss_lab.scenario([step])
                if result["outcome"] != "exited":
                    break
            assert result["outcome"] == "hang", {k: result.get(k) for k in ("outcome", "code", "events")}
            assert "hang" in result
        """
    )
    golab = str(MODULES / "golab")
    result, cases = run(pytester, "test_go.py", "--nss-module", golab, "-m", "not nsslab_check")
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert set(cases) == {"test_forked_lookup[golab]"}  # -m 'not nsslab_check' leaves the checks out


def test_xdist_loadgroup_keeps_each_modules_checks_on_one_worker(pytester):
    html = pytester.path / "report.html"
    result, _ = run(
        pytester,
        str(MODULES / "clab" / "module.toml"),
        str(MODULES / "golab" / "module.toml"),
        "-n", "2", "--dist", "loadgroup", "-v", f"--html={html}",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-3000:]
    workers: dict[str, set[str]] = {}
    for line in result.stdout.lines:
        if m := re.match(r"\[(gw\d)\] .*module\.toml::(\w+)::", line):
            workers.setdefault(m[2], set()).add(m[1])
    assert set(workers) == {"clab", "golab"}
    assert all(len(w) == 1 for w in workers.values()), workers
    assert result.parseoutcomes().get("xfailed") == 4
    # the controller's report holds both workers' verdicts
    page = html.read_text()
    found = re.finditer(r'<section [^>]*data-module="(\w+)"(.*?)</section>', page, re.S)
    sections = {m[1]: m[2] for m in found}
    assert set(sections) == {"clab", "golab"}
    assert 'data-check="fork-child" data-status="hang"' in sections["golab"]
    assert 'data-check="fork-child" data-status="pass"' in sections["clab"]
    assert "golab on sandbox: crash" in result.stdout.str() and "clab on sandbox: pass" in result.stdout.str()


def test_bad_input_is_one_line(pytester):
    bad = pytester.path / "bad" / "module.toml"
    bad.parent.mkdir()
    bad.write_text('name = "bad"\nlibrary = "libnss_bad.so.2"\n[expect]\nlookup = "maybe"\n')
    result, _ = run(pytester, str(bad))
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 2 and "[expect] statuses must be one of" in out and "Traceback" not in out
    result, _ = run(pytester, "--nss-target", "nowhere://x")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 4 and "nsslab: unknown target 'nowhere://x'" in out and "Traceback" not in out


def test_sigterm_mid_run_leaves_nothing(pytester, tmp_path):
    before = snapshot()
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(MODULES / "slowlab" / "module.toml")],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env=dict(os.environ, NSSLAB_STATE_DIR=str(state)),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(state.glob("run-*.json")):
            time.sleep(0.2)  # until the sandbox's namespace is made
        assert list(state.glob("run-*.json")), "the run never made its sandbox"
        time.sleep(2)  # checks under way
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 2, out[-2000:]  # pytest's "interrupted"
    assert "Traceback" not in out
    assert snapshot() == before
    assert list(state.glob("run-*.json")) == []  # everything it made was undone


def test_a_bare_library_is_collected_and_a_warn_fails_under_w_error(pytester):
    library = str(MODULES / "golab" / "libnss_golab.so.2")
    result, cases = run(pytester, library, "-k", "elf or load")
    assert result.ret == 0 and set(cases) == {"elf", "load"}
    assert cases["elf"]["status"] == "warn" and cases["elf"]["outcome"] == "passed"  # a warn passes
    assert "NssLabWarning: golab::elf on sandbox: STATIC_TLS" in result.stdout.str()
    result, cases = run(pytester, library, "-k", "elf or load", "-W", "error::lab.plugin.items.NssLabWarning")
    assert result.ret == 1 and cases["elf"]["outcome"] == "failure" and cases["load"]["outcome"] == "passed"
    text = cases["elf"]["text"]
    assert text.startswith("golab::elf on sandbox: STATIC_TLS") and "Traceback" not in text
