"""nsslab: run the lab on NSS modules.

    nsslab run [MODULE ...] [--target SPEC ...] [--json FILE] [--junit FILE] [--html FILE]
               [--check ID ...] [--report-dir DIR] [--quiet]
    nsslab init LIB [--output PATH] [--file TARGET=SOURCE ...]
    nsslab inspect LIB [--json]
    nsslab box build [PLATFORM ...]
    nsslab checks
    nsslab clean
    nsslab rootfs build [PLATFORM ...]
    nsslab reproduce stns

MODULE is a module.toml, a directory holding one, or a bare libnss_<name>.so.2.
With no MODULE, the built-in demo runs: golab (Go, freezes) and clab (C, passes), judged
against their manifests' [expect] tables (exit 0 when golab froze and clab passed).
Every hang or crash is diagnosed (lab.forensics): its cause is in the table, in the JSON
("cause", "evidence") and in an evidence file under the report directory.

Progress goes to stderr, the tables to stdout: on a terminal a live line per module and
target (the checks running and for how long, a VM booting, a root being built), gone when
the run ends; elsewhere (a CI log) a plain line per check finished and per long step, and
`still ...` every 30 s of a step that lasts; with --quiet none.
"""

from __future__ import annotations

import argparse
import inspect
import signal
import sys
from pathlib import Path

from lab import progress
from lab.boxes import PLATFORMS
from lab.checks import ORDER, REGISTRY
from lab.errors import LabError
from lab.forensics import CAUSES, OBSERVED
from lab.proc import Terminated, trap
from lab.report import writable
from lab.report.evidence import write_evidence
from lab.report.html import write_html
from lab.report.machine import write_json, write_junit
from lab.report.table import table
from lab.runner import ModuleReport, run_matrix
from lab.targets import close_all, expand, parallel, state

BUILTIN = Path(__file__).resolve().parent.parent / "nss_modules"
DEMO = ["golab", "clab"]


def main(argv: list[str] | None = None) -> int:
    trap()
    try:
        return command(argv)
    except KeyboardInterrupt as e:  # the runner's finally blocks have already cleaned up
        print("nsslab: interrupted", file=sys.stderr)
        return 128 + (e.args[0] if isinstance(e, Terminated) else signal.SIGINT)
    except LabError as e:
        print(f"nsslab: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `nsslab checks | head`
        sys.stderr.close()
        return 0


def command(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="nsslab", description="A test lab for glibc NSS modules.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run the checks on modules (default: the built-in demo)",
        description="Runs the checks and prints a table per module on stdout. Progress goes to stderr:"
        " a live line per module and target on a terminal, a plain line per check finished and per long"
        " step elsewhere (CI logs), none with --quiet.",
    )
    run.add_argument("modules", nargs="*", help="module.toml, a directory with one, or a libnss_*.so.2")
    run.add_argument(
        "--target",
        action="append",
        help="where to run (repeatable): sandbox (default); rootfs (Debian 11/12/13 roots, or rootfs://debian11,"
        " rootfs:///DIR, rootfs:///IMAGE.tar); vagrant (a VM per platform, or vagrant://debian12);"
        " ssh://user@host[:port][?disposable=1]; ssh-config:///FILE; ansible:///INVENTORY[?group=G];"
        " container://PID",
    )
    run.add_argument("--keep", action="store_true", help="leave the VMs up afterwards (vagrant targets)")
    run.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress and no per-module tables: only the summary lines on stdout, errors on stderr,"
        " and the exit code (--json, --junit and the evidence files are written all the same)",
    )
    run.add_argument("--json", type=Path, help="write the verdicts as JSON to this file")
    run.add_argument("--junit", type=Path, help="write the verdicts as JUnit XML to this file")
    run.add_argument("--html", type=Path, help="write a self-contained HTML report to this file")
    run.add_argument("--check", action="append", choices=ORDER, help="run only this check (repeatable)")
    run.add_argument(
        "--expect",
        action="store_true",
        help="judge against each manifest's [expect] table instead of requiring a pass "
        "(implied for the built-in demo)",
    )
    run.add_argument(
        "--step-timeout",
        type=float,
        default=20.0,
        help="seconds a step may take before it counts as a hang (default 20)",
    )
    run.add_argument(
        "--report-dir",
        type=Path,
        default=Path("nsslab-report"),
        help="where the evidence file of each hang or crash goes (default ./nsslab-report)",
    )
    inspect_cmd = sub.add_parser(
        "inspect", help="read a library's ELF headers (no loading): what glibc here and newer ones make of it"
    )
    inspect_cmd.add_argument("library", type=Path, help="a libnss_<name>.so.2 (any ELF file)")
    inspect_cmd.add_argument("--json", action="store_true", help="print the facts and findings as JSON")
    box = sub.add_parser("box", help="Vagrant boxes built offline from Debian packages")
    box.add_argument("action", choices=["build"])
    box.add_argument("platforms", nargs="*", help=f"default: debian12; known: {', '.join(PLATFORMS)}")
    box.add_argument("--force", action="store_true", help="rebuild even when a cached box exists")
    sub.add_parser("checks", help="list the checks, the bugs they catch and the causes the lab names")
    sub.add_parser(
        "clean", help="remove what killed runs left behind (namespaces, workdirs, VMs, ssh masters)"
    )
    roots_cmd = sub.add_parser("rootfs", help="the Debian root filesystems the rootfs targets enter")
    roots_cmd.add_argument("action", choices=["build"])
    roots_cmd.add_argument("platforms", nargs="*", help=f"default: all; known: {', '.join(PLATFORMS)}")
    roots_cmd.add_argument("--force", action="store_true", help="rebuild even when a built root exists")
    init = sub.add_parser("init", help="write a first module.toml for a library from what it answers")
    init.add_argument("library", type=Path, help="a libnss_<name>.so.2")
    init.add_argument(
        "--output",
        type=Path,
        help="where to write (default: module.toml next to the library; in the current directory"
        " for one under /usr or /lib)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    init.add_argument("--target", default="sandbox", help="where to ask the module (default: sandbox)")
    init.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="TARGET=SOURCE",
        help="a file the module reads, installed while it is asked and written into [files] (repeatable)",
    )
    init.add_argument("--step-timeout", type=float, default=20.0, help="bound per listing (default 20)")
    reproduce = sub.add_parser("reproduce", help="replay a known incident step by step")
    reproduce.add_argument("incident", choices=["stns"], help="stns: the libnss_stns bash freeze")
    reproduce.add_argument("--step-timeout", type=float, default=20.0, help="bound per step (default 20)")
    args = parser.parse_args(argv)

    if args.command == "checks":
        for check_id in ORDER:
            doc = inspect.getdoc(REGISTRY[check_id]) or ""
            print(f"{check_id}\n" + "\n".join(f"    {line}" for line in doc.splitlines()) + "\n")
        print("causes named for a hang or crash:")
        for cause, meaning in CAUSES.items():
            print(f"    {cause:<22} {meaning}")
        print("causes seen happen (a signal and its sender, a process left running, a child taken):")
        for cause, meaning in OBSERVED.items():
            print(f"    {cause:<22} {meaning}")
        return 0
    if args.command == "clean":
        said = state.sweep()
        for line in said:
            print(f"removed {line}")
        print(f"nothing left by killed runs{' any more' if said else ''}")
        return 0
    if args.command == "rootfs":
        from lab.roots import main as build_roots

        with progress.shown():
            return build_roots(args.platforms, args.force)
    if args.command == "box":
        from lab.boxes import main as build_boxes

        with progress.shown():
            return build_boxes(args.platforms, args.force)
    if args.command == "inspect":
        from lab.report.inspect import inspect_library

        return inspect_library(args.library, args.json)
    if args.command == "init":
        from lab.init import init_module

        return init_module(args.library, args.output, args.force, args.target, args.file, args.step_timeout)
    if args.command == "reproduce":
        from lab.reproduce import reproduce_stns

        return reproduce_stns(BUILTIN / "golab", args.step_timeout)

    modules = args.modules or [str(BUILTIN / name) for name in DEMO]
    expect_mode = args.expect or not args.modules
    writable(args.json, args.junit, args.html)
    for line in state.sweep():  # a killed run's leftovers must not hold what this run needs
        print(f"nsslab: removed what a killed run left: {line}", file=sys.stderr)
    targets = [one for spec in args.target or ["sandbox"] for one in expand(spec)]
    slots = parallel(targets)
    if len(targets) > 1 and not args.quiet:
        print(f"nsslab: {len(targets)} targets, {slots} at a time", flush=True)

    def show(report: ModuleReport) -> None:
        write_evidence(report, args.report_dir)
        if not args.quiet:
            progress.output(table(report))  # above the live lines, on a terminal

    errors: list[str] = []
    with progress.shown("quiet" if args.quiet else "auto"):
        try:
            reports, errors = run_matrix(
                modules, targets, show, slots, only=args.check, step_timeout=args.step_timeout, keep=args.keep
            )
        finally:
            for error in errors + close_all():
                print(f"nsslab: could not remove {error}", file=sys.stderr)
    if args.json:
        write_json(reports, args.json)
    if args.junit:
        write_junit(reports, args.junit)
    if args.html:
        write_html(reports, args.html)
    failed = [r.name for r in reports if not r.passed]
    print(
        f"{len(reports) - len(failed)} of {len(reports)} modules passed"
        + (f"; not passed: {', '.join(failed)}" if failed else "")
        + (" (judged below against their [expect])" if expect_mode and failed else "")
    )
    if not expect_mode:
        return 1 if failed else 0
    wrong = {r.name: r.unexpected() for r in reports if r.unexpected()}
    for name, diffs in wrong.items():
        print(f"{name}: not as its manifest expects: {'; '.join(diffs)}")
    if not wrong:
        print("every module got the verdicts its manifest [expect]s (unlisted checks pass)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
