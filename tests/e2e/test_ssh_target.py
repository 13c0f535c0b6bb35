"""`--target ssh://…` against a host this test makes (a Debian 11 root in its own namespaces,
its own sshd on 127.0.0.1), and `container://PID` against the same kind of machine: the
checks run on that machine's glibc, and the machine is left byte-identical (its /etc and lib
dirs, its mount table, its process table)."""

from __future__ import annotations

import json
import re

import pytest

from lab import roots
from lab.cli import main
from tests.conftest import MODULES
from tests.sshhost import SshHost, settled

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    h = SshHost(roots.build("debian11"), tmp_path_factory.mktemp("sshhost")).start()
    yield h
    h.stop()


def state(h: SshHost) -> tuple:
    return h.tree_digest(), h.processes(), h.mounts()


def run(tmp_path, *args: str) -> tuple[int, dict]:
    out = tmp_path / "out.json"
    rc = main(["run", "--json", str(out), *args])
    return rc, json.loads(out.read_text())


def by(doc: dict, target: str, name: str) -> dict:
    (m,) = [m for m in doc["modules"] if m["target"] == target and m["name"] == name]
    return m | {"checks": {c["id"]: c for c in m["checks"]}}


def test_an_ssh_host_runs_the_checks_on_its_own_glibc_and_is_left_untouched(host, tmp_path):
    before = state(host)
    unreachable = "ssh://root@127.0.0.1:1?BatchMode=yes"  # nothing listens there
    rc, doc = run(
        tmp_path,
        "--target",
        host.spec,
        "--target",
        unreachable,
        str(MODULES / "clab"),
        str(MODULES / "golab"),
    )
    assert rc == 1
    name = f"ssh://root@127.0.0.1:{host.port}"
    clab = by(doc, name, "clab")
    assert clab["error"] is None
    assert (
        clab["checks"]["elf"]["details"]["target"]["glibc"] == "2.31"
    )  # the host's, not this machine's 2.36
    not_passed = {c: v["status"] for c, v in clab["checks"].items() if v["status"] != "pass"}
    assert not_passed == {"go-runtime": "skip", "hazards": "skip", "login-paths": "skip"}, not_passed
    assert "disposable" in clab["checks"]["login-paths"]["reason"]  # it would write authorized_keys there
    golab = by(doc, name, "golab")  # built on Debian 12: the host's glibc 2.31 refuses it
    assert (
        golab["checks"]["elf"]["details"]["blocker"]
        and "GLIBC_2.3" in golab["checks"]["elf"]["details"]["dlopen"]
    )
    # the unreachable host is its own error, one line per module; the other host went on
    for m in ("clab", "golab"):
        error = by(doc, "ssh://root@127.0.0.1:1", m)["error"]
        assert error and "Connection refused" in error and "\n" not in error
    assert settled(lambda: state(host), before) == before


def test_a_module_that_freezes_its_caller_is_diagnosed_over_ssh_and_leaves_nothing_running(host, tmp_path):
    """hangparent (C, so Debian 11 loads it) freezes a step; the hang and its evidence come
    over ssh, and the frozen process is gone from the host afterwards."""
    before = state(host)
    _, doc = run(
        tmp_path, "--target", host.spec, "--check", "load", "--check", "lookup", str(MODULES / "hangparent")
    )
    m = by(doc, f"ssh://root@127.0.0.1:{host.port}", "hangparent")
    assert m["error"] is None
    assert "hang" in {c["status"] for c in m["checks"].values()}, {
        c: v["status"] for c, v in m["checks"].items()
    }
    assert settled(lambda: state(host), before) == before


def test_a_container_is_entered_by_pid_and_left_untouched(host, tmp_path):
    before = state(host)
    rc, doc = run(tmp_path, "--target", f"container://{host.pid1()}", str(MODULES / "clab"))
    clab = by(doc, f"container://{host.pid1()}", "clab")
    assert rc == 0 and clab["verdict"] == "pass"
    assert clab["checks"]["elf"]["details"]["target"]["glibc"] == "2.31"
    assert settled(lambda: state(host), before) == before


def test_an_unknown_pid_is_one_line(tmp_path):
    rc, doc = run(tmp_path, "--target", "container://999999999", str(MODULES / "clab"))
    assert rc == 1 and "no process 999999999 to enter" in doc["modules"][0]["error"]


def test_the_plugin_spreads_targets_over_xdist_workers_and_the_host_is_left_untouched(host, pytester):
    """How a run outgrows one machine: `--dist loadgroup`, one worker per module and target,
    an ssh host one of them; no scheduler of the lab's own."""
    from xml.etree import ElementTree as ET

    before = state(host)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        str(MODULES / "clab" / "module.toml"), "--nss-target", "sandbox", "--nss-target", host.spec,
        "-n", "2", "--dist", "loadgroup", "-v", "-k", "elf or lookup or fork-child",
        f"--junitxml={junit}", "-p", "no:cacheprovider", timeout=300,
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-3000:]
    where = {}
    for case in ET.parse(junit).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["status"] == "pass", case.get("name")
        where.setdefault(props["target"], set()).add(case.get("name").split("[")[0])
    ssh = f"ssh://root@127.0.0.1:{host.port}"
    assert where == {"sandbox": {"elf", "lookup", "fork-child"}, ssh: {"elf", "lookup", "fork-child"}}
    workers: dict[str, set[str]] = {}
    for line in result.stdout.lines:
        if m := re.match(r"\[(gw\d)\] .*::clab::[\w-]+\[([^\]]+)\]", line):
            workers.setdefault(m[2], set()).add(m[1])
    assert set(workers) == {"sandbox", ssh} and all(len(w) == 1 for w in workers.values()), workers
    assert settled(lambda: state(host), before) == before
