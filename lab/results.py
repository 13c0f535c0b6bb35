"""The one result model every reader uses: the table, JSON, JUnit, HTML, evidence files and
the pytest plugin. A check returns a CheckResult; the session adds its id and time; a
ModuleReport is one module on one target. Statuses and their order live here and nowhere else."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Worst first: a module's verdict is the worst status among its checks.
SEVERITY = ("crash", "hang", "fail", "error", "warn", "pass", "skip")
STATUSES = ("pass", "warn", "fail", "hang", "crash", "error", "skip")
OK = ("pass", "warn", "skip")  # a warning names a deviation no real caller meets; it does not fail the run
# What a status claims, for readers that sort by consequence rather than by kind.
IMPACT_CLASS = {
    "crash": "breaks-caller",
    "hang": "breaks-caller",
    "fail": "breaks-caller",
    "warn": "contract",
    "error": "lab",
    "pass": "none",
    "skip": "none",
}


def worst(statuses: Iterable[str], default: str = "skip") -> str:
    seen = set(statuses)
    return next((s for s in SEVERITY if s in seen), default)


@dataclass
class CheckResult:
    """A check's verdict. Every warn or fail names, besides its reason (which carries the
    figure it rests on):
    - impact: who breaks and how, one line (for a warn: why no real caller does);
    - reproduce: a command a maintainer runs without the lab, or the name of a script in
      `scripts` that the report writes next to the evidence;
    - control: what was run to rule out the other explanation (e.g. the same call in one thread)."""

    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] | None = None  # hang or crash: cause, explanation, proving frames, raw
    impact: str | None = None
    reproduce: str | None = None
    control: str | None = None
    scripts: dict[str, str] = field(default_factory=dict)  # file name -> self-contained program text
    id: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        assert self.status in STATUSES, self.status

    @property
    def cause(self) -> str | None:
        return self.evidence["cause"] if self.evidence else None

    @property
    def severity(self) -> str:
        return IMPACT_CLASS[self.status]

    def claims(self) -> list[str]:
        """What a finding rests on, as every report prints it."""
        return [
            f"{label}: {value}"
            for label, value in (
                ("impact", self.impact),
                ("control", self.control),
                ("reproduce", self.reproduce),
            )
            if value
        ]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        """as_dict() read back (what a pytest-xdist worker sends its controller)."""
        derived = ("cause", "severity")  # computed from the others
        return cls(**{k: v for k, v in data.items() if k not in derived})

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON keys (id … details), then the ones added with the result model."""
        return {
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "seconds": self.seconds,
            "cause": self.cause,
            "evidence": self.evidence,
            "details": self.details,
            "severity": self.severity,
            "impact": self.impact,
            "reproduce": self.reproduce,
            "control": self.control,
        }


@dataclass
class ModuleReport:
    name: str
    library: str
    target: str
    checks: list[CheckResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    expect: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)  # wall clock: matrix runs overlap
    # the module's [[services]] as run in the target: name, pid, ready_seconds, exit, log tail
    services: list[dict] = field(default_factory=list)
    # what the reproducers need in place, as the lab installed it (lab.install.setup)
    setup: list[str] = field(default_factory=list)

    def as_plain(self) -> dict[str, Any]:
        """Every field as plain data (what a pytest-xdist worker sends its controller)."""
        return {
            "name": self.name,
            "library": self.library,
            "target": self.target,
            "checks": [c.as_dict() for c in self.checks],
            "error": self.error,
            "seconds": self.seconds,
            "expect": self.expect,
            "started": self.started,
            "services": self.services,
            "setup": self.setup,
        }

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> ModuleReport:
        checks = [CheckResult.from_dict(c) for c in data.get("checks", [])]
        return cls(**{k: v for k, v in data.items() if k != "checks"}, checks=checks)

    def needs(self, c: CheckResult) -> list[str]:
        """What C's reproducer needs in place, as the lab installed it: the library, the
        nsswitch.conf lines, the manifest's files, its services (none without a reproducer)."""
        return self.setup if c.reproduce and c.status not in ("pass", "skip") else []

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        return worst(c.status for c in self.checks)

    @property
    def passed(self) -> bool:
        return not self.error and all(c.status in OK for c in self.checks)

    def unexpected(self) -> list[str]:
        """Where the verdicts differ from the manifest's [expect]; unlisted checks must pass or skip."""
        if self.error:
            return [f"error: {self.error}"]
        out = []
        for c in self.checks:
            want = self.expect.get(c.id)
            if (want and c.status != want) or (not want and c.status not in ("pass", "skip")):
                out.append(f"{c.id} {c.status}, expected {want or 'pass'}")
        ran = {c.id for c in self.checks}
        return out + [f"{k} did not run, expected {v}" for k, v in self.expect.items() if k not in ran]
