#!/bin/sh
# Ground truth for libnss-ldapd + nslcd 0.9.12 in front of a real slapd 2.5, without the lab:
# download and unpack by hand, overlay /usr and /etc in a private mount namespace, private
# writable /var/lib/ldap and /run, build the database (slapadd), start slapd and nslcd, ask
# glibc. Nothing is installed and nothing outlives the namespace. Run as root: sh groundtruth.sh
set -e
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/debs/partial" "$w/t"
(cd "$w/debs" && apt-get -q -o APT::Sandbox::User=root download slapd nslcd libnss-ldapd >/dev/null)
apt-get -q -o APT::Sandbox::User=root install --download-only -y --no-install-recommends \
	-o Dir::Cache::archives="$w/debs" slapd nslcd libnss-ldapd >/dev/null
for d in "$w"/debs/*.deb; do dpkg-deb -x "$d" "$w/t"; done
T=$w/t
cat >"$w/gt.sh" <<EOS
set -e
for d in usr etc var/lib; do mkdir -p $w/orig-\$d; mount --bind /\$d $w/orig-\$d; done
mkdir -p $w/usr/lib; cp -a $T/lib/x86_64-linux-gnu $w/usr/lib/   # merged-/usr by hand
mount -t overlay gt -o ro,lowerdir=$w/usr:$T/usr:$w/orig-usr /usr
mkdir -p $w/etc/nsslab-ldapd
cp $here/slapd.conf $here/users.ldif $here/slapd.sh $w/etc/nsslab-ldapd/; install -m 600 $here/nslcd.conf $w/etc/nslcd.conf
sed -e 's/^passwd:.*/passwd: files ldap/' -e 's/^group:.*/group: files ldap/' -e 's/^shadow:.*/shadow: files ldap/' /etc/nsswitch.conf > $w/etc/nsswitch.conf
mount -t overlay gt -o ro,lowerdir=$w/etc:$T/etc:$w/orig-etc /etc
mkdir -p $w/varlib/ldap; mount -t overlay gt -o ro,lowerdir=$w/varlib:$w/orig-var/lib /var/lib
mount -t tmpfs gt /var/lib/ldap
mount -t tmpfs gt /run; mkdir -p /run/slapd /run/nslcd
sh /etc/nsslab-ldapd/slapd.sh > $w/slapd.log 2>&1 &
slapd=\$!
trap 'kill \$slapd \${nslcd:-} 2>/dev/null; wait' EXIT   # whatever happens, nothing outlives this
for i in \$(seq 100); do [ -S /run/slapd/ldapi ] && break; sleep 0.2; done
/usr/sbin/nslcd -d > $w/nslcd.log 2>&1 &
nslcd=\$!
for i in \$(seq 100); do [ -S /run/nslcd/socket ] && break; sleep 0.2; done
set +e
echo "\\\$ getent -s ldap passwd deb1 deb2"; getent -s ldap passwd deb1 deb2
echo "\\\$ getent -s ldap group debgrp 20000"; getent -s ldap group debgrp 20000
echo "\\\$ id deb1"; id deb1
echo "\\\$ getent -s ldap passwd"; getent -s ldap passwd
echo "\\\$ getent -s ldap group"; getent -s ldap group
echo "\\\$ getent -s ldap initgroups deb1"; getent -s ldap initgroups deb1
echo "\\\$ getent -s ldap shadow deb1"; getent -s ldap shadow deb1 || echo "(exit \$?)"
echo "\\\$ getent -s ldap shadow"; getent -s ldap shadow
echo "\\\$ getent shadow deb1  (through nsswitch.conf)"; getent shadow deb1 || echo "(exit \$?)"
echo "\\\$ getent passwd nsslab-no-such-entry; getent group 4242424; getent shadow nsslab-no-such-entry"
for q in "passwd nsslab-no-such-entry" "group 4242424" "shadow nsslab-no-such-entry"; do getent \$q; echo "(exit \$?)"; done
echo "\\\$ bash -c 'compgen -u deb; compgen -g deb'"; bash -c 'compgen -u deb; compgen -g deb'
echo "\\\$ mkdir /run/o; chown 20001:20000 /run/o; ls -ld /run/o"; mkdir /run/o; chown 20001:20000 /run/o; ls -ld /run/o
echo "\\\$ python3 handchecks.py"; python3 $here/handchecks.py
EOS
unshare --mount --propagation private sh "$w/gt.sh"
