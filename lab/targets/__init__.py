"""Where checks run, named by URL specs, as testinfra names its hosts.

    sandbox                      this machine, the module only in a private mount namespace
    rootfs                       every built-in root filesystem (Debian 11, 12, 13)
    rootfs://debian11            one of them; rootfs:///srv/root or rootfs:///tmp/image.tar a root of yours
    vagrant                      a VM per platform; vagrant://debian12 one of them
    ssh://user@host:2222         an existing host, untouched (?disposable=1: in place, login paths too)
    ssh-config:///path/config    every host an ssh_config names
    ansible:///path/inventory    every host of an Ansible INI inventory (?group=web: one group)
    container://PID              a running container's namespaces, entered with nsenter

A kind is a module with expand(spec) -> [one spec per machine] and make(spec, keep) -> Target,
listed in KINDS and imported only when a spec names it (a newcomer adds one file and one line).
"""

from __future__ import annotations

import importlib
import sys
import urllib.parse
from dataclasses import dataclass, field

from lab.errors import LabError
from lab.targets.target import Target

KINDS = {
    "sandbox": "lab.targets.sandbox",
    "rootfs": "lab.targets.rootfs",
    "vagrant": "lab.targets.vagrant",
    "ssh": "lab.targets.ssh",
    "ssh-config": "lab.targets.ssh",
    "ansible": "lab.targets.ssh",
    "container": "lab.targets.container",
}
OPEN: dict[str, Target] = {}  # one target per spec, reused by every module of the run; see close_all()


@dataclass(frozen=True)
class Spec:
    text: str
    kind: str
    host: str = ""  # the URL's host, or a name (rootfs://debian11, vagrant://debian12)
    path: str = ""
    user: str | None = None
    port: int | None = None
    query: dict[str, str] = field(default_factory=dict)

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true", "yes")


def parse(text: str) -> Spec:
    """TEXT as a Spec; `vagrant:debian12` (the old form) is read as vagrant://debian12."""
    if "://" not in text and ":" in text:
        text = text.replace(":", "://", 1)
    url = urllib.parse.urlsplit(text if "://" in text else f"{text}://")
    if url.scheme not in KINDS:
        raise LabError(f"unknown target {text!r}; kinds: {', '.join(KINDS)} (see `nsslab run --help`)")
    try:
        port = url.port
    except ValueError:
        raise LabError(f"target {text!r}: the port is not a number") from None
    query = dict(urllib.parse.parse_qsl(url.query))
    return Spec(text, url.scheme, url.hostname or "", url.path, url.username, port, query)


def shown(text: str) -> str:
    """TEXT as reports show it: without its query (ssh options, key paths)."""
    return text.split("?", 1)[0]


def kind_of(spec: Spec):
    return importlib.import_module(KINDS[spec.kind])


def expand(text: str) -> list[str]:
    """One spec per machine: `rootfs` is three roots, an inventory is its hosts."""
    spec = parse(text)
    return list(kind_of(spec).expand(spec))


def parallel(specs: list[str]) -> int:
    """How many of SPECS may run at once: what each kind allows, the smallest of them."""
    kinds = {parse(s).kind: kind_of(parse(s)) for s in specs}
    return max(1, min(getattr(k, "parallel", lambda n: 1)(len(specs)) for k in kinds.values()))


def get_target(text: str, keep: bool = False) -> Target:
    """The target SPEC names, made once per run (a VM boots once for every module)."""
    if text not in OPEN:
        spec = parse(text)
        targets = expand(text)
        if targets != [text] and len(targets) != 1:
            raise LabError(f"{text} names {len(targets)} machines: run them with --target {text}")
        OPEN[text] = kind_of(spec).make(parse(targets[0]), keep)
    return OPEN[text]


def close(spec: str) -> str | None:
    """Ends the target SPEC if the run started it (a VM's memory goes to the next platform);
    returns the error, one line, if it would not end."""
    target = OPEN.pop(spec, None)
    try:
        if target:
            target.uninstall()
            target.close()
    except Exception as e:  # a VM that will not die must not hide the verdicts
        return f"{spec}: {e}"
    return None


def close_all() -> list[str]:
    """Ends every target the run started; returns the errors (one line each)."""
    errors = [error for spec in list(OPEN) if (error := close(spec))]
    if "lab.targets.vagrant" in sys.modules:
        sys.modules["lab.targets.vagrant"].cleanup()
    return errors
