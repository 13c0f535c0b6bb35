/* Planted defects for the fds checks (descriptors, growth), included by nss_clab.c (see
 * struct plant_call there). Without PLANT_* defined these are empty hooks. Each plant keeps
 * errno as it was: only the descriptor or the memory is the defect.
 *   FDLEAK    the db file kept open for speed, opened with plain open(): no O_CLOEXEC, so
 *             every program the caller execs inherits it (compute-image-packages#838)
 *   FDTHREAD  one descriptor per thread in __thread storage, never closed when the thread
 *             ends (SSSD#6328, #7189: a socket per thread, EMFILE in a threaded daemon)
 *   FDREUSE   a "connection" whose number is cached once: every call writes its request to
 *             that number, end*ent closes it, whatever the number holds by then (SSSD#6592,
 *             #6986: the caller's own TCP socket replaced or closed)
 *   MEMLEAK   every lookup of a missing key strdup()s the key and drops it (systemd#7596) */

#if defined(PLANT_FDLEAK) || defined(PLANT_FDTHREAD) || defined(PLANT_FDREUSE)
#include <fcntl.h>
#endif

#ifdef PLANT_FDLEAK
static int fdleak_fd = -1;
#endif
#ifdef PLANT_FDTHREAD
static __thread int fdthread_fd = -1;
#endif
#ifdef PLANT_FDREUSE
static int fdreuse_fd = -1;
#endif
#ifdef PLANT_MEMLEAK
static char *volatile memleak_last; /* each one overwrites the last: the old one is lost */
#endif

static int fds_before(struct plant_call *c, enum nss_status *st)
{
	(void)c;
	(void)st;
	return 0;
}

static void fds_after(struct plant_call *c, enum nss_status *st)
{
	(void)c;
	(void)st;
#if defined(PLANT_FDLEAK) || defined(PLANT_FDTHREAD) || defined(PLANT_FDREUSE) || defined(PLANT_MEMLEAK)
	int saved = errno;
#endif
#ifdef PLANT_FDLEAK
	if (fdleak_fd < 0)
		fdleak_fd = open(DB_PATH, O_RDONLY); /* planted: no O_CLOEXEC */
#endif
#ifdef PLANT_FDTHREAD
	if (fdthread_fd < 0)
		fdthread_fd = open(DB_PATH, O_RDONLY | O_CLOEXEC); /* planted: never closed at thread exit */
#endif
#ifdef PLANT_FDREUSE
	char request[256];
	if (fdreuse_fd < 0) /* "connect": FD_CLOEXEC as it should be, but the number is trusted from now on */
		fdreuse_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	int n = snprintf(request, sizeof request, "clab request %s %s\n", c->fn, c->key ? c->key : "");
	if (fdreuse_fd >= 0 && n > 0 && write(fdreuse_fd, request, (size_t)n) < 0 && errno == EBADF)
		fdreuse_fd = open("/dev/null", O_WRONLY | O_CLOEXEC); /* "reconnect" only when it is gone */
	if (!strncmp(c->fn, "end", 3) && fdreuse_fd >= 0) {
		close(fdreuse_fd); /* planted: "disconnect" closes the number, whatever it holds now */
		fdreuse_fd = -1;
	}
#endif
#ifdef PLANT_MEMLEAK
	if (*st == NSS_STATUS_NOTFOUND && c->key)
		memleak_last = strdup(c->key); /* planted: never freed */
#endif
#if defined(PLANT_FDLEAK) || defined(PLANT_FDTHREAD) || defined(PLANT_FDREUSE) || defined(PLANT_MEMLEAK)
	errno = saved;
#endif
}
