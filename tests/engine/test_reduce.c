/* test_reduce.c — the reductions (sum, mean, prod, var, std, logsumexp, norm, amax/amin,
 * max/min with indices, argmax/argmin) against hand-computed values and against naive loops
 * written here: every dtype, contiguous and strided inputs, keepdim, empty and size-1 dims,
 * NaN and ties, numerical stability, thread-count independence and every error path. */
#include "tap.h"

#include "lumen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------------------------- */

static uint64_t rng_state = 12345;
static uint32_t next_rand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static lm_tensor *from_doubles(lm_dtype dt, int ndim, const int64_t *shape, const double *v)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    void *buf = malloc((size_t)(n > 0 ? n : 1) * 8);
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case LM_F32: ((float *)buf)[i] = (float)v[i]; break;
        case LM_F64: ((double *)buf)[i] = v[i]; break;
        case LM_I64: ((int64_t *)buf)[i] = (int64_t)v[i]; break;
        case LM_U8: ((uint8_t *)buf)[i] = (uint8_t)v[i]; break;
        default: break;
        }
    }
    lm_tensor *t = lm_from_data(buf, dt, ndim, shape);
    free(buf);
    return t;
}

/* Non-zero values of moderate size, exact in every dtype that holds them. */
static double sample(lm_dtype dt)
{
    uint32_t r = next_rand();
    switch (dt) {
    case LM_U8: return 1 + r % 5;
    case LM_I64: return r % 11 == 5 ? 7.0 : (double)(r % 11) - 5;
    default: return ((double)(r % 40) - 20 + 0.5) / 8;
    }
}

static lm_tensor *random_tensor(lm_dtype dt, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) v[i] = sample(dt);
    lm_tensor *t = from_doubles(dt, ndim, shape, v);
    free(v);
    return t;
}

/* Element at a C-order flat index, whatever the strides. */
static double at(const lm_tensor *t, int64_t flat)
{
    int64_t idx[LM_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = flat % t->shape[d];
        flat /= t->shape[d];
    }
    double v = NAN;
    lm_get(t, idx, &v);
    return v;
}

static double value(const lm_tensor *t)
{
    double v = NAN;
    lm_item(t, &v);
    return v;
}

static bool same_shape(const lm_tensor *t, int ndim, const int64_t *shape)
{
    if (!t || t->ndim != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return false;
    return true;
}

/* ---- the reference: naive loops over buckets of elements ------------------------------------- */

typedef enum {
    T_SUM, T_MEAN, T_PROD, T_VAR, T_STD, T_LSE, T_NORM, T_AMAX, T_AMIN,
    T_MAXV, T_MAXI, T_MINV, T_MINI, T_ARGMAX, T_ARGMIN, T_COUNT
} top;

static const char *const top_names[] = {
    "sum", "mean", "prod", "var", "std", "logsumexp", "norm", "amax", "amin",
    "max_dim values", "max_dim indices", "min_dim values", "min_dim indices", "argmax", "argmin",
};
_Static_assert(sizeof top_names / sizeof top_names[0] == T_COUNT, "test op names");

static bool single_dim(top op) { return op >= T_MAXV; }
static bool needs_elements(top op) { return op >= T_AMAX; }

static lm_dtype expected_dtype(top op, lm_dtype in)
{
    bool fl = in == LM_F32 || in == LM_F64;
    switch (op) {
    case T_SUM:
    case T_PROD: return fl ? in : LM_I64;
    case T_MEAN:
    case T_VAR:
    case T_STD:
    case T_LSE:
    case T_NORM: return fl ? in : LM_F32;
    case T_MAXI:
    case T_MINI:
    case T_ARGMAX:
    case T_ARGMIN: return LM_I64;
    default: return in;
    }
}

static lm_tensor *call(top op, const lm_tensor *t, int nd, const int *dims, bool keep, double p,
                       int64_t corr)
{
    lm_tensor *v = NULL, *i = NULL;
    switch (op) {
    case T_SUM: return lm_sum(t, nd, dims, keep);
    case T_MEAN: return lm_mean(t, nd, dims, keep);
    case T_PROD: return lm_prod(t, nd, dims, keep);
    case T_VAR: return lm_var(t, nd, dims, corr, keep);
    case T_STD: return lm_std(t, nd, dims, corr, keep);
    case T_LSE: return lm_logsumexp(t, nd, dims, keep);
    case T_NORM: return lm_norm(t, p, nd, dims, keep);
    case T_AMAX: return lm_amax(t, nd, dims, keep);
    case T_AMIN: return lm_amin(t, nd, dims, keep);
    case T_MAXV: lm_max_dim(t, dims[0], keep, &v, NULL); return v;
    case T_MAXI: lm_max_dim(t, dims[0], keep, NULL, &i); return i;
    case T_MINV: lm_min_dim(t, dims[0], keep, &v, NULL); return v;
    case T_MINI: lm_min_dim(t, dims[0], keep, NULL, &i); return i;
    case T_ARGMAX: return lm_argmax(t, dims[0], keep, false);
    case T_ARGMIN: return lm_argmin(t, dims[0], keep, false);
    default: return NULL;
    }
}

/* The op over one bucket xs[0..n) (C order), in long double or wrapping integers. */
static double ref_bucket(top op, lm_dtype in, const double *xs, int64_t n, double p, int64_t corr)
{
    bool fl = in == LM_F32 || in == LM_F64;
    long double s = 0, m;
    uint64_t u;
    int64_t best;
    switch (op) {
    case T_SUM:
        if (!fl) {
            u = 0;
            for (int64_t i = 0; i < n; i++) u += (uint64_t)(int64_t)xs[i];
            return (double)(int64_t)u;
        }
        for (int64_t i = 0; i < n; i++) s += xs[i];
        return (double)s;
    case T_MEAN:
        for (int64_t i = 0; i < n; i++) s += xs[i];
        return (double)(s / n);
    case T_PROD:
        if (!fl) {
            u = 1;
            for (int64_t i = 0; i < n; i++) u *= (uint64_t)(int64_t)xs[i];
            return (double)(int64_t)u;
        }
        s = 1;
        for (int64_t i = 0; i < n; i++) s *= xs[i];
        return (double)s;
    case T_VAR:
    case T_STD: {
        for (int64_t i = 0; i < n; i++) s += xs[i];
        m = s / n;
        long double q = 0;
        for (int64_t i = 0; i < n; i++) q += (xs[i] - m) * (xs[i] - m);
        long double den = n - corr > 0 ? (long double)(n - corr) : 0.0L;
        long double v = q / den;
        return (double)(op == T_STD ? sqrtl(v) : v);
    }
    case T_LSE:
        m = -INFINITY;
        for (int64_t i = 0; i < n; i++) m = xs[i] > m ? xs[i] : m;
        if (isinf((double)m)) return (double)m;
        for (int64_t i = 0; i < n; i++) s += expl(xs[i] - m);
        return (double)(m + logl(s));
    case T_NORM:
        if (p == 0) {
            for (int64_t i = 0; i < n; i++) s += xs[i] != 0;
            return (double)s;
        }
        if (isinf(p)) {
            for (int64_t i = 0; i < n; i++) s = fabsl(xs[i]) > s ? fabsl(xs[i]) : s;
            return (double)s;
        }
        for (int64_t i = 0; i < n; i++) s += powl(fabsl(xs[i]), p);
        return (double)powl(s, 1.0L / p);
    case T_AMAX:
    case T_MAXV:
    case T_MAXI:
    case T_ARGMAX:
        best = 0;
        for (int64_t i = 1; i < n; i++)
            if (xs[i] > xs[best]) best = i;
        return op == T_MAXI || op == T_ARGMAX ? (double)best : xs[best];
    case T_AMIN:
    case T_MINV:
    case T_MINI:
    case T_ARGMIN:
        best = 0;
        for (int64_t i = 1; i < n; i++)
            if (xs[i] < xs[best]) best = i;
        return op == T_MINI || op == T_ARGMIN ? (double)best : xs[best];
    default: return NAN;
    }
}

static double tolerance(lm_dtype out)
{
    return out == LM_F32 ? 2e-6 : out == LM_F64 ? 1e-12 : 0;
}

/* Runs op over dims of t and compares with the reference: shape, dtype and every value.
 * Returns false (after a diagnostic) at the first difference. */
static bool check_case(top op, const lm_tensor *t, int nd, const int *dims, bool keep, double p,
                       int64_t corr)
{
    uint32_t mask = 0;
    for (int i = 0; i < nd; i++) mask |= 1u << (dims[i] < 0 ? dims[i] + t->ndim : dims[i]);
    if (nd == 0 || t->ndim == 0) mask = t->ndim ? (1u << t->ndim) - 1 : 0;
    int64_t shape[LM_MAX_DIMS], nout = 1, nred = 1;
    int ond = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (mask >> d & 1) {
            nred *= t->shape[d];
            if (keep) shape[ond++] = 1;
        } else {
            nout *= t->shape[d];
            shape[ond++] = t->shape[d];
        }
    }
    char what[256], shp[64];
    snprintf(what, sizeof what, "%s of %s %s over %d dims (%d,%d) keepdim=%d p=%g corr=%lld",
             top_names[op], lm_dtype_name(t->dtype), lm_shape_str(t->ndim, t->shape, shp, 64), nd,
             nd > 0 ? dims[0] : -99, nd > 1 ? dims[1] : -99, keep, p, (long long)corr);
    lm_clear_error();
    lm_tensor *r = call(op, t, nd, dims, keep, p, corr);
    if (needs_elements(op) && nred == 0) {
        bool good = !r && lm_last_status() == LM_ERR_SHAPE &&
                    strstr(lm_last_error(), "zero-size") != NULL;
        if (!good) diag("%s: expected a zero-size error, got \"%s\"", what, lm_last_error());
        lm_release(r);
        return good;
    }
    if (!r) {
        diag("%s: failed: %s", what, lm_last_error());
        return false;
    }
    bool good = same_shape(r, ond, shape) && r->dtype == expected_dtype(op, t->dtype);
    if (!good) diag("%s: wrong shape or dtype (%s)", what, lm_dtype_name(r->dtype));
    /* Buckets of input values per output, each in C order of the reduced dims. */
    int64_t numel = lm_numel(t);
    double *xs = malloc((size_t)(numel > 0 ? numel : 1) * sizeof(double));
    int64_t *fill = calloc((size_t)(nout > 0 ? nout : 1), sizeof(int64_t));
    for (int64_t f = 0; f < numel; f++) {
        int64_t rem = f, o = 0, scale = 1;
        for (int d = t->ndim - 1; d >= 0; d--) {
            int64_t i = rem % t->shape[d];
            rem /= t->shape[d];
            if (!(mask >> d & 1)) {
                o += i * scale;
                scale *= t->shape[d];
            }
        }
        xs[o * nred + fill[o]++] = at(t, f);
    }
    double tol = tolerance(r->dtype);
    for (int64_t o = 0; good && o < nout; o++) {
        double want = ref_bucket(op, t->dtype, xs + o * nred, nred, p, corr);
        if (r->dtype == LM_F32) want = (float)want;
        double got = at(r, o);
        bool same = isnan(want) ? isnan(got)
                    : isinf(want) ? got == want
                                  : fabs(got - want) <= tol * fmax(1.0, fabs(want));
        if (!same) {
            diag("%s: output %lld is %.17g, want %.17g", what, (long long)o, got, want);
            good = false;
        }
    }
    free(xs);
    free(fill);
    lm_release(r);
    return good;
}

/* ---- layouts --------------------------------------------------------------------------------- */

typedef enum {
    L_CONTIG, L_TRANSPOSED, L_STEPPED, L_EXPANDED, L_SIZE1, L_EMPTY, L_SCALAR, L_MATRIX,
    L_MATRIX_T, L_STEPPED_1D, L_COUNT
} layout;
static const char *const layout_names[] = {
    "contiguous [4,5,6]", "permuted [4,5,6]", "sliced with steps [4,5,6]", "expanded [4,5->,6]",
    "size-1 dim [4,1,6]", "empty [3,0,4]", "0-dim", "matrix [40,70]", "transposed matrix [40,70]",
    "1-D with step 3 [100]",
};
_Static_assert(sizeof layout_names / sizeof layout_names[0] == L_COUNT, "layout names");

static lm_tensor *make_layout(layout l, lm_dtype dt)
{
    lm_tensor *b, *t, *u;
    switch (l) {
    case L_CONTIG: return random_tensor(dt, LM_SHAPE(4, 5, 6));
    case L_TRANSPOSED:
        b = random_tensor(dt, LM_SHAPE(6, 5, 4));
        t = lm_permute(b, (const int[]){2, 1, 0});
        lm_release(b);
        return t;
    case L_STEPPED:
        b = random_tensor(dt, LM_SHAPE(8, 5, 13));
        u = lm_slice(b, 0, 0, 8, 2);
        t = lm_slice(u, 2, 1, 13, 2);
        lm_release(u);
        lm_release(b);
        return t;
    case L_EXPANDED:
        b = random_tensor(dt, LM_SHAPE(4, 1, 6));
        t = lm_expand(b, LM_SHAPE(4, 5, 6));
        lm_release(b);
        return t;
    case L_SIZE1: return random_tensor(dt, LM_SHAPE(4, 1, 6));
    case L_EMPTY: return random_tensor(dt, LM_SHAPE(3, 0, 4));
    case L_SCALAR: return from_doubles(dt, 0, NULL, (const double[]){3});
    case L_MATRIX: return random_tensor(dt, LM_SHAPE(40, 70));
    case L_MATRIX_T:
        b = random_tensor(dt, LM_SHAPE(70, 40));
        t = lm_t(b);
        lm_release(b);
        return t;
    case L_STEPPED_1D:
        b = random_tensor(dt, LM_SHAPE(300));
        t = lm_slice(b, 0, 0, 300, 3);
        lm_release(b);
        return t;
    default: return NULL;
    }
}

/* Every dims list that fits a tensor of ndim dims (for single-dim ops: each dim, and -1). */
static int dims_lists(int ndim, bool single, int lists[][3], int *lens)
{
    static const int three[][3] = {{0}, {1}, {2}, {-1}, {0, 2}, {1, 2}, {0, 1}, {2, 0}, {0, 1, 2}};
    static const int three_len[] = {1, 1, 1, 1, 2, 2, 2, 2, 3};
    int n = 0;
    if (!single) lens[n++] = 0;
    if (ndim == 0) {
        lists[n][0] = 0;
        lens[n++] = 1;
        return n;
    }
    for (size_t i = 0; i < sizeof three_len / sizeof three_len[0]; i++) {
        bool fits = three_len[i] == 1 || !single;
        for (int k = 0; k < three_len[i]; k++) fits = fits && three[i][k] < ndim;
        if (!fits) continue;
        memcpy(lists[n], three[i], sizeof three[i]);
        lens[n++] = three_len[i];
    }
    return n;
}

static void test_against_reference(void)
{
    static const lm_dtype dtypes[] = {LM_F32, LM_F64, LM_I64, LM_U8};
    static const double norm_ps[] = {0, 1, 2, 3, 0.5, INFINITY};
    for (int op = 0; op < T_COUNT; op++) {
        for (size_t di = 0; di < 4; di++) {
            lm_dtype dt = dtypes[di];
            for (int l = 0; l < L_COUNT; l++) {
                lm_tensor *t = make_layout((layout)l, dt);
                int lists[16][3], lens[16];
                int nl = dims_lists(t->ndim, single_dim((top)op), lists, lens);
                bool good = true;
                for (int k = 0; good && k < nl; k++) {
                    for (int keep = 0; good && keep < 2; keep++) {
                        if (op == T_NORM) {
                            for (int pi = 0; good && pi < 6; pi++)
                                good = check_case((top)op, t, lens[k], lists[k], keep,
                                                  norm_ps[pi], 0);
                        } else if (op == T_VAR || op == T_STD) {
                            for (int c = 0; good && c < 3; c++)
                                good = check_case((top)op, t, lens[k], lists[k], keep, 0, c);
                        } else {
                            good = check_case((top)op, t, lens[k], lists[k], keep, 0, 0);
                        }
                    }
                }
                ok(good, "%s of %s %s matches the naive loops over every dims list, keepdim or not",
                   top_names[op], lm_dtype_name(dt), layout_names[l]);
                lm_release(t);
            }
        }
    }
}

/* ---- hand-computed cases --------------------------------------------------------------------- */

static void test_hand_computed(void)
{
    lm_tensor *x = from_doubles(LM_F32, LM_SHAPE(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
    lm_tensor *r;

    r = lm_sum(x, 0, NULL, false);
    ok(r && r->ndim == 0 && r->dtype == LM_F32, "sum over every dim is a 0-dim f32");
    is_close(value(r), 21, 0, "sum of 1..6 is 21");
    lm_release(r);
    r = lm_sum(x, LM_DIMS(0), false);
    ok(same_shape(r, 1, (const int64_t[]){3}), "sum over dim 0 of [2,3] has shape [3]");
    ok(r && at(r, 0) == 5 && at(r, 1) == 7 && at(r, 2) == 9, "sum over dim 0 is [5,7,9]");
    lm_release(r);
    r = lm_sum(x, LM_DIMS(-1), true);
    ok(same_shape(r, 2, (const int64_t[]){2, 1}), "sum over dim -1 with keepdim has shape [2,1]");
    ok(r && at(r, 0) == 6 && at(r, 1) == 15, "sum over dim 1 is [6,15]");
    lm_release(r);
    r = lm_sum(x, LM_DIMS(0, 1), true);
    ok(same_shape(r, 2, (const int64_t[]){1, 1}), "sum over both dims with keepdim is [1,1]");
    lm_release(r);

    r = lm_mean(x, 0, NULL, false);
    is_close(value(r), 3.5, 1e-7, "mean of 1..6 is 3.5");
    lm_release(r);
    r = lm_prod(x, 0, NULL, false);
    is_close(value(r), 720, 1e-7, "prod of 1..6 is 720");
    lm_release(r);
    r = lm_var(x, LM_DIMS(1), 1, false);
    ok(r && at(r, 0) == 1 && at(r, 1) == 1, "unbiased var of rows [1,2,3] and [4,5,6] is 1");
    lm_release(r);
    r = lm_var(x, 0, NULL, 0, false);
    is_close(value(r), 35.0 / 12, 1e-6, "population var of 1..6 is 35/12");
    lm_release(r);
    r = lm_std(x, 0, NULL, 1, false);
    is_close(value(r), sqrt(3.5), 1e-6, "std of 1..6 is sqrt(3.5)");
    lm_release(r);
    r = lm_logsumexp(x, LM_DIMS(1), false);
    is_close(r ? at(r, 0) : 0, 3.4076059644443806, 1e-6, "logsumexp of [1,2,3]");
    lm_release(r);
    r = lm_norm(x, 2, 0, NULL, false);
    is_close(value(r), sqrt(91), 1e-6, "2-norm of 1..6 is sqrt(91)");
    lm_release(r);
    r = lm_norm(x, 1, 0, NULL, false);
    is_close(value(r), 21, 1e-7, "1-norm of 1..6 is 21");
    lm_release(r);
    r = lm_norm(x, INFINITY, 0, NULL, false);
    is_close(value(r), 6, 0, "inf-norm of 1..6 is 6");
    lm_release(r);
    r = lm_norm(x, 3, 0, NULL, false);
    is_close(value(r), cbrt(441), 1e-6, "3-norm of 1..6 is 441^(1/3)");
    lm_release(r);
    r = lm_amax(x, 0, NULL, false);
    is_close(value(r), 6, 0, "amax is 6");
    lm_release(r);
    r = lm_amin(x, LM_DIMS(0), false);
    ok(r && at(r, 0) == 1 && at(r, 1) == 2 && at(r, 2) == 3, "amin over dim 0 is [1,2,3]");
    lm_release(r);

    lm_tensor *v = NULL, *i = NULL;
    ok(lm_max_dim(x, 1, false, &v, &i) == LM_OK, "max_dim succeeds");
    ok(v && i && v->dtype == LM_F32 && i->dtype == LM_I64, "max_dim gives f32 values, i64 indices");
    ok(v && i && at(v, 0) == 3 && at(v, 1) == 6 && at(i, 0) == 2 && at(i, 1) == 2,
       "max_dim over dim 1: values [3,6] at [2,2]");
    lm_release(v);
    lm_release(i);
    ok(lm_min_dim(x, 0, true, &v, &i) == LM_OK && same_shape(i, 2, (const int64_t[]){1, 3}),
       "min_dim with keepdim: indices of shape [1,3]");
    ok(v && i && at(v, 2) == 3 && at(i, 0) == 0, "min_dim over dim 0: values [1,2,3] at row 0");
    lm_release(v);
    lm_release(i);
    r = lm_max(x);
    ok(r && r->ndim == 0 && value(r) == 6, "max of the whole tensor is a 0-dim 6");
    lm_release(r);
    r = lm_min(x);
    ok(r && value(r) == 1, "min of the whole tensor is 1");
    lm_release(r);
    r = lm_argmax(x, 0, true, true);
    ok(r && r->ndim == 0 && r->dtype == LM_I64 && value(r) == 5,
       "argmax with flatten_all is the 0-dim i64 5 (keepdim ignored)");
    lm_release(r);
    lm_tensor *xt = lm_t(x);
    r = lm_argmin(xt, 0, false, true);
    ok(r && value(r) == 0, "argmin flattened over a transposed view");
    lm_release(r);
    r = lm_argmax(xt, 0, false, true);
    ok(r && value(r) == 5, "argmax flattened counts in the view's C order (x^T[2][1] = 6 -> 5)");
    lm_release(r);
    lm_release(xt);
    /* x^T = [[1,4],[2,5],[3,6]]; its flattening is 1,4,2,5,3,6: the max 6 is at 5, min 1 at 0 */
    lm_release(x);

    lm_tensor *s = from_doubles(LM_F64, 0, NULL, (const double[]){-2.5});
    r = lm_sum(s, LM_DIMS(0), true);
    ok(r && r->ndim == 0 && value(r) == -2.5, "sum over dim 0 of a 0-dim tensor is itself");
    lm_release(r);
    ok(lm_max_dim(s, -1, false, &v, &i) == LM_OK && value(v) == -2.5 && value(i) == 0,
       "max_dim of a 0-dim tensor: itself at index 0");
    lm_release(v);
    lm_release(i);
    r = lm_argmin(s, 0, false, true);
    ok(r && r->ndim == 0 && value(r) == 0, "argmin flattened of a 0-dim tensor is 0");
    lm_release(r);
    lm_release(s);

    lm_tensor *big = from_doubles(LM_U8, LM_SHAPE(3), (const double[]){255, 255, 255});
    r = lm_sum(big, 0, NULL, false);
    ok(r && r->dtype == LM_I64 && value(r) == 765, "sum of u8 [255,255,255] is the i64 765");
    lm_release(r);
    r = lm_mean(big, 0, NULL, false);
    ok(r && r->dtype == LM_F32 && value(r) == 255, "mean of u8 gives f32 255");
    lm_release(r);
    r = lm_amax(big, 0, NULL, false);
    ok(r && r->dtype == LM_U8 && value(r) == 255, "amax of u8 stays u8");
    lm_release(r);
    lm_release(big);

    int64_t exact[2] = {(1ll << 60) + 1, 3};
    lm_tensor *e = lm_from_data(exact, LM_I64, LM_SHAPE(2));
    r = lm_sum(e, 0, NULL, false);
    ok(r && *(int64_t *)lm_data(r) == (1ll << 60) + 4, "i64 sums are exact beyond 2^53");
    lm_release(r);
    r = lm_amax(e, 0, NULL, false);
    ok(r && *(int64_t *)lm_data(r) == (1ll << 60) + 1, "i64 max is exact beyond 2^53");
    lm_release(r);
    lm_release(e);
}

/* ---- special values -------------------------------------------------------------------------- */

static void test_nan_and_ties(void)
{
    lm_tensor *x = from_doubles(LM_F32, LM_SHAPE(5), (const double[]){1, NAN, 3, NAN, 7});
    lm_tensor *r, *v = NULL, *i = NULL;
    r = lm_max(x);
    ok(r && isnan(value(r)), "max with a NaN is NaN");
    lm_release(r);
    r = lm_amin(x, 0, NULL, false);
    ok(r && isnan(value(r)), "amin with a NaN is NaN");
    lm_release(r);
    r = lm_argmax(x, 0, false, false);
    ok(r && value(r) == 1, "argmax returns the first NaN's index");
    lm_release(r);
    r = lm_argmin(x, 0, false, false);
    ok(r && value(r) == 1, "argmin returns the first NaN's index too");
    lm_release(r);
    r = lm_sum(x, 0, NULL, false);
    ok(r && isnan(value(r)), "sum with a NaN is NaN");
    lm_release(r);
    r = lm_norm(x, INFINITY, 0, NULL, false);
    ok(r && isnan(value(r)), "inf-norm with a NaN is NaN");
    lm_release(r);
    lm_release(x);

    /* Long runs go through the vectorized lanes: put the NaN in the middle of one. */
    double lv[1000];
    for (int k = 0; k < 1000; k++) lv[k] = k % 17;
    lv[517] = NAN;
    lv[900] = 1e9;
    x = from_doubles(LM_F64, LM_SHAPE(1000), lv);
    r = lm_amax(x, 0, NULL, false);
    ok(r && isnan(value(r)), "amax of a long run with one NaN is NaN");
    lm_release(r);
    r = lm_argmax(x, 0, false, false);
    ok(r && value(r) == 517, "argmax of a long run finds the NaN at 517");
    lm_release(r);
    lm_release(x);
    lv[517] = 3;
    x = from_doubles(LM_F32, LM_SHAPE(1000), lv);
    r = lm_amax(x, 0, NULL, false);
    ok(r && value(r) == 1e9, "amax of a long run without NaN finds 1e9");
    lm_release(r);
    r = lm_amin(x, 0, NULL, false);
    ok(r && value(r) == 0, "amin of a long run is 0");
    lm_release(r);
    lm_release(x);

    /* Columns: the max over dim 0 of a contiguous matrix. */
    x = from_doubles(LM_F32, LM_SHAPE(3, 2), (const double[]){1, 5, NAN, 5, 2, NAN});
    ok(lm_max_dim(x, 0, false, &v, &i) == LM_OK, "max_dim over dim 0 with NaNs");
    ok(v && i && isnan(at(v, 0)) && isnan(at(v, 1)) && at(i, 0) == 1 && at(i, 1) == 2,
       "column NaNs win: indices [1,2]");
    lm_release(v);
    lm_release(i);
    r = lm_amax(x, LM_DIMS(0), false);
    ok(r && isnan(at(r, 0)) && isnan(at(r, 1)), "amax over columns propagates NaN");
    lm_release(r);
    lm_release(x);

    x = from_doubles(LM_I64, LM_SHAPE(3, 3), (const double[]){3, 1, 2, 1, 1, 2, 3, 0, 2});
    ok(lm_max_dim(x, 0, false, &v, &i) == LM_OK && at(i, 0) == 0 && at(i, 1) == 0 && at(i, 2) == 0,
       "ties over columns keep the first row");
    lm_release(v);
    lm_release(i);
    r = lm_argmin(x, 1, false, false);
    ok(r && at(r, 0) == 1 && at(r, 1) == 0 && at(r, 2) == 1, "ties along rows keep the first");
    lm_release(r);
    lm_release(x);
}

/* Index scans go block by block: the extreme in a late block, ties across blocks, strided
 * runs and many rows of columns, against a naive loop. */
static void test_long_index_runs(void)
{
    int64_t n = 3001;
    double *v = malloc((size_t)n * sizeof(double));
    for (int64_t k = 0; k < n; k++) v[k] = (double)(next_rand() % 1000);
    v[300] = v[2900] = 5000; /* a tie across blocks: the first wins */
    v[2950] = -7;
    lm_tensor *x = from_doubles(LM_F32, LM_SHAPE(3001), v);
    lm_tensor *r = lm_argmax(x, 0, false, false);
    ok(r && value(r) == 300, "argmax of 3001 elements with a tie at 300 and 2900 is 300");
    lm_release(r);
    r = lm_argmin(x, 0, false, false);
    ok(r && value(r) == 2950, "argmin of 3001 elements finds -7 at 2950");
    lm_release(r);
    lm_tensor *odd = lm_slice(x, 0, 1, 3001, 2); /* elements 1, 3, 5, ...: 300 and 2900 gone */
    int64_t best = 0;
    for (int64_t k = 1; k < 1500; k++)
        if (v[2 * k + 1] > v[2 * best + 1]) best = k;
    r = lm_argmax(odd, 0, false, false);
    ok(r && value(r) == best, "argmax of a strided run of 1500 matches the naive loop");
    lm_release(r);
    lm_release(odd);
    lm_release(x);

    /* [1000, 3] over dim 0 takes the columns loop, four rows at a time. */
    lm_tensor *m = from_doubles(LM_I64, LM_SHAPE(1000, 3), v);
    lm_tensor *vals = NULL, *idx = NULL;
    ok(lm_min_dim(m, 0, false, &vals, &idx) == LM_OK, "min_dim over 1000 rows");
    bool good = vals && idx;
    for (int c = 0; good && c < 3; c++) {
        int64_t b = 0;
        for (int64_t k = 1; k < 1000; k++)
            if (v[3 * k + c] < v[3 * b + c]) b = k;
        good = at(idx, c) == b && at(vals, c) == v[3 * b + c];
    }
    ok(good, "min_dim over dim 0 of [1000,3] matches the naive loop (values and indices)");
    lm_release(vals);
    lm_release(idx);
    lm_release(m);
    free(v);
}

static void test_stability(void)
{
    lm_tensor *x = from_doubles(LM_F32, LM_SHAPE(2, 2), (const double[]){1000, 1000, -1000, -1000});
    lm_tensor *r = lm_logsumexp(x, LM_DIMS(1), false);
    ok(r && fabs(at(r, 0) - (1000 + log(2))) < 1e-3 && fabs(at(r, 1) - (-1000 + log(2))) < 1e-3,
       "logsumexp of [1000,1000] and [-1000,-1000] does not overflow or underflow");
    lm_release(r);
    lm_release(x);
    x = from_doubles(LM_F64, LM_SHAPE(3, 2),
                     (const double[]){-INFINITY, -INFINITY, INFINITY, 1, NAN, 1});
    r = lm_logsumexp(x, LM_DIMS(1), false);
    ok(r && at(r, 0) == -INFINITY, "logsumexp of an all -inf row is -inf");
    ok(r && at(r, 1) == INFINITY, "logsumexp with +inf is +inf");
    ok(r && isnan(at(r, 2)), "logsumexp with NaN is NaN");
    lm_release(r);
    lm_release(x);

    /* Deviations from the max from 0 down to -1100: the exp of the sum must stay accurate. */
    double wide[3000];
    long double m = -INFINITY, sum = 0;
    for (int k = 0; k < 3000; k++) {
        wide[k] = 3.0 - 0.37 * (k % 3000) + 1e-3 * (k % 7);
        m = wide[k] > m ? wide[k] : m;
    }
    for (int k = 0; k < 3000; k++) sum += expl(wide[k] - m);
    x = from_doubles(LM_F64, LM_SHAPE(3000), wide);
    r = lm_logsumexp(x, 0, NULL, false);
    is_close(value(r), (double)(m + logl(sum)), 1e-14,
             "f64 logsumexp over deviations down to -1100");
    lm_release(r);
    lm_release(x);

    /* E[x^2] - E[x]^2 would lose every digit here; the two-pass method keeps them. */
    x = from_doubles(LM_F64, LM_SHAPE(4), (const double[]){1e9, 1e9 + 1, 1e9 + 2, 1e9 + 3});
    r = lm_var(x, 0, NULL, 1, false);
    is_close(value(r), 5.0 / 3, 1e-12, "var of 1e9 + [0,1,2,3] is 5/3");
    lm_release(r);
    lm_release(x);
    x = from_doubles(LM_F32, LM_SHAPE(4), (const double[]){1e6, 1e6 + 1, 1e6 + 2, 1e6 + 3});
    r = lm_std(x, 0, NULL, 0, false);
    is_close(value(r), sqrt(1.25), 1e-6, "f32 std of 1e6 + [0,1,2,3] is sqrt(1.25)");
    lm_release(r);
    lm_release(x);
}

static void test_empty(void)
{
    lm_tensor *e = lm_zeros(LM_SHAPE(0), LM_F32);
    lm_tensor *r;
    r = lm_sum(e, 0, NULL, false);
    ok(r && value(r) == 0, "sum of nothing is 0");
    lm_release(r);
    r = lm_prod(e, 0, NULL, false);
    ok(r && value(r) == 1, "prod of nothing is 1");
    lm_release(r);
    r = lm_mean(e, 0, NULL, false);
    ok(r && isnan(value(r)), "mean of nothing is NaN");
    lm_release(r);
    r = lm_var(e, 0, NULL, 1, false);
    ok(r && isnan(value(r)), "var of nothing is NaN");
    lm_release(r);
    r = lm_logsumexp(e, 0, NULL, false);
    ok(r && value(r) == -INFINITY, "logsumexp of nothing is -inf");
    lm_release(r);
    r = lm_norm(e, 2, 0, NULL, false);
    ok(r && value(r) == 0, "norm of nothing is 0");
    lm_release(r);
    lm_release(e);

    lm_tensor *one = from_doubles(LM_F32, LM_SHAPE(1), (const double[]){4});
    r = lm_var(one, 0, NULL, 1, false);
    ok(r && isnan(value(r)), "unbiased var of one element is NaN");
    lm_release(r);
    r = lm_var(one, 0, NULL, 0, false);
    ok(r && value(r) == 0, "population var of one element is 0");
    lm_release(r);
    lm_release(one);

    lm_tensor *m = lm_zeros(LM_SHAPE(0, 3), LM_I64);
    r = lm_sum(m, LM_DIMS(0), false);
    ok(same_shape(r, 1, (const int64_t[]){3}) && r->dtype == LM_I64 && at(r, 1) == 0,
       "sum over the empty dim of [0,3] is three zeros");
    lm_release(r);
    r = lm_amax(m, LM_DIMS(1), true);
    ok(same_shape(r, 2, (const int64_t[]){0, 1}), "amax over the non-empty dim of [0,3]: [0,1]");
    lm_release(r);
    lm_tensor *v = NULL, *i = NULL;
    ok(lm_max_dim(m, 0, false, &v, &i) == LM_ERR_SHAPE && !v && !i,
       "max_dim over the empty dim fails and leaves the outputs NULL");
    has_str(lm_last_error(), "max: cannot reduce over a zero-size dim", "message names the op");
    has_str(lm_last_error(), "[0,3]", "message names the shape");
    r = lm_argmax(m, 0, false, true);
    ok(!r && lm_last_status() == LM_ERR_SHAPE, "argmax (flattened) of an empty tensor fails");
    has_str(lm_last_error(), "argmax", "the message names argmax");
    r = lm_max(m);
    ok(!r && lm_last_status() == LM_ERR_SHAPE, "max of an empty tensor fails");
    r = lm_amin(m, 0, NULL, false);
    ok(!r, "amin of an empty tensor fails");
    has_str(lm_last_error(), "amin", "the message names amin");
    lm_release(m);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_errors(void)
{
    lm_tensor *x = lm_zeros(LM_SHAPE(2, 3), LM_F32);
    lm_tensor *r;

    lm_clear_error();
    r = lm_sum(NULL, 0, NULL, false);
    ok(!r && lm_last_status() == LM_ERR_ARG, "sum of NULL fails with LM_ERR_ARG");
    has_str(lm_last_error(), "sum: NULL tensor argument", "message names sum");
    r = lm_mean(NULL, 0, NULL, false);
    has_str(lm_last_error(), "sum:", "a NULL argument keeps the earlier message");
    lm_clear_error();
    lm_tensor *v = (lm_tensor *)1, *i = (lm_tensor *)1;
    ok(lm_max_dim(NULL, 0, false, &v, &i) == LM_ERR_ARG && !v && !i,
       "max_dim of NULL fails and clears the outputs");
    has_str(lm_last_error(), "max", "message names max");

    r = lm_sum(x, LM_DIMS(2), false);
    ok(!r && lm_last_status() == LM_ERR_ARG, "dim 2 of a 2-dim tensor fails");
    has_str(lm_last_error(), "sum: dim 2 is out of range", "message names op and dim");
    r = lm_var(x, LM_DIMS(-3), 1, false);
    has_str(lm_last_error(), "var: dim -3", "negative dims are checked too");
    r = lm_amax(x, LM_DIMS(1, -1), false);
    ok(!r && lm_last_status() == LM_ERR_ARG, "a repeated dim fails");
    has_str(lm_last_error(), "amax: dim 1 appears more than once", "message names the dim");
    r = lm_prod(x, -1, (const int[]){0}, false);
    ok(!r && lm_last_status() == LM_ERR_ARG, "a negative count of dims fails");
    has_str(lm_last_error(), "[2,3]", "message names the shape");
    r = lm_norm(x, -1, 0, NULL, false);
    ok(!r && lm_last_status() == LM_ERR_ARG, "norm with p = -1 fails");
    has_str(lm_last_error(), "norm: p must be >= 0", "message says why");
    has_str(lm_last_error(), "[2,3]", "and names the shape");
    r = lm_norm(x, NAN, 0, NULL, false);
    ok(!r, "norm with p = NaN fails");
    ok(lm_argmax(x, 5, false, false) == NULL && lm_last_status() == LM_ERR_ARG,
       "argmax with a bad dim fails");
    has_str(lm_last_error(), "argmax: dim 5", "message names argmax");
    ok(lm_min_dim(x, 1, false, NULL, NULL) == LM_OK, "min_dim with no outputs only checks");
    ok(lm_min_dim(x, 2, false, NULL, NULL) == LM_ERR_ARG, "... and still checks the dim");
    lm_release(x);

    /* Out of memory: each allocation of the op fails in turn, and nothing leaks. The kernel's
     * scratch (var's per-output means, the partial sums of a split range) is among them. */
    lm_tensor *big = lm_ones(LM_SHAPE(1 << 20), LM_F32);
    lm_tensor *small = lm_ones(LM_SHAPE(4, 5), LM_F32);
    const lm_tensor *inputs[] = {small, big};
    const char *names[] = {"var", "sum"};
    for (int k = 0; k < 2; k++) {
        bool all_memory = true, op_named = true;
        int n = 1;
        for (; n < 20; n++) {
            lm_debug_fail_alloc_after(n);
            r = k == 0 ? lm_var(inputs[k], LM_DIMS(1), 1, false)
                       : lm_sum(inputs[k], 0, NULL, false);
            lm_debug_fail_alloc_after(0);
            if (r) break;
            all_memory = all_memory && lm_last_status() == LM_ERR_MEMORY;
            op_named = op_named && strncmp(lm_last_error(), names[k], strlen(names[k])) == 0 &&
                       strstr(lm_last_error(), "out of memory") != NULL;
        }
        /* the result takes three allocations (tensor, storage, data), the scratch a fourth */
        ok(r && n > 4 && all_memory, "%s: every injected allocation failure gives LM_ERR_MEMORY",
           names[k]);
        ok(op_named, "%s: each out-of-memory message names the op", names[k]);
        ok(r && at(r, 0) == (k == 0 ? 0 : 1 << 20), "%s: the run after the failures is right",
           names[k]);
        lm_release(r);
    }
    lm_release(big);
    lm_release(small);
}

/* ---- large inputs: accuracy, parallel paths, thread-count independence ----------------------- */

static void test_large(void)
{
    /* 1e7 f32 values: a float accumulator would be off by ~1e-3; ours must be within 1e-6. */
    int64_t n = 10000000;
    float *f = malloc((size_t)n * sizeof(float));
    long double want = 0;
    for (int64_t k = 0; k < n; k++) {
        f[k] = 0.1f * (float)(1 + k % 3);
        want += f[k];
    }
    lm_tensor *x = lm_from_data(f, LM_F32, LM_SHAPE(n));
    free(f);
    lm_set_num_threads(2);
    lm_tensor *r = lm_sum(x, 0, NULL, false);
    is_close(value(r), (double)want, 1e-6, "sum of 1e7 f32 values is accurate to 1e-6");
    lm_release(r);
    r = lm_mean(x, 0, NULL, false);
    is_close(value(r), (double)(want / n), 1e-6, "mean of 1e7 f32 values is accurate to 1e-6");
    lm_release(r);
    lm_release(x);

    /* Every path with 1 and 2 threads: the whole tensor (split range), dim 0 (columns, split
     * when few outputs), dim 1 (rows), a transposed view; f32 bitwise equal, i64 exactly. */
    static const int64_t shapes[][2] = {{2053, 1031}, {4099, 257}, {3, 300001}};
    for (int s = 0; s < 3; s++) {
        lm_tensor *a = random_tensor(LM_F32, 2, shapes[s]);
        lm_tensor *ai = random_tensor(LM_I64, 2, shapes[s]);
        lm_tensor *at_ = lm_t(a);
        const lm_tensor *ins[] = {a, at_, ai};
        bool same = true, right = true;
        for (int in = 0; in < 3; in++) {
            for (int d = -1; d < 2; d++) {
                for (int op = 0; op < 4; op++) {
                    lm_tensor *res[2] = {NULL, NULL};
                    for (int th = 0; th < 2; th++) {
                        lm_set_num_threads(th + 1);
                        int nd = d < 0 ? 0 : 1;
                        const int *dims = (const int[]){d};
                        switch (op) {
                        case 0: res[th] = lm_sum(ins[in], nd, dims, false); break;
                        case 1: res[th] = lm_var(ins[in], nd, dims, 1, false); break;
                        case 2: res[th] = lm_amax(ins[in], nd, dims, false); break;
                        default:
                            res[th] = d < 0 ? lm_argmin(ins[in], 0, false, true)
                                            : lm_argmin(ins[in], d, false, false);
                        }
                    }
                    same = same && res[0] && res[1] && lm_nbytes(res[0]) == lm_nbytes(res[1]) &&
                           memcmp(lm_data(res[0]), lm_data(res[1]), lm_nbytes(res[0])) == 0;
                    if (op == 0 && res[0]) {
                        /* the first, a middle and the last output against naive sums */
                        const lm_tensor *src = ins[in];
                        int64_t len = d < 0 ? lm_numel(src) : src->shape[d];
                        int64_t nout = lm_numel(res[0]);
                        const int64_t picks[3] = {0, nout / 2, nout - 1};
                        for (int q = 0; q < 3; q++) {
                            long double acc = 0;
                            for (int64_t k = 0; k < len; k++) {
                                int64_t idx[2] = {picks[q], picks[q]};
                                if (d < 0) {
                                    idx[0] = k / src->shape[1];
                                    idx[1] = k % src->shape[1];
                                } else {
                                    idx[d] = k;
                                }
                                double e;
                                lm_get(src, idx, &e);
                                acc += e;
                            }
                            double got = at(res[0], picks[q]);
                            right = right && fabs(got - (double)acc) <= 1e-6 * fmaxl(1, fabsl(acc));
                        }
                    }
                    lm_release(res[0]);
                    lm_release(res[1]);
                }
            }
        }
        ok(same, "[%lld,%lld]: sum, var, amax, argmin give identical bits with 1 and 2 threads",
           (long long)shapes[s][0], (long long)shapes[s][1]);
        ok(right, "[%lld,%lld]: the sums agree with naive loops", (long long)shapes[s][0],
           (long long)shapes[s][1]);
        lm_release(at_);
        lm_release(a);
        lm_release(ai);
    }
    lm_set_num_threads(1);
}

int main(void)
{
    plan_auto();
    test_hand_computed();
    test_nan_and_ties();
    test_long_index_runs();
    test_stability();
    test_empty();
    test_errors();
    test_against_reference();
    test_large();
    return done();
}
