"""A manifest (or a bare libnss_*.so.2) as pytest items: one per check and target, named
`module::check` (`module::check[target]` when there are several targets)."""

from __future__ import annotations

import os
import tomllib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.checks import ORDER
from lab.errors import LabError
from lab.module import LIBRARY_NAME, load
from lab.plugin.lab import LAB
from lab.results import OK, CheckResult
from lab.targets import parse, shown


class NssLabWarning(UserWarning):
    """A check's warn: a deviation from the NSS contract that no real caller meets."""


def is_manifest(path: Path) -> bool:
    """A TOML file with a module's name and library (or one it extends)."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return "name" in data and ("library" in data or "extends" in data)


def is_library(path: Path) -> bool:
    return bool(LIBRARY_NAME.match(path.name))


class ManifestFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        try:
            module = load(self.path)
        except LabError as e:
            raise self.CollectError(str(e)) from None
        yield ModuleNode.from_parent(self, name=module.name)


class ModuleNode(pytest.Collector):
    def collect(self) -> Iterator[pytest.Item]:
        targets = self.config.stash[LAB].options.targets
        for spec in targets:
            for check_id in ORDER:
                name = check_id if len(targets) == 1 else f"{check_id}[{shown(spec)}]"
                yield CheckItem.from_parent(self, name=name, check_id=check_id, spec=spec)


class CheckFailed(Exception):
    """A check's verdict that fails the item; its text is the whole failure report."""


class CheckItem(pytest.Item):
    def __init__(self, *, check_id: str, spec: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check_id, self.spec = check_id, spec
        self.module_path = os.path.realpath(self.path)  # as the fixtures name it: one install
        self.add_marker(pytest.mark.nsslab_check)
        self.add_marker(pytest.mark.xdist_group(name=group_of(self.parent.name, spec)))

    def runtest(self) -> None:
        lab = self.config.stash[LAB]
        result, session = lab.result(self.module_path, self.spec, self.check_id, item=True)
        report = session.report
        want = report.expect.get(self.check_id) if lab.options.expect else None
        # pytest's own time for an item is its wait; the check's own time is a property
        self.user_properties += [
            ("status", result.status),
            ("target", report.target),
            ("seconds", result.seconds),
        ]
        if result.cause:
            self.user_properties.append(("cause", result.cause))
        outcome = judge(result, want)
        where = f"{report.name}::{self.check_id} on {report.target}"
        if outcome.kind == "fail":
            raise CheckFailed(failure_text(where, result, outcome.text, report.error, report.needs(result)))
        if outcome.kind == "skip":  # reported at the manifest, not at this line
            raise pytest.skip.Exception(outcome.text, _use_item_location=True)
        if outcome.kind == "xfail":
            pytest.xfail(outcome.text)
        if outcome.kind == "warn":
            warnings.warn_explicit(
                NssLabWarning(f"{where}: {outcome.text}"), NssLabWarning, str(self.path), 1
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, (CheckFailed, LabError, NssLabWarning)):  # (-W error: one line too)
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, f"{self.parent.name}::{self.name}"


def machine_wide(spec: str) -> bool:
    """A target whose machine a run changes for everybody (a VM the lab boots by name, a host
    it installs into in place): under xdist, one worker's."""
    parsed = parse(spec)
    return parsed.kind == "vagrant" or parsed.flag("disposable")


def group_of(module: str, spec: str) -> str:
    """The xdist_group of MODULE's items on SPEC: --dist loadgroup sends a group to one worker,
    one install. A machine the run changes for everybody (a VM, an in-place host) is one group
    for all its modules. (xdist reads the group after the node id's last "@": no "@" in it.)"""
    group = f"target:{shown(spec)}" if machine_wide(spec) else f"{module}:{shown(spec)}"
    return group.replace("@", "%40").replace("]", "%5D")


@dataclass(frozen=True)
class Outcome:
    kind: str  # pass, warn, skip, xfail, fail
    text: str = ""


def judge(result: CheckResult, want: str | None) -> Outcome:
    """What pytest makes of a verdict. With no [expect] entry a check must pass (a warn
    passes with an NssLabWarning, as `nsslab run` passes it: `-W error::lab.plugin.items.
    NssLabWarning` makes it fail; a skip skips). An expected non-OK status is an xfail; a
    status other than the expected one fails, as `nsslab run --expect` judges it."""
    status = result.status
    if want and status != want:
        return Outcome("fail", f"expected {want} (the manifest's [expect]), got {status}")
    if want and status not in OK:
        return Outcome("xfail", f"expected {want}: {result.reason}")
    if status == "skip":
        return Outcome("skip", result.reason)
    if status == "warn":
        return Outcome("warn", result.reason)
    if status == "pass":
        return Outcome("pass")
    return Outcome("fail", status)


def failure_text(
    where: str, result: CheckResult, verdict: str, module_error: str | None, setup: Sequence[str] = ()
) -> str:
    """The failure report: the verdict, its reason and claims (with what the reproducer needs
    in place, SETUP), the cause and its proof."""
    if module_error:
        return f"{where}: error: {module_error}"
    lines = [f"{where}: {verdict} ({result.seconds:.2f} s)", f"reason: {result.reason}", *result.claims()]
    lines += [f"  needs {line}" for line in setup]
    if result.evidence:
        lines.append(f"cause: {result.cause}: {result.evidence.get('explanation')}")
        frames = result.evidence.get("frames") or []
        lines += ["proving frames (innermost first):", *(f"  {f}" for f in frames)] if frames else []
        if result.evidence.get("file"):
            lines.append(f"evidence: {result.evidence['file']}")
    return "\n".join(lines)
