/* creation.c — the range constructors: arange, linspace (sequence kernels in the random
 * family's table, random.h) and eye (zeros plus a filled diagonal view). The constructors of
 * empty, zeros, full and from_data live in tensor.c; the random ones in random.c. */
#include "random.h"

#include <math.h>

/* A new 1-D tensor of n elements and its backend, or NULL. */
static lm_tensor *new_1d(const char *op, int64_t n, lm_dtype dt, const lm_backend **be)
{
    *be = lm__backend(LM_CPU, op);
    if (!*be) return NULL;
    return lm__new(op, 1, &n, dt, LM_CPU);
}

/* As torch.arange: integer dtypes take start, end and step truncated to integers and step
 * through them in i64 (u8 results wrap); float dtypes step in f64. The count is
 * ceil((end - start) / step), from the truncated bounds for i64. */
lm_tensor *lm_arange(double start, double end, double step, lm_dtype dt)
{
    if ((unsigned)dt >= LM_DTYPE_COUNT) LM_FAIL(LM_ERR_DTYPE, "arange: unknown dtype %d", dt);
    if (!isfinite(start) || !isfinite(end) || !isfinite(step))
        LM_FAIL(LM_ERR_ARG, "arange: unsupported range: %g -> %g by step %g", start, end, step);
    bool integral = !lm_dtype_is_float(dt);
    double limit = 9.2233720368547758e18; /* 2^63: the int64 conversions below must not overflow */
    if (integral && (fabs(start) >= limit || fabs(end) >= limit || fabs(step) >= limit))
        LM_FAIL(LM_ERR_ARG, "arange: range %g -> %g by step %g does not fit in i64", start, end,
                step);
    int64_t istart = (int64_t)start, iend = (int64_t)end, istep = (int64_t)step;
    if (integral ? istep == 0 : step == 0.0)
        LM_FAIL(LM_ERR_ARG, "arange: step must be nonzero (got %g for dtype %s)", step,
                lm_dtype_name(dt));
    double lo = integral ? (double)istart : start, hi = integral ? (double)iend : end;
    double st = integral ? (double)istep : step;
    if ((st > 0 && hi < lo) || (st < 0 && hi > lo))
        LM_FAIL(LM_ERR_ARG,
                "arange: upper bound and lower bound inconsistent with step sign (%g -> %g by "
                "step %g)",
                start, end, step);
    double size = dt == LM_I64 ? ceil(((double)iend - (double)istart) / (double)istep)
                               : ceil((end - start) / step);
    if (!(size >= 0 && size < limit))
        LM_FAIL(LM_ERR_ARG, "arange: invalid size %g for range %g -> %g by step %g", size, start,
                end, step);
    const lm_backend *be;
    lm_tensor *t = new_1d("arange", (int64_t)size, dt, &be);
    if (t && size > 0) be->random->arange(t, start, step, istart, istep);
    return t;
}

lm_tensor *lm_linspace(double start, double end, int64_t steps, lm_dtype dt)
{
    if ((unsigned)dt >= LM_DTYPE_COUNT) LM_FAIL(LM_ERR_DTYPE, "linspace: unknown dtype %d", dt);
    if (steps < 0)
        LM_FAIL(LM_ERR_ARG, "linspace: number of steps must be non-negative (got %lld)",
                (long long)steps);
    /* Integer dtypes take the bounds truncated, as PyTorch, which refuses values the dtype
     * cannot hold. */
    double lo = dt == LM_U8 ? -1.0 : -9.2233720368547758e18;
    double hi = dt == LM_U8 ? 256.0 : 9.2233720368547758e18;
    if (!lm_dtype_is_float(dt) && !(start > lo && start < hi && end > lo && end < hi))
        LM_FAIL(LM_ERR_ARG, "linspace: bounds %g and %g do not fit in %s", start, end,
                lm_dtype_name(dt));
    const lm_backend *be;
    lm_tensor *t = new_1d("linspace", steps, dt, &be);
    if (!t) return NULL;
    /* One step would divide by zero in the kernel's formula: it is just [start]. */
    if (steps == 1) be->copy->fill(t, start);
    else if (steps > 1) be->random->linspace(t, start, end);
    return t;
}

lm_tensor *lm_eye(int64_t n, int64_t m, lm_dtype dt)
{
    if (m < 0) m = n;
    if (n < 0) LM_FAIL(LM_ERR_ARG, "eye: n must be non-negative (got %lld)", (long long)n);
    lm_tensor *t = lm__new("eye", 2, (const int64_t[]){n, m}, dt, LM_CPU);
    if (!t) return NULL;
    const lm_backend *be = lm__backend(t->storage->device, "eye");
    if (!be) {
        lm_release(t);
        return NULL;
    }
    be->copy->fill(t, 0.0);
    /* The diagonal as a strided view: element k sits at k * (m + 1). An empty matrix has none
     * (and m + 1 could overflow). */
    int64_t k = n < m ? n : m;
    if (k == 0) return t;
    lm_tensor *diag = lm__view_of(t, 1, &k, (const int64_t[]){m + 1}, 0);
    if (!diag) {
        lm_release(t);
        return NULL;
    }
    be->copy->fill(diag, 1.0);
    lm_release(diag);
    return t;
}
