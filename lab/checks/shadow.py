from __future__ import annotations

from lab.checks.base import Context, Outcome, check, summary
from lab.errors import CommandTimeout
from lab.module import Shadow

FIELDS = ("lastchg", "min", "max", "warn", "inact", "expire")
MEANING = {
    ("expire", 0): "the account expired on 1970-01-01: pam_unix refuses every login",
    ("max", 0): "the password must be changed at every login",
    ("lastchg", 0): "the password must be changed now (pam_unix forces a change)",
    ("inact", 0): "the account locks the day the password expires",
}


@check("shadow")
def shadow(ctx: Context) -> Outcome:
    """`getent shadow NAME` for every [[shadow]] entry of the manifest, through glibc as
    pam_unix and su see it, compared field by field; `getent shadow` lists them all.

    Catches modules that fill absent aging fields with 0 instead of -1: sp_expire 0 means
    the account expired in 1970 and pam_unix refuses every login; sp_lastchg 0 forces a
    password change; and shadow entries that exist by name but not in the listing."""
    m = ctx.module
    if "shadow" not in m.databases:
        return Outcome("skip", "the manifest does not list the shadow database")
    if not m.shadow:
        return Outcome("skip", "the manifest lists the shadow database but no [[shadow]] entries")
    host = ctx.target.host
    problems: list[str] = []
    try:
        for want in m.shadow:
            line = host.run("getent shadow %s", want.name)
            if line.rc != 0:
                problems.append(f"`getent shadow {want.name}`: no such entry (exit {line.rc})")
                continue
            problems += compare(parse(line.stdout.strip()), want)
        listed = {line.split(":")[0] for line in host.run("getent shadow").stdout.splitlines()}
        missing = sorted(s.name for s in m.shadow if s.name not in listed)
        if missing:
            problems.append(f"`getent shadow` (listing) misses {missing}")
    except CommandTimeout as e:
        return Outcome("hang", str(e))
    if problems:
        return Outcome("fail", summary(problems), {"mismatches": problems})
    return Outcome("pass", f"{len(m.shadow)} shadow entries answer as declared, by name and in the listing")


def parse(line: str) -> dict:
    parts = (line.split(":") + [""] * 9)[:9]
    out: dict = {"name": parts[0], "password": parts[1]}
    for field, text in zip(FIELDS, parts[2:8], strict=True):
        out[field] = int(text) if text.lstrip("-").isdigit() else -1
    return out


def compare(got: dict, want: Shadow) -> list[str]:
    problems = []
    if got["password"] != want.password:
        problems.append(f"password field of {want.name}: {got['password']!r}, manifest {want.password!r}")
    for field in FIELDS:
        value, declared = got[field], getattr(want, field)
        if value != declared:
            meaning = MEANING.get((field, value))
            shown = "empty" if declared == -1 else declared
            problems.append(
                f"sp_{field} of {want.name}: {value}"
                + (f" ({meaning})" if meaning else "")
                + f", manifest {shown}"
            )
    return problems
