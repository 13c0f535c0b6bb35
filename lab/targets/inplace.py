"""The in-place installer, for disposable machines only (a VM, an ssh host marked disposable):
the module goes where a package would put it (the real lib dir, /etc/nsswitch.conf, the
manifest's [files], home dirs), so sshd, PAM and systemd load it too. Every change is first
written to an undo record kept on the machine, newest first, so uninstall() (or a later run,
after --keep or a killed run) puts the originals back."""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lab import config
from lab.errors import CommandTimeout, LabError
from lab.install import nsswitch
from lab.module import Module
from lab.targets.overlay import Installed
from lab.targets.transport import Transport

WORKDIR = "/var/tmp/nsslab"
UNDO = "/var/tmp/nsslab-undo.sh"
ORIGINAL = ".nsslab-orig"


@dataclass
class InPlace:
    keep: bool = False  # --keep: the module stays installed for a human to poke at
    via: Transport | None = None
    module_name: str = ""  # the module installed now
    logdir: Path | None = None

    def install(self, via: Transport, module: Module, probe_files: list[tuple[str, Path]]) -> Installed:
        if module.packages or module.services or module.state:
            raise LabError(
                f"{module.name}: installing in place does not overlay packages, private state or"
                " [[services]] yet (use the sandbox or a rootfs target)"
            )
        self.via = via
        self.undo()  # the module a kept machine still holds
        self.module_name = module.name
        probe = PurePosixPath(WORKDIR, "probe")  # a directory: __main__.py and the nsslab_probe package
        folders = sorted({str(probe / up) for rel, _ in probe_files for up in PurePosixPath(rel).parents})
        self.sh(f"rm -rf {WORKDIR} && mkdir -m 755 {shlex.join([WORKDIR, *folders])}")
        for rel, source in probe_files:
            via.put(source, str(probe / rel))
        libdir = self.sh("dirname \"$(ldconfig -p | awk '/libnss_files.so.2 /{print $NF; exit}')\"").strip()
        module_path = f"{libdir}/libnss_{module.name}.so.2"
        self.place(module.library, module_path, "0755")
        current = self.sh("cat /etc/nsswitch.conf")
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write(nsswitch(module, current))
            f.flush()
            self.place(Path(f.name), "/etc/nsswitch.conf", "0644")
        for target, source in module.files.items():
            self.place(source, target, "0644")
        for user in module.users:
            if user.home.startswith("/"):
                home = shlex.quote(user.home)
                make = f"mkdir -p -m 750 {home} && chown {user.uid}:{user.gid} {home}"
                self.sh(f"[ -e {home} ] || {{ {to_undo(f'rmdir {home} 2>/dev/null')}; {make}; }}")
        self.logdir = Path(tempfile.mkdtemp(prefix="nsslab-log-"))
        return Installed(via, WORKDIR, module_path, self.logdir)

    def place(self, source: Path, target: str, mode: str) -> None:
        """Installs SOURCE at TARGET, keeping the original to put back."""
        assert self.via
        quoted, saved = shlex.quote(target), shlex.quote(target + ORIGINAL)
        keep_original = f"if [ -e {quoted} ] && [ ! -e {saved} ]; then cp -a {quoted} {saved}; fi"
        undo = to_undo(f"if [ -e {saved} ]; then mv -f {saved} {quoted}; else rm -f {quoted}; fi")
        self.sh(f'{keep_original}; {undo}; mkdir -p "$(dirname {quoted})"')
        self.via.put(source, target, mode)

    def uninstall(self) -> None:
        """Stops what the checks left running; puts the originals back unless --keep, where
        the next install() or a human does."""
        if self.via is None:
            return
        # Anything a check left running from the workdir; "[/]" keeps pkill off this very shell.
        try:
            self.sh(f"pkill -9 -f '[/]{WORKDIR[1:]}/' 2>/dev/null; true")
        except (LabError, CommandTimeout):
            pass  # the machine is disposable
        if not self.keep:
            self.undo()
        if self.logdir:
            for log in self.logdir.iterdir():
                log.unlink()
            self.logdir.rmdir()
            self.logdir = None

    def undo(self) -> None:
        """Puts back what install() replaced: in this run, or in an earlier one that kept the machine."""
        self.module_name = ""
        try:
            self.sh(f"if [ -f {UNDO} ]; then sh {UNDO}; fi; rm -f {UNDO}; rm -rf {WORKDIR}")
        except (LabError, CommandTimeout):
            pass  # the machine is disposable

    def sh(self, script: str, timeout: float = config.REMOTE_CALL) -> str:
        assert self.via
        return self.via.sh(script, timeout)


def to_undo(line: str) -> str:
    """Shell that puts LINE first in the machine's undo record (the newest change is undone first)."""
    prepend = f"{{ printf '%s\\n' {shlex.quote(line)}; cat {UNDO} 2>/dev/null || true; }} >{UNDO}.new"
    return f"{prepend} && mv {UNDO}.new {UNDO}"
