/* Planted defects for the robust checks, included by nss_clab.c (see struct plant_call there).
 * Without PLANT_* defined these are empty hooks. */

static int robust_before(struct plant_call *c, enum nss_status *st)
{
	(void)c;
	(void)st;
	return 0;
}

static void robust_after(struct plant_call *c, enum nss_status *st)
{
	(void)c;
	(void)st;
}
