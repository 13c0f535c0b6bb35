/* Planted defect: the constructor calls exit() when its configuration is missing, as some
 * client libraries do. Every process that loads the module (through any lookup: sshd,
 * cron, sudo) silently exits with status 1 before its lookup returns. */
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void start(void)
{
	if (access("/etc/ctorexit.conf", R_OK) != 0) {
		fprintf(stderr, "ctorexit: /etc/ctorexit.conf missing\n");
		exit(1);
	}
}

enum nss_status _nss_ctorexit_getpwnam_r(const char *name, struct passwd *pw, char *buf,
					 size_t len, int *errnop)
{
	(void)name, (void)pw, (void)buf, (void)len;
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_ctorexit_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len,
					 int *errnop)
{
	(void)uid, (void)pw, (void)buf, (void)len;
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}
