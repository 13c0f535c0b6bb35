from __future__ import annotations

from dataclasses import dataclass

from lab.checks.base import CheckResult, Context, answers, check
from lab.elf import ENUMERATION, LOOKUPS, MACHINES, ElfInfo, version_key

# glibc keeps this much static TLS for libraries dlopen'ed after start-up that need it
# (glibc.rtld.optional_static_tls, 512 by default); every such library shares it.
STATIC_TLS_RESERVE = 512
# glibc 2.41 stopped making the stack executable for a dlopen'ed library that asks for it.
EXECSTACK_REFUSED_FROM = "2.41"


@dataclass
class Finding:
    severity: str  # "blocker" (glibc here refuses it), "fail", "warn" or "info"
    text: str
    refused_load: bool = True  # for a blocker: dlopen itself fails (not so for no entry points)


def findings(
    info: ElfInfo, service: str, databases: list[str], enumerable: bool, target: dict
) -> list[Finding]:
    """What the library's ELF headers mean on a target with TARGET's machine, glibc and
    libraries (from `probe.py sysinfo`). Shared by the `elf` check and `nsslab inspect`."""
    out: list[Finding] = []
    glibc = target.get("glibc", "unknown")
    machine = MACHINES.get(target.get("machine", ""))
    if info.elf_type != "ET_DYN":
        out.append(Finding("blocker", f"an ELF {info.elf_type}, not a shared object: dlopen refuses it"))
    if machine and info.machine != machine:
        out.append(
            Finding("blocker", f"built for {info.machine}; the target is {target['machine']} ({machine})")
        )
    elif machine and info.elf_class != 64 and target.get("machine") in ("x86_64", "aarch64"):
        out.append(Finding("blocker", f"a {info.elf_class}-bit ELF; the target's processes are 64-bit"))
    present = info.entry_points(service)
    if not present:
        exported = ", ".join(info.nss_symbols[:4]) or "no _nss_* symbol at all"
        out.append(
            Finding(
                "blocker",
                f"exports no _nss_{service}_* entry point ({exported}): glibc finds nothing to call",
            )
        )
    else:
        for db in databases:
            wanted = LOOKUPS[db] + (ENUMERATION[db] if enumerable else ())
            missing = [e for e in wanted if e not in present]
            if missing:
                out.append(
                    Finding("fail", f"{db}: missing {', '.join(f'_nss_{service}_{e}' for e in missing)}")
                )
        extra = [db for db in LOOKUPS if db not in databases and present & set(LOOKUPS[db])]
        if extra:
            out.append(Finding("info", f"also serves {', '.join(extra)} (not in the manifest, not checked)"))
    newest = info.newest_glibc
    if newest and glibc != "unknown" and version_key(newest) > version_key(glibc):
        out.append(
            Finding("blocker", f"needs {newest} but the target's glibc is {glibc}: built on a newer distro")
        )
    for lib, path in sorted(target.get("libs", {}).items()):
        if path is None:
            out.append(Finding("blocker", f"needs {lib} (DT_NEEDED), which the target does not have"))
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
            )
        )
    if info.static_tls and info.tls_size:
        text = (
            f"STATIC_TLS with a {info.tls_size}-byte TLS block: dlopen after start-up needs that much of "
            f"glibc's {STATIC_TLS_RESERVE}-byte static TLS reserve, shared by every such library "
            "('cannot allocate memory in static TLS block' when it runs out)"
        )
        out.append(Finding("blocker" if info.tls_size > STATIC_TLS_RESERVE else "warn", text))
    if info.is_go:
        out.append(
            Finding(
                "warn",
                f"a Go c-shared library ({info.go_version or 'version unknown'}; "
                f"{', '.join(info.go_markers[:2])}): "
                "its runtime starts threads in every process that loads it and does not survive fork "
                "without exec (golang/go#15538)",
            )
        )
    expected_soname = f"libnss_{service}.so.2"
    if info.soname and info.soname != expected_soname:
        out.append(Finding("warn", f"soname {info.soname}, installed as {expected_soname}"))
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
    return out


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
    details = {"elf": info.as_dict(), "target": target, "findings": [f.__dict__ for f in found]}
    blockers = [f.text for f in found if f.severity == "blocker"]
    failures = [f.text for f in found if f.severity == "fail"]
    warnings = [f.text for f in found if f.severity == "warn"]
    if blockers and not any(f.refused_load for f in found if f.severity == "blocker"):
        details["blocker"] = True
        return CheckResult("fail", "; ".join(blockers + failures), details)
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
        return CheckResult("fail", f"{'; '.join(blockers + failures)} — {confirmed}", details)
    if failures:
        return CheckResult("fail", "; ".join(failures), details)
    if warnings:
        return CheckResult("warn", "; ".join(warnings), details)
    served = ", ".join(db for db in m.databases)
    return CheckResult(
        "pass",
        f"{info.machine} shared object, entry points for {served}, "
        f"needs {info.newest_glibc or 'no GLIBC version'} (target {target.get('glibc')}), "
        "every DT_NEEDED present, non-executable stack, no static TLS, not Go",
        details,
    )
