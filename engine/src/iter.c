/* iter.c — the element iterator every element-wise kernel runs on.
 *
 * The operands share one shape. Their strides are turned into bytes, size-1 dims are dropped and
 * neighbouring dims are merged when every operand steps through them as one (stride[d] ==
 * stride[d+1] * shape[d+1]). The kernel then sees the longest possible 1-D runs, which for
 * contiguous tensors is a single run over everything. For large tensors the flat element range
 * is cut into one slice per OpenMP thread; each thread walks its slice run by run. */
#include "internal.h"

#include <omp.h>
#include <string.h>

typedef struct {
    int ndim;
    int nops;
    int64_t shape[LM_MAX_DIMS];
    int64_t strides[LM_MAX_DIMS][LM_ITER_MAX_OPS]; /* bytes; [dim][operand] */
    char *base[LM_ITER_MAX_OPS];
} iter_plan;

static void plan_build(iter_plan *p, int nops, const lm_tensor *const *ops)
{
    const lm_tensor *t0 = ops[0];
    p->nops = nops;
    p->ndim = 0;
    for (int k = 0; k < nops; k++) p->base[k] = lm_data(ops[k]);
    for (int d = 0; d < t0->ndim; d++) {
        if (t0->shape[d] == 1) continue;
        int n = p->ndim;
        int64_t st[LM_ITER_MAX_OPS];
        for (int k = 0; k < nops; k++)
            st[k] = ops[k]->strides[d] * (int64_t)lm_dtype_size(ops[k]->dtype);
        bool merge = n > 0;
        for (int k = 0; merge && k < nops; k++)
            merge = p->strides[n - 1][k] == st[k] * t0->shape[d];
        if (merge) {
            p->shape[n - 1] *= t0->shape[d];
            for (int k = 0; k < nops; k++) p->strides[n - 1][k] = st[k];
        } else {
            p->shape[n] = t0->shape[d];
            for (int k = 0; k < nops; k++) p->strides[n][k] = st[k];
            p->ndim++;
        }
    }
    if (p->ndim == 0) { /* a single element */
        p->ndim = 1;
        p->shape[0] = 1;
        for (int k = 0; k < nops; k++) p->strides[0][k] = 0;
    }
}

/* Runs elements [begin, end) of the (merged) C-order index space. */
static void run_range(const iter_plan *p, int64_t begin, int64_t end, lm_loop_fn fn, void *ctx)
{
    int last = p->ndim - 1;
    int64_t idx[LM_MAX_DIMS];
    int64_t rem = begin;
    for (int d = last; d >= 0; d--) {
        idx[d] = rem % p->shape[d];
        rem /= p->shape[d];
    }
    char *ptr[LM_ITER_MAX_OPS];
    int64_t inner[LM_ITER_MAX_OPS];
    for (int k = 0; k < p->nops; k++) {
        ptr[k] = p->base[k];
        for (int d = 0; d <= last; d++) ptr[k] += idx[d] * p->strides[d][k];
        inner[k] = p->strides[last][k];
    }
    int64_t pos = begin;
    while (pos < end) {
        int64_t n = p->shape[last] - idx[last];
        if (n > end - pos) n = end - pos;
        fn(ptr, inner, n, ctx);
        pos += n;
        if (pos >= end) break;
        /* Advance the multi-index by n elements: the inner dim wraps to 0, carry outwards. */
        for (int k = 0; k < p->nops; k++) ptr[k] += n * inner[k];
        idx[last] += n;
        for (int d = last; d > 0 && idx[d] == p->shape[d]; d--) {
            for (int k = 0; k < p->nops; k++)
                ptr[k] += p->strides[d - 1][k] - p->shape[d] * p->strides[d][k];
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}

void lm__iter(int nops, const lm_tensor *const *ops, lm_loop_fn fn, void *ctx, bool parallel)
{
    int64_t numel = lm_numel(ops[0]);
    if (numel == 0) return;
    iter_plan p;
    plan_build(&p, nops, ops);
    int threads = lm__threads();
    if (!parallel || threads <= 1 || numel < LM_PARALLEL_GRAIN || omp_in_parallel()) {
        run_range(&p, 0, numel, fn, ctx);
        return;
    }
    int64_t max_threads = numel / (LM_PARALLEL_GRAIN / 2);
    if (threads > max_threads) threads = (int)max_threads;
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        /* Slices are rounded to 16 elements so threads do not share cache lines of outputs. */
        int64_t chunk = ((numel + nt - 1) / nt + 15) & ~(int64_t)15;
        int64_t b = (int64_t)id * chunk, e = b + chunk < numel ? b + chunk : numel;
        if (b < e) run_range(&p, b, e, fn, ctx);
    }
}
