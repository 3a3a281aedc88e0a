/* test_index.c — indexing and joining: index_select, gather, scatter_add(_), masked_fill(_),
 * cat, stack, split, chunk, one_hot. Values are checked against hand-computed tables or naive
 * loops written here (reading elements one by one with lm_get), on contiguous and strided
 * inputs, for every dtype, with empty and size-1 dims, with 1 and 2 threads; every error path
 * is checked for its status and message. */
#include "lumen.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const lm_dtype all_dtypes[] = {LM_F32, LM_F64, LM_I64, LM_U8};

/* ---- helpers -------------------------------------------------------------------------------- */

/* A tensor of dtype dt holding vals (C order). */
static lm_tensor *make(lm_dtype dt, int ndim, const int64_t *shape, const double *vals)
{
    lm_tensor *d = lm_from_data(vals, LM_F64, ndim, shape);
    lm_tensor *r = lm_to_dtype(d, dt);
    lm_release(d);
    return r;
}

static lm_tensor *make_index(int ndim, const int64_t *shape, const int64_t *vals)
{
    return lm_from_data(vals, LM_I64, ndim, shape);
}

/* Values 0, 1, 2, ... (mod 200 so they fit u8) as dtype dt. */
static lm_tensor *iota(lm_dtype dt, int ndim, const int64_t *shape)
{
    lm_tensor *t = lm_empty(ndim, shape, LM_F64);
    for (int64_t i = 0; i < lm_numel(t); i++) ((double *)lm_data(t))[i] = (double)(i % 200);
    lm_tensor *r = lm_to_dtype(t, dt);
    lm_release(t);
    return r;
}

/* A deterministic pseudo-random generator so references do not depend on the engine's RNG. */
static uint64_t lcg_state = 12345;
static int64_t lcg(int64_t n)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int64_t)((lcg_state >> 33) % (uint64_t)n);
}

static lm_tensor *random_index(int ndim, const int64_t *shape, int64_t hi)
{
    lm_tensor *t = lm_empty(ndim, shape, LM_I64);
    for (int64_t i = 0; i < lm_numel(t); i++) ((int64_t *)lm_data(t))[i] = lcg(hi);
    return t;
}

static void unravel(int64_t flat, int ndim, const int64_t *shape, int64_t *idx)
{
    for (int k = ndim - 1; k >= 0; k--) {
        idx[k] = flat % shape[k];
        flat /= shape[k];
    }
}

static double at(const lm_tensor *t, const int64_t *idx)
{
    double v = NAN;
    lm_get(t, idx, &v);
    return v;
}

/* Element flat (C order) of t, through lm_get. */
static double at_flat(const lm_tensor *t, int64_t flat)
{
    int64_t idx[LM_MAX_DIMS];
    unravel(flat, t->ndim, t->shape, idx);
    return at(t, idx);
}

static bool same_shape(const lm_tensor *t, int ndim, const int64_t *shape)
{
    if (!t || t->ndim != ndim) return false;
    for (int k = 0; k < ndim; k++)
        if (t->shape[k] != shape[k]) return false;
    return true;
}

/* t has the shape and the values (C order). */
static bool equals(const lm_tensor *t, int ndim, const int64_t *shape, const double *want)
{
    if (!same_shape(t, ndim, shape)) return false;
    for (int64_t i = 0; i < lm_numel(t); i++)
        if (at_flat(t, i) != want[i]) return false;
    return true;
}

/* a and b have the same shape and values. */
static bool same_values(const lm_tensor *a, const lm_tensor *b)
{
    if (!a || !b || !same_shape(a, b->ndim, b->shape)) return false;
    for (int64_t i = 0; i < lm_numel(a); i++)
        if (at_flat(a, i) != at_flat(b, i)) return false;
    return true;
}

/* ---- index_select --------------------------------------------------------------------------- */

/* out[..., i, ...] == t[..., index[i], ...] checked element by element. */
static bool index_select_matches(const lm_tensor *out, const lm_tensor *t, int dim,
                                 const lm_tensor *index)
{
    if (!out || out->dtype != t->dtype || out->ndim != t->ndim) return false;
    for (int k = 0; k < t->ndim; k++)
        if (out->shape[k] != (k == dim ? lm_numel(index) : t->shape[k])) return false;
    for (int64_t f = 0; f < lm_numel(out); f++) {
        int64_t idx[LM_MAX_DIMS];
        unravel(f, out->ndim, out->shape, idx);
        int64_t pos = idx[dim];
        idx[dim] = (int64_t)at_flat(index, pos);
        if (at_flat(out, f) != at(t, idx)) return false;
    }
    return true;
}

static void test_index_select(void)
{
    lm_tensor *t = iota(LM_F32, LM_SHAPE(3, 4));
    lm_tensor *i0 = make_index(LM_SHAPE(3), (int64_t[]){2, 0, 2});
    lm_tensor *r = lm_index_select(t, 0, i0);
    ok(equals(r, LM_SHAPE(3, 4), (double[]){8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}),
       "index_select rows [2,0,2] of a [3,4] iota");
    lm_release(r);
    lm_tensor *i1 = make_index(LM_SHAPE(2), (int64_t[]){3, 1});
    r = lm_index_select(t, -1, i1);
    ok(equals(r, LM_SHAPE(3, 2), (double[]){3, 1, 7, 5, 11, 9}), "index_select columns [3,1] (dim -1)");
    lm_release(r);
    lm_tensor *s0 = make_index(0, NULL, (int64_t[]){1});
    r = lm_index_select(t, 1, s0);
    ok(equals(r, LM_SHAPE(3, 1), (double[]){1, 5, 9}), "a 0-dim index keeps the dim with size 1");
    lm_release(r);

    /* Every dtype, on contiguous and strided inputs and both dims. */
    for (size_t k = 0; k < sizeof all_dtypes / sizeof all_dtypes[0]; k++) {
        lm_dtype dt = all_dtypes[k];
        lm_tensor *base = iota(dt, LM_SHAPE(5, 6));
        lm_tensor *tr = lm_transpose(base, 0, 1);        /* [6,5] */
        lm_tensor *st = lm_slice(base, 1, 1, 6, 2);      /* [5,3], step 2 */
        lm_tensor *row = lm_select(base, 0, 2);
        lm_tensor *ex = lm_expand(row, LM_SHAPE(4, 6));  /* stride 0 rows */
        lm_tensor *idx = make_index(LM_SHAPE(4), (int64_t[]){1, 1, 0, 2});
        const lm_tensor *ins[] = {base, tr, st, ex};
        const char *names[] = {"contiguous", "transposed", "stepped slice", "expanded"};
        for (int v = 0; v < 4; v++)
            for (int dim = 0; dim < 2; dim++) {
                lm_tensor *o = lm_index_select(ins[v], dim, idx);
                ok(index_select_matches(o, ins[v], dim, idx), "index_select %s %s dim %d",
                   lm_dtype_name(dt), names[v], dim);
                lm_release(o);
            }
        lm_release(idx);
        lm_release(ex);
        lm_release(row);
        lm_release(st);
        lm_release(tr);
        lm_release(base);
    }

    /* 3-D, middle dim: rows of the inner dim copied per outer index; a strided index. */
    lm_tensor *t3 = iota(LM_F64, LM_SHAPE(2, 5, 3));
    lm_tensor *iall = make_index(LM_SHAPE(6), (int64_t[]){4, 9, 0, 9, 2, 9});
    lm_tensor *istep = lm_slice(iall, 0, 0, 6, 2); /* [4,0,2] */
    r = lm_index_select(t3, 1, istep);
    ok(index_select_matches(r, t3, 1, istep), "index_select of a [2,5,3] tensor, dim 1, stepped index");
    lm_release(r);
    lm_tensor *t3b = lm_permute(t3, (int[]){2, 0, 1}); /* [3,2,5] */
    r = lm_index_select(t3b, 2, istep);
    ok(index_select_matches(r, t3b, 2, istep), "index_select of a permuted 3-D tensor, last dim");
    lm_release(r);

    /* Empty and size-1 dims. */
    lm_tensor *none = lm_zeros(LM_SHAPE(0), LM_I64);
    r = lm_index_select(t, 0, none);
    ok(same_shape(r, LM_SHAPE(0, 4)), "an empty index gives a [0,4] result");
    lm_release(r);
    lm_tensor *e = lm_zeros(LM_SHAPE(0, 4), LM_F32);
    r = lm_index_select(e, 1, i1);
    ok(same_shape(r, LM_SHAPE(0, 2)), "selecting columns of a [0,4] tensor gives [0,2]");
    lm_release(r);
    ok(lm_index_select(e, 0, i1) == NULL && lm_last_status() == LM_ERR_INDEX,
       "any index into a dim of size 0 is out of range");
    has_str(lm_last_error(), "index_select: index 3 is out of range for dim 0 of size 0", "message");
    lm_tensor *one = iota(LM_I64, LM_SHAPE(1, 3));
    lm_tensor *zeros3 = lm_zeros(LM_SHAPE(3), LM_I64);
    r = lm_index_select(one, 0, zeros3);
    ok(equals(r, LM_SHAPE(3, 3), (double[]){0, 1, 2, 0, 1, 2, 0, 1, 2}), "repeating a size-1 dim");
    lm_release(r);
    lm_tensor *sc = lm_scalar(7.5, LM_F64);
    lm_tensor *z1 = lm_zeros(LM_SHAPE(1), LM_I64);
    r = lm_index_select(sc, 0, z1);
    ok(r && r->ndim == 0 && at(r, NULL) == 7.5, "index_select of a 0-dim tensor with [0]");
    lm_release(r);

    /* Errors. */
    lm_tensor *fidx = lm_zeros(LM_SHAPE(2), LM_F32);
    ok(lm_index_select(t, 0, fidx) == NULL && lm_last_status() == LM_ERR_DTYPE, "f32 index refused");
    has_str(lm_last_error(), "index_select: index must be i64, got f32", "message names op and dtype");
    lm_tensor *i2d = lm_zeros(LM_SHAPE(2, 2), LM_I64);
    ok(lm_index_select(t, 0, i2d) == NULL && lm_last_status() == LM_ERR_SHAPE, "2-D index refused");
    has_str(lm_last_error(), "index must be 1-D or 0-dim, got shape [2,2]", "message names the shape");
    ok(lm_index_select(t, 2, i0) == NULL && lm_last_status() == LM_ERR_ARG, "dim 2 of a 2-D tensor");
    has_str(lm_last_error(), "index_select: dim 2 is out of range", "message");
    lm_tensor *neg = make_index(LM_SHAPE(3), (int64_t[]){0, -1, 1});
    ok(lm_index_select(t, 0, neg) == NULL && lm_last_status() == LM_ERR_INDEX,
       "negative index refused");
    has_str(lm_last_error(), "index_select: index -1 is out of range for dim 0 of size 3",
            "message names the value and the dim size");
    lm_tensor *big = make_index(LM_SHAPE(2), (int64_t[]){0, 4});
    ok(lm_index_select(t, 1, big) == NULL, "index 4 into a dim of size 4 refused");
    has_str(lm_last_error(), "index 4 is out of range for dim 1 of size 4", "message");
    ok(lm_index_select(sc, 0, i0) == NULL && lm_last_status() == LM_ERR_SHAPE,
       "a 0-dim input takes only a one-value index");
    lm_clear_error();
    ok(lm_index_select(NULL, 0, i0) == NULL, "NULL input");
    has_str(lm_last_error(), "index_select: NULL tensor argument", "message");
    lm_clear_error();
    ok(lm_index_select(t, 0, NULL) == NULL && lm_last_status() == LM_ERR_ARG, "NULL index");

    lm_release(big);
    lm_release(neg);
    lm_release(i2d);
    lm_release(fidx);
    lm_release(z1);
    lm_release(sc);
    lm_release(zeros3);
    lm_release(one);
    lm_release(e);
    lm_release(none);
    lm_release(t3b);
    lm_release(istep);
    lm_release(iall);
    lm_release(t3);
    lm_release(s0);
    lm_release(i1);
    lm_release(i0);
    lm_release(t);
}

/* ---- gather --------------------------------------------------------------------------------- */

/* out[i][j][k] == t[index[i][j][k]][j][k] (for dim 0), any ndim. */
static bool gather_matches(const lm_tensor *out, const lm_tensor *t, int dim, const lm_tensor *index)
{
    if (!out || out->dtype != t->dtype || !same_shape(out, index->ndim, index->shape)) return false;
    for (int64_t f = 0; f < lm_numel(out); f++) {
        int64_t idx[LM_MAX_DIMS];
        unravel(f, out->ndim, out->shape, idx);
        idx[dim] = (int64_t)at_flat(index, f);
        if (at_flat(out, f) != at(t, idx)) return false;
    }
    return true;
}

static void test_gather(void)
{
    /* The example of torch.gather's documentation. */
    lm_tensor *t = make(LM_F32, LM_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    lm_tensor *i = make_index(LM_SHAPE(2, 2), (int64_t[]){0, 0, 1, 0});
    lm_tensor *r = lm_gather(t, 1, i);
    ok(equals(r, LM_SHAPE(2, 2), (double[]){1, 1, 4, 3}), "gather dim 1: [[1,1],[4,3]]");
    lm_release(r);
    r = lm_gather(t, 0, i);
    ok(equals(r, LM_SHAPE(2, 2), (double[]){1, 2, 3, 2}), "gather dim 0: [[1,2],[3,2]]");
    lm_release(r);

    for (size_t k = 0; k < sizeof all_dtypes / sizeof all_dtypes[0]; k++) {
        lm_dtype dt = all_dtypes[k];
        lm_tensor *base = iota(dt, LM_SHAPE(4, 5, 3));
        lm_tensor *perm = lm_permute(base, (int[]){1, 2, 0}); /* [5,3,4] */
        for (int dim = 0; dim < 3; dim++) {
            /* The index is smaller than the input in the other dims. */
            int64_t ish[3] = {3, 2, 2};
            ish[dim] = 6;
            lm_tensor *idx = random_index(3, ish, base->shape[dim]);
            r = lm_gather(base, dim, idx);
            ok(gather_matches(r, base, dim, idx), "gather %s contiguous [4,5,3] dim %d",
               lm_dtype_name(dt), dim);
            lm_release(r);
            lm_tensor *idxp = random_index(3, ish, perm->shape[dim]);
            r = lm_gather(perm, dim, idxp);
            ok(gather_matches(r, perm, dim, idxp), "gather %s permuted input dim %d",
               lm_dtype_name(dt), dim);
            lm_release(r);
            lm_release(idxp);
            lm_release(idx);
        }
        lm_release(perm);
        lm_release(base);
    }

    /* Strided and broadcast indices. */
    lm_tensor *t2 = iota(LM_I64, LM_SHAPE(3, 6));
    lm_tensor *ib = random_index(LM_SHAPE(6, 3), 6);
    lm_tensor *ibt = lm_transpose(ib, 0, 1); /* [3,6] */
    r = lm_gather(t2, 1, ibt);
    ok(gather_matches(r, t2, 1, ibt), "gather with a transposed index");
    lm_release(r);
    lm_tensor *irow = make_index(LM_SHAPE(1, 4), (int64_t[]){5, 0, 3, 3});
    lm_tensor *iex = lm_expand(irow, LM_SHAPE(3, 4));
    r = lm_gather(t2, 1, iex);
    ok(gather_matches(r, t2, 1, iex), "gather with an expanded index");
    lm_release(r);
    lm_tensor *t2s = lm_slice(t2, 1, 0, 6, 2); /* [3,3] */
    lm_tensor *i33 = random_index(LM_SHAPE(2, 3), 3);
    r = lm_gather(t2s, 0, i33);
    ok(gather_matches(r, t2s, 0, i33), "gather from a stepped slice");
    lm_release(r);

    /* Empty and 0-dim. */
    lm_tensor *ie = lm_zeros(LM_SHAPE(0, 2), LM_I64);
    r = lm_gather(t2, 1, ie);
    ok(same_shape(r, LM_SHAPE(0, 2)), "an empty index gives an empty result of its shape");
    lm_release(r);
    lm_tensor *sc = lm_scalar(3.5, LM_F32);
    lm_tensor *i0 = lm_zeros(0, NULL, LM_I64);
    r = lm_gather(sc, 0, i0);
    ok(r && r->ndim == 0 && at(r, NULL) == 3.5, "gather of a 0-dim tensor with a 0-dim index");
    lm_release(r);
    lm_tensor *v = iota(LM_F64, LM_SHAPE(4));
    lm_tensor *i2 = lm_full(0, NULL, 2, LM_I64);
    r = lm_gather(v, 0, i2);
    ok(r && r->ndim == 0 && at(r, NULL) == 2, "a 0-dim index counts as 1-D");
    lm_release(r);

    /* Errors. */
    lm_tensor *i1d = make_index(LM_SHAPE(2), (int64_t[]){0, 1});
    ok(lm_gather(t2, 1, i1d) == NULL && lm_last_status() == LM_ERR_SHAPE, "index with fewer dims");
    has_str(lm_last_error(),
            "gather: index shape [2] and input shape [3,6] must have the same number of dims",
            "message names both shapes");
    lm_tensor *iwide = lm_zeros(LM_SHAPE(4, 2), LM_I64);
    ok(lm_gather(t2, 1, iwide) == NULL && lm_last_status() == LM_ERR_SHAPE,
       "index larger than the input in another dim");
    has_str(lm_last_error(), "gather: index shape [4,2] is larger than input shape [3,6] in dim 0",
            "message names both shapes and the dim");
    lm_tensor *ineg = make_index(LM_SHAPE(1, 2), (int64_t[]){1, -2});
    ok(lm_gather(t2, 1, ineg) == NULL && lm_last_status() == LM_ERR_INDEX, "negative index");
    has_str(lm_last_error(), "gather: index -2 is out of range for dim 1 of size 6", "message");
    lm_tensor *ihi = make_index(LM_SHAPE(1, 2), (int64_t[]){3, 0});
    ok(lm_gather(t2, 0, ihi) == NULL && lm_last_status() == LM_ERR_INDEX, "index past the end");
    has_str(lm_last_error(), "gather: index 3 is out of range for dim 0 of size 3", "message");
    lm_tensor *one3 = make_index(LM_SHAPE(1, 1), (int64_t[]){3});
    lm_tensor *row3 = lm_expand(one3, LM_SHAPE(1, 6)); /* one value for a whole run */
    ok(lm_gather(t2, 0, row3) == NULL && lm_last_status() == LM_ERR_INDEX, "an expanded bad index");
    has_str(lm_last_error(), "gather: index 3 is out of range for dim 0 of size 3", "message");
    lm_release(row3);
    lm_release(one3);
    lm_tensor *iu8 = lm_zeros(LM_SHAPE(1, 2), LM_U8);
    ok(lm_gather(t2, 0, iu8) == NULL && lm_last_status() == LM_ERR_DTYPE, "u8 index");
    has_str(lm_last_error(), "gather: index must be i64, got u8", "message");
    ok(lm_gather(t2, -3, i33) == NULL && lm_last_status() == LM_ERR_ARG, "bad dim");
    lm_clear_error();
    ok(lm_gather(NULL, 0, i33) == NULL, "NULL input");
    has_str(lm_last_error(), "gather: NULL tensor argument", "message");
    lm_clear_error();

    lm_release(iu8);
    lm_release(ihi);
    lm_release(ineg);
    lm_release(iwide);
    lm_release(i1d);
    lm_release(i2);
    lm_release(v);
    lm_release(i0);
    lm_release(sc);
    lm_release(ie);
    lm_release(i33);
    lm_release(t2s);
    lm_release(iex);
    lm_release(irow);
    lm_release(ibt);
    lm_release(ib);
    lm_release(t2);
    lm_release(i);
    lm_release(t);
}

/* ---- scatter_add ---------------------------------------------------------------------------- */

/* The expected result of scatter_add, accumulated in doubles (exact for the small integers
 * used here) and wrapped to u8 where needed. */
static bool scatter_add_matches(const lm_tensor *out, const lm_tensor *t, int dim,
                                const lm_tensor *index, const lm_tensor *src)
{
    if (!out || out->dtype != t->dtype || !same_shape(out, t->ndim, t->shape)) return false;
    int64_t n = lm_numel(t);
    double *want = calloc((size_t)(n ? n : 1), sizeof *want);
    for (int64_t f = 0; f < n; f++) want[f] = at_flat(t, f);
    for (int64_t f = 0; f < lm_numel(index); f++) {
        int64_t idx[LM_MAX_DIMS];
        unravel(f, index->ndim, index->shape, idx);
        double s = at(src, idx);
        idx[dim] = (int64_t)at_flat(index, f);
        int64_t flat = 0;
        for (int k = 0; k < t->ndim; k++) flat = flat * t->shape[k] + idx[k];
        want[flat] += s;
    }
    bool good = true;
    for (int64_t f = 0; f < n && good; f++) {
        double w = out->dtype == LM_U8 ? fmod(want[f], 256.0) : want[f];
        good = out->dtype == LM_F32 ? fabs(at_flat(out, f) - w) <= 1e-5 * fmax(1, fabs(w))
                                    : at_flat(out, f) == w;
    }
    free(want);
    return good;
}

static void test_scatter_add(void)
{
    /* Repeated indices accumulate. */
    lm_tensor *z = lm_zeros(LM_SHAPE(3), LM_F32);
    lm_tensor *i = make_index(LM_SHAPE(5), (int64_t[]){0, 1, 0, 2, 0});
    lm_tensor *s = make(LM_F32, LM_SHAPE(5), (double[]){1, 2, 3, 4, 5});
    lm_tensor *r = lm_scatter_add(z, 0, i, s);
    ok(equals(r, LM_SHAPE(3), (double[]){9, 2, 4}), "scatter_add with repeated indices: [9,2,4]");
    ok(at_flat(z, 0) == 0, "scatter_add leaves its input alone");
    lm_release(r);
    /* 2-D, dim 0, from torch.scatter_add's documentation. */
    lm_tensor *z2 = lm_zeros(LM_SHAPE(3, 5), LM_F64);
    lm_tensor *i2 = make_index(LM_SHAPE(2, 5), (int64_t[]){0, 1, 2, 0, 0, 2, 0, 0, 1, 2});
    lm_tensor *s2 = lm_ones(LM_SHAPE(2, 5), LM_F64);
    r = lm_scatter_add(z2, 0, i2, s2);
    ok(equals(r, LM_SHAPE(3, 5), (double[]){1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1}),
       "scatter_add dim 0 of ones into [3,5]");
    lm_release(r);

    for (size_t k = 0; k < sizeof all_dtypes / sizeof all_dtypes[0]; k++) {
        lm_dtype dt = all_dtypes[k];
        lm_tensor *base = iota(dt, LM_SHAPE(4, 5, 3));
        lm_tensor *src = iota(dt, LM_SHAPE(7, 6, 9));
        lm_tensor *srct = lm_permute(src, (int[]){2, 1, 0}); /* [9,6,7]: strided src */
        for (int dim = 0; dim < 3; dim++) {
            int64_t ish[3] = {3, 2, 2};
            ish[dim] = 6;
            lm_tensor *idx = random_index(3, ish, base->shape[dim]);
            r = lm_scatter_add(base, dim, idx, src);
            ok(scatter_add_matches(r, base, dim, idx, src), "scatter_add %s dim %d, larger src",
               lm_dtype_name(dt), dim);
            lm_release(r);
            r = lm_scatter_add(base, dim, idx, srct);
            ok(scatter_add_matches(r, base, dim, idx, srct), "scatter_add %s dim %d, permuted src",
               lm_dtype_name(dt), dim);
            lm_release(r);
            lm_release(idx);
        }
        lm_release(srct);
        lm_release(src);
        lm_release(base);
    }

    /* In place into a transposed view; an expanded index repeats values along dim. */
    lm_tensor *b = lm_zeros(LM_SHAPE(3, 4), LM_I64);
    lm_tensor *bt = lm_transpose(b, 0, 1); /* [4,3] */
    lm_tensor *irow = make_index(LM_SHAPE(1, 3), (int64_t[]){2, 0, 2});
    lm_tensor *iex = lm_expand(irow, LM_SHAPE(4, 3));
    lm_tensor *src = iota(LM_I64, LM_SHAPE(4, 3));
    lm_tensor *before = lm_clone(bt);
    uint32_t v0 = b->storage->version;
    ok(lm_scatter_add_(bt, 0, iex, src) == LM_OK, "scatter_add_ into a transposed view");
    ok(scatter_add_matches(bt, before, 0, iex, src), "values accumulate in place");
    ok(at(b, (int64_t[]){0, 2}) == 0 + 3 + 6 + 9 && at(b, (int64_t[]){2, 2}) == 2 + 5 + 8 + 11,
       "and land in the base tensor");
    ok(b->storage->version > v0, "scatter_add_ bumps the version");

    /* An index constant along the non-indexed dim adds whole rows of src, twice into row 2. */
    lm_tensor *acc = lm_zeros(LM_SHAPE(3, 4), LM_F32);
    lm_tensor *icol = make_index(LM_SHAPE(3, 1), (int64_t[]){2, 0, 2});
    lm_tensor *icolx = lm_expand(icol, LM_SHAPE(3, 4));
    lm_tensor *src34 = iota(LM_F32, LM_SHAPE(3, 4));
    r = lm_scatter_add(acc, 0, icolx, src34);
    ok(equals(r, LM_SHAPE(3, 4), (double[]){4, 5, 6, 7, 0, 0, 0, 0, 8, 10, 12, 14}),
       "scatter_add of whole rows with an index expanded along dim 1");
    lm_release(r);
    lm_release(src34);
    lm_release(icolx);
    lm_release(icol);
    lm_release(acc);

    /* Empty index: nothing happens. */
    lm_tensor *ie = lm_zeros(LM_SHAPE(0, 3), LM_I64);
    r = lm_scatter_add(bt, 0, ie, src);
    ok(r && scatter_add_matches(r, bt, 0, ie, src), "an empty index copies the input");
    lm_release(r);
    lm_tensor *sc = lm_scalar(1, LM_F64), *i0 = lm_zeros(0, NULL, LM_I64), *s0 = lm_scalar(2.5, LM_F64);
    r = lm_scatter_add(sc, 0, i0, s0);
    ok(r && r->ndim == 0 && at(r, NULL) == 3.5, "scatter_add on 0-dim tensors");
    lm_release(r);

    /* Errors, and nothing written when they happen. */
    lm_tensor *sf = lm_ones(LM_SHAPE(4, 3), LM_F32);
    ok(lm_scatter_add(bt, 0, iex, sf) == NULL && lm_last_status() == LM_ERR_DTYPE,
       "src dtype mismatch");
    has_str(lm_last_error(), "scatter_add: src dtype f32 must match the input's dtype i64", "message");
    lm_tensor *ismall = lm_zeros(LM_SHAPE(5, 3), LM_I64);
    ok(lm_scatter_add(bt, 0, ismall, src) == NULL && lm_last_status() == LM_ERR_SHAPE,
       "index larger than src");
    has_str(lm_last_error(), "scatter_add: index shape [5,3] is larger than src shape [4,3] in dim 0",
            "message names both shapes");
    lm_tensor *big = lm_zeros(LM_SHAPE(8, 4), LM_I64), *iwide = lm_zeros(LM_SHAPE(2, 4), LM_I64);
    ok(lm_scatter_add(bt, 0, iwide, big) == NULL && lm_last_status() == LM_ERR_SHAPE,
       "index larger than the input in another dim");
    has_str(lm_last_error(), "index shape [2,4] is larger than input shape [4,3] in dim 1", "message");
    lm_tensor *bad = make_index(LM_SHAPE(1, 3), (int64_t[]){0, 4, 1});
    lm_tensor *keep = lm_clone(bt);
    ok(lm_scatter_add_(bt, 0, bad, src) == LM_ERR_INDEX, "index 4 into a dim of size 4");
    has_str(lm_last_error(), "scatter_add_: index 4 is out of range for dim 0 of size 4", "message");
    ok(same_values(bt, keep), "a failed scatter_add_ writes nothing");
    lm_tensor *negi = make_index(LM_SHAPE(1, 3), (int64_t[]){0, -1, 1});
    ok(lm_scatter_add(bt, 0, negi, src) == NULL && lm_last_status() == LM_ERR_INDEX, "negative index");
    has_str(lm_last_error(), "index -1 is out of range", "message");
    lm_tensor *e0 = lm_zeros(LM_SHAPE(0), LM_F32), *i1v = lm_zeros(LM_SHAPE(1), LM_I64);
    lm_tensor *s1v = lm_ones(LM_SHAPE(1), LM_F32);
    ok(lm_scatter_add(e0, 0, i1v, s1v) == NULL && lm_last_status() == LM_ERR_INDEX,
       "any index into an empty input is out of range");
    has_str(lm_last_error(), "scatter_add: index 0 is out of range for dim 0 of size 0", "message");
    ok(lm_scatter_add_(e0, 0, i1v, s1v) == LM_ERR_INDEX, "in place too");
    lm_release(s1v);
    lm_release(i1v);
    lm_release(e0);
    lm_tensor *fi = lm_zeros(LM_SHAPE(1, 3), LM_F64);
    ok(lm_scatter_add(bt, 0, fi, src) == NULL && lm_last_status() == LM_ERR_DTYPE, "f64 index");
    lm_tensor *i1 = lm_zeros(LM_SHAPE(3), LM_I64);
    ok(lm_scatter_add(bt, 0, i1, src) == NULL && lm_last_status() == LM_ERR_SHAPE,
       "index with fewer dims");
    has_str(lm_last_error(), "input shape [4,3], index shape [3] and src shape [4,3]", "message");
    lm_tensor *row0 = lm_select(b, 0, 0);
    lm_tensor *exdst = lm_expand(row0, LM_SHAPE(2, 4));
    lm_tensor *iz = lm_zeros(LM_SHAPE(2, 4), LM_I64), *sz = lm_zeros(LM_SHAPE(2, 4), LM_I64);
    ok(lm_scatter_add_(exdst, 1, iz, sz) == LM_ERR_STATE,
       "scatter_add_ into an expanded view is refused");
    has_str(lm_last_error(),
            "scatter_add_: unsupported operation: more than one element of the written-to",
            "message");
    lm_release(sz);
    lm_release(iz);
    lm_release(exdst);
    lm_release(row0);
    lm_tensor *self_src = lm_zeros(LM_SHAPE(2, 3), LM_I64);
    lm_tensor *i23 = lm_zeros(LM_SHAPE(2, 3), LM_I64);
    ok(lm_scatter_add_(self_src, 0, i23, self_src) == LM_ERR_STATE, "src sharing the output's memory");
    has_str(lm_last_error(), "scatter_add_: unsupported operation: the src (shape [2,3]) shares memory",
            "message");
    lm_clear_error();
    ok(lm_scatter_add(NULL, 0, i23, src) == NULL, "NULL input");
    has_str(lm_last_error(), "scatter_add: NULL tensor argument", "message");
    lm_clear_error();
    ok(lm_scatter_add_(self_src, 0, i23, NULL) == LM_ERR_ARG, "NULL src in place");
    lm_clear_error();

    lm_release(i23);
    lm_release(self_src);
    lm_release(i1);
    lm_release(fi);
    lm_release(negi);
    lm_release(keep);
    lm_release(bad);
    lm_release(iwide);
    lm_release(big);
    lm_release(ismall);
    lm_release(sf);
    lm_release(s0);
    lm_release(i0);
    lm_release(sc);
    lm_release(ie);
    lm_release(before);
    lm_release(src);
    lm_release(iex);
    lm_release(irow);
    lm_release(bt);
    lm_release(b);
    lm_release(s2);
    lm_release(i2);
    lm_release(z2);
    lm_release(s);
    lm_release(i);
    lm_release(z);
}

/* ---- masked_fill --------------------------------------------------------------------------- */

/* out == (mask broadcast to t's shape) != 0 ? value converted to t's dtype : t. */
static bool masked_fill_matches(const lm_tensor *out, const lm_tensor *t, const lm_tensor *mask,
                                double value)
{
    if (!out || out->dtype != t->dtype || !same_shape(out, t->ndim, t->shape)) return false;
    double v = value;
    if (t->dtype == LM_I64) v = trunc(value);
    if (t->dtype == LM_U8) v = fmod(trunc(value) + 256.0, 256.0);
    if (t->dtype == LM_F32) v = (float)value;
    for (int64_t f = 0; f < lm_numel(t); f++) {
        int64_t idx[LM_MAX_DIMS], midx[LM_MAX_DIMS];
        unravel(f, t->ndim, t->shape, idx);
        int lead = t->ndim - mask->ndim;
        for (int k = 0; k < mask->ndim; k++) midx[k] = mask->shape[k] == 1 ? 0 : idx[lead + k];
        double want = at(mask, midx) != 0 ? v : at(t, idx);
        if (at(out, idx) != want) return false;
    }
    return true;
}

static void test_masked_fill(void)
{
    lm_tensor *t = iota(LM_F32, LM_SHAPE(2, 3));
    lm_tensor *m = make(LM_U8, LM_SHAPE(2, 3), (double[]){1, 0, 1, 0, 0, 1});
    lm_tensor *r = lm_masked_fill(t, m, -1.5);
    ok(equals(r, LM_SHAPE(2, 3), (double[]){-1.5, 1, -1.5, 3, 4, -1.5}), "masked_fill with a u8 mask");
    ok(at_flat(t, 0) == 0, "masked_fill leaves its input alone");
    lm_release(r);

    /* Broadcast masks of every dtype: non-zero (NaN included) is true. */
    lm_tensor *mrow = make(LM_F32, LM_SHAPE(3), (double[]){0.5, 0, NAN});
    lm_tensor *mcol = make(LM_I64, LM_SHAPE(2, 1), (double[]){0, -3});
    lm_tensor *mf64 = make(LM_F64, LM_SHAPE(1, 1), (double[]){2});
    lm_tensor *mu8 = make(LM_U8, LM_SHAPE(3), (double[]){0, 1, 0});
    const lm_tensor *masks[] = {m, mrow, mcol, mf64, mu8};
    const char *mnames[] = {"u8 [2,3]", "f32 [3] (0.5, 0, NaN)", "i64 [2,1]", "f64 [1,1]", "u8 [3]"};
    r = lm_masked_fill(t, mrow, 9);
    ok(equals(r, LM_SHAPE(2, 3), (double[]){9, 1, 9, 9, 4, 9}),
       "an f32 row mask: 0.5 and NaN are true");
    lm_release(r);
    for (size_t k = 0; k < sizeof all_dtypes / sizeof all_dtypes[0]; k++) {
        lm_dtype dt = all_dtypes[k];
        lm_tensor *base = iota(dt, LM_SHAPE(3, 2));
        lm_tensor *tt = lm_transpose(base, 0, 1); /* [2,3], strided */
        lm_tensor *big = iota(dt, LM_SHAPE(2, 6));
        lm_tensor *st = lm_slice(big, 1, 0, 6, 2); /* [2,3], step 2 */
        lm_tensor *c = iota(dt, LM_SHAPE(2, 3));
        const lm_tensor *ins[] = {c, tt, st};
        const char *names[] = {"contiguous", "transposed", "stepped slice"};
        for (int v = 0; v < 3; v++)
            for (int q = 0; q < 5; q++) {
                r = lm_masked_fill(ins[v], masks[q], 7.75);
                ok(masked_fill_matches(r, ins[v], masks[q], 7.75), "masked_fill %s %s, mask %s",
                   lm_dtype_name(dt), names[v], mnames[q]);
                lm_release(r);
            }
        lm_release(c);
        lm_release(st);
        lm_release(big);
        lm_release(tt);
        lm_release(base);
    }
    lm_tensor *ti = iota(LM_I64, LM_SHAPE(2, 3));
    r = lm_masked_fill(ti, m, -2.9);
    ok(equals(r, LM_SHAPE(2, 3), (double[]){-2, 1, -2, 3, 4, -2}),
       "the value is converted to i64 (-2.9 -> -2)");
    lm_release(r);

    /* In place through a transposed view, mask a view of another tensor. */
    lm_tensor *b = iota(LM_F64, LM_SHAPE(3, 2));
    lm_tensor *bt = lm_transpose(b, 0, 1);
    lm_tensor *before = lm_clone(bt);
    uint32_t v0 = b->storage->version;
    ok(lm_masked_fill_(bt, m, 100) == LM_OK, "masked_fill_ on a transposed view");
    ok(masked_fill_matches(bt, before, m, 100), "values");
    ok(at(b, (int64_t[]){0, 0}) == 100 && at(b, (int64_t[]){0, 1}) == 1 &&
           at(b, (int64_t[]){2, 1}) == 100,
       "written into the base tensor");
    ok(b->storage->version > v0, "masked_fill_ bumps the version");
    lm_tensor *self = make(LM_F32, LM_SHAPE(4), (double[]){0, 2, 0, -1});
    ok(lm_masked_fill_(self, self, 5) == LM_OK &&
       equals(self, LM_SHAPE(4), (double[]){0, 5, 0, 5}), "a tensor as its own mask");

    /* Empty and size-1 dims. */
    lm_tensor *e = lm_zeros(LM_SHAPE(0, 3), LM_F32);
    r = lm_masked_fill(e, mu8, 1);
    ok(same_shape(r, LM_SHAPE(0, 3)), "masked_fill of a [0,3] tensor");
    lm_release(r);
    ok(lm_masked_fill_(e, mu8, 1) == LM_OK, "masked_fill_ of an empty tensor");
    lm_tensor *one = lm_zeros(LM_SHAPE(1, 3), LM_U8);
    r = lm_masked_fill(one, mu8, 300);
    ok(equals(r, LM_SHAPE(1, 3), (double[]){0, 44, 0}),
       "u8 value 300 wraps to 44 as a conversion does");
    lm_release(r);

    /* Errors. */
    lm_tensor *m33 = lm_ones(LM_SHAPE(3, 3), LM_U8);
    ok(lm_masked_fill(t, m33, 0) == NULL && lm_last_status() == LM_ERR_SHAPE, "mask [3,3] on [2,3]");
    has_str(lm_last_error(),
            "masked_fill: mask shape [3,3] cannot be broadcast to the input's shape [2,3]",
            "message names both shapes");
    lm_tensor *t3 = iota(LM_F32, LM_SHAPE(3));
    ok(lm_masked_fill(t3, m, 0) == NULL && lm_last_status() == LM_ERR_SHAPE,
       "a mask does not broadcast the input: mask [2,3] on [3]");
    has_str(lm_last_error(), "mask shape [2,3] cannot be broadcast to the input's shape [3]",
            "message");
    lm_tensor *r0 = lm_select(b, 0, 0);
    lm_tensor *ex = lm_expand(r0, LM_SHAPE(2, 2));
    ok(lm_masked_fill_(ex, mf64, 0) == LM_ERR_STATE, "masked_fill_ into an expanded view is refused");
    has_str(lm_last_error(), "masked_fill_: unsupported operation", "message");
    lm_tensor *bcol = lm_select(bt, 0, 0); /* [3], part of b */
    ok(lm_masked_fill_(b, bcol, 0) == LM_ERR_SHAPE, "mask [3] on [3,2]");
    lm_tensor *brow = lm_select(b, 0, 1);  /* [2], part of b, expanded as the mask */
    ok(lm_masked_fill_(b, brow, 0) == LM_ERR_STATE,
       "a mask that partly overlaps the output is refused");
    lm_clear_error();
    ok(lm_masked_fill(NULL, m, 0) == NULL, "NULL input");
    has_str(lm_last_error(), "masked_fill: NULL tensor argument", "message");
    lm_clear_error();
    ok(lm_masked_fill_(t, NULL, 0) == LM_ERR_ARG, "NULL mask");
    has_str(lm_last_error(), "masked_fill_: NULL tensor argument", "message");
    lm_clear_error();

    lm_release(brow);
    lm_release(bcol);
    lm_release(ex);
    lm_release(r0);
    lm_release(t3);
    lm_release(m33);
    lm_release(one);
    lm_release(e);
    lm_release(self);
    lm_release(before);
    lm_release(bt);
    lm_release(b);
    lm_release(ti);
    lm_release(mu8);
    lm_release(mf64);
    lm_release(mcol);
    lm_release(mrow);
    lm_release(m);
    lm_release(t);
}

/* ---- cat and stack -------------------------------------------------------------------------- */

/* out is the inputs joined along dim: checked element by element, locating each output
 * position's input by its coordinate along dim. Inputs of shape [0] are skipped. */
static bool cat_matches(const lm_tensor *out, int n, lm_tensor *const *ts, int dim)
{
    if (!out) return false;
    for (int64_t f = 0; f < lm_numel(out); f++) {
        int64_t idx[LM_MAX_DIMS];
        unravel(f, out->ndim, out->shape, idx);
        int64_t pos = idx[dim];
        int i = 0;
        for (; i < n; i++) {
            if (ts[i]->ndim == 1 && ts[i]->shape[0] == 0 && out->ndim != 1) continue;
            if (pos < ts[i]->shape[dim]) break;
            pos -= ts[i]->shape[dim];
        }
        if (i == n) return false;
        idx[dim] = pos;
        if (at_flat(out, f) != at(ts[i], idx)) return false;
    }
    return true;
}

static void test_cat(void)
{
    lm_tensor *a = iota(LM_F32, LM_SHAPE(2, 3));
    lm_tensor *b = make(LM_F32, LM_SHAPE(1, 3), (double[]){-1, -2, -3});
    lm_tensor *r = lm_cat(2, (lm_tensor *[]){a, b}, 0);
    ok(equals(r, LM_SHAPE(3, 3), (double[]){0, 1, 2, 3, 4, 5, -1, -2, -3}),
       "cat [2,3] and [1,3] on dim 0");
    lm_release(r);
    lm_tensor *c = make(LM_F32, LM_SHAPE(2, 1), (double[]){7, 8});
    r = lm_cat(3, (lm_tensor *[]){c, a, c}, -1);
    ok(equals(r, LM_SHAPE(2, 5), (double[]){7, 0, 1, 2, 7, 8, 3, 4, 5, 8}),
       "cat [2,1],[2,3],[2,1] on dim -1");
    lm_release(r);
    r = lm_cat(1, (lm_tensor *[]){a}, 1);
    ok(equals(r, LM_SHAPE(2, 3), (double[]){0, 1, 2, 3, 4, 5}) && r->storage != a->storage,
       "cat of one tensor is a copy");
    lm_release(r);

    /* Promotion: the result takes the highest dtype and converts the others. */
    lm_tensor *u = make(LM_U8, LM_SHAPE(1, 3), (double[]){200, 1, 2});
    lm_tensor *l = make(LM_I64, LM_SHAPE(1, 3), (double[]){-5, 6, 7});
    lm_tensor *d = make(LM_F64, LM_SHAPE(1, 3), (double[]){0.25, 0.5, 0.75});
    r = lm_cat(2, (lm_tensor *[]){u, l}, 0);
    ok(r && r->dtype == LM_I64 && equals(r, LM_SHAPE(2, 3), (double[]){200, 1, 2, -5, 6, 7}),
       "u8 + i64 -> i64");
    lm_release(r);
    r = lm_cat(4, (lm_tensor *[]){u, a, l, d}, 0);
    ok(r && r->dtype == LM_F64 && cat_matches(r, 4, (lm_tensor *[]){u, a, l, d}, 0),
       "u8 + f32 + i64 + f64 -> f64");
    lm_release(r);

    /* Every dtype, strided inputs mixed with contiguous ones, 3-D along each dim. */
    for (size_t k = 0; k < sizeof all_dtypes / sizeof all_dtypes[0]; k++) {
        lm_dtype dt = all_dtypes[k];
        lm_tensor *x = iota(dt, LM_SHAPE(4, 3, 5));
        lm_tensor *xs = lm_slice(x, 0, 0, 4, 2);               /* [2,3,5], contiguous past dim 0 */
        lm_tensor *y = iota(dt, LM_SHAPE(5, 3, 2));
        lm_tensor *yt = lm_permute(y, (int[]){2, 1, 0});       /* [2,3,5] transposed */
        lm_tensor *z = iota(dt, LM_SHAPE(3, 5));
        lm_tensor *ze = lm_expand(z, LM_SHAPE(2, 3, 5));       /* stride 0 in dim 0 */
        lm_tensor *w = iota(dt, LM_SHAPE(2, 3, 5));
        for (int dim = 0; dim < 3; dim++) {
            lm_tensor *ins[] = {xs, w, yt, ze, w};
            r = lm_cat(5, ins, dim);
            int64_t want[3] = {2, 3, 5};
            want[dim] *= 5;
            ok(r && r->dtype == dt && same_shape(r, 3, want) && cat_matches(r, 5, ins, dim),
               "cat %s of sliced, contiguous, permuted and expanded [2,3,5] inputs on dim %d",
               lm_dtype_name(dt), dim);
            lm_release(r);
        }
        /* A narrow of the middle dim: contiguous blocks from dim 2 on only. */
        lm_tensor *xn = lm_narrow(x, 1, 1, 2); /* [4,2,5] */
        lm_tensor *x4 = iota(dt, LM_SHAPE(4, 1, 5));
        r = lm_cat(2, (lm_tensor *[]){xn, x4}, 1);
        ok(cat_matches(r, 2, (lm_tensor *[]){xn, x4}, 1), "cat %s of a narrowed view on dim 1",
           lm_dtype_name(dt));
        lm_release(r);
        lm_release(x4);
        lm_release(xn);
        lm_release(w);
        lm_release(ze);
        lm_release(z);
        lm_release(yt);
        lm_release(y);
        lm_release(xs);
        lm_release(x);
    }

    /* Empty tensors: size 0 along dim joins, 1-D [0] tensors are skipped. */
    lm_tensor *e20 = lm_zeros(LM_SHAPE(2, 0), LM_F32);
    lm_tensor *e0 = lm_zeros(LM_SHAPE(0), LM_I64);
    r = lm_cat(3, (lm_tensor *[]){e20, a, e20}, 1);
    ok(equals(r, LM_SHAPE(2, 3), (double[]){0, 1, 2, 3, 4, 5}), "cat with [2,0] tensors on dim 1");
    lm_release(r);
    r = lm_cat(3, (lm_tensor *[]){e0, a, e0}, 1);
    ok(r && r->dtype == LM_F32 && equals(r, LM_SHAPE(2, 3), (double[]){0, 1, 2, 3, 4, 5}),
       "1-D [0] tensors are skipped whatever the other shapes");
    lm_release(r);
    r = lm_cat(2, (lm_tensor *[]){e0, e0}, 0);
    ok(same_shape(r, LM_SHAPE(0)), "cat of [0] tensors is [0]");
    lm_release(r);
    r = lm_cat(2, (lm_tensor *[]){e20, e20}, 0);
    ok(same_shape(r, LM_SHAPE(4, 0)), "cat of [2,0] tensors on dim 0 is [4,0]");
    lm_release(r);

    /* Errors. */
    ok(lm_cat(0, (lm_tensor *[]){a}, 0) == NULL && lm_last_status() == LM_ERR_ARG, "n = 0");
    has_str(lm_last_error(), "cat: expects at least one tensor, got 0", "message");
    ok(lm_cat(2, (lm_tensor *[]){a, c}, 0) == NULL && lm_last_status() == LM_ERR_SHAPE, "sizes differ");
    has_str(lm_last_error(),
            "cat: sizes must match except in dim 0: tensor 0 has shape [2,3] and tensor 1 has shape [2,1]",
            "message names the dim and both shapes");
    lm_tensor *v3 = iota(LM_F32, LM_SHAPE(3));
    ok(lm_cat(2, (lm_tensor *[]){a, v3}, 0) == NULL && lm_last_status() == LM_ERR_SHAPE,
       "ndim differs");
    has_str(lm_last_error(), "tensor 0 has shape [2,3] and tensor 1 has shape [3]", "message");
    lm_tensor *sc = lm_scalar(1, LM_F32);
    ok(lm_cat(2, (lm_tensor *[]){a, sc}, 0) == NULL && lm_last_status() == LM_ERR_SHAPE, "0-dim input");
    has_str(lm_last_error(), "cat: tensor 1 is 0-dim", "message");
    ok(lm_cat(2, (lm_tensor *[]){a, a}, 2) == NULL && lm_last_status() == LM_ERR_ARG, "dim 2 of 2-D");
    has_str(lm_last_error(), "cat: dim 2 is out of range", "message");
    lm_clear_error();
    ok(lm_cat(2, (lm_tensor *[]){a, NULL}, 0) == NULL, "a NULL tensor");
    has_str(lm_last_error(), "cat: NULL tensor argument", "message");
    lm_clear_error();
    ok(lm_cat(2, NULL, 0) == NULL && lm_last_status() == LM_ERR_ARG, "a NULL array");

    lm_release(sc);
    lm_release(v3);
    lm_release(e0);
    lm_release(e20);
    lm_release(d);
    lm_release(l);
    lm_release(u);
    lm_release(c);
    lm_release(b);
    lm_release(a);
}

static void test_stack(void)
{
    lm_tensor *a = iota(LM_F32, LM_SHAPE(2, 3));
    lm_tensor *b = make(LM_F32, LM_SHAPE(2, 3), (double[]){-1, -2, -3, -4, -5, -6});
    lm_tensor *bt0 = make(LM_F32, LM_SHAPE(3, 2), (double[]){-1, -4, -2, -5, -3, -6});
    lm_tensor *bt = lm_transpose(bt0, 0, 1); /* the values of b, strided */
    lm_tensor *r = lm_stack(2, (lm_tensor *[]){a, bt}, 0);
    ok(equals(r, LM_SHAPE(2, 2, 3), (double[]){0, 1, 2, 3, 4, 5, -1, -2, -3, -4, -5, -6}),
       "stack on dim 0");
    lm_release(r);
    r = lm_stack(2, (lm_tensor *[]){a, b}, 1);
    ok(equals(r, LM_SHAPE(2, 2, 3), (double[]){0, 1, 2, -1, -2, -3, 3, 4, 5, -4, -5, -6}),
       "stack on dim 1");
    lm_release(r);
    r = lm_stack(2, (lm_tensor *[]){a, bt}, 2);
    ok(equals(r, LM_SHAPE(2, 3, 2), (double[]){0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6}),
       "stack on dim 2 (= ndim), strided input");
    lm_release(r);
    r = lm_stack(3, (lm_tensor *[]){a, b, a}, -1);
    ok(r && same_shape(r, LM_SHAPE(2, 3, 3)) && at(r, (int64_t[]){1, 2, 1}) == -6 &&
           at(r, (int64_t[]){1, 2, 2}) == 5,
       "stack on dim -1");
    lm_release(r);
    lm_tensor *s1 = lm_scalar(1.5, LM_F64), *s2 = lm_scalar(7, LM_I64);
    r = lm_stack(2, (lm_tensor *[]){s1, s2}, 0);
    ok(r && r->dtype == LM_F64 && equals(r, LM_SHAPE(2), (double[]){1.5, 7}),
       "stack of 0-dim tensors, promoted");
    lm_release(r);
    lm_tensor *e = lm_zeros(LM_SHAPE(0), LM_U8);
    r = lm_stack(3, (lm_tensor *[]){e, e, e}, 1);
    ok(same_shape(r, LM_SHAPE(0, 3)), "stack of three [0] tensors on dim 1 is [0,3]");
    lm_release(r);

    ok(lm_stack(2, (lm_tensor *[]){a, bt0}, 0) == NULL && lm_last_status() == LM_ERR_SHAPE,
       "shapes differ");
    has_str(lm_last_error(),
            "stack: all tensors must have the same shape: tensor 0 has shape [2,3] and tensor 1 has shape [3,2]",
            "message names both shapes");
    ok(lm_stack(2, (lm_tensor *[]){a, b}, 3) == NULL && lm_last_status() == LM_ERR_ARG,
       "dim 3 for 2-D inputs");
    has_str(lm_last_error(), "stack: dim 3 is out of range", "message");
    ok(lm_stack(0, NULL, 0) == NULL && lm_last_status() == LM_ERR_ARG, "n = 0");
    has_str(lm_last_error(), "stack: expects at least one tensor", "message");
    lm_clear_error();
    ok(lm_stack(2, (lm_tensor *[]){NULL, a}, 0) == NULL, "a NULL tensor");
    has_str(lm_last_error(), "stack: NULL tensor argument", "message");
    lm_clear_error();

    lm_release(e);
    lm_release(s2);
    lm_release(s1);
    lm_release(bt);
    lm_release(bt0);
    lm_release(b);
    lm_release(a);
}

/* ---- split and chunk ------------------------------------------------------------------------ */

static void release_all(lm_tensor **ts, int n)
{
    for (int i = 0; i < n; i++) lm_release(ts[i]);
}

static void test_split_chunk(void)
{
    lm_tensor *t = iota(LM_F32, LM_SHAPE(5, 2));
    lm_tensor *p[8] = {0};
    int n = lm_split(t, 2, 0, p, 8);
    is_int(n, 3, "split of 5 rows by 2 gives 3 pieces");
    ok(n == 3 && equals(p[0], LM_SHAPE(2, 2), (double[]){0, 1, 2, 3}) &&
       equals(p[1], LM_SHAPE(2, 2), (double[]){4, 5, 6, 7}) && equals(p[2], LM_SHAPE(1, 2), (double[]){8, 9}),
       "pieces [2,2], [2,2], [1,2] with their values");
    ok(n == 3 && p[1]->storage == t->storage && p[2]->storage == t->storage, "pieces are views");
    lm_set(p[1], (int64_t[]){0, 0}, 42);
    ok(at(t, (int64_t[]){2, 0}) == 42, "writing a piece writes the tensor");
    release_all(p, n);

    lm_tensor *q[2] = {NULL, NULL};
    is_int(lm_split(t, 2, 0, q, 2), 3, "a cap too small returns the count");
    ok(q[0] == NULL && q[1] == NULL, "and writes nothing");
    is_int(lm_split(t, 2, 0, NULL, 0), 3, "cap 0 with no array asks for the count");
    n = lm_split(t, 7, 0, p, 8);
    ok(n == 1 && equals(p[0], LM_SHAPE(5, 2), (double[]){0, 1, 2, 3, 42, 5, 6, 7, 8, 9}),
       "a split size past the end: one piece");
    release_all(p, n > 0 ? n : 0);
    lm_tensor *tt = lm_transpose(t, 0, 1); /* [2,5] strided */
    n = lm_split(tt, 3, -1, p, 8);
    ok(n == 2 && equals(p[0], LM_SHAPE(2, 3), (double[]){0, 2, 42, 1, 3, 5}) &&
       equals(p[1], LM_SHAPE(2, 2), (double[]){6, 8, 7, 9}), "split of a transposed view on dim -1");
    release_all(p, n > 0 ? n : 0);
    lm_tensor *e = lm_zeros(LM_SHAPE(0, 3), LM_F32);
    n = lm_split(e, 2, 0, p, 8);
    ok(n == 1 && same_shape(p[0], LM_SHAPE(0, 3)), "split of an empty dim: one empty piece");
    release_all(p, n > 0 ? n : 0);
    n = lm_split(e, 0, 0, p, 8);
    ok(n == 1 && same_shape(p[0], LM_SHAPE(0, 3)), "split size 0 of an empty dim: one empty piece");
    release_all(p, n > 0 ? n : 0);

    n = lm_chunk(t, 2, 0, p, 8);
    ok(n == 2 && same_shape(p[0], LM_SHAPE(3, 2)) && same_shape(p[1], LM_SHAPE(2, 2)) &&
       at(p[1], (int64_t[]){0, 1}) == 7, "chunk of 5 rows into 2: [3,2] and [2,2]");
    release_all(p, n > 0 ? n : 0);
    lm_tensor *six = iota(LM_I64, LM_SHAPE(6));
    n = lm_chunk(six, 4, 0, p, 8);
    ok(n == 3 && equals(p[0], LM_SHAPE(2), (double[]){0, 1}) && equals(p[2], LM_SHAPE(2), (double[]){4, 5}),
       "chunk of 6 into 4: three pieces of 2 (fewer than asked, as torch.chunk)");
    release_all(p, n > 0 ? n : 0);
    n = lm_chunk(six, 6, 0, p, 8);
    ok(n == 6 && same_shape(p[5], LM_SHAPE(1)) && at(p[5], (int64_t[]){0}) == 5,
       "chunk into size-1 pieces");
    release_all(p, n > 0 ? n : 0);
    n = lm_chunk(e, 3, 0, p, 8);
    ok(n == 3 && same_shape(p[2], LM_SHAPE(0, 3)), "chunk of an empty dim into 3 empty pieces");
    release_all(p, n > 0 ? n : 0);
    is_int(lm_chunk(six, 3, 0, q, 2), 3, "chunk with a cap too small returns the count");
    ok(q[0] == NULL, "and writes nothing");

    lm_tensor *sc = lm_scalar(1, LM_F32);
    is_int(lm_split(t, 0, 0, p, 8), -1, "split size 0 of a non-empty dim");
    has_str(lm_last_error(), "split: split_size must be positive, got 0 for dim 0 of shape [5,2]",
            "message");
    is_int(lm_split(t, -2, 0, p, 8), -1, "negative split size");
    is_int(lm_split(sc, 1, 0, p, 8), -1, "split of a 0-dim tensor");
    has_str(lm_last_error(), "split: expects a tensor with at least 1 dim", "message");
    is_int(lm_split(t, 1, 2, p, 8), -1, "split on a bad dim");
    has_str(lm_last_error(), "split: dim 2 is out of range", "message");
    is_int(lm_split(t, 1, 0, NULL, 8), -1, "a NULL array with room for pieces");
    has_str(lm_last_error(), "split: NULL output array", "message");
    is_int(lm_chunk(t, 0, 0, p, 8), -1, "chunk into 0 pieces");
    has_str(lm_last_error(), "chunk: chunks must be positive, got 0 (shape [5,2])", "message");
    is_int(lm_chunk(sc, 1, 0, p, 8), -1, "chunk of a 0-dim tensor");
    lm_clear_error();
    is_int(lm_chunk(NULL, 2, 0, p, 8), -1, "chunk of NULL");
    has_str(lm_last_error(), "chunk: NULL tensor argument", "message");
    lm_clear_error();

    lm_release(sc);
    lm_release(six);
    lm_release(e);
    lm_release(tt);
    lm_release(t);
}

/* ---- one_hot -------------------------------------------------------------------------------- */

static void test_one_hot(void)
{
    lm_tensor *i = make_index(LM_SHAPE(3), (int64_t[]){0, 2, 1});
    lm_tensor *r = lm_one_hot(i, 3);
    ok(r && r->dtype == LM_I64 && equals(r, LM_SHAPE(3, 3), (double[]){1, 0, 0, 0, 0, 1, 0, 1, 0}),
       "one_hot([0,2,1], 3)");
    lm_release(r);
    r = lm_one_hot(i, -1);
    ok(same_shape(r, LM_SHAPE(3, 3)), "num_classes -1 infers max + 1 = 3");
    lm_release(r);
    r = lm_one_hot(i, 5);
    ok(equals(r, LM_SHAPE(3, 5), (double[]){1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0}),
       "more classes than values");
    lm_release(r);
    lm_tensor *i2 = make_index(LM_SHAPE(2, 3), (int64_t[]){3, 0, 1, 1, 2, 3});
    lm_tensor *i2t = lm_transpose(i2, 0, 1); /* [3,2] strided */
    r = lm_one_hot(i2t, -1);
    bool good = same_shape(r, LM_SHAPE(3, 2, 4));
    for (int64_t a = 0; good && a < 3; a++)
        for (int64_t b = 0; good && b < 2; b++)
            for (int64_t c = 0; good && c < 4; c++)
                good = at(r, (int64_t[]){a, b, c}) == (at(i2t, (int64_t[]){a, b}) == c ? 1 : 0);
    ok(good, "one_hot of a transposed [3,2] index: [3,2,4]");
    lm_release(r);
    lm_tensor *s = lm_full(0, NULL, 1, LM_I64);
    r = lm_one_hot(s, 2);
    ok(equals(r, LM_SHAPE(2), (double[]){0, 1}), "one_hot of a 0-dim index is 1-D");
    lm_release(r);
    lm_tensor *e = lm_zeros(LM_SHAPE(0), LM_I64);
    r = lm_one_hot(e, 4);
    ok(same_shape(r, LM_SHAPE(0, 4)), "one_hot of an empty index");
    lm_release(r);

    ok(lm_one_hot(i, 2) == NULL && lm_last_status() == LM_ERR_INDEX, "value 2 with 2 classes");
    has_str(lm_last_error(), "one_hot: index 2 is out of range for 2 classes",
            "message names value and size");
    lm_tensor *neg = make_index(LM_SHAPE(2), (int64_t[]){1, -1});
    ok(lm_one_hot(neg, 3) == NULL && lm_last_status() == LM_ERR_INDEX, "negative value");
    has_str(lm_last_error(), "one_hot: index -1 is out of range", "message");
    ok(lm_one_hot(neg, -1) == NULL && lm_last_status() == LM_ERR_INDEX,
       "negative value, inferred classes");
    ok(lm_one_hot(e, -1) == NULL && lm_last_status() == LM_ERR_ARG,
       "inferring classes of an empty index");
    has_str(lm_last_error(), "one_hot: cannot infer the number of classes from an empty index",
            "message");
    lm_tensor *f = lm_zeros(LM_SHAPE(2), LM_F32);
    ok(lm_one_hot(f, 3) == NULL && lm_last_status() == LM_ERR_DTYPE, "f32 index");
    has_str(lm_last_error(), "one_hot: index must be i64, got f32", "message");
    lm_clear_error();
    ok(lm_one_hot(NULL, 3) == NULL, "NULL index");
    has_str(lm_last_error(), "one_hot: NULL tensor argument", "message");
    lm_clear_error();

    lm_release(f);
    lm_release(neg);
    lm_release(e);
    lm_release(s);
    lm_release(i2t);
    lm_release(i2);
    lm_release(i);
}

/* ---- large tensors with two threads --------------------------------------------------------- */

/* The parallel paths (row copies, iterator slices, scatter split along another dim, cat
 * ranges) against the same references. */
static void test_parallel(void)
{
    lm_set_num_threads(2);
    lm_tensor *t = iota(LM_F32, LM_SHAPE(3000, 40));
    /* Plain copies go parallel only from 2 MB on. */
    lm_tensor *wide = iota(LM_F32, LM_SHAPE(3000, 256));
    lm_tensor *rows = random_index(LM_SHAPE(2500), 3000);
    lm_tensor *r = lm_index_select(wide, 0, rows);
    ok(index_select_matches(r, wide, 0, rows), "2 threads: index_select of 2500 rows of 256");
    lm_release(r);
    lm_tensor *cols = random_index(LM_SHAPE(30), 40);
    r = lm_index_select(t, 1, cols);
    ok(index_select_matches(r, t, 1, cols), "2 threads: index_select of 30 of 40 columns");
    lm_release(r);
    lm_tensor *gi = random_index(LM_SHAPE(3000, 20), 40);
    r = lm_gather(t, 1, gi);
    ok(gather_matches(r, t, 1, gi), "2 threads: gather [3000,20] from [3000,40]");
    lm_release(r);
    lm_tensor *src = iota(LM_F32, LM_SHAPE(3000, 20));
    lm_tensor *si = random_index(LM_SHAPE(3000, 20), 5);
    lm_tensor *z = lm_zeros(LM_SHAPE(3000, 5), LM_F32);
    r = lm_scatter_add(z, 1, si, src);
    ok(scatter_add_matches(r, z, 1, si, src),
       "2 threads: scatter_add into 5 columns, split along rows");
    lm_release(r);
    lm_tensor *si0 = random_index(LM_SHAPE(3000, 20), 7);
    lm_tensor *z0 = lm_zeros(LM_SHAPE(7, 20), LM_F32);
    r = lm_scatter_add(z0, 0, si0, src);
    ok(scatter_add_matches(r, z0, 0, si0, src),
       "2 threads: scatter_add of 3000 rows into 7 (heavy repeats)");
    lm_release(r);
    lm_tensor *sbad = lm_clone(si0);
    ((int64_t *)lm_data(sbad))[2999 * 20 + 7] = 7;
    ok(lm_scatter_add(z0, 0, sbad, src) == NULL && lm_last_status() == LM_ERR_INDEX,
       "2 threads: scatter_add finds a bad value at the end of a large index");
    has_str(lm_last_error(), "scatter_add: index 7 is out of range for dim 0 of size 7", "message");
    lm_tensor *keep = lm_clone(z0);
    ok(lm_scatter_add_(z0, 0, sbad, src) == LM_ERR_INDEX && same_values(z0, keep),
       "2 threads: and scatter_add_ writes nothing then");
    lm_release(keep);
    lm_release(sbad);
    lm_tensor *tt = lm_transpose(t, 0, 1);
    r = lm_cat(4, (lm_tensor *[]){t, src, wide, t}, 1);
    ok(r && lm_nbytes(r) > (2 << 20) && cat_matches(r, 4, (lm_tensor *[]){t, src, wide, t}, 1),
       "2 threads: cat [3000,40],[3000,20],[3000,256],[3000,40] on dim 1");
    lm_release(r);
    r = lm_cat(2, (lm_tensor *[]){tt, tt}, 0);
    ok(cat_matches(r, 2, (lm_tensor *[]){tt, tt}, 0), "2 threads: cat of transposed views");
    lm_release(r);
    lm_tensor *m = random_index(LM_SHAPE(3000, 1), 2);
    lm_tensor *mu = lm_to_dtype(m, LM_U8);
    r = lm_masked_fill(t, mu, -3);
    ok(masked_fill_matches(r, t, mu, -3), "2 threads: masked_fill of [3000,40] with a [3000,1] mask");
    lm_release(r);
    lm_tensor *labels = random_index(LM_SHAPE(4000), 10);
    r = lm_one_hot(labels, 10);
    bool good = same_shape(r, LM_SHAPE(4000, 10));
    for (int64_t a = 0; good && a < 4000; a++)
        for (int64_t c = 0; good && c < 10; c++)
            good = at(r, (int64_t[]){a, c}) == (at(labels, (int64_t[]){a}) == c ? 1 : 0);
    ok(good, "2 threads: one_hot of 4000 labels");
    lm_release(r);
    lm_tensor *bad = lm_clone(gi);
    ((int64_t *)lm_data(bad))[3000 * 20 - 1] = -7;
    ok(lm_gather(t, 1, bad) == NULL && lm_last_status() == LM_ERR_INDEX,
       "2 threads: a bad value at the end of a large index is found");
    has_str(lm_last_error(), "gather: index -7 is out of range for dim 1 of size 40", "message");
    lm_release(bad);
    lm_tensor *badrows = lm_clone(rows);
    ((int64_t *)lm_data(badrows))[1234] = 3000;
    ok(lm_index_select(wide, 0, badrows) == NULL && lm_last_status() == LM_ERR_INDEX,
       "2 threads: a bad row in a large row copy is found");
    has_str(lm_last_error(), "index_select: index 3000 is out of range for dim 0 of size 3000",
            "message");
    lm_release(badrows);
    lm_tensor *many = random_index(LM_SHAPE(40000), 3000);
    ((int64_t *)lm_data(many))[39999] = -5;
    ok(lm_index_select(t, 0, many) == NULL && lm_last_status() == LM_ERR_INDEX,
       "2 threads: the check of a 40000-value index finds its last value");
    has_str(lm_last_error(), "index_select: index -5 is out of range for dim 0 of size 3000", "message");
    lm_release(many);
    lm_release(labels);
    lm_release(mu);
    lm_release(m);
    lm_release(tt);
    lm_release(z0);
    lm_release(si0);
    lm_release(z);
    lm_release(si);
    lm_release(src);
    lm_release(gi);
    lm_release(cols);
    lm_release(rows);
    lm_release(wide);
    lm_release(t);
    lm_set_num_threads(1);
}

/* ---- allocation failures -------------------------------------------------------------------- */

/* Failing each allocation in turn: every op either succeeds or reports LM_ERR_MEMORY, and
 * leaks nothing on the way out (valgrind checks the latter). */
static lm_tensor *armed(int k, int op, lm_tensor *a, lm_tensor *i, lm_tensor *gi, lm_tensor *m)
{
    lm_tensor *p[4];
    lm_clear_error();
    lm_debug_fail_alloc_after(k);
    lm_tensor *r = NULL;
    switch (op) {
    case 0: r = lm_index_select(a, 1, i); break;
    case 1: r = lm_gather(a, 0, gi); break;
    case 2: r = lm_scatter_add(a, 0, gi, a); break;
    case 3: r = lm_masked_fill(a, m, 3); break;
    case 4: r = lm_cat(2, (lm_tensor *[]){a, a}, 1); break;
    case 5: r = lm_stack(3, (lm_tensor *[]){a, a, a}, 1); break;
    case 6: r = lm_one_hot(gi, 4); break;
    default: {
        int n = lm_split(a, 1, 0, p, 4);
        if (n > 0) {
            r = lm_retain(p[n - 1]);
            release_all(p, n);
        }
    }
    }
    lm_debug_fail_alloc_after(0);
    return r;
}

static void test_alloc_failures(void)
{
    lm_tensor *a = iota(LM_F32, LM_SHAPE(3, 4));
    lm_tensor *i = make_index(LM_SHAPE(2), (int64_t[]){2, 0});
    lm_tensor *gi = make_index(LM_SHAPE(1, 4), (int64_t[]){2, 0, 1, 1});
    lm_tensor *m = make(LM_F32, LM_SHAPE(4), (double[]){1, 0, 0, 1});
    const char *names[] = {"index_select", "gather", "scatter_add", "masked_fill", "cat", "stack",
                           "one_hot", "split"};
    for (int op = 0; op < 8; op++) {
        bool first_fails = true, consistent = true, recovers = false;
        for (int k = 1; k <= 8; k++) {
            lm_tensor *r = armed(k, op, a, i, gi, m);
            if (k == 1) first_fails = r == NULL && lm_last_status() == LM_ERR_MEMORY;
            consistent &= r != NULL || lm_last_status() == LM_ERR_MEMORY;
            recovers |= r != NULL;
            lm_release(r);
        }
        ok(first_fails && consistent && recovers,
           "%s: failed allocations give LM_ERR_MEMORY, later ones succeed", names[op]);
    }
    lm_clear_error();
    lm_release(m);
    lm_release(gi);
    lm_release(i);
    lm_release(a);
}

int main(void)
{
    plan_auto();
    test_index_select();
    test_gather();
    test_scatter_add();
    test_masked_fill();
    test_cat();
    test_stack();
    test_split_chunk();
    test_one_hot();
    test_parallel();
    test_alloc_failures();
    return done();
}
