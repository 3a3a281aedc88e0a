/* index_cpu.c — CPU kernels of the indexing and joining family (index.h).
 *
 * Gathers and scatters run on the element iterator over "restrided" descriptors: the indexed
 * tensor seen with the index's shape and a stride of 0 along dim, so that the element an index
 * value picks is at (restrided address + value * stride along dim). One loop per dtype then
 * serves index_select, gather and scatter_add for any strides, and the iterator merges dims
 * and splits the work across threads. Such descriptors are lm_tensor values on the stack that
 * borrow the storage; they are never retained or released, so kernels allocate nothing. Whole
 * contiguous rows are copied with memcpy (index_select of rows, cat). */
#include "../index.h"

#include <omp.h>
#include <string.h>

extern const struct lm_copy_kernels lm__cpu_copy_kernels;

/* The dtypes every kernel here handles: enum, short name, C type. */
#define DTYPES(X)                  \
    X(LM_F32, f32, float)          \
    X(LM_F64, f64, double)         \
    X(LM_I64, i64, int64_t)        \
    X(LM_U8, u8, uint8_t)
/* The same list with the outer loop's dtype carried along, for tables of dtype pairs. */
#define DTYPES2(X, N, T)           \
    X(N, T, LM_F32, f32, float)    \
    X(N, T, LM_F64, f64, double)   \
    X(N, T, LM_I64, i64, int64_t)  \
    X(N, T, LM_U8, u8, uint8_t)
#define COUNT_ONE(E, N, T) +1
_Static_assert(0 DTYPES(COUNT_ONE) == LM_DTYPE_COUNT, "DTYPES lists every dtype");

/* Below this many bytes a row is copied by a loop: a memcpy call costs more. */
#define MEMCPY_MIN_BYTES 64
/* Plain copies (cat, index_select of rows) are bound by memory, not by arithmetic: measured
 * here (2 cores), stack of 64 [784] f32 took 6.5 us on one thread and 22 us on two, and two
 * threads won only from about 3 MB on (57 us against 63). Below this many bytes they run on
 * one thread, whatever LM_PARALLEL_GRAIN says for computing loops. */
#define COPY_PARALLEL_BYTES ((int64_t)2 << 20)

/* Threads for a copy of nbytes: 1 below COPY_PARALLEL_BYTES, then one per half of it. */
static int copy_threads(int64_t nbytes)
{
    int64_t most = nbytes / (COPY_PARALLEL_BYTES / 2);
    int threads = lm__threads();
    if (nbytes < COPY_PARALLEL_BYTES) return 1;
    return threads < most ? threads : (int)most;
}

/* ---- descriptors ---------------------------------------------------------------------------- */

/* t's memory seen with like's shape: t's strides, except 0 along dim when zero_dim (the index
 * supplies that coordinate) and 0 everywhere for a 0-dim t. Valid because like is no larger
 * than t in the other dims. */
static lm_tensor restride(const lm_tensor *t, const lm_tensor *like, int dim, bool zero_dim)
{
    lm_tensor v = *t;
    v.ndim = like->ndim;
    for (int k = 0; k < like->ndim; k++) {
        v.shape[k] = like->shape[k];
        v.strides[k] = t->ndim == 0 || (zero_dim && k == dim) ? 0 : t->strides[k];
    }
    return v;
}

/* Elements [b, e) of t along dim k. */
static lm_tensor narrow_desc(const lm_tensor *t, int k, int64_t b, int64_t e)
{
    lm_tensor v = *t;
    v.shape[k] = e - b;
    v.offset += b * t->strides[k];
    return v;
}

/* Bytes between consecutive elements along dim (0 for a 0-dim tensor: its only index is 0). */
static int64_t dim_stride_bytes(const lm_tensor *t, int dim)
{
    return t->ndim ? t->strides[dim] * (int64_t)lm_dtype_size(t->dtype) : 0;
}

/* ---- index_range ---------------------------------------------------------------------------- */

static void range_loop(char **d, const int64_t *s, int64_t n, void *ctx)
{
    int64_t *mm = ctx;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = *(const int64_t *)(d[0] + i * s[0]);
        if (v < mm[0]) mm[0] = v;
        if (v > mm[1]) mm[1] = v;
    }
}

static void span_range(const int64_t *restrict p, int64_t n, int64_t *min, int64_t *max)
{
    int64_t lo = *min, hi = *max;
#pragma omp simd reduction(min : lo) reduction(max : hi)
    for (int64_t i = 0; i < n; i++) {
        lo = p[i] < lo ? p[i] : lo;
        hi = p[i] > hi ? p[i] : hi;
    }
    *min = lo;
    *max = hi;
}

static void cpu_index_range(const lm_tensor *index, int64_t *min, int64_t *max)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    const int64_t n = lm_numel(index);
    if (!lm_is_contiguous(index)) {
        /* Index tensors are small next to what they address; strided ones go serially. */
        int64_t mm[2] = {lo, hi};
        const lm_tensor *ops[1] = {index};
        lm__iter(1, ops, range_loop, mm, false);
        lo = mm[0];
        hi = mm[1];
    } else if (n >= LM_PARALLEL_GRAIN && lm__threads() > 1) {
        const int64_t *p = lm_data(index);
        const int64_t per = LM_PARALLEL_GRAIN / 2, spans = (n + per - 1) / per;
#pragma omp parallel for reduction(min : lo) reduction(max : hi) num_threads(lm__threads())
        for (int64_t c = 0; c < spans; c++)
            span_range(p + c * per, c == spans - 1 ? n - c * per : per, &lo, &hi);
    } else {
        /* A plain branch, not an OpenMP if clause: entering a region costs microseconds even
         * when it runs on one thread. */
        span_range(lm_data(index), n, &lo, &hi);
    }
    *min = lo;
    *max = hi;
}

/* ---- gather loops: out = src[index] ------------------------------------------------------ */

/* What a gather or scatter loop needs, and where it reports an index value outside [0, size).
 * Threads share it, so the report is written atomically; any bad value will do. */
typedef struct {
    int64_t sd;    /* stride of the indexed tensor along dim, bytes */
    uint64_t size; /* its size along dim */
    int failed;
    int64_t bad;
} gather_ctx;

static void note_bad(gather_ctx *c, int64_t v)
{
    __atomic_store_n(&c->bad, v, __ATOMIC_RELAXED);
    __atomic_store_n(&c->failed, 1, __ATOMIC_RELAXED);
}

/* Operands: out, index, src restrided (stride 0 along dim). CHECKED loops end the run at a
 * bad value (the op then fails and discards out); a negative value seen as unsigned is larger
 * than any size, so one well-predicted comparison per element covers both ends. Unchecked
 * loops serve index_select, whose short index the op layer checks once beforehand. */
#define BAD_VALUE(CHECKED, k)                                                                    \
    if ((CHECKED) && (k) >= lim) {                                                               \
        note_bad(c, (int64_t)(k));                                                               \
        return;                                                                                  \
    }
#define GATHER_LOOP(NAME, T, CHECKED)                                                            \
    static void NAME(char **d, const int64_t *s, int64_t n, void *ctx)                           \
    {                                                                                            \
        gather_ctx *c = ctx;                                                                     \
        const int64_t sd = c->sd;                                                                \
        const uint64_t lim = c->size;                                                            \
        char *o = d[0];                                                                          \
        const char *ix = d[1], *src = d[2];                                                      \
        if (s[1] == 0) { /* one index value for the run: a row copy */                           \
            uint64_t k = *(const uint64_t *)ix;                                                  \
            BAD_VALUE(CHECKED, k)                                                                \
            const char *row = src + (int64_t)k * sd;                                             \
            if (s[0] == (int64_t)sizeof(T) && s[2] == (int64_t)sizeof(T) &&                      \
                n * (int64_t)sizeof(T) >= MEMCPY_MIN_BYTES) {                                    \
                memcpy(o, row, (size_t)n * sizeof(T));                                           \
            } else {                                                                             \
                for (int64_t i = 0; i < n; i++)                                                  \
                    *(T *)(o + i * s[0]) = *(const T *)(row + i * s[2]);                         \
            }                                                                                    \
        } else if (s[0] == (int64_t)sizeof(T) && s[1] == (int64_t)sizeof(int64_t) && s[2] == 0) { \
            T *restrict op = (T *)o;                                                             \
            const uint64_t *restrict ip = (const uint64_t *)ix;                                  \
            if (sd == (int64_t)sizeof(T)) { /* along a contiguous dim: scaled addressing */     \
                const T *restrict sp = (const T *)src;                                           \
                for (int64_t i = 0; i < n; i++) {                                                \
                    BAD_VALUE(CHECKED, ip[i])                                                    \
                    op[i] = sp[ip[i]];                                                           \
                }                                                                                \
            } else {                                                                             \
                for (int64_t i = 0; i < n; i++) {                                                \
                    BAD_VALUE(CHECKED, ip[i])                                                    \
                    op[i] = *(const T *)(src + (int64_t)ip[i] * sd);                             \
                }                                                                                \
            }                                                                                    \
        } else {                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                    \
                uint64_t k = *(const uint64_t *)(ix + i * s[1]);                                 \
                BAD_VALUE(CHECKED, k)                                                            \
                *(T *)(o + i * s[0]) = *(const T *)(src + i * s[2] + (int64_t)k * sd);           \
            }                                                                                    \
        }                                                                                        \
    }
#define GATHER_LOOPS(E, N, T)                                                                    \
    GATHER_LOOP(gather_##N, T, true)                                                             \
    GATHER_LOOP(gather_trusted_##N, T, false)
DTYPES(GATHER_LOOPS)

#define GATHER_ENTRY(E, N, T) [E] = gather_##N,
#define GATHER_TRUSTED_ENTRY(E, N, T) [E] = gather_trusted_##N,
static const lm_loop_fn gather_loops[] = {DTYPES(GATHER_ENTRY)};
static const lm_loop_fn gather_trusted_loops[] = {DTYPES(GATHER_TRUSTED_ENTRY)};
_Static_assert(sizeof gather_loops / sizeof gather_loops[0] == LM_DTYPE_COUNT, "gather loops");
_Static_assert(sizeof gather_trusted_loops / sizeof gather_trusted_loops[0] == LM_DTYPE_COUNT,
               "gather loops");

/* Whole rows of a contiguous input, one memcpy each: row r of out is row index[r % n] of
 * block r / n of t. */
typedef struct {
    char *dst;
    const char *src;
    const int64_t *index;
    int64_t istride, n, size;
    size_t row; /* bytes */
} row_copy;

/* Rows picked at random from a dataset larger than the caches (a shuffled batch) each start with
 * a DRAM miss; asking for the rows a few places ahead overlaps those misses. Measured here: a
 * batch of 64 MNIST rows (3 KB each) from 188 MB took 26 us without and 20 us with (2 to 16 rows ahead do the same). */
#define PREFETCH_ROWS_AHEAD 4

static const char *row_src(const row_copy *j, int64_t r)
{
    int64_t o = r / j->n, i = r % j->n;
    return j->src + (size_t)(o * j->size + j->index[i * j->istride]) * j->row;
}

static void copy_rows(const row_copy *j, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r++) {
        if (r + PREFETCH_ROWS_AHEAD < r1) {
            const char *ahead = row_src(j, r + PREFETCH_ROWS_AHEAD);
            for (size_t off = 0; off < j->row; off += 64) __builtin_prefetch(ahead + off);
        }
        memcpy(j->dst + (size_t)r * j->row, row_src(j, r), j->row);
    }
}

static void cpu_index_select(lm_tensor *out, const lm_tensor *t, int dim, const lm_tensor *index)
{
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < t->ndim; k++) {
        if (k < dim) outer *= t->shape[k];
        if (k > dim) inner *= t->shape[k];
    }
    const int64_t istride = index->ndim ? index->strides[0] : 0;
    if (t->ndim > 0 && inner > 1 && lm_is_contiguous(t)) {
        /* The DataLoader's batch gather: rows of dim 0 of a dataset tensor. */
        row_copy j = {lm_data(out), lm_data(t), lm_data(index), istride, out->shape[dim],
                      t->shape[dim], (size_t)inner * lm_dtype_size(t->dtype)};
        const int64_t rows = outer * j.n;
        int threads = copy_threads(rows * (int64_t)j.row);
        if (threads > rows) threads = (int)rows;
        if (threads < 2) {
            copy_rows(&j, 0, rows);
            return;
        }
#pragma omp parallel num_threads(threads)
        {
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
            copy_rows(&j, rows * id / nt, rows * (id + 1) / nt);
        }
        return;
    }
    /* The index seen with out's shape: it varies along dim only. */
    lm_tensor iv = *index;
    iv.ndim = out->ndim;
    for (int k = 0; k < out->ndim; k++) {
        iv.shape[k] = out->shape[k];
        iv.strides[k] = k == dim ? istride : 0;
    }
    lm_tensor src = restride(t, out, dim, true);
    gather_ctx c = {dim_stride_bytes(t, dim), UINT64_MAX, 0, 0};
    const lm_tensor *ops[3] = {out, &iv, &src};
    lm__iter(3, ops, gather_trusted_loops[t->dtype], &c, true);
}

static bool cpu_gather(lm_tensor *out, const lm_tensor *t, int dim, const lm_tensor *index,
                       int64_t *bad)
{
    lm_tensor src = restride(t, index, dim, true);
    gather_ctx c = {dim_stride_bytes(t, dim), (uint64_t)(t->ndim ? t->shape[dim] : 1), 0, 0};
    const lm_tensor *ops[3] = {out, index, &src};
    lm__iter(3, ops, gather_loops[t->dtype], &c, true);
    *bad = c.bad;
    return !c.failed;
}

/* ---- scatter_add loops: dst[index] += src -------------------------------------------------- */

/* Operands: index, dst restrided (stride 0 along dim), src; ctx: a gather_ctx for dst. A bad
 * index value ends the run (the op layer then discards the result, or found it beforehand
 * when writing in place). Repeated index values accumulate because each element is added in
 * turn. */
#define SCATTER_ADD_LOOP(E, N, T)                                                                \
    static void scatter_add_##N(char **d, const int64_t *s, int64_t n, void *ctx)                \
    {                                                                                            \
        gather_ctx *c = ctx;                                                                     \
        const int64_t sd = c->sd;                                                                \
        const uint64_t lim = c->size;                                                            \
        const char *ix = d[0], *src = d[2];                                                      \
        char *dst = d[1];                                                                        \
        if (s[0] == 0 && s[1] == (int64_t)sizeof(T) && s[2] == (int64_t)sizeof(T)) {             \
            /* One index value for a contiguous run: a row add (src never overlaps dst). */      \
            uint64_t k = *(const uint64_t *)ix;                                                  \
            if (k >= lim) {                                                                      \
                note_bad(c, (int64_t)k);                                                         \
                return;                                                                          \
            }                                                                                    \
            T *restrict row = (T *)(dst + (int64_t)k * sd);                                      \
            const T *restrict sp = (const T *)src;                                               \
            for (int64_t i = 0; i < n; i++) row[i] += sp[i];                                     \
        } else if (s[0] == (int64_t)sizeof(int64_t) && s[1] == 0 && s[2] == (int64_t)sizeof(T) && \
                   sd == (int64_t)sizeof(T)) {                                                   \
            /* A run along a contiguous dim: scaled addressing; repeats are read back in order. */ \
            T *dp = (T *)dst;                                                                    \
            const uint64_t *restrict ip = (const uint64_t *)ix;                                  \
            const T *restrict sp = (const T *)src;                                               \
            for (int64_t i = 0; i < n; i++) {                                                    \
                if (ip[i] >= lim) {                                                              \
                    note_bad(c, (int64_t)ip[i]);                                                 \
                    return;                                                                      \
                }                                                                                \
                dp[ip[i]] += sp[i];                                                              \
            }                                                                                    \
        } else {                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                    \
                uint64_t k = *(const uint64_t *)(ix + i * s[0]);                                 \
                if (k >= lim) {                                                                  \
                    note_bad(c, (int64_t)k);                                                     \
                    return;                                                                      \
                }                                                                                \
                *(T *)(dst + i * s[1] + (int64_t)k * sd) += *(const T *)(src + i * s[2]);        \
            }                                                                                    \
        }                                                                                        \
    }
DTYPES(SCATTER_ADD_LOOP)

#define SCATTER_ADD_ENTRY(E, N, T) [E] = scatter_add_##N,
static const lm_loop_fn scatter_add_loops[] = {DTYPES(SCATTER_ADD_ENTRY)};
_Static_assert(sizeof scatter_add_loops / sizeof scatter_add_loops[0] == LM_DTYPE_COUNT,
               "scatter_add loops");

static bool cpu_scatter_add(lm_tensor *out, int dim, const lm_tensor *index, const lm_tensor *src,
                            int64_t *bad)
{
    lm_tensor dst = restride(out, index, dim, true);
    lm_tensor from = restride(src, index, dim, false);
    gather_ctx c = {dim_stride_bytes(out, dim), (uint64_t)(out->ndim ? out->shape[dim] : 1), 0, 0};
    lm_loop_fn fn = scatter_add_loops[out->dtype];
    /* Two index positions write the same element only if they agree in every dim but dim, so
     * threads may split the work along another dim (the largest) without conflicts. */
    int split = -1;
    for (int k = 0; k < index->ndim; k++)
        if (k != dim && (split < 0 || index->shape[k] > index->shape[split])) split = k;
    int threads = lm__threads();
    if (split >= 0 && threads > index->shape[split]) threads = (int)index->shape[split];
    if (split < 0 || threads < 2 || lm_numel(index) < LM_PARALLEL_GRAIN) {
        const lm_tensor *ops[3] = {index, &dst, &from};
        lm__iter(3, ops, fn, &c, false);
    } else {
#pragma omp parallel num_threads(threads)
        {
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
            int64_t len = index->shape[split];
            int64_t b = len * id / nt, e = len * (id + 1) / nt;
            if (b < e) {
                lm_tensor pi = narrow_desc(index, split, b, e), pd = narrow_desc(&dst, split, b, e),
                          ps = narrow_desc(&from, split, b, e);
                const lm_tensor *ops[3] = {&pi, &pd, &ps};
                lm__iter(3, ops, fn, &c, false);
            }
        }
    }
    *bad = c.bad;
    return !c.failed;
}

/* ---- masked_fill loops: out = mask ? value : src ------------------------------------------ */

/* Operands: out, src (out itself in place), mask of dtype M; ctx: the value as a T. */
#define MASKED_FILL_LOOP(N, T, ME, MN, M)                                                        \
    static void masked_fill_##N##_##MN(char **d, const int64_t *s, int64_t n, void *ctx)         \
    {                                                                                            \
        const T v = *(const T *)ctx;                                                             \
        char *o = d[0];                                                                          \
        const char *a = d[1], *m = d[2];                                                         \
        if (s[2] == 0) { /* one mask value for the run (a broadcast mask) */                     \
            if (*(const M *)m != 0) {                                                            \
                for (int64_t i = 0; i < n; i++) *(T *)(o + i * s[0]) = v;                        \
            } else if (o != a || s[0] != s[1]) {                                                 \
                for (int64_t i = 0; i < n; i++) *(T *)(o + i * s[0]) = *(const T *)(a + i * s[1]); \
            }                                                                                    \
        } else if (s[0] == (int64_t)sizeof(T) && s[1] == (int64_t)sizeof(T) &&                   \
                   s[2] == (int64_t)sizeof(M)) {                                                 \
            /* op and ap may be one array (in place): each iteration reads before it writes. */  \
            T *op = (T *)o;                                                                      \
            const T *ap = (const T *)a;                                                          \
            const M *restrict mp = (const M *)m;                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) op[i] = mp[i] != 0 ? v : ap[i];  \
        } else {                                                                                 \
            for (int64_t i = 0; i < n; i++)                                                      \
                *(T *)(o + i * s[0]) =                                                           \
                    *(const M *)(m + i * s[2]) != 0 ? v : *(const T *)(a + i * s[1]);            \
        }                                                                                        \
    }
#define MASKED_FILL_LOOPS(E, N, T) DTYPES2(MASKED_FILL_LOOP, N, T)
DTYPES(MASKED_FILL_LOOPS)

#define MASKED_FILL_ENTRY(N, T, ME, MN, M) [ME] = masked_fill_##N##_##MN,
#define MASKED_FILL_ROW(E, N, T) [E] = {DTYPES2(MASKED_FILL_ENTRY, N, T)},
static const lm_loop_fn masked_fill_loops[][LM_DTYPE_COUNT] = {DTYPES(MASKED_FILL_ROW)};
_Static_assert(sizeof masked_fill_loops / sizeof masked_fill_loops[0] == LM_DTYPE_COUNT,
               "masked_fill loops");

static void cpu_masked_fill(lm_tensor *out, const lm_tensor *src, const lm_tensor *mask,
                            double value)
{
    union { float f; double d; int64_t i; uint8_t u; } v;
    lm__store(&v, out->dtype, value);
    const lm_tensor *ops[3] = {out, src, mask};
    lm__iter(3, ops, masked_fill_loops[out->dtype][mask->dtype], &v, true);
}

/* ---- cat ------------------------------------------------------------------------------------ */

/* Can each slice of t over dims [dim, ndim) (a "block") be copied into out with one memcpy? */
static bool block_copyable(const lm_tensor *t, const lm_tensor *out, int dim)
{
    if (t->dtype != out->dtype) return false;
    int64_t expected = 1;
    for (int k = t->ndim - 1; k >= dim; k--) {
        if (t->shape[k] != 1 && t->strides[k] != expected) return false;
        expected *= t->shape[k];
    }
    return true;
}

/* Address of block o (a C-order index over dims [0, dim)) of t. */
static const char *block_addr(const lm_tensor *t, int dim, int64_t o)
{
    int64_t off = t->offset;
    for (int k = dim - 1; k >= 0; k--) {
        off += o % t->shape[k] * t->strides[k];
        o /= t->shape[k];
    }
    return (const char *)t->storage->data + off * (int64_t)lm_dtype_size(t->dtype);
}

/* The output is a sequence of blocks (outer index major, input minor) that tiles it exactly:
 * copy the part of every copyable block that falls in out's elements [lo, hi). */
static void cat_blocks(lm_tensor *out, int dim, int n, const lm_tensor *const *in, int64_t inner,
                       int64_t lo, int64_t hi)
{
    const int64_t es = (int64_t)lm_dtype_size(out->dtype), row = out->shape[dim] * inner;
    char *base = lm_data(out);
    for (int64_t o = lo / row; o * row < hi; o++) {
        int64_t b0 = o * row;
        for (int i = 0; i < n && b0 < hi; i++) {
            const lm_tensor *t = in[i];
            if (lm_numel(t) == 0) continue;
            int64_t b1 = b0 + t->shape[dim] * inner;
            int64_t s = b0 > lo ? b0 : lo, e = b1 < hi ? b1 : hi;
            if (s < e && block_copyable(t, out, dim))
                memcpy(base + s * es, block_addr(t, dim, o) + (s - b0) * es, (size_t)((e - s) * es));
            b0 = b1;
        }
    }
}

static void cpu_cat(lm_tensor *out, int dim, int n, const lm_tensor *const *in)
{
    int64_t inner = 1;
    for (int k = dim + 1; k < out->ndim; k++) inner *= out->shape[k];
    /* Inputs that cannot be copied block by block (strided, or another dtype) go through the
     * copy kernel into their slice of out. */
    bool any_block = false;
    int64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const lm_tensor *t = in[i];
        if (lm_numel(t) == 0) continue;
        if (block_copyable(t, out, dim)) {
            any_block = true;
        } else {
            lm_tensor part = narrow_desc(out, dim, pos, pos + t->shape[dim]);
            lm__cpu_copy_kernels.copy(&part, t);
        }
        pos += t->shape[dim];
    }
    if (!any_block) return;
    int64_t numel = lm_numel(out);
    int threads = copy_threads((int64_t)lm_nbytes(out));
    if (threads < 2) {
        cat_blocks(out, dim, n, in, inner, 0, numel);
        return;
    }
    /* Threads take equal ranges of out (rounded to 16 elements so they do not share cache
     * lines), whatever the sizes of the blocks. */
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int64_t chunk = ((numel + nt - 1) / nt + 15) & ~(int64_t)15;
        int64_t b = (int64_t)id * chunk, e = b + chunk < numel ? b + chunk : numel;
        if (b < e) cat_blocks(out, dim, n, in, inner, b, e);
    }
}

/* ---- one_hot -------------------------------------------------------------------------------- */

static void one_hot_rows(int64_t *restrict o, const int64_t *restrict ip, int64_t c, int64_t r0,
                         int64_t r1)
{
    memset(o + r0 * c, 0, (size_t)((r1 - r0) * c) * sizeof *o);
    for (int64_t i = r0; i < r1; i++) o[i * c + ip[i]] = 1;
}

static void cpu_one_hot(lm_tensor *out, const lm_tensor *index)
{
    int64_t *o = lm_data(out);
    const int64_t *ip = lm_data(index);
    const int64_t n = lm_numel(index), c = out->shape[out->ndim - 1];
    int threads = lm__threads();
    if (threads < 2 || n < 2 || n * c < LM_PARALLEL_GRAIN) {
        one_hot_rows(o, ip, c, 0, n);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        one_hot_rows(o, ip, c, n * id / nt, n * (id + 1) / nt);
    }
}

LM_INTERNAL const struct lm_index_kernels lm__cpu_index_kernels = {
    .index_range = cpu_index_range,
    .index_select = cpu_index_select,
    .gather = cpu_gather,
    .scatter_add = cpu_scatter_add,
    .masked_fill = cpu_masked_fill,
    .cat = cpu_cat,
    .one_hot = cpu_one_hot,
};
