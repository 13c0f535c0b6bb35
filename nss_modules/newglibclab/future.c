/* Built twice. With -DSTUB: a stand-in libc.so.6 that defines version GLIBC_2.99, used
 * only at link time, as a newer distro's libc would be. Without: the module's reference
 * to a GLIBC_2.99 symbol, so the library records that it needs glibc 2.99. */
#ifdef STUB
void nsslab_future(void) {}
#else
void nsslab_future(void);
void nsslab_uses_future(void) { nsslab_future(); }
#endif
