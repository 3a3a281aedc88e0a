/* test_copy.c — contiguous, clone, dtype conversion, copy_ with broadcasting, fill_, and the
 * overlap rules of writes. */
#include "lumen.h"
#include "tap.h"

#include <math.h>

static lm_tensor *iota(int ndim, const int64_t *shape, lm_dtype dt)
{
    lm_tensor *t = lm_empty(ndim, shape, LM_F64);
    for (int64_t i = 0; i < lm_numel(t); i++) ((double *)lm_data(t))[i] = (double)i;
    lm_tensor *r = lm_to_dtype(t, dt);
    lm_release(t);
    return r;
}

static double at(const lm_tensor *t, const int64_t *idx)
{
    double v = -1;
    lm_get(t, idx, &v);
    return v;
}

static void test_contiguous_clone(void)
{
    lm_tensor *a = iota(LM_SHAPE(3, 4), LM_F32);
    lm_tensor *c = lm_contiguous(a);
    ok(c == a, "contiguous of a contiguous tensor is the same tensor");
    lm_release(c);
    lm_tensor *t = lm_transpose(a, 0, 1);
    lm_tensor *tc = lm_contiguous(t);
    ok(tc && tc != t && lm_is_contiguous(tc) && tc->storage != a->storage, "contiguous copies a transposed view");
    bool good = true;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) good &= ((float *)lm_data(tc))[i * 3 + j] == (float)(j * 4 + i);
    ok(good, "values of contiguous(transpose) in C order");
    lm_tensor *cl = lm_clone(a);
    ok(cl && cl->storage != a->storage && at(cl, (int64_t[]){2, 3}) == 11, "clone copies");
    lm_set(cl, (int64_t[]){0, 0}, 99);
    ok(at(a, (int64_t[]){0, 0}) == 0, "clone is independent of the original");
    lm_tensor *s = lm_slice(a, 1, 0, 4, 3); /* columns 0 and 3 */
    lm_tensor *sc = lm_clone(s);
    ok(sc && lm_is_contiguous(sc) && at(sc, (int64_t[]){2, 1}) == 11, "clone of a stepped slice");
    lm_tensor *r1 = lm_select(a, 0, 1);
    lm_tensor *e = lm_expand(r1, LM_SHAPE(2, 4));
    lm_tensor *ec = lm_contiguous(e);
    ok(ec && at(ec, (int64_t[]){1, 2}) == 6, "contiguous of an expanded view materialises it");
    lm_release(ec);
    lm_release(r1);
    lm_release(e);
    lm_release(sc);
    lm_release(s);
    lm_release(cl);
    lm_release(tc);
    lm_release(t);
    lm_release(a);
}

static void test_to_dtype(void)
{
    double vals[] = {-1.5, 0.0, 2.7, 255.0, 300.0, NAN};
    lm_tensor *d = lm_from_data(vals, LM_F64, LM_SHAPE(6));
    lm_tensor *i = lm_to_dtype(d, LM_I64);
    const int64_t *ip = lm_data(i);
    ok(ip[0] == -1 && ip[2] == 2 && ip[3] == 255 && ip[4] == 300, "f64 -> i64 truncates toward zero");
    ok(ip[5] == 0, "NaN -> i64 gives 0");
    lm_tensor *f = lm_to_dtype(d, LM_F32);
    ok(((float *)lm_data(f))[2] == 2.7f && isnan(((float *)lm_data(f))[5]), "f64 -> f32 rounds, keeps NaN");
    lm_tensor *u = lm_to_dtype(i, LM_U8);
    ok(((uint8_t *)lm_data(u))[3] == 255 && ((uint8_t *)lm_data(u))[4] == (uint8_t)300, "i64 -> u8 wraps");
    lm_tensor *back = lm_to_dtype(u, LM_F64);
    ok(((double *)lm_data(back))[3] == 255.0, "u8 -> f64");
    lm_tensor *same = lm_to_dtype(d, LM_F64);
    ok(same == d, "to the same dtype returns the tensor itself");
    lm_release(same);
    ok(lm_to_dtype(d, (lm_dtype)9) == NULL, "unknown dtype fails");
    has_str(lm_last_error(), "to: unknown dtype 9", "message");
    lm_tensor *base = iota(LM_SHAPE(2, 3), LM_I64);
    lm_tensor *t = lm_transpose(base, 0, 1);
    lm_tensor *tf = lm_to_dtype(t, LM_F32);
    ok(tf && lm_is_contiguous(tf) && ((float *)lm_data(tf))[1] == 3.0f, "conversion of a transposed view");
    lm_release(tf);
    lm_release(back);
    lm_release(u);
    lm_release(f);
    lm_release(i);
    lm_release(d);
    lm_release(t);
    lm_release(base);
}

static void test_copy_fill(void)
{
    lm_tensor *dst = lm_zeros(LM_SHAPE(3, 4), LM_F64);
    lm_tensor *row = iota(LM_SHAPE(4), LM_I64);
    ok(lm_copy_(dst, row) == LM_OK, "copy_ broadcasts a row into a matrix");
    ok(at(dst, (int64_t[]){2, 3}) == 3 && at(dst, (int64_t[]){0, 1}) == 1, "every row holds the source");
    uint32_t v0 = dst->storage->version;
    lm_tensor *col = iota(LM_SHAPE(3, 1), LM_F32);
    lm_tensor *dt = lm_transpose(dst, 0, 1); /* write through a transposed view */
    lm_tensor *colt = lm_transpose(col, 0, 1);
    ok(lm_copy_(dt, colt) == LM_OK, "copy_ into a transposed view");
    ok(at(dst, (int64_t[]){2, 0}) == 2 && at(dst, (int64_t[]){1, 3}) == 1, "values land in the base");
    ok(dst->storage->version > v0, "copy_ bumps the version counter");
    lm_tensor *bad = iota(LM_SHAPE(5), LM_F32);
    ok(lm_copy_(dst, bad) == LM_ERR_SHAPE, "copy_ of [5] into [3,4] fails");
    has_str(lm_last_error(), "copy_: source shape [5] cannot be broadcast to [3,4]", "message names both shapes");
    ok(lm_fill_(dst, 7.25) == LM_OK && at(dst, (int64_t[]){1, 1}) == 7.25, "fill_");
    lm_tensor *sl = lm_slice(dst, 1, 0, 4, 2);
    ok(lm_fill_(sl, -1) == LM_OK && at(dst, (int64_t[]){2, 2}) == -1 && at(dst, (int64_t[]){2, 1}) == 7.25,
       "fill_ of a stepped slice touches only its elements");
    ok(lm_zero_(dst) == LM_OK && at(dst, (int64_t[]){2, 2}) == 0, "zero_");
    /* Overlapping source and destination in one storage: a shifted copy must read old values. */
    lm_tensor *v = iota(LM_SHAPE(6), LM_F32);
    lm_tensor *lo = lm_narrow(v, 0, 0, 5), *hi = lm_narrow(v, 0, 1, 5);
    ok(lm_copy_(hi, lo) == LM_OK, "copy_ between overlapping views works");
    bool good = true;
    for (int k = 1; k < 6; k++) good &= ((float *)lm_data(v))[k] == (float)(k - 1);
    ok(good, "and gives the values from before the copy");
    lm_tensor *first = lm_narrow(v, 0, 0, 1);
    lm_tensor *ex = lm_expand(first, LM_SHAPE(4));
    lm_tensor *src4 = iota(LM_SHAPE(4), LM_F32);
    ok(lm_copy_(ex, src4) == LM_ERR_STATE, "copy_ into an expanded view is refused");
    has_str(lm_last_error(), "more than one element of the written-to tensor", "message explains why");
    lm_tensor *e = lm_zeros(LM_SHAPE(0, 4), LM_F32), *e2 = lm_zeros(LM_SHAPE(4), LM_F32);
    ok(lm_copy_(e, e2) == LM_OK, "copy_ into an empty tensor is a no-op");
    lm_release(e2);
    lm_release(e);
    lm_release(src4);
    lm_release(ex);
    lm_release(first);
    lm_release(hi);
    lm_release(lo);
    lm_release(v);
    lm_release(sl);
    lm_release(bad);
    lm_release(colt);
    lm_release(dt);
    lm_release(col);
    lm_release(row);
    lm_release(dst);
}

int main(void)
{
    plan_auto();
    test_contiguous_clone();
    test_to_dtype();
    test_copy_fill();
    return done();
}
