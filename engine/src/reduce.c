/* reduce.c — the reductions' op layer: checks dims and arguments, picks the result dtype and
 * shape, allocates the results and runs the backend's reduce kernel. Every public reduction goes
 * through reduce(), the one place where autograd will record them. */
#include "reduce.h"

#include <stdio.h>

static const char *const op_names[] = {
    [LM_REDUCE_SUM] = "sum",
    [LM_REDUCE_MEAN] = "mean",
    [LM_REDUCE_PROD] = "prod",
    [LM_REDUCE_VAR] = "var",
    [LM_REDUCE_STD] = "std",
    [LM_REDUCE_LOGSUMEXP] = "logsumexp",
    [LM_REDUCE_NORM] = "norm",
    [LM_REDUCE_AMAX] = "amax",
    [LM_REDUCE_AMIN] = "amin",
    [LM_REDUCE_MAX] = "max",
    [LM_REDUCE_MIN] = "min",
    [LM_REDUCE_ARGMAX] = "argmax",
    [LM_REDUCE_ARGMIN] = "argmin",
};
_Static_assert(sizeof op_names / sizeof op_names[0] == LM_REDUCE_OP_COUNT,
               "every reduction needs a name");

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

/* Values and/or indices of one reduction. values or indices may be NULL when not wanted.
 * flatten reduces over the C-order flattening of t (argmax's flatten_all), so that indices
 * count in that order. */
static lm_status reduce(lm_reduce_op op, const lm_tensor *t, int ndims, const int *dims,
                        bool keepdim, const lm_reduce_params *params, bool flatten,
                        lm_tensor **values, lm_tensor **indices)
{
    const char *name = op_names[op];
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

    lm_tensor *in = NULL, *out = NULL, *idx = NULL;
    lm_status st = LM_OK;
    if (flatten && t->ndim > 1) {
        in = lm_reshape(t, 1, (const int64_t[]){-1});
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
    if (!st && indices) {
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
    if (values) *values = out;
    if (indices) *indices = idx;
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
