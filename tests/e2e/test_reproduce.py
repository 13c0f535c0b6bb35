"""`nsslab reproduce stns` replays the diagnosis with real output, ends, and leaves nothing.

The end-to-end test reads the values the run printed (pids, thread counts, frames, the flag
gdb printed) and checks the narration against them; the unit tests feed the narration
figures that contradict the usual story and check that its conclusions change."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.checks.tab_completion import Attempt
from lab.reproduce import (
    backtrace_story,
    flag_story,
    fork_story,
    init_story,
    proof_story,
    root_story,
    strace_story,
    watch_story,
)

ROOT = Path(__file__).resolve().parent.parent.parent
LIB = "libnss_golab.so.2"


def section(out: str, n: int) -> str:
    start = out.index(f"\n[{n}/11] ")
    end = out.find(f"\n[{n + 1}/11] ", start)
    return out[start : end if end > 0 else len(out)]


def one(pattern: str, text: str) -> re.Match:
    found = re.search(pattern, text, re.M)
    assert found, f"no {pattern!r} in:\n{text}"
    return found


def said(pattern: str, text: str) -> re.Match:
    """PATTERN in the narration, whose paragraphs are wrapped at 100 columns."""
    return one(pattern, " ".join(text.split()))


@pytest.mark.sandbox
def test_reproduce_stns_replays_the_diagnosis_and_cleans_up():
    before = set(Path("/tmp").glob("nsslab-*"))
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "reproduce", "stns"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Traceback" not in done.stderr

    # 1: strace's clone calls, counted from the lines strace printed
    nss = section(out, 1)
    one(rf'^      openat\(.*"/lib/\S+/{LIB}"', nss)
    clones = int(
        said(r"shows \d+ other pid\(s\) and (\d+) clone call\(s\); all (\d+) carry CLONE_THREAD", nss)[1]
    )
    assert clones > 0

    # 2: the module user's shell froze, root's first completion worked
    symptom = section(out, 2)
    one(r"^    pyama\$ ls ~ta<TAB>\n      hang: `ls ~ta<TAB>` froze: 1 thread\(s\) stuck in futex", symptom)
    one(r"^    root\$ ls ~ta<TAB>\n      pass: completed ~ta to ~taro", symptom)

    # 3: the frames gdb printed for the frozen child, and the reading derived from them
    look = section(out, 3)
    child = int(one(r"^\[3/11\] First gdb look at the frozen process (\d+)", look)[1])
    frames = re.findall(r"^      (?:goroutine \d+: )?#\d+ (\S+) at .*\[(\S+)\]$", look, re.M)
    names = [f for f, _ in frames]
    assert {"runtime.futex", "runtime.stoplockedm", "runtime.cgocallback"} <= set(names), names
    entry = next(f for f in names if re.fullmatch(r"main\._nss_golab_\w+", f))
    assert all(lib == LIB for _, lib in frames)
    said(rf"C called {re.escape(entry)}, which entered Go from a C context", look)

    # 4: thread counts of the frozen child and its parent, from the hang snapshot
    fork = section(out, 4)
    pid, threads = map(
        int, one(r"^      frozen process (\d+) \(/bin/bash .*\): (\d+) thread\(s\)$", fork).groups()
    )
    parent, parent_threads = map(
        int,
        one(
            r"^      its parent, pyama's bash (\d+): (\d+) thread\(s\) \(forked without exec\)$", fork
        ).groups(),
    )
    assert pid == child and threads == 1 and parent_threads > 1
    said(rf"it has 1 thread where its parent has {parent_threads}: fork copied only the calling thread", fork)

    # 5: golab's own init log: init ran in the parent, never in the frozen child
    init = section(out, 5)
    logged = [int(p) for p in re.findall(r"^      golab: init in pid (\d+)$", init, re.M)]
    assert parent in logged and child not in logged, logged
    one(rf"^      pid {parent}: pyama's bash, logged while pyama's bash started$", init)
    said(rf"in pyama's bash \({parent}\): yes; in the frozen child \({child}\): no\.", init)

    # 6: gdb attached to the frozen child now, and what it printed for the flag
    flag = section(out, 6)
    printed = one(
        rf"^    \$ gdb -batch .* -p {child} -ex 'print runtime_init_done'\n((?:      .*\n)+)", flag
    )[1]
    assert one(r"^      \$1 = (\d+)$", printed)[1] == "1"
    one(rf"\[Inferior 1 \(process {child}\) detached\]", printed)
    said(rf"\(1 here, {parent_threads} in the parent\)", flag)

    # 7: the flag goes 0 -> 1 in x_cgo_notify_runtime_init_done, after the loader's constructor
    watch = section(out, 7)
    one(r"^      Breakpoint 1, .* in _rt0_\w+_lib \(\)", watch)
    one(r"^      #\d+ .* in _dl_init \(", watch)
    one(r"^      #\d+ .* in module_load \(", watch)
    one(r"^      \$1 = 0$", watch)
    setter_thread = one(r'^      Thread (\d+) "python3" hit Hardware watchpoint', watch)[1]
    one(r"^      Old value = 0\n      New value = 1\n      #0 .* in x_cgo_notify_runtime_init_done \(", watch)
    said(rf"in x_cgo_notify_runtime_init_done, on thread {setter_thread}", watch)

    # 8: the module mapped per shell and in the frozen child
    proof = section(out, 8)
    one(rf"^      pyama's bash at start: {LIB}$", proof)
    one(rf"^      the frozen child {child}: {LIB}$", proof)
    one(r"^      root's bash at start: no NSS module$", proof)

    # 9: root's shell loaded the module itself, and its next completion froze
    again = section(out, 9)
    one(rf"^      root's bash now: {LIB}$", again)
    one(r"^      hang: `ls ~ta<TAB>` froze", again)

    assert "cause: go-runtime-after-fork" in section(out, 10)
    assert "\nreproduced: yes\n" in out
    assert "workdir gone, 0 lab mounts left" in out
    assert set(Path("/tmp").glob("nsslab-*")) == before


# ---- the narration, fed figures that contradict the usual story


THREAD = (
    "clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, ...}, 88) = 101"
)
FORK = "clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD) = 102"
OPEN = f'openat(AT_FDCWD, "/lib/x86_64-linux-gnu/{LIB}", O_RDONLY|O_CLOEXEC) = 3'


def test_strace_story_follows_the_clone_flags():
    usual = strace_story(f"{OPEN}\n{THREAD}\n[pid   101] {THREAD}", LIB)
    assert "all 2 carry CLONE_THREAD" in usual and "never forks" in usual
    assert "started after libnss_golab.so.2 was opened" in usual
    forked = strace_story(f"{OPEN}\n{THREAD}\n{FORK}\n[pid   102] exit", LIB)
    assert "never forks" not in forked and "1 of them without CLONE_THREAD" in forked
    early = strace_story(f"{THREAD}\n{OPEN}", LIB)
    assert "1 thread(s) were started before" in early and "the module's Go runtime started them" not in early
    assert "never forks" not in strace_story("(no answer: strace timed out)", LIB)


FROZEN = [
    "#0 runtime.futex at sys_linux_amd64.s:560 [libnss_golab.so.2]",
    "#4 runtime.stoplockedm at proc.go:2448 [libnss_golab.so.2]",
    "goroutine 17: #3 main._nss_golab_setpwent at main.go:211 [libnss_golab.so.2]",
    "goroutine 17: #8 runtime.cgocallback at asm_amd64.s:994 [libnss_golab.so.2]",
]


def test_backtrace_story_follows_the_frames_and_the_thread_count():
    usual = backtrace_story(FROZEN, "golab", {"threads": 1}, 0.5)
    assert "C called main._nss_golab_setpwent" in usual and "no other thread is there to wake it" in usual
    many = backtrace_story(FROZEN, "golab", {"threads": 4}, 0.5)
    assert "no other thread" not in many and "4 threads" in many
    in_libc = backtrace_story(
        ["#0 __lll_lock_wait at lowlevellock.c:49 [libc.so.6]"], "golab", {"threads": 1}, 0.5
    )
    assert "not a Go scheduler wait" in in_libc and "C called" not in in_libc and "wake it" not in in_libc
    assert "nothing to read" in backtrace_story([], "golab", {"threads": 1}, None)


def test_fork_story_follows_the_thread_counts():
    parent = {"pid": 10, "alive": True, "threads": 6, "fork_without_exec": True}
    assert "fork copied only the calling thread" in fork_story({"threads": 1, "parent": parent}, 10, "b")
    crowded = fork_story({"threads": 3, "parent": parent}, 10, "b")
    assert "copied only" not in crowded and "3 thread(s)" in crowded
    execed = fork_story({"threads": 1, "parent": parent | {"fork_without_exec": False}}, 10, "b")
    assert "not a plain fork" in execed
    assert "gone" in fork_story({"threads": 1, "parent": {"pid": 10, "alive": False}}, 10, "b")


def test_init_and_flag_stories_follow_the_log_and_the_value():
    assert "the child never ran init" in init_story([10, 12], "pyama", 10, 11)
    ran = init_story([10, 11], "pyama", 10, 11)
    assert "in the frozen child (11): yes" in ran and "never ran init" not in ran
    assert "Neither logged init" in init_story([12], "pyama", 10, 11)
    assert "though init never ran in this process" in flag_story("1", False, 1, 6)
    assert "never ran" not in flag_story("1", True, 1, 6)
    assert "'not initialised'" in flag_story("0", False, 1, 6)
    assert "nothing to conclude" in flag_story(None, False, 1, 6)


WATCH = """Breakpoint 1, 0x00007ffff79b64a0 in _rt0_amd64_lib () at asm_amd64.s:34
#0  0x00007ffff79b64a0 in _rt0_amd64_lib () at asm_amd64.s:34
#1  0x00007ffff7fcea1e in call_init (env=...) at ./elf/dl-init.c:74
#3  0x00007ffff7fceb04 in _dl_init (main_map=...) at ./elf/dl-init.c:121
#13 0x00007ffff7dddbf7 in module_load (module=...) at ./nss/nss_module.c:191
$1 = 0
Hardware watchpoint 2: runtime_init_done
Thread 2 "python3" hit Hardware watchpoint 2: runtime_init_done
Old value = 0
New value = 1
#0  0x00007ffff79f1641 in x_cgo_notify_runtime_init_done (dummy=...) at gcc_libinit.c:69
"""


def test_watch_story_follows_what_gdb_printed():
    usual = watch_story(WATCH, "amd64")
    assert "call_init ← _dl_init ← module_load: the dynamic loader ran it as a constructor" in usual
    assert "from 0 to 1 in x_cgo_notify_runtime_init_done, on thread 2, a thread the runtime started" in usual
    unwatched = watch_story(WATCH.split("Thread 2")[0], "amd64")
    assert "never fired" in unwatched and "x_cgo_notify" not in unwatched
    direct = watch_story(re.sub(r"^#[13].*\n", "", WATCH, flags=re.M), "amd64")
    assert "not shown to be a constructor" in direct
    same = watch_story(WATCH.replace('Thread 2 "python3"', 'Thread 1 "python3"'), "amd64")
    assert "the runtime started" not in same
    assert "was not hit" in watch_story("", "amd64")


def test_proof_and_root_stories_follow_the_mappings_and_attempts():
    ok, hang = Attempt("pass", "completed", 0.1), Attempt("hang", "froze", 1.0)
    usual = proof_story(LIB, "pyama", [LIB], [LIB], False, [], ok, [21, 20], 20)
    assert "init ran in pid 21" in usual and "inherited the mapping" in usual and "worked" in usual
    other = proof_story(LIB, "pyama", [], [], True, [LIB], hang, [], 20)
    assert "did not have" in other and "does not have it mapped" in other
    assert "mapped at start too" in other and "ended in hang" in other
    assert "froze too, with the same cause" in root_story(LIB, [], [LIB], True, hang, "go-runtime-after-fork")
    calm = root_story(LIB, [], [], False, ok, None)
    assert "still has no" in calm and "did not freeze" in calm and "froze" not in calm
