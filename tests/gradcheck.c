/* gradcheck.c — finite-difference gradient checks (see gradcheck.h). */
#include "gradcheck.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

lm_tensor *gc_input(int ndim, const int64_t *shape, double lo, double hi)
{
    lm_tensor *t = lm_rand(ndim, shape, LM_F64);
    if (!t) return NULL;
    lm_tensor *s = lm_mul_scalar(t, hi - lo);
    lm_release(t);
    lm_tensor *r = lm_add_scalar(s, lo);
    lm_release(s);
    if (r) lm_requires_grad_(r, true);
    return r;
}

/* sum(out * w) as a double, with no graph. */
static bool weighted_sum(gc_fn f, lm_tensor **inputs, void *ctx, const lm_tensor *w, double *out)
{
    lm_tensor *y = f(inputs, ctx);
    if (!y) return false;
    lm_tensor *yd = lm_to_dtype(y, LM_F64);
    lm_tensor *p = yd ? lm_mul(yd, w) : NULL;
    lm_tensor *s = p ? lm_sum(p, 0, NULL, false) : NULL;
    bool good = s && lm_item(s, out) == LM_OK;
    lm_release(s);
    lm_release(p);
    lm_release(yd);
    lm_release(y);
    return good;
}

bool gradcheck_opts(const char *name, gc_fn f, int n, lm_tensor **inputs, void *ctx, gc_opts o)
{
    if (o.eps == 0) o.eps = 1e-6;
    if (o.atol == 0) o.atol = 1e-7;
    if (o.rtol == 0) o.rtol = 1e-5;
    for (int i = 0; i < n; i++) lm_zero_grad(inputs[i]); /* NULL entries (absent biases) are skipped */

    /* Analytic: backward of sum(out * w). */
    lm_tensor *y = f(inputs, ctx);
    if (!y) {
        ok(false, "gradcheck %s", name);
        diag("forward failed: %s", lm_last_error());
        return false;
    }
    lm_tensor *w = lm_rand(y->ndim, y->shape, LM_F64);
    lm_tensor *w2 = lm_add_scalar(w, 0.5);
    lm_release(w);
    w = w2;
    lm_tensor *wy = lm_to_dtype(w, y->dtype);
    lm_tensor *prod = lm_mul(y, wy);
    lm_tensor *loss = lm_sum(prod, 0, NULL, false);
    lm_status st = loss ? lm_backward(loss, NULL, false) : lm_last_status();
    lm_release(loss);
    lm_release(prod);
    lm_release(wy);
    lm_release(y);
    if (st) {
        ok(false, "gradcheck %s", name);
        diag("backward failed: %s", lm_last_error());
        lm_release(w);
        return false;
    }

    /* Numeric: central differences, one element at a time. */
    bool prev = lm_set_grad_enabled(false);
    bool good = true;
    double worst = 0;
    char where[160] = "";
    for (int i = 0; i < n && good; i++) {
        lm_tensor *x = inputs[i];
        if (!x || !x->requires_grad) continue;
        if (!x->grad) {
            good = false;
            snprintf(where, sizeof where, "input %d got no gradient", i);
            break;
        }
        int64_t numel = lm_numel(x), idx[LM_MAX_DIMS];
        for (int64_t k = 0; k < numel; k++) {
            int64_t rem = k;
            for (int d = x->ndim - 1; d >= 0; d--) {
                idx[d] = rem % x->shape[d];
                rem /= x->shape[d];
            }
            double v, lp, lm, analytic;
            lm_get(x, idx, &v);
            lm_set(x, idx, v + o.eps);
            bool a = weighted_sum(f, inputs, ctx, w, &lp);
            lm_set(x, idx, v - o.eps);
            bool b = weighted_sum(f, inputs, ctx, w, &lm);
            lm_set(x, idx, v);
            lm_get(x->grad, idx, &analytic);
            if (!a || !b) {
                good = false;
                snprintf(where, sizeof where, "forward failed while perturbing: %s", lm_last_error());
                break;
            }
            double numeric = (lp - lm) / (2 * o.eps);
            double err = fabs(numeric - analytic);
            double tol = o.atol + o.rtol * fabs(numeric);
            if (err - tol > worst || (err > tol && good)) {
                worst = err - tol;
                snprintf(where, sizeof where, "input %d element %lld: analytic %.10g, numeric %.10g", i,
                         (long long)k, analytic, numeric);
            }
            if (err > tol) good = false;
        }
    }
    lm_set_grad_enabled(prev);
    lm_release(w);
    ok(good, "gradcheck %s", name);
    if (!good) diag("%s", where);
    return good;
}

bool gradcheck(const char *name, gc_fn f, int n, lm_tensor **inputs, void *ctx)
{
    return gradcheck_opts(name, f, n, inputs, ctx, (gc_opts){0});
}
