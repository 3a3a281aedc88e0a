/* view.c — the views: new shape/strides/offset over the same storage, no copy. Each records
 * its backward when its input requires grad: views only move gradients around (reshape them,
 * transpose them back, or place them into zeros at the viewed positions). */
#include "autograd.h"

#include <string.h>

/* ---- backward ------------------------------------------------------------------------------ */

static lm_status reshape_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    gi[0] = lm_reshape(g, n->inputs[0].ndim, n->inputs[0].shape);
    return gi[0] ? LM_OK : lm_last_status();
}

static lm_status transpose_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    gi[0] = lm_transpose(g, (int)n->ip[0], (int)n->ip[1]);
    return gi[0] ? LM_OK : lm_last_status();
}

static lm_status permute_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    int inverse[LM_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++) inverse[n->ip[i]] = i;
    gi[0] = lm_permute(g, inverse);
    return gi[0] ? LM_OK : lm_last_status();
}

/* The gradient of a view that picks elements: zeros of the input's shape with g written at the
 * picked positions (the same view taken of the zeros). ip[0] is the dim. */
static lm_status scatter_view_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi, bool select)
{
    lm_tensor *z = lm_zeros(n->inputs[0].ndim, n->inputs[0].shape, g->dtype);
    if (!z) return lm_last_status();
    int dim = (int)n->ip[0];
    lm_tensor *v = select ? lm_select(z, dim, n->ip[1])
                          : lm_slice(z, dim, n->ip[1], n->ip[1] + (g->shape[dim] - 1) * n->ip[2] + 1,
                                     n->ip[2]);
    lm_status st = v ? lm_copy_(v, g) : lm_last_status();
    lm_release(v);
    if (st) {
        lm_release(z);
        return st;
    }
    gi[0] = z;
    return LM_OK;
}

static lm_status slice_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    return scatter_view_backward(n, g, gi, false);
}

static lm_status select_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    return scatter_view_backward(n, g, gi, true);
}

/* expand: the engine sums a broadcast-shaped gradient down to the input's shape. */
static lm_status expand_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    (void)n;
    gi[0] = lm_retain((lm_tensor *)g);
    return LM_OK;
}

static const lm_grad_op view_grad = {"view", reshape_backward, true};
static const lm_grad_op reshape_grad = {"reshape", reshape_backward, true};
static const lm_grad_op squeeze_grad = {"squeeze", reshape_backward, true};
static const lm_grad_op unsqueeze_grad = {"unsqueeze", reshape_backward, true};
static const lm_grad_op transpose_grad = {"transpose", transpose_backward, true};
static const lm_grad_op permute_grad = {"permute", permute_backward, true};
static const lm_grad_op slice_grad = {"slice", slice_backward, true};
static const lm_grad_op select_grad = {"select", select_backward, true};
static const lm_grad_op expand_grad = {"expand", expand_backward, true};

/* Records op for out (a view of in) when in requires grad; n integer parameters. Takes out. */
static lm_tensor *track(lm_tensor *out, const lm_tensor *in, const lm_grad_op *op, int n,
                        const int64_t *params)
{
    if (!out || !lm__needs_grad(1, &in)) return out;
    lm_node *node = lm__record(op, out, 1, &in);
    if (!node) {
        lm_release(out);
        return NULL;
    }
    for (int i = 0; i < n; i++) node->ip[i] = params[i];
    return out;
}

/* Refuses a shape whose sizes multiply past the int64 range once times the element size (sizes
 * 0, 1 and -1 are skipped: the contiguous strides of a shape multiply its other sizes, so those
 * must fit even when a 0 makes the element count 0). A view of such a shape would report a
 * wrapped numel or byte count, and a later copy would allocate the wrong size. */
static bool shape_fits(const char *op, int ndim, const int64_t *shape, lm_dtype dt)
{
    int64_t bytes = (int64_t)lm_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] > 1 && __builtin_mul_overflow(bytes, shape[i], &bytes)) {
            lm__error(LM_ERR_SHAPE,
                      "%s: shape %s of %s is too large: its size in bytes does not fit in 64 "
                      "bits",
                      op, lm__shp_raw(ndim, shape).s, lm_dtype_name(dt));
            return false;
        }
    }
    return true;
}

/* Resolves one -1 in a requested shape against numel. */
static bool infer_shape(const char *op, const lm_tensor *t, int ndim, const int64_t *shape,
                        int64_t *out)
{
    if (ndim < 0 || ndim > LM_MAX_DIMS) {
        lm__error(LM_ERR_ARG, "%s: %d dims requested; tensors have 0 to %d", op, ndim, LM_MAX_DIMS);
        return false;
    }
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) {
                lm__error(LM_ERR_ARG, "%s: only one dim can be -1 in %s", op,
                          lm__shp_raw(ndim, shape).s);
                return false;
            }
            infer = i;
        } else if (shape[i] < 0) {
            lm__error(LM_ERR_ARG, "%s: invalid size %lld in %s", op, (long long)shape[i],
                      lm__shp_raw(ndim, shape).s);
            return false;
        }
        out[i] = shape[i];
    }
    /* Checked first, so the product of the known sizes below cannot overflow. */
    if (!shape_fits(op, ndim, shape, t->dtype)) return false;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++)
        if (i != infer) known *= shape[i];
    int64_t numel = lm_numel(t);
    if (infer >= 0) {
        if (known == 0 || numel % known != 0) {
            lm__error(LM_ERR_SHAPE, "%s: shape %s is invalid for input of size %lld (shape %s)", op,
                      lm__shp_raw(ndim, shape).s, (long long)numel, lm__shp(t).s);
            return false;
        }
        out[infer] = numel / known;
    } else if (known != numel) {
        lm__error(LM_ERR_SHAPE, "%s: shape %s is invalid for input of size %lld (shape %s)", op,
                  lm__shp_raw(ndim, shape).s, (long long)numel, lm__shp(t).s);
        return false;
    }
    return true;
}

/* Strides that make the new shape address the same elements in C order, if any exist: each
 * group of old dims that is contiguous in memory may be re-split into new dims. */
static bool view_strides(const lm_tensor *t, int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t numel = lm_numel(t);
    if (numel == 0 || t->ndim == 0) {
        lm__contiguous_strides(ndim, shape, strides);
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk_base_stride = t->strides[t->ndim - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        if (d == 0 || (t->shape[d - 1] != 1 &&
                       t->strides[d - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                strides[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (d > 0) {
                chunk_base_stride = t->strides[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

lm_tensor *lm_view(const lm_tensor *t, int ndim, const int64_t *shape)
{
    if (!lm__arg(t, "view")) return NULL;
    int64_t sh[LM_MAX_DIMS], st[LM_MAX_DIMS];
    if (!infer_shape("view", t, ndim, shape, sh)) return NULL;
    if (!view_strides(t, ndim, sh, st))
        LM_FAIL(LM_ERR_SHAPE,
                "view: shape %s is not compatible with the input's size and strides (shape %s); "
                "use reshape, or contiguous first",
                lm__shp_raw(ndim, sh).s, lm__shp(t).s);
    return track(lm__view_of(t, ndim, sh, st, t->offset), t, &view_grad, 0, NULL);
}

lm_tensor *lm_reshape(const lm_tensor *t, int ndim, const int64_t *shape)
{
    if (!lm__arg(t, "reshape")) return NULL;
    int64_t sh[LM_MAX_DIMS], st[LM_MAX_DIMS];
    if (!infer_shape("reshape", t, ndim, shape, sh)) return NULL;
    if (view_strides(t, ndim, sh, st))
        return track(lm__view_of(t, ndim, sh, st, t->offset), t, &reshape_grad, 0, NULL);
    lm_tensor *c = lm_contiguous(t);
    if (!c) return NULL;
    lm__contiguous_strides(ndim, sh, st);
    lm_tensor *r = track(lm__view_of(c, ndim, sh, st, c->offset), c, &reshape_grad, 0, NULL);
    lm_release(c);
    return r;
}

lm_tensor *lm_transpose(const lm_tensor *t, int dim0, int dim1)
{
    if (!lm__arg(t, "transpose")) return NULL;
    int a = lm__wrap_dim(dim0, t->ndim, "transpose"), b = lm__wrap_dim(dim1, t->ndim, "transpose");
    if (a < 0 || b < 0) return NULL;
    int64_t sh[LM_MAX_DIMS], st[LM_MAX_DIMS];
    memcpy(sh, t->shape, sizeof sh);
    memcpy(st, t->strides, sizeof st);
    if (t->ndim > 0) {
        sh[a] = t->shape[b]; sh[b] = t->shape[a];
        st[a] = t->strides[b]; st[b] = t->strides[a];
    }
    return track(lm__view_of(t, t->ndim, sh, st, t->offset), t, &transpose_grad, 2,
                 (const int64_t[]){a, b});
}

lm_tensor *lm_t(const lm_tensor *t)
{
    if (!lm__arg(t, "t")) return NULL;
    if (t->ndim > 2)
        LM_FAIL(LM_ERR_ARG, "t: expects a tensor with at most 2 dims, got shape %s; use transpose",
                lm__shp(t).s);
    return t->ndim < 2 ? track(lm__view_of(t, t->ndim, t->shape, t->strides, t->offset), t,
                               &view_grad, 0, NULL)
                       : lm_transpose(t, 0, 1);
}

lm_tensor *lm_permute(const lm_tensor *t, const int *dims)
{
    if (!lm__arg(t, "permute")) return NULL;
    if (!dims && t->ndim) LM_FAIL(LM_ERR_ARG, "permute: NULL dims");
    int64_t sh[LM_MAX_DIMS], st[LM_MAX_DIMS], order[LM_MAX_DIMS];
    uint32_t seen = 0;
    for (int i = 0; i < t->ndim; i++) {
        int d = lm__wrap_dim(dims[i], t->ndim, "permute");
        if (d < 0) return NULL;
        if (seen & (1u << d))
            LM_FAIL(LM_ERR_ARG, "permute: dim %d appears twice; dims must be a permutation of 0..%d",
                    d, t->ndim - 1);
        seen |= 1u << d;
        sh[i] = t->shape[d];
        st[i] = t->strides[d];
        order[i] = d;
    }
    return track(lm__view_of(t, t->ndim, sh, st, t->offset), t, &permute_grad, t->ndim, order);
}

lm_tensor *lm_slice(const lm_tensor *t, int dim, int64_t start, int64_t end, int64_t step)
{
    if (!lm__arg(t, "slice")) return NULL;
    if (t->ndim == 0) LM_FAIL(LM_ERR_ARG, "slice: cannot slice a 0-dim tensor");
    int d = lm__wrap_dim(dim, t->ndim, "slice");
    if (d < 0) return NULL;
    if (step <= 0) LM_FAIL(LM_ERR_ARG, "slice: step must be positive, got %lld", (long long)step);
    int64_t n = t->shape[d];
    if (start < 0) start += n;
    if (end < 0) end += n;
    if (start < 0) start = 0;
    if (start > n) start = n;
    if (end > n) end = n;
    if (end < start) end = start;
    int64_t sh[LM_MAX_DIMS], st[LM_MAX_DIMS];
    memcpy(sh, t->shape, sizeof sh);
    memcpy(st, t->strides, sizeof st);
    /* Written so that no step (up to INT64_MAX) overflows: end - start is at most n. */
    sh[d] = end > start ? (end - start - 1) / step + 1 : 0;
    /* With two or more elements, (sh[d] - 1) * step < n, so the product stays within the
     * tensor's own extent; with fewer the stride is never used and step may be huge. */
    st[d] = sh[d] > 1 ? t->strides[d] * step : t->strides[d];
    return track(lm__view_of(t, t->ndim, sh, st, t->offset + start * t->strides[d]), t, &slice_grad, 3,
                 (const int64_t[]){d, start, step});
}

lm_tensor *lm_narrow(const lm_tensor *t, int dim, int64_t start, int64_t length)
{
    if (!lm__arg(t, "narrow")) return NULL;
    if (t->ndim == 0) LM_FAIL(LM_ERR_ARG, "narrow: cannot narrow a 0-dim tensor");
    int d = lm__wrap_dim(dim, t->ndim, "narrow");
    if (d < 0) return NULL;
    int64_t n = t->shape[d];
    if (start < 0) start += n;
    if (start < 0 || start > n || length < 0 || length > n - start)
        LM_FAIL(LM_ERR_INDEX, "narrow: start %lld and length %lld are out of range for dim %d of size %lld",
                (long long)start, (long long)length, d, (long long)n);
    return lm_slice(t, d, start, start + length, 1);
}

lm_tensor *lm_select(const lm_tensor *t, int dim, int64_t index)
{
    if (!lm__arg(t, "select")) return NULL;
    if (t->ndim == 0) LM_FAIL(LM_ERR_ARG, "select: cannot index a 0-dim tensor");
    int d = lm__wrap_dim(dim, t->ndim, "select");
    if (d < 0) return NULL;
    int64_t n = t->shape[d];
    int64_t k = index < 0 ? index + n : index;
    if (k < 0 || k >= n)
        LM_FAIL(LM_ERR_INDEX, "select: index %lld is out of range for dim %d of size %lld (shape %s)",
                (long long)index, d, (long long)n, lm__shp(t).s);
    int64_t sh[LM_MAX_DIMS], st[LM_MAX_DIMS];
    int j = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i == d) continue;
        sh[j] = t->shape[i];
        st[j++] = t->strides[i];
    }
    return track(lm__view_of(t, t->ndim - 1, sh, st, t->offset + k * t->strides[d]), t, &select_grad,
                 2, (const int64_t[]){d, k});
}

lm_tensor *lm_expand(const lm_tensor *t, int ndim, const int64_t *shape)
{
    if (!lm__arg(t, "expand")) return NULL;
    if (ndim < t->ndim || ndim > LM_MAX_DIMS)
        LM_FAIL(LM_ERR_SHAPE, "expand: cannot expand shape %s to %s: the target needs at least %d dims",
                lm__shp(t).s, lm__shp_raw(ndim, shape).s, t->ndim);
    int64_t sh[LM_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            if (i < lead)
                LM_FAIL(LM_ERR_SHAPE, "expand: -1 is not allowed for a new leading dim (in %s)",
                        lm__shp_raw(ndim, shape).s);
            sh[i] = t->shape[i - lead];
        } else if (shape[i] < 0) {
            LM_FAIL(LM_ERR_ARG, "expand: invalid size %lld", (long long)shape[i]);
        } else {
            sh[i] = shape[i];
        }
    }
    if (!shape_fits("expand", ndim, sh, t->dtype)) return NULL;
    return track(lm__expand_to(t, ndim, sh), t, &expand_grad, 0, NULL);
}

lm_tensor *lm_expand_as(const lm_tensor *t, const lm_tensor *other)
{
    if (!lm__arg(t, "expand_as") || !lm__arg(other, "expand_as")) return NULL;
    return lm_expand(t, other->ndim, other->shape);
}

lm_tensor *lm_squeeze(const lm_tensor *t, int dim)
{
    if (!lm__arg(t, "squeeze")) return NULL;
    int d = lm__wrap_dim(dim, t->ndim, "squeeze");
    if (d < 0) return NULL;
    if (t->ndim == 0 || t->shape[d] != 1)
        return track(lm__view_of(t, t->ndim, t->shape, t->strides, t->offset), t, &squeeze_grad, 0, NULL);
    int64_t sh[LM_MAX_DIMS], st[LM_MAX_DIMS];
    int j = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i == d) continue;
        sh[j] = t->shape[i];
        st[j++] = t->strides[i];
    }
    return track(lm__view_of(t, j, sh, st, t->offset), t, &squeeze_grad, 0, NULL);
}

lm_tensor *lm_squeeze_all(const lm_tensor *t)
{
    if (!lm__arg(t, "squeeze")) return NULL;
    int64_t sh[LM_MAX_DIMS], st[LM_MAX_DIMS];
    int j = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 1) continue;
        sh[j] = t->shape[i];
        st[j++] = t->strides[i];
    }
    return track(lm__view_of(t, j, sh, st, t->offset), t, &squeeze_grad, 0, NULL);
}

lm_tensor *lm_unsqueeze(const lm_tensor *t, int dim)
{
    if (!lm__arg(t, "unsqueeze")) return NULL;
    if (t->ndim >= LM_MAX_DIMS)
        LM_FAIL(LM_ERR_ARG, "unsqueeze: a tensor already has the maximum of %d dims", LM_MAX_DIMS);
    int d = lm__wrap_dim(dim, t->ndim + 1, "unsqueeze");
    if (d < 0) return NULL;
    int64_t sh[LM_MAX_DIMS], st[LM_MAX_DIMS];
    int j = 0;
    for (int i = 0; i <= t->ndim; i++) {
        if (i == d) {
            sh[i] = 1;
            st[i] = d < t->ndim ? t->shape[d] * t->strides[d] : 1;
        } else {
            sh[i] = t->shape[j];
            st[i] = t->strides[j++];
        }
    }
    return track(lm__view_of(t, t->ndim + 1, sh, st, t->offset), t, &unsqueeze_grad, 0, NULL);
}

lm_tensor *lm_flatten(const lm_tensor *t, int start_dim, int end_dim)
{
    if (!lm__arg(t, "flatten")) return NULL;
    if (t->ndim == 0) return lm_reshape(t, LM_SHAPE(1));
    int s = lm__wrap_dim(start_dim, t->ndim, "flatten"), e = lm__wrap_dim(end_dim, t->ndim, "flatten");
    if (s < 0 || e < 0) return NULL;
    if (s > e) LM_FAIL(LM_ERR_ARG, "flatten: start_dim %d comes after end_dim %d", start_dim, end_dim);
    int64_t sh[LM_MAX_DIMS];
    int j = 0;
    for (int i = 0; i < s; i++) sh[j++] = t->shape[i];
    /* An empty tensor may have other sizes whose product overflows: a 0 among the merged dims
     * makes the merged size 0 whatever the others are; without one, the product must fit. */
    int64_t m = 1;
    for (int i = s; i <= e; i++)
        if (t->shape[i] == 0) m = 0;
    for (int i = s; m && i <= e; i++)
        if (__builtin_mul_overflow(m, t->shape[i], &m))
            LM_FAIL(LM_ERR_SHAPE,
                    "flatten: dims %d to %d of shape %s hold too many elements to merge into one",
                    s, e, lm__shp(t).s);
    sh[j++] = m;
    for (int i = e + 1; i < t->ndim; i++) sh[j++] = t->shape[i];
    return lm_reshape(t, j, sh);
}
