/* test_matmul.c — lm_matmul against a naive loop written here (in double, reading operands
 * element by element with lm_get), for f32 and f64: contiguous, transposed, sliced, expanded and
 * size-1 layouts, 1-D operands, batches with broadcast batch dims, empty dims, the no-copy
 * promise for transposed and broadcast operands, the parallel batch path, and every error.
 *
 * Operand values are multiples of 1/8 in [-1, 1], so every product and sum here is exact in
 * f32 and f64 whatever order BLAS adds in: a result is either right or visibly wrong. */
#include "lumen.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static double next_value(void)
{
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (double)((int)(rng_state >> 59) - 16) / 8.0 * 0.5; /* -1 .. 0.9375 in steps of 1/16 */
}

/* A contiguous tensor of fresh values. */
static lm_tensor *rnd(lm_dtype dt, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = next_value();
    lm_tensor *t64 = lm_from_data(v, LM_F64, ndim, shape);
    free(v);
    lm_tensor *t = lm_to_dtype(t64, dt);
    lm_release(t64);
    return t;
}

static void unravel(int64_t flat, int ndim, const int64_t *shape, int64_t *idx)
{
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
}

static double get(const lm_tensor *t, const int64_t *idx)
{
    double v = NAN;
    lm_get(t, idx, &v);
    return v;
}

/* torch.matmul by definition, for operands already known to fit. */
typedef struct {
    int ndim;
    int64_t shape[LM_MAX_DIMS];
    double *v;
} reference;

static reference naive_matmul(const lm_tensor *a, const lm_tensor *b)
{
    reference r = {0};
    int64_t M = a->ndim == 1 ? 1 : a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    int64_t N = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
    int na = a->ndim > 2 ? a->ndim - 2 : 0, nb = b->ndim > 2 ? b->ndim - 2 : 0;
    int nbt = na > nb ? na : nb;
    int64_t bs[LM_MAX_DIMS], nbatch = 1;
    for (int i = 0; i < nbt; i++) {
        int ia = i - (nbt - na), ib = i - (nbt - nb);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        bs[i] = sa == 1 ? sb : sa;
        r.shape[r.ndim++] = bs[i];
        nbatch *= bs[i];
    }
    if (a->ndim > 1) r.shape[r.ndim++] = M;
    if (b->ndim > 1) r.shape[r.ndim++] = N;
    r.v = calloc((size_t)(nbatch * M * N + 1), sizeof(double));
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t idx[LM_MAX_DIMS], ia[LM_MAX_DIMS], ib[LM_MAX_DIMS];
        unravel(bi, nbt, bs, idx);
        for (int d = 0; d < na; d++) ia[d] = a->shape[d] == 1 ? 0 : idx[d + nbt - na];
        for (int d = 0; d < nb; d++) ib[d] = b->shape[d] == 1 ? 0 : idx[d + nbt - nb];
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t p = 0; p < K; p++) {
                    if (a->ndim == 1) ia[0] = p;
                    else ia[na] = i, ia[na + 1] = p;
                    if (b->ndim == 1) ib[0] = p;
                    else ib[nb] = p, ib[nb + 1] = j;
                    s += get(a, ia) * get(b, ib);
                }
                r.v[(bi * M + i) * N + j] = s;
            }
    }
    return r;
}

static char *shp(const lm_tensor *t, char *buf)
{
    return t ? lm_shape_str(t->ndim, t->shape, buf, 64) : strcpy(buf, "(null)");
}

/* Fills the memory the next tensor of this shape will likely reuse with NaN, so an output
 * element the product forgets to write shows up. */
static void poison(int ndim, const int64_t *shape, lm_dtype dt)
{
    lm_release(lm_full(ndim, shape, NAN, dt));
}

/* One TAP line: lm_matmul(a, b) has the reference's shape, the operands' dtype and values. */
static void check(const char *what, const lm_tensor *a, const lm_tensor *b)
{
    char sa[64], sb[64], sc[64], sr[64];
    if (!a || !b) {
        ok(0, "%s: operand construction failed: %s", what, lm_last_error());
        return;
    }
    reference r = naive_matmul(a, b);
    poison(r.ndim, r.shape, a->dtype);
    lm_tensor *c = lm_matmul(a, b);
    lm_shape_str(r.ndim, r.shape, sr, sizeof sr);
    bool good = c && strcmp(shp(c, sc), sr) == 0 && c->dtype == a->dtype;
    double worst = 0;
    for (int64_t f = 0; good && f < lm_numel(c); f++) {
        int64_t idx[LM_MAX_DIMS];
        unravel(f, c->ndim, c->shape, idx);
        double d = fabs(get(c, idx) - r.v[f]);
        if (!(d <= 1e-6 * fmax(1.0, fabs(r.v[f])))) good = false;
        if (!(d <= worst)) worst = d;
    }
    ok(good, "%s (%s): %s x %s -> %s, want %s, worst diff %g", what, lm_dtype_name(a->dtype),
       shp(a, sa), shp(b, sb), shp(c, sc), sr, worst);
    if (!c) diag("error: %s", lm_last_error());
    lm_release(c);
    free(r.v);
}

/* ---- hand-computed values ------------------------------------------------------------------ */

static void test_hand_computed(void)
{
    const double av[] = {1, 2, 3, 4, 5, 6}, bv[] = {7, 8, 9, 10, 11, 12}, ones[] = {1, 1, 1};
    for (int k = 0; k < 2; k++) {
        lm_dtype dt = k ? LM_F64 : LM_F32;
        lm_tensor *a64 = lm_from_data(av, LM_F64, LM_SHAPE(2, 3));
        lm_tensor *b64 = lm_from_data(bv, LM_F64, LM_SHAPE(3, 2));
        lm_tensor *a = lm_to_dtype(a64, dt), *b = lm_to_dtype(b64, dt);
        lm_tensor *c = lm_matmul(a, b);
        ok(c && c->ndim == 2 && c->shape[0] == 2 && c->shape[1] == 2 &&
               get(c, (int64_t[]){0, 0}) == 58 && get(c, (int64_t[]){0, 1}) == 64 &&
               get(c, (int64_t[]){1, 0}) == 139 && get(c, (int64_t[]){1, 1}) == 154,
           "%s: [[1,2,3],[4,5,6]] x [[7,8],[9,10],[11,12]] = [[58,64],[139,154]]",
           lm_dtype_name(dt));
        lm_release(c);

        lm_tensor *u64 = lm_from_data(av, LM_F64, LM_SHAPE(3));
        lm_tensor *v64 = lm_from_data(av + 3, LM_F64, LM_SHAPE(3));
        lm_tensor *u = lm_to_dtype(u64, dt), *v = lm_to_dtype(v64, dt);
        c = lm_matmul(u, v);
        double s = 0;
        ok(c && c->ndim == 0 && c->dtype == dt && lm_item(c, &s) == LM_OK && s == 32,
           "%s: [1,2,3] . [4,5,6] = 32 as a 0-dim tensor", lm_dtype_name(dt));
        lm_release(c);

        lm_tensor *o64 = lm_from_data(ones, LM_F64, LM_SHAPE(3));
        lm_tensor *o = lm_to_dtype(o64, dt);
        c = lm_matmul(a, o);
        ok(c && c->ndim == 1 && c->shape[0] == 2 && get(c, (int64_t[]){0}) == 6 &&
               get(c, (int64_t[]){1}) == 15,
           "%s: matrix x vector: row sums [6,15], shape [2]", lm_dtype_name(dt));
        lm_release(c);
        lm_tensor *o2 = lm_narrow(o, 0, 0, 2);
        c = lm_matmul(o2, a);
        ok(c && c->ndim == 1 && c->shape[0] == 3 && get(c, (int64_t[]){0}) == 5 &&
               get(c, (int64_t[]){1}) == 7 && get(c, (int64_t[]){2}) == 9,
           "%s: vector x matrix: column sums [5,7,9], shape [3]", lm_dtype_name(dt));
        lm_release(c);
        lm_release(o2);
        lm_release(o);
        lm_release(o64);
        lm_release(u);
        lm_release(v);
        lm_release(u64);
        lm_release(v64);
        lm_release(a);
        lm_release(b);
        lm_release(a64);
        lm_release(b64);
    }
}

/* ---- layouts of 2-D operands ---------------------------------------------------------------- */

static void test_2d(lm_dtype dt)
{
    const int64_t sizes[][3] = {{5, 7, 3}, {1, 7, 1}, {1, 9, 6}, {6, 9, 1}, {64, 33, 65},
                                {3, 1, 4}, {17, 300, 2}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int64_t m = sizes[i][0], k = sizes[i][1], n = sizes[i][2];
        lm_tensor *a = rnd(dt, LM_SHAPE(m, k)), *b = rnd(dt, LM_SHAPE(k, n));
        lm_tensor *at_ = rnd(dt, LM_SHAPE(k, m)), *bt_ = rnd(dt, LM_SHAPE(n, k));
        lm_tensor *aT = lm_t(at_), *bT = lm_t(bt_);
        check("contiguous", a, b);
        check("a.T", aT, b);
        check("b.T", a, bT);
        check("a.T and b.T", aT, bT);
        lm_release(a);
        lm_release(b);
        lm_release(aT);
        lm_release(bT);
        lm_release(at_);
        lm_release(bt_);
    }

    /* Slices with a step: rows keep a unit column stride (leading dim grows); columns do not
     * (a copy); a step on the rows of a transposed view keeps a unit row stride. */
    lm_tensor *big = rnd(dt, LM_SHAPE(12, 10)), *bigb = rnd(dt, LM_SHAPE(10, 12));
    lm_tensor *rows = lm_slice(big, 0, 1, 12, 2);     /* [6,10], strides (20,1) */
    lm_tensor *cols = lm_slice(bigb, 1, 0, 12, 3);    /* [10,4], strides (12,3) */
    lm_tensor *both = lm_slice(big, 1, 0, 10, 2);     /* [12,5], strides (10,2) */
    lm_tensor *bigbT = lm_t(bigb);                    /* [12,10], strides (1,12) */
    lm_tensor *tstep = lm_slice(bigbT, 0, 0, 12, 2);  /* [6,10], strides (2,12): a copy */
    lm_tensor *tcol = lm_slice(bigbT, 1, 0, 10, 2);   /* [12,5], strides (1,24) */
    lm_tensor *b10 = rnd(dt, LM_SHAPE(10, 3)), *b5 = rnd(dt, LM_SHAPE(5, 7));
    lm_tensor *a4 = rnd(dt, LM_SHAPE(2, 6));
    check("rows sliced with step 2", rows, b10);
    check("columns sliced with step 3 (copied)", rows, cols);
    check("columns with step 2 on the first operand", both, b5);
    check("rows with step 2 of a transposed view", tstep, b10);
    check("columns with step 2 of a transposed view", tcol, b5);
    check("sliced second operand", a4, rows);
    lm_release(rows);
    lm_release(cols);
    lm_release(both);
    lm_release(bigbT);
    lm_release(tstep);
    lm_release(tcol);
    lm_release(b10);
    lm_release(b5);
    lm_release(a4);
    lm_release(big);
    lm_release(bigb);

    /* Size-1 dims whose strides are arbitrary: a row picked from a transposed matrix and
     * unsqueezed, a column narrowed out of a wide matrix. */
    lm_tensor *w = rnd(dt, LM_SHAPE(8, 5)), *wt = lm_t(w);       /* [5,8] strides (1,5) */
    lm_tensor *row = lm_narrow(wt, 0, 2, 1);                     /* [1,8] strides (1,5) */
    lm_tensor *col = lm_narrow(w, 1, 3, 1);                      /* [8,1] strides (5,1) */
    lm_tensor *sel = lm_select(w, 1, 4);                         /* [8] stride 5 */
    lm_tensor *selu = lm_unsqueeze(sel, 0);                      /* [1,8] */
    lm_tensor *m8 = rnd(dt, LM_SHAPE(8, 4));
    check("[1,8] row of a transposed view", row, m8);
    check("[1,8] row times an [8,1] column", row, col);
    check("unsqueezed strided row", selu, m8);
    check("[8,1] column times a [1,8] row: outer product", col, row);
    lm_release(w);
    lm_release(wt);
    lm_release(row);
    lm_release(col);
    lm_release(sel);
    lm_release(selu);
    lm_release(m8);

    /* Expanded operands: a column broadcast along the matrix (stride 0 inside the matrix must
     * be copied) and a whole expanded matrix. */
    lm_tensor *c1 = rnd(dt, LM_SHAPE(6, 1)), *ce = lm_expand(c1, LM_SHAPE(6, 4));
    lm_tensor *r1 = rnd(dt, LM_SHAPE(1, 6)), *re = lm_expand(r1, LM_SHAPE(3, 6));
    lm_tensor *a36 = rnd(dt, LM_SHAPE(3, 6));
    check("expanded column (stride 0 inside the matrix)", a36, ce);
    check("expanded row as first operand", re, ce);
    lm_release(c1);
    lm_release(ce);
    lm_release(r1);
    lm_release(re);
    lm_release(a36);
}

/* ---- 1-D operands --------------------------------------------------------------------------- */

static void test_1d(lm_dtype dt)
{
    lm_tensor *u = rnd(dt, LM_SHAPE(7)), *v = rnd(dt, LM_SHAPE(7)), *long_ = rnd(dt, LM_SHAPE(21));
    lm_tensor *vs = lm_slice(long_, 0, 0, 21, 3); /* [7] stride 3 */
    lm_tensor *one = rnd(dt, LM_SHAPE(1)), *ue = lm_expand(one, LM_SHAPE(7));
    lm_tensor *m = rnd(dt, LM_SHAPE(7, 4)), *mt_ = rnd(dt, LM_SHAPE(4, 7)), *mT = lm_t(mt_);
    lm_tensor *n = rnd(dt, LM_SHAPE(5, 7)), *nt_ = rnd(dt, LM_SHAPE(7, 5)), *nT = lm_t(nt_);
    lm_tensor *b3 = rnd(dt, LM_SHAPE(3, 7, 4)), *a3 = rnd(dt, LM_SHAPE(2, 3, 5, 7));
    check("dot", u, v);
    check("dot with a strided vector", u, vs);
    check("dot with a strided first vector", vs, u);
    check("dot with an expanded vector", ue, v);
    check("vector x matrix", u, m);
    check("vector x transposed matrix", vs, mT);
    check("matrix x vector", n, v);
    check("transposed matrix x strided vector", nT, vs);
    check("vector x batched matrices", u, b3);
    check("4-D batch x vector", a3, vs);
    lm_release(u);
    lm_release(v);
    lm_release(long_);
    lm_release(vs);
    lm_release(one);
    lm_release(ue);
    lm_release(m);
    lm_release(mt_);
    lm_release(mT);
    lm_release(n);
    lm_release(nt_);
    lm_release(nT);
    lm_release(b3);
    lm_release(a3);
}

/* ---- batches -------------------------------------------------------------------------------- */

static void test_batched(lm_dtype dt)
{
    lm_tensor *a = rnd(dt, LM_SHAPE(4, 5, 6)), *b = rnd(dt, LM_SHAPE(4, 6, 3));
    check("batched, same batch dims", a, b);

    lm_tensor *a4 = rnd(dt, LM_SHAPE(2, 1, 3, 4)), *b3 = rnd(dt, LM_SHAPE(5, 4, 6));
    lm_tensor *c4 = rnd(dt, LM_SHAPE(2, 1, 6, 3));
    check("batch dims broadcast: [2,1,3,4] x [5,4,6]", a4, b3);
    check("batch dims broadcast: [5,4,6] x [2,1,6,3]", b3, c4);

    lm_tensor *m = rnd(dt, LM_SHAPE(6, 2));
    check("[B,M,K] x [K,N] (one folded product)", a, m);
    lm_tensor *mt_ = rnd(dt, LM_SHAPE(2, 6)), *mT = lm_t(mt_);
    check("[B,M,K] x transposed [K,N]", a, mT);
    lm_tensor *asl = lm_slice(a, 0, 0, 4, 2); /* batch dim with step 2 */
    check("batch sliced with step 2 x [K,N]", asl, m);
    lm_tensor *ar = lm_slice(a, 1, 0, 5, 2); /* rows with step 2 in every batch */
    check("rows sliced in every batch x [K,N]", ar, m);
    lm_tensor *wide = rnd(dt, LM_SHAPE(4, 5, 9)), *an = lm_narrow(wide, 2, 1, 6);
    check("[4,5,6] narrowed from [4,5,9] x [K,N] (folded, leading dim 9)", an, m);
    lm_tensor *aT3 = lm_transpose(b, 1, 2); /* [4,3,6], each matrix transposed */
    check("per-batch transposed x [K,N]", aT3, m);
    check("per-batch transposed x batched", aT3, b);
    lm_tensor *x = rnd(dt, LM_SHAPE(4, 3, 6)), *xT = lm_transpose(x, 1, 2); /* [4,6,3] */
    check("batched x per-batch transposed", a, xT);
    lm_tensor *bsw = lm_transpose(b, 0, 1); /* [6,4,3]: the batch dim is not outermost */
    lm_tensor *a64 = rnd(dt, LM_SHAPE(6, 2, 4));
    check("batch dim not outermost in memory", a64, bsw);
    lm_tensor *k36 = rnd(dt, LM_SHAPE(3, 6));
    lm_tensor *aT = lm_transpose(a, 1, 2); /* [4,6,5] */
    check("[M,K] x batched [B,K,N] (first operand broadcast)", k36, aT);

    /* Expanded operands: never materialised per batch. */
    lm_tensor *e1 = rnd(dt, LM_SHAPE(1, 6, 3)), *ee = lm_expand(e1, LM_SHAPE(4, 6, 3));
    check("batched x expanded batch", a, ee);
    lm_tensor *f1 = rnd(dt, LM_SHAPE(5, 6)), *fe = lm_expand(f1, LM_SHAPE(3, 5, 6));
    check("expanded first operand x [K,N]", fe, m);
    lm_tensor *g1 = rnd(dt, LM_SHAPE(3, 1, 6, 4)), *gcol = lm_slice(g1, 3, 0, 4, 2);
    lm_tensor *ge = lm_expand(gcol, LM_SHAPE(3, 4, 6, 2));
    check("expanded and column-sliced operand (copied once per distinct matrix)", a, ge);

    lm_tensor *rel[] = {a, b, a4, b3, c4, m, mt_, mT, asl, ar, wide, an, aT3,
                        x, xT, bsw, a64, k36, aT, e1, ee, f1, fe, g1, gcol, ge};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) lm_release(rel[i]);
}

/* ---- empty dims ----------------------------------------------------------------------------- */

static void test_empty(lm_dtype dt)
{
    struct {
        int na, nb;
        int64_t sa[4], sb[4];
        const char *want;
    } cases[] = {
        {2, 2, {0, 3}, {3, 4}, "[0,4]"},
        {2, 2, {3, 4}, {4, 0}, "[3,0]"},
        {2, 2, {3, 0}, {0, 4}, "[3,4]"},
        {3, 2, {2, 0, 3}, {3, 4}, "[2,0,4]"},
        {3, 2, {0, 2, 3}, {3, 4}, "[0,2,4]"},
        {3, 3, {2, 3, 0}, {1, 0, 5}, "[2,3,5]"},
        {1, 1, {0}, {0}, "[]"},
        {1, 2, {0}, {0, 3}, "[3]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lm_tensor *a = rnd(dt, cases[i].na, cases[i].sa), *b = rnd(dt, cases[i].nb, cases[i].sb);
        lm_tensor *probe = lm_matmul(a, b);
        if (probe) poison(probe->ndim, probe->shape, dt);
        lm_release(probe);
        lm_tensor *c = lm_matmul(a, b);
        char s[64];
        bool zeros = c != NULL;
        for (int64_t f = 0; zeros && f < lm_numel(c); f++) {
            int64_t idx[LM_MAX_DIMS];
            unravel(f, c->ndim, c->shape, idx);
            zeros = get(c, idx) == 0.0;
        }
        ok(c && strcmp(shp(c, s), cases[i].want) == 0 && zeros && c->dtype == dt,
           "%s: empty case %zu gives %s, want %s filled with zeros", lm_dtype_name(dt), i,
           shp(c, s), cases[i].want);
        lm_release(a);
        lm_release(b);
        lm_release(c);
    }
}

/* ---- no copies, threads, allocation failures ------------------------------------------------ */

static void test_no_copy(void)
{
    /* lm_matmul's own result takes 3 allocations (tensor, storage, data); a 4th would be an
     * operand copy. */
    lm_tensor *at_ = rnd(LM_F32, LM_SHAPE(6, 4)), *bt_ = rnd(LM_F32, LM_SHAPE(5, 6));
    lm_tensor *aT = lm_t(at_), *bT = lm_t(bt_);
    lm_debug_fail_alloc_after(4);
    lm_tensor *c = lm_matmul(aT, bT);
    lm_debug_fail_alloc_after(0);
    ok(c != NULL, "a.T x b.T allocates only the result (no operand copy)");
    lm_release(c);

    lm_tensor *a3 = rnd(LM_F32, LM_SHAPE(7, 4, 6)), *bx = lm_expand(bT, LM_SHAPE(7, 6, 5));
    lm_debug_fail_alloc_after(4);
    c = lm_matmul(a3, bx);
    lm_debug_fail_alloc_after(0);
    ok(c != NULL, "batched x expanded transposed matrix allocates only the result");
    lm_release(c);

    /* Strided vectors and size-1 dims with odd strides need no copy either. */
    lm_tensor *v = lm_select(at_, 1, 2), *w = lm_select(bt_, 0, 1); /* [6] stride 4, [6] */
    lm_tensor *vu = lm_unsqueeze(v, 0), *vc = lm_unsqueeze(v, 1);  /* [1,6], [6,1] */
    const lm_tensor *pairs[][2] = {{v, w}, {aT, v}, {v, bT}, {vu, bT}, {aT, vc}, {vc, vu}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        lm_debug_fail_alloc_after(4);
        c = lm_matmul(pairs[i][0], pairs[i][1]);
        lm_debug_fail_alloc_after(0);
        ok(c != NULL, "strided vector or size-1 dim case %zu allocates only the result", i);
        lm_release(c);
    }
    lm_release(v);
    lm_release(w);
    lm_release(vu);
    lm_release(vc);

    lm_tensor *cols = lm_slice(at_, 1, 0, 4, 2); /* [6,2] strides (4,2): must be copied */
    lm_tensor *a6 = rnd(LM_F32, LM_SHAPE(3, 6));
    lm_clear_error();
    lm_debug_fail_alloc_after(4);
    c = lm_matmul(a6, cols);
    lm_debug_fail_alloc_after(0);
    ok(c == NULL && lm_last_status() == LM_ERR_MEMORY,
       "a column-strided operand is copied (the injected 4th allocation fails)");
    lm_release(c);
    lm_release(at_);
    lm_release(bt_);
    lm_release(aT);
    lm_release(bT);
    lm_release(a3);
    lm_release(bx);
    lm_release(cols);
    lm_release(a6);
}

static void test_threads(void)
{
    /* With 2 threads: a batch of small products is split over the batch, one BLAS call per
     * thread; a large enough product is cut into blocks of rows, one per thread; a batch of
     * large products that does not divide evenly runs product by product, each cut in blocks. */
    lm_set_num_threads(2);
    lm_tensor *a = rnd(LM_F32, LM_SHAPE(33, 8, 9)), *b = rnd(LM_F32, LM_SHAPE(33, 9, 7));
    check("2 threads: 33 small products split over the batch", a, b);
    lm_tensor *bd = rnd(LM_F64, LM_SHAPE(5, 1, 9, 8)), *ad = rnd(LM_F64, LM_SHAPE(1, 4, 7, 9));
    check("2 threads: broadcast batch split over the batch", ad, bd);
    lm_tensor *m = rnd(LM_F32, LM_SHAPE(130, 70)), *n = rnd(LM_F32, LM_SHAPE(70, 50));
    check("2 threads: one product cut into blocks of rows", m, n);
    lm_tensor *mt_ = rnd(LM_F64, LM_SHAPE(70, 130)), *mT = lm_t(mt_);
    lm_tensor *nt_ = rnd(LM_F64, LM_SHAPE(50, 70)), *nT = lm_t(nt_);
    check("2 threads: transposed operands cut into blocks of rows", mT, nT);
    lm_tensor *f = rnd(LM_F32, LM_SHAPE(9, 16, 70));
    check("2 threads: folded [9,16,70] x [70,50] cut into blocks of rows", f, n);
    lm_tensor *x = rnd(LM_F32, LM_SHAPE(3, 150, 190)), *y = rnd(LM_F32, LM_SHAPE(3, 190, 160));
    check("2 threads: 3 large products one after another, each cut in blocks", x, y);
    lm_tensor *x2 = lm_narrow(x, 0, 0, 2), *y2 = lm_narrow(y, 0, 1, 2);
    check("2 threads: 2 large products, one per thread", x2, y2);
    lm_set_num_threads(1);
    lm_tensor *rel[] = {a, b, ad, bd, m, n, mt_, mT, nt_, nT, f, x, y, x2, y2};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) lm_release(rel[i]);
}

static void test_alloc_failures(void)
{
    lm_tensor *a = rnd(LM_F64, LM_SHAPE(2, 5, 6)), *b = rnd(LM_F64, LM_SHAPE(2, 6, 9));
    lm_tensor *as = lm_slice(a, 2, 0, 6, 2), *bs = lm_slice(b, 1, 0, 6, 2);
    lm_tensor *bst = lm_slice(bs, 2, 0, 9, 3); /* [2,3,3] strides (54,12,3) */
    int failures = 0, wrong = 0;
    bool succeeded = false;
    for (int n = 1; n <= 20 && !succeeded; n++) {
        lm_clear_error();
        lm_debug_fail_alloc_after(n);
        lm_tensor *c = lm_matmul(as, bst);
        lm_debug_fail_alloc_after(0);
        if (c) succeeded = true;
        else if (lm_last_status() == LM_ERR_MEMORY) failures++;
        else wrong++;
        lm_release(c);
    }
    ok(succeeded && failures >= 5 && wrong == 0,
       "every allocation failure of a copying matmul returns NULL with LM_ERR_MEMORY "
       "(%d failures, %d wrong statuses)", failures, wrong);
    lm_release(a);
    lm_release(b);
    lm_release(as);
    lm_release(bs);
    lm_release(bst);
}

/* ---- errors --------------------------------------------------------------------------------- */

static void expect_error(lm_tensor *c, lm_status want, const char *what, const char *needle1,
                         const char *needle2)
{
    is_int(c == NULL ? lm_last_status() : LM_OK, want, "%s: fails with %s", what,
           lm_status_name(want));
    has_str(lm_last_error(), needle1, "%s: message names \"%s\"", what, needle1);
    if (needle2) has_str(lm_last_error(), needle2, "%s: message names \"%s\"", what, needle2);
    lm_release(c);
}

static void test_errors(void)
{
    lm_tensor *a23 = rnd(LM_F32, LM_SHAPE(2, 3)), *a45 = rnd(LM_F32, LM_SHAPE(4, 5));
    lm_tensor *v3 = rnd(LM_F32, LM_SHAPE(3)), *v4 = rnd(LM_F32, LM_SHAPE(4));
    lm_tensor *s = lm_scalar(2.0, LM_F32), *d34 = rnd(LM_F64, LM_SHAPE(3, 4));
    lm_tensor *i23 = lm_zeros(LM_SHAPE(2, 3), LM_I64), *i34 = lm_zeros(LM_SHAPE(3, 4), LM_I64);
    lm_tensor *u34 = lm_zeros(LM_SHAPE(3, 4), LM_U8);
    lm_tensor *b234 = rnd(LM_F32, LM_SHAPE(2, 3, 4)), *b546 = rnd(LM_F32, LM_SHAPE(5, 4, 6));

    lm_clear_error();
    expect_error(lm_matmul(NULL, a23), LM_ERR_ARG, "NULL first operand", "matmul: NULL", NULL);
    lm_clear_error();
    expect_error(lm_matmul(a23, NULL), LM_ERR_ARG, "NULL second operand", "matmul: NULL", NULL);

    lm_clear_error();
    lm_tensor *c = lm_matmul(a23, a45);
    is_int(c == NULL ? lm_last_status() : LM_OK, LM_ERR_SHAPE, "[2,3] x [4,5]: shape error");
    is_str(lm_last_error(), "matmul: shapes [2,3] and [4,5] cannot be multiplied (3 != 4)",
           "[2,3] x [4,5]: the message names both shapes and the inner dims");
    lm_release(c);
    expect_error(lm_matmul(v3, v4), LM_ERR_SHAPE, "dot of [3] and [4]", "[3] and [4]",
                 "3 != 4");
    expect_error(lm_matmul(a23, v4), LM_ERR_SHAPE, "[2,3] x [4]", "[2,3] and [4]", "3 != 4");
    expect_error(lm_matmul(v4, a23), LM_ERR_SHAPE, "[4] x [2,3]", "[4] and [2,3]", "4 != 2");
    expect_error(lm_matmul(b234, a23), LM_ERR_SHAPE, "[2,3,4] x [2,3]", "[2,3,4] and [2,3]",
                 "4 != 2");
    lm_tensor *b3x = rnd(LM_F32, LM_SHAPE(3, 1, 4, 6));
    lm_tensor *ok1 = lm_matmul(b234, b3x);
    ok(ok1 && ok1->ndim == 4 && ok1->shape[0] == 3 && ok1->shape[1] == 2,
       "[2,3,4] x [3,1,4,6] broadcasts to [3,2,3,6]");
    lm_release(ok1);
    expect_error(lm_matmul(b234, b546), LM_ERR_SHAPE, "batch [2] vs [5]", "[2,3,4] and [5,4,6]",
                 "broadcast");
    lm_release(b3x);

    expect_error(lm_matmul(s, a23), LM_ERR_SHAPE, "0-dim first operand", "matmul", "[] and [2,3]");
    expect_error(lm_matmul(v3, s), LM_ERR_SHAPE, "0-dim second operand", "matmul", "[3] and []");

    expect_error(lm_matmul(i23, i34), LM_ERR_DTYPE, "i64 x i64", "matmul", "i64");
    expect_error(lm_matmul(a23, i34), LM_ERR_DTYPE, "f32 x i64", "matmul", "i64");
    expect_error(lm_matmul(a23, u34), LM_ERR_DTYPE, "f32 x u8", "u8", "[2,3] and [3,4]");
    expect_error(lm_matmul(a23, d34), LM_ERR_DTYPE, "f32 x f64", "same dtype", "f32 and f64");

    /* A tensor that claims another device: op code must ask the backend, never assume CPU. */
    lm_tensor *a34 = rnd(LM_F32, LM_SHAPE(3, 4));
    a23->storage->device = LM_CUDA;
    expect_error(lm_matmul(a23, a34), LM_ERR_ARG, "operands on two devices", "matmul",
                 "different devices");
    a34->storage->device = LM_CUDA;
    expect_error(lm_matmul(a23, a34), LM_ERR_UNSUPPORTED, "a device without a backend", "matmul",
                 "no backend");
    a23->storage->device = LM_CPU;
    a34->storage->device = LM_CPU;

    lm_clear_error();
    c = lm_matmul(a23, a34);
    ok(c && lm_last_status() == LM_OK, "after the errors a valid product still works");
    lm_release(c);

    lm_release(a34);
    lm_release(a23);
    lm_release(a45);
    lm_release(v3);
    lm_release(v4);
    lm_release(s);
    lm_release(d34);
    lm_release(i23);
    lm_release(i34);
    lm_release(u34);
    lm_release(b234);
    lm_release(b546);
}

int main(void)
{
    plan_auto();
    test_hand_computed();
    for (int k = 0; k < 2; k++) {
        lm_dtype dt = k ? LM_F64 : LM_F32;
        test_2d(dt);
        test_1d(dt);
        test_batched(dt);
        test_empty(dt);
    }
    test_no_copy();
    test_threads();
    test_alloc_failures();
    test_errors();
    return done();
}
