/* A helper library the module links against at build time but nobody installs. */
int nsslab_gone(void) { return 0; }
