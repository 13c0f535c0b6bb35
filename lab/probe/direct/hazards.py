"""Probe side of the `hazards` check (stdlib only, Python 3.9: runs in the target): the
target's own vDSO, scanned for stack-probe instructions, and the target's uprobe_events, for
return probes on the module's file. Only observations; the check judges.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import time

from .. import entrypoints as ep

# ---------------------------------------------------------------- hazards: the vDSO

# x86-64 probe instructions GCC emits for -fstack-check and -fstack-clash-protection:
# `orq $0x0,(%rsp)`, `orq $0x0,d8(%rsp)`, `orq $0x0,d32(%rsp)`.
X86_PROBES = (
    (bytes.fromhex("48830c24"), 0),  # then imm8 0
    (bytes.fromhex("48834c24"), 1),  # then disp8, then imm8 0
    (bytes.fromhex("48838c24"), 4),  # then disp32, then imm8 0
)
SUB_RSP = (bytes.fromhex("4881ec"), bytes.fromhex("4883ec"))  # sub $imm32,%rsp / sub $imm8,%rsp
NEAR = 64  # bytes between a big `sub ..,%rsp` and the probe that touches the new page
PAGE = 4096


def vdso_bytes() -> tuple[int, bytes] | None:
    """This process's [vdso] mapping, read through /proc/self/mem."""
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith("[vdso]"):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                data = ep.memory().bytes(start, end - start)
                return (start, data) if data else None
    return None


def stack_subs(data: bytes) -> list[tuple[int, int]]:
    """(offset, bytes) of every `sub $imm,%rsp`."""
    out = []
    for opcode in SUB_RSP:
        at = data.find(opcode)
        while at >= 0:
            if opcode[1] == 0x81 and at + 7 <= len(data):
                out.append((at, int.from_bytes(data[at + 3 : at + 7], "little", signed=True)))
            elif opcode[1] == 0x83 and at + 4 <= len(data):
                out.append((at, int.from_bytes(data[at + 3 : at + 4], "little", signed=True)))
            at = data.find(opcode, at + 1)
    return sorted(out)


def scan_x86_64(data: bytes) -> dict:
    """Probe instructions: an `or $0,..(%rsp)` within NEAR bytes after a `sub` of a page or
    more (a lone `or` byte pattern may be part of another instruction: counted, not claimed)."""
    subs = stack_subs(data)
    big = [(at, n) for at, n in subs if n >= PAGE]
    probes, loose = [], 0
    for pattern, disp in X86_PROBES:
        at = data.find(pattern)
        while at >= 0:
            end = at + len(pattern) + disp
            if end < len(data) and data[end] == 0:
                after = [s for s in big if 0 < at - s[0] <= NEAR]
                if after:
                    probes.append(
                        {"offset": at, "bytes": data[at : end + 1].hex(), "after_sub": after[-1][1]}
                    )
                else:
                    loose += 1
            at = data.find(pattern, at + 1)
    largest = max((n for _, n in subs), default=0)
    return {"probes": sorted(probes, key=lambda p: p["offset"]), "loose": loose, "largest_frame": largest}


def scan_aarch64(data: bytes) -> dict:
    """`sub sp, sp, #1, lsl #12` (a page) followed within 4 instructions by `str xzr, [sp, #n]`:
    GCC's -fstack-clash-protection probe."""
    words = [int.from_bytes(data[i : i + 4], "little") for i in range(0, len(data) - 3, 4)]
    probes = []
    for i, w in enumerate(words):
        if w == 0xD14007FF:  # sub sp, sp, #0x1, lsl #12
            for j in range(i + 1, min(i + 5, len(words))):
                if words[j] & 0xFFC003FF == 0xF90003FF:  # str xzr, [sp, #imm]
                    probes.append(
                        {"offset": 4 * j, "bytes": data[4 * j : 4 * j + 4].hex(), "after_sub": PAGE}
                    )
                    break
    return {"probes": probes, "loose": 0, "largest_frame": PAGE if probes else 0}


def scan_vdso(data: bytes, machine: str) -> dict:
    if machine == "x86_64":
        return {"scanned": True, **scan_x86_64(data)}
    if machine == "aarch64":
        return {"scanned": True, **scan_aarch64(data)}
    return {"scanned": False, "probes": [], "loose": 0, "largest_frame": 0}


# ---------------------------------------------------------------- hazards: uprobe_events

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18
CHILD_BOUND = 5.0


def parse_uprobe(line: str) -> dict | None:
    """`r:uprobes/ev /lib/x.so:0x00000000000012a0 arg=%ax` -> kind, group, event, path, offset."""
    words = line.split()
    if not words or words[0][0] not in "pr":
        return None
    kind, _, name = words[0].partition(":")
    group, _, event = name.rpartition("/")
    if len(words) < 2 or ":" not in words[1]:
        return None
    path, _, rest = words[1].rpartition(":")
    offset = rest.split("(")[0]
    try:
        value = int(offset, 0)
    except ValueError:
        value = None
    return {
        "kind": kind[0],
        "group": group or "uprobes",
        "event": event,
        "path": path,
        "offset": value,
        "line": line,
    }


def tracefs_mounts(mounts: str = "/proc/self/mounts") -> list[str]:
    """Where tracefs is mounted, from the mount table: stat'ing a path under /sys/kernel/debug
    would trigger systemd's debugfs automount and debugfs's own tracing automount, and both
    mounts would stay in the target. The usual places come first."""
    found = []
    try:
        with open(mounts) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2] == "tracefs":
                    found.append(fields[1].encode().decode("unicode_escape"))  # \040 in a mount point
    except OSError:
        return []
    return sorted(set(found), key=lambda m: (TRACEFS.index(m) if m in TRACEFS else len(TRACEFS), m))


def read_tracefs() -> dict:
    """uprobe_events and each event's ftrace enable state, from the first tracefs mounted.
    An unreadable file is data (error), not a probe error."""
    missing = ""
    for root in tracefs_mounts():
        path = f"{root}/uprobe_events"
        try:
            with open(path) as f:
                lines = [line.strip() for line in f if line.strip()]
        except FileNotFoundError:
            missing = path  # a kernel without CONFIG_UPROBE_EVENTS: try the next mount, if any
            continue
        except OSError as e:
            return {"tracefs": root, "mounted": True, "events": [], "error": f"{path}: {e.strerror or e}"}
        events = []
        for line in lines:
            e = parse_uprobe(line)
            if e is None:
                continue
            try:
                with open(f"{root}/events/{e['group']}/{e['event']}/enable") as f:
                    e["enabled"] = f.read().strip() not in ("0", "")
            except OSError:
                e["enabled"] = None
            try:
                st = os.stat(e["path"])
                e["file"] = [st.st_dev, st.st_ino]
            except OSError:
                e["file"] = None
            events.append(e)
        return {"tracefs": root, "mounted": True, "events": events}
    if missing:
        return {
            "tracefs": None,
            "mounted": True,
            "events": [],
            "error": f"no {missing} (CONFIG_UPROBE_EVENTS off?)",
        }
    return {"tracefs": None, "mounted": False, "events": []}


def tracefs_privately() -> dict:
    """tracefs is not mounted here: mount it in a child's own mount namespace (nothing stays
    mounted in the target), read it there. Bounded; any failure is said, not raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python cleanup, no module calls (a Go runtime does not survive fork)
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
            if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
                raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
            if libc.mount(b"nodev", TRACEFS[0].encode(), b"tracefs", 0, None) != 0:
                raise OSError(ctypes.get_errno(), "mount -t tracefs")
            out = {**read_tracefs(), "mounted": "privately"}
        except Exception as e:  # whatever it is, the parent reports it
            out = {"tracefs": None, "mounted": False, "events": [], "error": str(e)}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data, deadline = b"", time.monotonic() + CHILD_BOUND
    try:
        while time.monotonic() < deadline:
            if select.select([r], [], [], max(deadline - time.monotonic(), 0))[0]:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(r)
        try:
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, 9)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    try:
        return json.loads(data)
    except ValueError:
        return {"tracefs": None, "mounted": False, "events": [], "error": f"no answer in {CHILD_BOUND:g} s"}


def module_files(library: str) -> list[list[int]]:
    """(st_dev, st_ino) of the library as this process sees it, and of the file its mapping
    is (an overlay shows its own inode to stat and the real file's to the mapping)."""
    out = []
    try:
        st = os.stat(library)
        out.append([st.st_dev, st.st_ino])
    except OSError:
        pass
    real = os.path.realpath(library)
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] in (library, real):
                major, minor = (int(x, 16) for x in fields[3].split(":"))
                pair = [os.makedev(major, minor), int(fields[4])]
                if pair not in out:
                    out.append(pair)
    return out


def hazards(module: ep.Module, spec: dict) -> dict:
    machine = os.uname().machine
    found = vdso_bytes()
    vdso = {"size": len(found[1]), **scan_vdso(found[1], machine)} if found else {"size": 0, "scanned": False}
    uprobes = read_tracefs()
    if not uprobes["mounted"] and os.geteuid() == 0:
        uprobes = tracefs_privately()
    mine = module_files(spec["library"])
    for e in uprobes["events"]:
        e["on_module"] = bool(
            e.get("file") in mine or os.path.realpath(e["path"]) == os.path.realpath(spec["library"])
        )
    return {
        "machine": machine,
        "kernel": os.uname().release,
        "vdso": vdso,
        "uprobes": uprobes,
        "module_files": mine,
    }


TESTS = {"hazards": hazards}
