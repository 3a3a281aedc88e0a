/* test_nn_loss.c — softmax, log_softmax, the losses and scaled dot-product attention.
 *
 * For each op: forward values against hand-worked cases (constants computed with PyTorch 1.13
 * in float64, noted where used) and naive loops written here; the fused ops compared forward
 * and backward with their composition from primitives (exp, sum, log, matmul... with
 * autograd); a gradient check per op and per variant (dims, reductions, weight, ignore_index,
 * label smoothing, [N, C, d] logits, causal and masked attention, non-contiguous inputs); and
 * the error messages. */
#include "gradcheck.h"
#include "lumen.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static lm_tensor *f64s(int ndim, const int64_t *shape, const double *v)
{
    return lm_from_data(v, LM_F64, ndim, shape);
}

static lm_tensor *i64s(int ndim, const int64_t *shape, const int64_t *v)
{
    return lm_from_data(v, LM_I64, ndim, shape);
}

static lm_tensor *grad_leaf(lm_tensor *t)
{
    lm_requires_grad_(t, true);
    return t;
}

/* An f32 leaf requiring grad with x's values (converted with no graph, so it is a leaf). */
static lm_tensor *f32_leaf(const lm_tensor *x)
{
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *t = lm_to_dtype(x, LM_F32);
    lm_set_grad_enabled(prev);
    return grad_leaf(t);
}

/* Element at a flat C-order index, any strides and dtype. */
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

/* Largest |a - b| over two tensors of one shape (inf when the shapes differ or one is NULL);
 * NaN in the same places counts as equal. */
static double max_diff(const lm_tensor *a, const lm_tensor *b)
{
    if (!a || !b || a->ndim != b->ndim) return INFINITY;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return INFINITY;
    double worst = 0;
    for (int64_t i = 0; i < lm_numel(a); i++) {
        double x = at(a, i), y = at(b, i);
        if (isnan(x) && isnan(y)) continue;
        if (x == y) continue; /* equal infinities */
        double d = fabs(x - y);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

static double item(const lm_tensor *t)
{
    double v = NAN;
    if (t) lm_item(t, &v);
    return v;
}

/* ---- composite references, from primitives with autograd ------------------------------------ */

/* x - max along dim, the max detached: it only keeps exp in range and has no gradient of its
 * own in the composite (mathematically it cancels). */
static lm_tensor *shifted(const lm_tensor *x, int dim)
{
    lm_tensor *m = lm_amax(x, 1, &dim, true);
    lm_tensor *md = lm_detach(m);
    lm_tensor *z = lm_sub(x, md);
    lm_release(m);
    lm_release(md);
    return z;
}

static lm_tensor *ref_softmax(const lm_tensor *x, int dim)
{
    lm_tensor *z = shifted(x, dim);
    lm_tensor *e = lm_exp(z);
    lm_tensor *s = lm_sum(e, 1, &dim, true);
    lm_tensor *r = lm_div(e, s);
    lm_release(z);
    lm_release(e);
    lm_release(s);
    return r;
}

static lm_tensor *ref_log_softmax(const lm_tensor *x, int dim)
{
    lm_tensor *z = shifted(x, dim);
    lm_tensor *e = lm_exp(z);
    lm_tensor *s = lm_sum(e, 1, &dim, true);
    lm_tensor *ls = lm_log(s);
    lm_tensor *r = lm_sub(z, ls);
    lm_release(z);
    lm_release(e);
    lm_release(s);
    lm_release(ls);
    return r;
}

/* Cross entropy of [N, C] logits as PyTorch defines it, from log_softmax, one_hot and sums:
 *   loss_i = valid_i ((1 - eps) w[t_i] (-logp[i, t_i]) + eps / C sum_c w[c] (-logp[i, c]))
 * and the mean divides by sum_i valid_i w[t_i]. */
static lm_tensor *ref_cross_entropy(const lm_tensor *logits, const lm_tensor *target,
                                    const lm_tensor *weight, int64_t ignore_index, double eps,
                                    lm_reduction red)
{
    int64_t n = logits->shape[0], c = logits->shape[1];
    int64_t *safe = malloc(sizeof(int64_t) * (size_t)n);
    double *valid = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        int64_t t = (int64_t)at(target, i);
        valid[i] = t != ignore_index;
        safe[i] = t == ignore_index ? 0 : t;
    }
    lm_tensor *ts = i64s(1, (int64_t[]){n}, safe);
    lm_tensor *vt = lm_from_data(valid, LM_F64, 1, (int64_t[]){n});
    free(safe);
    free(valid);
    lm_tensor *v = lm_to_dtype(vt, logits->dtype);
    lm_tensor *oh_i = lm_one_hot(ts, c);
    lm_tensor *oh = lm_to_dtype(oh_i, logits->dtype);
    lm_tensor *w =
        weight ? lm_to_dtype(weight, logits->dtype) : lm_ones(1, (int64_t[]){c}, logits->dtype);
    lm_tensor *logp = ref_log_softmax(logits, 1);
    lm_tensor *nlogp = lm_neg(logp);
    lm_tensor *wn = lm_mul(nlogp, w); /* w[c] (-logp[i, c]) */
    lm_tensor *ohw = lm_mul(oh, wn);
    lm_tensor *nll = lm_sum(ohw, 1, (int[]){1}, false);
    lm_tensor *smooth = lm_sum(wn, 1, (int[]){1}, false);
    lm_tensor *a = lm_mul_scalar(nll, 1 - eps);
    lm_tensor *b = lm_mul_scalar(smooth, eps / (double)c);
    lm_tensor *ab = lm_add(a, b);
    lm_tensor *loss = lm_mul(ab, v);
    lm_tensor *r = NULL;
    if (red == LM_REDUCTION_NONE) {
        r = lm_retain(loss);
    } else {
        lm_tensor *total = lm_sum(loss, 0, NULL, false);
        if (red == LM_REDUCTION_SUM) {
            r = lm_retain(total);
        } else {
            lm_tensor *ohw2 = lm_mul(oh, w);
            lm_tensor *wt = lm_sum(ohw2, 1, (int[]){1}, false);
            lm_tensor *wv = lm_mul(wt, v);
            lm_tensor *den = lm_sum(wv, 0, NULL, false);
            r = lm_div(total, den);
            lm_release(ohw2);
            lm_release(wt);
            lm_release(wv);
            lm_release(den);
        }
        lm_release(total);
    }
    lm_tensor *all[] = {ts, vt, v, oh_i, oh, w, logp, nlogp, wn, ohw, nll, smooth, a, b, ab, loss};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lm_release(all[i]);
    return r;
}

/* softmax(q kᵀ scale + mask) v with the causal mask as an additive 0 / -inf matrix. */
static lm_tensor *ref_attention(const lm_tensor *q, const lm_tensor *k, const lm_tensor *v,
                                const lm_tensor *mask, bool causal, double scale)
{
    lm_tensor *kt = lm_transpose(k, -2, -1);
    lm_tensor *s0 = lm_matmul(q, kt);
    lm_tensor *s = lm_mul_scalar(s0, scale);
    lm_tensor *sm = mask ? lm_add(s, mask) : lm_retain(s);
    lm_tensor *sc = sm;
    if (causal) {
        int64_t l = q->shape[q->ndim - 2], n = k->shape[k->ndim - 2];
        double *cm = malloc(sizeof(double) * (size_t)(l * n));
        for (int64_t i = 0; i < l; i++)
            for (int64_t j = 0; j < n; j++) cm[i * n + j] = j > i ? -INFINITY : 0;
        lm_tensor *cmt = lm_from_data(cm, LM_F64, 2, (int64_t[]){l, n});
        lm_tensor *cmc = lm_to_dtype(cmt, q->dtype);
        sc = lm_add(sm, cmc);
        free(cm);
        lm_release(cmt);
        lm_release(cmc);
        lm_release(sm);
    }
    lm_tensor *p = ref_softmax(sc, -1);
    lm_tensor *r = lm_matmul(p, v);
    lm_release(kt);
    lm_release(s0);
    lm_release(s);
    lm_release(sc);
    lm_release(p);
    return r;
}

/* ---- fused against composite ----------------------------------------------------------------- */

typedef lm_tensor *(*op_fn)(lm_tensor **in, void *ctx);

/* Runs backward of sum(out * w) (w fixed, random) through f, and returns the output and a
 * clone of each input's gradient (NULL for inputs without one). */
static lm_tensor *run_with_grads(op_fn f, int n, lm_tensor **in, void *ctx, const lm_tensor *wseed,
                                 lm_tensor **grads)
{
    for (int i = 0; i < n; i++) lm_zero_grad(in[i]);
    lm_tensor *y = f(in, ctx);
    if (!y) return NULL;
    lm_tensor *w = lm_to_dtype(wseed, y->dtype);
    lm_tensor *p = lm_mul(y, w);
    lm_tensor *s = lm_sum(p, 0, NULL, false);
    if (!s || lm_backward(s, NULL, false)) diag("backward failed: %s", lm_last_error());
    for (int i = 0; i < n; i++) {
        grads[i] = in[i]->grad ? lm_clone(in[i]->grad) : NULL;
        lm_zero_grad(in[i]);
    }
    lm_release(w);
    lm_release(p);
    lm_release(s);
    return y;
}

/* One TAP line: the fused op's output and input gradients equal the composite's within tol. */
static void compare_fused(const char *name, op_fn fused, op_fn composite, int n, lm_tensor **in,
                          void *ctx, double tol)
{
    lm_tensor *gf[8] = {0}, *gc[8] = {0};
    lm_tensor *probe = fused(in, ctx);
    lm_tensor *wseed = probe ? lm_rand(probe->ndim, probe->shape, LM_F64) : NULL;
    lm_release(probe);
    lm_tensor *yf = wseed ? run_with_grads(fused, n, in, ctx, wseed, gf) : NULL;
    lm_tensor *yc = wseed ? run_with_grads(composite, n, in, ctx, wseed, gc) : NULL;
    double worst = max_diff(yf, yc);
    int worst_at = -1;
    for (int i = 0; i < n; i++) {
        if (!in[i]->requires_grad) continue;
        double d = max_diff(gf[i], gc[i]);
        if (!(d <= worst)) {
            worst = d;
            worst_at = i;
        }
    }
    ok(worst <= tol, "%s: fused matches the composite of primitives, forward and backward", name);
    if (!(worst <= tol))
        diag("largest difference %g (%s)%s%s", worst, worst_at < 0 ? "output" : "an input gradient",
             yf ? "" : "; fused failed: ", yf ? "" : lm_last_error());
    for (int i = 0; i < n; i++) {
        lm_release(gf[i]);
        lm_release(gc[i]);
    }
    lm_release(yf);
    lm_release(yc);
    lm_release(wseed);
}

/* ---- op wrappers for gradcheck and compare_fused --------------------------------------------- */

typedef struct {
    int dim;
    bool logp;
} sm_ctx;

static lm_tensor *fused_softmax(lm_tensor **x, void *c)
{
    sm_ctx *s = c;
    return s->logp ? lm_log_softmax(x[0], s->dim) : lm_softmax(x[0], s->dim);
}

static lm_tensor *composite_softmax(lm_tensor **x, void *c)
{
    sm_ctx *s = c;
    return s->logp ? ref_log_softmax(x[0], s->dim) : ref_softmax(x[0], s->dim);
}

typedef struct {
    lm_tensor *target, *weight;
    int64_t ignore;
    double eps;
    lm_reduction red;
} ce_ctx;

static lm_tensor *fused_ce(lm_tensor **x, void *c)
{
    ce_ctx *e = c;
    return lm_cross_entropy(x[0], e->target, e->weight, e->ignore, e->eps, e->red);
}

static lm_tensor *composite_ce(lm_tensor **x, void *c)
{
    ce_ctx *e = c;
    return ref_cross_entropy(x[0], e->target, e->weight, e->ignore, e->eps, e->red);
}

static lm_tensor *fused_nll(lm_tensor **x, void *c)
{
    ce_ctx *e = c;
    return lm_nll_loss(x[0], e->target, e->weight, e->ignore, e->red);
}

/* nll of log_softmax is cross entropy: the composite for nll_loss. */
static lm_tensor *fused_nll_of_log_softmax(lm_tensor **x, void *c)
{
    ce_ctx *e = c;
    lm_tensor *lp = lm_log_softmax(x[0], 1);
    lm_tensor *r = lm_nll_loss(lp, e->target, e->weight, e->ignore, e->red);
    lm_release(lp);
    return r;
}

enum { PW_MSE, PW_L1, PW_SMOOTH_L1, PW_BCE, PW_BCE_LOGITS };

typedef struct {
    int kind;
    lm_tensor *weight, *pos_weight;
    double beta;
    lm_reduction red;
} pw_ctx;

static lm_tensor *fused_pw(lm_tensor **x, void *c)
{
    pw_ctx *p = c;
    switch (p->kind) {
    case PW_MSE: return lm_mse_loss(x[0], x[1], p->red);
    case PW_L1: return lm_l1_loss(x[0], x[1], p->red);
    case PW_SMOOTH_L1: return lm_smooth_l1_loss(x[0], x[1], p->beta, p->red);
    case PW_BCE: return lm_binary_cross_entropy(x[0], x[1], p->weight, p->red);
    default:
        return lm_binary_cross_entropy_with_logits(x[0], x[1], p->weight, p->pos_weight, p->red);
    }
}

typedef struct {
    bool causal, mask_input;
    lm_tensor *mask;
    double scale;
} at_ctx;

static lm_tensor *fused_attn(lm_tensor **x, void *c)
{
    at_ctx *a = c;
    return lm_scaled_dot_product_attention(x[0], x[1], x[2], a->mask_input ? x[3] : a->mask,
                                           a->causal, a->scale);
}

static lm_tensor *composite_attn(lm_tensor **x, void *c)
{
    at_ctx *a = c;
    const lm_tensor *q = x[0];
    double scale = a->scale > 0 ? a->scale : 1 / sqrt((double)q->shape[q->ndim - 1]);
    return ref_attention(x[0], x[1], x[2], a->mask_input ? x[3] : a->mask, a->causal, scale);
}

/* ---- softmax and log_softmax ----------------------------------------------------------------- */

static void test_softmax_values(void)
{
    /* e^x / sum e^x for [1, 2, 3], and log of it: worked by hand. */
    for (int k = 0; k < 2; k++) {
        lm_dtype dt = k ? LM_F32 : LM_F64;
        double tol = k ? 1e-6 : 1e-12;
        lm_tensor *x0 = f64s(1, (int64_t[]){3}, (double[]){1, 2, 3});
        lm_tensor *x = lm_to_dtype(x0, dt);
        lm_tensor *s = lm_softmax(x, 0), *ls = lm_log_softmax(x, -1);
        double z = exp(1) + exp(2) + exp(3);
        ok(s && s->dtype == dt && ls && ls->dtype == dt, "softmax %s keeps the dtype",
           lm_dtype_name(dt));
        is_close(at(s, 0), exp(1) / z, tol, "softmax [1,2,3] %s [0]", lm_dtype_name(dt));
        is_close(at(s, 2), exp(3) / z, tol, "softmax [1,2,3] %s [2]", lm_dtype_name(dt));
        is_close(at(ls, 1), 2 - log(z), tol, "log_softmax [1,2,3] %s [1]", lm_dtype_name(dt));
        lm_release(x0);
        lm_release(x);
        lm_release(s);
        lm_release(ls);
    }

    /* Stable for large and infinite inputs: only differences count. */
    lm_tensor *big =
        f64s(2, (int64_t[]){2, 3}, (double[]){1000, 1001, -INFINITY, -1000, -1001, -1002});
    lm_tensor *bf = lm_to_dtype(big, LM_F32);
    lm_tensor *s = lm_softmax(bf, 1), *ls = lm_log_softmax(big, 1);
    double e1 = 1 / (1 + exp(-1.0));
    is_close(at(s, 1), e1, 1e-6, "softmax of [1000, 1001, -inf] is finite (f32)");
    is_close(at(s, 2), 0, 0, "softmax of -inf is 0");
    is_close(at(ls, 0), -1 - log(1 + exp(-1.0)), 1e-12, "log_softmax of [1000, 1001] is finite");
    ok(isinf(at(ls, 2)) && at(ls, 2) < 0, "log_softmax of -inf is -inf");
    is_close(at(ls, 5), -2 - log(1 + exp(-1.0) + exp(-2.0)), 1e-12,
             "log_softmax of [-1000, -1001, -1002] is finite");
    lm_release(big);
    lm_release(bf);
    lm_release(s);
    lm_release(ls);

    /* A NaN spreads over its row only; a row of -inf gives NaN (as PyTorch). */
    lm_tensor *nn = f64s(2, (int64_t[]){2, 2}, (double[]){NAN, 1, -INFINITY, -INFINITY});
    s = lm_softmax(nn, 1);
    ok(isnan(at(s, 0)) && isnan(at(s, 1)) && isnan(at(s, 2)) && isnan(at(s, 3)),
       "softmax: NaN and all -inf rows give NaN");
    lm_release(nn);
    lm_release(s);

    /* 0-dim and empty. */
    lm_tensor *sc = lm_scalar(3.5, LM_F32);
    s = lm_softmax(sc, 0);
    ls = lm_log_softmax(sc, -1);
    ok(s && s->ndim == 0 && at(s, 0) == 1 && at(ls, 0) == 0,
       "softmax of a 0-dim tensor is 1, log 0");
    lm_release(sc);
    lm_release(s);
    lm_release(ls);
    lm_tensor *em = lm_zeros(2, (int64_t[]){0, 4}, LM_F32);
    s = lm_softmax(em, 1);
    ok(s && s->shape[0] == 0 && s->shape[1] == 4, "softmax of an empty tensor is empty");
    lm_release(em);
    lm_release(s);

    /* Integers are computed in f32. */
    lm_tensor *xi = lm_from_data((int64_t[]){0, 1}, LM_I64, 1, (int64_t[]){2});
    s = lm_softmax(xi, 0);
    ok(s && s->dtype == LM_F32 && fabs(at(s, 1) - e1) < 1e-6, "softmax of i64 gives f32");
    lm_release(xi);
    lm_release(s);
}

/* softmax along each dim of a 3-D tensor against a direct loop, f64 and f32, contiguous and
 * transposed (the rows and columns layouts of the kernels). */
static void test_softmax_naive(void)
{
    lm_manual_seed(11);
    lm_tensor *x = lm_randn(3, (int64_t[]){3, 70, 5}, LM_F64);
    for (int transposed = 0; transposed < 2; transposed++) {
        lm_tensor *xv = transposed ? lm_transpose(x, 0, 2) : lm_retain(x);
        lm_tensor *xf = lm_to_dtype(xv, LM_F32);
        for (int dim = 0; dim < 3; dim++) {
            for (int logp = 0; logp < 2; logp++) {
                lm_tensor *y = logp ? lm_log_softmax(xv, dim) : lm_softmax(xv, dim);
                lm_tensor *yf = logp ? lm_log_softmax(xf, dim) : lm_softmax(xf, dim);
                double worst = 0, worst_f = 0;
                int64_t sh[3] = {xv->shape[0], xv->shape[1], xv->shape[2]};
                int64_t idx[3];
                for (idx[0] = 0; idx[0] < sh[0]; idx[0]++)
                    for (idx[1] = 0; idx[1] < sh[1]; idx[1]++)
                        for (idx[2] = 0; idx[2] < sh[2]; idx[2]++) {
                            double mx = -INFINITY, sum = 0, v, xi;
                            int64_t j[3] = {idx[0], idx[1], idx[2]};
                            for (j[dim] = 0; j[dim] < sh[dim]; j[dim]++) {
                                lm_get(xv, j, &v);
                                mx = fmax(mx, v);
                            }
                            for (j[dim] = 0; j[dim] < sh[dim]; j[dim]++) {
                                lm_get(xv, j, &v);
                                sum += exp(v - mx);
                            }
                            lm_get(xv, idx, &xi);
                            double want = logp ? xi - mx - log(sum) : exp(xi - mx) / sum;
                            double got, gotf;
                            lm_get(y, idx, &got);
                            lm_get(yf, idx, &gotf);
                            worst = fmax(worst, fabs(got - want));
                            worst_f = fmax(worst_f, fabs(gotf - want));
                        }
                ok(worst < 1e-13 && worst_f < 2e-6,
                   "%s over dim %d of %s%s matches a direct loop (f64 %.2g, f32 %.2g)",
                   logp ? "log_softmax" : "softmax", dim, lm_shape_str(3, sh, (char[32]){0}, 32),
                   transposed ? " (transposed view)" : "", worst, worst_f);
                lm_release(y);
                lm_release(yf);
            }
        }
        lm_release(xv);
        lm_release(xf);
    }
    lm_release(x);
}

static void test_softmax_grad(void)
{
    lm_manual_seed(1);
    struct {
        const char *name;
        int ndim;
        int64_t shape[3];
        int dim;
    } cases[] = {
        {"", 2, {3, 5}, -1},
        {" dim 0", 2, {4, 3}, 0},
        {" middle dim of [2,4,3]", 3, {2, 4, 3}, 1},
        {" 1-D", 1, {6}, 0},
    };
    for (int logp = 0; logp < 2; logp++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            lm_tensor *x = gc_input(cases[i].ndim, cases[i].shape, -2, 2);
            sm_ctx c = {cases[i].dim, logp};
            char name[96];
            snprintf(name, sizeof name, "%s%s", logp ? "log_softmax" : "softmax", cases[i].name);
            gradcheck(name, fused_softmax, 1, &x, &c);
            lm_release(x);
        }
        /* A transposed view: the kernels get a contiguous copy, the gradient goes back. */
        lm_tensor *base = gc_input(2, (int64_t[]){5, 3}, -2, 2);
        bool prev = lm_set_grad_enabled(false);
        lm_tensor *xt = lm_transpose(base, 0, 1);
        lm_set_grad_enabled(prev);
        lm_requires_grad_(xt, true);
        sm_ctx c = {1, logp};
        gradcheck(logp ? "log_softmax non-contiguous" : "softmax non-contiguous", fused_softmax, 1,
                  &xt, &c);
        lm_release(xt);
        lm_release(base);
    }
}

static void test_softmax_vs_composite(void)
{
    lm_manual_seed(2);
    for (int logp = 0; logp < 2; logp++) {
        for (int dim = 0; dim < 3; dim++) {
            lm_tensor *x = gc_input(3, (int64_t[]){4, 6, 5}, -4, 4);
            sm_ctx c = {dim, logp};
            char name[64];
            snprintf(name, sizeof name, "%s dim %d (f64)", logp ? "log_softmax" : "softmax", dim);
            compare_fused(name, fused_softmax, composite_softmax, 1, &x, &c, 1e-12);
            lm_tensor *x32 = f32_leaf(x);
            snprintf(name, sizeof name, "%s dim %d (f32)", logp ? "log_softmax" : "softmax", dim);
            compare_fused(name, fused_softmax, composite_softmax, 1, &x32, &c, 2e-5);
            lm_release(x);
            lm_release(x32);
        }
    }
}

/* ---- cross_entropy and nll_loss -------------------------------------------------------------- */

static void test_cross_entropy_values(void)
{
    /* Reference numbers: PyTorch 1.13, float64. */
    lm_tensor *x = f64s(2, (int64_t[]){3, 3}, (double[]){1, 2, 3, 1, 1, 1, -1, 0.5, 2});
    lm_tensor *t = i64s(1, (int64_t[]){3}, (int64_t[]){2, 0, 1});
    lm_tensor *t_ign = i64s(1, (int64_t[]){3}, (int64_t[]){2, -100, 1});
    lm_tensor *w = f64s(1, (int64_t[]){3}, (double[]){1, 2, 3});
    lm_tensor *r;

    r = lm_cross_entropy(x, t, NULL, -100, 0, LM_REDUCTION_MEAN);
    is_close(item(r), 1.082509849923216, 1e-14, "cross_entropy mean");
    ok(r && r->ndim == 0 && r->dtype == LM_F64, "cross_entropy mean is a 0-dim f64");
    lm_release(r);
    r = lm_cross_entropy(x, t, NULL, -100, 0, LM_REDUCTION_NONE);
    ok(r && r->ndim == 1 && r->shape[0] == 3, "cross_entropy none has the target's shape");
    is_close(at(r, 0), 0.4076059644443804, 1e-14, "cross_entropy none [0] = -log softmax");
    is_close(at(r, 1), log(3.0), 1e-14, "cross_entropy none [1] = log 3 for equal logits");
    lm_release(r);
    r = lm_cross_entropy(x, t, w, -100, 0, LM_REDUCTION_MEAN);
    is_close(item(r), 0.9673421292192609, 1e-14, "cross_entropy weighted mean divides by sum w[t]");
    lm_release(r);
    r = lm_cross_entropy(x, t_ign, w, -100, 0, LM_REDUCTION_MEAN);
    is_close(item(r), 0.9410880973294912, 1e-14, "cross_entropy weighted mean with ignore_index");
    lm_release(r);
    r = lm_cross_entropy(x, t, NULL, -100, 0.1, LM_REDUCTION_MEAN);
    is_close(item(r), 1.1158431832565494, 1e-14, "cross_entropy label_smoothing 0.1");
    lm_release(r);
    r = lm_cross_entropy(x, t_ign, w, -100, 0.2, LM_REDUCTION_MEAN);
    is_close(item(r), 0.9381171920850493, 1e-14, "cross_entropy weight + ignore + smoothing, mean");
    lm_release(r);
    r = lm_cross_entropy(x, t_ign, w, -100, 0.2, LM_REDUCTION_SUM);
    is_close(item(r), 4.690585960425247, 1e-14, "cross_entropy weight + ignore + smoothing, sum");
    lm_release(r);
    r = lm_cross_entropy(x, t_ign, w, -100, 0.2, LM_REDUCTION_NONE);
    ok(r && at(r, 1) == 0 && fabs(at(r, 2) - 3.2826225933143145) < 1e-14,
       "cross_entropy none: an ignored position is 0");
    lm_release(r);

    /* f32 logits. */
    lm_tensor *x32 = lm_to_dtype(x, LM_F32);
    r = lm_cross_entropy(x32, t_ign, w, -100, 0.2, LM_REDUCTION_MEAN);
    ok(r && r->dtype == LM_F32, "cross_entropy of f32 logits is f32 (an f64 weight is converted)");
    is_close(item(r), 0.9381171920850493, 1e-6, "cross_entropy f32 value");
    lm_release(r);
    lm_release(x32);

    /* [N, C, d] logits: sin(0..11) viewed [2, 3, 2]. */
    lm_tensor *ar = lm_arange(0, 12, 1, LM_F64);
    lm_tensor *s = lm_sin(ar);
    lm_tensor *x3 = lm_reshape(s, 3, (int64_t[]){2, 3, 2});
    lm_tensor *t3 = i64s(2, (int64_t[]){2, 2}, (int64_t[]){0, 2, 1, 1});
    r = lm_cross_entropy(x3, t3, NULL, -100, 0, LM_REDUCTION_NONE);
    ok(r && r->ndim == 2 && r->shape[0] == 2 && r->shape[1] == 2,
       "cross_entropy [N,C,d] none is [N,d]");
    is_close(at(r, 1), 2.308203100102385, 1e-14, "cross_entropy [N,C,d] none [0,1]");
    is_close(at(r, 2), 0.40345065055272744, 1e-14, "cross_entropy [N,C,d] none [1,0]");
    lm_release(r);
    r = lm_cross_entropy(x3, t3, w, -100, 0.3, LM_REDUCTION_MEAN);
    is_close(item(r), 1.4132498943974312, 1e-14, "cross_entropy [N,C,d] weight + smoothing mean");
    lm_release(r);

    /* [C] logits with a 0-dim target. */
    lm_tensor *xc = f64s(1, (int64_t[]){3}, (double[]){0.5, -1, 2});
    lm_tensor *tc = lm_from_data((int64_t[]){1}, LM_I64, 0, NULL);
    r = lm_cross_entropy(xc, tc, NULL, -100, 0, LM_REDUCTION_NONE);
    ok(r && r->ndim == 0, "cross_entropy of [C] logits, none: 0-dim");
    is_close(item(r), 3.241311296657157, 1e-14, "cross_entropy of [C] logits");
    lm_release(r);

    /* nll_loss of log_softmax. */
    lm_tensor *lp = lm_log_softmax(x, 1);
    r = lm_nll_loss(lp, t_ign, w, -100, LM_REDUCTION_MEAN);
    is_close(item(r), 0.9410880973294912, 1e-14, "nll_loss weighted mean with ignore_index");
    lm_release(r);
    r = lm_nll_loss(lp, t, NULL, -100, LM_REDUCTION_SUM);
    is_close(item(r), 3.2475295497696477, 1e-14, "nll_loss sum");
    lm_release(r);
    r = lm_nll_loss(x, t, NULL, 0, LM_REDUCTION_NONE);
    ok(r && at(r, 0) == -3 && at(r, 1) == 0 && at(r, 2) == -0.5,
       "nll_loss none: -input[t], 0 where ignored (ignore_index 0)");
    lm_release(r);

    /* Every target ignored: the mean is 0/0 = NaN and the gradient 0, as PyTorch. */
    lm_tensor *all_ign = i64s(1, (int64_t[]){3}, (int64_t[]){-100, -100, -100});
    lm_tensor *xg = grad_leaf(lm_clone(x));
    r = lm_cross_entropy(xg, all_ign, NULL, -100, 0.1, LM_REDUCTION_MEAN);
    ok(r && isnan(item(r)), "cross_entropy with every target ignored: mean is NaN");
    lm_backward(r, NULL, false);
    lm_tensor *z = lm_zeros_like(x);
    ok(xg->grad && max_diff(xg->grad, z) == 0, "... and its gradient is 0");
    lm_release(r);
    lm_release(z);
    lm_release(xg);
    lm_release(all_ign);

    lm_tensor *all[] = {x, t, t_ign, w, ar, s, x3, t3, xc, tc, lp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lm_release(all[i]);
}

static void test_cross_entropy_grad(void)
{
    lm_manual_seed(3);
    lm_tensor *t = i64s(1, (int64_t[]){4}, (int64_t[]){2, 0, 4, 1});
    lm_tensor *t_ign = i64s(1, (int64_t[]){4}, (int64_t[]){2, 3, -1, 1});
    lm_tensor *w = f64s(1, (int64_t[]){5}, (double[]){0.5, 1, 2, 1.5, 0.3});
    struct {
        const char *name;
        lm_tensor *target, *weight;
        int64_t ignore;
        double eps;
        lm_reduction red;
    } cases[] = {
        {"cross_entropy", t, NULL, -100, 0, LM_REDUCTION_MEAN},
        {"cross_entropy sum", t, NULL, -100, 0, LM_REDUCTION_SUM},
        {"cross_entropy none", t, NULL, -100, 0, LM_REDUCTION_NONE},
        {"cross_entropy weight", t, w, -100, 0, LM_REDUCTION_MEAN},
        {"cross_entropy ignore_index", t_ign, NULL, -1, 0, LM_REDUCTION_MEAN},
        {"cross_entropy label_smoothing", t, NULL, -100, 0.15, LM_REDUCTION_MEAN},
        {"cross_entropy weight + ignore_index + label_smoothing", t_ign, w, -1, 0.3,
         LM_REDUCTION_MEAN},
        {"cross_entropy weight + ignore_index + label_smoothing, none", t_ign, w, -1, 0.3,
         LM_REDUCTION_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lm_tensor *x = gc_input(2, (int64_t[]){4, 5}, -3, 3);
        ce_ctx c = {cases[i].target, cases[i].weight, cases[i].ignore, cases[i].eps, cases[i].red};
        gradcheck(cases[i].name, fused_ce, 1, &x, &c);
        char name[128];
        snprintf(name, sizeof name, "%s", cases[i].name);
        compare_fused(name, fused_ce, composite_ce, 1, &x, &c, 1e-12);
        lm_tensor *x32 = f32_leaf(x);
        snprintf(name, sizeof name, "%s (f32)", cases[i].name);
        compare_fused(name, fused_ce, composite_ce, 1, &x32, &c, 2e-5);
        lm_release(x);
        lm_release(x32);

        /* nll_loss with the same options (no smoothing), against nll of log_softmax. */
        if (cases[i].eps == 0) {
            lm_tensor *lp = gc_input(2, (int64_t[]){4, 5}, -3, 0);
            snprintf(name, sizeof name, "nll_loss%s", cases[i].name + strlen("cross_entropy"));
            gradcheck(name, fused_nll, 1, &lp, &c);
            lm_tensor *xl = gc_input(2, (int64_t[]){4, 5}, -3, 3);
            snprintf(name, sizeof name, "nll_loss(log_softmax)%s",
                     cases[i].name + strlen("cross_entropy"));
            compare_fused(name, fused_nll_of_log_softmax, fused_ce, 1, &xl, &c, 1e-12);
            lm_release(lp);
            lm_release(xl);
        }
    }

    /* [N, C, d1, d2] logits, with weight, ignore_index and smoothing. */
    lm_tensor *t4 =
        i64s(3, (int64_t[]){2, 2, 3}, (int64_t[]){0, 1, 2, 4, -1, 3, 2, 2, 0, 1, 4, -1});
    lm_tensor *x4 = gc_input(4, (int64_t[]){2, 5, 2, 3}, -2, 2);
    ce_ctx c4 = {t4, w, -1, 0.2, LM_REDUCTION_MEAN};
    gradcheck("cross_entropy [N,C,d1,d2] weight + ignore_index + label_smoothing", fused_ce, 1, &x4,
              &c4);
    c4.red = LM_REDUCTION_NONE;
    gradcheck("cross_entropy [N,C,d1,d2] none", fused_ce, 1, &x4, &c4);
    gradcheck("nll_loss [N,C,d1,d2] none", fused_nll, 1, &x4, &c4);

    /* [N, C, d] against the [N*d, C] composite: move the class dim last and flatten. */
    lm_tensor *x3 = gc_input(3, (int64_t[]){3, 5, 4}, -2, 2);
    lm_tensor *t3 = lm_randint(0, 5, 2, (int64_t[]){3, 4}, LM_I64);
    lm_tensor *x3t = lm_transpose(x3, 1, 2);
    lm_tensor *x3f = lm_reshape(x3t, 2, (int64_t[]){12, 5});
    lm_tensor *t3f = lm_reshape(t3, 1, (int64_t[]){12});
    lm_tensor *a = lm_cross_entropy(x3, t3, w, -100, 0.1, LM_REDUCTION_MEAN);
    lm_tensor *b = ref_cross_entropy(x3f, t3f, w, -100, 0.1, LM_REDUCTION_MEAN);
    lm_backward(a, NULL, false);
    lm_tensor *ga = lm_clone(x3->grad);
    lm_zero_grad(x3);
    lm_backward(b, NULL, false);
    ok(fabs(item(a) - item(b)) < 1e-12 && max_diff(ga, x3->grad) < 1e-12,
       "cross_entropy [N,C,d]: fused matches the composite of primitives, forward and backward");
    lm_release(a);
    lm_release(b);
    lm_release(ga);
    lm_zero_grad(x3);

    /* [C] logits. */
    lm_tensor *xc = gc_input(1, (int64_t[]){5}, -2, 2);
    lm_tensor *tc = lm_from_data((int64_t[]){3}, LM_I64, 0, NULL);
    ce_ctx cc = {tc, w, -100, 0.1, LM_REDUCTION_MEAN};
    gradcheck("cross_entropy [C]", fused_ce, 1, &xc, &cc);

    /* Non-contiguous logits: a transposed view. */
    lm_tensor *base = gc_input(2, (int64_t[]){5, 4}, -2, 2);
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *xt = lm_transpose(base, 0, 1);
    lm_set_grad_enabled(prev);
    lm_requires_grad_(xt, true);
    ce_ctx ct = {t, w, -100, 0.1, LM_REDUCTION_MEAN};
    gradcheck("cross_entropy non-contiguous logits", fused_ce, 1, &xt, &ct);
    compare_fused("cross_entropy non-contiguous logits", fused_ce, composite_ce, 1, &xt, &ct,
                  1e-12);
    gradcheck("nll_loss non-contiguous input", fused_nll, 1, &xt, &ct);

    lm_tensor *all[] = {t, t_ign, w, t4, x4, x3, t3, x3t, x3f, t3f, xc, tc, base, xt};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lm_release(all[i]);
}

/* The training-sized case: f32 [64, 10]; and a large one run with 1 and 2 threads, whose
 * results must not depend on the thread count. */
static void test_cross_entropy_large(void)
{
    lm_manual_seed(4);
    lm_tensor *x = lm_randn(2, (int64_t[]){64, 10}, LM_F32);
    lm_tensor *t = lm_randint(0, 10, 1, (int64_t[]){64}, LM_I64);
    lm_requires_grad_(x, true);
    ce_ctx c = {t, NULL, -100, 0, LM_REDUCTION_MEAN};
    compare_fused("cross_entropy f32 [64,10]", fused_ce, composite_ce, 1, &x, &c, 1e-6);
    lm_release(x);
    lm_release(t);

    x = lm_randn(2, (int64_t[]){2000, 50}, LM_F32);
    t = lm_randint(0, 50, 1, (int64_t[]){2000}, LM_I64);
    lm_tensor *x3 = lm_randn(3, (int64_t[]){40, 30, 100}, LM_F32);
    lm_tensor *t3 = lm_randint(0, 30, 2, (int64_t[]){40, 100}, LM_I64);
    lm_requires_grad_(x, true);
    lm_requires_grad_(x3, true);
    double v[2][2];
    lm_tensor *g[2][3];
    int old = lm_get_num_threads();
    for (int k = 0; k < 2; k++) {
        lm_set_num_threads(k + 1);
        lm_tensor *l = lm_cross_entropy(x, t, NULL, -100, 0.1, LM_REDUCTION_MEAN);
        lm_tensor *l3 = lm_cross_entropy(x3, t3, NULL, -100, 0.1, LM_REDUCTION_SUM);
        v[k][0] = item(l);
        v[k][1] = item(l3);
        lm_backward(l, NULL, false);
        lm_backward(l3, NULL, false);
        g[k][0] = lm_clone(x->grad);
        g[k][1] = lm_clone(x3->grad);
        g[k][2] = lm_softmax(x3, 1);
        lm_zero_grad(x);
        lm_zero_grad(x3);
        lm_release(l);
        lm_release(l3);
    }
    lm_set_num_threads(old);
    ok(v[0][0] == v[1][0] && v[0][1] == v[1][1] && max_diff(g[0][0], g[1][0]) == 0 &&
           max_diff(g[0][1], g[1][1]) == 0 && max_diff(g[0][2], g[1][2]) == 0,
       "cross_entropy and softmax: the same bits with 1 and 2 threads");
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 3; j++) lm_release(g[k][j]);
    lm_release(x);
    lm_release(t);
    lm_release(x3);
    lm_release(t3);
}

/* ---- point-wise losses ----------------------------------------------------------------------- */

static void test_pointwise_values(void)
{
    /* Reference numbers: PyTorch 1.13, float64. */
    lm_tensor *a = f64s(2, (int64_t[]){2, 3}, (double[]){0.5, -1, 2, 3, 0, -0.2});
    lm_tensor *b = f64s(1, (int64_t[]){3}, (double[]){1, 0.3, -0.5});
    lm_tensor *r;
    r = lm_mse_loss(a, b, LM_REDUCTION_MEAN);
    is_close(item(r), 2.061666666666667, 1e-14, "mse_loss mean (broadcast target)");
    lm_release(r);
    r = lm_l1_loss(a, b, LM_REDUCTION_SUM);
    is_close(item(r), 6.9, 1e-14, "l1_loss sum");
    lm_release(r);
    r = lm_smooth_l1_loss(a, b, 1.0, LM_REDUCTION_NONE);
    ok(r && r->ndim == 2 && fabs(at(r, 0) - 0.125) < 1e-14 && fabs(at(r, 1) - 0.8) < 1e-14 &&
           fabs(at(r, 4) - 0.045) < 1e-14,
       "smooth_l1_loss beta 1, none: quadratic below beta, linear above");
    lm_release(r);
    r = lm_smooth_l1_loss(a, b, 0.5, LM_REDUCTION_MEAN);
    is_close(item(r), 0.9133333333333334, 1e-14, "smooth_l1_loss beta 0.5 mean");
    lm_release(r);
    r = lm_smooth_l1_loss(a, b, 0, LM_REDUCTION_SUM);
    is_close(item(r), 6.9, 1e-14, "smooth_l1_loss beta 0 is l1_loss");
    lm_release(r);
    lm_tensor *a32 = lm_to_dtype(a, LM_F32);
    r = lm_mse_loss(a32, b, LM_REDUCTION_MEAN);
    ok(r && r->dtype == LM_F64, "mse_loss of f32 and f64 computes in f64 (promotion)");
    lm_release(r);
    lm_release(a32);

    lm_tensor *p = f64s(1, (int64_t[]){5}, (double[]){0.1, 0.5, 0.9, 0, 1});
    lm_tensor *y = f64s(1, (int64_t[]){5}, (double[]){0, 1, 0.3, 0.5, 0.7});
    lm_tensor *bw = f64s(1, (int64_t[]){5}, (double[]){1, 2, 0.5, 1, 1});
    r = lm_binary_cross_entropy(p, y, NULL, LM_REDUCTION_NONE);
    ok(r && fabs(at(r, 0) - 0.10536051565782628) < 1e-14 &&
           fabs(at(r, 2) - 1.6434177197931799) < 1e-14,
       "binary_cross_entropy none");
    ok(r && at(r, 3) == 50 && fabs(at(r, 4) - 30) < 1e-12,
       "binary_cross_entropy clamps the logs at -100 (inputs 0 and 1)");
    lm_release(r);
    r = lm_binary_cross_entropy(p, y, bw, LM_REDUCTION_MEAN);
    is_close(item(r), 16.462672747334864, 1e-14, "binary_cross_entropy weighted mean");
    lm_release(r);

    lm_tensor *z = f64s(2, (int64_t[]){2, 3}, (double[]){-100, -2, 0, 0.5, 3, 100});
    lm_tensor *yz = f64s(2, (int64_t[]){2, 3}, (double[]){1, 0, 0.5, 1, 0.2, 0});
    lm_tensor *pw = f64s(1, (int64_t[]){3}, (double[]){2, 0.5, 1.5});
    lm_tensor *rw = f64s(2, (int64_t[]){2, 1}, (double[]){1, 2});
    r = lm_binary_cross_entropy_with_logits(z, yz, NULL, NULL, LM_REDUCTION_NONE);
    ok(r && fabs(at(r, 0) - 100) < 1e-12 && fabs(at(r, 5) - 100) < 1e-12,
       "binary_cross_entropy_with_logits is stable at +-100");
    ok(r && fabs(at(r, 1) - 0.1269280110429726) < 1e-14 &&
           fabs(at(r, 4) - 2.4485873515737424) < 1e-14,
       "binary_cross_entropy_with_logits none");
    lm_release(r);
    r = lm_binary_cross_entropy_with_logits(z, yz, rw, pw, LM_REDUCTION_SUM);
    is_close(item(r), 407.77712715629605, 1e-14,
             "binary_cross_entropy_with_logits weight + pos_weight (broadcast), sum");
    lm_release(r);

    lm_tensor *e = lm_zeros(1, (int64_t[]){0}, LM_F32);
    r = lm_mse_loss(e, e, LM_REDUCTION_MEAN);
    ok(r && isnan(item(r)), "mse_loss mean of nothing is NaN, as PyTorch");
    lm_release(r);
    r = lm_l1_loss(e, e, LM_REDUCTION_SUM);
    ok(r && item(r) == 0, "l1_loss sum of nothing is 0");
    lm_release(r);

    lm_tensor *all[] = {a, b, p, y, bw, z, yz, pw, rw, e};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lm_release(all[i]);
}

static void test_pointwise_grad(void)
{
    lm_manual_seed(5);
    static const char *const names[] = {"mse_loss", "l1_loss", "smooth_l1_loss",
                                        "binary_cross_entropy", "binary_cross_entropy_with_logits"};
    static const char *const reds[] = {"", " sum", " none"};
    lm_tensor *w = gc_input(2, (int64_t[]){3, 4}, 0.5, 2);
    lm_tensor *w_row = gc_input(1, (int64_t[]){4}, 0.5, 2);
    lm_tensor *pw = gc_input(1, (int64_t[]){4}, 0.5, 3);
    lm_requires_grad_(w, false);
    lm_requires_grad_(w_row, false);
    lm_requires_grad_(pw, false);
    for (int kind = PW_MSE; kind <= PW_BCE_LOGITS; kind++) {
        for (int red = 0; red < 3; red++) {
            bool bce = kind == PW_BCE;
            lm_tensor *in[2] = {gc_input(2, (int64_t[]){3, 4}, bce ? 0.05 : -2, bce ? 0.95 : 2),
                                gc_input(2, (int64_t[]){3, 4}, bce ? 0 : -2, bce ? 1 : 2)};
            pw_ctx c = {kind, NULL, NULL, 0.7, (lm_reduction)red};
            char name[128];
            snprintf(name, sizeof name, "%s%s (input and target)", names[kind], reds[red]);
            gradcheck(name, fused_pw, 2, in, &c);
            if (kind >= PW_BCE) {
                c.weight = red == 1 ? w_row : w;
                c.pos_weight = kind == PW_BCE_LOGITS ? pw : NULL;
                snprintf(name, sizeof name, "%s%s with %sweight%s", names[kind], reds[red],
                         red == 1 ? "broadcast " : "",
                         kind == PW_BCE_LOGITS ? " and pos_weight" : "");
                gradcheck(name, fused_pw, 2, in, &c);
            }
            lm_release(in[0]);
            lm_release(in[1]);
        }
    }
    /* Variants: smooth l1 with other betas, a broadcast target, non-contiguous input. */
    lm_tensor *x = gc_input(2, (int64_t[]){3, 4}, -2, 2);
    lm_tensor *yb = gc_input(1, (int64_t[]){4}, -2, 2);
    lm_tensor *in[2] = {x, yb};
    pw_ctx c = {PW_SMOOTH_L1, NULL, NULL, 2.5, LM_REDUCTION_MEAN};
    gradcheck("smooth_l1_loss beta 2.5, broadcast target", fused_pw, 2, in, &c);
    c.beta = 0;
    gradcheck("smooth_l1_loss beta 0 (l1)", fused_pw, 2, in, &c);
    c.kind = PW_MSE;
    gradcheck("mse_loss broadcast target", fused_pw, 2, in, &c);
    lm_tensor *base = gc_input(2, (int64_t[]){4, 3}, 0.05, 0.95);
    lm_tensor *yt = gc_input(2, (int64_t[]){3, 4}, 0, 1);
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *xt = lm_transpose(base, 0, 1);
    lm_set_grad_enabled(prev);
    lm_requires_grad_(xt, true);
    lm_tensor *in2[2] = {xt, yt};
    for (int kind = PW_MSE; kind <= PW_BCE_LOGITS; kind++) {
        pw_ctx cn = {kind, NULL, NULL, 0.3, LM_REDUCTION_MEAN};
        char name[96];
        snprintf(name, sizeof name, "%s non-contiguous input", names[kind]);
        gradcheck(name, fused_pw, 2, in2, &cn);
    }
    lm_release(x);
    lm_release(yb);
    lm_release(base);
    lm_release(yt);
    lm_release(xt);
    lm_release(w);
    lm_release(w_row);
    lm_release(pw);
}

/* The point-wise losses from primitives, per element (before the mean), as PyTorch writes
 * them: (x - y)², |x - y|, smooth l1 by where, binary cross entropy with clamped logs, and its
 * logits form (1 - y) x + (1 + (pw - 1) y) (relu(-x) + log1p(exp(-|x|))), times the weight. */
static lm_tensor *composite_pw_elems(lm_tensor **in, const pw_ctx *p)
{
    const lm_tensor *x = in[0], *y = in[1];
    lm_tensor *d = lm_sub(x, y), *r = NULL;
    switch (p->kind) {
    case PW_MSE: r = lm_mul(d, d); break;
    case PW_L1: r = lm_abs(d); break;
    case PW_SMOOTH_L1: {
        lm_tensor *ad = lm_abs(d), *small = lm_lt_scalar(ad, p->beta);
        lm_tensor *sq = lm_mul(d, d), *quad = lm_mul_scalar(sq, 0.5 / p->beta);
        lm_tensor *lin = lm_sub_scalar(ad, 0.5 * p->beta);
        r = lm_where(small, quad, lin);
        lm_tensor *tmp[] = {ad, small, sq, quad, lin};
        for (size_t i = 0; i < 5; i++) lm_release(tmp[i]);
        break;
    }
    case PW_BCE: {
        lm_tensor *lx = lm_log(x), *omx = lm_rsub_scalar(x, 1), *l1x = lm_log(omx);
        lm_tensor *clx = lm_clamp(lx, -100, INFINITY), *cl1x = lm_clamp(l1x, -100, INFINITY);
        lm_tensor *a = lm_mul(y, clx), *omy = lm_rsub_scalar(y, 1), *b = lm_mul(omy, cl1x);
        lm_tensor *ab = lm_add(a, b);
        r = lm_neg(ab);
        lm_tensor *tmp[] = {lx, omx, l1x, clx, cl1x, a, omy, b, ab};
        for (size_t i = 0; i < 9; i++) lm_release(tmp[i]);
        break;
    }
    default: {
        lm_tensor *omy = lm_rsub_scalar(y, 1), *a = lm_mul(omy, x);
        lm_tensor *nx = lm_neg(x), *m = lm_relu(nx), *ax = lm_abs(x), *nax = lm_neg(ax);
        lm_tensor *e = lm_exp(nax), *l1p = lm_log1p(e), *sp = lm_add(m, l1p);
        lm_tensor *lw = NULL;
        if (p->pos_weight) {
            lm_tensor *pm1 = lm_sub_scalar(p->pos_weight, 1), *py = lm_mul(pm1, y);
            lw = lm_add_scalar(py, 1);
            lm_release(pm1);
            lm_release(py);
        }
        lm_tensor *b = lw ? lm_mul(lw, sp) : lm_retain(sp);
        r = lm_add(a, b);
        lm_tensor *tmp[] = {omy, a, nx, m, ax, nax, e, l1p, sp, lw, b};
        for (size_t i = 0; i < 11; i++) lm_release(tmp[i]);
        break;
    }
    }
    lm_release(d);
    if (p->weight && r) {
        lm_tensor *rw = lm_mul(r, p->weight);
        lm_release(r);
        r = rw;
    }
    return r;
}

static lm_tensor *composite_pw(lm_tensor **in, void *c)
{
    pw_ctx *p = c;
    lm_tensor *e = composite_pw_elems(in, p), *r;
    if (p->red == LM_REDUCTION_NONE) return e;
    r = p->red == LM_REDUCTION_SUM ? lm_sum(e, 0, NULL, false) : lm_mean(e, 0, NULL, false);
    lm_release(e);
    return r;
}

static void test_pointwise_vs_composite(void)
{
    lm_manual_seed(9);
    static const char *const names[] = {"mse_loss", "l1_loss", "smooth_l1_loss",
                                        "binary_cross_entropy", "binary_cross_entropy_with_logits"};
    lm_tensor *w = gc_input(1, (int64_t[]){5}, 0.5, 2);
    lm_tensor *pw = gc_input(1, (int64_t[]){5}, 0.5, 3);
    lm_requires_grad_(w, false);
    lm_requires_grad_(pw, false);
    for (int kind = PW_MSE; kind <= PW_BCE_LOGITS; kind++) {
        bool bce = kind == PW_BCE;
        lm_tensor *in[2] = {gc_input(2, (int64_t[]){4, 5}, bce ? 0.05 : -3, bce ? 0.95 : 3),
                            gc_input(2, (int64_t[]){4, 5}, bce ? 0 : -3, bce ? 1 : 3)};
        pw_ctx c = {kind, kind >= PW_BCE ? w : NULL, kind == PW_BCE_LOGITS ? pw : NULL, 0.8,
                    LM_REDUCTION_MEAN};
        char name[96];
        snprintf(name, sizeof name, "%s%s (f64)", names[kind],
                 kind >= PW_BCE ? " with weight" : "");
        compare_fused(name, fused_pw, composite_pw, 2, in, &c, 1e-12);
        lm_tensor *in32[2] = {f32_leaf(in[0]), f32_leaf(in[1])};
        bool prev = lm_set_grad_enabled(false);
        lm_tensor *w32 = lm_to_dtype(w, LM_F32), *pw32 = lm_to_dtype(pw, LM_F32);
        lm_set_grad_enabled(prev);
        c.weight = c.weight ? w32 : NULL;
        c.pos_weight = c.pos_weight ? pw32 : NULL;
        c.red = LM_REDUCTION_NONE;
        snprintf(name, sizeof name, "%s none (f32)", names[kind]);
        compare_fused(name, fused_pw, composite_pw, 2, in32, &c, 2e-5);
        for (int j = 0; j < 2; j++) {
            lm_release(in[j]);
            lm_release(in32[j]);
        }
        lm_release(w32);
        lm_release(pw32);
    }
    lm_release(w);
    lm_release(pw);
}

/* ---- attention ------------------------------------------------------------------------------- */

/* out[b, i, :] = sum_j softmax_j(scale q_i . k_j + mask[b, i, j]) v_j by direct loops, over
 * [B, L, E] q and [B, S, *] k, v (mask [L, S] or NULL). */
static double attention_naive_diff(const lm_tensor *out, const lm_tensor *q, const lm_tensor *k,
                                   const lm_tensor *v, const double *mask, bool causal,
                                   double scale)
{
    int64_t nb = q->shape[0], l = q->shape[1], e = q->shape[2], s = k->shape[1], ev = v->shape[2];
    double worst = 0;
    double *w = malloc(sizeof(double) * (size_t)s);
    for (int64_t b = 0; b < nb; b++)
        for (int64_t i = 0; i < l; i++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < s; j++) {
                double d = 0, a, c;
                for (int64_t x = 0; x < e; x++) {
                    lm_get(q, (int64_t[]){b, i, x}, &a);
                    lm_get(k, (int64_t[]){b, j, x}, &c);
                    d += a * c;
                }
                w[j] = d * scale + (mask ? mask[i * s + j] : 0) + (causal && j > i ? -INFINITY : 0);
                mx = fmax(mx, w[j]);
            }
            for (int64_t j = 0; j < s; j++) sum += (w[j] = exp(w[j] - mx));
            for (int64_t y = 0; y < ev; y++) {
                double want = 0, vv, got;
                for (int64_t j = 0; j < s; j++) {
                    lm_get(v, (int64_t[]){b, j, y}, &vv);
                    want += w[j] / sum * vv;
                }
                lm_get(out, (int64_t[]){b, i, y}, &got);
                worst = fmax(worst, fabs(got - want));
            }
        }
    free(w);
    return worst;
}

static void test_attention_values(void)
{
    lm_manual_seed(6);
    lm_tensor *q = lm_randn(3, (int64_t[]){2, 4, 3}, LM_F64);
    lm_tensor *k = lm_randn(3, (int64_t[]){2, 5, 3}, LM_F64);
    lm_tensor *v = lm_randn(3, (int64_t[]){2, 5, 2}, LM_F64);
    double md[20];
    for (int i = 0; i < 20; i++) md[i] = 0.1 * (i % 7) - 0.3;
    lm_tensor *mask = f64s(2, (int64_t[]){4, 5}, md);
    for (int causal = 0; causal < 2; causal++) {
        for (int with_mask = 0; with_mask < 2; with_mask++) {
            lm_tensor *o =
                lm_scaled_dot_product_attention(q, k, v, with_mask ? mask : NULL, causal, 0);
            double d =
                o ? attention_naive_diff(o, q, k, v, with_mask ? md : NULL, causal, 1 / sqrt(3.0))
                  : INFINITY;
            ok(d < 1e-13 && o->shape[0] == 2 && o->shape[1] == 4 && o->shape[2] == 2,
               "scaled_dot_product_attention%s%s matches direct loops (L 4, S 5)",
               causal ? " causal" : "", with_mask ? " with an additive mask" : "");
            lm_release(o);
        }
    }
    /* A boolean (u8) mask: zero means masked, as -inf added. */
    uint8_t bm[20];
    double am[20];
    for (int i = 0; i < 20; i++) {
        bm[i] = (i * 7 % 3) != 0 || i % 5 == 0;
        am[i] = bm[i] ? 0 : -INFINITY;
    }
    lm_tensor *bmask = lm_from_data(bm, LM_U8, 2, (int64_t[]){4, 5});
    lm_tensor *o = lm_scaled_dot_product_attention(q, k, v, bmask, false, 0.5);
    ok(o && attention_naive_diff(o, q, k, v, am, false, 0.5) < 1e-13,
       "scaled_dot_product_attention with a u8 mask and scale 0.5");
    lm_release(o);
    /* f32. */
    lm_tensor *q32 = lm_to_dtype(q, LM_F32), *k32 = lm_to_dtype(k, LM_F32),
              *v32 = lm_to_dtype(v, LM_F32);
    o = lm_scaled_dot_product_attention(q32, k32, v32, mask, true, 0);
    ok(o && o->dtype == LM_F32 && attention_naive_diff(o, q, k, v, md, true, 1 / sqrt(3.0)) < 1e-5,
       "scaled_dot_product_attention f32 causal with an f64 mask");
    lm_release(o);
    lm_tensor *all[] = {q, k, v, mask, bmask, q32, k32, v32};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lm_release(all[i]);
}

/* Attention variants for the gradient checks: shapes of q, k and v ([*, L, E], [*, S, E],
 * [*, S, Ev]), flags, the mask's shape (broadcast over the batch in "causal + mask") and the
 * scale (0: 1/sqrt(E)). A floating mask (MASK) has its gradient checked too; a boolean one has
 * none. */
enum { CAUSAL = 1, MASK = 2, BOOL_MASK = 4 };
typedef struct {
    const char *name;
    int nq, nk;
    int64_t qs[4], ks[4], vs[4];
    unsigned flags;
    int nm;
    int64_t ms[4];
    double scale;
} at_case;

static void test_attention_grad(void)
{
    lm_manual_seed(7);
    static const at_case cases[] = {
        {"", 3, 3, {2, 3, 4}, {2, 5, 4}, {2, 5, 3}, 0, 0, {0}, 0},
        {" causal", 3, 3, {2, 4, 3}, {2, 4, 3}, {2, 4, 2}, CAUSAL, 0, {0}, 0},
        {" causal L < S", 3, 3, {1, 3, 2}, {1, 5, 2}, {1, 5, 2}, CAUSAL, 0, {0}, 0},
        {" additive mask", 3, 3, {2, 3, 2}, {2, 4, 2}, {2, 4, 3}, MASK, 2, {3, 4}, 0},
        {" causal + mask", 3, 3, {2, 3, 2}, {2, 3, 2}, {2, 3, 2}, CAUSAL | MASK, 3, {1, 3, 3}, 0.7},
        {" boolean mask", 3, 3, {2, 3, 2}, {2, 4, 2}, {2, 4, 2}, BOOL_MASK, 2, {3, 4}, 0},
        {" broadcast batch", 4, 3, {2, 2, 3, 2}, {2, 4, 2}, {2, 4, 3}, 0, 0, {0}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const at_case *a = &cases[i];
        lm_tensor *in[4] = {gc_input(a->nq, a->qs, -1, 1), gc_input(a->nk, a->ks, -1, 1),
                            gc_input(a->nk, a->vs, -1, 1), NULL};
        at_ctx c = {a->flags & CAUSAL, a->flags & MASK, NULL, a->scale};
        lm_tensor *mask = NULL;
        if (a->flags & BOOL_MASK) {
            lm_tensor *r = lm_rand(a->nm, a->ms, LM_F64);
            mask = lm_gt_scalar(r, 0.3);
            /* Keep column 0 so no row is fully masked. */
            for (int64_t j = 0; j < a->ms[0]; j++) lm_set(mask, (int64_t[]){j, 0}, 1);
            lm_release(r);
        } else if (a->flags & MASK) {
            mask = gc_input(a->nm, a->ms, -1, 1);
        }
        c.mask = mask;
        in[3] = mask;
        int n = a->flags & MASK ? 4 : 3;
        char name[128];
        snprintf(name, sizeof name, "scaled_dot_product_attention%s", a->name);
        gradcheck(name, fused_attn, n, in, &c);
        if (!(a->flags & BOOL_MASK))
            compare_fused(name, fused_attn, composite_attn, n, in, &c, 1e-12);
        for (int j = 0; j < 3; j++) lm_release(in[j]);
        lm_release(mask);
    }
    /* Non-contiguous q, k, v: transposed and sliced views. */
    lm_tensor *qb = gc_input(3, (int64_t[]){2, 3, 4}, -1, 1);
    lm_tensor *kb = gc_input(3, (int64_t[]){2, 3, 5}, -1, 1);
    lm_tensor *vb = gc_input(3, (int64_t[]){2, 5, 6}, -1, 1);
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *in[3] = {lm_transpose(qb, 1, 2), lm_transpose(kb, 1, 2), lm_slice(vb, 2, 0, 6, 2)};
    lm_set_grad_enabled(prev);
    for (int j = 0; j < 3; j++) lm_requires_grad_(in[j], true);
    at_ctx c = {true, false, NULL, 0};
    gradcheck("scaled_dot_product_attention non-contiguous q, k, v", fused_attn, 3, in, &c);
    compare_fused("scaled_dot_product_attention non-contiguous q, k, v", fused_attn, composite_attn,
                  3, in, &c, 1e-12);
    /* f32 against the f32 composite. */
    lm_tensor *in32[3];
    for (int j = 0; j < 3; j++) in32[j] = f32_leaf(in[j]);
    compare_fused("scaled_dot_product_attention causal (f32)", fused_attn, composite_attn, 3, in32,
                  &c, 1e-5);
    for (int j = 0; j < 3; j++) {
        lm_release(in[j]);
        lm_release(in32[j]);
    }
    lm_release(qb);
    lm_release(kb);
    lm_release(vb);
}

/* ---- graph and saved tensors ----------------------------------------------------------------- */

static void test_graph(void)
{
    lm_manual_seed(8);
    lm_tensor *x = gc_input(2, (int64_t[]){4, 3}, -1, 1);
    lm_tensor *t = lm_randint(0, 3, 1, (int64_t[]){4}, LM_I64);
    lm_tensor *l = lm_cross_entropy(x, t, NULL, -100, 0, LM_REDUCTION_MEAN);
    char *json = lm_graph_export(l);
    has_str(json, "\"op\":\"cross_entropy\"", "cross_entropy is one node in the graph");
    ok(json && !strstr(json, "\"op\":\"exp\""), "... with no primitive ops under it");
    free(json);
    lm_release(l);

    /* Writing into a saved output makes backward fail, as PyTorch. */
    lm_tensor *y = lm_softmax(x, 1);
    lm_tensor *s = lm_sum(y, 0, NULL, false);
    bool prev = lm_set_grad_enabled(false);
    lm_mul_scalar_(y, 2);
    lm_set_grad_enabled(prev);
    ok(lm_backward(s, NULL, false) == LM_ERR_STATE,
       "softmax: backward after its output was modified fails");
    has_str(lm_last_error(), "modified by an in-place operation", "... with PyTorch's reason");
    lm_release(y);
    lm_release(s);

    /* No graph under no_grad, or when nothing requires grad. */
    prev = lm_set_grad_enabled(false);
    l = lm_cross_entropy(x, t, NULL, -100, 0, LM_REDUCTION_MEAN);
    lm_set_grad_enabled(prev);
    ok(l && !l->requires_grad && !l->grad_fn, "cross_entropy records nothing under no_grad");
    lm_release(l);
    lm_release(x);
    lm_release(t);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_errors(void)
{
    lm_tensor *x = lm_zeros(2, (int64_t[]){2, 3}, LM_F32);
    lm_tensor *t = i64s(1, (int64_t[]){2}, (int64_t[]){0, 5});
    lm_tensor *tneg = i64s(1, (int64_t[]){2}, (int64_t[]){0, -1});
    lm_tensor *t3 = i64s(1, (int64_t[]){3}, (int64_t[]){0, 1, 2});
    lm_tensor *tf = lm_zeros(1, (int64_t[]){2}, LM_F32);
    lm_tensor *w4 = lm_ones(1, (int64_t[]){4}, LM_F32);
    lm_tensor *good = i64s(1, (int64_t[]){2}, (int64_t[]){0, 2});
    lm_tensor *r;

    r = lm_cross_entropy(x, t, NULL, -100, 0, LM_REDUCTION_MEAN);
    ok(!r && lm_last_status() == LM_ERR_INDEX,
       "cross_entropy: a target out of range fails (INDEX)");
    has_str(lm_last_error(), "cross_entropy: target 5 is out of bounds for 3 classes",
            "... naming the value and C");
    r = lm_cross_entropy(x, tneg, NULL, -100, 0, LM_REDUCTION_NONE);
    has_str(lm_last_error(), "target -1 is out of bounds for 3 classes",
            "cross_entropy: a negative target that is not ignore_index fails");
    r = lm_nll_loss(x, t, NULL, -100, LM_REDUCTION_SUM);
    has_str(lm_last_error(), "nll_loss: target 5 is out of bounds for 3 classes",
            "nll_loss: a target out of range fails");
    r = lm_cross_entropy(x, t3, NULL, -100, 0, LM_REDUCTION_MEAN);
    ok(!r && lm_last_status() == LM_ERR_SHAPE, "cross_entropy: a target of the wrong shape fails");
    has_str(lm_last_error(), "target shape [3] does not match logits shape [2,3] (expected [2])",
            "... naming both shapes");
    r = lm_cross_entropy(x, tf, NULL, -100, 0, LM_REDUCTION_MEAN);
    has_str(lm_last_error(), "target must hold i64 class indices, got f32",
            "cross_entropy: float targets are refused");
    r = lm_cross_entropy(t3, t3, NULL, -100, 0, LM_REDUCTION_MEAN);
    has_str(lm_last_error(), "cross_entropy: logits must be f32 or f64, got i64",
            "cross_entropy: integer logits are refused");
    r = lm_cross_entropy(x, good, w4, -100, 0, LM_REDUCTION_MEAN);
    has_str(lm_last_error(), "f32 [4] for the 3 classes of logits [2,3]",
            "cross_entropy: a weight of the wrong size fails");
    r = lm_cross_entropy(x, good, NULL, -100, 1.5, LM_REDUCTION_MEAN);
    has_str(lm_last_error(), "label_smoothing must be in [0, 1], got 1.5",
            "cross_entropy: label_smoothing out of range fails");
    r = lm_cross_entropy(x, good, NULL, -100, 0, (lm_reduction)7);
    has_str(lm_last_error(), "cross_entropy: unknown reduction 7", "an unknown reduction fails");
    lm_tensor *sc = lm_scalar(1, LM_F32);
    r = lm_cross_entropy(sc, good, NULL, -100, 0, LM_REDUCTION_MEAN);
    has_str(lm_last_error(), "logits need a class dim", "cross_entropy: 0-dim logits fail");
    lm_tensor *wg = lm_ones(1, (int64_t[]){3}, LM_F32);
    lm_requires_grad_(wg, true);
    r = lm_cross_entropy(x, good, wg, -100, 0, LM_REDUCTION_MEAN);
    ok(!r && lm_last_status() == LM_ERR_UNSUPPORTED,
       "cross_entropy: a weight that requires grad is refused");
    has_str(lm_last_error(), "gradient with respect to weight (shape [3]) is not supported",
            "... saying why");
    r = lm_cross_entropy(NULL, good, NULL, -100, 0, LM_REDUCTION_MEAN);
    ok(!r, "cross_entropy: NULL logits fail");

    r = lm_softmax(x, 2);
    ok(!r && lm_last_status() == LM_ERR_ARG, "softmax: a dim out of range fails");
    has_str(lm_last_error(), "softmax", "... naming softmax");
    r = lm_log_softmax(x, -3);
    has_str(lm_last_error(), "log_softmax", "log_softmax: a dim out of range names log_softmax");

    lm_tensor *y4 = lm_zeros(1, (int64_t[]){4}, LM_F32);
    r = lm_mse_loss(x, y4, LM_REDUCTION_MEAN);
    ok(!r && lm_last_status() == LM_ERR_SHAPE, "mse_loss: shapes that do not broadcast fail");
    has_str(lm_last_error(), "mse_loss: input shape [2,3] and target shape [4] cannot be broadcast",
            "... naming both shapes");
    lm_tensor *y3 = lm_zeros(1, (int64_t[]){3}, LM_F32);
    r = lm_binary_cross_entropy(x, y3, NULL, LM_REDUCTION_MEAN);
    has_str(lm_last_error(),
            "binary_cross_entropy: target shape [3] must be the same as input shape [2,3]",
            "binary_cross_entropy: the target is not broadcast");
    lm_tensor *p = lm_full(2, (int64_t[]){2, 3}, 0.5, LM_F32);
    lm_set(p, (int64_t[]){1, 1}, 1.5);
    lm_tensor *yp = lm_zeros(2, (int64_t[]){2, 3}, LM_F32);
    r = lm_binary_cross_entropy(p, yp, NULL, LM_REDUCTION_MEAN);
    ok(!r && lm_last_status() == LM_ERR_ARG, "binary_cross_entropy: an input above 1 fails");
    has_str(lm_last_error(),
            "all elements of input should be between 0 and 1, got 1.5 at flat index 4",
            "... naming the value and where");
    r = lm_binary_cross_entropy(x, yp, w4, LM_REDUCTION_MEAN);
    has_str(lm_last_error(), "weight shape [4] cannot be broadcast to the input shape [2,3]",
            "binary_cross_entropy: a weight that does not broadcast fails");
    r = lm_binary_cross_entropy_with_logits(x, yp, NULL, w4, LM_REDUCTION_MEAN);
    has_str(lm_last_error(), "pos_weight shape [4] cannot be broadcast to the input shape [2,3]",
            "binary_cross_entropy_with_logits: a pos_weight that does not broadcast fails");
    r = lm_smooth_l1_loss(x, yp, -1, LM_REDUCTION_MEAN);
    has_str(lm_last_error(), "smooth_l1_loss: beta must be >= 0, got -1",
            "smooth_l1_loss: negative beta fails");

    lm_tensor *q = lm_zeros(3, (int64_t[]){2, 3, 4}, LM_F32);
    lm_tensor *k = lm_zeros(3, (int64_t[]){2, 5, 3}, LM_F32);
    lm_tensor *k2 = lm_zeros(3, (int64_t[]){2, 5, 4}, LM_F32);
    lm_tensor *v = lm_zeros(3, (int64_t[]){2, 6, 4}, LM_F32);
    lm_tensor *v2 = lm_zeros(3, (int64_t[]){2, 5, 4}, LM_F32);
    lm_tensor *vd = lm_zeros(3, (int64_t[]){2, 5, 4}, LM_F64);
    lm_tensor *m = lm_zeros(2, (int64_t[]){4, 5}, LM_F32);
    r = lm_scaled_dot_product_attention(q, k, v2, NULL, false, 0);
    has_str(lm_last_error(),
            "scaled_dot_product_attention: q [2,3,4] and k [2,5,3] must have the same last dim",
            "attention: E mismatch fails");
    r = lm_scaled_dot_product_attention(q, k2, v, NULL, false, 0);
    has_str(lm_last_error(), "k [2,5,4] and v [2,6,4] must have the same sequence length",
            "attention: S mismatch fails");
    r = lm_scaled_dot_product_attention(q, k2, v2, m, false, 0);
    has_str(lm_last_error(),
            "attn_mask shape [4,5] cannot be broadcast to the scores' shape [2,3,5]",
            "attention: a mask that does not broadcast fails");
    r = lm_scaled_dot_product_attention(q, k2, vd, NULL, false, 0);
    ok(!r && lm_last_status() == LM_ERR_DTYPE, "attention: mixed dtypes fail");
    r = lm_scaled_dot_product_attention(y4, k2, v2, NULL, false, 0);
    has_str(lm_last_error(), "need at least 2 dims", "attention: 1-D q fails");

    lm_tensor *all[] = {x,  t, tneg, t3, tf, w4, good, sc, wg, y4,
                        y3, p, yp,   q,  k,  k2, v,    v2, vd, m};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lm_release(all[i]);
}

int main(void)
{
    plan_auto();
    test_softmax_values();
    test_softmax_naive();
    test_softmax_grad();
    test_softmax_vs_composite();
    test_cross_entropy_values();
    test_cross_entropy_grad();
    test_cross_entropy_large();
    test_pointwise_values();
    test_pointwise_grad();
    test_pointwise_vs_composite();
    test_attention_values();
    test_attention_grad();
    test_graph();
    test_errors();
    return done();
}
