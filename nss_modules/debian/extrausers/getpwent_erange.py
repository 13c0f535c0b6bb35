"""Reproducer: libnss-extrausers loses the rest of a getpwent_r listing once an entry did
not fit the caller's buffer. glibc's contract: answer NSS_STATUS_TRYAGAIN with errno ERANGE
and keep the cursor, so the retry with a bigger buffer gets the same entry.

Run where /var/lib/extrausers/passwd holds deb1 and deb2 (groundtruth.sh sets that up):
    python3 getpwent_erange.py PATH/TO/libnss_extrausers.so.2
"""

import ctypes
import sys

STATUS = {-2: "TRYAGAIN", -1: "UNAVAIL", 0: "NOTFOUND", 1: "SUCCESS"}


class Passwd(ctypes.Structure):
    _fields_ = [(n, ctypes.c_char_p) for n in ("name", "passwd")] + [
        ("uid", ctypes.c_uint),
        ("gid", ctypes.c_uint),
        *[(n, ctypes.c_char_p) for n in ("gecos", "dir", "shell")],
    ]


lib = ctypes.CDLL(sys.argv[1] if len(sys.argv) > 1 else "libnss_extrausers.so.2")
getpwent = lib._nss_extrausers_getpwent_r
getpwent.argtypes = [ctypes.POINTER(Passwd), ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)]


def listing(first_size: int) -> None:
    lib._nss_extrausers_setpwent(0)
    size = first_size
    for _ in range(6):
        pw, buf, err = Passwd(), ctypes.create_string_buffer(size), ctypes.c_int(0)
        rc = getpwent(ctypes.byref(pw), buf, size, ctypes.byref(err))
        name = pw.name.decode() if rc == 1 else "-"
        print(f"  getpwent_r(buflen={size:4}) -> {STATUS.get(rc, rc):8} errno={err.value:2} {name}")
        if rc == 1:
            continue
        if rc == -2 and err.value == 34:  # ERANGE: retry the same entry with twice the buffer, as glibc
            size = max(size * 2, 1024)
            continue
        break
    lib._nss_extrausers_endpwent()


print("a 1024-byte buffer from the start:")
listing(1024)
print("a 16-byte buffer first, doubled on ERANGE (from 1024, as glibc does):")
listing(16)
