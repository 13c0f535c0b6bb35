/* Planted defect: the lookup copies a field from a cache record that was never filled in,
 * handing strlen() a NULL pointer. The fault is inside glibc, called with bad data by the
 * module: the lab must still blame the module. */
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <stddef.h>
#include <string.h>

struct record {
	const char *name, *gecos;
};

/* The record the (missing) cache loader should have filled: gecos stays NULL. */
static struct record cached = {"pyama", NULL};

__attribute__((noinline)) static size_t copy_field(char *buf, size_t len, const char *field)
{
	size_t n = strlen(field) + 1; /* SIGSEGV: field is NULL */
	if (n > len)
		return 0;
	memcpy(buf, field, n);
	return n;
}

enum nss_status _nss_segvlab_getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len,
					int *errnop)
{
	struct record *volatile r = &cached;
	if (strcmp(name, r->name) != 0) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	pw->pw_gecos = buf;
	if (!copy_field(buf, len, r->gecos)) {
		*errnop = ERANGE;
		return NSS_STATUS_TRYAGAIN;
	}
	return NSS_STATUS_NOTFOUND;
}

/* By id the module knows nobody; the defect above is reached by name. */
enum nss_status _nss_segvlab_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, int *errnop)
{
	(void)uid, (void)pw, (void)buf, (void)len;
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}
