"""JSON (the documented contract) and JUnit XML (for CI dashboards)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

from lab.report import save
from lab.runner import ModuleReport


def as_dict(reports: list[ModuleReport]) -> dict:
    return {
        "modules": [
            {
                "name": r.name,
                "library": r.library,
                "target": r.target,
                "verdict": r.verdict,
                "started": datetime.fromtimestamp(r.started, UTC).isoformat(timespec="milliseconds"),
                "seconds": round(r.seconds, 3),
                "error": r.error,
                "checks": [c.as_dict() for c in r.checks],
                "services": r.services,
                "setup": r.setup,
            }
            for r in reports
        ]
    }


def write_json(reports: list[ModuleReport], path: Path) -> None:
    save(path, json.dumps(as_dict(reports), indent=2, default=str) + "\n")


def write_junit(reports: list[ModuleReport], path: Path) -> None:
    suites = ET.Element("testsuites")
    for r in reports:
        suite = ET.SubElement(
            suites, "testsuite", name=f"nsslab.{r.name}", tests=str(len(r.checks)), time=f"{r.seconds:.3f}"
        )
        if r.error:
            ET.SubElement(ET.SubElement(suite, "testcase", name="setup"), "error", message=r.error)
        for c in r.checks:
            case = ET.SubElement(
                suite, "testcase", classname=f"nsslab.{r.name}", name=c.id, time=f"{c.seconds:.3f}"
            )
            if c.status == "skip":
                ET.SubElement(case, "skipped", message=c.reason)
            elif c.status == "warn":  # passes, but says so where CI shows it
                ET.SubElement(case, "system-out").text = "\n".join([f"warning: {c.reason}", *c.claims()])
            elif c.status != "pass":
                failure = ET.SubElement(case, "failure", type=c.status, message=c.reason)
                lines = c.claims()
                if c.evidence:
                    lines += [
                        f"cause: {c.cause}: {c.evidence['explanation']}",
                        *(c.evidence.get("frames") or []),
                    ]
                lines += [f"set-up: {line}" for line in r.needs(c)]
                failure.text = "\n".join(lines)
    save(path, ET.tostring(suites, encoding="unicode", xml_declaration=True))
