/* A well-behaved NSS module in plain C: the known-good reference for the lab.
 *
 * Serves passwd, group, shadow and initgroups from /etc/<DB>.db, whose lines are
 *   passwd:NAME:UID:GID:GECOS:HOME:SHELL
 *   group:NAME:GID:MEMBER,MEMBER
 *   shadow:NAME:PASSWORD:LASTCHG:MIN:MAX:WARN:INACT:EXPIRE   (empty field: -1)
 * The service name is a build parameter (-DNSS_NAME=clab), so variants share this
 * source: -DSLOW_MS=300 makes every call sleep, as a network round trip would (slow is
 * not hung), -DCOLD_MS=150 only the first call of a process (a first connection), and
 * each -DPLANT_<DEFECT> plants one real-world contract bug for the lab to find (see the
 * planted modules' manifests). Built without PLANT_*, none of that code exists.
 */
#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>
#include <shadow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef NSS_NAME
#define NSS_NAME clab
#endif
#ifndef DB_NAME
#define DB_NAME NSS_NAME
#endif
#ifndef SLOW_MS
#define SLOW_MS 0
#endif
#ifndef COLD_MS
#define COLD_MS 0
#endif

#define STR2(x) #x
#define STR(x) STR2(x)
#define CAT3(a, b, c) a##b##c
#define ENTRY3(a, b, c) CAT3(a, b, c)
#define ENTRY(fn) ENTRY3(_nss_, NSS_NAME, _##fn)

#define DB_PATH "/etc/" STR(DB_NAME) ".db"
#define MAX_FIELDS 10

typedef enum nss_status (*filler)(char **fields, void *ent, char *buf, size_t len, int *errnop);

/* The planted defects of the caller-side checks live in their own files, one area each,
 * compiled into every build: each file's hooks are empty unless its PLANT_* is defined.
 * before() may answer the call itself (returns 1, *st set); after() sees the answer. */
struct plant_call {
	const char *fn;	  /* the entry point without its prefix: "getpwnam_r", "setpwent" */
	const char *kind; /* "passwd", "group", "shadow" */
	const char *key;  /* the name or the id as text; NULL in the enumeration */
	void *ent;	  /* the caller's struct; NULL in set/end*ent and initgroups_dyn */
	char *buf;
	size_t len;
	int *errnop;
};
#include "plants_contract.c"
#include "plants_fds.c"
#include "plants_host.c"
#include "plants_robust.c"

static int planted_before(struct plant_call *c, enum nss_status *st)
{
	return robust_before(c, st) || host_before(c, st) || fds_before(c, st) || contract_before(c, st);
}

static void planted_after(struct plant_call *c, enum nss_status *st)
{
	robust_after(c, st);
	host_after(c, st);
	fds_after(c, st);
	contract_after(c, st);
}

/* unused: PLANT_NOENUM leaves the enumeration out */
static pthread_mutex_t enum_lock __attribute__((unused)) = PTHREAD_MUTEX_INITIALIZER;
/* line index of the next entry per database, -1: set*ent not called */
static long pw_cursor __attribute__((unused)) = -1, gr_cursor __attribute__((unused)) = -1,
	    sp_cursor __attribute__((unused)) = -1;

#ifdef PLANT_TLS
/* Planted: 4 KiB of initial-exec TLS, more than glibc keeps for late dlopen. */
static __thread char scratch[4096] __attribute__((tls_model("initial-exec")));
#endif

static void slow_down(void)
{
#if COLD_MS > 0
	/* The first call of a process waits once, as a first connection to a backend does. */
	static int warm;
	if (!__atomic_exchange_n(&warm, 1, __ATOMIC_SEQ_CST)) {
		struct timespec cold = {COLD_MS / 1000, (COLD_MS % 1000) * 1000000L};
		nanosleep(&cold, NULL);
	}
#endif
#if SLOW_MS > 0
	struct timespec ts = {SLOW_MS / 1000, (SLOW_MS % 1000) * 1000000L};
	nanosleep(&ts, NULL);
#endif
#ifdef PLANT_TLS
	scratch[0]++;
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

static int min_fields(const char *kind)
{
	return !strcmp(kind, "passwd") ? 7 : !strcmp(kind, "shadow") ? 9 : 4;
}

/* Copies S into the caller's buffer; NULL when it does not fit. */
static char *stash(const char *s, char **buf, size_t *left)
{
	size_t len = strlen(s) + 1;
	char *out = *buf;
#if defined(PLANT_OVERFLOW)
	if (len - 1 > *left) /* planted: forgets the terminating NUL, writes 1 byte past */
		return NULL;
#elif defined(PLANT_TRUNCATE)
	if (len > *left && *left > 1) { /* planted: cuts the string to what is left */
		memcpy(out, s, *left - 1);
		out[*left - 1] = '\0';
		*buf += *left;
		*left = 0;
		return out;
	}
	if (len > *left)
		return NULL;
#else
	if (len > *left)
		return NULL;
#endif
	memcpy(out, s, len);
	*buf += len;
	*left -= len;
	return out;
}

static enum nss_status erange(int *errnop)
{
#ifdef PLANT_SMALLBUF
	*errnop = ENOENT; /* planted: a small buffer reads as "no such entry" */
	return NSS_STATUS_NOTFOUND;
#else
	*errnop = ERANGE;
	return NSS_STATUS_TRYAGAIN;
#endif
}

static enum nss_status fill_passwd(char **f, void *ent, char *buf, size_t len, int *errnop)
{
	struct passwd *pw = ent;
	pw->pw_uid = (uid_t)strtoul(f[2], NULL, 10);
	pw->pw_gid = (gid_t)strtoul(f[3], NULL, 10);
	if (!(pw->pw_name = stash(f[1], &buf, &len)) || !(pw->pw_passwd = stash("x", &buf, &len)) ||
	    !(pw->pw_gecos = stash(f[4], &buf, &len)) || !(pw->pw_dir = stash(f[5], &buf, &len)) ||
	    !(pw->pw_shell = stash(f[6], &buf, &len)))
		return erange(errnop);
	return NSS_STATUS_SUCCESS;
}

static enum nss_status fill_group(char **f, void *ent, char *buf, size_t len, int *errnop)
{
	struct group *gr = ent;
	size_t count = 0, i = 0;
	char *m, *save = NULL, **members;
	gr->gr_gid = (gid_t)strtoul(f[2], NULL, 10);
	if (!(gr->gr_name = stash(f[1], &buf, &len)) || !(gr->gr_passwd = stash("x", &buf, &len)))
		return erange(errnop);
	for (m = f[3]; *m; m++)
		count += *m == ',';
	count += f[3][0] != '\0';
	/* The member array must be pointer-aligned inside the buffer. */
	size_t pad = (sizeof(char *) - ((unsigned long)buf % sizeof(char *))) % sizeof(char *);
	if (pad + (count + 1) * sizeof(char *) > len)
		return erange(errnop);
	members = (char **)(buf + pad);
	buf += pad + (count + 1) * sizeof(char *);
	len -= pad + (count + 1) * sizeof(char *);
	for (m = strtok_r(f[3], ",", &save); m; m = strtok_r(NULL, ",", &save))
		if (!(members[i++] = stash(m, &buf, &len)))
			return erange(errnop);
	members[i] = NULL;
	gr->gr_mem = members;
	return NSS_STATUS_SUCCESS;
}

/* An aging field: empty means -1 ("never", "no limit"). */
static long aging(const char *field)
{
#ifdef PLANT_SHADOW_ZERO
	return strtol(field, NULL, 10); /* planted: empty becomes 0, "expired in 1970" */
#else
	return *field ? strtol(field, NULL, 10) : -1;
#endif
}

static enum nss_status fill_shadow(char **f, void *ent, char *buf, size_t len, int *errnop)
{
	struct spwd *sp = ent;
	if (!(sp->sp_namp = stash(f[1], &buf, &len)) || !(sp->sp_pwdp = stash(f[2], &buf, &len)))
		return erange(errnop);
	sp->sp_lstchg = aging(f[3]);
	sp->sp_min = aging(f[4]);
	sp->sp_max = aging(f[5]);
	sp->sp_warn = aging(f[6]);
	sp->sp_inact = aging(f[7]);
	sp->sp_expire = aging(f[8]);
	sp->sp_flag = ~0ul;
	return NSS_STATUS_SUCCESS;
}

/* Finds the first line of KIND at index >= *cursor whose field KEY_FIELD equals KEY (any
 * line when KEY is NULL); splits it into FIELDS. 1: found, 0: not found, -1: no file. */
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
		if (strcmp(fields[0], kind) != 0 || n < min_fields(kind))
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

static enum nss_status lookup_file(const char *kind, int key_field, const char *key, filler fill,
				   void *ent, char *buf, size_t len, int *errnop);

static enum nss_status lookup(const char *fn, const char *kind, int key_field, const char *key,
			      filler fill, void *ent, char *buf, size_t len, int *errnop)
{
	struct plant_call call = {fn, kind, key, ent, buf, len, errnop};
	enum nss_status st;
	if (planted_before(&call, &st))
		return st;
	st = lookup_file(kind, key_field, key, fill, ent, buf, len, errnop);
	planted_after(&call, &st);
	return st;
}

static enum nss_status lookup_file(const char *kind, int key_field, const char *key, filler fill,
				   void *ent, char *buf, size_t len, int *errnop)
{
#ifdef PLANT_RACE
	static char line[65536]; /* planted: one parse buffer shared by every thread */
	static char *f[MAX_FIELDS];
#else
	char line[65536], *f[MAX_FIELDS];
#endif
	slow_down();
#ifdef PLANT_STDOUT
	printf("clab debug: lookup %s\n", key ? key : "(by id)"); /* planted: debug output on the caller's stdout */
	fflush(stdout);
#endif
#ifdef PLANT_CLOSEFDS
	for (int fd = 3; fd < 1024; fd++) /* planted: "daemon hygiene" run inside the caller */
		close(fd);
#endif
#ifdef PLANT_ZEROBUF
	if (len == 0) { /* planted: a 0-byte buffer reads as "no such entry"; glibc never passes one */
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
#endif
	int r = find(kind, key_field, key, NULL, line, sizeof line, f);
#ifdef PLANT_STATUS
	if (r == 0) /* planted: a miss answers with the first entry, as a "default" */
		r = find(kind, 0, NULL, NULL, line, sizeof line, f);
#endif
	if (r < 0) {
		*errnop = errno;
		return NSS_STATUS_UNAVAIL;
	}
	if (r == 0) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	return fill(f, ent, buf, len, errnop);
}

static void key_of(unsigned id, char *key, size_t size)
{
	snprintf(key, size, "%u", id);
}

enum nss_status ENTRY(getpwnam_r)(const char *name, struct passwd *pw, char *buf, size_t len,
				  int *errnop)
{
	return lookup("getpwnam_r", "passwd", 1, name, fill_passwd, pw, buf, len, errnop);
}

enum nss_status ENTRY(getpwuid_r)(uid_t uid, struct passwd *pw, char *buf, size_t len, int *errnop)
{
	char key[32];
	key_of(uid, key, sizeof key);
	return lookup("getpwuid_r", "passwd", 2, key, fill_passwd, pw, buf, len, errnop);
}

enum nss_status ENTRY(getgrnam_r)(const char *name, struct group *gr, char *buf, size_t len,
				  int *errnop)
{
	return lookup("getgrnam_r", "group", 1, name, fill_group, gr, buf, len, errnop);
}

enum nss_status ENTRY(getgrgid_r)(gid_t gid, struct group *gr, char *buf, size_t len, int *errnop)
{
	char key[32];
	key_of(gid, key, sizeof key);
	return lookup("getgrgid_r", "group", 2, key, fill_group, gr, buf, len, errnop);
}

#ifndef PLANT_NOSHADOW /* planted: no shadow database, yet passwd still says "x" */
enum nss_status ENTRY(getspnam_r)(const char *name, struct spwd *sp, char *buf, size_t len,
				  int *errnop)
{
	return lookup("getspnam_r", "shadow", 1, name, fill_shadow, sp, buf, len, errnop);
}
#endif

#ifdef PLANT_CONSIST
/* Planted: the listing is built by other code that puts everyone on /bin/sh. */
static enum nss_status fill_listed_passwd(char **f, void *ent, char *buf, size_t len, int *errnop)
{
	f[6] = "/bin/sh";
	return fill_passwd(f, ent, buf, len, errnop);
}
#define fill_listed_passwd fill_listed_passwd
#else
#define fill_listed_passwd fill_passwd
#endif

#ifdef PLANT_NOSETENT
static FILE *listing; /* planted: the listing's stream, opened only by set*ent */
#define OPEN_LISTING() (listing = listing ? listing : fopen(DB_PATH, "re"))
#define CLOSE_LISTING() (listing ? (fclose(listing), listing = NULL) : NULL)
#define PEEK_LISTING()                                                                             \
	do {                                                                                       \
		rewind(listing); /* NULL when set*ent was never called */                           \
	} while (0)
#else
#define OPEN_LISTING() ((void)0)
#define CLOSE_LISTING() ((void)0)
#define PEEK_LISTING() ((void)0)
#endif

#ifdef PLANT_INTERLEAVE
/* Planted: passwd and group listings share one paging state, so each restarts the other
 * (the guest-oslogin#160 shape): interleaved, neither ever ends. */
#define RESTART_OTHER(cursor) (&(cursor) == &pw_cursor ? (gr_cursor = 0) : (pw_cursor = 0))
#else
#define RESTART_OTHER(cursor) ((void)0)
#endif

/* Enumeration: the cursor only advances when the entry fitted, so an ERANGE retry with a
 * bigger buffer returns the same entry (glibc relies on this). */
#define ENUMERATION(db, type, kind, cursor, fill, linesize)                                  \
	enum nss_status ENTRY(set##db##ent)(int stayopen)                                    \
	{                                                                                    \
		struct plant_call call = {"set" #db "ent", kind, NULL, NULL, NULL, 0, NULL}; \
		enum nss_status st = NSS_STATUS_SUCCESS;                                     \
		(void)stayopen;                                                              \
		if (planted_before(&call, &st))                                              \
			return st;                                                           \
		slow_down();                                                                 \
		pthread_mutex_lock(&enum_lock);                                              \
		OPEN_LISTING();                                                              \
		if (REWINDS(cursor))                                                         \
			cursor = 0;                                                          \
		pthread_mutex_unlock(&enum_lock);                                            \
		planted_after(&call, &st);                                                   \
		return st;                                                                   \
	}                                                                                    \
	enum nss_status ENTRY(end##db##ent)(void)                                            \
	{                                                                                    \
		struct plant_call call = {"end" #db "ent", kind, NULL, NULL, NULL, 0, NULL}; \
		enum nss_status st = NSS_STATUS_SUCCESS;                                     \
		if (planted_before(&call, &st))                                              \
			return st;                                                           \
		pthread_mutex_lock(&enum_lock);                                              \
		CLOSE_LISTING();                                                             \
		cursor = -1;                                                                 \
		pthread_mutex_unlock(&enum_lock);                                            \
		planted_after(&call, &st);                                                   \
		return st;                                                                   \
	}                                                                                    \
	enum nss_status ENTRY(get##db##ent_r)(struct type * ent, char *buf, size_t len,      \
					      int *errnop)                                   \
	{                                                                                    \
		static char line[linesize];                                                  \
		char *f[MAX_FIELDS];                                                         \
		enum nss_status st;                                                          \
		struct plant_call call = {"get" #db "ent_r", kind, NULL, ent, buf, len, errnop}; \
		if (planted_before(&call, &st))                                              \
			return st;                                                           \
		slow_down();                                                                 \
		pthread_mutex_lock(&enum_lock);                                              \
		PEEK_LISTING();                                                              \
		long next = cursor < 0 ? 0 : cursor;                                         \
		int r = find(kind, 0, NULL, &next, line, sizeof line, f);                    \
		RESTART_OTHER(cursor);                                                       \
		if (r <= 0) {                                                                \
			*errnop = r < 0 ? errno : END_ERRNO;                                 \
			st = r < 0 ? NSS_STATUS_UNAVAIL : NSS_STATUS_NOTFOUND;               \
		} else {                                                                     \
			ADVANCE_EARLY(cursor, next);                                         \
			if ((st = fill(f, ent, buf, len, errnop)) == NSS_STATUS_SUCCESS)     \
				cursor = next;                                               \
		}                                                                            \
		pthread_mutex_unlock(&enum_lock);                                            \
		planted_after(&call, &st);                                                   \
		return st;                                                                   \
	}

#ifdef PLANT_REWIND
#define REWINDS(cursor) ((cursor) < 0) /* planted: a second set*ent does not rewind */
#else
#define REWINDS(cursor) 1
#endif
#ifdef PLANT_ENDERRNO
#define END_ERRNO ERANGE /* planted: a stale errno from the last retry */
#else
#define END_ERRNO ENOENT
#endif
#ifdef PLANT_SKIP
#define ADVANCE_EARLY(cursor, next) ((cursor) = (next)) /* planted: ERANGE loses the entry */
#else
#define ADVANCE_EARLY(cursor, next) ((void)0)
#endif

#ifndef PLANT_NOENUM /* planted: no set/get/end*ent at all (no `getent passwd` listing) */
ENUMERATION(pw, passwd, "passwd", pw_cursor, fill_listed_passwd, 4096)
ENUMERATION(gr, group, "group", gr_cursor, fill_group, 65536)
#ifndef PLANT_NOSHADOW
ENUMERATION(sp, spwd, "shadow", sp_cursor, fill_shadow, 4096)
#endif
#endif

/* Adds GID to the caller's array, growing it as glibc expects. */
static int add_group(gid_t gid, long *start, long *size, gid_t **groupsp, long limit, int *errnop)
{
	if (*start == *size) {
		if (limit > 0 && *size >= limit)
			return 0;
#ifdef PLANT_GROW /* planted: never grows, writes past the end */
		(void)errnop;
#else
		long newsize = limit > 0 && 2 * *size > limit ? limit : 2 * *size;
		gid_t *grown = realloc(*groupsp, (size_t)newsize * sizeof(gid_t));
		if (!grown) {
			*errnop = ENOMEM;
			return -1;
		}
		*groupsp = grown;
		*size = newsize;
#endif
	}
	(*groupsp)[(*start)++] = gid;
	return 0;
}

enum nss_status ENTRY(initgroups_dyn)(const char *user, gid_t skipgroup, long *start, long *size,
				      gid_t **groupsp, long limit, int *errnop)
{
	char line[65536], *f[MAX_FIELDS], *m, *save;
	long cursor = 0;
	int r;
	struct plant_call call = {"initgroups_dyn", "group", user, NULL, NULL, 0, errnop};
	enum nss_status st = NSS_STATUS_SUCCESS;
	if (planted_before(&call, &st))
		return st;
	slow_down();
	while ((r = find("group", 0, NULL, &cursor, line, sizeof line, f)) > 0) {
		gid_t gid = (gid_t)strtoul(f[2], NULL, 10);
		int member = 0;
		for (m = strtok_r(f[3], ",", &save); m && !member; m = strtok_r(NULL, ",", &save))
			member = strcmp(m, user) == 0;
		if (!member || gid == skipgroup)
			continue;
		if (add_group(gid, start, size, groupsp, limit, errnop) < 0)
			return NSS_STATUS_TRYAGAIN;
	}
	if (r < 0) {
		*errnop = errno;
		st = NSS_STATUS_UNAVAIL;
	}
	planted_after(&call, &st);
	return st;
}
