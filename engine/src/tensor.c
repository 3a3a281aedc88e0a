/* tensor.c — tensor lifetime, inspection, dtypes and the basic constructors (empty, zeros, full,
 * from_data, *_like). Random and range constructors live in random.c and creation.c. */
#include "autograd.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- dtypes ---------------------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
    bool is_float;
} dtype_info[] = {
    [LM_F32] = {"f32", 4, true},
    [LM_F64] = {"f64", 8, true},
    [LM_I64] = {"i64", 8, false},
    [LM_U8] = {"u8", 1, false},
};
_Static_assert(sizeof dtype_info / sizeof dtype_info[0] == LM_DTYPE_COUNT, "dtype table");

const char *lm_dtype_name(lm_dtype dt)
{
    return (unsigned)dt < LM_DTYPE_COUNT ? dtype_info[dt].name : "?";
}
size_t lm_dtype_size(lm_dtype dt) { return (unsigned)dt < LM_DTYPE_COUNT ? dtype_info[dt].size : 0; }
bool lm_dtype_is_float(lm_dtype dt)
{
    return (unsigned)dt < LM_DTYPE_COUNT && dtype_info[dt].is_float;
}

lm_dtype lm_promote_types(lm_dtype a, lm_dtype b)
{
    /* The category order u8 < i64 < f32 < f64 is a total order for our four dtypes. */
    static const int rank[] = {[LM_U8] = 0, [LM_I64] = 1, [LM_F32] = 2, [LM_F64] = 3};
    return rank[a] >= rank[b] ? a : b;
}

double lm__load(const void *p, lm_dtype dt)
{
    switch (dt) {
    case LM_F32: return *(const float *)p;
    case LM_F64: return *(const double *)p;
    case LM_I64: return (double)*(const int64_t *)p;
    case LM_U8: return *(const uint8_t *)p;
    default: return NAN;
    }
}

void lm__store(void *p, lm_dtype dt, double v)
{
    switch (dt) {
    case LM_F32: *(float *)p = (float)v; break;
    case LM_F64: *(double *)p = v; break;
    case LM_I64: *(int64_t *)p = lm__f2i(v); break;
    case LM_U8: *(uint8_t *)p = (uint8_t)lm__f2i(v); break;
    default: break;
    }
}

/* ---- lifetime -------------------------------------------------------------------------- */

lm_tensor *lm_retain(lm_tensor *t)
{
    if (t) t->refcount++;
    return t;
}

void lm_release(lm_tensor *t)
{
    if (!t || --t->refcount > 0) return;
    if (t->grad_fn) {
        lm__tensor_dying(t);
        lm__node_release(t->grad_fn);
    }
    lm_release(t->grad);
    lm__storage_release(t->storage);
    lm__free(t);
}

/* ---- inspection ------------------------------------------------------------------------ */

int64_t lm__shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

int64_t lm_numel(const lm_tensor *t) { return t ? lm__shape_numel(t->ndim, t->shape) : 0; }

int64_t lm_size(const lm_tensor *t, int dim)
{
    if (!lm__arg(t, "size")) return -1;
    if (t->ndim == 0) {
        lm__error(LM_ERR_ARG, "size: a 0-dim tensor has no dim %d", dim);
        return -1;
    }
    int d = lm__wrap_dim(dim, t->ndim, "size");
    return d < 0 ? -1 : t->shape[d];
}

void lm__contiguous_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 1 ? shape[i] : 1;
    }
}

bool lm_is_contiguous(const lm_tensor *t)
{
    if (!t) return false;
    int64_t expected = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 0) return true;
        if (t->shape[i] != 1 && t->strides[i] != expected) return false;
        expected *= t->shape[i];
    }
    return true;
}

void *lm_data(const lm_tensor *t)
{
    if (!t) return NULL;
    return (char *)t->storage->data + t->offset * (int64_t)lm_dtype_size(t->dtype);
}

size_t lm_nbytes(const lm_tensor *t)
{
    return t ? (size_t)lm_numel(t) * lm_dtype_size(t->dtype) : 0;
}

char *lm_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap)
{
    if (!cap) return buf;
    size_t len = 0;
    int n = snprintf(buf, cap, "[");
    len = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && len < cap; i++) {
        n = snprintf(buf + len, cap - len, i ? ",%lld" : "%lld", (long long)shape[i]);
        if (n < 0) break;
        len += (size_t)n;
    }
    if (len < cap) snprintf(buf + len, cap - len, "]");
    buf[cap - 1] = '\0';
    return buf;
}

lm_shapebuf lm__shp_raw(int ndim, const int64_t *shape)
{
    lm_shapebuf b;
    lm_shape_str(ndim, shape, b.s, sizeof b.s);
    return b;
}

lm_shapebuf lm__shp(const lm_tensor *t) { return lm__shp_raw(t->ndim, t->shape); }

char *lm__elem_ptr(const lm_tensor *t, int64_t flat)
{
    int64_t off = t->offset;
    for (int i = t->ndim - 1; i >= 0; i--) {
        int64_t idx = flat % t->shape[i];
        flat /= t->shape[i];
        off += idx * t->strides[i];
    }
    return (char *)t->storage->data + off * (int64_t)lm_dtype_size(t->dtype);
}

lm_status lm_item(const lm_tensor *t, double *out)
{
    if (!lm__arg(t, "item")) return lm_last_status();
    if (lm_numel(t) != 1)
        return lm__error(LM_ERR_SHAPE,
                         "item: a tensor with %lld elements (shape %s) cannot be converted to a "
                         "number; it needs exactly one",
                         (long long)lm_numel(t), lm__shp(t).s);
    *out = lm__load(lm__elem_ptr(t, 0), t->dtype);
    return LM_OK;
}

static lm_status element_offset(const lm_tensor *t, const int64_t *index, const char *op,
                                int64_t *off)
{
    *off = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        int64_t k = index[i] < 0 ? index[i] + t->shape[i] : index[i];
        if (k < 0 || k >= t->shape[i])
            return lm__error(LM_ERR_INDEX, "%s: index %lld is out of range for dim %d of size %lld",
                             op, (long long)index[i], i, (long long)t->shape[i]);
        *off += k * t->strides[i];
    }
    return LM_OK;
}

lm_status lm_get(const lm_tensor *t, const int64_t *index, double *out)
{
    if (!lm__arg(t, "get")) return lm_last_status();
    int64_t off;
    lm_status st = element_offset(t, index, "get", &off);
    if (st) return st;
    *out = lm__load((char *)t->storage->data + off * (int64_t)lm_dtype_size(t->dtype), t->dtype);
    return LM_OK;
}

lm_status lm_set(lm_tensor *t, const int64_t *index, double value)
{
    if (!lm__arg(t, "set")) return lm_last_status();
    int64_t off;
    lm_status st = element_offset(t, index, "set", &off);
    if (st) return st;
    lm__store((char *)t->storage->data + off * (int64_t)lm_dtype_size(t->dtype), t->dtype, value);
    lm__bump_version(t);
    return LM_OK;
}

void lm__bump_version(lm_tensor *t) { t->storage->version++; }

/* ---- construction ---------------------------------------------------------------------- */

static lm_tensor *tensor_struct(void)
{
    lm_tensor *t = lm__malloc(sizeof *t);
    if (t) memset(t, 0, sizeof *t);
    return t;
}

lm_tensor *lm__new(const char *op, int ndim, const int64_t *shape, lm_dtype dt, lm_device dev)
{
    if (ndim < 0 || ndim > LM_MAX_DIMS)
        LM_FAIL(LM_ERR_ARG, "%s: %d dims requested; tensors have 0 to %d", op, ndim, LM_MAX_DIMS);
    if ((unsigned)dt >= LM_DTYPE_COUNT) LM_FAIL(LM_ERR_DTYPE, "%s: unknown dtype %d", op, dt);
    if (ndim > 0 && !shape) LM_FAIL(LM_ERR_ARG, "%s: NULL shape", op);
    /* The product of the non-zero sizes bounds the strides, so it must fit even when a zero
     * size makes the tensor empty ([0, 2^62, 4] would overflow its strides). */
    int64_t numel = 1, span = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            LM_FAIL(LM_ERR_ARG, "%s: negative size %lld in shape %s", op, (long long)shape[i],
                    lm__shp_raw(ndim, shape).s);
        if (shape[i] && span > INT64_MAX / 16 / shape[i])
            LM_FAIL(LM_ERR_MEMORY, "%s: shape %s is too large", op, lm__shp_raw(ndim, shape).s);
        if (shape[i]) span *= shape[i];
        numel *= shape[i];
    }
    lm_tensor *t = tensor_struct();
    if (!t) return NULL;
    t->storage = lm__storage_new((size_t)numel * lm_dtype_size(dt), dev);
    if (!t->storage) {
        lm__free(t);
        return NULL;
    }
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    lm__contiguous_strides(ndim, shape, t->strides);
    t->refcount = 1;
    return t;
}

lm_tensor *lm__view_of(const lm_tensor *base, int ndim, const int64_t *shape,
                       const int64_t *strides, int64_t offset)
{
    lm_tensor *t = tensor_struct();
    if (!t) return NULL;
    t->storage = base->storage;
    t->storage->refcount++;
    t->dtype = base->dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->strides[i] = strides[i];
    }
    t->offset = offset;
    t->refcount = 1;
    return t;
}

lm_tensor *lm_empty(int ndim, const int64_t *shape, lm_dtype dt)
{
    return lm__new("empty", ndim, shape, dt, LM_CPU);
}

lm_tensor *lm_full(int ndim, const int64_t *shape, double value, lm_dtype dt)
{
    lm_tensor *t = lm__new("full", ndim, shape, dt, LM_CPU);
    if (t && lm_fill_(t, value) != LM_OK) {
        lm_release(t);
        return NULL;
    }
    return t;
}

lm_tensor *lm_zeros(int ndim, const int64_t *shape, lm_dtype dt)
{
    return lm_full(ndim, shape, 0.0, dt);
}

lm_tensor *lm_ones(int ndim, const int64_t *shape, lm_dtype dt)
{
    return lm_full(ndim, shape, 1.0, dt);
}

lm_tensor *lm_scalar(double value, lm_dtype dt) { return lm_full(0, NULL, value, dt); }

lm_tensor *lm_from_data(const void *data, lm_dtype dt, int ndim, const int64_t *shape)
{
    if (!data) LM_FAIL(LM_ERR_ARG, "from_data: NULL data");
    lm_tensor *t = lm__new("from_data", ndim, shape, dt, LM_CPU);
    if (t) memcpy(t->storage->data, data, lm_nbytes(t));
    return t;
}

lm_tensor *lm_empty_like(const lm_tensor *t)
{
    if (!lm__arg(t, "empty_like")) return NULL;
    return lm__new("empty_like", t->ndim, t->shape, t->dtype, t->storage->device);
}

lm_tensor *lm_full_like(const lm_tensor *t, double value)
{
    lm_tensor *r = lm_empty_like(t);
    if (r && lm_fill_(r, value) != LM_OK) {
        lm_release(r);
        return NULL;
    }
    return r;
}

lm_tensor *lm_zeros_like(const lm_tensor *t) { return lm_full_like(t, 0.0); }
lm_tensor *lm_ones_like(const lm_tensor *t) { return lm_full_like(t, 1.0); }
