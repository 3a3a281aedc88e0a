/* test_elementwise.c — the element-wise ops (binary, with a number, unary, where, in place)
 * against references computed here with plain loops and libm in double precision: every op and
 * dtype, contiguous and strided inputs (transposed, sliced with a step, expanded), broadcasting,
 * empty and size-1 dims, the type rules, the error paths and their messages, out-of-memory
 * paths, and the same results on one and two threads. */
#include "lumen.h"
#include "tap.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

/* ---- tensors built and read by the test itself ------------------------------------------- */

static const lm_dtype all_dtypes[] = {LM_F32, LM_F64, LM_I64, LM_U8};

static bool is_float(lm_dtype dt) { return dt == LM_F32 || dt == LM_F64; }

static lm_dtype promote(lm_dtype a, lm_dtype b)
{
    static const int rank[] = {[LM_U8] = 0, [LM_I64] = 1, [LM_F32] = 2, [LM_F64] = 3};
    return rank[a] >= rank[b] ? a : b;
}

/* x as the dtype would hold it. */
static double as_dtype(double x, lm_dtype dt)
{
    switch (dt) {
    case LM_F32: return (float)x;
    case LM_I64: return (double)(int64_t)x;
    case LM_U8: return (uint8_t)(int64_t)x;
    default: return x;
    }
}

static void store(void *p, lm_dtype dt, double v)
{
    switch (dt) {
    case LM_F32: *(float *)p = (float)v; break;
    case LM_F64: *(double *)p = v; break;
    case LM_I64: *(int64_t *)p = (int64_t)v; break;
    default: *(uint8_t *)p = (uint8_t)(int64_t)v; break;
    }
}

/* The element at a full index, read through the strides. */
static double elem(const lm_tensor *t, const int64_t *idx)
{
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) off += idx[d] * t->strides[d];
    const char *base = t->storage->data;
    switch (t->dtype) {
    case LM_F32: return ((const float *)base)[off];
    case LM_F64: return ((const double *)base)[off];
    case LM_I64: return (double)((const int64_t *)base)[off];
    default: return ((const uint8_t *)base)[off];
    }
}

/* The element of t that broadcasting maps to index idx of an ndim-dim result. */
static double elem_bcast(const lm_tensor *t, int ndim, const int64_t *idx)
{
    int64_t ti[LM_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int d = 0; d < t->ndim; d++) ti[d] = t->shape[d] == 1 ? 0 : idx[d + lead];
    return elem(t, ti);
}

/* Steps a C-order multi-index; false after the last one. */
static bool next_index(int64_t *idx, int ndim, const int64_t *shape)
{
    for (int d = ndim - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) return true;
        idx[d] = 0;
    }
    return false;
}

/* Test values: small, exact in every dtype, zeros and negatives included (u8 spans 0..255). */
static double value(lm_dtype dt, int64_t k, int seed)
{
    if (dt == LM_U8) return (double)((k * 37 + seed * 53) % 256);
    double v = (double)((k * 37 + seed * 11) % 23 - 11);
    return is_float(dt) ? v * 0.25 : v;
}

static lm_tensor *make(lm_dtype dt, int ndim, const int64_t *shape, int seed)
{
    lm_tensor *t = lm_empty(ndim, shape, dt);
    size_t es = lm_dtype_size(dt);
    for (int64_t k = 0; k < lm_numel(t); k++)
        store((char *)lm_data(t) + k * (int64_t)es, dt, value(dt, k, seed));
    return t;
}

static lm_tensor *from_doubles(lm_dtype dt, int n, const double *v)
{
    lm_tensor *t = lm_empty(LM_SHAPE(n), dt);
    size_t es = lm_dtype_size(dt);
    for (int k = 0; k < n; k++) store((char *)lm_data(t) + k * (int64_t)es, dt, v[k]);
    return t;
}

static double at1(const lm_tensor *t, int64_t i) { return elem(t, &i); }

/* Ways an [r, c] input can be laid out in memory. */
enum { CONTIG, TRANSPOSED, STEPPED, EXPANDED };

static lm_tensor *layout(int kind, lm_dtype dt, int64_t r, int64_t c, int seed)
{
    lm_tensor *base, *t;
    switch (kind) {
    case TRANSPOSED:
        base = make(dt, LM_SHAPE(c, r), seed);
        t = lm_t(base);
        break;
    case STEPPED: /* every second column from 1: a step and an offset */
        base = make(dt, LM_SHAPE(r, 2 * c + 1), seed);
        t = lm_slice(base, 1, 1, 2 * c + 1, 2);
        break;
    case EXPANDED:
        base = make(dt, LM_SHAPE(1, c), seed);
        t = lm_expand(base, LM_SHAPE(r, c));
        break;
    default: return make(dt, LM_SHAPE(r, c), seed);
    }
    lm_release(base);
    return t;
}

static bool same_value(double got, double want, double tol)
{
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= tol * fmax(1.0, fabs(want));
}

static bool broadcast(const lm_tensor *a, const lm_tensor *b, int *n, int64_t *shape)
{
    *n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int d = 0; d < *n; d++) {
        int ia = d - (*n - a->ndim), ib = d - (*n - b->ndim);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) return false;
        shape[d] = sa == 1 ? sb : sa;
    }
    return true;
}

static bool has_shape(const lm_tensor *t, int n, const int64_t *shape)
{
    if (!t || t->ndim != n) return false;
    for (int d = 0; d < n; d++)
        if (t->shape[d] != shape[d]) return false;
    return true;
}

static char why[512]; /* the first mismatch of the last check, for diag() */

/* ---- binary ops ---------------------------------------------------------------------------- */

enum { ADD, SUB, MUL, DIV, POW, MAX, MIN, EQ, NE, LT, LE, GT, GE, NBIN };
typedef lm_tensor *(*bin_fn)(const lm_tensor *, const lm_tensor *);
typedef lm_tensor *(*scalar_fn)(const lm_tensor *, double);
static const struct {
    const char *name;
    bin_fn fn;
    scalar_fn sfn;
} bins[NBIN] = {
    [ADD] = {"add", lm_add, lm_add_scalar},
    [SUB] = {"sub", lm_sub, lm_sub_scalar},
    [MUL] = {"mul", lm_mul, lm_mul_scalar},
    [DIV] = {"div", lm_div, lm_div_scalar},
    [POW] = {"pow", lm_pow, lm_pow_scalar},
    [MAX] = {"maximum", lm_maximum, lm_maximum_scalar},
    [MIN] = {"minimum", lm_minimum, lm_minimum_scalar},
    [EQ] = {"eq", lm_eq, lm_eq_scalar},
    [NE] = {"ne", lm_ne, lm_ne_scalar},
    [LT] = {"lt", lm_lt, lm_lt_scalar},
    [LE] = {"le", lm_le, lm_le_scalar},
    [GT] = {"gt", lm_gt, lm_gt_scalar},
    [GE] = {"ge", lm_ge, lm_ge_scalar},
};

static bool is_cmp(int op) { return op >= EQ; }

static lm_dtype compute_dtype(int op, lm_dtype a, lm_dtype b)
{
    lm_dtype ct = promote(a, b);
    return op == DIV && !is_float(ct) ? LM_F32 : ct;
}

/* x op y computed the plain way, in double for floats and int64 for integers, then held in ct.
 * Integer add/sub/mul of the test values never overflow int64; u8 wraps through the final
 * conversion. */
static double ref_binary(int op, double x, double y, lm_dtype ct)
{
    x = as_dtype(x, ct);
    y = as_dtype(y, ct);
    switch (op) {
    case EQ: return x == y;
    case NE: return x != y;
    case LT: return x < y;
    case LE: return x <= y;
    case GT: return x > y;
    case GE: return x >= y;
    default: break;
    }
    double r = 0;
    if (is_float(ct)) {
        switch (op) {
        case ADD: r = x + y; break;
        case SUB: r = x - y; break;
        case MUL: r = x * y; break;
        case DIV: r = x / y; break;
        case POW: r = pow(x, y); break;
        case MAX: r = isnan(x) || isnan(y) ? NAN : x > y ? x : y; break;
        case MIN: r = isnan(x) || isnan(y) ? NAN : x < y ? x : y; break;
        }
    } else {
        int64_t a = (int64_t)x, b = (int64_t)y;
        switch (op) {
        case ADD: r = (double)(a + b); break;
        case SUB: r = (double)(a - b); break;
        case MUL: r = (double)(a * b); break;
        case POW:
            if (b < 0) {
                r = a == 1 ? 1 : a == -1 ? (b % 2 ? -1 : 1) : 0;
            } else {
                uint64_t p = 1;
                for (int64_t k = 0; k < b; k++) p *= (uint64_t)a;
                r = ct == LM_U8 ? (double)(uint8_t)p : (double)(int64_t)p;
            }
            break;
        case MAX: r = (double)(a > b ? a : b); break;
        case MIN: r = (double)(a < b ? a : b); break;
        }
    }
    return as_dtype(r, ct);
}

/* Checks out = a op b against ref_binary at every index; s replaces b when b is NULL
 * (reversed: s op a). */
static bool check_binary(int op, const lm_tensor *a, const lm_tensor *b, double s, bool reversed,
                         lm_dtype ct, const lm_tensor *out)
{
    int n;
    int64_t shape[LM_MAX_DIMS];
    if (b) {
        broadcast(a, b, &n, shape);
    } else {
        n = a->ndim;
        memcpy(shape, a->shape, sizeof(int64_t) * (size_t)n);
    }
    lm_dtype rt = is_cmp(op) ? LM_U8 : ct;
    if (!has_shape(out, n, shape) || out->dtype != rt) {
        snprintf(why, sizeof why, "%s: wrong result (%s), want dtype %s", bins[op].name,
                 out ? lm_dtype_name(out->dtype) : lm_last_error(), lm_dtype_name(rt));
        return false;
    }
    double tol = ct == LM_F32 ? 2e-6 : 1e-12;
    int64_t idx[LM_MAX_DIMS] = {0};
    if (lm_numel(out) == 0) return true;
    do {
        double x = elem_bcast(a, n, idx), y = b ? elem_bcast(b, n, idx) : s;
        double want = reversed ? ref_binary(op, y, x, ct) : ref_binary(op, x, y, ct);
        double got = elem(out, idx);
        if (!same_value(got, want, tol)) {
            snprintf(why, sizeof why, "%s(%g, %g) in %s: got %.9g, want %.9g", bins[op].name,
                     reversed ? y : x, reversed ? x : y, lm_dtype_name(ct), got, want);
            return false;
        }
    } while (next_index(idx, n, shape));
    return true;
}

static void test_binary_values(void)
{
    static const lm_dtype pairs[][2] = {
        {LM_F32, LM_F32}, {LM_F64, LM_F64}, {LM_I64, LM_I64}, {LM_U8, LM_U8},  {LM_F32, LM_F64},
        {LM_I64, LM_F32}, {LM_U8, LM_I64},  {LM_U8, LM_F32},  {LM_F64, LM_U8}, {LM_I64, LM_F64},
    };
    for (int op = 0; op < NBIN; op++) {
        for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
            lm_dtype da = pairs[p][0], db = pairs[p][1];
            struct {
                lm_tensor *a, *b;
                const char *what;
            } cases[] = {
                {layout(CONTIG, da, 4, 5, 1), layout(CONTIG, db, 4, 5, 2), "contiguous"},
                {layout(TRANSPOSED, da, 4, 5, 1), layout(STEPPED, db, 4, 5, 2),
                 "transposed, stepped"},
                {layout(STEPPED, da, 4, 5, 3), layout(EXPANDED, db, 4, 5, 4), "stepped, expanded"},
                {layout(EXPANDED, da, 4, 5, 5), layout(TRANSPOSED, db, 4, 5, 6),
                 "expanded, transposed"},
                {make(da, LM_SHAPE(4, 5), 7), make(db, LM_SHAPE(5), 8), "[4,5] and [5]"},
                {make(da, LM_SHAPE(4, 1), 9), layout(STEPPED, db, 4, 5, 10), "[4,1] and stepped"},
                {make(da, LM_SHAPE(3, 1, 5), 11), make(db, LM_SHAPE(4, 1), 12),
                 "[3,1,5] and [4,1]"},
                {make(da, 0, NULL, 13), layout(TRANSPOSED, db, 4, 5, 14), "0-dim and transposed"},
                {layout(CONTIG, da, 4, 5, 15), make(db, 0, NULL, 16), "[4,5] and 0-dim"},
                {make(da, 0, NULL, 17), make(db, 0, NULL, 18), "0-dim and 0-dim"},
                {make(da, LM_SHAPE(1, 1), 19), make(db, LM_SHAPE(1), 20), "[1,1] and [1]"},
                {make(da, LM_SHAPE(0, 5), 21), make(db, LM_SHAPE(5), 22), "[0,5] and [5]"},
                {make(da, LM_SHAPE(4, 0), 23), make(db, LM_SHAPE(4, 1), 24), "[4,0] and [4,1]"},
            };
            int ncases = (int)(sizeof cases / sizeof cases[0]), passed = 0;
            const char *failed = NULL;
            for (int c = 0; c < ncases; c++) {
                lm_tensor *out = bins[op].fn(cases[c].a, cases[c].b);
                if (check_binary(op, cases[c].a, cases[c].b, 0, false, compute_dtype(op, da, db),
                                 out))
                    passed++;
                else if (!failed)
                    failed = cases[c].what;
                lm_release(out);
                lm_release(cases[c].a);
                lm_release(cases[c].b);
            }
            if (!ok(passed == ncases, "%s %s,%s: %d layouts and broadcasts", bins[op].name,
                    lm_dtype_name(da), lm_dtype_name(db), ncases))
                diag("first failure (%s): %s", failed, why);
        }
    }
}

static void test_binary_hand_cases(void)
{
    /* Division of integers is true division in f32. */
    lm_tensor *a = from_doubles(LM_I64, 4, (double[]){7, -7, 1, 0});
    lm_tensor *b = from_doubles(LM_I64, 4, (double[]){2, 2, 0, 0});
    lm_tensor *q = lm_div(a, b);
    ok(q && q->dtype == LM_F32 && at1(q, 0) == 3.5 && at1(q, 1) == -3.5 && isinf(at1(q, 2)) &&
           isnan(at1(q, 3)),
       "div of i64 gives f32 [3.5, -3.5, inf, nan]");
    lm_release(q);
    lm_release(a);
    lm_release(b);

    /* Integer powers: by squaring for large exponents, PyTorch's rule for negative ones. */
    a = from_doubles(LM_I64, 8, (double[]){2, 3, -2, 2, 1, -1, -1, 5});
    b = from_doubles(LM_I64, 8, (double[]){62, 3, 3, -1, -5, -3, -2, 0});
    lm_tensor *p = lm_pow(a, b);
    const int64_t *pp = p ? lm_data(p) : NULL;
    ok(p && p->dtype == LM_I64 && pp[0] == (int64_t)1 << 62 && pp[1] == 27 && pp[2] == -8 &&
           pp[3] == 0 && pp[4] == 1 && pp[5] == -1 && pp[6] == 1 && pp[7] == 1,
       "i64 pow: 2^62, 3^3, (-2)^3, 2^-1 = 0, 1^-5 = 1, (-1)^-3 = -1, (-1)^-2 = 1, 5^0 = 1");
    lm_release(p);
    lm_release(a);
    lm_release(b);

    /* Integer overflow wraps like two's complement (PyTorch's behaviour). */
    lm_tensor *big =
        lm_from_data((int64_t[]){INT64_MAX, INT64_MIN, INT64_MAX}, LM_I64, LM_SHAPE(3));
    lm_tensor *one = lm_from_data((int64_t[]){1, 1, 2}, LM_I64, LM_SHAPE(3));
    lm_tensor *s = lm_add(big, one), *d = lm_sub(big, one), *m = lm_mul(big, one);
    const int64_t *sp = lm_data(s), *dp = lm_data(d), *mp = lm_data(m);
    ok(sp[0] == INT64_MIN && dp[1] == INT64_MAX && mp[2] == -2, "i64 add/sub/mul wrap on overflow");
    lm_tensor *n = lm_neg(big), *ab = lm_abs(big);
    ok(((int64_t *)lm_data(n))[1] == INT64_MIN && ((int64_t *)lm_data(ab))[1] == INT64_MIN &&
           ((int64_t *)lm_data(ab))[0] == INT64_MAX,
       "neg and abs of INT64_MIN give INT64_MIN");
    lm_tensor *big_eq = lm_eq(big, big);
    ok(big_eq && ((uint8_t *)lm_data(big_eq))[0] == 1, "eq compares extreme i64 exactly");
    lm_release(big_eq);
    lm_release(n);
    lm_release(ab);
    lm_release(s);
    lm_release(d);
    lm_release(m);
    lm_release(big);
    lm_release(one);

    /* u8 arithmetic wraps modulo 256. */
    a = from_doubles(LM_U8, 3, (double[]){250, 3, 16});
    b = from_doubles(LM_U8, 3, (double[]){10, 5, 16});
    lm_tensor *us = lm_add(a, b), *ud = lm_sub(a, b), *um = lm_mul(a, b);
    ok(at1(us, 0) == 4 && at1(ud, 1) == 254 && at1(um, 2) == 0 && us->dtype == LM_U8,
       "u8 add/sub/mul wrap: 250+10=4, 3-5=254, 16*16=0");
    lm_release(us);
    lm_release(ud);
    lm_release(um);
    lm_release(a);
    lm_release(b);

    /* maximum/minimum propagate NaN from either side. */
    a = from_doubles(LM_F32, 4, (double[]){NAN, 1, -INFINITY, 2});
    b = from_doubles(LM_F32, 4, (double[]){1, NAN, 3, -0.5});
    lm_tensor *mx = lm_maximum(a, b), *mn = lm_minimum(a, b);
    ok(isnan(at1(mx, 0)) && isnan(at1(mx, 1)) && at1(mx, 2) == 3 && at1(mx, 3) == 2 &&
           isnan(at1(mn, 0)) && isnan(at1(mn, 1)) && isinf(at1(mn, 2)) && at1(mn, 3) == -0.5,
       "maximum/minimum propagate NaN");
    lm_tensor *nan_eq = lm_eq(a, a), *nan_ne = lm_ne(a, a);
    ok(at1(nan_eq, 0) == 0 && at1(nan_eq, 1) == 1 && at1(nan_ne, 0) == 1 && nan_eq->dtype == LM_U8,
       "NaN != NaN in comparisons");
    lm_release(nan_eq);
    lm_release(nan_ne);
    lm_release(mx);
    lm_release(mn);
    lm_release(a);
    lm_release(b);

    /* Comparisons happen in the promoted dtype: 0.5 (f32) vs 0 (i64) is not equal. */
    a = from_doubles(LM_F32, 2, (double[]){0.5, 2});
    b = from_doubles(LM_I64, 2, (double[]){0, 2});
    lm_tensor *e = lm_eq(a, b), *g = lm_gt(a, b);
    ok(e && at1(e, 0) == 0 && at1(e, 1) == 1 && at1(g, 0) == 1 && at1(g, 1) == 0,
       "f32 vs i64 comparisons are done in f32, not truncated");
    lm_release(e);
    lm_release(g);
    lm_release(a);
    lm_release(b);
}

/* ---- numbers ------------------------------------------------------------------------------- */

static lm_tensor *call_scalar(int op, bool reversed, const lm_tensor *a, double s)
{
    if (!reversed) return bins[op].sfn(a, s);
    return op == SUB   ? lm_rsub_scalar(a, s)
           : op == DIV ? lm_rdiv_scalar(a, s)
                       : lm_rpow_scalar(a, s);
}

static void test_scalar_ops(void)
{
    /* The compute dtype the number rule gives: a float tensor keeps its dtype; an integer one
     * stays integer unless the number has a fraction (then f32); comparisons of an integer
     * tensor with a number it cannot hold compare exactly (in f64). */
    static const struct {
        int op;
        lm_dtype dt;
        double s;
        bool reversed;
        lm_dtype ct;
    } cases[] = {
        {ADD, LM_F32, 2.5, false, LM_F32}, {ADD, LM_F64, 0.1, false, LM_F64},
        {ADD, LM_I64, 3, false, LM_I64},   {ADD, LM_I64, 2.5, false, LM_F32},
        {ADD, LM_U8, 300, false, LM_U8},   {ADD, LM_U8, 0.5, false, LM_F32},
        {SUB, LM_U8, 1, false, LM_U8},     {SUB, LM_F32, 1.5, true, LM_F32},
        {SUB, LM_I64, 10, true, LM_I64},   {SUB, LM_U8, 2, true, LM_U8},
        {MUL, LM_F32, -3, false, LM_F32},  {MUL, LM_I64, -2, false, LM_I64},
        {MUL, LM_U8, -1, false, LM_U8},    {DIV, LM_F32, 4, false, LM_F32},
        {DIV, LM_I64, 2, false, LM_F32},   {DIV, LM_U8, 3, true, LM_F32},
        {DIV, LM_F64, 0, false, LM_F64},   {DIV, LM_F32, 0.5, true, LM_F32},
        {POW, LM_F32, 2, false, LM_F32},   {POW, LM_F32, 0.5, false, LM_F32},
        {POW, LM_F64, -1, false, LM_F64},  {POW, LM_I64, 3, false, LM_I64},
        {POW, LM_I64, 1.5, false, LM_F32}, {POW, LM_U8, 2, false, LM_U8},
        {POW, LM_F64, 2, true, LM_F64},    {POW, LM_I64, 2, true, LM_I64},
        {POW, LM_I64, -2, true, LM_I64},   {POW, LM_F32, 0.5, true, LM_F32},
        {MAX, LM_F32, 0.3, false, LM_F32}, {MAX, LM_I64, -2, false, LM_I64},
        {MIN, LM_U8, 100, false, LM_U8},   {MIN, LM_I64, 0.5, false, LM_F32},
        {EQ, LM_F32, 0.25, false, LM_F32}, {EQ, LM_I64, 3, false, LM_I64},
        {NE, LM_U8, 74, false, LM_U8},     {LT, LM_U8, 300, false, LM_F64},
        {LT, LM_I64, 2.5, false, LM_F64},  {LE, LM_F64, -1, false, LM_F64},
        {GT, LM_U8, -1, false, LM_F64},    {GT, LM_I64, 0, false, LM_I64},
        {GE, LM_F32, 1e30, false, LM_F32}, {EQ, LM_U8, 256, false, LM_F64},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int op = cases[i].op;
        lm_dtype dt = cases[i].dt;
        lm_tensor *inputs[] = {
            layout(CONTIG, dt, 4, 5, 1),  layout(TRANSPOSED, dt, 4, 5, 2),
            layout(STEPPED, dt, 4, 5, 3), layout(EXPANDED, dt, 4, 5, 4),
            make(dt, 0, NULL, 5),         make(dt, LM_SHAPE(0, 3), 6),
            make(dt, LM_SHAPE(1, 1), 7),
        };
        int n = (int)(sizeof inputs / sizeof inputs[0]), passed = 0;
        for (int k = 0; k < n; k++) {
            lm_tensor *out = call_scalar(op, cases[i].reversed, inputs[k], cases[i].s);
            passed +=
                check_binary(op, inputs[k], NULL, cases[i].s, cases[i].reversed, cases[i].ct, out);
            lm_release(out);
            lm_release(inputs[k]);
        }
        if (!ok(passed == n, "%s%s_scalar(%s tensor, %g): dtype and values over %d layouts",
                cases[i].reversed ? "r" : "", bins[op].name, lm_dtype_name(dt), cases[i].s, n))
            diag("%s", why);
    }

    lm_tensor *u = from_doubles(LM_U8, 3, (double[]){0, 7, 255});
    lm_tensor *lt = lm_lt_scalar(u, 300), *gt = lm_gt_scalar(u, -1);
    ok(lt && gt && at1(lt, 2) == 1 && at1(gt, 0) == 1 && lt->dtype == LM_U8,
       "u8 < 300 and u8 > -1 are true (no wrap of the number in comparisons)");
    lm_release(lt);
    lm_release(gt);
    lm_tensor *w = lm_add_scalar(u, 2);
    ok(w && w->dtype == LM_U8 && at1(w, 2) == 1, "u8 255 + 2 wraps to 1");
    lm_release(w);
    lm_release(u);

    lm_tensor *i = from_doubles(LM_I64, 2, (double[]){2, 3});
    lm_clear_error();
    ok(lm_pow_scalar(i, -1) == NULL && lm_last_status() == LM_ERR_ARG,
       "i64 tensor to a negative integer power fails");
    has_str(lm_last_error(), "pow_scalar: integers to negative integer powers are not allowed",
            "message names the op and the rule");
    has_str(lm_last_error(), "[2]", "message names the shape");
    lm_clear_error();
    ok(lm_add_scalar(i, 1e30) == NULL && lm_last_status() == LM_ERR_ARG,
       "an integral number beyond i64 fails for an i64 tensor");
    has_str(lm_last_error(), "add_scalar: the number 1e+30 does not fit an i64 tensor", "message");
    lm_release(i);
}

/* ---- unary ops ----------------------------------------------------------------------------- */

enum {
    U_NEG,
    U_ABS,
    U_EXP,
    U_LOG,
    U_LOG1P,
    U_SQRT,
    U_RSQRT,
    U_SIN,
    U_COS,
    U_TANH,
    U_SIGMOID,
    U_RELU,
    U_GELU,
    U_GELU_TANH,
    U_SILU,
    U_LEAKY,
    U_CLAMP,
    NUN
};
static const char *const unames[NUN] = {
    "neg",  "abs",     "exp",  "log",  "log1p",     "sqrt", "rsqrt",      "sin",   "cos",
    "tanh", "sigmoid", "relu", "gelu", "gelu_tanh", "silu", "leaky_relu", "clamp",
};

static lm_tensor *call_unary(int op, const lm_tensor *a, double p0, double p1)
{
    switch (op) {
    case U_NEG: return lm_neg(a);
    case U_ABS: return lm_abs(a);
    case U_EXP: return lm_exp(a);
    case U_LOG: return lm_log(a);
    case U_LOG1P: return lm_log1p(a);
    case U_SQRT: return lm_sqrt(a);
    case U_RSQRT: return lm_rsqrt(a);
    case U_SIN: return lm_sin(a);
    case U_COS: return lm_cos(a);
    case U_TANH: return lm_tanh(a);
    case U_SIGMOID: return lm_sigmoid(a);
    case U_RELU: return lm_relu(a);
    case U_GELU: return lm_gelu(a);
    case U_GELU_TANH: return lm_gelu_tanh(a);
    case U_SILU: return lm_silu(a);
    case U_LEAKY: return lm_leaky_relu(a, p0);
    default: return lm_clamp(a, p0, p1);
    }
}

static double ref_unary(int op, double x, lm_dtype ct, double p0, double p1)
{
    x = as_dtype(x, ct);
    double r;
    switch (op) {
    case U_NEG: r = -x; break;
    case U_ABS: r = fabs(x); break;
    case U_EXP: r = exp(x); break;
    case U_LOG: r = log(x); break;
    case U_LOG1P: r = log1p(x); break;
    case U_SQRT: r = sqrt(x); break;
    case U_RSQRT: r = 1 / sqrt(x); break;
    case U_SIN: r = sin(x); break;
    case U_COS: r = cos(x); break;
    case U_TANH: r = tanh(x); break;
    case U_SIGMOID: r = 1 / (1 + exp(-x)); break;
    case U_RELU: r = x < 0 ? 0 : x; break;
    case U_GELU: r = 0.5 * x * (1 + erf(x / sqrt(2.0))); break;
    case U_GELU_TANH: r = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); break;
    case U_SILU: r = x / (1 + exp(-x)); break;
    case U_LEAKY: r = x < 0 ? x * p0 : x; break;
    default:
        r = isnan(x) || isnan(p0) || isnan(p1) ? NAN : fmin(fmax(x, p0), p1);
        if (ct == LM_U8) r = fmin(fmax(r, 0), 255);
        break;
    }
    return as_dtype(r, ct);
}

static lm_dtype unary_dtype(int op, lm_dtype dt, double p0, double p1)
{
    if (is_float(dt)) return dt;
    bool keeps = op == U_NEG || op == U_ABS || op == U_RELU || op == U_CLAMP;
    if (op == U_CLAMP && (p0 != floor(p0) || p1 != floor(p1))) keeps = false;
    return keeps ? dt : LM_F32;
}

static bool check_unary(int op, const lm_tensor *a, double p0, double p1, lm_dtype ct,
                        const lm_tensor *out, double tol)
{
    if (!has_shape(out, a->ndim, a->shape) || out->dtype != ct) {
        snprintf(why, sizeof why, "%s: wrong result (%s), want dtype %s", unames[op],
                 out ? lm_dtype_name(out->dtype) : lm_last_error(), lm_dtype_name(ct));
        return false;
    }
    int64_t idx[LM_MAX_DIMS] = {0};
    if (lm_numel(out) == 0) return true;
    do {
        double x = elem(a, idx), got = elem(out, idx), want = ref_unary(op, x, ct, p0, p1);
        if (!same_value(got, want, tol)) {
            snprintf(why, sizeof why, "%s(%.9g) in %s: got %.9g, want %.9g", unames[op], x,
                     lm_dtype_name(ct), got, want);
            return false;
        }
    } while (next_index(idx, a->ndim, a->shape));
    return true;
}

static void test_unary_values(void)
{
    for (int op = 0; op < NUN; op++) {
        /* clamp twice: integral bounds (integers stay integers) and a fractional one */
        for (int variant = 0; variant < (op == U_CLAMP ? 2 : 1); variant++) {
            double p0 = op == U_LEAKY ? 0.1 : variant ? -1 : -3;
            double p1 = variant ? 1.5 : 7;
            for (int d = 0; d < 4; d++) {
                lm_dtype dt = all_dtypes[d];
                lm_dtype ct = unary_dtype(op, dt, p0, p1);
                lm_tensor *inputs[] = {
                    layout(CONTIG, dt, 4, 5, 1),    layout(TRANSPOSED, dt, 4, 5, 2),
                    layout(STEPPED, dt, 4, 5, 3),   layout(EXPANDED, dt, 4, 5, 4),
                    make(dt, 0, NULL, 5),           make(dt, LM_SHAPE(0, 3), 6),
                    make(dt, LM_SHAPE(1, 1, 3), 7),
                };
                int n = (int)(sizeof inputs / sizeof inputs[0]), passed = 0;
                for (int k = 0; k < n; k++) {
                    lm_tensor *out = call_unary(op, inputs[k], p0, p1);
                    passed +=
                        check_unary(op, inputs[k], p0, p1, ct, out, ct == LM_F32 ? 2e-6 : 1e-12);
                    lm_release(out);
                    lm_release(inputs[k]);
                }
                if (!ok(passed == n, "%s(%s%s) -> %s over %d layouts", unames[op],
                        lm_dtype_name(dt), op == U_CLAMP ? (variant ? ", -1, 1.5" : ", -3, 7") : "",
                        lm_dtype_name(ct), n))
                    diag("%s", why);
            }
        }
    }
}

/* The f32 functions built on our own vectorized exp and log, and gelu, swept against double libm.
 * Errors are in units of the f32 spacing at the true value (subnormal results: of the smallest
 * subnormal). gelu's negative tail is ill-conditioned: rounding x / sqrt(2) to f32 alone moves
 * erfc by about 2 z^2 f32 ulps, hence its wider bounds (PyTorch's 1 + erf form loses far more). */
static double ulp_error(float got, double want)
{
    if (isnan(want)) return isnan(got) ? 0 : INFINITY;
    if (isinf(want) || fabs(want) > FLT_MAX) return got == (float)want ? 0 : INFINITY;
    double spacing = fabs(want) < FLT_MIN ? 0x1p-149 : ldexp(1.0, ilogb(want) - 23);
    return fabs(got - want) / spacing;
}

static void test_unary_accuracy(void)
{
    const int64_t n = 41001;
    lm_tensor *x = lm_empty(LM_SHAPE(n), LM_F32);
    float *xp = lm_data(x);
    static const struct {
        int op;
        double lo, hi, max_ulp;
    } sweeps[] = {
        {U_EXP, -110, 95, 2}, {U_TANH, -12, 12, 3},    {U_SIGMOID, -85, 30, 3},
        {U_SILU, -85, 30, 3}, {U_GELU_TANH, 0, 12, 3}, {U_GELU, -1, 6, 8},
        {U_GELU, -3, 6, 16},  {U_GELU, -6, 6, 64},
    };
    for (size_t s = 0; s < sizeof sweeps / sizeof sweeps[0]; s++) {
        for (int64_t i = 0; i < n; i++)
            xp[i] =
                (float)(sweeps[s].lo + (sweeps[s].hi - sweeps[s].lo) * (double)i / (double)(n - 1));
        lm_tensor *y = call_unary(sweeps[s].op, x, 0, 0);
        const float *yp = lm_data(y);
        double worst = 0, worst_x = 0;
        for (int64_t i = 0; i < n; i++) {
            double e = ulp_error(yp[i], ref_unary(sweeps[s].op, xp[i], LM_F64, 0, 0));
            if (e > worst) {
                worst = e;
                worst_x = xp[i];
            }
        }
        if (!ok(worst <= sweeps[s].max_ulp, "f32 %s on [%g, %g]: within %g ulp",
                unames[sweeps[s].op], sweeps[s].lo, sweeps[s].hi, sweeps[s].max_ulp))
            diag("worst %.2f ulp at x = %.9g", worst, worst_x);
        lm_release(y);
    }
    lm_release(x);

    /* log and log1p over many binades: x = +-2^(k/64), subnormals included. */
    const int64_t nl = 2 * 17000;
    lm_tensor *lx = lm_empty(LM_SHAPE(nl), LM_F32);
    float *lxp = lm_data(lx);
    for (int64_t i = 0; i < nl; i++)
        lxp[i] = (float)((i % 2 ? -1 : 1) * exp2((double)(i / 2 - 9500) / 64.0));
    lm_tensor *ly = lm_log(lx), *l1 = lm_log1p(lx);
    double worst_log = 0, worst_log1p = 0;
    for (int64_t i = 0; i < nl; i++) {
        worst_log = fmax(worst_log, ulp_error(((float *)lm_data(ly))[i], log(lxp[i])));
        worst_log1p = fmax(worst_log1p, ulp_error(((float *)lm_data(l1))[i], log1p(lxp[i])));
    }
    ok(worst_log <= 1, "f32 log of +-2^(k/64) from 2^-148 to 2^117: within 1 ulp (worst %.2f)",
       worst_log);
    ok(worst_log1p <= 3, "f32 log1p of the same: within 3 ulp (worst %.2f)", worst_log1p);
    lm_release(ly);
    lm_release(l1);
    lm_release(lx);
    lm_tensor *ls = from_doubles(LM_F32, 5, (double[]){0, -1, INFINITY, -INFINITY, NAN});
    ly = lm_log(ls);
    l1 = lm_log1p(ls);
    ok(isinf(at1(ly, 0)) && at1(ly, 0) < 0 && isnan(at1(ly, 1)) && isinf(at1(ly, 2)) &&
           isnan(at1(ly, 3)) && isnan(at1(ly, 4)),
       "f32 log of 0, -1, inf, -inf, nan");
    ok(at1(l1, 0) == 0 && isinf(at1(l1, 1)) && at1(l1, 1) < 0 && isinf(at1(l1, 2)) &&
           isnan(at1(l1, 3)) && isnan(at1(l1, 4)),
       "f32 log1p of 0, -1, inf, -inf, nan");
    lm_release(ly);
    lm_release(l1);
    lm_release(ls);

    /* Small arguments keep their relative precision (no 1 - (1 - x) cancellation). */
    lm_tensor *t = from_doubles(LM_F32, 4, (double[]){1e-30, 1e-5, -3e-3, 0.6});
    lm_tensor *th = lm_tanh(t);
    bool good = true;
    for (int i = 0; i < 4; i++) good &= ulp_error((float)at1(th, i), tanh(at1(t, i))) <= 2;
    ok(good, "f32 tanh of tiny arguments is accurate to 2 ulp");
    lm_release(th);
    lm_release(t);

    /* Special values. */
    lm_tensor *sp =
        from_doubles(LM_F32, 7, (double[]){INFINITY, -INFINITY, NAN, 0, -0.0, 89, -105});
    lm_tensor *e = lm_exp(sp), *tn = lm_tanh(sp), *sg = lm_sigmoid(sp);
    ok(isinf(at1(e, 0)) && at1(e, 1) == 0 && isnan(at1(e, 2)) && at1(e, 3) == 1 && at1(e, 4) == 1 &&
           isinf(at1(e, 5)) && at1(e, 6) == 0,
       "f32 exp of inf, -inf, nan, 0, -0, 89 (overflow), -105 (underflow)");
    ok(at1(tn, 0) == 1 && at1(tn, 1) == -1 && isnan(at1(tn, 2)) && at1(tn, 3) == 0 &&
           signbit(at1(tn, 4)),
       "f32 tanh of inf, -inf, nan, 0, -0");
    ok(at1(sg, 0) == 1 && at1(sg, 1) == 0 && isnan(at1(sg, 2)) && at1(sg, 3) == 0.5,
       "f32 sigmoid of inf, -inf, nan, 0");
    lm_release(e);
    lm_release(tn);
    lm_release(sg);
    lm_release(sp);
    lm_tensor *sub = from_doubles(LM_F32, 2, (double[]){-88, -100});
    lm_tensor *es = lm_exp(sub);
    ok(ulp_error((float)at1(es, 0), exp(-88.0)) <= 2 &&
           ulp_error((float)at1(es, 1), exp(-100.0)) <= 1,
       "f32 exp into the subnormal range");
    lm_release(es);
    lm_release(sub);
}

static void test_unary_special(void)
{
    lm_tensor *f = from_doubles(LM_F32, 5, (double[]){NAN, -2, 0.5, 3, -0.0});
    lm_tensor *r = lm_relu(f), *l = lm_leaky_relu(f, 0.01), *c = lm_clamp(f, -1, 1);
    ok(isnan(at1(r, 0)) && at1(r, 1) == 0 && at1(r, 3) == 3, "relu keeps NaN, zeroes negatives");
    ok(isnan(at1(l, 0)) && fabs(at1(l, 1) + 0.02) < 1e-7 && at1(l, 2) == 0.5,
       "leaky_relu keeps NaN, scales negatives");
    ok(isnan(at1(c, 0)) && at1(c, 1) == -1 && at1(c, 2) == 0.5 && at1(c, 3) == 1,
       "clamp keeps NaN, clips to [min, max]");
    lm_release(r);
    lm_release(l);
    lm_release(c);
    lm_tensor *inv = lm_clamp(f, 1, -1), *lo = lm_clamp(f, -INFINITY, 0.5),
              *hi = lm_clamp(f, 0, INFINITY), *nb = lm_clamp(f, NAN, 1);
    ok(at1(inv, 1) == -1 && at1(inv, 2) == -1 && at1(inv, 3) == -1,
       "clamp with min > max gives max");
    ok(at1(lo, 1) == -2 && at1(lo, 3) == 0.5 && at1(hi, 1) == 0 && at1(hi, 3) == 3,
       "an infinite bound is no bound");
    ok(isnan(at1(nb, 1)) && isnan(at1(nb, 3)), "a NaN bound gives NaN");
    lm_release(inv);
    lm_release(lo);
    lm_release(hi);
    lm_release(nb);
    lm_release(f);

    lm_tensor *u = from_doubles(LM_U8, 4, (double[]){0, 1, 15, 255});
    lm_tensor *nu = lm_neg(u), *cu = lm_clamp(u, 10, 20), *wide = lm_clamp(u, -5, 300);
    ok(nu->dtype == LM_U8 && at1(nu, 0) == 0 && at1(nu, 1) == 255 && at1(nu, 3) == 1,
       "neg of u8 wraps: [0,1,255] -> [0,255,1]");
    ok(cu->dtype == LM_U8 && at1(cu, 0) == 10 && at1(cu, 2) == 15 && at1(cu, 3) == 20,
       "u8 clamp(10, 20)");
    ok(wide->dtype == LM_U8 && at1(wide, 0) == 0 && at1(wide, 3) == 255,
       "u8 clamp with bounds beyond 0..255 changes nothing");
    lm_release(nu);
    lm_release(cu);
    lm_release(wide);
    lm_release(u);

    lm_tensor *i = lm_from_data((int64_t[]){INT64_MIN, -4, 2, INT64_MAX}, LM_I64, LM_SHAPE(4));
    lm_tensor *ci = lm_clamp(i, -INFINITY, 3), *cw = lm_clamp(i, -1e30, 1e30),
              *cf = lm_clamp(i, 0.5, 2);
    const int64_t *cip = lm_data(ci), *cwp = lm_data(cw);
    ok(ci->dtype == LM_I64 && cip[0] == INT64_MIN && cip[2] == 2 && cip[3] == 3,
       "i64 clamp(-inf, 3) keeps i64");
    ok(cwp[0] == INT64_MIN && cwp[3] == INT64_MAX, "i64 clamp with huge bounds keeps the extremes");
    ok(cf->dtype == LM_F32 && at1(cf, 1) == 0.5 && at1(cf, 3) == 2,
       "clamp of i64 with a fractional bound gives f32");
    lm_release(ci);
    lm_release(cw);
    lm_release(cf);
    lm_tensor *ri = lm_relu(i), *ei = lm_exp(i);
    ok(ri->dtype == LM_I64 && ((int64_t *)lm_data(ri))[1] == 0 &&
           ((int64_t *)lm_data(ri))[3] == INT64_MAX,
       "relu keeps i64");
    ok(ei->dtype == LM_F32, "exp of i64 gives f32");
    lm_release(ri);
    lm_release(ei);
    lm_release(i);
}

/* ---- where --------------------------------------------------------------------------------- */

static bool check_where(const lm_tensor *c, const lm_tensor *a, const lm_tensor *b, lm_dtype ct,
                        const lm_tensor *out)
{
    int n1, n;
    int64_t s1[LM_MAX_DIMS], shape[LM_MAX_DIMS];
    broadcast(c, a, &n1, s1);
    lm_tensor *probe = lm_empty(n1, s1, LM_U8);
    broadcast(probe, b, &n, shape);
    lm_release(probe);
    if (!has_shape(out, n, shape) || out->dtype != ct) {
        snprintf(why, sizeof why, "where: wrong result (%s)",
                 out ? lm_dtype_name(out->dtype) : lm_last_error());
        return false;
    }
    int64_t idx[LM_MAX_DIMS] = {0};
    if (lm_numel(out) == 0) return true;
    do {
        double cv = elem_bcast(c, n, idx);
        double want = as_dtype(cv != 0 ? elem_bcast(a, n, idx) : elem_bcast(b, n, idx), ct);
        double got = elem(out, idx);
        if (!same_value(got, want, 0)) {
            snprintf(why, sizeof why, "where(%g): got %g, want %g", cv, got, want);
            return false;
        }
    } while (next_index(idx, n, shape));
    return true;
}

static void test_where(void)
{
    static const lm_dtype pairs[][2] = {{LM_F32, LM_F32}, {LM_F64, LM_F64}, {LM_I64, LM_I64},
                                        {LM_U8, LM_U8},   {LM_I64, LM_F32}, {LM_U8, LM_F64}};
    for (int cd = 0; cd < 4; cd++) {
        for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
            lm_dtype dc = all_dtypes[cd], da = pairs[p][0], db = pairs[p][1];
            struct {
                lm_tensor *c, *a, *b;
            } cases[] = {
                {layout(CONTIG, dc, 4, 5, 1), layout(CONTIG, da, 4, 5, 2),
                 layout(CONTIG, db, 4, 5, 3)},
                {layout(TRANSPOSED, dc, 4, 5, 4), layout(STEPPED, da, 4, 5, 5),
                 layout(EXPANDED, db, 4, 5, 6)},
                {make(dc, LM_SHAPE(4, 1), 7), layout(TRANSPOSED, da, 4, 5, 8),
                 make(db, LM_SHAPE(5), 9)},
                {make(dc, LM_SHAPE(5), 10), make(da, 0, NULL, 11), make(db, LM_SHAPE(3, 1, 1), 12)},
                {make(dc, LM_SHAPE(0, 1), 13), make(da, LM_SHAPE(3), 14),
                 make(db, LM_SHAPE(1), 15)},
                {make(dc, 0, NULL, 16), make(da, 0, NULL, 17), make(db, LM_SHAPE(1, 1), 18)},
            };
            int n = (int)(sizeof cases / sizeof cases[0]), passed = 0;
            for (int k = 0; k < n; k++) {
                lm_tensor *out = lm_where(cases[k].c, cases[k].a, cases[k].b);
                passed += check_where(cases[k].c, cases[k].a, cases[k].b, promote(da, db), out);
                lm_release(out);
                lm_release(cases[k].c);
                lm_release(cases[k].a);
                lm_release(cases[k].b);
            }
            if (!ok(passed == n, "where(%s cond, %s, %s) over %d layouts", lm_dtype_name(dc),
                    lm_dtype_name(da), lm_dtype_name(db), n))
                diag("%s", why);
        }
    }
    lm_tensor *c = from_doubles(LM_F32, 4, (double[]){0, 0.5, -0.0, NAN});
    lm_tensor *a = from_doubles(LM_I64, 4, (double[]){1, 1, 1, 1});
    lm_tensor *b = lm_scalar(-2.5, LM_F32);
    lm_tensor *w = lm_where(c, a, b);
    ok(w && w->dtype == LM_F32 && at1(w, 0) == -2.5 && at1(w, 1) == 1 && at1(w, 2) == -2.5 &&
           at1(w, 3) == 1,
       "a float condition is true when non-zero (NaN too, -0 not); i64 and f32 promote to f32");
    lm_release(w);
    lm_release(c);
    lm_release(a);
    lm_release(b);
}

/* ---- in place ------------------------------------------------------------------------------ */

typedef lm_status (*inplace_fn)(lm_tensor *, const lm_tensor *);
typedef lm_status (*inplace_scalar_fn)(lm_tensor *, double);

/* Runs fn on a transposed view (writes go through to the base) with b broadcast, and checks the
 * values, that the memory was written in place and that the version moved. */
static void test_inplace_binary(void)
{
    static const struct {
        int op;
        inplace_fn fn;
        inplace_scalar_fn sfn;
        const char *name;
    } fns[] = {
        {ADD, lm_add_, lm_add_scalar_, "add_"}, {SUB, lm_sub_, lm_sub_scalar_, "sub_"},
        {MUL, lm_mul_, lm_mul_scalar_, "mul_"}, {DIV, lm_div_, lm_div_scalar_, "div_"},
        {POW, lm_pow_, lm_pow_scalar_, "pow_"},
    };
    for (size_t f = 0; f < sizeof fns / sizeof fns[0]; f++) {
        int op = fns[f].op;
        lm_tensor *a = layout(TRANSPOSED, LM_F32, 4, 5, 1);
        lm_tensor *before = lm_clone(a);
        lm_tensor *b = make(LM_F32, LM_SHAPE(5), 2);
        void *data = a->storage->data;
        uint32_t version = a->storage->version;
        lm_status st = fns[f].fn(a, b);
        ok(st == LM_OK && a->storage->data == data && a->storage->version > version,
           "%s on a transposed view: in place, version bumped", fns[f].name);
        lm_tensor *want = bins[op].fn(before, b);
        ok(check_binary(op, before, b, 0, false, LM_F32, want) &&
               check_binary(op, before, b, 0, false, LM_F32, a),
           "%s values (f32 [4,5] transposed, [5] broadcast)", fns[f].name);
        lm_release(want);

        lm_copy_(a, before);
        st = fns[f].sfn(a, 1.5);
        ok(st == LM_OK && check_binary(op, before, NULL, 1.5, false, LM_F32, a), "%sscalar_ values",
           fns[f].name);
        lm_release(a);
        lm_release(before);
        lm_release(b);

        /* Mixed dtypes: computed in the promoted dtype, written back converted. */
        lm_tensor *d = layout(STEPPED, LM_F64, 3, 4, 3);
        lm_tensor *d0 = lm_clone(d);
        lm_tensor *i = make(LM_I64, LM_SHAPE(3, 1), 4);
        ok(fns[f].fn(d, i) == LM_OK && check_binary(op, d0, i, 0, false, LM_F64, d),
           "%s f64 (stepped) with i64 [3,1]", fns[f].name);
        lm_release(d);
        lm_release(d0);
        lm_release(i);
    }

    /* An integer target takes an integer result of a wider dtype (converted, wrapping). */
    lm_tensor *u = from_doubles(LM_U8, 3, (double[]){250, 1, 2});
    lm_tensor *i = from_doubles(LM_I64, 3, (double[]){10, -2, 300});
    ok(lm_add_(u, i) == LM_OK && at1(u, 0) == 4 && at1(u, 1) == 255 && at1(u, 2) == 46,
       "u8.add_(i64) computes in i64 and wraps into u8");
    lm_tensor *f = from_doubles(LM_F32, 3, (double[]){1, 2, 3});
    lm_tensor *d = from_doubles(LM_F64, 3, (double[]){0.5, 0.25, 0.125});
    ok(lm_mul_(f, d) == LM_OK && f->dtype == LM_F32 && at1(f, 0) == 0.5 && at1(f, 2) == 0.375,
       "f32.mul_(f64) writes an f32 result");
    ok(lm_add_(f, f) == LM_OK && at1(f, 0) == 1 && at1(f, 1) == 1 && at1(f, 2) == 0.75,
       "a.add_(a): the same tensor as input and output");
    lm_tensor *ii = from_doubles(LM_I64, 3, (double[]){1, 2, 3});
    ok(lm_pow_scalar_(ii, 2) == LM_OK && at1(ii, 2) == 9 && lm_mul_scalar_(ii, -1) == LM_OK &&
           at1(ii, 2) == -9,
       "integer pow_scalar_ and mul_scalar_ keep i64");
    lm_release(ii);
    lm_release(u);
    lm_release(i);
    lm_release(f);
    lm_release(d);
}

static void test_inplace_unary(void)
{
    static const struct {
        int op;
        lm_status (*fn)(lm_tensor *);
        const char *name;
    } fns[] = {
        {U_NEG, lm_neg_, "neg_"},    {U_EXP, lm_exp_, "exp_"},
        {U_LOG, lm_log_, "log_"},    {U_SQRT, lm_sqrt_, "sqrt_"},
        {U_RELU, lm_relu_, "relu_"}, {U_SIGMOID, lm_sigmoid_, "sigmoid_"},
        {U_TANH, lm_tanh_, "tanh_"},
    };
    for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++) {
        for (int d = 0; d < 2; d++) {
            lm_tensor *a = layout(d ? STEPPED : TRANSPOSED, all_dtypes[d], 4, 5, 1);
            lm_tensor *before = lm_clone(a);
            uint32_t version = a->storage->version;
            lm_status st = fns[k].fn(a);
            ok(st == LM_OK && a->storage->version > version &&
                   check_unary(fns[k].op, before, 0, 0, all_dtypes[d], a, d ? 1e-12 : 2e-6),
               "%s on a %s %s view", fns[k].name, lm_dtype_name(all_dtypes[d]),
               d ? "stepped" : "transposed");
            lm_release(a);
            lm_release(before);
        }
    }
    lm_tensor *a = layout(TRANSPOSED, LM_F32, 4, 5, 2);
    lm_tensor *before = lm_clone(a);
    ok(lm_clamp_(a, -1, 1.5) == LM_OK && check_unary(U_CLAMP, before, -1, 1.5, LM_F32, a, 0),
       "clamp_ on a transposed view");
    lm_release(a);
    lm_release(before);
    lm_tensor *i = from_doubles(LM_I64, 3, (double[]){-5, 0, 5});
    ok(lm_relu_(i) == LM_OK && lm_neg_(i) == LM_OK && lm_clamp_(i, -3, 0) == LM_OK &&
           at1(i, 0) == 0 && at1(i, 2) == -3,
       "relu_, neg_, clamp_ on i64");
    lm_release(i);
}

/* ---- errors -------------------------------------------------------------------------------- */

static void test_errors(void)
{
    lm_tensor *a = make(LM_F32, LM_SHAPE(4, 5), 1);
    lm_tensor *b = make(LM_F32, LM_SHAPE(3), 2);
    for (int op = 0; op < NBIN; op++) {
        lm_clear_error();
        lm_tensor *r = bins[op].fn(a, b);
        char want[64];
        snprintf(want, sizeof want, "%s: shapes [4,5] and [3] cannot be broadcast", bins[op].name);
        ok(r == NULL && lm_last_status() == LM_ERR_SHAPE, "%s of [4,5] and [3] fails",
           bins[op].name);
        has_str(lm_last_error(), want, "%s: the message names the op and both shapes",
                bins[op].name);
    }

    /* NULL arguments, and a chain keeps the first message. */
    lm_clear_error();
    ok(lm_add(NULL, a) == NULL && lm_last_status() == LM_ERR_ARG, "add(NULL, a) fails");
    has_str(lm_last_error(), "add: NULL tensor argument", "message");
    lm_clear_error();
    ok(lm_gt_scalar(NULL, 1) == NULL, "gt_scalar(NULL) fails");
    has_str(lm_last_error(), "gt_scalar: NULL tensor argument", "message");
    lm_clear_error();
    ok(lm_exp(NULL) == NULL, "exp(NULL) fails");
    has_str(lm_last_error(), "exp: NULL tensor argument", "message");
    lm_clear_error();
    ok(lm_where(a, NULL, a) == NULL, "where with a NULL input fails");
    has_str(lm_last_error(), "where: NULL tensor argument", "message");
    lm_clear_error();
    ok(lm_mul_(NULL, a) == LM_ERR_ARG && lm_sqrt_(NULL) == LM_ERR_ARG &&
           lm_clamp_(NULL, 0, 1) == LM_ERR_ARG && lm_add_scalar_(NULL, 1) == LM_ERR_ARG,
       "in-place ops on NULL return LM_ERR_ARG");
    lm_clear_error();
    lm_tensor *chain = lm_exp(lm_mul(a, b));
    ok(chain == NULL, "exp(mul(bad shapes)) fails");
    has_str(lm_last_error(), "mul: shapes [4,5] and [3]", "the first error of a chain is kept");

    /* where names all three shapes. */
    lm_tensor *c = make(LM_U8, LM_SHAPE(2), 3), *x = make(LM_F32, LM_SHAPE(3), 4);
    lm_clear_error();
    ok(lm_where(c, x, x) == NULL && lm_last_status() == LM_ERR_SHAPE,
       "where with [2], [3], [3] fails");
    has_str(lm_last_error(), "where: shapes [2] (condition), [3] and [3] cannot be broadcast",
            "message");
    lm_clear_error();
    ok(lm_where(x, x, a) == NULL && lm_last_status() == LM_ERR_SHAPE,
       "where with [3], [3], [4,5] fails");
    has_str(lm_last_error(), "where: shapes [3] (condition), [3] and [4,5] cannot be broadcast",
            "message");
    lm_release(c);

    /* In place: the broadcast shape must be the target's. */
    lm_tensor *row = make(LM_F32, LM_SHAPE(5), 5);
    lm_clear_error();
    ok(lm_add_(row, a) == LM_ERR_SHAPE, "[5].add_([4,5]) fails");
    has_str(lm_last_error(), "add_: shapes [5] and [4,5] broadcast to [4,5]",
            "message names the shapes");
    has_str(lm_last_error(), "written-to tensor's shape [5]", "and the target's shape");
    lm_clear_error();
    ok(lm_sub_(a, b) == LM_ERR_SHAPE, "[4,5].sub_([3]) fails");
    has_str(lm_last_error(), "sub_: shapes [4,5] and [3] cannot be broadcast", "message");

    /* In place: a float result cannot go into an integer tensor. */
    lm_tensor *i = make(LM_I64, LM_SHAPE(5), 6);
    lm_tensor *i0 = lm_clone(i);
    lm_clear_error();
    ok(lm_add_(i, row) == LM_ERR_DTYPE, "i64.add_(f32) fails");
    has_str(lm_last_error(), "add_: result type f32 can't be cast to the desired output type i64",
            "message names both dtypes");
    lm_clear_error();
    ok(lm_div_(i, i0) == LM_ERR_DTYPE, "i64.div_(i64) fails: true division gives f32");
    has_str(lm_last_error(), "div_: result type f32", "message");
    lm_clear_error();
    ok(lm_add_scalar_(i, 0.5) == LM_ERR_DTYPE && lm_exp_(i) == LM_ERR_DTYPE &&
           lm_sigmoid_(i) == LM_ERR_DTYPE && lm_clamp_(i, 0.5, 2) == LM_ERR_DTYPE,
       "add_scalar_(0.5), exp_, sigmoid_, clamp_(0.5, 2) of i64 fail");
    has_str(lm_last_error(), "clamp_: result type f32 can't be cast to the desired output type i64",
            "message");
    lm_clear_error();
    ok(lm_pow_scalar_(i, -2) == LM_ERR_ARG, "pow_scalar_(i64, -2) fails");
    has_str(lm_last_error(), "pow_scalar_: integers to negative integer powers", "message");
    bool unchanged = true;
    for (int k = 0; k < 5; k++) unchanged &= at1(i, k) == at1(i0, k);
    ok(unchanged, "failed in-place ops leave the target unchanged");
    lm_release(i);
    lm_release(i0);

    /* In place: overlapping memory. */
    lm_tensor *e = lm_expand(row, LM_SHAPE(4, 5));
    lm_clear_error();
    ok(lm_add_(e, a) == LM_ERR_STATE && lm_relu_(e) == LM_ERR_STATE,
       "writing into an expanded view fails");
    has_str(lm_last_error(), "relu_: unsupported operation", "message names the op");
    lm_tensor *base = make(LM_F32, LM_SHAPE(6), 7);
    lm_tensor *lo = lm_narrow(base, 0, 0, 4), *hi = lm_narrow(base, 0, 2, 4);
    lm_clear_error();
    ok(lm_mul_(lo, hi) == LM_ERR_STATE, "an input that partly overlaps the target fails");
    has_str(lm_last_error(), "mul_: unsupported operation", "message");
    lm_release(lo);
    lm_release(hi);
    lm_release(base);
    lm_release(e);
    lm_release(row);
    lm_release(x);
    lm_release(a);
    lm_release(b);
}

/* Every allocation an op makes may fail: it must then fail cleanly (valgrind checks the rest). */
static void test_out_of_memory(void)
{
    lm_tensor *a = make(LM_I64, LM_SHAPE(4, 5), 1);
    lm_tensor *b = make(LM_F32, LM_SHAPE(5), 2);
    lm_tensor *c = make(LM_U8, LM_SHAPE(4, 1), 3);
    lm_tensor *u = make(LM_U8, LM_SHAPE(4, 5), 4);
    lm_tensor *u0 = lm_clone(u);
    for (int op = 0; op < 5; op++) {
        int failures = 0, k;
        bool clean = true;
        for (k = 1; k < 40; k++) {
            lm_clear_error();
            lm_debug_fail_alloc_after(k);
            lm_tensor *r = NULL;
            lm_status st = LM_OK;
            switch (op) {
            case 0: r = lm_add(a, b); break;
            case 1: r = lm_where(c, a, b); break;
            case 2: r = lm_exp(a); break;
            case 3: r = lm_rpow_scalar(a, 2.5); break;
            default: st = lm_add_(u, a); break;
            }
            lm_debug_fail_alloc_after(0);
            bool failed = op == 4 ? st != LM_OK : r == NULL;
            lm_release(r);
            if (!failed) break;
            failures++;
            clean &= lm_last_status() == LM_ERR_MEMORY;
        }
        ok(failures > 0 && clean && k < 40,
           "op %d: each of its %d allocations can fail with LM_ERR_MEMORY, then it succeeds", op,
           failures);
    }
    /* The in-place add above finally ran once; redo it on the copy to compare. */
    ok(lm_add_(u0, a) == LM_OK, "reference in-place add");
    bool same = true;
    for (int64_t k = 0; k < 20; k++)
        same &= ((uint8_t *)lm_data(u))[k] == ((uint8_t *)lm_data(u0))[k];
    ok(same, "failed attempts did not write into the target");
    lm_release(a);
    lm_release(b);
    lm_release(c);
    lm_release(u);
    lm_release(u0);
}

/* ---- threads ------------------------------------------------------------------------------- */

static bool same_bits(const lm_tensor *x, const lm_tensor *y)
{
    return x && y && x->dtype == y->dtype && lm_numel(x) == lm_numel(y) && lm_is_contiguous(x) &&
           lm_is_contiguous(y) && memcmp(lm_data(x), lm_data(y), lm_nbytes(x)) == 0;
}

static void test_threads(void)
{
    /* [300, 512] transposed view + a [512] row: 153600 elements, above the parallel grain. */
    lm_tensor *a = layout(TRANSPOSED, LM_F32, 300, 512, 1);
    lm_tensor *b = make(LM_F32, LM_SHAPE(512), 2);
    lm_tensor *cond = make(LM_U8, LM_SHAPE(300, 1), 3);
    lm_tensor *r[2][5];
    for (int t = 0; t < 2; t++) {
        lm_set_num_threads(t + 1);
        r[t][0] = lm_add(a, b);
        r[t][1] = lm_tanh(a);
        r[t][2] = lm_where(cond, a, b);
        r[t][3] = lm_le(b, a);
        lm_tensor *target = layout(TRANSPOSED, LM_F32, 300, 512, 1);
        lm_mul_(target, b);
        r[t][4] = lm_contiguous(target);
        lm_release(target);
    }
    lm_set_num_threads(1);
    ok(check_binary(ADD, a, b, 0, false, LM_F32, r[1][0]),
       "2 threads: add of a transposed view and a row is right");
    ok(check_where(cond, a, b, LM_F32, r[1][2]), "2 threads: where is right");
    ok(check_binary(MUL, a, b, 0, false, LM_F32, r[1][4]),
       "2 threads: mul_ into a transposed view is right");
    static const char *const what[] = {"add", "tanh", "where", "le", "mul_"};
    for (int k = 0; k < 5; k++) {
        ok(same_bits(r[0][k], r[1][k]), "%s: the same bits on 1 and 2 threads", what[k]);
        lm_release(r[0][k]);
        lm_release(r[1][k]);
    }
    lm_release(a);
    lm_release(b);
    lm_release(cond);
}

int main(void)
{
    plan_auto();
    lm_set_num_threads(1);
    test_binary_values();
    test_binary_hand_cases();
    test_scalar_ops();
    test_unary_values();
    test_unary_accuracy();
    test_unary_special();
    test_where();
    test_inplace_binary();
    test_inplace_unary();
    test_errors();
    test_out_of_memory();
    test_threads();
    /* libgomp keeps its worker threads until exit; joining them now leaves valgrind nothing
     * "possibly lost" (their thread-local storage). */
    omp_pause_resource_all(omp_pause_hard);
    return done();
}
