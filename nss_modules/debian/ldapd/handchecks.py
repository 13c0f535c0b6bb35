#!/usr/bin/python3
"""The entry points called directly (ctypes), as the lab does, for groundtruth.sh: an unknown
key, small buffers, initgroups_dyn with a 1-slot array, 8 threads at once. Needs slapd and
nslcd up (groundtruth.sh starts them)."""

import ctypes
import threading

lib = ctypes.CDLL("/lib/x86_64-linux-gnu/libnss_ldap.so.2")
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
STATUS = {1: "SUCCESS", 0: "NOTFOUND", -1: "UNAVAIL", -2: "TRYAGAIN"}


class Passwd(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("passwd", ctypes.c_char_p),
        ("uid", ctypes.c_uint),
        ("gid", ctypes.c_uint),
        ("gecos", ctypes.c_char_p),
        ("dir", ctypes.c_char_p),
        ("shell", ctypes.c_char_p),
    ]


def getpwnam(key: bytes, size: int = 1024):
    pw, buf, err = Passwd(), ctypes.create_string_buffer(size), ctypes.c_int(0)
    status = lib._nss_ldap_getpwnam_r(key, ctypes.byref(pw), buf, size, ctypes.byref(err))
    entry = (pw.name, pw.uid, pw.dir) if status == 1 else None
    return STATUS.get(status, status), err.value, entry


for key, size in ((b"nsslab-no-such-entry", 1024), (b"deb1", 1024), (b"deb1", 40), (b"deb1", 80)):
    print(f"  _nss_ldap_getpwnam_r({key.decode()!r}, {size} bytes) ->", getpwnam(key, size))

start, size = ctypes.c_long(1), ctypes.c_long(1)
groups = ctypes.c_void_p(libc.malloc(4))
ctypes.cast(groups, ctypes.POINTER(ctypes.c_uint))[0] = 20000
err = ctypes.c_int(0)
status = lib._nss_ldap_initgroups_dyn(
    b"deb1", ctypes.c_uint(20000), ctypes.byref(start), ctypes.byref(size), ctypes.byref(groups),
    ctypes.c_long(-1), ctypes.byref(err),
)  # fmt: skip
answer = f"{STATUS.get(status, status)} start={start.value} size={size.value}"
print(f"  _nss_ldap_initgroups_dyn('deb1', 1 slot) -> {answer}")

wrong: list = []
calls = [0]


def work(seed: int) -> None:
    for i in range(300):
        key = (b"deb1", b"deb2")[(seed + i) % 2]
        got = getpwnam(key, 4096)
        calls[0] += 1
        if got[0] != "SUCCESS" or got[2][0] != key:
            wrong.append(got)


threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"  8 threads, {calls[0]} _nss_ldap_getpwnam_r calls (4096 bytes): {len(wrong)} wrong")
