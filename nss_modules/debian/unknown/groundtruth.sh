#!/bin/sh
# Ground truth for libnss-unknown, without the lab: unpack the .deb by hand, overlay the
# lib dir and nsswitch.conf in a private mount namespace, ask glibc through getent and id,
# and show what a real caller (useradd) then does, with the same useradd without the module
# as the control. /etc gets a throw-away writable overlay: the host's /etc is never written.
# Run as root: sh groundtruth.sh
set -e
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
(cd "$w" && apt-get download -q libnss-unknown >/dev/null 2>&1 && dpkg-deb -x libnss-unknown_*.deb deb)
lib=/usr/lib/x86_64-linux-gnu
mkdir -p "$w/up" "$w/wk" "$w/up2" "$w/wk2"
unshare --mount --propagation private sh -ec "
  mount -t overlay gt -o ro,lowerdir=$w/deb$lib:$lib $lib
  mount -t overlay gt -o lowerdir=/etc,upperdir=$w/up,workdir=$w/wk /etc
  sed -i -e 's/^passwd:.*/passwd: files unknown/' /etc/nsswitch.conf
  grep ^passwd: /etc/nsswitch.conf
  for q in 21101 uid-21102 nosuchuser 4000000000 uid-7x; do
    echo \"\$ getent -s unknown passwd \$q\"; getent -s unknown passwd \$q || echo \"(exit \$?)\"
  done
  echo '\$ getent -s unknown passwd'; getent -s unknown passwd || echo \"(exit \$?)\"
  echo '\$ id uid-21102'; id uid-21102
  echo '\$ useradd -M nssunk1'; useradd -M nssunk1 || echo \"(exit \$?)\"
"
echo '--- control: the same useradd with passwd: files only'
unshare --mount --propagation private sh -ec "
  mount -t overlay gt -o lowerdir=/etc,upperdir=$w/up2,workdir=$w/wk2 /etc
  sed -i -e 's/^passwd:.*/passwd: files/' /etc/nsswitch.conf
  echo '\$ useradd -M nssunk1'; useradd -M nssunk1 && getent passwd nssunk1
"
