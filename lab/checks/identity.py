from __future__ import annotations

import random

from lab.checks.base import CheckResult, Claim, Context, brief, check, verdict

SYS_MAX_DEFAULT = 999  # shadow-utils' SYS_UID_MAX / SYS_GID_MAX when login.defs leaves them commented
CANDIDATES = 8  # unassigned ids offered to the probe per database (it asks the first 3 nobody holds)
WORD = {"passwd": ("user", "uid", "SYS_UID_MAX"), "group": ("group", "gid", "SYS_GID_MAX")}


@check("identity")
def identity(ctx: Context) -> CheckResult:
    """The users and groups the module serves (its answers for the declared names and ids and
    for the files database's own names, and its listing) must not collide with the target's
    files database or with system ids: the same name with another uid, the same uid with
    another name, uid or gid 0 (fail); an id at or below SYS_UID_MAX / SYS_GID_MAX of the
    target's login.defs, or an answer for any id asked (warn).

    With `files` first in nsswitch.conf a colliding entry is half shadowed: `id daemon`
    gets the files entry, while `ls -l` names files of the module's uid after the system
    account, and a network user with a system uid owns that account's files. uid 0 from a
    network module is root on every host that uses it (the directory's admin decides who is
    root): SSSD refuses ids 0 for that reason (min_id = 1; SSSD#1958, an LDAP "root" group
    with gidNumber 0 broke initgroups), and Red Hat's IdM guide tells admins to raise min_id
    to 1000 to keep the directory off the system ids. libnss-unknown answers every uid by
    design, which leaves useradd no free uid ("Can't get unique UID", its README.Debian)."""
    m = ctx.module
    dbs = [db for db in ("passwd", "group") if db in m.databases]
    if not dbs:
        return CheckResult("skip", "the module serves neither passwd nor group")
    present = ctx.elf.entry_points(m.name)
    queries = [q for q in ctx.queries() if q[0] in dbs]
    listings = [db for db in ctx.enumerable() if db in dbs]
    by_id = {"passwd": "getpwuid_r", "group": "getgrgid_r"}
    unassigned = {db: candidates(db) for db in dbs if by_id[db] in present}
    by_name = {"passwd": "getpwnam_r", "group": "getgrnam_r"}
    declared = [u.uid for u in m.users] + [g.gid for g in m.groups]
    value, bad = ctx.direct(
        "identity",
        "identity lookups",
        queries=queries,
        listings=listings,
        unassigned=unassigned,
        declared_ids=declared,
        files_names=[db for db in dbs if by_name[db] in present],
    )
    if bad:
        return bad
    return judge(value, m.name)


def candidates(db: str) -> list[int]:
    """Ids far from any real range, the same every run (a reproducer must find them again)."""
    return random.Random(f"nsslab-identity-{db}").sample(range(3_000_000, 2_000_000_000), CANDIDATES)


def judge(obs: dict, service: str) -> CheckResult:
    """Turns the probe's observations (see lab.probe.direct.identity.identity) into the verdict."""
    claims: list[Claim] = []
    collisions: list[dict] = []
    duplicates: list[str] = []
    sys_max = {db: obs["login_defs"].get(WORD[db][2]) or SYS_MAX_DEFAULT for db in ("passwd", "group")}
    counts = {}
    for db in ("passwd", "group"):
        files = obs["files"].get(db, [])
        names: dict[str, int] = {}
        ids: dict[int, str] = {}
        for e in files:  # libnss_files answers the first line that matches
            names.setdefault(e[0], e[1])
            ids.setdefault(e[1], e[0])
        order = obs.get("nsswitch", {}).get(db, ["files", service])
        files_first = (
            "files" not in order or service not in order or order.index("files") < order.index(service)
        )
        served = unique(obs["served"].get(db, []))
        counts[db] = len(served)
        found = [c for e in served for c in collide(db, e, names, ids, sys_max[db])]
        duplicates += [
            f"{WORD[db][0]} {e['name']}:{e['id']}" for e in served if names.get(e["name"]) == e["id"]
        ]
        collisions += found
        for kind in ("zero", "gid0", "name", "id", "system"):
            chosen = [c for c in found if c["kind"] == kind]
            if chosen:
                claims.append(claim(db, kind, chosen, service, files_first, sys_max[db]))
        tries = obs.get("invented", {}).get(db, [])
        answered = [t for t in tries if t["status"] == "SUCCESS"]
        if tries and len(answered) == len(tries):
            claims.append(invented(db, answered, service))
    details = {
        "served": counts,
        "collisions": collisions,
        "duplicates": duplicates,
        "sys_max": sys_max,
        "files": {db: len(obs["files"].get(db, [])) for db in ("passwd", "group")},
        "invented": obs.get("invented", {}),
        "listed": obs.get("listed", {}),
        "files_asked": obs.get("files_asked", 0),
        "unanswered": obs.get("unanswered", []),
        "nsswitch": obs.get("nsswitch", {}),
        "queries_skipped": obs.get("queries_skipped", 0),
        "cut_short": obs.get("cut_short", []),
    }
    # A slow module gets a sample within the probe's time budgets: the reason says what was left.
    cut = (
        f"; cut short, the module is slow: {'; '.join(details['cut_short'])}" if details["cut_short"] else ""
    )
    found = verdict(claims, details)
    if found:
        found.reason += cut
        return found
    tried = sum(len(t) for t in obs.get("invented", {}).values())
    if not any(counts.values()) and not tried:
        return CheckResult(
            "skip", f"the module answered no lookup and listed nothing: no entry to compare{cut}", details
        )
    dup = f"; {brief(duplicates)} repeat a files entry exactly" if duplicates else ""
    misses = f"; {tried} unassigned id(s) asked directly: NOTFOUND" if tried else ""
    asked = f"; asked for {details['files_asked']} files names" if details["files_asked"] else ""
    skipped = details["queries_skipped"]
    listed = f"; {skipped} declared key(s) seen in the listing, not asked again" if skipped else ""
    return CheckResult(
        "pass",
        f"{counts.get('passwd', 0)} user(s) and {counts.get('group', 0)} group(s) served, none shares a "
        f"name or id with the {details['files']['passwd']} files users / {details['files']['group']} files "
        f"groups, none is 0 or at or below SYS_UID_MAX {sys_max['passwd']} / SYS_GID_MAX {sys_max['group']}"
        f"{asked}{listed}{dup}{misses}{cut}",
        details,
    )


def unique(entries: list[dict]) -> list[dict]:
    seen: dict[tuple, dict] = {}
    for e in entries:
        seen.setdefault((e["name"], e["id"], e.get("gid")), e)
    return list(seen.values())


def collide(db: str, e: dict, names: dict[str, int], ids: dict[int, str], sys_max: int) -> list[dict]:
    """What is wrong with one served entry next to the files database: at most one finding
    about its id, and one about a primary gid 0."""
    out = []
    base = {"db": db, "name": e["name"], "id": e["id"], "how": e["how"]}
    same = names.get(e["name"]) == e["id"]  # the files entry repeated (nss-systemd's root): no new identity
    if e["id"] == 0 and not same:
        out.append({**base, "kind": "zero", "files_name": ids.get(0)})
    elif e["name"] in names and not same:
        out.append({**base, "kind": "name", "files_id": names[e["name"]]})
    elif e["id"] in ids and not same:
        out.append({**base, "kind": "id", "files_name": ids[e["id"]]})
    elif 0 < e["id"] <= sys_max and not same:
        out.append({**base, "kind": "system"})
    if db == "passwd" and e.get("gid") == 0 and not same:
        out.append({**base, "kind": "gid0"})
    return out


def claim(db: str, kind: str, found: list[dict], service: str, files_first: bool, sys_max: int) -> Claim:
    what, idw, limit = WORD[db]
    c = found[0]
    name, num = c["name"], c["id"]
    getent = f"getent -s {service} {db} {name}"
    texts = [describe(x, what, idw) for x in found]
    text = (
        f"{len(found)} served {what}(s) collide: "
        + "; ".join(texts[:3])
        + (f" (+{len(texts) - 3} more)" if len(texts) > 3 else "")
    )
    if kind == "zero":
        impact = (
            f"{idw} 0 is root's: whoever the directory names {name!r} is root on every host that uses the "
            "module"
            if db == "passwd"
            else f"members of {name!r} get gid 0 (root's group) at login, through initgroups, on every host"
        )
        return Claim(
            "fail",
            text,
            impact + " (files answers lookups of id 0 first, so `ls -l` and `ps` still show "
            f"{c.get('files_name') or 'root'})",
            reproduce=f"{getent}; id {name}" if db == "passwd" else getent,
            control=f"`getent -s files {db} 0` is {c.get('files_name') or 'root'}: the module adds a second "
            f"name for {idw} 0",
        )
    if kind == "gid0":
        return Claim(
            "fail",
            f"{what} {name!r} ({c['how']}) has primary gid 0",
            f"{name!r} logs in with root's group as its primary group: every file of group 0 with group "
            "permissions is theirs, on every host",
            reproduce=f"{getent}; id {name}",
            control="`getent -s files group 0` is root's group",
        )
    if kind == "name":
        theirs = c["files_id"]
        if files_first:
            impact = (
                f"files answers first: `id {name}` and a login as {name} get the files {idw} {theirs}, the "
                f"module's {name} ({idw} {num}) is unreachable by name, while `ls -l` shows what {idw} {num} "
                f"owns as {name!r} (by {idw} the module answers)"
            )
        else:
            impact = (
                f"the module answers first: `id {name}` and every service running as {name} get {idw} {num}, "
                f"not the system account's {theirs}"
            )
        return Claim(
            "fail",
            text,
            impact,
            reproduce=f"getent -s files {db} {name}; {getent}; getent {db} {num}",
            control=f"`getent -s files {db} {name}` alone gives {idw} {theirs}: the clash is the module's "
            "entry",
        )
    if kind == "id":
        theirs = c["files_name"]
        login = f"`id {name}` gives {idw}={num}({theirs}): " if files_first else ""
        impact = (
            f"{login}{name} shares {idw} {num} with the system account {theirs!r}, so it owns that account's "
            f"files and processes; `ls -l` and `ps` show {idw} {num} as {theirs!r}"
            if db == "passwd"
            else f"members of {name!r} get gid {num} at login and with it every file of the system group "
            f"{theirs!r}; `ls -l` shows gid {num} as {theirs!r}"
        )
        return Claim(
            "fail",
            text,
            impact,
            reproduce=f"getent -s files {db} {num}; {getent}" + (f"; id {name}" if db == "passwd" else ""),
            control=f"`getent -s files {db} {num}` alone gives {theirs!r}: the clash is the module's entry",
        )
    return Claim(
        "warn",
        f"{len(found)} served {what}(s) in the system range ({idw} <= {limit} {sys_max}): "
        + ", ".join(f"{x['name']} ({idw} {x['id']})" for x in found[:4])
        + (f" (+{len(found) - 4} more)" if len(found) > 4 else ""),
        f"no caller breaks here (useradd asks NSS and skips ids the module answers), but on a host where the "
        f"module is not answering yet, `adduser --system` allocates {idw}s from the same range and the "
        f"directory's {name} then owns that service's files",
        reproduce=f"{getent}; grep -E '^SYS_(U|G)ID_MAX' /etc/login.defs",
    )


def describe(c: dict, what: str, idw: str) -> str:
    who = f"{what} {c['name']!r} ({idw} {c['id']}, from {c['how']})"
    if c["kind"] == "name":
        return f"{who}: files has {c['name']!r} as {idw} {c['files_id']}"
    if c["kind"] == "id":
        return f"{who}: files has {idw} {c['id']} as {c['files_name']!r}"
    if c["kind"] == "zero":
        return f"{who}: {idw} 0 (files: {c.get('files_name')!r})"
    return who


def invented(db: str, answered: list[dict], service: str) -> Claim:
    what, idw, _ = WORD[db]
    shown = ", ".join(f"{t['id']} as {(t['value'] or {}).get('name')!r}" for t in answered[:3])
    return Claim(
        "warn",
        f"{answered[0]['query'].split('(')[0]} answered SUCCESS for {len(answered)} of {len(answered)} "
        f"unassigned {idw}s asked ({shown}): the module invents an entry for any {idw}",
        f"no lookup fails, but every {idw} has an owner: useradd/groupadd find no free {idw} (\"Can't get "
        f'unique {idw.upper()}"), and files of deleted {what}s show made-up names',
        reproduce=f"getent -s {service} {db} {answered[0]['id']}",
        control=f"the {idw}s are in neither the files database, the module's listing nor the manifest",
    )
