"""Diagnosis: turns the evidence the probe collected at a hang or crash into a named cause."""

from lab.forensics.causes import CAUSES, Diagnosis, diagnose, diagnose_crash, diagnose_hang

__all__ = ["CAUSES", "Diagnosis", "diagnose", "diagnose_crash", "diagnose_hang"]
