/* reduce.c — the reductions' op layer: checks dims and arguments, picks the result dtype and
 * shape, allocates the results and runs the backend's reduce kernel. Every public reduction goes
 * through reduce(), the one place where autograd records them; their backward rules follow,
 * written with the engine's own ops. */
#include "autograd.h"
#include "reduce.h"

#include <math.h>
#include <stdio.h>

/* The max/min family has no identity element: reducing nothing is an error. */
static bool needs_elements(lm_reduce_op op) { return op >= LM_REDUCE_AMAX; }

static lm_dtype result_dtype(lm_reduce_op op, lm_dtype in)
{
    switch (op) {
    case LM_REDUCE_SUM:
    case LM_REDUCE_PROD: return lm_dtype_is_float(in) ? in : LM_I64;
    case LM_REDUCE_MEAN:
    case LM_REDUCE_VAR:
    case LM_REDUCE_STD:
    case LM_REDUCE_LOGSUMEXP:
    case LM_REDUCE_NORM: return lm_dtype_is_float(in) ? in : LM_F32;
    default: return in;
    }
}

/* ---- backward ------------------------------------------------------------------------------
 *
 * A reduction's node keeps ip[0] = the mask of reduced dims (of the input), ip[1] = keepdim,
 * ip[2] = the correction of var/std and dp[0] = the p of norm; the input's shape is in
 * inputs[0]. Saved tensors: slot 0 the input and slot 1 the output (as each rule needs them),
 * or slot 0 the indices for max_dim/min_dim. The rules are PyTorch's; each first puts the
 * reduced dims back into the output's gradient (keep_dims) so that it broadcasts against the
 * input. */

/* Releases old and returns r, so that a chain reads t = take(lm_op(t, ...), t). A NULL from one
 * step runs down the chain keeping the first error (ops fail on NULL without a new message). */
static lm_tensor *take(lm_tensor *r, lm_tensor *old)
{
    lm_release(old);
    return r;
}

/* f(a, b), releasing both. */
static lm_tensor *consume2(lm_tensor *(*f)(const lm_tensor *, const lm_tensor *), lm_tensor *a,
                           lm_tensor *b)
{
    lm_tensor *r = f(a, b);
    lm_release(a);
    lm_release(b);
    return r;
}

/* The reduced dims as a list, for running a reduction again over them; returns the count
 * (0 only for a 0-dim input, which reducing over all dims leaves as it is). */
static int reduced_dims(const lm_node *n, int *dims)
{
    int nd = 0;
    for (int d = 0; d < n->inputs[0].ndim; d++)
        if (n->ip[0] >> d & 1) dims[nd++] = d;
    return nd;
}

/* How many input elements each output element reduces. */
static int64_t reduced_count(const lm_node *n)
{
    int64_t count = 1;
    for (int d = 0; d < n->inputs[0].ndim; d++)
        if (n->ip[0] >> d & 1) count *= n->inputs[0].shape[d];
    return count;
}

/* t, shaped like the output, with the reduced dims back as size 1 when keepdim was false. */
static lm_tensor *keep_dims(const lm_node *n, const lm_tensor *t)
{
    if (!t) return NULL;
    if (n->ip[1]) return lm_retain((lm_tensor *)t);
    const lm_node_input *in = &n->inputs[0];
    int64_t shape[LM_MAX_DIMS];
    for (int d = 0; d < in->ndim; d++) shape[d] = n->ip[0] >> d & 1 ? 1 : in->shape[d];
    return lm_reshape(t, in->ndim, shape);
}

/* Takes t (the input's shape, or one that broadcasts to it) and hands it over as the input's
 * gradient, expanded (a view) where it is smaller. */
static lm_status give(const lm_node *n, lm_tensor *t, lm_tensor **gi)
{
    if (!t) return lm_last_status();
    const lm_node_input *in = &n->inputs[0];
    bool same = t->ndim == in->ndim;
    for (int d = 0; same && d < in->ndim; d++) same = t->shape[d] == in->shape[d];
    if (same) {
        gi[0] = t;
        return LM_OK;
    }
    gi[0] = lm__expand_to(t, in->ndim, in->shape);
    lm_release(t);
    return gi[0] ? LM_OK : lm_last_status();
}

/* Zeros of the input's shape in g's dtype, on g's device. */
static lm_tensor *input_zeros(const lm_node *n, const lm_tensor *g)
{
    const lm_node_input *in = &n->inputs[0];
    lm_tensor *z = lm__new(n->op->name, in->ndim, in->shape, g->dtype, g->storage->device);
    if (z && lm_zero_(z)) {
        lm_release(z);
        return NULL;
    }
    return z;
}

/* sign(x): -1, 0 or 1, with 0 at 0 (PyTorch's sgn). */
static lm_tensor *sign_of(const lm_tensor *x)
{
    lm_tensor *a = lm_abs(x);
    lm_tensor *s = take(lm_div(x, a), a);
    lm_tensor *zero = lm_eq_scalar(x, 0.0);
    s = take(lm_masked_fill(s, zero, 0.0), s);
    lm_release(zero);
    return s;
}

static lm_status sum_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    return give(n, keep_dims(n, g), gi);
}

static lm_status mean_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    lm_tensor *gk = keep_dims(n, g);
    return give(n, take(lm_div_scalar(gk, (double)reduced_count(n)), gk), gi);
}

/* The derivative by x_i is the product of the other elements. Without zeros that is out / x_i.
 * With zeros, the product of the non-zero elements divided by x_i (by 1 at a zero) is the
 * product of the others where no other element is zero, and the answer is 0 elsewhere: an
 * element gets a gradient only when the zeros of its slice are at most itself. */
static lm_status prod_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = lm__saved(n, 0), *out = lm__saved(n, 1);
    if (!x || !out) return lm_last_status();
    int dims[LM_MAX_DIMS], nd = reduced_dims(n, dims);
    lm_tensor *zero = lm_eq_scalar(x, 0.0);
    lm_tensor *total = lm_sum(zero, 0, NULL, false);
    double zeros = 0;
    if (!total || lm_item(total, &zeros)) {
        lm_release(total);
        lm_release(zero);
        return lm_last_status();
    }
    lm_release(total);
    lm_tensor *r;
    if (zeros == 0) {
        lm_tensor *ok = keep_dims(n, out);
        r = take(lm_div(ok, x), ok);
    } else {
        lm_tensor *filled = lm_masked_fill(x, zero, 1.0);
        r = consume2(lm_div, lm_prod(filled, nd, dims, true), filled);
        lm_tensor *count = lm_sum(zero, nd, dims, true);
        lm_tensor *others = take(lm_sub(count, zero), count);
        lm_tensor *drop = take(lm_ne_scalar(others, 0.0), others);
        r = take(lm_masked_fill(r, drop, 0.0), r);
        lm_release(drop);
    }
    lm_release(zero);
    return give(n, consume2(lm_mul, r, keep_dims(n, g)), gi);
}

/* Divisor of var/std: max(0, n - correction), as the forward. */
static double var_divisor(const lm_node *n)
{
    double den = (double)reduced_count(n) - (double)n->ip[2];
    return den > 0 ? den : 0.0;
}

/* x minus its mean over the reduced dims (kept as size 1). */
static lm_tensor *deviation(const lm_node *n, const lm_tensor *x)
{
    int dims[LM_MAX_DIMS], nd = reduced_dims(n, dims);
    lm_tensor *mean = lm_mean(x, nd, dims, true);
    return take(lm_sub(x, mean), mean);
}

/* d var / d x_i = 2 (x_i - mean) / (n - correction). */
static lm_status var_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = lm__saved(n, 0);
    if (!x) return lm_last_status();
    lm_tensor *gk = keep_dims(n, g);
    gk = take(lm_mul_scalar(gk, 2.0 / var_divisor(n)), gk);
    return give(n, consume2(lm_mul, deviation(n, x), gk), gi);
}

/* d std / d x_i = (x_i - mean) / ((n - correction) std); 0 where std is 0, as PyTorch. */
static lm_status std_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = lm__saved(n, 0), *out = lm__saved(n, 1);
    if (!x || !out) return lm_last_status();
    lm_tensor *sk = keep_dims(n, out);
    lm_tensor *gs = consume2(lm_div, keep_dims(n, g), lm_retain(sk));
    lm_tensor *flat = take(lm_eq_scalar(sk, 0.0), sk);
    gs = take(lm_masked_fill(gs, flat, 0.0), gs);
    lm_release(flat);
    gs = take(lm_div_scalar(gs, var_divisor(n)), gs);
    return give(n, consume2(lm_mul, deviation(n, x), gs), gi);
}

/* d logsumexp / d x_i = exp(x_i - out): the softmax of the slice. */
static lm_status logsumexp_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = lm__saved(n, 0), *out = lm__saved(n, 1);
    if (!x || !out) return lm_last_status();
    lm_tensor *ok = keep_dims(n, out);
    lm_tensor *e = take(lm_sub(x, ok), ok);
    e = take(lm_exp(e), e);
    return give(n, consume2(lm_mul, e, keep_dims(n, g)), gi);
}

/* p-norms, with subgradient 0 where the norm (or, for p < 2, the element) is 0:
 *   p = 1: sign(x); p = inf: sign(x) on the elements whose |x| is the norm, shared evenly
 *   among ties; p = 0: no gradient (a count); otherwise x |x|^(p-2) / norm^(p-1). */
static lm_status norm_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = lm__saved(n, 0), *out = lm__saved(n, 1);
    if (!x || !out) return lm_last_status();
    double p = n->dp[0];
    if (p == 0) return give(n, input_zeros(n, g), gi);
    lm_tensor *gk = keep_dims(n, g);
    if (p == 1) return give(n, consume2(lm_mul, sign_of(x), gk), gi);
    lm_tensor *ok = keep_dims(n, out);
    if (isinf(p)) {
        int dims[LM_MAX_DIMS], nd = reduced_dims(n, dims);
        lm_tensor *hit = consume2(lm_eq, lm_abs(x), ok);
        gk = consume2(lm_div, gk, lm_sum(hit, nd, dims, true));
        lm_tensor *r = consume2(lm_mul, sign_of(x), hit);
        return give(n, consume2(lm_mul, r, gk), gi);
    }
    lm_tensor *flat = lm_eq_scalar(ok, 0.0);
    lm_tensor *scale = p == 2 ? consume2(lm_div, gk, ok)
                              : consume2(lm_div, gk, take(lm_pow_scalar(ok, p - 1), ok));
    scale = take(lm_masked_fill(scale, flat, 0.0), scale);
    lm_release(flat);
    if (p == 2) return give(n, take(lm_mul(x, scale), scale), gi);
    lm_tensor *a = lm_abs(x);
    lm_tensor *xs = take(lm_pow_scalar(a, p - 2), a);
    xs = take(lm_mul(x, xs), xs);
    lm_tensor *zero = lm_eq_scalar(x, 0.0); /* 0 * inf for p < 2 */
    xs = take(lm_masked_fill(xs, zero, 0.0), xs);
    lm_release(zero);
    return give(n, consume2(lm_mul, xs, scale), gi);
}

/* amax, amin and the max/min of the whole tensor: the gradient is shared evenly among the
 * elements equal to the result (PyTorch's evenly_distribute_backward). */
static lm_status extreme_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = lm__saved(n, 0), *out = lm__saved(n, 1);
    if (!x || !out) return lm_last_status();
    int dims[LM_MAX_DIMS], nd = reduced_dims(n, dims);
    lm_tensor *ok = keep_dims(n, out);
    lm_tensor *hit = take(lm_eq(x, ok), ok);
    lm_tensor *share = consume2(lm_div, keep_dims(n, g), lm_sum(hit, nd, dims, true));
    return give(n, consume2(lm_mul, hit, share), gi);
}

/* max_dim, min_dim: the whole gradient goes to the element whose index was returned. */
static lm_status index_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *idx = lm__saved(n, 0);
    if (!idx) return lm_last_status();
    int dims[LM_MAX_DIMS], nd = reduced_dims(n, dims);
    lm_tensor *z = input_zeros(n, g);
    lm_tensor *ik = keep_dims(n, idx), *gk = keep_dims(n, g);
    lm_status st = z && ik && gk ? lm_scatter_add_(z, nd ? dims[0] : 0, ik, gk) : lm_last_status();
    lm_release(ik);
    lm_release(gk);
    if (st) {
        lm_release(z);
        return st;
    }
    gi[0] = z;
    return LM_OK;
}

/* Names and backward rules of the reductions, by op; argmax/argmin give indices, which have no
 * gradient. max_dim/min_dim have rules of their own. */
static const lm_grad_op reduce_grads[] = {
    [LM_REDUCE_SUM] = {"sum", sum_backward},
    [LM_REDUCE_MEAN] = {"mean", mean_backward},
    [LM_REDUCE_PROD] = {"prod", prod_backward},
    [LM_REDUCE_VAR] = {"var", var_backward},
    [LM_REDUCE_STD] = {"std", std_backward},
    [LM_REDUCE_LOGSUMEXP] = {"logsumexp", logsumexp_backward},
    [LM_REDUCE_NORM] = {"norm", norm_backward},
    [LM_REDUCE_AMAX] = {"amax", extreme_backward},
    [LM_REDUCE_AMIN] = {"amin", extreme_backward},
    [LM_REDUCE_MAX] = {"max", extreme_backward},
    [LM_REDUCE_MIN] = {"min", extreme_backward},
    [LM_REDUCE_ARGMAX] = {"argmax", NULL},
    [LM_REDUCE_ARGMIN] = {"argmin", NULL},
};
_Static_assert(sizeof reduce_grads / sizeof reduce_grads[0] == LM_REDUCE_OP_COUNT,
               "every reduction needs a name and a rule");
static const lm_grad_op max_dim_grad = {"max_dim", index_backward};
static const lm_grad_op min_dim_grad = {"min_dim", index_backward};

/* Records the node of out = op(t) and saves what its rule reads. by_index: max_dim/min_dim,
 * whose indices idx are saved. */
static lm_status record(lm_reduce_op op, bool by_index, const lm_tensor *t, lm_tensor *out,
                        const lm_tensor *idx, uint32_t mask, bool keepdim,
                        const lm_reduce_params *params)
{
    const lm_grad_op *grad = !by_index ? &reduce_grads[op]
                             : op == LM_REDUCE_MAX ? &max_dim_grad : &min_dim_grad;
    lm_node *node = lm__record(grad, out, 1, &t);
    if (!node) return lm_last_status();
    node->ip[0] = mask;
    node->ip[1] = keepdim;
    node->ip[2] = params ? params->correction : 0;
    node->dp[0] = params ? params->p : 0.0;
    if (by_index) return lm__save(node, idx);
    if (op == LM_REDUCE_SUM || op == LM_REDUCE_MEAN) return LM_OK;
    if (lm__save(node, t)) return lm_last_status();
    return op == LM_REDUCE_VAR ? LM_OK : lm__save(node, out);
}

/* Values and/or indices of one reduction. values or indices may be NULL when not wanted.
 * flatten reduces over the C-order flattening of t (argmax's flatten_all), so that indices
 * count in that order. */
static lm_status reduce(lm_reduce_op op, const lm_tensor *t, int ndims, const int *dims,
                        bool keepdim, const lm_reduce_params *params, bool flatten,
                        lm_tensor **values, lm_tensor **indices)
{
    const char *name = reduce_grads[op].name;
    if (values) *values = NULL;
    if (indices) *indices = NULL;
    if (!lm__arg(t, name)) return lm_last_status();
    if (ndims < 0 || ndims > LM_MAX_DIMS)
        return lm__error(LM_ERR_ARG, "%s: %d dims given for a tensor of shape %s; expected 0 to %d",
                         name, ndims, lm__shp(t).s, LM_MAX_DIMS);
    uint32_t mask;
    if (!lm__dims_mask(name, t, ndims, dims, &mask)) return lm_last_status();
    if (needs_elements(op)) {
        for (int d = 0; d < t->ndim; d++)
            if ((mask >> d & 1) && t->shape[d] == 0)
                return lm__error(LM_ERR_SHAPE,
                                 "%s: cannot reduce over a zero-size dim (dim %d of shape %s): "
                                 "the operation has no identity",
                                 name, d, lm__shp(t).s);
    }
    if (op == LM_REDUCE_NORM && !(params->p >= 0))
        return lm__error(LM_ERR_ARG, "norm: p must be >= 0 or INFINITY (got %g) for shape %s",
                         params->p, lm__shp(t).s);
    const lm_backend *be = lm__backend(t->storage->device, name);
    if (!be) return lm_last_status();
    if (!values && !indices) return LM_OK;

    bool track = values && reduce_grads[op].backward && lm__needs_grad(1, &t);
    /* max_dim/min_dim (lm_max/lm_min pass no dims) send the gradient to the returned index:
     * their backward needs the indices even when the caller does not want them. */
    bool by_index = track && (op == LM_REDUCE_MAX || op == LM_REDUCE_MIN) && ndims == 1;
    lm_tensor *in = NULL, *out = NULL, *idx = NULL;
    lm_status st = LM_OK;
    if (flatten && t->ndim > 1) {
        /* Only argmax/argmin flatten, and indices record nothing. */
        bool prev = lm_set_grad_enabled(false);
        in = lm_reshape(t, 1, (const int64_t[]){-1});
        lm_set_grad_enabled(prev);
        if (!in) st = lm_last_status();
        mask = 1;
    } else {
        in = lm_retain((lm_tensor *)t);
    }
    int nd = 0;
    int64_t shape[LM_MAX_DIMS];
    for (int d = 0; !st && d < in->ndim; d++) {
        if (!(mask >> d & 1)) shape[nd++] = in->shape[d];
        else if (keepdim && !flatten) shape[nd++] = 1;
    }
    if (!st && values) {
        out = lm__new(name, nd, shape, result_dtype(op, in->dtype), t->storage->device);
        if (!out) st = lm_last_status();
    }
    if (!st && (indices || by_index)) {
        idx = lm__new(name, nd, shape, LM_I64, t->storage->device);
        if (!idx) st = lm_last_status();
    }
    if (!st) st = be->reduce->reduce(op, out, idx, in, mask, params);
    lm_release(in);
    if (st) {
        /* Only resources fail here (memory); their messages do not know the op: add it. */
        char why[512];
        snprintf(why, sizeof why, "%s", lm_last_error());
        lm__error(st, "%s: %s (reducing shape %s)", name, why, lm__shp(t).s);
        lm_release(out);
        lm_release(idx);
        return st;
    }
    if (track && (st = record(op, by_index, t, out, idx, mask, keepdim, params))) {
        lm_release(out);
        lm_release(idx);
        return st;
    }
    if (values) *values = out;
    if (indices) *indices = idx;
    else lm_release(idx);
    return LM_OK;
}

static lm_tensor *reduce_values(lm_reduce_op op, const lm_tensor *t, int ndims, const int *dims,
                                bool keepdim, const lm_reduce_params *params)
{
    lm_tensor *out;
    return reduce(op, t, ndims, dims, keepdim, params, false, &out, NULL) ? NULL : out;
}

lm_tensor *lm_sum(const lm_tensor *t, int ndims, const int *dims, bool keepdim)
{
    return reduce_values(LM_REDUCE_SUM, t, ndims, dims, keepdim, NULL);
}

lm_tensor *lm_mean(const lm_tensor *t, int ndims, const int *dims, bool keepdim)
{
    return reduce_values(LM_REDUCE_MEAN, t, ndims, dims, keepdim, NULL);
}

lm_tensor *lm_prod(const lm_tensor *t, int ndims, const int *dims, bool keepdim)
{
    return reduce_values(LM_REDUCE_PROD, t, ndims, dims, keepdim, NULL);
}

lm_tensor *lm_var(const lm_tensor *t, int ndims, const int *dims, int64_t correction,
                  bool keepdim)
{
    lm_reduce_params p = {.correction = correction};
    return reduce_values(LM_REDUCE_VAR, t, ndims, dims, keepdim, &p);
}

lm_tensor *lm_std(const lm_tensor *t, int ndims, const int *dims, int64_t correction,
                  bool keepdim)
{
    lm_reduce_params p = {.correction = correction};
    return reduce_values(LM_REDUCE_STD, t, ndims, dims, keepdim, &p);
}

lm_tensor *lm_logsumexp(const lm_tensor *t, int ndims, const int *dims, bool keepdim)
{
    return reduce_values(LM_REDUCE_LOGSUMEXP, t, ndims, dims, keepdim, NULL);
}

lm_tensor *lm_norm(const lm_tensor *t, double p, int ndims, const int *dims, bool keepdim)
{
    lm_reduce_params prm = {.p = p};
    return reduce_values(LM_REDUCE_NORM, t, ndims, dims, keepdim, &prm);
}

lm_tensor *lm_amax(const lm_tensor *t, int ndims, const int *dims, bool keepdim)
{
    return reduce_values(LM_REDUCE_AMAX, t, ndims, dims, keepdim, NULL);
}

lm_tensor *lm_amin(const lm_tensor *t, int ndims, const int *dims, bool keepdim)
{
    return reduce_values(LM_REDUCE_AMIN, t, ndims, dims, keepdim, NULL);
}

lm_status lm_max_dim(const lm_tensor *t, int dim, bool keepdim, lm_tensor **values,
                     lm_tensor **indices)
{
    return reduce(LM_REDUCE_MAX, t, 1, &dim, keepdim, NULL, false, values, indices);
}

lm_status lm_min_dim(const lm_tensor *t, int dim, bool keepdim, lm_tensor **values,
                     lm_tensor **indices)
{
    return reduce(LM_REDUCE_MIN, t, 1, &dim, keepdim, NULL, false, values, indices);
}

lm_tensor *lm_max(const lm_tensor *t)
{
    return reduce_values(LM_REDUCE_MAX, t, 0, NULL, false, NULL);
}

lm_tensor *lm_min(const lm_tensor *t)
{
    return reduce_values(LM_REDUCE_MIN, t, 0, NULL, false, NULL);
}

static lm_tensor *arg_extreme(lm_reduce_op op, const lm_tensor *t, int dim, bool keepdim,
                              bool flatten_all)
{
    lm_tensor *idx;
    lm_status st = flatten_all ? reduce(op, t, 0, NULL, false, NULL, true, NULL, &idx)
                               : reduce(op, t, 1, &dim, keepdim, NULL, false, NULL, &idx);
    return st ? NULL : idx;
}

lm_tensor *lm_argmax(const lm_tensor *t, int dim, bool keepdim, bool flatten_all)
{
    return arg_extreme(LM_REDUCE_ARGMAX, t, dim, keepdim, flatten_all);
}

lm_tensor *lm_argmin(const lm_tensor *t, int dim, bool keepdim, bool flatten_all)
{
    return arg_extreme(LM_REDUCE_ARGMIN, t, dim, keepdim, flatten_all);
}
