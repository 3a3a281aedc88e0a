/* memory.c — aligned host allocation (with fault injection for tests), a cache of large
 * blocks, and refcounted storage.
 *
 * Why a cache: glibc serves large blocks with a fresh mmap and returns them on free, so every
 * new large tensor pays page faults on first touch (here ~100 ms for a 40 MB output in 4 KiB
 * pages). Training allocates the same sizes step after step, so freed large blocks are kept
 * (up to LM_CACHE_BYTES) and handed out again for the same rounded size. Large blocks are also
 * 2 MiB aligned and offered to transparent huge pages, which makes their first touch ~20x
 * cheaper. */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#define LARGE_BLOCK (1u << 20)          /* blocks from 1 MiB are cached */
#define HUGE_ALIGN (2u << 20)
#define CACHE_SLOTS 64
#define LM_CACHE_BYTES ((size_t)1 << 30) /* at most 1 GiB kept */

/* Countdown to an injected allocation failure; 0 means none is armed. Tests are single
 * threaded when they arm it, so a plain counter is enough. */
static int64_t fail_countdown = 0;

void lm_debug_fail_alloc_after(int64_t n) { fail_countdown = n > 0 ? n : 0; }

static struct {
    pthread_mutex_t lock;
    void *ptr[CACHE_SLOTS];
    size_t size[CACHE_SLOTS];
    int count;
    size_t bytes;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The size a request is served with: 64-byte multiples, 2 MiB multiples for large blocks (so
 * nearby sizes share cache entries and huge pages cover them). */
static size_t rounded_size(size_t nbytes, bool *large)
{
    size_t r = (nbytes + 63) & ~(size_t)63;
    *large = r >= LARGE_BLOCK;
    if (*large) r = (r + HUGE_ALIGN - 1) & ~(size_t)(HUGE_ALIGN - 1);
    return r ? r : 64;
}

static void *cache_take(size_t size)
{
    void *p = NULL;
    pthread_mutex_lock(&cache.lock);
    for (int i = cache.count - 1; i >= 0; i--) {
        if (cache.size[i] != size) continue;
        p = cache.ptr[i];
        cache.bytes -= size;
        cache.count--;
        cache.ptr[i] = cache.ptr[cache.count];
        cache.size[i] = cache.size[cache.count];
        break;
    }
    pthread_mutex_unlock(&cache.lock);
    return p;
}

static bool cache_put(void *p, size_t size)
{
    bool kept = false;
    pthread_mutex_lock(&cache.lock);
    if (cache.count < CACHE_SLOTS && cache.bytes + size <= LM_CACHE_BYTES) {
        cache.ptr[cache.count] = p;
        cache.size[cache.count++] = size;
        cache.bytes += size;
        kept = true;
    }
    pthread_mutex_unlock(&cache.lock);
    return kept;
}

void lm_release_cached_memory(void)
{
    pthread_mutex_lock(&cache.lock);
    for (int i = 0; i < cache.count; i++) free(cache.ptr[i]);
    cache.count = 0;
    cache.bytes = 0;
    pthread_mutex_unlock(&cache.lock);
}

void *lm__malloc(size_t nbytes)
{
    if (fail_countdown > 0 && --fail_countdown == 0) {
        lm__error(LM_ERR_MEMORY, "out of memory: allocation of %zu bytes failed (injected)", nbytes);
        return NULL;
    }
    if (nbytes > SIZE_MAX / 2) {
        lm__error(LM_ERR_MEMORY, "out of memory: %zu bytes is too large", nbytes);
        return NULL;
    }
    bool large;
    size_t size = rounded_size(nbytes, &large);
    if (large) {
        void *p = cache_take(size);
        if (p) return p;
    }
    void *p = aligned_alloc(large ? HUGE_ALIGN : 64, size);
    if (!p && large) { /* memory held by the cache may be what is missing */
        lm_release_cached_memory();
        p = aligned_alloc(HUGE_ALIGN, size);
    }
    if (!p) {
        lm__error(LM_ERR_MEMORY, "out of memory: allocation of %zu bytes failed", nbytes);
        return NULL;
    }
    if (large) madvise(p, size, MADV_HUGEPAGE); /* advice only: failure changes nothing */
    return p;
}

void lm__free(void *p) { free(p); }

/* Frees a block of known requested size, keeping large ones for reuse. */
static void free_sized(void *p, size_t nbytes)
{
    if (!p) return;
    bool large;
    size_t size = rounded_size(nbytes, &large);
    if (large && cache_put(p, size)) return;
    free(p);
}

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
    free_sized(s->data, s->nbytes);
    lm__free(s);
}
