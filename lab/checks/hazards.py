from __future__ import annotations

import re
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from lab.checks.base import CheckResult, Claim, Context, check, verdict
from lab.errors import CommandTimeout
from lab.forensics.causes import signal_name

FIXED = (1, 9, 4)  # vDSO calls on the system stack: Go 1.9.4 and 1.10 (golang/go#20427)
# Dumps the target's own vDSO to a temporary file (removed) and shows its probe instructions,
# without the lab. The grep is x86-64's `orq $0x0,..(%rsp)`; on aarch64 grep for `str\s+xzr, \[sp`.
VDSO_DUMP = (
    't=$(mktemp) && python3 -c "import sys;'
    "l=[x for x in open('/proc/self/maps') if x.strip().endswith('[vdso]')][0];"
    "a,b=(int(v,16) for v in l.split()[0].split('-'));f=open('/proc/self/mem','rb');f.seek(a);"
    'open(sys.argv[1],\'wb\').write(f.read(b-a))" "$t" && '
    'objdump -d "$t" | grep -B3 \'or.*\\$0x0,.*(%rsp)\'; rm -f "$t"'
)
GO_STACK_REFS = "golang/go#22008, golang/go#27077, iovisor/bcc#1320"
# Go's own words for a stack it cannot walk: what a uretprobe's trampoline address causes.
GO_CORRUPT = re.compile(r"unexpected return pc|unknown caller pc")
GO_TRACEBACK = re.compile(r"^(goroutine \d+ \[|runtime stack:|fatal error:)", re.M)
GO_SIGNAL = re.compile(r"^(SIG[A-Z]+:|fatal error:|unexpected signal)")
DEADLY = ("SIGABRT", "SIGSEGV", "SIGILL")


@check("hazards")
def hazards(ctx: Context) -> CheckResult:
    """Two hazards of Go c-shared modules that depend on the target's kernel, not on the
    module's code:

    - the vDSO's stack use: a kernel whose vDSO was built with stack probes
      (-fstack-check, -fstack-clash-protection: `sub $0x1038,%rsp; orq $0x0,(%rsp)`) touches
      a page below the stack pointer in clock_gettime; Go before 1.9.4/1.10 called the vDSO
      on a goroutine's small stack, so every Go process crashed now and then with "fatal
      error: unexpected signal during runtime execution" (golang/go#20427, node_exporter#730
      on Gentoo hardened; coreos-overlay#1359 for Go 1.3). The target's own [vdso] is read
      from a process in the target and scanned for the probe instructions (x86-64, aarch64).
    - return probes: a uretprobe replaces a function's return address with a trampoline;
      Go copies and walks goroutine stacks and aborts on the unknown PC ("unexpected return
      pc", "unknown caller pc": golang/go#22008, #27077, iovisor/bcc#1320, bpftrace#1098).
      The target's uprobe_events is read (tracefs mounted privately when it is not) for `r:`
      events on the module's file. Probes attached through perf_event_open (bpftrace,
      libbpf) are not listed there and stay unseen.

    C libraries are skipped: they run on the caller's own stack, and C code never walks its
    return addresses, so neither hazard applies (a uretprobe on a C library is what bcc's
    tools do every day)."""
    if not ctx.elf.is_go:
        return CheckResult(
            "skip",
            "not a Go library: C code calls the vDSO on the caller's own stack and never walks its return "
            "addresses, so neither the vDSO stack nor a uretprobe is a hazard for it",
        )
    value, bad = ctx.direct("hazards", "vDSO and uprobe scan", library=ctx.target.module_path)
    if bad:
        return bad
    for e in value["uprobes"]["events"]:
        if e.get("on_module") and e.get("offset") is not None:
            e["symbol"] = symbol_at(ctx.module.library, e["offset"])
    if any(armed(e) for e in value["uprobes"]["events"]):
        value["callers"] = real_callers(ctx)
    return judge(value, ctx.elf.go_version)


def armed(e: dict) -> bool:
    """A return probe on the module that ftrace has enabled (or whose state is unknown)."""
    return e.get("kind") == "r" and bool(e.get("on_module")) and e.get("enabled") is not False


def real_callers(ctx: Context) -> list[dict]:
    """What glibc's own callers make of the armed probe: getent and id, each bounded."""
    m, u, g = ctx.module, ctx.user, ctx.group
    argvs = []
    if "passwd" in m.databases:
        argvs += [
            ["getent", "-s", m.name, "passwd", u.name if u else "root"],
            ["getent", "-s", m.name, "passwd"],
        ]
    if "group" in m.databases:
        argvs += [
            ["getent", "-s", m.name, "group", g.name if g else "root"],
            ["getent", "-s", m.name, "group"],
        ]
    if u:
        argvs.append(["id", u.name])
    out = []
    for argv in argvs:
        try:
            done = ctx.target.run(argv, timeout=10)
        except CommandTimeout:
            out.append({"argv": argv, "rc": None, "said": "no answer in 10 s"})
            continue
        lines = [line.strip() for line in done.stderr.splitlines()]
        said = next((x for x in lines if GO_CORRUPT.search(x)), "") or next(
            (x for x in lines if GO_SIGNAL.search(x)), ""
        )
        out.append(
            {
                "argv": argv,
                "rc": done.rc,
                "said": said,
                "corrupt": bool(GO_CORRUPT.search(done.stderr)),
                "traceback": bool(GO_TRACEBACK.search(done.stderr)),
            }
        )
    return out


def aborted(c: dict) -> bool:
    """The caller died of the probe, in Go's own words: a stack it cannot walk, or death by a
    signal with Go's traceback. A timeout or a plain exit status is not that."""
    if c.get("corrupt") or GO_CORRUPT.search(c.get("said") or ""):
        return True
    return (
        c["rc"] is not None and c["rc"] < 0 and signal_name(-c["rc"]) in DEADLY and bool(c.get("traceback"))
    )


def how_ended(c: dict) -> str:
    if c["rc"] is None:
        return "gave no answer in 10 s"
    how = f"was killed by {signal_name(-c['rc'])}" if c["rc"] < 0 else f"exited {c['rc']}"
    return how + (f" ({c['said']})" if c.get("said") else "")


def go_tuple(version: str | None) -> tuple[int, ...] | None:
    """'go1.9.3' -> (1, 9, 3); 'go1.10rc1' -> (1, 10, 0)."""
    m = re.match(r"go(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


def judge(obs: dict, go_version: str | None) -> CheckResult:
    """Turns the probe's observations (see lab.probe.direct.hazards.hazards) into the verdict."""
    vdso, tracing = obs["vdso"], obs["uprobes"]
    go = go_tuple(go_version)
    claims: list[Claim] = []
    probes = vdso.get("probes", [])
    kernel = obs.get("kernel", "?")
    if probes:
        first = probes[0]
        seen = (
            f"the target's vDSO (kernel {kernel}) has {len(probes)} stack probe(s), the first "
            f"{first['bytes']} at +{first['offset']:#x} after a {first['after_sub']}-byte `sub ..,%rsp`"
        )
        if go is None:
            claims.append(
                Claim(
                    "warn",
                    f"{seen}, and the module's Go version is unknown (no version in .go.buildinfo)",
                    "crashes if the module was built with Go before 1.9.4/1.10, which called the vDSO on a "
                    "~100-byte stack (golang/go#20427); built later, nothing breaks",
                    reproduce=VDSO_DUMP,
                )
            )
        elif go < FIXED:
            claims.append(
                Claim(
                    "warn",
                    f"{seen}, and the module's {go_version} calls the vDSO on a ~100-byte goroutine stack: "
                    "the known crash conditions hold (stack probes in this kernel's vDSO and Go < 1.9.4; "
                    "golang/go#20427), not reproduced here",
                    'a process that loads the module can die in a clock_gettime with "fatal error: '
                    'unexpected signal during runtime execution" (node_exporter#730, Gentoo hardened); '
                    "the lab saw no process die",
                    reproduce=VDSO_DUMP,
                )
            )
    callers = obs.get("callers")
    broke = [c for c in callers or [] if aborted(c)]
    odd = [c for c in callers or [] if not aborted(c) and (c["rc"] is None or c["rc"] != 0)]
    for e in tracing.get("events", []):
        if e.get("kind") != "r" or not e.get("on_module"):
            continue
        where = (
            f"{e['group']}/{e['event']} at {e['path']}:{e['offset']:#x}"
            if e.get("offset") is not None
            else e["line"]
        )
        if e.get("symbol"):
            where += f" ({e['symbol']})"
        reproduce = f"grep '^r' {tracing.get('tracefs') or '/sys/kernel/tracing'}/uprobe_events"
        if not armed(e):
            claims.append(
                Claim(
                    "warn",
                    f"uretprobe {where} on the module is defined, not enabled in ftrace",
                    "no call breaks while it stays unarmed; `echo 1 > .../enable` or `perf record -e "
                    f"{e['group']}:{e['event']}` arms it (perf's use does not show in the enable file), and "
                    f"then Go aborts on the trampoline's return address ({GO_STACK_REFS})",
                    reproduce=reproduce,
                )
            )
            continue
        state = "enabled" if e.get("enabled") else "defined (enable state unreadable)"
        if not broke:
            if odd:
                met = "; ".join(f"`{' '.join(c['argv'])}` {how_ended(c)}" for c in odd[:3])
                text = f"uretprobe {where} on the module is {state}; {met}, without Go's stack abort"
            elif callers:
                shown = ", ".join(f"`{' '.join(c['argv'])}`" for c in callers)
                text = (
                    f"uretprobe {where} on the module is {state}, but {shown} all answered: the probed "
                    "function is not on their path"
                )
            else:
                text = f"uretprobe {where} on the module is {state}; no caller was run to see its effect"
            claims.append(
                Claim(
                    "warn",
                    text,
                    f"a caller whose lookup returns through the probed function aborts ({GO_STACK_REFS}); "
                    "none was seen aborting here",
                    reproduce=reproduce,
                )
            )
            continue
        first = broke[0]
        met = f": `{' '.join(first['argv'])}` {how_ended(first)}"
        if len(broke) > 1:
            met += f", as did {len(broke) - 1} more of {len(callers or [])} callers"
        claims.append(
            Claim(
                "fail",
                f"uretprobe {where} on the module is {state}{met}",
                "every process in the target that returns through the probed function while it is armed "
                "aborts: Go walks goroutine stacks and meets the trampoline's return address "
                f"('unexpected return pc', 'unknown caller pc'; {GO_STACK_REFS})",
                reproduce=f"{reproduce}; {' '.join(first['argv'])}",
                control=f"the caller's own stderr said `{first['said']}`: Go's runtime, not the lab, "
                "names the stack it could not walk" + ("" if first.get("corrupt") else " as it died"),
            )
        )
    details = {**obs, "go_version": go_version, "fixed_in": "go1.9.4"}
    found = verdict(claims, details)
    if found:
        return found
    if tracing.get("error"):  # the target's oddity, said: the return-probe half was not looked at
        return CheckResult(
            "skip",
            f"return probes not checked: {describe_uprobes(tracing)}; {describe_vdso(obs, go_version)}",
            details,
        )
    return CheckResult("pass", f"{describe_vdso(obs, go_version)}; {describe_uprobes(tracing)}", details)


def describe_vdso(obs: dict, go_version: str | None) -> str:
    vdso = obs["vdso"]
    if not vdso.get("scanned"):
        return f"vDSO not scanned on {obs.get('machine')} ({vdso.get('size', 0)} bytes)"
    go = go_tuple(go_version)
    if vdso["probes"]:
        return (
            f"the vDSO has {len(vdso['probes'])} stack probe(s), but {go_version} (>= 1.9.4) calls it on the "
            "system stack"
        )
    loose = (
        f", {vdso['loose']} lone `or $0,(%rsp)` byte pattern(s) not after a page-sized sub"
        if vdso["loose"]
        else ""
    )
    newer = f"; {go_version} would be safe either way" if go and go >= FIXED else ""
    return (
        f"the target's vDSO ({vdso['size'] // 1024} KiB, kernel {obs.get('kernel')}) has no stack probes "
        f"(largest frame {vdso['largest_frame']} bytes){loose}{newer}"
    )


def describe_uprobes(tracing: dict) -> str:
    if not tracing.get("tracefs") or tracing.get("error"):
        return f"uprobe_events not readable ({tracing.get('error', 'no tracefs')})"
    events = tracing["events"]
    on = [e for e in events if e.get("on_module")]
    how = " (tracefs mounted privately to read it)" if tracing.get("mounted") == "privately" else ""
    return (
        f"{len(events)} uprobe event(s) in {tracing['tracefs']}/uprobe_events{how}, {len(on)} on the module, "
        "no return probe on it (perf_event_open probes, as bpftrace's, are not listed there)"
    )


def symbol_at(library: Path, offset: int) -> str | None:
    """The function at file OFFSET in LIBRARY (uprobe offsets are file offsets), or None."""
    try:
        with open(library, "rb") as f:
            elf = ELFFile(f)
            vaddr = next(
                (
                    offset - s["p_offset"] + s["p_vaddr"]
                    for s in elf.iter_segments()
                    if s["p_type"] == "PT_LOAD" and s["p_offset"] <= offset < s["p_offset"] + s["p_filesz"]
                ),
                None,
            )
            if vaddr is None:
                return None
            for name in (".symtab", ".dynsym"):
                table = elf.get_section_by_name(name)
                if not isinstance(table, SymbolTableSection):
                    continue
                for sym in table.iter_symbols():
                    start, size = sym["st_value"], sym["st_size"]
                    if sym["st_info"]["type"] == "STT_FUNC" and start <= vaddr < start + max(size, 1):
                        return f"{sym.name}+{vaddr - start:#x}" if vaddr != start else sym.name
    except (OSError, ELFError, ValueError, KeyError):
        return None
    return None
