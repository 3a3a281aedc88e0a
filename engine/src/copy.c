/* copy.c — contiguous, clone, dtype conversion, copy_ (broadcasting) and fill_. The copies
 * pass gradients through unchanged (the engine converts a gradient's dtype back to the input's). */
#include "autograd.h"

static lm_status identity_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    (void)n;
    gi[0] = lm_retain((lm_tensor *)g);
    return LM_OK;
}

static const lm_grad_op contiguous_grad = {"contiguous", identity_backward};
static const lm_grad_op clone_grad = {"clone", identity_backward};
static const lm_grad_op to_grad = {"to", identity_backward};

/* In-place writes are not recorded by autograd: refuse them on tensors that take part in a
 * graph while gradients are recorded, rather than losing gradients silently. */
static lm_status refuse_tracked_write(const char *op, const lm_tensor *dst, const lm_tensor *src)
{
    if (!lm_grad_enabled()) return LM_OK;
    if (dst->requires_grad)
        return lm__error(LM_ERR_STATE,
                         "%s: the written-to tensor (shape %s) requires grad; write into it under "
                         "no_grad, or into a detached copy",
                         op, lm__shp(dst).s);
    if (src && src->requires_grad)
        return lm__error(LM_ERR_STATE,
                         "%s: the source (shape %s) requires grad, but an in-place copy does not "
                         "record gradients; use the result of an op instead, or detach the source",
                         op, lm__shp(src).s);
    return LM_OK;
}

lm_status lm_copy_(lm_tensor *dst, const lm_tensor *src)
{
    if (!lm__arg(dst, "copy_") || !lm__arg(src, "copy_")) return lm_last_status();
    if (refuse_tracked_write("copy_", dst, src)) return lm_last_status();
    if (dst->storage->device != src->storage->device)
        return lm__error(LM_ERR_UNSUPPORTED, "copy_: copies between devices are not supported yet");
    const lm_backend *be = lm__backend(dst->storage->device, "copy_");
    if (!be) return lm_last_status();
    lm_tensor *s = lm__expand_to(src, dst->ndim, dst->shape);
    if (!s) {
        if (lm_last_status() == LM_ERR_MEMORY) return LM_ERR_MEMORY;
        return lm__error(LM_ERR_SHAPE, "copy_: source shape %s cannot be broadcast to %s",
                         lm__shp(src).s, lm__shp(dst).s);
    }
    const lm_tensor *in[1] = {s};
    lm_status st = lm__check_inplace("copy_", dst, 1, in);
    if (st == LM_ERR_STATE && lm__overlap(dst, s) == LM_OVERLAP_PARTIAL &&
        !lm__has_internal_overlap(dst)) {
        /* Overlapping source: copy it out first so no element is read after it was written. */
        lm_clear_error();
        lm_tensor *tmp = lm_clone(s);
        lm_release(s);
        if (!tmp) return lm_last_status();
        s = tmp;
        st = LM_OK;
    }
    if (st == LM_OK) {
        be->copy->copy(dst, s);
        lm__bump_version(dst);
    }
    lm_release(s);
    return st;
}

lm_status lm_fill_(lm_tensor *t, double value)
{
    if (!lm__arg(t, "fill_")) return lm_last_status();
    if (refuse_tracked_write("fill_", t, NULL)) return lm_last_status();
    const lm_backend *be = lm__backend(t->storage->device, "fill_");
    if (!be) return lm_last_status();
    /* An expanded view may be filled: every location gets the same value either way. */
    be->copy->fill(t, value);
    lm__bump_version(t);
    return LM_OK;
}

lm_status lm_zero_(lm_tensor *t) { return lm_fill_(t, 0.0); }

/* A new contiguous tensor of dtype dt with t's values, recording grad op when t requires grad
 * and the result can carry a gradient. */
static lm_tensor *copy_as(const lm_tensor *t, lm_dtype dt, const char *op, const lm_grad_op *grad)
{
    lm_tensor *r = lm__new(op, t->ndim, t->shape, dt, t->storage->device);
    if (!r) return NULL;
    const lm_backend *be = lm__backend(t->storage->device, op);
    if (!be) {
        lm_release(r);
        return NULL;
    }
    be->copy->copy(r, t);
    if (lm_dtype_is_float(dt) && lm__needs_grad(1, &t) && !lm__record(grad, r, 1, &t)) {
        lm_release(r);
        return NULL;
    }
    return r;
}

lm_tensor *lm_contiguous(const lm_tensor *t)
{
    if (!lm__arg(t, "contiguous")) return NULL;
    if (lm_is_contiguous(t)) return lm_retain((lm_tensor *)t);
    return copy_as(t, t->dtype, "contiguous", &contiguous_grad);
}

lm_tensor *lm_clone(const lm_tensor *t)
{
    if (!lm__arg(t, "clone")) return NULL;
    return copy_as(t, t->dtype, "clone", &clone_grad);
}

lm_tensor *lm_to_dtype(const lm_tensor *t, lm_dtype dt)
{
    if (!lm__arg(t, "to")) return NULL;
    if ((unsigned)dt >= LM_DTYPE_COUNT) LM_FAIL(LM_ERR_DTYPE, "to: unknown dtype %d", dt);
    if (t->dtype == dt) return lm_retain((lm_tensor *)t);
    return copy_as(t, dt, "to", &to_grad);
}
