#!/bin/sh
# Ground truth for libnss-sss + sssd 2.8 (files provider), without the lab: download and
# unpack by hand, overlay /usr, /etc, /var in a private mount namespace, private writable
# /var/lib/sss, /var/log/sssd and /run, start sssd, ask glibc. Run as root: sh groundtruth.sh
set -e
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/debs/partial" "$w/t"
(cd "$w/debs" && apt-get -q -o APT::Sandbox::User=root download sssd-common libnss-sss >/dev/null)
apt-get -q -o APT::Sandbox::User=root install --download-only -y --no-install-recommends \
	-o Dir::Cache::archives="$w/debs" sssd-common libnss-sss >/dev/null
for d in "$w"/debs/*.deb; do dpkg-deb -x "$d" "$w/t"; done
T=$w/t
cat >"$w/gt.sh" <<EOS
set -e
for d in usr etc var; do mkdir -p $w/orig-\$d; mount --bind /\$d $w/orig-\$d; done
mkdir -p $w/usr/lib; cp -a $T/lib/x86_64-linux-gnu $w/usr/lib/   # merged-/usr by hand
mount -t overlay gt -o ro,lowerdir=$w/usr:$T/usr:$w/orig-usr /usr
mkdir -p $w/etc/nsslab-sss $w/etc/sssd
cp $here/passwd $here/group $w/etc/nsslab-sss/; install -m 600 $here/sssd.conf $w/etc/sssd/sssd.conf
sed -e 's/^passwd:.*/passwd: files sss/' -e 's/^group:.*/group: files sss/' /etc/nsswitch.conf > $w/etc/nsswitch.conf
mount -t overlay gt -o ro,lowerdir=$w/etc:$T/etc:$w/orig-etc /etc
mount -t overlay gt -o ro,lowerdir=$T/var:$w/orig-var /var
for s in /var/lib/sss /var/log/sssd; do
	mkdir -p $w/st\$s/u $w/st\$s/w; mount -t overlay gt -o lowerdir=$T\$s,upperdir=$w/st\$s/u,workdir=$w/st\$s/w \$s
done
mount -t tmpfs gt /run
/usr/sbin/sssd -i -c /etc/sssd/sssd.conf --logger=stderr > $w/sssd.log 2>&1 &
for i in \$(seq 100); do [ -S /var/lib/sss/pipes/nss ] && break; sleep 0.2; done
echo "\\\$ getent -s sss passwd deb1 deb2"; getent -s sss passwd deb1 deb2
echo "\\\$ getent -s sss group debgrp 20000"; getent -s sss group debgrp 20000
echo "\\\$ getent -s sss passwd"; getent -s sss passwd
echo "\\\$ id deb1"; id deb1
kill \$!; wait
EOS
unshare --mount --propagation private sh "$w/gt.sh"
