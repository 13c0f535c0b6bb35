from __future__ import annotations

from lab.checks.base import CheckResult, Context, check, summary
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
def shadow(ctx: Context) -> CheckResult:
    """`getent shadow NAME` for every [[shadow]] entry of the manifest, through glibc as
    pam_unix and su see it, compared field by field; `getent shadow` lists them all; and
    every module user whose password field is "x" must have a shadow entry somewhere.

    Catches modules that fill absent aging fields with 0 instead of -1: sp_expire 0 means
    the account expired in 1970 and pam_unix refuses every login; sp_lastchg 0 forces a
    password change; shadow entries that exist by name but not in the listing. And a
    passwd entry saying "x" (the password is in shadow) when no shadow source answers:
    `id` works, but pam_unix's account stage gets AUTHINFO_UNAVAIL and Debian's
    common-account denies the user `su -` and every ssh login ("Access denied ... by PAM
    account configuration")."""
    m = ctx.module
    host = ctx.target.host
    declared = "shadow" in m.databases and bool(m.shadow)
    if not declared and not m.users:
        return CheckResult("skip", "no module users and no [[shadow]] entries to ask for")
    problems: list[str] = []
    try:
        problems += unshadowed(host, [u.name for u in m.users])
        if declared:
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
        return CheckResult("hang", str(e))
    if problems:
        return CheckResult("fail", summary(problems), {"mismatches": problems})
    if declared:
        return CheckResult(
            "pass", f"{len(m.shadow)} shadow entries answer as declared, by name and in listing"
        )
    return CheckResult(
        "pass", f"no [[shadow]] entries; the password fields of {len(m.users)} users need none"
    )


def unshadowed(host, names: list[str]) -> list[str]:
    """Users whose passwd entry says "x" but whom no shadow source knows."""
    orphans = []
    for name in names:
        entry = host.run("getent passwd %s", name)
        if entry.rc != 0 or entry.stdout.split(":")[1:2] != ["x"]:
            continue  # a missing user is the lookup check's business
        if host.run("getent shadow %s", name).rc != 0:
            orphans.append(name)
    if not orphans:
        return []
    return [
        f'password field "x" but no shadow source has {", ".join(orphans)}: pam_unix\'s account '
        "stage answers AUTHINFO_UNAVAIL, so `su -` and ssh logins are denied"
    ]


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
