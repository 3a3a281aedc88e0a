/* elementwise.c — the element-wise ops: binary ops with broadcasting and type promotion, their
 * variants with a number, unary functions, where, and the in-place forms, each with its backward.
 *
 * Every public function goes through one of four paths — binary_op, scalar_op, unary_op and
 * where_op — that check the arguments, work out the result's shape and dtype, convert the inputs
 * to the compute dtype, expand them to the result's shape and call the backend's kernels
 * (binary_op and scalar_op share binary_compute; scalar_op wraps its number in a 0-dim tensor).
 * After computing, each path records the op for autograd when an input requires grad: a number
 * is a constant of the node (node->dp[0]), never an input. An in-place form passes its target as
 * `dst`: the result is written there (through a temporary when the compute dtype differs from the
 * target's); under autograd it follows PyTorch's rules (see inplace_mode_of).
 *
 * Backward functions sit next to their descriptors and compute with engine ops; the activations
 * that dominate training (relu, leaky_relu, gelu, gelu_tanh, silu, sigmoid, tanh) use the
 * backend's fused unary_backward kernel instead. Comparisons are not differentiable. */
#include "autograd.h"
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

/* ---- autograd plumbing -------------------------------------------------------------------- */

/* How an in-place op proceeds, by PyTorch's rules: plainly when nothing is recorded; refused on a
 * leaf that requires grad (its .grad would describe values that no longer exist); tracked when
 * the target or an input takes part in a graph (see adopt_history). */
typedef enum { INPLACE_PLAIN, INPLACE_TRACKED, INPLACE_REFUSED } inplace_mode;

/* inputs include dst itself. */
static inplace_mode inplace_mode_of(const char *name, const lm_tensor *dst, int n,
                                    const lm_tensor *const *inputs)
{
    if (!lm_grad_enabled()) return INPLACE_PLAIN;
    if (lm__check_inplace_grad(name, dst)) return INPLACE_REFUSED;
    return lm__needs_grad(n, inputs) ? INPLACE_TRACKED : INPLACE_PLAIN;
}

/* The tracked in-place form: result (computed out of place, with its node) is copied into dst,
 * and dst takes over result's node so that its history continues from the op. The copy bumps
 * dst's version: a backward that needs dst's old values (saved by this op or an earlier one) then
 * fails with the version error, as in PyTorch. The copy is finish()'s, the backend's kernel
 * (lm_copy_ would check again what the op checked, and refuse a target that requires grad).
 * Takes result. */
static lm_tensor *adopt_history(const char *name, lm_tensor *dst, lm_tensor *result)
{
    if (!result) return NULL;
    const lm_backend *be = lm__backend(dst->storage->device, name);
    if (!be) {
        lm_release(result);
        return NULL;
    }
    lm_retain(result); /* finish() takes one reference; the node moves after the copy */
    lm_tensor *out = finish(be, dst, result); /* dst, a new reference */
    if (out) lm__take_history(dst, result);
    lm_release(result);
    return out;
}

/* Saves t for backward when needed and notes its slot in node->ip[k] (-1: not saved), so a
 * tensor that a backward will not read is not saved, and modifying it in place later is no
 * error. */
static lm_status save_if(lm_node *n, int k, bool needed, const lm_tensor *t)
{
    n->ip[k] = -1;
    if (!needed) return LM_OK;
    n->ip[k] = n->n_saved;
    return lm__save(n, t);
}

static const lm_tensor *saved_at(lm_node *n, int k)
{
    if (n->ip[k] < 0) {
        lm__error(LM_ERR_STATE, "backward: %s did not save the tensor its backward needs",
                  n->op->name);
        return NULL;
    }
    return lm__saved(n, (int)n->ip[k]);
}

/* g brought to input i's shape: g itself when the shapes match, else summed over the broadcast
 * dims here rather than by the engine, so that g's buffer can go to the other input uncopied. */
static lm_tensor *to_input_shape(const lm_node *n, int i, const lm_tensor *g)
{
    const lm_node_input *in = &n->inputs[i];
    if (same_shape(g->ndim, g->shape, in->ndim, in->shape)) return lm_retain((lm_tensor *)g);
    return lm__sum_to(g, in->ndim, in->shape);
}

/* Ends a backward: OK when every gradient it was to fill exists. The engine releases what was
 * filled when a backward fails. */
static lm_status filled(const lm_node *n, lm_tensor **gi)
{
    for (int i = 0; i < n->n_inputs; i++)
        if (lm__input_needs_grad(n, i) && !gi[i]) return lm_last_status();
    return LM_OK;
}

/* t with the elements where mask != 0 set to 0, in place (t is a backward's own new tensor).
 * Takes mask; returns t, or NULL (releasing t) on error. */
static lm_tensor *zero_where(lm_tensor *t, lm_tensor *mask)
{
    lm_status st = t && mask ? lm_masked_fill_(t, mask, 0.0) : lm_last_status();
    lm_release(mask);
    if (st) {
        lm_release(t);
        return NULL;
    }
    return t;
}

/* ---- binary: backward --------------------------------------------------------------------- */

/* Node layout of the binary ops: inputs a, b; ip[0], ip[1], ip[2]: the saved slots of a, b and
 * the output (-1 when not saved). */

static lm_status add_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    for (int i = 0; i < 2; i++)
        if (lm__input_needs_grad(n, i)) gi[i] = to_input_shape(n, i, g);
    return filled(n, gi);
}

static lm_status sub_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    if (lm__input_needs_grad(n, 0)) gi[0] = to_input_shape(n, 0, g);
    if (lm__input_needs_grad(n, 1)) {
        lm_tensor *s = to_input_shape(n, 1, g);
        gi[1] = s ? lm_neg(s) : NULL;
        lm_release(s);
    }
    return filled(n, gi);
}

/* d(a b) = b da + a db. */
static lm_status mul_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    if (lm__input_needs_grad(n, 0)) {
        const lm_tensor *b = saved_at(n, 1);
        gi[0] = b ? lm_mul(g, b) : NULL;
    }
    if (lm__input_needs_grad(n, 1)) {
        const lm_tensor *a = saved_at(n, 0);
        gi[1] = a ? lm_mul(g, a) : NULL;
    }
    return filled(n, gi);
}

/* d(a / b) = da / b - a db / b^2, computed as (g / b) and -(g / b) a / b. */
static lm_status div_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *b = saved_at(n, 1);
    lm_tensor *q = b ? lm_div(g, b) : NULL;
    if (!q) return lm_last_status();
    if (lm__input_needs_grad(n, 1)) {
        const lm_tensor *a = saved_at(n, 0);
        lm_tensor *t = a ? lm_mul(q, a) : NULL;
        if (t && (lm_div_(t, b) || lm_neg_(t))) {
            lm_release(t);
            t = NULL;
        }
        gi[1] = t;
    }
    if (lm__input_needs_grad(n, 0))
        gi[0] = q;
    else
        lm_release(q);
    return filled(n, gi);
}

/* d(a^b) = b a^(b-1) da + a^b ln(a) db. As PyTorch: the first term is 0 where b == 0 (not
 * 0 * a^-1, NaN at a == 0), the second 0 where a == 0 and b >= 0 (not 0 * -inf). */
static lm_status pow_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *a = saved_at(n, 0), *b = a ? saved_at(n, 1) : NULL;
    if (!b) return lm_last_status();
    if (lm__input_needs_grad(n, 0)) {
        lm_tensor *bm1 = lm_sub_scalar(b, 1.0);
        lm_tensor *p = bm1 ? lm_pow(a, bm1) : NULL;
        lm_tensor *t = p ? lm_mul(p, b) : NULL;
        if (t && lm_mul_(t, g)) {
            lm_release(t);
            t = NULL;
        }
        gi[0] = zero_where(t, t ? lm_eq_scalar(b, 0.0) : NULL);
        lm_release(p);
        lm_release(bm1);
    }
    if (lm__input_needs_grad(n, 1)) {
        const lm_tensor *out = saved_at(n, 2);
        lm_tensor *la = out ? lm_log(a) : NULL;
        lm_tensor *t = la ? lm_mul(out, la) : NULL;
        if (t && lm_mul_(t, g)) {
            lm_release(t);
            t = NULL;
        }
        lm_tensor *a0 = t ? lm_eq_scalar(a, 0.0) : NULL;
        lm_tensor *bpos = a0 ? lm_ge_scalar(b, 0.0) : NULL;
        gi[1] = zero_where(t, bpos ? lm_mul(a0, bpos) : NULL);
        lm_release(bpos);
        lm_release(a0);
        lm_release(la);
    }
    return filled(n, gi);
}

/* maximum/minimum send the gradient to the input that was chosen, half to each on a tie, as
 * PyTorch: g where the input wins, g/2 on ties, 0 where it loses. lose_a and lose_b are the
 * comparisons under which a and b lose. */
static lm_status choose_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi,
                                 lm_tensor *(*lose_a)(const lm_tensor *, const lm_tensor *),
                                 lm_tensor *(*lose_b)(const lm_tensor *, const lm_tensor *))
{
    const lm_tensor *a = saved_at(n, 0), *b = a ? saved_at(n, 1) : NULL;
    lm_tensor *tie = b ? lm_eq(a, b) : NULL;
    lm_tensor *half = tie ? lm_mul_scalar(g, 0.5) : NULL;
    lm_tensor *base = half ? lm_where(tie, half, g) : NULL;
    lm_release(half);
    lm_release(tie);
    if (!base) return lm_last_status();
    /* base is this function's own tensor: the last input to need it takes it. */
    bool need_a = lm__input_needs_grad(n, 0), need_b = lm__input_needs_grad(n, 1);
    if (need_a) gi[0] = zero_where(need_b ? lm_clone(base) : lm_retain(base), lose_a(a, b));
    if (need_b) gi[1] = zero_where(lm_retain(base), lose_b(a, b));
    lm_release(base);
    return filled(n, gi);
}

static lm_status maximum_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    return choose_backward(n, g, gi, lm_lt, lm_gt);
}

static lm_status minimum_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    return choose_backward(n, g, gi, lm_gt, lm_lt);
}

/* When a binary op's backward reads a saved tensor: never, when a (or b) needs a gradient, or
 * whenever the op records. */
typedef enum { NEVER, FOR_A, FOR_B, ALWAYS } save_rule;

static bool rule_holds(save_rule r, bool need_a, bool need_b)
{
    return r == ALWAYS || (r == FOR_A && need_a) || (r == FOR_B && need_b);
}

typedef struct {
    lm_grad_op grad;
    save_rule save_a, save_b, save_out;
} binary_grad_entry;

/* The differentiable binary ops (the comparisons come last and record nothing). */
static const binary_grad_entry binary_grads[] = {
    [LM_BINARY_ADD] = {{"add", add_backward}, NEVER, NEVER, NEVER},
    [LM_BINARY_SUB] = {{"sub", sub_backward}, NEVER, NEVER, NEVER},
    [LM_BINARY_MUL] = {{"mul", mul_backward}, FOR_B, FOR_A, NEVER},
    [LM_BINARY_DIV] = {{"div", div_backward}, FOR_B, ALWAYS, NEVER},
    [LM_BINARY_POW] = {{"pow", pow_backward}, ALWAYS, ALWAYS, FOR_B},
    [LM_BINARY_MAXIMUM] = {{"maximum", maximum_backward}, ALWAYS, ALWAYS, NEVER},
    [LM_BINARY_MINIMUM] = {{"minimum", minimum_backward}, ALWAYS, ALWAYS, NEVER},
};
_Static_assert(sizeof binary_grads / sizeof binary_grads[0] == LM_BINARY_EQ,
               "binary_grads needs an entry per differentiable binary op");

/* Records out = a op b. Takes out; returns it, or NULL (releasing it) on error. */
static lm_tensor *record_binary(lm_binary_op op, const lm_tensor *a, const lm_tensor *b,
                                lm_tensor *out)
{
    const binary_grad_entry *e = &binary_grads[op];
    bool need_a = a->requires_grad, need_b = b->requires_grad;
    lm_node *n = lm__record(&e->grad, out, 2, (const lm_tensor *[]){a, b});
    if (!n || save_if(n, 0, rule_holds(e->save_a, need_a, need_b), a) ||
        save_if(n, 1, rule_holds(e->save_b, need_a, need_b), b) ||
        save_if(n, 2, rule_holds(e->save_out, need_a, need_b), out)) {
        lm_release(out);
        return NULL;
    }
    return out;
}

/* ---- binary: forward ---------------------------------------------------------------------- */

/* a op b, recording nothing. A given dst is checked as the target of an in-place op; the result
 * is written into it when write_dst, else into a new tensor (a tracked in-place op). */
static lm_tensor *binary_compute(const char *name, lm_binary_op op, const lm_tensor *a,
                                 const lm_tensor *b, lm_tensor *dst, bool write_dst)
{
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
    if (!write_dst) dst = NULL;
    const lm_backend *be = lm__backend(a->storage->device, name);
    if (!be) return NULL;
    /* The conversions below would record nodes that nothing uses. */
    bool prev = lm_set_grad_enabled(false);
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
    lm_set_grad_enabled(prev);
    return out;
}

static lm_tensor *binary_op(const char *name, lm_binary_op op, const lm_tensor *a,
                            const lm_tensor *b, lm_tensor *dst)
{
    if (!lm__arg(a, name) || !lm__arg(b, name)) return NULL;
    const lm_tensor *args[2] = {a, b};
    inplace_mode mode = dst ? inplace_mode_of(name, dst, 2, args) : INPLACE_PLAIN;
    if (mode == INPLACE_REFUSED) return NULL;
    lm_tensor *out = binary_compute(name, op, a, b, dst, mode == INPLACE_PLAIN);
    if (!out || is_comparison(op) || !lm__needs_grad(2, args)) return out;
    out = record_binary(op, a, b, out);
    return mode == INPLACE_TRACKED ? adopt_history(name, dst, out) : out;
}

/* ---- with a number: backward -------------------------------------------------------------- */

/* Node layout of the ops with a number s: input a; dp[0] = s; ip[0], ip[2]: the saved slots of
 * a and of the output (-1 when not saved). */

static lm_status pass_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    (void)n;
    gi[0] = lm_retain((lm_tensor *)g);
    return LM_OK;
}

static lm_status negate_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    gi[0] = lm_neg(g);
    return filled(n, gi);
}

static lm_status mul_scalar_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    gi[0] = lm_mul_scalar(g, n->dp[0]);
    return filled(n, gi);
}

static lm_status div_scalar_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    gi[0] = lm_div_scalar(g, n->dp[0]);
    return filled(n, gi);
}

/* d(s / a) = -s / a^2 da. */
static lm_status rdiv_scalar_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *a = saved_at(n, 0);
    lm_tensor *a2 = a ? lm_mul(a, a) : NULL;
    lm_tensor *t = a2 ? lm_div(g, a2) : NULL;
    if (t && lm_mul_scalar_(t, -n->dp[0])) {
        lm_release(t);
        t = NULL;
    }
    lm_release(a2);
    gi[0] = t;
    return filled(n, gi);
}

/* d(a^s) = s a^(s-1) da: zero for s == 0 (as PyTorch), exact for the common squares. */
static lm_status pow_scalar_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    double s = n->dp[0];
    if (s == 0) {
        gi[0] = lm_zeros_like(g);
        return filled(n, gi);
    }
    if (s == 1) return pass_backward(n, g, gi);
    const lm_tensor *a = saved_at(n, 0);
    lm_tensor *p = !a ? NULL : s == 2 ? lm_retain((lm_tensor *)a) : lm_pow_scalar(a, s - 1);
    lm_tensor *t = p ? lm_mul(g, p) : NULL;
    if (t && lm_mul_scalar_(t, s)) {
        lm_release(t);
        t = NULL;
    }
    lm_release(p);
    gi[0] = t;
    return filled(n, gi);
}

/* d(s^a) = s^a ln(s) da; for s == 0, 0 where a >= 0 (not 0 * -inf), as PyTorch. */
static lm_status rpow_scalar_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    double s = n->dp[0];
    const lm_tensor *out = saved_at(n, 2);
    lm_tensor *t = out ? lm_mul(g, out) : NULL;
    if (t && lm_mul_scalar_(t, log(s))) {
        lm_release(t);
        t = NULL;
    }
    if (t && s == 0) {
        const lm_tensor *a = saved_at(n, 0);
        t = zero_where(t, a ? lm_ge_scalar(a, 0.0) : NULL);
    }
    gi[0] = t;
    return filled(n, gi);
}

/* maximum/minimum with a number: g where a wins, g/2 where a equals s, 0 where a loses. */
static lm_status choose_scalar_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi,
                                        lm_tensor *(*lose)(const lm_tensor *, double))
{
    double s = n->dp[0];
    const lm_tensor *a = saved_at(n, 0);
    lm_tensor *tie = a ? lm_eq_scalar(a, s) : NULL;
    lm_tensor *half = tie ? lm_mul_scalar(g, 0.5) : NULL;
    lm_tensor *base = half ? lm_where(tie, half, g) : NULL;
    gi[0] = zero_where(base, base ? lose(a, s) : NULL);
    lm_release(half);
    lm_release(tie);
    return filled(n, gi);
}

static lm_status maximum_scalar_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    return choose_scalar_backward(n, g, gi, lm_lt_scalar);
}

static lm_status minimum_scalar_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    return choose_scalar_backward(n, g, gi, lm_gt_scalar);
}

typedef struct {
    lm_grad_op grad;
    bool save_a, save_out;
} scalar_grad_entry;

/* a op s, for the differentiable ops. */
static const scalar_grad_entry scalar_grads[] = {
    [LM_BINARY_ADD] = {{"add_scalar", pass_backward}, false, false},
    [LM_BINARY_SUB] = {{"sub_scalar", pass_backward}, false, false},
    [LM_BINARY_MUL] = {{"mul_scalar", mul_scalar_backward}, false, false},
    [LM_BINARY_DIV] = {{"div_scalar", div_scalar_backward}, false, false},
    [LM_BINARY_POW] = {{"pow_scalar", pow_scalar_backward}, true, false},
    [LM_BINARY_MAXIMUM] = {{"maximum_scalar", maximum_scalar_backward}, true, false},
    [LM_BINARY_MINIMUM] = {{"minimum_scalar", minimum_scalar_backward}, true, false},
};
_Static_assert(sizeof scalar_grads / sizeof scalar_grads[0] == LM_BINARY_EQ,
               "scalar_grads needs an entry per differentiable binary op");

/* s op a: only sub, div and pow have reversed forms. rpow needs a only for s == 0 (the
 * masking); record_scalar decides. */
static const scalar_grad_entry rsub_grad = {{"rsub_scalar", negate_backward}, false, false};
static const scalar_grad_entry rdiv_grad = {{"rdiv_scalar", rdiv_scalar_backward}, true, false};
static const scalar_grad_entry rpow_grad = {{"rpow_scalar", rpow_scalar_backward}, false, true};

/* Records out = a op s (or s op a). Takes out; returns it, or NULL (releasing it) on error. */
static lm_tensor *record_scalar(lm_binary_op op, bool reversed, const lm_tensor *a, double s,
                                lm_tensor *out)
{
    const scalar_grad_entry *e = &scalar_grads[op];
    if (reversed)
        e = op == LM_BINARY_SUB ? &rsub_grad : op == LM_BINARY_DIV ? &rdiv_grad : &rpow_grad;
    bool save_a = e->save_a || (e == &rpow_grad && s == 0);
    lm_node *n = lm__record(&e->grad, out, 1, &a);
    if (!n || save_if(n, 0, save_a, a) || save_if(n, 2, e->save_out, out)) {
        lm_release(out);
        return NULL;
    }
    n->dp[0] = s;
    return out;
}

/* ---- with a number: forward --------------------------------------------------------------- */

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
    inplace_mode mode = dst ? inplace_mode_of(name, dst, 1, &a) : INPLACE_PLAIN;
    if (mode == INPLACE_REFUSED) return NULL;
    const lm_backend *be = lm__backend(a->storage->device, name);
    if (!be) return NULL;
    lm_tensor *number = lm__new(name, 0, NULL, dt, a->storage->device);
    if (!number) return NULL;
    be->copy->fill(number, s);
    lm_tensor *r = reversed ? binary_compute(name, op, number, a, NULL, false)
                            : binary_compute(name, op, a, number, dst, mode == INPLACE_PLAIN);
    lm_release(number);
    if (!r || is_comparison(op) || !lm__needs_grad(1, &a)) return r;
    r = record_scalar(op, reversed, a, s, r);
    return mode == INPLACE_TRACKED ? adopt_history(name, dst, r) : r;
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

/* ---- unary: backward ---------------------------------------------------------------------- */

/* Node layout of the unary ops: input a; ip[0]: the op; ip[1]: the saved slot (-1 when none);
 * dp[0], dp[1]: the op's parameters. */

/* g sign(x): 0 at x == 0, as PyTorch. */
static lm_status abs_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = saved_at(n, 1);
    lm_tensor *neg = x ? lm_lt_scalar(x, 0.0) : NULL;
    lm_tensor *ng = neg ? lm_neg(g) : NULL;
    lm_tensor *t = ng ? lm_where(neg, ng, g) : NULL;
    gi[0] = zero_where(t, t ? lm_eq_scalar(x, 0.0) : NULL);
    lm_release(ng);
    lm_release(neg);
    return filled(n, gi);
}

/* g y, y = exp(x). */
static lm_status exp_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *y = saved_at(n, 1);
    gi[0] = y ? lm_mul(g, y) : NULL;
    return filled(n, gi);
}

static lm_status log_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = saved_at(n, 1);
    gi[0] = x ? lm_div(g, x) : NULL;
    return filled(n, gi);
}

static lm_status log1p_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = saved_at(n, 1);
    lm_tensor *x1 = x ? lm_add_scalar(x, 1.0) : NULL;
    gi[0] = x1 ? lm_div(g, x1) : NULL;
    lm_release(x1);
    return filled(n, gi);
}

/* g / (2 y), y = sqrt(x). */
static lm_status sqrt_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *y = saved_at(n, 1);
    lm_tensor *t = y ? lm_div(g, y) : NULL;
    if (t && lm_mul_scalar_(t, 0.5)) {
        lm_release(t);
        t = NULL;
    }
    gi[0] = t;
    return filled(n, gi);
}

/* -g y^3 / 2, y = 1 / sqrt(x). */
static lm_status rsqrt_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *y = saved_at(n, 1);
    lm_tensor *y2 = y ? lm_mul(y, y) : NULL;
    lm_tensor *t = y2 ? lm_mul(g, y2) : NULL;
    if (t && (lm_mul_(t, y) || lm_mul_scalar_(t, -0.5))) {
        lm_release(t);
        t = NULL;
    }
    lm_release(y2);
    gi[0] = t;
    return filled(n, gi);
}

static lm_status sin_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = saved_at(n, 1);
    lm_tensor *c = x ? lm_cos(x) : NULL;
    gi[0] = c ? lm_mul(g, c) : NULL;
    lm_release(c);
    return filled(n, gi);
}

static lm_status cos_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = saved_at(n, 1);
    lm_tensor *s = x ? lm_sin(x) : NULL;
    lm_tensor *t = s ? lm_mul(g, s) : NULL;
    if (t && lm_neg_(t)) {
        lm_release(t);
        t = NULL;
    }
    lm_release(s);
    gi[0] = t;
    return filled(n, gi);
}

/* g where min <= x <= max (the bounds pass it, as PyTorch), 0 elsewhere and at NaN. */
static lm_status clamp_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = saved_at(n, 1);
    lm_tensor *above_min = x ? lm_ge_scalar(x, n->dp[0]) : NULL;
    lm_tensor *below_max = above_min ? lm_le_scalar(x, n->dp[1]) : NULL;
    lm_tensor *inside = below_max ? lm_mul(above_min, below_max) : NULL;
    lm_tensor *outside = inside ? lm_eq_scalar(inside, 0.0) : NULL;
    gi[0] = outside ? lm_masked_fill(g, outside, 0.0) : NULL;
    lm_release(outside);
    lm_release(inside);
    lm_release(below_max);
    lm_release(above_min);
    return filled(n, gi);
}

/* The activations: one pass of the backend's fused kernel (see lm_elementwise_kernels). */
static lm_status fused_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *v = saved_at(n, 1);
    if (!v) return lm_last_status();
    const lm_backend *be = lm__backend(v->storage->device, n->op->name);
    if (!be) return lm_last_status();
    lm_tensor *gc = lm_to_dtype(g, v->dtype);
    lm_tensor *out = gc ? lm__new(n->op->name, v->ndim, v->shape, v->dtype, v->storage->device)
                        : NULL;
    if (out) be->elementwise->unary_backward((lm_unary_op)n->ip[0], out, gc, v, n->dp);
    lm_release(gc);
    gi[0] = out;
    return filled(n, gi);
}

typedef enum { SAVE_NOTHING, SAVE_INPUT, SAVE_OUTPUT } unary_save;

typedef struct {
    lm_grad_op grad;
    unary_save save;
} unary_grad_entry;

/* What each backward reads: the output where it is cheaper (exp, sqrt, rsqrt, sigmoid, tanh,
 * relu: their derivatives are simple in y), the input otherwise. The fused entries' choice is
 * part of the kernel's contract (elementwise.h). */
static const unary_grad_entry unary_grads[] = {
    [LM_UNARY_NEG] = {{"neg", negate_backward}, SAVE_NOTHING},
    [LM_UNARY_ABS] = {{"abs", abs_backward}, SAVE_INPUT},
    [LM_UNARY_EXP] = {{"exp", exp_backward}, SAVE_OUTPUT},
    [LM_UNARY_LOG] = {{"log", log_backward}, SAVE_INPUT},
    [LM_UNARY_LOG1P] = {{"log1p", log1p_backward}, SAVE_INPUT},
    [LM_UNARY_SQRT] = {{"sqrt", sqrt_backward}, SAVE_OUTPUT},
    [LM_UNARY_RSQRT] = {{"rsqrt", rsqrt_backward}, SAVE_OUTPUT},
    [LM_UNARY_SIN] = {{"sin", sin_backward}, SAVE_INPUT},
    [LM_UNARY_COS] = {{"cos", cos_backward}, SAVE_INPUT},
    [LM_UNARY_TANH] = {{"tanh", fused_backward}, SAVE_OUTPUT},
    [LM_UNARY_SIGMOID] = {{"sigmoid", fused_backward}, SAVE_OUTPUT},
    [LM_UNARY_RELU] = {{"relu", fused_backward}, SAVE_OUTPUT},
    [LM_UNARY_GELU] = {{"gelu", fused_backward}, SAVE_INPUT},
    [LM_UNARY_GELU_TANH] = {{"gelu_tanh", fused_backward}, SAVE_INPUT},
    [LM_UNARY_SILU] = {{"silu", fused_backward}, SAVE_INPUT},
    [LM_UNARY_LEAKY_RELU] = {{"leaky_relu", fused_backward}, SAVE_INPUT},
    [LM_UNARY_CLAMP] = {{"clamp", clamp_backward}, SAVE_INPUT},
};
_Static_assert(sizeof unary_grads / sizeof unary_grads[0] == LM_UNARY_COUNT,
               "unary_grads needs an entry per unary op");

/* Records out = op(a). Takes out; returns it, or NULL (releasing it) on error. */
static lm_tensor *record_unary(lm_unary_op op, const lm_tensor *a, lm_tensor *out, double p0,
                               double p1)
{
    const unary_grad_entry *e = &unary_grads[op];
    lm_node *n = lm__record(&e->grad, out, 1, &a);
    if (!n || save_if(n, 1, e->save != SAVE_NOTHING, e->save == SAVE_OUTPUT ? out : a)) {
        lm_release(out);
        return NULL;
    }
    n->ip[0] = op;
    n->dp[0] = p0;
    n->dp[1] = p1;
    return out;
}

/* ---- unary: forward ----------------------------------------------------------------------- */

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
    inplace_mode mode = dst ? inplace_mode_of(name, dst, 1, &a) : INPLACE_PLAIN;
    if (mode == INPLACE_REFUSED) return NULL;
    lm_tensor *target = mode == INPLACE_PLAIN ? dst : NULL;
    const lm_backend *be = lm__backend(a->storage->device, name);
    if (!be) return NULL;
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *in = lm_to_dtype(a, ct);
    lm_tensor *out = in ? output_for(name, target, a->ndim, a->shape, ct, a->storage->device)
                        : NULL;
    if (out) {
        const double params[2] = {p0, p1};
        be->elementwise->unary(op, out, in, params);
        out = finish(be, target, out);
    }
    lm_release(in);
    lm_set_grad_enabled(prev);
    if (!out || !lm__needs_grad(1, &a)) return out;
    out = record_unary(op, a, out, p0, p1);
    return mode == INPLACE_TRACKED ? adopt_history(name, dst, out) : out;
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

/* ---- where -------------------------------------------------------------------------------- */

/* Node layout: inputs a, b (the condition gets no gradient and is no input); the condition is
 * saved in slot 0. a gets g where the condition holds, b elsewhere. */
static lm_status where_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *cond = lm__saved(n, 0);
    if (!cond) return lm_last_status();
    for (int i = 0; i < 2; i++) {
        if (!lm__input_needs_grad(n, i)) continue;
        /* a loses the elements where cond == 0, b those where cond != 0. */
        lm_tensor *lose = i == 0 ? lm_eq_scalar(cond, 0.0) : lm_ne_scalar(cond, 0.0);
        gi[i] = lose ? lm_masked_fill(g, lose, 0.0) : NULL;
        lm_release(lose);
        if (!gi[i]) break;
    }
    return filled(n, gi);
}

static const lm_grad_op where_grad = {"where", where_backward};

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
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *out = NULL;
    lm_tensor *ec = prepare_input(cond, cond->dtype, ndim, shape);
    lm_tensor *ea = ec ? prepare_input(a, ct, ndim, shape) : NULL;
    lm_tensor *eb = ea ? prepare_input(b, ct, ndim, shape) : NULL;
    if (eb) out = lm__new(name, ndim, shape, ct, a->storage->device);
    if (out) be->elementwise->where(out, ec, ea, eb);
    lm_release(ec);
    lm_release(ea);
    lm_release(eb);
    lm_set_grad_enabled(prev);
    const lm_tensor *values[2] = {a, b};
    if (!out || !lm__needs_grad(2, values)) return out;
    lm_node *n = lm__record(&where_grad, out, 2, values);
    if (!n || lm__save(n, cond)) {
        lm_release(out);
        return NULL;
    }
    return out;
}

lm_tensor *lm_where(const lm_tensor *cond, const lm_tensor *a, const lm_tensor *b)
{
    return where_op("where", cond, a, b);
}
