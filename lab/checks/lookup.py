from __future__ import annotations

from lab.checks.base import CheckResult, Context, check
from lab.errors import CommandTimeout


@check("lookup")
def lookup(ctx: Context) -> CheckResult:
    """`id`, `getent passwd/group` by name and by id, enumeration and initgroups answer
    what the manifest declares, through glibc as every program sees it. A listing is
    compared only where the module offers one: with `enumerable = false`, or without
    set/get/end*ent in the library, `getent passwd` is left out and the reason says so.

    Catches modules that answer by name but not by id, drop group members, put the
    wrong primary group (so files get the wrong owner), or are missing from
    enumeration (`getent passwd`, compgen -u, bash's ~user completion)."""
    m = ctx.module
    if not m.has_expectations:
        return CheckResult("skip", "no manifest users/groups to compare with (bare library)")
    host = ctx.target.host
    wrong: list[str] = []
    commands: list[str] = []  # per mismatch, the command that shows it
    can_list = ctx.listings()
    left_out = {db: why for db, why in can_list.items() if why and db in ("passwd", "group")}

    def same(what: str, got: object, want: object, command: str) -> None:
        if got != want:
            wrong.append(f"{what}: got {got!r}, want {want!r}")
            commands.append(command)

    try:
        for u in m.users:
            user = host.user(u.name)
            if not user.exists:
                wrong.append(f"`id {u.name}`: no such user")
                commands.append(f"id {u.name}")
                continue
            for field in ("uid", "gid", "home", "shell", "gecos"):
                same(
                    f"{field} of {u.name}", getattr(user, field), getattr(u, field), f"getent passwd {u.name}"
                )
            same(f"`id -G {u.name}` (initgroups)", sorted(user.gids), m.gids_of(u), f"id -G {u.name}")
            by_id = host.run("getent passwd %s", str(u.uid)).stdout.split(":")[0]
            same(f"`getent passwd {u.uid}`", by_id, u.name, f"getent passwd {u.uid}")
        for g in m.groups:
            group = host.group(g.name)
            if not group.exists:
                wrong.append(f"`getent group {g.name}`: no such group")
                commands.append(f"getent group {g.name}")
                continue
            same(f"gid of group {g.name}", group.gid, g.gid, f"getent group {g.name}")
            same(f"members of {g.name}", sorted(group.members), sorted(g.members), f"getent group {g.name}")
            by_id = host.run("getent group %s", str(g.gid)).stdout.split(":")[0]
            same(f"`getent group {g.gid}`", by_id, g.name, f"getent group {g.gid}")
        listed_dbs = []
        for db, entries in (("passwd", m.users), ("group", m.groups)):
            if entries and db in m.databases and db not in left_out:
                listed_dbs.append(db)
                listed = {line.split(":")[0] for line in host.check_output("getent %s", db).splitlines()}
                missing = sorted(e.name for e in entries if e.name not in listed)
                if missing:
                    wrong.append(f"`getent {db}` (enumeration) misses {missing}")
                    commands.append(f"getent {db}")
    except (ValueError, IndexError):  # testinfra could not read the output as getent's format
        u = m.users[0] if m.users else None
        said = host.run("getent passwd %s", u.name).stdout if u else ""
        return CheckResult(
            "fail",
            f"`getent passwd {u.name if u else ''}` does not print glibc's format: {said[:160]!r}",
            {"output": said},
            impact="every program that reads user data from getent or id (scripts, testinfra, Ansible) "
            "misreads it; the module writes its own lines into the caller's stdout",
            reproduce=f"getent passwd {u.name if u else ''} | od -c | head",
        )
    except CommandTimeout as e:
        return CheckResult("hang", f"{e} (the lookup hangs in a plain process, not only after fork)")
    details = {"mismatches": wrong, "listings_checked": listed_dbs, "listings_left_out": left_out}
    if wrong:
        return CheckResult(
            "fail",
            f"{wrong[0]}" + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""),
            details,
            impact=impact_of(wrong),
            reproduce="; ".join(dict.fromkeys(commands)),
        )
    how = ["by name", "by id"] + (["enumerated"] if listed_dbs else []) + ["initgroups"]
    unlisted = "; ".join(f"no `getent {db}` listing compared: {why}" for db, why in left_out.items())
    return CheckResult(
        "pass",
        f"{len(m.users)} users and {len(m.groups)} groups answer as declared ({', '.join(how)})"
        + (f"; {unlisted}" if unlisted else ""),
        details,
    )


def impact_of(wrong: list[str]) -> str:
    """Who breaks, by what went wrong: a listing, the group list, or the entries themselves."""
    listing = all("(enumeration)" in w for w in wrong)
    groups = all("(initgroups)" in w for w in wrong)
    if listing:
        return (
            "programs that list users or groups (`getent passwd`, compgen -u, ~ completion) miss them; "
            "by name and by id they resolve"
        )
    if groups:
        return "sshd, su and login give the user other groups than declared (initgroups)"
    return (
        "every program that resolves these users or groups through glibc (ls -l, id, sshd, sudo, "
        "file ownership) gets the wrong answer or none"
    )
