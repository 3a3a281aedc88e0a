/* engine_micro.c — micro-benchmarks of the engine's hot paths against what it is built on:
 * lm_matmul against cblas_sgemm called directly on the same buffers (square sizes, the MLP's
 * forward and backward shapes, transposed operands, batches), and element-wise ops and a sum
 * against memcpy's bandwidth.
 *
 * Each figure is the median of RUNS timed runs after a warm-up run; a run repeats the call until
 * it lasts at least MIN_RUN_S. Lumen and the reference alternate run by run so drifts in clock
 * speed hit both. Lumen's figures include what a user pays: allocating the result.
 *
 *   ninja -C build && ./build/bench/engine_micro
 *
 * A Lumen op that is missing from the build or fails prints n/a in its row. */
#include "lumen.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Weak, so the benchmark still links and runs (printing n/a) in a build that lacks one of these
 * families: a missing function is NULL here. */
#pragma weak lm_add
#pragma weak lm_add_
#pragma weak lm_mul
#pragma weak lm_exp
#pragma weak lm_sum

#define RUNS 7
#define MIN_RUN_S 0.025

typedef bool (*bench_fn)(void *ctx); /* false: the call failed, the figure is n/a */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Seconds of one timed run of reps calls, per call; negative when a call failed. */
static double run_once(bench_fn fn, void *ctx, int reps)
{
    double t0 = now();
    for (int i = 0; i < reps; i++)
        if (!fn(ctx)) return -1;
    return (now() - t0) / reps;
}

static int reps_for(bench_fn fn, void *ctx)
{
    double t0 = now();
    if (!fn(ctx)) return 0;
    double once = now() - t0;
    int reps = once > 0 ? (int)(MIN_RUN_S / once) + 1 : 1000;
    return reps > 100000 ? 100000 : reps;
}

/* Median seconds per call of fn (tl) and of its reference (tr), interleaved; a failed side gets
 * a negative time. */
static void time_pair(bench_fn fl, void *cl, bench_fn fr, void *cr, double *tl, double *tr)
{
    int rl = fl ? reps_for(fl, cl) : 0, rr = reps_for(fr, cr);
    double sl[RUNS], sr[RUNS];
    if (rl) run_once(fl, cl, rl); /* warm-up runs */
    run_once(fr, cr, rr);
    for (int r = 0; r < RUNS; r++) {
        sl[r] = rl ? run_once(fl, cl, rl) : -1;
        sr[r] = run_once(fr, cr, rr);
    }
    qsort(sl, RUNS, sizeof(double), cmp_double);
    qsort(sr, RUNS, sizeof(double), cmp_double);
    *tl = sl[0] < 0 ? -1 : sl[RUNS / 2];
    *tr = sr[RUNS / 2];
}

/* A row of rates (work per second) for Lumen and its reference; tl < 0: Lumen failed. */
static void print_row(const char *name, double work_l, double tl, double work_r, double tr,
                      const char *target)
{
    double rl = work_l / tl, rr = work_r / tr;
    if (tl > 0)
        printf("  %-44s %9.1f %9.1f %7.2f   %s\n", name, rl, rr, rl / rr, target);
    else
        printf("  %-44s %9s %9.1f %7s   %s\n", name, "n/a", rr, "n/a", target);
}

/* ---- matmul ------------------------------------------------------------------------------- */

/* One product c = op(a) op(b) through lm_matmul and through cblas_sgemm on the same buffers:
 * batch products of [m,k] x [k,n]; a and b are stored transposed when ta / tb; b_shared: one
 * b for every batch entry (broadcast). */
typedef struct {
    lm_tensor *a, *b;    /* the operands as lm_matmul sees them (views when transposed) */
    lm_tensor *abase, *bbase;
    float *c;            /* BLAS's output */
    int batch, m, n, k;
    bool ta, tb, b_shared;
} mm_case;

static bool mm_lumen(void *ctx)
{
    mm_case *p = ctx;
    lm_tensor *c = lm_matmul(p->a, p->b);
    lm_release(c);
    return c != NULL;
}

static bool mm_blas(void *ctx)
{
    mm_case *p = ctx;
    const float *a = lm_data(p->abase), *b = lm_data(p->bbase);
    int lda = p->ta ? p->m : p->k, ldb = p->tb ? p->k : p->n;
    size_t sa = (size_t)p->m * p->k, sb = p->b_shared ? 0 : (size_t)p->k * p->n;
    size_t sc = (size_t)p->m * p->n;
    for (int i = 0; i < p->batch; i++)
        cblas_sgemm(CblasRowMajor, p->ta ? CblasTrans : CblasNoTrans,
                    p->tb ? CblasTrans : CblasNoTrans, p->m, p->n, p->k, 1.0f, a + i * sa, lda,
                    b + i * sb, ldb, 0.0f, p->c + i * sc, p->n);
    return true;
}

static void bench_matmul(const char *name, int batch, int m, int n, int k, bool ta, bool tb,
                         bool b_shared, const char *target)
{
    mm_case p = {.batch = batch, .m = m, .n = n, .k = k, .ta = ta, .tb = tb, .b_shared = b_shared};
    int64_t as[3] = {batch, ta ? k : m, ta ? m : k}, bs[3] = {batch, tb ? n : k, tb ? k : n};
    bool batched = batch > 1;
    p.abase = lm_full(batched ? 3 : 2, batched ? as : as + 1, 0.5, LM_F32);
    p.bbase = b_shared || !batched ? lm_full(2, bs + 1, 0.25, LM_F32)
                                   : lm_full(3, bs, 0.25, LM_F32);
    p.c = malloc(sizeof(float) * (size_t)batch * m * n);
    if (!p.abase || !p.bbase || !p.c) {
        printf("  %-44s setup failed: %s\n", name, lm_last_error());
        goto out;
    }
    p.a = ta ? lm_transpose(p.abase, -2, -1) : lm_retain(p.abase);
    p.b = tb ? lm_transpose(p.bbase, -2, -1) : lm_retain(p.bbase);
    double tl, tr;
    time_pair(mm_lumen, &p, mm_blas, &p, &tl, &tr);
    double gflop = 2.0 * batch * m * n * k * 1e-9;
    print_row(name, gflop, tl, gflop, tr, target);
out:
    lm_release(p.a);
    lm_release(p.b);
    lm_release(p.abase);
    lm_release(p.bbase);
    free(p.c);
}

/* ---- element-wise and sum ---------------------------------------------------------------- */

typedef enum { EW_ADD, EW_ADD_INPLACE, EW_MUL, EW_EXP, EW_SUM } ew_kind;

typedef struct {
    ew_kind kind;
    lm_tensor *x, *y;
    float *src, *dst;
    size_t n;
} ew_case;

static bool ew_lumen(void *ctx)
{
    ew_case *p = ctx;
    lm_tensor *r = NULL;
    switch (p->kind) {
    case EW_ADD: r = lm_add(p->x, p->y); break;
    case EW_ADD_INPLACE: return lm_add_(p->x, p->y) == LM_OK;
    case EW_MUL: r = lm_mul(p->x, p->y); break;
    case EW_EXP: r = lm_exp(p->x); break;
    case EW_SUM: r = lm_sum(p->x, 0, NULL, false); break;
    }
    lm_release(r);
    return r != NULL;
}

static bool ew_memcpy(void *ctx)
{
    ew_case *p = ctx;
    memcpy(p->dst, p->src, p->n * sizeof(float));
    return true;
}

static void bench_elementwise(int64_t n)
{
    static const struct {
        ew_kind kind;
        const char *name;
        int streams; /* arrays of n floats read or written */
        const char *target;
    } ops[] = {
        {EW_ADD, "add", 3, ">= 0.70"},
        {EW_ADD_INPLACE, "add_ (in place, no allocation)", 3, ""},
        {EW_MUL, "mul", 3, ""},
        {EW_EXP, "exp", 2, ""},
        {EW_SUM, "sum", 1, ""},
    };
    ew_case p = {.n = (size_t)n};
    p.x = lm_full(1, &n, 0.5, LM_F32);
    p.y = lm_full(1, &n, 0.25, LM_F32);
    p.src = malloc(sizeof(float) * (size_t)n);
    p.dst = malloc(sizeof(float) * (size_t)n);
    if (!p.x || !p.y || !p.src || !p.dst) {
        printf("  setup failed for n = %lld\n", (long long)n);
        goto out;
    }
    for (int64_t i = 0; i < n; i++) p.src[i] = p.dst[i] = 0.5f; /* fault the pages in */
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (ops[i].kind == EW_SUM && n < 10000000) continue;
        bool have = ops[i].kind == EW_ADD           ? lm_add != NULL
                    : ops[i].kind == EW_ADD_INPLACE ? lm_add_ != NULL
                    : ops[i].kind == EW_MUL         ? lm_mul != NULL
                    : ops[i].kind == EW_EXP         ? lm_exp != NULL
                                                    : lm_sum != NULL;
        p.kind = ops[i].kind;
        double tl, tr;
        time_pair(have ? ew_lumen : NULL, &p, ew_memcpy, &p, &tl, &tr);
        char name[64];
        snprintf(name, sizeof name, "%s, n=%lld", ops[i].name, (long long)n);
        print_row(name, ops[i].streams * 4e-9 * (double)n, tl, 2 * 4e-9 * (double)n, tr,
                  ops[i].target);
    }
out:
    lm_release(p.x);
    lm_release(p.y);
    free(p.src);
    free(p.dst);
}

int main(void)
{
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("engine_micro: Lumen engine micro-benchmarks (median of %d runs after a warm-up)\n",
           RUNS);
    printf("OPENBLAS_CORETYPE=%s  OpenBLAS core: %s  threads: %d (Lumen), %d (OpenBLAS)\n\n",
           coretype ? coretype : "(unset)", openblas_get_corename(), lm_get_num_threads(),
           openblas_get_num_threads());

    printf("%-46s %9s %9s %7s   %s\n", "matmul f32, GFLOP/s", "lumen", "BLAS", "ratio", "target");
    static const int squares[] = {64, 128, 256, 512, 1024, 2048};
    for (size_t i = 0; i < sizeof squares / sizeof squares[0]; i++) {
        int s = squares[i];
        char name[64];
        snprintf(name, sizeof name, "%dx%d . %dx%d", s, s, s, s);
        bench_matmul(name, 1, s, s, s, false, false, false, s >= 256 ? ">= 0.95" : ">= 0.80");
    }
    bench_matmul("MLP fwd 64x784 . 784x128", 1, 64, 128, 784, false, false, false, ">= 0.80");
    bench_matmul("MLP fwd 64x128 . 128x10", 1, 64, 10, 128, false, false, false, ">= 0.80");
    bench_matmul("MLP bwd 784x64 . 64x128 (x.T . dy)", 1, 784, 128, 64, true, false, false,
                 ">= 0.80");
    bench_matmul("MLP bwd 64x128 . 128x784 (dy . W.T)", 1, 64, 784, 128, false, true, false,
                 ">= 0.80");
    bench_matmul("a.T . b  512", 1, 512, 512, 512, true, false, false, ">= 0.95");
    bench_matmul("a . b.T  512", 1, 512, 512, 512, false, true, false, ">= 0.95");
    bench_matmul("batched 32 x 128x64 . 64x128", 32, 128, 128, 64, false, false, false, "");
    bench_matmul("broadcast [32,128,64] . [64,128]", 32, 128, 128, 64, false, false, true, "");

    printf("\n%-46s %9s %9s %7s   %s\n", "element-wise f32, GB/s (every stream)", "lumen", "memcpy",
           "ratio", "target");
    bench_elementwise(1000000);
    bench_elementwise(10000000);
    return 0;
}
