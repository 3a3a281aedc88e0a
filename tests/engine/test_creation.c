/* test_creation.c — arange, linspace and eye: counts and values against hand-written cases
 * (taken from what torch.arange / torch.linspace / torch.eye return) and naive loops, every
 * dtype, empty results, the parallel path, and the error paths. */
#include "tap.h"

#include "lumen.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

static double at(const lm_tensor *t, int64_t i)
{
    double v = NAN;
    lm_get(t, &i, &v);
    return v;
}

/* Checks a 1-D result against want[n], then releases it. */
static void expect(lm_tensor *t, lm_dtype dt, int64_t n, const double *want, const char *name)
{
    if (!ok(t != NULL, "%s: made (%s)", name, t ? "" : lm_last_error())) return;
    is_int(t->ndim, 1, "%s: 1-D", name);
    is_int(t->dtype, dt, "%s: dtype", name);
    is_int(lm_numel(t), n, "%s: %lld elements", name, (long long)n);
    int bad = 0;
    for (int64_t i = 0; i < n && i < lm_numel(t); i++) bad += at(t, i) != want[i];
    is_int(bad, 0, "%s: values", name);
    lm_release(t);
}

static void test_arange(void)
{
    expect(lm_arange(0, 5, 1, LM_F32), LM_F32, 5, (const double[]){0, 1, 2, 3, 4}, "arange(5) f32");
    expect(lm_arange(0, 10, 3, LM_I64), LM_I64, 4, (const double[]){0, 3, 6, 9},
           "arange(0,10,3) i64");
    expect(lm_arange(0, -3, -1.5, LM_F64), LM_F64, 2, (const double[]){0, -1.5}, "negative step");
    expect(lm_arange(0, 1, 0.3, LM_F64), LM_F64, 4, (const double[]){0, 0.3, 0.6, 0.3 * 3},
           "count is ceil((end-start)/step)");
    expect(lm_arange(1, 1, 1, LM_F32), LM_F32, 0, NULL, "start == end: empty");
    /* Integer dtypes truncate the bounds first, as torch.arange. */
    expect(lm_arange(0.5, 3, 1, LM_I64), LM_I64, 3, (const double[]){0, 1, 2},
           "i64 truncates start");
    expect(lm_arange(-0.5, 2.9, 1, LM_I64), LM_I64, 2, (const double[]){0, 1},
           "i64 count from truncated bounds");
    expect(lm_arange(0, 300, 100, LM_U8), LM_U8, 3, (const double[]){0, 100, 200}, "u8");
    expect(lm_arange(-5, 0, 2, LM_U8), LM_U8, 3, (const double[]){251, 253, 255},
           "u8 wraps as torch");
    expect(lm_arange(-3, 3, 2.5, LM_F32), LM_F32, 3, (const double[]){-3, -0.5, 2},
           "f32 fractional step");

    /* Values start + step*i in f64, rounded once to the dtype. */
    lm_tensor *t = lm_arange(0.1, 2.0, 0.1, LM_F32);
    int bad = 0;
    is_int(lm_numel(t), 19, "arange(0.1, 2, 0.1) has 19 elements");
    for (int i = 0; i < 19; i++) bad += at(t, i) != (double)(float)(0.1 + 0.1 * i);
    is_int(bad, 0, "arange f32 values = (float)(start + step*i)");
    lm_release(t);

    /* The parallel path (>= 32768 elements) gives the same values. */
    lm_set_num_threads(2);
    lm_tensor *big = lm_arange(-7, 100000, 3, LM_F64);
    lm_tensor *bigi = lm_arange(100000, -7, -3, LM_I64);
    lm_set_num_threads(1);
    int64_t n = (100000 + 7 + 2) / 3;
    is_int(lm_numel(big), n, "large arange count");
    bad = 0;
    for (int64_t i = 0; i < n; i++) bad += at(big, i) != -7 + 3.0 * (double)i;
    for (int64_t i = 0; i < n; i++) bad += at(bigi, i) != 100000 - 3.0 * (double)i;
    is_int(bad, 0, "large arange values (f64 and i64, 2 threads)");
    lm_release(big);
    lm_release(bigi);
}

static void test_arange_errors(void)
{
    lm_clear_error();
    ok(lm_arange(0, 5, 0, LM_F32) == NULL, "step 0 fails");
    is_int(lm_last_status(), LM_ERR_ARG, "step 0: LM_ERR_ARG");
    has_str(lm_last_error(), "arange: step must be nonzero", "step 0: message");
    ok(lm_arange(0, 1, 0.5, LM_I64) == NULL, "step truncated to 0 for i64 fails");
    has_str(lm_last_error(), "step must be nonzero", "i64 step 0.5: message");
    ok(lm_arange(0, 1, -1, LM_F32) == NULL, "wrong step sign fails");
    has_str(lm_last_error(), "arange: upper bound and lower bound inconsistent with step sign",
            "wrong sign: message");
    ok(lm_arange(5, 0, 1, LM_I64) == NULL, "end < start with a positive step fails");
    ok(lm_arange(0, INFINITY, 1, LM_F32) == NULL, "infinite end fails");
    has_str(lm_last_error(), "arange: unsupported range: 0 -> inf", "infinite: message");
    ok(lm_arange(NAN, 1, 1, LM_F64) == NULL, "nan start fails");
    ok(lm_arange(0, 1e30, 1, LM_I64) == NULL, "bounds beyond i64 fail");
    has_str(lm_last_error(), "does not fit in i64", "beyond i64: message");
    ok(lm_arange(0, 1e300, 1e-300, LM_F64) == NULL, "a size beyond int64 fails");
    has_str(lm_last_error(), "arange: invalid size", "huge size: message");
    ok(lm_arange(0, 3, 1, (lm_dtype)7) == NULL, "unknown dtype fails");
    is_int(lm_last_status(), LM_ERR_DTYPE, "unknown dtype: LM_ERR_DTYPE");
    lm_clear_error();
}

/* PyTorch's formula, written out: the first half counts up from start, the second half down
 * from end (in the dtype's precision for floats, in f64 then truncated for integers). */
static double naive_linspace_f32(float start, float end, int64_t n, int64_t i)
{
    float step = (end - start) / (float)(n - 1);
    return i < n / 2 ? start + step * (float)i : end - step * (float)(n - 1 - i);
}

static void test_linspace(void)
{
    expect(lm_linspace(0, 1, 5, LM_F32), LM_F32, 5, (const double[]){0, 0.25, 0.5, 0.75, 1},
           "linspace(0,1,5)");
    expect(lm_linspace(-1, 1, 1, LM_F32), LM_F32, 1, (const double[]){-1},
           "one step gives [start]");
    expect(lm_linspace(3, 7, 0, LM_F64), LM_F64, 0, NULL, "zero steps: empty");
    expect(lm_linspace(0, 10, 4, LM_I64), LM_I64, 4, (const double[]){0, 3, 6, 10},
           "i64 truncates");
    expect(lm_linspace(0, 255, 4, LM_U8), LM_U8, 4, (const double[]){0, 85, 170, 255}, "u8");
    expect(lm_linspace(5, -5, 3, LM_F64), LM_F64, 3, (const double[]){5, 0, -5}, "decreasing");
    expect(lm_linspace(2.5, 2.5, 3, LM_F32), LM_F32, 3, (const double[]){2.5, 2.5, 2.5},
           "start == end");

    const int64_t n = 1001;
    lm_tensor *t = lm_linspace(-0.3, 1.7, n, LM_F32);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += at(t, i) != naive_linspace_f32(-0.3f, 1.7f, n, i);
    is_int(bad, 0, "f32 values follow the two-sided formula");
    is_close(at(t, n - 1), (double)1.7f, 0, "the last element is exactly end");
    is_close(at(t, 0), (double)-0.3f, 0, "the first element is exactly start");
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(at(t, i) - (-0.3 + 2.0 * (double)i / 1000)));
    ok(worst < 3e-7, "f32 values within 3e-7 of the exact grid (worst %g)", worst);
    lm_release(t);

    lm_set_num_threads(2);
    const int64_t m = 50001;
    lm_tensor *d = lm_linspace(1, 2, m, LM_F64);
    lm_set_num_threads(1);
    bad = 0;
    double step = 1.0 / (double)(m - 1);
    for (int64_t i = 0; i < m; i++) {
        double want = i < m / 2 ? 1 + step * (double)i : 2 - step * (double)(m - 1 - i);
        bad += at(d, i) != want;
    }
    is_int(bad, 0, "large f64 linspace on 2 threads follows the formula");
    lm_release(d);

    lm_clear_error();
    ok(lm_linspace(0, 1, -1, LM_F32) == NULL, "negative steps fail");
    is_int(lm_last_status(), LM_ERR_ARG, "negative steps: LM_ERR_ARG");
    has_str(lm_last_error(), "linspace: number of steps must be non-negative (got -1)",
            "negative steps: message");
    ok(lm_linspace(0, 300, 4, LM_U8) == NULL, "u8 bound beyond 255 fails");
    has_str(lm_last_error(), "linspace: bounds 0 and 300 do not fit in u8", "u8 bounds: message");
    ok(lm_linspace(-1, 5, 4, LM_U8) == NULL, "negative u8 bound fails");
    ok(lm_linspace(0, 1e19, 4, LM_I64) == NULL, "i64 bound beyond int64 fails");
    ok(lm_linspace(0, 1, 3, (lm_dtype)-1) == NULL, "unknown dtype fails");
    is_int(lm_last_status(), LM_ERR_DTYPE, "unknown dtype: LM_ERR_DTYPE");
    lm_clear_error();
}

static void test_eye(void)
{
    static const lm_dtype all[] = {LM_F32, LM_F64, LM_I64, LM_U8};
    for (int k = 0; k < 4; k++) {
        lm_tensor *e = lm_eye(3, -1, all[k]);
        if (!ok(e != NULL, "eye(3) %s", lm_dtype_name(all[k]))) continue;
        is_int(e->ndim, 2, "eye(3) %s: 2-D", lm_dtype_name(all[k]));
        is_int(e->shape[0] * 10 + e->shape[1], 33, "eye(3) %s: 3x3", lm_dtype_name(all[k]));
        is_int(e->dtype, all[k], "eye(3) %s: dtype", lm_dtype_name(all[k]));
        int bad = 0;
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 3; j++) {
                double v;
                lm_get(e, (const int64_t[]){i, j}, &v);
                bad += v != (i == j ? 1.0 : 0.0);
            }
        is_int(bad, 0, "eye(3) %s: identity", lm_dtype_name(all[k]));
        lm_release(e);
    }
    static const struct {
        int64_t n, m;
    } shapes[] = {{2, 3}, {4, 2}, {1, 1}, {1, 5}, {0, 3}, {3, 0}, {0, -1}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int64_t n = shapes[k].n, m = shapes[k].m < 0 ? n : shapes[k].m;
        lm_tensor *e = lm_eye(shapes[k].n, shapes[k].m, LM_F32);
        if (!ok(e != NULL, "eye(%lld, %lld)", (long long)n, (long long)shapes[k].m)) continue;
        ok(e->shape[0] == n && e->shape[1] == m, "eye(%lld, %lld): shape", (long long)n,
           (long long)shapes[k].m);
        int bad = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < m; j++) {
                double v;
                lm_get(e, (const int64_t[]){i, j}, &v);
                bad += v != (i == j ? 1.0 : 0.0);
            }
        is_int(bad, 0, "eye(%lld, %lld): values", (long long)n, (long long)shapes[k].m);
        lm_release(e);
    }
    lm_clear_error();
    ok(lm_eye(-2, 3, LM_F32) == NULL, "negative n fails");
    is_int(lm_last_status(), LM_ERR_ARG, "negative n: LM_ERR_ARG");
    has_str(lm_last_error(), "eye: n must be non-negative (got -2)", "negative n: message");
    ok(lm_eye(2, 2, (lm_dtype)11) == NULL, "unknown dtype fails");
    has_str(lm_last_error(), "eye: unknown dtype 11", "unknown dtype: message");
    lm_clear_error();
    lm_debug_fail_alloc_after(1);
    ok(lm_eye(4, 4, LM_F32) == NULL, "eye under OOM fails");
    is_int(lm_last_status(), LM_ERR_MEMORY, "eye under OOM: LM_ERR_MEMORY");
    lm_debug_fail_alloc_after(4); /* tensor, storage, data, then the diagonal view */
    ok(lm_eye(4, 4, LM_F32) == NULL, "eye fails when its diagonal view cannot be allocated");
    lm_debug_fail_alloc_after(0);
    lm_debug_fail_alloc_after(2);
    ok(lm_arange(0, 4, 1, LM_F32) == NULL, "arange under OOM fails");
    lm_debug_fail_alloc_after(0);
    lm_clear_error();
}

/* Empty tensors whose other sizes are huge: their strides must not overflow. */
static void test_empty_extremes(void)
{
    lm_tensor *t = lm_empty(3, (const int64_t[]){0, (int64_t)1 << 62, 4}, LM_F32);
    ok(t == NULL, "empty [0,2^62,4] is refused (its strides would overflow)");
    has_str(lm_last_error(), "too large", "... with a message saying the shape is too large");
    ok(lm_eye(0, INT64_MAX, LM_F32) == NULL, "eye(0, INT64_MAX) is refused cleanly");
    has_str(lm_last_error(), "too large", "... as too large");
    lm_tensor *e = lm_eye(0, (int64_t)1 << 40, LM_F32);
    ok(e != NULL && lm_numel(e) == 0, "eye(0, 2^40) is an empty matrix");
    lm_release(e);
    lm_clear_error();
}

int main(void)
{
    plan_auto();
    test_empty_extremes();
    test_arange();
    test_arange_errors();
    test_linspace();
    test_eye();
    /* The 2-thread runs leave OpenMP's worker threads alive past main; releasing them lets
     * valgrind account for every block. */
    omp_pause_resource_all(omp_pause_hard);
    return done();
}
