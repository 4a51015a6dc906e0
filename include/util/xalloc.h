/* xalloc.h - the one out-of-memory policy: log and abort.
 *
 * A daemon that cannot allocate a few hundred bytes has nothing sensible
 * left to do with the calls it carries; going on would only turn the
 * shortage into a NULL dereference somewhere less obvious (the policy of
 * redis' zmalloc). Every allocation on the control thread goes through
 * these, so callers never check for NULL. */
#ifndef SIPXFER_XALLOC_H
#define SIPXFER_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Called once the allocation failed, before abort(); for tests. */
void xalloc_oom(size_t n) __attribute__((noreturn));

#endif
