/* Planted defects for the robust checks, included by nss_clab.c (see struct plant_call there):
 * a module that does to its caller's process what only the caller may do. Each acts in a
 * point lookup (c->key is set: getpwnam_r, getpwuid_r, getgrnam_r, getgrgid_r, getspnam_r,
 * initgroups_dyn), or in the constructor. Without PLANT_* these are empty hooks. */
#if defined(PLANT_KILLGROUP) || defined(PLANT_KILLPARENT)
#include <signal.h>
#endif
#if defined(PLANT_REAPER) || defined(PLANT_DAEMON)
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#endif

#ifdef PLANT_REAPER
/* planted: "reap our helper processes" written as "reap every child" */
static void reap_all(int sig)
{
	int saved = errno;
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}
#endif

#ifdef PLANT_DAEMON
/* planted: a cache daemon started on first use, by double fork and setsid, that keeps
 * the caller's descriptors (its stdout, stderr and pipes) instead of closing them */
static void start_cache_daemon(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		setsid();
		if (fork() == 0) {
			prctl(PR_SET_NAME, "clab-cached", 0, 0, 0);
			sleep(3600);
		}
		_exit(0);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}
#endif

#ifdef PLANT_CTORHANG
/* planted: the constructor waits for the module's daemon socket, retrying every second,
 * forever when the daemon is not running */
__attribute__((constructor)) static void wait_for_daemon(void)
{
	while (access("/run/clab-cached.sock", F_OK) != 0)
		sleep(1);
}
#endif

static int robust_before(struct plant_call *c, enum nss_status *st)
{
	(void)st;
	if (!c->key)
		return 0;
#ifdef PLANT_KILLGROUP
	kill(0, SIGTERM); /* planted: "stop our workers" sent to the caller's whole process group */
#endif
#ifdef PLANT_KILLPARENT
	kill(getppid(), SIGTERM); /* planted: "tell the supervisor to reload", sent to the caller's parent */
#endif
#ifdef PLANT_REAPER
	static int installed;
	if (!installed) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = reap_all;
		sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
		sigaction(SIGCHLD, &sa, NULL);
		installed = 1;
	}
#endif
#ifdef PLANT_DAEMON
	static int started;
	if (!started) {
		start_cache_daemon();
		started = 1;
	}
#endif
#if defined(PLANT_EXIT) || defined(PLANT_QUICKEXIT)
	if (strncmp(c->fn, "get", 3) != 0)
		return 0; /* the passwd, group and shadow lookups only */
#endif
#ifdef PLANT_EXIT
	fprintf(stderr, "clab: directory unreachable, giving up\n");
	exit(3); /* planted: a fatal-error path written for a command-line tool */
#endif
#ifdef PLANT_QUICKEXIT
	_exit(4); /* planted: the same, without even the caller's atexit handlers and stdio flush */
#endif
	return 0;
}

static void robust_after(struct plant_call *c, enum nss_status *st)
{
	(void)c;
	(void)st;
}
