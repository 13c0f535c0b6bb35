/* Planted defects for the contract checks, included by nss_clab.c (see struct plant_call there).
 * Without PLANT_* defined these are empty hooks. */

static int contract_before(struct plant_call *c, enum nss_status *st)
{
	(void)c;
	(void)st;
	return 0;
}

static void contract_after(struct plant_call *c, enum nss_status *st)
{
	(void)c;
	(void)st;
}
