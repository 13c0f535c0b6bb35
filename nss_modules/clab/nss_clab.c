/* A well-behaved NSS module in plain C: the known-good reference for the lab.
 *
 * Serves passwd and group entries (plus initgroups) from /etc/<NAME>.db, whose lines are
 *   passwd:NAME:UID:GID:GECOS:HOME:SHELL
 *   group:NAME:GID:MEMBER,MEMBER
 * The service name is a build parameter (-DNSS_NAME=clab) so that variants such as the
 * slow module share this source. -DSLOW_MS=300 makes every lookup sleep, to prove that
 * the lab tells a slow module from a hung one.
 */
#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef NSS_NAME
#define NSS_NAME clab
#endif
#ifndef SLOW_MS
#define SLOW_MS 0
#endif

#define STR2(x) #x
#define STR(x) STR2(x)
#define CAT3(a, b, c) a##b##c
#define ENTRY3(a, b, c) CAT3(a, b, c)
#define ENTRY(fn) ENTRY3(_nss_, NSS_NAME, _##fn)

#define DB_PATH "/etc/" STR(NSS_NAME) ".db"
#define MAX_FIELDS 8

static pthread_mutex_t enum_lock = PTHREAD_MUTEX_INITIALIZER;
static long pw_cursor = -1, gr_cursor = -1; /* line index of the next entry, -1: not set */

static void slow_down(void)
{
#if SLOW_MS > 0
	struct timespec ts = {SLOW_MS / 1000, (SLOW_MS % 1000) * 1000000L};
	nanosleep(&ts, NULL);
#endif
}

/* Splits LINE in place at ':' (at most MAX_FIELDS fields); returns the field count. */
static int split(char *line, char **fields)
{
	int n = 0;
	char *p = line;
	line[strcspn(line, "\r\n")] = '\0';
	while (n < MAX_FIELDS) {
		fields[n++] = p;
		p = strchr(p, ':');
		if (!p)
			break;
		*p++ = '\0';
	}
	return n;
}

/* Copies S into the caller's buffer; NULL when it does not fit. */
static char *stash(const char *s, char **buf, size_t *left)
{
	size_t len = strlen(s) + 1;
	char *out = *buf;
	if (len > *left)
		return NULL;
	memcpy(out, s, len);
	*buf += len;
	*left -= len;
	return out;
}

static enum nss_status fill_passwd(char **f, struct passwd *pw, char *buf, size_t len, int *errnop)
{
	pw->pw_uid = (uid_t)strtoul(f[2], NULL, 10);
	pw->pw_gid = (gid_t)strtoul(f[3], NULL, 10);
	if (!(pw->pw_name = stash(f[1], &buf, &len)) || !(pw->pw_passwd = stash("x", &buf, &len)) ||
	    !(pw->pw_gecos = stash(f[4], &buf, &len)) || !(pw->pw_dir = stash(f[5], &buf, &len)) ||
	    !(pw->pw_shell = stash(f[6], &buf, &len))) {
		*errnop = ERANGE;
		return NSS_STATUS_TRYAGAIN;
	}
	return NSS_STATUS_SUCCESS;
}

static enum nss_status fill_group(char **f, struct group *gr, char *buf, size_t len, int *errnop)
{
	size_t count = 0, i = 0;
	char *m, *save = NULL, **members;
	gr->gr_gid = (gid_t)strtoul(f[2], NULL, 10);
	if (!(gr->gr_name = stash(f[1], &buf, &len)) || !(gr->gr_passwd = stash("x", &buf, &len)))
		goto erange;
	for (m = f[3]; *m; m++)
		count += *m == ',';
	count += f[3][0] != '\0';
	/* The member array must be pointer-aligned inside the buffer. */
	size_t pad = (sizeof(char *) - ((unsigned long)buf % sizeof(char *))) % sizeof(char *);
	if (pad + (count + 1) * sizeof(char *) > len)
		goto erange;
	members = (char **)(buf + pad);
	buf += pad + (count + 1) * sizeof(char *);
	len -= pad + (count + 1) * sizeof(char *);
	for (m = strtok_r(f[3], ",", &save); m; m = strtok_r(NULL, ",", &save))
		if (!(members[i++] = stash(m, &buf, &len)))
			goto erange;
	members[i] = NULL;
	gr->gr_mem = members;
	return NSS_STATUS_SUCCESS;
erange:
	*errnop = ERANGE;
	return NSS_STATUS_TRYAGAIN;
}

/* Finds the first line of KIND ("passwd" or "group") at index >= *cursor whose field
 * KEY_FIELD equals KEY (any line when KEY is NULL); splits it into FIELDS. */
static int find(const char *kind, int key_field, const char *key, long *cursor, char *line,
		size_t size, char **fields)
{
	FILE *fp = fopen(DB_PATH, "re");
	long index = 0, start = cursor ? *cursor : 0;
	int found = 0;
	if (!fp)
		return -1;
	while (fgets(line, (int)size, fp)) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (index++ < start)
			continue;
		int n = split(line, fields);
		if (strcmp(fields[0], kind) != 0 || n < (strcmp(kind, "passwd") ? 4 : 7))
			continue;
		if (key && strcmp(fields[key_field], key) != 0)
			continue;
		if (cursor)
			*cursor = index;
		found = 1;
		break;
	}
	fclose(fp);
	return found;
}

static enum nss_status lookup_passwd(int key_field, const char *key, struct passwd *pw, char *buf,
				     size_t len, int *errnop)
{
	char line[4096], *f[MAX_FIELDS];
	slow_down();
	int r = find("passwd", key_field, key, NULL, line, sizeof line, f);
	if (r < 0) {
		*errnop = errno;
		return NSS_STATUS_UNAVAIL;
	}
	if (r == 0) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	return fill_passwd(f, pw, buf, len, errnop);
}

static enum nss_status lookup_group(int key_field, const char *key, struct group *gr, char *buf,
				    size_t len, int *errnop)
{
	char line[65536], *f[MAX_FIELDS];
	slow_down();
	int r = find("group", key_field, key, NULL, line, sizeof line, f);
	if (r < 0) {
		*errnop = errno;
		return NSS_STATUS_UNAVAIL;
	}
	if (r == 0) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	return fill_group(f, gr, buf, len, errnop);
}

enum nss_status ENTRY(getpwnam_r)(const char *name, struct passwd *pw, char *buf, size_t len,
				  int *errnop)
{
	return lookup_passwd(1, name, pw, buf, len, errnop);
}

enum nss_status ENTRY(getpwuid_r)(uid_t uid, struct passwd *pw, char *buf, size_t len, int *errnop)
{
	char key[32];
	snprintf(key, sizeof key, "%u", (unsigned)uid);
	return lookup_passwd(2, key, pw, buf, len, errnop);
}

enum nss_status ENTRY(getgrnam_r)(const char *name, struct group *gr, char *buf, size_t len,
				  int *errnop)
{
	return lookup_group(1, name, gr, buf, len, errnop);
}

enum nss_status ENTRY(getgrgid_r)(gid_t gid, struct group *gr, char *buf, size_t len, int *errnop)
{
	char key[32];
	snprintf(key, sizeof key, "%u", (unsigned)gid);
	return lookup_group(2, key, gr, buf, len, errnop);
}

/* Enumeration: the cursor only advances when the entry fitted, so an ERANGE retry with a
 * bigger buffer returns the same entry (glibc relies on this). */
#define ENUMERATION(db, type, cursor, fill, linesize)                                        \
	enum nss_status ENTRY(set##db##ent)(int stayopen)                                    \
	{                                                                                    \
		(void)stayopen;                                                              \
		slow_down();                                                                 \
		pthread_mutex_lock(&enum_lock);                                              \
		cursor = 0;                                                                  \
		pthread_mutex_unlock(&enum_lock);                                            \
		return NSS_STATUS_SUCCESS;                                                   \
	}                                                                                    \
	enum nss_status ENTRY(end##db##ent)(void)                                            \
	{                                                                                    \
		pthread_mutex_lock(&enum_lock);                                              \
		cursor = -1;                                                                 \
		pthread_mutex_unlock(&enum_lock);                                            \
		return NSS_STATUS_SUCCESS;                                                   \
	}                                                                                    \
	enum nss_status ENTRY(get##db##ent_r)(struct type * ent, char *buf, size_t len,      \
					      int *errnop)                                   \
	{                                                                                    \
		static char line[linesize];                                                  \
		char *f[MAX_FIELDS];                                                         \
		enum nss_status st;                                                          \
		pthread_mutex_lock(&enum_lock);                                              \
		long next = cursor < 0 ? 0 : cursor;                                         \
		int r = find(#type, 0, NULL, &next, line, sizeof line, f);                   \
		if (r <= 0) {                                                                \
			*errnop = r < 0 ? errno : ENOENT;                                    \
			st = r < 0 ? NSS_STATUS_UNAVAIL : NSS_STATUS_NOTFOUND;              \
		} else if ((st = fill(f, ent, buf, len, errnop)) == NSS_STATUS_SUCCESS) {    \
			cursor = next;                                                       \
		}                                                                            \
		pthread_mutex_unlock(&enum_lock);                                            \
		return st;                                                                   \
	}

ENUMERATION(pw, passwd, pw_cursor, fill_passwd, 4096)
ENUMERATION(gr, group, gr_cursor, fill_group, 65536)

enum nss_status ENTRY(initgroups_dyn)(const char *user, gid_t skipgroup, long *start, long *size,
				      gid_t **groupsp, long limit, int *errnop)
{
	char line[65536], *f[MAX_FIELDS], *m, *save;
	long cursor = 0;
	int r;
	slow_down();
	while ((r = find("group", 0, NULL, &cursor, line, sizeof line, f)) > 0) {
		gid_t gid = (gid_t)strtoul(f[2], NULL, 10);
		int member = 0;
		for (m = strtok_r(f[3], ",", &save); m && !member; m = strtok_r(NULL, ",", &save))
			member = strcmp(m, user) == 0;
		if (!member || gid == skipgroup)
			continue;
		if (*start == *size) {
			if (limit > 0 && *size >= limit)
				return NSS_STATUS_SUCCESS;
			long newsize = limit > 0 && 2 * *size > limit ? limit : 2 * *size;
			gid_t *grown = realloc(*groupsp, (size_t)newsize * sizeof(gid_t));
			if (!grown) {
				*errnop = ENOMEM;
				return NSS_STATUS_TRYAGAIN;
			}
			*groupsp = grown;
			*size = newsize;
		}
		(*groupsp)[(*start)++] = gid;
	}
	if (r < 0) {
		*errnop = errno;
		return NSS_STATUS_UNAVAIL;
	}
	return NSS_STATUS_SUCCESS;
}
