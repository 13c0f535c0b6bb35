"""Reads what gdb printed in the probe (see lab.probe.gdb.GDB_REPORT) into stacks of frames."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

FRAME = re.compile(r"^#(\d+)\s+(?:(0x[0-9a-f]+) in )?(.+?) \(.*?\)(?: at (\S+))?(?: from (\S+))?\s*$")
THREAD = re.compile(r"^Thread (\d+) \((?:Thread 0x[0-9a-f]+ \(LWP (\d+)\)|process (\d+)|LWP (\d+))")
GOROUTINE = re.compile(r"^Goroutine (\d+) \(status (\d+)\):")
CURRENT = re.compile(r"^\*\s+(\d+)\s")
MAPS = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s+(/\S+)")
LIBC = re.compile(r"^(libc\.so|libc-|ld-linux|ld\.so|libpthread)")


@dataclass
class Frame:
    n: int
    func: str
    pc: int | None = None
    source: str = ""  # file:line when gdb had debug info
    obj: str = ""  # the mapped object the pc lies in

    @property
    def lib(self) -> str:
        return PurePosixPath(self.obj).name if self.obj else ""

    def __str__(self) -> str:
        where = f" at {PurePosixPath(self.source).name}" if self.source else ""
        return f"#{self.n} {self.func}{where}" + (f" [{self.lib}]" if self.lib else "")


@dataclass
class Stack:
    kind: str  # "thread" or "goroutine"
    id: int  # gdb's thread number or the goroutine id
    tid: int | None = None
    status: int | None = None  # goroutine status
    frames: list[Frame] = field(default_factory=list)


@dataclass
class GdbReport:
    threads: list[Stack] = field(default_factory=list)
    goroutines: list[Stack] = field(default_factory=list)
    maps: list[tuple[int, int, str]] = field(default_factory=list)
    current: int | None = None  # gdb's thread number of the thread that got the signal
    signal: int | None = None
    exit_status: int | None = None  # stopped at exit_group instead of a signal
    fault_address: int | None = None
    reproduced: bool = True
    go: dict[str, str] = field(default_factory=dict)

    def object_at(self, pc: int | None) -> str:
        if pc is None:
            return ""
        return next((path for start, end, path in self.maps if start <= pc < end), "")

    @property
    def crashed(self) -> Stack | None:
        return next((t for t in self.threads if t.id == self.current), None)


def parse(text: str) -> GdbReport:
    report = GdbReport()
    stack: Stack | None = None
    in_maps = False
    for line in text.splitlines():
        if line == "nsslab-maps-begin":
            in_maps = True
            continue
        if line == "nsslab-maps-end":
            in_maps = False
            continue
        if in_maps:
            m = MAPS.match(line)
            if m and "x" in m.group(3):
                report.maps.append((int(m.group(1), 16), int(m.group(2), 16), m.group(4)))
            continue
        if line.startswith("nsslab-crash "):
            words = line.split()
            if words[1] == "signal":
                report.signal = int(words[2])
            elif words[1] == "exit":
                report.exit_status = int(words[2]) if words[2].lstrip("-").isdigit() else -1
            elif words[1] == "fault-address":
                report.fault_address = int(words[2], 16)
            elif words[1] == "not":
                report.reproduced = False
            continue
        if line.startswith("nsslab-go "):
            name, _, value = line[len("nsslab-go ") :].partition(" = ")
            report.go[name] = value
            continue
        if m := CURRENT.match(line):
            report.current = int(m.group(1))
        elif m := THREAD.match(line):
            tid = next((int(g) for g in m.groups()[1:] if g), None)
            stack = Stack("thread", int(m.group(1)), tid=tid)
            report.threads.append(stack)
        elif m := GOROUTINE.match(line):
            stack = Stack("goroutine", int(m.group(1)), status=int(m.group(2)))
            report.goroutines.append(stack)
        elif (m := FRAME.match(line)) and stack is not None:
            n, pc, func, source, lib = m.groups()
            stack.frames.append(Frame(int(n), func, int(pc, 16) if pc else None, source or "", lib or ""))
    for s in report.threads + report.goroutines:
        previous = ""
        for f in s.frames:
            # An inlined frame has no pc of its own: it lies in the same code as the frame before.
            f.obj = report.object_at(f.pc) or f.obj or (previous if f.pc is None else "")
            previous = f.obj
    return report


def is_libc(frame: Frame) -> bool:
    return bool(LIBC.match(frame.lib))
