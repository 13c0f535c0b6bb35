#!/usr/bin/env python3
"""Writes a libnss-extrausers module that looks like a real directory: N users, a group of
all of them (N members: 5,000 take about 85 KiB, more than any fixed buffer a caller might
pick), and a manifest that declares only deb1, deb2 and debgrp, as a test names a few users
of a big directory. Used by the tests and bench/speed.py:

    python3 make.py N DIR     # then: nsslab run DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRST_UID = 100_000


def write(count: int, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    staff = [f"u{n:05d}" for n in range(count)]
    passwd = [
        "deb1:x:20001:20000:Debian module user one:/home/deb1:/bin/bash",
        "deb2:x:20002:20000:Debian module user two:/home/deb2:/bin/bash",
        # from 100000: past Debian's system and reserved ids (64055 libvirt-qemu, 65534 nobody),
        # which a 50,000-user directory from 30000 ran into (the identity check said so)
        *(f"{name}:x:{FIRST_UID + n}:20010:staff {n}:/home/{name}:/bin/bash" for n, name in enumerate(staff)),
    ]
    (out / "passwd").write_text("\n".join(passwd) + "\n")
    (out / "group").write_text(f"debgrp:x:20000:deb1,deb2\nallstaff:x:20010:{','.join(staff)}\n")
    shadow = [
        "deb1:!:19700:0:99999:7:::",
        "deb2:!:19700:0:99999:7:::",
        *(f"{s}:!:19700::::::" for s in staff),
    ]
    (out / "shadow").write_text("\n".join(shadow) + "\n")
    (out / "module.toml").write_text(
        f"""# {count} users and a {count}-member group from make.py; only deb1, deb2, debgrp declared
extends = "{HERE.parent / "users.toml"}"
name = "extrausers"
packages = ["libnss-extrausers"]
library = "/usr/lib/libnss_extrausers.so.2"
databases = ["passwd", "group", "shadow"]

[files]
"/var/lib/extrausers/passwd" = "passwd"
"/var/lib/extrausers/group" = "group"
"/var/lib/extrausers/shadow" = {{ source = "shadow", mode = 0o640 }}

[[shadow]]
name = "deb1"
password = "!"
lastchg = 19700
min = 0
max = 99999
warn = 7

[[shadow]]
name = "deb2"
password = "!"
lastchg = 19700
min = 0
max = 99999
warn = 7
"""
    )
    return out


if __name__ == "__main__":
    write(int(sys.argv[1]), Path(sys.argv[2]))
