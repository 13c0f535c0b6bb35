from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from lab.checks.base import CheckResult, Context, answers, check
from lab.elf import ENTRY_POINTS, ENUMERATION, LOOKUPS, MACHINES, ElfInfo, version_key
from lab.module import DATABASES

# services glibc >= 2.34 builds into libc.so.6, leaving libnss_<name>.so.2 an empty stub
BUILTIN = ("files", "dns")
# glibc keeps this much static TLS for libraries dlopen'ed after start-up that need it
# (glibc.rtld.optional_static_tls, 512 by default); every such library shares it.
STATIC_TLS_RESERVE = 512
# glibc 2.41 stopped making the stack executable for a dlopen'ed library that asks for it.
EXECSTACK_REFUSED_FROM = "2.41"


# Per kind of finding: who breaks and how (for a warn, why nobody does), and a command that
# shows the fact without the lab ({lib}: the library file, {service}: its NSS name).
CLAIMS: dict[str | tuple[str, str], tuple[str, str]] = {
    "type": (
        "glibc cannot dlopen it: every lookup skips the module and its users do not exist",
        "readelf -h {lib}",
    ),
    "entry-points": (
        "glibc asks the module for a database nsswitch.conf lists it for and finds no function "
        "to call: those entries do not exist",
        "nm -D --defined-only {lib} | grep _nss_{service}_",
    ),
    "unlisted-database": (
        "no caller breaks from it: glibc asks the module only for the databases nsswitch.conf "
        "lists it for; the lab, whose nsswitch.conf is made from the manifest, leaves that "
        "database unchecked",
        "nm -D --defined-only {lib} | grep _nss_{service}_",
    ),
    "no-listing": (
        "no caller breaks from it: without set/get/end*ent glibc moves on to the next source, "
        "so `getent passwd` and compgen -u list only the other sources' entries; lookups by name "
        "and id, id, su and ssh work",
        "nm -D --defined-only {lib} | grep -E '_nss_{service}_(set|get|end)(pw|gr|sp)ent'",
    ),
    "glibc": (
        "dlopen fails (version `GLIBC_x.y' not found): glibc skips the module and its users do not exist",
        "objdump -T {lib} | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1; ldd --version | head -1",
    ),
    "needed": (
        "dlopen fails on the missing library: glibc skips the module and its users do not exist",
        "ldd {lib}",
    ),
    "execstack": (
        "glibc >= 2.41 refuses to dlopen it, so its users vanish on that upgrade; older glibc makes "
        "the thread stacks of every process that loads it executable",
        "readelf -lW {lib} | grep GNU_STACK",
    ),
    "static-tls": (
        "a process that loads it after start-up (every lookup does) fails the dlopen once glibc's "
        "static TLS reserve is used up, and the module's users vanish in that process",
        "readelf -d {lib} | grep FLAGS; readelf -lW {lib} | grep TLS",
    ),
    ("static-tls", "warn"): (
        "no caller breaks while the block fits glibc's reserve, as here; with other such libraries "
        "loaded first, the dlopen fails and the module's users vanish in that process",
        "readelf -d {lib} | grep FLAGS; readelf -lW {lib} | grep TLS",
    ),
    "go": (
        "no caller breaks from the headers alone; a process that forks without exec after loading "
        "it (bash completion, daemons) can freeze: see fork-child and tab-completion",
        "readelf -S {lib} | grep -E 'go.buildinfo|gopclntab'",
    ),
    "soname": (
        "no caller breaks: glibc loads the module by file name; only tools that go by soname "
        "(ldconfig, packaging) see another name",
        "readelf -d {lib} | grep SONAME",
    ),
}


@dataclass
class Finding:
    severity: str  # "blocker" (glibc here refuses it), "fail", "warn" or "info"
    text: str
    refused_load: bool = True  # for a blocker: dlopen itself fails (not so for no entry points)
    # A manifest gap (what the library does that the manifest does not say): the line the
    # manifest should have, e.g. 'databases = ["passwd", "group", "shadow"]'.
    line: str | None = None
    kind: str = "info"  # what it is about, for its impact and reproducer (see CLAIMS)
    impact: str | None = None
    reproduce: str | None = None


def listing_gaps(present: set[str], databases: list[str]) -> tuple[list[str], list[str]]:
    """(databases whose set/get/end*ent are all absent, those with only some of them)."""
    none, some = [], []
    for db in databases:
        trio = set(ENUMERATION[db])
        if trio and not trio & present:
            none.append(db)
        elif trio - present:
            some.append(db)
    return none, some


def unlisted_databases(present: set[str], databases: list[str]) -> list[str]:
    """Databases the library has point lookups for that the manifest does not list."""
    return [db for db in LOOKUPS if db not in databases and present & set(LOOKUPS[db])]


def databases_line(databases: list[str], extra: list[str]) -> str:
    listed = [db for db in DATABASES if db in databases or db in extra]
    return "databases = [" + ", ".join(f'"{db}"' for db in listed) + "]"


def findings(
    info: ElfInfo, service: str, databases: list[str], enumerable: bool, target: dict
) -> list[Finding]:
    """What the library's ELF headers mean on a target with TARGET's machine, glibc and
    libraries (from `probe sysinfo`). Shared by the `elf` check and `nsslab inspect`."""
    out: list[Finding] = []
    glibc = target.get("glibc", "unknown")
    machine = MACHINES.get(target.get("machine", ""))
    if info.elf_type != "ET_DYN":
        out.append(
            Finding("blocker", f"an ELF {info.elf_type}, not a shared object: dlopen refuses it", kind="type")
        )
    if machine and info.machine != machine:
        out.append(
            Finding(
                "blocker",
                f"built for {info.machine}; the target is {target['machine']} ({machine})",
                kind="type",
            )
        )
    elif machine and info.elf_class != 64 and target.get("machine") in ("x86_64", "aarch64"):
        out.append(
            Finding("blocker", f"a {info.elf_class}-bit ELF; the target's processes are 64-bit", kind="type")
        )
    present = info.entry_points(service)
    if not present:
        exported = ", ".join(info.nss_symbols[:4]) or "no _nss_* symbol at all"
        out.append(
            Finding(
                "blocker",
                f"exports no _nss_{service}_* entry point ({exported}): glibc finds nothing to call",
                kind="entry-points",
            )
        )
    else:
        out += entry_point_findings(present, service, databases, enumerable)
    newest = info.newest_glibc
    if newest and glibc != "unknown" and version_key(newest) > version_key(glibc):
        out.append(
            Finding(
                "blocker",
                f"needs {newest} but the target's glibc is {glibc}: built on a newer distro",
                kind="glibc",
            )
        )
    for lib, path in sorted(target.get("libs", {}).items()):
        if path is None:
            out.append(
                Finding("blocker", f"needs {lib} (DT_NEEDED), which the target does not have", kind="needed")
            )
    stack = info.gnu_stack
    if stack is None or stack["exec"]:
        why = "no PT_GNU_STACK (glibc assumes executable)" if stack is None else "PT_GNU_STACK is RWX"
        refused = glibc != "unknown" and version_key(glibc) >= version_key(EXECSTACK_REFUSED_FROM)
        out.append(
            Finding(
                "blocker" if refused else "fail",
                f"executable stack ({why}): glibc >= {EXECSTACK_REFUSED_FROM} refuses to dlopen it"
                + (
                    ""
                    if refused
                    else f" (this target's {glibc} still loads it, making every thread's stack executable)"
                ),
                kind="execstack",
            )
        )
    if info.static_tls and info.tls_size:
        text = (
            f"STATIC_TLS with a {info.tls_size}-byte TLS block: dlopen after start-up needs that much of "
            f"glibc's {STATIC_TLS_RESERVE}-byte static TLS reserve, shared by every such library "
            "('cannot allocate memory in static TLS block' when it runs out)"
        )
        out.append(
            Finding("blocker" if info.tls_size > STATIC_TLS_RESERVE else "warn", text, kind="static-tls")
        )
    if info.is_go:
        out.append(
            Finding(
                "warn",
                f"a Go c-shared library ({info.go_version or 'version unknown'}; "
                f"{', '.join(info.go_markers[:2])}): "
                "its runtime starts threads in every process that loads it and does not survive fork "
                "without exec (golang/go#15538)",
                kind="go",
            )
        )
    expected_soname = f"libnss_{service}.so.2"
    if info.soname and info.soname != expected_soname:
        out.append(Finding("warn", f"soname {info.soname}, installed as {expected_soname}", kind="soname"))
    size = stack["size"] if stack else 0
    out.append(
        Finding(
            "info",
            f"GNU_STACK size {size}: "
            + (
                f"musl gives new threads {size} bytes of stack"
                if size
                else "musl gives new threads its 128 KiB default (glibc: RLIMIT_STACK)"
            ),
        )
    )
    lib = shlex.quote(str(Path(info.path).resolve()))
    for f in out:
        claim = CLAIMS.get((f.kind, f.severity)) or CLAIMS.get(f.kind)
        if claim:
            f.impact, f.reproduce = claim[0], claim[1].format(lib=lib, service=service)
    return out


def entry_point_findings(
    present: set[str], service: str, databases: list[str], enumerable: bool
) -> list[Finding]:
    """What the manifest says the library serves against what it exports. A database the
    manifest lists without its point lookups is a fail (glibc asks the module, nothing
    answers); what the library exports beyond the manifest, or a listing it does not
    offer while the manifest does not say `enumerable = false`, is the manifest's gap: a
    warn with the line to add, since glibc only calls what nsswitch.conf asks for and
    falls through to the next source where a listing is missing."""
    out: list[Finding] = []
    none, some = listing_gaps(present, databases) if enumerable else ([], [])
    for db in databases:
        wanted = LOOKUPS[db] + (ENUMERATION[db] if db in some else ())
        missing = [e for e in wanted if e not in present]
        if missing:
            out.append(
                Finding(
                    "fail",
                    f"{db}: missing {', '.join(f'_nss_{service}_{e}' for e in missing)}",
                    kind="entry-points",
                )
            )
    extra = unlisted_databases(present, databases)
    if extra:
        line = databases_line(databases, extra)
        exported = [e for db in extra for e in ENTRY_POINTS[db] if e in present]
        which = ", ".join(extra)
        out.append(
            Finding(
                "warn",
                f"the library also serves {which} (_nss_{service}_{{{', '.join(exported)}}}), which the "
                f"manifest's databases leave out: nsswitch.conf here does not ask the module for {which}, "
                f"and the lab does not check it; add `{line}`",
                line=line,
                kind="unlisted-database",
            )
        )
    listed = [db for db in databases if ENUMERATION[db]]
    if none and set(none) == set(listed):
        out.append(
            Finding(
                "warn",
                f"the library exports no set/get/end*ent for {', '.join(none)} (no listing: `getent "
                f"{none[0]}` and compgen -u show only other sources' entries) but the manifest does not say "
                "so; the checks leave the listings out: add `enumerable = false`",
                line="enumerable = false",
                kind="no-listing",
            )
        )
    elif none:
        out.append(
            Finding(
                "info",
                f"no set/get/end*ent for {', '.join(none)} (other databases have them): the checks leave "
                f"the {', '.join(none)} listing out",
            )
        )
    if not enumerable:
        offered = [db for db in listed if set(ENUMERATION[db]) <= present]
        if offered:
            out.append(
                Finding(
                    "info",
                    f"the manifest says enumerable = false, yet the library exports set/get/end*ent for "
                    f"{', '.join(offered)}: `getent {offered[0]}` calls them; the lab leaves the listing's "
                    "contents unchecked",
                )
            )
    return out


def gaps(found: list[Finding]) -> list[dict]:
    """The manifest gaps among the findings: the line to add and why."""
    return [{"line": f.line, "text": f.text} for f in found if f.line]


@check("elf")
def elf(ctx: Context) -> CheckResult:
    """Reads the library's ELF headers (pyelftools) against the target: machine, entry
    points per database, the newest GLIBC_ symbol version it needs, DT_NEEDED libraries,
    executable stack, STATIC_TLS, Go runtime. When something there makes glibc refuse the
    module, a dlopen in the target confirms it and the other checks are skipped.

    Catches modules that silently fail to load on the next distro: built on a newer
    glibc ("version GLIBC_2.38 not found"), linked to a library the target lacks, marked
    executable-stack (refused by glibc >= 2.41), or with initial-exec TLS that does not
    fit once the process runs ("cannot allocate memory in static TLS block"); and Go
    c-shared modules, whose runtime does not survive fork."""
    m, info = ctx.module, ctx.elf
    runpath = [
        d.replace("$ORIGIN", ctx.target.library_dir).replace("${ORIGIN}", ctx.target.library_dir)
        for d in info.runpath
    ]
    target = ctx.target.sysinfo(info.needed, runpath)
    found = findings(info, m.name, m.databases, m.enumerable, target)
    details = {
        "elf": info.as_dict(),
        "target": target,
        "findings": [f.__dict__ for f in found],
        "manifest_gaps": gaps(found),
    }
    glibc = target.get("glibc") or "0"
    if not info.entry_points(m.name) and m.name in BUILTIN and version_key(f"GLIBC_{glibc}") >= (2, 34):
        details |= {"blocker": True, "gate": "a stub: the service is built into libc.so.6 (see elf)"}
        return CheckResult(
            "skip",
            f"libnss_{m.name}.so.2 is an empty stub on glibc {glibc} (since 2.34 the {m.name} service is "
            f"built into libc.so.6, whose _nss_{m.name}_* entry points are GLIBC_PRIVATE): no module to test",
            details,
        )
    blockers = [f for f in found if f.severity == "blocker"]
    failures = [f for f in found if f.severity == "fail"]
    warnings = [f for f in found if f.severity == "warn"]
    if blockers and not any(f.refused_load for f in blockers):
        details["blocker"] = True
        return claimed("fail", texts(blockers + failures), details, blockers + failures)
    if blockers:
        result = ctx.target.scenario([ctx.step("dlopen", [{"fn": "dlopen", "arg": ctx.target.module_path}])])[
            0
        ]
        said = next((a.get("value") for a in answers(result)), None)
        confirmed = (
            f"dlopen in the target says: {said}"
            if said and said != "loaded"
            else "yet dlopen in the target loaded it"
        )
        details["dlopen"] = said
        details["blocker"] = True
        out = claimed("fail", f"{texts(blockers + failures)} — {confirmed}", details, blockers + failures)
        out.control = f"dlopen({ctx.target.module_path!r}) in the target: {said}"
        return out
    if failures:
        return claimed("fail", texts(failures), details, failures)
    if warnings:
        return claimed("warn", texts(warnings), details, warnings)
    served = ", ".join(db for db in m.databases)
    return CheckResult(
        "pass",
        f"{info.machine} shared object, entry points for {served}, "
        f"needs {info.newest_glibc or 'no GLIBC version'} (target {target.get('glibc')}), "
        "every DT_NEEDED present, non-executable stack, no static TLS, not Go",
        details,
    )


def texts(found: list[Finding]) -> str:
    return "; ".join(f.text for f in found)


def claimed(status: str, reason: str, details: dict, found: list[Finding]) -> CheckResult:
    """A result whose impact and reproducer are those of the findings it reports."""
    impacts = list(dict.fromkeys(f.impact for f in found if f.impact))
    commands = list(dict.fromkeys(f.reproduce for f in found if f.reproduce))
    return CheckResult(
        status,
        reason,
        details,
        impact="; ".join(impacts) or None,
        reproduce="; ".join(commands) or None,
    )
