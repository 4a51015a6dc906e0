/* random.c - getrandom(2) in blocks.
 *
 * Every call set-up needs a few dozen random bytes; one getrandom per
 * identifier was two syscalls per call, which on a VM is measurable
 * (docs/performance.md). The kernel's bytes are handed out once each and
 * never reused, so the ids stay as unpredictable as before. */
#include "random.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static unsigned char pool[512];
static size_t avail; /* unused bytes at the end of pool */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void refill(void)
{
    size_t got = 0;
    while (got < sizeof pool) {
        ssize_t r = getrandom(pool + got, sizeof pool - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            abort(); /* no entropy source at all: better to stop than to hand out guessable ids */
        }
        got += (size_t)r;
    }
    avail = sizeof pool;
}

void random_bytes(void *buf, size_t n)
{
    unsigned char *out = buf;
    pthread_mutex_lock(&lock);
    while (n > 0) {
        if (avail == 0)
            refill();
        size_t take = n < avail ? n : avail;
        unsigned char *src = pool + sizeof pool - avail;
        memcpy(out, src, take);
        memset(src, 0, take); /* a byte is given out once */
        avail -= take;
        out += take;
        n -= take;
    }
    pthread_mutex_unlock(&lock);
}
