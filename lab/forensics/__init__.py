"""Diagnosis: turns the evidence the probe collected at a hang or crash into a named cause."""

from lab.forensics.causes import CAUSES, Diagnosis, diagnose, diagnose_crash, diagnose_hang
from lab.forensics.observed import OBSERVED

__all__ = ["CAUSES", "OBSERVED", "Diagnosis", "diagnose", "diagnose_crash", "diagnose_hang"]
