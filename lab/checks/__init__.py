"""One function per check; each docstring names the real bug it catches.

Checks run in this order. `elf` (static) and `load` gate the rest: when the ELF headers
show glibc would refuse the module, or the load fails, the other checks are skipped."""

from lab.checks import (  # noqa: F401
    consistency,
    enumeration,
    erange,
    fork_child,
    go_runtime,
    initgroups,
    load,
    login_paths,
    lookup,
    setxid,
    shadow,
    static,
    status_codes,
    tab_completion,
    threads,
)
from lab.checks.base import REGISTRY, CheckResult, Context

ORDER = [
    "elf",
    "load",
    "lookup",
    "status-codes",
    "erange",
    "enumeration",
    "consistency",
    "initgroups",
    "threads",
    "shadow",
    "go-runtime",
    "fork-child",
    "setxid",
    "tab-completion",
    "login-paths",
]
GATES = ("elf", "load")  # a module glibc would refuse, or that did not load, has nothing else to say
assert set(ORDER) == set(REGISTRY), "every registered check has a place in ORDER"

__all__ = ["GATES", "ORDER", "REGISTRY", "CheckResult", "Context"]
