"""`ssh://[user@]host[:port]`: an existing host, reached over ssh, left as it was.

The module is installed by the overlay (overlay.py) inside a private mount namespace on the
host, so its /etc and lib dirs are never written and every process the run started there
dies with the namespace. `?disposable=1` says the host may be changed: then the module is
installed in place with an undo record, as on a VM, and the login paths run there too.
Query keys in CamelCase are ssh options (`?StrictHostKeyChecking=no&IdentityFile=/k`);
`ssh_config=FILE` names an ssh_config to read the host from.

Many hosts at once: `ssh-config:///FILE` is every Host an ssh_config names (no wildcards),
`ansible:///INVENTORY[?group=G]` every host of an Ansible INI inventory, with its
ansible_host, ansible_user, ansible_port and ansible_ssh_private_key_file, as testinfra reads
them.
"""

from __future__ import annotations

import re
import shlex
import urllib.parse
from pathlib import Path

from lab.errors import LabError
from lab.targets import Spec
from lab.targets.inplace import InPlace
from lab.targets.overlay import Overlay
from lab.targets.target import DISPOSABLE, FULL_SYSTEM, Target
from lab.targets.transport import Ssh

PARALLEL = 4  # hosts at once: each costs this machine an ssh and a waiting thread, not a core
SESSION_LANES = 2


def parallel(count: int) -> int:
    return max(1, min(count, PARALLEL))


def expand(spec: Spec) -> list[str]:
    if spec.kind == "ssh":
        if not spec.host:
            raise LabError(f"{spec.text}: an ssh target needs a host: ssh://[user@]host[:port]")
        return [spec.text]
    extra = {k: v for k, v in spec.query.items() if k != "group"}
    path = Path(spec.path)
    try:
        text = path.read_text()
    except OSError as e:
        raise LabError(f"{spec.text}: cannot read {path}: {e.strerror}") from None
    if spec.kind == "ssh-config":
        aliases = [a for line in text.splitlines() for a in host_line(line) if not re.search(r"[*?!]", a)]
        if not aliases:
            raise LabError(f"{spec.text}: {path} names no Host without wildcards")
        return [url(alias, None, None, extra | {"ssh_config": str(path)}) for alias in dict.fromkeys(aliases)]
    hosts = inventory(text, spec.query.get("group"))
    if not hosts:
        raise LabError(
            f"{spec.text}: no hosts in {path}"
            + (f" group [{spec.query['group']}]" if "group" in spec.query else "")
        )
    return [
        url(h.get("ansible_host", name), h.get("ansible_user"), h.get("ansible_port"), extra | id_of(h))
        for name, h in hosts.items()
    ]


def id_of(host: dict[str, str]) -> dict[str, str]:
    key = host.get("ansible_ssh_private_key_file") or host.get("ansible_private_key_file")
    return {"IdentityFile": key} if key else {}


def url(host: str, user: str | None, port: str | None, query: dict[str, str]) -> str:
    where = f"{user}@{host}" if user else host
    return f"ssh://{where}{f':{port}' if port else ''}" + (
        f"?{urllib.parse.urlencode(query)}" if query else ""
    )


def host_line(line: str) -> list[str]:
    words = line.split("#", 1)[0].split()
    return words[1:] if words and words[0].lower() == "host" else []


def inventory(text: str, group: str | None) -> dict[str, dict[str, str]]:
    """An Ansible INI inventory's hosts (of GROUP, with its :children) and their variables."""
    groups: dict[str, dict[str, dict[str, str]]] = {"ungrouped": {}}
    children: dict[str, list[str]] = {}
    section, kind = "ungrouped", "hosts"
    for raw in text.splitlines():
        line = (
            raw.split("#", 1)[0].split(";", 1)[0].strip() if not raw.lstrip().startswith(("#", ";")) else ""
        )
        if not line:
            continue
        if m := re.fullmatch(r"\[([^\]:]+)(?::(\w+))?\]", line):
            section, kind = m[1], m[2] or "hosts"
            groups.setdefault(section, {})
            continue
        if kind == "children":
            children.setdefault(section, []).append(line)
        elif kind == "hosts":
            try:
                name, *pairs = shlex.split(line)
            except ValueError as e:  # an unbalanced quote
                raise LabError(f"the inventory line {raw.strip()!r} cannot be read: {e}") from None
            groups[section][name] = dict(p.split("=", 1) for p in pairs if "=" in p)

    def members(g: str, seen: frozenset[str] = frozenset()) -> dict[str, dict[str, str]]:
        out = dict(groups.get(g, {}))
        for child in children.get(g, []):
            if child not in seen:
                out |= members(child, seen | {g})
        return out

    if group:
        if group not in groups and group not in children:
            raise LabError(f"the inventory has no group [{group}]")
        return members(group)
    return {name: v for g in groups for name, v in groups[g].items()}


def make(spec: Spec, keep: bool = False) -> Target:
    options = {k: v for k, v in spec.query.items() if k[:1].isupper()}
    config = spec.query.get("ssh_config")
    user = spec.user or (None if config else "root")  # an ssh_config's User is the user's to set
    ssh = Ssh(spec.host, user, spec.port, ssh_config=config, options=options)
    name = f"ssh://{spec.user + '@' if spec.user else ''}{spec.host}{f':{spec.port}' if spec.port else ''}"
    # Every command is a session on the one connection, and sshd allows 10 by default
    # (MaxSessions): two checks at a time stay well under it (a check may hold 3).
    if spec.flag("disposable"):
        return Target(
            name, ssh, InPlace(keep), caps=frozenset({FULL_SYSTEM, DISPOSABLE}), lanes=SESSION_LANES
        )
    return Target(name, ssh, Overlay(), caps=frozenset({FULL_SYSTEM}), lanes=SESSION_LANES)
