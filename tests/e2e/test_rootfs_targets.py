"""`--target rootfs`: the glibc matrix without booting (Debian 11, 12, 13 roots on this
machine). The glibc-dependent verdicts the VMs showed must show here the same way, from each
root's own glibc, and the roots must be left as they were."""

from __future__ import annotations

import json
import os
import time

import pytest

from lab import boxes, roots
from lab.cli import main
from tests.conftest import MODULES
from tests.e2e.test_sandbox_hygiene import snapshot
from tests.sshhost import tree_digest

pytestmark = pytest.mark.sandbox
PLATFORMS = tuple(boxes.PLATFORMS)  # debian11, debian12, debian13


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """One `nsslab run --target rootfs` over clab, golab and execstacklab, as a user runs it."""
    built = {p: roots.build(p) for p in PLATFORMS}  # cached after the first time (about 45 s each)
    digests = {p: tree_digest(root) for p, root in built.items()}
    runs = {p: sorted(os.listdir(root / "run")) for p, root in built.items()}
    before = snapshot()
    out = tmp_path_factory.mktemp("rootfs") / "out.json"
    started = time.monotonic()
    rc = main(
        [
            "run",
            "--target",
            "rootfs",
            "--expect",
            "--json",
            str(out),
            *(str(MODULES / n) for n in ("clab", "golab", "execstacklab")),
        ]
    )
    seconds = time.monotonic() - started
    doc = json.loads(out.read_text())
    return rc, doc, seconds, before, digests, built, runs


def module(doc: dict, target: str, name: str) -> dict:
    (m,) = [m for m in doc["modules"] if m["target"] == target and m["name"] == name]
    return {c["id"]: c for c in m["checks"]} | {"_": m}


def test_every_root_runs_every_module_with_its_own_glibc(matrix):
    rc, doc, seconds, *_ = matrix
    assert {(m["target"], m["name"]) for m in doc["modules"]} == {
        (f"rootfs://{p}", n) for p in PLATFORMS for n in ("clab", "golab", "execstacklab")
    }
    for p in PLATFORMS:
        clab = module(doc, f"rootfs://{p}", "clab")
        assert clab["elf"]["details"]["target"]["glibc"] == boxes.PLATFORMS[p].glibc
        not_passed = {c: v["status"] for c, v in clab.items() if c != "_" and v["status"] != "pass"}
        # a C library; no sshd, PAM or systemd runs in a root filesystem
        assert not_passed == {"go-runtime": "skip", "hazards": "skip", "login-paths": "skip"}, (p, not_passed)
        assert "whole system" in clab["login-paths"]["reason"]
    assert rc == 1  # golab and execstacklab do not pass
    print(f"rootfs matrix: 9 verdicts in {seconds:.1f} s")  # the benchmark keeps the figure


def test_glibc_2_41_refuses_the_executable_stack_and_older_ones_load_it(matrix):
    _, doc, *_ = matrix
    refused = module(doc, "rootfs://debian13", "execstacklab")
    assert refused["elf"]["status"] == "fail" and refused["elf"]["details"]["blocker"]
    assert (
        "cannot enable executable stack" in refused["elf"]["details"]["dlopen"]
    )  # that root's own dlopen said so
    assert refused["load"]["status"] == "skip"
    for p in ("debian11", "debian12"):
        loaded = module(doc, f"rootfs://{p}", "execstacklab")
        assert loaded["load"]["status"] == "pass", loaded["load"]["reason"]
        assert not loaded["elf"]["details"].get("blocker")
        assert [f["kind"] for f in loaded["elf"]["details"]["findings"] if f["severity"] == "fail"] == [
            "execstack"
        ]


def test_the_glibc_floor_refuses_a_module_built_on_a_newer_distro(matrix):
    """golab, built here on Debian 12, needs GLIBC_2.34 (pthread in libc): Debian 11's 2.31
    refuses it, as a Debian 11 VM does."""
    _, doc, *_ = matrix
    old = module(doc, "rootfs://debian11", "golab")
    assert old["elf"]["status"] == "fail" and old["elf"]["details"]["blocker"]
    assert "not found" in old["elf"]["details"]["dlopen"] and "GLIBC_2.3" in old["elf"]["details"]["dlopen"]
    assert [f["kind"] for f in old["elf"]["details"]["findings"] if f["severity"] == "blocker"] == ["glibc"]
    for p in ("debian12", "debian13"):  # there it loads, and freezes its forked children
        new = module(doc, f"rootfs://{p}", "golab")
        assert new["load"]["status"] == "pass"
        assert new["fork-child"]["status"] == "hang" and new["fork-child"]["cause"] == "go-runtime-after-fork"
        assert new["tab-completion"]["status"] == "hang"


def test_the_roots_and_this_host_are_left_as_they_were(matrix):
    _, _, _, before, digests, built, runs = matrix
    assert snapshot() == before  # no mount, process or temp file of the run is left here
    for p, root in built.items():
        assert tree_digest(root) == digests[p], p
        assert sorted(os.listdir(root / "run")) == runs[p]  # the workdir was bound over a tmpfs there
