"""Direct ctypes calls into libnss_cache.so.2, as glibc's dispatch makes them, for the
ground truth: each point lookup with a 1024-byte buffer, a listing grown on ERANGE, and a
miss. Usage: python3 nsscall.py PATH/TO/libnss_cache.so.2"""

import ctypes
import sys

STATUS = {-2: "TRYAGAIN", -1: "UNAVAIL", 0: "NOTFOUND", 1: "SUCCESS"}
P = ctypes.c_char_p


class Passwd(ctypes.Structure):
    _fields_ = [
        ("name", P),
        ("passwd", P),
        ("uid", ctypes.c_uint),
        ("gid", ctypes.c_uint),
        ("gecos", P),
        ("dir", P),
        ("shell", P),
    ]


class Group(ctypes.Structure):
    _fields_ = [("name", P), ("passwd", P), ("gid", ctypes.c_uint), ("mem", ctypes.POINTER(P))]


class Spwd(ctypes.Structure):
    _fields_ = (
        [("name", P), ("pw", P)]
        + [(f, ctypes.c_long) for f in ("lastchg", "min", "max", "warn", "inact", "expire")]
        + [("flag", ctypes.c_ulong)]
    )


lib = ctypes.CDLL(sys.argv[1])


def show(rec):
    if isinstance(rec, Passwd):
        strings = (rec.gecos.decode(), rec.dir.decode(), rec.shell.decode())
        return f"{rec.name.decode()}:{rec.passwd.decode()}:{rec.uid}:{rec.gid}:" + ":".join(strings)
    if isinstance(rec, Group):
        mem, i = [], 0
        while rec.mem[i]:
            mem.append(rec.mem[i].decode())
            i += 1
        return f"{rec.name.decode()}:{rec.passwd.decode()}:{rec.gid}:{','.join(mem)}"
    aging = (rec.lastchg, rec.min, rec.max, rec.warn, rec.inact, rec.expire)
    return f"{rec.name.decode()}:{rec.pw.decode()}:" + ":".join(map(str, aging))


def call(fn, key, rec, size):
    buf, err = ctypes.create_string_buffer(size), ctypes.c_int(0)
    args = [] if key is None else [key]
    rc = getattr(lib, "_nss_cache_" + fn)(
        *args, ctypes.byref(rec), buf, ctypes.c_size_t(size), ctypes.byref(err)
    )
    return rc, err.value, (show(rec) if rc == 1 else "-")


for fn, key, cls in [
    ("getpwnam_r", P(b"ncu1"), Passwd),
    ("getpwuid_r", ctypes.c_uint(21002), Passwd),
    ("getgrnam_r", P(b"ncgrp"), Group),
    ("getgrgid_r", ctypes.c_uint(21000), Group),
    ("getspnam_r", P(b"ncu2"), Spwd),
    ("getpwnam_r", P(b"nobody-here"), Passwd),
    ("getpwuid_r", ctypes.c_uint(29999), Passwd),
    ("getgrgid_r", ctypes.c_uint(29999), Group),
]:
    for size in (1024, 8):
        rc, e, s = call(fn, key, cls(), size)
        print(f"{fn}({key.value!r}, buflen={size}) -> {STATUS.get(rc, rc)} errno={e} {s}")

for db, cls in [("pw", Passwd), ("gr", Group), ("sp", Spwd)]:
    getattr(lib, f"_nss_cache_set{db}ent")(0)
    size, out = 8, []
    for _ in range(20):
        rc, e, s = call(f"get{db}ent_r", None, cls(), size)
        if rc == -2 and e == 34:
            size *= 2
            continue
        out.append(f"{STATUS.get(rc, rc)}/{e}" if rc != 1 else s)
        if rc != 1:
            break
    getattr(lib, f"_nss_cache_end{db}ent")()
    print(f"get{db}ent_r from 8 bytes, doubled on ERANGE: {out}")
