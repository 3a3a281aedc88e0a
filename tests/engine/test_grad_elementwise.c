/* test_grad_elementwise.c — the backward of every differentiable element-wise op: gradchecks
 * (central differences in f64) of each op, with broadcast and non-contiguous inputs; the kinks
 * (relu and abs at 0, clamp's bounds, ties of maximum/minimum) worked by hand; the fused
 * activation kernels against compositions of primitives and naive loops, forward and backward,
 * in f32 and f64; accumulation; and PyTorch's rules for in-place ops under autograd. */
#include "autograd.h"
#include "gradcheck.h"
#include "lumen.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- inputs --------------------------------------------------------------------------------- */

/* f64 leaf requiring grad, uniform in [lo, hi). */
static lm_tensor *uniform(int ndim, const int64_t *shape, double lo, double hi)
{
    return gc_input(ndim, shape, lo, hi);
}

/* f64 leaf requiring grad with values k/10 + offset + [0, 0.02), k in [-10, 10): two lattices
 * whose offsets differ by 0.05 never come closer than 0.03 (so maximum/minimum have no ties
 * within the finite-difference step), and offset 0.05 keeps every value at least 0.03 from any
 * multiple of 0.1 (0 for relu and abs, +-0.5 for clamp). */
static lm_tensor *lattice(int ndim, const int64_t *shape, double offset)
{
    lm_tensor *k = lm_randint(-10, 10, ndim, shape, LM_F64);
    lm_tensor *u = lm_rand(ndim, shape, LM_F64);
    lm_tensor *a = lm_mul_scalar(k, 0.1);
    lm_tensor *j = lm_mul_scalar(u, 0.02);
    lm_tensor *b = lm_add(a, j);
    lm_tensor *r = lm_add_scalar(b, offset);
    lm_requires_grad_(r, true);
    lm_release(b);
    lm_release(j);
    lm_release(a);
    lm_release(u);
    lm_release(k);
    return r;
}

/* A non-contiguous leaf requiring grad: base (contiguous, [c, r]) transposed to [r, c], the view
 * made under no_grad so it has no history. Takes base. */
static lm_tensor *transposed(lm_tensor *base)
{
    lm_requires_grad_(base, false);
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *v = lm_transpose(base, 0, 1);
    lm_set_grad_enabled(prev);
    lm_requires_grad_(v, true);
    lm_release(base);
    return v;
}

/* Every second column of base ([r, 2c]), a strided leaf of shape [r, c]. Takes base. */
static lm_tensor *strided(lm_tensor *base)
{
    lm_requires_grad_(base, false);
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *v = lm_slice(base, 1, 1, base->shape[1], 2);
    lm_set_grad_enabled(prev);
    lm_requires_grad_(v, true);
    lm_release(base);
    return v;
}

static lm_tensor *vec(int n, const double *v) { return lm_from_data(v, LM_F64, 1, (int64_t[]){n}); }

static lm_tensor *leaf_vec(int n, const double *v)
{
    lm_tensor *t = vec(n, v);
    lm_requires_grad_(t, true);
    return t;
}

/* Does t (any dtype, read as doubles) hold exactly want? */
static bool equals(const lm_tensor *t, int n, const double *want)
{
    if (!t || lm_numel(t) != n) return false;
    for (int i = 0; i < n; i++) {
        double v;
        if (lm_get(t, (int64_t[]){i}, &v) || v != want[i]) return false;
    }
    return true;
}

/* max |a - b| / (1 + |b|) over all elements, read in f64. */
static double max_rel_diff(const lm_tensor *a, const lm_tensor *b)
{
    if (!a || !b || lm_numel(a) != lm_numel(b)) return INFINITY;
    lm_tensor *x = lm_to_dtype(a, LM_F64), *y = lm_to_dtype(b, LM_F64);
    lm_tensor *xc = lm_contiguous(x), *yc = lm_contiguous(y);
    const double *p = lm_data(xc), *q = lm_data(yc);
    double worst = 0;
    for (int64_t i = 0; i < lm_numel(a); i++) {
        double d = fabs(p[i] - q[i]) / (1 + fabs(q[i]));
        if (!(d <= worst)) worst = d; /* NaN counts as the worst */
    }
    lm_release(xc);
    lm_release(yc);
    lm_release(x);
    lm_release(y);
    return worst;
}

/* ---- gradchecks ------------------------------------------------------------------------------ */

typedef lm_tensor *(*unary_f)(const lm_tensor *);
typedef lm_tensor *(*binary_f)(const lm_tensor *, const lm_tensor *);
typedef lm_tensor *(*scalar_f)(const lm_tensor *, double);

typedef struct {
    unary_f u;
    binary_f b;
    scalar_f s;
    double k;
} op_ctx;

static lm_tensor *call_unary(lm_tensor **x, void *c) { return ((op_ctx *)c)->u(x[0]); }
static lm_tensor *call_binary(lm_tensor **x, void *c) { return ((op_ctx *)c)->b(x[0], x[1]); }
static lm_tensor *call_scalar(lm_tensor **x, void *c)
{
    op_ctx *o = c;
    return o->s(x[0], o->k);
}

/* Gradchecks f on x and releases x. */
static void check_unary(const char *name, unary_f f, lm_tensor *x)
{
    op_ctx c = {.u = f};
    gradcheck(name, call_unary, 1, &x, &c);
    lm_release(x);
}

static void check_binary(const char *name, binary_f f, lm_tensor *a, lm_tensor *b)
{
    op_ctx c = {.b = f};
    lm_tensor *in[2] = {a, b};
    gradcheck(name, call_binary, 2, in, &c);
    lm_release(a);
    lm_release(b);
}

static void check_scalar(const char *name, scalar_f f, double k, lm_tensor *x)
{
    op_ctx c = {.s = f, .k = k};
    gradcheck(name, call_scalar, 1, &x, &c);
    lm_release(x);
}

static lm_tensor *leaky_01(const lm_tensor *x) { return lm_leaky_relu(x, 0.1); }
static lm_tensor *leaky_neg(const lm_tensor *x) { return lm_leaky_relu(x, -0.3); }
static lm_tensor *clamp_both(const lm_tensor *x) { return lm_clamp(x, -0.5, 0.5); }
static lm_tensor *clamp_min(const lm_tensor *x) { return lm_clamp(x, -0.3, INFINITY); }
static lm_tensor *clamp_max(const lm_tensor *x) { return lm_clamp(x, -INFINITY, 0.2); }

#define S34 LM_SHAPE(3, 4)

static void test_unary_gradchecks(void)
{
    check_unary("neg", lm_neg, uniform(S34, -2, 2));
    check_unary("abs", lm_abs, lattice(S34, 0.05));
    check_unary("exp", lm_exp, uniform(S34, -2, 2));
    check_unary("log", lm_log, uniform(S34, 0.5, 3));
    check_unary("log1p", lm_log1p, uniform(S34, -0.5, 2));
    check_unary("sqrt", lm_sqrt, uniform(S34, 0.5, 3));
    check_unary("rsqrt", lm_rsqrt, uniform(S34, 0.5, 3));
    check_unary("sin", lm_sin, uniform(S34, -3, 3));
    check_unary("cos", lm_cos, uniform(S34, -3, 3));
    check_unary("tanh", lm_tanh, uniform(S34, -3, 3));
    check_unary("sigmoid", lm_sigmoid, uniform(S34, -4, 4));
    check_unary("relu", lm_relu, lattice(S34, 0.05));
    check_unary("gelu", lm_gelu, uniform(S34, -4, 4));
    check_unary("gelu_tanh", lm_gelu_tanh, uniform(S34, -4, 4));
    check_unary("silu", lm_silu, uniform(S34, -4, 4));
    check_unary("leaky_relu", leaky_01, lattice(S34, 0.05));
    check_unary("leaky_relu (negative slope)", leaky_neg, lattice(S34, 0.05));
    check_unary("clamp", clamp_both, lattice(S34, 0.05));
    check_unary("clamp (min only)", clamp_min, lattice(S34, 0.05));
    check_unary("clamp (max only)", clamp_max, lattice(S34, 0.05));

    /* Non-contiguous inputs: the strided paths of the kernels, fused ones included. */
    check_unary("exp (transposed)", lm_exp, transposed(uniform(LM_SHAPE(4, 3), -2, 2)));
    check_unary("log (strided)", lm_log, strided(uniform(LM_SHAPE(3, 8), 0.5, 3)));
    check_unary("abs (transposed)", lm_abs, transposed(lattice(LM_SHAPE(4, 3), 0.05)));
    check_unary("sin (strided)", lm_sin, strided(uniform(LM_SHAPE(3, 8), -3, 3)));
    check_unary("tanh (transposed)", lm_tanh, transposed(uniform(LM_SHAPE(4, 3), -3, 3)));
    check_unary("sigmoid (strided)", lm_sigmoid, strided(uniform(LM_SHAPE(3, 8), -4, 4)));
    check_unary("relu (transposed)", lm_relu, transposed(lattice(LM_SHAPE(4, 3), 0.05)));
    check_unary("gelu (transposed)", lm_gelu, transposed(uniform(LM_SHAPE(4, 3), -4, 4)));
    check_unary("gelu_tanh (strided)", lm_gelu_tanh, strided(uniform(LM_SHAPE(3, 8), -4, 4)));
    check_unary("silu (transposed)", lm_silu, transposed(uniform(LM_SHAPE(4, 3), -4, 4)));
    check_unary("leaky_relu (strided)", leaky_01, strided(lattice(LM_SHAPE(3, 8), 0.05)));
    check_unary("clamp (strided)", clamp_both, strided(lattice(LM_SHAPE(3, 8), 0.05)));
}

static void test_binary_gradchecks(void)
{
    check_binary("add", lm_add, uniform(S34, -2, 2), uniform(S34, -2, 2));
    check_binary("sub", lm_sub, uniform(S34, -2, 2), uniform(S34, -2, 2));
    check_binary("mul", lm_mul, uniform(S34, -2, 2), uniform(S34, -2, 2));
    check_binary("div", lm_div, uniform(S34, -2, 2), uniform(S34, 0.5, 2));
    check_binary("pow", lm_pow, uniform(S34, 0.5, 2), uniform(S34, -1.5, 1.5));
    check_binary("maximum", lm_maximum, lattice(S34, 0), lattice(S34, 0.05));
    check_binary("minimum", lm_minimum, lattice(S34, 0), lattice(S34, 0.05));

    /* Broadcasting: [3,1] with [1,4], and [2,3,4] with [4]. */
    const binary_f fs[] = {lm_add, lm_sub, lm_mul, lm_div, lm_pow, lm_maximum, lm_minimum};
    const char *names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};
    for (int i = 0; i < 7; i++) {
        char name[64];
        bool positive_b = fs[i] == lm_div, positive_a = fs[i] == lm_pow;
        bool choose = fs[i] == lm_maximum || fs[i] == lm_minimum;
        for (int v = 0; v < 2; v++) {
            lm_tensor *a, *b;
            int na = v == 0 ? 2 : 3, nb = v == 0 ? 2 : 1;
            const int64_t *sa = v == 0 ? (const int64_t[]){3, 1} : (const int64_t[]){2, 3, 4};
            const int64_t *sb = v == 0 ? (const int64_t[]){1, 4} : (const int64_t[]){4};
            if (choose) {
                a = lattice(na, sa, 0);
                b = lattice(nb, sb, 0.05);
            } else {
                a = positive_a ? uniform(na, sa, 0.5, 2) : uniform(na, sa, -2, 2);
                b = positive_b ? uniform(nb, sb, 0.5, 2) : uniform(nb, sb, -1.5, 1.5);
            }
            snprintf(name, sizeof name, "%s (broadcast %s)", names[i],
                     v == 0 ? "[3,1] with [1,4]" : "[2,3,4] with [4]");
            check_binary(name, fs[i], a, b);
        }
    }

    /* Non-contiguous operands. */
    check_binary("mul (transposed with strided)", lm_mul,
                 transposed(uniform(LM_SHAPE(4, 3), -2, 2)),
                 strided(uniform(LM_SHAPE(3, 8), -2, 2)));
    check_binary("div (strided with transposed)", lm_div, strided(uniform(LM_SHAPE(3, 8), -2, 2)),
                 transposed(uniform(LM_SHAPE(4, 3), 0.5, 2)));
    check_binary("pow (transposed base)", lm_pow, transposed(uniform(LM_SHAPE(4, 3), 0.5, 2)),
                 uniform(S34, -1.5, 1.5));
    check_binary("maximum (transposed with strided)", lm_maximum,
                 transposed(lattice(LM_SHAPE(4, 3), 0)), strided(lattice(LM_SHAPE(3, 8), 0.05)));
    check_binary("sub (strided)", lm_sub, strided(uniform(LM_SHAPE(3, 8), -2, 2)),
                 uniform(LM_SHAPE(1, 4), -2, 2));

    /* Only one input requiring grad: the other's gradient is neither computed nor needed. */
    lm_tensor *c = uniform(S34, 0.5, 2);
    lm_requires_grad_(c, false);
    check_binary("div (constant divisor)", lm_div, uniform(S34, -2, 2), lm_retain(c));
    check_binary("pow (constant base)", lm_pow, lm_retain(c), uniform(S34, -1.5, 1.5));
    lm_release(c);
}

static void test_scalar_gradchecks(void)
{
    check_scalar("add_scalar", lm_add_scalar, 2.5, uniform(S34, -2, 2));
    check_scalar("sub_scalar", lm_sub_scalar, 2.5, uniform(S34, -2, 2));
    check_scalar("rsub_scalar", lm_rsub_scalar, 2.5, uniform(S34, -2, 2));
    check_scalar("mul_scalar", lm_mul_scalar, -1.5, uniform(S34, -2, 2));
    check_scalar("div_scalar", lm_div_scalar, 0.7, uniform(S34, -2, 2));
    check_scalar("rdiv_scalar", lm_rdiv_scalar, 3.0, uniform(S34, 0.5, 2));
    check_scalar("pow_scalar", lm_pow_scalar, 3.5, uniform(S34, 0.5, 2));
    check_scalar("pow_scalar (square)", lm_pow_scalar, 2.0, uniform(S34, -2, 2));
    check_scalar("pow_scalar (negative exponent)", lm_pow_scalar, -1.5, uniform(S34, 0.5, 2));
    check_scalar("pow_scalar (exponent 1)", lm_pow_scalar, 1.0, uniform(S34, -2, 2));
    check_scalar("pow_scalar (exponent 0)", lm_pow_scalar, 0.0, uniform(S34, -2, 2));
    check_scalar("rpow_scalar", lm_rpow_scalar, 2.5, uniform(S34, -2, 2));
    check_scalar("rpow_scalar (base below 1)", lm_rpow_scalar, 0.3, uniform(S34, -2, 2));
    check_scalar("rpow_scalar (base 0)", lm_rpow_scalar, 0.0, uniform(S34, 0.5, 2));
    check_scalar("maximum_scalar", lm_maximum_scalar, 0.0, lattice(S34, 0.05));
    check_scalar("minimum_scalar", lm_minimum_scalar, 0.0, lattice(S34, 0.05));
    check_scalar("mul_scalar (transposed)", lm_mul_scalar, 3.0,
                 transposed(uniform(LM_SHAPE(4, 3), -2, 2)));
    check_scalar("rdiv_scalar (strided)", lm_rdiv_scalar, -2.0,
                 strided(uniform(LM_SHAPE(3, 8), 0.5, 2)));

    /* The number is a constant of the node, not an input. */
    lm_tensor *x = uniform(S34, -1, 1);
    lm_tensor *y = lm_mul_scalar(x, 2.0), *r = lm_rpow_scalar(x, 2.0);
    ok(y && y->grad_fn && y->grad_fn->n_inputs == 1 && r && r->grad_fn->n_inputs == 1,
       "an op with a number records one input");
    ok(y && strcmp(y->grad_fn->op->name, "mul_scalar") == 0 &&
           strcmp(r->grad_fn->op->name, "rpow_scalar") == 0,
       "and is named after the op");
    lm_release(r);
    lm_release(y);
    lm_release(x);
}

static lm_tensor *where_fn(lm_tensor **x, void *ctx) { return lm_where(ctx, x[0], x[1]); }

static void test_where(void)
{
    lm_tensor *cond = lm_randint(0, 2, S34, LM_U8);
    lm_tensor *in[2] = {uniform(S34, -2, 2), uniform(S34, -2, 2)};
    gradcheck("where", where_fn, 2, in, cond);
    lm_release(in[0]);
    lm_release(in[1]);
    lm_release(cond);

    lm_tensor *c2 = lm_randint(0, 2, LM_SHAPE(3, 1), LM_U8);
    lm_tensor *in2[2] = {uniform(LM_SHAPE(1, 4), -2, 2),
                         transposed(uniform(LM_SHAPE(4, 3), -2, 2))};
    gradcheck("where (broadcast condition and a, transposed b)", where_fn, 2, in2, c2);
    lm_release(in2[0]);
    lm_release(in2[1]);
    lm_release(c2);

    /* By hand, with a float condition that itself requires grad: it gets none. */
    lm_tensor *fc = leaf_vec(4, (double[]){1, 0, -2, 0});
    lm_tensor *a = leaf_vec(4, (double[]){1, 2, 3, 4});
    lm_tensor *b = leaf_vec(1, (double[]){10});
    lm_tensor *w = lm_where(fc, a, b);
    lm_tensor *g = vec(4, (double[]){1, 2, 3, 4});
    ok(w && lm_backward(w, g, false) == LM_OK, "where: backward");
    ok(equals(a->grad, 4, (double[]){1, 0, 3, 0}), "where: a gets g where the condition holds");
    ok(equals(b->grad, 1, (double[]){6}), "where: b gets the rest, summed over its broadcast");
    ok(fc->grad == NULL && w->grad_fn->n_inputs == 2,
       "where: the condition is no input and gets no gradient");
    lm_release(g);
    lm_release(w);
    lm_release(b);
    lm_release(a);
    lm_release(fc);
}

/* ---- kinks, by hand ------------------------------------------------------------------------- */

/* Gradient of sum(f(x) * seed) with respect to x, seed all ones: a new reference to x->grad. */
static lm_tensor *grad_of(lm_tensor *y, lm_tensor *x)
{
    lm_tensor *seed = y ? lm_ones_like(y) : NULL;
    lm_status st = seed ? lm_backward(y, seed, false) : LM_ERR_STATE;
    lm_release(seed);
    lm_release(y);
    return st ? NULL : lm_retain(x->grad);
}

static void test_kinks(void)
{
    lm_tensor *x = leaf_vec(3, (double[]){-1, 0, 2});
    lm_tensor *g = grad_of(lm_relu(x), x);
    ok(equals(g, 3, (double[]){0, 0, 1}), "relu: gradient 0 at 0");
    lm_release(g);
    lm_zero_grad(x);
    g = grad_of(lm_abs(x), x);
    ok(equals(g, 3, (double[]){-1, 0, 1}), "abs: gradient sign(x), 0 at 0");
    lm_release(g);
    lm_zero_grad(x);
    g = grad_of(lm_leaky_relu(x, 0.25), x);
    ok(equals(g, 3, (double[]){0.25, 0.25, 1}), "leaky_relu: the slope at 0, as PyTorch");
    lm_release(g);
    lm_release(x);

    lm_tensor *c = leaf_vec(5, (double[]){-2, -1, 0, 1, 2});
    g = grad_of(lm_clamp(c, -1, 1), c);
    ok(equals(g, 5, (double[]){0, 1, 1, 1, 0}), "clamp: 0 outside, passes at the bounds");
    lm_release(g);
    lm_zero_grad(c);
    g = grad_of(lm_clamp(c, 0, INFINITY), c);
    ok(equals(g, 5, (double[]){0, 0, 1, 1, 1}), "clamp with only a min");
    lm_release(g);
    lm_release(c);

    lm_tensor *a = leaf_vec(3, (double[]){1, 2, 3}), *b = leaf_vec(3, (double[]){1, 1, 4});
    lm_tensor *seed = vec(3, (double[]){2, 2, 2});
    lm_tensor *m = lm_maximum(a, b);
    ok(m && lm_backward(m, seed, false) == LM_OK && equals(a->grad, 3, (double[]){1, 2, 0}) &&
           equals(b->grad, 3, (double[]){1, 0, 2}),
       "maximum: the larger gets it, ties split half/half");
    lm_release(m);
    lm_zero_grad(a);
    lm_zero_grad(b);
    m = lm_minimum(a, b);
    ok(m && lm_backward(m, seed, false) == LM_OK && equals(a->grad, 3, (double[]){1, 0, 2}) &&
           equals(b->grad, 3, (double[]){1, 2, 0}),
       "minimum: the smaller gets it, ties split half/half");
    lm_release(m);
    lm_zero_grad(a);
    m = lm_maximum_scalar(a, 2);
    ok(m && lm_backward(m, seed, false) == LM_OK && equals(a->grad, 3, (double[]){0, 1, 2}),
       "maximum_scalar: a tie with the number gets half");
    lm_release(m);
    lm_zero_grad(a);
    m = lm_minimum_scalar(a, 2);
    ok(m && lm_backward(m, seed, false) == LM_OK && equals(a->grad, 3, (double[]){2, 1, 0}),
       "minimum_scalar: a tie with the number gets half");
    lm_release(m);
    lm_release(seed);
    lm_release(a);
    lm_release(b);

    /* pow at the points where the plain formulas give NaN: PyTorch's zeros. */
    lm_tensor *pa = leaf_vec(3, (double[]){0, 2, 0}), *pb = leaf_vec(3, (double[]){2, 0, 0});
    lm_tensor *p = lm_pow(pa, pb);
    lm_tensor *ones = lm_ones(LM_SHAPE(3), LM_F64);
    ok(p && lm_backward(p, ones, false) == LM_OK && equals(pa->grad, 3, (double[]){0, 0, 0}),
       "pow: d/da is 0 where b == 0 and at a == 0 with b == 2");
    ok(pb->grad && pb->grad->dtype == LM_F64 &&
           fabs(((double *)lm_data(pb->grad))[1] - log(2)) < 1e-15 &&
           ((double *)lm_data(pb->grad))[0] == 0 && ((double *)lm_data(pb->grad))[2] == 0,
       "pow: d/db is a^b ln a, and 0 where a == 0 and b >= 0");
    lm_release(p);
    lm_zero_grad(pa);
    lm_zero_grad(pb);
    p = lm_rpow_scalar(pb, 0.0); /* 0^[2, 0, 0] */
    ok(p && lm_backward(p, ones, false) == LM_OK && equals(pb->grad, 3, (double[]){0, 0, 0}),
       "rpow_scalar with base 0: gradient 0 for exponents >= 0");
    lm_release(p);
    p = lm_pow_scalar(pa, 0.0);
    ok(p && lm_backward(p, ones, false) == LM_OK && equals(pa->grad, 3, (double[]){0, 0, 0}),
       "pow_scalar with exponent 0: gradient 0, also at a == 0");
    lm_release(p);
    lm_release(ones);
    lm_release(pa);
    lm_release(pb);
}

/* ---- accumulation and dtypes ---------------------------------------------------------------- */

static lm_tensor *square_fn(lm_tensor **x, void *ctx)
{
    (void)ctx;
    return lm_mul(x[0], x[0]);
}

/* x used by three ops at once: x * x + sin(x) / x. */
static lm_tensor *reuse_fn(lm_tensor **x, void *ctx)
{
    (void)ctx;
    lm_tensor *sq = lm_mul(x[0], x[0]), *s = lm_sin(x[0]);
    lm_tensor *q = lm_div(s, x[0]);
    lm_tensor *r = lm_add(sq, q);
    lm_release(q);
    lm_release(s);
    lm_release(sq);
    return r;
}

static void test_accumulation(void)
{
    lm_tensor *x = uniform(S34, 0.5, 2);
    gradcheck("mul (x * x, one input twice)", square_fn, 1, &x, NULL);
    gradcheck("x * x + sin(x) / x (one input in three ops)", reuse_fn, 1, &x, NULL);
    lm_release(x);

    lm_tensor *v = leaf_vec(3, (double[]){1, 2, 3});
    lm_tensor *g = grad_of(lm_mul(v, v), v);
    ok(equals(g, 3, (double[]){2, 4, 6}), "x * x: both uses accumulate into 2x");
    lm_release(g);
    g = grad_of(lm_add(v, v), v);
    ok(equals(g, 3, (double[]){4, 6, 8}), "a second backward adds to the gradient (2x + 2)");
    lm_release(g);
    lm_release(v);

    /* f32 and f64 mixed: the result is f64, each gradient comes back in its input's dtype. */
    lm_tensor *a = lm_from_data((float[]){1, 2}, LM_F32, LM_SHAPE(2));
    lm_tensor *b = leaf_vec(2, (double[]){3, 4});
    lm_requires_grad_(a, true);
    lm_tensor *p = lm_mul(a, b);
    lm_tensor *seed = lm_ones(LM_SHAPE(2), LM_F64);
    ok(p && p->dtype == LM_F64 && lm_backward(p, seed, false) == LM_OK &&
           a->grad->dtype == LM_F32 && equals(a->grad, 2, (double[]){3, 4}) &&
           b->grad->dtype == LM_F64 && equals(b->grad, 2, (double[]){1, 2}),
       "mixed dtypes: gradients in each input's dtype");
    lm_release(seed);
    lm_release(p);
    lm_release(b);
    lm_release(a);

    /* Comparisons are not differentiable. */
    lm_tensor *c = uniform(S34, -1, 1);
    lm_tensor *gt = lm_gt(c, c), *ge = lm_ge_scalar(c, 0);
    ok(gt && ge && !gt->requires_grad && !gt->grad_fn && !ge->requires_grad,
       "a comparison's u8 result requires no grad");
    lm_release(ge);
    lm_release(gt);
    lm_release(c);
}

/* ---- fused activations against references ------------------------------------------------- */

/* Compositions of primitives, each differentiated by autograd through its parts. */
static lm_tensor *sigmoid_ref(const lm_tensor *x)
{
    lm_tensor *n = lm_neg(x), *e = lm_exp(n);
    lm_tensor *d = lm_add_scalar(e, 1.0);
    lm_tensor *r = lm_rdiv_scalar(d, 1.0);
    lm_release(d);
    lm_release(e);
    lm_release(n);
    return r;
}

/* (1 - e^-2x) / (1 + e^-2x), for x > -40 (the inputs used here). */
static lm_tensor *tanh_ref(const lm_tensor *x)
{
    lm_tensor *m = lm_mul_scalar(x, -2.0), *e = lm_exp(m);
    lm_tensor *num = lm_rsub_scalar(e, 1.0), *den = lm_add_scalar(e, 1.0);
    lm_tensor *r = lm_div(num, den);
    lm_release(den);
    lm_release(num);
    lm_release(e);
    lm_release(m);
    return r;
}

static lm_tensor *relu_ref(const lm_tensor *x)
{
    lm_tensor *pos = lm_gt_scalar(x, 0.0);
    lm_tensor *r = lm_mul(x, pos);
    lm_release(pos);
    return r;
}

static lm_tensor *leaky_ref(const lm_tensor *x)
{
    lm_tensor *pos = lm_gt_scalar(x, 0.0), *neg = lm_mul_scalar(x, 0.1);
    lm_tensor *r = lm_where(pos, x, neg);
    lm_release(neg);
    lm_release(pos);
    return r;
}

static lm_tensor *silu_ref(const lm_tensor *x)
{
    lm_tensor *s = sigmoid_ref(x);
    lm_tensor *r = lm_mul(x, s);
    lm_release(s);
    return r;
}

/* x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
static lm_tensor *gelu_tanh_ref(const lm_tensor *x)
{
    lm_tensor *x3 = lm_pow_scalar(x, 3.0), *c = lm_mul_scalar(x3, 0.044715);
    lm_tensor *in = lm_add(x, c), *k = lm_mul_scalar(in, 0.7978845608028654);
    lm_tensor *t = tanh_ref(k), *t1 = lm_add_scalar(t, 1.0);
    lm_tensor *h = lm_mul_scalar(x, 0.5);
    lm_tensor *r = lm_mul(h, t1);
    lm_release(h);
    lm_release(t1);
    lm_release(t);
    lm_release(k);
    lm_release(in);
    lm_release(c);
    lm_release(x3);
    return r;
}

/* Exact gelu has no composition (no erf primitive): its reference is a naive loop in f64 of
 * x Phi(x) and its derivative Phi(x) + x phi(x), returned as new f64 tensors. */
static void gelu_naive(const lm_tensor *x, lm_tensor **y, lm_tensor **dy)
{
    lm_tensor *xd = lm_to_dtype(x, LM_F64);
    lm_tensor *xc = lm_contiguous(xd);
    *y = lm_empty_like(xc);
    *dy = lm_empty_like(xc);
    const double *p = lm_data(xc);
    double *py = lm_data(*y), *pd = lm_data(*dy);
    for (int64_t i = 0; i < lm_numel(xc); i++) {
        double v = p[i], cdf = 0.5 * erfc(-v / sqrt(2.0));
        py[i] = v * cdf;
        pd[i] = cdf + v * exp(-0.5 * v * v) / sqrt(2 * M_PI);
    }
    lm_release(xc);
    lm_release(xd);
}

/* The composition's output and gradient at x for the incoming gradient seed (NULL: the
 * expanded seed of sum()), as new references; ref NULL means exact gelu's naive loop. */
static void reference(unary_f ref, lm_tensor *x, const lm_tensor *seed, lm_tensor **y,
                      lm_tensor **grad)
{
    *y = *grad = NULL;
    if (!ref) {
        lm_tensor *dy;
        gelu_naive(x, y, &dy);
        *grad = seed ? lm_mul(dy, seed) : lm_retain(dy);
        lm_release(dy);
        return;
    }
    lm_zero_grad(x);
    lm_tensor *yr = ref(x);
    lm_tensor *s = seed || !yr ? NULL : lm_sum(yr, 0, NULL, false);
    if (yr && lm_backward(seed ? yr : s, seed, false) == LM_OK) *grad = lm_retain(x->grad);
    lm_zero_grad(x);
    lm_release(s);
    *y = yr;
}

/* The fused op's output and gradient, as reference() gives them. */
static void fused_run(unary_f fused, lm_tensor *x, const lm_tensor *seed, lm_tensor **y,
                      lm_tensor **grad)
{
    reference(fused, x, seed, y, grad);
}

/* A fused op against its composition, forward and backward, with a random incoming gradient and
 * with the expanded one of sum() (the kernel's second fast path). 205 x 200 elements: more than
 * LM_PARALLEL_GRAIN. In f32 the composition rounds more often than the fused kernel (gelu_tanh's
 * differs by up to 3e-6), so the f32 kernel is also held to 3e-6 of the f64 composition. */
static void compare_fused(const char *name, unary_f fused, unary_f ref, lm_dtype dt)
{
    const char *dn = lm_dtype_name(dt);
    double tol = dt == LM_F64 ? 1e-12 : 1e-5;
    lm_tensor *x0 = lm_randn(LM_SHAPE(205, 200), dt);
    lm_tensor *x = lm_mul_scalar(x0, 3.0);
    lm_tensor *seed = lm_randn(LM_SHAPE(205, 200), dt);
    lm_requires_grad_(x, true);
    lm_tensor *yf, *gf, *yr, *gr;
    fused_run(fused, x, seed, &yf, &gf);
    reference(ref, x, seed, &yr, &gr);
    double fwd = max_rel_diff(yf, yr), bwd = max_rel_diff(gf, gr);
    ok(fwd < tol, "%s %s: forward matches the composition (diff %.2g)", name, dn, fwd);
    ok(bwd < tol, "%s %s: fused gradient matches the composition's (diff %.2g)", name, dn, bwd);
    lm_release(yf);
    lm_release(gf);
    lm_release(yr);
    lm_release(gr);

    fused_run(fused, x, NULL, &yf, &gf);
    reference(ref, x, NULL, &yr, &gr);
    bwd = max_rel_diff(gf, gr);
    ok(bwd < tol, "%s %s: with an expanded incoming gradient (diff %.2g)", name, dn, bwd);
    lm_release(yf);
    lm_release(gf);
    lm_release(yr);
    lm_release(gr);

    if (dt == LM_F32) {
        bool prev = lm_set_grad_enabled(false); /* x64 is a leaf of its own */
        lm_tensor *x64 = lm_to_dtype(x, LM_F64), *seed64 = lm_to_dtype(seed, LM_F64);
        lm_set_grad_enabled(prev);
        lm_requires_grad_(x64, true);
        fused_run(fused, x, seed, &yf, &gf);
        reference(ref, x64, seed64, &yr, &gr);
        fwd = max_rel_diff(yf, yr);
        bwd = max_rel_diff(gf, gr);
        ok(fwd < 3e-6 && bwd < 3e-6, "%s f32: within 3e-6 of the f64 composition (%.2g, %.2g)",
           name, fwd, bwd);
        lm_release(yf);
        lm_release(gf);
        lm_release(yr);
        lm_release(gr);
        lm_release(seed64);
        lm_release(x64);
    }
    lm_release(seed);
    lm_release(x);
    lm_release(x0);
}

static lm_tensor *leaky_fused(const lm_tensor *x) { return lm_leaky_relu(x, 0.1); }

static void test_fused(void)
{
    const lm_dtype dts[2] = {LM_F64, LM_F32};
    for (int i = 0; i < 2; i++) {
        compare_fused("relu", lm_relu, relu_ref, dts[i]);
        compare_fused("leaky_relu", leaky_fused, leaky_ref, dts[i]);
        compare_fused("sigmoid", lm_sigmoid, sigmoid_ref, dts[i]);
        compare_fused("tanh", lm_tanh, tanh_ref, dts[i]);
        compare_fused("silu", lm_silu, silu_ref, dts[i]);
        compare_fused("gelu_tanh", lm_gelu_tanh, gelu_tanh_ref, dts[i]);
        compare_fused("gelu", lm_gelu, NULL, dts[i]);
    }
}

/* ---- in-place ops under autograd ---------------------------------------------------------- */

/* y = x * 1.5 (a non-leaf), then a chain of in-place ops whose backward reads only outputs, a
 * constant or nothing: each continues y's history. */
static lm_tensor *inplace_chain(lm_tensor **x, void *ctx)
{
    (void)ctx;
    lm_tensor *y = lm_mul_scalar(x[0], 1.5);
    lm_tensor *c = lm_full(LM_SHAPE(3, 4), 0.8, LM_F64); /* mul_ then needs only c */
    lm_status st = lm_add_scalar_(y, 0.25);
    if (!st) st = lm_mul_(y, c);
    if (!st) st = lm_sub_(y, x[1]);
    if (!st) st = lm_sigmoid_(y);
    if (!st) st = lm_div_scalar_(y, 0.5);
    if (!st) st = lm_tanh_(y);
    if (!st) st = lm_exp_(y);
    if (!st) st = lm_sqrt_(y);
    if (!st) st = lm_relu_(y); /* positive here: passes the gradient */
    if (!st) st = lm_neg_(y);
    if (!st) st = lm_add_(y, x[0]);
    lm_release(c);
    if (st) {
        lm_release(y);
        return NULL;
    }
    return y;
}

/* A target outside the graph joins it through an input that requires grad. */
static lm_tensor *inplace_input_fn(lm_tensor **x, void *ctx)
{
    (void)ctx;
    lm_tensor *t = lm_ones(LM_SHAPE(3, 4), LM_F64);
    lm_status st = lm_add_(t, x[0]);
    if (!st) st = lm_mul_scalar_(t, 2.0);
    if (!st) st = lm_sub_(t, x[1]);
    if (!st) st = lm_div_scalar_(t, 4.0);
    if (st) {
        lm_release(t);
        return NULL;
    }
    return t;
}

static void test_inplace(void)
{
    /* A leaf that requires grad: refused while recording, allowed under no_grad. */
    lm_tensor *w = uniform(S34, -1, 1);
    lm_tensor *one = lm_ones(S34, LM_F64);
    ok(lm_add_scalar_(w, 1.0) == LM_ERR_STATE, "add_scalar_ on a leaf requiring grad is refused");
    has_str(lm_last_error(),
            "add_scalar_: a leaf tensor that requires grad is used in an in-place operation",
            "message names the op and PyTorch's rule");
    has_str(lm_last_error(), "[3,4]", "and the shape");
    ok(lm_mul_(w, one) == LM_ERR_STATE && lm_relu_(w) == LM_ERR_STATE &&
           lm_clamp_(w, 0, 1) == LM_ERR_STATE,
       "mul_, relu_ and clamp_ refuse it too");
    has_str(lm_last_error(), "clamp_: a leaf tensor", "message names clamp_");
    double before;
    lm_get(w, (int64_t[]){0, 0}, &before);
    bool prev = lm_set_grad_enabled(false);
    ok(lm_sub_scalar_(w, 0.5) == LM_OK,
       "under no_grad the leaf is updated in place (an optimizer step)");
    lm_set_grad_enabled(prev);
    double after;
    lm_get(w, (int64_t[]){0, 0}, &after);
    ok(after == before - 0.5 && lm_is_leaf(w) && w->requires_grad,
       "it stays a leaf requiring grad");

    /* Target and inputs outside any graph: a plain in-place op. */
    lm_tensor *t = lm_zeros(S34, LM_F64);
    ok(lm_add_(t, one) == LM_OK && !t->requires_grad && !t->grad_fn,
       "nothing requires grad: nothing recorded");

    /* An input that requires grad: the target joins the graph. */
    ok(lm_add_(t, w) == LM_OK && t->requires_grad && t->grad_fn &&
           strcmp(t->grad_fn->op->name, "add") == 0,
       "add_ with an input requiring grad records add on the target");
    lm_tensor *s = lm_sum(t, 0, NULL, false);
    ok(s && lm_backward(s, NULL, false) == LM_OK && max_rel_diff(w->grad, one) == 0,
       "the gradient reaches the input");
    lm_release(s);
    lm_release(t);

    /* Non-leaf targets: the history continues through in-place ops. */
    lm_tensor *in[2] = {uniform(S34, 0.5, 1.5), uniform(S34, 0.5, 1)};
    gradcheck("in-place chain on a non-leaf (add_scalar_ mul_ sub_ sigmoid_ div_scalar_ tanh_ exp_ "
              "sqrt_ relu_ neg_ add_)",
              inplace_chain, 2, in, NULL);
    gradcheck("in-place ops on a target that needs no grad (add_ mul_scalar_ sub_ div_scalar_)",
              inplace_input_fn, 2, in, NULL);
    lm_release(in[0]);
    lm_release(in[1]);

    lm_tensor *x = uniform(S34, 0.5, 1.5);
    lm_tensor *y = lm_mul_scalar(x, 2.0);
    lm_node *old = y->grad_fn;
    ok(lm_retain_grad(y) == LM_OK && lm_exp_(y) == LM_OK && y->grad_fn != old &&
           strcmp(y->grad_fn->op->name, "exp") == 0 && !lm_is_leaf(y),
       "exp_ moves the node onto the target");
    lm_tensor *z = lm_mul_scalar(y, 3.0);
    lm_tensor *sz = lm_sum(z, 0, NULL, false);
    lm_tensor *three = lm_full(S34, 3.0, LM_F64);
    ok(sz && lm_backward(sz, NULL, false) == LM_OK && y->grad && max_rel_diff(y->grad, three) == 0,
       "retain_grad follows the target to its new values");
    lm_release(three);
    lm_release(sz);
    lm_release(z);
    lm_release(y);

    /* An in-place op that overwrites a value its own backward needs: the version error. */
    lm_tensor *v = lm_mul_scalar(x, 1.0);
    lm_tensor *q = uniform(S34, 0.5, 1.5);
    ok(lm_mul_(v, q) == LM_OK, "mul_ of a non-leaf by an input requiring grad");
    lm_tensor *sv = lm_sum(v, 0, NULL, false);
    ok(lm_backward(sv, NULL, false) == LM_ERR_STATE,
       "backward needs the overwritten factor: fails");
    has_str(lm_last_error(), "modified by an in-place operation", "version error message");
    has_str(lm_last_error(), "mul", "naming the op");
    lm_release(sv);
    lm_release(v);
    lm_release(q);

    /* Ops whose backward reads their input: log_, clamp_, pow_scalar_. */
    for (int i = 0; i < 3; i++) {
        static const char *const names[] = {"log_", "clamp_", "pow_scalar_"};
        static const char *const nodes[] = {"log", "clamp", "pow_scalar"};
        lm_tensor *u = lm_mul_scalar(x, 1.0);
        lm_status st = i == 0   ? lm_log_(u)
                       : i == 1 ? lm_clamp_(u, 0.7, 1.2)
                                : lm_pow_scalar_(u, 3.0);
        ok(st == LM_OK && strcmp(u->grad_fn->op->name, nodes[i]) == 0,
           "%s on a non-leaf records %s", names[i], nodes[i]);
        lm_tensor *su = lm_sum(u, 0, NULL, false);
        ok(lm_backward(su, NULL, false) == LM_ERR_STATE,
           "%s: its backward reads the overwritten input", names[i]);
        has_str(lm_last_error(), "modified by an in-place operation", "version error message");
        lm_release(su);
        lm_release(u);
    }

    /* An in-place op on a tensor that an earlier op saved. */
    lm_tensor *c = lm_mul_scalar(x, 1.0);
    lm_tensor *cc = lm_mul(c, c);
    ok(lm_add_scalar_(c, 1.0) == LM_OK, "add_scalar_ on a tensor saved by mul");
    lm_tensor *sc = lm_sum(cc, 0, NULL, false);
    ok(lm_backward(sc, NULL, false) == LM_ERR_STATE, "the earlier mul's backward fails");
    has_str(lm_last_error(), "gradient of mul", "the message names mul");
    lm_release(sc);
    lm_release(cc);
    lm_release(c);

    /* Errors of the in-place forms still come first under autograd. */
    lm_tensor *n = lm_mul_scalar(x, 1.0);
    lm_tensor *wide = uniform(LM_SHAPE(2, 3, 4), -1, 1);
    ok(lm_add_(n, wide) == LM_ERR_SHAPE, "add_ into a smaller non-leaf fails");
    has_str(lm_last_error(),
            "add_: shapes [3,4] and [2,3,4] broadcast to [2,3,4], which does not match the "
            "written-to tensor's shape [3,4]",
            "message names the shapes");
    ok(n->grad_fn && strcmp(n->grad_fn->op->name, "mul_scalar") == 0,
       "and the target's history is unchanged");
    lm_tensor *ints = lm_zeros(S34, LM_I64);
    ok(lm_add_(ints, x) == LM_ERR_DTYPE, "a float result into an integer target fails");
    has_str(lm_last_error(), "add_: result type f64 can't be cast to the desired output type i64",
            "message");
    ok(!ints->requires_grad, "and the target did not join the graph");
    lm_release(ints);
    lm_release(wide);
    lm_release(n);
    lm_release(x);
    lm_release(one);
    lm_release(w);
}

/* ---- allocation failures ------------------------------------------------------------------ */

/* Forward and backward of a small graph through every kind of recording (binary with
 * broadcast, number, fused and composite unary, where, a tracked in-place op). Returns the
 * status; on success *gx and *gw are the gradients. */
static lm_status small_graph(lm_tensor *x, lm_tensor *w, const lm_tensor *cond,
                             const lm_tensor *seed, lm_tensor **gx, lm_tensor **gw)
{
    lm_zero_grad(x);
    lm_zero_grad(w);
    lm_tensor *xw = lm_mul(x, w);
    lm_tensor *g = lm_gelu(xw);
    lm_tensor *e = lm_exp(x);
    lm_tensor *z = lm_where(cond, g, e);
    lm_tensor *t = lm_mul_scalar(x, 2.0);
    lm_status st = t ? lm_add_(t, w) : lm_last_status();
    if (!st) st = lm_sigmoid_(t);
    lm_tensor *r = st ? NULL : lm_div(z, t);
    if (!st) st = r ? lm_backward(r, seed, false) : lm_last_status();
    if (!st) {
        *gx = lm_retain(x->grad);
        *gw = lm_retain(w->grad);
    }
    lm_release(r);
    lm_release(t);
    lm_release(z);
    lm_release(e);
    lm_release(g);
    lm_release(xw);
    return st;
}

/* The graph above with the n-th allocation failing, for every n in turn: each failure must be a
 * clean LM_ERR_MEMORY (valgrind checks that nothing leaks), and the first run that completes
 * gives the gradients of an undisturbed run. */
static void test_alloc_failures(void)
{
    lm_tensor *x = uniform(S34, -1, 1), *w = uniform(LM_SHAPE(4), 0.5, 1.5);
    lm_tensor *cond = lm_randint(0, 2, S34, LM_U8), *seed = lm_rand(S34, LM_F64);
    lm_tensor *gx0 = NULL, *gw0 = NULL, *gx = NULL, *gw = NULL;
    ok(small_graph(x, w, cond, seed, &gx0, &gw0) == LM_OK, "the fault-injection graph runs");
    int points = 0, unclean = 0;
    for (int n = 1; n < 1000; n++) {
        lm_debug_fail_alloc_after(n);
        lm_status st = small_graph(x, w, cond, seed, &gx, &gw);
        lm_debug_fail_alloc_after(0);
        if (st == LM_OK) break;
        points++;
        if (st != LM_ERR_MEMORY || !strstr(lm_last_error(), "out of memory")) {
            unclean++;
            diag("allocation %d: status %s, message '%s'", n, lm_status_name(st), lm_last_error());
        }
    }
    ok(points > 50 && unclean == 0,
       "an allocation failing at each of %d points gives a clean error", points);
    ok(max_rel_diff(gx, gx0) == 0 && max_rel_diff(gw, gw0) == 0,
       "and the run past the last point gives the undisturbed gradients");
    lm_release(gx);
    lm_release(gw);
    lm_release(gx0);
    lm_release(gw0);
    lm_release(seed);
    lm_release(cond);
    lm_release(w);
    lm_release(x);
}

int main(void)
{
    plan_auto();
    lm_manual_seed(7);
    test_unary_gradchecks();
    test_binary_gradchecks();
    test_scalar_gradchecks();
    test_where();
    test_kinks();
    test_accumulation();
    test_fused();
    test_inplace();
    test_alloc_failures();
    return done();
}
