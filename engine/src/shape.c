/* shape.c — dims, broadcasting and memory-overlap rules shared by every op. */
#include "internal.h"

#include <string.h>

int lm__wrap_dim(int dim, int ndim, const char *op)
{
    int n = ndim > 0 ? ndim : 1; /* a 0-dim tensor accepts dim 0 and -1, as PyTorch */
    int d = dim < 0 ? dim + n : dim;
    if (d < 0 || d >= n) {
        lm__error(LM_ERR_ARG, "%s: dim %d is out of range for a tensor of %d dims (expected %d to %d)",
                  op, dim, ndim, -n, n - 1);
        return -1;
    }
    return d;
}

bool lm__dims_mask(const char *op, const lm_tensor *t, int ndims, const int *dims, uint32_t *mask)
{
    if (ndims == 0 || !dims) {
        *mask = t->ndim ? (uint32_t)((1u << t->ndim) - 1) : 0;
        return true;
    }
    *mask = 0;
    for (int i = 0; i < ndims; i++) {
        int d = lm__wrap_dim(dims[i], t->ndim, op);
        if (d < 0) return false;
        if (t->ndim == 0) continue;
        if (*mask & (1u << d)) {
            lm__error(LM_ERR_ARG, "%s: dim %d appears more than once in the list of dims", op, d);
            return false;
        }
        *mask |= 1u << d;
    }
    return true;
}

lm_status lm__broadcast_shapes(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb,
                               int *nout, int64_t *out)
{
    int n = na > nb ? na : nb;
    int64_t res[LM_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        int ia = na - n + i, ib = nb - n + i;
        int64_t a = ia >= 0 ? sa[ia] : 1, b = ib >= 0 ? sb[ib] : 1;
        if (a != b && a != 1 && b != 1)
            return lm__error(LM_ERR_SHAPE, "%s: shapes %s and %s cannot be broadcast", op,
                             lm__shp_raw(na, sa).s, lm__shp_raw(nb, sb).s);
        res[i] = a == 1 ? b : a;
    }
    *nout = n;
    memcpy(out, res, sizeof(int64_t) * (size_t)n);
    return LM_OK;
}

lm_tensor *lm__expand_to(const lm_tensor *t, int ndim, const int64_t *shape)
{
    int64_t strides[LM_MAX_DIMS];
    int lead = ndim - t->ndim;
    if (lead < 0)
        LM_FAIL(LM_ERR_SHAPE, "expand: cannot expand shape %s to %s (fewer dims)", lm__shp(t).s,
                lm__shp_raw(ndim, shape).s);
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        if (j < 0) {
            strides[i] = 0;
        } else if (t->shape[j] == shape[i]) {
            strides[i] = t->strides[j];
        } else if (t->shape[j] == 1) {
            strides[i] = 0;
        } else {
            LM_FAIL(LM_ERR_SHAPE, "expand: shape %s cannot be expanded to %s", lm__shp(t).s,
                    lm__shp_raw(ndim, shape).s);
        }
    }
    return lm__view_of(t, ndim, shape, strides, t->offset);
}

bool lm__has_internal_overlap(const lm_tensor *t)
{
    for (int i = 0; i < t->ndim; i++)
        if (t->strides[i] == 0 && t->shape[i] > 1) return true;
    return false;
}

/* The [lo, hi] byte range a tensor touches (empty tensors touch nothing). */
static bool byte_range(const lm_tensor *t, int64_t *lo, int64_t *hi)
{
    int64_t first = t->offset, last = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 0) return false;
        int64_t span = (t->shape[i] - 1) * t->strides[i];
        if (span < 0) first += span;
        else last += span;
    }
    int64_t es = (int64_t)lm_dtype_size(t->dtype);
    *lo = first * es;
    *hi = last * es + es - 1;
    return true;
}

lm_overlap lm__overlap(const lm_tensor *a, const lm_tensor *b)
{
    if (a->storage != b->storage) return LM_OVERLAP_NONE;
    int64_t alo, ahi, blo, bhi;
    if (!byte_range(a, &alo, &ahi) || !byte_range(b, &blo, &bhi)) return LM_OVERLAP_NONE;
    if (ahi < blo || bhi < alo) return LM_OVERLAP_NONE;
    bool same = a->offset == b->offset && a->dtype == b->dtype && a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++)
        same = a->shape[i] == b->shape[i] && (a->shape[i] == 1 || a->strides[i] == b->strides[i]);
    /* Interleaved views (a[::2] and a[1::2]) are reported as partial: conservative, as the
     * caller then refuses or copies rather than computing a wrong result. */
    return same ? LM_OVERLAP_FULL : LM_OVERLAP_PARTIAL;
}

lm_status lm__check_inplace(const char *op, const lm_tensor *out, int n,
                            const lm_tensor *const *inputs)
{
    if (lm__has_internal_overlap(out))
        return lm__error(LM_ERR_STATE,
                         "%s: unsupported operation: more than one element of the written-to tensor "
                         "(shape %s) refers to a single memory location; clone() it first",
                         op, lm__shp(out).s);
    for (int i = 0; i < n; i++) {
        const lm_tensor *in = inputs[i];
        if (!in) continue;
        if (lm__overlap(out, in) == LM_OVERLAP_PARTIAL) {
            /* An input expanded from exactly the output's memory is fine only when identical;
             * anything else would read values already overwritten. */
            return lm__error(LM_ERR_STATE,
                             "%s: unsupported operation: some elements of the input tensor (shape %s) "
                             "and the written-to tensor (shape %s) refer to a single memory "
                             "location; clone() the input first",
                             op, lm__shp(in).s, lm__shp(out).s);
        }
    }
    return LM_OK;
}
