"""The fixtures a module author's own tests use:

    def test_pyama(nss_host):                  # testinfra's Host, the module installed
        assert nss_host.user("pyama").uid == 1001

    def test_fork(nss_lab):                     # the lab itself: a check, or the probe
        assert nss_lab.check("fork-child").status == "pass"
        assert nss_lab.call("getpwnam", "pyama")["value"]["uid"] == 1001

Both are parametrized over the modules (--nss-module, or the manifests named on the command
line) and the targets (--nss-target); `@pytest.mark.nss_module("clab")` narrows a test to one."""

from __future__ import annotations

from typing import Any

import pytest
import testinfra.host

from lab.checks.base import answers, judge, label
from lab.errors import LabError
from lab.module import Module
from lab.plugin.lab import LAB, Lab
from lab.results import CheckResult
from lab.session import ModuleSession
from lab.targets.target import Target


class NssLab:
    """One module installed on one target, from inside a test."""

    def __init__(self, lab: Lab, path: str, spec: str) -> None:
        self.lab, self.path, self.spec = lab, path, spec

    @property
    def session(self) -> ModuleSession:
        return self.lab.opened(self.path, self.spec)

    @property
    def target(self) -> Target:
        return self.session.target

    @property
    def module(self) -> Module:
        assert self.session.ctx
        return self.session.ctx.module

    @property
    def host(self) -> testinfra.host.Host:
        """testinfra's Host, its commands run in the target with the module installed, bounded."""
        return self.target.host

    def check(self, check_id: str) -> CheckResult:
        """A lab check's verdict (run once per session: a check item of the same module shares it)."""
        return self.lab.result(self.path, self.spec, check_id)[0]

    def step(self, id: str, calls: list[dict], **options: Any) -> dict:
        """A probe step (see lab.checks.base.Context.step: before, fork, repeat, timeout)."""
        assert self.session.ctx
        return self.session.ctx.step(id, calls, **options)

    def scenario(self, steps: list[dict]) -> list[dict]:
        """Runs probe steps in the target; one result per step (outcome, events, hang, crash)."""
        return self.target.scenario(steps)

    def call(self, fn: str, arg: Any = None, fork: bool = False, **extra: Any) -> dict:
        """One libc call through the module (getpwnam, getgrgid, getpwall, getgrouplist …), in a
        forked child with FORK. Its answer (ok, value, error, notfound); a hang or a crash of the
        call raises LabError with the lab's diagnosis."""
        call = {"fn": fn, **({"arg": arg} if arg is not None else {}), **extra}
        result = self.scenario([self.step(fn, [call], fork=fork)])[0]
        bad = judge(result, self.module.name, label(call))
        if bad:
            raise LabError(f"{bad.status}: {bad.reason}" + (f" (cause: {bad.cause})" if bad.cause else ""))
        got = answers(result)
        if not got:
            raise LabError(f"{label(call)}: the probe gave no answer")
        return got[-1]


@pytest.fixture(scope="session")
def _nsslab_pair(request: pytest.FixtureRequest) -> tuple[str, str] | None:
    return getattr(request, "param", None)


@pytest.fixture
def nss_lab(request: pytest.FixtureRequest, _nsslab_pair: tuple[str, str] | None) -> NssLab:
    if _nsslab_pair is None:
        pytest.fail(
            "nss_lab/nss_host need a module: --nss-module PATH, a manifest on the command line, "
            "or nss_modules in the ini file",
            pytrace=False,
        )
    lab = NssLab(request.config.stash[LAB], *_nsslab_pair)
    try:
        lab.session  # noqa: B018  (installs now, so a module that will not install errors here, once)
    except LabError as e:
        pytest.fail(f"{_nsslab_pair[0]} on {_nsslab_pair[1]}: {e}", pytrace=False)
    return lab


@pytest.fixture
def nss_host(nss_lab: NssLab) -> testinfra.host.Host:
    return nss_lab.host
