/* random.h — the kernel table of the random family (random.c and creation.c call it; each
 * backend fills one). Besides the Philox fills it holds the index-determined sequences of
 * arange and linspace: like the random fills they compute element i from i alone, and the
 * backend struct has no separate slot for creation. */
#ifndef LUMEN_RANDOM_H
#define LUMEN_RANDOM_H

#include "internal.h"

/* Where a call's numbers come from: the Philox key and the first counter (philox.h says which
 * counter and word element i uses). */
typedef struct lm_philox_state {
    uint64_t seed;
    uint64_t offset;
} lm_philox_state;

/* Every kernel writes each element of a CONTIGUOUS tensor t (the op layer hands a contiguous
 * temporary for other views) with the value its C-order index i determines; the values do not
 * depend on the thread count. Arguments are validated by the op layer. */
struct lm_random_kernels {
    /* f32, f64: lo + (hi - lo) * U[0,1), kept below hi where rounding would reach it. */
    void (*uniform)(lm_tensor *t, lm_philox_state s, double lo, double hi);
    /* f32, f64: mean + std * N(0,1), Box-Muller. */
    void (*normal)(lm_tensor *t, lm_philox_state s, double mean, double std);
    /* Any dtype: low + a draw in [0, range), range >= 1; the op layer ensures it fits the dtype. */
    void (*randint)(lm_tensor *t, lm_philox_state s, int64_t low, uint64_t range);
    /* Any dtype: 1 with probability p, else 0. */
    void (*bernoulli)(lm_tensor *t, lm_philox_state s, double p);
    /* f32, f64: start + step * i computed in f64; i64, u8: istart + istep * i in i64 (u8 wraps,
     * as torch.arange). */
    void (*arange)(lm_tensor *t, double start, double step, int64_t istart, int64_t istep);
    /* Any dtype, numel >= 2: start + step*i for the first half, end - step*(n-1-i) for the
     * second (step = (end-start)/(n-1)), in the dtype for floats and in f64 for integers. */
    void (*linspace)(lm_tensor *t, double start, double end);
};

#endif /* LUMEN_RANDOM_H */
