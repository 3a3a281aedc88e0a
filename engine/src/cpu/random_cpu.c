/* random_cpu.c — CPU kernels of the random family: the Philox fills (uniform, normal, randint,
 * bernoulli; philox.h defines the arithmetic and which words each element takes) and the
 * arange / linspace sequences of creation.c.
 *
 * A fill walks the counters of its call in blocks; large tensors hand the blocks to OpenMP
 * threads. Each element's value is a function of its index alone, so the result is the same
 * for any thread count. The hot loops run Philox and the transform in one `omp simd` loop over
 * counters; randint, whose 64x64->128 product does not vectorize, first generates a block of
 * words with the vectorized Philox loop. */
#include "../philox.h"
#include "../random.h"

#include <math.h>

/* Counters per work item: 4096 counters are 64 KiB of f32 output, so threads never share a
 * cache line and scheduling costs nothing next to the work. */
#define BLOCK 4096

/* A block function fills the elements of counters [c0, c1). */
typedef void (*block_fn)(int64_t c0, int64_t c1, const void *ctx);

static void run_blocks(int64_t n, int per_counter, block_fn fn, const void *ctx)
{
    int64_t counters = (n + per_counter - 1) / per_counter;
    int64_t blocks = (counters + BLOCK - 1) / BLOCK;
#pragma omp parallel for if (n >= LM_PARALLEL_GRAIN) num_threads(lm__threads()) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t c0 = b * BLOCK, c1 = c0 + BLOCK < counters ? c0 + BLOCK : counters;
        fn(c0, c1, ctx);
    }
}

/* The counters in [c0, c1) whose every element lies inside the tensor run through the vector
 * loop; the last counter of a call may be cut short by numel and is written element by element. */
static inline int64_t full_end(int64_t c1, int64_t n, int per_counter)
{
    int64_t full = n / per_counter;
    return c1 < full ? c1 : full;
}

/* Philox words of counters [c0, c1) into words[c - c0]: the vectorized half of the two-pass
 * kernels. */
static void philox_words(lm_philox_state s, int64_t c0, int64_t c1,
                         lm_philox_words *restrict words)
{
#pragma omp simd
    for (int64_t c = c0; c < c1; c++)
        words[c - c0] = lm__philox_block(s.seed, s.offset, (uint64_t)c);
}

/* ---- uniform ------------------------------------------------------------------------------ */

/* cap is the largest value of the dtype below hi (lo itself when lo == hi): lo + range*u may
 * round up to hi, which [lo, hi) excludes, and is then replaced by cap. */
typedef struct {
    void *out;
    int64_t n;
    lm_philox_state s;
    double lo, range, cap;
} uniform_ctx;

static void uniform_f32_block(int64_t c0, int64_t c1, const void *vctx)
{
    const uniform_ctx *x = vctx;
    float *restrict out = x->out;
    float lo = (float)x->lo, range = (float)x->range, cap = (float)x->cap;
    int64_t cf = full_end(c1, x->n, 4);
#pragma omp simd
    for (int64_t c = c0; c < cf; c++) {
        lm_philox_words r = lm__philox_block(x->s.seed, x->s.offset, (uint64_t)c);
        for (int k = 0; k < 4; k++) {
            float v = lo + range * lm__u01_f32(r.w[k]);
            out[4 * c + k] = v < cap ? v : cap;
        }
    }
    if (cf < c1) {
        lm_philox_words r = lm__philox_block(x->s.seed, x->s.offset, (uint64_t)cf);
        for (int64_t i = 4 * cf; i < x->n; i++) {
            float v = lo + range * lm__u01_f32(r.w[i % 4]);
            out[i] = v < cap ? v : cap;
        }
    }
}

static void uniform_f64_block(int64_t c0, int64_t c1, const void *vctx)
{
    const uniform_ctx *x = vctx;
    double *restrict out = x->out;
    double lo = x->lo, range = x->range, cap = x->cap;
    int64_t cf = full_end(c1, x->n, 2);
#pragma omp simd
    for (int64_t c = c0; c < cf; c++) {
        lm_philox_words r = lm__philox_block(x->s.seed, x->s.offset, (uint64_t)c);
        for (int k = 0; k < 2; k++) {
            double v = lo + range * lm__u01_f64(r.w[2 * k], r.w[2 * k + 1]);
            out[2 * c + k] = v < cap ? v : cap;
        }
    }
    if (cf < c1) {
        lm_philox_words r = lm__philox_block(x->s.seed, x->s.offset, (uint64_t)cf);
        double v = lo + range * lm__u01_f64(r.w[0], r.w[1]);
        out[2 * cf] = v < cap ? v : cap;
    }
}

static void cpu_uniform(lm_tensor *t, lm_philox_state s, double lo, double hi)
{
    uniform_ctx x = {lm_data(t), lm_numel(t), s, lo, hi - lo, lo};
    if (t->dtype == LM_F32) {
        if (lo < hi) x.cap = nextafterf((float)hi, (float)lo);
        run_blocks(x.n, 4, uniform_f32_block, &x);
    } else {
        if (lo < hi) x.cap = nextafter(hi, lo);
        run_blocks(x.n, 2, uniform_f64_block, &x);
    }
}

/* ---- normal ------------------------------------------------------------------------------- */

typedef struct {
    void *out;
    int64_t n;
    lm_philox_state s;
    double mean, std;
} normal_ctx;

static void normal_f32_block(int64_t c0, int64_t c1, const void *vctx)
{
    const normal_ctx *x = vctx;
    float *restrict out = x->out;
    float mean = (float)x->mean, std = (float)x->std;
    int64_t cf = full_end(c1, x->n, 2);
#pragma omp simd
    for (int64_t c = c0; c < cf; c++) {
        lm_philox_words r = lm__philox_block(x->s.seed, x->s.offset, (uint64_t)c);
        out[2 * c] = mean + std * lm__normal_f32(r.w[0], r.w[1]);
        out[2 * c + 1] = mean + std * lm__normal_f32(r.w[2], r.w[3]);
    }
    if (cf < c1) {
        lm_philox_words r = lm__philox_block(x->s.seed, x->s.offset, (uint64_t)cf);
        out[2 * cf] = mean + std * lm__normal_f32(r.w[0], r.w[1]);
    }
}

static void normal_f64_block(int64_t c0, int64_t c1, const void *vctx)
{
    const normal_ctx *x = vctx;
    double *restrict out = x->out;
    double mean = x->mean, std = x->std;
#pragma omp simd
    for (int64_t c = c0; c < c1; c++) {
        lm_philox_words r = lm__philox_block(x->s.seed, x->s.offset, (uint64_t)c);
        out[c] = mean + std * lm__normal_f64(r.w[0], r.w[1], r.w[2], r.w[3]);
    }
}

static void cpu_normal(lm_tensor *t, lm_philox_state s, double mean, double std)
{
    normal_ctx x = {lm_data(t), lm_numel(t), s, mean, std};
    if (t->dtype == LM_F32) run_blocks(x.n, 2, normal_f32_block, &x);
    else run_blocks(x.n, 1, normal_f64_block, &x);
}

/* ---- randint ------------------------------------------------------------------------------ */

typedef struct {
    void *out;
    int64_t n;
    lm_philox_state s;
    int64_t low;
    uint64_t range;
} randint_ctx;

/* Counters per batch of words: 4 KiB, which stays in L1 between the two passes. */
#define WORD_BATCH 256

/* low + draw is formed in uint64 so that ranges spanning most of int64 wrap instead of
 * overflowing; the op layer guarantees the result fits the dtype. */
#define RANDINT_BLOCK(NAME, T)                                                                   \
    static void randint_##NAME##_block(int64_t c0, int64_t c1, const void *vctx)                  \
    {                                                                                              \
        const randint_ctx *x = vctx;                                                               \
        T *restrict out = x->out;                                                                  \
        uint64_t low = (uint64_t)x->low;                                                           \
        lm_philox_words words[WORD_BATCH];                                                         \
        for (int64_t b = c0; b < c1; b += WORD_BATCH) {                                            \
            int64_t e = b + WORD_BATCH < c1 ? b + WORD_BATCH : c1;                                 \
            philox_words(x->s, b, e, words);                                                       \
            int64_t i0 = 2 * b, i1 = 2 * e < x->n ? 2 * e : x->n;                                  \
            for (int64_t i = i0; i < i1; i++) {                                                    \
                const uint32_t *w = words[i / 2 - b].w + 2 * (i % 2);                              \
                out[i] = (T)(int64_t)(low + lm__reduce_range(w[0], w[1], x->range));               \
            }                                                                                      \
        }                                                                                          \
    }
RANDINT_BLOCK(f32, float)
RANDINT_BLOCK(f64, double)
RANDINT_BLOCK(i64, int64_t)
RANDINT_BLOCK(u8, uint8_t)

static void cpu_randint(lm_tensor *t, lm_philox_state s, int64_t low, uint64_t range)
{
    static const block_fn table[] = {
        [LM_F32] = randint_f32_block,
        [LM_F64] = randint_f64_block,
        [LM_I64] = randint_i64_block,
        [LM_U8] = randint_u8_block,
    };
    _Static_assert(sizeof table / sizeof table[0] == LM_DTYPE_COUNT, "randint kernel per dtype");
    randint_ctx x = {lm_data(t), lm_numel(t), s, low, range};
    run_blocks(x.n, 2, table[t->dtype], &x);
}

/* ---- bernoulli ---------------------------------------------------------------------------- */

typedef struct {
    void *out;
    int64_t n;
    lm_philox_state s;
    uint64_t threshold;
} bernoulli_ctx;

#define BERNOULLI_BLOCK(NAME, T)                                                                 \
    static void bernoulli_##NAME##_block(int64_t c0, int64_t c1, const void *vctx)                \
    {                                                                                              \
        const bernoulli_ctx *x = vctx;                                                             \
        T *restrict out = x->out;                                                                  \
        uint64_t thr = x->threshold;                                                               \
        int64_t cf = full_end(c1, x->n, 4);                                                        \
        _Pragma("omp simd")                                                                        \
        for (int64_t c = c0; c < cf; c++) {                                                        \
            lm_philox_words r = lm__philox_block(x->s.seed, x->s.offset, (uint64_t)c);             \
            for (int k = 0; k < 4; k++) out[4 * c + k] = (T)((uint64_t)r.w[k] < thr);              \
        }                                                                                          \
        if (cf < c1) {                                                                             \
            lm_philox_words r = lm__philox_block(x->s.seed, x->s.offset, (uint64_t)cf);            \
            for (int64_t i = 4 * cf; i < x->n; i++) out[i] = (T)((uint64_t)r.w[i % 4] < thr);      \
        }                                                                                          \
    }
BERNOULLI_BLOCK(f32, float)
BERNOULLI_BLOCK(f64, double)
BERNOULLI_BLOCK(i64, int64_t)
BERNOULLI_BLOCK(u8, uint8_t)

static void cpu_bernoulli(lm_tensor *t, lm_philox_state s, double p)
{
    static const block_fn table[] = {
        [LM_F32] = bernoulli_f32_block,
        [LM_F64] = bernoulli_f64_block,
        [LM_I64] = bernoulli_i64_block,
        [LM_U8] = bernoulli_u8_block,
    };
    _Static_assert(sizeof table / sizeof table[0] == LM_DTYPE_COUNT, "bernoulli kernel per dtype");
    bernoulli_ctx x = {lm_data(t), lm_numel(t), s, lm__bernoulli_threshold(p)};
    run_blocks(x.n, 4, table[t->dtype], &x);
}

/* ---- arange and linspace ------------------------------------------------------------------ */

static void cpu_arange(lm_tensor *t, double start, double step, int64_t istart, int64_t istep)
{
    int64_t n = lm_numel(t);
    int nt = lm__threads();
    switch (t->dtype) {
    case LM_F32: {
        float *restrict o = lm_data(t);
#pragma omp parallel for simd if (n >= LM_PARALLEL_GRAIN) num_threads(nt)
        for (int64_t i = 0; i < n; i++) o[i] = (float)(start + step * (double)i);
        break;
    }
    case LM_F64: {
        double *restrict o = lm_data(t);
#pragma omp parallel for simd if (n >= LM_PARALLEL_GRAIN) num_threads(nt)
        for (int64_t i = 0; i < n; i++) o[i] = start + step * (double)i;
        break;
    }
    case LM_I64: {
        int64_t *restrict o = lm_data(t);
#pragma omp parallel for simd if (n >= LM_PARALLEL_GRAIN) num_threads(nt)
        for (int64_t i = 0; i < n; i++) o[i] = istart + istep * i;
        break;
    }
    case LM_U8: {
        uint8_t *restrict o = lm_data(t);
#pragma omp parallel for simd if (n >= LM_PARALLEL_GRAIN) num_threads(nt)
        for (int64_t i = 0; i < n; i++) o[i] = (uint8_t)(uint64_t)(istart + istep * i);
        break;
    }
    default: break;
    }
}

/* PyTorch's formula: floats in their own precision, integers through an f64 step and
 * truncation. Counting the second half from the end makes the last element exactly end. */
#define LINSPACE_LOOP(T, ST, START, END)                                                         \
    do {                                                                                           \
        T *restrict o = lm_data(t);                                                                \
        T s0 = (T)(START), s1 = (T)(END);                                                          \
        ST step = ((ST)s1 - (ST)s0) / (ST)(n - 1);                                                 \
        int64_t half = n / 2;                                                                      \
        _Pragma("omp parallel for simd if (n >= LM_PARALLEL_GRAIN) num_threads(nt)")               \
        for (int64_t i = 0; i < n; i++)                                                            \
            o[i] = (T)(i < half ? s0 + step * (ST)i : s1 - step * (ST)(n - 1 - i));                \
    } while (0)

static void cpu_linspace(lm_tensor *t, double start, double end)
{
    int64_t n = lm_numel(t);
    int nt = lm__threads();
    switch (t->dtype) {
    case LM_F32: LINSPACE_LOOP(float, float, start, end); break;
    case LM_F64: LINSPACE_LOOP(double, double, start, end); break;
    case LM_I64: LINSPACE_LOOP(int64_t, double, start, end); break;
    case LM_U8: LINSPACE_LOOP(uint8_t, double, start, end); break;
    default: break;
    }
}

LM_INTERNAL const struct lm_random_kernels lm__cpu_random_kernels = {
    .uniform = cpu_uniform,
    .normal = cpu_normal,
    .randint = cpu_randint,
    .bernoulli = cpu_bernoulli,
    .arange = cpu_arange,
    .linspace = cpu_linspace,
};
