/* blas_cpu.c — the CPU linear-algebra kernels on OpenBLAS (its OpenMP build: BLAS and our own
 * loops share one thread pool, and a BLAS call made inside one of our parallel regions runs on
 * the calling thread alone).
 *
 * A product with one row or one column goes to gemv (or dot): 3-4x faster than gemm there
 * (1x784 . 784x128: 20 us through gemm, 5-7 through gemv).
 *
 * Threads: how well OpenBLAS's own threading of one product scales on small and skinny shapes
 * varies from minute to minute on the 2-core VM we measure on (784x64 . 64x128: 97 GFLOP/s in
 * one minute, 171 in another). Cutting C into blocks of rows, one single-threaded BLAS call per
 * thread, held 167-195 there in both states, and in the slow one turned 4096x64 . 64x128 from
 * 104 into 199, 128^3 from 105 into 164, 1024^3 from 202 into 214; in the fast state it lost up
 * to 6% on products of only 64 rows. Each thread packs all of op(B), about 1/rows of its work,
 * so blocks keep at least SPLIT_MIN_ROWS rows. Cutting by columns did no better overall. A batch
 * of small products is spread over the batch instead, one product per thread. */
#include "../linalg.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>

/* Up to this many multiply-adds (m*n*k) a batch's products run one per thread. */
#define SMALL_GEMM ((int64_t)1 << 22)
/* Up to this many multiply-adds a product stays on one thread: OpenBLAS's own cut-off, and
 * where splitting stopped paying (64^3: 96 GFLOP/s whole, 84 split). */
#define SPLIT_MIN ((int64_t)1 << 18)
#define SPLIT_MIN_ROWS 32

#define BLAS_GEMM(T, P)                                                                          \
    static void gemm_##T(const lm_gemm *g, const void *av, const void *bv, void *cv)             \
    {                                                                                             \
        const T *a = av, *b = bv;                                                                 \
        T *c = cv;                                                                                \
        const T alpha = (T)g->alpha, beta = (T)g->beta;                                           \
        if (g->k == 0) {                                                                          \
            /* Nothing to sum: C = beta * C, and beta == 0 must not read C. */                    \
            for (int64_t i = 0; i < g->m; i++)                                                    \
                for (int64_t j = 0; j < g->n; j++)                                                \
                    c[i * g->ldc + j] = beta == 0 ? (T)0 : beta * c[i * g->ldc + j];              \
            return;                                                                               \
        }                                                                                         \
        const int m = (int)g->m, n = (int)g->n, k = (int)g->k;                                    \
        const int lda = (int)g->lda, ldb = (int)g->ldb, ldc = (int)g->ldc;                        \
        if (m == 1 && n == 1) {                                                                   \
            /* Row 0 of op(A) and column 0 of op(B): their element strides follow the layout. */  \
            T d = cblas_##P##dot(k, a, g->trans_a ? lda : 1, b, g->trans_b ? 1 : ldb);            \
            c[0] = beta == 0 ? alpha * d : alpha * d + beta * c[0];                               \
        } else if (n == 1) {                                                                      \
            /* y = op(A) x with x = op(B)[:,0]; gemv with beta == 0 could still read y. */        \
            if (beta == 0)                                                                        \
                for (int i = 0; i < m; i++) c[(int64_t)i * ldc] = 0;                              \
            if (g->trans_a)                                                                       \
                cblas_##P##gemv(CblasRowMajor, CblasTrans, k, m, alpha, a, lda, b,                \
                                g->trans_b ? 1 : ldb, beta == 0 ? (T)1 : beta, c, ldc);           \
            else                                                                                  \
                cblas_##P##gemv(CblasRowMajor, CblasNoTrans, m, k, alpha, a, lda, b,              \
                                g->trans_b ? 1 : ldb, beta == 0 ? (T)1 : beta, c, ldc);           \
        } else if (m == 1) {                                                                      \
            /* y = op(B)^T x with x = op(A)[0,:]: C's single row. */                              \
            if (beta == 0)                                                                        \
                for (int j = 0; j < n; j++) c[j] = 0;                                             \
            if (g->trans_b)                                                                       \
                cblas_##P##gemv(CblasRowMajor, CblasNoTrans, n, k, alpha, b, ldb, a,              \
                                g->trans_a ? lda : 1, beta == 0 ? (T)1 : beta, c, 1);             \
            else                                                                                  \
                cblas_##P##gemv(CblasRowMajor, CblasTrans, k, n, alpha, b, ldb, a,                \
                                g->trans_a ? lda : 1, beta == 0 ? (T)1 : beta, c, 1);             \
        } else {                                                                                  \
            cblas_##P##gemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,                \
                            g->trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b,    \
                            ldb, beta, c, ldc);                                                   \
        }                                                                                         \
    }

BLAS_GEMM(float, s)
BLAS_GEMM(double, d)

typedef void (*gemm_fn)(const lm_gemm *g, const void *a, const void *b, void *c);

static gemm_fn gemm_for(lm_dtype dt) { return dt == LM_F64 ? gemm_double : gemm_float; }

/* CBLAS takes int sizes: refuse what it cannot address rather than truncate. */
static lm_status check_sizes(const char *op, const lm_gemm *g)
{
    if (g->dtype != LM_F32 && g->dtype != LM_F64)
        return lm__error(LM_ERR_UNSUPPORTED, "%s: BLAS has no %s product", op,
                         lm_dtype_name(g->dtype));
    const int64_t v[] = {g->m, g->n, g->k, g->lda, g->ldb, g->ldc};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] > INT_MAX)
            return lm__error(LM_ERR_UNSUPPORTED,
                             "%s: a product of [%lld,%lld] and [%lld,%lld] exceeds BLAS's 32-bit "
                             "sizes",
                             op, (long long)g->m, (long long)g->k, (long long)g->k,
                             (long long)g->n);
    return LM_OK;
}

/* Multiply-adds of one product, in double: m*n*k of legal sizes can exceed int64_t. */
static double madds(const lm_gemm *g) { return (double)g->m * (double)g->n * (double)g->k; }

/* Into how many blocks of rows one product is cut (1: run it as one BLAS call). */
static int split_parts(const lm_gemm *g, int threads)
{
    if (threads <= 1 || g->n == 1 || madds(g) <= SPLIT_MIN || omp_in_parallel())
        return 1;
    int64_t parts = g->m / SPLIT_MIN_ROWS;
    return parts < threads ? (parts > 1 ? (int)parts : 1) : threads;
}

/* One product in parts blocks of C's rows. Block edges fall on multiples of 16 rows: BLAS's
 * kernels work in tiles of a few rows, and round edges leave partial tiles to the last block. */
static void gemm_split(const lm_gemm *g, const char *a, const char *b, char *c, int parts)
{
    gemm_fn fn = gemm_for(g->dtype);
    if (parts <= 1) {
        fn(g, a, b, c);
        return;
    }
    const int64_t es = (int64_t)lm_dtype_size(g->dtype);
#pragma omp parallel num_threads(parts)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int64_t lo = (g->m * id / nt) & ~(int64_t)15;
        int64_t hi = id == nt - 1 ? g->m : (g->m * (id + 1) / nt) & ~(int64_t)15;
        if (hi > lo) {
            lm_gemm part = *g;
            part.m = hi - lo;
            /* op(A)'s row lo: row lo of A, or column lo of the stored transpose. */
            fn(&part, a + (g->trans_a ? lo : lo * g->lda) * es, b, c + lo * g->ldc * es);
        }
    }
}

static lm_status cpu_gemm(const char *op, const lm_gemm *g)
{
    lm_status st = check_sizes(op, g);
    if (st || g->m == 0 || g->n == 0) return st;
    gemm_split(g, g->a, g->b, g->c, split_parts(g, lm__threads()));
    return LM_OK;
}

/* Runs products [begin, end) of the batch in C order of its index, each cut in parts. */
static void run_batch(const lm_gemm *g, const lm_gemm_batch *bt, int64_t begin, int64_t end,
                      int parts)
{
    const int64_t es = (int64_t)lm_dtype_size(g->dtype);
    for (int64_t i = begin; i < end; i++) {
        int64_t oa = 0, ob = 0, oc = 0, rem = i;
        for (int d = bt->ndim - 1; d >= 0; d--) {
            int64_t idx = rem % bt->shape[d];
            rem /= bt->shape[d];
            oa += idx * bt->stride_a[d];
            ob += idx * bt->stride_b[d];
            oc += idx * bt->stride_c[d];
        }
        gemm_split(g, (const char *)g->a + oa * es, (const char *)g->b + ob * es,
                   (char *)g->c + oc * es, parts);
    }
}

static lm_status cpu_gemm_batched(const char *op, const lm_gemm *g, const lm_gemm_batch *bt)
{
    lm_status st = check_sizes(op, g);
    if (st || g->m == 0 || g->n == 0) return st;
    int64_t count = lm__shape_numel(bt->ndim, bt->shape);
    int threads = lm__threads();
    /* One product per thread when products are small, or when the batch divides evenly enough
     * among the threads that none waits long for the last; otherwise every thread works on
     * each product in turn. */
    bool over_batch = threads > 1 && count > 1 && !omp_in_parallel() &&
                      (madds(g) <= SMALL_GEMM || count % threads == 0 ||
                       count >= 4 * (int64_t)threads);
    if (!over_batch) {
        run_batch(g, bt, 0, count, split_parts(g, threads));
        return LM_OK;
    }
    if (threads > count) threads = (int)count;
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        run_batch(g, bt, count * id / nt, count * (id + 1) / nt, 1);
    }
    return LM_OK;
}

LM_INTERNAL const struct lm_blas_kernels lm__cpu_blas_kernels = {
    .gemm = cpu_gemm,
    .gemm_batched = cpu_gemm_batched,
};
