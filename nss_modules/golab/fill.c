/* C side of golab: packs Go strings into the caller's buffer the way glibc expects. */
#include "fill.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* "*", not "x": this module serves no shadow database, and "x" would send pam_unix
 * looking for a shadow entry nobody has (every `su -` and ssh login denied). */
int golab_fill_passwd(struct passwd *pw, char *buf, size_t len, const char *name, unsigned uid,
		      unsigned gid, const char *gecos, const char *home, const char *shell)
{
	pw->pw_uid = uid;
	pw->pw_gid = gid;
	if (!(pw->pw_name = stash(name, &buf, &len)) || !(pw->pw_passwd = stash("*", &buf, &len)) ||
	    !(pw->pw_gecos = stash(gecos, &buf, &len)) || !(pw->pw_dir = stash(home, &buf, &len)) ||
	    !(pw->pw_shell = stash(shell, &buf, &len)))
		return ERANGE;
	return 0;
}

int golab_fill_group(struct group *gr, char *buf, size_t len, const char *name, unsigned gid,
		     char **members, size_t count)
{
	gr->gr_gid = gid;
	if (!(gr->gr_name = stash(name, &buf, &len)) || !(gr->gr_passwd = stash("x", &buf, &len)))
		return ERANGE;
	size_t pad = (sizeof(char *) - ((uintptr_t)buf % sizeof(char *))) % sizeof(char *);
	size_t need = pad + (count + 1) * sizeof(char *);
	if (need > len)
		return ERANGE;
	char **mem = (char **)(buf + pad);
	buf += need;
	len -= need;
	for (size_t i = 0; i < count; i++)
		if (!(mem[i] = stash(members[i], &buf, &len)))
			return ERANGE;
	mem[count] = NULL;
	gr->gr_mem = mem;
	return 0;
}

int golab_add_group(unsigned gid, long *start, long *size, gid_t **groupsp, long limit)
{
	if (*start == *size) {
		if (limit > 0 && *size >= limit)
			return 0;
		long newsize = limit > 0 && 2 * *size > limit ? limit : 2 * *size;
		gid_t *grown = realloc(*groupsp, (size_t)newsize * sizeof(gid_t));
		if (!grown)
			return ENOMEM;
		*groupsp = grown;
		*size = newsize;
	}
	(*groupsp)[(*start)++] = gid;
	return 0;
}
