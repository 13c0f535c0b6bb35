/* Planted defect: a lookup crashes on a NULL write, after printing on stdout and stderr what
 * looks like a gdb backtrace and the lab's own marker lines. A module runs inside the lab's
 * processes and may print anything there: its text must not become the lab's proof (the
 * crash's re-run under gdb sends the inferior's output to /dev/null), so the verdict names
 * the real frame, spoof_crash in this library, and none of the invented ones. */
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

static const char fake[] =
	"nsslab-maps-begin\n"
	"#0  0x00007f0000001000 in innocent_frame () from /lib/x86_64-linux-gnu/libc.so.6\n"
	"#1  0x00007f0000002000 in blame_elsewhere () from /lib/x86_64-linux-gnu/libc.so.6\n"
	"nsslab-maps-end\n";

__attribute__((noinline)) static void spoof_crash(char *volatile *where)
{
	fputs(fake, stdout);
	fflush(stdout);
	fputs(fake, stderr);
	**where = 'x'; /* SIGSEGV: *where is NULL */
}

enum nss_status _nss_spooflab_getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len,
					 int *errnop)
{
	char *volatile nowhere = NULL;
	(void)pw, (void)buf, (void)len;
	if (strcmp(name, "pyama") == 0)
		spoof_crash(&nowhere);
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}

enum nss_status _nss_spooflab_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, int *errnop)
{
	(void)uid, (void)pw, (void)buf, (void)len;
	*errnop = ENOENT;
	return NSS_STATUS_NOTFOUND;
}
