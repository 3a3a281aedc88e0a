/* test_nn_layers.c — linear, batch_norm, layer_norm, group_norm, dropout and embedding:
 * forward values against naive loops written here (in double, reading elements with lm_get),
 * gradients by finite differences (gradcheck, one line per op and variant), the fused norm
 * kernels against composite references built from primitives (mean, var, sub, div, sqrt...)
 * in value and gradient, running statistics by hand, dropout's mask against a replay of the
 * generator, embedding gradients by hand, thread-count independence, error messages, the
 * version check on saved tensors, and every allocation of each op failing in turn. */
#include "gradcheck.h"
#include "lumen.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static int64_t numel_of(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

/* Element flat (C order) of t, any strides. */
static double at(const lm_tensor *t, int64_t flat)
{
    int64_t idx[LM_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = flat % t->shape[d];
        flat /= t->shape[d];
    }
    double v = NAN;
    lm_get(t, idx, &v);
    return v;
}

/* t's values in C order, as doubles (free them). */
static double *values(const lm_tensor *t)
{
    int64_t n = lm_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = at(t, i);
    return v;
}

static bool same_shape(const lm_tensor *a, const lm_tensor *b)
{
    if (!a || !b || a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

/* Largest |a - b| over the elements; INFINITY when shapes differ or a tensor is missing. */
static double max_diff(const lm_tensor *a, const lm_tensor *b)
{
    if (!same_shape(a, b)) return INFINITY;
    double worst = 0;
    for (int64_t i = 0; i < lm_numel(a); i++) {
        double d = fabs(at(a, i) - at(b, i));
        if (!(d <= worst)) worst = d; /* NaN counts as the worst */
    }
    return worst;
}

/* Largest |t - want| against an array. */
static double max_diff_to(const lm_tensor *t, const double *want, int64_t n)
{
    if (!t || lm_numel(t) != n) return INFINITY;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(at(t, i) - want[i]);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

static bool all_equal(const lm_tensor *a, const lm_tensor *b) { return max_diff(a, b) == 0; }

/* A leaf copy of t that requires grad. */
static lm_tensor *leaf(const lm_tensor *t)
{
    lm_tensor *c = lm_clone(t);
    if (c) lm_requires_grad_(c, true);
    return c;
}

static lm_tensor *grad_copy(const lm_tensor *t)
{
    return t && t->grad ? lm_clone(t->grad) : NULL;
}

/* ---- naive references ----------------------------------------------------------------------- */

/* y [rows, out] = x [rows, in] · wᵀ + b. */
static void naive_linear(const double *x, const double *w, const double *b, int64_t rows,
                         int64_t in, int64_t out, double *y)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int64_t k = 0; k < in; k++) s += x[i * in + k] * w[o * in + k];
            y[i * out + o] = s;
        }
}

/* x seen as [A, C, S]; statistics per channel (G == 0: batch norm) or per (a, group). */
typedef struct {
    int64_t A, C, S, G;
} geom;

/* Which statistics set element (a, c, *) belongs to. */
static int64_t set_of(geom g, int64_t a, int64_t c) { return g.G ? a * g.G + c / (g.C / g.G) : c; }

/* y = (x - mean) / sqrt(biased var + eps) * w[c] + b[c] (NULL w, b: 1, 0), each set's mean and
 * biased variance into mean_out, var_out when given. */
static void naive_norm(const double *x, geom g, const double *w, const double *b, double eps,
                       double *y, double *mean_out, double *var_out)
{
    int64_t nsets = g.G ? g.A * g.G : g.C;
    for (int64_t set = 0; set < nsets; set++) {
        double sum = 0, sq = 0;
        int64_t cnt = 0;
        for (int64_t a = 0; a < g.A; a++)
            for (int64_t c = 0; c < g.C; c++)
                for (int64_t i = 0; i < g.S && set_of(g, a, c) == set; i++, cnt++)
                    sum += x[(a * g.C + c) * g.S + i];
        double mean = sum / (double)cnt;
        for (int64_t a = 0; a < g.A; a++)
            for (int64_t c = 0; c < g.C; c++)
                for (int64_t i = 0; i < g.S && set_of(g, a, c) == set; i++) {
                    double d = x[(a * g.C + c) * g.S + i] - mean;
                    sq += d * d;
                }
        double var = sq / (double)cnt;
        for (int64_t a = 0; a < g.A; a++)
            for (int64_t c = 0; c < g.C; c++)
                for (int64_t i = 0; i < g.S && set_of(g, a, c) == set; i++) {
                    int64_t k = (a * g.C + c) * g.S + i;
                    y[k] = (x[k] - mean) / sqrt(var + eps) * (w ? w[c] : 1) + (b ? b[c] : 0);
                }
        if (mean_out) mean_out[set] = mean;
        if (var_out) var_out[set] = var;
    }
}

/* ---- linear ------------------------------------------------------------------------------- */

static void check_linear_forward(const char *what, const lm_tensor *x, const lm_tensor *w,
                                 const lm_tensor *b, double tol)
{
    lm_tensor *y = lm_linear(x, w, b);
    int64_t in = w->shape[1], out = w->shape[0], rows = numel_of(x->ndim - 1, x->shape);
    double *xv = values(x), *wv = values(w), *bv = b ? values(b) : NULL;
    double *want = malloc(sizeof(double) * (size_t)(rows * out + 1));
    naive_linear(xv, wv, bv, rows, in, out, want);
    bool shape_ok = y && y->ndim == x->ndim && y->shape[y->ndim - 1] == out;
    for (int d = 0; shape_ok && d < x->ndim - 1; d++) shape_ok = y->shape[d] == x->shape[d];
    ok(shape_ok && max_diff_to(y, want, rows * out) <= tol, "linear forward: %s", what);
    if (!y) diag("%s", lm_last_error());
    free(xv);
    free(wv);
    free(bv);
    free(want);
    lm_release(y);
}

static void test_linear_forward(void)
{
    lm_manual_seed(1);
    for (int k = 0; k < 2; k++) {
        lm_dtype dt = k ? LM_F64 : LM_F32;
        double tol = k ? 1e-12 : 1e-5;
        char what[96];
        lm_tensor *x = lm_randn(LM_SHAPE(5, 7), dt), *w = lm_randn(LM_SHAPE(4, 7), dt);
        lm_tensor *b = lm_randn(LM_SHAPE(4), dt);
        snprintf(what, sizeof what, "[5,7] with bias (%s)", lm_dtype_name(dt));
        check_linear_forward(what, x, w, b, tol);
        snprintf(what, sizeof what, "[5,7] without bias (%s)", lm_dtype_name(dt));
        check_linear_forward(what, x, w, NULL, tol);

        lm_tensor *x3 = lm_randn(LM_SHAPE(2, 3, 7), dt);
        snprintf(what, sizeof what, "3-D input [2,3,7] (%s)", lm_dtype_name(dt));
        check_linear_forward(what, x3, w, b, tol);
        lm_tensor *x1 = lm_randn(LM_SHAPE(7), dt);
        snprintf(what, sizeof what, "1-D input [7] (%s)", lm_dtype_name(dt));
        check_linear_forward(what, x1, w, b, tol);

        /* Views: a transposed input and weight go to BLAS as they lie, a slice of every other
         * row with a leading dim of two rows; a permuted 3-D input (leading dims that do not
         * merge) and an expanded one (stride 0, which BLAS cannot take) are copied first. */
        lm_tensor *xs = lm_randn(LM_SHAPE(7, 5), dt), *xt = lm_t(xs);
        lm_tensor *ws = lm_randn(LM_SHAPE(7, 4), dt), *wt = lm_t(ws);
        snprintf(what, sizeof what, "transposed input and weight (%s)", lm_dtype_name(dt));
        check_linear_forward(what, xt, wt, b, tol);
        lm_tensor *xp = lm_permute(x3, (const int[]){1, 0, 2});
        snprintf(what, sizeof what, "permuted 3-D input (%s)", lm_dtype_name(dt));
        check_linear_forward(what, xp, w, b, tol);
        lm_tensor *b8 = lm_randn(LM_SHAPE(8), dt);
        lm_tensor *xr = lm_slice(x, 0, 0, 5, 2), *bs = lm_slice(b8, 0, 0, 8, 2);
        snprintf(what, sizeof what, "row slice and strided bias (%s)", lm_dtype_name(dt));
        check_linear_forward(what, xr, w, bs, tol);
        lm_tensor *xe = lm_expand(x1, LM_SHAPE(3, 7));
        snprintf(what, sizeof what, "expanded input (%s)", lm_dtype_name(dt));
        check_linear_forward(what, xe, w, b, tol);

        lm_release(xs), lm_release(xt), lm_release(ws), lm_release(wt), lm_release(xp);
        lm_release(xr), lm_release(bs), lm_release(b8), lm_release(xe), lm_release(x1);
        lm_release(x3);
        lm_release(x), lm_release(w), lm_release(b);
    }
    /* A product with nothing to sum: the output is the bias. */
    lm_tensor *x0 = lm_zeros(LM_SHAPE(3, 0), LM_F32), *w0 = lm_zeros(LM_SHAPE(2, 0), LM_F32);
    lm_tensor *b0 = lm_from_data((const float[]){1.5f, -2}, LM_F32, LM_SHAPE(2));
    check_linear_forward("in_features = 0 gives the bias", x0, w0, b0, 0);
    lm_release(x0), lm_release(w0), lm_release(b0);
}

static lm_tensor *f_linear(lm_tensor **in, void *ctx)
{
    (void)ctx;
    return lm_linear(in[0], in[1], in[2]);
}

static lm_tensor *f_linear_nobias(lm_tensor **in, void *ctx)
{
    (void)ctx;
    return lm_linear(in[0], in[1], NULL);
}

static void test_linear_grad(void)
{
    lm_manual_seed(2);
    lm_tensor *in[3] = {gc_input(LM_SHAPE(4, 5), -1, 1), gc_input(LM_SHAPE(3, 5), -1, 1),
                        gc_input(LM_SHAPE(3), -1, 1)};
    gradcheck("linear", f_linear, 3, in, NULL);
    gradcheck("linear without bias", f_linear_nobias, 2, in, NULL);
    lm_tensor *x3 = gc_input(LM_SHAPE(2, 3, 5), -1, 1);
    lm_tensor *in3[3] = {x3, in[1], in[2]};
    gradcheck("linear 3-D input", f_linear, 3, in3, NULL);
    lm_tensor *x1 = gc_input(LM_SHAPE(5), -1, 1);
    lm_tensor *in1[3] = {x1, in[1], in[2]};
    gradcheck("linear 1-D input", f_linear, 3, in1, NULL);

    /* Non-contiguous inputs: views made without recording, then marked as leaves. */
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *xs = gc_input(LM_SHAPE(5, 4), -1, 1), *ws = gc_input(LM_SHAPE(5, 3), -1, 1);
    lm_tensor *xt = lm_t(xs), *wt = lm_t(ws);
    lm_tensor *xp = lm_permute(x3, (const int[]){1, 0, 2});
    lm_set_grad_enabled(prev);
    lm_requires_grad_(xt, true);
    lm_requires_grad_(wt, true);
    lm_requires_grad_(xp, true);
    lm_tensor *int_[3] = {xt, wt, in[2]};
    gradcheck("linear transposed input and weight", f_linear, 3, int_, NULL);
    lm_tensor *inp[3] = {xp, in[1], in[2]};
    gradcheck("linear permuted 3-D input", f_linear, 3, inp, NULL);

    /* Only the weight needs a gradient (a first layer): the input gets none. */
    lm_tensor *xc = lm_detach(in[0]);
    lm_tensor *y = lm_linear(xc, in[1], NULL);
    lm_tensor *s = lm_sum(y, 0, NULL, false);
    lm_zero_grad(in[1]);
    ok(s && lm_backward(s, NULL, false) == LM_OK && in[1]->grad && !xc->grad,
       "linear: backward fills the weight's gradient only when the input needs none");
    lm_release(s), lm_release(y), lm_release(xc);

    lm_release(xs), lm_release(ws), lm_release(xt), lm_release(wt), lm_release(xp);
    lm_release(x3), lm_release(x1);
    for (int i = 0; i < 3; i++) lm_release(in[i]);
}

/* linear against matmul(x, wᵀ) + b built from primitives, values and gradients. */
static void test_linear_composite(void)
{
    lm_manual_seed(3);
    lm_tensor *x0 = lm_randn(LM_SHAPE(6, 9), LM_F32), *w0 = lm_randn(LM_SHAPE(4, 9), LM_F32);
    lm_tensor *b0 = lm_randn(LM_SHAPE(4), LM_F32), *seed = lm_randn(LM_SHAPE(6, 4), LM_F32);
    lm_tensor *x[2] = {leaf(x0), leaf(x0)}, *w[2] = {leaf(w0), leaf(w0)},
              *b[2] = {leaf(b0), leaf(b0)};
    lm_tensor *y0 = lm_linear(x[0], w[0], b[0]);
    lm_tensor *wt = lm_t(w[1]), *p = lm_matmul(x[1], wt), *y1 = lm_add(p, b[1]);
    bool ran = y0 && y1 && lm_backward(y0, seed, false) == LM_OK &&
               lm_backward(y1, seed, false) == LM_OK;
    ok(ran && max_diff(y0, y1) <= 1e-5, "linear matches matmul(x, w.T) + b");
    ok(ran && max_diff(x[0]->grad, x[1]->grad) <= 1e-5 &&
           max_diff(w[0]->grad, w[1]->grad) <= 1e-5 && max_diff(b[0]->grad, b[1]->grad) <= 1e-5,
       "linear gradients match those of matmul(x, w.T) + b");
    if (!ran) diag("%s", lm_last_error());
    lm_release(y0), lm_release(y1), lm_release(p), lm_release(wt);
    for (int i = 0; i < 2; i++) lm_release(x[i]), lm_release(w[i]), lm_release(b[i]);
    lm_release(x0), lm_release(w0), lm_release(b0), lm_release(seed);
}

static void test_linear_errors(void)
{
    lm_tensor *x = lm_zeros(LM_SHAPE(8, 5), LM_F32), *w = lm_zeros(LM_SHAPE(3, 4), LM_F32);
    lm_tensor *w5 = lm_zeros(LM_SHAPE(3, 5), LM_F32), *b4 = lm_zeros(LM_SHAPE(4), LM_F32);
    lm_tensor *w64 = lm_zeros(LM_SHAPE(3, 5), LM_F64), *w1 = lm_zeros(LM_SHAPE(5), LM_F32);
    lm_tensor *xi = lm_zeros(LM_SHAPE(8, 5), LM_I64);

    ok(!lm_linear(x, w, NULL) && lm_last_status() == LM_ERR_SHAPE,
       "linear: feature mismatch fails");
    has_str(lm_last_error(), "linear: input [8,5] has 5 features but weight [3,4] expects 4",
            "linear: the message names both shapes");
    ok(!lm_linear(x, w5, b4) && lm_last_status() == LM_ERR_SHAPE, "linear: bad bias fails");
    has_str(lm_last_error(), "bias of shape [4] does not fit input [8,5] (expected [3])",
            "linear: the bias message names the shapes");
    ok(!lm_linear(x, w64, NULL) && lm_last_status() == LM_ERR_DTYPE,
       "linear: dtype mismatch fails");
    has_str(lm_last_error(), "linear: weight is f64 but the input is f32",
            "linear: the dtype message names both dtypes");
    ok(!lm_linear(x, w1, NULL) && lm_last_status() == LM_ERR_SHAPE, "linear: 1-D weight fails");
    has_str(lm_last_error(), "weight must be 2-D [out, in], got shape [5]",
            "linear: the weight message names its shape");
    ok(!lm_linear(xi, w5, NULL) && lm_last_status() == LM_ERR_DTYPE, "linear: integer input fails");
    lm_clear_error();
    ok(!lm_linear(NULL, w5, NULL), "linear: NULL input fails");
    has_str(lm_last_error(), "linear", "linear: the NULL message names the op");

    lm_release(x), lm_release(w), lm_release(w5), lm_release(b4), lm_release(w64);
    lm_release(w1), lm_release(xi);
}

/* ---- batch_norm ----------------------------------------------------------------------------- */

static geom geom_of(const lm_tensor *x, int64_t groups)
{
    geom g = {x->shape[0], x->shape[1], 1, groups};
    for (int d = 2; d < x->ndim; d++) g.S *= x->shape[d];
    return g;
}

static void test_batch_norm_forward(void)
{
    lm_manual_seed(4);
    static const int64_t shapes[][4] = {{4, 3, 5, 0}, {6, 3, 0, 0}, {2, 3, 2, 2}};
    static const int ndims[] = {3, 2, 4};
    for (int k = 0; k < 6; k++) {
        lm_dtype dt = k % 2 ? LM_F64 : LM_F32;
        double tol = k % 2 ? 1e-12 : 2e-5;
        int s = k / 2;
        lm_tensor *x = lm_randn(ndims[s], shapes[s], dt);
        lm_tensor *w = lm_randn(LM_SHAPE(3), dt), *b = lm_randn(LM_SHAPE(3), dt);
        geom g = geom_of(x, 0);
        int64_t n = lm_numel(x);
        double *xv = values(x), *wv = values(w), *bv = values(b);
        double *want = malloc(sizeof(double) * (size_t)n), mean[3], var[3];
        char sh[64];
        lm_shape_str(x->ndim, x->shape, sh, sizeof sh);

        /* Training, affine, with running statistics updated by hand. */
        naive_norm(xv, g, wv, bv, 1e-5, want, mean, var);
        lm_tensor *rm = lm_zeros(LM_SHAPE(3), dt), *rv = lm_ones(LM_SHAPE(3), dt);
        lm_tensor *y = lm_batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5);
        ok(y && max_diff_to(y, want, n) <= tol, "batch_norm training %s %s", sh, lm_dtype_name(dt));
        double rm_want[3], rv_want[3];
        double cnt = (double)(g.A * g.S);
        for (int c = 0; c < 3; c++) {
            rm_want[c] = 0.1 * mean[c];
            rv_want[c] = 0.9 + 0.1 * var[c] * cnt / (cnt - 1);
        }
        ok(max_diff_to(rm, rm_want, 3) <= tol && max_diff_to(rv, rv_want, 3) <= tol,
           "batch_norm running stats: 0.9 * old + 0.1 * batch mean / unbiased var %s %s", sh,
           lm_dtype_name(dt));
        lm_release(y);

        /* Eval with those running statistics: they do not move. */
        double *rmv = values(rm), *rvv = values(rv);
        for (int64_t i = 0; i < n; i++) {
            int64_t c = (i / g.S) % g.C;
            want[i] = (xv[i] - rmv[c]) / sqrt(rvv[c] + 1e-3) * wv[c] + bv[c];
        }
        y = lm_batch_norm(x, rm, rv, w, b, false, 0.1, 1e-3);
        ok(y && max_diff_to(y, want, n) <= tol && max_diff_to(rm, rmv, 3) == 0 &&
               max_diff_to(rv, rvv, 3) == 0,
           "batch_norm eval uses the running stats and keeps them %s %s", sh, lm_dtype_name(dt));
        lm_release(y);

        /* Training without affine parameters or running statistics. */
        naive_norm(xv, g, NULL, NULL, 1e-5, want, NULL, NULL);
        y = lm_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5);
        ok(y && max_diff_to(y, want, n) <= tol, "batch_norm without affine %s %s", sh,
           lm_dtype_name(dt));
        lm_release(y);

        free(xv), free(wv), free(bv), free(want), free(rmv), free(rvv);
        lm_release(x), lm_release(w), lm_release(b), lm_release(rm), lm_release(rv);
    }

    /* Momentum by hand over two steps on a [4, 1] input: values 1, 2, 3, 6 (mean 3, unbiased
     * var 14/3), then the same again. */
    lm_tensor *x = lm_from_data((const double[]){1, 2, 3, 6}, LM_F64, LM_SHAPE(4, 1));
    lm_tensor *rm = lm_zeros(LM_SHAPE(1), LM_F64), *rv = lm_ones(LM_SHAPE(1), LM_F64);
    lm_tensor *y1 = lm_batch_norm(x, rm, rv, NULL, NULL, true, 0.5, 0);
    lm_tensor *y2 = lm_batch_norm(x, rm, rv, NULL, NULL, true, 0.5, 0);
    is_close(at(rm, 0), 0.75 * 3, 1e-14, "batch_norm: running mean after two steps, momentum 0.5");
    is_close(at(rv, 0), 0.25 + 0.75 * 14.0 / 3, 1e-14,
             "batch_norm: running var after two steps, momentum 0.5");
    is_close(at(y1, 3), 3 / sqrt(3.5), 1e-14, "batch_norm: (6 - 3) / sqrt(biased var 3.5)");
    lm_release(x), lm_release(rm), lm_release(rv), lm_release(y1), lm_release(y2);
}

typedef struct {
    bool training;
    lm_tensor *rm, *rv;
} bn_ctx;

static lm_tensor *f_batch_norm(lm_tensor **in, void *ctx)
{
    bn_ctx *c = ctx;
    return lm_batch_norm(in[0], c->rm, c->rv, in[1], in[2], c->training, 0.1, 1e-5);
}

static lm_tensor *f_batch_norm_plain(lm_tensor **in, void *ctx)
{
    (void)ctx;
    return lm_batch_norm(in[0], NULL, NULL, NULL, NULL, true, 0.1, 1e-5);
}

static void test_batch_norm_grad(void)
{
    lm_manual_seed(5);
    lm_tensor *in[3] = {gc_input(LM_SHAPE(4, 3, 5), -2, 2), gc_input(LM_SHAPE(3), 0.5, 1.5),
                        gc_input(LM_SHAPE(3), -1, 1)};
    bn_ctx train = {true, NULL, NULL};
    gradcheck("batch_norm", f_batch_norm, 3, in, &train);
    lm_tensor *x2 = gc_input(LM_SHAPE(6, 3), -2, 2), *x4 = gc_input(LM_SHAPE(2, 3, 2, 3), -2, 2);
    lm_tensor *in2[3] = {x2, in[1], in[2]}, *in4[3] = {x4, in[1], in[2]};
    gradcheck("batch_norm training [N, C] input", f_batch_norm, 3, in2, &train);
    gradcheck("batch_norm training 4-D input", f_batch_norm, 3, in4, &train);
    gradcheck("batch_norm without affine", f_batch_norm_plain, 1, in, NULL);

    bn_ctx eval = {false, lm_rand(LM_SHAPE(3), LM_F64), lm_rand(LM_SHAPE(3), LM_F64)};
    lm_add_scalar_(eval.rv, 0.5);
    gradcheck("batch_norm eval", f_batch_norm, 3, in, &eval);
    gradcheck("batch_norm eval [N, C] input", f_batch_norm, 3, in2, &eval);

    bool prev = lm_set_grad_enabled(false);
    lm_tensor *xs = gc_input(LM_SHAPE(5, 3, 4), -2, 2), *xt = lm_transpose(xs, 0, 2);
    lm_set_grad_enabled(prev);
    lm_requires_grad_(xt, true);
    lm_tensor *int_[3] = {xt, in[1], in[2]};
    gradcheck("batch_norm transposed input", f_batch_norm, 3, int_, &train);

    lm_release(xs), lm_release(xt), lm_release(x2), lm_release(x4);
    lm_release(eval.rm), lm_release(eval.rv);
    for (int i = 0; i < 3; i++) lm_release(in[i]);
}

/* ---- fused against composite ---------------------------------------------------------------- */

typedef lm_tensor *(*norm_fn)(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                              void *ctx);

/* Runs fused and composite on copies of the same leaves, backward with one seed, and compares
 * outputs and every gradient. */
static void compare_fused(const char *name, norm_fn fused, norm_fn composite, const lm_tensor *x0,
                          const lm_tensor *w0, const lm_tensor *b0, void *ctx, double tol)
{
    lm_tensor *x[2], *w[2] = {NULL, NULL}, *b[2] = {NULL, NULL}, *y[2];
    lm_status st[2];
    lm_manual_seed(99);
    lm_tensor *seed = NULL;
    for (int k = 0; k < 2; k++) {
        x[k] = leaf(x0);
        if (w0) w[k] = leaf(w0);
        if (b0) b[k] = leaf(b0);
        y[k] = (k ? composite : fused)(x[k], w[k], b[k], ctx);
        if (y[k] && !seed) seed = lm_randn(y[k]->ndim, y[k]->shape, y[k]->dtype);
        st[k] = y[k] ? lm_backward(y[k], seed, false) : lm_last_status();
        if (st[k]) diag("%s %s: %s", name, k ? "composite" : "fused", lm_last_error());
    }
    bool ran = !st[0] && !st[1];
    ok(ran && max_diff(y[0], y[1]) <= tol, "%s: fused forward matches the composite", name);
    double worst = ran ? max_diff(x[0]->grad, x[1]->grad) : INFINITY;
    if (w0 && ran) worst = fmax(worst, max_diff(w[0]->grad, w[1]->grad));
    if (b0 && ran) worst = fmax(worst, max_diff(b[0]->grad, b[1]->grad));
    ok(worst <= tol, "%s: fused gradients match the composite's", name);
    if (!(worst <= tol)) diag("largest gradient difference %g", worst);
    for (int k = 0; k < 2; k++)
        lm_release(x[k]), lm_release(w[k]), lm_release(b[k]), lm_release(y[k]);
    lm_release(seed);
}

/* The shape [1, C, 1, ...] of x's rank, for per-channel parameters. */
static lm_tensor *channel_view(const lm_tensor *p, const lm_tensor *x)
{
    int64_t shape[LM_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = d == 1 ? x->shape[1] : 1;
    return lm_reshape(p, x->ndim, shape);
}

/* (x - mean) / sqrt(var + eps) over dims, times w plus b (each given as a broadcastable view). */
static lm_tensor *normalize(const lm_tensor *x, int nd, const int *dims, double eps,
                            const lm_tensor *wv, const lm_tensor *bv)
{
    lm_tensor *mean = lm_mean(x, nd, dims, true), *var = lm_var(x, nd, dims, 0, true);
    lm_tensor *xc = lm_sub(x, mean), *ve = lm_add_scalar(var, eps), *sd = lm_sqrt(ve);
    lm_tensor *y = lm_div(xc, sd);
    lm_release(mean), lm_release(var), lm_release(xc), lm_release(ve), lm_release(sd);
    if (wv) {
        lm_tensor *t = lm_mul(y, wv);
        lm_release(y);
        y = t;
    }
    if (bv) {
        lm_tensor *t = lm_add(y, bv);
        lm_release(y);
        y = t;
    }
    return y;
}

static lm_tensor *bn_fused(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b, void *ctx)
{
    (void)ctx;
    return lm_batch_norm(x, NULL, NULL, w, b, true, 0.1, 1e-5);
}

static lm_tensor *bn_composite(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                               void *ctx)
{
    (void)ctx;
    int dims[LM_MAX_DIMS], nd = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != 1) dims[nd++] = d;
    lm_tensor *wv = w ? channel_view(w, x) : NULL, *bv = b ? channel_view(b, x) : NULL;
    lm_tensor *y = normalize(x, nd, dims, 1e-5, wv, bv);
    lm_release(wv), lm_release(bv);
    return y;
}

static lm_tensor *ln_fused(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b, void *ctx)
{
    int n = *(int *)ctx;
    return lm_layer_norm(x, n, x->shape + x->ndim - n, w, b, 1e-5);
}

static lm_tensor *ln_composite(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                               void *ctx)
{
    int n = *(int *)ctx, dims[LM_MAX_DIMS];
    for (int i = 0; i < n; i++) dims[i] = x->ndim - n + i;
    return normalize(x, n, dims, 1e-5, w, b);
}

static lm_tensor *gn_fused(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b, void *ctx)
{
    return lm_group_norm(x, *(int64_t *)ctx, w, b, 1e-5);
}

/* x [N, C, *] -> [N, G, rest], normalised over the last dim, back to x's shape, then the
 * per-channel affine. */
static lm_tensor *gn_composite(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                               void *ctx)
{
    int64_t groups = *(int64_t *)ctx;
    lm_tensor *xg = lm_reshape(x, LM_SHAPE(x->shape[0], groups, -1));
    lm_tensor *ng = normalize(xg, LM_DIMS(2), 1e-5, NULL, NULL);
    lm_tensor *y = lm_reshape(ng, x->ndim, x->shape);
    lm_release(xg), lm_release(ng);
    lm_tensor *wv = w ? channel_view(w, x) : NULL, *bv = b ? channel_view(b, x) : NULL;
    if (wv) {
        lm_tensor *t = lm_mul(y, wv);
        lm_release(y);
        y = t;
    }
    if (bv) {
        lm_tensor *t = lm_add(y, bv);
        lm_release(y);
        y = t;
    }
    lm_release(wv), lm_release(bv);
    return y;
}

static void test_fused_vs_composite(void)
{
    lm_manual_seed(6);
    for (int k = 0; k < 2; k++) {
        lm_dtype dt = k ? LM_F64 : LM_F32;
        double tol = k ? 1e-10 : 2e-4;
        const char *dn = lm_dtype_name(dt);
        char name[96];
        lm_tensor *x = lm_randn(LM_SHAPE(8, 6, 10), dt), *x2 = lm_randn(LM_SHAPE(32, 70), dt);
        lm_tensor *w = lm_randn(LM_SHAPE(6), dt), *b = lm_randn(LM_SHAPE(6), dt);
        lm_tensor *w2 = lm_randn(LM_SHAPE(70), dt), *b2 = lm_randn(LM_SHAPE(70), dt);
        lm_tensor *wl = lm_randn(LM_SHAPE(6, 10), dt), *bl = lm_randn(LM_SHAPE(6, 10), dt);
        /* Values far from zero: the centred sums must not cancel. */
        lm_tensor *xo = lm_add_scalar(x, 100);

        snprintf(name, sizeof name, "batch_norm [8,6,10] %s", dn);
        compare_fused(name, bn_fused, bn_composite, x, w, b, NULL, tol);
        snprintf(name, sizeof name, "batch_norm [32,70] %s", dn);
        compare_fused(name, bn_fused, bn_composite, x2, w2, b2, NULL, tol);
        snprintf(name, sizeof name, "batch_norm without affine, offset by 100, %s", dn);
        compare_fused(name, bn_fused, bn_composite, xo, NULL, NULL, NULL, tol);

        int one = 1, two = 2;
        snprintf(name, sizeof name, "layer_norm [32,70] over 1 dim %s", dn);
        compare_fused(name, ln_fused, ln_composite, x2, w2, b2, &one, tol);
        snprintf(name, sizeof name, "layer_norm [8,6,10] over 2 dims %s", dn);
        compare_fused(name, ln_fused, ln_composite, x, wl, bl, &two, tol);
        snprintf(name, sizeof name, "layer_norm without affine, offset by 100, %s", dn);
        compare_fused(name, ln_fused, ln_composite, xo, NULL, NULL, &one, tol);

        int64_t g3 = 3, g2 = 2;
        snprintf(name, sizeof name, "group_norm [8,6,10] 3 groups %s", dn);
        compare_fused(name, gn_fused, gn_composite, x, w, b, &g3, tol);
        snprintf(name, sizeof name, "group_norm [32,70] 2 groups %s", dn);
        compare_fused(name, gn_fused, gn_composite, x2, w2, b2, &g2, tol);
        snprintf(name, sizeof name, "group_norm weight only, offset by 100, %s", dn);
        compare_fused(name, gn_fused, gn_composite, xo, w, NULL, &g3, tol);

        lm_release(x), lm_release(x2), lm_release(w), lm_release(b), lm_release(w2);
        lm_release(b2), lm_release(wl), lm_release(bl), lm_release(xo);
    }
}

/* ---- layer_norm and group_norm --------------------------------------------------------------- */

static void test_layer_group_forward(void)
{
    lm_manual_seed(7);
    for (int k = 0; k < 2; k++) {
        lm_dtype dt = k ? LM_F64 : LM_F32;
        double tol = k ? 1e-12 : 2e-5;
        const char *dn = lm_dtype_name(dt);
        lm_tensor *x = lm_randn(LM_SHAPE(3, 4, 5), dt);
        double *xv = values(x), want[60];

        /* layer_norm over the last dim is the group norm of [rows, size, 1] with one group. */
        lm_tensor *w = lm_randn(LM_SHAPE(5), dt), *b = lm_randn(LM_SHAPE(5), dt);
        double *wv = values(w), *bv = values(b);
        naive_norm(xv, (geom){12, 5, 1, 1}, wv, bv, 1e-5, want, NULL, NULL);
        lm_tensor *y = lm_layer_norm(x, LM_SHAPE(5), w, b, 1e-5);
        ok(y && max_diff_to(y, want, 60) <= tol, "layer_norm over [5] with affine %s", dn);
        lm_release(y);
        naive_norm(xv, (geom){12, 5, 1, 1}, NULL, NULL, 1e-5, want, NULL, NULL);
        y = lm_layer_norm(x, LM_SHAPE(5), NULL, NULL, 1e-5);
        ok(y && max_diff_to(y, want, 60) <= tol, "layer_norm over [5] without affine %s", dn);
        lm_release(y);
        naive_norm(xv, (geom){3, 20, 1, 1}, NULL, NULL, 0.5, want, NULL, NULL);
        y = lm_layer_norm(x, LM_SHAPE(4, 5), NULL, NULL, 0.5);
        ok(y && max_diff_to(y, want, 60) <= tol, "layer_norm over [4,5], eps 0.5 %s", dn);
        lm_release(y);

        /* group_norm: 2 groups of 2 channels of 5 elements. */
        lm_tensor *gw = lm_randn(LM_SHAPE(4), dt), *gb = lm_randn(LM_SHAPE(4), dt);
        double *gwv = values(gw), *gbv = values(gb);
        naive_norm(xv, (geom){3, 4, 5, 2}, gwv, gbv, 1e-5, want, NULL, NULL);
        y = lm_group_norm(x, 2, gw, gb, 1e-5);
        ok(y && max_diff_to(y, want, 60) <= tol, "group_norm [3,4,5] 2 groups with affine %s", dn);
        lm_release(y);
        naive_norm(xv, (geom){3, 4, 5, 4}, NULL, NULL, 1e-5, want, NULL, NULL);
        y = lm_group_norm(x, 4, NULL, NULL, 1e-5);
        ok(y && max_diff_to(y, want, 60) <= tol, "group_norm one group per channel %s", dn);
        lm_release(y);
        lm_tensor *x2 = lm_reshape(x, LM_SHAPE(15, 4));
        naive_norm(xv, (geom){15, 4, 1, 2}, gwv, gbv, 1e-5, want, NULL, NULL);
        y = lm_group_norm(x2, 2, gw, gb, 1e-5);
        ok(y && max_diff_to(y, want, 60) <= tol, "group_norm [15,4] (no spatial dims) %s", dn);
        lm_release(y), lm_release(x2);

        free(xv), free(wv), free(bv), free(gwv), free(gbv);
        lm_release(x), lm_release(w), lm_release(b), lm_release(gw), lm_release(gb);
    }
    /* By hand: a row of 1, 2, 3, 4 has mean 2.5 and biased variance 1.25. */
    lm_tensor *x = lm_from_data((const double[]){1, 2, 3, 4}, LM_F64, LM_SHAPE(1, 4));
    lm_tensor *y = lm_layer_norm(x, LM_SHAPE(4), NULL, NULL, 0);
    is_close(at(y, 0), -1.5 / sqrt(1.25), 1e-14, "layer_norm by hand: (1 - 2.5) / sqrt(1.25)");
    lm_release(x), lm_release(y);
}

/* inputs: x, then weight when n_params >= 1, then bias when n_params == 2. */
typedef struct {
    int n_norm;  /* layer_norm: dims normalised */
    int64_t groups;
    int n_params;
} norm_ctx;

static lm_tensor *f_layer_norm(lm_tensor **in, void *ctx)
{
    norm_ctx *c = ctx;
    const lm_tensor *x = in[0];
    return lm_layer_norm(x, c->n_norm, x->shape + x->ndim - c->n_norm,
                         c->n_params >= 1 ? in[1] : NULL, c->n_params == 2 ? in[2] : NULL, 1e-5);
}

static lm_tensor *f_group_norm(lm_tensor **in, void *ctx)
{
    norm_ctx *c = ctx;
    return lm_group_norm(in[0], c->groups, c->n_params >= 1 ? in[1] : NULL,
                         c->n_params == 2 ? in[2] : NULL, 1e-5);
}

static void test_layer_group_grad(void)
{
    lm_manual_seed(8);
    lm_tensor *x = gc_input(LM_SHAPE(3, 4, 5), -2, 2);
    lm_tensor *w2 = gc_input(LM_SHAPE(4, 5), 0.5, 1.5), *b2 = gc_input(LM_SHAPE(4, 5), -1, 1);
    lm_tensor *w1 = gc_input(LM_SHAPE(5), 0.5, 1.5), *b1 = gc_input(LM_SHAPE(5), -1, 1);
    lm_tensor *in2[3] = {x, w2, b2}, *in1[3] = {x, w1, b1};
    gradcheck("layer_norm", f_layer_norm, 3, in2, &(norm_ctx){2, 0, 2});
    gradcheck("layer_norm over the last dim", f_layer_norm, 3, in1, &(norm_ctx){1, 0, 2});
    gradcheck("layer_norm without affine", f_layer_norm, 1, in1, &(norm_ctx){1, 0, 0});
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *xs = gc_input(LM_SHAPE(5, 4, 3), -2, 2), *xt = lm_transpose(xs, 0, 2);
    lm_set_grad_enabled(prev);
    lm_requires_grad_(xt, true);
    lm_tensor *int_[3] = {xt, w1, b1};
    gradcheck("layer_norm transposed input", f_layer_norm, 3, int_, &(norm_ctx){1, 0, 2});
    gradcheck("layer_norm weight without bias", f_layer_norm, 2, in1, &(norm_ctx){1, 0, 1});

    lm_tensor *gw = gc_input(LM_SHAPE(4), 0.5, 1.5), *gb = gc_input(LM_SHAPE(4), -1, 1);
    lm_tensor *gin[3] = {x, gw, gb};
    gradcheck("group_norm", f_group_norm, 3, gin, &(norm_ctx){0, 2, 2});
    gradcheck("group_norm one group", f_group_norm, 3, gin, &(norm_ctx){0, 1, 2});
    gradcheck("group_norm one group per channel", f_group_norm, 3, gin, &(norm_ctx){0, 4, 2});
    gradcheck("group_norm without affine", f_group_norm, 1, gin, &(norm_ctx){0, 2, 0});
    lm_tensor *x2 = gc_input(LM_SHAPE(6, 4), -2, 2), *x4 = gc_input(LM_SHAPE(2, 4, 2, 3), -2, 2);
    lm_tensor *gin2[3] = {x2, gw, gb}, *gin4[3] = {x4, gw, gb};
    gradcheck("group_norm [N, C] input", f_group_norm, 3, gin2, &(norm_ctx){0, 2, 2});
    gradcheck("group_norm 4-D input, weight only", f_group_norm, 2, gin4, &(norm_ctx){0, 2, 1});
    prev = lm_set_grad_enabled(false);
    lm_tensor *gs = gc_input(LM_SHAPE(5, 4, 3), -2, 2), *gt = lm_transpose(gs, 0, 2);
    lm_set_grad_enabled(prev);
    lm_requires_grad_(gt, true);
    lm_tensor *gint[3] = {gt, gw, gb};
    gradcheck("group_norm transposed input", f_group_norm, 3, gint, &(norm_ctx){0, 2, 2});

    lm_release(x), lm_release(w2), lm_release(b2), lm_release(w1), lm_release(b1);
    lm_release(xs), lm_release(xt), lm_release(gw), lm_release(gb), lm_release(x2);
    lm_release(x4), lm_release(gs), lm_release(gt);
}

static void test_norm_errors(void)
{
    lm_tensor *x = lm_zeros(LM_SHAPE(2, 3, 5), LM_F32), *w4 = lm_ones(LM_SHAPE(4), LM_F32);
    lm_tensor *w3 = lm_ones(LM_SHAPE(3), LM_F32), *w3d = lm_ones(LM_SHAPE(3), LM_F64);
    lm_tensor *x1 = lm_zeros(LM_SHAPE(1, 3), LM_F32), *xv = lm_zeros(LM_SHAPE(3), LM_F32);
    lm_tensor *xi = lm_zeros(LM_SHAPE(2, 3), LM_I64);

    ok(!lm_batch_norm(x, NULL, NULL, w4, NULL, true, 0.1, 1e-5) && lm_last_status() == LM_ERR_SHAPE,
       "batch_norm: a weight of the wrong size fails");
    has_str(lm_last_error(),
            "batch_norm: weight of shape [4] does not fit input [2,3,5] (expected [3])",
            "batch_norm: the message names both shapes");
    ok(!lm_batch_norm(x, w3d, w3d, NULL, NULL, true, 0.1, 1e-5) && lm_last_status() == LM_ERR_DTYPE,
       "batch_norm: running stats of another dtype fail");
    has_str(lm_last_error(), "running_mean is f64 but the input is f32",
            "batch_norm: dtype message");
    ok(!lm_batch_norm(x1, NULL, NULL, NULL, NULL, true, 0.1, 1e-5) &&
           lm_last_status() == LM_ERR_SHAPE,
       "batch_norm: one value per channel in training fails");
    has_str(lm_last_error(),
            "expected more than 1 value per channel when training, got input [1,3]",
            "batch_norm: the message names the input");
    lm_tensor *y = lm_batch_norm(x1, w3, w3, NULL, NULL, false, 0.1, 1e-5);
    ok(y != NULL, "batch_norm: one value per channel is fine in eval");
    lm_release(y);
    ok(!lm_batch_norm(x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5) &&
           lm_last_status() == LM_ERR_ARG,
       "batch_norm: eval without running stats fails");
    has_str(lm_last_error(), "eval mode needs running_mean and running_var",
            "batch_norm: eval message");
    ok(!lm_batch_norm(x, w3, NULL, NULL, NULL, true, 0.1, 1e-5),
       "batch_norm: half the running stats fail");
    has_str(lm_last_error(), "must be given together", "batch_norm: the pair message");
    ok(!lm_batch_norm(xv, NULL, NULL, NULL, NULL, true, 0.1, 1e-5) &&
           lm_last_status() == LM_ERR_SHAPE,
       "batch_norm: a 1-D input fails");
    has_str(lm_last_error(), "input must be [N, C, *], got shape [3]",
            "batch_norm: the rank message");

    ok(!lm_layer_norm(x, LM_SHAPE(4), NULL, NULL, 1e-5) && lm_last_status() == LM_ERR_SHAPE,
       "layer_norm: a normalized_shape that is not the input's tail fails");
    has_str(lm_last_error(),
            "layer_norm: normalized_shape [4] does not match the last dims of input [2,3,5]",
            "layer_norm: the message names both shapes");
    ok(!lm_layer_norm(x, LM_SHAPE(5), w4, NULL, 1e-5) && lm_last_status() == LM_ERR_SHAPE,
       "layer_norm: a weight of the wrong shape fails");
    has_str(lm_last_error(),
            "layer_norm: weight of shape [4] does not fit input [2,3,5] (expected [5])",
            "layer_norm: the weight message names the shapes");
    ok(!lm_layer_norm(x, LM_SHAPE(2, 3, 5, 1), NULL, NULL, 1e-5), "layer_norm: too many dims fail");
    ok(!lm_layer_norm(xi, LM_SHAPE(3), NULL, NULL, 1e-5) && lm_last_status() == LM_ERR_DTYPE,
       "layer_norm: an integer input fails");
    has_str(lm_last_error(), "layer_norm: input must be f32 or f64, got i64",
            "layer_norm: dtype message");

    ok(!lm_group_norm(x, 2, NULL, NULL, 1e-5) && lm_last_status() == LM_ERR_ARG,
       "group_norm: groups that do not divide the channels fail");
    has_str(lm_last_error(), "group_norm: 3 channels (input [2,3,5]) cannot be split into 2 groups",
            "group_norm: the message names channels, input and groups");
    ok(!lm_group_norm(x, 0, NULL, NULL, 1e-5), "group_norm: zero groups fail");
    ok(!lm_group_norm(x, 3, w4, NULL, 1e-5) && lm_last_status() == LM_ERR_SHAPE,
       "group_norm: a weight of the wrong size fails");
    has_str(lm_last_error(), "group_norm: weight of shape [4] does not fit input [2,3,5]",
            "group_norm: the weight message names both shapes");

    lm_release(x), lm_release(w4), lm_release(w3), lm_release(w3d), lm_release(x1);
    lm_release(xv), lm_release(xi);
}

/* ---- dropout --------------------------------------------------------------------------------- */

static lm_tensor *f_dropout(lm_tensor **in, void *ctx)
{
    (void)ctx;
    lm_manual_seed(1234); /* the same mask at every evaluation */
    return lm_dropout(in[0], 0.4, true);
}

static void test_dropout(void)
{
    lm_manual_seed(9);
    lm_tensor *x0 = lm_randn(LM_SHAPE(40, 50), LM_F32);
    lm_tensor *x = leaf(x0);
    const double p = 0.3;
    const float scale = (float)(1.0 / (1.0 - p));

    /* The mask replayed: the same seed, a Bernoulli(1 - p) draw of x's shape and dtype. */
    lm_manual_seed(77);
    lm_tensor *y = lm_dropout(x, p, true);
    lm_manual_seed(77);
    lm_tensor *keep = lm_empty(LM_SHAPE(40, 50), LM_F32);
    lm_bernoulli_(keep, 1.0 - p);
    bool exact = y != NULL, grad_exact;
    int64_t zeros = 0;
    for (int64_t i = 0; y && i < 2000; i++) {
        float want = at(keep, i) != 0 ? (float)at(x0, i) * scale : 0.0f;
        exact = exact && (float)at(y, i) == want;
        zeros += at(keep, i) == 0;
    }
    ok(exact, "dropout: kept elements are x / (1 - p), the rest 0, for the seed's mask");
    ok(zeros > 2000 * 0.25 && zeros < 2000 * 0.35,
       "dropout: about p of the elements are zeroed (%lld of 2000)",
       (long long)zeros);
    lm_tensor *ones = lm_ones(LM_SHAPE(40, 50), LM_F32);
    grad_exact = y && lm_backward(y, ones, false) == LM_OK && x->grad;
    for (int64_t i = 0; grad_exact && i < 2000; i++)
        grad_exact = (float)at(x->grad, i) == (at(keep, i) != 0 ? scale : 0.0f);
    ok(grad_exact, "dropout: the gradient is exactly mask / (1 - p)");
    lm_release(y);

    lm_manual_seed(77);
    lm_tensor *y1 = lm_dropout(x0, p, true);
    lm_manual_seed(77);
    lm_tensor *y2 = lm_dropout(x0, p, true);
    lm_manual_seed(78);
    lm_tensor *y3 = lm_dropout(x0, p, true);
    ok(all_equal(y1, y2) && !all_equal(y1, y3), "dropout: the mask depends on the seed only");
    lm_release(y1), lm_release(y2), lm_release(y3);

    y = lm_dropout(x, p, false);
    ok(y == x, "dropout: eval returns the input itself");
    lm_release(y);
    y = lm_dropout(x, 0.0, true);
    ok(y == x, "dropout: p = 0 returns the input itself");
    lm_release(y);

    lm_zero_grad(x);
    y = lm_dropout(x, 1.0, true);
    lm_tensor *s = y ? lm_sum(y, 0, NULL, false) : NULL;
    double total = -1, gsum = -1;
    if (s) lm_item(s, &total);
    bool ran = s && lm_backward(s, NULL, false) == LM_OK && x->grad;
    lm_tensor *gs = ran ? lm_sum(x->grad, 0, NULL, false) : NULL;
    if (gs) lm_item(gs, &gsum);
    bool all_zero = y != NULL;
    for (int64_t i = 0; all_zero && i < 2000; i++) all_zero = at(y, i) == 0;
    ok(all_zero && total == 0, "dropout: p = 1 gives zeros");
    ok(ran && gsum == 0, "dropout: p = 1 gives a zero gradient");
    lm_release(y), lm_release(s), lm_release(gs);

    lm_manual_seed(10);
    lm_tensor *in[1] = {gc_input(LM_SHAPE(6, 7), -1, 1)};
    gradcheck("dropout", f_dropout, 1, in, NULL);
    lm_release(in[0]);

    ok(!lm_dropout(x0, 1.5, true) && lm_last_status() == LM_ERR_ARG, "dropout: p > 1 fails");
    has_str(lm_last_error(), "dropout: probability p must be in [0, 1], got 1.5 (input [40,50])",
            "dropout: the message names p and the input");
    ok(!lm_dropout(x0, -0.1, false) && lm_last_status() == LM_ERR_ARG,
       "dropout: p < 0 fails, even in eval");
    ok(!lm_dropout(x0, NAN, true) && lm_last_status() == LM_ERR_ARG, "dropout: p = NaN fails");
    lm_tensor *xi = lm_zeros(LM_SHAPE(3), LM_I64);
    ok(!lm_dropout(xi, 0.5, true) && lm_last_status() == LM_ERR_DTYPE,
       "dropout: integer input fails");
    lm_release(xi);

    lm_release(keep), lm_release(ones), lm_release(x), lm_release(x0);
}

/* ---- embedding ------------------------------------------------------------------------------- */

typedef struct {
    lm_tensor *idx;
    int64_t padding_idx;
} emb_ctx;

static lm_tensor *f_embedding(lm_tensor **in, void *ctx)
{
    emb_ctx *c = ctx;
    return lm_embedding(in[0], c->idx, c->padding_idx);
}

/* The padding row's gradient is 0 by definition, not by calculus: the output rows that read it
 * are multiplied by 0 here, so that finite differences agree. */
static lm_tensor *f_embedding_masked(lm_tensor **in, void *ctx)
{
    emb_ctx *c = ctx;
    lm_tensor *y = lm_embedding(in[0], c->idx, c->padding_idx);
    lm_tensor *keep = lm_ne_scalar(c->idx, (double)c->padding_idx);
    lm_tensor *k1 = keep ? lm_unsqueeze(keep, -1) : NULL;
    lm_tensor *kf = k1 ? lm_to_dtype(k1, LM_F64) : NULL;
    lm_tensor *r = y && kf ? lm_mul(y, kf) : NULL;
    lm_release(y), lm_release(keep), lm_release(k1), lm_release(kf);
    return r;
}

static void test_embedding(void)
{
    lm_manual_seed(11);
    lm_tensor *w0 = lm_randn(LM_SHAPE(10, 4), LM_F32);
    lm_tensor *w = leaf(w0);
    lm_tensor *idx = lm_from_data((const int64_t[]){3, 0, 3, 9, 2, 3}, LM_I64, LM_SHAPE(2, 3));
    lm_tensor *y = lm_embedding(w, idx, 2);
    bool exact = y && y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 4;
    for (int64_t i = 0; exact && i < 24; i++)
        exact = at(y, i) == at(w0, at(idx, i / 4) * 4 + i % 4);
    ok(exact, "embedding: [2,3] indices give [2,3,4] rows of the weight");

    /* Gradient by hand: seed element (i, d) = 100 * i + d; row 3 appears three times, row 2 is
     * padding and gets nothing. */
    double seedv[24];
    for (int i = 0; i < 24; i++) seedv[i] = 100.0 * (i / 4) + i % 4;
    lm_tensor *seed64 = lm_from_data(seedv, LM_F64, LM_SHAPE(2, 3, 4));
    lm_tensor *seed = lm_to_dtype(seed64, LM_F32);
    bool ran = y && lm_backward(y, seed, false) == LM_OK && w->grad;
    double want[40] = {0};
    const int64_t rows[6] = {3, 0, 3, 9, 2, 3};
    for (int i = 0; i < 6; i++)
        for (int d = 0; d < 4; d++)
            if (rows[i] != 2) want[rows[i] * 4 + d] += seedv[i * 4 + d];
    ok(ran && max_diff_to(w->grad, want, 40) == 0,
       "embedding: repeated indices add up, the padding row gets no gradient");
    lm_release(y);

    /* A 0-dim index, and a transposed index view. */
    lm_tensor *i0 = lm_scalar(7, LM_I64), *it = lm_t(idx);
    y = lm_embedding(w0, i0, -1);
    ok(y && y->ndim == 1 && y->shape[0] == 4 && at(y, 1) == at(w0, 29),
       "embedding: a 0-dim index gives one row");
    lm_release(y);
    y = lm_embedding(w0, it, -1);
    exact = y && y->shape[0] == 3 && y->shape[1] == 2;
    for (int64_t i = 0; exact && i < 24; i++) exact = at(y, i) == at(w0, at(it, i / 4) * 4 + i % 4);
    ok(exact, "embedding: a transposed index view");
    lm_release(y);

    /* Gradient checks on f64. */
    lm_tensor *wg = gc_input(LM_SHAPE(6, 3), -1, 1);
    lm_tensor *gidx =
        lm_from_data((const int64_t[]){1, 4, 1, 0, 5, 1, 4, 2}, LM_I64, LM_SHAPE(2, 4));
    lm_tensor *in[1] = {wg};
    gradcheck("embedding", f_embedding, 1, in, &(emb_ctx){gidx, -1});
    gradcheck("embedding padding_idx", f_embedding_masked, 1, in, &(emb_ctx){gidx, 1});
    lm_zero_grad(wg);
    lm_tensor *ye = lm_embedding(wg, gidx, 1);
    lm_tensor *se = ye ? lm_sum(ye, 0, NULL, false) : NULL;
    bool pad_zero = se && lm_backward(se, NULL, false) == LM_OK && wg->grad;
    for (int d = 0; pad_zero && d < 3; d++) pad_zero = at(wg->grad, 3 + d) == 0;
    ok(pad_zero && at(wg->grad, 12) == 2 && at(wg->grad, 3 * 3) == 0,
       "embedding: padding row 1 (used three times) stays zero, row 4 counts twice");
    lm_release(ye), lm_release(se);

    /* Threads do not change the sums: a large case on one and on two threads. */
    lm_tensor *wb0 = lm_randn(LM_SHAPE(50, 700), LM_F32), *wb = leaf(wb0);
    lm_tensor *ib = lm_randint(0, 50, LM_SHAPE(400), LM_I64);
    lm_tensor *g[2];
    for (int k = 0; k < 2; k++) {
        lm_set_num_threads(k + 1);
        lm_zero_grad(wb);
        lm_tensor *yb = lm_embedding(wb, ib, 7);
        lm_tensor *sb = yb ? lm_sum(yb, 0, NULL, false) : NULL;
        if (sb) lm_backward(sb, NULL, false);
        g[k] = grad_copy(wb);
        lm_release(yb), lm_release(sb);
    }
    lm_set_num_threads(1);
    ok(g[0] && all_equal(g[0], g[1]), "embedding: the same gradient on one and two threads");
    lm_release(g[0]), lm_release(g[1]), lm_release(ib);

    /* Errors. */
    lm_tensor *bad = lm_from_data((const int64_t[]){1, 10, 2}, LM_I64, LM_SHAPE(3));
    ok(!lm_embedding(w0, bad, -1) && lm_last_status() == LM_ERR_INDEX,
       "embedding: index 10 of 10 rows fails");
    has_str(lm_last_error(), "embedding: index 10 is out of range for a vocabulary of 10 rows",
            "embedding: the message names the value and the vocabulary size");
    lm_tensor *neg = lm_from_data((const int64_t[]){-1, 2}, LM_I64, LM_SHAPE(2));
    ok(!lm_embedding(w0, neg, -1) && lm_last_status() == LM_ERR_INDEX,
       "embedding: a negative index fails");
    has_str(lm_last_error(), "index -1 is out of range", "embedding: the negative value is named");
    lm_tensor *fidx = lm_zeros(LM_SHAPE(3), LM_F32);
    ok(!lm_embedding(w0, fidx, -1) && lm_last_status() == LM_ERR_DTYPE,
       "embedding: f32 indices fail");
    has_str(lm_last_error(), "embedding: indices must be i64, got f32",
            "embedding: the dtype message");
    ok(!lm_embedding(w0, idx, 10) && lm_last_status() == LM_ERR_ARG,
       "embedding: padding_idx 10 of 10 rows fails");
    has_str(lm_last_error(), "padding_idx 10 is out of range for a vocabulary of 10 rows",
            "embedding: the padding message");
    lm_tensor *w1 = lm_zeros(LM_SHAPE(10), LM_F32);
    ok(!lm_embedding(w1, idx, -1) && lm_last_status() == LM_ERR_SHAPE,
       "embedding: a 1-D weight fails");

    lm_release(w1), lm_release(fidx), lm_release(neg), lm_release(bad), lm_release(wb);
    lm_release(wb0);
    lm_release(wg), lm_release(gidx), lm_release(i0), lm_release(it), lm_release(seed);
    lm_release(seed64), lm_release(idx), lm_release(w), lm_release(w0);
}

/* ---- thread-count independence ------------------------------------------------------------ */

/* The norm kernels cut their work by shape only: one and two threads give the same bits. */
static void test_threads(void)
{
    lm_manual_seed(12);
    lm_tensor *x0 = lm_randn(LM_SHAPE(16, 32, 8, 16), LM_F32);
    lm_tensor *x2 = lm_randn(LM_SHAPE(512, 96), LM_F32);
    lm_tensor *w = lm_randn(LM_SHAPE(32), LM_F32), *w2 = lm_randn(LM_SHAPE(96), LM_F32);
    const char *names[4] = {"batch_norm 4-D", "batch_norm [N, C]", "layer_norm", "group_norm"};
    for (int op = 0; op < 4; op++) {
        lm_tensor *y[2], *gx[2], *gw[2];
        for (int k = 0; k < 2; k++) {
            lm_set_num_threads(k + 1);
            const lm_tensor *xin = op == 1 || op == 2 ? x2 : x0;
            const lm_tensor *win = op == 1 || op == 2 ? w2 : w;
            lm_tensor *x = leaf(xin), *wl = leaf(win);
            y[k] = op == 0 || op == 1 ? lm_batch_norm(x, NULL, NULL, wl, NULL, true, 0.1, 1e-5)
                 : op == 2           ? lm_layer_norm(x, LM_SHAPE(96), wl, NULL, 1e-5)
                                     : lm_group_norm(x, 4, wl, NULL, 1e-5);
            lm_tensor *sq = y[k] ? lm_mul(y[k], y[k]) : NULL;
            lm_tensor *s = sq ? lm_sum(sq, 0, NULL, false) : NULL;
            if (s) lm_backward(s, NULL, false);
            gx[k] = grad_copy(x);
            gw[k] = grad_copy(wl);
            lm_release(sq), lm_release(s), lm_release(x), lm_release(wl);
        }
        ok(gx[0] && all_equal(y[0], y[1]) && all_equal(gx[0], gx[1]) && all_equal(gw[0], gw[1]),
           "%s: the same forward and gradients on one and two threads", names[op]);
        for (int k = 0; k < 2; k++) lm_release(y[k]), lm_release(gx[k]), lm_release(gw[k]);
    }
    lm_set_num_threads(1);
    lm_release(x0), lm_release(x2), lm_release(w), lm_release(w2);
}

/* ---- autograd bookkeeping ------------------------------------------------------------------ */

/* A saved input modified in place makes backward fail with the version error. */
static void test_saved_versions(void)
{
    lm_manual_seed(13);
    lm_tensor *x0 = lm_randn(LM_SHAPE(4, 3), LM_F32), *w0 = lm_randn(LM_SHAPE(2, 3), LM_F32);
    lm_tensor *x = leaf(x0), *w = leaf(w0);
    lm_tensor *y = lm_linear(x, w, NULL);
    lm_tensor *s = y ? lm_sum(y, 0, NULL, false) : NULL;
    bool prev = lm_set_grad_enabled(false);
    lm_add_scalar_(w, 1);
    lm_set_grad_enabled(prev);
    ok(s && lm_backward(s, NULL, false) != LM_OK,
       "linear: backward after the weight changed in place fails");
    has_str(lm_last_error(), "linear", "linear: the version error names the op");
    lm_release(s), lm_release(y), lm_release(x), lm_release(w), lm_release(x0), lm_release(w0);
}

/* ---- out of memory ------------------------------------------------------------------------- */

/* One op forward and backward, its inputs made before the allocation failure is armed. Returns
 * the first failure's status (LM_OK when everything ran). */
static lm_status op_case(int which, int64_t fail_after)
{
    lm_manual_seed(14);
    lm_tensor *x = lm_randn(LM_SHAPE(6, 4, 3), LM_F32), *w = lm_randn(LM_SHAPE(4), LM_F32);
    lm_tensor *b = lm_randn(LM_SHAPE(4), LM_F32), *wl = lm_randn(LM_SHAPE(5, 3), LM_F32);
    lm_tensor *rm = lm_zeros(LM_SHAPE(4), LM_F32), *rv = lm_ones(LM_SHAPE(4), LM_F32);
    lm_tensor *idx = lm_from_data((const int64_t[]){1, 0, 4, 1}, LM_I64, LM_SHAPE(2, 2));
    lm_tensor *xt = lm_transpose(x, 0, 1); /* leading dims that linear must copy to merge */
    lm_requires_grad_(x, true), lm_requires_grad_(w, true), lm_requires_grad_(b, true);
    lm_requires_grad_(wl, true);
    lm_debug_fail_alloc_after(fail_after);
    lm_tensor *y = which == 0 ? lm_linear(xt, wl, NULL)
                 : which == 1 ? lm_batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5)
                 : which == 2 ? lm_layer_norm(x, LM_SHAPE(4, 3), NULL, NULL, 1e-5)
                 : which == 3 ? lm_group_norm(x, 2, w, b, 1e-5)
                 : which == 4 ? lm_dropout(x, 0.5, true)
                              : lm_embedding(wl, idx, 0);
    lm_tensor *s = y ? lm_sum(y, 0, NULL, false) : NULL;
    lm_status st = s ? lm_backward(s, NULL, false) : lm_last_status();
    lm_debug_fail_alloc_after(0);
    lm_release(s), lm_release(y), lm_release(xt), lm_release(x), lm_release(w), lm_release(b);
    lm_release(wl), lm_release(rm), lm_release(rv), lm_release(idx);
    return st;
}

/* Every allocation of each op, failed in turn, gives LM_ERR_MEMORY and leaks nothing (the
 * sanitizer and valgrind runs check the latter). */
static void test_alloc_failures(void)
{
    const char *names[6] = {"linear", "batch_norm", "layer_norm", "group_norm", "dropout",
                            "embedding"};
    for (int which = 0; which < 6; which++) {
        bool all_memory = true;
        int64_t n = 1;
        lm_status st;
        for (; n < 500 && (st = op_case(which, n)) != LM_OK; n++) all_memory &= st == LM_ERR_MEMORY;
        ok(all_memory && n < 500, "%s: each of its %lld allocations failing gives LM_ERR_MEMORY",
           names[which], (long long)(n - 1));
    }
}

int main(void)
{
    plan_auto();
    lm_set_num_threads(1);
    test_linear_forward();
    test_linear_grad();
    test_linear_composite();
    test_linear_errors();
    test_batch_norm_forward();
    test_batch_norm_grad();
    test_layer_group_forward();
    test_layer_group_grad();
    test_fused_vs_composite();
    test_norm_errors();
    test_dropout();
    test_embedding();
    test_threads();
    test_saved_versions();
    test_alloc_failures();
    return done();
}
