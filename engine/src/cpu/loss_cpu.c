/* loss_cpu.c — CPU kernels of the softmax and loss family (loss.h).
 *
 * Each kernel exists once per floating dtype, generated from a macro taking the C type, its
 * short name and its exp/log functions. A softmax-like kernel reduces along a dim of n elements
 * seen as [outer, n, inner]; a position is one (outer, inner) pair, whose n elements are the
 * row it normalises. Two ways to walk them:
 *   - rows: inner == 1 and rows of at least SHORT_ROW elements (classifier logits over many
 *     classes, attention scores): one contiguous row per iteration, `omp simd` along it.
 *   - tiles: a tile of up to TILE positions is vectorized across positions, with per-position
 *     running values on the stack, stepping through the n elements together. For inner > 1
 *     the positions of a tile are neighbouring columns (lane stride 1, element stride inner),
 *     so memory is read in order; for short rows ([64, 10] logits) they are neighbouring rows
 *     (lane stride n, element stride 1), read by gathers: there a per-row simd loop costs
 *     more in reduction set-up than the row holds work (measured: 56 ns a row of 10 against
 *     11 ns with tiles). The tile functions are inlined with one stride a literal 1, so each
 *     layout gets its own code.
 * Rows and tiles are spread over OpenMP threads once the work reaches LM_PARALLEL_GRAIN
 * elements. Totals are summed after the parallel part, in position order or in blocks fixed by
 * the size, so they do not depend on the thread count.
 *
 * f32 exponentials use exp_f32 below, which vectorizes (glibc's expf has no vector variant
 * without -ffast-math); f64 calls libm, whose accuracy is what gradient checks want. */
#include "../loss.h"

#include <math.h>
#include <string.h>

#define TILE 64           /* positions of a tile */
#define SHORT_ROW 48      /* rows shorter than this go through tiles */
#define SUM_BLOCKS 256    /* most blocks a point-wise total is split into */
#define SUM_BLOCK_MIN 4096

#include "vmath.h"

/* for (v = 0; v < n; v++) stmt, spread over the threads when par holds. A loop too small to
 * share never enters an OpenMP region: even with an if clause that is false, starting one cost
 * about 1 us a call here, as much as the whole [64, 10] cross entropy. Usable inside the
 * kernel-generating macros, where #pragma cannot appear. */
#define PRAGMA(x) _Pragma(#x)
#define FOR_JOBS(par, v, n, stmt)                                                                  \
    do {                                                                                           \
        if (par) {                                                                                 \
            PRAGMA(omp parallel for num_threads(lm__threads()) schedule(static))                   \
            for (int64_t v = 0; v < (n); v++) stmt;                                                \
        } else {                                                                                   \
            for (int64_t v = 0; v < (n); v++) stmt;                                                \
        }                                                                                          \
    } while (0)
#define INLINE static inline __attribute__((always_inline))

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Is work (elements touched) worth the threads? */
static bool parallel(int64_t work) { return work >= LM_PARALLEL_GRAIN && lm__threads() > 1; }

/* dim of t seen as [outer, n, inner]. */
static void geometry(const lm_tensor *t, int dim, int64_t *outer, int64_t *n, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    *n = t->ndim ? t->shape[dim] : 1;
    for (int d = 0; d < dim; d++) *outer *= t->shape[d];
    for (int d = dim + 1; d < t->ndim; d++) *inner *= t->shape[d];
}

/* ---- tiles ----------------------------------------------------------------------------------- */

/* Tile number `job` of [outer, n, inner]: w positions from position `pos` (positions count
 * (outer, inner) pairs in C order), whose element j of lane k is at base + k ps + j cs. Tiles
 * never straddle two outer indices when inner > 1. */
typedef struct {
    int64_t base, pos, w, ps, cs;
} tile;

static int64_t tile_count(int64_t outer, int64_t inner)
{
    return inner == 1 ? (outer + TILE - 1) / TILE : outer * ((inner + TILE - 1) / TILE);
}

static tile tile_at(int64_t job, int64_t outer, int64_t n, int64_t inner)
{
    if (inner == 1) {
        int64_t p0 = job * TILE;
        return (tile){p0 * n, p0, min64(TILE, outer - p0), n, 1};
    }
    int64_t per = (inner + TILE - 1) / TILE, o = job / per, i0 = job % per * TILE;
    return (tile){o * n * inner + i0, o * inner + i0, min64(TILE, inner - i0), 1, inner};
}

/* Tiles of short rows (lane stride ps != 1) compute their outputs into a buffer laid out
 * [element][lane], so the vector loops store contiguously (AVX2 has no scatter, and AVX-512's
 * is slow), then copy it out row by row. */
#define TILE_OUT_BUF (TILE * SHORT_ROW)
#define TILE_FLUSH(y, buf, w, n, ps)                                                               \
    do {                                                                                           \
        if ((ps) != 1)                                                                             \
            for (int64_t k_ = 0; k_ < (w); k_++)                                                   \
                for (int64_t j_ = 0; j_ < (n); j_++) (y)[k_ * (ps) + j_] = (buf)[j_ * TILE + k_];  \
    } while (0)

/* Calls FN(args..., ps, cs) with the unit stride a literal, so the inlined body of each layout
 * is compiled for it (contiguous loads for columns, gathers for short rows). */
#define TILE_CALL(tl, FN, ...)                                                                     \
    do {                                                                                           \
        if ((tl).ps == 1) FN(__VA_ARGS__, 1, (tl).cs);                                             \
        else FN(__VA_ARGS__, (tl).ps, 1);                                                          \
    } while (0)

/* ---- softmax and log_softmax ----------------------------------------------------------------- */

/* causal_rows > 0 makes row r the row (r % causal_rows) of a causal matrix, which keeps its
 * first (r % causal_rows) + 1 elements. */
#define SOFTMAX_KERNELS(S, T, EXP, LOG)                                                            \
    INLINE void softmax_row_##S(T *restrict yr, const T *restrict xr, int64_t n, int64_t m,       \
                                bool logp)                                                         \
    {                                                                                              \
        T mx = -INFINITY, s = 0;                                                                   \
        _Pragma("omp simd reduction(max : mx)")                                                    \
        for (int64_t j = 0; j < m; j++) mx = xr[j] > mx ? xr[j] : mx;                              \
        if (!logp) {                                                                               \
            _Pragma("omp simd reduction(+ : s)")                                                   \
            for (int64_t j = 0; j < m; j++) {                                                      \
                T e = EXP(xr[j] - mx);                                                             \
                yr[j] = e;                                                                         \
                s += e;                                                                            \
            }                                                                                      \
            T inv = 1 / s;                                                                         \
            _Pragma("omp simd")                                                                    \
            for (int64_t j = 0; j < m; j++) yr[j] *= inv;                                          \
            for (int64_t j = m; j < n; j++) yr[j] = 0;                                             \
        } else {                                                                                   \
            _Pragma("omp simd reduction(+ : s)")                                                   \
            for (int64_t j = 0; j < m; j++) s += EXP(xr[j] - mx);                                  \
            T lse = mx + LOG(s);                                                                   \
            _Pragma("omp simd")                                                                    \
            for (int64_t j = 0; j < m; j++) yr[j] = xr[j] - lse;                                   \
            for (int64_t j = m; j < n; j++) yr[j] = -INFINITY;                                     \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void softmax_rows_##S(T *y, const T *x, int64_t rows, int64_t n, bool logp,             \
                                 int64_t causal_rows)                                              \
    {                                                                                              \
        FOR_JOBS(parallel(rows * n), r, rows,                                                      \
                 softmax_row_##S(y + r * n, x + r * n, n,                                          \
                                 causal_rows > 0 ? min64(n, r % causal_rows + 1) : n, logp));      \
    }                                                                                              \
                                                                                                   \
    INLINE void softmax_tile_##S(T *restrict y, const T *restrict x, int64_t w, int64_t n,        \
                                 bool logp, int64_t ps, int64_t cs)                                \
    {                                                                                              \
        T mx[TILE], s[TILE], buf[TILE_OUT_BUF];                                                    \
        T *restrict o = ps == 1 ? y : buf;                                                         \
        int64_t os = ps == 1 ? cs : TILE;                                                          \
        for (int64_t k = 0; k < w; k++) {                                                          \
            mx[k] = -INFINITY;                                                                     \
            s[k] = 0;                                                                              \
        }                                                                                          \
        for (int64_t j = 0; j < n; j++) {                                                          \
            _Pragma("omp simd")                                                                    \
            for (int64_t k = 0; k < w; k++) {                                                      \
                T v = x[k * ps + j * cs];                                                          \
                mx[k] = v > mx[k] ? v : mx[k];                                                     \
            }                                                                                      \
        }                                                                                          \
        for (int64_t j = 0; j < n; j++) {                                                          \
            if (!logp) {                                                                           \
                _Pragma("omp simd")                                                                \
                for (int64_t k = 0; k < w; k++) {                                                  \
                    T e = EXP(x[k * ps + j * cs] - mx[k]);                                         \
                    o[k + j * os] = e;                                                             \
                    s[k] += e;                                                                     \
                }                                                                                  \
            } else {                                                                               \
                _Pragma("omp simd")                                                                \
                for (int64_t k = 0; k < w; k++) s[k] += EXP(x[k * ps + j * cs] - mx[k]);           \
            }                                                                                      \
        }                                                                                          \
        for (int64_t k = 0; k < w; k++) s[k] = logp ? mx[k] + LOG(s[k]) : 1 / s[k];               \
        for (int64_t j = 0; j < n; j++) {                                                          \
            if (!logp) {                                                                           \
                _Pragma("omp simd")                                                                \
                for (int64_t k = 0; k < w; k++) o[k + j * os] *= s[k];                             \
            } else {                                                                               \
                _Pragma("omp simd")                                                                \
                for (int64_t k = 0; k < w; k++) o[k + j * os] = x[k * ps + j * cs] - s[k];         \
            }                                                                                      \
        }                                                                                          \
        TILE_FLUSH(y, buf, w, n, ps);                                                              \
    }                                                                                              \
                                                                                                   \
    INLINE void softmax_tile_job_##S(T *y, const T *x, int64_t job, int64_t outer, int64_t n,     \
                                     int64_t inner, bool logp)                                     \
    {                                                                                              \
        tile t = tile_at(job, outer, n, inner);                                                    \
        TILE_CALL(t, softmax_tile_##S, y + t.base, x + t.base, t.w, n, logp);                     \
    }                                                                                              \
                                                                                                   \
    static void softmax_tiles_##S(T *y, const T *x, int64_t outer, int64_t n, int64_t inner,      \
                                  bool logp)                                                       \
    {                                                                                              \
        FOR_JOBS(parallel(outer * n * inner), job, tile_count(outer, inner),                       \
                 softmax_tile_job_##S(y, x, job, outer, n, inner, logp));                          \
    }                                                                                              \
                                                                                                   \
    INLINE void softmax_back_row_##S(T *restrict xr, const T *restrict gr, const T *restrict yr,  \
                                     int64_t n, int64_t m, bool logp)                              \
    {                                                                                              \
        T s = 0;                                                                                   \
        if (!logp) {                                                                               \
            _Pragma("omp simd reduction(+ : s)")                                                   \
            for (int64_t j = 0; j < m; j++) s += gr[j] * yr[j];                                    \
            _Pragma("omp simd")                                                                    \
            for (int64_t j = 0; j < m; j++) xr[j] = yr[j] * (gr[j] - s);                           \
        } else {                                                                                   \
            _Pragma("omp simd reduction(+ : s)")                                                   \
            for (int64_t j = 0; j < m; j++) s += gr[j];                                            \
            _Pragma("omp simd")                                                                    \
            for (int64_t j = 0; j < m; j++) xr[j] = gr[j] - EXP(yr[j]) * s;                        \
        }                                                                                          \
        for (int64_t j = m; j < n; j++) xr[j] = 0;                                                 \
    }                                                                                              \
                                                                                                   \
    static void softmax_back_rows_##S(T *gx, const T *gy, const T *y, int64_t rows, int64_t n,    \
                                      bool logp, int64_t causal_rows)                              \
    {                                                                                              \
        FOR_JOBS(parallel(rows * n), r, rows,                                                      \
                 softmax_back_row_##S(gx + r * n, gy + r * n, y + r * n, n,                        \
                                      causal_rows > 0 ? min64(n, r % causal_rows + 1) : n,         \
                                      logp));                                                      \
    }                                                                                              \
                                                                                                   \
    INLINE void softmax_back_tile_##S(T *restrict gx, const T *restrict gy, const T *restrict y,  \
                                      int64_t w, int64_t n, bool logp, int64_t ps, int64_t cs)    \
    {                                                                                              \
        T s[TILE], buf[TILE_OUT_BUF];                                                              \
        T *restrict o = ps == 1 ? gx : buf;                                                        \
        int64_t os = ps == 1 ? cs : TILE;                                                          \
        for (int64_t k = 0; k < w; k++) s[k] = 0;                                                  \
        for (int64_t j = 0; j < n; j++) {                                                          \
            if (!logp) {                                                                           \
                _Pragma("omp simd")                                                                \
                for (int64_t k = 0; k < w; k++) s[k] += gy[k * ps + j * cs] * y[k * ps + j * cs];  \
            } else {                                                                               \
                _Pragma("omp simd")                                                                \
                for (int64_t k = 0; k < w; k++) s[k] += gy[k * ps + j * cs];                       \
            }                                                                                      \
        }                                                                                          \
        for (int64_t j = 0; j < n; j++) {                                                          \
            if (!logp) {                                                                           \
                _Pragma("omp simd")                                                                \
                for (int64_t k = 0; k < w; k++) {                                                  \
                    int64_t e = k * ps + j * cs;                                                   \
                    o[k + j * os] = y[e] * (gy[e] - s[k]);                                         \
                }                                                                                  \
            } else {                                                                               \
                _Pragma("omp simd")                                                                \
                for (int64_t k = 0; k < w; k++) {                                                  \
                    int64_t e = k * ps + j * cs;                                                   \
                    o[k + j * os] = gy[e] - EXP(y[e]) * s[k];                                      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        TILE_FLUSH(gx, buf, w, n, ps);                                                             \
    }                                                                                              \
                                                                                                   \
    INLINE void softmax_back_tile_job_##S(T *gx, const T *gy, const T *y, int64_t job,            \
                                          int64_t outer, int64_t n, int64_t inner, bool logp)      \
    {                                                                                              \
        tile t = tile_at(job, outer, n, inner);                                                    \
        TILE_CALL(t, softmax_back_tile_##S, gx + t.base, gy + t.base, y + t.base, t.w, n, logp);  \
    }                                                                                              \
                                                                                                   \
    static void softmax_back_tiles_##S(T *gx, const T *gy, const T *y, int64_t outer, int64_t n,  \
                                       int64_t inner, bool logp)                                   \
    {                                                                                              \
        FOR_JOBS(parallel(outer * n * inner), job, tile_count(outer, inner),                       \
                 softmax_back_tile_job_##S(gx, gy, y, job, outer, n, inner, logp));                \
    }

SOFTMAX_KERNELS(f32, float, exp_f32, logf)
SOFTMAX_KERNELS(f64, double, exp, log)

/* Long rows, causal masks included, take the rows loops; the rest tiles. */
static bool use_rows(int64_t n, int64_t inner, bool causal)
{
    return causal || (inner == 1 && n >= SHORT_ROW);
}

static void cpu_softmax(lm_tensor *y, const lm_tensor *x, int dim, bool logp, bool causal)
{
    int64_t outer, n, inner;
    geometry(x, dim, &outer, &n, &inner);
    int64_t causal_rows = causal ? x->shape[x->ndim - 2] : 0;
    bool f32 = x->dtype == LM_F32;
    if (use_rows(n, inner, causal)) {
        if (f32) softmax_rows_f32(lm_data(y), lm_data(x), outer, n, logp, causal_rows);
        else softmax_rows_f64(lm_data(y), lm_data(x), outer, n, logp, causal_rows);
    } else {
        if (f32) softmax_tiles_f32(lm_data(y), lm_data(x), outer, n, inner, logp);
        else softmax_tiles_f64(lm_data(y), lm_data(x), outer, n, inner, logp);
    }
}

static void cpu_softmax_backward(lm_tensor *gx, const lm_tensor *gy, const lm_tensor *y, int dim,
                                 bool logp, bool causal)
{
    int64_t outer, n, inner;
    geometry(y, dim, &outer, &n, &inner);
    int64_t causal_rows = causal ? y->shape[y->ndim - 2] : 0;
    void *g = lm_data(gx);
    const void *d = lm_data(gy), *v = lm_data(y);
    bool f32 = y->dtype == LM_F32;
    if (use_rows(n, inner, causal)) {
        if (f32) softmax_back_rows_f32(g, d, v, outer, n, logp, causal_rows);
        else softmax_back_rows_f64(g, d, v, outer, n, logp, causal_rows);
    } else {
        if (f32) softmax_back_tiles_f32(g, d, v, outer, n, inner, logp);
        else softmax_back_tiles_f64(g, d, v, outer, n, inner, logp);
    }
}

/* ---- class losses ---------------------------------------------------------------------------- */

/* The sums a mean reduction needs, in position order, and the first bad target. */
static bool class_totals(const lm_class_loss *a, const void *loss, double *total,
                         double *weight_sum, int64_t *bad)
{
    const int64_t *tg = lm_data(a->target);
    int64_t count = a->n * a->inner;
    bool f32 = a->input->dtype == LM_F32;
    const void *w = a->weight ? lm_data(a->weight) : NULL;
    double tot = 0, ws = 0;
    for (int64_t p = 0; p < count; p++) {
        int64_t t = tg[p];
        if (t == a->ignore_index) continue;
        if (t < 0 || t >= a->c) {
            *bad = t;
            return false;
        }
        tot += f32 ? ((const float *)loss)[p] : ((const double *)loss)[p];
        ws += !w ? 1.0 : f32 ? ((const float *)w)[t] : ((const double *)w)[t];
    }
    *total = tot;
    *weight_sum = ws;
    return true;
}

/* Cross entropy per position. With label smoothing eps the loss is
 *   (1 - eps) w[t] (lse - x[t]) + eps / C * sum_c w[c] (lse - x[c]),
 * the second sum taken as W log(s) + sum_c w[c] (max - x[c]) (W = sum of the weights, s the
 * sum of exp(x - max)): two sums of non-negative terms, so nothing cancels. Targets out of
 * range get 0 here and are reported by class_totals. Its gradient is
 *   d loss / d x[c] = g ((1 - eps) w[t] (p[c] - [c == t]) + eps / C (W p[c] - w[c]))
 * with p = exp(x - lse): ca p[c] - cb w[c], and one correction at the target. */
#define CLASS_KERNELS(S, T, EXP, LOG)                                                              \
    static T weight_total_##S(const lm_class_loss *a)                                              \
    {                                                                                              \
        if (!a->weight) return (T)a->c;                                                            \
        const T *w = lm_data(a->weight);                                                           \
        T s = 0;                                                                                   \
        for (int64_t c = 0; c < a->c; c++) s += w[c];                                              \
        return s;                                                                                  \
    }                                                                                              \
                                                                                                   \
    INLINE void ce_row_##S(const lm_class_loss *a, int64_t r, T W, T *restrict loss,               \
                           T *restrict lse)                                                        \
    {                                                                                              \
        const T *w = a->weight ? lm_data(a->weight) : NULL;                                        \
        int64_t t = ((const int64_t *)lm_data(a->target))[r], C = a->c;                            \
        T eps = (T)a->label_smoothing;                                                             \
        loss[r] = 0;                                                                               \
        lse[r] = 0;                                                                                \
        if (t == a->ignore_index || t < 0 || t >= C) return;                                       \
        const T *restrict xr = (const T *)lm_data(a->input) + r * C;                               \
        T mx = -INFINITY, s = 0, sw = 0;                                                           \
        _Pragma("omp simd reduction(max : mx)")                                                    \
        for (int64_t c = 0; c < C; c++) mx = xr[c] > mx ? xr[c] : mx;                              \
        if (eps == 0) {                                                                            \
            _Pragma("omp simd reduction(+ : s)")                                                   \
            for (int64_t c = 0; c < C; c++) s += EXP(xr[c] - mx);                                  \
        } else if (!w) {                                                                           \
            _Pragma("omp simd reduction(+ : s, sw)")                                               \
            for (int64_t c = 0; c < C; c++) {                                                      \
                s += EXP(xr[c] - mx);                                                              \
                sw += mx - xr[c];                                                                  \
            }                                                                                      \
        } else {                                                                                   \
            _Pragma("omp simd reduction(+ : s, sw)")                                               \
            for (int64_t c = 0; c < C; c++) {                                                      \
                s += EXP(xr[c] - mx);                                                              \
                sw += w[c] * (mx - xr[c]);                                                         \
            }                                                                                      \
        }                                                                                          \
        T ls = LOG(s), nll = (w ? w[t] : 1) * (mx + ls - xr[t]);                                   \
        lse[r] = mx + ls;                                                                          \
        loss[r] = eps == 0 ? nll : (1 - eps) * nll + eps / (T)C * (W * ls + sw);                   \
    }                                                                                              \
                                                                                                   \
    /* A tile: x, tg, loss and lse start at the tile's first position. */                          \
    INLINE void ce_tile_##S(const lm_class_loss *a, const T *restrict x, const int64_t *tg,       \
                            T *restrict loss, T *restrict lse, T W, int64_t nw, int64_t ps,       \
                            int64_t cs)                                                            \
    {                                                                                              \
        const T *w = a->weight ? lm_data(a->weight) : NULL;                                        \
        int64_t C = a->c;                                                                          \
        T eps = (T)a->label_smoothing, mx[TILE], s[TILE], sw[TILE];                                \
        for (int64_t k = 0; k < nw; k++) {                                                         \
            mx[k] = -INFINITY;                                                                     \
            s[k] = sw[k] = 0;                                                                      \
        }                                                                                          \
        for (int64_t c = 0; c < C; c++) {                                                          \
            _Pragma("omp simd")                                                                    \
            for (int64_t k = 0; k < nw; k++) {                                                     \
                T v = x[k * ps + c * cs];                                                          \
                mx[k] = v > mx[k] ? v : mx[k];                                                     \
            }                                                                                      \
        }                                                                                          \
        for (int64_t c = 0; c < C; c++) {                                                          \
            T wc = w ? w[c] : 1;                                                                   \
            _Pragma("omp simd")                                                                    \
            for (int64_t k = 0; k < nw; k++) {                                                     \
                T v = x[k * ps + c * cs];                                                          \
                s[k] += EXP(v - mx[k]);                                                            \
                sw[k] += wc * (mx[k] - v);                                                         \
            }                                                                                      \
        }                                                                                          \
        for (int64_t k = 0; k < nw; k++) {                                                         \
            int64_t t = tg[k];                                                                     \
            T ls = LOG(s[k]);                                                                      \
            lse[k] = mx[k] + ls;                                                                   \
            loss[k] = 0;                                                                           \
            if (t == a->ignore_index || t < 0 || t >= C) continue;                                 \
            T nll = (w ? w[t] : 1) * (mx[k] + ls - x[k * ps + t * cs]);                            \
            loss[k] = eps == 0 ? nll : (1 - eps) * nll + eps / (T)C * (W * ls + sw[k]);            \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    INLINE void ce_tile_job_##S(const lm_class_loss *a, int64_t job, T W, T *loss, T *lse)        \
    {                                                                                              \
        tile t = tile_at(job, a->n, a->c, a->inner);                                               \
        const T *x = lm_data(a->input);                                                            \
        const int64_t *tg = lm_data(a->target);                                                    \
        TILE_CALL(t, ce_tile_##S, a, x + t.base, tg + t.pos, loss + t.pos, lse + t.pos, W, t.w);  \
    }                                                                                              \
                                                                                                   \
    static void ce_forward_##S(const lm_class_loss *a, T *loss, T *lse)                            \
    {                                                                                              \
        T W = weight_total_##S(a);                                                                 \
        bool par = parallel(a->n * a->c * a->inner);                                               \
        if (use_rows(a->c, a->inner, false))                                                       \
            FOR_JOBS(par, r, a->n, ce_row_##S(a, r, W, loss, lse));                                \
        else                                                                                       \
            FOR_JOBS(par, job, tile_count(a->n, a->inner), ce_tile_job_##S(a, job, W, loss, lse)); \
    }                                                                                              \
                                                                                                   \
    INLINE void ce_back_row_##S(const lm_class_loss *a, int64_t r, T W, T *restrict gx,            \
                                const T *lse, const T *gl, T scale)                                \
    {                                                                                              \
        const T *w = a->weight ? lm_data(a->weight) : NULL;                                        \
        int64_t t = ((const int64_t *)lm_data(a->target))[r], C = a->c;                            \
        const T *restrict xr = (const T *)lm_data(a->input) + r * C;                               \
        T *restrict gr = gx + r * C;                                                               \
        if (t == a->ignore_index) {                                                                \
            memset(gr, 0, sizeof(T) * (size_t)C);                                                  \
            return;                                                                                \
        }                                                                                          \
        T eps = (T)a->label_smoothing, g = scale * (gl ? gl[r] : 1), wt = w ? w[t] : 1;            \
        T l = lse[r], ca = g * ((1 - eps) * wt + eps / (T)C * W), cb = g * eps / (T)C;             \
        if (w) {                                                                                   \
            _Pragma("omp simd")                                                                    \
            for (int64_t c = 0; c < C; c++) gr[c] = ca * EXP(xr[c] - l) - cb * w[c];               \
        } else {                                                                                   \
            _Pragma("omp simd")                                                                    \
            for (int64_t c = 0; c < C; c++) gr[c] = ca * EXP(xr[c] - l) - cb;                      \
        }                                                                                          \
        gr[t] -= g * (1 - eps) * wt;                                                               \
    }                                                                                              \
                                                                                                   \
    /* A tile: gx and x start at the tile's first element, tg, lse and gl at its first            \
     * position. Ignored positions get 0 (selected, so NaN logits there do not leak in). */        \
    INLINE void ce_back_tile_##S(const lm_class_loss *a, T *restrict gx, const T *restrict x,     \
                                 const int64_t *tg, const T *restrict lse, const T *gl, T scale,  \
                                 T W, int64_t nw, int64_t ps, int64_t cs)                          \
    {                                                                                              \
        const T *w = a->weight ? lm_data(a->weight) : NULL;                                        \
        int64_t C = a->c;                                                                          \
        T eps = (T)a->label_smoothing, ca[TILE], cb[TILE], l[TILE], on[TILE], fix[TILE];           \
        T buf[TILE_OUT_BUF];                                                                       \
        T *restrict o = ps == 1 ? gx : buf;                                                        \
        int64_t os = ps == 1 ? cs : TILE;                                                          \
        for (int64_t k = 0; k < nw; k++) {                                                         \
            int64_t t = tg[k];                                                                     \
            bool v = t != a->ignore_index;                                                         \
            T g = scale * (gl ? gl[k] : 1), wt = v && w ? w[t] : 1;                                \
            on[k] = v;                                                                             \
            l[k] = v ? lse[k] : 0;                                                                 \
            ca[k] = g * ((1 - eps) * wt + eps / (T)C * W);                                         \
            cb[k] = g * eps / (T)C;                                                                \
            fix[k] = g * (1 - eps) * wt;                                                           \
        }                                                                                          \
        for (int64_t c = 0; c < C; c++) {                                                          \
            T wc = w ? w[c] : 1;                                                                   \
            _Pragma("omp simd")                                                                    \
            for (int64_t k = 0; k < nw; k++) {                                                     \
                T v = x[k * ps + c * cs];                                                          \
                o[k + c * os] = on[k] != 0 ? ca[k] * EXP(v - l[k]) - cb[k] * wc : 0;               \
            }                                                                                      \
        }                                                                                          \
        for (int64_t k = 0; k < nw; k++)                                                           \
            if (on[k] != 0) o[k + tg[k] * os] -= fix[k];                                           \
        TILE_FLUSH(gx, buf, nw, C, ps);                                                            \
    }                                                                                              \
                                                                                                   \
    INLINE void ce_back_tile_job_##S(const lm_class_loss *a, int64_t job, T W, T *gx,             \
                                     const T *lse, const T *gl, T scale)                           \
    {                                                                                              \
        tile t = tile_at(job, a->n, a->c, a->inner);                                               \
        const T *x = lm_data(a->input);                                                            \
        const int64_t *tg = lm_data(a->target);                                                    \
        TILE_CALL(t, ce_back_tile_##S, a, gx + t.base, x + t.base, tg + t.pos, lse + t.pos,       \
                  gl ? gl + t.pos : NULL, scale, W, t.w);                                          \
    }                                                                                              \
                                                                                                   \
    static void ce_backward_##S(const lm_class_loss *a, T *gx, const T *lse, const T *gl,          \
                                T scale)                                                           \
    {                                                                                              \
        T W = weight_total_##S(a);                                                                 \
        bool par = parallel(a->n * a->c * a->inner);                                               \
        if (use_rows(a->c, a->inner, false))                                                       \
            FOR_JOBS(par, r, a->n, ce_back_row_##S(a, r, W, gx, lse, gl, scale));                  \
        else                                                                                       \
            FOR_JOBS(par, job, tile_count(a->n, a->inner),                                         \
                     ce_back_tile_job_##S(a, job, W, gx, lse, gl, scale));                         \
    }                                                                                              \
                                                                                                   \
    /* nll reads one element per position: (p / inner, t, p % inner) of [N, C, inner]. */          \
    INLINE void nll_one_##S(const lm_class_loss *a, int64_t p, T *restrict loss)                   \
    {                                                                                              \
        const T *x = lm_data(a->input), *w = a->weight ? lm_data(a->weight) : NULL;               \
        int64_t t = ((const int64_t *)lm_data(a->target))[p], C = a->c, inner = a->inner;          \
        bool skip = t == a->ignore_index || t < 0 || t >= C;                                       \
        loss[p] = skip ? 0 : -(w ? w[t] : 1) * x[(p / inner * C + t) * inner + p % inner];         \
    }                                                                                              \
                                                                                                   \
    static void nll_##S(const lm_class_loss *a, T *loss)                                           \
    {                                                                                              \
        int64_t count = a->n * a->inner;                                                           \
        FOR_JOBS(parallel(count), p, count, nll_one_##S(a, p, loss));                              \
    }                                                                                              \
                                                                                                   \
    INLINE void nll_back_one_##S(const lm_class_loss *a, int64_t p, T *restrict gx, const T *gl,   \
                                 T scale)                                                          \
    {                                                                                              \
        const T *w = a->weight ? lm_data(a->weight) : NULL;                                        \
        int64_t t = ((const int64_t *)lm_data(a->target))[p], C = a->c, inner = a->inner;          \
        if (t != a->ignore_index)                                                                  \
            gx[(p / inner * C + t) * inner + p % inner] =                                          \
                -scale * (gl ? gl[p] : 1) * (w ? w[t] : 1);                                        \
    }                                                                                              \
                                                                                                   \
    static void nll_back_##S(const lm_class_loss *a, T *gx, const T *gl, T scale)                  \
    {                                                                                              \
        int64_t count = a->n * a->inner;                                                           \
        memset(gx, 0, sizeof(T) * (size_t)(count * a->c));                                        \
        FOR_JOBS(parallel(count), p, count, nll_back_one_##S(a, p, gx, gl, scale));                \
    }

CLASS_KERNELS(f32, float, exp_f32, logf)
CLASS_KERNELS(f64, double, exp, log)

static bool cpu_cross_entropy(const lm_class_loss *a, lm_tensor *loss, lm_tensor *lse,
                              double *total, double *weight_sum, int64_t *bad)
{
    if (a->input->dtype == LM_F32) ce_forward_f32(a, lm_data(loss), lm_data(lse));
    else ce_forward_f64(a, lm_data(loss), lm_data(lse));
    return class_totals(a, lm_data(loss), total, weight_sum, bad);
}

static void cpu_cross_entropy_backward(const lm_class_loss *a, lm_tensor *grad_input,
                                       const lm_tensor *lse, const lm_tensor *grad_loss,
                                       double scale)
{
    const void *gl = grad_loss ? lm_data(grad_loss) : NULL;
    if (a->input->dtype == LM_F32)
        ce_backward_f32(a, lm_data(grad_input), lm_data(lse), gl, (float)scale);
    else
        ce_backward_f64(a, lm_data(grad_input), lm_data(lse), gl, scale);
}

static bool cpu_nll_loss(const lm_class_loss *a, lm_tensor *loss, double *total,
                         double *weight_sum, int64_t *bad)
{
    if (a->input->dtype == LM_F32) nll_f32(a, lm_data(loss));
    else nll_f64(a, lm_data(loss));
    return class_totals(a, lm_data(loss), total, weight_sum, bad);
}

static void cpu_nll_loss_backward(const lm_class_loss *a, lm_tensor *grad_input,
                                  const lm_tensor *grad_loss, double scale)
{
    const void *gl = grad_loss ? lm_data(grad_loss) : NULL;
    if (a->input->dtype == LM_F32) nll_back_f32(a, lm_data(grad_input), gl, (float)scale);
    else nll_back_f64(a, lm_data(grad_input), gl, scale);
}

/* ---- point-wise losses ----------------------------------------------------------------------- */

/* Blocks of a point-wise total: at least SUM_BLOCK_MIN elements, at most SUM_BLOCKS of them;
 * the cut depends on n only. */
static int64_t block_size(int64_t n)
{
    int64_t b = (n + SUM_BLOCKS - 1) / SUM_BLOCKS;
    return b < SUM_BLOCK_MIN ? SUM_BLOCK_MIN : b;
}

/* softplus(-x) = log(1 + e^-x), stable for any x. */
#define SOFTPLUS_NEG(x, EXP, LOG1P) (((x) < 0 ? -(x) : 0) + LOG1P(EXP(-fabs(x))))

/* Each block writes its elements' losses and returns their sum (in double); BCE also reports
 * the first element outside [0, 1] through *bad (-1: none). */
#define POINTWISE_KERNELS(S, T, EXP, LOG, LOG1P, FABS)                                             \
    INLINE double pointwise_block_##S(const lm_pointwise_args *a, T *restrict l, int64_t lo,       \
                                      int64_t hi, int64_t *bad)                                    \
    {                                                                                              \
        const T *restrict x = lm_data(a->input), *restrict y = lm_data(a->target);                \
        const T *restrict w = a->weight ? lm_data(a->weight) : NULL;                               \
        const T *restrict pw = a->pos_weight ? lm_data(a->pos_weight) : NULL;                      \
        T beta = (T)a->beta;                                                                       \
        double s = 0;                                                                              \
        *bad = -1;                                                                                 \
        switch (a->op) {                                                                           \
        case LM_LOSS_MSE:                                                                          \
            _Pragma("omp simd reduction(+ : s)")                                                   \
            for (int64_t i = lo; i < hi; i++) {                                                    \
                T d = x[i] - y[i];                                                                 \
                l[i] = d * d;                                                                      \
                s += l[i];                                                                         \
            }                                                                                      \
            break;                                                                                 \
        case LM_LOSS_L1:                                                                           \
            _Pragma("omp simd reduction(+ : s)")                                                   \
            for (int64_t i = lo; i < hi; i++) {                                                    \
                l[i] = FABS(x[i] - y[i]);                                                          \
                s += l[i];                                                                         \
            }                                                                                      \
            break;                                                                                 \
        case LM_LOSS_SMOOTH_L1:                                                                    \
            _Pragma("omp simd reduction(+ : s)")                                                   \
            for (int64_t i = lo; i < hi; i++) {                                                    \
                T d = x[i] - y[i], ad = FABS(d);                                                   \
                l[i] = ad < beta ? (T)0.5 * d * d / beta : ad - (T)0.5 * beta;                     \
                s += l[i];                                                                         \
            }                                                                                      \
            break;                                                                                 \
        case LM_LOSS_BCE:                                                                          \
            for (int64_t i = lo; i < hi; i++) {                                                    \
                if (!(x[i] >= 0 && x[i] <= 1)) {                                                   \
                    *bad = i;                                                                      \
                    return 0;                                                                      \
                }                                                                                  \
                T lx = LOG(x[i]), l1x = LOG1P(-x[i]);                                              \
                lx = lx < -100 ? -100 : lx;                                                        \
                l1x = l1x < -100 ? -100 : l1x;                                                     \
                l[i] = (y[i] - 1) * l1x - y[i] * lx;                                               \
                if (w) l[i] *= w[i];                                                               \
                s += l[i];                                                                         \
            }                                                                                      \
            break;                                                                                 \
        case LM_LOSS_BCE_LOGITS:                                                                   \
            for (int64_t i = lo; i < hi; i++) {                                                    \
                T lw = pw ? 1 + (pw[i] - 1) * y[i] : 1;                                            \
                l[i] = (1 - y[i]) * x[i] + lw * SOFTPLUS_NEG(x[i], EXP, LOG1P);                    \
                if (w) l[i] *= w[i];                                                               \
                s += l[i];                                                                         \
            }                                                                                      \
            break;                                                                                 \
        default: break;                                                                            \
        }                                                                                          \
        return s;                                                                                  \
    }                                                                                              \
                                                                                                   \
    INLINE void pointwise_back_block_##S(const lm_pointwise_args *a, T *restrict gx,               \
                                         T *restrict gy, const T *restrict gl, T scale,            \
                                         int64_t lo, int64_t hi)                                   \
    {                                                                                              \
        const T *restrict x = lm_data(a->input), *restrict y = lm_data(a->target);                \
        const T *restrict w = a->weight ? lm_data(a->weight) : NULL;                               \
        const T *restrict pw = a->pos_weight ? lm_data(a->pos_weight) : NULL;                      \
        T beta = (T)a->beta;                                                                       \
        for (int64_t i = lo; i < hi; i++) {                                                        \
            T g = gl ? scale * gl[i] : scale, d = x[i] - y[i], dx = 0, dy = 0;                     \
            switch (a->op) {                                                                       \
            case LM_LOSS_MSE: dx = 2 * d; dy = -dx; break;                                         \
            case LM_LOSS_L1: dx = (T)((d > 0) - (d < 0)); dy = -dx; break;                         \
            case LM_LOSS_SMOOTH_L1:                                                                \
                dx = d < -beta ? -1 : d > beta ? 1 : d / beta;                                     \
                dy = -dx;                                                                          \
                break;                                                                             \
            case LM_LOSS_BCE: {                                                                    \
                T den = (1 - x[i]) * x[i];                                                         \
                dx = d / (den > (T)1e-12 ? den : (T)1e-12);                                        \
                dy = LOG1P(-x[i]) - LOG(x[i]);                                                     \
                break;                                                                             \
            }                                                                                      \
            case LM_LOSS_BCE_LOGITS: {                                                             \
                T p = pw ? pw[i] : 1, e = EXP(-FABS(x[i]));                                        \
                T sig = x[i] >= 0 ? 1 / (1 + e) : e / (1 + e);                                    \
                dx = (p * y[i] + 1 - y[i]) * sig - p * y[i];                                       \
                dy = (p - 1) * SOFTPLUS_NEG(x[i], EXP, LOG1P) - x[i];                              \
                break;                                                                             \
            }                                                                                      \
            default: break;                                                                        \
            }                                                                                      \
            if (w) g *= w[i];                                                                      \
            if (gx) gx[i] = g * dx;                                                                \
            if (gy) gy[i] = g * dy;                                                                \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void pointwise_back_##S(const lm_pointwise_args *a, T *gx, T *gy, const T *gl,          \
                                   T scale)                                                        \
    {                                                                                              \
        int64_t n = lm_numel(a->input), bs = block_size(n);                                        \
        FOR_JOBS(parallel(n), b, (n + bs - 1) / bs,                                                \
                 pointwise_back_block_##S(a, gx, gy, gl, scale, b * bs, min64(n, b * bs + bs)));   \
    }

POINTWISE_KERNELS(f32, float, expf, logf, log1pf, fabsf)
POINTWISE_KERNELS(f64, double, exp, log, log1p, fabs)

/* Block b of a point-wise loss: its losses, their sum in part[b], its first bad input. */
static void pointwise_job(const lm_pointwise_args *a, lm_tensor *loss, int64_t b, int64_t bs,
                          int64_t n, double *part, int64_t *first)
{
    int64_t lo = b * bs, hi = min64(n, lo + bs);
    part[b] = a->input->dtype == LM_F32
                  ? pointwise_block_f32(a, lm_data(loss), lo, hi, &first[b])
                  : pointwise_block_f64(a, lm_data(loss), lo, hi, &first[b]);
}

static bool cpu_pointwise(const lm_pointwise_args *a, lm_tensor *loss, double *total, int64_t *bad)
{
    int64_t n = lm_numel(a->input), bs = block_size(n), nb = (n + bs - 1) / bs;
    double part[SUM_BLOCKS];
    int64_t first[SUM_BLOCKS];
    FOR_JOBS(parallel(n), b, nb, pointwise_job(a, loss, b, bs, n, part, first));
    double s = 0;
    for (int64_t b = 0; b < nb; b++) {
        if (first[b] >= 0) {
            *bad = first[b];
            return false;
        }
        s += part[b];
    }
    *total = s;
    return true;
}

static void cpu_pointwise_backward(const lm_pointwise_args *a, lm_tensor *grad_input,
                                   lm_tensor *grad_target, const lm_tensor *grad_loss,
                                   double scale)
{
    void *gx = grad_input ? lm_data(grad_input) : NULL;
    void *gy = grad_target ? lm_data(grad_target) : NULL;
    const void *gl = grad_loss ? lm_data(grad_loss) : NULL;
    if (a->input->dtype == LM_F32) pointwise_back_f32(a, gx, gy, gl, (float)scale);
    else pointwise_back_f64(a, gx, gy, gl, scale);
}

LM_INTERNAL const struct lm_loss_kernels lm__cpu_loss_kernels = {
    .softmax = cpu_softmax,
    .softmax_backward = cpu_softmax_backward,
    .cross_entropy = cpu_cross_entropy,
    .cross_entropy_backward = cpu_cross_entropy_backward,
    .nll_loss = cpu_nll_loss,
    .nll_loss_backward = cpu_nll_loss_backward,
    .pointwise = cpu_pointwise,
    .pointwise_backward = cpu_pointwise_backward,
};
