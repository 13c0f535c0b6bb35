from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from lab.proc import trap, untrap
from lab.runner import ModuleReport, run_module

pytest_plugins = ["pytester"]  # tests/e2e/test_plugin.py runs the plugin as an author would
SIGNALS = pytest.StashKey[dict]()
ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / "nss_modules"
# the machine's caches (root filesystems, boxes, .debs, Go's build cache), as seen before
# pytester points HOME at its own directory
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


@pytest.fixture(autouse=True)
def _machine_caches_for_pytester(request, monkeypatch):
    """A pytest run that pytester starts uses this machine's caches: with HOME in its tmp dir
    it would debootstrap its own root filesystems (45 s each) and rebuild Go from nothing."""
    if "pytester" in request.fixturenames:
        monkeypatch.setenv("XDG_CACHE_HOME", str(CACHE))
        monkeypatch.setenv("NSSLAB_CACHE", os.environ.get("NSSLAB_CACHE", str(CACHE / "nsslab")))


def pytest_configure(config):
    """SIGTERM to the suite (a CI runner cancelling the job) unwinds like Ctrl-C, so the run's
    finally blocks remove the sandbox a test holds (killed outright, its workdir stays)."""
    config.stash[SIGNALS] = trap()


def pytest_unconfigure(config):
    untrap(config.stash.get(SIGNALS, {}))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="the sandbox mounts in a private namespace: run as root")
        for item in items:
            if "sandbox" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def lab_run():
    """Runs a module once per session; tests share the (expensive) verdicts."""
    cache: dict[str, ModuleReport] = {}

    def run(name: str) -> ModuleReport:
        if name not in cache:
            cache[name] = run_module(MODULES / name)
        return cache[name]

    return run


def checks(report: ModuleReport) -> dict:
    return {c.id: c for c in report.checks}


def existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def outside_the_lab(report: ModuleReport, command: str) -> subprocess.CompletedProcess:
    """COMMAND run as a maintainer would after following the report's set-up lines, without
    the lab: each "TARGET from SOURCE" file copied into place, the nsswitch.conf lines written,
    the library found by its soname. In a private mount namespace, each directory written to
    under an overlay, so the host keeps its own."""
    files = [re.match(r"(/\S+) from (\S+?)(?:, mode (\d+))?$", line) for line in report.setup]
    files = [m for m in files if m]
    library = re.match(r"the library as \S+ \(from (\S+)\)$", report.setup[0])
    prefix = "/etc/nsswitch.conf: "
    switch = next((line.removeprefix(prefix) for line in report.setup if line.startswith(prefix)), "")
    assert files and library, report.setup
    with tempfile.TemporaryDirectory(prefix="nsslab-repro-") as scratch:
        # the overlays' layers on a tmpfs of the namespace's own: gone with it, and never an
        # overlayfs /tmp (which the kernel refuses as an upper layer)
        script = ["set -e", "mount --make-rprivate /", f"mount -t tmpfs nsslab-repro {scratch}"]
        bases = sorted({str(existing(Path(m[1]).parent)) for m in files} | ({"/etc"} if switch else set()))
        for i, base in enumerate(bases):  # e.g. /etc, /var/lib: the host's files, writes kept apart
            up, work = f"{scratch}/u{i}", f"{scratch}/w{i}"
            script.append(f"mkdir {up} {work}")
            script.append(
                f"mount -t overlay nsslab-repro -o lowerdir={base},upperdir={up},workdir={work} {base}"
            )
        for m in files:
            target, source = shlex.quote(m[1]), shlex.quote(m[2])
            if Path(m[2]).is_dir():  # a directory of drop-ins (/run/userdb), symlinks and all
                script.append(f"mkdir -p {target} && cp -a {source}/. {target}/")
                continue
            script.append(f"mkdir -p {shlex.quote(str(Path(m[1]).parent))}")
            script.append(f"install -m {m[3] or '644'} {source} {target}")
        for entry in filter(None, switch.split("; ")):  # "passwd: files golab"
            db = entry.split(":")[0]
            script.append(
                f"sed -i '/^{db}:/d' /etc/nsswitch.conf && echo {shlex.quote(entry)} >> /etc/nsswitch.conf"
            )
        # for every command of COMMAND, and each runs whatever the one before it answered
        script += [f"export LD_LIBRARY_PATH={shlex.quote(str(Path(library[1]).parent))}", "set +e", command]
        proc = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", "\n".join(script)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the namespace, its mounts and the command with it
            out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
