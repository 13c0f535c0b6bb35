"""result-contract's judgment on recorded-shape probe observations, both directions."""

from __future__ import annotations

import copy

from lab.checks.result_contract import confirm, judge

LIB, SERVICE = "/usr/lib/x86_64-linux-gnu/libnss_t.so.2", "t"
WHERE_BSS = {"region": f"{LIB} (.bss)", "perms": "rw-p", "writable": True, "offset": 64}
WHERE_RO = {"region": LIB, "perms": "r--p", "writable": False, "offset": 12}


def passwd(name: str, **fields: dict) -> dict:
    layout = {f: {"offset": 8 * i} for i, f in enumerate(("name", "passwd", "gecos", "home", "shell"))}
    layout.update(fields)
    return {
        "query": f"getpwnam_r({name!r})",
        "key": ["passwd", "name", name],
        "status": "SUCCESS",
        "errno": 0,
        "size": 1024,
        "fields": layout,
        "strays": [[f, v["address"]] for f, v in fields.items() if "outside" in v],
        "value": {"name": name},
    }


def group(name: str, **members: object) -> dict:
    shape = {"offset": 16, "aligned": True, "inside": True, "count": 2, "terminated": True}
    shape.update(members)
    return {
        "query": f"getgrnam_r({name!r})",
        "key": ["group", "name", name],
        "status": "SUCCESS",
        "errno": 0,
        "size": 1024,
        "fields": {"name": {"offset": 0}, "passwd": {"offset": 7}},
        "members": {**shape, "members_outside": [], "members_outside_count": 0},
        "strays": [],
        "value": {"name": name},
    }


CLEAN = {
    "answers": [passwd("pyama"), passwd("taro"), group("pepabo")],
    "overwritten": [],
    "reused": [{"query": "getpwnam_r('pyama')", "key": ["passwd", "name", "pyama"], "same": True}],
    "listings": {"passwd": {"entries": [], "overwritten": [], "overwritten_count": 0}},
    "cut_short": False,
    "width": 8,
}


def run(value: dict, machine: str = "EM_X86_64") -> tuple[list, dict]:
    claims, details = judge(value, machine, LIB, SERVICE)
    details.pop("_dirty")
    details.pop("_null")
    return claims, details


def test_a_clean_answer_has_nothing_to_say():
    claims, details = run(CLEAN)
    assert claims == [] and details["causes"] == []
    assert (details["checked"], details["lookups"], details["reused"]) == (3, 3, 1)


def test_a_null_gecos_warns_with_a_reproducer_that_prints_the_pointer():
    value = copy.deepcopy(CLEAN)
    value["answers"][1] = passwd("taro", gecos={"null": True})
    claims, details = run(value)
    assert details["causes"] == ["null-field"]
    assert claims[0].status == "warn" and "pw_gecos NULL" in claims[0].text  # no caller broken here
    assert "php-src#22426" in claims[0].impact and claims[0].control is None
    assert "_nss_t_getpwnam_r(b'taro'" in claims[0].reproduce and "r[3]" in claims[0].reproduce


def test_a_static_pointer_that_another_thread_rewrites_fails():
    value = copy.deepcopy(CLEAN)
    value["answers"][0] = passwd(
        "pyama", home={"outside": WHERE_BSS, "address": 0x7F00, "value": "/home/pyama"}
    )
    value["overwritten"] = [
        {
            "query": "getpwnam_r('pyama')",
            "by": "getpwnam_r('taro')",
            "changed": {"home": {"before": "/home/pyama", "after": "/home/taro"}},
        }
    ]
    claims, details = run(value)
    assert details["causes"] == ["static-pointer"]
    assert claims[0].status == "fail" and "'/home/pyama' became '/home/taro'" in claims[0].text
    assert "threading" in claims[0].reproduce and "r[4]" in claims[0].reproduce


def test_a_pointer_into_read_only_data_that_stays_put_is_a_warning_naming_where():
    value = copy.deepcopy(CLEAN)
    value["answers"][2]["fields"]["passwd"] = {"outside": WHERE_RO, "address": 0x7E00, "value": "x"}
    value["overwritten"] = [{"query": "getgrnam_r('pepabo')", "by": ["getgrnam_r('ops')"], "changed": {}}]
    claims, details = run(value)
    assert details["causes"] == ["outside-pointer"]
    assert claims[0].status == "warn" and f"into {LIB} (r--p, read-only)" in claims[0].text
    assert "getgrnam_r('ops')" in claims[0].text


def test_a_static_pointer_rewritten_by_the_next_listed_entry_fails_with_a_listing_reproducer():
    value = copy.deepcopy(CLEAN)
    entry = passwd("taro", home={"outside": WHERE_BSS, "address": 0x7F00, "value": "/home/taro"})
    value["listings"]["passwd"] = {
        "entries": [{**entry, "name": "taro"}],
        "overwritten": [{"entry": "taro", "changed": {"home": {"before": "/home/taro", "after": "/home/x"}}}],
        "overwritten_count": 1,
    }
    claims, details = run(value)
    assert details["causes"] == ["static-pointer"] and claims[0].status == "fail"
    assert "_nss_t_getpwent_r" in claims[0].reproduce and "b'taro'" in claims[0].reproduce


def test_unaligned_members_warn_even_where_loads_trap():
    value = copy.deepcopy(CLEAN)
    value["answers"][2] = group("pepabo", offset=13, aligned=False)
    claims, _ = run(value, "EM_X86_64")
    assert [c.status for c in claims] == ["warn"] and "not pointer-aligned" in claims[0].text
    claims, _ = run(value, "EM_SPARCV9")  # nothing crashed in the lab: the trap is inferred, not seen
    assert [c.status for c in claims] == ["warn"] and "SIGBUS" in claims[0].impact


def test_members_that_run_out_of_the_buffer_fail_only_when_words_beyond_it_are_read():
    value = copy.deepcopy(CLEAN)
    value["answers"][2] = group("pepabo", terminated=False, count=127)
    claims, details = run(value)
    assert details["causes"] == ["members-unterminated"] and "after 127 pointers" in claims[0].text
    assert claims[0].status == "warn" and claims[0].reproduce == "getent -s t group pepabo"
    value["answers"][2] = group("pepabo", terminated=False, count=127, beyond=3)
    claims, _ = run(value)
    assert claims[0].status == "fail" and "3 more non-NULL pointers" in claims[0].text
    assert claims[0].reproduce == "getent -s t group pepabo" and claims[0].control


WRONG = {
    "query": "getpwnam_r('hanako')",
    "key": ["passwd", "name", "hanako"],
    "status": "SUCCESS",
    "got": {
        "name": "hanako",
        "uid": 10303,
        "gid": 10303,
        "gecos": "r/home/hanako",
        "home": "/home/hanako",
        "shell": "/bin/sh",
    },
    "want": {
        "name": "hanako",
        "uid": 10303,
        "gid": 10303,
        "gecos": "",
        "home": "/home/hanako",
        "shell": "/bin/sh",
    },
    "control_same": True,
    "previous": ["passwd", "name", "taro"],
    "size": 1024,
}


def dirty(r: dict) -> tuple[list, dict, list]:
    value = copy.deepcopy(CLEAN)
    value["reused"] = [r]
    claims, details = judge(value, "EM_X86_64", LIB, SERVICE)
    return claims, details, details.pop("_dirty")


def test_a_dirty_buffer_answer_fails_only_when_glibc_prints_it():
    claims, details, pairs = dirty(WRONG)
    assert details["causes"] == ["dirty-buffer"] and claims[0].status == "warn"  # before getent ran
    assert "gecos 'r/home/hanako'" in claims[0].text and "holding getpwnam_r('taro')" in claims[0].text
    assert claims[0].reproduce == "getent -s t passwd taro hanako"
    confirm(*pairs[0], "hanako:x:10303:10303:r/home/hanako:/home/hanako:/bin/sh")
    assert claims[0].status == "fail" and "gecos '' where getent printed 'r/home/hanako'" in claims[0].control
    claims, _, pairs = dirty(WRONG)
    confirm(*pairs[0], "hanako:x:10303:10303::/home/hanako:/bin/sh")  # glibc's getent got it right
    assert claims[0].status == "warn"


def test_a_first_call_into_a_dirty_buffer_has_no_getent_reproducer_and_warns():
    claims, _, pairs = dirty({**WRONG, "previous": None})
    assert claims[0].status == "warn" and claims[0].reproduce is None and "filled with 0xA5" in claims[0].text
    confirm(*pairs[0], None)
    assert claims[0].status == "warn"


def test_answers_that_change_without_the_buffer_are_not_claimed():
    claims, details, pairs = dirty({**WRONG, "control_same": False})
    confirm(*pairs[0], "hanako:x:10303:10303:r/home/hanako:/home/hanako:/bin/sh")
    assert [c.status for c in claims] == ["warn"] and details["causes"] == ["unstable-answer"]
