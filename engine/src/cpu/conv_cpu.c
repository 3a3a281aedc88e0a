/* conv_cpu.c — the CPU kernels of the convolution and pooling family (see conv.h): convolutions
 * as im2col + GEMM on OpenBLAS, pooling as direct loops.
 *
 * Convolution, per sample and group (K = C/G * kH * kW rows of patches, P = oH * oW positions):
 *   forward        y[O/G, P]  = w[O/G, K] · col[K, P]        col = im2col(x)
 *   input grad     col[K, P]  = w[O/G, K]ᵀ · gy[O/G, P]      gx  = col2im(col)
 *   weight grad    gw[O/G, K] += gy[O/G, P] · col[K, P]ᵀ     summed over the batch
 * A 1x1 convolution with stride 1 and no padding reads x (writes gx) directly: col is x. The
 * forward may keep every sample's col for the weight gradient (conv.h, saved_cols_numel): then
 * the backward skips im2col and sums over several samples per product.
 *
 * Products whose output is small and whose sum is long (the weight gradient of a layer with
 * few channels: 6x25 from 784 terms per sample in LeNet's first layer) go to a dot-product
 * kernel written here, 2x faster there than OpenBLAS, which spends its time packing; the rest go
 * to OpenBLAS.
 *
 * Threads, and results that do not depend on their number. Each product is cut into tiles of
 * its output that depend on its sizes only (at most 16, of at least 2^20 multiply-adds), and
 * each tile is one single-threaded call: OpenBLAS's own threading, and any cut that depended on
 * the thread count, change how tile edges are rounded (measured: sgemm 6x900x72 differs in the
 * last bits between 1 and 3 threads). The weight gradient is summed over a fixed number of
 * batch chunks, each into its own buffer, added in chunk order at the end. With that fixed, the
 * threads are spread in one of two ways:
 *   batch mode        at least as many samples (chunks) as threads: each thread takes whole
 *                     samples with its own col buffer;
 *   cooperative mode  fewer: the threads share each sample in turn, im2col rows, product tiles
 *                     and col2im channels among them.
 * Every BLAS call runs inside an active parallel region when there are several threads (the
 * OpenMP build of OpenBLAS then stays on the calling thread), except in calls too small for
 * OpenBLAS to thread anyway, which run on the calling thread alone.
 *
 * Scratch buffers are engine tensors, so the large-block cache serves them again at the next
 * step instead of the system mapping (and page-faulting) fresh memory every call. */
#include "../conv.h"

#include <cblas.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* Product tiles: at most this many, of at least this many multiply-adds, and this many rows
 * and columns at least (in multiples of 16, BLAS's register tiles). */
#define TILE_MAX 16
#define TILE_WORK ((double)(1 << 20))
#define TILE_MIN_SIDE 64
#define SERIAL_WORK ((double)(1 << 18))
/* The dot-product kernel takes op(a) op(b)ᵀ products of at most this many outputs summing at
 * least this many terms (measured: 6x25 from 784 terms, 54 GFLOP/s against OpenBLAS's 26;
 * 16x150 from 100 terms, 27 against 58; 64x576 from 3136, 62 against 89). */
#define DOT_MAX_OUT 4096
#define DOT_MIN_K 512
/* The weight gradient's batch chunks: at most this many, and their buffers at most this many
 * bytes in all. */
#define WGRAD_CHUNKS 16
#define WGRAD_CHUNK_BYTES ((int64_t)64 << 20)
/* The forward keeps its patch matrices for the weight gradient up to this many elements
 * (LeNet's layers: 1.25M and 0.96M at batch 64; a ResNet layer of 64 channels on 56x56 at batch
 * 8: 14.5M, rebuilt instead). */
#define SAVED_COLS_NUMEL ((int64_t)1 << 22)

/* Strides and dilations are mostly 1: skip the division there (a 64-bit divide per im2col row
 * took half of LeNet's im2col time). */
static int64_t ceil_div(int64_t a, int64_t b) { return b == 1 ? a : (a + b - 1) / b; }
static int64_t round16(int64_t a) { return (a + 15) & ~(int64_t)15; }

/* The output columns ow whose input column ow*s - p + kj*d falls inside [0, W): [*lo, *hi). */
static void valid_cols(const lm_conv_geom *g, int64_t kj, int64_t *lo, int64_t *hi)
{
    int64_t iw0 = kj * g->dw - g->pw;
    int64_t a = iw0 >= 0 ? 0 : ceil_div(-iw0, g->sw);
    int64_t b = iw0 >= g->w ? 0 : ceil_div(g->w - iw0, g->sw);
    if (b > g->ow) b = g->ow;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* The output rows oh whose input row oh*s - p + ki*d falls inside [0, H): [*top, *bottom). */
static void valid_rows(const lm_conv_geom *g, int64_t ki, int64_t *top, int64_t *bottom)
{
    int64_t ih0 = ki * g->dh - g->ph;
    int64_t a = ih0 >= 0 ? 0 : ceil_div(-ih0, g->sh);
    int64_t b = ih0 >= g->h ? 0 : ceil_div(g->h - ih0, g->sh);
    if (b > g->oh) b = g->oh;
    if (a > b) a = b;
    *top = a;
    *bottom = b;
}

/* Copying short runs (a row of an output plane: 10 elements in LeNet's second layer). A
 * vectorized loop leaves a run shorter than its vector to a scalar remainder loop; with AVX-512
 * one masked load and store covers the remainder (LeNet's im2col: 0.067 ms a batch as a loop,
 * 0.048 masked, measured apart from the rest). col2im adds runs into rows it has just written:
 * there a masked store followed by an overlapping load stalls, and the plain loop was faster
 * (LeNet's input gradient: 0.82 ms against 0.98). */
#if defined(__AVX512F__)
static inline void copy_run_float(float *restrict o, const float *restrict s, int64_t n)
{
    for (; n >= 16; n -= 16, o += 16, s += 16) _mm512_storeu_ps(o, _mm512_loadu_ps(s));
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    _mm512_mask_storeu_ps(o, m, _mm512_maskz_loadu_ps(m, s));
}

static inline void copy_run_double(double *restrict o, const double *restrict s, int64_t n)
{
    for (; n >= 8; n -= 8, o += 8, s += 8) _mm512_storeu_pd(o, _mm512_loadu_pd(s));
    const __mmask8 m = (__mmask8)((1u << n) - 1);
    _mm512_mask_storeu_pd(o, m, _mm512_maskz_loadu_pd(m, s));
}
#else
#define COPY_RUN(T)                                                                               \
    static inline void copy_run_##T(T *restrict o, const T *restrict s, int64_t n)                \
    {                                                                                             \
        _Pragma("omp simd")                                                                       \
        for (int64_t i = 0; i < n; i++) o[i] = s[i];                                              \
    }
COPY_RUN(float)
COPY_RUN(double)
#endif

/* ---- typed helpers -------------------------------------------------------------------------- */

/* im2col, rows [r0, r1) of the patches of one group of one sample, row r = (c, ki, kj): x
 * [cg, H, W] -> col[r, 0:oH*oW] (rows ldc apart), zeros where a patch reaches into the padding.
 *
 * col2im, one channel c of the adjoint: x[c] = bias (or 0) plus every patch value of col put
 * back where it came from. A channel's rows land in its own plane only.
 *
 * The dot-product kernel: c [m, n] (+)= a [m, k] · b [n, k]ᵀ, both k-contiguous, in blocks of
 * 4x4 outputs whose 16 sums run in vector registers of V lanes; rows past the edge repeat the
 * last one and are not stored. */
#define CONV_TYPED(T, P, V)                                                                       \
    static void im2col_rows_##T(const lm_conv_geom *g, const void *xv, void *colv, int64_t ldc,   \
                                int64_t r0, int64_t r1)                                           \
    {                                                                                             \
        const int64_t H = g->h, W = g->w, oH = g->oh, oW = g->ow, sw = g->sw, sh = g->sh;         \
        int64_t kj = r0 % g->kw, ki = r0 / g->kw % g->kh, c = r0 / (g->kw * g->kh);               \
        for (int64_t r = r0; r < r1; r++) {                                                       \
            const T *restrict xc = (const T *)xv + c * H * W;                                     \
            T *restrict out = (T *)colv + r * ldc;                                                \
            int64_t lo, hi, top, bottom;                                                          \
            valid_cols(g, kj, &lo, &hi);                                                          \
            valid_rows(g, ki, &top, &bottom);                                                     \
            const int64_t iw0 = kj * g->dw - g->pw, ih0 = ki * g->dh - g->ph;                     \
            /* Output rows whose input row is padding are zeros, and contiguous. */               \
            memset(out, 0, sizeof(T) * (size_t)(top * oW));                                       \
            memset(out + bottom * oW, 0, sizeof(T) * (size_t)((oH - bottom) * oW));               \
            for (int64_t oh = top; oh < bottom; oh++) {                                           \
                T *restrict o = out + oh * oW;                                                    \
                const T *restrict src = xc + (oh * sh + ih0) * W;                                 \
                for (int64_t ow = 0; ow < lo; ow++) o[ow] = 0;                                    \
                for (int64_t ow = hi; ow < oW; ow++) o[ow] = 0;                                   \
                if (sw == 1) {                                                                    \
                    if (hi > lo) copy_run_##T(o + lo, src + iw0 + lo, hi - lo);                   \
                } else {                                                                          \
                    _Pragma("omp simd")                                                           \
                    for (int64_t ow = lo; ow < hi; ow++) o[ow] = src[iw0 + ow * sw];              \
                }                                                                                 \
            }                                                                                     \
            if (++kj == g->kw) {                                                                  \
                kj = 0;                                                                           \
                if (++ki == g->kh) {                                                              \
                    ki = 0;                                                                       \
                    c++;                                                                          \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    static void col2im_channel_##T(const lm_conv_geom *g, const void *colv, const void *biasv,    \
                                   void *xv, int64_t c)                                           \
    {                                                                                             \
        const int64_t H = g->h, W = g->w, oW = g->ow, kh = g->kh, kw = g->kw;                     \
        const int64_t sh = g->sh, sw = g->sw, P = g->oh * g->ow;                                  \
        T *restrict xc = (T *)xv + c * H * W;                                                     \
        const T b0 = biasv ? ((const T *)biasv)[c] : (T)0;                                        \
        for (int64_t i = 0; i < H * W; i++) xc[i] = b0;                                           \
        for (int64_t ki = 0; ki < kh; ki++) {                                                     \
            int64_t top, bottom;                                                                  \
            valid_rows(g, ki, &top, &bottom);                                                     \
            const int64_t ih0 = ki * g->dh - g->ph;                                               \
            for (int64_t kj = 0; kj < kw; kj++) {                                                 \
                const T *restrict in = (const T *)colv + ((c * kh + ki) * kw + kj) * P;           \
                int64_t lo, hi;                                                                   \
                valid_cols(g, kj, &lo, &hi);                                                      \
                if (hi <= lo) continue;                                                           \
                const int64_t iw0 = kj * g->dw - g->pw;                                           \
                for (int64_t oh = top; oh < bottom; oh++) {                                       \
                    T *restrict row = xc + (oh * sh + ih0) * W;                                   \
                    const T *restrict src = in + oh * oW;                                         \
                    if (sw == 1) {                                                                \
                        _Pragma("omp simd")                                                       \
                        for (int64_t ow = lo; ow < hi; ow++) row[iw0 + ow] += src[ow];            \
                    } else {                                                                      \
                        for (int64_t ow = lo; ow < hi; ow++) row[iw0 + ow * sw] += src[ow];       \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* c [m, n] = op(a) op(b), plus c when accumulate; row-major, sizes checked by the caller. */ \
    static void gemm_##T(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a,        \
                         int64_t lda, const void *b, int64_t ldb, bool accumulate, void *c,       \
                         int64_t ldc)                                                             \
    {                                                                                             \
        cblas_##P##gemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,                            \
                        tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, 1, a, (int)lda,   \
                        b, (int)ldb, accumulate ? 1 : 0, c, (int)ldc);                            \
    }                                                                                             \
                                                                                                  \
    static void gemm_dot_##T(int64_t m, int64_t n, int64_t k, const void *av, int64_t lda,        \
                             const void *bv, int64_t ldb, bool accumulate, void *cv, int64_t ldc) \
    {                                                                                             \
        const T *restrict a = av, *restrict b = bv;                                               \
        T *restrict c = cv;                                                                       \
        const int64_t kv = k / V * V;                                                             \
        for (int64_t i0 = 0; i0 < m; i0 += 4)                                                     \
            for (int64_t j0 = 0; j0 < n; j0 += 4) {                                               \
                const T *ar[4], *br[4];                                                           \
                for (int ii = 0; ii < 4; ii++) ar[ii] = a + (i0 + ii < m ? i0 + ii : m - 1) * lda;\
                for (int jj = 0; jj < 4; jj++) br[jj] = b + (j0 + jj < n ? j0 + jj : n - 1) * ldb;\
                T acc[4][4][V];                                                                   \
                memset(acc, 0, sizeof acc);                                                       \
                for (int64_t p = 0; p < kv; p += V)                                               \
                    for (int ii = 0; ii < 4; ii++)                                                \
                        for (int jj = 0; jj < 4; jj++) {                                          \
                            _Pragma("omp simd")                                                   \
                            for (int l = 0; l < V; l++)                                           \
                                acc[ii][jj][l] += ar[ii][p + l] * br[jj][p + l];                  \
                        }                                                                         \
                for (int ii = 0; ii < 4 && i0 + ii < m; ii++)                                     \
                    for (int jj = 0; jj < 4 && j0 + jj < n; jj++) {                               \
                        T s = 0;                                                                  \
                        for (int l = 0; l < V; l++) s += acc[ii][jj][l];                          \
                        for (int64_t p = kv; p < k; p++) s += ar[ii][p] * br[jj][p];              \
                        T *o = c + (i0 + ii) * ldc + j0 + jj;                                     \
                        *o = accumulate ? *o + s : s;                                             \
                    }                                                                             \
            }                                                                                     \
    }                                                                                             \
                                                                                                  \
    /* c[i, j] = b[i] for an m x n block with row stride ldc. */                                  \
    static void fill_rows_##T(void *cv, int64_t ldc, const void *bv, int64_t m, int64_t n)        \
    {                                                                                             \
        T *restrict c = cv;                                                                       \
        const T *restrict b = bv;                                                                 \
        for (int64_t i = 0; i < m; i++) {                                                         \
            const T v = b[i];                                                                     \
            _Pragma("omp simd")                                                                   \
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = v;                                   \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* d[i] += s[i]. */                                                                           \
    static void add_into_##T(void *dv, const void *sv, int64_t n)                                 \
    {                                                                                             \
        T *restrict d = dv;                                                                       \
        const T *restrict s = sv;                                                                 \
        _Pragma("omp simd")                                                                       \
        for (int64_t i = 0; i < n; i++) d[i] += s[i];                                             \
    }

CONV_TYPED(float, s, 16)
CONV_TYPED(double, d, 8)

/* The typed pieces the dtype-independent drivers call: once per row, channel or tile, never
 * per element. */
typedef struct {
    int64_t es;
    void (*im2col_rows)(const lm_conv_geom *g, const void *x, void *col, int64_t ldc, int64_t r0,
                        int64_t r1);
    void (*col2im_channel)(const lm_conv_geom *g, const void *col, const void *bias, void *x,
                           int64_t c);
    void (*gemm)(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                 const void *b, int64_t ldb, bool accumulate, void *c, int64_t ldc);
    void (*gemm_dot)(int64_t m, int64_t n, int64_t k, const void *a, int64_t lda, const void *b,
                     int64_t ldb, bool accumulate, void *c, int64_t ldc);
    void (*fill_rows)(void *c, int64_t ldc, const void *b, int64_t m, int64_t n);
    void (*add_into)(void *dst, const void *src, int64_t n);
} typed_ops;

static const typed_ops ops_f32 = {4,          im2col_rows_float, col2im_channel_float,
                                  gemm_float, gemm_dot_float,   fill_rows_float,
                                  add_into_float};
static const typed_ops ops_f64 = {8,           im2col_rows_double, col2im_channel_double,
                                  gemm_double, gemm_dot_double,   fill_rows_double,
                                  add_into_double};

/* ---- products in fixed tiles -------------------------------------------------------------- */

/* c [m, n] = op(a) op(b) (+ c when acc), with c's rows first set to bias[i] when bias is given
 * (then always accumulated). Row-major. */
typedef struct {
    bool ta, tb, acc;
    int64_t m, n, k;
    const char *a, *b, *bias;
    int64_t lda, ldb, ldc;
    char *c;
} product;

typedef struct {
    int64_t tm, tn; /* tile sides */
    int64_t rows, cols;
} tiling;

/* Tiles that depend on the product's sizes only: the longer side is halved while the tiles
 * stay large enough. */
static tiling tiles_of(const product *p)
{
    double want = (double)p->m * (double)p->n * (double)p->k / TILE_WORK;
    if (want > TILE_MAX) want = TILE_MAX;
    int64_t rows = 1, cols = 1;
    while ((double)(rows * cols * 2) <= want) {
        bool split_cols = p->n / cols >= p->m / rows;
        if (split_cols && p->n / (cols * 2) >= TILE_MIN_SIDE)
            cols *= 2;
        else if (p->m / (rows * 2) >= TILE_MIN_SIDE)
            rows *= 2;
        else if (p->n / (cols * 2) >= TILE_MIN_SIDE)
            cols *= 2;
        else
            break;
    }
    tiling t;
    t.tm = rows > 1 ? round16(ceil_div(p->m, rows)) : p->m;
    t.tn = cols > 1 ? round16(ceil_div(p->n, cols)) : p->n;
    t.rows = t.tm ? ceil_div(p->m, t.tm) : 0;
    t.cols = t.tn ? ceil_div(p->n, t.tn) : 0;
    return t;
}

static void run_tile(const typed_ops *t, const product *p, const tiling *tl, int64_t tile)
{
    const int64_t es = t->es;
    const int64_t i0 = tile / tl->cols * tl->tm, j0 = tile % tl->cols * tl->tn;
    const int64_t m = p->m - i0 < tl->tm ? p->m - i0 : tl->tm;
    const int64_t n = p->n - j0 < tl->tn ? p->n - j0 : tl->tn;
    /* Row i0 of op(a): row i0 of a, or column i0 of its stored transpose; likewise column j0
     * of op(b). */
    const char *a = p->a + (p->ta ? i0 : i0 * p->lda) * es;
    const char *b = p->b + (p->tb ? j0 * p->ldb : j0) * es;
    char *c = p->c + (i0 * p->ldc + j0) * es;
    if (p->bias) t->fill_rows(c, p->ldc, p->bias + i0 * es, m, n);
    const bool acc = p->acc || p->bias;
    if (!p->ta && p->tb && m * n <= DOT_MAX_OUT && p->k >= DOT_MIN_K)
        t->gemm_dot(m, n, p->k, a, p->lda, b, p->ldb, acc, c, p->ldc);
    else
        t->gemm(p->ta, p->tb, m, n, p->k, a, p->lda, b, p->ldb, acc, c, p->ldc);
}

/* Every tile, on this thread (batch mode). */
static void run_product(const typed_ops *t, const product *p)
{
    const tiling tl = tiles_of(p);
    for (int64_t i = 0; i < tl.rows * tl.cols; i++) run_tile(t, p, &tl, i);
}

/* The tiles shared among the threads of the enclosing region (cooperative mode); ends with a
 * barrier. */
static void share_product(const typed_ops *t, const product *p)
{
    const tiling tl = tiles_of(p);
#pragma omp for schedule(static, 1)
    for (int64_t i = 0; i < tl.rows * tl.cols; i++) run_tile(t, p, &tl, i);
}

/* ---- convolution drivers ------------------------------------------------------------------ */

/* The per-group sizes of a geometry. */
typedef struct {
    int64_t cg, og, k, p; /* channels in and out per group, patch rows, output positions */
    bool direct;          /* 1x1, stride 1, no padding: col is the input itself */
} group_dims;

static group_dims dims_of(const lm_conv_geom *g)
{
    group_dims d;
    d.cg = g->c / g->groups;
    d.og = g->o / g->groups;
    d.k = d.cg * g->kh * g->kw;
    d.p = g->oh * g->ow;
    d.direct = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 &&
               g->oh == g->h && g->ow == g->w;
    return d;
}

/* CBLAS takes int sizes: refuse what it cannot address rather than truncate. The saved patch
 * matrices have rows of N*P. */
static lm_status check_blas(const lm_conv_geom *g, const group_dims *d)
{
    if (d->k > INT_MAX || d->p * g->n > INT_MAX || d->og > INT_MAX)
        return lm__error(LM_ERR_UNSUPPORTED,
                         "conv2d: a patch matrix of [%lld,%lld] exceeds BLAS's 32-bit sizes",
                         (long long)d->k, (long long)(d->p * g->n));
    return LM_OK;
}

/* The threads of a call and its mode: batch mode when items (samples or chunks) are at least
 * as many as the threads. A call of fewer than SERIAL_WORK multiply-adds runs on the calling
 * thread: starting a team costs more, and no product in it is large enough for OpenBLAS to
 * thread (it keeps m*n*k <= 2^18 on one thread). */
static int plan_threads(int64_t items, const lm_conv_geom *g, const group_dims *d, bool *batch)
{
    const double work = (double)g->n * (double)g->o * (double)d->k * (double)d->p;
    int t = omp_in_parallel() || work < SERIAL_WORK ? 1 : lm__threads();
    *batch = items >= t;
    return t;
}

/* A scratch buffer of n elements of dtype dt (an engine tensor, so large ones are cached). */
static lm_tensor *scratch(int64_t n, lm_dtype dt)
{
    return lm__new("conv2d", 1, (const int64_t[]){n > 0 ? n : 1}, dt, LM_CPU);
}

/* im2col of one group of one sample into col (rows ldc apart), by this thread alone or shared
 * (ending with a barrier). */
static void im2col_all(const typed_ops *t, const lm_conv_geom *g, const group_dims *d,
                       const char *x, char *col, int64_t ldc)
{
    t->im2col_rows(g, x, col, ldc, 0, d->k);
}

static void im2col_shared(const typed_ops *t, const lm_conv_geom *g, const group_dims *d,
                          const char *x, char *col, int64_t ldc)
{
    const int64_t id = omp_get_thread_num(), nt = omp_get_num_threads();
    t->im2col_rows(g, x, col, ldc, d->k * id / nt, d->k * (id + 1) / nt);
#pragma omp barrier
}

static int64_t cpu_saved_cols_numel(const lm_conv_geom *g)
{
    const group_dims d = dims_of(g);
    const int64_t n = g->groups * d.k * g->n * d.p;
    return d.direct || n > SAVED_COLS_NUMEL ? 0 : n;
}

/* Where the patch matrix of sample n, group gi lies: in the saved matrices [G, K, N*P], or in
 * the thread's own buffer [K, P]. */
typedef struct {
    char *base;
    int64_t ld;
} cols_at;

static cols_at locate_cols(const lm_conv_geom *g, const group_dims *d, int64_t es, char *saved,
                           char *own, int64_t n, int64_t gi)
{
    if (!saved) return (cols_at){own, d->p};
    const int64_t ld = g->n * d->p;
    return (cols_at){saved + (gi * d->k * ld + n * d->p) * es, ld};
}

/* y_g = w_g · col_g (+ bias), for one sample and group. */
static product forward_product(const group_dims *d, int64_t es, const char *w, const char *b,
                               const char *xcol, int64_t ldb, char *y, int64_t gi)
{
    return (product){.m = d->og, .n = d->p, .k = d->k,
                     .a = w + gi * d->og * d->k * es, .lda = d->k,
                     .b = xcol, .ldb = ldb,
                     .bias = b ? b + gi * d->og * es : NULL,
                     .c = y, .ldc = d->p};
}

static lm_status cpu_conv2d(const lm_conv_geom *g, const lm_tensor *x, const lm_tensor *w,
                            const lm_tensor *b, lm_tensor *y, lm_tensor *saved)
{
    const typed_ops *t = x->dtype == LM_F64 ? &ops_f64 : &ops_f32;
    const group_dims d = dims_of(g);
    if (check_blas(g, &d)) return lm_last_status();
    if (lm_numel(y) == 0) return LM_OK;
    bool batch;
    const int nt = plan_threads(g->n, g, &d, &batch);
    const int64_t es = t->es, bufs = batch ? nt : 1;
    lm_tensor *cols = d.direct || saved ? NULL : scratch(d.k * d.p * bufs, x->dtype);
    if (!d.direct && !saved && !cols) return lm_last_status();
    const char *xd = lm_data(x), *wd = lm_data(w), *bd = b ? lm_data(b) : NULL;
    char *yd = lm_data(y), *cd = cols ? lm_data(cols) : NULL, *sd = saved ? lm_data(saved) : NULL;
    const int64_t N = g->n, G = g->groups, xs = g->c * g->h * g->w, ys = g->o * d.p;
#pragma omp parallel num_threads(nt)
    {
        char *own = cd ? cd + (batch ? omp_get_thread_num() : 0) * d.k * d.p * es : NULL;
        if (batch) {
#pragma omp for schedule(static)
            for (int64_t n = 0; n < N; n++)
                for (int64_t gi = 0; gi < G; gi++) {
                    const char *xg = xd + (n * xs + gi * d.cg * g->h * g->w) * es;
                    const cols_at c = locate_cols(g, &d, es, sd, own, n, gi);
                    if (!d.direct) im2col_all(t, g, &d, xg, c.base, c.ld);
                    product p = forward_product(&d, es, wd, bd, d.direct ? xg : c.base,
                                                d.direct ? d.p : c.ld,
                                                yd + (n * ys + gi * d.og * d.p) * es, gi);
                    run_product(t, &p);
                }
        } else {
            for (int64_t n = 0; n < N; n++)
                for (int64_t gi = 0; gi < G; gi++) {
                    const char *xg = xd + (n * xs + gi * d.cg * g->h * g->w) * es;
                    const cols_at c = locate_cols(g, &d, es, sd, own, n, gi);
                    if (!d.direct) im2col_shared(t, g, &d, xg, c.base, c.ld);
                    product p = forward_product(&d, es, wd, bd, d.direct ? xg : c.base,
                                                d.direct ? d.p : c.ld,
                                                yd + (n * ys + gi * d.og * d.p) * es, gi);
                    share_product(t, &p);
                }
        }
    }
    lm_release(cols);
    return LM_OK;
}

/* col [K, P] = w_gᵀ · gy_g, or gx_g itself (+ bias) on the direct path. */
static product input_product(const group_dims *d, int64_t es, const char *w, const char *gy,
                             const char *bias, char *out, int64_t gi)
{
    return (product){.ta = true, .m = d->k, .n = d->p, .k = d->og,
                     .a = w + gi * d->og * d->k * es, .lda = d->k,
                     .b = gy, .ldb = d->p,
                     .bias = d->direct ? bias : NULL,
                     .c = out, .ldc = d->p};
}

static lm_status cpu_conv2d_input_grad(const lm_conv_geom *g, const lm_tensor *gy,
                                       const lm_tensor *w, const lm_tensor *b, lm_tensor *gx)
{
    const typed_ops *t = gy->dtype == LM_F64 ? &ops_f64 : &ops_f32;
    const group_dims d = dims_of(g);
    if (check_blas(g, &d)) return lm_last_status();
    if (lm_numel(gx) == 0) return LM_OK;
    bool batch;
    const int nt = plan_threads(g->n, g, &d, &batch);
    const int64_t es = t->es, bufs = batch ? nt : 1;
    lm_tensor *cols = d.direct ? NULL : scratch(d.k * d.p * bufs, gy->dtype);
    if (!d.direct && !cols) return lm_last_status();
    const char *gyd = lm_data(gy), *wd = lm_data(w), *bd = b ? lm_data(b) : NULL;
    char *gxd = lm_data(gx), *cd = cols ? lm_data(cols) : NULL;
    const int64_t N = g->n, G = g->groups, plane = g->h * g->w;
#pragma omp parallel num_threads(nt)
    {
        char *col = cd ? cd + (batch ? omp_get_thread_num() : 0) * d.k * d.p * es : NULL;
        if (batch) {
#pragma omp for schedule(static)
            for (int64_t n = 0; n < N; n++)
                for (int64_t gi = 0; gi < G; gi++) {
                    char *gxg = gxd + (n * g->c + gi * d.cg) * plane * es;
                    const char *bg = bd ? bd + gi * d.cg * es : NULL;
                    product p = input_product(&d, es, wd, gyd + (n * g->o + gi * d.og) * d.p * es,
                                              bg, d.direct ? gxg : col, gi);
                    run_product(t, &p);
                    if (!d.direct)
                        for (int64_t c = 0; c < d.cg; c++) t->col2im_channel(g, col, bg, gxg, c);
                }
        } else {
            for (int64_t n = 0; n < N; n++)
                for (int64_t gi = 0; gi < G; gi++) {
                    char *gxg = gxd + (n * g->c + gi * d.cg) * plane * es;
                    const char *bg = bd ? bd + gi * d.cg * es : NULL;
                    product p = input_product(&d, es, wd, gyd + (n * g->o + gi * d.og) * d.p * es,
                                              bg, d.direct ? gxg : col, gi);
                    share_product(t, &p);
                    if (!d.direct) {
#pragma omp for schedule(static)
                        for (int64_t c = 0; c < d.cg; c++) t->col2im_channel(g, col, bg, gxg, c);
                    }
                }
        }
    }
    lm_release(cols);
    return LM_OK;
}

/* The weight gradient's batch chunks (depending on the batch and the weight's size only). */
static int64_t wgrad_chunks(int64_t n, int64_t wbytes)
{
    int64_t chunks = n < WGRAD_CHUNKS ? n : WGRAD_CHUNKS;
    int64_t fit = WGRAD_CHUNK_BYTES / wbytes;
    return chunks > fit ? (fit > 1 ? fit : 1) : chunks;
}

/* The weight gradient's work on one chunk of samples [n0, n1) into sum, by this thread alone
 * (shared == false) or shared by the region's threads. With saved patch matrices, one product
 * per group sums the whole chunk: gy's rows of the chunk are first gathered side by side into
 * gyc [O/G, (n1-n0)*P]. Without, each sample's patches are rebuilt into col. */
typedef struct {
    const typed_ops *t;
    const lm_conv_geom *g;
    const group_dims *d;
    const char *x, *gy, *saved;
} wgrad_job;

/* Row q = (o, s) of gyc: gy[n0 + s, gi*og + o, :]. */
static void gather_row(const wgrad_job *j, int64_t gi, int64_t n0, int64_t n1, char *gyc,
                       int64_t q)
{
    const group_dims *d = j->d;
    const int64_t es = j->t->es, o = q / (n1 - n0), s = q % (n1 - n0);
    memcpy(gyc + (o * (n1 - n0) + s) * d->p * es,
           j->gy + ((n0 + s) * j->g->o + gi * d->og + o) * d->p * es, (size_t)(d->p * es));
}

static void wgrad_chunk(const wgrad_job *j, int64_t n0, int64_t n1, char *sum, char *col,
                        char *gyc, bool shared)
{
    const typed_ops *t = j->t;
    const lm_conv_geom *g = j->g;
    const group_dims *d = j->d;
    const int64_t es = t->es, xs = g->c * g->h * g->w, ys = g->o * d->p;
    for (int64_t gi = 0; gi < g->groups; gi++) {
        char *out = sum + gi * d->og * d->k * es;
        if (j->saved) {
            const int64_t rows = d->og * (n1 - n0), len = (n1 - n0) * d->p;
            if (shared) {
#pragma omp for schedule(static)
                for (int64_t q = 0; q < rows; q++) gather_row(j, gi, n0, n1, gyc, q);
            } else {
                for (int64_t q = 0; q < rows; q++) gather_row(j, gi, n0, n1, gyc, q);
            }
            const cols_at c = locate_cols(g, d, es, (char *)j->saved, NULL, n0, gi);
            product p = {.tb = true, .m = d->og, .n = d->k, .k = len,
                         .a = gyc, .lda = len, .b = c.base, .ldb = c.ld,
                         .c = out, .ldc = d->k};
            if (shared)
                share_product(t, &p);
            else
                run_product(t, &p);
            continue;
        }
        for (int64_t n = n0; n < n1; n++) {
            const char *xg = j->x + (n * xs + gi * d->cg * g->h * g->w) * es;
            if (!d->direct) {
                if (shared)
                    im2col_shared(t, g, d, xg, col, d->p);
                else
                    im2col_all(t, g, d, xg, col, d->p);
            }
            product p = {.tb = true, .acc = n != n0, .m = d->og, .n = d->k, .k = d->p,
                         .a = j->gy + (n * ys + gi * d->og * d->p) * es, .lda = d->p,
                         .b = d->direct ? xg : col, .ldb = d->p,
                         .c = out, .ldc = d->k};
            if (shared)
                share_product(t, &p);
            else
                run_product(t, &p);
        }
    }
}

static lm_status cpu_conv2d_weight_grad(const lm_conv_geom *g, const lm_tensor *x,
                                        const lm_tensor *gy, const lm_tensor *saved,
                                        lm_tensor *gw)
{
    const typed_ops *t = gy->dtype == LM_F64 ? &ops_f64 : &ops_f32;
    const group_dims d = dims_of(g);
    if (check_blas(g, &d)) return lm_last_status();
    const int64_t es = t->es, wsize = lm_numel(gw);
    if (wsize == 0) return LM_OK;
    if (g->n == 0) {
        memset(lm_data(gw), 0, (size_t)(wsize * es));
        return LM_OK;
    }
    const int64_t N = g->n, chunks = wgrad_chunks(N, wsize * es);
    bool batch;
    const int nt = plan_threads(chunks, g, &d, &batch);
    const int64_t bufs = batch ? nt : 1;
    /* Per thread: a col buffer when patches are rebuilt, a gathered gy when they are saved. */
    const int64_t own = saved ? d.og * ceil_div(N, chunks) * d.p : d.direct ? 0 : d.k * d.p;
    /* Chunk 0 sums into gw itself, the others into their own buffers. */
    lm_tensor *acc = chunks > 1 ? scratch(wsize * (chunks - 1), gy->dtype) : NULL;
    lm_tensor *bufv = own ? scratch(own * bufs, gy->dtype) : NULL;
    if ((chunks > 1 && !acc) || (own && !bufv)) {
        lm_release(acc);
        lm_release(bufv);
        return lm_last_status();
    }
    const wgrad_job job = {t, g, &d, lm_data(x), lm_data(gy), saved ? lm_data(saved) : NULL};
    char *gwd = lm_data(gw), *ad = acc ? lm_data(acc) : NULL, *bd = bufv ? lm_data(bufv) : NULL;
#pragma omp parallel num_threads(nt)
    {
        char *mine = bd ? bd + (batch ? omp_get_thread_num() : 0) * own * es : NULL;
        char *col = saved ? NULL : mine, *gyc = saved ? mine : NULL;
        if (batch) {
#pragma omp for schedule(static)
            for (int64_t ch = 0; ch < chunks; ch++)
                wgrad_chunk(&job, N * ch / chunks, N * (ch + 1) / chunks,
                            ch == 0 ? gwd : ad + (ch - 1) * wsize * es, col, gyc, false);
        } else {
            for (int64_t ch = 0; ch < chunks; ch++)
                wgrad_chunk(&job, N * ch / chunks, N * (ch + 1) / chunks,
                            ch == 0 ? gwd : ad + (ch - 1) * wsize * es, col, gyc, true);
        }
    }
    for (int64_t ch = 1; ch < chunks; ch++) t->add_into(gwd, ad + (ch - 1) * wsize * es, wsize);
    lm_release(acc);
    lm_release(bufv);
    return LM_OK;
}

/* ---- pooling -------------------------------------------------------------------------------- */

/* Max pooling windows of up to this many taps take the vectorized path. */
#define MAX_POOL_TAPS 256

/* Planes are independent: spread them over threads when there is enough work. */
#define POOL_PARALLEL(g, per_plane) \
    ((g)->planes > 1 && (double)(g)->planes * (double)(per_plane) >= (double)LM_PARALLEL_GRAIN)

/* Max pooling as PyTorch: a window's first in-bounds position is the index until a larger
 * value (or a NaN) replaces it; a window wholly in the padding (possible with dilation) gives
 * -inf and index -1, which the backward skips. Average pooling: the window clipped to the
 * padded input gives the count_include_pad divisor, clipped to the input the other one; a
 * window entirely in the padding gives 0. Adaptive windows: [floor(i*H/oH), ceil((i+1)*H/oH)). */
#define POOL_TYPED(T)                                                                             \
    /* The max of window rows [h0, h1) (step dh) and columns [w0, w1) (step dw) of plane xp. */   \
    static inline T max_window_##T(const lm_pool_geom *g, const T *restrict xp, int64_t h0,       \
                                   int64_t h1, int64_t w0, int64_t w1, int64_t *best)             \
    {                                                                                             \
        T m = -(T)INFINITY;                                                                       \
        *best = h0 < h1 && w0 < w1 ? h0 * g->w + w0 : -1;                                         \
        for (int64_t ih = h0; ih < h1; ih += g->dh)                                               \
            for (int64_t iw = w0; iw < w1; iw += g->dw) {                                         \
                const T v = xp[ih * g->w + iw];                                                   \
                if (v > m || v != v) {                                                            \
                    m = v;                                                                        \
                    *best = ih * g->w + iw;                                                       \
                }                                                                                 \
            }                                                                                     \
        return m;                                                                                 \
    }                                                                                             \
                                                                                                  \
    /* The interior windows [owl, owr) of one output row, in a loop the compiler vectorizes       \
     * across outputs (a compare-and-branch per element would mispredict half the time on real    \
     * data): window ow covers base + ow*sw + off[t] for its taps t, and keeps the first largest  \
     * value. A NaN, which must win with its last position, is only flagged: the caller redoes    \
     * the row exactly. with_idx is a constant at each call, so each caller gets its own loop. */ \
    static inline __attribute__((always_inline)) bool max_row_##T(                                \
        const T *restrict xp, T *restrict yr, int64_t *restrict ir, int64_t owl, int64_t owr,     \
        int64_t base, int64_t sw, const int64_t *restrict off, int64_t taps, const bool with_idx) \
    {                                                                                             \
        int nan = 0;                                                                              \
        for (int64_t ow = owl; ow < owr; ow++) {                                                  \
            const int64_t b = base + ow * sw;                                                     \
            int64_t best = b;                                                                     \
            T m = -(T)INFINITY;                                                                   \
            for (int64_t t = 0; t < taps; t++) {                                                  \
                const T v = xp[b + off[t]];                                                       \
                nan |= v != v;                                                                    \
                best = v > m ? b + off[t] : best;                                                 \
                m = v > m ? v : m;                                                                \
            }                                                                                     \
            yr[ow] = m;                                                                           \
            if (with_idx) ir[ow] = best;                                                          \
        }                                                                                         \
        return nan != 0;                                                                          \
    }                                                                                             \
                                                                                                  \
    /* Windows at the edges clip their columns and take the exact loop, as do windows of more     \
     * than MAX_POOL_TAPS taps. A window clipped at the top or bottom keeps its first rows*kw     \
     * taps, counted from its first row inside. */                                                \
    static void max_pool_##T(const lm_pool_geom *g, const T *restrict x, T *restrict y,           \
                             int64_t *restrict idx)                                               \
    {                                                                                             \
        const int64_t H = g->h, W = g->w, oH = g->oh, oW = g->ow, sh = g->sh, sw = g->sw;         \
        const int64_t ph = g->ph, pw = g->pw, kh = g->kh, kw = g->kw, dh = g->dh, dw = g->dw;     \
        const int64_t span = (kw - 1) * dw;                                                       \
        int64_t off[MAX_POOL_TAPS];                                                               \
        const bool fast = kh * kw <= MAX_POOL_TAPS;                                               \
        for (int64_t t = 0; fast && t < kh * kw; t++) off[t] = t / kw * dh * W + t % kw * dw;     \
        int64_t owl = ceil_div(pw, sw);                                                           \
        int64_t owr = W - 1 + pw - span >= 0 ? (W - 1 + pw - span) / sw + 1 : 0;                  \
        if (owl > oW || !fast) owl = oW;                                                          \
        if (owr > oW) owr = oW;                                                                   \
        if (owr < owl) owr = owl;                                                                 \
        _Pragma("omp parallel for schedule(static) if (POOL_PARALLEL(g, oH * oW * kh * kw))")     \
        for (int64_t pl = 0; pl < g->planes; pl++) {                                              \
            const T *restrict xp = x + pl * H * W;                                                \
            for (int64_t oh = 0; oh < oH; oh++) {                                                 \
                int64_t h0 = oh * sh - ph;                                                        \
                const int64_t h1 = h0 + (kh - 1) * dh + 1 < H ? h0 + (kh - 1) * dh + 1 : H;       \
                while (h0 < 0) h0 += dh;                                                          \
                const int64_t taps = (h1 > h0 ? (h1 - h0 + dh - 1) / dh : 0) * kw;                \
                T *restrict yr = y + (pl * oH + oh) * oW;                                         \
                int64_t *restrict ir = idx ? idx + (pl * oH + oh) * oW : NULL;                    \
                const int64_t base = h0 * W - pw;                                                 \
                const bool nan =                                                                  \
                    ir ? max_row_##T(xp, yr, ir, owl, owr, base, sw, off, taps, true)             \
                       : max_row_##T(xp, yr, ir, owl, owr, base, sw, off, taps, false);           \
                for (int64_t ow = 0; ow < oW; ow++) {                                             \
                    if (ow >= owl && ow < owr && !nan) continue;                                  \
                    int64_t w0 = ow * sw - pw, best;                                              \
                    const int64_t w1 = w0 + span + 1 < W ? w0 + span + 1 : W;                     \
                    while (w0 < 0) w0 += dw;                                                      \
                    yr[ow] = max_window_##T(g, xp, h0, h1, w0, w1, &best);                        \
                    if (ir) ir[ow] = best;                                                        \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    static void max_pool_bwd_##T(const lm_pool_geom *g, const T *restrict gy,                     \
                                 const int64_t *restrict idx, T *restrict gx)                     \
    {                                                                                             \
        const int64_t HW = g->h * g->w, P = g->oh * g->ow;                                        \
        _Pragma("omp parallel for schedule(static) if (POOL_PARALLEL(g, HW + P))")                \
        for (int64_t pl = 0; pl < g->planes; pl++) {                                              \
            T *gp = gx + pl * HW;                                                                 \
            memset(gp, 0, sizeof(T) * (size_t)HW);                                                \
            for (int64_t i = 0; i < P; i++)                                                       \
                if (idx[pl * P + i] >= 0) gp[idx[pl * P + i]] += gy[pl * P + i];                  \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* The window of output (oh, ow) clipped to the input, and its divisor. */                    \
    static inline T avg_window_##T(const lm_pool_geom *g, int64_t oh, int64_t ow, int64_t *h0,    \
                                   int64_t *h1, int64_t *w0, int64_t *w1)                         \
    {                                                                                             \
        int64_t a = oh * g->sh - g->ph, b = ow * g->sw - g->pw;                                   \
        int64_t c = a + g->kh < g->h + g->ph ? a + g->kh : g->h + g->ph;                          \
        int64_t e = b + g->kw < g->w + g->pw ? b + g->kw : g->w + g->pw;                          \
        const int64_t padded = (c - a) * (e - b);                                                 \
        if (a < 0) a = 0;                                                                         \
        if (b < 0) b = 0;                                                                         \
        if (c > g->h) c = g->h;                                                                   \
        if (e > g->w) e = g->w;                                                                   \
        *h0 = a, *h1 = c, *w0 = b, *w1 = e;                                                       \
        if (a >= c || b >= e) return 0;                                                           \
        return (T)(g->count_include_pad ? padded : (c - a) * (e - b));                            \
    }                                                                                             \
                                                                                                  \
    static void avg_pool_##T(const lm_pool_geom *g, const T *restrict x, T *restrict y)           \
    {                                                                                             \
        const int64_t H = g->h, W = g->w, oH = g->oh, oW = g->ow;                                 \
        _Pragma("omp parallel for schedule(static) if (POOL_PARALLEL(g, oH * oW * g->kh * g->kw))")\
        for (int64_t pl = 0; pl < g->planes; pl++) {                                              \
            const T *xp = x + pl * H * W;                                                         \
            for (int64_t oh = 0; oh < oH; oh++)                                                   \
                for (int64_t ow = 0; ow < oW; ow++) {                                             \
                    int64_t h0, h1, w0, w1;                                                       \
                    const T div = avg_window_##T(g, oh, ow, &h0, &h1, &w0, &w1);                  \
                    T s = 0;                                                                      \
                    for (int64_t ih = h0; ih < h1; ih++)                                          \
                        for (int64_t iw = w0; iw < w1; iw++) s += xp[ih * W + iw];                \
                    y[pl * oH * oW + oh * oW + ow] = div == 0 ? (T)0 : s / div;                   \
                }                                                                                 \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    static void avg_pool_bwd_##T(const lm_pool_geom *g, const T *restrict gy, T *restrict gx)     \
    {                                                                                             \
        const int64_t H = g->h, W = g->w, oH = g->oh, oW = g->ow;                                 \
        _Pragma("omp parallel for schedule(static) if (POOL_PARALLEL(g, oH * oW * g->kh * g->kw))")\
        for (int64_t pl = 0; pl < g->planes; pl++) {                                              \
            T *gp = gx + pl * H * W;                                                              \
            memset(gp, 0, sizeof(T) * (size_t)(H * W));                                           \
            for (int64_t oh = 0; oh < oH; oh++)                                                   \
                for (int64_t ow = 0; ow < oW; ow++) {                                             \
                    int64_t h0, h1, w0, w1;                                                       \
                    const T div = avg_window_##T(g, oh, ow, &h0, &h1, &w0, &w1);                  \
                    if (div == 0) continue;                                                       \
                    const T v = gy[pl * oH * oW + oh * oW + ow] / div;                            \
                    for (int64_t ih = h0; ih < h1; ih++)                                          \
                        for (int64_t iw = w0; iw < w1; iw++) gp[ih * W + iw] += v;                \
                }                                                                                 \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    static void adaptive_pool_##T(const lm_pool_geom *g, const T *restrict x, T *restrict y)      \
    {                                                                                             \
        const int64_t H = g->h, W = g->w, oH = g->oh, oW = g->ow;                                 \
        _Pragma("omp parallel for schedule(static) if (POOL_PARALLEL(g, H * W + oH * oW))")       \
        for (int64_t pl = 0; pl < g->planes; pl++) {                                              \
            const T *xp = x + pl * H * W;                                                         \
            for (int64_t oh = 0; oh < oH; oh++) {                                                 \
                const int64_t h0 = oh * H / oH, h1 = ceil_div((oh + 1) * H, oH);                  \
                for (int64_t ow = 0; ow < oW; ow++) {                                             \
                    const int64_t w0 = ow * W / oW, w1 = ceil_div((ow + 1) * W, oW);              \
                    T s = 0;                                                                      \
                    for (int64_t ih = h0; ih < h1; ih++)                                          \
                        for (int64_t iw = w0; iw < w1; iw++) s += xp[ih * W + iw];                \
                    y[pl * oH * oW + oh * oW + ow] = s / (T)((h1 - h0) * (w1 - w0));              \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    static void adaptive_pool_bwd_##T(const lm_pool_geom *g, const T *restrict gy,                \
                                      T *restrict gx)                                             \
    {                                                                                             \
        const int64_t H = g->h, W = g->w, oH = g->oh, oW = g->ow;                                 \
        _Pragma("omp parallel for schedule(static) if (POOL_PARALLEL(g, H * W + oH * oW))")       \
        for (int64_t pl = 0; pl < g->planes; pl++) {                                              \
            T *gp = gx + pl * H * W;                                                              \
            memset(gp, 0, sizeof(T) * (size_t)(H * W));                                           \
            for (int64_t oh = 0; oh < oH; oh++) {                                                 \
                const int64_t h0 = oh * H / oH, h1 = ceil_div((oh + 1) * H, oH);                  \
                for (int64_t ow = 0; ow < oW; ow++) {                                             \
                    const int64_t w0 = ow * W / oW, w1 = ceil_div((ow + 1) * W, oW);              \
                    const T v = gy[pl * oH * oW + oh * oW + ow] / (T)((h1 - h0) * (w1 - w0));     \
                    for (int64_t ih = h0; ih < h1; ih++)                                          \
                        for (int64_t iw = w0; iw < w1; iw++) gp[ih * W + iw] += v;                \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }

POOL_TYPED(float)
POOL_TYPED(double)

static void cpu_max_pool2d(const lm_pool_geom *g, const lm_tensor *x, lm_tensor *y,
                           lm_tensor *idx)
{
    int64_t *id = idx ? lm_data(idx) : NULL;
    if (x->dtype == LM_F64)
        max_pool_double(g, lm_data(x), lm_data(y), id);
    else
        max_pool_float(g, lm_data(x), lm_data(y), id);
}

static void cpu_max_pool2d_backward(const lm_pool_geom *g, const lm_tensor *gy,
                                    const lm_tensor *idx, lm_tensor *gx)
{
    if (gy->dtype == LM_F64)
        max_pool_bwd_double(g, lm_data(gy), lm_data(idx), lm_data(gx));
    else
        max_pool_bwd_float(g, lm_data(gy), lm_data(idx), lm_data(gx));
}

static void cpu_avg_pool2d(const lm_pool_geom *g, const lm_tensor *x, lm_tensor *y)
{
    if (x->dtype == LM_F64)
        avg_pool_double(g, lm_data(x), lm_data(y));
    else
        avg_pool_float(g, lm_data(x), lm_data(y));
}

static void cpu_avg_pool2d_backward(const lm_pool_geom *g, const lm_tensor *gy, lm_tensor *gx)
{
    if (gy->dtype == LM_F64)
        avg_pool_bwd_double(g, lm_data(gy), lm_data(gx));
    else
        avg_pool_bwd_float(g, lm_data(gy), lm_data(gx));
}

static void cpu_adaptive_avg_pool2d(const lm_pool_geom *g, const lm_tensor *x, lm_tensor *y)
{
    if (x->dtype == LM_F64)
        adaptive_pool_double(g, lm_data(x), lm_data(y));
    else
        adaptive_pool_float(g, lm_data(x), lm_data(y));
}

static void cpu_adaptive_avg_pool2d_backward(const lm_pool_geom *g, const lm_tensor *gy,
                                             lm_tensor *gx)
{
    if (gy->dtype == LM_F64)
        adaptive_pool_bwd_double(g, lm_data(gy), lm_data(gx));
    else
        adaptive_pool_bwd_float(g, lm_data(gy), lm_data(gx));
}

LM_INTERNAL const struct lm_conv_kernels lm__cpu_conv_kernels = {
    .saved_cols_numel = cpu_saved_cols_numel,
    .conv2d = cpu_conv2d,
    .conv2d_input_grad = cpu_conv2d_input_grad,
    .conv2d_weight_grad = cpu_conv2d_weight_grad,
    .max_pool2d = cpu_max_pool2d,
    .max_pool2d_backward = cpu_max_pool2d_backward,
    .avg_pool2d = cpu_avg_pool2d,
    .avg_pool2d_backward = cpu_avg_pool2d_backward,
    .adaptive_avg_pool2d = cpu_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = cpu_adaptive_avg_pool2d_backward,
};
