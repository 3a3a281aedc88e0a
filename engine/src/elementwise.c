/* elementwise.c — the element-wise ops: binary ops with broadcasting and type promotion, their
 * variants with a number, unary functions, where, and the in-place forms.
 *
 * Every public function goes through one of four paths — binary_op, scalar_op (which wraps the
 * number in a 0-dim tensor and calls binary_op), unary_op and where_op — that check the
 * arguments, work out the result's shape and dtype, convert the inputs to the compute dtype,
 * expand them to the result's shape and call the backend's kernels. Autograd recording belongs
 * in those paths (a number is then a constant operand of a binary op). An in-place form passes its target as `dst`: the result is written there
 * (through a temporary when the compute dtype differs from the target's). */
#include "elementwise.h"

#include <math.h>

static bool is_comparison(lm_binary_op op) { return op >= LM_BINARY_EQ; }

/* Unary ops with integer kernels; the others compute integer inputs in f32. */
static const bool unary_keeps_integers[] = {
    [LM_UNARY_NEG] = true,      [LM_UNARY_ABS] = true,        [LM_UNARY_EXP] = false,
    [LM_UNARY_LOG] = false,     [LM_UNARY_LOG1P] = false,     [LM_UNARY_SQRT] = false,
    [LM_UNARY_RSQRT] = false,   [LM_UNARY_SIN] = false,       [LM_UNARY_COS] = false,
    [LM_UNARY_TANH] = false,    [LM_UNARY_SIGMOID] = false,   [LM_UNARY_RELU] = true,
    [LM_UNARY_GELU] = false,    [LM_UNARY_GELU_TANH] = false, [LM_UNARY_SILU] = false,
    [LM_UNARY_LEAKY_RELU] = false, [LM_UNARY_CLAMP] = true,
};
_Static_assert(sizeof unary_keeps_integers / sizeof unary_keeps_integers[0] == LM_UNARY_COUNT,
               "unary_keeps_integers needs an entry per unary op");

/* ---- shared steps ------------------------------------------------------------------------ */

static bool same_device(const char *op, int n, const lm_tensor *const *t)
{
    static const char *const names[] = {[LM_CPU] = "cpu", [LM_CUDA] = "cuda"};
    _Static_assert(sizeof names / sizeof names[0] == LM_DEVICE_COUNT, "a device has no name");
    for (int i = 1; i < n; i++) {
        if (t[i]->storage->device != t[0]->storage->device) {
            lm__error(LM_ERR_ARG, "%s: expected all tensors on one device, got %s and %s", op,
                      names[t[0]->storage->device], names[t[i]->storage->device]);
            return false;
        }
    }
    return true;
}

static bool same_shape(int na, const int64_t *sa, int nb, const int64_t *sb)
{
    if (na != nb) return false;
    for (int i = 0; i < na; i++)
        if (sa[i] != sb[i]) return false;
    return true;
}

/* t converted to dtype dt (no copy when it has it) and viewed with the result's shape. */
static lm_tensor *prepare_input(const lm_tensor *t, lm_dtype dt, int ndim, const int64_t *shape)
{
    lm_tensor *c = lm_to_dtype(t, dt);
    if (!c || same_shape(c->ndim, c->shape, ndim, shape)) return c;
    lm_tensor *e = lm__expand_to(c, ndim, shape);
    lm_release(c);
    return e;
}

/* Can dst receive a result of dtype rt, computed from inputs, in place? PyTorch's casting rule:
 * a float result does not go into an integer tensor; any other conversion is allowed. */
static bool check_destination(const char *op, const lm_tensor *dst, lm_dtype rt, int ninputs,
                              const lm_tensor *const *inputs)
{
    if (lm_dtype_is_float(rt) && !lm_dtype_is_float(dst->dtype)) {
        lm__error(LM_ERR_DTYPE,
                  "%s: result type %s can't be cast to the desired output type %s (tensor of "
                  "shape %s)",
                  op, lm_dtype_name(rt), lm_dtype_name(dst->dtype), lm__shp(dst).s);
        return false;
    }
    return lm__check_inplace(op, dst, ninputs, inputs) == LM_OK;
}

/* The tensor a kernel writes: dst itself when it has the result dtype, else a new tensor (for
 * in-place ops, a temporary that finish() copies into dst). */
static lm_tensor *output_for(const char *op, lm_tensor *dst, int ndim, const int64_t *shape,
                             lm_dtype rt, lm_device dev)
{
    if (dst && dst->dtype == rt) return lm_retain(dst);
    return lm__new(op, ndim, shape, rt, dev);
}

/* Completes a kernel's write: for an in-place op, moves a temporary's values into dst and marks
 * dst written. Returns the op's result (a new reference). */
static lm_tensor *finish(const lm_backend *be, lm_tensor *dst, lm_tensor *out)
{
    if (!dst) return out;
    if (out != dst) {
        be->copy->copy(dst, out);
        lm_release(out);
        out = lm_retain(dst);
    }
    lm__bump_version(dst);
    return out;
}

static lm_status status_of(lm_tensor *result)
{
    if (!result) return lm_last_status();
    lm_release(result);
    return LM_OK;
}

/* ---- binary ------------------------------------------------------------------------------ */

static lm_tensor *binary_op(const char *name, lm_binary_op op, const lm_tensor *a,
                            const lm_tensor *b, lm_tensor *dst)
{
    if (!lm__arg(a, name) || !lm__arg(b, name)) return NULL;
    const lm_tensor *args[2] = {a, b};
    if (!same_device(name, 2, args)) return NULL;
    int ndim;
    int64_t shape[LM_MAX_DIMS];
    if (lm__broadcast_shapes(name, a->ndim, a->shape, b->ndim, b->shape, &ndim, shape))
        return NULL;
    lm_dtype ct = lm_promote_types(a->dtype, b->dtype);
    if (op == LM_BINARY_DIV && !lm_dtype_is_float(ct)) ct = LM_F32;
    lm_dtype rt = is_comparison(op) ? LM_U8 : ct;
    if (dst) {
        if (!same_shape(dst->ndim, dst->shape, ndim, shape))
            LM_FAIL(LM_ERR_SHAPE,
                    "%s: shapes %s and %s broadcast to %s, which does not match the written-to "
                    "tensor's shape %s",
                    name, lm__shp(a).s, lm__shp(b).s, lm__shp_raw(ndim, shape).s,
                    lm__shp(dst).s);
        if (!check_destination(name, dst, rt, 1, &b)) return NULL;
    }
    const lm_backend *be = lm__backend(a->storage->device, name);
    if (!be) return NULL;
    lm_tensor *out = NULL;
    lm_tensor *ea = prepare_input(a, ct, ndim, shape);
    lm_tensor *eb = ea ? prepare_input(b, ct, ndim, shape) : NULL;
    if (eb) out = output_for(name, dst, ndim, shape, rt, a->storage->device);
    if (out) {
        be->elementwise->binary(op, out, ea, eb);
        out = finish(be, dst, out);
    }
    lm_release(ea);
    lm_release(eb);
    return out;
}

/* The dtype a number s joins an integer or float tensor in: PyTorch's rule for Python numbers,
 * where an integral s counts as an int. Comparisons of an integer tensor with a number its dtype
 * cannot hold exactly (2.5, 300 for u8) compare in f64 so the answer stays exact. */
static bool scalar_dtype(const char *name, lm_binary_op op, const lm_tensor *a, double s,
                         lm_dtype *dt)
{
    if (lm_dtype_is_float(a->dtype)) {
        *dt = a->dtype;
        return true;
    }
    bool integral = isfinite(s) && s == trunc(s);
    bool fits_i64 = integral && s >= -0x1p63 && s < 0x1p63;
    if (is_comparison(op)) {
        bool exact = fits_i64 && (a->dtype != LM_U8 || (s >= 0 && s <= 255));
        *dt = exact ? a->dtype : LM_F64;
        return true;
    }
    if (!integral) {
        *dt = LM_F32;
        return true;
    }
    if (!fits_i64) {
        lm__error(LM_ERR_ARG, "%s: the number %g does not fit an %s tensor (shape %s)", name, s,
                  lm_dtype_name(a->dtype), lm__shp(a).s);
        return false;
    }
    *dt = a->dtype;
    return true;
}

/* a op s, or s op a when reversed (reversed ops have no in-place form: dst is then NULL). */
static lm_tensor *scalar_op(const char *name, lm_binary_op op, const lm_tensor *a, double s,
                            bool reversed, lm_tensor *dst)
{
    if (!lm__arg(a, name)) return NULL;
    lm_dtype dt;
    if (!scalar_dtype(name, op, a, s, &dt)) return NULL;
    if (op == LM_BINARY_POW && !reversed && !lm_dtype_is_float(dt) && s < 0)
        LM_FAIL(LM_ERR_ARG,
                "%s: integers to negative integer powers are not allowed (%s tensor of shape %s, "
                "exponent %g)",
                name, lm_dtype_name(a->dtype), lm__shp(a).s, s);
    const lm_backend *be = lm__backend(a->storage->device, name);
    if (!be) return NULL;
    lm_tensor *number = lm__new(name, 0, NULL, dt, a->storage->device);
    if (!number) return NULL;
    be->copy->fill(number, s);
    lm_tensor *r = reversed ? binary_op(name, op, number, a, NULL)
                            : binary_op(name, op, a, number, dst);
    lm_release(number);
    return r;
}

#define BINARY_FN(fn, OP)                                                                        \
    lm_tensor *lm_##fn(const lm_tensor *a, const lm_tensor *b)                                   \
    {                                                                                            \
        return binary_op(#fn, LM_BINARY_##OP, a, b, NULL);                                       \
    }                                                                                            \
    lm_tensor *lm_##fn##_scalar(const lm_tensor *a, double s)                                    \
    {                                                                                            \
        return scalar_op(#fn "_scalar", LM_BINARY_##OP, a, s, false, NULL);                      \
    }
BINARY_FN(add, ADD)
BINARY_FN(sub, SUB)
BINARY_FN(mul, MUL)
BINARY_FN(div, DIV)
BINARY_FN(pow, POW)
BINARY_FN(maximum, MAXIMUM)
BINARY_FN(minimum, MINIMUM)
BINARY_FN(eq, EQ)
BINARY_FN(ne, NE)
BINARY_FN(lt, LT)
BINARY_FN(le, LE)
BINARY_FN(gt, GT)
BINARY_FN(ge, GE)

lm_tensor *lm_rsub_scalar(const lm_tensor *a, double s)
{
    return scalar_op("rsub_scalar", LM_BINARY_SUB, a, s, true, NULL);
}
lm_tensor *lm_rdiv_scalar(const lm_tensor *a, double s)
{
    return scalar_op("rdiv_scalar", LM_BINARY_DIV, a, s, true, NULL);
}
lm_tensor *lm_rpow_scalar(const lm_tensor *a, double s)
{
    return scalar_op("rpow_scalar", LM_BINARY_POW, a, s, true, NULL);
}

#define BINARY_INPLACE_FN(fn, OP)                                                                \
    lm_status lm_##fn##_(lm_tensor *a, const lm_tensor *b)                                       \
    {                                                                                            \
        return status_of(binary_op(#fn "_", LM_BINARY_##OP, a, b, a));                           \
    }                                                                                            \
    lm_status lm_##fn##_scalar_(lm_tensor *a, double s)                                          \
    {                                                                                            \
        return status_of(scalar_op(#fn "_scalar_", LM_BINARY_##OP, a, s, false, a));             \
    }
BINARY_INPLACE_FN(add, ADD)
BINARY_INPLACE_FN(sub, SUB)
BINARY_INPLACE_FN(mul, MUL)
BINARY_INPLACE_FN(div, DIV)
BINARY_INPLACE_FN(pow, POW)

/* ---- unary ------------------------------------------------------------------------------- */

static bool integral_or_infinite(double v) { return isinf(v) || (isfinite(v) && v == trunc(v)); }

/* p0, p1: leaky_relu's slope, clamp's bounds (see lm_unary_op); 0 for the other ops. */
static lm_tensor *unary_op(const char *name, lm_unary_op op, const lm_tensor *a, double p0,
                           double p1, lm_tensor *dst)
{
    if (!lm__arg(a, name)) return NULL;
    lm_dtype ct = a->dtype;
    if (!lm_dtype_is_float(ct) && !unary_keeps_integers[op]) ct = LM_F32;
    /* A bound with a fraction makes clamp of an integer tensor a float op, as with numbers. */
    if (op == LM_UNARY_CLAMP && !lm_dtype_is_float(ct) &&
        !(integral_or_infinite(p0) && integral_or_infinite(p1)))
        ct = LM_F32;
    if (dst && !check_destination(name, dst, ct, 0, NULL)) return NULL;
    const lm_backend *be = lm__backend(a->storage->device, name);
    if (!be) return NULL;
    lm_tensor *in = lm_to_dtype(a, ct);
    if (!in) return NULL;
    lm_tensor *out = output_for(name, dst, a->ndim, a->shape, ct, a->storage->device);
    if (out) {
        const double params[2] = {p0, p1};
        be->elementwise->unary(op, out, in, params);
        out = finish(be, dst, out);
    }
    lm_release(in);
    return out;
}

#define UNARY_FN(fn, OP)                                                                         \
    lm_tensor *lm_##fn(const lm_tensor *a) { return unary_op(#fn, LM_UNARY_##OP, a, 0, 0, NULL); }
UNARY_FN(neg, NEG)
UNARY_FN(abs, ABS)
UNARY_FN(exp, EXP)
UNARY_FN(log, LOG)
UNARY_FN(log1p, LOG1P)
UNARY_FN(sqrt, SQRT)
UNARY_FN(rsqrt, RSQRT)
UNARY_FN(sin, SIN)
UNARY_FN(cos, COS)
UNARY_FN(tanh, TANH)
UNARY_FN(sigmoid, SIGMOID)
UNARY_FN(relu, RELU)
UNARY_FN(gelu, GELU)
UNARY_FN(gelu_tanh, GELU_TANH)
UNARY_FN(silu, SILU)

lm_tensor *lm_leaky_relu(const lm_tensor *a, double negative_slope)
{
    return unary_op("leaky_relu", LM_UNARY_LEAKY_RELU, a, negative_slope, 0, NULL);
}

lm_tensor *lm_clamp(const lm_tensor *a, double min, double max)
{
    return unary_op("clamp", LM_UNARY_CLAMP, a, min, max, NULL);
}

lm_status lm_clamp_(lm_tensor *a, double min, double max)
{
    return status_of(unary_op("clamp_", LM_UNARY_CLAMP, a, min, max, a));
}

#define UNARY_INPLACE_FN(fn, OP)                                                                 \
    lm_status lm_##fn##_(lm_tensor *a)                                                           \
    {                                                                                            \
        return status_of(unary_op(#fn "_", LM_UNARY_##OP, a, 0, 0, a));                          \
    }
UNARY_INPLACE_FN(neg, NEG)
UNARY_INPLACE_FN(exp, EXP)
UNARY_INPLACE_FN(log, LOG)
UNARY_INPLACE_FN(sqrt, SQRT)
UNARY_INPLACE_FN(relu, RELU)
UNARY_INPLACE_FN(sigmoid, SIGMOID)
UNARY_INPLACE_FN(tanh, TANH)

/* ---- where ------------------------------------------------------------------------------- */

static lm_tensor *where_op(const char *name, const lm_tensor *cond, const lm_tensor *a,
                           const lm_tensor *b)
{
    if (!lm__arg(cond, name) || !lm__arg(a, name) || !lm__arg(b, name)) return NULL;
    const lm_tensor *args[3] = {cond, a, b};
    if (!same_device(name, 3, args)) return NULL;
    int n1, ndim;
    int64_t s1[LM_MAX_DIMS], shape[LM_MAX_DIMS];
    if (lm__broadcast_shapes(name, cond->ndim, cond->shape, a->ndim, a->shape, &n1, s1) ||
        lm__broadcast_shapes(name, n1, s1, b->ndim, b->shape, &ndim, shape))
        LM_FAIL(LM_ERR_SHAPE, "%s: shapes %s (condition), %s and %s cannot be broadcast", name,
                lm__shp(cond).s, lm__shp(a).s, lm__shp(b).s);
    lm_dtype ct = lm_promote_types(a->dtype, b->dtype);
    const lm_backend *be = lm__backend(a->storage->device, name);
    if (!be) return NULL;
    lm_tensor *out = NULL;
    lm_tensor *ec = prepare_input(cond, cond->dtype, ndim, shape);
    lm_tensor *ea = ec ? prepare_input(a, ct, ndim, shape) : NULL;
    lm_tensor *eb = ea ? prepare_input(b, ct, ndim, shape) : NULL;
    if (eb) out = lm__new(name, ndim, shape, ct, a->storage->device);
    if (out) be->elementwise->where(out, ec, ea, eb);
    lm_release(ec);
    lm_release(ea);
    lm_release(eb);
    return out;
}

lm_tensor *lm_where(const lm_tensor *cond, const lm_tensor *a, const lm_tensor *b)
{
    return where_op("where", cond, a, b);
}
