"""keys' judgment on recorded-shape probe answers, both directions."""

from __future__ import annotations

from lab.checks.keys import judge, longer

HIT = [{"query": "getpwnam_r('pyama')", "status": "SUCCESS", "seconds": 0.0002}]


def key(label: str, kind: str, status: str = "NOTFOUND", seconds: float = 0.0003, **kw) -> dict:
    fn = "getpwuid_r" if kind == "id" else "getpwnam_r"
    return {
        "index": 0,
        "db": "passwd",
        "by": "id" if kind == "id" else "name",
        "label": label,
        "kind": kind,
        "query": f"{fn}({label})",
        "status": status,
        "errno": 2,
        "seconds": seconds,
        **kw,
    }


def statuses(results: list[dict], hits: list[dict] = HIT) -> list[str]:
    return [c.status for c in judge(results, hits, "t", "/lib/libnss_t.so.2")[0]]


def test_misses_of_hostile_keys_pass():
    results = [
        key("'PYAMA'", "case", key="PYAMA"),
        key("'*'", "wildcard", key="*"),
        key("'a' * 65536", "long"),
    ]
    claims, details = judge(results, HIT, "t", "/lib/libnss_t.so.2")
    assert claims == [] and details["hit_ms"] == 0.2


def test_a_case_variant_answered_with_the_stored_name_fails():
    results = [key("'PYAMA'", "case", "SUCCESS", key="PYAMA", name="pyama", same=False)]
    claims, _ = judge(results, HIT, "t", "/lib/libnss_t.so.2")
    assert [c.status for c in claims] == ["fail"] and "PAM user mismatch" in claims[0].impact
    assert claims[0].reproduce == "getent -s t passwd PYAMA"


def test_a_module_that_answers_every_miss_is_not_blamed_for_hostile_keys():
    # statuslab: the plain unknown name is answered too, so this is status-codes' finding
    results = [
        key("'PYAMA'", "case", "SUCCESS", key="PYAMA", name="pyama", same=False),
        key(
            "'nsslab-no-such-entry'", "miss", "SUCCESS", key="nsslab-no-such-entry", name="pyama", same=False
        ),
    ]
    claims, _ = judge(results, HIT, "t", "/lib/libnss_t.so.2")
    assert [c.status for c in claims] == ["warn"] and "status-codes" in claims[0].impact


def test_an_entry_that_really_has_the_name_is_no_finding():
    assert statuses([key("'Admin'", "case", "SUCCESS", key="Admin", name="Admin", same=True)]) == []


def test_a_wildcard_answered_fails_and_names_the_home_it_expands_to():
    claims, _ = judge([key("'*'", "wildcard", "SUCCESS", key="*", name="pyama", same=False)], HIT, "t", "x")
    assert claims[0].status == "fail" and "~*" in claims[0].impact


def test_a_slow_miss_fails_next_to_a_fast_hit_only_when_slow_again():
    claims, details = judge([key("'*'", "wildcard", seconds=3.0, key="*", again_seconds=2.9)], HIT, "t", "x")
    assert [c.status for c in claims] == ["fail"] and "took 3.00 s" in claims[0].text
    assert "where a hit of a real name takes 0.2 ms" in claims[0].text and "2.90 s" in claims[0].control
    assert details["slowest_miss"] == 3.0
    # fast the second time: a cold start (first connection, cache fill) is not ruled out
    claims, _ = judge([key("'*'", "wildcard", seconds=3.0, key="*", again_seconds=0.001)], HIT, "t", "x")
    assert [c.status for c in claims] == ["warn"] and "cold start" in claims[0].text
    claims, _ = judge([key("'*'", "wildcard", seconds=3.0, key="*")], HIT, "t", "x")  # never asked again
    assert [c.status for c in claims] == ["warn"]
    # another slow miss, asked twice, was slow both times: this one is no cold start either
    both = [
        key("'*'", "wildcard", seconds=3.0, key="*", again_seconds=3.0),
        key("'a*'", "wildcard", seconds=3.0),
    ]
    assert statuses(both) == ["fail", "fail"]


def test_a_slow_miss_next_to_the_plain_miss_says_so():
    results = [
        key("'*'", "wildcard", seconds=3.0, key="*", again_seconds=3.0),
        key("'nsslab-no-such-entry'", "miss", seconds=0.001, key="nsslab-no-such-entry"),
    ]
    claims, _ = judge(results, [], "t", "x")
    assert "where the plain miss 'nsslab-no-such-entry' takes 1.0 ms" in claims[0].text


def test_the_answered_another_name_control_only_when_the_plain_miss_was_notfound():
    case = key("'PYAMA'", "case", "SUCCESS", key="PYAMA", name="pyama", same=False)
    claims, _ = judge([case], HIT, "t", "x")
    assert claims[0].status == "fail" and claims[0].control is None  # no plain miss asked: none claimed
    claims, _ = judge(
        [case, key("'nsslab-no-such-entry'", "miss", key="nsslab-no-such-entry")], HIT, "t", "x"
    )
    assert claims[0].control == "the plain unknown name 'nsslab-no-such-entry' came back NOTFOUND from passwd"


def test_the_probe_asks_the_first_slow_miss_once_more():
    import time

    from lab.probe import entrypoints
    from lab.probe.direct import contract as probe_contract

    class Slow:
        note = staticmethod(lambda text: None)

        def sized(self, db, by, key):
            time.sleep(0.05 if key in ("*", "a*") else 0)
            return entrypoints.Answer(0, 2, None, 0)

    spec = {"keys": [{"db": "passwd", "by": "name", "key": k} for k in ("PYAMA", "*", "a*")], "slow": 0.04}
    got = probe_contract.keys(Slow(), spec)
    assert [("again_seconds" in k) for k in got["keys"]] == [False, True, False]
    assert got["keys"][1]["again_seconds"] >= 0.04


def test_a_slow_module_is_not_flagged_when_its_misses_cost_what_its_hits_do():
    slow_hit = [{"query": "getpwnam_r('pyama')", "status": "SUCCESS", "seconds": 0.3}]
    assert statuses([key("'*'", "wildcard", seconds=0.31, key="*")], slow_hit) == []
    # past the bound, yet a hit takes as long: every call is slow, not the miss
    assert statuses([key("'*'", "wildcard", seconds=1.2, key="*")], [{**slow_hit[0], "seconds": 1.1}]) == []


def test_no_answer_in_time_fails():
    claims, _ = judge([key("'*'", "wildcard", "no answer", seconds=5.0, key="*")], HIT, "t", "x")
    assert claims[0].status == "fail" and "no answer within 5.0 s" in claims[0].text


def test_ids_0_is_not_judged_here_but_minus_one_answered_warns():
    assert statuses([key("0", "id", "SUCCESS", key=0, name="root", same=False)]) == []
    assert statuses([key("4294967295", "id", "SUCCESS", key=4294967295, name="nobody", same=False)]) == [
        "warn"
    ]


def test_unavail_for_a_hostile_key_warns():
    assert statuses([key("'a:x'", "colon", "UNAVAIL", key="a:x", errno=111)]) == ["warn"]


def test_keys_left_out_after_a_crash_are_not_judged():
    assert statuses([{**key("'a' * 1048576", "long"), "status": "not asked"}]) == []


def test_a_crashing_length_takes_the_longer_keys_of_its_entry_point_with_it():
    spec = [
        {"db": "passwd", "by": "name", "key": "a", "repeat": 65536},
        {"db": "passwd", "by": "name", "key": "a", "repeat": 1 << 20},
        {"db": "group", "by": "name", "key": "a", "repeat": 1 << 20},
        {"db": "passwd", "by": "name", "key": "a", "repeat": 256},
        {"db": "passwd", "by": "name", "key": "*"},
    ]
    assert longer(spec, 0) == [1]
    assert longer(spec, 4) == []


def test_the_probe_bounds_a_key_that_never_answers_and_stops_there(monkeypatch):
    import time

    from lab.probe import entrypoints
    from lab.probe.direct import contract as probe_contract

    class Stuck:  # a module whose lookup of '*' outlives the bound; the rest answer at once
        note = staticmethod(lambda text: None)

        def sized(self, db, by, key):
            if key == "*":
                time.sleep(0.5)
            return entrypoints.Answer(0, 2, None, 0)

    monkeypatch.setattr(probe_contract, "KEY_LIMIT", 0.1)
    spec = {"keys": [{"db": "passwd", "by": "name", "key": k} for k in ("PYAMA", "*", "a*")], "budget": 2}
    got = probe_contract.keys(Stuck(), spec)
    assert [k["status"] for k in got["keys"]] == ["NOTFOUND", "no answer"] and got["stuck"] == 1
