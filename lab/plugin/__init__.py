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
import json
import os
from pathlib import Path
from typing import Any

import pytest

from lab.errors import LabError
from lab.module import load
from lab.plugin.fixtures import _nsslab_pair, nss_host, nss_lab
from lab.plugin.items import CheckItem, ManifestFile, group_of, is_library, is_manifest, judge, machine_wide
from lab.plugin.lab import LAB, Lab, Options
from lab.report import writable
from lab.results import STATUSES, ModuleReport
from lab.targets import expand, shown

__all__ = ["_nsslab_pair", "nss_host", "nss_lab"]  # fixtures: pytest finds them in this module
WORKERS = pytest.StashKey[dict]()  # the xdist controller: what the workers' Labs sent back


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
    config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's, set on the lab's items")
    try:
        options = read_options(config)
        writable(options.html)
    except LabError as e:
        raise pytest.UsageError(f"nsslab: {e}") from None
    tx = config.getoption("tx", None)
    distributed = config.getoption("dist", "no") != "no" and bool(tx)  # as xdist decides it
    exclusive = [t for t in options.targets if machine_wide(t)]
    if distributed and exclusive and config.getoption("dist") != "loadgroup":
        raise pytest.UsageError(
            f"nsslab: {shown(exclusive[0])} is one machine every worker would change: "
            "use --dist loadgroup (its modules then run on one worker)"
        )
    # A process starts all of a module's planned checks at once only when it runs all of them:
    # alone, or as an xdist worker under --dist loadgroup (xdist sets a worker's dist to "no"
    # and says loadgroup apart). Under plain `-n N` a module's items are spread over workers.
    if hasattr(config, "workerinput"):
        prefetch = bool(getattr(config.option, "loadgroup", False))
    else:
        prefetch = not distributed
    config.stash[LAB] = Lab(options, prefetch)
    config.stash[WORKERS] = {"reports": [], "errors": []}
    if options.modules:  # named: the lab has work here (a worker may be sent SIGTERM itself)
        config.stash[LAB].arm()
    for path in options.modules:  # --nss-module's checks are collected like a manifest named on the line
        if path not in explicit(config):
            config.args.append(path)


def pytest_unconfigure(config: pytest.Config) -> None:
    if LAB in config.stash:
        config.stash[LAB].disarm()


def read_options(config: pytest.Config) -> Options:
    root = config.rootpath
    specs = config.getoption("nss_target") or config.getini("nss_targets") or ["sandbox"]
    targets = list(dict.fromkeys(one for spec in specs for one in expand(spec)))
    named = [module_path(Path(p)) for p in config.getoption("nss_module")]
    named += [module_path(root / p) for p in config.getini("nss_modules")]
    if not named:  # the manifests named on the command line serve the fixtures too
        named = [p for a in config.args if (p := named_manifest(Path(a.split("::")[0])))]
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


def named_manifest(path: Path) -> str | None:
    """A manifest or library named on the command line (or a directory holding module.toml).
    A directory of manifests gives items, not fixtures: name those with --nss-module."""
    if path.is_dir():
        path = path / "module.toml"
    if (path.suffix == ".toml" and is_manifest(path)) or (is_library(path) and path.exists()):
        return os.path.realpath(path)
    return None


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
    several = len(options.targets) > 1
    marker = metafunc.definition.get_closest_marker("nss_module")
    params = []
    for m, t in pairs:
        wanted = not marker or module_name(m) in marker.args or m in marker.args
        skip = () if wanted else (pytest.mark.skip(reason=f"not for {module_name(m)} (nss_module marker)"),)
        name = module_name(m) + (f"@{shown(t)}" if several else "")
        params.append(pytest.param((m, t), id=name, marks=skip))
    if not params:  # the fixture says why, when the test asks for it
        params = [pytest.param(None, id="no-module")]
    metafunc.parametrize("_nsslab_pair", params, indirect=True, scope="session")


@functools.cache
def module_name(path: str) -> str:
    try:
        return load(path).name
    except LabError:
        return Path(path).stem


def pytest_itemcollected(item: pytest.Item) -> None:
    """An author's test of a module goes where that module's check items go under --dist
    loadgroup: one worker, one install (set here: xdist reads the groups before trylast hooks)."""
    pair = getattr(getattr(item, "callspec", None), "params", {}).get("_nsslab_pair")
    if pair:
        item.add_marker(pytest.mark.xdist_group(name=group_of(module_name(pair[0]), pair[1])))


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: what this process will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    lab, seen, twice = config.stash[LAB], set(), []
    for item in items:
        if isinstance(item, CheckItem):
            key = (item.module_path, item.spec, item.check_id)
            if key in seen:  # one manifest reached twice (a symlink, --keep-duplicates): one item
                twice.append(item)
                continue
            seen.add(key)
            lab.planned.setdefault((item.module_path, item.spec), []).append(item.check_id)
    if twice:
        config.hook.pytest_deselected(items=twice)
        items[:] = [i for i in items if i not in twice]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Long target steps (a VM booting, a root being built) will be lines between pytest's
    own, unless -q (the items say each check themselves; xdist workers' output is not shown),
    from when the lab has work (Lab.arm)."""
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter and config.get_verbosity() >= 0 and not hasattr(config, "workerinput"):
        lab = config.stash[LAB]
        lab.say = reporter.write_line
        if lab.signals is not None:  # armed at configure (modules were named): the lines too
            lab.arm()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    lab = config.stash[LAB]
    with lab.shown:  # the progress lines end after the teardown's ("destroying VM")
        errors = lab.close()
    if hasattr(config, "workerinput"):  # the controller reports for the workers (their output is lost)
        plain = [r.as_plain() for r in lab.reports()]
        sent = {"reports": plain, "errors": errors}
        config.workeroutput["nsslab"] = json.loads(json.dumps(sent, default=str))  # plain data only
        return
    errors += config.stash[WORKERS]["errors"]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for error in errors:
        message = f"nsslab: could not remove {error}"
        reporter.write_line(message, red=True) if reporter else print(message)
    if errors and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if lab.options.html:
        from lab.report.html import write_html

        try:
            write_html(all_reports(config), lab.options.html)
        except LabError as e:  # one line, and the run fails: the report was asked for
            reporter.write_line(f"nsslab: {e}", red=True) if reporter else print(f"nsslab: {e}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's: a worker ended, with what its Lab sent
def pytest_testnodedown(node: Any, error: Any) -> None:
    sent = getattr(node, "workeroutput", {}).get("nsslab")
    if sent:
        workers = node.config.stash[WORKERS]
        workers["reports"] += sent["reports"]
        workers["errors"] += sent["errors"]


def all_reports(config: pytest.Config) -> list[ModuleReport]:
    own = config.stash[LAB].reports()
    theirs = [ModuleReport.from_plain(r) for r in config.stash[WORKERS]["reports"]]
    return sorted(own + theirs, key=lambda r: (r.target, r.name))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if LAB not in config.stash or hasattr(config, "workerinput"):
        return
    done = all_reports(config)
    if not done:
        return
    terminalreporter.section("nsslab")
    for r in done:
        counts = ", ".join(f"{n} {s}" for s in STATUSES if (n := sum(c.status == s for c in r.checks)))
        expect = r.expect if config.stash[LAB].options.expect else {}
        failed = [c for c in r.checks if judge(c, expect.get(c.id)).kind == "fail"]  # as the items
        said = "; ".join(
            f"{c.id} {c.status}" + (f" (expected {expect[c.id]})" if c.id in expect else "") for c in failed
        )
        line = f"{r.name} on {r.target}: {r.verdict} ({r.error or counts})"
        terminalreporter.write_line(line + (f"; failed: {said}" if said else ""))
    html = config.stash[LAB].options.html
    if html:
        terminalreporter.write_line(f"HTML report: {html}")
