from __future__ import annotations

from lab.checks.base import CheckResult, Context, check
from lab.errors import CommandTimeout


@check("lookup")
def lookup(ctx: Context) -> CheckResult:
    """`id`, `getent passwd/group` by name and by id, enumeration and initgroups answer
    what the manifest declares, through glibc as every program sees it.

    Catches modules that answer by name but not by id, drop group members, put the
    wrong primary group (so files get the wrong owner), or are missing from
    enumeration (`getent passwd`, compgen -u, bash's ~user completion)."""
    m = ctx.module
    if not m.has_expectations:
        return CheckResult("skip", "no manifest users/groups to compare with (bare library)")
    host = ctx.target.host
    wrong: list[str] = []

    def same(what: str, got: object, want: object) -> None:
        if got != want:
            wrong.append(f"{what}: got {got!r}, want {want!r}")

    try:
        for u in m.users:
            user = host.user(u.name)
            if not user.exists:
                wrong.append(f"`id {u.name}`: no such user")
                continue
            same(f"uid of {u.name}", user.uid, u.uid)
            same(f"gid of {u.name}", user.gid, u.gid)
            same(f"home of {u.name}", user.home, u.home)
            same(f"shell of {u.name}", user.shell, u.shell)
            same(f"gecos of {u.name}", user.gecos, u.gecos)
            same(f"`id -G {u.name}` (initgroups)", sorted(user.gids), m.gids_of(u))
            by_id = host.run("getent passwd %s", str(u.uid)).stdout.split(":")[0]
            same(f"`getent passwd {u.uid}`", by_id, u.name)
        for g in m.groups:
            group = host.group(g.name)
            if not group.exists:
                wrong.append(f"`getent group {g.name}`: no such group")
                continue
            same(f"gid of group {g.name}", group.gid, g.gid)
            same(f"members of {g.name}", sorted(group.members), sorted(g.members))
            by_id = host.run("getent group %s", str(g.gid)).stdout.split(":")[0]
            same(f"`getent group {g.gid}`", by_id, g.name)
        for db, entries in (("passwd", m.users), ("group", m.groups)):
            if entries and db in m.databases:
                listed = {line.split(":")[0] for line in host.check_output("getent %s", db).splitlines()}
                missing = sorted(e.name for e in entries if e.name not in listed)
                if missing:
                    wrong.append(f"`getent {db}` (enumeration) misses {missing}")
    except CommandTimeout as e:
        return CheckResult("hang", f"{e} (the lookup hangs in a plain process, not only after fork)")
    if wrong:
        return CheckResult(
            "fail",
            f"{wrong[0]}" + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""),
            {"mismatches": wrong},
        )
    return CheckResult(
        "pass",
        f"{len(m.users)} users and {len(m.groups)} groups answer as declared "
        "(by name, by id, enumerated, initgroups)",
    )
