/* test_threads.c — the element iterator visits every element exactly once, in any layout and for
 * any thread count, and copies agree between 1 and 2 threads. */
#include "internal.h"
#include "lumen.h"
#include "tap.h"

#include <string.h>

/* Operand 0: an i64 counter per element, incremented; operand 1: the expected flat index
 * (i64), copied into a check buffer so the pairing of operands is verified too. */
static void count_visit(char **d, const int64_t *s, int64_t n, void *ctx)
{
    (void)ctx;
    for (int64_t i = 0; i < n; i++) {
        int64_t *c = (int64_t *)(d[0] + i * s[0]);
        const int64_t *want = (const int64_t *)(d[1] + i * s[1]);
        *c += 1 + 1000 * *want;
    }
}

/* Checks one layout: out is a view (maybe strided) of a zeroed buffer; idx holds each
 * element's C-order index laid out the same way as out. */
static bool visits_once(lm_tensor *out, lm_tensor *idx)
{
    for (int64_t i = 0; i < lm_numel(idx); i++) *(int64_t *)lm__elem_ptr(idx, i) = i;
    const lm_tensor *ops[2] = {out, idx};
    lm__iter(2, ops, count_visit, NULL, true);
    for (int64_t i = 0; i < lm_numel(out); i++)
        if (*(int64_t *)lm__elem_ptr(out, i) != 1 + 1000 * i) return false;
    return true;
}

static void test_iterator(int threads)
{
    lm_set_num_threads(threads);
    is_int(lm_get_num_threads(), threads, "thread count set to %d", threads);
    /* Sizes above the parallel grain, with odd extents so slices end mid-row. */
    const int64_t shapes[][3] = {{1, 1, 100003}, {3, 257, 129}, {1021, 1, 67}, {2, 3, 5}};
    for (int s = 0; s < 4; s++) {
        const int64_t *sh = shapes[s];
        lm_tensor *a = lm_zeros(3, sh, LM_I64), *ia = lm_zeros(3, sh, LM_I64);
        ok(visits_once(a, ia), "%d threads: contiguous [%lld,%lld,%lld] visited once each", threads,
           (long long)sh[0], (long long)sh[1], (long long)sh[2]);
        lm_release(ia);
        lm_release(a);
        /* A permuted layout: out is a transposed view, idx contiguous. */
        int64_t tsh[3] = {sh[2], sh[1], sh[0]};
        lm_tensor *b = lm_zeros(3, tsh, LM_I64);
        lm_tensor *bt = lm_permute(b, (int[]){2, 1, 0});
        lm_tensor *ib = lm_zeros(3, sh, LM_I64);
        ok(visits_once(bt, ib), "%d threads: permuted view of [%lld,%lld,%lld] visited once each", threads,
           (long long)sh[0], (long long)sh[1], (long long)sh[2]);
        lm_release(ib);
        lm_release(bt);
        lm_release(b);
    }
    /* A stepped slice and an expanded (stride 0) input. */
    lm_tensor *big = lm_zeros(LM_SHAPE(400, 300), LM_I64);
    lm_tensor *sl = lm_slice(big, 1, 1, 300, 3);
    lm_tensor *isl = lm_zeros(LM_SHAPE(400, 100), LM_I64);
    lm_tensor *islt = lm_slice(isl, 1, 0, 100, 1);
    ok(visits_once(sl, islt), "%d threads: stepped slice visited once each", threads);
    lm_release(islt);
    lm_release(isl);
    lm_release(sl);
    lm_release(big);
}

static void test_copy_agrees(void)
{
    lm_tensor *src = lm_empty(LM_SHAPE(300, 500), LM_F64);
    for (int64_t i = 0; i < lm_numel(src); i++) ((double *)lm_data(src))[i] = (double)(i % 977) * 0.5;
    lm_tensor *t = lm_transpose(src, 0, 1);
    lm_set_num_threads(1);
    lm_tensor *one = lm_to_dtype(t, LM_F32);
    lm_set_num_threads(2);
    lm_tensor *two = lm_to_dtype(t, LM_F32);
    ok(one && two && memcmp(lm_data(one), lm_data(two), lm_nbytes(one)) == 0,
       "transposed f64 -> f32 copy is identical with 1 and 2 threads");
    bool good = true;
    for (int i = 0; i < 500 && good; i += 37)
        for (int j = 0; j < 300; j += 29)
            good &= ((float *)lm_data(two))[i * 300 + j] == (float)((double)((j * 500 + i) % 977) * 0.5);
    ok(good, "and has the right values");
    lm_release(two);
    lm_release(one);
    lm_release(t);
    lm_release(src);
}

int main(void)
{
    plan_auto();
    test_iterator(1);
    test_iterator(2);
    test_copy_agrees();
    return done();
}
