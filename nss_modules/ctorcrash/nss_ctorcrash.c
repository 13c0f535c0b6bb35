/* Planted defect: the library's constructor dereferences NULL, so every process that
 * loads it (through any lookup) dies with SIGSEGV before the lookup starts. */
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>

__attribute__((constructor)) static void start(void)
{
	/* An address the compiler cannot prove is NULL: a provable NULL store is undefined
	 * behaviour, and GCC then drops the constructor altogether. */
	*(volatile int *)(uintptr_t)strtoul("0", NULL, 10) = 1;
}

enum nss_status _nss_ctorcrash_getpwnam_r(const char *name, struct passwd *pw, char *buf,
					  size_t len, int *errnop)
{
	(void)name, (void)pw, (void)buf, (void)len;
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}

/* By id the module knows nobody; the defect above is reached by name. */
enum nss_status _nss_ctorcrash_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, int *errnop)
{
	(void)uid, (void)pw, (void)buf, (void)len;
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}
