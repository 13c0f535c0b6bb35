#!/bin/sh
# Builds passwd.db, group.db, shadow.db the way Debian's libnss-db expects them: with the
# package's own makedb (Berkeley DB 5.3; glibc's makedb writes another format, and Debian's
# libc-bin ships none), keys as in the package's /var/lib/misc/Makefile: ".NAME", "=ID"
# (not for shadow) and "0N" for the N-th entry of a listing.
# The lab runs it with $NSSLAB_TREE, the unpacked packages; by hand:
#   NSSLAB_TREE=~/.cache/nsslab/debs/libnss-db/tree sh build.sh
set -e
makedb="${NSSLAB_TREE:?the unpacked libnss-db tree}/usr/bin/makedb"
mkdir -p maps
for db in passwd group shadow; do
	rm -f "maps/$db.db"
	awk -v byid="$([ $db = shadow ] || echo 1)" 'BEGIN { FS = ":"; cnt = 0 }
		/^[ \t]*$/ || /^[ \t]*#/ { next }
		{ printf "0%u %s\n", cnt++, $0; printf ".%s %s\n", $1, $0 }
		byid { printf "=%s %s\n", $3, $0 }' "$db" | "$makedb" --quiet -o "maps/$db.db" -
done
