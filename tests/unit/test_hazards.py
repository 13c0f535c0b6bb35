"""hazards: the vDSO scan on fixture bytes (both directions), the uprobe_events parser, and the
judgment on fixture observations (the shape lab.probe.direct.hazards.hazards returns)."""

from __future__ import annotations

from lab.checks.hazards import VDSO_DUMP, go_tuple, judge
from lab.probe.direct.hazards import parse_uprobe, scan_vdso, tracefs_mounts

# __vdso_clock_gettime from a kernel built with -fstack-check (coreos-overlay#1359):
# push %rbp; mov %rsp,%rbp; push %r14; push %r13; push %r12; push %rbx;
# sub $0x1038,%rsp; orq $0x0,(%rsp); add $0x1020,%rsp
PROBED = bytes.fromhex("55 4889e5 4156 4155 4154 53 4881ec38100000 48830c2400 4881c420100000")
# -fstack-clash-protection's loop: sub $0x1000,%rsp; orq $0x0,0x10(%rsp)
CLASH = bytes.fromhex("4881ec00100000 48834c241000")
# a plain vDSO function: push %rbp; mov %rsp,%rbp; sub $0x30,%rsp; ...; leave; ret
PLAIN = bytes.fromhex("55 4889e5 4883ec30 31c0 c9 c3")
# the probe's bytes without a page-sized sub before them (e.g. inside another instruction's operand)
LOOSE = bytes.fromhex("4883ec30 90 48830c2400 c3")
# aarch64: sub sp, sp, #1, lsl #12; str xzr, [sp, #1024]
ARM_PROBED = (0xD14007FF).to_bytes(4, "little") + (0xF90203FF).to_bytes(4, "little")
ARM_PLAIN = (0xD100C3FF).to_bytes(4, "little") + (0xF90003E0).to_bytes(4, "little")  # sub sp,#48; str x0,[sp]


def test_the_fstack_check_probe_after_a_page_sized_sub_is_found():
    got = scan_vdso(b"\x00" * 64 + PROBED, "x86_64")
    assert got["scanned"] and [(p["offset"], p["bytes"], p["after_sub"]) for p in got["probes"]] == [
        (64 + 18, "48830c2400", 0x1038)
    ]
    assert got["largest_frame"] == 0x1038


def test_the_stack_clash_loop_probe_is_found():
    got = scan_vdso(CLASH, "x86_64")
    assert [(p["bytes"], p["after_sub"]) for p in got["probes"]] == [("48834c241000", 0x1000)]


def test_a_vdso_without_probes_gives_its_largest_frame_and_no_probe():
    got = scan_vdso(PLAIN * 20, "x86_64")
    assert got["probes"] == [] and got["loose"] == 0 and got["largest_frame"] == 0x30


def test_probe_bytes_without_a_big_sub_are_counted_not_claimed():
    got = scan_vdso(LOOSE, "x86_64")
    assert got["probes"] == [] and got["loose"] == 1


def test_aarch64_stack_clash_probe_both_directions():
    assert [p["offset"] for p in scan_vdso(ARM_PROBED, "aarch64")["probes"]] == [4]
    assert scan_vdso(ARM_PLAIN, "aarch64")["probes"] == []
    assert scan_vdso(PROBED, "s390x")["scanned"] is False


def test_uprobe_events_lines_parse():
    e = parse_uprobe(
        "r:uprobes/ret_load /usr/lib/x86_64-linux-gnu/libnss_golab.so.2:0x00000000000b62a0 arg1=%ax"
    )
    assert (e["kind"], e["group"], e["event"], e["path"], e["offset"]) == (
        "r",
        "uprobes",
        "ret_load",
        "/usr/lib/x86_64-linux-gnu/libnss_golab.so.2",
        0xB62A0,
    )
    assert parse_uprobe("p:probe_bash/readline /bin/bash:0x4b4e0(0x1234)")["offset"] == 0x4B4E0
    assert parse_uprobe("") is None and parse_uprobe("-:uprobes/x") is None


def test_go_versions_compare():
    assert go_tuple("go1.9.3") == (1, 9, 3) and go_tuple("go1.10rc1") == (1, 10, 0) and go_tuple(None) is None


def obs(probes=(), events=(), callers=None) -> dict:
    out = {
        "machine": "x86_64",
        "kernel": "4.13.7-hardened",
        "vdso": {"size": 8192, "scanned": True, "probes": list(probes), "loose": 0, "largest_frame": 0x1038},
        "uprobes": {"tracefs": "/sys/kernel/tracing", "mounted": True, "events": list(events)},
        "module_files": [[1, 2]],
    }
    if callers is not None:
        out["callers"] = callers
    return out


PROBE = {"offset": 0xA62, "bytes": "48830c2400", "after_sub": 0x1038}


def ret(enabled, on_module=True) -> dict:
    return {
        "kind": "r",
        "group": "uprobes",
        "event": "ret",
        "path": "/usr/lib/x86_64-linux-gnu/libnss_golab.so.2",
        "offset": 0xB62A0,
        "line": "r:uprobes/ret ...",
        "enabled": enabled,
        "on_module": on_module,
        "symbol": "main.load",
    }


def test_vdso_probes_and_a_go_older_than_the_fix_warn_not_reproduced():
    r = judge(obs([PROBE]), "go1.9.1")  # no Go caller was seen dying: the conditions hold, nothing more
    assert r.status == "warn" and "go1.9.1" in r.reason and "golang/go#20427" in r.reason
    assert "not reproduced here" in r.reason
    assert "unexpected signal during runtime execution" in r.impact and r.reproduce


def test_the_vdso_reproducer_leaves_no_file_behind():
    assert "mktemp" in VDSO_DUMP and 'rm -f "$t"' in VDSO_DUMP and "/tmp/vdso.so" not in VDSO_DUMP


def test_vdso_probes_with_a_fixed_go_pass_with_the_figures():
    for version in ("go1.9.4", "go1.10", "go1.19.8"):
        r = judge(obs([PROBE]), version)
        assert r.status == "pass", (version, r.reason)
        assert "1 stack probe(s)" in r.reason


def test_vdso_probes_with_an_unknown_go_version_warn():
    assert judge(obs([PROBE]), None).status == "warn"


def test_no_probes_and_no_uprobes_pass_even_for_an_old_go():
    r = judge(obs(), "go1.8")
    assert r.status == "pass" and "no stack probes" in r.reason and "0 on the module" in r.reason


def test_an_armed_uretprobe_that_aborts_a_real_caller_fails():
    callers = [
        {
            "argv": ["getent", "-s", "golab", "passwd", "pyama"],
            "rc": -6,
            "said": "runtime: g 19: unexpected return pc for main.load called from 0x7fffffffe000",
        },
        {"argv": ["id", "pyama"], "rc": -6, "said": ""},
    ]
    r = judge(obs(events=[ret(True)], callers=callers), "go1.19.8")
    assert r.status == "fail"
    assert "(main.load)" in r.reason and "SIGABRT" in r.reason and "unexpected return pc" in r.reason
    assert "getent -s golab passwd pyama" in r.reproduce
    assert "unexpected return pc for main.load called from 0x7fffffffe000" in r.control  # the line seen


GETENT = ["getent", "-s", "golab", "passwd", "pyama"]


def test_a_signal_death_with_gos_traceback_fails_and_without_it_warns():
    dead = {"argv": GETENT, "rc": -11, "said": "SIGSEGV: segmentation violation", "corrupt": False}
    r = judge(obs(events=[ret(True)], callers=[{**dead, "traceback": True}]), "go1.19.8")
    assert r.status == "fail" and "SIGSEGV" in r.reason and "SIGSEGV: segmentation violation" in r.control
    r = judge(obs(events=[ret(True)], callers=[{**dead, "traceback": False, "said": ""}]), "go1.19.8")
    assert r.status == "warn" and "without Go's stack abort" in r.reason


def test_a_timeout_or_an_exit_status_under_an_armed_probe_warns():
    slow = {"argv": GETENT, "rc": None, "said": "no answer in 10 s"}
    r = judge(obs(events=[ret(True)], callers=[slow]), "go1.19.8")
    assert r.status == "warn" and "gave no answer in 10 s" in r.reason
    said = {"argv": GETENT, "rc": 2, "said": "fatal error: unexpected signal", "traceback": True}
    assert judge(obs(events=[ret(True)], callers=[said]), "go1.19.8").status == "warn"


def test_an_unreadable_uprobe_events_skips_with_the_reason():
    o = obs()
    o["uprobes"] = {
        "tracefs": "/sys/kernel/tracing",
        "mounted": True,
        "events": [],
        "error": "/sys/kernel/tracing/uprobe_events: Permission denied",
    }
    r = judge(o, "go1.19.8")
    assert r.status == "skip" and "Permission denied" in r.reason and "no stack probes" in r.reason


def test_tracefs_is_found_in_the_mount_table_not_by_touching_debugfs(tmp_path):
    table = tmp_path / "mounts"
    table.write_text(
        "sysfs /sys sysfs rw 0 0\n"
        "tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n"
        "tracefs /sys/kernel/tracing tracefs rw 0 0\n"
        "tracefs /srv/my\\040trace tracefs rw 0 0\n"
    )
    assert tracefs_mounts(str(table)) == ["/sys/kernel/tracing", "/sys/kernel/debug/tracing", "/srv/my trace"]
    assert tracefs_mounts(str(tmp_path / "absent")) == []


def test_an_armed_uretprobe_off_every_callers_path_warns():
    callers = [{"argv": ["getent", "-s", "golab", "passwd", "pyama"], "rc": 0, "said": ""}]
    assert judge(obs(events=[ret(True)], callers=callers), "go1.19.8").status == "warn"


def test_a_defined_unarmed_uretprobe_warns_and_one_elsewhere_or_an_entry_probe_passes():
    assert judge(obs(events=[ret(False)]), "go1.19.8").status == "warn"
    elsewhere = judge(obs(events=[ret(True, on_module=False)]), "go1.19.8")
    assert elsewhere.status == "pass" and "1 uprobe event(s)" in elsewhere.reason
    entry = {**ret(True), "kind": "p"}
    assert judge(obs(events=[entry]), "go1.19.8").status == "pass"
