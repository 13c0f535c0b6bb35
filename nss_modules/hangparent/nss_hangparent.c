/* Planted defect: the lookup takes a lock it already holds, so it never returns, even in
 * a plain process with no fork involved. The lab must call this a hang in the parent,
 * quickly, and must not hang itself. */
#include <errno.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

enum nss_status _nss_hangparent_getpwnam_r(const char *name, struct passwd *pw, char *buf,
					   size_t len, int *errnop)
{
	(void)name, (void)pw, (void)buf, (void)len;
	pthread_mutex_lock(&lock);
	pthread_mutex_lock(&lock); /* never returns: a non-recursive mutex taken twice */
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_hangparent_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len,
					   int *errnop)
{
	return _nss_hangparent_getpwnam_r("", pw, buf, len + 0 * uid, errnop);
}
