#!/bin/sh
# Ground truth for libnss-extrausers, without the lab: unpack the .deb by hand, overlay
# /usr/lib and /var/lib in a private mount namespace, ask glibc through getent and id.
# Run as root: sh groundtruth.sh
set -e
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
(cd "$w" && apt-get download -q libnss-extrausers >/dev/null 2>&1 && dpkg-deb -x libnss-extrausers_*.deb deb)
mkdir -p "$w/lib" "$w/var/extrausers" "$w/etc"
cp "$here/passwd" "$here/group" "$here/shadow" "$w/var/extrausers/"
sed -e 's/^\(passwd\|group\|shadow\):.*/\1: files extrausers/' /etc/nsswitch.conf >"$w/etc/nsswitch.conf"
unshare --mount --propagation private sh -ec "
  mount -t overlay gt -o ro,lowerdir=$w/deb/usr/lib:/usr/lib /usr/lib
  mount -t overlay gt -o ro,lowerdir=$w/var:/var/lib /var/lib
  mount --bind $w/etc/nsswitch.conf /etc/nsswitch.conf
  for q in 'passwd deb1' 'passwd 20002' 'group debgrp' 'group 20000' 'shadow deb1'; do
    echo \"\$ getent -s extrausers \$q\"; getent -s extrausers \$q
  done
  echo '$ getent -s extrausers passwd'; getent -s extrausers passwd
  echo '$ id deb1'; id deb1
  echo '$ id deb2'; id deb2
  echo '$ python3 getpwent_erange.py LIB'; python3 $here/getpwent_erange.py $w/deb/usr/lib/libnss_extrausers.so.2
"
