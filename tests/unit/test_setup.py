"""What a reproducer needs in place (lab.install.setup, ModuleReport.set_up): the library, the
nsswitch.conf lines, the manifest's files and services, as the lab installed them; said next
to the reproducer in the table, the JSON, JUnit, the evidence file, the plugin's failure text
and the HTML page, and only for a finding that has a reproducer."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

from lab.install import setup
from lab.module import Module, Service
from lab.plugin.items import failure_text
from lab.report.evidence import render as evidence
from lab.report.html import render_html
from lab.report.machine import as_dict, write_junit
from lab.report.table import render
from lab.results import CheckResult, ModuleReport

LONG = "/var/lib/extrausers/" + "deep/" * 30 + "passwd"  # longer than any terminal line


def module() -> Module:
    return Module(
        name="extrausers",
        library=Path("/cache/debs/libnss-extrausers/tree/usr/lib/libnss_extrausers.so.2"),
        databases=["passwd", "group", "shadow", "initgroups"],
        files={LONG: Path("/src/passwd"), "/var/lib/extrausers/shadow": Path("/src/shadow")},
        modes={"/var/lib/extrausers/shadow": 0o640},
        packages=["libnss-extrausers"],
        services=[Service("sssd", ("/usr/sbin/sssd", "-i"), ("socket", "/run/x"))],
    )


def report() -> ModuleReport:
    r = ModuleReport(name="extrausers", library="/x/libnss_extrausers.so.2", target="sandbox")
    r.setup = setup(module(), "/usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2")
    r.checks = [
        CheckResult("pass", "fine", id="load", reproduce="getent -s extrausers passwd deb1"),
        CheckResult(
            "fail", "lists 0 of 3", id="enumeration", reproduce="getent -s extrausers passwd", impact="lost"
        ),
        CheckResult("fail", "no reproducer for this one", id="lookup"),
    ]
    return r


def test_the_lines_name_the_library_nsswitch_files_modes_packages_and_services():
    assert setup(module(), "/usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2") == [
        "the library as /usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2 "
        "(from /cache/debs/libnss-extrausers/tree/usr/lib/libnss_extrausers.so.2)",
        "unpacked from the Debian package(s) libnss-extrausers, not installed",
        "/etc/nsswitch.conf: passwd: files extrausers; group: files extrausers; shadow: files extrausers",
        f"{LONG} from /src/passwd",
        "/var/lib/extrausers/shadow from /src/shadow, mode 0640",
        "the service sssd running: /usr/sbin/sssd -i",
    ]


def test_only_a_finding_with_a_reproducer_needs_it():
    r = report()
    got = {c.id: r.needs(c) for c in r.checks}
    assert got["enumeration"] == r.setup and got["load"] == [] and got["lookup"] == []


def test_the_table_says_it_once_under_the_module_whole_lines():
    text = render(report(), width=100)
    assert text.count("the reproducers above need, as the lab installed it:") == 1
    assert f"    {LONG} from /src/passwd" in text.splitlines()  # not folded: it must paste back


def test_json_junit_and_evidence_carry_it(tmp_path):
    r = report()
    assert as_dict([r])["modules"][0]["setup"] == r.setup
    json.dumps(as_dict([r]))
    write_junit([r], tmp_path / "j.xml")
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "j.xml").iter("testcase")}
    assert f"set-up: {LONG} from /src/passwd" in cases["enumeration"].find("failure").text.splitlines()
    assert "set-up" not in (cases["lookup"].find("failure").text or "")
    enum = r.checks[1]
    enum.evidence = {"cause": None, "explanation": "", "frames": [], "facts": []}
    text = evidence(r, enum)
    assert "reproduce: getent -s extrausers passwd" in text and f"  - {LONG} from /src/passwd" in text


def test_the_plugins_failure_text_and_the_html_page_carry_it():
    r = report()
    enum = r.checks[1]
    text = failure_text("extrausers::enumeration on sandbox", enum, "fail", None, r.needs(enum))
    assert "  needs /var/lib/extrausers/shadow from /src/shadow, mode 0640" in text.splitlines()
    page = render_html([r])
    row = page[page.index('data-check="enumeration"') : page.index('data-check="lookup"')]
    assert row.count('<dd class="setup">') == 1 and "mode 0640</li>" in row
    assert '<dd class="setup">' not in page[page.index('data-check="lookup"') :]
