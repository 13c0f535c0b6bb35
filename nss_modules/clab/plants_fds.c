/* Planted defects for the fds checks, included by nss_clab.c (see struct plant_call there).
 * Without PLANT_* defined these are empty hooks. */

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
}
