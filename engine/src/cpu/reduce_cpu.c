/* reduce_cpu.c — CPU kernels of the reductions.
 *
 * A reduction is planned once: size-1 dims are dropped, the kept dims (the output's, in C order)
 * are merged where the input steps through them as one, and the reduced dims are sorted by
 * stride, outermost first, and merged likewise. Then one of two loops runs:
 *   - rows: each output walks its reduced elements in runs along the innermost reduced dim. A run
 *     keeps LANES independent partial results so the loop vectorizes; outputs that are one run
 *     each are reduced in batches, so short rows cost little more than their data. Used when
 *     that dim is contiguous (a sum over the last dim) and whenever the columns loop does not
 *     apply.
 *   - columns: the innermost kept dim is contiguous in the input (a sum over dim 0 of a matrix,
 *     or over dim 1 of a transposed one). A tile of neighbouring outputs is accumulated together,
 *     one contiguous row segment per reduced element, so memory is read in order.
 * The work is cut into tasks: chunks of outputs times blocks of the reduced range. The blocks
 * depend on the shape only, never on the thread count, and their partial results are combined in
 * block order, so a result is the same whatever the number of threads.
 *
 * Accumulators: floating results accumulate in double (for f32 inputs too), integer sums and
 * products in uint64 (wrapping as two's complement, like PyTorch's int64), max/min in the
 * input's own type. var/std run two passes, the mean and then the squared deviations from it;
 * logsumexp too, the max and then the sum of exp(x - max). */
#include "../reduce.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define LANES 16            /* independent partial results of a run (two AVX-512 vectors) */
#define TILE 1024           /* outputs accumulated together by the columns loop */
#define BLOCK_ELEMS 262144  /* input elements per block when the reduced range is split */
#define MAX_BLOCKS 256      /* bounds the partial results kept for the split */
#define SPLIT_OUTPUTS 1024  /* split the reduced range only when there are fewer outputs */
#define ROW_BATCH 64        /* outputs reduced by one call of the rows loop */
#define COL_ROWS 64         /* rows folded by one call of the columns loop */

/* ---- the plan -------------------------------------------------------------------------------- */

typedef struct {
    int nk, nr;
    int64_t ksize[LM_MAX_DIMS], kstride[LM_MAX_DIMS]; /* kept dims, C order; input strides */
    int64_t rsize[LM_MAX_DIMS], rstride[LM_MAX_DIMS]; /* reduced dims, outermost first */
    int64_t nout, nred;
} plan;

static void plan_build(plan *pl, const lm_tensor *in, uint32_t mask)
{
    pl->nk = pl->nr = 0;
    pl->nout = pl->nred = 1;
    for (int d = 0; d < in->ndim; d++) {
        int64_t n = in->shape[d], s = in->strides[d];
        if (mask >> d & 1) {
            pl->nred *= n;
            if (n != 1) {
                pl->rsize[pl->nr] = n;
                pl->rstride[pl->nr++] = s;
            }
            continue;
        }
        pl->nout *= n;
        if (n == 1) continue;
        int k = pl->nk;
        if (k > 0 && pl->kstride[k - 1] == s * n) {
            pl->ksize[k - 1] *= n;
            pl->kstride[k - 1] = s;
        } else {
            pl->ksize[k] = n;
            pl->kstride[k] = s;
            pl->nk++;
        }
    }
    /* The order of the reduced dims only changes rounding (an index-producing reduction has a
     * single reduced dim), so put the smallest stride innermost. Insertion sort: stable. */
    for (int i = 1; i < pl->nr; i++) {
        int64_t n = pl->rsize[i], s = pl->rstride[i];
        int j = i;
        for (; j > 0 && pl->rstride[j - 1] < s; j--) {
            pl->rsize[j] = pl->rsize[j - 1];
            pl->rstride[j] = pl->rstride[j - 1];
        }
        pl->rsize[j] = n;
        pl->rstride[j] = s;
    }
    int m = 0;
    for (int i = 0; i < pl->nr; i++) {
        if (m > 0 && pl->rstride[m - 1] == pl->rstride[i] * pl->rsize[i]) {
            pl->rsize[m - 1] *= pl->rsize[i];
            pl->rstride[m - 1] = pl->rstride[i];
        } else {
            pl->rsize[m] = pl->rsize[i];
            pl->rstride[m++] = pl->rstride[i];
        }
    }
    pl->nr = m;
    /* A dim of size 1 stands in for an empty group, so the loops need no special case. */
    if (pl->nk == 0) {
        pl->ksize[0] = 1;
        pl->kstride[0] = 0;
        pl->nk = 1;
    }
    if (pl->nr == 0) {
        pl->rsize[0] = 1;
        pl->rstride[0] = 0;
        pl->nr = 1;
    }
}

/* ---- what is accumulated --------------------------------------------------------------------- */

typedef enum {
    /* in double */
    K_SUM, K_PROD, K_SQDEV, K_EXPSUM, K_ABSSUM, K_SQSUM, K_POWSUM, K_NONZERO, K_ABSMAX,
    /* in uint64 */
    K_ISUM, K_IPROD,
    /* in the input's type, with the index of the first extreme element */
    K_MAX, K_MIN,
} kind;

static bool kind_is_double(kind k) { return k <= K_ABSMAX; }
static bool kind_is_int(kind k) { return k == K_ISUM || k == K_IPROD; }

/* A partial result. d: double kinds and the max/min of floats; i: integer sums and products
 * (as two's complement) and the max/min of integers; idx: position of the max/min in the flat
 * reduced range, -1 while nothing has been seen. */
typedef struct {
    double d;
    int64_t i;
    int64_t idx;
} acc_t;

static acc_t acc_identity(kind k)
{
    return (acc_t){.d = k == K_PROD ? 1.0 : 0.0, .i = k == K_IPROD ? 1 : 0, .idx = -1};
}

/* a * b + c, in one rounding where the CPU has FMA (-std=c11 keeps gcc from contracting). */
#ifdef __FMA__
#define MADD(a, b, c) fma((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* exp(x) for x <= 0 (the deviations from the max in logsumexp), written so that loops over it
 * vectorize: x = k ln2 + r with |r| <= ln2/2, e^r by its Taylor polynomial to degree 13 (error
 * below 1e-17) evaluated by Estrin's scheme (a short dependency chain), then k added to the
 * exponent bits. Below -700, where e^x < 1e-304 cannot change a sum that holds e^0 = 1, x is
 * clamped so 2^k stays a normal number; -inf gives ~1e-304. A NaN x (from an infinite or NaN
 * max) gives garbage, but logsumexp then returns the max itself and ignores the sum. */
static inline double exp_nonpos(double x)
{
    x = x < -700.0 ? -700.0 : x;
    const double shifter = 0x1.8p52; /* adding it rounds to an integer held in the low bits */
    double kd = MADD(x, 0x1.71547652b82fep0, shifter);
    int64_t kbits;
    memcpy(&kbits, &kd, sizeof kbits);
    kd -= shifter;
    double r = MADD(kd, -0x1.ef35793c76730p-45, MADD(kd, -0x1.62e42fefa3800p-1, x));
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double e01 = 1.0 + r, e23 = MADD(r, 1.0 / 6, 1.0 / 2), e45 = MADD(r, 1.0 / 120, 1.0 / 24);
    double e67 = MADD(r, 1.0 / 5040, 1.0 / 720), e89 = MADD(r, 1.0 / 362880, 1.0 / 40320);
    double e1011 = MADD(r, 1.0 / 39916800, 1.0 / 3628800);
    double e1213 = MADD(r, 1.0 / 6227020800.0, 1.0 / 479001600);
    double f0 = MADD(r2, e23, e01), f1 = MADD(r2, e67, e45), f2 = MADD(r2, e1011, e89);
    double q = MADD(r8, MADD(r4, e1213, f2), MADD(r4, f1, f0));
    int64_t qbits;
    memcpy(&qbits, &q, sizeof qbits);
    qbits += (int64_t)((uint64_t)kbits << 52);
    memcpy(&q, &qbits, sizeof q);
    return q;
}

/* NaN propagates: once seen it stays. */
static inline double nan_max(double a, double y) { return (y > a || y != y) ? y : a; }

#define UPD_SUM(a, x, c) ((a) += (x))
#define UPD_PROD(a, x, c) ((a) *= (x))
#define UPD_SQDEV(a, x, c) ((a) += ((x) - (c)) * ((x) - (c)))
#define UPD_EXPSUM(a, x, c) ((a) += exp_nonpos((x) - (c)))
#define UPD_ABSSUM(a, x, c) ((a) += fabs(x))
#define UPD_SQSUM(a, x, c) ((a) += (x) * (x))
#define UPD_POWSUM(a, x, c) ((a) += pow(fabs(x), pw))
#define UPD_NONZERO(a, x, c) ((a) += (x) != 0)
#define UPD_ABSMAX(a, x, c) ((a) = nan_max((a), fabs(x)))
#define CMB_ADD(a, b) ((a) + (b))
#define CMB_MUL(a, b) ((a) * (b))
#define CMB_MAX(a, b) nan_max((a), (b))

/* kind, identity, update of an accumulator a with element x (c: the output's centre from the
 * first pass), combination of two partial results */
#define DOUBLE_KINDS(X)                                                                            \
    X(K_SUM, 0.0, UPD_SUM, CMB_ADD)                                                                \
    X(K_PROD, 1.0, UPD_PROD, CMB_MUL)                                                              \
    X(K_SQDEV, 0.0, UPD_SQDEV, CMB_ADD)                                                            \
    X(K_EXPSUM, 0.0, UPD_EXPSUM, CMB_ADD)                                                          \
    X(K_ABSSUM, 0.0, UPD_ABSSUM, CMB_ADD)                                                          \
    X(K_SQSUM, 0.0, UPD_SQSUM, CMB_ADD)                                                            \
    X(K_POWSUM, 0.0, UPD_POWSUM, CMB_ADD)                                                          \
    X(K_NONZERO, 0.0, UPD_NONZERO, CMB_ADD)                                                        \
    X(K_ABSMAX, 0.0, UPD_ABSMAX, CMB_MAX)

static double dcombine(kind k, double a, double b)
{
    switch (k) {
    case K_PROD: return a * b;
    case K_ABSMAX: return nan_max(a, b);
    default: return a + b;
    }
}

/* ---- kernels per input dtype ----------------------------------------------------------------- */

/* count runs of n elements, stride s (elements), the first at p and each next os elements
 * further, each reduced to one double in res (cs: the runs' centres, or NULL). */
#define ROW_CASE(K, INIT, UPD, CMB)                                                                \
    case K:                                                                                        \
        for (int64_t o = 0; o < count; o++) {                                                      \
            const elem_t *restrict q = p + o * os;                                                 \
            double c = cs ? cs[o] : 0.0;                                                           \
            (void)c;                                                                               \
            if (n < LANES) {                                                                       \
                double a0 = (INIT);                                                                \
                for (int64_t i = 0; i < n; i++) {                                                  \
                    double x = (double)q[i * s];                                                   \
                    UPD(a0, x, c);                                                                 \
                }                                                                                  \
                res[o] = a0;                                                                       \
                continue;                                                                          \
            }                                                                                      \
            double a[LANES];                                                                       \
            for (int l = 0; l < LANES; l++) a[l] = (INIT);                                         \
            int64_t i = 0;                                                                         \
            if (s == 1) {                                                                          \
                for (; i + LANES <= n; i += LANES)                                                 \
                    for (int l = 0; l < LANES; l++) {                                              \
                        double x = (double)q[i + l];                                               \
                        UPD(a[l], x, c);                                                           \
                    }                                                                              \
            } else {                                                                               \
                for (; i + LANES <= n; i += LANES)                                                 \
                    for (int l = 0; l < LANES; l++) {                                              \
                        double x = (double)q[(i + l) * s];                                         \
                        UPD(a[l], x, c);                                                           \
                    }                                                                              \
            }                                                                                      \
            for (; i < n; i++) {                                                                   \
                double x = (double)q[i * s];                                                       \
                UPD(a[0], x, c);                                                                   \
            }                                                                                      \
            for (int w = LANES / 2; w > 0; w /= 2)                                                 \
                for (int l = 0; l < w; l++) a[l] = CMB(a[l], a[l + w]);                            \
            res[o] = a[0];                                                                         \
        }                                                                                          \
        break;

/* nrow consecutive row segments of w elements folded into w accumulators (c: their centres).
 * Four rows per pass load and store each accumulator once for four elements; the order of the
 * additions is the same as row by row. */
#define COL_CASE(K, INIT, UPD, CMB)                                                                \
    case K: {                                                                                      \
        int rw = 0;                                                                                \
        for (; rw + 4 <= nrow; rw += 4) {                                                          \
            const elem_t *restrict p0 = rows[rw], *restrict p1 = rows[rw + 1];                     \
            const elem_t *restrict p2 = rows[rw + 2], *restrict p3 = rows[rw + 3];                 \
            for (int64_t j = 0; j < w; j++) {                                                      \
                double aj = a[j], x = (double)p0[j];                                               \
                UPD(aj, x, c[j]);                                                                  \
                x = (double)p1[j];                                                                 \
                UPD(aj, x, c[j]);                                                                  \
                x = (double)p2[j];                                                                 \
                UPD(aj, x, c[j]);                                                                  \
                x = (double)p3[j];                                                                 \
                UPD(aj, x, c[j]);                                                                  \
                a[j] = aj;                                                                         \
            }                                                                                      \
        }                                                                                          \
        for (; rw < nrow; rw++) {                                                                  \
            const elem_t *restrict pk = rows[rw];                                                  \
            for (int64_t j = 0; j < w; j++) {                                                      \
                double x = (double)pk[j];                                                          \
                UPD(a[j], x, c[j]);                                                                \
            }                                                                                      \
        }                                                                                          \
        break;                                                                                     \
    }

/* The max (or min) of a run with NaN propagation, vectorized: the compare-select reduction
 * ignores NaNs, a separate flag notices them. */
#define PRAGMA(x) _Pragma(#x)
#define EXT_LOOP(T, ISNAN, OP, AT)                                                                 \
    do {                                                                                           \
        PRAGMA(omp simd reduction(OP : m) reduction(| : nan))                                      \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T x = AT;                                                                              \
            m = x OP##_CMP m ? x : m;                                                              \
            nan |= ISNAN(x);                                                                       \
        }                                                                                          \
    } while (0)
#define max_CMP >
#define min_CMP <

#define FLOAT_NAN(x) ((x) != (x))
#define INT_NAN(x) 0

/* Index-tracking scans go block by block: a block's extreme is found vectorized, and only a
 * block that beats the best so far is scanned again for the position. */
#define EXT_BLOCK 256

#define DEFINE_KERNELS(N, T, IS_FLOAT, ISNAN)                                                      \
    static void row_##N(kind k, const T *p, int64_t s, int64_t n, int64_t os, int64_t count,       \
                        const double *cs, double pw, double *restrict res)                         \
    {                                                                                              \
        typedef T elem_t; /* for ROW_CASE */                                                       \
        switch (k) {                                                                               \
            DOUBLE_KINDS(ROW_CASE)                                                                 \
        default: break;                                                                            \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void col_##N(kind k, const T *const *rows, int nrow, int64_t w, double *restrict a,     \
                        const double *restrict c, double pw)                                       \
    {                                                                                              \
        typedef T elem_t; /* for COL_CASE */                                                       \
        switch (k) {                                                                               \
            DOUBLE_KINDS(COL_CASE)                                                                 \
        default: break;                                                                            \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static T ext_##N(bool is_max, const T *restrict p, int64_t s, int64_t n)                       \
    {                                                                                              \
        T m = p[0];                                                                                \
        int nan = 0;                                                                               \
        if (is_max && s == 1) EXT_LOOP(T, ISNAN, max, p[i]);                                       \
        else if (is_max) EXT_LOOP(T, ISNAN, max, p[i * s]);                                        \
        else if (s == 1) EXT_LOOP(T, ISNAN, min, p[i]);                                            \
        else EXT_LOOP(T, ISNAN, min, p[i * s]);                                                    \
        if (nan)                                                                                   \
            for (int64_t i = 0; i < n; i++)                                                        \
                if (ISNAN(p[i * s])) return p[i * s];                                              \
        return m;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* Max (is_max) or min of a run, merged into acc; want_idx tracks the first position     */    \
    /* (i0: the flat reduced index of p[0]). A NaN wins, and the first NaN is the one kept.  */    \
    static void erow_##N(bool is_max, const T *restrict p, int64_t s, int64_t n, int64_t i0,       \
                         bool want_idx, acc_t *acc)                                                \
    {                                                                                              \
        T best = p[0];                                                                             \
        int64_t bi = 0;                                                                            \
        if (!want_idx) {                                                                           \
            best = ext_##N(is_max, p, s, n);                                                       \
        } else if (n < EXT_BLOCK / 8) { /* short: one plain scan */                                \
            for (int64_t i = 1; i < n; i++) {                                                      \
                T x = p[i * s];                                                                    \
                if ((is_max ? x > best : x < best) || (ISNAN(x) && !ISNAN(best))) {                \
                    best = x;                                                                      \
                    bi = i;                                                                        \
                }                                                                                  \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t b0 = 0; b0 < n; b0 += EXT_BLOCK) {                                        \
                int64_t bn = n - b0 < EXT_BLOCK ? n - b0 : EXT_BLOCK;                              \
                const T *q = p + b0 * s;                                                           \
                T m = ext_##N(is_max, q, s, bn);                                                   \
                if (ISNAN(m)) {                                                                    \
                    int64_t j = 0;                                                                 \
                    while (!ISNAN(q[j * s])) j++;                                                  \
                    if (!ISNAN(best)) {                                                            \
                        best = m;                                                                  \
                        bi = b0 + j;                                                               \
                    }                                                                              \
                    break;                                                                         \
                }                                                                                  \
                if (is_max ? m > best : m < best) {                                                \
                    int64_t j = 0;                                                                 \
                    while (q[j * s] != m) j++;                                                     \
                    best = m;                                                                      \
                    bi = b0 + j;                                                                   \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        acc_t r = {.idx = i0 + bi};                                                                \
        if (IS_FLOAT) r.d = (double)best;                                                          \
        else r.i = (int64_t)best;                                                                  \
        ecombine(is_max, IS_FLOAT, acc, &r);                                                       \
    }                                                                                              \
                                                                                                   \
    /* The columns form of erow over nrow rows; r: the reduced index of rows[0]. first starts */   \
    /* the tile from rows[0].                                                                 */   \
    static void ecol_##N(bool is_max, const T *const *rows, int nrow, int64_t w,                   \
                         T *restrict best, int64_t *restrict bi, int64_t r, bool first)            \
    {                                                                                              \
        int k = 0;                                                                                 \
        if (first) {                                                                               \
            const T *restrict p = rows[0];                                                         \
            for (int64_t j = 0; j < w; j++) best[j] = p[j];                                        \
            if (bi)                                                                                \
                for (int64_t j = 0; j < w; j++) bi[j] = r;                                         \
            k = 1;                                                                                 \
        }                                                                                          \
        /* values only: four rows per load and store of the tile */                                \
        for (; !bi && k + 4 <= nrow; k += 4) {                                                     \
            const T *restrict p0 = rows[k], *restrict p1 = rows[k + 1];                            \
            const T *restrict p2 = rows[k + 2], *restrict p3 = rows[k + 3];                        \
            if (is_max) {                                                                          \
                _Pragma("omp simd") for (int64_t j = 0; j < w; j++)                                \
                {                                                                                  \
                    T b = best[j], x;                                                              \
                    x = p0[j], b = (x > b) | ISNAN(x) ? x : b;                                     \
                    x = p1[j], b = (x > b) | ISNAN(x) ? x : b;                                     \
                    x = p2[j], b = (x > b) | ISNAN(x) ? x : b;                                     \
                    x = p3[j], b = (x > b) | ISNAN(x) ? x : b;                                     \
                    best[j] = b;                                                                   \
                }                                                                                  \
            } else {                                                                               \
                _Pragma("omp simd") for (int64_t j = 0; j < w; j++)                                \
                {                                                                                  \
                    T b = best[j], x;                                                              \
                    x = p0[j], b = (x < b) | ISNAN(x) ? x : b;                                     \
                    x = p1[j], b = (x < b) | ISNAN(x) ? x : b;                                     \
                    x = p2[j], b = (x < b) | ISNAN(x) ? x : b;                                     \
                    x = p3[j], b = (x < b) | ISNAN(x) ? x : b;                                     \
                    best[j] = b;                                                                   \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; k < nrow; k++) {                                                                    \
            const T *restrict p = rows[k];                                                         \
            int64_t rk = r + k;                                                                    \
            if (bi && is_max) {                                                                    \
                _Pragma("omp simd") for (int64_t j = 0; j < w; j++)                                \
                {                                                                                  \
                    T x = p[j], b = best[j];                                                       \
                    bool better = (x > b) | (ISNAN(x) & !ISNAN(b));                                \
                    best[j] = better ? x : b;                                                      \
                    bi[j] = better ? rk : bi[j];                                                   \
                }                                                                                  \
            } else if (bi) {                                                                       \
                _Pragma("omp simd") for (int64_t j = 0; j < w; j++)                                \
                {                                                                                  \
                    T x = p[j], b = best[j];                                                       \
                    bool better = (x < b) | (ISNAN(x) & !ISNAN(b));                                \
                    best[j] = better ? x : b;                                                      \
                    bi[j] = better ? rk : bi[j];                                                   \
                }                                                                                  \
            } else if (is_max) {                                                                   \
                _Pragma("omp simd") for (int64_t j = 0; j < w; j++)                                \
                {                                                                                  \
                    T x = p[j], b = best[j];                                                       \
                    best[j] = (x > b) | ISNAN(x) ? x : b;                                          \
                }                                                                                  \
            } else {                                                                               \
                _Pragma("omp simd") for (int64_t j = 0; j < w; j++)                                \
                {                                                                                  \
                    T x = p[j], b = best[j];                                                       \
                    best[j] = (x < b) | ISNAN(x) ? x : b;                                          \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

#define DEFINE_INT_KERNELS(N, T)                                                                   \
    /* Integer sum or product of a run, wrapping modulo 2^64. */                                   \
    static uint64_t irow_##N(kind k, const T *restrict p, int64_t s, int64_t n)                    \
    {                                                                                              \
        uint64_t a[LANES];                                                                         \
        bool prod = k == K_IPROD;                                                                  \
        for (int l = 0; l < LANES; l++) a[l] = prod;                                               \
        int64_t i = 0;                                                                             \
        if (prod) {                                                                                \
            for (; i + LANES <= n; i += LANES)                                                     \
                for (int l = 0; l < LANES; l++) a[l] *= (uint64_t)p[(i + l) * s];                  \
            for (; i < n; i++) a[0] *= (uint64_t)p[i * s];                                         \
            for (int l = 1; l < LANES; l++) a[0] *= a[l];                                          \
        } else if (s == 1) {                                                                       \
            for (; i + LANES <= n; i += LANES)                                                     \
                for (int l = 0; l < LANES; l++) a[l] += (uint64_t)p[i + l];                        \
        } else {                                                                                   \
            for (; i + LANES <= n; i += LANES)                                                     \
                for (int l = 0; l < LANES; l++) a[l] += (uint64_t)p[(i + l) * s];                  \
        }                                                                                          \
        if (!prod) {                                                                               \
            for (; i < n; i++) a[0] += (uint64_t)p[i * s];                                         \
            for (int l = 1; l < LANES; l++) a[0] += a[l];                                          \
        }                                                                                          \
        return a[0];                                                                               \
    }                                                                                              \
                                                                                                   \
    static void icol_##N(kind k, const T *const *rows, int nrow, int64_t w,                        \
                         uint64_t *restrict a)                                                     \
    {                                                                                              \
        for (int r = 0; r < nrow; r++) {                                                           \
            const T *restrict p = rows[r];                                                         \
            if (k == K_IPROD)                                                                      \
                for (int64_t j = 0; j < w; j++) a[j] *= (uint64_t)p[j];                            \
            else                                                                                   \
                for (int64_t j = 0; j < w; j++) a[j] += (uint64_t)p[j];                            \
        }                                                                                          \
    }

/* Merges the later partial max/min b into a: ties keep the earlier index, a NaN wins and the
 * first NaN stays. */
static void ecombine(bool is_max, bool is_float, acc_t *a, const acc_t *b)
{
    if (b->idx < 0) return;
    bool take;
    if (a->idx < 0) {
        take = true;
    } else if (is_float) {
        double x = b->d, y = a->d;
        take = (is_max ? x > y : x < y) || (x != x && y == y);
    } else {
        take = is_max ? b->i > a->i : b->i < a->i;
    }
    if (take) *a = *b;
}

DEFINE_KERNELS(f32, float, 1, FLOAT_NAN)
DEFINE_KERNELS(f64, double, 1, FLOAT_NAN)
DEFINE_KERNELS(i64, int64_t, 0, INT_NAN)
DEFINE_KERNELS(u8, uint8_t, 0, INT_NAN)
DEFINE_INT_KERNELS(i64, int64_t)
DEFINE_INT_KERNELS(u8, uint8_t)
_Static_assert(LM_DTYPE_COUNT == 4, "the reduce kernels cover every dtype");

/* ---- one pass over the input ----------------------------------------------------------------- */

typedef struct {
    const plan *pl;
    kind k;
    lm_reduce_op op;
    lm_dtype dt;              /* input dtype */
    const char *data;         /* the input's element [0,...,0] */
    int64_t esize;
    double pw;                /* norm's p */
    double correction;        /* var, std */
    const double *center;     /* per output, from the first pass (or NULL) */
    double *center_out;       /* a first pass writes its result here instead of out */
    void *out;                /* contiguous, or NULL */
    lm_dtype out_dt;
    int64_t *idx;             /* contiguous, or NULL */
    /* task layout */
    bool columns;
    int64_t nrb, rblk;        /* blocks of the reduced range */
    int64_t ochunk;           /* rows loop: outputs per task */
    int64_t ntile, tile_w;    /* columns loop: tiles per row of outputs, their width */
    int64_t ntasks;
    acc_t *partial;           /* [nrb][nout] when nrb > 1 */
} pass;

/* Runs of a double kind for count outputs: see ROW_CASE. */
static void rows_double(const pass *ps, const char *p, int64_t s, int64_t n, int64_t os,
                        int64_t count, const double *cs, double *res)
{
    kind k = ps->k;
    switch (ps->dt) {
    case LM_F32: row_f32(k, (const float *)p, s, n, os, count, cs, ps->pw, res); break;
    case LM_F64: row_f64(k, (const double *)p, s, n, os, count, cs, ps->pw, res); break;
    case LM_I64: row_i64(k, (const int64_t *)p, s, n, os, count, cs, ps->pw, res); break;
    case LM_U8: row_u8(k, (const uint8_t *)p, s, n, os, count, cs, ps->pw, res); break;
    default: break;
    }
}

/* One run of n elements (i0: the flat reduced index of p[0]) merged into acc. */
static void row_any(const pass *ps, const char *p, int64_t s, int64_t n, int64_t i0, double c,
                    acc_t *acc)
{
    kind k = ps->k;
    if (kind_is_double(k)) {
        double v;
        rows_double(ps, p, s, n, 0, 1, &c, &v);
        acc->d = dcombine(k, acc->d, v);
    } else if (kind_is_int(k)) {
        uint64_t v = ps->dt == LM_I64 ? irow_i64(k, (const int64_t *)p, s, n)
                                      : irow_u8(k, (const uint8_t *)p, s, n);
        uint64_t a = (uint64_t)acc->i;
        acc->i = (int64_t)(k == K_IPROD ? a * v : a + v);
    } else {
        bool is_max = k == K_MAX, want_idx = ps->idx != NULL;
        switch (ps->dt) {
        case LM_F32: erow_f32(is_max, (const float *)p, s, n, i0, want_idx, acc); break;
        case LM_F64: erow_f64(is_max, (const double *)p, s, n, i0, want_idx, acc); break;
        case LM_I64: erow_i64(is_max, (const int64_t *)p, s, n, i0, want_idx, acc); break;
        case LM_U8: erow_u8(is_max, (const uint8_t *)p, s, n, i0, want_idx, acc); break;
        default: break;
        }
    }
}

static void combine(const pass *ps, acc_t *a, const acc_t *b)
{
    if (kind_is_double(ps->k)) a->d = dcombine(ps->k, a->d, b->d);
    else if (ps->k == K_IPROD) a->i = (int64_t)((uint64_t)a->i * (uint64_t)b->i);
    else if (ps->k == K_ISUM) a->i = (int64_t)((uint64_t)a->i + (uint64_t)b->i);
    else ecombine(ps->k == K_MAX, lm_dtype_is_float(ps->dt), a, b);
}

/* Turns the complete accumulators v[0..count) of a double kind, for outputs o0..o0+count-1,
 * into their values (v is overwritten). */
static void finish_doubles(const pass *ps, int64_t o0, int64_t count, double *v)
{
    double n = (double)ps->pl->nred;
    if (ps->center_out) { /* the mean, for var and std */
        for (int64_t j = 0; j < count; j++) ps->center_out[o0 + j] = v[j] / n;
        return;
    }
    double den = fmax(0.0, n - ps->correction);
    switch (ps->op) {
    case LM_REDUCE_MEAN:
        for (int64_t j = 0; j < count; j++) v[j] /= n;
        break;
    case LM_REDUCE_VAR:
        for (int64_t j = 0; j < count; j++) v[j] /= den;
        break;
    case LM_REDUCE_STD:
        for (int64_t j = 0; j < count; j++) v[j] = sqrt(v[j] / den);
        break;
    case LM_REDUCE_LOGSUMEXP:
        for (int64_t j = 0; j < count; j++) {
            double c = ps->center[o0 + j];
            v[j] = isfinite(c) ? c + log(v[j]) : c;
        }
        break;
    case LM_REDUCE_NORM:
        if (ps->k == K_SQSUM)
            for (int64_t j = 0; j < count; j++) v[j] = sqrt(v[j]);
        else if (ps->k == K_POWSUM)
            for (int64_t j = 0; j < count; j++) v[j] = pow(v[j], 1.0 / ps->pw);
        break;
    default: break;
    }
    if (ps->out_dt == LM_F32)
        for (int64_t j = 0; j < count; j++) ((float *)ps->out)[o0 + j] = (float)v[j];
    else
        for (int64_t j = 0; j < count; j++) ((double *)ps->out)[o0 + j] = v[j];
}

/* Turns output o's complete accumulator into its value. */
static void finish(const pass *ps, int64_t o, const acc_t *a)
{
    if (kind_is_double(ps->k)) {
        double v = a->d;
        finish_doubles(ps, o, 1, &v);
        return;
    }
    bool is_float = lm_dtype_is_float(ps->dt);
    if (ps->center_out) { /* the max, for logsumexp; -inf for an empty one */
        ps->center_out[o] = a->idx < 0 ? -INFINITY : is_float ? a->d : (double)a->i;
        return;
    }
    if (ps->idx) ps->idx[o] = a->idx;
    if (!ps->out) return;
    switch (ps->out_dt) {
    case LM_F32: ((float *)ps->out)[o] = (float)a->d; break;
    case LM_F64: ((double *)ps->out)[o] = a->d; break;
    case LM_I64: ((int64_t *)ps->out)[o] = a->i; break;
    case LM_U8: ((uint8_t *)ps->out)[o] = (uint8_t)a->i; break;
    default: break;
    }
}

static void emit(const pass *ps, int64_t rb, int64_t o, const acc_t *a)
{
    if (ps->nrb > 1) ps->partial[rb * ps->pl->nout + o] = *a;
    else finish(ps, o, a);
}

/* A position in the flat reduced range: its multi-index and its element offset. */
typedef struct {
    int64_t idx[LM_MAX_DIMS];
    int64_t off;
} rpos;

static rpos rpos_at(const plan *pl, int64_t r)
{
    rpos p = {.off = 0};
    for (int d = pl->nr - 1; d >= 0; d--) {
        p.idx[d] = r % pl->rsize[d];
        r /= pl->rsize[d];
        p.off += p.idx[d] * pl->rstride[d];
    }
    return p;
}

/* Reduces [r0, r1) of the flat reduced range, starting at position start, for the output whose
 * kept dims are at koff, in runs along the innermost reduced dim. */
static void walk_rows(const pass *ps, int64_t koff, int64_t r0, int64_t r1, const rpos *start,
                      double c, acc_t *a)
{
    const plan *pl = ps->pl;
    int last = pl->nr - 1;
    int64_t s = pl->rstride[last];
    int64_t len = pl->rsize[last] - start->idx[last];
    if (len >= r1 - r0) { /* a single run: the common case */
        row_any(ps, ps->data + (koff + start->off) * ps->esize, s, r1 - r0, r0, c, a);
        return;
    }
    rpos p = *start;
    for (int64_t r = r0; r < r1;) {
        len = pl->rsize[last] - p.idx[last];
        if (len > r1 - r) len = r1 - r;
        row_any(ps, ps->data + (koff + p.off) * ps->esize, s, len, r, c, a);
        r += len;
        p.off -= p.idx[last] * s;
        p.idx[last] = 0;
        for (int d = last - 1; d >= 0; d--) {
            p.off += pl->rstride[d];
            if (++p.idx[d] < pl->rsize[d]) break;
            p.off -= pl->rsize[d] * pl->rstride[d];
            p.idx[d] = 0;
        }
    }
}

static void rows_task(const pass *ps, int64_t oc, int64_t rb)
{
    const plan *pl = ps->pl;
    int64_t o0 = oc * ps->ochunk, o1 = o0 + ps->ochunk < pl->nout ? o0 + ps->ochunk : pl->nout;
    int64_t r0 = rb * ps->rblk, r1 = r0 + ps->rblk < pl->nred ? r0 + ps->rblk : pl->nred;
    rpos start = rpos_at(pl, r0);
    int inner = pl->nk - 1, last = pl->nr - 1;
    /* When each output is a single run, neighbours along the innermost kept dim are reduced
     * by one call: short rows (a sum over a last dim of 4) cost little more than their data. */
    bool batch = kind_is_double(ps->k) && start.idx[last] + (r1 - r0) <= pl->rsize[last];
    int64_t kidx[LM_MAX_DIMS], koff = 0, rem = o0;
    for (int d = inner; d >= 0; d--) {
        kidx[d] = rem % pl->ksize[d];
        rem /= pl->ksize[d];
        koff += kidx[d] * pl->kstride[d];
    }
    for (int64_t o = o0; o < o1;) {
        int64_t count = 1;
        if (batch) {
            double res[ROW_BATCH];
            count = pl->ksize[inner] - kidx[inner];
            if (count > o1 - o) count = o1 - o;
            if (count > ROW_BATCH) count = ROW_BATCH;
            rows_double(ps, ps->data + (koff + start.off) * ps->esize, pl->rstride[last], r1 - r0,
                        pl->kstride[inner], count, ps->center ? ps->center + o : NULL, res);
            if (ps->nrb == 1) {
                finish_doubles(ps, o, count, res);
            } else {
                for (int64_t j = 0; j < count; j++) {
                    acc_t a = acc_identity(ps->k);
                    a.d = res[j];
                    emit(ps, rb, o + j, &a);
                }
            }
        } else {
            acc_t a = acc_identity(ps->k);
            walk_rows(ps, koff, r0, r1, &start, ps->center ? ps->center[o] : 0.0, &a);
            emit(ps, rb, o, &a);
        }
        o += count;
        koff += count * pl->kstride[inner];
        kidx[inner] += count;
        for (int d = inner; d > 0 && kidx[d] == pl->ksize[d]; d--) {
            koff += pl->kstride[d - 1] - pl->ksize[d] * pl->kstride[d];
            kidx[d] = 0;
            kidx[d - 1]++;
        }
    }
}

/* Tile accumulators of the columns loop, one member per kind of accumulator. */
typedef union {
    double d[TILE];
    uint64_t u[TILE];
    float f32[TILE];
    double f64[TILE];
    int64_t i64[TILE];
    uint8_t u8[TILE];
} tile_buf;

/* Typed copies of the row pointers for the kernels of dtype T. */
#define TYPED_ROWS(T, name)                                                                        \
    const T *name[COL_ROWS];                                                                       \
    for (int k_ = 0; k_ < nrow; k_++) name[k_] = (const T *)rows[k_]

/* Folds nrow (1 to COL_ROWS) consecutive rows, the first of reduced index r, into the tile. */
static void col_any(const pass *ps, const char *const *rows, int nrow, int64_t w, tile_buf *t,
                    int64_t *bi, const double *c, int64_t r, bool first)
{
    kind k = ps->k;
    bool is_max = k == K_MAX;
    switch (ps->dt) {
    case LM_F32: {
        TYPED_ROWS(float, p);
        if (kind_is_double(k)) col_f32(k, p, nrow, w, t->d, c, ps->pw);
        else ecol_f32(is_max, p, nrow, w, t->f32, bi, r, first);
        break;
    }
    case LM_F64: {
        TYPED_ROWS(double, p);
        if (kind_is_double(k)) col_f64(k, p, nrow, w, t->d, c, ps->pw);
        else ecol_f64(is_max, p, nrow, w, t->f64, bi, r, first);
        break;
    }
    case LM_I64: {
        TYPED_ROWS(int64_t, p);
        if (kind_is_double(k)) col_i64(k, p, nrow, w, t->d, c, ps->pw);
        else if (kind_is_int(k)) icol_i64(k, p, nrow, w, t->u);
        else ecol_i64(is_max, p, nrow, w, t->i64, bi, r, first);
        break;
    }
    case LM_U8: {
        TYPED_ROWS(uint8_t, p);
        if (kind_is_double(k)) col_u8(k, p, nrow, w, t->d, c, ps->pw);
        else if (kind_is_int(k)) icol_u8(k, p, nrow, w, t->u);
        else ecol_u8(is_max, p, nrow, w, t->u8, bi, r, first);
        break;
    }
    default: break;
    }
}

static acc_t col_result(const pass *ps, const tile_buf *t, const int64_t *bi, int64_t j)
{
    acc_t a = acc_identity(ps->k);
    if (kind_is_double(ps->k)) {
        a.d = t->d[j];
    } else if (kind_is_int(ps->k)) {
        a.i = (int64_t)t->u[j];
    } else {
        a.idx = bi ? bi[j] : 0;
        switch (ps->dt) {
        case LM_F32: a.d = t->f32[j]; break;
        case LM_F64: a.d = t->f64[j]; break;
        case LM_I64: a.i = t->i64[j]; break;
        case LM_U8: a.i = t->u8[j]; break;
        default: break;
        }
    }
    return a;
}

static void cols_task(const pass *ps, int64_t q, int64_t tile, int64_t rb)
{
    const plan *pl = ps->pl;
    int64_t width = pl->ksize[pl->nk - 1];
    int64_t j0 = tile * ps->tile_w, w = width - j0 < ps->tile_w ? width - j0 : ps->tile_w;
    int64_t r0 = rb * ps->rblk, r1 = r0 + ps->rblk < pl->nred ? r0 + ps->rblk : pl->nred;
    int64_t koff = j0, rem = q;
    for (int d = pl->nk - 2; d >= 0; d--) {
        koff += rem % pl->ksize[d] * pl->kstride[d];
        rem /= pl->ksize[d];
    }
    int64_t o0 = q * width + j0;
    rpos p = rpos_at(pl, r0);
    tile_buf t;
    int64_t bi_buf[TILE];
    int64_t *bi = ps->idx ? bi_buf : NULL;
    if (kind_is_double(ps->k)) {
        double init = acc_identity(ps->k).d;
        for (int64_t j = 0; j < w; j++) t.d[j] = init;
    } else if (kind_is_int(ps->k)) {
        uint64_t init = (uint64_t)acc_identity(ps->k).i;
        for (int64_t j = 0; j < w; j++) t.u[j] = init;
    }
    const double *c = ps->center ? ps->center + o0 : NULL;
    int last = pl->nr - 1;
    const char *rows[COL_ROWS];
    int nrow = 0;
    for (int64_t r = r0; r < r1; r++) {
        rows[nrow++] = ps->data + (koff + p.off) * ps->esize;
        if (nrow == COL_ROWS || r + 1 == r1) {
            col_any(ps, rows, nrow, w, &t, bi, c, r + 1 - nrow, r + 1 - nrow == r0);
            nrow = 0;
        }
        for (int d = last; d >= 0; d--) {
            p.off += pl->rstride[d];
            if (++p.idx[d] < pl->rsize[d]) break;
            p.off -= pl->rsize[d] * pl->rstride[d];
            p.idx[d] = 0;
        }
    }
    for (int64_t j = 0; j < w; j++) {
        acc_t a = col_result(ps, &t, bi, j);
        emit(ps, rb, o0 + j, &a);
    }
}

static void run_task(const pass *ps, int64_t task)
{
    int64_t rb = task % ps->nrb, rest = task / ps->nrb;
    if (ps->columns) cols_task(ps, rest / ps->ntile, rest % ps->ntile, rb);
    else rows_task(ps, rest, rb);
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Cuts the work into tasks. The blocks of the reduced range depend on the shape alone (they
 * decide the order of accumulation); how outputs are grouped into tasks may depend on nt. */
static void plan_tasks(pass *ps, int nt)
{
    const plan *pl = ps->pl;
    int64_t nout = pl->nout, nred = pl->nred;
    ps->nrb = 1;
    ps->rblk = nred;
    if (nout < SPLIT_OUTPUTS && nout * nred >= 2 * BLOCK_ELEMS) {
        int64_t blk = ceil_div(BLOCK_ELEMS, nout), least = ceil_div(nred, MAX_BLOCKS);
        ps->rblk = blk > least ? blk : least;
        ps->nrb = ceil_div(nred, ps->rblk);
    }
    int64_t want = nt > 1 ? 4 * (int64_t)nt : 1; /* tasks wanted, for balance */
    if (ps->columns) {
        int64_t width = pl->ksize[pl->nk - 1], rows = nout / width;
        int64_t per_row = ceil_div(want, rows * ps->nrb);
        int64_t tw = (ceil_div(width, per_row) + 15) & ~(int64_t)15;
        ps->tile_w = tw < TILE ? tw : TILE;
        ps->ntile = ceil_div(width, ps->tile_w);
        ps->ntasks = rows * ps->ntile * ps->nrb;
    } else {
        int64_t chunks = ps->nrb > 1 ? 1 : (want < nout ? want : nout);
        ps->ochunk = ceil_div(nout, chunks);
        ps->ntasks = ceil_div(nout, ps->ochunk) * ps->nrb;
    }
}

static lm_status run_pass(pass *ps)
{
    const plan *pl = ps->pl;
    int64_t nout = pl->nout, nred = pl->nred;
    if (nout == 0) return LM_OK;
    if (nred == 0) {
        acc_t a = acc_identity(ps->k);
        for (int64_t o = 0; o < nout; o++) finish(ps, o, &a);
        return LM_OK;
    }
    ps->columns = pl->rstride[pl->nr - 1] != 1 && pl->kstride[pl->nk - 1] == 1;
    int nt = lm__threads();
    if (nout * nred < LM_PARALLEL_GRAIN || omp_in_parallel()) nt = 1;
    plan_tasks(ps, nt);
    ps->partial = NULL;
    if (ps->nrb > 1) {
        ps->partial = lm__malloc((size_t)(ps->nrb * nout) * sizeof(acc_t));
        if (!ps->partial) return LM_ERR_MEMORY;
    }
    if (nt > ps->ntasks) nt = (int)ps->ntasks;
    if (nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t task = 0; task < ps->ntasks; task++) run_task(ps, task);
    } else {
        for (int64_t task = 0; task < ps->ntasks; task++) run_task(ps, task);
    }
    if (ps->nrb > 1) {
        for (int64_t o = 0; o < nout; o++) {
            acc_t a = ps->partial[o];
            for (int64_t rb = 1; rb < ps->nrb; rb++) combine(ps, &a, &ps->partial[rb * nout + o]);
            finish(ps, o, &a);
        }
        lm__free(ps->partial);
    }
    return LM_OK;
}

static kind norm_kind(double p)
{
    if (p == 0) return K_NONZERO;
    if (p == 1) return K_ABSSUM;
    if (p == 2) return K_SQSUM;
    if (isinf(p)) return K_ABSMAX;
    return K_POWSUM;
}

static lm_status cpu_reduce(lm_reduce_op op, lm_tensor *out, lm_tensor *indices,
                            const lm_tensor *in, uint32_t mask, const lm_reduce_params *params)
{
    plan pl;
    plan_build(&pl, in, mask);
    bool is_int = !lm_dtype_is_float(in->dtype);
    pass ps = {
        .pl = &pl,
        .op = op,
        .dt = in->dtype,
        .data = lm_data(in),
        .esize = (int64_t)lm_dtype_size(in->dtype),
        .out = out ? lm_data(out) : NULL,
        .out_dt = out ? out->dtype : LM_F32,
        .idx = indices ? lm_data(indices) : NULL,
    };
    switch (op) {
    case LM_REDUCE_SUM: ps.k = is_int ? K_ISUM : K_SUM; break;
    case LM_REDUCE_PROD: ps.k = is_int ? K_IPROD : K_PROD; break;
    case LM_REDUCE_MEAN: ps.k = K_SUM; break;
    case LM_REDUCE_NORM:
        ps.k = norm_kind(params->p);
        ps.pw = params->p;
        break;
    case LM_REDUCE_AMAX:
    case LM_REDUCE_MAX:
    case LM_REDUCE_ARGMAX: ps.k = K_MAX; break;
    case LM_REDUCE_AMIN:
    case LM_REDUCE_MIN:
    case LM_REDUCE_ARGMIN: ps.k = K_MIN; break;
    case LM_REDUCE_VAR:
    case LM_REDUCE_STD:
    case LM_REDUCE_LOGSUMEXP: {
        /* Two passes: the centre of each output (its mean, or its max), then the deviations. */
        bool lse = op == LM_REDUCE_LOGSUMEXP;
        double *center = lm__malloc((size_t)pl.nout * sizeof(double));
        if (!center) return LM_ERR_MEMORY;
        pass first = ps;
        first.k = lse ? K_MAX : K_SUM;
        first.out = NULL;
        first.idx = NULL;
        first.center_out = center;
        lm_status st = run_pass(&first);
        if (!st) {
            ps.k = lse ? K_EXPSUM : K_SQDEV;
            ps.center = center;
            ps.correction = lse ? 0.0 : (double)params->correction;
            st = run_pass(&ps);
        }
        lm__free(center);
        return st;
    }
    default: return lm__error(LM_ERR_UNSUPPORTED, "reduce: unknown reduction %d", (int)op);
    }
    return run_pass(&ps);
}

LM_INTERNAL const struct lm_reduce_kernels lm__cpu_reduce_kernels = {
    .reduce = cpu_reduce,
};
