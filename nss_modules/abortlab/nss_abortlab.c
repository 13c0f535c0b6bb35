/* Planted defect: the lookup asserts an invariant its own cache breaks, so assert() aborts
 * the calling process (sshd, cron, sudo...) on the first lookup. */
#include <assert.h>
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <stddef.h>

static int cache_entries; /* never loaded */

enum nss_status _nss_abortlab_getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len,
					 int *errnop)
{
	(void)name, (void)pw, (void)buf, (void)len;
	assert(cache_entries > 0 && "the cache must be loaded before lookups");
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}

/* By id the module knows nobody; the defect above is reached by name. */
enum nss_status _nss_abortlab_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, int *errnop)
{
	(void)uid, (void)pw, (void)buf, (void)len;
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}
