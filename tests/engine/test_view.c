/* test_view.c — views share storage and address the right elements: checked against index
 * arithmetic written here, on contiguous and non-contiguous bases; sizes, steps and lengths at
 * the edge of int64 give clear errors or correct views, never wrapped arithmetic. */
#include "lumen.h"
#include "tap.h"

#include <stdint.h>
#include <string.h>

/* base: 0..n-1 as f32 in shape [2,3,4]. */
static lm_tensor *iota(int ndim, const int64_t *shape)
{
    lm_tensor *t = lm_empty(ndim, shape, LM_F32);
    for (int64_t i = 0; i < lm_numel(t); i++) ((float *)lm_data(t))[i] = (float)i;
    return t;
}

static double at(const lm_tensor *t, const int64_t *idx)
{
    double v = -1;
    lm_get(t, idx, &v);
    return v;
}

static void test_transpose_permute(void)
{
    lm_tensor *a = iota(LM_SHAPE(2, 3, 4));
    lm_tensor *t = lm_transpose(a, 0, 2);
    ok(t && t->shape[0] == 4 && t->shape[2] == 2, "transpose(0,2) shape [4,3,2]");
    ok(t->storage == a->storage, "transpose shares storage");
    ok(!lm_is_contiguous(t), "transposed is not contiguous");
    bool good = true;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++)
                good &= at(t, (int64_t[]){k, j, i}) == i * 12 + j * 4 + k;
    ok(good, "transpose addresses a[i][j][k] at [k][j][i]");
    lm_tensor *p = lm_permute(a, (int[]){1, 2, 0});
    good = p && p->shape[0] == 3 && p->shape[1] == 4 && p->shape[2] == 2;
    for (int i = 0; good && i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) good &= at(p, (int64_t[]){j, k, i}) == i * 12 + j * 4 + k;
    ok(good, "permute(1,2,0) addresses a[i][j][k] at [j][k][i]");
    ok(lm_permute(a, (int[]){0, 0, 1}) == NULL, "permute with a repeated dim fails");
    has_str(lm_last_error(), "permute: dim 0 appears twice", "message names the dim");
    ok(lm_transpose(a, 0, 3) == NULL, "transpose with dim 3 of 3 dims fails");
    has_str(lm_last_error(), "transpose: dim 3 is out of range for a tensor of 3 dims", "message");
    lm_tensor *m = iota(LM_SHAPE(2, 3));
    lm_tensor *mt = lm_t(m);
    ok(mt && mt->shape[0] == 3 && at(mt, (int64_t[]){2, 1}) == 5, "t() of a matrix");
    ok(lm_t(a) == NULL, "t() of 3 dims fails");
    has_str(lm_last_error(), "at most 2 dims, got shape [2,3,4]", "message names the shape");
    lm_release(mt);
    lm_release(m);
    lm_release(p);
    lm_release(t);
    lm_release(a);
}

static void test_view_reshape(void)
{
    lm_tensor *a = iota(LM_SHAPE(2, 3, 4));
    lm_tensor *v = lm_view(a, LM_SHAPE(6, -1));
    ok(v && v->shape[0] == 6 && v->shape[1] == 4 && v->storage == a->storage, "view [6,-1] infers 4");
    ok(at(v, (int64_t[]){5, 3}) == 23, "view addresses the last element");
    lm_release(v);
    ok(lm_view(a, LM_SHAPE(5, -1)) == NULL, "view to [5,-1] fails");
    has_str(lm_last_error(), "view: shape [5,-1] is invalid for input of size 24 (shape [2,3,4])",
            "message names both shapes");
    ok(lm_view(a, LM_SHAPE(-1, -1)) == NULL, "two -1 fail");
    has_str(lm_last_error(), "only one dim can be -1", "message");

    /* A transposed tensor cannot be flattened without a copy: view fails, reshape copies. */
    lm_tensor *t = lm_transpose(a, 1, 2); /* [2,4,3] */
    ok(lm_view(t, LM_SHAPE(24)) == NULL, "view of a transposed tensor to [24] fails");
    has_str(lm_last_error(), "not compatible with the input's size and strides", "message suggests reshape");
    lm_tensor *r = lm_reshape(t, LM_SHAPE(24));
    ok(r && r->storage != a->storage, "reshape copies when needed");
    bool good = true;
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 3; j++)
                good &= at(r, (int64_t[]){i * 12 + k * 3 + j}) == i * 12 + j * 4 + k;
    ok(good, "reshape of a transposed tensor has C-order values");
    lm_release(r);
    /* Splitting a dim of a transposed tensor is still a view. */
    lm_tensor *s = lm_view(t, LM_SHAPE(2, 2, 2, 3));
    ok(s && s->storage == a->storage, "view splitting a dim of a transposed tensor needs no copy");
    ok(s && at(s, (int64_t[]){1, 1, 0, 2}) == 12 + 2 * 4 + 2, "and addresses the right element");
    lm_release(s);
    lm_tensor *r2 = lm_reshape(a, LM_SHAPE(4, 6));
    ok(r2 && r2->storage == a->storage, "reshape of a contiguous tensor is a view");
    lm_release(r2);
    lm_tensor *f = lm_flatten(a, 1, -1);
    ok(f && f->ndim == 2 && f->shape[1] == 12 && f->storage == a->storage, "flatten(1,-1) -> [2,12] view");
    lm_release(f);
    lm_tensor *f0 = lm_flatten(t, 0, -1);
    ok(f0 && f0->ndim == 1 && f0->shape[0] == 24 && at(f0, (int64_t[]){1}) == 4, "flatten of transposed copies");
    lm_release(f0);
    ok(lm_flatten(a, 2, 1) == NULL, "flatten start after end fails");
    lm_tensor *e = lm_zeros(LM_SHAPE(0, 3), LM_F32);
    lm_tensor *ev = lm_view(e, LM_SHAPE(3, 0, -1));
    ok(ev == NULL, "view of an empty tensor with -1 is ambiguous and fails");
    ev = lm_view(e, LM_SHAPE(3, 0));
    ok(ev && lm_numel(ev) == 0, "empty tensor viewed as [3,0]");
    lm_release(ev);
    lm_release(e);
    lm_release(t);
    lm_release(a);
}

static void test_slice_select(void)
{
    lm_tensor *a = iota(LM_SHAPE(5, 4));
    lm_tensor *s = lm_slice(a, 0, 1, 5, 2); /* rows 1, 3 */
    ok(s && s->shape[0] == 2 && s->strides[0] == 8, "slice 1:5:2 -> 2 rows, stride 8");
    ok(at(s, (int64_t[]){1, 2}) == 14, "slice element [1,2] is a[3][2]");
    lm_tensor *s2 = lm_slice(a, 1, -3, 100, 1);
    ok(s2 && s2->shape[1] == 3 && at(s2, (int64_t[]){0, 0}) == 1, "negative start and clamped end");
    lm_tensor *s3 = lm_slice(a, 0, 4, 2, 1);
    ok(s3 && s3->shape[0] == 0, "end before start gives an empty slice");
    ok(lm_slice(a, 0, 0, 2, 0) == NULL, "step 0 fails");
    has_str(lm_last_error(), "step must be positive", "message");
    lm_tensor *n = lm_narrow(a, 1, 1, 2);
    ok(n && n->shape[1] == 2 && at(n, (int64_t[]){4, 1}) == 18, "narrow(1, 1, 2)");
    ok(lm_narrow(a, 1, 3, 2) == NULL, "narrow past the end fails");
    has_str(lm_last_error(), "start 3 and length 2 are out of range for dim 1 of size 4", "message");
    lm_tensor *r = lm_select(a, 0, -1);
    ok(r && r->ndim == 1 && r->shape[0] == 4 && at(r, (int64_t[]){0}) == 16, "select(0,-1) is the last row");
    lm_tensor *c = lm_select(a, 1, 2);
    ok(c && c->shape[0] == 5 && c->strides[0] == 4 && at(c, (int64_t[]){3}) == 14, "select a column");
    ok(lm_select(a, 0, 5) == NULL, "select out of range fails");
    has_str(lm_last_error(), "select: index 5 is out of range for dim 0 of size 5 (shape [5,4])", "message");
    lm_tensor *rc = lm_select(r, 0, 2);
    ok(rc && rc->ndim == 0 && at(rc, NULL) == 18, "select down to a 0-dim tensor");
    ok(lm_select(rc, 0, 0) == NULL, "select on a 0-dim tensor fails");
    lm_release(rc);
    lm_release(c);
    lm_release(r);
    lm_release(n);
    lm_release(s3);
    lm_release(s2);
    lm_release(s);
    lm_release(a);
}

static void test_expand_squeeze(void)
{
    lm_tensor *a = iota(LM_SHAPE(3, 1));
    lm_tensor *e = lm_expand(a, LM_SHAPE(2, 3, 4));
    ok(e && e->ndim == 3 && e->strides[0] == 0 && e->strides[2] == 0, "expand [3,1] -> [2,3,4] with stride 0");
    ok(at(e, (int64_t[]){1, 2, 3}) == 2, "expanded element");
    lm_tensor *e2 = lm_expand(a, LM_SHAPE(-1, 5));
    ok(e2 && e2->shape[0] == 3 && e2->shape[1] == 5, "expand with -1 keeps the size");
    ok(lm_expand(a, LM_SHAPE(4, 4)) == NULL, "expand 3 to 4 fails");
    has_str(lm_last_error(), "shape [3,1] cannot be expanded to [4,4]", "message names both shapes");
    ok(lm_expand(a, LM_SHAPE(4)) == NULL, "expand to fewer dims fails");
    lm_tensor *u = lm_unsqueeze(a, 0);
    ok(u && u->ndim == 3 && u->shape[0] == 1 && u->shape[1] == 3, "unsqueeze(0)");
    lm_tensor *u2 = lm_unsqueeze(a, -1);
    ok(u2 && u2->ndim == 3 && u2->shape[2] == 1, "unsqueeze(-1) appends");
    lm_tensor *sq = lm_squeeze_all(u2);
    ok(sq && sq->ndim == 1 && sq->shape[0] == 3, "squeeze_all removes every 1");
    lm_tensor *s1 = lm_squeeze(a, 0);
    ok(s1 && s1->ndim == 2, "squeeze of a dim of size 3 is a no-op");
    lm_tensor *s2 = lm_squeeze(a, 1);
    ok(s2 && s2->ndim == 1 && at(s2, (int64_t[]){2}) == 2, "squeeze(1)");
    ok(lm_unsqueeze(a, 3) == NULL, "unsqueeze(3) of 2 dims fails");
    lm_tensor *o = lm_ones(LM_SHAPE(7), LM_F32);
    lm_tensor *col = lm_select(a, 1, 0);
    ok(lm_expand_as(col, o) == NULL, "expand_as [3] to [7] fails");
    has_str(lm_last_error(), "shape [3] cannot be expanded to [7]", "message names both shapes");
    lm_release(col);
    lm_release(o);
    lm_release(s2);
    lm_release(s1);
    lm_release(sq);
    lm_release(u2);
    lm_release(u);
    lm_release(e2);
    lm_release(e);
    lm_release(a);
}

/* Sizes, steps and lengths near INT64_MAX (reachable from Lua as math.maxinteger): no wrapped
 * size may become a negative shape, an empty view or a numel that lies. */
static void test_int64_edges(void)
{
    lm_tensor *z = lm_zeros(LM_SHAPE(3), LM_F32);
    lm_tensor *s = lm_slice(z, 0, 0, 3, INT64_MAX);
    ok(s && s->ndim == 1 && s->shape[0] == 1 && s->offset == 0,
       "slice(0, 0, 3, INT64_MAX) of [3] is the first element");
    lm_release(s);
    lm_tensor *a = iota(LM_SHAPE(2, 3));
    s = lm_slice(a, 1, 1, INT64_MAX, INT64_MAX);
    ok(s && s->shape[0] == 2 && s->shape[1] == 1 && s->strides[1] == 1 &&
       at(s, (int64_t[]){1, 0}) == 4, "slice(1, 1, INT64_MAX, INT64_MAX) of [2,3] is column 1");
    lm_release(s);
    s = lm_slice(a, 0, 0, 2, INT64_MAX - 1);
    ok(s && s->shape[0] == 1 && s->strides[0] == 3 && at(s, (int64_t[]){0, 2}) == 2,
       "a huge step on a dim of stride 3 keeps the stride (one element)");
    lm_release(s);
    s = lm_slice(a, 1, INT64_MIN, INT64_MAX, 2);
    ok(s && s->shape[1] == 2 && s->strides[1] == 2 && at(s, (int64_t[]){1, 1}) == 5,
       "slice(1, INT64_MIN, INT64_MAX, 2) clamps to 0:3:2");
    lm_release(s);
    s = lm_slice(a, 1, INT64_MAX, INT64_MAX, INT64_MAX);
    ok(s && s->shape[1] == 0, "start at INT64_MAX gives an empty slice");
    lm_release(s);
    s = lm_slice(a, 1, 2, 3, 2);
    ok(s && s->shape[1] == 1 && at(s, (int64_t[]){1, 0}) == 5, "slice(1, 2, 3, 2): size 1");
    lm_release(s);
    s = lm_slice(a, 1, 0, 3, 3);
    ok(s && s->shape[1] == 1, "slice(1, 0, 3, 3): size 1");
    lm_release(s);
    s = lm_slice(a, 1, 0, 3, 2);
    ok(s && s->shape[1] == 2, "slice(1, 0, 3, 2): size 2 (ceil)");
    lm_release(s);

    /* The gradient of a huge-step slice goes back through a slice with the same step. */
    lm_tensor *x = iota(LM_SHAPE(3));
    lm_requires_grad_(x, true);
    s = lm_slice(x, 0, 1, 3, INT64_MAX);
    lm_tensor *seed = lm_ones(LM_SHAPE(1), LM_F32);
    ok(s && lm_backward(s, seed, false) == LM_OK && at(x->grad, (int64_t[]){0}) == 0 &&
       at(x->grad, (int64_t[]){1}) == 1 && at(x->grad, (int64_t[]){2}) == 0,
       "backward through slice(0, 1, 3, INT64_MAX)");
    lm_release(seed);
    lm_release(s);
    lm_release(x);

    ok(lm_narrow(z, 0, 2, INT64_MAX - 1) == NULL, "narrow(0, 2, INT64_MAX - 1) of [3] fails");
    has_str(lm_last_error(),
            "narrow: start 2 and length 9223372036854775806 are out of range for dim 0 of size 3",
            "message names start, length and size");
    ok(lm_narrow(z, 0, -1, INT64_MAX) == NULL, "narrow(0, -1, INT64_MAX) fails");
    has_str(lm_last_error(), "length 9223372036854775807 are out of range", "message");
    s = lm_narrow(z, 0, 3, 0);
    ok(s && s->shape[0] == 0, "narrow(0, 3, 0) is empty");
    lm_release(s);

    lm_tensor *z4 = lm_zeros(LM_SHAPE(4), LM_F32);
    ok(lm_expand(z4, LM_SHAPE((int64_t)1 << 62, 4)) == NULL, "expand [4] to [2^62,4] fails");
    has_str(lm_last_error(),
            "expand: shape [4611686018427387904,4] of f32 is too large: its size in bytes does not "
            "fit in 64 bits",
            "message names the shape");
    ok(lm_expand(z4, LM_SHAPE(INT64_MAX, INT64_MAX, 4)) == NULL, "expand to [max,max,4] fails");
    has_str(lm_last_error(), "expand: shape [9223372036854775807,9223372036854775807,4]", "message");
    ok(lm_expand(z4, LM_SHAPE(0, (int64_t)1 << 62, 4)) == NULL,
       "expand to [0,2^62,4] fails: no element, but its strides would overflow");
    lm_tensor *big = lm_expand(z4, LM_SHAPE((int64_t)1 << 40, 4));
    ok(big && lm_numel(big) == (int64_t)1 << 42 && big->strides[0] == 0,
       "expand [4] to [2^40,4] (2^44 bytes) is a fine view");
    lm_tensor *split = lm_view(big, LM_SHAPE((int64_t)1 << 40, 2, -1));
    ok(split && split->shape[2] == 2 && lm_numel(split) == (int64_t)1 << 42,
       "and a view of it as [2^40,2,-1] infers 2");
    lm_release(split);
    lm_release(big);

    /* (2^62 + 1) * 4 wraps to 4: the element count must not be compared after wrapping. */
    ok(lm_reshape(z4, LM_SHAPE(((int64_t)1 << 62) + 1, 4)) == NULL, "reshape [4] to [2^62+1,4] fails");
    has_str(lm_last_error(), "reshape: shape [4611686018427387905,4] of f32 is too large", "message");
    ok(lm_view(z4, LM_SHAPE(((int64_t)1 << 62) + 1, 4)) == NULL, "view [4] to [2^62+1,4] fails");
    has_str(lm_last_error(), "view: shape [4611686018427387905,4] of f32 is too large", "message");
    ok(lm_reshape(z4, LM_SHAPE((int64_t)1 << 62, 4, -1)) == NULL, "reshape to [2^62,4,-1] fails");
    has_str(lm_last_error(), "reshape: shape [4611686018427387904,4,-1] of f32 is too large", "message");
    lm_tensor *e = lm_zeros(LM_SHAPE(0), LM_F64);
    ok(lm_reshape(e, LM_SHAPE(0, (int64_t)1 << 61, 4)) == NULL,
       "reshape of an empty f64 tensor to [0,2^61,4] fails");
    has_str(lm_last_error(), "shape [0,2305843009213693952,4] of f64 is too large", "message");
    lm_tensor *ev = lm_reshape(e, LM_SHAPE(0, (int64_t)1 << 40, 4));
    ok(ev && lm_numel(ev) == 0 && ev->strides[0] == (int64_t)1 << 42,
       "reshape of an empty tensor to [0,2^40,4] has C strides");
    lm_release(ev);
    lm_release(e);

    ok(lm_empty(LM_SHAPE((int64_t)1 << 62, 4), LM_F32) == NULL, "empty [2^62,4] fails");
    has_str(lm_last_error(), "empty: shape [4611686018427387904,4] is too large", "message");
    ok(lm_empty(LM_SHAPE(INT64_MAX, INT64_MAX), LM_U8) == NULL, "empty [max,max] fails");
    has_str(lm_last_error(), "empty: shape [9223372036854775807,9223372036854775807] is too large",
            "message");
    ok(lm_zeros(LM_SHAPE((int64_t)1 << 32, (int64_t)1 << 32), LM_F32) == NULL,
       "zeros [2^32,2^32] fails");
    has_str(lm_last_error(), "is too large", "message");
    lm_release(z4);
    lm_release(a);
    lm_release(z);
}

int main(void)
{
    plan_auto();
    test_transpose_permute();
    test_view_reshape();
    test_slice_select();
    test_expand_squeeze();
    test_int64_edges();
    return done();
}
