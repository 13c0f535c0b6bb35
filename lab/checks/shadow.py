from __future__ import annotations

import shlex
from pathlib import Path

from lab.checks.base import CheckResult, Context, check, summary
from lab.elf import LOOKUPS
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
    pam_unix and su see it, compared field by field; `getent shadow` lists them all (where
    the module offers a listing); and every module user whose password field is "x" must
    have a shadow entry somewhere.

    Catches modules that fill absent aging fields with 0 instead of -1: sp_expire 0 means
    the account expired in 1970 and pam_unix refuses every login; sp_lastchg 0 forces a
    password change; shadow entries that exist by name but not in the listing. And a
    passwd entry saying "x" (the password is in shadow) when no shadow source answers:
    `id` works, but pam_unix's account stage gets AUTHINFO_UNAVAIL and Debian's
    common-account denies the user `su -` and every ssh login ("Access denied ... by PAM
    account configuration").

    When the manifest leaves shadow out but the library exports getspnam_r, nsswitch.conf
    here does not ask the module for shadow; the users are then looked up with the module
    as the only shadow source (`getent -s NAME shadow USER`): if it answers, the gap is
    the manifest's (a warn), not a login the module breaks."""
    m = ctx.module
    host = ctx.target.host
    declared = "shadow" in m.databases and bool(m.shadow)
    if not declared and not m.users:
        return CheckResult("skip", "no module users and no [[shadow]] entries to ask for")
    listing = ctx.listings().get("shadow")
    problems: list[str] = []
    try:
        orphans = unshadowed(host, [u.name for u in m.users])
        if orphans and "shadow" not in m.databases and set(LOOKUPS["shadow"]) <= ctx.elf.entry_points(m.name):
            return unlisted(ctx, orphans)
        if orphans:
            problems.append(
                f'password field "x" but no shadow source has {", ".join(orphans)}: pam_unix\'s account '
                "stage answers AUTHINFO_UNAVAIL, so `su -` and ssh logins are denied"
            )
        if declared:
            for want in m.shadow:
                line = host.run("getent shadow %s", want.name)
                if line.rc != 0:
                    problems.append(f"`getent shadow {want.name}`: no such entry (exit {line.rc})")
                    continue
                problems += compare(parse(entry_line(line.stdout, want.name)), want)
            if not listing:
                listed = {line.split(":")[0] for line in host.run("getent shadow").stdout.splitlines()}
                missing = sorted(s.name for s in m.shadow if s.name not in listed)
                if missing:
                    problems.append(f"`getent shadow` (listing) misses {missing}")
    except CommandTimeout as e:
        return CheckResult("hang", str(e))
    details = {"mismatches": problems, "unshadowed": orphans, "listing_left_out": listing}
    if problems:
        exported = set(LOOKUPS["shadow"]) <= ctx.elf.entry_points(m.name)
        library = shlex.quote(str(Path(ctx.elf.path).resolve()))
        first = orphans[0] if orphans else m.shadow[0].name if m.shadow else m.users[0].name
        return CheckResult(
            "fail",
            summary(problems),
            details,
            impact=(
                f"pam_unix refuses {', '.join(orphans)}: `su -` says 'Authentication failure', ssh "
                "'Access denied ... by PAM account configuration'"
                if orphans
                else "pam_unix reads these aging fields at every login: " + aging_impact(problems)
            ),
            reproduce=(
                f"getent passwd {first} | cut -d: -f2; getent shadow {first}; echo $?"
                + ("" if exported else f"; nm -D --defined-only {library} | grep _nss_{m.name}_getspnam_r")
            ),
            control=f"`id {first}` answers (the passwd side works)" if orphans else None,
        )
    left = f"; no `getent shadow` listing compared: {listing}" if declared and listing else ""
    if declared:
        return CheckResult(
            "pass",
            f"{len(m.shadow)} shadow entries answer as declared, by name" + (left or " and in listing"),
            details,
        )
    return CheckResult(
        "pass", f"no [[shadow]] entries; the password fields of {len(m.users)} users need none", details
    )


def unlisted(ctx: Context, orphans: list[str]) -> CheckResult:
    """Users with "x" whom no configured source knows, while the library exports shadow
    lookups the manifest does not list: ask the module alone, as nsswitch.conf would once
    it lists the module for shadow."""
    m, host = ctx.module, ctx.target.host
    declared = {s.name: s for s in m.shadow}
    answered, unanswered, differs = [], [], []
    for name in orphans:
        line = host.run("getent -s %s shadow %s", m.name, name)
        if line.rc != 0:
            unanswered.append(name)
            continue
        answered.append(name)
        if name in declared:
            differs += compare(parse(entry_line(line.stdout, name)), declared[name])
    details = {
        "unshadowed": orphans,
        "module_answers": answered,
        "module_lacks": unanswered,
        "manifest_gap": "shadow",
        "mismatches": differs,
    }
    command = f"getent -s {m.name} shadow {(unanswered or answered)[0]}"
    if unanswered:
        return CheckResult(
            "fail",
            f'password field "x" for {", ".join(unanswered)}, and no shadow source has them, not even '
            f"the module asked alone (`{command}`: no entry): pam_unix's account stage answers "
            "AUTHINFO_UNAVAIL, so `su -` and ssh logins are denied",
            details,
            impact=f"pam_unix refuses {', '.join(unanswered)} whatever nsswitch.conf says: `su -` says "
            "'Authentication failure', ssh 'Access denied ... by PAM account configuration'",
            reproduce=f"getent passwd {unanswered[0]} | cut -d: -f2; {command}; echo $?",
            control=f"`id {unanswered[0]}` answers (the passwd side works)",
        )
    compared = f"; {len(differs)} field(s) differ from its [[shadow]] entries" if differs else ""
    return CheckResult(
        "warn",
        f'password field "x" for {", ".join(answered)}: no shadow source configured here has them, '
        f"but the library exports shadow entry points the manifest's databases leave out, and asked "
        f"alone (`{command}`) it answers for every one{compared}: pam_unix finds the entries once "
        f'nsswitch.conf lists the module for shadow (add "shadow" to databases, see elf)',
        details,
        impact=f"no caller breaks once nsswitch.conf says `shadow: files {m.name}`; left out, as the "
        f"manifest has it, pam_unix would refuse {', '.join(answered)} (`su -`, ssh)",
        reproduce=f"{command}; getent shadow {answered[0]}",
        control=f"`getent shadow {answered[0]}` through this nsswitch.conf (which does not list the module "
        "for shadow) finds no entry",
    )


def unshadowed(host, names: list[str]) -> list[str]:
    """Users whose passwd entry says "x" but whom no shadow source knows."""
    orphans = []
    for name in names:
        entry = host.run("getent passwd %s", name)
        if entry.rc != 0 or entry_line(entry.stdout, name).split(":")[1:2] != ["x"]:
            continue  # a missing user is the lookup check's business
        if host.run("getent shadow %s", name).rc != 0:
            orphans.append(name)
    return orphans


def aging_impact(problems: list[str]) -> str:
    meanings = [text for text in MEANING.values() if any(text in p for p in problems)]
    if not meanings and any("no such entry" in p for p in problems):
        return "pam_unix finds no shadow entry for them: `su -` and ssh logins are refused"
    return "; ".join(meanings) or "their accounts age differently from what the manifest declares"


def entry_line(output: str, name: str) -> str:
    """getent's line for NAME (a module that prints to stdout puts its own lines around it)."""
    return next((line for line in output.splitlines() if line.startswith(f"{name}:")), output.strip())


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
