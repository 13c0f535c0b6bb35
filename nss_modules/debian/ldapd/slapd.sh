#!/bin/sh
# The slapd service: the database is built at every start (slapadd of users.ldif into the
# private, empty /var/lib/ldap), then slapd runs in the foreground (-d 0: no fork, no debug
# output) on a private ldapi socket only; no TCP port is opened.
set -e
conf=/etc/nsslab-ldapd/slapd.conf
/usr/sbin/slapadd -q -f "$conf" -l /etc/nsslab-ldapd/users.ldif
exec /usr/sbin/slapd -d 0 -f "$conf" -h ldapi://%2Frun%2Fslapd%2Fldapi
