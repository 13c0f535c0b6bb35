/* Planted defects for the result-contract and keys checks, included by nss_clab.c (see struct
 * plant_call there). Without PLANT_* defined these are empty hooks. One defect per module:
 *   STATICPTR  pw_dir points into one static buffer that the next lookup rewrites (staticptrlab)
 *   NULLFIELD  an empty gecos comes back as a NULL pw_gecos (nullfieldlab)
 *   DIRTYBUF   an empty gecos's NUL is left unwritten: "the buffer is zeroed anyway" (dirtybuflab)
 *   CASEFOLD   names match case-insensitively: "PYAMA" answers pw_name "pyama" (casefoldlab)
 *   WILDCARD   a name with '*' is retried against the backend for 3 s, then NOTFOUND (wildcardlab)
 *   LONGKEY    the name is copied into a 256-byte stack buffer with strcpy (longkeylab) */

#ifdef PLANT_CASEFOLD
/* defined further down in nss_clab.c */
static enum nss_status lookup_file(const char *kind, int key_field, const char *key, filler fill,
				   void *ent, char *buf, size_t len, int *errnop);
static enum nss_status fill_passwd(char **f, void *ent, char *buf, size_t len, int *errnop);
static enum nss_status fill_group(char **f, void *ent, char *buf, size_t len, int *errnop);
static enum nss_status fill_shadow(char **f, void *ent, char *buf, size_t len, int *errnop);
#endif

static int is_name_lookup(const struct plant_call *c)
{
	return c->key && (!strcmp(c->fn, "getpwnam_r") || !strcmp(c->fn, "getgrnam_r") ||
			  !strcmp(c->fn, "getspnam_r"));
}

#ifdef PLANT_DIRTYBUF
/* The caller's buffer as it was before the call: after it, an empty gecos gets back the byte
 * that was there, as if its NUL had never been written ("the buffer is zeroed anyway"). */
static __thread char *before_call;
#endif

#ifdef PLANT_LONGKEY
static void __attribute__((noinline)) copy_key(const char *key)
{
	char copy[256];
	strcpy(copy, key); /* planted: no length check on the caller's key */
	__asm__ volatile("" : : "r"(copy) : "memory");
}
#endif

static int contract_before(struct plant_call *c, enum nss_status *st)
{
	(void)c;
	(void)st;
	(void)is_name_lookup;
#ifdef PLANT_DIRTYBUF
	*st = NSS_STATUS_SUCCESS; /* overwritten by the call; quiets gcc's -Wmaybe-uninitialized */
	free(before_call);
	before_call = NULL;
	if (c->ent && !strcmp(c->kind, "passwd") && c->len && (before_call = malloc(c->len)))
		memcpy(before_call, c->buf, c->len);
#endif
#ifdef PLANT_CASEFOLD
	if (is_name_lookup(c) && strlen(c->key) < 256) {
		char lower[256];
		int folded = 0;
		size_t i;
		for (i = 0; c->key[i]; i++) {
			lower[i] = (char)(c->key[i] >= 'A' && c->key[i] <= 'Z' ? c->key[i] - 'A' + 'a' : c->key[i]);
			folded |= lower[i] != c->key[i];
		}
		lower[i] = '\0';
		if (folded) { /* planted: the match ignores case, the answer keeps the stored name */
			filler fill = !strcmp(c->kind, "passwd") ? fill_passwd
				      : !strcmp(c->kind, "group") ? fill_group
								  : fill_shadow;
			*st = lookup_file(c->kind, 1, lower, fill, c->ent, c->buf, c->len, c->errnop);
			return 1;
		}
	}
#endif
#ifdef PLANT_WILDCARD
	if (is_name_lookup(c) && strchr(c->key, '*')) {
		/* planted: the backend rejects the pattern, and the module retries it three times */
		for (int attempt = 0; attempt < 3; attempt++) {
			struct timespec second = {1, 0};
			nanosleep(&second, NULL);
		}
		*c->errnop = ENOENT;
		*st = NSS_STATUS_NOTFOUND;
		return 1;
	}
#endif
#ifdef PLANT_LONGKEY
	*st = NSS_STATUS_SUCCESS; /* overwritten by the lookup; quiets gcc's -Wmaybe-uninitialized */
	if (is_name_lookup(c))
		copy_key(c->key);
#endif
	return 0;
}

static void contract_after(struct plant_call *c, enum nss_status *st)
{
	(void)c;
	(void)st;
#ifdef PLANT_STATICPTR
	if (*st == NSS_STATUS_SUCCESS && c->ent && !strcmp(c->kind, "passwd")) {
		static char home[256]; /* planted: one home for every caller and thread */
		struct passwd *pw = c->ent;
		snprintf(home, sizeof home, "%s", pw->pw_dir);
		pw->pw_dir = home;
	}
#endif
#ifdef PLANT_DIRTYBUF
	if (*st == NSS_STATUS_SUCCESS && before_call && c->ent && !strcmp(c->kind, "passwd")) {
		struct passwd *pw = c->ent;
		if (pw->pw_gecos && !*pw->pw_gecos && pw->pw_gecos >= c->buf && pw->pw_gecos < c->buf + c->len)
			*pw->pw_gecos = before_call[pw->pw_gecos - c->buf]; /* planted: the NUL never written */
	}
#endif
#ifdef PLANT_NULLFIELD
	if (*st == NSS_STATUS_SUCCESS && c->ent && !strcmp(c->kind, "passwd")) {
		struct passwd *pw = c->ent;
		if (pw->pw_gecos && !*pw->pw_gecos)
			pw->pw_gecos = NULL; /* planted: an absent attribute becomes a NULL field */
	}
#endif
}
