"""Direct calls into a module's _nss_<service>_* entry points, the way glibc makes them.

Runs inside the target in the probe (stdlib only: ctypes), loaded by its worker for calls
named "nss:*". Each function returns observations; the lab's checks judge them. Every
answer is read through /proc/self/mem, so a module that returns SUCCESS with garbage
pointers is reported, not a crash of the probe. Before each call the current entry point
and buffer size go to NOTE, so a crash or hang names them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import sys
import threading
import time
from collections.abc import Callable

from . import clock

STATUS = {-2: "TRYAGAIN", -1: "UNAVAIL", 0: "NOTFOUND", 1: "SUCCESS", 2: "RETURN"}
ERANGE, ENOENT = 34, 2
GUARD = 256  # bytes after the caller's buffer that must come back untouched (glibc bug17079)
GUARD_BYTE = 0xA5
BIG = 1 << 16
HUGE = 1 << 22
PLAN_CALLS = 3  # erange: calls timed before a sampled sweep is judged again
GLIBC_FIRST = 1024  # glibc's getpwnam, getgrnam, getspnam, get*ent start here and double on ERANGE
ERRNO_SENTINEL = 0x7A7A
CONTROL_ROUNDS = 5  # single-threaded repetitions of each lookup before the threaded run
LOOP = 3  # a listing that gives one name this often goes round in circles
LISTING_LIMIT = 1_000_000  # entries; a directory of 50,000 users is listed whole


class Passwd(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("passwd", ctypes.c_void_p),
        ("uid", ctypes.c_uint),
        ("gid", ctypes.c_uint),
        ("gecos", ctypes.c_void_p),
        ("home", ctypes.c_void_p),
        ("shell", ctypes.c_void_p),
    ]


class Group(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("passwd", ctypes.c_void_p),
        ("gid", ctypes.c_uint),
        ("members", ctypes.c_void_p),
    ]


class Shadow(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("password", ctypes.c_void_p),
        *((f, ctypes.c_long) for f in ("lastchg", "min", "max", "warn", "inact", "expire")),
        ("flag", ctypes.c_ulong),
    ]


# database -> (struct, point lookups by key kind, enumeration entry points)
DATABASES = {
    "passwd": (Passwd, {"name": "getpwnam_r", "id": "getpwuid_r"}, ("setpwent", "getpwent_r", "endpwent")),
    "group": (Group, {"name": "getgrnam_r", "id": "getgrgid_r"}, ("setgrent", "getgrent_r", "endgrent")),
    "shadow": (Shadow, {"name": "getspnam_r"}, ("setspent", "getspent_r", "endspent")),
}
ID_FIELD = {"passwd": "uid", "group": "gid"}


class Memory:
    """Reads this process's memory without trusting pointers: EIO instead of SIGSEGV."""

    def __init__(self) -> None:
        self.fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)

    def bytes(self, addr: int, size: int) -> bytes | None:
        try:
            data = os.pread(self.fd, size, addr)
        except OSError as e:
            if e.errno != errno.EBADF:
                return None
            self.fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)  # a module closed ours
            return self.bytes(addr, size)
        except OverflowError:
            return None
        return data if len(data) == size else None

    def string(self, addr: int | None) -> str | None:
        if not addr:
            return None
        out = b""
        while len(out) < 1 << 20:
            chunk = self.bytes(addr + len(out), 64) or self.bytes(addr + len(out), 1)
            if chunk is None:
                return f"<unreadable pointer {addr:#x}>"
            if b"\0" in chunk:
                return (out + chunk[: chunk.index(b"\0")]).decode(errors="replace")
            out += chunk
        return f"<unterminated string at {addr:#x}>"

    def pointers(self, addr: int | None, limit: int = 100_000) -> list[int] | None:
        if not addr:
            return None
        out = []
        width = ctypes.sizeof(ctypes.c_void_p)
        while len(out) < limit:
            word = self.bytes(addr + width * len(out), width)
            if word is None:
                return None
            value = int.from_bytes(word, sys.byteorder)
            if not value:
                return out
            out.append(value)
        return None


MEMORY: Memory | None = None


def memory() -> Memory:
    global MEMORY
    if MEMORY is None:
        MEMORY = Memory()
    return MEMORY


def entry(db: str, record: ctypes.Structure) -> dict:
    """The answer as glibc's caller would read it."""
    mem = memory()
    if db == "passwd":
        return {
            "name": mem.string(record.name),
            "uid": record.uid,
            "gid": record.gid,
            "gecos": mem.string(record.gecos),
            "home": mem.string(record.home),
            "shell": mem.string(record.shell),
        }
    if db == "group":
        pointers = mem.pointers(record.members)
        members = None if pointers is None else [mem.string(p) for p in pointers]
        return {"name": mem.string(record.name), "gid": record.gid, "members": members}
    return {
        "name": mem.string(record.name),
        "password": mem.string(record.password),
        **{f: getattr(record, f) for f in ("lastchg", "min", "max", "warn", "inact", "expire")},
    }


class Answer:
    def __init__(self, status: int, errno: int, value: dict | None, overflow: int) -> None:
        self.status, self.errno, self.value, self.overflow = status, errno, value, overflow
        self.size = 0  # the buffer that gave this answer, where a caller grew it

    @property
    def name(self) -> str:
        return STATUS.get(self.status, f"status {self.status}")

    def as_dict(self) -> dict:
        return {"status": self.name, "errno": self.errno, "value": self.value, "overflow": self.overflow}


class Module:
    """The library opened directly, with its service's entry points."""

    def __init__(self, library: str, service: str, note: Callable[[str], None]) -> None:
        self.lib = ctypes.CDLL(library)
        self.service = service
        self.note = note
        self.libc = ctypes.CDLL(None)
        self.libc.malloc.restype = ctypes.c_void_p
        self.libc.malloc.argtypes = [ctypes.c_size_t]
        self.libc.free.argtypes = [ctypes.c_void_p]
        self.libc.malloc_usable_size.restype = ctypes.c_size_t
        self.libc.malloc_usable_size.argtypes = [ctypes.c_void_p]

    def function(self, name: str):
        fn = getattr(self.lib, f"_nss_{self.service}_{name}", None)
        if fn is not None:
            fn.restype = ctypes.c_int
        return fn

    def call(self, fn_name: str, db: str, key: object, size: int, where: str = "") -> Answer:
        """One call with a SIZE-byte buffer followed by guard bytes."""
        struct = DATABASES[db][0]
        fn = self.function(fn_name)
        record = struct()
        raw = ctypes.create_string_buffer(size + GUARD)
        ctypes.memset(raw, GUARD_BYTE, size + GUARD)
        err = ctypes.c_int(ERRNO_SENTINEL)
        args: list = []
        if key is not None:
            args.append(ctypes.c_uint(key) if isinstance(key, int) else ctypes.c_char_p(str(key).encode()))
        args += [ctypes.byref(record), ctypes.c_void_p(ctypes.addressof(raw)), ctypes.c_size_t(size)]
        self.note(f"{where or fn_name} with a {size}-byte buffer")
        status = fn(*args, ctypes.byref(err))
        changed = [i for i, b in enumerate(raw.raw[size : size + GUARD]) if b != GUARD_BYTE]
        overflow = changed[-1] + 1 if changed else 0  # how far past the end it wrote
        value = entry(db, record) if status == 1 else None
        return Answer(status, err.value, value, overflow)

    def lookup(self, db: str, by: str, key: object, size: int = BIG) -> Answer:
        fn = DATABASES[db][1][by]
        return self.call(fn, db, key, size, f"{fn}({key!r})")

    def sized(self, db: str, by: str, key: object, size: int = GLIBC_FIRST) -> Answer:
        """A lookup with a buffer grown on ERANGE, as glibc does; .size says where it ended."""
        while True:
            got = self.lookup(db, by, key, size)
            got.size = size
            if not (got.status == -2 and got.errno == ERANGE) or size >= HUGE:
                return got
            size *= 2

    def setent(self, db: str) -> int:
        set_name = DATABASES[db][2][0]
        self.note(f"{set_name}(1)")
        return self.function(set_name)(ctypes.c_int(1))

    def endent(self, db: str) -> int:
        end_name = DATABASES[db][2][2]
        self.note(f"{end_name}()")
        return self.function(end_name)()

    def getent(self, db: str, size: int = BIG, where: str = "") -> Answer:
        get_name = DATABASES[db][2][1]
        return self.call(get_name, db, None, size, where or f"{get_name}()")

    def getent_grown(self, db: str, size: int = BIG) -> Answer:
        """The next entry, the buffer doubled on ERANGE as glibc does (a 5,000-member group
        takes more than 64 KiB)."""
        while True:
            got = self.getent(db, size)
            if not (got.status == -2 and got.errno == ERANGE) or size >= HUGE:
                return got
            size *= 2


def run(spec: dict, note: Callable[[str], None]) -> dict:
    """The worker's entry: spec["fn"] is "nss:<test>"."""
    test = spec["fn"].split(":", 1)[1]
    table = TESTS if test in TESTS else all_tests()
    note(f"dlopen({spec['library']})")
    module = Module(spec["library"], spec["service"], note)
    return table[test](module, spec)


def all_tests() -> dict[str, Callable[[Module, dict], dict]]:
    """These tests and those of the caller-side checks: the direct subpackage, one module
    per area (imported here, not at the top: they import this module)."""
    from .direct import contract, fds, hazards, host, identity

    table = dict(TESTS)
    for area in (contract, fds, hazards, host, identity):
        table.update(area.TESTS)
    return table


# ---------------------------------------------------------------- erange


def erange(module: Module, spec: dict) -> dict:
    """Sweeps buffer sizes from 0 up for each point lookup, and for get*ent_r on the
    biggest entry of each listing; see lab/checks/erange.py."""
    deadline = clock.now() + spec.get("budget", 8.0)
    jobs = [("lookup", q) for q in spec["queries"]] + [("listing", db) for db in spec.get("listings", [])]
    out = []
    for n, (kind, what) in enumerate(jobs):
        share = (deadline - clock.now()) / (len(jobs) - n)  # slow modules: each job its share
        until = clock.now() + max(share, 0.0)
        out.append(
            sweep_lookup(module, *what, until) if kind == "lookup" else sweep_listing(module, what, until)
        )
    return {"queries": out}


def sweep_lookup(module: Module, db: str, by: str, key: object, deadline: float) -> dict:
    started = clock.now()
    reference = module.sized(db, by, key, BIG)  # roomy: a module that cuts to fit cannot set the truth
    per_call = max(clock.now() - started, 1e-5)
    glibc = module.sized(db, by, key)  # where glibc's own growth from 1 KiB ends
    query = f"{DATABASES[db][1][by]}({key!r})"
    result = sweep(query, reference, lambda size: module.lookup(db, by, key, size), per_call, deadline)
    result["reference_size"] = glibc.size if glibc.status == 1 else None
    return result


def sweep_listing(module: Module, db: str, deadline: float) -> dict:
    """get*ent_r on the listing's biggest entry, after a fresh end*ent/set*ent for every
    size, so that only the buffer handling is tested, not the cursor."""
    get_name = DATABASES[db][2][1]
    started = clock.now()
    module.endent(db)
    module.setent(db)
    entries = listing(module, db, LISTING_LIMIT)["entries"]
    module.endent(db)
    if not entries:
        return {"query": f"{get_name}()", "reference": None, "problems": {}, "tried": 0}
    index = max(range(len(entries)), key=lambda i: answer_size(entries[i]))
    per_call = max(clock.now() - started, 1e-5) * (index + 1) / len(entries)
    query = f"{get_name}() at entry {entries[index]['name']!r}"

    def attempt(size: int) -> Answer:
        module.endent(db)
        module.setent(db)
        for _ in range(index):
            module.getent_grown(db)
        return module.getent(db, size, where=query)

    return sweep(query, Answer(1, 0, entries[index], 0), attempt, per_call, deadline)


def sweep(
    query: str, reference: Answer, attempt: Callable[[int], Answer], per_call: float, deadline: float
) -> dict:
    result: dict = {"query": query, "reference": reference.as_dict(), "problems": {}, "tried": 0}
    if reference.status != 1:
        return result
    needed = answer_size(reference.value)
    estimate = needed + 64
    result |= {"needed": needed, "estimate": estimate, "reference_size": reference.size}
    sizes = sizes_to_try(estimate, int(max(deadline - clock.now(), 0.0) / per_call))
    times: list[float] = []
    queue = [*sizes, BIG]  # and a roomy buffer, as a caller that never wants ERANGE passes
    while queue:
        size = queue.pop(0)
        if clock.now() > deadline and size != BIG:
            result["cut_short"] = True
            continue
        began = clock.now()
        got = attempt(size)
        times.append(clock.now() - began)
        if len(times) == PLAN_CALLS and len(sizes) <= estimate:
            # A sample was planned from one call's time, which a cold start or a moment
            # without a CPU can make 1,000 times too long (a CI run sampled zerobuflab, a
            # 20 us module): with three calls' median the whole sweep may fit after all.
            affordable = max(deadline - clock.now(), 0.0) / max(sorted(times)[1], 1e-6)
            if affordable > estimate:
                asked = set(sizes[:PLAN_CALLS])
                queue = [s for s in range(estimate + 1) if s not in asked] + [BIG]
                sizes = list(range(estimate + 1))
        result["tried"] += 1
        problem = erange_problem(got, reference, size)
        if problem and size == BIG and problem["kind"] == "truncated":
            problem["kind"] = "roomy"  # not cut: another answer than glibc's buffer gets
        if problem:  # per kind: how often, at which sizes, the largest, and the first one whole
            seen = result["problems"].setdefault(
                problem["kind"], {"count": 0, "sizes": [], "first": problem, "largest": size}
            )
            seen["count"] += 1
            seen["sizes"] = (seen["sizes"] + [size])[:8]
            if size >= seen["largest"]:  # the one a real caller's (bigger) buffer is likeliest to meet
                seen["largest"], seen["last"] = size, problem
        elif got.status == 1 and size != BIG:  # the smallest buffer that gave the answer
            result["fitted"] = min(result.get("fitted", size), size)
    result["sampled"] = len(sizes) <= estimate  # not every size from 0 to the estimate
    return result


def sizes_to_try(estimate: int, affordable: int) -> list[int]:
    """Every size from 0 past the estimate when the calls are cheap. Else, most telling
    first (the time may run out): 0, the sizes glibc's own dispatch passes, the sizes just
    below the estimate where an answer starts to fit, the small ones, then an even spread."""
    if affordable > estimate:
        return list(range(estimate + 1))
    glibc = [GLIBC_FIRST << k for k in range(16) if GLIBC_FIRST << k <= estimate]
    order = [0, *glibc, *range(estimate, max(0, estimate - 48), -1), *range(1, min(17, estimate))]
    step = max(estimate // max(affordable - len(order), 1), 1)
    order += range(0, estimate, step)
    return list(dict.fromkeys(order))


def answer_size(value: dict) -> int:
    """Bytes an answer takes in the caller's buffer: its strings, and for a group the
    member strings and the NULL-terminated pointer array (with its alignment)."""
    size = sum(len(v.encode()) + 1 for v in value.values() if isinstance(v, str))
    members = value.get("members")
    if members is not None:
        size += sum(len(m.encode()) + 1 for m in members if m) + 8 * (len(members) + 1) + 7
    return size


def erange_problem(got: Answer, reference: Answer, size: int) -> dict | None:
    if got.overflow:
        return {"size": size, "kind": "overflow", "bytes": got.overflow, "status": got.name}
    if got.status == 1:
        if got.value != reference.value:
            return {"size": size, "kind": "truncated", "got": got.value, "want": reference.value}
        return None
    if got.status == -2 and got.errno == ERANGE:
        return None
    return {"size": size, "kind": "status", "status": got.name, "errno": got.errno}


# ---------------------------------------------------------------- status codes


def unknown(module: Module, spec: dict) -> dict:
    """Point lookups of keys that do not exist."""
    out = []
    for db, by, key in spec["queries"]:
        got = module.sized(db, by, key)  # grown on ERANGE, as glibc does, from 1 KiB
        out.append({"query": f"{DATABASES[db][1][by]}({key!r})", **got.as_dict(), "size": got.size})
    return {"answers": out}


# ---------------------------------------------------------------- enumeration


def listing(
    module: Module, db: str, limit: int, size: int = BIG, grow: bool = True, deadline: float | None = None
) -> dict:
    """get*ent_r until it stops. The buffer doubles on ERANGE, as glibc's does (a 5,000-member
    group needs 85 KiB), and the same entry must come back. A name listed LOOP times, or
    LIMIT entries, is a loop. Past DEADLINE (clock.now()) it stops with timed_out."""
    names: list = []
    entries: list = []
    seen: dict = {}
    retries = 0
    while len(names) < limit:
        if deadline is not None and clock.now() > deadline:
            return {
                "names": names,
                "entries": entries,
                "end": None,
                "looped": False,
                "retries": retries,
                "timed_out": True,
            }
        got = module.getent(db, size)
        if got.status == -2 and got.errno == ERANGE and grow and size < HUGE:
            size *= 2
            retries += 1
            continue
        if got.status != 1:
            end = {**got.as_dict(), "size": size}
            return {"names": names, "entries": entries, "end": end, "looped": False, "retries": retries}
        name = got.value["name"]
        names.append(name)
        entries.append(got.value)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] >= LOOP:
            break
    return {"names": names, "entries": entries, "end": None, "looped": True, "retries": retries}


def enumerate_db(module: Module, spec: dict) -> dict:
    """For each database: the plain listing, a rewind, a tiny growing buffer, and
    passwd/group interleaved."""
    limit = spec.get("limit", LISTING_LIMIT)
    out: dict = {}
    for db in spec["databases"]:
        module.setent(db)
        plain = listing(module, db, limit)
        module.endent(db)
        module.setent(db)
        first = listing(module, db, min(2, max(len(plain["names"]) - 1, 1)))
        module.setent(db)
        rewound = listing(module, db, limit)
        module.endent(db)
        module.setent(db)
        small = listing(module, db, limit, size=8)
        module.endent(db)
        out[db] = {
            "plain": strip(plain),
            "after_partial": first["names"],
            "rewound": strip(rewound),
            "small_buffer": strip(small),
        }
    if {"passwd", "group"} <= set(spec["databases"]):
        out["interleaved"] = interleave(module, limit)
    return out


def strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "entries"}


def interleave(module: Module, limit: int) -> dict:
    """setpwent, setgrent, then one getpwent_r and one getgrent_r in turn (guest-oslogin#160)."""
    module.setent("passwd")
    module.setent("group")
    names: dict[str, list] = {"passwd": [], "group": []}
    ended = {"passwd": False, "group": False}
    seen: dict = {}
    looping = False
    while not all(ended.values()) and not looping and max(len(v) for v in names.values()) < limit:
        for db in ("passwd", "group"):
            if ended[db]:
                continue
            got = module.getent_grown(db)
            if got.status == 1:
                names[db].append(got.value["name"])
                key = (db, got.value["name"])
                seen[key] = seen.get(key, 0) + 1
                looping = looping or seen[key] >= LOOP
            else:
                ended[db] = True
    module.endent("passwd")
    module.endent("group")
    return {"names": names, "looped": not all(ended.values())}


def without_setent(module: Module, spec: dict) -> dict:
    """get*ent_r as the first call, and again after end*ent: must not crash."""
    out = {}
    for db in spec["databases"]:
        get_name, set_name = DATABASES[db][2][1], DATABASES[db][2][0]
        first = module.getent(db, where=f"{get_name}() before any {set_name}()")
        module.setent(db)
        listing(module, db, spec.get("limit", LISTING_LIMIT))
        module.endent(db)
        after = module.getent(db, where=f"{get_name}() after {DATABASES[db][2][2]}()")
        out[db] = {"first": first.as_dict(), "after_end": after.as_dict()}
    return out


# ---------------------------------------------------------------- consistency


def consistency(module: Module, spec: dict) -> dict:
    """Enumerated entries against their point lookups by name and by id: every one while
    the budget lasts, in an order spread over the listing (a 50,000-user file module scans
    the file for each lookup), and the count compared is reported."""
    out: dict = {}
    deadline = clock.now() + spec.get("budget", 10.0)
    for n, db in enumerate(spec["databases"]):
        module.setent(db)
        listed = listing(module, db, spec.get("limit", LISTING_LIMIT))
        module.endent(db)
        entries = listed["entries"]
        by_id: dict[int, list] = {}
        for e in entries:
            if db in ID_FIELD:
                by_id.setdefault(e[ID_FIELD[db]], []).append(e)
        mismatches = []
        compared = buffer_only = 0
        until = clock.now() + (deadline - clock.now()) / (len(spec["databases"]) - n)
        for e in spread(entries):
            if clock.now() > until:
                break
            compared += 1
            keys = [("name", e["name"])] + ([("id", e[ID_FIELD[db]])] if db in ID_FIELD else [])
            for by, key in keys:
                got = module.sized(db, by, key)
                allowed = by_id[key] if by == "id" else [e]
                if got.status != 1 and module.sized(db, by, key, BIG).status == 1:
                    buffer_only += 1  # a roomy buffer answers: erange's finding, not a disagreement
                    continue
                if got.status != 1 or normal(got.value) not in [normal(a) for a in allowed]:
                    mismatches.append(
                        {"query": f"{DATABASES[db][1][by]}({key!r})", "enumerated": e, **got.as_dict()}
                    )
        out[db] = {
            "entries": len(entries),
            "compared": compared,
            "buffer_only": buffer_only,
            "mismatches": mismatches[:20],
            "count": len(mismatches),
        }
    return out


def spread(items: list) -> list:
    """ITEMS in an order that covers the whole list early: first, last, middle, quarters …"""
    order, seen, step = [], set(), len(items)
    while step >= 1 and len(order) < len(items):
        for i in range(0, len(items), step):
            if i not in seen:
                seen.add(i)
                order.append(i)
        step //= 2
    order += [i for i in range(len(items)) if i not in seen]
    return [items[i] for i in order]


def normal(value: dict | None) -> dict | None:
    if value and value.get("members") is not None:
        return {**value, "members": sorted(value["members"])}
    return value


# ---------------------------------------------------------------- initgroups


def initgroups(module: Module, spec: dict) -> dict:
    """initgroups_dyn for each user, starting from a one-slot array it must grow, and
    again with a roomy array."""
    out = []
    fn = module.function("initgroups_dyn")
    for user, gid in spec["users"]:
        one = {}
        for initial in (1, 256):
            one[f"size{initial}"] = initgroups_once(module, fn, user, gid, initial)
        out.append({"user": user, "gid": gid, **one})
    return {"users": out}


def initgroups_once(module: Module, fn, user: str, gid: int, initial: int) -> dict:
    """One call with a malloc'ed INITIAL-slot array holding the primary gid, as glibc
    passes it. The module may realloc it; afterwards malloc_usable_size tells whether the
    array really holds the *size slots the module claims."""
    libc = module.libc
    array = libc.malloc(initial * 4)
    ctypes.c_uint.from_address(array).value = gid
    start, size = ctypes.c_long(1), ctypes.c_long(initial)
    groups = ctypes.c_void_p(array)
    err = ctypes.c_int(ERRNO_SENTINEL)
    module.note(f"initgroups_dyn({user!r}) with a {initial}-slot array")
    status = fn(
        ctypes.c_char_p(user.encode()),
        ctypes.c_uint(gid),
        ctypes.byref(start),
        ctypes.byref(size),
        ctypes.byref(groups),
        ctypes.c_long(-1),
        ctypes.byref(err),
    )
    result = {
        "status": STATUS.get(status, f"status {status}"),
        "errno": err.value,
        "start": start.value,
        "size": size.value,
        "grown": groups.value != array or size.value != initial,
        "slots": None,
        "groups": None,
    }
    if not groups.value:
        return result
    module.note(f"malloc_usable_size() of the array initgroups_dyn({user!r}) returned")
    result["slots"] = libc.malloc_usable_size(groups) // 4
    if 1 <= start.value <= 1 << 20:
        data = memory().bytes(groups.value, 4 * start.value)
        if data is not None:
            gids = [data[i : i + 4] for i in range(4, len(data), 4)]  # [0] is the primary gid
            result["groups"] = [int.from_bytes(g, sys.byteorder) for g in gids]
    if start.value <= size.value <= result["slots"]:  # an overrun heap is not ours to hand back
        module.note(f"free() of the array initgroups_dyn({user!r}) returned")
        libc.free(groups)
    return result


# ---------------------------------------------------------------- threads


def threads(module: Module, spec: dict) -> dict:
    """N threads doing mixed point lookups at once, for a bounded time; every answer is
    compared with the single-threaded one."""
    queries = [tuple(q) for q in spec["queries"]]
    # The control: the same calls with the same 64 KiB buffer, in this one thread, a few
    # times each. A wrong answer there is no thread's doing.
    reference = {q: normal(module.lookup(*q, size=BIG).value) for q in queries}
    single = {"calls": 0, "wrong": 0, "examples": []}
    for _ in range(CONTROL_ROUNDS):
        for q in queries:
            value = normal(module.lookup(*q, size=BIG).value)
            single["calls"] += 1
            if value != reference[q]:
                single["wrong"] += 1
                query = f"{DATABASES[q[0]][1][q[1]]}({q[2]!r})"
                single["examples"] = [
                    *single["examples"],
                    {"query": query, "got": value, "want": reference[q]},
                ][:5]
    deadline = time.monotonic() + spec.get("seconds", 2.0)
    counts = {"calls": 0, "wrong": 0}
    wrong: list[dict] = []
    lock = threading.Lock()
    module.note(f"{len(queries)} lookups in {spec.get('threads', 8)} threads at once")
    module.note = lambda _: None  # the threads would race on the progress note

    def work(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            q = rng.choice(queries)
            got = module.lookup(*q, size=BIG)
            value = normal(got.value)
            with lock:
                counts["calls"] += 1
                if value != reference[q] or got.overflow:
                    counts["wrong"] += 1
                    query = f"{DATABASES[q[0]][1][q[1]]}({q[2]!r})"
                    wrong.append({"query": query, "got": value, "status": got.name, "want": reference[q]})
                    del wrong[10:]

    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(spec.get("threads", 8))]
    for t in workers:
        t.start()
    for t in workers:
        t.join(max(deadline - time.monotonic(), 0) + 5.0)
    stuck = sum(t.is_alive() for t in workers)
    answered = any(v is not None for v in reference.values())
    return {
        **counts,
        "examples": wrong,
        "stuck": stuck,
        "threads": len(workers),
        "single": single,
        "answered": answered,
    }


TESTS: dict[str, Callable[[Module, dict], dict]] = {
    "erange": erange,
    "unknown": unknown,
    "enumerate": enumerate_db,
    "without-setent": without_setent,
    "consistency": consistency,
    "initgroups": initgroups,
    "threads": threads,
}
