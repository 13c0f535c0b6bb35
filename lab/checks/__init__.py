"""One function per check; each docstring names the real bug it catches.

Checks run in this order; `load` gates the rest (a module that cannot be loaded has
nothing else to say)."""

from lab.checks import fork_child, go_runtime, load, lookup, setxid, tab_completion  # noqa: F401
from lab.checks.base import REGISTRY, Context, Outcome

ORDER = ["load", "lookup", "go-runtime", "fork-child", "setxid", "tab-completion"]
assert set(ORDER) == set(REGISTRY), "every registered check has a place in ORDER"

__all__ = ["ORDER", "REGISTRY", "Context", "Outcome"]
