#!/bin/sh
# Ground truth for libnss-db, without the lab: unpack the .deb by hand, build the maps with
# its makedb, overlay /usr/lib/x86_64-linux-gnu and /var/lib/misc in a private mount
# namespace, ask glibc. Run as root: sh groundtruth.sh
set -e
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
(cd "$w" && apt-get download -q libnss-db >/dev/null 2>&1 && dpkg-deb -x libnss-db_*.deb deb)
echo "libc6 ships: $(dpkg -L libc6 | grep -c libnss_db) libnss_db, libc-bin: $(dpkg -L libc-bin | grep -c makedb) makedb"
(cd "$w" && cp "$here/passwd" "$here/group" "$here/shadow" "$here/build.sh" . && NSSLAB_TREE="$w/deb" sh build.sh)
mkdir -p "$w/etc"
sed -e 's/^\(passwd\|group\|shadow\):.*/\1: files db/' /etc/nsswitch.conf >"$w/etc/nsswitch.conf"
unshare --mount --propagation private sh -ec "
  mount -t overlay gt -o ro,lowerdir=$w/deb/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu
  mount -t overlay gt -o ro,lowerdir=$w/maps:/var/lib/misc /var/lib/misc
  mount --bind $w/etc/nsswitch.conf /etc/nsswitch.conf
  for q in 'passwd deb1' 'passwd 20002' 'group debgrp' 'group 20000' 'shadow deb1'; do
    echo \"\$ getent -s db \$q\"; getent -s db \$q
  done
  echo '$ getent -s db passwd'; getent -s db passwd
  echo '$ getent -s db group'; getent -s db group
  echo '$ id deb1'; id deb1
"
