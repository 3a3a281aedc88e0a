/* test_grad_ops.c — gradients of the reductions, matmul and the indexing/joining ops.
 *
 * Every differentiable op gets a finite-difference gradcheck (one TAP line naming it), with
 * variants for dims, keepdim, non-contiguous inputs (transposed or strided leaf views), broadcast
 * batch dims, the 1-D matmul cases and repeated indices. Gradient values are also checked by
 * hand where finite differences cannot judge them (ties, zeros, norms at 0) and against naive
 * loops written here (matmul, index_select, gather). Last come the in-place rules under grad
 * mode, saved-tensor checks and their error messages. */
#include "gradcheck.h"
#include "tap.h"

#include "lumen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------------------------- */

/* An f64 leaf with the given values (C order) that requires grad. */
static lm_tensor *leaf(int ndim, const int64_t *shape, const double *v)
{
    lm_tensor *t = lm_from_data(v, LM_F64, ndim, shape);
    lm_requires_grad_(t, true);
    return t;
}

/* A leaf requiring grad that is a non-contiguous view: the transpose of a [cols, rows] tensor
 * made under no_grad. Values uniform in [lo, hi). */
static lm_tensor *transposed_input(int64_t rows, int64_t cols, double lo, double hi)
{
    lm_tensor *base = gc_input(LM_SHAPE(cols, rows), lo, hi);
    lm_requires_grad_(base, false);
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *v = lm_transpose(base, 0, 1);
    lm_set_grad_enabled(prev);
    lm_release(base);
    lm_requires_grad_(v, true);
    return v;
}

/* The same with every second column of a [rows, 2*cols] tensor. */
static lm_tensor *strided_input(int64_t rows, int64_t cols, double lo, double hi)
{
    lm_tensor *base = gc_input(LM_SHAPE(rows, 2 * cols), lo, hi);
    lm_requires_grad_(base, false);
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *v = lm_slice(base, 1, 0, 2 * cols, 2);
    lm_set_grad_enabled(prev);
    lm_release(base);
    lm_requires_grad_(v, true);
    return v;
}

static lm_tensor *i64(int ndim, const int64_t *shape, const int64_t *v)
{
    return lm_from_data(v, LM_I64, ndim, shape);
}

/* Every element of t (C order) against want; one TAP line. */
static bool all_close(const lm_tensor *t, const double *want, double tol, const char *what)
{
    if (!t) {
        ok(false, "%s", what);
        diag("no tensor: %s", lm_last_error());
        return false;
    }
    int64_t n = lm_numel(t), idx[LM_MAX_DIMS];
    for (int64_t k = 0; k < n; k++) {
        int64_t rem = k;
        for (int d = t->ndim - 1; d >= 0; d--) {
            idx[d] = rem % t->shape[d];
            rem /= t->shape[d];
        }
        double v;
        lm_get(t, idx, &v);
        if (!(fabs(v - want[k]) <= tol * (1 + fabs(want[k])))) {
            ok(false, "%s", what);
            diag("element %lld: got %.10g, want %.10g", (long long)k, v, want[k]);
            return false;
        }
    }
    return ok(true, "%s", what);
}

/* Backward of sum(y) (y is taken). */
static lm_status backward_sum(lm_tensor *y)
{
    lm_tensor *s = lm_sum(y, 0, NULL, false);
    lm_status st = s ? lm_backward(s, NULL, false) : lm_last_status();
    lm_release(s);
    lm_release(y);
    return st;
}

/* Backward of y with seed (y is taken). */
static lm_status backward_seed(lm_tensor *y, const lm_tensor *seed)
{
    lm_status st = y ? lm_backward(y, seed, false) : lm_last_status();
    lm_release(y);
    return st;
}

static void release_all(int n, lm_tensor **t)
{
    for (int i = 0; i < n; i++) lm_release(t[i]);
}

/* ---- reductions: gradchecks ------------------------------------------------------------------ */

typedef enum {
    R_SUM, R_MEAN, R_PROD, R_VAR, R_STD, R_LSE, R_NORM, R_AMAX, R_AMIN, R_MAX_DIM, R_MIN_DIM,
    R_MAX, R_MIN
} red_kind;

typedef struct {
    red_kind kind;
    int nd;
    int dims[4];
    bool keepdim;
    int64_t correction;
    double p;
} red_ctx;

static lm_tensor *f_reduce(lm_tensor **x, void *ctx)
{
    const red_ctx *c = ctx;
    lm_tensor *v = NULL;
    switch (c->kind) {
    case R_SUM: return lm_sum(x[0], c->nd, c->dims, c->keepdim);
    case R_MEAN: return lm_mean(x[0], c->nd, c->dims, c->keepdim);
    case R_PROD: return lm_prod(x[0], c->nd, c->dims, c->keepdim);
    case R_VAR: return lm_var(x[0], c->nd, c->dims, c->correction, c->keepdim);
    case R_STD: return lm_std(x[0], c->nd, c->dims, c->correction, c->keepdim);
    case R_LSE: return lm_logsumexp(x[0], c->nd, c->dims, c->keepdim);
    case R_NORM: return lm_norm(x[0], c->p, c->nd, c->dims, c->keepdim);
    case R_AMAX: return lm_amax(x[0], c->nd, c->dims, c->keepdim);
    case R_AMIN: return lm_amin(x[0], c->nd, c->dims, c->keepdim);
    case R_MAX_DIM: lm_max_dim(x[0], c->dims[0], c->keepdim, &v, NULL); return v;
    case R_MIN_DIM: lm_min_dim(x[0], c->dims[0], c->keepdim, &v, NULL); return v;
    case R_MAX: return lm_max(x[0]);
    case R_MIN: return lm_min(x[0]);
    }
    return NULL;
}

/* Gradchecks op on x (taken). */
static void check_reduce(const char *name, red_ctx c, lm_tensor *x)
{
    gradcheck(name, f_reduce, 1, &x, &c);
    lm_release(x);
}

static void test_reduce_gradchecks(void)
{
    const int64_t s3[] = {3, 4, 5};
    check_reduce("sum", (red_ctx){R_SUM, 0, {0}, false, 0, 0}, gc_input(3, s3, -1, 1));
    check_reduce("sum dims [0,2]", (red_ctx){R_SUM, 2, {0, 2}, false, 0, 0},
                 gc_input(3, s3, -1, 1));
    check_reduce("sum dim 1 keepdim", (red_ctx){R_SUM, 1, {1}, true, 0, 0}, gc_input(3, s3, -1, 1));
    check_reduce("sum transposed input", (red_ctx){R_SUM, 1, {0}, false, 0, 0},
                 transposed_input(4, 6, -1, 1));
    check_reduce("mean", (red_ctx){R_MEAN, 0, {0}, false, 0, 0}, gc_input(3, s3, -1, 1));
    check_reduce("mean dim -1", (red_ctx){R_MEAN, 1, {-1}, false, 0, 0}, gc_input(3, s3, -1, 1));
    check_reduce("mean dims [0,1] keepdim strided input", (red_ctx){R_MEAN, 2, {0, 1}, true, 0, 0},
                 strided_input(3, 5, -1, 1));
    check_reduce("prod", (red_ctx){R_PROD, 0, {0}, false, 0, 0}, gc_input(LM_SHAPE(2, 3), 0.5, 1.5));
    check_reduce("prod dim 1", (red_ctx){R_PROD, 1, {1}, false, 0, 0}, gc_input(3, s3, -1.5, 1.5));
    check_reduce("prod dim 0 keepdim transposed input", (red_ctx){R_PROD, 1, {0}, true, 0, 0},
                 transposed_input(4, 3, 0.5, 1.5));
    {
        /* Finite differences are exact enough here too: a product is a polynomial. */
        const double v1[] = {2, 0, 3, 0.5, 1.5, -1, 0, 0, 2, 1, 3, 0.5};
        check_reduce("prod dim 1 with one and two zeros", (red_ctx){R_PROD, 1, {1}, false, 0, 0},
                     leaf(LM_SHAPE(3, 4), v1));
    }
    check_reduce("var", (red_ctx){R_VAR, 0, {0}, false, 1, 0}, gc_input(3, s3, -1, 1));
    check_reduce("var dim 1 correction 0 keepdim", (red_ctx){R_VAR, 1, {1}, true, 0, 0},
                 gc_input(3, s3, -1, 1));
    check_reduce("var dim 0 transposed input", (red_ctx){R_VAR, 1, {0}, false, 1, 0},
                 transposed_input(5, 4, -1, 1));
    check_reduce("std", (red_ctx){R_STD, 0, {0}, false, 1, 0}, gc_input(3, s3, -1, 1));
    check_reduce("std dim 2 correction 0", (red_ctx){R_STD, 1, {2}, false, 0, 0},
                 gc_input(3, s3, -1, 1));
    check_reduce("std dims [0,1] correction 2 keepdim", (red_ctx){R_STD, 2, {0, 1}, true, 2, 0},
                 gc_input(3, s3, -1, 1));
    check_reduce("logsumexp", (red_ctx){R_LSE, 0, {0}, false, 0, 0}, gc_input(3, s3, -2, 2));
    check_reduce("logsumexp dim 1", (red_ctx){R_LSE, 1, {1}, false, 0, 0}, gc_input(3, s3, -2, 2));
    check_reduce("logsumexp dim 1 keepdim strided input",
                 (red_ctx){R_LSE, 1, {1}, true, 0, 0}, strided_input(4, 3, -2, 2));
    check_reduce("norm p=2", (red_ctx){R_NORM, 0, {0}, false, 0, 2}, gc_input(3, s3, -1, 1));
    check_reduce("norm p=2 dim 1 keepdim", (red_ctx){R_NORM, 1, {1}, true, 0, 2},
                 gc_input(3, s3, -1, 1));
    check_reduce("norm p=1 dim 0", (red_ctx){R_NORM, 1, {0}, false, 0, 1}, gc_input(3, s3, -1, 1));
    check_reduce("norm p=inf dim 2", (red_ctx){R_NORM, 1, {2}, false, 0, INFINITY},
                 gc_input(3, s3, -1, 1));
    check_reduce("norm p=3 dims [0,2]", (red_ctx){R_NORM, 2, {0, 2}, false, 0, 3},
                 gc_input(3, s3, -1, 1));
    check_reduce("norm p=1.5 transposed input", (red_ctx){R_NORM, 1, {1}, false, 0, 1.5},
                 transposed_input(3, 5, -1, 1));
    check_reduce("norm p=0.5", (red_ctx){R_NORM, 1, {1}, false, 0, 0.5},
                 gc_input(LM_SHAPE(3, 4), 0.3, 1.2));
    check_reduce("amax", (red_ctx){R_AMAX, 0, {0}, false, 0, 0}, gc_input(3, s3, -1, 1));
    check_reduce("amax dims [0,2]", (red_ctx){R_AMAX, 2, {0, 2}, false, 0, 0},
                 gc_input(3, s3, -1, 1));
    check_reduce("amin dim 1 keepdim transposed input", (red_ctx){R_AMIN, 1, {1}, true, 0, 0},
                 transposed_input(4, 5, -1, 1));
    check_reduce("amin", (red_ctx){R_AMIN, 0, {0}, false, 0, 0}, gc_input(3, s3, -1, 1));
    check_reduce("max_dim", (red_ctx){R_MAX_DIM, 1, {1}, false, 0, 0}, gc_input(3, s3, -1, 1));
    check_reduce("max_dim dim 0 keepdim transposed input", (red_ctx){R_MAX_DIM, 1, {0}, true, 0, 0},
                 transposed_input(4, 5, -1, 1));
    check_reduce("min_dim", (red_ctx){R_MIN_DIM, 1, {-1}, false, 0, 0}, gc_input(3, s3, -1, 1));
    check_reduce("min_dim dim 0 keepdim", (red_ctx){R_MIN_DIM, 1, {0}, true, 0, 0},
                 gc_input(3, s3, -1, 1));
    check_reduce("max", (red_ctx){R_MAX, 0, {0}, false, 0, 0}, gc_input(3, s3, -1, 1));
    check_reduce("min strided input", (red_ctx){R_MIN, 0, {0}, false, 0, 0},
                 strided_input(3, 4, -1, 1));
}

/* ---- reductions: values by hand ---------------------------------------------------------------- */

/* The gradient of sum(f(x)) for x with the given values. */
static lm_tensor *grad_of(red_ctx c, int ndim, const int64_t *shape, const double *v)
{
    lm_tensor *x = leaf(ndim, shape, v);
    lm_tensor *in[1] = {x};
    lm_tensor *y = f_reduce(in, &c);
    lm_tensor *g = backward_sum(y) == LM_OK ? lm_retain(x->grad) : NULL;
    lm_release(x);
    return g;
}

static void check_grad(const char *what, red_ctx c, int ndim, const int64_t *shape,
                       const double *v, const double *want)
{
    lm_tensor *g = grad_of(c, ndim, shape, v);
    all_close(g, want, 1e-12, what);
    lm_release(g);
}

static void test_reduce_values(void)
{
    const red_ctx all_prod = {R_PROD, 0, {0}, false, 0, 0};
    check_grad("prod: one zero gets the product of the others", all_prod, LM_SHAPE(3),
               (const double[]){2, 0, 3}, (const double[]){0, 6, 0});
    check_grad("prod: two zeros give no gradient", all_prod, LM_SHAPE(4),
               (const double[]){2, 0, 0, 3}, (const double[]){0, 0, 0, 0});
    check_grad("prod dim 1: a row with a zero and one without", (red_ctx){R_PROD, 1, {1}, false, 0, 0},
               LM_SHAPE(2, 3), (const double[]){2, 0, 3, 1, 2, 4},
               (const double[]){0, 6, 0, 8, 4, 2});
    check_grad("prod dim 0: a column with two zeros and one without",
               (red_ctx){R_PROD, 1, {0}, false, 0, 0}, LM_SHAPE(3, 2),
               (const double[]){0, 2, 0, 3, 5, 4}, (const double[]){0, 12, 0, 8, 0, 6});
    check_grad("amax: ties share the gradient evenly", (red_ctx){R_AMAX, 0, {0}, false, 0, 0},
               LM_SHAPE(4), (const double[]){1, 3, 3, 2}, (const double[]){0, 0.5, 0.5, 0});
    check_grad("amax dim 1 with ties", (red_ctx){R_AMAX, 1, {1}, false, 0, 0}, LM_SHAPE(2, 3),
               (const double[]){1, 3, 3, 2, 2, 0}, (const double[]){0, 0.5, 0.5, 0.5, 0.5, 0});
    check_grad("amin: three-way tie", (red_ctx){R_AMIN, 0, {0}, false, 0, 0}, LM_SHAPE(4),
               (const double[]){2, 1, 1, 1}, (const double[]){0, 1.0 / 3, 1.0 / 3, 1.0 / 3});
    check_grad("max of the whole tensor: ties share evenly", (red_ctx){R_MAX, 0, {0}, false, 0, 0},
               LM_SHAPE(2, 2), (const double[]){4, 1, 4, 4},
               (const double[]){1.0 / 3, 0, 1.0 / 3, 1.0 / 3});
    check_grad("min of the whole tensor with a tie", (red_ctx){R_MIN, 0, {0}, false, 0, 0},
               LM_SHAPE(2, 2), (const double[]){0, 1, 2, 0}, (const double[]){0.5, 0, 0, 0.5});
    check_grad("max_dim: the gradient goes to the first index among ties",
               (red_ctx){R_MAX_DIM, 1, {1}, false, 0, 0}, LM_SHAPE(2, 3),
               (const double[]){1, 3, 3, 5, 5, 0}, (const double[]){0, 1, 0, 1, 0, 0});
    check_grad("min_dim keepdim: first index among ties", (red_ctx){R_MIN_DIM, 1, {1}, true, 0, 0},
               LM_SHAPE(2, 3), (const double[]){2, 1, 1, 0, 0, 3},
               (const double[]){0, 1, 0, 1, 0, 0});
    check_grad("max_dim dim 0", (red_ctx){R_MAX_DIM, 1, {0}, false, 0, 0}, LM_SHAPE(3, 2),
               (const double[]){1, 7, 4, 7, 4, 2}, (const double[]){0, 1, 1, 0, 0, 0});
    const double zeros[3] = {0, 0, 0};
    const double ps[] = {2, 1, INFINITY, 3, 0.5, 1.5};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "norm p=%g at 0 has subgradient 0", ps[i]);
        check_grad(what, (red_ctx){R_NORM, 0, {0}, false, 0, ps[i]}, LM_SHAPE(3), zeros, zeros);
    }
    check_grad("norm p=0 has no gradient", (red_ctx){R_NORM, 0, {0}, false, 0, 0}, LM_SHAPE(3),
               (const double[]){1, 0, -2}, zeros);
    check_grad("norm p=inf: ties share, with the sign", (red_ctx){R_NORM, 0, {0}, false, 0, INFINITY},
               LM_SHAPE(3), (const double[]){-2, 1, 2}, (const double[]){-0.5, 0, 0.5});
    check_grad("norm p=2 by hand", (red_ctx){R_NORM, 0, {0}, false, 0, 2}, LM_SHAPE(2),
               (const double[]){3, -4}, (const double[]){0.6, -0.8});
    check_grad("std of a constant has gradient 0", (red_ctx){R_STD, 0, {0}, false, 1, 0},
               LM_SHAPE(3), (const double[]){1, 1, 1}, zeros);
    check_grad("var by hand", (red_ctx){R_VAR, 0, {0}, false, 1, 0}, LM_SHAPE(4),
               (const double[]){1, 2, 3, 4}, (const double[]){-1, -1.0 / 3, 1.0 / 3, 1});
    check_grad("logsumexp by hand", (red_ctx){R_LSE, 0, {0}, false, 0, 0}, LM_SHAPE(2),
               (const double[]){0, log(3.0)}, (const double[]){0.25, 0.75});
    check_grad("mean by hand", (red_ctx){R_MEAN, 1, {0}, false, 0, 0}, LM_SHAPE(4, 1),
               (const double[]){1, 2, 3, 4}, (const double[]){0.25, 0.25, 0.25, 0.25});
    check_grad("sum of a 0-dim tensor", (red_ctx){R_SUM, 0, {0}, false, 0, 0}, 0, NULL,
               (const double[]){5}, (const double[]){1});
    check_grad("max_dim of a 0-dim tensor", (red_ctx){R_MAX_DIM, 1, {0}, false, 0, 0}, 0, NULL,
               (const double[]){5}, (const double[]){1});

    /* keepdim=false: the gradient is unsqueezed before broadcasting, so each row gets its own. */
    lm_tensor *x = gc_input(LM_SHAPE(2, 3, 4), -1, 1);
    lm_tensor *y = lm_sum(x, LM_DIMS(1), false);
    lm_tensor *seed = lm_from_data((const double[]){1, 2, 3, 4, 5, 6, 7, 8}, LM_F64, LM_SHAPE(2, 4));
    bool good = backward_seed(y, seed) == LM_OK && x->grad && x->grad->ndim == 3;
    for (int i = 0; good && i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) {
                double v;
                lm_get(x->grad, (const int64_t[]){i, j, k}, &v);
                good = good && v == 1 + k + 4 * i;
            }
    ok(good, "sum keepdim=false: the seed is unsqueezed at the reduced dim");
    lm_release(seed);
    lm_release(x);

    /* What is not differentiable. */
    x = gc_input(LM_SHAPE(3, 4), -1, 1);
    lm_tensor *vals = NULL, *idx = NULL;
    lm_max_dim(x, 1, false, &vals, &idx);
    lm_tensor *am = lm_argmax(x, 1, false, false), *amf = lm_argmin(x, 0, false, true);
    ok(vals && vals->requires_grad && idx && !idx->requires_grad && am && !am->requires_grad &&
           amf && !amf->requires_grad,
       "max_dim values require grad; its indices, argmax and argmin do not");
    lm_tensor *label = i64(LM_SHAPE(2), (const int64_t[]){1, 0});
    lm_tensor *oh = lm_one_hot(label, 3);
    ok(oh && !oh->requires_grad, "one_hot is not differentiable");
    release_all(5, (lm_tensor *[]){vals, idx, am, amf, oh});
    lm_release(label);
    lm_release(x);
}

/* ---- matmul ------------------------------------------------------------------------------------ */

static lm_tensor *f_matmul(lm_tensor **x, void *ctx)
{
    (void)ctx;
    return lm_matmul(x[0], x[1]);
}

/* Gradchecks a · b (both taken). */
static void check_matmul(const char *name, lm_tensor *a, lm_tensor *b)
{
    lm_tensor *in[2] = {a, b};
    gradcheck(name, f_matmul, 2, in, NULL);
    lm_release(a);
    lm_release(b);
}

/* A [2,3,4] leaf whose batch dims are permuted in memory: a non-contiguous batch. */
static lm_tensor *batch_transposed_input(void)
{
    lm_tensor *base = gc_input(LM_SHAPE(3, 2, 4), -1, 1);
    lm_requires_grad_(base, false);
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *v = lm_transpose(base, 0, 1);
    lm_set_grad_enabled(prev);
    lm_release(base);
    lm_requires_grad_(v, true);
    return v;
}

static void test_matmul_gradchecks(void)
{
    check_matmul("matmul", gc_input(LM_SHAPE(3, 4), -1, 1), gc_input(LM_SHAPE(4, 5), -1, 1));
    check_matmul("matmul 1-D . 1-D", gc_input(LM_SHAPE(4), -1, 1), gc_input(LM_SHAPE(4), -1, 1));
    check_matmul("matmul 1-D . 2-D", gc_input(LM_SHAPE(4), -1, 1), gc_input(LM_SHAPE(4, 5), -1, 1));
    check_matmul("matmul 2-D . 1-D", gc_input(LM_SHAPE(3, 4), -1, 1), gc_input(LM_SHAPE(4), -1, 1));
    check_matmul("matmul batched", gc_input(LM_SHAPE(2, 3, 4), -1, 1),
                 gc_input(LM_SHAPE(2, 4, 5), -1, 1));
    check_matmul("matmul batched . 2-D", gc_input(LM_SHAPE(2, 3, 4), -1, 1),
                 gc_input(LM_SHAPE(4, 5), -1, 1));
    check_matmul("matmul 2-D . batched", gc_input(LM_SHAPE(3, 4), -1, 1),
                 gc_input(LM_SHAPE(2, 4, 5), -1, 1));
    check_matmul("matmul broadcast batch dims", gc_input(LM_SHAPE(2, 1, 3, 4), -1, 1),
                 gc_input(LM_SHAPE(3, 4, 2), -1, 1));
    check_matmul("matmul batched . 1-D", gc_input(LM_SHAPE(2, 3, 4), -1, 1),
                 gc_input(LM_SHAPE(4), -1, 1));
    check_matmul("matmul 1-D . batched", gc_input(LM_SHAPE(4), -1, 1),
                 gc_input(LM_SHAPE(2, 4, 5), -1, 1));
    check_matmul("matmul transposed operands", transposed_input(3, 4, -1, 1),
                 transposed_input(4, 5, -1, 1));
    check_matmul("matmul non-contiguous batch . 2-D", batch_transposed_input(),
                 strided_input(4, 3, -1, 1));
    lm_tensor *a = gc_input(LM_SHAPE(3, 4), -1, 1);
    lm_requires_grad_(a, false);
    check_matmul("matmul only b requires grad", a, gc_input(LM_SHAPE(4, 2), -1, 1));
    lm_tensor *b = gc_input(LM_SHAPE(4, 2), -1, 1);
    lm_requires_grad_(b, false);
    check_matmul("matmul only a requires grad", gc_input(LM_SHAPE(2, 3, 4), -1, 1), b);
}

/* Element [i][j] of a 2-D (or [b][i][j] of a 3-D) f64/f32 tensor, any strides. */
static double at(const lm_tensor *t, int64_t b, int64_t i, int64_t j)
{
    double v;
    if (t->ndim == 2) lm_get(t, (const int64_t[]){i, j}, &v);
    else lm_get(t, (const int64_t[]){b, i, j}, &v);
    return v;
}

/* grad_a = g·bᵀ and grad_b = aᵀ·g summed over the batch, by loops: a [B,M,K] (or [M,K]),
 * b [K,N] or [B,K,N]. */
static void naive_matmul_grads(const lm_tensor *a, const lm_tensor *b, const lm_tensor *g,
                               double *ga, double *gb)
{
    int64_t B = a->ndim == 3 ? a->shape[0] : b->ndim == 3 ? b->shape[0] : 1;
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], N = b->shape[b->ndim - 1];
    memset(ga, 0, sizeof(double) * (size_t)(a->ndim == 3 ? B : 1) * M * K);
    memset(gb, 0, sizeof(double) * (size_t)(b->ndim == 3 ? B : 1) * K * N);
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++)
                for (int64_t j = 0; j < N; j++) {
                    double gv = at(g, bb, i, j);
                    ga[(a->ndim == 3 ? bb * M * K : 0) + i * K + k] += gv * at(b, bb, k, j);
                    gb[(b->ndim == 3 ? bb * K * N : 0) + k * N + j] += at(a, bb, i, k) * gv;
                }
}

static void check_matmul_naive(const char *what, lm_tensor *a, lm_tensor *b, double tol)
{
    lm_tensor *y = lm_matmul(a, b);
    lm_tensor *g = y ? lm_randn(y->ndim, y->shape, y->dtype) : NULL;
    lm_status st = backward_seed(y, g);
    int64_t na = lm_numel(a), nb = lm_numel(b);
    double *ga = malloc(sizeof(double) * (size_t)(na + nb));
    naive_matmul_grads(a, b, g, ga, ga + na);
    if (st) {
        ok(false, "%s", what);
        diag("backward failed: %s", lm_last_error());
    } else {
        char buf[160];
        snprintf(buf, sizeof buf, "%s: grad of a against loops", what);
        all_close(a->grad, ga, tol, buf);
        snprintf(buf, sizeof buf, "%s: grad of b against loops", what);
        all_close(b->grad, ga + na, tol, buf);
        ok(a->grad->dtype == a->dtype && b->grad->dtype == b->dtype, "%s: grads keep the dtype",
           what);
    }
    free(ga);
    lm_release(g);
    lm_release(a);
    lm_release(b);
}

static lm_tensor *to_f32_leaf(lm_tensor *t)
{
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *r = lm_to_dtype(t, LM_F32);
    lm_set_grad_enabled(prev);
    lm_release(t);
    lm_requires_grad_(r, true);
    return r;
}

static void test_matmul_values(void)
{
    check_matmul_naive("matmul [5,7].[7,6]", gc_input(LM_SHAPE(5, 7), -1, 1),
                       gc_input(LM_SHAPE(7, 6), -1, 1), 1e-12);
    check_matmul_naive("matmul [3,5,7].[7,6] (one product for b's grad)",
                       gc_input(LM_SHAPE(3, 5, 7), -1, 1), gc_input(LM_SHAPE(7, 6), -1, 1), 1e-12);
    check_matmul_naive("matmul [5,7].[3,7,6] (batch summed for a's grad)",
                       gc_input(LM_SHAPE(5, 7), -1, 1), gc_input(LM_SHAPE(3, 7, 6), -1, 1), 1e-12);
    check_matmul_naive("matmul f32 [4,16,32].[32,8]",
                       to_f32_leaf(gc_input(LM_SHAPE(4, 16, 32), -1, 1)),
                       to_f32_leaf(gc_input(LM_SHAPE(32, 8), -1, 1)), 1e-4);

    /* Only what the other gradient needs is saved: changing a after the product does not
     * matter when only a requires grad, but changing b does. */
    lm_tensor *a = gc_input(LM_SHAPE(2, 3), -1, 1), *b = gc_input(LM_SHAPE(3, 2), -1, 1);
    lm_requires_grad_(b, false);
    lm_tensor *y = lm_matmul(a, b);
    bool prev = lm_set_grad_enabled(false);
    lm_mul_scalar_(a, 2.0);
    lm_set_grad_enabled(prev);
    ok(backward_sum(lm_retain(y)) == LM_OK, "matmul: a modified after the product, only a needs grad");
    lm_release(y);
    y = lm_matmul(a, b);
    prev = lm_set_grad_enabled(false);
    lm_mul_scalar_(b, 2.0);
    lm_set_grad_enabled(prev);
    lm_status st = backward_sum(y);
    ok(st == LM_ERR_STATE, "matmul: b modified after the product fails the backward");
    has_str(lm_last_error(), "matmul", "the message names matmul");
    has_str(lm_last_error(), "modified by an in-place operation", "and says why");
    lm_release(a);
    lm_release(b);
}

/* ---- indexing and joining ---------------------------------------------------------------------- */

typedef struct {
    int dim;
    const lm_tensor *index, *mask;
    double value;
} idx_ctx;

static lm_tensor *f_index_select(lm_tensor **x, void *ctx)
{
    const idx_ctx *c = ctx;
    return lm_index_select(x[0], c->dim, c->index);
}

static lm_tensor *f_gather(lm_tensor **x, void *ctx)
{
    const idx_ctx *c = ctx;
    return lm_gather(x[0], c->dim, c->index);
}

static lm_tensor *f_scatter_add(lm_tensor **x, void *ctx)
{
    const idx_ctx *c = ctx;
    return lm_scatter_add(x[0], c->dim, c->index, x[1]);
}

/* In place on a non-leaf: y = 1.5 x0, then y.scatter_add_(dim, index, x1). */
static lm_tensor *f_scatter_add_(lm_tensor **x, void *ctx)
{
    const idx_ctx *c = ctx;
    lm_tensor *y = lm_mul_scalar(x[0], 1.5);
    if (y && lm_scatter_add_(y, c->dim, c->index, x[1]) != LM_OK) {
        lm_release(y);
        return NULL;
    }
    return y;
}

static lm_tensor *f_masked_fill(lm_tensor **x, void *ctx)
{
    const idx_ctx *c = ctx;
    return lm_masked_fill(x[0], c->mask, c->value);
}

static lm_tensor *f_masked_fill_(lm_tensor **x, void *ctx)
{
    const idx_ctx *c = ctx;
    lm_tensor *y = lm_mul_scalar(x[0], -2.0);
    if (y && lm_masked_fill_(y, c->mask, c->value) != LM_OK) {
        lm_release(y);
        return NULL;
    }
    return y;
}

typedef struct {
    int n, dim;
    bool stack;
} join_ctx;

static lm_tensor *f_join(lm_tensor **x, void *ctx)
{
    const join_ctx *c = ctx;
    return c->stack ? lm_stack(c->n, x, c->dim) : lm_cat(c->n, x, c->dim);
}

/* The pieces of chunk (ctx NULL) or split, recombined: piece 2 * piece 0 joined with piece 1. */
static lm_tensor *f_pieces(lm_tensor **x, void *ctx)
{
    bool split = ctx != NULL;
    lm_tensor *p[4] = {NULL};
    int n = split ? lm_split(x[0], 2, 0, p, 4) : lm_chunk(x[0], 3, 0, p, 4);
    if (n != 3) return NULL;
    lm_tensor *m = lm_mul(p[2], p[0]);
    lm_tensor *r = m ? lm_cat(2, (lm_tensor *[]){m, p[1]}, 0) : NULL;
    lm_release(m);
    release_all(3, p);
    return r;
}

static void test_index_gradchecks(void)
{
    lm_tensor *idx = i64(LM_SHAPE(5), (const int64_t[]){0, 2, 2, 4, 0});
    lm_tensor *x = gc_input(LM_SHAPE(5, 3), -1, 1);
    gradcheck("index_select (repeated indices)", f_index_select, 1, &x, &(idx_ctx){0, idx, NULL, 0});
    lm_release(x);
    x = transposed_input(3, 5, -1, 1);
    gradcheck("index_select dim 1 transposed input", f_index_select, 1, &x,
              &(idx_ctx){1, idx, NULL, 0});
    lm_release(x);
    lm_release(idx);
    idx = i64(0, NULL, (const int64_t[]){2});
    x = gc_input(LM_SHAPE(2, 4), -1, 1);
    gradcheck("index_select 0-dim index", f_index_select, 1, &x, &(idx_ctx){-1, idx, NULL, 0});
    lm_release(x);
    lm_release(idx);

    idx = i64(LM_SHAPE(3, 3), (const int64_t[]){3, 3, 0, 1, 1, 1, 2, 0, 3});
    x = gc_input(LM_SHAPE(3, 4), -1, 1);
    gradcheck("gather (repeated indices)", f_gather, 1, &x, &(idx_ctx){1, idx, NULL, 0});
    lm_release(x);
    lm_release(idx);
    idx = i64(LM_SHAPE(2, 3), (const int64_t[]){4, 0, 4, 4, 1, 2});
    x = strided_input(5, 3, -1, 1);
    gradcheck("gather dim 0 strided input", f_gather, 1, &x, &(idx_ctx){0, idx, NULL, 0});
    lm_release(x);

    /* index [2,3] within src [3,4]: src's elements outside the index get no gradient. */
    lm_tensor *in[2] = {gc_input(LM_SHAPE(5, 3), -1, 1), gc_input(LM_SHAPE(3, 4), -1, 1)};
    gradcheck("scatter_add (src larger than index)", f_scatter_add, 2, in,
              &(idx_ctx){0, idx, NULL, 0});
    gradcheck("scatter_add_ on a non-leaf", f_scatter_add_, 2, in, &(idx_ctx){0, idx, NULL, 0});
    release_all(2, in);
    lm_release(idx);
    idx = i64(LM_SHAPE(3, 2), (const int64_t[]){1, 1, 0, 1, 2, 2});
    in[0] = transposed_input(3, 3, -1, 1);
    in[1] = gc_input(LM_SHAPE(3, 2), -1, 1);
    gradcheck("scatter_add dim 1 transposed input", f_scatter_add, 2, in,
              &(idx_ctx){1, idx, NULL, 0});
    release_all(2, in);
    lm_release(idx);

    lm_tensor *mask = lm_from_data((const uint8_t[]){1, 0, 0, 1}, LM_U8, LM_SHAPE(4));
    x = gc_input(LM_SHAPE(3, 4), -1, 1);
    gradcheck("masked_fill (broadcast mask)", f_masked_fill, 1, &x, &(idx_ctx){0, NULL, mask, 7});
    gradcheck("masked_fill_ on a non-leaf", f_masked_fill_, 1, &x, &(idx_ctx){0, NULL, mask, 7});
    lm_release(x);
    lm_release(mask);

    lm_tensor *parts[3] = {gc_input(LM_SHAPE(2, 3), -1, 1), gc_input(LM_SHAPE(4, 3), -1, 1),
                           gc_input(LM_SHAPE(1, 3), -1, 1)};
    gradcheck("cat", f_join, 3, parts, &(join_ctx){3, 0, false});
    release_all(3, parts);
    parts[0] = transposed_input(3, 2, -1, 1);
    parts[1] = gc_input(LM_SHAPE(3, 4), -1, 1);
    parts[2] = strided_input(3, 1, -1, 1);
    gradcheck("cat dim 1 non-contiguous inputs", f_join, 3, parts, &(join_ctx){3, -1, false});
    release_all(3, parts);
    parts[0] = gc_input(LM_SHAPE(2, 3), -1, 1);
    parts[1] = gc_input(LM_SHAPE(0), -1, 1);
    parts[2] = gc_input(LM_SHAPE(2, 3), -1, 1);
    gradcheck("cat with a legacy empty input", f_join, 3, parts, &(join_ctx){3, 0, false});
    ok(parts[1]->grad && lm_numel(parts[1]->grad) == 0, "the empty input gets an empty gradient");
    release_all(3, parts);
    parts[0] = gc_input(LM_SHAPE(2, 3), -1, 1);
    parts[1] = transposed_input(2, 3, -1, 1);
    parts[2] = gc_input(LM_SHAPE(2, 3), -1, 1);
    gradcheck("stack", f_join, 3, parts, &(join_ctx){3, 0, true});
    gradcheck("stack dim -1", f_join, 3, parts, &(join_ctx){3, -1, true});
    release_all(3, parts);

    x = gc_input(LM_SHAPE(6, 2), -1, 1);
    gradcheck("chunk (narrow views)", f_pieces, 1, &x, NULL);
    gradcheck("split (narrow views)", f_pieces, 1, &x, &(bool){true});
    lm_release(x);
}

static void test_index_values(void)
{
    /* index_select with repeated rows, against a loop: row r gets the seed rows that picked it. */
    const int64_t picks[] = {1, 1, 3, 1, 0};
    lm_tensor *idx = i64(LM_SHAPE(5), picks);
    lm_tensor *x = gc_input(LM_SHAPE(4, 3), -1, 1);
    lm_tensor *seed = lm_randn(LM_SHAPE(5, 3), LM_F64);
    double want[12] = {0}, s;
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++) {
            lm_get(seed, (const int64_t[]){i, j}, &s);
            want[picks[i] * 3 + j] += s;
        }
    ok(backward_seed(lm_index_select(x, 0, idx), seed) == LM_OK, "index_select backward runs");
    all_close(x->grad, want, 1e-12, "index_select: repeated indices accumulate (against a loop)");
    lm_release(seed);
    lm_release(x);
    lm_release(idx);

    /* gather along dim 1 against a loop. */
    const int64_t gi[] = {2, 2, 0, 1, 1, 1};
    idx = i64(LM_SHAPE(2, 3), gi);
    x = gc_input(LM_SHAPE(2, 4), -1, 1);
    seed = lm_randn(LM_SHAPE(2, 3), LM_F64);
    memset(want, 0, sizeof want);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            lm_get(seed, (const int64_t[]){i, j}, &s);
            want[i * 4 + gi[i * 3 + j]] += s;
        }
    ok(backward_seed(lm_gather(x, 1, idx), seed) == LM_OK, "gather backward runs");
    all_close(x->grad, want, 1e-12, "gather: repeated indices accumulate (against a loop)");
    lm_release(seed);
    lm_release(x);
    lm_release(idx);

    /* cat of an f32 and an f64 input: each gradient has its input's dtype. */
    lm_tensor *a = to_f32_leaf(gc_input(LM_SHAPE(2), -1, 1)), *b = gc_input(LM_SHAPE(3), -1, 1);
    lm_tensor *c = lm_cat(2, (lm_tensor *[]){a, b}, 0);
    seed = lm_from_data((const double[]){1, 2, 3, 4, 5}, LM_F64, LM_SHAPE(5));
    ok(backward_seed(c, seed) == LM_OK && a->grad && a->grad->dtype == LM_F32 && b->grad &&
           b->grad->dtype == LM_F64,
       "cat: gradients come back in each input's dtype");
    all_close(a->grad, (const double[]){1, 2}, 0, "cat: first input's stretch of the gradient");
    all_close(b->grad, (const double[]){3, 4, 5}, 0, "cat: second input's stretch");
    lm_release(seed);
    lm_release(a);
    lm_release(b);
}

/* ---- in-place ops under grad mode -------------------------------------------------------------- */

static void test_inplace(void)
{
    lm_tensor *x = leaf(LM_SHAPE(4), (const double[]){1, 2, 3, 4});
    lm_tensor *mask = lm_from_data((const uint8_t[]){1, 0, 1, 0}, LM_U8, LM_SHAPE(4));
    lm_tensor *idx = i64(LM_SHAPE(2), (const int64_t[]){0, 3});
    lm_tensor *src = leaf(LM_SHAPE(2), (const double[]){10, 20});

    lm_status st = lm_masked_fill_(x, mask, 0.0);
    ok(st == LM_ERR_STATE, "masked_fill_ on a leaf that requires grad is refused");
    has_str(lm_last_error(), "masked_fill_: a leaf tensor that requires grad is used in an in-place "
            "operation", "  with a message naming the op");
    st = lm_scatter_add_(x, 0, idx, src);
    ok(st == LM_ERR_STATE, "scatter_add_ on a leaf that requires grad is refused");
    has_str(lm_last_error(), "scatter_add_: a leaf tensor that requires grad is used in an "
            "in-place operation", "  with a message naming the op");
    all_close(x, (const double[]){1, 2, 3, 4}, 0, "  and the leaf is left untouched");
    bool prev = lm_set_grad_enabled(false);
    st = lm_masked_fill_(x, mask, -1.0);
    lm_set_grad_enabled(prev);
    ok(st == LM_OK && lm_is_leaf(x), "under no_grad the leaf may be written");
    all_close(x, (const double[]){-1, 2, -1, 4}, 0, "  with the values written");

    /* A non-leaf takes the op's node; gradients flow through it and through its old node. */
    lm_tensor *y = lm_mul_scalar(x, 2.0);
    lm_retain_grad(y);
    lm_tensor *w = lm_mul_scalar(y, 3.0); /* keeps y's old node alive, as an input */
    st = lm_masked_fill_(y, mask, 5.0);
    ok(st == LM_OK && !lm_is_leaf(y) && y->grad_fn, "masked_fill_ on a non-leaf records");
    char *graph = lm_graph_export(y);
    has_str(graph ? graph : "", "\"masked_fill\"", "  the non-leaf's node is masked_fill");
    free(graph);
    all_close(y, (const double[]){5, 4, 5, 8}, 0, "  values written in place");
    ok(backward_sum(lm_retain(y)) == LM_OK, "  backward through it runs");
    all_close(x->grad, (const double[]){0, 2, 0, 2}, 0, "  filled positions pass no gradient");
    all_close(y->grad, (const double[]){1, 1, 1, 1}, 0, "  retain_grad followed the tensor");
    lm_release(y);
    lm_zero_grad(x);
    ok(backward_sum(w) == LM_OK, "the old node still serves an earlier consumer");
    all_close(x->grad, (const double[]){6, 6, 6, 6}, 0, "  with the old values' gradient");
    lm_zero_grad(x);

    /* scatter_add_ into a tensor that does not require grad, from a src that does. */
    lm_tensor *t = lm_zeros(LM_SHAPE(4), LM_F64);
    st = lm_scatter_add_(t, 0, idx, src);
    ok(st == LM_OK && t->requires_grad && !lm_is_leaf(t),
       "scatter_add_ from a src that requires grad makes the target a non-leaf");
    all_close(t, (const double[]){10, 0, 0, 20}, 0, "  values added in place");
    lm_tensor *seed = lm_from_data((const double[]){1, 2, 3, 4}, LM_F64, LM_SHAPE(4));
    ok(backward_seed(lm_retain(t), seed) == LM_OK, "  backward runs");
    all_close(src->grad, (const double[]){1, 4}, 0, "  src gets the gradient at its index");
    lm_release(seed);
    lm_release(t);

    /* A saved tensor changed in place: the backward that needs it fails and says so. */
    y = lm_mul_scalar(x, 1.0);
    lm_tensor *p = lm_prod(y, 0, NULL, false);
    lm_masked_fill_(y, mask, 0.0);
    st = backward_sum(p);
    ok(st == LM_ERR_STATE, "prod's saved input changed by masked_fill_: backward fails");
    has_str(lm_last_error(), "prod", "  the message names prod");
    has_str(lm_last_error(), "modified by an in-place operation", "  and says why");
    lm_release(y);

    /* Saved tensors are freed after a backward without retain_graph. */
    p = lm_prod(x, 0, NULL, false);
    ok(lm_backward(p, NULL, false) == LM_OK, "prod backward");
    st = lm_backward(p, NULL, false);
    ok(st == LM_ERR_STATE, "a second backward through prod fails");
    has_str(lm_last_error(), "second time", "  the message says why");
    lm_release(p);
    lm_zero_grad(x);
    p = lm_prod(x, 0, NULL, false);
    ok(lm_backward(p, NULL, true) == LM_OK && lm_backward(p, NULL, false) == LM_OK,
       "with retain_graph the second backward runs");
    /* x is {-1, 2, -1, 4}: prod 8, each gradient 8 / x_i, twice. */
    all_close(x->grad, (const double[]){-16, 8, -16, 4}, 1e-12, "  and the gradients accumulate");
    lm_release(p);

    /* Errors of the forwards are unchanged by grad mode. */
    lm_tensor *bad = i64(LM_SHAPE(2), (const int64_t[]){0, 9});
    lm_tensor *r = lm_index_select(x, 0, bad);
    ok(!r && lm_last_status() == LM_ERR_INDEX, "index_select with a bad index fails under grad mode");
    has_str(lm_last_error(), "index_select: index 9 is out of range for dim 0 of size 4",
            "  with the op's message");
    lm_release(bad);

    release_all(4, (lm_tensor *[]){x, mask, idx, src});
}

/* ---- allocation failures ----------------------------------------------------------------------- */

/* Forward and backward of one op on prepared inputs, returning the first failure. */
typedef lm_status (*scenario_fn)(lm_tensor *const *in, lm_tensor *const *index);

static lm_status sc_prod(lm_tensor *const *in, lm_tensor *const *index)
{
    (void)index;
    return backward_sum(lm_prod(in[0], LM_DIMS(1), false));
}

static lm_status sc_std_norm(lm_tensor *const *in, lm_tensor *const *index)
{
    (void)index;
    lm_tensor *s = lm_std(in[0], LM_DIMS(0), 1, false);
    lm_tensor *n = lm_norm(in[0], 3.0, LM_DIMS(1), true);
    lm_tensor *m = NULL;
    lm_max_dim(in[0], 1, false, &m, NULL);
    lm_tensor *a = lm_amax(in[0], 0, NULL, false);
    lm_status st = s && n && m && a ? LM_OK : lm_last_status();
    if (!st) st = backward_sum(lm_retain(s));
    if (!st) st = backward_sum(lm_retain(n));
    if (!st) st = backward_sum(lm_retain(m));
    if (!st) st = backward_sum(lm_retain(a));
    release_all(4, (lm_tensor *[]){s, n, m, a});
    return st;
}

static lm_status sc_matmul(lm_tensor *const *in, lm_tensor *const *index)
{
    (void)index;
    lm_status st = backward_sum(lm_matmul(in[1], in[2]));
    if (!st) st = backward_sum(lm_matmul(in[0], in[3]));
    return st;
}

static lm_status sc_indexing(lm_tensor *const *in, lm_tensor *const *index)
{
    lm_status st = backward_sum(lm_index_select(in[0], 1, index[1]));
    if (!st) st = backward_sum(lm_gather(in[0], 0, index[0]));
    if (!st) st = backward_sum(lm_scatter_add(in[0], 0, index[0], in[0]));
    lm_tensor *y = st ? NULL : lm_mul_scalar(in[0], 2.0);
    if (y && !(st = lm_scatter_add_(y, 1, index[0], in[0]))) {
        lm_tensor *mask = lm_lt_scalar(y, 0.0);
        st = mask ? lm_masked_fill_(y, mask, 0.0) : lm_last_status();
        lm_release(mask);
    }
    if (!st) st = backward_sum(lm_retain(y));
    lm_release(y);
    return st;
}

static lm_status sc_join(lm_tensor *const *in, lm_tensor *const *index)
{
    (void)index;
    lm_tensor *two[2] = {in[0], in[0]};
    lm_status st = backward_sum(lm_cat(2, two, 1));
    if (!st) st = backward_sum(lm_stack(2, two, 0));
    return st;
}

/* Makes the k-th allocation fail for k = 1, 2, ... until the scenario succeeds: each failure
 * must come back as LM_ERR_MEMORY (and leak nothing: run under valgrind or ASan). */
static void fault_sweep(const char *name, scenario_fn f, lm_tensor *const *in, int n,
                        lm_tensor *const *index)
{
    int k;
    bool clean = true;
    for (k = 1; k < 5000; k++) {
        for (int i = 0; i < n; i++) lm_zero_grad(in[i]);
        lm_clear_error();
        lm_debug_fail_alloc_after(k);
        lm_status st = f(in, index);
        lm_debug_fail_alloc_after(0);
        if (st == LM_OK) break;
        if (st != LM_ERR_MEMORY) {
            clean = false;
            diag("allocation %d: status %s: %s", k, lm_status_name(st), lm_last_error());
            break;
        }
    }
    ok(clean && k < 5000, "%s: every failed allocation is reported (%d runs)", name, k);
}

static void test_allocation_failures(void)
{
    lm_tensor *in[4] = {gc_input(LM_SHAPE(3, 4), -1, 1), gc_input(LM_SHAPE(2, 3, 4), -1, 1),
                        gc_input(LM_SHAPE(4, 3), -1, 1), gc_input(LM_SHAPE(4), -1, 1)};
    lm_tensor *index[2] = {i64(LM_SHAPE(2, 2), (const int64_t[]){0, 2, 2, 1}),
                           i64(LM_SHAPE(3), (const int64_t[]){3, 0, 3})};
    bool prev = lm_set_grad_enabled(false);
    lm_set(in[0], (const int64_t[]){1, 2}, 0.0); /* a zero for prod's slow path */
    lm_set_grad_enabled(prev);
    fault_sweep("prod with a zero", sc_prod, in, 4, index);
    fault_sweep("std, norm, max_dim, amax", sc_std_norm, in, 4, index);
    fault_sweep("matmul batched and 2-D . 1-D", sc_matmul, in, 4, index);
    fault_sweep("index_select, gather, scatter_add, in-place on a non-leaf", sc_indexing, in, 4,
                index);
    fault_sweep("cat and stack", sc_join, in, 4, index);
    release_all(4, in);
    release_all(2, index);
}

int main(void)
{
    plan_auto();
    lm_manual_seed(20240611);
    test_reduce_gradchecks();
    test_reduce_values();
    test_matmul_gradchecks();
    test_matmul_values();
    test_index_gradchecks();
    test_index_values();
    test_inplace();
    test_allocation_failures();
    return done();
}
