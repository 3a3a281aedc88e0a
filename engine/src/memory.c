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
#include <string.h>
#include <sys/mman.h>

#define LARGE_BLOCK (64u << 10)         /* blocks from 64 KiB are cached */
#define HUGE_BLOCK (1u << 20)           /* blocks from 1 MiB go on huge pages: fewer TLB misses */
#define HUGE_ALIGN (2u << 20)
#define MID_ALIGN (16u << 10)
#define CACHE_SLOTS 128
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

/* The size a request is served with: 64-byte multiples; cached blocks in 16 KiB steps, huge
 * ones in 2 MiB steps (so nearby sizes share cache entries and huge pages cover them). */
static size_t rounded_size(size_t nbytes, bool *large)
{
    size_t r = (nbytes + 63) & ~(size_t)63;
    *large = r >= LARGE_BLOCK;
    size_t step = r >= HUGE_BLOCK ? HUGE_ALIGN : *large ? MID_ALIGN : 64;
    r = (r + step - 1) & ~(size_t)(step - 1);
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
        memmove(cache.ptr + i, cache.ptr + i + 1, sizeof cache.ptr[0] * (size_t)(cache.count - i));
        memmove(cache.size + i, cache.size + i + 1, sizeof cache.size[0] * (size_t)(cache.count - i));
        break;
    }
    pthread_mutex_unlock(&cache.lock);
    return p;
}

/* Keeps a freed block; when the cache is full the oldest blocks make room (sizes a program
 * stopped using must not pin the cache). */
static bool cache_put(void *p, size_t size)
{
    if (size > LM_CACHE_BYTES) return false;
    void *evicted[CACHE_SLOTS];
    int n_evicted = 0;
    pthread_mutex_lock(&cache.lock);
    while (cache.count == CACHE_SLOTS || cache.bytes + size > LM_CACHE_BYTES) {
        evicted[n_evicted++] = cache.ptr[0];
        cache.bytes -= cache.size[0];
        cache.count--;
        memmove(cache.ptr, cache.ptr + 1, sizeof cache.ptr[0] * (size_t)cache.count);
        memmove(cache.size, cache.size + 1, sizeof cache.size[0] * (size_t)cache.count);
    }
    cache.ptr[cache.count] = p;
    cache.size[cache.count++] = size;
    cache.bytes += size;
    pthread_mutex_unlock(&cache.lock);
    for (int i = 0; i < n_evicted; i++) free(evicted[i]);
    return true;
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
    bool huge = size >= HUGE_BLOCK;
    size_t align = huge ? HUGE_ALIGN : 64;
    void *p = aligned_alloc(align, size);
    if (!p && large) { /* memory held by the cache may be what is missing */
        lm_release_cached_memory();
        p = aligned_alloc(align, size);
    }
    if (!p) {
        lm__error(LM_ERR_MEMORY, "out of memory: allocation of %zu bytes failed", nbytes);
        return NULL;
    }
    if (huge) madvise(p, size, MADV_HUGEPAGE); /* advice only: failure changes nothing */
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
    s->host_counted = false;
    return s;
}

void lm__storage_release(lm_storage *s)
{
    if (!s || --s->refcount > 0) return;
    free_sized(s->data, s->nbytes);
    lm__free(s);
}
