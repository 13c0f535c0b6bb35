/* Planted defect: a C module whose cache refresh thread holds the module's lock most of
 * the time, and which registers no pthread_atfork handler. A process that used the module
 * has that thread; when it forks, the child gets the lock in whatever state it was,
 * owned by a thread that fork did not copy, and the child's first lookup waits forever.
 * Its thread also makes `setpriv`-style privilege drops abort (glibc's SIGSETXID).
 * Serves two passwd entries from a built-in table. */
#include <errno.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>
#include <string.h>
#include <time.h>

struct entry {
	const char *name, *gecos, *home, *shell;
	uid_t uid;
	gid_t gid;
};

static const struct entry table[] = {
	{"pyama", "Kazuhiko Yamashita", "/home/pyama", "/bin/bash", 10301, 2000},
	{"taro", "Taro", "/home/taro", "/bin/bash", 10302, 2000},
};
#define ENTRIES (sizeof(table) / sizeof(table[0]))

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t started = PTHREAD_ONCE_INIT;
static unsigned long generation;
static size_t cursor;

static void pause_ms(long ms)
{
	struct timespec ts = {0, ms * 1000000L};
	nanosleep(&ts, NULL);
}

/* "Re-reads the directory" with the lock held: 50 ms in, 1 ms out. */
static void *refresh(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&cache_lock);
		pause_ms(50);
		generation++;
		pthread_mutex_unlock(&cache_lock);
		pause_ms(1);
	}
	return NULL;
}

static void start_refresh(void)
{
	pthread_t thread;
	if (pthread_create(&thread, NULL, refresh, NULL) == 0)
		pthread_detach(thread);
}

static void enter(void)
{
	pthread_once(&started, start_refresh);
	pthread_mutex_lock(&cache_lock);
}

static char *stash(const char *s, char **buf, size_t *left)
{
	size_t n = strlen(s) + 1;
	char *out = *buf;
	if (n > *left)
		return NULL;
	memcpy(out, s, n);
	*buf += n;
	*left -= n;
	return out;
}

static enum nss_status fill(const struct entry *e, struct passwd *pw, char *buf, size_t len, int *errnop)
{
	pw->pw_uid = e->uid;
	pw->pw_gid = e->gid;
	/* "*": no shadow database here, and "x" would have pam_unix deny logins. */
	if (!(pw->pw_name = stash(e->name, &buf, &len)) || !(pw->pw_passwd = stash("*", &buf, &len)) ||
	    !(pw->pw_gecos = stash(e->gecos, &buf, &len)) || !(pw->pw_dir = stash(e->home, &buf, &len)) ||
	    !(pw->pw_shell = stash(e->shell, &buf, &len))) {
		*errnop = ERANGE;
		return NSS_STATUS_TRYAGAIN;
	}
	return NSS_STATUS_SUCCESS;
}

static enum nss_status find(const char *name, uid_t uid, struct passwd *pw, char *buf, size_t len,
			    int *errnop)
{
	enum nss_status status = NSS_STATUS_NOTFOUND;
	enter();
	for (size_t i = 0; i < ENTRIES; i++)
		if (name ? strcmp(table[i].name, name) == 0 : table[i].uid == uid) {
			status = fill(&table[i], pw, buf, len, errnop);
			break;
		}
	pthread_mutex_unlock(&cache_lock);
	if (status == NSS_STATUS_NOTFOUND)
		*errnop = ENOENT;
	return status;
}

enum nss_status _nss_forklock_getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len,
					 int *errnop)
{
	return find(name, 0, pw, buf, len, errnop);
}

enum nss_status _nss_forklock_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len,
					 int *errnop)
{
	return find(NULL, uid, pw, buf, len, errnop);
}

enum nss_status _nss_forklock_setpwent(int stayopen)
{
	(void)stayopen;
	enter();
	cursor = 0;
	pthread_mutex_unlock(&cache_lock);
	return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_forklock_getpwent_r(struct passwd *pw, char *buf, size_t len, int *errnop)
{
	enum nss_status status = NSS_STATUS_NOTFOUND;
	enter();
	if (cursor < ENTRIES) {
		status = fill(&table[cursor], pw, buf, len, errnop);
		if (status == NSS_STATUS_SUCCESS)
			cursor++;
	} else {
		*errnop = ENOENT;
	}
	pthread_mutex_unlock(&cache_lock);
	return status;
}

enum nss_status _nss_forklock_endpwent(void)
{
	return NSS_STATUS_SUCCESS;
}
