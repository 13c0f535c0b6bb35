from __future__ import annotations

from collections import Counter

from lab.checks.base import CheckResult, Context, backend_down, check, summary

BIG_GROUP = 200  # STNS crashed on a 137-member group; a directory's "all staff" has thousands


@check("initgroups")
def initgroups(ctx: Context) -> CheckResult:
    """Calls initgroups_dyn for every manifest user twice: with a one-slot array that it
    must grow (realloc *groupsp, raise *size; malloc_usable_size afterwards must cover
    *size) and with a roomy one. Both must return exactly the user's memberships
    from the manifest, once each, including groups with 200 or more members.

    Catches the module that writes past the caller's array instead of growing it (heap
    corruption in sshd, su, login, which call initgroups at every login), loses
    memberships in big groups (STNS crashed on a 137-member group), or lists a gid twice."""
    m = ctx.module
    if "initgroups_dyn" not in ctx.elf.entry_points(m.name):
        return CheckResult("skip", "no initgroups_dyn: glibc walks the whole group database instead")
    if not m.users:
        return CheckResult("skip", "no manifest users to ask for")
    users = [[u.name, u.gid] for u in m.users]
    value, bad = ctx.direct("initgroups", "initgroups_dyn", users=users)
    if bad:
        return bad
    problems: list[str] = []
    for answer, user in zip(value["users"], m.users, strict=True):
        want = sorted(set(m.gids_of(user)) - {user.gid})
        for variant, slots in (("size1", 1), ("size256", 256)):
            problems += judge_call(user.name, slots, answer[variant], want, user.gid)
    details = {"answers": value["users"]}
    if problems:
        return judged_by_callers(ctx, problems, details)
    big = max(m.groups, key=lambda g: len(g.members), default=None)
    if big and len(big.members) >= BIG_GROUP:
        covered = f"incl. {big.name} with {len(big.members)} members"
    else:
        covered = f"the manifest has no group with >= {BIG_GROUP} members, so big groups were not exercised"
    grown = sum(1 for a in value["users"] if a["size1"]["grown"])
    return CheckResult(
        "pass",
        f"{len(users)} users: memberships as declared ({covered}); "
        f"the 1-slot array was grown correctly {grown} time(s)",
        details,
    )


def judge_call(user: str, slots: int, got: dict, want: list[int], primary: int) -> list[str]:
    call = f"initgroups_dyn({user!r}) with a {slots}-slot array"
    if got["start"] > got["size"]:
        return [
            f"{call} wrote {got['start'] - got['size']} gid(s) past the array's end instead of growing it "
            f"(*start {got['start']} > *size {got['size']}; realloc *groupsp and raise *size)"
        ]
    if got["slots"] is not None and got["size"] > got["slots"]:
        return [
            f"{call} raised *size to {got['size']} but the array holds {got['slots']} slots: "
            "it grew the count without realloc'ing *groupsp"
        ]
    if got["status"] not in ("SUCCESS", "NOTFOUND") or (got["status"] == "NOTFOUND" and want):
        return [f"{call} returned {got['status']} (errno {got['errno']})"]
    if got["groups"] is None:
        return [f"{call} left an unreadable array ({got['start']} entries)"]
    listed = [g for g in got["groups"] if g != primary]  # glibc tolerates the skipped primary group
    problems = []
    twice = sorted(g for g, n in Counter(listed).items() if n > 1)
    if twice:
        problems.append(f"{call} lists gid(s) {twice[:5]} more than once")
    if sorted(set(listed)) != want:
        missing = sorted(set(want) - set(listed))
        extra = sorted(set(listed) - set(want))
        problems.append(
            f"{call} returned the wrong memberships"
            + (f": misses gid(s) {missing[:6]}" if missing else "")
            + (f"; adds gid(s) {extra[:6]}" if extra else "")
        )
    return problems


def judged_by_callers(ctx: Context, problems: list[str], details: dict) -> CheckResult:
    """A module that only answers UNAVAIL (its backend is down in this target: nss-systemd
    without systemd-userdbd) is judged by what glibc's callers then see: glibc moves on to
    the next source, so `id -G USER` decides, for the supplementary groups the manifest
    declares (the primary group is always there, so it tells nothing)."""
    m = ctx.module
    answers = [a[v] for a in details["answers"] for v in ("size1", "size256")]
    written_past = any("past the array" in p or "without realloc" in p for p in problems)
    only_unavail = {a["status"] for a in answers} - {"SUCCESS", "NOTFOUND"} == {"UNAVAIL"}
    if written_past or not only_unavail:
        return CheckResult(
            "fail",
            summary(problems),
            details,
            impact="sshd, su and login call initgroups at every login: "
            + ("heap corruption in the caller" if written_past else "the user gets the wrong groups"),
            reproduce=f"id -G {m.users[0].name}",
        )
    down = next((d for a in answers if (d := backend_down("UNAVAIL", a["errno"]))), "")
    wanted = {u.name: sorted(set(m.gids_of(u)) - {u.gid}) for u in m.users}
    if not any(wanted.values()):
        return CheckResult(
            "warn",
            f"{summary(problems)}{down}; not shown either way: the manifest declares no supplementary "
            "membership, and `id -G` always shows the primary group",
            details,
            impact="not shown here: a user's supplementary groups would be lost at login where this module "
            "is their only source",
            reproduce=f"id -G {m.users[0].name}",
        )
    seen = {n: ctx.target.host.run("id -G %s", n) for n in wanted}
    lost = {
        n: sorted(set(want) - {int(g) for g in seen[n].stdout.split() if g.isdigit()})
        for n, want in wanted.items()
        if want
    }
    lost = {n: gids for n, gids in lost.items() if gids}
    details = details | {"id_G": {n: r.stdout.split() for n, r in seen.items()}, "lost": lost}
    if not lost:
        return CheckResult(
            "warn",
            f"{summary(problems)}{down}; glibc's callers still get every declared supplementary "
            f"membership (`id -G` of {len(seen)} users)",
            details,
            impact="none seen: glibc takes UNAVAIL as 'service down' and walks the group listing instead",
            control="`id -G USER` through glibc for every manifest user with a supplementary group",
            reproduce=f"id -G {next(n for n, w in wanted.items() if w)}",
        )
    name, gids = next(iter(lost.items()))
    return CheckResult(
        "fail",
        f"{summary(problems)}{down}; through glibc, `id -G {name}` misses the declared gid(s) {gids}",
        details,
        impact=f"sshd, su and login give {', '.join(lost)} fewer groups than the module's own group "
        "entries list: files and sudo rules for those groups are denied",
        control=f"`getent -s {m.name} group {gids[0]}` lists the group with its members (the module "
        "knows the membership)",
        reproduce=f"id -G {name}; getent -s {m.name} group {gids[0]}",
    )
