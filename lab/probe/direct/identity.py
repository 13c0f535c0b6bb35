"""Probe side of the `identity` check (stdlib only, Python 3.9: runs in the target): what
the module serves (its answers for the declared keys, its listing, a few unassigned ids) next
to the target's own files database and login.defs. Only observations; the check judges.
"""

from __future__ import annotations

from .. import clock
from .. import entrypoints as ep

LISTING_LIMIT = 200_000  # entries per database: a 50,000-user directory of a C module is listed whole
UNASSIGNED_TRIES = 3  # ids nobody serves, asked directly: a module that answers them all invents entries
FILES_BUDGET = 1.0  # seconds for asking the module for every files name (a slow module gets the first ones)
LISTING_BUDGET = 5.0  # seconds per database for get*ent_r: a slow module's listing is cut, and said so
QUERY_BUDGET = 2.0  # seconds for the declared keys the listing did not already give
UNASSIGNED_BUDGET = 3.0  # seconds for the unassigned ids (the worker's own bound is 90 s)


def files_db(path: str, passwd: bool) -> list[list]:
    """[name, id(, gid)] per line of a colon file, as libnss_files reads it (compat +/- lines skipped)."""
    out: list[list] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) < (4 if passwd else 3) or not fields[0] or fields[0][0] in "#+-":
                    continue
                try:
                    out.append([fields[0], int(fields[2])] + ([int(fields[3])] if passwd else []))
                except ValueError:
                    continue
    except OSError:
        pass
    return out


def login_defs(path: str = "/etc/login.defs") -> dict:
    """The uncommented SYS_UID_MAX / SYS_GID_MAX (None when absent: shadow-utils' default applies)."""
    out: dict = {"SYS_UID_MAX": None, "SYS_GID_MAX": None}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] in out:
                    try:
                        out[words[0]] = int(words[1])
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def nsswitch(path: str = "/etc/nsswitch.conf") -> dict:
    out: dict = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                db, sep, rest = line.split("#", 1)[0].partition(":")
                if sep and db.strip() in ("passwd", "group"):
                    out[db.strip()] = rest.split()
    except OSError:
        pass
    return out


def served_entry(db: str, value: dict, how: str) -> dict:
    if db == "passwd":
        return {"name": value["name"], "id": value["uid"], "gid": value["gid"], "how": how}
    return {"name": value["name"], "id": value["gid"], "how": how}


def bounded_listing(module: ep.Module, db: str, budget: float) -> dict:
    """ep.listing within BUDGET seconds; cut_short says why it stopped early."""
    module.setent(db)
    got = ep.listing(module, db, LISTING_LIMIT, deadline=clock.now() + budget)
    module.endent(db)
    cut = ""
    if got.get("timed_out"):
        cut = f"{budget:g} s budget"
    elif got["looped"]:
        last = got["names"][-1] if got["names"] else None
        cut = (
            f"limit {LISTING_LIMIT}"
            if len(got["names"]) >= LISTING_LIMIT
            else f"{last!r} listed {ep.LOOP} times"
        )
    return {"entries": got["entries"], "cut_short": cut}


def identity(module: ep.Module, spec: dict) -> dict:
    """The entries the module serves: its answers for the declared names and ids, and its
    listing; then a few ids that neither files, the listing nor the manifest hold."""
    files = {"passwd": files_db("/etc/passwd", True), "group": files_db("/etc/group", False)}
    served: dict = {"passwd": [], "group": []}
    unanswered: list[str] = []
    cut_short: list[str] = []
    # The listing first: a declared key it already gave is not asked again (the lookups are
    # compared with the listing by other checks), which halves the calls to a slow module.
    listed: dict = {}
    for db in spec.get("listings", []):
        got = bounded_listing(module, db, spec.get("listing_budget", LISTING_BUDGET))
        listed[db] = len(got["entries"])
        if got["cut_short"]:
            cut_short.append(f"{ep.DATABASES[db][2][1]}() after {listed[db]} entries ({got['cut_short']})")
        served[db] += [served_entry(db, e, f"{ep.DATABASES[db][2][1]}()") for e in got["entries"]]
    known = {db: ({e["name"] for e in served[db]}, {e["id"] for e in served[db]}) for db in served}
    budget = spec.get("query_budget", QUERY_BUDGET)
    skipped, deadline = 0, clock.now() + budget
    queries = spec.get("queries", [])
    for n, (db, by, key) in enumerate(queries):
        if db in known and key in known[db][0 if by == "name" else 1]:
            skipped += 1
            continue
        if clock.now() > deadline:
            cut_short.append(f"{len(queries) - n} declared key(s) not asked after {budget:g} s")
            break
        got = module.sized(db, by, key)
        how = f"{ep.DATABASES[db][1][by]}({key!r})"
        if got.status == 1 and got.value:
            served[db].append(served_entry(db, got.value, how))
        else:
            unanswered.append(f"{how}: {got.name}")
    # The files database's own names, asked of the module: one that answers "root" or "daemon"
    # serves them, declared or not. By name only: an id lookup of a module that invents entries
    # echoes any id back (nss-unknown's uid-0), which the unassigned ids below already show.
    budget = spec.get("files_budget", FILES_BUDGET)
    asked, deadline = 0, clock.now() + budget
    names = [(db, e) for db in spec.get("files_names", []) for e in sorted(files[db], key=lambda e: e[1])]
    for db, entry in names:  # system accounts first
        if clock.now() > deadline:
            cut_short.append(f"{asked} of {len(names)} files names asked in {budget:g} s")
            break
        got = module.sized(db, "name", entry[0])
        asked += 1
        if got.status == 1 and got.value:
            served[db].append(served_entry(db, got.value, f"{ep.DATABASES[db][1]['name']}({entry[0]!r})"))
    invented: dict = {}
    budget = spec.get("unassigned_budget", UNASSIGNED_BUDGET)
    deadline = clock.now() + budget
    for db in spec.get("unassigned", {}):
        fn = ep.DATABASES[db][1]["id"]
        if module.function(fn) is None:
            continue
        taken = {e[1] for e in files[db]} | {e["id"] for e in served[db]} | set(spec.get("declared_ids", []))
        tries = [i for i in spec["unassigned"][db] if i not in taken][:UNASSIGNED_TRIES]
        invented[db] = []
        for n, key in enumerate(tries):
            if clock.now() > deadline:
                cut_short.append(f"{fn}: {n} of {len(tries)} unassigned ids asked in {budget:g} s")
                break
            got = module.sized(db, "id", key)
            invented[db].append({"query": f"{fn}({key})", "id": key, "status": got.name, "value": got.value})
    return {
        "files": files,
        "login_defs": login_defs(),
        "nsswitch": nsswitch(),
        "served": served,
        "listed": listed,
        "files_asked": asked,
        "queries_skipped": skipped,
        "cut_short": cut_short,
        "unanswered": unanswered,
        "invented": invented,
    }


TESTS = {"identity": identity}
