"""Self-contained programs a maintainer runs without the lab: python3 + ctypes, calling the
module's own entry point the way the check did. The record layouts come from the probe's
lab/probe/entrypoints.py (one source), copied into the script's text."""

from __future__ import annotations

import inspect

from lab.probe import entrypoints

STRUCTS = "\n\n".join(
    inspect.getsource(c) for c in (entrypoints.Passwd, entrypoints.Group, entrypoints.Shadow)
)
RECORD = {"passwd": "Passwd", "group": "Group", "shadow": "Shadow"}

TEMPLATE = '''#!/usr/bin/env python3
"""nsslab reproducer: {what}.
Calls {fn} in {library} directly with a {size}-byte buffer followed by {guard} guard bytes,
as the check did, and prints the status, errno, the bytes written past the buffer and the
answer. Expected from a correct module: SUCCESS, or TRYAGAIN with errno ERANGE (34); no
guard byte changed."""
import ctypes
import sys

STATUS = {{-2: "TRYAGAIN", -1: "UNAVAIL", 0: "NOTFOUND", 1: "SUCCESS", 2: "RETURN"}}

{structs}


def main(size={size}):
    lib = ctypes.CDLL({library!r})
    fn = getattr(lib, {symbol!r})
    record, err = {record}(), ctypes.c_int(0)
    raw = ctypes.create_string_buffer(size + {guard})
    ctypes.memset(raw, 0xA5, size + {guard})
    args = {args}
    status = fn(*args, ctypes.byref(record), raw, ctypes.c_size_t(size), ctypes.byref(err))
    past = [i for i, b in enumerate(raw.raw[size:]) if b != 0xA5]
    print(f"{fn}({key!r}) with a {{size}}-byte buffer: {{STATUS.get(status, status)}}, errno {{err.value}}, "
          f"{{past[-1] + 1 if past else 0}} byte(s) written past the buffer")
    if status == 1:
        fields = {{n: getattr(record, n) for n, _ in record._fields_}}
        for n, v in fields.items():
            if isinstance(v, int) and n not in ("uid", "gid") and v > 1 << 16 and n != "members":
                fields[n] = ctypes.string_at(v).decode(errors="replace")
        print(fields)


main(int(sys.argv[1]) if len(sys.argv) > 1 else {size})
'''


def lookup_script(library: str, service: str, db: str, fn: str, key: object, size: int, what: str) -> str:
    """A program that makes one point lookup with SIZE bytes of buffer."""
    number = isinstance(key, int)
    args = f"[ctypes.c_uint({key})]" if number else f"[ctypes.c_char_p({str(key).encode()!r})]"
    return TEMPLATE.format(
        what=what,
        fn=fn,
        library=library,
        size=size,
        guard=entrypoints.GUARD,
        structs=STRUCTS,
        symbol=f"_nss_{service}_{fn}",
        record=RECORD[db],
        args=args,
        key=key,
    )
