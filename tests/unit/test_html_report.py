"""The HTML report, opened in a real headless Chromium: what a user sees is asserted on the
DOM (data attributes, what is displayed, what is marked), from synthetic reports that hold a
pass, a hang with gdb evidence, a crash re-run, a warn, a skip, a module error and one module
on two targets."""

from __future__ import annotations

import re

import pytest

from lab.report.html import backtrace, render_html, version, write_html
from lab.results import CheckResult
from lab.runner import ModuleReport
from tests.browser import chromium, screenshot

LIB = "[libnss_gohang.so.2]"
FRAMES = [
    f"#0 runtime.futex at sys_linux_amd64.s:560 {LIB}",
    f"#1 runtime.futexsleep at os_linux.go:69 {LIB}",
    f"goroutine 17: #4 main._nss_gohang_getpwnam_r at main.go:166 {LIB}",
]
# gdb's text as the probe gets it: the parked thread, a second thread parked in the very same
# futex call (not the proof: the proof's unnamed frames are one thread's), the maps, goroutines.
GDB = """[Thread debugging using libthread_db enabled]
  Id   Target Id                                   Frame
* 1    Thread 0x7f1e4cb402c0 (LWP 4242) "python3" 0x00007f1e4c48d923 in runtime.futex () at /go/sys.s:560

Thread 2 (Thread 0x7f1e4cb40700 (LWP 4243) "python3"):
#0  0x00007f1e4c48d923 in runtime.futex () at /go/src/runtime/sys_linux_amd64.s:560
#1  0x00007f1e4c45a2b6 in runtime.templateThread () at /go/src/runtime/proc.go:2225

Thread 1 (Thread 0x7f1e4cb402c0 (LWP 4242) "python3"):
#0  0x00007f1e4c48d923 in runtime.futex () at /go/src/runtime/sys_linux_amd64.s:560
#1  0x00007f1e4c45a2b6 in runtime.futexsleep (addr=..., val=..., ns=...) at /go/src/runtime/os_linux.go:69
#2  0x00007ffe8cc92ae8 in ?? ()
nsslab-maps-begin
7f1e4c42b000-7f1e4c4c5000 r-xp 00021000 00:2d 2147789 /usr/lib/x86_64-linux-gnu/libnss_gohang.so.2
nsslab-maps-end
Goroutine 5 (status 1):
#4  0x00007f1e4c4c0220 in main._nss_gohang_getpwnam_r (name=...) at /src/gohang/main.go:166
Goroutine 17 (status 4):
#0  0x00007f1e4c460c16 in runtime.gopark (unlockf=...) at /go/src/runtime/proc.go:364
#4  0x00007f1e4c4c1bb4 in main._nss_gohang_getpwnam_r (name=..., pw=...) at /src/gohang/main.go:166
"""
LINES = GDB.splitlines()
THREAD_1 = LINES.index('Thread 1 (Thread 0x7f1e4cb402c0 (LWP 4242) "python3"):')
MARKED = {THREAD_1 + 1: FRAMES[0], THREAD_1 + 2: FRAMES[1], len(LINES) - 1: FRAMES[2]}  # line -> its proof
CRASH_TEXT = """Thread 1 "python3" received signal SIGABRT, Aborted.
Thread 1 (Thread 0x7ffff7ca92c0 (LWP 900) "python3"):
#0  0x00007ffff7d34eec in __pthread_kill_implementation (threadid=...) at ./nptl/pthread_kill.c:44
Thread 2 (Thread 0x7ffff75726c0 (LWP 901) "python3"):
#0  0x00007ffff75f6923 in runtime.futex () at /go/src/runtime/sys_linux_amd64.s:560
Thread 3 (Thread 0x7ffff75726c0 (LWP 902) "python3"):
#0  0x00007ffff75f6923 in runtime.futex () at /go/src/runtime/sys_linux_amd64.s:560
"""
CRASH_FRAMES = [
    "#0 __pthread_kill_implementation at pthread_kill.c:44 [libc.so.6]",
    f"thread 902: #0 runtime.futex at sys_linux_amd64.s:560 {LIB}",
]


def hang_evidence() -> dict:
    return {
        "cause": "go-runtime-after-fork",
        "explanation": "forked child called _nss_gohang_getpwnam_r into the Go runtime it inherited",
        "frames": FRAMES,
        "facts": ["pid 4242: 1 thread(s), libnss_gohang.so.2 mapped"],
        "step": "after-use getpwnam('pyama')",
        "raw": {
            "processes": [
                {
                    "pid": 4242,
                    "cmdline": "/usr/bin/python3 probe worker",
                    "threads": 1,
                    "nss_modules": ["/usr/lib/x86_64-linux-gnu/libnss_gohang.so.2"],
                    "parent": {"pid": 4200, "alive": True, "threads": 6, "fork_without_exec": True},
                    "tasks": [
                        {
                            "tid": 4242,
                            "comm": "python3",
                            "state": "S",
                            "wait": "self",
                            "call": "futex",
                            "wchan": "futex_do_wait",
                            "futex": {"addr": "0xc000034148", "owner": 0},
                        },
                    ],
                    "gdb": {"text": GDB, "seconds": 0.8},
                }
            ]
        },
        "file": "nsslab-report/gohang/fork-child.txt",
    }


def reports() -> list[ModuleReport]:
    clab = ModuleReport("clab", "nss_modules/clab/libnss_clab.so.2", "sandbox", seconds=3.2)
    clab.checks = [CheckResult("pass", "loaded", id="load"), CheckResult("pass", "3 users", id="lookup")]
    old = ModuleReport("clab", "nss_modules/clab/libnss_clab.so.2", "rootfs://debian11", seconds=4.0)
    old.checks = [
        CheckResult("pass", "loaded", id="load"),
        CheckResult("fail", "getpwnam('pyama') said NOTFOUND", impact="id pyama fails", id="lookup"),
        CheckResult("skip", "not a Go module", id="go-runtime"),
    ]
    gohang = ModuleReport("gohang", "nss_modules/gohang/libnss_gohang.so.2", "sandbox", seconds=9.5)
    gohang.expect = {"fork-child": "hang", "setxid": "crash"}
    gohang.checks = [
        CheckResult("warn", "STATIC_TLS with a 8-byte TLS block", impact="no caller breaks here",
                    reproduce="readelf -d libnss_gohang.so.2", id="elf"),
        CheckResult("pass", "loaded", id="load"),
        CheckResult("hang", "getpwnam('pyama') in the child never returned", evidence=hang_evidence(),
                    impact="a forked child never returns", control="7 children of a fresh parent passed",
                    reproduce="python3 -c 'import os, pwd; ...'", id="fork-child"),
        CheckResult("crash", "SIGABRT during drop()",
                    evidence={"cause": "setxid-abort", "explanation": "glibc aborted in setresgid",
                              "frames": CRASH_FRAMES, "facts": [], "step": "setpriv",
                              "raw": {"text": CRASH_TEXT, "seconds": 2.5}},
                    id="setxid"),
        CheckResult("skip", "needs a whole system", id="login-paths"),
    ]  # fmt: skip
    broken = ModuleReport(
        "broken", "nss_modules/broken", "sandbox", error="no module.toml in nss_modules/broken"
    )
    return [clab, old, gohang, broken]


@pytest.fixture(scope="module")
def driver():
    with chromium() as d:
        yield d


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("html") / "report.html"
    write_html(reports(), path)
    return path


def load(driver, path):
    driver.get(path.as_uri())
    return driver


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def marks(text: str, frames: list[str]) -> dict[int, str]:
    lines = [line for seg in backtrace(text, frames) for line in seg.lines]
    assert [line for line, _ in lines] == text.splitlines()  # nothing lost, nothing moved
    return {i: proof for i, (_, proof) in enumerate(lines) if proof}


def test_backtrace_marks_each_proof_frame_on_its_own_stack():
    # thread 2's identical futex frame and goroutine 5's getpwnam_r frame stay plain
    assert marks(GDB, FRAMES) == MARKED
    assert marks(CRASH_TEXT, CRASH_FRAMES) == {2: CRASH_FRAMES[0], 6: CRASH_FRAMES[1]}  # LWP 902, not 901
    assert marks(GDB, []) == {}  # no claim, no mark


# Two threads parked in the same futex call: the same count of the proof's unnamed frames.
TIE = """  Id   Target Id                                   Frame
  1    Thread 0x7f1e4cb402c0 (LWP 4242) "python3" 0x00007f1e4c48d923 in runtime.futex ()
* 2    Thread 0x7f1e4cb40700 (LWP 4243) "python3" 0x00007f1e4c48d923 in runtime.futex ()

Thread 2 (Thread 0x7f1e4cb40700 (LWP 4243) "python3"):
#0  0x00007f1e4c48d923 in runtime.futex () at /go/src/runtime/sys_linux_amd64.s:560
Thread 1 (Thread 0x7f1e4cb402c0 (LWP 4242) "python3"):
#0  0x00007f1e4c48d923 in runtime.futex () at /go/src/runtime/sys_linux_amd64.s:560
"""


def test_a_tie_goes_to_gdbs_current_thread_or_is_not_marked():
    tie = TIE.splitlines()
    assert marks(TIE, FRAMES[:1]) == {5: FRAMES[0]}  # '* 2': thread 2 (listed first here)
    current_is_1 = TIE.replace("  1    Thread", "* 1    Thread").replace("* 2    Thread", "  2    Thread")
    assert marks(current_is_1, FRAMES[:1]) == {7: FRAMES[0]}  # thread 1, though listed second
    assert marks("\n".join(tie[3:]), FRAMES[:1]) == {}  # no current thread named: no guess
    # a crash re-run names the thread that got the signal
    signalled = 'Thread 1 "python3" received signal SIGABRT, Aborted.\n' + "\n".join(tie[3:])
    assert marks(signalled, FRAMES[:1]) == {5: FRAMES[0]}


def two_processes_evidence(pid: int | None) -> dict:
    """The diagnosis read process 4242 (PID); its parent 4200 froze the same way."""
    evidence = hang_evidence() | {"pid": pid}
    child = evidence["raw"]["processes"][0]
    parent = {**child, "pid": 4200, "parent": {}, "gdb": {"text": GDB, "seconds": 0.9}}
    evidence["raw"] = {"processes": [child, parent]}
    return evidence


def evidence_page(driver, tmp_path, evidence: dict):
    report = ModuleReport("gohang", "nss_modules/gohang/libnss_gohang.so.2", "sandbox")
    report.checks = [CheckResult("hang", "never returned", evidence=evidence, id="fork-child")]
    write_html([report], tmp_path / "evidence.html")
    load(driver, tmp_path / "evidence.html")
    return driver.find_element("css selector", "details.evidence")


def marked_by_pid(details) -> dict[str, list[str]]:
    return {
        p.get_attribute("data-pid"): [
            m.get_attribute("data-frame") for m in p.find_elements("css selector", "mark.proof")
        ]
        for p in details.find_elements("css selector", "div.process")
    }


def test_proof_is_marked_only_in_the_process_the_diagnosis_read(driver, tmp_path):
    details = evidence_page(driver, tmp_path, two_processes_evidence(4242))
    want = [MARKED[i] for i in sorted(MARKED)]
    assert marked_by_pid(details) == {"4242": want, "4200": []}
    # an evidence that names no process: marked wherever it stands, as before
    details = evidence_page(driver, tmp_path, two_processes_evidence(None))
    assert marked_by_pid(details) == {"4242": want, "4200": want}


def test_a_proving_frame_not_in_gdbs_text_is_shown_as_such(driver, tmp_path):
    missing = f"#3 main._nss_gohang_getpwnam_r at main.go:999 {LIB}"
    evidence = hang_evidence()
    evidence["frames"] = [*FRAMES, missing]
    details = evidence_page(driver, tmp_path, evidence)
    details.find_element("css selector", "summary").click()
    items = details.find_elements("css selector", "ol.frames li")
    assert [(i.get_attribute("class"), i.find_element("css selector", "code.frame").text) for i in items] == [
        ("located", FRAMES[0]),
        ("located", FRAMES[1]),
        ("located", FRAMES[2]),
        ("unlocated", missing),
    ]
    assert items[-1].text == f"{missing} (not located in gdb's text)" and items[-1].is_displayed()
    assert all("not located" not in i.text for i in items[:-1])


def test_evidence_with_missing_keys_renders():
    minimal = ModuleReport("a", "x", "sandbox")
    minimal.checks = [CheckResult("hang", "stuck", evidence={"cause": "x", "explanation": "y"}, id="one")]
    sparse = ModuleReport("b", "y", "sandbox")
    sparse.checks = [
        CheckResult(
            "hang",
            "stuck",
            evidence={
                "cause": "x",
                "explanation": "y",
                "raw": {"processes": [{}, {"pid": 7, "parent": {"alive": True}, "tasks": [{}]},
                                      {"pid": 8, "gdb": {"same_as": {"step": "s"}}}]},
            },
            id="two",
        )
    ]  # fmt: skip
    sparse.services = [{}]
    html = render_html([minimal, sparse])
    assert "cause: x" in html and 'data-pid="7"' in html and "taken in step s from pid ?" in html


def test_modules_and_check_statuses_are_in_the_dom(driver, report_file):
    load(driver, report_file)
    modules = js(
        driver,
        "return [...document.querySelectorAll('section.module')].map(s => [s.dataset.module,"
        " s.dataset.target, s.dataset.verdict,"
        " [...s.querySelectorAll('tr.check')].map(r => [r.dataset.check, r.dataset.status])])",
    )
    want = [
        [r.name, r.target, r.verdict, [[c.id, c.status] for c in r.checks]] for r in reports()
    ]  # fmt: skip
    assert modules == want
    summary = driver.find_element("id", "summary")
    assert (summary.get_attribute("data-passed"), summary.get_attribute("data-total")) == ("1", "4")
    assert "1 of 4 modules passed" in summary.text
    assert summary.get_attribute("data-version") == version() and f"nsslab {version()}" in summary.text
    row = driver.find_element("css selector", "#r2-fork-child")
    assert "getpwnam('pyama') in the child never returned" in row.text
    assert "a forked child never returns" in row.find_element("css selector", ".impact").text
    assert "7 children of a fresh parent" in row.find_element("css selector", ".control").text
    assert row.find_element("css selector", ".reproduce").text.startswith("python3 -c")
    # the module's [expect] lists no warn for elf: the page says the verdicts differ, and where
    unexpected = driver.find_element("css selector", "#r2 .unexpected")
    assert "elf warn, expected pass" in unexpected.text and "fork-child" not in unexpected.text


def test_statuses_look_different(driver, report_file):
    load(driver, report_file)
    colours = js(
        driver,
        "const out = {}; for (const b of document.querySelectorAll('tr.check .badge'))"
        " out[b.dataset.status] = getComputedStyle(b).backgroundColor; return out",
    )
    assert set(colours) == {"pass", "warn", "fail", "hang", "crash", "skip"}
    assert len(set(colours.values())) == len(colours), colours


def test_evidence_is_folded_until_opened_then_its_proof_is_marked(driver, report_file):
    load(driver, report_file)
    details = driver.find_element("css selector", "#r2-fork-child details.evidence")
    marks = details.find_elements("css selector", "mark.proof")
    assert details.get_attribute("open") is None
    assert marks and not any(m.is_displayed() for m in marks)
    assert not any(f.is_displayed() for f in details.find_elements("css selector", "code.frame"))
    details.find_element("css selector", "summary").click()
    assert details.get_attribute("open") is not None
    assert all(m.is_displayed() for m in marks)
    assert [(m.get_attribute("data-frame"), m.text) for m in marks] == [
        (p, LINES[i]) for i, p in MARKED.items()
    ]
    assert [f.text for f in details.find_elements("css selector", "code.frame")] == FRAMES
    assert "go-runtime-after-fork" in details.find_element("css selector", ".cause").text
    tasks = details.find_elements("css selector", "table.tasks tr")
    assert [td.text for td in tasks[1].find_elements("css selector", "td")][:4] == [
        "4242",
        "python3",
        "S",
        "self",
    ]
    # the maps stay folded inside the opened evidence
    maps = details.find_element("css selector", "details.maps")
    assert (
        maps.get_attribute("open") is None
        and "libnss_gohang" not in maps.find_element("css selector", "pre").text
    )
    crash = driver.find_element("css selector", "#r2-setxid details.evidence")
    crash.find_element("css selector", "summary").click()
    assert [
        m.get_attribute("data-frame") for m in crash.find_elements("css selector", "mark.proof")
    ] == CRASH_FRAMES


def test_matrix_has_a_row_per_target_and_links_to_each_check(driver, report_file):
    load(driver, report_file)
    matrices = driver.find_elements("css selector", "table.matrix")
    assert [m.get_attribute("data-module") for m in matrices] == ["clab"]  # gohang ran on one target
    rows = js(
        driver,
        "return [...arguments[0].querySelectorAll('tr[data-target]')].map(r => [r.dataset.target,"
        " Object.fromEntries([...r.querySelectorAll('td[data-check]')]"
        ".map(c => [c.dataset.check, c.dataset.status]))])",
        matrices[0],
    )
    assert rows == [
        ["sandbox", {"load": "pass", "lookup": "pass", "go-runtime": ""}],
        ["rootfs://debian11", {"load": "pass", "lookup": "fail", "go-runtime": "skip"}],
    ]
    assert driver.find_element("css selector", "section.matrix h2").text == (
        "clab nss_modules/clab/libnss_clab.so.2 on 2 targets"
    )
    for link in matrices[0].find_elements("css selector", "td[data-check] a"):
        cell = link.find_element("xpath", "..")
        target = driver.find_element("id", link.get_attribute("hash")[1:])
        assert target.get_attribute("data-check") == cell.get_attribute("data-check")
        assert target.get_attribute("data-status") == cell.get_attribute("data-status")
        assert target.get_attribute("data-target") == cell.find_element("xpath", "..").get_attribute(
            "data-target"
        )


def test_two_builds_of_one_module_are_two_matrices(driver, tmp_path):
    def run(library, target, status):
        r = ModuleReport("x", library, target)
        r.checks = [CheckResult(status, "", id="lookup")]
        return r

    builds = [run(lib, target, status) for target in ("sandbox", "rootfs://debian11")
              for lib, status in (("a/libnss_x.so.2", "pass"), ("b/libnss_x.so.2", "fail"))]  # fmt: skip
    builds += [run("c/libnss_x.so.2", "sandbox", "pass"), run("c/libnss_x.so.2", "sandbox", "pass")]
    write_html(builds, tmp_path / "builds.html")
    load(driver, tmp_path / "builds.html")
    shown = js(
        driver,
        "return [...document.querySelectorAll('section.matrix')].map(s => [s.dataset.library,"
        " s.querySelector('h2').textContent,"
        " [...s.querySelectorAll('td[data-check]')].map(c => c.dataset.status)])",
    )
    assert shown == [
        ["a/libnss_x.so.2", "x a/libnss_x.so.2 on 2 targets", ["pass", "pass"]],
        ["b/libnss_x.so.2", "x b/libnss_x.so.2 on 2 targets", ["fail", "fail"]],
    ]  # c ran twice on one target: no matrix


def test_a_module_error_is_shown_as_such(driver, report_file):
    load(driver, report_file)
    section = driver.find_element("css selector", "section.module[data-module=broken]")
    assert section.get_attribute("data-verdict") == "error"
    error = section.find_element("css selector", ".module-error")
    assert error.is_displayed() and "no module.toml in nss_modules/broken" in error.text
    assert not section.find_elements("css selector", "tr.check")


def test_the_page_fetches_nothing(driver, report_file, record_property):
    load(driver, report_file)
    assert js(driver, "return performance.getEntriesByType('resource').map(e => e.name)") == []
    assert (
        js(driver, "return document.scripts.length + document.querySelectorAll('link, img, iframe').length")
        == 0
    )
    refs = js(
        driver,
        "return [...document.querySelectorAll('[src], [href]')]"
        ".map(e => e.getAttribute('src') || e.getAttribute('href'))",
    )
    assert refs and all(r.startswith("#") for r in refs), refs  # in-page anchors only
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", report_file.read_text(), re.I)
    for summary in driver.find_elements("css selector", "details.evidence > summary"):
        summary.click()  # the picture shows the evidence opened, proof marked
    shot = screenshot(driver, "html-report.png", record_property)
    assert shot.stat().st_size > 10_000


def test_text_from_the_module_is_escaped(driver, tmp_path):
    hostile = ModuleReport("evil<b>", "x", "sandbox")
    hostile.checks = [
        CheckResult("fail", "<script>document.title='owned'</script>", impact='"><img src=x>', id="lookup")
    ]
    assert "<script>document" not in render_html([hostile])
    write_html([hostile], tmp_path / "evil.html")
    load(driver, tmp_path / "evil.html")
    assert js(driver, "return document.scripts.length + document.images.length") == 0
    assert "owned" not in driver.title
    row = driver.find_element("css selector", "tr.check[data-check=lookup]")
    assert row.find_element("css selector", ".reason").text == "<script>document.title='owned'</script>"
    assert row.find_element("css selector", ".impact").text == '"><img src=x>'
    assert driver.find_element("css selector", "section.module").get_attribute("data-module") == "evil<b>"


@pytest.mark.parametrize(("name", "package"), [("CHROMIUM", "chromium"), ("CHROMEDRIVER", "chromium-driver")])
def test_a_missing_browser_fails_and_names_its_package(monkeypatch, tmp_path, name, package):
    monkeypatch.setattr(f"tests.browser.{name}", tmp_path / "absent")
    with pytest.raises(pytest.fail.Exception, match=f"install the Debian package {package} "), chromium():
        pass
