"""`nsslab init LIB`: a first module.toml for a library, written from what it answers.

A module's author has a library and no manifest, and the checks need declared truth (who
the module serves) to compare its answers against. init installs the library in a target
(the sandbox by default), lists its users and groups through glibc there, and writes them
down as [[users]] and [[groups]], with comments on what the lab cannot know (the files the
module reads, the daemon it talks to, whether the backend really holds these entries).

The listing goes through the probe, so a module that hangs or crashes while it is listed
ends init with one line naming that, within the step's bound, and never a hang of init.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import elf
from lab.checks.base import Context, answers, judge
from lab.errors import CommandTimeout, LabError
from lab.module import LIBRARY_NAME, Group, Module, User, load
from lab.targets import close_all, expand, get_target, shown

# ---------------------------------------------------------------- a small TOML writer
# tomllib only reads. What init writes comes from a module's answers (a gecos with quotes,
# backslashes or a newline), so every string goes through toml_string, never an f-string.

ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    """TEXT as a TOML basic string. TOML files are UTF-8, so a lone surrogate (a name that
    was not valid UTF-8, as Python decodes it) cannot be written: ValueError."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in ESCAPES:
            out.append(ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:  # other control characters: TOML requires \uXXXX
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{text!r} is not valid UTF-8 (TOML holds only UTF-8 text)")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: object) -> str:
    if isinstance(value, bool):  # before int: True is an int too
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def toml_table(header: str, values: dict[str, object]) -> list[str]:
    """`[header]` or `[[header]]` (as given) and its key = value lines."""
    return [header, *(f"{toml_key(k)} = {toml_value(v)}" for k, v in values.items())]


def comment_safe(text: str) -> str:
    """TEXT for a comment: TOML comments may hold no control characters but tab."""
    return re.sub(r"[\x00-\x08\x0a-\x1f\x7f]", "?", text)


# ---------------------------------------------------------------- what the module answers


@dataclass
class Found:
    users: list[User] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    shadow: list[str] | None = None  # names only; None when the library offers no shadow listing
    notes: list[str] = field(default_factory=list)  # what the probe saw besides the answers


def local_entries(ctx: Context, path: str) -> set[tuple]:
    """The target's own entries in /etc/passwd or /etc/group, as getpwall/getgrall give
    them: glibc lists `files` first, and those are not the module's."""
    out = set()
    for line in ctx.target.run(["cat", path]).stdout.splitlines():
        f = line.split(":")
        try:
            if path == "/etc/passwd" and len(f) == 7:
                out.add((f[0], int(f[2]), int(f[3]), f[4], f[5], f[6]))
            elif path == "/etc/group" and len(f) == 4:
                out.add((f[0], int(f[2]), tuple(sorted(m for m in f[3].split(",") if m))))
        except ValueError:  # a malformed line: glibc skips it too
            continue
    return out


def as_key(db: str, entry: dict) -> tuple:
    if db == "passwd":
        return tuple(entry[k] for k in ("name", "uid", "gid", "gecos", "home", "shell"))
    return (entry["name"], entry["gid"], tuple(sorted(entry["members"])))


def listed(ctx: Context, db: str, found: Found) -> list[dict]:
    """The module's entries of DB, listed through glibc in a probe worker. Entries equal to
    the target's own /etc ones are left out (by whole entry, not by name: a module that
    serves a second `daemon` with another uid keeps it, so identity can judge it)."""
    fn = {"passwd": "getpwall", "group": "getgrall"}[db]
    result = ctx.target.scenario([ctx.step(f"init-{db}", [{"fn": fn}])])[0]
    bad = judge(result, ctx.module.name)
    if bad and bad.status != "fail":  # hang, crash, error: there is no listing to write down
        reason = " ".join(bad.reason.split())
        raise LabError(
            f"{ctx.module.name}: {bad.status} while listing {db} ({fn}): {reason}; no manifest written"
        )
    if bad:  # it answered, but did something to its caller on the way (a signal, a process left)
        found.notes.append(f"while listing {db}: {' '.join(bad.reason.split())}")
    call = next(iter(answers(result)), None)
    if call is None or not call.get("ok"):
        said = call.get("error") if call else "no answer"
        raise LabError(f"{ctx.module.name}: listing {db} ({fn}) failed: {said}; no manifest written")
    local = local_entries(ctx, f"/etc/{db}")
    return [e for e in call["value"] if as_key(db, e) not in local]


def shadow_names(ctx: Context, timeout: float) -> list[str]:
    """The names in the module's shadow listing, asked of the module alone (`getent -s`).
    Only the first field is kept: init never copies a password hash."""
    argv = ["getent", "-s", ctx.module.name, "shadow"]
    try:
        done = ctx.target.run(argv, timeout=timeout)
    except CommandTimeout:
        raise LabError(
            f"{ctx.module.name}: hang while listing shadow: `{' '.join(argv)}` gave no answer within "
            f"{timeout:g} s; no manifest written"
        ) from None
    if done.rc not in (0, 2):  # 2: getent's "nothing found"
        raise LabError(
            f"{ctx.module.name}: `{' '.join(argv)}` exited {done.rc} while listing shadow; "
            "no manifest written"
        )
    # a shadow line has nine fields: anything else on stdout (a module's banner) is no name
    names = [line.split(":", 1)[0] for line in done.stdout.splitlines() if line.count(":") == 8]
    # the target's own /etc/shadow names are left out, as its /etc/passwd entries are
    local = {line.split(":", 1)[0] for line in ctx.target.run(["cat", "/etc/shadow"]).stdout.splitlines()}
    return [n for n in names if n not in local]


def ask(ctx: Context, present: set[str]) -> Found:
    """Lists what the module serves, database by database (a listing the library does not
    offer, no get*ent_r exported, would only give the target's own entries)."""
    found = Found()
    m = ctx.module
    if "passwd" in m.databases and "getpwent_r" in present:
        found.users = [User(**u) for u in listed(ctx, "passwd", found)]
    if "group" in m.databases and "getgrent_r" in present:
        groups = listed(ctx, "group", found)
        found.groups = [Group(g["name"], g["gid"], tuple(g["members"])) for g in groups]
    if "shadow" in m.databases and "getspent_r" in present:
        found.shadow = shadow_names(ctx, ctx.step_timeout)
    return found


# ---------------------------------------------------------------- the manifest's text


SYSTEM_DIRS = ("/usr/", "/lib/", "/lib64/")  # a distribution's library: named where it lives


def system_library(path: Path) -> bool:
    return os.path.abspath(path).startswith(SYSTEM_DIRS)


def relative(path: Path, where: Path) -> str:
    """PATH as the manifest names it: relative to its directory (module.load joins them),
    or absolute for a library the system installed (/usr/lib/…: a manifest elsewhere)."""
    if system_library(path):
        return os.path.abspath(path)
    return os.path.relpath(os.path.abspath(path), os.path.abspath(where))


def render(module: Module, output: Path, found: Found, enumerable: bool, target: str) -> str:
    """The manifest: the keys init knows, the tables it found, and comments for the rest."""
    name, where = module.name, output.parent
    out = [
        f"# Written by `nsslab init` from what libnss_{name}.so.2 listed on {comment_safe(target)}: getpwall",
        "# and getgrall through glibc, the target's own /etc/passwd and /etc/group entries left out.",
        "# A first draft: the lab takes [[users]] and [[groups]] as the truth it checks the module",
        "# against. Check by hand:",
        "# - that these entries are what the backend really holds: init wrote down what the module",
        "#   answered, a wrong answer included (correct it here, and the checks will catch the module);",
        "# - that a module which talks to a daemon (sssd, nslcd, a cache service) has it in",
        "#   [[services]] (see the end of this file): without it, it answered nothing here;",
        "# - that the files the module reads are in [files] (see below);",
        "# - that a module whose listing was empty gets [[users]] (and [[groups]]) added by hand:",
        "#   the checks need someone to look up.",
        f"name = {toml_string(name)}",
        f"library = {toml_string(relative(module.library, where))}"
        + ("" if system_library(module.library) else "  # relative to this file"),
        f"databases = {toml_value(module.databases)}  # from the library's _nss_{name}_* exports",
    ]
    if not enumerable:
        out.append("enumerable = false  # it exports no set/get/end*ent: no `getent passwd` listing")
    out += [
        "# exact = true  # when the listing must hold exactly these entries, no others",
        '# build = "make"  # run in this dir when the library is missing or older than its sources',
        "",
    ]
    if module.files:
        out += [
            "# Installed into the target before the checks (as given to `nsslab init --file`).",
            "[files]",
        ]
        out += [f"{toml_key(t)} = {toml_string(relative(s, where))}" for t, s in module.files.items()]
    else:
        out += [
            "# [files]: the config and data files the module reads, installed into the target",
            "# before the checks. The lab cannot know them. On a machine where the module works:",
            "#   strace -f -e trace=openat getent passwd SOMEONE",
            "# shows each file it opens; add the module's own (target path = source, relative to",
            "# this file; `nsslab init LIB --file /etc/x.conf=x.conf` installs them while it asks):",
            "# [files]",
            f'# "/etc/{name}.conf" = "{name}.conf"',
        ]
    out.append("")
    if not found.users:
        out += [
            "# The module listed no users here"
            + (" (it has no listing)" if not enumerable else "")
            + ": add the ones the backend holds, the checks need someone to look up:",
            "# [[users]]",
            '# name = "someone"',
            "# uid = 10001",
            "# gid = 10001",
            '# gecos = ""',
            '# home = "/home/someone"',
            '# shell = "/bin/bash"',
            "",
        ]
    for user in found.users:
        out += [*toml_table("[[users]]", asdict(user)), ""]
    for group in found.groups:
        out += [
            *toml_table("[[groups]]", {"name": group.name, "gid": group.gid, "members": group.members}),
            "",
        ]
    if found.shadow is not None:
        out += [
            f"# shadow: the module lists {len(found.shadow)} name(s): {toml_value(found.shadow)}.",
            "# No [[shadow]] tables are written: init never copies a password hash, and the lab",
            "# compares every field of a declared entry, the password included. To have entries",
            f"# checked, add them by hand as `getent -s {name} shadow NAME` shows them, e.g.:",
            "# [[shadow]]",
            f"# name = {comment_safe(toml_string(found.shadow[0] if found.shadow else 'someone'))}",
            '# password = "!"  # the real field',
            "# lastchg = 19700  # an absent aging field is -1 (empty)",
            "",
        ]
    out += [
        "# [[services]]: a daemon the module talks to, started in the target before the checks:",
        "# [[services]]",
        f'# name = "{name}d"',
        f'# command = ["/usr/sbin/{name}d", "--foreground"]',
        f'# ready = {{ socket = "/run/{name}d.sock" }}  # or {{ command = [...] }}, or {{ tcp = PORT }}',
        "",
        "# [expect]: only for a module known to be bad (a regression suite): a check id and the",
        "# status it must get under `nsslab run --expect`, every other check must pass or skip.",
        "# A module meant to pass has none. `nsslab checks` lists the ids.",
        "# [expect]",
        '# fork-child = "hang"',
    ]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the command


def parse_files(specs: list[str]) -> dict[str, Path]:
    """--file TARGET=SOURCE: the files the module needs while it is asked (clab reads
    /etc/clab.db); they go into [files] too."""
    files = {}
    for spec in specs:
        target, sep, source = spec.partition("=")
        if not sep or not target.startswith("/") or not source:
            raise LabError(f"--file {spec!r}: give TARGET=SOURCE, TARGET an absolute path in the target")
        if not Path(source).exists():
            raise LabError(f"--file {spec!r}: {source} does not exist")
        files[target] = Path(source).resolve()
    return files


def init_module(
    library: Path,
    output: Path | None = None,
    force: bool = False,
    target_spec: str = "sandbox",
    files: list[str] | None = None,
    step_timeout: float = 20.0,
) -> int:
    """Writes OUTPUT (default: module.toml next to LIBRARY, or in the current directory for a
    library under /usr or /lib: nothing is written into the system's directories unasked)
    from what the library answers in TARGET_SPEC. Every problem is a LabError, one line;
    nothing is written then."""
    match = LIBRARY_NAME.match(library.name)
    if not match:
        raise LabError(f"{library}: glibc only loads modules named libnss_<service>.so.2")
    if not library.is_file():
        raise LabError(f"{library}: no such file")
    name = match["name"]
    output = output or (Path("module.toml") if system_library(library) else library.parent / "module.toml")
    if output.is_dir():
        output = output / "module.toml"
    if output.suffix != ".toml":  # `nsslab run` reads anything else as a library
        raise LabError(f"{output}: a manifest's name ends in .toml")
    if output.exists() and not force:
        raise LabError(f"{output} exists; --force overwrites it")
    if not output.parent.is_dir():
        raise LabError(f"{output.parent}: no such directory")
    info = elf.inspect(library)  # one line when it is no ELF file
    present = info.entry_points(name)
    databases = elf.served_databases(library, name)
    if not databases:
        raise LabError(f"{library}: exports no _nss_{name}_* entry point glibc would call")
    # No listing at all (the elf check's condition for `enumerable = false`): init says so.
    listable = [db for db in databases if elf.ENUMERATION[db]]
    enumerable = any(present & set(elf.ENUMERATION[db]) for db in listable)
    # absolute, not resolved: the manifest names the library as the user did (a symlink's name)
    module = Module(
        name=name, library=library.absolute(), databases=databases, files=parse_files(files or [])
    )
    machines = expand(target_spec)  # `rootfs` is three roots; init asks one machine
    if len(machines) != 1:
        example = f", e.g. {machines[0]}" if machines else ""
        raise LabError(f"--target {target_spec} names {len(machines)} machines; init asks one{example}")
    try:
        target = get_target(target_spec)
        target.install(module)
        try:
            found = ask(Context(target, module, info, step_timeout=step_timeout), present)
        finally:
            target.uninstall()
    except LabError:
        raise
    except Exception as e:  # a lab bug is one line too, as run_module makes it
        raise LabError(f"{name}: internal error: {type(e).__name__}: {e}") from None
    finally:
        for error in close_all():
            print(f"nsslab: could not remove {error}", file=sys.stderr)
    try:
        text = render(module, output, found, enumerable, shown(target_spec))
    except ValueError as e:  # a name or field that TOML cannot hold
        raise LabError(f"{name}: an entry cannot be written as TOML: {e}") from None
    write_checked(text, output, found)
    shadow = f", {len(found.shadow)} shadow names (no hashes written)" if found.shadow is not None else ""
    print(f"wrote {output}")
    print(
        f"{name}: {len(found.users)} users, {len(found.groups)} groups{shadow}; "
        f"databases {', '.join(databases)}" + ("" if enumerable else "; no listing (enumerable = false)")
    )
    for note in found.notes:
        print(f"note: {note}")
    if not found.users:
        print("note: no users listed: add [[users]] by hand, the checks need someone to look up")
    print(f"next: nsslab run {output}")
    return 0


def write_checked(text: str, output: Path, found: Found) -> None:
    """Writes TEXT to OUTPUT only once it reads back, through the lab's own loader, as the
    entries found (a writer bug must not leave a manifest that says something else)."""
    scratch = output.with_name(f".{output.stem}.init-{os.getpid()}.toml")  # same dir: same relative paths
    try:
        scratch.write_text(text, encoding="utf-8")  # TOML is UTF-8, whatever the locale
        tomllib.loads(text)
        back = load(scratch)
        if back.users != found.users or back.groups != found.groups:
            raise LabError(f"{output}: internal error: the manifest written does not read back as listed")
        os.replace(scratch, output)
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise LabError(f"{output}: could not be written: {e}") from None
    finally:
        scratch.unlink(missing_ok=True)
