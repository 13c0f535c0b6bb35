/* Planted defects for the host checks (side-effects), included by nss_clab.c (see struct
 * plant_call there). Without PLANT_HOST_* defined these are empty hooks. Each one is
 * something a module does to the process that called it; "a lookup" is a point lookup
 * (getpwnam_r and its siblings: a key and an answer struct). */
#include <signal.h>
#include <sys/stat.h>
#include <syslog.h>

static int host_lookup(const struct plant_call *c)
{
	return c->key != NULL && c->ent != NULL;
}

static int host_before(struct plant_call *c, enum nss_status *st)
{
	(void)st;
#ifdef PLANT_HOST_SIGPIPE
	/* planted: socket code that "protects itself" from EPIPE process-wide, and never puts
	 * it back: every child the caller execs starts with SIGPIPE ignored (Flatcar#605) */
	if (host_lookup(c))
		signal(SIGPIPE, SIG_IGN);
#endif
#ifdef PLANT_HOST_OPENLOG
	/* planted: the module names itself for its own logging; glibc's openlog state is the
	 * whole process's, so the caller's next syslog() line carries it (authd#1043) */
	if (host_lookup(c))
		openlog("clabmod", LOG_PID, LOG_AUTH);
#endif
#ifdef PLANT_HOST_ENV
	/* planted: a backend setting read through the environment, set by the lookup itself */
	if (host_lookup(c))
		setenv("CLAB_BACKEND", "file", 1);
#endif
#ifdef PLANT_HOST_UMASK
	/* planted: a cache file written with umask(077), the caller's umask never restored */
	if (host_lookup(c))
		umask(077);
#endif
#ifdef PLANT_HOST_CWD
	/* planted: chdir to the data directory to open relative paths, never back */
	if (host_lookup(c) && chdir("/etc") != 0)
		return 0;
#endif
	(void)c;
	(void)host_lookup;
	return 0;
}

static void host_after(struct plant_call *c, enum nss_status *st)
{
	(void)st;
#ifdef PLANT_HOST_STDERR
	/* planted: a forgotten debug line, on stderr */
	fprintf(stderr, "clab debug: %s %s\n", c->fn, c->key ? c->key : "");
#endif
#ifdef PLANT_HOST_SIGMASK
	/* planted: signals blocked around the backend call (as systemd's BLOCK_SIGNALS does,
	 * but without the unblock): SIGTERM and SIGCHLD stay blocked in the caller's thread */
	if (host_lookup(c)) {
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGCHLD);
		pthread_sigmask(SIG_BLOCK, &set, NULL);
	}
#endif
#ifdef PLANT_HOST_ERRNO
	/* planted: errno from a failed open(2) of an optional file, left behind a SUCCESS */
	if (!strcmp(c->fn, "getpwnam_r") && *st == NSS_STATUS_SUCCESS)
		errno = ENOENT;
#endif
	(void)c;
}
