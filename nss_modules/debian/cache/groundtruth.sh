#!/bin/sh
# Ground truth for libnss-cache, without the lab: unpack the .deb by hand, overlay the lib
# dir and the three cache maps in a private mount namespace, ask glibc through getent and
# id, and the entry points directly (nsscall.py). Run as root: sh groundtruth.sh
set -e
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
(cd "$w" && apt-get download -q libnss-cache >/dev/null 2>&1 && dpkg-deb -x libnss-cache_*.deb deb)
lib=/usr/lib/x86_64-linux-gnu
mkdir -p "$w/etc"
sed -e 's/^\(passwd\|group\|shadow\):.*/\1: files cache/' /etc/nsswitch.conf >"$w/etc/nsswitch.conf"
cp "$here/passwd" "$w/etc/passwd.cache"; cp "$here/group" "$w/etc/group.cache"
cp "$here/shadow" "$w/etc/shadow.cache"; chmod 600 "$w/etc/shadow.cache"
unshare --mount --propagation private sh -ec "
  mount -t overlay gt -o ro,lowerdir=$w/deb$lib:$lib $lib
  mount -t overlay gt -o ro,lowerdir=$w/etc:/etc /etc    # the host's /etc is never written
  for q in 'passwd ncu1' 'passwd 21002' 'group ncgrp' 'group 21000' 'shadow ncu1' 'shadow ncu2' 'passwd' 'group' 'shadow'; do
    echo \"\$ getent -s cache \$q\"; getent -s cache \$q || echo \"(exit \$?)\"
  done
  echo '\$ getent -s cache passwd nobody-here'; getent -s cache passwd nobody-here || echo \"(exit \$?)\"
  echo '\$ id ncu1'; id ncu1
  echo '\$ id ncu2'; id ncu2
  echo '\$ python3 nsscall.py LIB'; python3 $here/nsscall.py $lib/libnss_cache.so.2
"
