"""nsslab as a pytest plugin, registered through the `pytest11` entry point when nsslab is
installed:

    pytest nss_modules/clab/module.toml            # the lab's checks as items: clab::lookup, …
    pytest tests/ --nss-module build/libnss_x.so.2 --nss-target rootfs --html report.html
    pytest -n 2 --dist loadgroup …                 # pytest-xdist: one module's checks on one worker

Items honour the manifest's [expect] (an expected finding is an xfail), -k, -m nsslab_check,
--junitxml (status, target and cause as properties). nss_host and nss_lab (lab.plugin.fixtures)
serve the author's own tests. Modules are uninstalled and targets ended at the session's end,
also after Ctrl-C or SIGTERM; what a SIGKILLed run left is removed by the next run."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from lab import progress
from lab.checks import ORDER
from lab.errors import LabError
from lab.module import load
from lab.plugin.fixtures import _nsslab_pair, nss_host, nss_lab
from lab.plugin.items import CheckItem, ManifestFile, is_library, is_manifest
from lab.plugin.lab import LAB, Lab, Options
from lab.results import CheckResult, ModuleReport, worst
from lab.targets import expand, shown

__all__ = ["_nsslab_pair", "nss_host", "nss_lab"]  # fixtures: pytest finds them in this module
PAYLOADS = pytest.StashKey[list[dict]]()  # the check items' verdicts as this process saw them


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    group = parser.getgroup("nsslab", "nsslab: NSS module checks")
    group.addoption(
        "--nss-target",
        action="append",
        default=[],
        metavar="SPEC",
        help="where the module is installed (repeatable, a matrix): sandbox (default), rootfs, "
        "rootfs://debian11, vagrant://debian12, ssh://user@host, ansible:///inventory, container://PID",
    )
    group.addoption(
        "--nss-module",
        action="append",
        default=[],
        metavar="PATH",
        help="a module.toml, a directory holding one, or a libnss_<name>.so.2 (repeatable): its "
        "checks become items and nss_host/nss_lab are installed with it",
    )
    group.addoption("--nss-step-timeout", type=float, default=20.0, help="seconds before a step is a hang")
    group.addoption("--nss-keep", action="store_true", help="leave the VMs up afterwards")
    group.addoption(
        "--nss-ignore-expect",
        action="store_true",
        help="every check must pass; ignore the manifests' [expect]",
    )
    group.addoption(
        "--nss-report-dir",
        default="nsslab-report",
        metavar="DIR",
        help="evidence files and reproducer scripts (default ./nsslab-report)",
    )
    # pytest-html owns --html where it is installed; --nss-html always works
    names = ["--nss-html"] + ([] if importlib.util.find_spec("pytest_html") else ["--html"])
    group.addoption(*names, dest="nss_html", metavar="FILE", help="write the lab's HTML report to FILE")
    parser.addini("nss_modules", "modules for the lab (as --nss-module)", type="args", default=[])
    parser.addini("nss_targets", "targets for the lab (as --nss-target)", type="args", default=[])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nsslab_check: an nsslab check item (`-m 'not nsslab_check'`)")
    config.addinivalue_line("markers", "nss_module(name, ...): nss_host/nss_lab only with these modules")
    try:
        options = read_options(config)
    except LabError as e:
        raise pytest.UsageError(f"nsslab: {e}") from None
    # A process starts all of a module's planned checks at once only when it runs all of them:
    # alone, or as an xdist worker under --dist loadgroup (xdist sets a worker's dist to "no"
    # and says loadgroup apart). Under plain `-n N` a module's items are spread over workers.
    if hasattr(config, "workerinput"):
        prefetch = bool(getattr(config.option, "loadgroup", False))
    else:
        prefetch = config.getoption("dist", "no") == "no"
    config.stash[LAB] = Lab(options, prefetch)
    config.stash[PAYLOADS] = []
    config.pluginmanager.register(Recorder(config), "nsslab-recorder")
    for path in options.modules:  # --nss-module's checks are collected like a manifest named on the line
        if path not in explicit(config):
            config.args.append(path)


def read_options(config: pytest.Config) -> Options:
    root = config.rootpath
    specs = config.getoption("nss_target") or config.getini("nss_targets") or ["sandbox"]
    targets = list(dict.fromkeys(one for spec in specs for one in expand(spec)))
    named = [module_path(Path(p)) for p in config.getoption("nss_module")]
    named += [module_path(root / p) for p in config.getini("nss_modules")]
    if not named:  # the manifests on the command line serve the fixtures too
        named = [p for a in config.args for p in manifests_in(Path(a.split("::")[0]).absolute())]
    html = config.getoption("nss_html")
    return Options(
        targets=targets,
        modules=list(dict.fromkeys(named)),
        step_timeout=config.getoption("nss_step_timeout"),
        keep=config.getoption("nss_keep"),
        expect=not config.getoption("nss_ignore_expect"),
        report_dir=Path(config.getoption("nss_report_dir")),
        html=Path(html) if html else None,
    )


def module_path(path: Path) -> str:
    """PATH as the items and fixtures both name it (a directory is its module.toml)."""
    if path.is_dir():
        path = path / "module.toml"
    if not path.exists():
        raise LabError(f"--nss-module {path}: no such file")
    return os.path.realpath(path)


def manifests_in(path: Path) -> list[str]:
    if path.is_dir():
        return sorted(os.path.realpath(p) for p in path.rglob("module.toml") if is_manifest(p))
    if (path.suffix == ".toml" and is_manifest(path)) or is_library(path):
        return [os.path.realpath(path)]
    return []


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ManifestFile | None:
    if LAB not in parent.config.stash:
        return None
    named = os.path.realpath(file_path) in explicit(parent.config)
    if named and (file_path.suffix == ".toml" or is_library(file_path)):
        return ManifestFile.from_parent(parent, path=file_path)
    if file_path.name == "module.toml" and is_manifest(file_path):
        return ManifestFile.from_parent(parent, path=file_path)
    return None


def explicit(config: pytest.Config) -> set[str]:
    """The files named on the command line (and by --nss-module), as real paths."""
    return {os.path.realpath(a.split("::")[0]) for a in config.args}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "_nsslab_pair" not in metafunc.fixturenames:
        return
    options = metafunc.config.stash[LAB].options
    pairs = [(m, t) for m in options.modules for t in options.targets]
    marker = metafunc.definition.get_closest_marker("nss_module")
    if marker:
        pairs = [p for p in pairs if module_name(p[0]) in marker.args or p[0] in marker.args]
    several = len(options.targets) > 1
    ids = [module_name(m) + (f"@{shown(t)}" if several else "") for m, t in pairs]
    metafunc.parametrize(
        "_nsslab_pair", pairs or [None], ids=ids or ["no-module"], indirect=True, scope="session"
    )


@functools.cache
def module_name(path: str) -> str:
    try:
        return load(path).name
    except LabError:
        return Path(path).stem


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: what this process will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    lab = config.stash[LAB]
    for item in items:
        if isinstance(item, CheckItem):
            lab.planned.setdefault((item.module_path, item.spec), []).append(item.check_id)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "call" and isinstance(item, CheckItem) and item.payload:
        report.nsslab = item.payload  # pytest-xdist carries a report's extra attributes to the controller
    return report


class Recorder:
    """Keeps each check item's verdict as it is reported (in the xdist controller: every worker's)."""

    def __init__(self, config: pytest.Config) -> None:
        self.payloads = config.stash[PAYLOADS]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if payload := getattr(report, "nsslab", None):
            self.payloads.append(payload)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Long target steps (a VM booting, a root being built) as lines between pytest's own,
    unless -q: the items say each check themselves. xdist workers' output is not shown."""
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter and config.get_verbosity() >= 0 and not hasattr(config, "workerinput"):
        config.stash[LAB].shown.enter_context(progress.shown(progress.Steps(reporter.write_line)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    lab = config.stash[LAB]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    with lab.shown:  # the progress lines end after the teardown's ("destroying VM")
        errors = lab.close()
    for error in errors:
        message = f"nsslab: could not remove {error}"
        reporter.write_line(message, red=True) if reporter else print(message)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED if exitstatus == 0 else exitstatus
    if lab.options.html and not hasattr(config, "workerinput"):
        from lab.report.html import write_html

        write_html(reports(config.stash[PAYLOADS]), lab.options.html)


def reports(payloads: list[dict]) -> list[ModuleReport]:
    """The module reports, rebuilt from the items' verdicts (from every xdist worker)."""
    out: dict[tuple[str, str], ModuleReport] = {}
    for p in payloads:
        r = out.setdefault((p["module"], p["target"]), ModuleReport(p["module"], p["library"], p["target"]))
        r.error = r.error or p["error"]
        if not p["error"]:
            check = CheckResult.from_dict(p["check"])
            r.checks.append(check)
            r.seconds += check.seconds
            if p["expect"]:
                r.expect[check.id] = p["expect"]
    for r in out.values():
        r.checks.sort(key=lambda c: ORDER.index(c.id))
    return list(out.values())


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    done = reports(config.stash[PAYLOADS]) if PAYLOADS in config.stash else []
    if not done or hasattr(config, "workerinput"):
        return
    terminalreporter.section("nsslab")
    for r in done:
        counts = ", ".join(
            f"{n} {s}"
            for s in ("pass", "warn", "fail", "hang", "crash", "error", "skip")
            if (n := sum(c.status == s for c in r.checks))
        )
        verdict = "error" if r.error else worst(c.status for c in r.checks)
        wrong = r.unexpected() if config.stash[LAB].options.expect else []
        terminalreporter.write_line(
            f"{r.name} on {r.target}: {verdict} ({r.error or counts})"
            + (f"; not as [expect]ed: {'; '.join(wrong)}" if wrong else "")
        )
    html = config.stash[LAB].options.html
    if html:
        terminalreporter.write_line(f"HTML report: {html}")
