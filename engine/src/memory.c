/* memory.c — aligned host allocation (with fault injection for tests) and refcounted storage. */
#include "internal.h"

#include <stdlib.h>

/* Countdown to an injected allocation failure; 0 means none is armed. Tests are single
 * threaded when they arm it, so a plain counter is enough. */
static int64_t fail_countdown = 0;

void lm_debug_fail_alloc_after(int64_t n) { fail_countdown = n > 0 ? n : 0; }

void *lm__malloc(size_t nbytes)
{
    if (fail_countdown > 0 && --fail_countdown == 0) {
        lm__error(LM_ERR_MEMORY, "out of memory: allocation of %zu bytes failed (injected)", nbytes);
        return NULL;
    }
    /* aligned_alloc wants a multiple of the alignment, and 0 bytes may return NULL. */
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    if (rounded < nbytes) {
        lm__error(LM_ERR_MEMORY, "out of memory: %zu bytes is too large", nbytes);
        return NULL;
    }
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) lm__error(LM_ERR_MEMORY, "out of memory: allocation of %zu bytes failed", nbytes);
    return p;
}

void lm__free(void *p) { free(p); }

lm_storage *lm__storage_new(size_t nbytes, lm_device dev)
{
    if (dev != LM_CPU) {
        lm__error(LM_ERR_UNSUPPORTED, "storage: device %d is not available in this build", dev);
        return NULL;
    }
    lm_storage *s = lm__malloc(sizeof *s);
    if (!s) return NULL;
    s->data = lm__malloc(nbytes);
    if (!s->data) {
        lm__free(s);
        return NULL;
    }
    s->nbytes = nbytes;
    s->device = dev;
    s->refcount = 1;
    s->version = 0;
    return s;
}

void lm__storage_release(lm_storage *s)
{
    if (!s || --s->refcount > 0) return;
    lm__free(s->data);
    lm__free(s);
}
