"""A host for the ssh target's tests, made on this machine and nowhere else: a Debian root
filesystem in its own mount and pid namespaces, running its own sshd on 127.0.0.1:PORT,
which lets in one key made for the test. Its /etc and lib dirs are the tree's; its process
table is its pid namespace. Nothing of it is written: /run, /tmp and /var/log are tmpfs."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

from lab.proc import bounded_run, kill_group

# PID 1 of the host: starts sshd and reaps every orphan (a lab that left one would show).
INIT = """import os, subprocess, sys
sshd = subprocess.Popen(sys.argv[1:])
while True:
    pid, _ = os.wait()
    if pid == sshd.pid:
        sys.exit(1)
"""
LIB_DIRS = ("etc", "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib64", "lib64")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SshHost:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.root, self.tmp = root, tmp
        self.port = free_port()
        self.key = tmp / "id_ed25519"
        self.proc: subprocess.Popen | None = None

    @property
    def spec(self) -> str:
        opts = f"StrictHostKeyChecking=no&UserKnownHostsFile=/dev/null&IdentityFile={self.key}&LogLevel=ERROR"
        return f"ssh://root@127.0.0.1:{self.port}?{opts}"

    def start(self) -> SshHost:
        assert (
            bounded_run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], 30).returncode
            == 0
        )
        r = self.root
        sshd = (
            f"/usr/sbin/sshd -D -e -p {self.port} -o ListenAddress=127.0.0.1 -o UsePAM=no"
            " -o AuthorizedKeysFile=/run/keys/authorized_keys -o StrictModes=no"
            " -o PermitRootLogin=prohibit-password"
        )
        script = "\n".join(
            [
                "set -e",
                f"mount --bind {r} {r}",  # a mount point, as a real root is (unshare's propagation needs one)
                f"mount -t proc proc {r}/proc",
                f"mount --rbind /dev {r}/dev",
                *(f"mount -t tmpfs tmpfs {r}/{d}" for d in ("run", "tmp", "var/log")),
                f"mkdir -p {r}/run/sshd {r}/run/keys",
                f"cp {self.key}.pub {r}/run/keys/authorized_keys",
                "export PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                # pivot_root, not chroot: a process entering this mount namespace (nsenter, as the
                # lab does) must find the tree at /, as on a real host
                f"cd {r} && pivot_root . mnt && umount -l /mnt",
                f"exec /usr/bin/python3 -c '{INIT}' {sshd}",
            ]
        )
        unshare = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private"]
        with open(self.tmp / "sshd.log", "wb") as log:
            argv = [*unshare, "--", "sh", "-c", script]
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sshd in {r} did not listen: {(self.tmp / 'sshd.log').read_text()[-300:]}")

    def pid1(self) -> int:
        assert self.proc
        return int(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()[0])

    def processes(self) -> list[str]:
        """The host's process table: the command line of every process in its pid namespace."""
        ns = os.readlink(f"/proc/{self.pid1()}/ns/pid")
        out = []
        for name in os.listdir("/proc"):
            try:
                if name.isdigit() and os.readlink(f"/proc/{name}/ns/pid") == ns:
                    out.append(
                        Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                    )
            except OSError:
                pass
        return sorted(out)

    def mounts(self) -> list[str]:
        """The mount table sshd's sessions start from (the lab's private namespaces are not in it)."""
        return sorted(Path(f"/proc/{self.pid1()}/mounts").read_text().splitlines())

    def tree_digest(self) -> dict[str, str]:
        return tree_digest(self.root)

    def stop(self) -> None:
        if self.proc:
            kill_group(self.proc)
            self.proc = None


def tree_digest(root: Path) -> dict[str, str]:
    """A digest per file (path, mode, owner, size, content) of ROOT's /etc and lib dirs."""
    out: dict[str, str] = {}
    for d in LIB_DIRS:
        top = root / d
        if top.is_symlink() or not top.is_dir():
            continue
        for dirpath, dirs, files in os.walk(top):
            for name in sorted(dirs + files):
                path = Path(dirpath, name)
                st = path.lstat()
                h = hashlib.sha256(f"{st.st_mode}:{st.st_uid}:{st.st_gid}:{st.st_size}".encode())
                if path.is_symlink():
                    h.update(os.readlink(path).encode())
                elif path.is_file():
                    h.update(path.read_bytes())
                out[str(path.relative_to(root))] = h.hexdigest()
    return out


def settled(read, want, bound: float = 5.0):
    """READ() once it equals WANT, or its last value after BOUND seconds: an orphan the
    host's init has not reaped yet is a moment, not a leak."""
    deadline = time.monotonic() + bound
    got = read()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.1)
        got = read()
    return got
