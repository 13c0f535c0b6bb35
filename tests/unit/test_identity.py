"""identity's judgment on fixture observations (the shape lab.probe.direct.identity.identity returns)."""

from __future__ import annotations

import time

from lab.checks.identity import candidates, judge
from lab.probe.direct.identity import identity as probe_identity
from lab.probe.entrypoints import Answer

FILES = {
    "passwd": [["root", 0, 0], ["daemon", 1, 1], ["nobody", 65534, 65534], ["cloud", 1000, 1000]],
    "group": [["root", 0], ["daemon", 1], ["staff", 50], ["nogroup", 65534]],
}
NOTFOUND = {
    "passwd": [
        {"query": f"getpwuid_r({i})", "id": i, "status": "NOTFOUND", "value": None} for i in (7, 8, 9)
    ],
    "group": [{"query": f"getgrgid_r({i})", "id": i, "status": "NOTFOUND", "value": None} for i in (7, 8, 9)],
}


def obs(users=(), groups=(), invented=None, defs=None, order=None) -> dict:
    return {
        "files": FILES,
        "login_defs": defs or {"SYS_UID_MAX": None, "SYS_GID_MAX": None},
        "nsswitch": order or {"passwd": ["files", "mod"], "group": ["files", "mod"]},
        "served": {
            "passwd": [{"name": n, "id": u, "gid": g, "how": f"getpwnam_r({n!r})"} for n, u, g in users],
            "group": [{"name": n, "id": g, "how": f"getgrnam_r({n!r})"} for n, g in groups],
        },
        "listed": {},
        "unanswered": [],
        "invented": NOTFOUND if invented is None else invented,
    }


def kinds(result) -> list[tuple]:
    return [(c["db"], c["kind"], c["name"], c["id"]) for c in result.details["collisions"]]


def test_entries_apart_from_files_and_system_ids_pass_with_the_figures():
    r = judge(obs([("pyama", 10301, 2000)], [("pepabo", 2000)]), "mod")
    assert r.status == "pass", r.reason
    assert r.details["collisions"] == [] and r.details["served"] == {"passwd": 1, "group": 1}
    assert "6 unassigned id(s)" in r.reason and "SYS_UID_MAX 999" in r.reason


def test_a_files_name_with_another_uid_fails_saying_which_caller_sees_what():
    r = judge(obs([("daemon", 40001, 2000)]), "mod")
    assert r.status == "fail"
    assert kinds(r) == [("passwd", "name", "daemon", 40001)] and r.details["collisions"][0]["files_id"] == 1
    assert "`id daemon`" in r.impact and "files uid 1" in r.impact and "ls -l" in r.impact
    assert r.reproduce.startswith("getent -s files passwd daemon") and "uid 1" in r.control


def test_with_the_module_first_the_impact_says_the_module_wins():
    r = judge(obs([("daemon", 40001, 2000)], order={"passwd": ["mod", "files"]}), "mod")
    assert r.status == "fail" and "the module answers first" in r.impact


def test_a_files_uid_with_another_name_fails():
    r = judge(obs([("eve", 1, 2000)]), "mod")
    assert r.status == "fail" and kinds(r) == [("passwd", "id", "eve", 1)]
    assert r.details["collisions"][0]["files_name"] == "daemon" and "uid=1(daemon)" in r.impact


def test_uid_0_fails_as_root_on_every_host_but_files_root_repeated_is_no_collision():
    r = judge(obs([("toor", 0, 2000)]), "mod")
    assert r.status == "fail" and kinds(r) == [("passwd", "zero", "toor", 0)]
    assert "root on every host" in r.impact
    same = judge(obs([("root", 0, 0), ("nobody", 65534, 65534)], [("nogroup", 65534)]), "mod")  # nss-systemd
    assert same.status == "pass", same.reason
    assert same.details["duplicates"] == ["user root:0", "user nobody:65534", "group nogroup:65534"]


def test_a_primary_gid_0_fails():
    r = judge(obs([("ops", 20001, 0)]), "mod")
    assert r.status == "fail" and kinds(r) == [("passwd", "gid0", "ops", 20001)]


def test_groups_collide_by_name_by_gid_and_at_gid_0():
    r = judge(obs(groups=[("staff", 20050), ("wheel2", 50), ("admins", 0)]), "mod")
    assert r.status == "fail"
    assert sorted(kinds(r)) == [
        ("group", "id", "wheel2", 50),
        ("group", "name", "staff", 20050),
        ("group", "zero", "admins", 0),
    ]
    assert "gid 0" in r.impact  # the worst leads


def test_the_system_range_warns_and_login_defs_moves_it():
    r = judge(obs([("sysid", 500, 2000)]), "mod")
    assert r.status == "warn" and kinds(r) == [("passwd", "system", "sysid", 500)]
    assert "no caller breaks here" in r.impact
    moved = judge(obs([("sysid", 500, 2000)], defs={"SYS_UID_MAX": 499, "SYS_GID_MAX": 499}), "mod")
    assert moved.status == "pass", moved.reason
    assert moved.details["sys_max"] == {"passwd": 499, "group": 499}


def test_answers_for_every_unassigned_id_warn_and_some_answers_do_not():
    made_up = {
        "passwd": [
            {
                "query": f"getpwuid_r({i})",
                "id": i,
                "status": "SUCCESS",
                "value": {"name": f"uid-{i}", "uid": i},
            }
            for i in (7, 8, 9)
        ]
    }
    r = judge(obs([("uid-21101", 21101, 65534)], invented=made_up), "unknown")
    assert r.status == "warn" and "3 of 3 unassigned uids" in r.reason and "'uid-7'" in r.reason
    assert r.reproduce == "getent -s unknown passwd 7"
    some = {
        "passwd": [made_up["passwd"][0], *NOTFOUND["passwd"][1:]]
    }  # a real entry that happens to be there
    assert judge(obs([("pyama", 10301, 2000)], invented=some), "mod").status == "pass"


def test_fail_leads_over_warn_and_every_finding_stays_in_details():
    r = judge(obs([("sysid", 500, 2000), ("eve", 1, 2000)]), "mod")
    assert r.status == "fail" and "eve" in r.reason and "sysid" not in r.reason  # the reason: fails only
    assert [c["kind"] for c in r.details["collisions"]] == ["system", "id"]


def test_nothing_served_and_nothing_asked_is_a_skip():
    assert judge(obs(invented={}), "mod").status == "skip"


def test_the_unassigned_candidates_are_the_same_every_run():
    assert candidates("passwd") == candidates("passwd") != candidates("group")
    assert all(i >= 3_000_000 for i in candidates("passwd"))


def test_a_cut_short_sweep_is_said_in_the_reason():
    o = {**obs([("pyama", 10301, 2000)]), "cut_short": ["getpwent_r() after 2 entries (0.1 s budget)"]}
    r = judge(o, "mod")
    assert r.status == "pass" and "cut short" in r.reason and "after 2 entries" in r.reason
    assert r.details["cut_short"] == o["cut_short"]
    r = judge({**o, "served": {"passwd": [{"name": "daemon", "id": 40001, "gid": 1, "how": "x"}]}}, "mod")
    assert r.status == "fail" and "after 2 entries" in r.reason


SLOW_USERS = [{"name": f"u{i}", "uid": 10000 + i, "gid": 100} for i in range(50)]


class SlowModule:
    """A module whose every call takes DELAY seconds (nss_modules/slowlab's 300 ms, scaled down)."""

    DELAY = 0.02
    USERS = SLOW_USERS

    def __init__(self) -> None:
        self.at = 0

    def sized(self, db, by, key):
        time.sleep(self.DELAY)
        hit = [u for u in self.USERS if u["name" if by == "name" else "uid"] == key]
        return Answer(1, 0, hit[0], 0) if hit else Answer(0, 2, None, 0)

    def setent(self, db):
        self.at = 0
        return 1

    def endent(self, db):
        return 1

    def getent(self, db, size=0):
        time.sleep(self.DELAY)
        if self.at >= len(self.USERS):
            return Answer(0, 2, None, 0)
        self.at += 1
        return Answer(1, 0, self.USERS[self.at - 1], 0)

    def function(self, name):
        return object()


def test_a_slow_module_gets_a_bounded_sample_not_a_worker_timeout():
    spec = {
        "queries": [["passwd", "name", "u1"], ["passwd", "id", 10001], ["passwd", "name", "ghost"]],
        "listings": ["passwd"],
        "unassigned": {"passwd": [5_000_001, 5_000_002, 5_000_003]},
        "files_names": [],
        "listing_budget": 0.2,
        "query_budget": 0.2,
        "unassigned_budget": 0.2,
    }
    start = time.monotonic()
    got = probe_identity(SlowModule(), spec)
    assert time.monotonic() - start < 1.5  # 50 entries + 6 lookups would take 1.1 s unbounded
    assert 0 < got["listed"]["passwd"] < 50 and "after" in got["cut_short"][0]
    assert got["queries_skipped"] == 2  # u1 and 10001 came with the listing
    assert got["unanswered"] == ["getpwnam_r('ghost'): NOTFOUND"]
    assert [t["status"] for t in got["invented"]["passwd"]] == ["NOTFOUND"] * 3
