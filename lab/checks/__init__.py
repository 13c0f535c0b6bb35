"""One function per check; each docstring names the real bug it catches.

Checks run in this order. `elf` (static) and `load` gate the rest: when the ELF headers
show glibc would refuse the module, or the load fails, the other checks are skipped."""

import importlib
import pkgutil

from lab.checks.base import REGISTRY, CheckResult, Context

# One file per check: importing each registers it (lab.checks.base.check).
for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("base", "reproducer"):
        importlib.import_module(f"{__name__}.{_info.name}")


ORDER = [
    "elf",
    "load",
    "lookup",
    "status-codes",
    "erange",
    "enumeration",
    "result-contract",
    "keys",
    "consistency",
    "identity",
    "initgroups",
    "threads",
    "side-effects",
    "descriptors",
    "growth",
    "shadow",
    "go-runtime",
    "hazards",
    "fork-child",
    "setxid",
    "tab-completion",
    "login-paths",
]
GATES = ("elf", "load")  # a module glibc would refuse, or that did not load, has nothing else to say
assert set(ORDER) == set(REGISTRY), "every registered check has a place in ORDER"

__all__ = ["GATES", "ORDER", "REGISTRY", "CheckResult", "Context"]
