#!/bin/sh
# Ground truth for nss-systemd (libnss-systemd 252, the host's own, also unpacked by the lab)
# with the JSON records of ./userdb as drop-ins in /run/userdb, PID 1 not being systemd.
# Run as root: sh groundtruth.sh
set -e
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/run" "$w/etc"
cp -a "$here/userdb" "$w/run/userdb"
sed -e 's/^\(passwd\|group\|shadow\):.*/\1: files systemd/' /etc/nsswitch.conf >"$w/etc/nsswitch.conf"
echo "PID 1 is $(cat /proc/1/comm); systemd-userdbd socket: $(ls /run/systemd/userdb 2>&1 | head -1)"
unshare --mount --propagation private sh -c "
  mount -t overlay gt -o ro,lowerdir=$w/run:/run /run
  mount --bind $w/etc/nsswitch.conf /etc/nsswitch.conf
  for q in 'passwd deb1' 'passwd 20002' 'group debgrp' 'group 20000' 'shadow deb1' 'passwd' 'group' 'shadow'; do
    echo \"\$ getent -s systemd \$q\"; getent -s systemd \$q; echo \"(exit \$?)\"
  done
  echo '$ id deb1'; id deb1
  echo '$ python3 ctypes: setpwent/getpwent_r'
  python3 -c '
import ctypes
lib = ctypes.CDLL(\"libnss_systemd.so.2\")
err = ctypes.c_int(0)
print(\"setpwent ->\", lib._nss_systemd_setpwent(0))
buf = ctypes.create_string_buffer(4096)
pw = ctypes.create_string_buffer(64)
for _ in range(4):
    rc = lib._nss_systemd_getpwent_r(pw, buf, 4096, ctypes.byref(err))
    print(\"getpwent_r ->\", rc, \"errno\", err.value, ctypes.string_at(ctypes.cast(pw, ctypes.POINTER(ctypes.c_char_p))[0]) if rc == 1 else \"\")
    if rc != 1: break
'
"
