/* test_nn_conv.c — conv1d, conv2d, conv_transpose2d, max/avg/adaptive-avg pooling: forward
 * values against direct loops written here (every option, f32 and f64), hand-worked cases and
 * max-pool indices, gradients by finite differences (one line per op and variant), thread-count
 * independence of the weight gradient, and the error messages. */
#include "gradcheck.h"
#include "lumen.h"
#include "tap.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------------------------------- */

/* A contiguous f64 copy of t, for reading its values. */
static lm_tensor *f64(const lm_tensor *t)
{
    lm_tensor *d = lm_to_dtype(t, LM_F64);
    lm_tensor *c = lm_contiguous(d);
    lm_release(d);
    return c;
}

static const double *vals(const lm_tensor *t) { return (const double *)lm_data(t); }

static lm_tensor *randn(int ndim, const int64_t *shape, lm_dtype dt)
{
    return lm_randn(ndim, shape, dt);
}

/* One TAP line: got has want's shape and every element is within tol * max(1, |want|). Takes
 * neither tensor. */
static void check_close(const lm_tensor *got, const lm_tensor *want, double tol, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));
static void check_close(const lm_tensor *got, const lm_tensor *want, double tol, const char *fmt,
                        ...)
{
    char name[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (!got || !want) {
        ok(false, "%s", name);
        diag("missing result: %s", lm_last_error());
        return;
    }
    bool same = got->ndim == want->ndim;
    for (int d = 0; same && d < got->ndim; d++) same = got->shape[d] == want->shape[d];
    if (!same) {
        char a[128], b[128];
        ok(false, "%s", name);
        diag("shape %s, want %s", lm_shape_str(got->ndim, got->shape, a, sizeof a),
             lm_shape_str(want->ndim, want->shape, b, sizeof b));
        return;
    }
    lm_tensor *g = f64(got), *w = f64(want);
    double worst = 0;
    int64_t where = -1;
    for (int64_t i = 0; i < lm_numel(w); i++) {
        double e = fabs(vals(g)[i] - vals(w)[i]) / fmax(1.0, fabs(vals(w)[i]));
        if (!(e <= worst)) {
            worst = e;
            where = i;
        }
    }
    ok(worst <= tol, "%s", name);
    if (!(worst <= tol))
        diag("element %lld: got %.10g, want %.10g", (long long)where, vals(g)[where],
             vals(w)[where]);
    lm_release(g);
    lm_release(w);
}

static void release_all(int n, lm_tensor **t)
{
    for (int i = 0; i < n; i++) lm_release(t[i]);
}

/* ---- direct references ---------------------------------------------------------------------- */

typedef struct {
    int s[2], p[2], d[2], op[2], groups;
} conv_cfg;

/* y[n, o, i, j] = b[o] + sum over the group's channels and the kernel of x * w, with the input
 * position i*s - p + ki*d read as zero outside. */
static lm_tensor *ref_conv2d(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                             conv_cfg c)
{
    lm_tensor *xd = f64(x), *wd = f64(w), *bd = b ? f64(b) : NULL;
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t O = w->shape[0], cg = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    const int64_t og = O / c.groups;
    const int64_t oh = (H + 2 * c.p[0] - c.d[0] * (kh - 1) - 1) / c.s[0] + 1;
    const int64_t ow = (W + 2 * c.p[1] - c.d[1] * (kw - 1) - 1) / c.s[1] + 1;
    lm_tensor *y = lm_zeros(LM_SHAPE(N, O, oh, ow), LM_F64);
    double *yv = lm_data(y);
    const double *X = vals(xd), *Wt = vals(wd);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double s = bd ? vals(bd)[o] : 0;
                    const int64_t g = o / og;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t a = 0; a < kh; a++)
                            for (int64_t e = 0; e < kw; e++) {
                                int64_t ih = i * c.s[0] - c.p[0] + a * c.d[0];
                                int64_t iw = j * c.s[1] - c.p[1] + e * c.d[1];
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                s += X[((n * C + g * cg + ci) * H + ih) * W + iw] *
                                     Wt[((o * cg + ci) * kh + a) * kw + e];
                            }
                    yv[((n * O + o) * oh + i) * ow + j] = s;
                }
    lm_release(xd);
    lm_release(wd);
    lm_release(bd);
    return y;
}

/* The transposed convolution scatters: x[n, c, i, j] * w[c, o, a, e] lands on
 * y[n, g*og + o, i*s - p + a*d, j*s - p + e*d]. */
static lm_tensor *ref_conv_transpose2d(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                                       conv_cfg c)
{
    lm_tensor *xd = f64(x), *wd = f64(w), *bd = b ? f64(b) : NULL;
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t og = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    const int64_t O = og * c.groups, cg = C / c.groups;
    const int64_t oh = (H - 1) * c.s[0] - 2 * c.p[0] + c.d[0] * (kh - 1) + c.op[0] + 1;
    const int64_t ow = (W - 1) * c.s[1] - 2 * c.p[1] + c.d[1] * (kw - 1) + c.op[1] + 1;
    lm_tensor *y = lm_zeros(LM_SHAPE(N, O, oh, ow), LM_F64);
    double *yv = lm_data(y);
    const double *X = vals(xd), *Wt = vals(wd);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++)
                    yv[((n * O + o) * oh + i) * ow + j] = bd ? vals(bd)[o] : 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t ci = 0; ci < C; ci++)
            for (int64_t i = 0; i < H; i++)
                for (int64_t j = 0; j < W; j++)
                    for (int64_t o = 0; o < og; o++)
                        for (int64_t a = 0; a < kh; a++)
                            for (int64_t e = 0; e < kw; e++) {
                                int64_t yi = i * c.s[0] - c.p[0] + a * c.d[0];
                                int64_t yj = j * c.s[1] - c.p[1] + e * c.d[1];
                                if (yi < 0 || yi >= oh || yj < 0 || yj >= ow) continue;
                                int64_t oc = ci / cg * og + o;
                                yv[((n * O + oc) * oh + yi) * ow + yj] +=
                                    X[((n * C + ci) * H + i) * W + j] *
                                    Wt[((ci * og + o) * kh + a) * kw + e];
                            }
    lm_release(xd);
    lm_release(wd);
    lm_release(bd);
    return y;
}

typedef struct {
    int k[2], s[2], p[2], d[2];
    bool ceil_mode, count_include_pad;
} pool_cfg;

/* PyTorch's output size rule, written out again. */
static int64_t ref_pool_size(int64_t in, int k, int s, int p, int d, bool ceil_mode)
{
    int64_t num = in + 2 * p - d * (k - 1) - 1;
    int64_t out = (ceil_mode ? (num + s - 1) / s : num / s) + 1;
    if (ceil_mode && (out - 1) * s >= in + p) out--;
    return out;
}

/* Max over the in-bounds window positions; index of the first max (NaN-free inputs). */
static lm_tensor *ref_max_pool(const lm_tensor *x, pool_cfg c, lm_tensor **idx)
{
    lm_tensor *xd = f64(x);
    const int64_t P = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t oh = ref_pool_size(H, c.k[0], c.s[0], c.p[0], c.d[0], c.ceil_mode);
    const int64_t ow = ref_pool_size(W, c.k[1], c.s[1], c.p[1], c.d[1], c.ceil_mode);
    lm_tensor *y = lm_zeros(LM_SHAPE(x->shape[0], x->shape[1], oh, ow), LM_F64);
    *idx = lm_zeros(LM_SHAPE(x->shape[0], x->shape[1], oh, ow), LM_F64);
    double *yv = lm_data(y), *iv = lm_data(*idx);
    for (int64_t pl = 0; pl < P; pl++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++) {
                double m = -INFINITY;
                int64_t at = -1;
                for (int a = 0; a < c.k[0]; a++)
                    for (int e = 0; e < c.k[1]; e++) {
                        int64_t ih = i * c.s[0] - c.p[0] + a * c.d[0];
                        int64_t iw = j * c.s[1] - c.p[1] + e * c.d[1];
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        double v = vals(xd)[(pl * H + ih) * W + iw];
                        if (v > m) {
                            m = v;
                            at = ih * W + iw;
                        }
                    }
                yv[(pl * oh + i) * ow + j] = m;
                iv[(pl * oh + i) * ow + j] = (double)at;
            }
    lm_release(xd);
    return y;
}

/* Sum of the in-bounds window divided by the window size inside the padded input
 * (count_include_pad) or inside the input. */
static lm_tensor *ref_avg_pool(const lm_tensor *x, pool_cfg c)
{
    lm_tensor *xd = f64(x);
    const int64_t P = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t oh = ref_pool_size(H, c.k[0], c.s[0], c.p[0], 1, c.ceil_mode);
    const int64_t ow = ref_pool_size(W, c.k[1], c.s[1], c.p[1], 1, c.ceil_mode);
    lm_tensor *y = lm_zeros(LM_SHAPE(x->shape[0], x->shape[1], oh, ow), LM_F64);
    double *yv = lm_data(y);
    for (int64_t pl = 0; pl < P; pl++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++) {
                double s = 0;
                int64_t inside = 0, padded = 0;
                for (int a = 0; a < c.k[0]; a++)
                    for (int e = 0; e < c.k[1]; e++) {
                        int64_t ih = i * c.s[0] - c.p[0] + a, iw = j * c.s[1] - c.p[1] + e;
                        if (ih < H + c.p[0] && iw < W + c.p[1]) padded++;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        inside++;
                        s += vals(xd)[(pl * H + ih) * W + iw];
                    }
                yv[(pl * oh + i) * ow + j] = s / (double)(c.count_include_pad ? padded : inside);
            }
    lm_release(xd);
    return y;
}

static lm_tensor *ref_adaptive_avg(const lm_tensor *x, int64_t oh, int64_t ow)
{
    lm_tensor *xd = f64(x);
    const int64_t P = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    lm_tensor *y = lm_zeros(LM_SHAPE(x->shape[0], x->shape[1], oh, ow), LM_F64);
    double *yv = lm_data(y);
    for (int64_t pl = 0; pl < P; pl++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++) {
                int64_t h0 = (int64_t)floor((double)(i * H) / (double)oh);
                int64_t h1 = (int64_t)ceil((double)((i + 1) * H) / (double)oh);
                int64_t w0 = (int64_t)floor((double)(j * W) / (double)ow);
                int64_t w1 = (int64_t)ceil((double)((j + 1) * W) / (double)ow);
                double s = 0;
                for (int64_t a = h0; a < h1; a++)
                    for (int64_t e = w0; e < w1; e++) s += vals(xd)[(pl * H + a) * W + e];
                yv[(pl * oh + i) * ow + j] = s / (double)((h1 - h0) * (w1 - w0));
            }
    lm_release(xd);
    return y;
}

/* ---- forward against the references --------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t n, c, h, w, o, kh, kw;
    conv_cfg cfg;
    bool bias;
} conv_case;

static const conv_case conv_cases[] = {
    {"3x3", 2, 3, 7, 6, 4, 3, 3, {{1, 1}, {0, 0}, {1, 1}, {0, 0}, 1}, true},
    {"stride 2x1 padding 1x2, no bias", 3, 2, 8, 7, 5, 3, 2,
     {{2, 1}, {1, 2}, {1, 1}, {0, 0}, 1}, false},
    {"dilation 2x3 padding 2x1", 2, 3, 9, 10, 4, 3, 3, {{1, 2}, {2, 1}, {2, 3}, {0, 0}, 1}, true},
    {"groups 2", 2, 4, 6, 6, 6, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {0, 0}, 2}, true},
    {"depthwise x2", 2, 4, 7, 5, 8, 3, 3, {{2, 2}, {1, 1}, {1, 1}, {0, 0}, 4}, true},
    {"kernel 2x3 stride 2x3", 2, 3, 9, 11, 4, 2, 3, {{2, 3}, {0, 1}, {1, 1}, {0, 0}, 1}, false},
    {"1x1 (direct path)", 3, 5, 4, 6, 7, 1, 1, {{1, 1}, {0, 0}, {1, 1}, {0, 0}, 1}, true},
    {"1x1 grouped (direct path)", 2, 6, 3, 5, 4, 1, 1, {{1, 1}, {0, 0}, {1, 1}, {0, 0}, 2}, false},
    {"1x1 stride 2", 2, 3, 7, 6, 4, 1, 1, {{2, 2}, {0, 0}, {1, 1}, {0, 0}, 1}, true},
    {"kernel as large as padded input", 2, 2, 3, 4, 3, 5, 6,
     {{1, 1}, {1, 1}, {1, 1}, {0, 0}, 1}, true},
};

static void test_conv2d_forward(void)
{
    const lm_dtype dts[2] = {LM_F32, LM_F64};
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        const conv_case *k = &conv_cases[i];
        for (int t = 0; t < 2; t++) {
            lm_tensor *x = randn(LM_SHAPE(k->n, k->c, k->h, k->w), dts[t]);
            lm_tensor *w = randn(LM_SHAPE(k->o, k->c / k->cfg.groups, k->kh, k->kw), dts[t]);
            lm_tensor *b = k->bias ? randn(LM_SHAPE(k->o), dts[t]) : NULL;
            lm_tensor *y = lm_conv2d(x, w, b, k->cfg.s, k->cfg.p, k->cfg.d, k->cfg.groups);
            lm_tensor *r = ref_conv2d(x, w, b, k->cfg);
            check_close(y, r, dts[t] == LM_F32 ? 1e-5 : 1e-12, "conv2d forward %s %s", k->name,
                        lm_dtype_name(dts[t]));
            lm_release(r);
            lm_release(y);
            lm_release(b);
            lm_release(w);
            lm_release(x);
        }
    }
}

/* A hand-worked case: 1x1x3x3 input 1..9, 2x2 kernel [[1, 2], [3, 4]], bias 10. */
static void test_conv2d_by_hand(void)
{
    const float xv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, wv[4] = {1, 2, 3, 4}, bv[1] = {10};
    lm_tensor *x = lm_from_data(xv, LM_F32, LM_SHAPE(1, 1, 3, 3));
    lm_tensor *w = lm_from_data(wv, LM_F32, LM_SHAPE(1, 1, 2, 2));
    lm_tensor *b = lm_from_data(bv, LM_F32, LM_SHAPE(1));
    lm_tensor *y = lm_conv2d(x, w, b, (int[]){1, 1}, (int[]){0, 0}, (int[]){1, 1}, 1);
    /* 1+4+12+20 = 37, 2+6+15+24 = 47, 4+10+21+32 = 67, 5+12+24+36 = 77; plus 10. */
    const double want[4] = {47, 57, 77, 87};
    bool good = y && y->ndim == 4 && y->shape[2] == 2 && y->shape[3] == 2;
    for (int i = 0; good && i < 4; i++) good = ((float *)lm_data(y))[i] == want[i];
    ok(good, "conv2d by hand: [[47, 57], [77, 87]]");
    /* Its transpose spreads a 1x1x2x2 input [[1, 0], [0, 2]] back over 3x3 with the same
     * kernel: 1*k at (0,0) plus 2*k at (1,1), bias 10 everywhere. */
    const float tv[4] = {1, 0, 0, 2};
    lm_tensor *t = lm_from_data(tv, LM_F32, LM_SHAPE(1, 1, 2, 2));
    lm_tensor *z = lm_conv_transpose2d(t, w, b, (int[]){1, 1}, (int[]){0, 0}, (int[]){0, 0},
                                       (int[]){1, 1}, 1);
    const double wz[9] = {11, 12, 10, 13, 16, 4 + 10, 10, 6 + 10, 8 + 10};
    good = z && z->shape[2] == 3 && z->shape[3] == 3;
    for (int i = 0; good && i < 9; i++) good = ((float *)lm_data(z))[i] == wz[i];
    ok(good, "conv_transpose2d by hand: [[11, 12, 10], [13, 16, 14], [10, 16, 18]]");
    lm_release(z);
    lm_release(t);
    lm_release(y);
    lm_release(b);
    lm_release(w);
    lm_release(x);
}

static void test_conv2d_noncontiguous(void)
{
    /* x as a transposed view, w as a slice of a larger weight. */
    lm_tensor *base = randn(LM_SHAPE(2, 3, 6, 5), LM_F32);
    lm_tensor *x = lm_transpose(base, 2, 3); /* [2,3,5,6] */
    lm_tensor *wbig = randn(LM_SHAPE(8, 3, 3, 3), LM_F32);
    lm_tensor *w = lm_slice(wbig, 0, 0, 8, 2); /* [4,3,3,3], every other filter */
    lm_tensor *b = randn(LM_SHAPE(4), LM_F32);
    conv_cfg c = {{1, 2}, {1, 1}, {1, 1}, {0, 0}, 1};
    lm_tensor *y = lm_conv2d(x, w, b, c.s, c.p, c.d, 1);
    lm_tensor *r = ref_conv2d(x, w, b, c);
    check_close(y, r, 1e-5, "conv2d forward, transposed input and sliced weight");
    lm_release(r);
    lm_release(y);
    lm_release(b);
    lm_release(w);
    lm_release(wbig);
    lm_release(x);
    lm_release(base);
}

static void test_conv1d_forward(void)
{
    struct {
        const char *name;
        int64_t n, c, l, o, k;
        int s, p, d, g;
        bool bias;
    } cases[] = {
        {"k3", 2, 3, 10, 4, 3, 1, 0, 1, 1, true},
        {"stride 2 padding 2 dilation 2", 3, 2, 11, 5, 3, 2, 2, 2, 1, false},
        {"groups 3", 2, 6, 9, 3, 2, 1, 1, 1, 3, true},
    };
    const lm_dtype dts[2] = {LM_F32, LM_F64};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 2; t++) {
            lm_tensor *x = randn(LM_SHAPE(cases[i].n, cases[i].c, cases[i].l), dts[t]);
            lm_tensor *w = randn(LM_SHAPE(cases[i].o, cases[i].c / cases[i].g, cases[i].k), dts[t]);
            lm_tensor *b = cases[i].bias ? randn(LM_SHAPE(cases[i].o), dts[t]) : NULL;
            lm_tensor *y = lm_conv1d(x, w, b, cases[i].s, cases[i].p, cases[i].d, cases[i].g);
            /* The reference: the same convolution on a height of 1. */
            lm_tensor *x4 = lm_unsqueeze(x, 2), *w4 = lm_unsqueeze(w, 2);
            conv_cfg c = {{1, cases[i].s}, {0, cases[i].p}, {1, cases[i].d}, {0, 0}, cases[i].g};
            lm_tensor *r4 = ref_conv2d(x4, w4, b, c);
            lm_tensor *r = lm_squeeze(r4, 2);
            check_close(y, r, dts[t] == LM_F32 ? 1e-5 : 1e-12, "conv1d forward %s %s",
                        cases[i].name, lm_dtype_name(dts[t]));
            lm_release(r);
            lm_release(r4);
            lm_release(w4);
            lm_release(x4);
            lm_release(y);
            lm_release(b);
            lm_release(w);
            lm_release(x);
        }
}

static void test_conv_transpose2d_forward(void)
{
    struct {
        const char *name;
        int64_t n, c, h, w, og, kh, kw;
        conv_cfg cfg;
        bool bias;
    } cases[] = {
        {"3x3", 2, 3, 4, 5, 2, 3, 3, {{1, 1}, {0, 0}, {1, 1}, {0, 0}, 1}, true},
        {"stride 2 padding 1 output_padding 1", 2, 3, 4, 3, 4, 3, 3,
         {{2, 2}, {1, 1}, {1, 1}, {1, 1}, 1}, false},
        {"stride 3x2 kernel 2x3 groups 2", 2, 4, 3, 4, 3, 2, 3,
         {{3, 2}, {0, 1}, {1, 1}, {2, 0}, 2}, true},
        {"dilation 2 output_padding < dilation", 1, 2, 4, 4, 3, 3, 2,
         {{1, 1}, {1, 0}, {2, 2}, {1, 1}, 1}, true},
        {"depthwise 1x1", 2, 4, 3, 3, 1, 1, 1, {{1, 1}, {0, 0}, {1, 1}, {0, 0}, 4}, true},
    };
    const lm_dtype dts[2] = {LM_F32, LM_F64};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 2; t++) {
            const conv_cfg c = cases[i].cfg;
            lm_tensor *x = randn(LM_SHAPE(cases[i].n, cases[i].c, cases[i].h, cases[i].w), dts[t]);
            lm_tensor *w =
                randn(LM_SHAPE(cases[i].c, cases[i].og, cases[i].kh, cases[i].kw), dts[t]);
            lm_tensor *b = cases[i].bias ? randn(LM_SHAPE(cases[i].og * c.groups), dts[t]) : NULL;
            lm_tensor *y = lm_conv_transpose2d(x, w, b, c.s, c.p, c.op, c.d, c.groups);
            lm_tensor *r = ref_conv_transpose2d(x, w, b, c);
            check_close(y, r, dts[t] == LM_F32 ? 1e-5 : 1e-12, "conv_transpose2d forward %s %s",
                        cases[i].name, lm_dtype_name(dts[t]));
            lm_release(r);
            lm_release(y);
            lm_release(b);
            lm_release(w);
            lm_release(x);
        }
}

/* ---- pooling forward ------------------------------------------------------------------------ */

static void test_max_pool_by_hand(void)
{
    const float xv[16] = {1, 5, 2, 0, 3, 4, 8, 7, 6, 0, 1, 2, 9, 3, 4, 5};
    lm_tensor *x = lm_from_data(xv, LM_F32, LM_SHAPE(1, 1, 4, 4));
    lm_tensor *idx = NULL;
    lm_tensor *y = lm_max_pool2d(x, (int[]){2, 2}, (int[]){2, 2}, (int[]){0, 0}, (int[]){1, 1},
                                 false, &idx);
    const float wy[4] = {5, 8, 9, 5};
    const int64_t wi[4] = {1, 6, 12, 15};
    bool good = y && idx && idx->dtype == LM_I64 && idx->shape[2] == 2 && idx->shape[3] == 2;
    for (int i = 0; good && i < 4; i++)
        good = ((float *)lm_data(y))[i] == wy[i] && ((int64_t *)lm_data(idx))[i] == wi[i];
    ok(good, "max_pool2d 2x2 by hand: values [[5, 8], [9, 5]], indices [[1, 6], [12, 15]]");
    lm_release(idx);
    lm_release(y);

    /* Padding 1, stride 2, ceil_mode on a 4x4: windows start at -1, 1, 3 -> 3x3 outputs. The
     * window at (0,0) sees only x[0][0]; the tie at (2,1) keeps the first position, 13. */
    const float tv[16] = {2, 2, 1, 1, 2, 2, 1, 1, 0, 0, 3, 3, 0, 3, 3, 3};
    lm_tensor *t = lm_from_data(tv, LM_F32, LM_SHAPE(1, 1, 4, 4));
    y = lm_max_pool2d(t, (int[]){2, 2}, (int[]){2, 2}, (int[]){1, 1}, (int[]){1, 1}, true, &idx);
    const float wy2[9] = {2, 2, 1, 2, 3, 3, 0, 3, 3};
    const int64_t wi2[9] = {0, 1, 3, 4, 10, 11, 12, 13, 15};
    good = y && idx && y->shape[2] == 3 && y->shape[3] == 3;
    for (int i = 0; good && i < 9; i++)
        good = ((float *)lm_data(y))[i] == wy2[i] && ((int64_t *)lm_data(idx))[i] == wi2[i];
    ok(good, "max_pool2d padding 1 ceil_mode by hand: indices of ties are the first position");
    lm_release(idx);
    lm_release(y);

    /* A NaN wins its window, as in PyTorch. */
    ((float *)lm_data(t))[5] = NAN;
    y = lm_max_pool2d(t, (int[]){2, 2}, NULL, NULL, NULL, false, &idx);
    ok(y && isnan(((float *)lm_data(y))[0]) && ((int64_t *)lm_data(idx))[0] == 5 &&
           ((float *)lm_data(y))[3] == 3,
       "max_pool2d: NaN propagates with its index; NULL stride means the kernel");
    lm_release(idx);
    lm_release(y);
    lm_release(t);
    lm_release(x);
}

static void test_pool_output_sizes(void)
{
    /* Where ceil_mode's "last window must start inside the input or the left padding" rule
     * removes an output: H = 3, k = 2, s = 2, p = 1 -> ceil gives 3, the rule 2 (PyTorch: 2). */
    lm_tensor *x = randn(LM_SHAPE(1, 2, 3, 5), LM_F32);
    lm_tensor *y =
        lm_max_pool2d(x, (int[]){2, 2}, (int[]){2, 2}, (int[]){1, 1}, (int[]){1, 1}, true, NULL);
    ok(y && y->shape[2] == 2 && y->shape[3] == 3, "max_pool2d ceil_mode: 3x5 -> 2x3");
    lm_release(y);
    y = lm_avg_pool2d(x, (int[]){2, 2}, (int[]){2, 2}, (int[]){1, 1}, true, true);
    ok(y && y->shape[2] == 2 && y->shape[3] == 3, "avg_pool2d ceil_mode: 3x5 -> 2x3");
    lm_release(y);
    y = lm_avg_pool2d(x, (int[]){3, 2}, (int[]){2, 2}, (int[]){0, 0}, false, true);
    ok(y && y->shape[2] == 1 && y->shape[3] == 2, "avg_pool2d floor: 3x5 -> 1x2");
    lm_release(y);
    lm_tensor *x3 = randn(LM_SHAPE(2, 6, 6), LM_F32);
    y = lm_max_pool2d(x3, (int[]){3, 3}, (int[]){3, 3}, NULL, NULL, false, NULL);
    ok(y && y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 2 && y->shape[2] == 2,
       "max_pool2d of a 3-D [C, H, W] input keeps 3 dims");
    lm_release(y);
    lm_release(x3);
    lm_release(x);
}

static void test_pool_forward(void)
{
    const pool_cfg cases[] = {
        {{2, 2}, {2, 2}, {0, 0}, {1, 1}, false, true},
        {{3, 2}, {2, 1}, {1, 1}, {1, 1}, false, true},
        {{3, 3}, {2, 2}, {1, 1}, {1, 1}, true, true},
        {{3, 3}, {2, 2}, {1, 1}, {1, 1}, true, false},
        {{2, 3}, {3, 2}, {1, 0}, {1, 1}, true, false},
        {{3, 2}, {1, 2}, {1, 1}, {2, 3}, false, true}, /* dilation (max pooling only) */
        {{3, 3}, {2, 2}, {1, 1}, {2, 2}, true, true},
    };
    const char *names[] = {"2x2", "3x2 stride 2x1 padding 1", "3x3 ceil_mode",
                           "3x3 ceil_mode, count_include_pad off", "2x3 stride 3x2 ceil_mode",
                           "dilation 2x3", "dilation 2 ceil_mode"};
    const lm_dtype dts[2] = {LM_F32, LM_F64};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 2; t++) {
            const pool_cfg c = cases[i];
            lm_tensor *x = randn(LM_SHAPE(2, 3, 9, 8), dts[t]);
            lm_tensor *idx = NULL, *ridx = NULL;
            lm_tensor *y = lm_max_pool2d(x, c.k, c.s, c.p, c.d, c.ceil_mode, &idx);
            lm_tensor *r = ref_max_pool(x, c, &ridx);
            check_close(y, r, 0, "max_pool2d forward %s %s", names[i], lm_dtype_name(dts[t]));
            check_close(idx, ridx, 0, "max_pool2d indices %s %s", names[i], lm_dtype_name(dts[t]));
            lm_release(r);
            lm_release(ridx);
            lm_release(y);
            lm_release(idx);
            if (c.d[0] == 1 && c.d[1] == 1) {
                y = lm_avg_pool2d(x, c.k, c.s, c.p, c.ceil_mode, c.count_include_pad);
                r = ref_avg_pool(x, c);
                check_close(y, r, dts[t] == LM_F32 ? 1e-6 : 1e-14, "avg_pool2d forward %s %s",
                            names[i], lm_dtype_name(dts[t]));
                lm_release(r);
                lm_release(y);
            }
            lm_release(x);
        }
    /* Windows of more than 256 taps take the exact loop instead of the vectorized one. */
    {
        const pool_cfg big = {{17, 16}, {3, 2}, {1, 1}, {1, 1}, false, true};
        lm_tensor *x = randn(LM_SHAPE(2, 2, 20, 19), LM_F32);
        lm_tensor *idx = NULL, *ridx = NULL;
        lm_tensor *y = lm_max_pool2d(x, big.k, big.s, big.p, big.d, false, &idx);
        lm_tensor *r = ref_max_pool(x, big, &ridx);
        check_close(y, r, 0, "max_pool2d forward, 17x16 window");
        check_close(idx, ridx, 0, "max_pool2d indices, 17x16 window");
        release_all(4, (lm_tensor *[]){y, idx, r, ridx});
        lm_release(x);
    }
    const int64_t sizes[][2] = {{3, 2}, {1, 1}, {5, 7}, {4, 8}, {9, 16}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        lm_tensor *x = randn(LM_SHAPE(2, 3, 5, 7), LM_F32);
        lm_tensor *y = lm_adaptive_avg_pool2d(x, sizes[i][0], sizes[i][1]);
        lm_tensor *r = ref_adaptive_avg(x, sizes[i][0], sizes[i][1]);
        check_close(y, r, 1e-6, "adaptive_avg_pool2d forward 5x7 -> %lldx%lld",
                    (long long)sizes[i][0], (long long)sizes[i][1]);
        lm_release(r);
        lm_release(y);
        lm_release(x);
    }
}

/* ---- gradients ------------------------------------------------------------------------------ */

typedef struct {
    conv_cfg c;
    bool bias;
} conv_ctx;

static lm_tensor *f_conv2d(lm_tensor **in, void *ctx)
{
    const conv_ctx *k = ctx;
    return lm_conv2d(in[0], in[1], k->bias ? in[2] : NULL, k->c.s, k->c.p, k->c.d, k->c.groups);
}

static lm_tensor *f_conv1d(lm_tensor **in, void *ctx)
{
    const conv_ctx *k = ctx;
    return lm_conv1d(in[0], in[1], k->bias ? in[2] : NULL, k->c.s[1], k->c.p[1], k->c.d[1],
                     k->c.groups);
}

static lm_tensor *f_conv_transpose2d(lm_tensor **in, void *ctx)
{
    const conv_ctx *k = ctx;
    return lm_conv_transpose2d(in[0], in[1], k->bias ? in[2] : NULL, k->c.s, k->c.p, k->c.op,
                               k->c.d, k->c.groups);
}

/* Gradcheck of a convolution f with x of shape xs, weight ws (both xnd dims) and a bias of nb
 * elements when k.bias. */
static void gc_conv(const char *name, gc_fn f, conv_ctx k, int xnd, const int64_t *xs,
                    const int64_t *ws, int64_t nb)
{
    lm_tensor *in[3] = {gc_input(xnd, xs, -1, 1), gc_input(xnd, ws, -1, 1),
                        k.bias ? gc_input(1, (const int64_t[]){nb}, -1, 1) : NULL};
    gradcheck(name, f, k.bias ? 3 : 2, in, &k);
    release_all(3, in);
}

static void test_conv_gradients(void)
{
    const conv_ctx plain = {{{1, 1}, {0, 0}, {1, 1}, {0, 0}, 1}, true};
    gc_conv("conv2d", f_conv2d, plain, 4, (int64_t[]){2, 3, 5, 4}, (int64_t[]){2, 3, 3, 2}, 2);
    gc_conv("conv2d stride 2x1 padding 1x2 no bias", f_conv2d,
            (conv_ctx){{{2, 1}, {1, 2}, {1, 1}, {0, 0}, 1}, false}, 4, (int64_t[]){2, 2, 5, 4},
            (int64_t[]){3, 2, 3, 3}, 3);
    gc_conv("conv2d dilation 2", f_conv2d, (conv_ctx){{{1, 1}, {1, 1}, {2, 2}, {0, 0}, 1}, true},
            4, (int64_t[]){1, 2, 6, 5}, (int64_t[]){2, 2, 2, 2}, 2);
    gc_conv("conv2d groups 2", f_conv2d, (conv_ctx){{{1, 2}, {1, 0}, {1, 1}, {0, 0}, 2}, true},
            4, (int64_t[]){2, 4, 4, 5}, (int64_t[]){4, 2, 2, 3}, 4);
    gc_conv("conv2d depthwise", f_conv2d, (conv_ctx){{{1, 1}, {1, 1}, {1, 1}, {0, 0}, 3}, true},
            4, (int64_t[]){2, 3, 4, 4}, (int64_t[]){3, 1, 3, 3}, 3);
    gc_conv("conv2d 1x1", f_conv2d, plain, 4, (int64_t[]){2, 3, 3, 4}, (int64_t[]){4, 3, 1, 1}, 4);

    /* Only the weight requires grad (the first layer of a network): x gets no gradient. */
    {
        lm_tensor *in[3] = {gc_input(LM_SHAPE(2, 2, 4, 4), -1, 1),
                            gc_input(LM_SHAPE(3, 2, 3, 3), -1, 1), gc_input(LM_SHAPE(3), -1, 1)};
        lm_requires_grad_(in[0], false);
        gradcheck("conv2d input without grad", f_conv2d, 3, in, (void *)&plain);
        ok(in[0]->grad == NULL, "conv2d: an input without requires_grad gets no gradient");
        release_all(3, in);
    }
    /* A transposed view as input (made without grad, then a leaf that requires it). */
    {
        bool prev = lm_set_grad_enabled(false);
        lm_tensor *base = gc_input(LM_SHAPE(2, 2, 5, 4), -1, 1);
        lm_tensor *x = lm_transpose(base, 2, 3);
        lm_set_grad_enabled(prev);
        lm_requires_grad_(x, true);
        lm_tensor *in[3] = {x, gc_input(LM_SHAPE(3, 2, 2, 3), -1, 1), gc_input(LM_SHAPE(3), -1, 1)};
        conv_ctx k = {{{2, 1}, {1, 1}, {1, 1}, {0, 0}, 1}, true};
        gradcheck("conv2d non-contiguous input", f_conv2d, 3, in, &k);
        release_all(3, in);
        lm_release(base);
    }

    gc_conv("conv1d", f_conv1d, plain, 3, (int64_t[]){2, 3, 7}, (int64_t[]){2, 3, 3}, 2);
    gc_conv("conv1d stride 2 padding 2 dilation 2 groups 2", f_conv1d,
            (conv_ctx){{{1, 2}, {0, 2}, {1, 2}, {0, 0}, 2}, true}, 3, (int64_t[]){2, 4, 8},
            (int64_t[]){4, 2, 3}, 4);

    gc_conv("conv_transpose2d", f_conv_transpose2d, plain, 4, (int64_t[]){2, 3, 3, 4},
            (int64_t[]){3, 2, 3, 2}, 2);
    gc_conv("conv_transpose2d stride 2 padding 1 output_padding 1 groups 2", f_conv_transpose2d,
            (conv_ctx){{{2, 2}, {1, 0}, {1, 1}, {1, 1}, 2}, true}, 4, (int64_t[]){2, 4, 3, 3},
            (int64_t[]){4, 1, 3, 2}, 2);
    gc_conv("conv_transpose2d dilation 2 no bias", f_conv_transpose2d,
            (conv_ctx){{{1, 2}, {0, 1}, {2, 1}, {1, 1}, 1}, false}, 4, (int64_t[]){1, 2, 3, 3},
            (int64_t[]){2, 3, 2, 2}, 3);
}

static lm_tensor *f_max_pool(lm_tensor **in, void *ctx)
{
    const pool_cfg *c = ctx;
    return lm_max_pool2d(in[0], c->k, c->s, c->p, c->d, c->ceil_mode, NULL);
}

static lm_tensor *f_avg_pool(lm_tensor **in, void *ctx)
{
    const pool_cfg *c = ctx;
    return lm_avg_pool2d(in[0], c->k, c->s, c->p, c->ceil_mode, c->count_include_pad);
}

static lm_tensor *f_adaptive(lm_tensor **in, void *ctx)
{
    const int64_t *o = ctx;
    return lm_adaptive_avg_pool2d(in[0], o[0], o[1]);
}

static void gc_pool(const char *name, gc_fn f, void *ctx, int64_t h, int64_t w)
{
    lm_tensor *x = gc_input(LM_SHAPE(2, 2, h, w), -1, 1);
    gradcheck(name, f, 1, &x, ctx);
    lm_release(x);
}

static void test_pool_gradients(void)
{
    pool_cfg c1 = {{2, 2}, {2, 2}, {0, 0}, {1, 1}, false, true};
    gc_pool("max_pool2d", f_max_pool, &c1, 4, 6);
    pool_cfg c2 = {{3, 3}, {2, 2}, {1, 1}, {1, 1}, true, true};
    gc_pool("max_pool2d overlapping windows padding 1 ceil_mode", f_max_pool, &c2, 6, 5);
    pool_cfg c3 = {{2, 3}, {1, 2}, {1, 1}, {2, 2}, false, true};
    gc_pool("max_pool2d dilation 2", f_max_pool, &c3, 6, 7);
    gc_pool("avg_pool2d", f_avg_pool, &c1, 4, 6);
    gc_pool("avg_pool2d padding 1 ceil_mode count_include_pad", f_avg_pool, &c2, 6, 5);
    pool_cfg c4 = {{3, 2}, {2, 3}, {1, 1}, {1, 1}, true, false};
    gc_pool("avg_pool2d padding 1 ceil_mode without count_include_pad", f_avg_pool, &c4, 6, 7);
    int64_t o1[2] = {2, 3};
    gc_pool("adaptive_avg_pool2d", f_adaptive, o1, 4, 6);
    int64_t o2[2] = {3, 4};
    gc_pool("adaptive_avg_pool2d overlapping windows 5x7 -> 3x4", f_adaptive, o2, 5, 7);

    /* A sliced (non-contiguous) input. */
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *base = gc_input(LM_SHAPE(2, 2, 5, 12), -1, 1);
    lm_tensor *x = lm_slice(base, 3, 1, 12, 2); /* [2,2,5,6] */
    lm_set_grad_enabled(prev);
    lm_requires_grad_(x, true);
    gradcheck("max_pool2d non-contiguous input", f_max_pool, 1, &x, &c2);
    gradcheck("avg_pool2d non-contiguous input", f_avg_pool, 1, &x, &c4);
    gradcheck("adaptive_avg_pool2d non-contiguous input", f_adaptive, 1, &x, o2);
    lm_release(x);
    lm_release(base);
}

/* ---- threads -------------------------------------------------------------------------------- */

/* The gradients of conv2d for an output gradient gy, by direct loops: gx[n, c, ih, iw] and
 * gw[o, c, a, e] collect gy[n, o, i, j] times w and x at the positions the forward paired. */
static void ref_conv2d_grads(const lm_tensor *x, const lm_tensor *w, const lm_tensor *gy,
                             conv_cfg c, lm_tensor **gx, lm_tensor **gw, lm_tensor **gb)
{
    lm_tensor *xd = f64(x), *wd = f64(w), *gd = f64(gy);
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t O = w->shape[0], cg = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    const int64_t og = O / c.groups, oh = gy->shape[2], ow = gy->shape[3];
    *gx = lm_zeros(4, x->shape, LM_F64);
    *gw = lm_zeros(4, w->shape, LM_F64);
    *gb = lm_zeros(LM_SHAPE(O), LM_F64);
    double *GX = lm_data(*gx), *GW = lm_data(*gw), *GB = lm_data(*gb);
    const double *X = vals(xd), *Wt = vals(wd), *G = vals(gd);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    const double gv = G[((n * O + o) * oh + i) * ow + j];
                    GB[o] += gv;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t a = 0; a < kh; a++)
                            for (int64_t e = 0; e < kw; e++) {
                                int64_t ih = i * c.s[0] - c.p[0] + a * c.d[0];
                                int64_t iw = j * c.s[1] - c.p[1] + e * c.d[1];
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                const int64_t xi = ((n * C + o / og * cg + ci) * H + ih) * W + iw;
                                const int64_t wi = ((o * cg + ci) * kh + a) * kw + e;
                                GX[xi] += gv * Wt[wi];
                                GW[wi] += gv * X[xi];
                            }
                }
    lm_release(gd);
    lm_release(wd);
    lm_release(xd);
}

/* Forward and the three gradients of a conv2d for the output gradient seed, at the current
 * thread count. */
static void conv_all(const lm_tensor *x0, const lm_tensor *w0, const lm_tensor *b0,
                     const lm_tensor *seed, conv_cfg c, lm_tensor **out)
{
    lm_tensor *x = lm_clone(x0), *w = lm_clone(w0), *b = lm_clone(b0);
    lm_requires_grad_(x, true);
    lm_requires_grad_(w, true);
    lm_requires_grad_(b, true);
    lm_tensor *y = lm_conv2d(x, w, b, c.s, c.p, c.d, c.groups);
    lm_backward(y, seed, false);
    out[0] = lm_detach(y);
    out[1] = lm_retain(x->grad);
    out[2] = lm_retain(w->grad);
    out[3] = lm_retain(b->grad);
    lm_release(y);
    lm_release(b);
    lm_release(w);
    lm_release(x);
}

static bool bitwise_equal(const lm_tensor *a, const lm_tensor *b)
{
    return a && b && lm_numel(a) == lm_numel(b) &&
           memcmp(lm_data(a), lm_data(b), lm_nbytes(a)) == 0;
}

/* conv2d forward and backward with 1 and with 3 threads: each against the direct loops, and
 * the two bit for bit. */
static void check_threads(const char *name, int64_t n, int64_t c, int64_t h, int64_t w, int64_t o,
                          int64_t k, conv_cfg cfg)
{
    const char *what[4] = {"output", "input gradient", "weight gradient", "bias gradient"};
    lm_tensor *x = randn(LM_SHAPE(n, c, h, w), LM_F32);
    lm_tensor *wt = randn(LM_SHAPE(o, c / cfg.groups, k, k), LM_F32);
    lm_tensor *b = randn(LM_SHAPE(o), LM_F32);
    lm_tensor *ref[4];
    ref[0] = ref_conv2d(x, wt, b, cfg);
    lm_tensor *seed = randn(4, ref[0]->shape, LM_F32);
    ref_conv2d_grads(x, wt, seed, cfg, &ref[1], &ref[2], &ref[3]);
    lm_tensor *one[4], *many[4];
    lm_set_num_threads(1);
    conv_all(x, wt, b, seed, cfg, one);
    lm_set_num_threads(3);
    conv_all(x, wt, b, seed, cfg, many);
    lm_set_num_threads(1);
    /* The weight and bias gradients sum N*oH*oW terms in f32: their error grows with its root. */
    const double sums = sqrt((double)(n * ref[0]->shape[2] * ref[0]->shape[3]));
    for (int i = 0; i < 4; i++) {
        check_close(many[i], ref[i], i < 2 ? 1e-4 : 1e-5 * sums,
                    "conv2d %s: %s matches the direct loops", name, what[i]);
        ok(bitwise_equal(one[i], many[i]), "conv2d %s: %s identical with 1 and 3 threads", name,
           what[i]);
    }
    release_all(4, one);
    release_all(4, many);
    release_all(4, ref);
    lm_release(seed);
    lm_release(b);
    lm_release(wt);
    lm_release(x);
}

static void test_threads(void)
{
    const conv_cfg pad1 = {{1, 1}, {1, 1}, {1, 1}, {0, 0}, 1};
    /* More samples than threads: each thread takes whole samples. The weight gradient sums 900
     * terms per sample into 6x72 outputs: the dot-product kernel. */
    check_threads("batch 19 (threads over samples)", 19, 8, 30, 30, 6, 3, pad1);
    /* One sample: the threads share its im2col rows, product tiles and col2im channels. */
    check_threads("batch 1 (threads share a sample)", 1, 8, 30, 30, 6, 3, pad1);
    /* Patch matrices too large to keep (2 x 144 x 16384 elements): the weight gradient
     * rebuilds them. */
    check_threads("patch matrices rebuilt", 2, 16, 128, 128, 2, 3, pad1);
    check_threads("1x1", 5, 8, 9, 7, 4, 1, (conv_cfg){{1, 1}, {0, 0}, {1, 1}, {0, 0}, 1});
    check_threads("groups 2 stride 2", 4, 6, 17, 15, 4, 3,
                  (conv_cfg){{2, 2}, {1, 1}, {1, 1}, {0, 0}, 2});
}

/* ---- errors --------------------------------------------------------------------------------- */

static void test_errors(void)
{
    const int one[2] = {1, 1}, zero[2] = {0, 0};
    lm_tensor *x = lm_zeros(LM_SHAPE(8, 3, 32, 32), LM_F32);
    lm_tensor *w = lm_zeros(LM_SHAPE(16, 4, 3, 3), LM_F32);
    ok(!lm_conv2d(x, w, NULL, one, zero, one, 1), "conv2d: channel mismatch fails");
    has_str(lm_last_error(),
            "conv2d: input [8,3,32,32] has 3 channels but weight [16,4,3,3] expects 4",
            "message names both shapes and channel counts");
    lm_release(w);

    w = lm_zeros(LM_SHAPE(16, 1, 3, 3), LM_F32);
    ok(!lm_conv2d(x, w, NULL, one, zero, one, 2), "conv2d: groups not dividing C fails");
    has_str(lm_last_error(), "conv2d: groups 2 does not divide the 3 channels of input [8,3,32,32]",
            "message names groups and input");
    lm_tensor *x6 = lm_zeros(LM_SHAPE(2, 6, 5, 5), LM_F32);
    lm_tensor *w5 = lm_zeros(LM_SHAPE(5, 3, 3, 3), LM_F32);
    ok(!lm_conv2d(x6, w5, NULL, one, zero, one, 2), "conv2d: groups not dividing O fails");
    has_str(lm_last_error(), "groups 2 does not divide the 5 output channels of weight [5,3,3,3]",
            "message names the weight");
    ok(!lm_conv2d(x6, w5, NULL, one, zero, one, 0), "conv2d: groups 0 fails");
    has_str(lm_last_error(), "conv2d: groups must be positive, got 0", "message");
    lm_release(w5);
    lm_release(w);

    lm_tensor *small = lm_zeros(LM_SHAPE(1, 3, 4, 4), LM_F32);
    w = lm_zeros(LM_SHAPE(2, 3, 5, 5), LM_F32);
    ok(!lm_conv2d(small, w, NULL, one, zero, one, 1), "conv2d: kernel larger than input fails");
    has_str(lm_last_error(),
            "conv2d: kernel 5x5 (dilated to 5x5) is larger than the padded input 4x4 "
            "(input [1,3,4,4], padding 0x0)",
            "message names kernel, padded input and shapes");
    lm_tensor *y = lm_conv2d(small, w, NULL, one, one, one, 1);
    ok(y && y->shape[2] == 2 && y->shape[3] == 2, "conv2d: padding 1 lets the 5x5 kernel fit");
    lm_release(y);
    ok(!lm_conv2d(small, w, NULL, one, one, (int[]){2, 1}, 1),
       "conv2d: a dilated kernel too large fails");
    has_str(lm_last_error(), "kernel 5x5 (dilated to 9x5) is larger than the padded input 6x6",
            "message names the dilated size");
    ok(!lm_conv2d(small, w, NULL, (int[]){0, 1}, zero, one, 1), "conv2d: stride 0 fails");
    has_str(lm_last_error(),
            "conv2d: stride (0x1) and dilation (1x1) must be positive and padding (0x0) "
            "non-negative",
            "message names stride, dilation and padding");
    ok(!lm_conv2d(small, w, NULL, one, (int[]){-1, 0}, one, 1), "conv2d: negative padding fails");
    lm_release(w);

    w = lm_zeros(LM_SHAPE(2, 3, 3, 3), LM_F32);
    lm_tensor *b3 = lm_zeros(LM_SHAPE(3), LM_F32);
    ok(!lm_conv2d(small, w, b3, one, zero, one, 1), "conv2d: bias of the wrong size fails");
    has_str(lm_last_error(), "conv2d: bias [3] must be 1-D with 2 elements",
            "message names the bias");
    lm_tensor *wd = lm_zeros(LM_SHAPE(2, 3, 3, 3), LM_F64);
    ok(!lm_conv2d(small, wd, NULL, one, zero, one, 1), "conv2d: mixed dtypes fail");
    has_str(lm_last_error(), "conv2d: input (f32), weight (f64) must have one dtype",
            "message names dtypes");
    lm_tensor *xi = lm_zeros(LM_SHAPE(1, 3, 4, 4), LM_I64);
    ok(!lm_conv2d(xi, w, NULL, one, zero, one, 1), "conv2d: an integer input fails");
    has_str(lm_last_error(), "conv2d: expects an f32 or f64 input, got i64",
            "message names the dtype");
    lm_tensor *x3 = lm_zeros(LM_SHAPE(3, 4, 4), LM_F32);
    ok(!lm_conv2d(x3, w, NULL, one, zero, one, 1), "conv2d: a 3-D input fails");
    has_str(lm_last_error(), "conv2d: expects a 4-D input [N, C, H, W], got [3,4,4]", "message");
    ok(!lm_conv2d(NULL, w, NULL, one, zero, one, 1), "conv2d: NULL input fails");
    has_str(lm_last_error(), "conv2d: NULL tensor argument", "message");
    ok(!lm_conv2d(small, w, NULL, NULL, zero, one, 1), "conv2d: NULL stride fails");
    has_str(lm_last_error(), "conv2d: NULL stride, padding or dilation", "message");

    lm_tensor *x1 = lm_zeros(LM_SHAPE(2, 3, 4), LM_F32);
    lm_tensor *w1 = lm_zeros(LM_SHAPE(5, 2, 3), LM_F32);
    ok(!lm_conv1d(x1, w1, NULL, 1, 0, 1, 1), "conv1d: channel mismatch fails");
    has_str(lm_last_error(), "conv1d: input [2,3,4] has 3 channels but weight [5,2,3] expects 2",
            "message");
    lm_release(w1);
    w1 = lm_zeros(LM_SHAPE(5, 3, 6), LM_F32);
    ok(!lm_conv1d(x1, w1, NULL, 1, 0, 1, 1), "conv1d: kernel larger than input fails");
    has_str(lm_last_error(), "conv1d: kernel 6 (dilated to 6) is larger than the padded input 4",
            "message");
    ok(!lm_conv1d(x1, w1, NULL, -2, 0, 1, 1), "conv1d: negative stride fails");
    has_str(lm_last_error(), "conv1d: stride (-2) and dilation (1) must be positive", "message");
    ok(!lm_conv1d(small, w1, NULL, 1, 0, 1, 1), "conv1d: a 4-D input fails");
    has_str(lm_last_error(), "conv1d: expects a 3-D input [N, C, L], got [1,3,4,4]", "message");

    lm_tensor *wt = lm_zeros(LM_SHAPE(4, 2, 3, 3), LM_F32);
    ok(!lm_conv_transpose2d(small, wt, NULL, one, zero, zero, one, 1),
       "conv_transpose2d: channel mismatch fails");
    has_str(lm_last_error(),
            "conv_transpose2d: input [1,3,4,4] has 3 channels but weight [4,2,3,3] expects 4",
            "message");
    lm_release(wt);
    wt = lm_zeros(LM_SHAPE(3, 2, 3, 3), LM_F32);
    ok(!lm_conv_transpose2d(small, wt, NULL, (int[]){2, 2}, zero, (int[]){2, 0}, one, 1),
       "conv_transpose2d: output_padding >= stride and dilation fails");
    has_str(lm_last_error(),
            "conv_transpose2d: output_padding (2x0) must be non-negative and smaller than either "
            "the stride (2x2) or the dilation (1x1)",
            "message");
    ok(!lm_conv_transpose2d(small, wt, NULL, one, (int[]){3, 3}, zero, one, 1),
       "conv_transpose2d: padding that leaves no output fails");
    has_str(lm_last_error(), "gives an output of 0x0", "message names the output size");
    lm_tensor *b5 = lm_zeros(LM_SHAPE(5), LM_F32);
    ok(!lm_conv_transpose2d(small, wt, b5, one, zero, zero, one, 1),
       "conv_transpose2d: bias of the wrong size fails");
    has_str(lm_last_error(), "bias [5] must be 1-D with 2 elements", "message");

    ok(!lm_max_pool2d(small, (int[]){3, 3}, one, (int[]){2, 2}, one, false, NULL),
       "max_pool2d: padding over half the kernel fails");
    has_str(lm_last_error(), "max_pool2d: padding (2x2) must be at most half the kernel (3x3)",
            "message");
    ok(!lm_max_pool2d(small, (int[]){5, 5}, one, zero, one, false, NULL),
       "max_pool2d: kernel larger than input fails");
    has_str(lm_last_error(),
            "max_pool2d: kernel 5x5 (dilation 1x1) does not fit the input [1,3,4,4] with "
            "padding 0x0",
            "message");
    ok(!lm_max_pool2d(small, (int[]){2, 2}, (int[]){0, 1}, zero, one, false, NULL),
       "max_pool2d: stride 0 fails");
    has_str(lm_last_error(),
            "max_pool2d: kernel (2x2), stride (0x1) and dilation (1x1) must be positive",
            "message");
    ok(!lm_max_pool2d(small, NULL, NULL, NULL, NULL, false, NULL), "max_pool2d: NULL kernel fails");
    has_str(lm_last_error(), "max_pool2d: NULL kernel size", "message");
    ok(!lm_avg_pool2d(xi, (int[]){2, 2}, NULL, NULL, false, true),
       "avg_pool2d: integer input fails");
    has_str(lm_last_error(), "avg_pool2d: expects an f32 or f64 input, got i64", "message");
    lm_tensor *x2 = lm_zeros(LM_SHAPE(4, 4), LM_F32);
    ok(!lm_avg_pool2d(x2, (int[]){2, 2}, NULL, NULL, false, true), "avg_pool2d: a 2-D input fails");
    has_str(lm_last_error(),
            "avg_pool2d: expects a 3-D [C, H, W] or 4-D [N, C, H, W] input, got [4,4]",
            "message");
    ok(!lm_adaptive_avg_pool2d(small, 0, 2), "adaptive_avg_pool2d: output size 0 fails");
    has_str(lm_last_error(),
            "adaptive_avg_pool2d: output size 0x2 must be positive (input [1,3,4,4])",
            "message");

    lm_tensor *idx = (lm_tensor *)1;
    ok(!lm_max_pool2d(x2, (int[]){2, 2}, NULL, NULL, NULL, false, &idx) && idx == NULL,
       "max_pool2d: a failure leaves *indices NULL");

    lm_release(x2);
    lm_release(b5);
    lm_release(wt);
    lm_release(w1);
    lm_release(x1);
    lm_release(x3);
    lm_release(xi);
    lm_release(wd);
    lm_release(b3);
    lm_release(w);
    lm_release(small);
    lm_release(x6);
    lm_release(x);
}

/* An allocation failing at each point of a forward and backward returns an error, leaks
 * nothing (valgrind checks) and leaves the next call working. */
static void test_alloc_failures(void)
{
    lm_tensor *x = randn(LM_SHAPE(2, 2, 5, 5), LM_F32);
    lm_tensor *w = randn(LM_SHAPE(3, 2, 3, 3), LM_F32);
    lm_requires_grad_(x, true);
    lm_requires_grad_(w, true);
    bool all_failed_cleanly = true;
    for (int n = 1; n <= 40; n++) {
        lm_debug_fail_alloc_after(n);
        lm_tensor *y = lm_conv2d(x, w, NULL, (int[]){1, 1}, (int[]){1, 1}, (int[]){1, 1}, 1);
        lm_tensor *p = y ? lm_max_pool2d(y, (int[]){2, 2}, NULL, NULL, NULL, false, NULL) : NULL;
        lm_tensor *s = p ? lm_sum(p, 0, NULL, false) : NULL;
        lm_status st = s ? lm_backward(s, NULL, false) : lm_last_status();
        if (st != LM_OK && lm_last_status() != LM_ERR_MEMORY) all_failed_cleanly = false;
        lm_release(s);
        lm_release(p);
        lm_release(y);
        lm_zero_grad(x);
        lm_zero_grad(w);
    }
    lm_debug_fail_alloc_after(0);
    ok(all_failed_cleanly, "conv2d + max_pool2d + backward: injected allocation failures report "
       "out of memory");
    lm_release(w);
    lm_release(x);
}

int main(void)
{
    plan_auto();
    lm_manual_seed(1234);
    lm_set_num_threads(1);
    test_conv2d_forward();
    test_conv2d_by_hand();
    test_conv2d_noncontiguous();
    test_conv1d_forward();
    test_conv_transpose2d_forward();
    test_max_pool_by_hand();
    test_pool_output_sizes();
    test_pool_forward();
    test_conv_gradients();
    test_pool_gradients();
    test_threads();
    test_errors();
    test_alloc_failures();
    return done();
}
