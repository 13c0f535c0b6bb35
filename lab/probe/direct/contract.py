"""Probe side of the result-contract and keys checks (lab/checks/result_contract.py,
lab/checks/keys.py): observations only, the checks judge them.

Stdlib only, Python 3.9 (the target may be Debian 11). Loaded by entrypoints.run().
"""

from __future__ import annotations

import ctypes
import statistics
import sys
import threading
import time

from .. import clock
from .. import entrypoints as ep

WIDTH = ctypes.sizeof(ctypes.c_void_p)
# the string fields of each record, by the names entrypoints' structs give them
STRINGS = {
    "passwd": ("name", "passwd", "gecos", "home", "shell"),
    "group": ("name", "passwd"),
    "shadow": ("name", "password"),
}
LISTED = 200  # entries of a listing whose pointers are checked (a directory has 50,000)
KEY_LIMIT = 5.0  # seconds one hostile key may take before it counts as no answer
PATTERN = 0xA5  # what a buffer holds before its first use: not zeroed, like malloc's


# ---------------------------------------------------------------- memory map


def mappings() -> list[tuple[int, int, str, str]]:
    """(start, end, permissions, path) of every mapping of this process."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            out.append((start, end, parts[1], parts[5].strip() if len(parts) > 5 else ""))
    return out


def where(addr: int, maps: list[tuple[int, int, str, str]]) -> dict:
    """What a pointer outside the caller's buffer points into: a library's data (its
    writable or read-only part, or the anonymous .bss right after it), the heap, a stack."""
    previous = None
    for start, end, perms, path in maps:
        if start <= addr < end:
            region = path or "anonymous"
            if not path and previous and previous[1] == start and previous[3].startswith("/"):
                region = f"{previous[3]} (.bss)"  # zero-filled static data follows the library's
            writable = "w" in perms
            return {"region": region, "perms": perms, "writable": writable, "offset": addr - start}
        previous = (start, end, perms, path)
    return {"region": "unmapped", "perms": "", "writable": False, "offset": 0}


# ---------------------------------------------------------------- one call into a given buffer


def call_into(module, db: str, by: str | None, key: object, raw, size: int) -> tuple[int, int, object]:
    """The entry point with the caller's own buffer RAW of SIZE bytes, as it is (not cleaned):
    (status, errno, record). BY None: the listing's get*ent_r."""
    struct, lookups, trio = ep.DATABASES[db]
    fn_name = lookups[by] if by else trio[1]
    record, err = struct(), ctypes.c_int(ep.ERRNO_SENTINEL)
    args: list = []
    if by:
        args.append(ctypes.c_uint(key) if isinstance(key, int) else ctypes.c_char_p(str(key).encode()))
    args += [ctypes.byref(record), ctypes.c_void_p(ctypes.addressof(raw)), ctypes.c_size_t(size)]
    module.note(f"{fn_name}({'' if by is None else repr(key)}) into a {size}-byte caller buffer")
    status = module.function(fn_name)(*args, ctypes.byref(err))
    return status, err.value, record


def query_name(db: str, by: str | None, key: object) -> str:
    _, lookups, trio = ep.DATABASES[db]
    return f"{lookups[by]}({key!r})" if by else f"{trio[1]}()"


def layout(db: str, record, base: int, size: int, maps: list) -> dict:
    """Where each pointer of a SUCCESS answer lies, against the buffer [BASE, BASE+SIZE)."""
    mem = ep.memory()
    inside = lambda p: base <= p < base + size  # noqa: E731
    fields: dict = {}
    for name in STRINGS[db]:
        p = getattr(record, name)
        if not p:
            fields[name] = {"null": True}
        elif inside(p):
            fields[name] = {"offset": p - base}
        else:
            fields[name] = {"outside": where(p, maps), "address": p, "value": mem.string(p)}
    out = {"fields": fields}
    if db == "group":
        out["members"] = members_layout(record.members, base, size, maps)
    return out


def members_layout(array: int | None, base: int, size: int, maps: list) -> dict:
    """gr_mem: pointer-aligned, inside the buffer, NULL-terminated there, each member inside."""
    if not array:
        return {"null": True}
    mem = ep.memory()
    out: dict = {"offset": array - base, "aligned": array % WIDTH == 0, "inside": base <= array < base + size}
    if not out["inside"]:
        out["outside"] = where(array, maps)
    slots, terminated, outside = 0, None, []
    while slots < 100_000:
        slot = array + slots * WIDTH
        if out["inside"] and slot + WIDTH > base + size:
            terminated = False  # the array runs out of the buffer before its NULL
            out["beyond"] = past(mem, slot)  # what a caller walking on to its NULL would read
            break
        word = mem.bytes(slot, WIDTH)
        if word is None:
            terminated = False
            break
        value = int.from_bytes(word, sys.byteorder)
        if not value:
            terminated = True
            break
        if not base <= value < base + size:
            outside.append({"index": slots, "address": value, **where(value, maps)})
        slots += 1
    out.update(
        count=slots, terminated=terminated, members_outside=outside[:5], members_outside_count=len(outside)
    )
    return out


def past(mem, slot: int, limit: int = 16) -> int:
    """Non-NULL words from SLOT on (past the buffer), up to a NULL, an unreadable word or LIMIT."""
    n = 0
    while n < limit:
        word = mem.bytes(slot + n * WIDTH, WIDTH)
        if word is None or not int.from_bytes(word, sys.byteorder):
            break
        n += 1
    return n


def strays(shape: dict) -> list[tuple[str, int]]:
    """(field, address) of every string pointer of an answer that lies outside the buffer."""
    out = [(f, v["address"]) for f, v in shape["fields"].items() if "outside" in v]
    for m in shape.get("members", {}).get("members_outside", []):
        out.append((f"members[{m['index']}]", m["address"]))
    return out


# ---------------------------------------------------------------- result-contract


def contract(module, spec: dict) -> dict:
    """Every SUCCESS answer of SPEC's point lookups and of the listings: where its pointers
    lie, whether an answer that points outside its buffer is rewritten by the next call
    from another thread, and whether a reused (dirty) buffer gives the same answer."""
    started, budget = clock.now(), spec.get("budget", 6.0)
    deadline = started + budget / 2  # a slow module: half for the lookups, a quarter each for the rest
    queries = [tuple(q) for q in spec["queries"]]
    maps = mappings()
    answers, clean, overwritten = [], {}, []
    for q in queries:
        if clock.now() > deadline:
            break
        answers.append(lookup_shape(module, q, maps, clean))
        if answers[-1].get("strays"):
            overwritten.append(consequence(module, answers[-1], queries))
    reused = reuse(module, [q for q in queries if q in clean], clean, max(deadline, started + budget * 0.75))
    listings = {db: listing_shape(module, db, started + budget) for db in spec.get("listings", [])}
    return {
        "answers": answers,
        "overwritten": overwritten,
        "reused": reused,
        "listings": listings,
        "cut_short": len(answers) < len(queries)
        or len(reused) < len(clean)
        or clock.now() > started + budget,
        "width": WIDTH,
    }


def lookup_shape(module, q: tuple, maps: list, clean: dict) -> dict:
    """The answer into a zeroed buffer grown as glibc grows it, with its layout."""
    db, by, key = q
    size = ep.GLIBC_FIRST
    while True:
        raw = ctypes.create_string_buffer(size)  # zeroed: the friendliest buffer there is
        status, err, record = call_into(module, db, by, key, raw, size)
        if not (status == -2 and err == ep.ERANGE) or size >= ep.HUGE:
            break
        size *= 2
    out = {
        "query": query_name(db, by, key),
        "key": list(q),
        "status": ep.STATUS.get(status, str(status)),
        "errno": err,
        "size": size,
    }
    if status != 1:
        return out
    shape = layout(db, record, ctypes.addressof(raw), size, maps)
    clean[q] = {"value": ep.entry(db, record), "size": size, "raw": raw, "record": record}
    out.update(shape, value=clean[q]["value"], strays=strays(shape))
    return out


def consequence(module, answer: dict, queries: list) -> dict:
    """Re-reads the fields of ANSWER, just made, that point outside its buffer after another
    lookup of the same entry point from another thread: the first caller's answer must not change."""
    q = tuple(answer["key"])
    mem = ep.memory()
    before = {f: v["value"] for f, v in answer["fields"].items() if "outside" in v}
    others = [o for o in queries if o[:2] == q[:2] and o != q][:3]
    for other in others:

        def second(o=other) -> None:
            raw = ctypes.create_string_buffer(ep.BIG)
            call_into(module, *o, raw, ep.BIG)

        t = threading.Thread(target=second, daemon=True)
        t.start()
        t.join(KEY_LIMIT)
        after = {f: mem.string(a) for f, a in answer["strays"] if f in before}
        changed = {f: {"before": before[f], "after": after[f]} for f in before if after[f] != before[f]}
        if changed:
            return {"query": answer["query"], "by": query_name(*other), "changed": changed}
    return {"query": answer["query"], "by": [query_name(*o) for o in others], "changed": {}}


def reuse(module, queries: list, clean: dict, deadline: float) -> list[dict]:
    """Every query again into ONE buffer per entry point that is never cleaned, as glibc's
    own getpwnam/getgrgid reuse theirs: each call finds the previous answer in it."""
    out, buffers = [], {}
    for q in queries:
        if clock.now() > deadline:
            break
        db = q[0]
        size = max(clean[o]["size"] for o in queries if o[:2] == q[:2])
        if q[:2] not in buffers:
            buffers[q[:2]] = ctypes.create_string_buffer(size)
            ctypes.memset(buffers[q[:2]], PATTERN, size)
        raw = buffers[q[:2]]
        status, _, record = call_into(module, *q, raw, size)
        value = ep.entry(db, record) if status == 1 else None
        if value != clean[q]["value"]:
            again = ctypes.create_string_buffer(clean[q]["size"])  # the control: zeroed, once more
            s2, _, r2 = call_into(module, *q, again, clean[q]["size"])
            control = ep.entry(db, r2) if s2 == 1 else None
            out.append(
                {
                    "query": query_name(*q),
                    "key": list(q),
                    "status": ep.STATUS.get(status, str(status)),
                    "got": value,
                    "want": clean[q]["value"],
                    "control_same": control == clean[q]["value"],
                    "previous": out_previous(queries, q),
                    "size": size,
                }
            )
        else:
            out.append({"query": query_name(*q), "key": list(q), "same": True})
    return out


def out_previous(queries: list, q: tuple) -> list | None:
    """The query whose answer was in the buffer before Q's call."""
    same = [o for o in queries if o[:2] == q[:2]]
    i = same.index(q)
    return list(same[i - 1]) if i else None


def listing_shape(module, db: str, deadline: float) -> dict:
    """The first LISTED entries of a listing, one buffer reused as glibc's getpwent does: their
    layouts, and whether an entry's outside pointers change with the next get*ent_r."""
    maps, mem = mappings(), ep.memory()
    size = ep.BIG
    raw = ctypes.create_string_buffer(size)
    ctypes.memset(raw, PATTERN, size)
    module.endent(db)
    module.setent(db)
    entries, overwritten, last = [], [], None
    while len(entries) < LISTED and clock.now() < deadline:
        status, err, record = call_into(module, db, None, None, raw, size)
        if status == -2 and err == ep.ERANGE and size < ep.HUGE:  # a 5,000-member group: grow, same entry
            size *= 2
            raw = ctypes.create_string_buffer(size)
            ctypes.memset(raw, PATTERN, size)
            continue
        if last:  # the previous entry's outside strings, re-read after this call
            changed = {f: {"before": v, "after": mem.string(a)} for f, a, v in last[1] if mem.string(a) != v}
            if changed:
                overwritten.append({"entry": last[0], "changed": changed})
        if status != 1:
            break
        shape = layout(db, record, ctypes.addressof(raw), size, maps)
        value = ep.entry(db, record)
        entries.append({"name": value["name"], **shape})
        last = (
            value["name"],
            [(f, a, mem.string(a)) for f, a in strays(shape) if not f.startswith("members")],
        )
    module.endent(db)
    return {"entries": entries, "overwritten": overwritten[:5], "overwritten_count": len(overwritten)}


# ---------------------------------------------------------------- keys


def keys(module, spec: dict) -> dict:
    """The hostile keys SPEC["only"] names (indexes into SPEC["keys"]), each once (grown from
    1 KiB as glibc does) in its own thread bounded by KEY_LIMIT, with its latency; then the real
    names' hits for comparison. Stops at a key that gives no answer in time (the module may be
    stuck in it); the lab asks the rest in a fresh worker. "spent" is the time taken on the
    budget's clock, which the lab adds up over its workers."""
    began = clock.now()
    out: dict = {"keys": [], "hits": [], "stuck": None, "cut_short": False}
    ask(module, spec, out, began + spec.get("budget", 6.0))
    out["spent"] = clock.now() - began
    return out


def ask(module, spec: dict, out: dict, deadline: float) -> None:
    """keys()'s calls, into OUT."""
    retried = False
    for i in spec.get("only", range(len(spec["keys"]))):
        if clock.now() > deadline:
            out["cut_short"] = True
            break
        got = timed(module, spec["keys"][i], i)
        out["keys"].append(got)
        if got["status"] == "no answer":
            out["stuck"] = i
            return
        if (
            not retried
            and got["status"] not in ("SUCCESS", "error")
            and got["seconds"] >= spec.get("slow", 1e9)
        ):
            retried = True  # once: slow a second time rules out a cold start (first connection, cache fill)
            again = timed(module, spec["keys"][i], i)
            got["again_seconds"] = again["seconds"]
            if again["status"] == "no answer":
                out["stuck"] = i
                return
    for h in spec.get("hits", []):  # a few calls each: the median is what a login waits
        if clock.now() > deadline and out["hits"]:
            break
        runs = [timed(module, h, -1) for _ in range(3)]
        out["hits"].append({**runs[0], "seconds": statistics.median(r["seconds"] for r in runs)})


def key_of(k: dict) -> object:
    """The key a spec names: {"key": "a", "repeat": 65536} is 64 KiB of 'a'."""
    return k["key"] * k["repeat"] if k.get("repeat") else k["key"]


def timed(module, k: dict, index: int) -> dict:
    key = key_of(k)
    result: dict = {}
    shown = k.get("label") or repr(key)

    note = module.note

    def call() -> None:
        # every note of this key's calls names it (a crash or hang is read from the last note),
        # cut short: a 1 MiB key would otherwise travel in each one
        module.note = lambda text: note(f"[key {index}] {text[:100]}")
        started = time.monotonic()
        try:
            got = module.sized(k["db"], k["by"], key)
        finally:
            module.note = note
        result.update(got.as_dict(), size=got.size, seconds=time.monotonic() - started)

    started = time.monotonic()
    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(KEY_LIMIT)
    out = {"index": index, "db": k["db"], "by": k["by"], "label": shown, "kind": k.get("kind", "")}
    if not k.get("repeat"):
        out["key"] = key
    out["query"] = f"{ep.DATABASES[k['db']][1][k['by']]}({shown})"
    if t.is_alive():
        return {**out, "status": "no answer", "seconds": time.monotonic() - started}
    if "status" not in result:  # the call raised in its thread (ctypes refused the key)
        return {**out, "status": "error", "seconds": time.monotonic() - started}
    value = result.pop("value")
    out.update(result)
    if value:
        out["name"] = value.get("name")
        out["same"] = value.get("name") == key  # the key's own entry, not another one
        out["value"] = {f: (v[:80] if isinstance(v, str) else v) for f, v in value.items() if f != "members"}
    return out


TESTS = {"result-contract": contract, "keys": keys}
