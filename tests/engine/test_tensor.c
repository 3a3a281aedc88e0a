/* test_tensor.c — lifetime, inspection, basic constructors, dtypes, errors and allocation
 * failures of the engine core. */
#include "lumen.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_constructors(void)
{
    lm_tensor *z = lm_zeros(LM_SHAPE(2, 3), LM_F32);
    ok(z && z->ndim == 2 && z->shape[0] == 2 && z->shape[1] == 3, "zeros has shape [2,3]");
    is_int(z->strides[0], 3, "row stride 3");
    is_int(z->strides[1], 1, "column stride 1");
    is_int(lm_numel(z), 6, "numel 6");
    is_int((int64_t)lm_nbytes(z), 24, "24 bytes");
    ok(((uintptr_t)lm_data(z) & 63) == 0, "storage is 64-byte aligned");
    bool all_zero = true;
    for (int i = 0; i < 6; i++) all_zero &= ((float *)lm_data(z))[i] == 0.0f;
    ok(all_zero, "zeros are zero");
    lm_release(z);

    lm_tensor *f = lm_full(LM_SHAPE(4), 2.5, LM_F64);
    bool all = true;
    for (int i = 0; i < 4; i++) all &= ((double *)lm_data(f))[i] == 2.5;
    ok(all, "full f64 2.5");
    lm_release(f);

    lm_tensor *o = lm_ones(LM_SHAPE(3), LM_U8);
    ok(((uint8_t *)lm_data(o))[2] == 1, "ones u8");
    lm_release(o);

    int64_t vals[] = {1, -2, 3, 4, 5, 6};
    lm_tensor *d = lm_from_data(vals, LM_I64, LM_SHAPE(3, 2));
    double v = 0;
    ok(lm_get(d, (int64_t[]){1, 0}, &v) == LM_OK && v == 3, "get [1,0] of from_data is 3");
    ok(lm_get(d, (int64_t[]){-1, -1}, &v) == LM_OK && v == 6, "negative indices count from the end");
    ok(lm_set(d, (int64_t[]){0, 1}, 42) == LM_OK && ((int64_t *)lm_data(d))[1] == 42, "set writes");
    ok(lm_get(d, (int64_t[]){3, 0}, &v) == LM_ERR_INDEX, "get out of range fails");
    has_str(lm_last_error(), "index 3 is out of range for dim 0 of size 3", "message names index and size");
    ok(lm_item(d, &v) == LM_ERR_SHAPE, "item of 6 elements fails");
    has_str(lm_last_error(), "[3,2]", "item message names the shape");
    lm_tensor *like = lm_ones_like(d);
    ok(like && like->dtype == LM_I64 && like->shape[1] == 2 && ((int64_t *)lm_data(like))[5] == 1,
       "ones_like keeps shape and dtype");
    lm_release(like);
    lm_release(d);

    lm_tensor *s = lm_scalar(3.5, LM_F32);
    ok(s && s->ndim == 0 && lm_numel(s) == 1, "scalar is 0-dim with one element");
    ok(lm_item(s, &v) == LM_OK && v == 3.5, "item of scalar");
    lm_release(s);

    lm_tensor *e = lm_zeros(LM_SHAPE(0, 5), LM_F32);
    ok(e && lm_numel(e) == 0 && e->shape[1] == 5, "empty [0,5] tensor");
    ok(lm_is_contiguous(e), "empty tensor is contiguous");
    lm_release(e);
}

static void test_errors(void)
{
    lm_clear_error();
    is_str(lm_last_error(), "", "no error after clear");
    ok(lm_zeros(LM_SHAPE(2, -1), LM_F32) == NULL, "negative size fails");
    ok(lm_last_status() == LM_ERR_ARG, "status is LM_ERR_ARG");
    has_str(lm_last_error(), "negative size -1 in shape [2,-1]", "message names the shape");
    ok(lm_empty(9, (int64_t[9]){1, 1, 1, 1, 1, 1, 1, 1, 1}, LM_F32) == NULL, "9 dims fail");
    has_str(lm_last_error(), "0 to 8", "message gives the dim limit");
    ok(lm_zeros(LM_SHAPE(2), (lm_dtype)17) == NULL, "unknown dtype fails");
    has_str(lm_last_error(), "unknown dtype", "message says unknown dtype");
    ok(lm_zeros(LM_SHAPE(1LL << 40, 1LL << 30), LM_F32) == NULL, "absurd size fails cleanly");
    ok(lm_last_status() == LM_ERR_MEMORY, "as an out-of-memory error");

    /* A NULL argument keeps the first message, so a chain reports where it broke. */
    lm_tensor *bad = lm_zeros(LM_SHAPE(-3), LM_F32);
    lm_tensor *r = lm_transpose(bad, 0, 1);
    ok(r == NULL, "an op on NULL returns NULL");
    has_str(lm_last_error(), "negative size -3", "the first error survives the chain");
    lm_clear_error();
    ok(lm_contiguous(NULL) == NULL, "NULL argument alone fails");
    has_str(lm_last_error(), "contiguous: NULL tensor argument", "and says so");
    is_str(lm_status_name(LM_ERR_SHAPE), "shape error", "status names");
}

static void test_alloc_failure(void)
{
    /* Fail each of the first allocations in turn: every failure is reported, nothing leaks
     * (valgrind/ASan check the latter). */
    int failures = 0;
    for (int n = 1; n <= 4; n++) {
        lm_debug_fail_alloc_after(n);
        lm_tensor *t = lm_zeros(LM_SHAPE(16, 16), LM_F32);
        lm_tensor *c = t ? lm_clone(t) : NULL;
        if (!t || !c) {
            failures++;
            ok(lm_last_status() == LM_ERR_MEMORY, "allocation %d: reported as out of memory", n);
        }
        lm_release(c);
        lm_release(t);
        lm_debug_fail_alloc_after(0);
    }
    ok(failures == 4, "each of the first 4 allocations was made to fail (%d)", failures);
    lm_tensor *t = lm_zeros(LM_SHAPE(4), LM_F32);
    ok(t != NULL, "allocations work again after disarming");
    lm_release(t);
}

static void test_dtypes(void)
{
    is_str(lm_dtype_name(LM_F32), "f32", "f32 name");
    is_str(lm_dtype_name(LM_U8), "u8", "u8 name");
    is_int((int64_t)lm_dtype_size(LM_I64), 8, "i64 size");
    ok(lm_promote_types(LM_U8, LM_I64) == LM_I64, "u8+i64 -> i64");
    ok(lm_promote_types(LM_I64, LM_F32) == LM_F32, "i64+f32 -> f32");
    ok(lm_promote_types(LM_F64, LM_F32) == LM_F64, "f64+f32 -> f64");
    ok(lm_promote_types(LM_U8, LM_U8) == LM_U8, "u8+u8 -> u8");
    ok(lm_dtype_is_float(LM_F64) && !lm_dtype_is_float(LM_I64), "is_float");
    char buf[64];
    is_str(lm_shape_str(3, (int64_t[]){64, 10, 1}, buf, sizeof buf), "[64,10,1]", "shape_str");
    is_str(lm_shape_str(0, NULL, buf, sizeof buf), "[]", "shape_str of a 0-dim shape");
    is_str(lm_shape_str(2, (int64_t[]){123456, 7}, buf, 8), "[123456", "shape_str truncates safely");
}

static void test_refcount(void)
{
    lm_tensor *t = lm_ones(LM_SHAPE(3), LM_F32);
    lm_tensor *u = lm_retain(t);
    ok(u == t && t->refcount == 2, "retain adds a reference");
    lm_release(u);
    is_int(t->refcount, 1, "release drops it");
    lm_tensor *v = lm_transpose(t, 0, 0);
    is_int(t->storage->refcount, 2, "a view shares the storage");
    lm_release(t);
    ok(((float *)lm_data(v))[2] == 1.0f, "the view keeps the storage alive");
    lm_release(v);
    lm_release(NULL);
    ok(lm_retain(NULL) == NULL, "retain/release accept NULL");
}

int main(void)
{
    plan_auto();
    test_constructors();
    test_errors();
    test_alloc_failure();
    test_dtypes();
    test_refcount();
    return done();
}
