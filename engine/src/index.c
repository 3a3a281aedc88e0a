/* index.c — indexing and joining: index_select, gather, scatter_add, masked_fill, cat, stack,
 * split, chunk and one_hot. This layer checks arguments, shapes and dtypes, sees that every
 * index value is checked (by a kernel or before it, see index.h), allocates the result and
 * calls the backend's index kernels. Each op kind has one internal function that its
 * out-of-place and in-place entry points share, which records the op for autograd; each
 * backward sits next to its forward. stack is unsqueeze + cat with a node of its own; split
 * and chunk are narrow views (which record themselves); one_hot gives integers. */
#include "autograd.h"
#include "index.h"

#include <limits.h>
#include <string.h>

/* ---- shared checks ------------------------------------------------------------------------ */

/* A 0-dim tensor counts as 1-D of size 1 in gather and scatter, as in PyTorch. */
static int nonzero_ndim(const lm_tensor *t) { return t->ndim ? t->ndim : 1; }
static int64_t size_at(const lm_tensor *t, int d) { return t->ndim ? t->shape[d] : 1; }

static bool check_index_dtype(const char *op, const lm_tensor *index)
{
    if (index->dtype == LM_I64) return true;
    lm__error(LM_ERR_DTYPE, "%s: index must be i64, got %s (shape %s)", op,
              lm_dtype_name(index->dtype), lm__shp(index).s);
    return false;
}

static bool same_device(const char *op, const lm_tensor *a, const lm_tensor *b)
{
    if (a->storage->device == b->storage->device) return true;
    lm__error(LM_ERR_UNSUPPORTED, "%s: tensors on different devices (%d and %d), shapes %s and %s",
              op, a->storage->device, b->storage->device, lm__shp(a).s, lm__shp(b).s);
    return false;
}

static void index_error(const char *op, int64_t bad, int dim, int64_t size)
{
    lm__error(LM_ERR_INDEX, "%s: index %lld is out of range for dim %d of size %lld", op,
              (long long)bad, dim, (long long)size);
}

/* Every value of index must lie in [0, size): a pass over the index, for the ops whose kernels
 * do not check values as they read them. */
static bool check_index_values(const char *op, const lm_backend *be, const lm_tensor *index,
                               int dim, int64_t size)
{
    if (lm_numel(index) == 0) return true;
    int64_t lo, hi;
    be->index->index_range(index, &lo, &hi);
    if (lo >= 0 && hi < size) return true;
    index_error(op, lo < 0 ? lo : hi, dim, size);
    return false;
}

/* index.size(k) <= other.size(k) for every k (except dim when skip_dim): what gather and
 * scatter need so that every index position names an element of other. */
static bool index_fits(const char *op, const lm_tensor *index, const char *what,
                       const lm_tensor *other, int dim, bool skip_dim)
{
    for (int k = 0; k < index->ndim; k++) {
        if (skip_dim && k == dim) continue;
        if (index->shape[k] > size_at(other, k)) {
            lm__error(LM_ERR_SHAPE, "%s: index shape %s is larger than %s shape %s in dim %d%s", op,
                      lm__shp(index).s, what, lm__shp(other).s, k,
                      skip_dim ? " (only the indexed dim may be larger)" : "");
            return false;
        }
    }
    return true;
}

/* ---- autograd helpers ----------------------------------------------------------------------- */

/* Zeros of input 0's shape with src added at index along dim: the backward of index_select and
 * gather (repeated index values accumulate). Index values were checked by the forward. */
static lm_tensor *scatter_into_zeros(const lm_node *n, int dim, const lm_tensor *index,
                                     const lm_tensor *src)
{
    const lm_node_input *in = &n->inputs[0];
    const lm_backend *be = lm__backend(src->storage->device, n->op->name);
    lm_tensor *z = be ? lm__new(n->op->name, in->ndim, in->shape, src->dtype, src->storage->device)
                      : NULL;
    if (!z) return NULL;
    be->copy->fill(z, 0.0);
    int64_t bad;
    if (lm_numel(index) > 0 && !be->index->scatter_add(z, dim, index, src, &bad)) {
        index_error(n->op->name, bad, dim, size_at(z, dim));
        lm_release(z);
        return NULL;
    }
    return z;
}

/* In-place ops under gradient mode follow PyTorch: a leaf that requires grad must not be
 * written (its gradient would describe values it no longer holds). Returns false with the
 * error set for such a target. */
static bool writable_under_grad(const char *op, const lm_tensor *t)
{
    return lm__check_inplace_grad(op, t) == LM_OK;
}

/* Any other target of an in-place op that takes part in the graph gets the op computed out of
 * place, with its node (r, taken here), then takes r's values and node: its old node becomes
 * the new node's input, so gradients flow through both. Returns the status. */
static lm_status adopt_result(const char *op, lm_tensor *t, lm_tensor *r)
{
    if (!r) return lm_last_status();
    /* The op's in-place checks passed for t, and r is new memory of t's shape and dtype: the
     * copy kernel needs no more checks. */
    const lm_backend *be = lm__backend(t->storage->device, op);
    lm_status st = be ? LM_OK : lm_last_status();
    if (!st) {
        be->copy->copy(t, r);
        lm__bump_version(t);
    }
    if (!st) lm__take_history(t, r);
    lm_release(r);
    return st;
}

/* ---- index_select and gather ---------------------------------------------------------------- */

/* Node of both: ip[0] the dim; saved slot 0 the index. */
static lm_status index_select_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *index = lm__saved(n, 0);
    if (!index) return lm_last_status();
    if (n->inputs[0].ndim == 0) { /* a 0-dim input: its one element was selected */
        gi[0] = lm_retain((lm_tensor *)g);
        return LM_OK;
    }
    /* The index seen with g's shape: it varies along dim only. */
    int d = (int)n->ip[0];
    int64_t strides[LM_MAX_DIMS] = {0};
    strides[d] = index->ndim ? index->strides[0] : 0;
    lm_tensor *iv = lm__view_of(index, g->ndim, g->shape, strides, index->offset);
    gi[0] = iv ? scatter_into_zeros(n, d, iv, g) : NULL;
    lm_release(iv);
    return gi[0] ? LM_OK : lm_last_status();
}

static lm_status gather_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *index = lm__saved(n, 0);
    if (!index) return lm_last_status();
    gi[0] = scatter_into_zeros(n, (int)n->ip[0], index, g);
    return gi[0] ? LM_OK : lm_last_status();
}

static const lm_grad_op index_select_grad = {"index_select", index_select_backward};
static const lm_grad_op gather_grad = {"gather", gather_backward};

/* Records out = op(t, dim, index) when t requires grad. Takes out; NULL on failure. */
static lm_tensor *track_indexing(const lm_grad_op *op, lm_tensor *out, const lm_tensor *t,
                                 int dim, const lm_tensor *index)
{
    if (!out || !lm__needs_grad(1, &t)) return out;
    lm_node *node = lm__record(op, out, 1, &t);
    if (!node || lm__save(node, index)) {
        lm_release(out);
        return NULL;
    }
    node->ip[0] = dim;
    return out;
}

static lm_tensor *index_select_op(const lm_tensor *t, int dim, const lm_tensor *index)
{
    const char *op = "index_select";
    if (!lm__arg(t, op) || !lm__arg(index, op)) return NULL;
    if (!same_device(op, t, index) || !check_index_dtype(op, index)) return NULL;
    if (index->ndim > 1)
        LM_FAIL(LM_ERR_SHAPE, "index_select: index must be 1-D or 0-dim, got shape %s (input %s)",
                lm__shp(index).s, lm__shp(t).s);
    int d = lm__wrap_dim(dim, t->ndim, op);
    if (d < 0) return NULL;
    int64_t n = lm_numel(index);
    if (t->ndim == 0 && n != 1)
        LM_FAIL(LM_ERR_SHAPE, "index_select: a 0-dim input takes an index of one value, got shape %s",
                lm__shp(index).s);
    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    if (t->ndim) shape[d] = n;
    /* A pass over the index costs little here: the kernel reads it once per slice before dim. */
    const lm_backend *be = lm__backend(t->storage->device, op);
    if (!be || !check_index_values(op, be, index, d, size_at(t, d))) return NULL;
    lm_tensor *out = lm__new(op, t->ndim, shape, t->dtype, t->storage->device);
    if (out && lm_numel(out) > 0) be->index->index_select(out, t, d, index);
    return track_indexing(&index_select_grad, out, t, d, index);
}

static lm_tensor *gather_op(const lm_tensor *t, int dim, const lm_tensor *index)
{
    const char *op = "gather";
    if (!lm__arg(t, op) || !lm__arg(index, op)) return NULL;
    if (!same_device(op, t, index) || !check_index_dtype(op, index)) return NULL;
    if (nonzero_ndim(index) != nonzero_ndim(t))
        LM_FAIL(LM_ERR_SHAPE, "gather: index shape %s and input shape %s must have the same number of dims",
                lm__shp(index).s, lm__shp(t).s);
    int d = lm__wrap_dim(dim, t->ndim, op);
    if (d < 0 || !index_fits(op, index, "input", t, d, true)) return NULL;
    const lm_backend *be = lm__backend(t->storage->device, op);
    if (!be) return NULL;
    lm_tensor *out = lm__new(op, index->ndim, index->shape, t->dtype, t->storage->device);
    int64_t bad;
    if (out && lm_numel(out) > 0 && !be->index->gather(out, t, d, index, &bad)) {
        index_error(op, bad, d, size_at(t, d));
        lm_release(out);
        return NULL;
    }
    return track_indexing(&gather_grad, out, t, d, index);
}

lm_tensor *lm_index_select(const lm_tensor *t, int dim, const lm_tensor *index)
{
    return index_select_op(t, dim, index);
}

lm_tensor *lm_gather(const lm_tensor *t, int dim, const lm_tensor *index)
{
    return gather_op(t, dim, index);
}

/* ---- scatter_add ---------------------------------------------------------------------------- */

/* t's gradient passes through; src's is g gathered at the index, with zeros where src is larger
 * than the index (those elements were not added). ip[0] the dim; saved slot 0 the index, kept
 * only when src requires grad. Inputs: t, index, src. */
static lm_status scatter_add_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    if (lm__input_needs_grad(n, 0)) gi[0] = lm_retain((lm_tensor *)g);
    if (!lm__input_needs_grad(n, 2)) return LM_OK;
    const lm_tensor *index = lm__saved(n, 0);
    lm_tensor *picked = index ? lm_gather(g, (int)n->ip[0], index) : NULL;
    if (!picked) return lm_last_status();
    const lm_node_input *s = &n->inputs[2];
    if (lm_numel(picked) == lm__shape_numel(s->ndim, s->shape)) {
        gi[2] = lm_reshape(picked, s->ndim, s->shape);
        lm_release(picked);
        return gi[2] ? LM_OK : lm_last_status();
    }
    const lm_backend *be = lm__backend(g->storage->device, "scatter_add");
    lm_tensor *z = be ? lm__new("scatter_add", s->ndim, s->shape, g->dtype, g->storage->device)
                      : NULL;
    lm_status st = z ? LM_OK : lm_last_status();
    if (!st) be->copy->fill(z, 0.0);
    if (!st && lm_numel(picked) > 0) {
        /* The index's extent is the leading corner of src (the forward checked it fits). */
        lm_tensor *corner = lm__view_of(z, picked->ndim, picked->shape, z->strides, z->offset);
        if (corner) be->copy->copy(corner, picked);
        else st = lm_last_status();
        lm_release(corner);
    }
    lm_release(picked);
    if (st) {
        lm_release(z);
        return st;
    }
    gi[2] = z;
    return LM_OK;
}

static const lm_grad_op scatter_add_grad = {"scatter_add", scatter_add_backward};

/* In place, t itself is written and returned (borrowed); otherwise a new tensor is. */
static lm_tensor *scatter_add_op(lm_tensor *t, int dim, const lm_tensor *index,
                                 const lm_tensor *src, bool inplace)
{
    const char *op = inplace ? "scatter_add_" : "scatter_add";
    if (!lm__arg(t, op) || !lm__arg(index, op) || !lm__arg(src, op)) return NULL;
    if (!same_device(op, t, index) || !same_device(op, t, src) || !check_index_dtype(op, index))
        return NULL;
    if (src->dtype != t->dtype)
        LM_FAIL(LM_ERR_DTYPE, "%s: src dtype %s must match the input's dtype %s (shapes %s and %s)", op,
                lm_dtype_name(src->dtype), lm_dtype_name(t->dtype), lm__shp(src).s, lm__shp(t).s);
    if (nonzero_ndim(index) != nonzero_ndim(t) || nonzero_ndim(src) != nonzero_ndim(t))
        LM_FAIL(LM_ERR_SHAPE,
                "%s: input shape %s, index shape %s and src shape %s must have the same number of dims",
                op, lm__shp(t).s, lm__shp(index).s, lm__shp(src).s);
    int d = lm__wrap_dim(dim, t->ndim, op);
    if (d < 0 || !index_fits(op, index, "src", src, d, false) ||
        !index_fits(op, index, "input", t, d, true))
        return NULL;
    const lm_backend *be = lm__backend(t->storage->device, op);
    if (!be) return NULL;
    const lm_tensor *args[3] = {t, index, src};
    bool track = lm__needs_grad(3, args);
    if (inplace) {
        if (track && !writable_under_grad(op, t)) return NULL;
        const lm_tensor *in[2] = {index, src};
        if (lm__check_inplace(op, t, 2, in) != LM_OK) return NULL;
        /* Unlike an element-wise op, a scatter reads src in another order than it writes t, so
         * even src being t itself would read values already added to. */
        for (int i = 0; i < 2; i++)
            if (lm__overlap(t, in[i]) != LM_OVERLAP_NONE)
                LM_FAIL(LM_ERR_STATE,
                        "%s: unsupported operation: the %s (shape %s) shares memory with the "
                        "written-to tensor (shape %s); clone() it first",
                        op, i ? "src" : "index", lm__shp(in[i]).s, lm__shp(t).s);
        /* The kernel checks values too, but stops at a bad one: in place, that would leave t
         * partly written. */
        if (!check_index_values(op, be, index, d, size_at(t, d))) return NULL;
        if (track) return adopt_result(op, t, scatter_add_op(t, d, index, src, false)) ? NULL : t;
    }
    lm_tensor *out = t;
    if (!inplace) {
        bool prev = lm_set_grad_enabled(false); /* the node below is the op's, not clone's */
        out = lm_clone(t);
        lm_set_grad_enabled(prev);
        if (!out) return NULL;
    }
    int64_t bad;
    if (lm_numel(index) > 0 && !be->index->scatter_add(out, d, index, src, &bad)) {
        index_error(op, bad, d, size_at(t, d));
        if (!inplace) lm_release(out);
        return NULL;
    }
    if (inplace) {
        lm__bump_version(t);
        return out;
    }
    if (track) {
        lm_node *node = lm__record(&scatter_add_grad, out, 3, args);
        if (!node || (src->requires_grad && lm__save(node, index))) {
            lm_release(out);
            return NULL;
        }
        node->ip[0] = d;
    }
    return out;
}

lm_tensor *lm_scatter_add(const lm_tensor *t, int dim, const lm_tensor *index,
                          const lm_tensor *src)
{
    /* Out of place the op only reads t. */
    return scatter_add_op((lm_tensor *)t, dim, index, src, false);
}

lm_status lm_scatter_add_(lm_tensor *t, int dim, const lm_tensor *index, const lm_tensor *src)
{
    return scatter_add_op(t, dim, index, src, true) ? LM_OK : lm_last_status();
}

/* ---- masked_fill ---------------------------------------------------------------------------- */

/* The mask broadcasts to t's shape, never the other way: the result keeps t's shape. */
static bool broadcasts_to(const lm_tensor *mask, const lm_tensor *t)
{
    if (mask->ndim > t->ndim) return false;
    for (int i = 1; i <= mask->ndim; i++) {
        int64_t m = mask->shape[mask->ndim - i], s = t->shape[t->ndim - i];
        if (m != s && m != 1) return false;
    }
    return true;
}

/* The gradient passes where the mask is 0; filled elements got a constant. Saved slot 0: the
 * mask (as given: it broadcasts to g). */
static lm_status masked_fill_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *mask = lm__saved(n, 0);
    gi[0] = mask ? lm_masked_fill(g, mask, 0.0) : NULL;
    return gi[0] ? LM_OK : lm_last_status();
}

static const lm_grad_op masked_fill_grad = {"masked_fill", masked_fill_backward};

/* In place, t itself is written and returned (borrowed); otherwise a new tensor is. */
static lm_tensor *masked_fill_op(lm_tensor *t, const lm_tensor *mask, double value, bool inplace)
{
    const char *op = inplace ? "masked_fill_" : "masked_fill";
    if (!lm__arg(t, op) || !lm__arg(mask, op)) return NULL;
    if (!same_device(op, t, mask)) return NULL;
    if (!broadcasts_to(mask, t))
        LM_FAIL(LM_ERR_SHAPE, "%s: mask shape %s cannot be broadcast to the input's shape %s", op,
                lm__shp(mask).s, lm__shp(t).s);
    const lm_backend *be = lm__backend(t->storage->device, op);
    if (!be) return NULL;
    bool track = lm__needs_grad(1, (const lm_tensor *const *)&t);
    if (inplace && track && !writable_under_grad(op, t)) return NULL;
    lm_tensor *m = lm__expand_to(mask, t->ndim, t->shape);
    if (!m) return NULL;
    lm_tensor *out = NULL;
    if (inplace) {
        const lm_tensor *in[1] = {m};
        if (lm__check_inplace(op, t, 1, in) == LM_OK) out = t;
        if (out && track) {
            lm_release(m);
            return adopt_result(op, t, masked_fill_op(t, mask, value, false)) ? NULL : t;
        }
    } else {
        out = lm__new(op, t->ndim, t->shape, t->dtype, t->storage->device);
    }
    if (out && lm_numel(out) > 0) be->index->masked_fill(out, t, m, value);
    if (out && inplace) lm__bump_version(t);
    lm_release(m);
    if (out && !inplace && track) {
        lm_node *node = lm__record(&masked_fill_grad, out, 1, (const lm_tensor *const *)&t);
        if (!node || lm__save(node, mask)) {
            lm_release(out);
            return NULL;
        }
    }
    return out;
}

lm_tensor *lm_masked_fill(const lm_tensor *t, const lm_tensor *mask, double value)
{
    /* Out of place the op only reads t. */
    return masked_fill_op((lm_tensor *)t, mask, value, false);
}

lm_status lm_masked_fill_(lm_tensor *t, const lm_tensor *mask, double value)
{
    return masked_fill_op(t, mask, value, true) ? LM_OK : lm_last_status();
}

/* ---- cat and stack -------------------------------------------------------------------------- */

/* PyTorch still accepts 1-D [0] tensors in cat whatever the other shapes are, and skips them. */
static bool legacy_empty(const lm_tensor *t) { return t->ndim == 1 && t->shape[0] == 0; }

/* Each input gets its own stretch of g along the dim, as a narrow view; inputs without elements
 * (legacy 1-D [0] ones included, which took no room) get an empty gradient. ip[0]: the dim. */
static lm_status cat_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    int d = (int)n->ip[0];
    int64_t pos = 0;
    for (int i = 0; i < n->n_inputs; i++) {
        const lm_node_input *in = &n->inputs[i];
        bool empty = lm__shape_numel(in->ndim, in->shape) == 0;
        int64_t len = in->ndim == g->ndim ? in->shape[d] : 0;
        if (lm__input_needs_grad(n, i)) {
            gi[i] = empty ? lm__new("cat", in->ndim, in->shape, g->dtype, g->storage->device)
                          : lm_narrow(g, d, pos, len);
            if (!gi[i]) return lm_last_status();
        }
        pos += len;
    }
    return LM_OK;
}

/* Input i gets slice i of g along the new dim. ip[0]: the dim. */
static lm_status stack_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    for (int i = 0; i < n->n_inputs; i++) {
        if (!lm__input_needs_grad(n, i)) continue;
        gi[i] = lm_select(g, (int)n->ip[0], i);
        if (!gi[i]) return lm_last_status();
    }
    return LM_OK;
}

static const lm_grad_op cat_grad = {"cat", cat_backward};
static const lm_grad_op stack_grad = {"stack", stack_backward};

/* Records out, joined from the n inputs along dim d, when any input requires grad. Takes out. */
static lm_tensor *track_joined(const lm_grad_op *op, lm_tensor *out, int n,
                               const lm_tensor *const *ts, int d)
{
    if (!out || !lm__needs_grad(n, ts)) return out;
    lm_node *node = lm__record(op, out, n, ts);
    if (!node) {
        lm_release(out);
        return NULL;
    }
    node->ip[0] = d;
    return out;
}

static lm_tensor *cat_op(const char *op, int n, const lm_tensor *const *ts, int dim)
{
    if (n <= 0) LM_FAIL(LM_ERR_ARG, "%s: expects at least one tensor, got %d", op, n);
    if (!ts) LM_FAIL(LM_ERR_ARG, "%s: NULL array of tensors", op);
    for (int i = 0; i < n; i++)
        if (!lm__arg(ts[i], op)) return NULL;
    lm_dtype dt = ts[0]->dtype;
    int ref = -1;
    for (int i = 0; i < n; i++) {
        if (!same_device(op, ts[0], ts[i])) return NULL;
        if (ts[i]->ndim == 0)
            LM_FAIL(LM_ERR_SHAPE, "%s: tensor %d is 0-dim (shape []) and cannot be concatenated; "
                    "unsqueeze it or use stack", op, i);
        dt = lm_promote_types(dt, ts[i]->dtype);
        if (ref < 0 && !legacy_empty(ts[i])) ref = i;
    }
    lm_device dev = ts[0]->storage->device;
    if (ref < 0) {
        if (lm__wrap_dim(dim, 1, op) < 0) return NULL;
        return track_joined(&cat_grad, lm__new(op, 1, (const int64_t[]){0}, dt, dev), n, ts, 0);
    }
    const lm_tensor *r = ts[ref];
    int d = lm__wrap_dim(dim, r->ndim, op);
    if (d < 0) return NULL;
    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, r->shape, sizeof shape);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const lm_tensor *t = ts[i];
        if (legacy_empty(t)) continue;
        if (t->ndim != r->ndim)
            LM_FAIL(LM_ERR_SHAPE,
                    "%s: tensors must have the same number of dims: tensor %d has shape %s and "
                    "tensor %d has shape %s", op, ref, lm__shp(r).s, i, lm__shp(t).s);
        for (int k = 0; k < r->ndim; k++)
            if (k != d && t->shape[k] != r->shape[k])
                LM_FAIL(LM_ERR_SHAPE,
                        "%s: sizes must match except in dim %d: tensor %d has shape %s and tensor "
                        "%d has shape %s", op, d, ref, lm__shp(r).s, i, lm__shp(t).s);
        if (t->shape[d] > INT64_MAX - shape[d])
            LM_FAIL(LM_ERR_SHAPE, "%s: the joined size of dim %d overflows", op, d);
        shape[d] += t->shape[d];
    }
    const lm_backend *be = lm__backend(dev, op);
    if (!be) return NULL;
    lm_tensor *out = lm__new(op, r->ndim, shape, dt, dev);
    if (out && lm_numel(out) > 0) be->index->cat(out, d, n, ts);
    return track_joined(&cat_grad, out, n, ts, d);
}

lm_tensor *lm_cat(int n, lm_tensor *const *tensors, int dim)
{
    return cat_op("cat", n, (const lm_tensor *const *)tensors, dim);
}

lm_tensor *lm_stack(int n, lm_tensor *const *tensors, int dim)
{
    const char *op = "stack";
    if (n <= 0) LM_FAIL(LM_ERR_ARG, "stack: expects at least one tensor, got %d", n);
    if (!tensors) LM_FAIL(LM_ERR_ARG, "stack: NULL array of tensors");
    for (int i = 0; i < n; i++)
        if (!lm__arg(tensors[i], op)) return NULL;
    const lm_tensor *r = tensors[0];
    for (int i = 1; i < n; i++) {
        const lm_tensor *t = tensors[i];
        bool same = t->ndim == r->ndim;
        for (int k = 0; same && k < r->ndim; k++) same = t->shape[k] == r->shape[k];
        if (!same)
            LM_FAIL(LM_ERR_SHAPE, "stack: all tensors must have the same shape: tensor 0 has shape "
                    "%s and tensor %d has shape %s", lm__shp(r).s, i, lm__shp(t).s);
    }
    if (r->ndim >= LM_MAX_DIMS)
        LM_FAIL(LM_ERR_ARG, "stack: tensors of shape %s already have the maximum of %d dims",
                lm__shp(r).s, LM_MAX_DIMS);
    int d = lm__wrap_dim(dim, r->ndim + 1, op);
    if (d < 0) return NULL;
    lm_tensor **views = lm__malloc(sizeof *views * (size_t)n);
    if (!views) return NULL;
    /* The views and the join record nothing: stack has a node of its own. */
    bool prev = lm_set_grad_enabled(false);
    int made = 0;
    while (made < n && (views[made] = lm_unsqueeze(tensors[made], d))) made++;
    lm_tensor *out = made == n ? cat_op(op, n, (const lm_tensor *const *)views, d) : NULL;
    lm_set_grad_enabled(prev);
    for (int i = 0; i < made; i++) lm_release(views[i]);
    lm__free(views);
    return track_joined(&stack_grad, out, n, (const lm_tensor *const *)tensors, d);
}

/* ---- split and chunk ------------------------------------------------------------------------ */

/* Writes count narrow views of size `size` (the last may be smaller; past the end, empty) when
 * they fit in cap. */
static int split_views(const char *op, const lm_tensor *t, int d, int64_t size, int64_t count,
                       lm_tensor **out, int cap)
{
    if (count > INT_MAX) {
        lm__error(LM_ERR_ARG, "%s: %lld pieces of shape %s are too many", op, (long long)count,
                  lm__shp(t).s);
        return -1;
    }
    if (count > cap) return (int)count;
    if (!out) {
        lm__error(LM_ERR_ARG, "%s: NULL output array with cap %d", op, cap);
        return -1;
    }
    int64_t n = t->shape[d];
    for (int i = 0; i < count; i++) {
        int64_t start = i * size < n ? i * size : n;
        int64_t len = n - start < size ? n - start : size;
        out[i] = lm_narrow(t, d, start, len);
        if (!out[i]) {
            while (i > 0) lm_release(out[--i]);
            return -1;
        }
    }
    return (int)count;
}

/* The dim both ops cut, or -1 with an error. */
static int piece_dim(const char *op, const lm_tensor *t, int dim)
{
    if (!lm__arg(t, op)) return -1;
    if (t->ndim == 0) {
        lm__error(LM_ERR_ARG, "%s: expects a tensor with at least 1 dim, got a 0-dim tensor", op);
        return -1;
    }
    return lm__wrap_dim(dim, t->ndim, op);
}

int lm_split(const lm_tensor *t, int64_t split_size, int dim, lm_tensor **out, int cap)
{
    int d = piece_dim("split", t, dim);
    if (d < 0) return -1;
    int64_t n = t->shape[d];
    /* PyTorch allows a split size of 0 only for an empty dim: one empty piece. */
    if (split_size < 0 || (split_size == 0 && n > 0)) {
        lm__error(LM_ERR_ARG, "split: split_size must be positive, got %lld for dim %d of shape %s",
                  (long long)split_size, d, lm__shp(t).s);
        return -1;
    }
    int64_t count = split_size ? (n + split_size - 1) / split_size : 1;
    return split_views("split", t, d, split_size, count ? count : 1, out, cap);
}

int lm_chunk(const lm_tensor *t, int chunks, int dim, lm_tensor **out, int cap)
{
    int d = piece_dim("chunk", t, dim);
    if (d < 0) return -1;
    if (chunks <= 0) {
        lm__error(LM_ERR_ARG, "chunk: chunks must be positive, got %d (shape %s)", chunks,
                  lm__shp(t).s);
        return -1;
    }
    int64_t n = t->shape[d];
    /* As torch.chunk: an empty dim gives `chunks` empty pieces; otherwise pieces of
     * ceil(n / chunks), which may be fewer than chunks. */
    if (n == 0) return split_views("chunk", t, d, 0, chunks, out, cap);
    int64_t size = (n + chunks - 1) / chunks;
    return split_views("chunk", t, d, size, (n + size - 1) / size, out, cap);
}

/* ---- one_hot -------------------------------------------------------------------------------- */

lm_tensor *lm_one_hot(const lm_tensor *index, int64_t num_classes)
{
    const char *op = "one_hot";
    if (!lm__arg(index, op) || !check_index_dtype(op, index)) return NULL;
    if (index->ndim >= LM_MAX_DIMS)
        LM_FAIL(LM_ERR_ARG, "one_hot: index of shape %s already has the maximum of %d dims",
                lm__shp(index).s, LM_MAX_DIMS);
    const lm_backend *be = lm__backend(index->storage->device, op);
    if (!be) return NULL;
    int64_t numel = lm_numel(index), lo = 0, hi = -1;
    if (numel > 0) be->index->index_range(index, &lo, &hi);
    if (num_classes < 0) {
        if (numel == 0)
            LM_FAIL(LM_ERR_ARG, "one_hot: cannot infer the number of classes from an empty index "
                    "(shape %s); pass num_classes", lm__shp(index).s);
        num_classes = hi < INT64_MAX ? hi + 1 : hi;
    }
    if (numel > 0 && (lo < 0 || hi >= num_classes))
        LM_FAIL(LM_ERR_INDEX, "one_hot: index %lld is out of range for %lld classes (shape %s)",
                (long long)(lo < 0 ? lo : hi), (long long)num_classes, lm__shp(index).s);
    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, index->shape, sizeof(int64_t) * (size_t)index->ndim);
    shape[index->ndim] = num_classes;
    lm_tensor *out = lm__new(op, index->ndim + 1, shape, LM_I64, index->storage->device);
    if (!out || lm_numel(out) == 0) return out;
    lm_tensor *c = lm_contiguous(index);
    if (!c) {
        lm_release(out);
        return NULL;
    }
    be->index->one_hot(out, c);
    lm_release(c);
    return out;
}
