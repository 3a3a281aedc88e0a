/* test_print.c — lm_to_string / lm_print against the exact text PyTorch 1.13 prints for the same
 * tensors (torch._tensor_str with our ", dtype=NAME" suffix added where PyTorch adds its own):
 * float modes (fixed, integral, scientific), nan/inf, widths, line wrapping, nesting, >= 3-D
 * blank lines, summarisation, empty and 0-dim tensors, non-contiguous views, and errors. */
#include "tap.h"

#include "lumen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Prints t, compares with want, releases t. */
static void check(lm_tensor *t, const char *want, const char *name)
{
    if (!ok(t != NULL, "%s: tensor made", name)) return;
    char *got = lm_to_string(t);
    is_str(got, want, "%s", name);
    free(got);
    lm_release(t);
}

static lm_tensor *f32s(int ndim, const int64_t *shape, const float *v)
{
    return lm_from_data(v, LM_F32, ndim, shape);
}

static void test_float_modes(void)
{
    check(f32s(LM_SHAPE(2, 2), (const float[]){1.0f, 2.5f, 3.0f, 4.0f}),
          "tensor([[1.0000, 2.5000],\n"
          "        [3.0000, 4.0000]], dtype=f32)", "fixed 2x2");
    check(f32s(LM_SHAPE(3), (const float[]){1, 2, 3}),
          "tensor([1., 2., 3.], dtype=f32)", "integral floats");
    check(f32s(LM_SHAPE(2), (const float[]){1e-5f, 1.0f}),
          "tensor([1.0000e-05, 1.0000e+00], dtype=f32)", "scientific: min below 1e-4");
    check(f32s(LM_SHAPE(2), (const float[]){1e9f, 2.0f}),
          "tensor([1.0000e+09, 2.0000e+00], dtype=f32)", "scientific: integral, max above 1e8");
    check(f32s(LM_SHAPE(2), (const float[]){-1e-5f, 123.0f}),
          "tensor([-1.0000e-05,  1.2300e+02], dtype=f32)", "scientific: negative, padded");
    check(f32s(LM_SHAPE(4), (const float[]){1, NAN, INFINITY, -INFINITY}),
          "tensor([1., nan, inf, -inf], dtype=f32)", "nan and inf, integral mode");
    check(f32s(LM_SHAPE(3), (const float[]){0.5f, NAN, -INFINITY}),
          "tensor([0.5000,    nan,   -inf], dtype=f32)", "nan and inf, fixed mode, padded");
    check(f32s(LM_SHAPE(2), (const float[]){-NAN, NAN}),
          "tensor([nan, nan], dtype=f32)", "only nan (sign of nan not shown)");
    check(lm_zeros(LM_SHAPE(2, 3), LM_F32),
          "tensor([[0., 0., 0.],\n"
          "        [0., 0., 0.]], dtype=f32)", "zeros");
    check(f32s(LM_SHAPE(2), (const float[]){-0.0f, 1.5f}),
          "tensor([-0.0000, 1.5000], dtype=f32)", "negative zero");
    double wide[40];
    for (int i = 0; i < 40; i++) wide[i] = i % 2 ? -2.25 : 123456.5;
    check(lm_from_data(wide, LM_F64, LM_SHAPE(2, 20)),
          "tensor([[ 1.2346e+05, -2.2500e+00,  1.2346e+05, -2.2500e+00,  1.2346e+05,\n"
          "         -2.2500e+00,  1.2346e+05, -2.2500e+00,  1.2346e+05, -2.2500e+00,\n"
          "          1.2346e+05, -2.2500e+00,  1.2346e+05, -2.2500e+00,  1.2346e+05,\n"
          "         -2.2500e+00,  1.2346e+05, -2.2500e+00,  1.2346e+05, -2.2500e+00],\n"
          "        [ 1.2346e+05, -2.2500e+00,  1.2346e+05, -2.2500e+00,  1.2346e+05,\n"
          "         -2.2500e+00,  1.2346e+05, -2.2500e+00,  1.2346e+05, -2.2500e+00,\n"
          "          1.2346e+05, -2.2500e+00,  1.2346e+05, -2.2500e+00,  1.2346e+05,\n"
          "         -2.2500e+00,  1.2346e+05, -2.2500e+00,  1.2346e+05, -2.2500e+00]],\n"
          "       dtype=f64)", "rows wrap at 80 columns, f64");
}

static void test_scalars_and_empty(void)
{
    check(lm_scalar(3.5, LM_F32),
          "tensor(3.5000, dtype=f32)", "0-dim f32");
    check(lm_scalar(7, LM_I64),
          "tensor(7, dtype=i64)", "0-dim i64");
    check(lm_scalar(NAN, LM_F64),
          "tensor(nan, dtype=f64)", "0-dim nan");
    check(lm_zeros(LM_SHAPE(0, 3), LM_F32),
          "tensor([], size=(0, 3), dtype=f32)", "empty [0,3]");
    check(lm_zeros(LM_SHAPE(0), LM_I64),
          "tensor([], dtype=i64)", "empty 1-D: no size");
    check(lm_zeros(LM_SHAPE(2, 0, 3), LM_U8),
          "tensor([], size=(2, 0, 3), dtype=u8)", "empty [2,0,3] u8");
    check(lm_from_data((const uint8_t[]){1, 2, 3}, LM_U8, LM_SHAPE(1, 1, 3)),
          "tensor([[[1, 2, 3]]], dtype=u8)", "size-1 dims");
}

static void test_integers_and_wrapping(void)
{
    check(lm_from_data((const int64_t[]){-5, 10, 300}, LM_I64, LM_SHAPE(3)),
          "tensor([ -5,  10, 300], dtype=i64)", "i64 padded");
    check(lm_from_data((const uint8_t[]){0, 7, 255}, LM_U8, LM_SHAPE(3)),
          "tensor([  0,   7, 255], dtype=u8)", "u8 padded");
    check(lm_from_data((const int64_t[]){(INT64_C(1) << 62) + 1, -1}, LM_I64, LM_SHAPE(2)),
          "tensor([4611686018427387905,                  -1], dtype=i64)",
          "i64 beyond 2^53 keeps every digit");
    double r30[30];
    for (int i = 0; i < 30; i++) r30[i] = i;
    check(lm_from_data(r30, LM_F64, LM_SHAPE(30)),
          "tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.,\n"
          "        14., 15., 16., 17., 18., 19., 20., 21., 22., 23., 24., 25., 26., 27.,\n"
          "        28., 29.], dtype=f64)", "1-D wraps by element count");
    float r25[25];
    for (int i = 0; i < 25; i++) r25[i] = (float)i / 8 - 1.5f;
    check(f32s(LM_SHAPE(25), r25),
          "tensor([-1.5000, -1.3750, -1.2500, -1.1250, -1.0000, -0.8750, -0.7500, -0.6250,\n"
          "        -0.5000, -0.3750, -0.2500, -0.1250,  0.0000,  0.1250,  0.2500,  0.3750,\n"
          "         0.5000,  0.6250,  0.7500,  0.8750,  1.0000,  1.1250,  1.2500,  1.3750,\n"
          "         1.5000], dtype=f32)", "continuation lines align under the bracket");
    double halves[9] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
    check(lm_from_data(halves, LM_F64, LM_SHAPE(9)),
          "tensor([0.5000, 0.5000, 0.5000, 0.5000, 0.5000, 0.5000, 0.5000, 0.5000, 0.5000],\n"
          "       dtype=f64)", "the dtype suffix moves to its own line past 80 columns");
}

static void test_nesting(void)
{
    float c[24];
    for (int i = 0; i < 24; i++) c[i] = (float)i;
    check(f32s(LM_SHAPE(2, 3, 4), c),
          "tensor([[[ 0.,  1.,  2.,  3.],\n"
          "         [ 4.,  5.,  6.,  7.],\n"
          "         [ 8.,  9., 10., 11.]],\n"
          "\n"
          "        [[12., 13., 14., 15.],\n"
          "         [16., 17., 18., 19.],\n"
          "         [20., 21., 22., 23.]]], dtype=f32)", "3-D: blank line between blocks");
    int64_t h[16];
    for (int i = 0; i < 16; i++) h[i] = i;
    check(lm_from_data(h, LM_I64, LM_SHAPE(2, 2, 2, 2)),
          "tensor([[[[ 0,  1],\n"
          "          [ 2,  3]],\n"
          "\n"
          "         [[ 4,  5],\n"
          "          [ 6,  7]]],\n"
          "\n"
          "\n"
          "        [[[ 8,  9],\n"
          "          [10, 11]],\n"
          "\n"
          "         [[12, 13],\n"
          "          [14, 15]]]], dtype=i64)", "4-D: two blank lines between outer blocks");
}

static void test_summarised(void)
{
    int64_t *a = malloc(6000 * sizeof *a);
    for (int i = 0; i < 6000; i++) a[i] = i;
    check(lm_from_data(a, LM_I64, LM_SHAPE(2000)),
          "tensor([   0,    1,    2,  ..., 1997, 1998, 1999], dtype=i64)", "1-D summarised");
    check(lm_from_data(a, LM_I64, LM_SHAPE(10, 20, 30)),
          "tensor([[[   0,    1,    2,  ...,   27,   28,   29],\n"
          "         [  30,   31,   32,  ...,   57,   58,   59],\n"
          "         [  60,   61,   62,  ...,   87,   88,   89],\n"
          "         ...,\n"
          "         [ 510,  511,  512,  ...,  537,  538,  539],\n"
          "         [ 540,  541,  542,  ...,  567,  568,  569],\n"
          "         [ 570,  571,  572,  ...,  597,  598,  599]],\n"
          "\n"
          "        [[ 600,  601,  602,  ...,  627,  628,  629],\n"
          "         [ 630,  631,  632,  ...,  657,  658,  659],\n"
          "         [ 660,  661,  662,  ...,  687,  688,  689],\n"
          "         ...,\n"
          "         [1110, 1111, 1112,  ..., 1137, 1138, 1139],\n"
          "         [1140, 1141, 1142,  ..., 1167, 1168, 1169],\n"
          "         [1170, 1171, 1172,  ..., 1197, 1198, 1199]],\n"
          "\n"
          "        [[1200, 1201, 1202,  ..., 1227, 1228, 1229],\n"
          "         [1230, 1231, 1232,  ..., 1257, 1258, 1259],\n"
          "         [1260, 1261, 1262,  ..., 1287, 1288, 1289],\n"
          "         ...,\n"
          "         [1710, 1711, 1712,  ..., 1737, 1738, 1739],\n"
          "         [1740, 1741, 1742,  ..., 1767, 1768, 1769],\n"
          "         [1770, 1771, 1772,  ..., 1797, 1798, 1799]],\n"
          "\n"
          "        ...,\n"
          "\n"
          "        [[4200, 4201, 4202,  ..., 4227, 4228, 4229],\n"
          "         [4230, 4231, 4232,  ..., 4257, 4258, 4259],\n"
          "         [4260, 4261, 4262,  ..., 4287, 4288, 4289],\n"
          "         ...,\n"
          "         [4710, 4711, 4712,  ..., 4737, 4738, 4739],\n"
          "         [4740, 4741, 4742,  ..., 4767, 4768, 4769],\n"
          "         [4770, 4771, 4772,  ..., 4797, 4798, 4799]],\n"
          "\n"
          "        [[4800, 4801, 4802,  ..., 4827, 4828, 4829],\n"
          "         [4830, 4831, 4832,  ..., 4857, 4858, 4859],\n"
          "         [4860, 4861, 4862,  ..., 4887, 4888, 4889],\n"
          "         ...,\n"
          "         [5310, 5311, 5312,  ..., 5337, 5338, 5339],\n"
          "         [5340, 5341, 5342,  ..., 5367, 5368, 5369],\n"
          "         [5370, 5371, 5372,  ..., 5397, 5398, 5399]],\n"
          "\n"
          "        [[5400, 5401, 5402,  ..., 5427, 5428, 5429],\n"
          "         [5430, 5431, 5432,  ..., 5457, 5458, 5459],\n"
          "         [5460, 5461, 5462,  ..., 5487, 5488, 5489],\n"
          "         ...,\n"
          "         [5910, 5911, 5912,  ..., 5937, 5938, 5939],\n"
          "         [5940, 5941, 5942,  ..., 5967, 5968, 5969],\n"
          "         [5970, 5971, 5972,  ..., 5997, 5998, 5999]]], dtype=i64)",
          "3-D summarised in every dim");
    free(a);
    float *f = malloc(10000 * sizeof *f);
    for (int i = 0; i < 10000; i++) f[i] = (float)i;
    check(f32s(LM_SHAPE(100, 100), f),
          "tensor([[0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 9.7000e+01, 9.8000e+01,\n"
          "         9.9000e+01],\n"
          "        [1.0000e+02, 1.0100e+02, 1.0200e+02,  ..., 1.9700e+02, 1.9800e+02,\n"
          "         1.9900e+02],\n"
          "        [2.0000e+02, 2.0100e+02, 2.0200e+02,  ..., 2.9700e+02, 2.9800e+02,\n"
          "         2.9900e+02],\n"
          "        ...,\n"
          "        [9.7000e+03, 9.7010e+03, 9.7020e+03,  ..., 9.7970e+03, 9.7980e+03,\n"
          "         9.7990e+03],\n"
          "        [9.8000e+03, 9.8010e+03, 9.8020e+03,  ..., 9.8970e+03, 9.8980e+03,\n"
          "         9.8990e+03],\n"
          "        [9.9000e+03, 9.9010e+03, 9.9020e+03,  ..., 9.9970e+03, 9.9980e+03,\n"
          "         9.9990e+03]], dtype=f32)", "2-D summarised, scientific, rows wrapped");
    /* The formatter looks only at the shown values: the hidden 1e10 must not force "%.4e". */
    for (int i = 0; i < 2001; i++) f[i] = i < 3 ? 0.25f : i < 997 ? 1e10f : 0.5f;
    check(f32s(LM_SHAPE(2001), f),
          "tensor([0.2500, 0.2500, 0.2500,  ..., 0.5000, 0.5000, 0.5000], dtype=f32)",
          "hidden values do not change the format");
    for (int i = 0; i < 1006; i++) f[i] = i < 3 ? 1e-6f : i < 1003 ? 1.0f : 2.5f;
    check(f32s(LM_SHAPE(1006), f),
          "tensor([1.0000e-06, 1.0000e-06, 1.0000e-06,  ..., 2.5000e+00, 2.5000e+00,\n"
          "        2.5000e+00], dtype=f32)", "shown edges decide scientific mode");
    free(f);
}

static void test_views(void)
{
    lm_tensor *m = f32s(LM_SHAPE(2, 3), (const float[]){1, 2, 3, 4, 5, 6});
    check(lm_t(m),
          "tensor([[1., 4.],\n"
          "        [2., 5.],\n"
          "        [3., 6.]], dtype=f32)", "transposed view");
    lm_release(m);
    int64_t r[10];
    for (int i = 0; i < 10; i++) r[i] = i;
    lm_tensor *v = lm_from_data(r, LM_I64, LM_SHAPE(10));
    check(lm_slice(v, 0, 0, 10, 3),
          "tensor([0, 3, 6, 9], dtype=i64)", "sliced with step");
    lm_release(v);
    lm_tensor *row = f32s(LM_SHAPE(2), (const float[]){1.5f, 2.0f});
    check(lm_expand(row, LM_SHAPE(3, 2)),
          "tensor([[1.5000, 2.0000],\n"
          "        [1.5000, 2.0000],\n"
          "        [1.5000, 2.0000]], dtype=f32)", "expanded (stride 0)");
    lm_release(row);
}

/* A leaf that requires grad says so after the dtype, as PyTorch's "requires_grad=True". The
 * flag is set directly: printing only reads it. */
static void test_requires_grad_suffix(void)
{
    lm_tensor *t = f32s(LM_SHAPE(2), (const float[]){1.0f, 2.0f});
    t->requires_grad = true;
    char *s = lm_to_string(t);
    is_str(s, "tensor([1., 2.], dtype=f32, requires_grad=True)", "requires_grad suffix");
    free(s);
    lm_release(t);
}

/* lm_print writes the same text and a newline to stdout: capture fd 1 in a file. */
static void test_print_to_stdout(void)
{
    lm_tensor *t = f32s(LM_SHAPE(2), (const float[]){1.0f, 2.5f});
    char path[] = "/tmp/lumen_test_print_XXXXXX";
    int fd = mkstemp(path);
    if (!ok(fd >= 0, "temporary file")) {
        lm_release(t);
        return;
    }
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    lm_status st = lm_print(t);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    char buf[256] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    is_int(st, LM_OK, "lm_print succeeds");
    ok(n > 0, "lm_print wrote something");
    is_str(buf, "tensor([1.0000, 2.5000], dtype=f32)\n", "lm_print text and newline");
    lm_release(t);
}

static void test_errors(void)
{
    lm_clear_error();
    ok(lm_to_string(NULL) == NULL, "to_string(NULL) fails");
    is_int(lm_last_status(), LM_ERR_ARG, "NULL: LM_ERR_ARG");
    has_str(lm_last_error(), "to_string", "NULL: message names the op");
    lm_clear_error();
    is_int(lm_print(NULL), LM_ERR_ARG, "print(NULL) fails with LM_ERR_ARG");
    has_str(lm_last_error(), "NULL tensor", "print(NULL): message says why");
    lm_clear_error();
}

int main(void)
{
    plan_auto();
    test_float_modes();
    test_scalars_and_empty();
    test_integers_and_wrapping();
    test_nesting();
    test_summarised();
    test_views();
    test_requires_grad_suffix();
    test_print_to_stdout();
    test_errors();
    return done();
}
