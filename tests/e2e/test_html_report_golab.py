"""The HTML report of a real run (golab freezes, clab passes), opened in a real headless
Chromium: the page shows the statuses the run got, and golab's hang evidence, once unfolded,
marks in gdb's backtrace every frame the diagnosis rests on (runtime.futex and on)."""

from __future__ import annotations

from collections import Counter

import pytest

from lab.report.html import write_html
from tests.browser import chromium, screenshot
from tests.conftest import checks

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def page(lab_run, tmp_path_factory):
    reports = [lab_run("golab"), lab_run("clab")]
    path = tmp_path_factory.mktemp("html") / "golab.html"
    write_html(reports, path)
    with chromium() as driver:
        driver.get(path.as_uri())
        yield reports, driver


def test_the_page_shows_the_statuses_of_the_run(page):
    reports, driver = page
    shown = driver.execute_script(
        "return [...document.querySelectorAll('section.module')].map(s => [s.dataset.module,"
        " s.dataset.verdict, Object.fromEntries([...s.querySelectorAll('tr.check')]"
        ".map(r => [r.dataset.check, r.dataset.status]))])"
    )
    assert shown == [[r.name, r.verdict, {c.id: c.status for c in r.checks}] for r in reports]
    golab, clab = (dict(zip(("name", "verdict", "checks"), s, strict=True)) for s in shown)
    assert golab["checks"]["fork-child"] == "hang" and golab["checks"]["lookup"] == "pass"
    assert clab["verdict"] == "pass" and set(clab["checks"].values()) <= {"pass", "skip"}
    section = driver.find_element("css selector", "section.module[data-module=clab]")
    assert section.get_attribute("data-passed") == "true" and reports[1].passed
    # golab's manifest [expect]s its hangs: the page says the run went as expected
    assert driver.find_element("css selector", "#r0 .as-expected").get_attribute("data-unexpected") == "0"


def test_golab_hang_evidence_marks_its_proving_frames(page, record_property):
    reports, driver = page
    fork = checks(reports[0])["fork-child"]
    assert fork.status == "hang" and fork.evidence, fork.reason
    details = driver.find_element("css selector", "#r0-fork-child details.evidence")
    marks = details.find_elements("css selector", "mark.proof")
    assert details.get_attribute("open") is None and marks and not any(m.is_displayed() for m in marks)
    details.find_element("css selector", "summary").click()
    assert all(m.is_displayed() for m in marks)
    # every proving frame the diagnosis names stands marked once in gdb's own text of the process
    # the diagnosis read, and only those: no other process has a mark
    pid = fork.evidence.get("pid")
    assert pid is not None, fork.evidence
    own = details.find_elements("css selector", f"div.process[data-pid='{pid}'] mark.proof")
    assert Counter(m.get_attribute("data-frame") for m in own) == Counter(fork.evidence["frames"])
    assert len(own) == len(marks)
    assert not details.find_elements("css selector", "ol.frames li.unlocated")
    for m in marks:
        function = m.get_attribute("data-frame").split(": ")[-1].split()[1]  # "#N func at …"
        assert f"{function} (" in m.text, (function, m.text)  # gdb: "#N  [0x… in ]func (args) at …"
    assert "runtime.futex" in marks[0].text and marks[0].get_attribute("data-frame").startswith("#0 ")
    cause = details.find_element("css selector", ".cause").text
    assert fork.cause == "go-runtime-after-fork" and fork.cause in cause
    refs = driver.execute_script(
        "return [...document.querySelectorAll('[src], [href]')]"
        ".map(e => e.getAttribute('src') || e.getAttribute('href'))"
    )
    assert all(r.startswith("#") for r in refs), refs
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    screenshot(driver, "html-report-golab.png", record_property)
