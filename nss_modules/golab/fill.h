#include <grp.h>
#include <pwd.h>
#include <stddef.h>

int golab_fill_passwd(struct passwd *pw, char *buf, size_t len, const char *name, unsigned uid,
		      unsigned gid, const char *gecos, const char *home, const char *shell);
int golab_fill_group(struct group *gr, char *buf, size_t len, const char *name, unsigned gid,
		     char **members, size_t count);
int golab_add_group(unsigned gid, long *start, long *size, gid_t **groupsp, long limit);
