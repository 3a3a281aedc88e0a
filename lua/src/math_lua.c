/* math_lua.c — the engine's tensor math as Lua functions: element-wise arithmetic, comparisons
 * and activations (with their in-place forms), reductions (sum, mean, var, norm, max, argmax,
 * ...), matmul, and indexing and joining (gather, scatter_add, masked_fill, cat, split, ...).
 * Each is lm.NAME and, where it reads as one, a method t:NAME.
 *
 * A number is accepted on either side of a binary op: 2 - t is rsub, 2 < t is t > 2. The
 * arithmetic metamethods of the tensor metatable are these functions (module.c). Engine
 * tensors made here for Lua numbers (lb_scalar_tensor) come after the last check that can raise
 * and are released before lb_setbox, so an error never leaks one. Such a tensor also carries a
 * Lua integer beyond 2^53 next to an i64 tensor, which the engine's double-taking scalar
 * functions would round.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "lumen_lua.h"

static bool is_number(lua_State *L, int idx) { return lua_type(L, idx) == LUA_TNUMBER; }

/* ---- element-wise ---------------------------------------------------------------------------- */

typedef lm_tensor *(*tt_fn)(const lm_tensor *, const lm_tensor *);
typedef lm_tensor *(*tn_fn)(const lm_tensor *, double);

/* t OP s for a Lua number s. A Lua float next to an integer tensor gives a float result, as
 * PyTorch does for a Python float (i64 + 2.0 is f32); the engine keeps an integer tensor integer
 * for a whole number, which is right for Lua integers (i64 + 2 stays i64). */
static lm_tensor *with_number(lua_State *L, int num_idx, const lm_tensor *t, tn_fn fn)
{
    double s = lua_tonumber(L, num_idx);
    if (lua_isinteger(L, num_idx) || lm_dtype_is_float(t->dtype)) return fn(t, s);
    lm_tensor *f = lm_to_dtype(t, LM_F32);
    lm_tensor *r = f ? fn(f, s) : NULL;
    lm_release(f);
    return r;
}

/* t OP s (or s OP t when number_first) for a Lua number s. An i64 tensor with a Lua integer
 * beyond 2^53 goes through tt with an exact 0-dim i64 tensor: the engine's scalar functions
 * take a double, which would round it. */
static lm_tensor *number_op(lua_State *L, int num_idx, const lm_tensor *t, tn_fn tn, tt_fn tt,
                            bool number_first)
{
    if (t->dtype == LM_I64 && lua_isinteger(L, num_idx)) {
        lb_scalar s = lb_check_scalar(L, num_idx);
        if (!lb_scalar_exact(s)) {
            lm_tensor *st = lb_scalar_tensor(s, LM_I64);
            lm_tensor *r = st ? (number_first ? tt(st, t) : tt(t, st)) : NULL;
            lm_release(st);
            return r;
        }
    }
    return with_number(L, num_idx, t, tn);
}

/* a OP b with tensors, or a number on either side: tn computes tensor OP number, nt computes
 * number OP tensor (rsub for sub, gt for lt, ...). */
static int binary_op(lua_State *L, tt_fn tt, tn_fn tn, tn_fn nt)
{
    lm_tensor *a = lb_tensor_at(L, 1), *b = lb_tensor_at(L, 2);
    lb_box *box;
    if (a && b) {
        box = lb_newbox(L);
        lb_setbox(L, box, tt(a, b));
    } else if (a) {
        if (!is_number(L, 2)) luaL_typeerror(L, 2, "tensor or number");
        box = lb_newbox(L);
        lb_setbox(L, box, number_op(L, 2, a, tn, tt, false));
    } else if (b) {
        if (!is_number(L, 1)) luaL_typeerror(L, 1, "tensor or number");
        box = lb_newbox(L);
        lb_setbox(L, box, number_op(L, 1, b, nt, tt, true));
    } else {
        luaL_typeerror(L, is_number(L, 1) ? 2 : 1, is_number(L, 1) ? "tensor" : "tensor or number");
    }
    return 1;
}

/* add/sub with PyTorch's alpha: a + alpha * b. */
static int add_sub(lua_State *L, bool sub)
{
    static const char *const keys[] = {"alpha", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    double alpha = lb_opt_num(L, o, "alpha", 1);
    if (alpha == 1) {
        return sub ? binary_op(L, lm_sub, lm_sub_scalar, lm_rsub_scalar)
                   : binary_op(L, lm_add, lm_add_scalar, lm_add_scalar);
    }
    lm_tensor *a = lb_check(L, 1), *b = lb_tensor_at(L, 2);
    double s = sub ? -alpha : alpha;
    if (!b) {
        lb_check_num(L, 2);
        lua_pushnumber(L, lua_tonumber(L, 2) * s); /* keeps the float-ness of alpha * n */
        if (lua_isinteger(L, 2) && s == (double)(lua_Integer)s) {
            lua_pop(L, 1);
            lua_pushinteger(L, lua_tointeger(L, 2) * (lua_Integer)s);
        }
        lua_replace(L, 2);
        lb_box *box = lb_newbox(L);
        lb_setbox(L, box, number_op(L, 2, a, lm_add_scalar, lm_add, false));
        return 1;
    }
    lb_box *box = lb_newbox(L);
    lm_tensor *scaled = lm_mul_scalar(b, s);
    lm_tensor *r = lm_add(a, scaled);
    lm_release(scaled);
    lb_setbox(L, box, r);
    return 1;
}

static int l_add(lua_State *L) { return add_sub(L, false); }
static int l_sub(lua_State *L) { return add_sub(L, true); }
static int l_mul(lua_State *L) { return binary_op(L, lm_mul, lm_mul_scalar, lm_mul_scalar); }
static int l_div(lua_State *L) { return binary_op(L, lm_div, lm_div_scalar, lm_rdiv_scalar); }
static int l_pow(lua_State *L) { return binary_op(L, lm_pow, lm_pow_scalar, lm_rpow_scalar); }
static int l_maximum(lua_State *L)
{
    return binary_op(L, lm_maximum, lm_maximum_scalar, lm_maximum_scalar);
}
static int l_minimum(lua_State *L)
{
    return binary_op(L, lm_minimum, lm_minimum_scalar, lm_minimum_scalar);
}
static int l_eq(lua_State *L) { return binary_op(L, lm_eq, lm_eq_scalar, lm_eq_scalar); }
static int l_ne(lua_State *L) { return binary_op(L, lm_ne, lm_ne_scalar, lm_ne_scalar); }
static int l_lt(lua_State *L) { return binary_op(L, lm_lt, lm_lt_scalar, lm_gt_scalar); }
static int l_le(lua_State *L) { return binary_op(L, lm_le, lm_le_scalar, lm_ge_scalar); }
static int l_gt(lua_State *L) { return binary_op(L, lm_gt, lm_gt_scalar, lm_lt_scalar); }
static int l_ge(lua_State *L) { return binary_op(L, lm_ge, lm_ge_scalar, lm_le_scalar); }

#define UNARY_OPS(X) \
    X(neg) X(abs) X(exp) X(log) X(log1p) X(sqrt) X(rsqrt) X(sin) X(cos) X(tanh) X(sigmoid) \
    X(relu) X(silu)
#define DEF_UNARY(name) \
    static int l_##name(lua_State *L) { return lb_unary(L, lm_##name); }
UNARY_OPS(DEF_UNARY)

#define INPLACE_UNARY_OPS(X) X(neg) X(exp) X(log) X(sqrt) X(relu) X(sigmoid) X(tanh)
#define DEF_INPLACE_UNARY(name) \
    static int l_##name##_(lua_State *L) { return lb_self_result(L, lm_##name##_(lb_check(L, 1))); }
INPLACE_UNARY_OPS(DEF_INPLACE_UNARY)

/* gelu(x [, "none" | "tanh"]) or gelu(x, {approximate = ...}). */
static int l_gelu(lua_State *L)
{
    static const char *const keys[] = {"approximate", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    const char *approx = lb_given(L, 2, npos) ? luaL_checkstring(L, 2) : "none";
    approx = lb_opt_str(L, o, "approximate", approx);
    bool tanh_form = strcmp(approx, "tanh") == 0;
    if (!tanh_form && strcmp(approx, "none") != 0)
        return luaL_error(L, "gelu: approximate must be \"none\" or \"tanh\", got \"%s\"", approx);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, tanh_form ? lm_gelu_tanh(t) : lm_gelu(t));
    return 1;
}

static int l_leaky_relu(lua_State *L)
{
    static const char *const keys[] = {"negative_slope", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    double slope = lb_num_arg(L, 2, npos, o, "negative_slope", 0.01);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_leaky_relu(t, slope));
    return 1;
}

/* The bounds of clamp(x, min, max) / clamp(x, {min=, max=}); nil is unbounded on that side. */
static void clamp_bounds(lua_State *L, double *lo, double *hi)
{
    static const char *const keys[] = {"min", "max", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    bool any = lb_given(L, 2, npos) || lb_given(L, 3, npos) || (o && (lb_opt_has(L, o, "min") ||
                                                                lb_opt_has(L, o, "max")));
    if (!any) luaL_error(L, "clamp: give min, max or both");
    *lo = lb_num_arg(L, 2, npos, o, "min", -INFINITY);
    *hi = lb_num_arg(L, 3, npos, o, "max", INFINITY);
}

static int l_clamp(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    double lo, hi;
    clamp_bounds(L, &lo, &hi);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_clamp(t, lo, hi));
    return 1;
}

static int l_clamp_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    double lo, hi;
    clamp_bounds(L, &lo, &hi);
    return lb_self_result(L, lm_clamp_(t, lo, hi));
}

/* The dtype of number idx in where(): the other operand's (a tensor of dtype other, or
 * number idx2), as lb_to_tensor and PyTorch promote: a Lua float next to integers is f32. */
static lm_dtype where_dtype(lua_State *L, int idx, const lm_tensor *other, int idx2)
{
    if (!lua_isinteger(L, idx))
        return other && lm_dtype_is_float(other->dtype) ? other->dtype : LM_F32;
    if (other) return other->dtype;
    return lua_isinteger(L, idx2) ? LM_I64 : LM_F32;
}

/* where(cond, a, b): a and b tensors or numbers. */
static int l_where(lua_State *L)
{
    lm_tensor *c = lb_check(L, 1), *a = lb_tensor_at(L, 2), *b = lb_tensor_at(L, 3);
    if (!a && !is_number(L, 2)) luaL_typeerror(L, 2, "tensor or number");
    if (!b && !is_number(L, 3)) luaL_typeerror(L, 3, "tensor or number");
    lm_dtype adt = a ? a->dtype : where_dtype(L, 2, b, 3);
    lm_dtype bdt = b ? b->dtype : where_dtype(L, 3, a, 2);
    lb_scalar na = a ? (lb_scalar){0, 0, false} : lb_check_scalar(L, 2);
    lb_scalar nb = b ? (lb_scalar){0, 0, false} : lb_check_scalar(L, 3);
    lb_box *box = lb_newbox(L);
    lm_tensor *sa = a ? NULL : lb_scalar_tensor(na, adt);
    lm_tensor *sb = b ? NULL : lb_scalar_tensor(nb, bdt);
    lm_tensor *r = NULL;
    if ((a || sa) && (b || sb)) r = lm_where(c, a ? a : sa, b ? b : sb);
    lm_release(sa);
    lm_release(sb);
    lb_setbox(L, box, r);
    return 1;
}

typedef lm_status (*inplace_tt)(lm_tensor *, const lm_tensor *);
typedef lm_status (*inplace_tn)(lm_tensor *, double);

/* a OP= b for a tensor or a number b; an i64 a with an integer beyond 2^53 takes tt with an
 * exact 0-dim tensor (as number_op). */
static int inplace_binary(lua_State *L, inplace_tt tt, inplace_tn tn)
{
    lm_tensor *a = lb_check(L, 1), *b = lb_tensor_at(L, 2);
    if (b) return lb_self_result(L, tt(a, b));
    if (!is_number(L, 2)) luaL_typeerror(L, 2, "tensor or number");
    lb_scalar s = lb_check_scalar(L, 2);
    if (a->dtype != LM_I64 || lb_scalar_exact(s)) return lb_self_result(L, tn(a, s.d));
    lm_tensor *st = lb_scalar_tensor(s, LM_I64);
    lm_status r = st ? tt(a, st) : lm_last_status();
    lm_release(st);
    return lb_self_result(L, r);
}

/* add_/sub_ with alpha: a += alpha * b. */
static int add_sub_(lua_State *L, bool sub)
{
    static const char *const keys[] = {"alpha", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    double alpha = lb_opt_num(L, o, "alpha", 1);
    if (alpha == 1)
        return sub ? inplace_binary(L, lm_sub_, lm_sub_scalar_)
                   : inplace_binary(L, lm_add_, lm_add_scalar_);
    lm_tensor *a = lb_check(L, 1), *b = lb_tensor_at(L, 2);
    double s = sub ? -alpha : alpha;
    if (!b) return lb_self_result(L, lm_add_scalar_(a, s * lb_check_num(L, 2)));
    lm_tensor *scaled = lm_mul_scalar(b, s);
    lm_status st = scaled ? lm_add_(a, scaled) : lm_last_status();
    lm_release(scaled);
    return lb_self_result(L, st);
}

static int l_add_(lua_State *L) { return add_sub_(L, false); }
static int l_sub_(lua_State *L) { return add_sub_(L, true); }
static int l_mul_(lua_State *L) { return inplace_binary(L, lm_mul_, lm_mul_scalar_); }
static int l_div_(lua_State *L) { return inplace_binary(L, lm_div_, lm_div_scalar_); }
static int l_pow_(lua_State *L) { return inplace_binary(L, lm_pow_, lm_pow_scalar_); }

/* ---- reductions ------------------------------------------------------------------------------ */

/* What a reduction reads: t, then the dims (none: every dim) and keepdim at positions 2 and 3
 * or as options dim and keepdim; o is the options table (0 when none) for further options. */
typedef struct reduce_args {
    lm_tensor *t;
    int dims[LM_MAX_DIMS], ndims;
    bool keepdim;
    int o;
} reduce_args;

static reduce_args read_reduce_args(lua_State *L, const char *const *keys)
{
    reduce_args r;
    int npos;
    r.o = lb_options(L, keys, &npos);
    r.t = lb_check(L, 1);
    r.ndims = lb_dims_arg(L, 2, npos, r.o, r.dims);
    r.keepdim = lb_bool_arg(L, 3, npos, r.o, "keepdim", false);
    return r;
}

/* sum(t), sum(t, dim | {dims}), sum(t, dim, keepdim), sum(t, {dim = ..., keepdim = ...}). */
static int reduction(lua_State *L, lm_tensor *(*fn)(const lm_tensor *, int, const int *, bool))
{
    static const char *const keys[] = {"dim", "keepdim", NULL};
    reduce_args r = read_reduce_args(L, keys);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, fn(r.t, r.ndims, r.dims, r.keepdim));
    return 1;
}

static int l_sum(lua_State *L) { return reduction(L, lm_sum); }
static int l_mean(lua_State *L) { return reduction(L, lm_mean); }
static int l_prod(lua_State *L) { return reduction(L, lm_prod); }
static int l_logsumexp(lua_State *L) { return reduction(L, lm_logsumexp); }
static int l_amax(lua_State *L) { return reduction(L, lm_amax); }
static int l_amin(lua_State *L) { return reduction(L, lm_amin); }

/* var/std(t [, dim [, keepdim]] [, {dim, keepdim, correction = 1 | unbiased = bool}]). */
static int var_std(lua_State *L, bool is_std)
{
    static const char *const keys[] = {"dim", "keepdim", "correction", "unbiased", NULL};
    reduce_args r = read_reduce_args(L, keys);
    lua_Integer correction = lb_opt_int(L, r.o, "correction", 1);
    if (lb_opt_has(L, r.o, "unbiased")) {
        if (lb_opt_has(L, r.o, "correction"))
            return luaL_argerror(L, r.o, "give correction or unbiased, not both");
        correction = lb_opt_bool(L, r.o, "unbiased", true) ? 1 : 0;
    }
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, is_std ? lm_std(r.t, r.ndims, r.dims, correction, r.keepdim)
                           : lm_var(r.t, r.ndims, r.dims, correction, r.keepdim));
    return 1;
}

static int l_var(lua_State *L) { return var_std(L, false); }
static int l_std(lua_State *L) { return var_std(L, true); }

/* A norm order: a number, or "fro" (2) / "inf" / "-inf" as strings. */
static double norm_p(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (!strcmp(s, "fro")) return 2;
        if (!strcmp(s, "inf")) return INFINITY;
        if (!strcmp(s, "-inf")) return -INFINITY;
        luaL_argerror(L, idx, lua_pushfstring(L, "norm order must be a number, \"fro\" or "
                                                 "\"inf\", got \"%s\"", s));
    }
    return lb_check_num(L, idx);
}

/* norm(t [, p [, dim [, keepdim]]]) or with {p, dim, keepdim}. */
static int l_norm(lua_State *L)
{
    static const char *const keys[] = {"p", "dim", "keepdim", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    double p = lb_given(L, 2, npos) ? norm_p(L, 2) : 2;
    if (lb_opt_has(L, o, "p")) {
        lua_getfield(L, o, "p");
        p = norm_p(L, lua_gettop(L));
        lua_pop(L, 1);
    }
    int dims[LM_MAX_DIMS];
    int n = lb_dims_arg(L, 3, npos, o, dims);
    bool keepdim = lb_bool_arg(L, 4, npos, o, "keepdim", false);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_norm(t, p, n, dims, keepdim));
    return 1;
}

/* max(t) -> the largest element (0-dim); max(t, other) -> maximum(t, other);
 * max(t, dim [, keepdim]) or max(t, {dim, keepdim}) -> values, indices. */
static int max_min(lua_State *L, bool is_max)
{
    static const char *const keys[] = {"dim", "keepdim", NULL};
    lm_tensor *t = lb_check(L, 1);
    if (lb_tensor_at(L, 2)) return is_max ? l_maximum(L) : l_minimum(L);
    int npos;
    int o = lb_options(L, keys, &npos);
    bool has_dim = lb_given(L, 2, npos) || (lb_opt_has(L, o, "dim"));
    if (!has_dim) {
        lb_box *b = lb_newbox(L);
        lb_setbox(L, b, is_max ? lm_max(t) : lm_min(t));
        return 1;
    }
    int dim = lb_int_arg(L, 2, npos, o, "dim", 0);
    bool keepdim = lb_bool_arg(L, 3, npos, o, "keepdim", false);
    int vi = lua_gettop(L) + 1;
    lb_newbox(L);
    lb_box *ib = lb_newbox(L);
    lm_tensor *values = NULL, *indices = NULL;
    lm_status st = is_max ? lm_max_dim(t, dim, keepdim, &values, &indices)
                          : lm_min_dim(t, dim, keepdim, &values, &indices);
    if (st != LM_OK) return lb_fail(L);
    lb_setbox(L, ib, indices);
    lb_setbox_at(L, vi, values);
    return 2;
}

static int l_max(lua_State *L) { return max_min(L, true); }
static int l_min(lua_State *L) { return max_min(L, false); }

/* argmax(t) indexes the flattened tensor; argmax(t, dim [, keepdim]) reduces dim. */
static int arg_max_min(lua_State *L, bool is_max)
{
    static const char *const keys[] = {"dim", "keepdim", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    bool flat = !(lb_given(L, 2, npos) || (lb_opt_has(L, o, "dim")));
    int dim = lb_int_arg(L, 2, npos, o, "dim", 0);
    bool keepdim = lb_bool_arg(L, 3, npos, o, "keepdim", false);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, is_max ? lm_argmax(t, dim, keepdim, flat) : lm_argmin(t, dim, keepdim, flat));
    return 1;
}

static int l_argmax(lua_State *L) { return arg_max_min(L, true); }
static int l_argmin(lua_State *L) { return arg_max_min(L, false); }

/* ---- linear algebra, indexing and joining -------------------------------------------------- */

static int l_matmul(lua_State *L) { return lb_binary(L, lm_matmul); }

/* index_select / gather(t, dim, index). */
static int select_by_index(lua_State *L,
                           lm_tensor *(*fn)(const lm_tensor *, int, const lm_tensor *))
{
    lm_tensor *t = lb_check(L, 1);
    int dim = lb_check_int(L, 2);
    lm_tensor *idx = lb_check(L, 3);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, fn(t, dim, idx));
    return 1;
}

static int l_index_select(lua_State *L) { return select_by_index(L, lm_index_select); }
static int l_gather(lua_State *L) { return select_by_index(L, lm_gather); }

static int l_scatter_add(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = lb_check_int(L, 2);
    lm_tensor *idx = lb_check(L, 3), *src = lb_check(L, 4);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_scatter_add(t, dim, idx, src));
    return 1;
}

static int l_scatter_add_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = lb_check_int(L, 2);
    lm_tensor *idx = lb_check(L, 3), *src = lb_check(L, 4);
    return lb_self_result(L, lm_scatter_add_(t, dim, idx, src));
}

/* t with value where mask is set: lm_masked_fill when value is exact as a double, else
 * where(mask, exact 0-dim value, t), which keeps every bit of a 64-bit integer. */
static lm_tensor *masked_fill_exact(const lm_tensor *t, const lm_tensor *mask, lb_scalar v)
{
    if (lb_scalar_exact(v)) return lm_masked_fill(t, mask, v.d);
    lm_tensor *s = lb_scalar_tensor(v, t->dtype);
    lm_tensor *r = s ? lm_where(mask, s, t) : NULL;
    lm_release(s);
    return r;
}

static int l_masked_fill(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1), *mask = lb_check(L, 2);
    lb_scalar v = lb_check_fill_scalar(L, 3);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, masked_fill_exact(t, mask, v));
    return 1;
}

static int l_masked_fill_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1), *mask = lb_check(L, 2);
    lb_scalar v = lb_check_fill_scalar(L, 3);
    if (lb_scalar_exact(v)) return lb_self_result(L, lm_masked_fill_(t, mask, v.d));
    lm_tensor *r = masked_fill_exact(t, mask, v);
    lm_status st = r ? lm_copy_(t, r) : lm_last_status();
    lm_release(r);
    return lb_self_result(L, st);
}

/* cat/stack(list [, dim] [, {dim = }]): list is a Lua sequence of tensors. The pointer array
 * lives in a userdata so an error cannot leak it; the tensors stay referenced by the list. */
static int join(lua_State *L, lm_tensor *(*fn)(int, lm_tensor *const *, int))
{
    static const char *const keys[] = {"dim", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argcheck(L, !lb_opts(L, 1), 1, "a sequence of tensors expected");
    int dim = lb_int_arg(L, 2, npos, o, "dim", 0);
    lua_Unsigned n = lua_rawlen(L, 1);
    luaL_argcheck(L, n <= INT_MAX, 1, "too many tensors");
    lm_tensor **ts = lua_newuserdatauv(L, (n ? n : 1) * sizeof *ts, 0);
    for (lua_Unsigned i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        if (lb_is_closed(L, -1))
            luaL_argerror(L, 1, lua_pushfstring(L, "element %d is a closed tensor", (int)i + 1));
        ts[i] = lb_test(L, -1);
        if (!ts[i])
            luaL_argerror(L, 1, lua_pushfstring(L, "element %d is a %s, tensor expected",
                                                (int)i + 1, luaL_typename(L, -1)));
        lua_pop(L, 1);
    }
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, fn((int)n, ts, dim));
    return 1;
}

static int l_cat(lua_State *L) { return join(L, lm_cat); }
static int l_stack(lua_State *L) { return join(L, lm_stack); }

/* split(size [, dim]) / chunk(n [, dim]) -> a Lua sequence of views. The boxes exist before
 * the engine makes the views, so none can leak. */
static int pieces(lua_State *L, bool is_split)
{
    static const char *const keys[] = {"dim", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    lua_Integer size = luaL_checkinteger(L, 2);
    int dim = lb_int_arg(L, 3, npos, o, "dim", 0);
    luaL_argcheck(L, is_split || (size >= INT_MIN && size <= INT_MAX), 2, "integer out of range");
    int n = is_split ? lm_split(t, size, dim, NULL, 0) : lm_chunk(t, (int)size, dim, NULL, 0);
    if (n < 0) return lb_fail(L);
    lua_createtable(L, n, 0);
    int list = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        lb_newbox(L);
        lua_rawseti(L, list, i);
    }
    lm_tensor **out = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *out, 0);
    int got = is_split ? lm_split(t, size, dim, out, n) : lm_chunk(t, (int)size, dim, out, n);
    if (got != n) return lb_fail(L);
    /* out stays on the stack while it is read: lb_setbox may run the collector. */
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, list, i + 1);
        lb_setbox(L, lua_touserdata(L, -1), out[i]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 1;
}

static int l_split(lua_State *L) { return pieces(L, true); }
static int l_chunk(lua_State *L) { return pieces(L, false); }

static int l_one_hot(lua_State *L)
{
    static const char *const keys[] = {"num_classes", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *idx = lb_check(L, 1);
    lua_Integer nc = lb_given(L, 2, npos) ? luaL_checkinteger(L, 2) : -1;
    nc = lb_opt_int(L, o, "num_classes", nc);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_one_hot(idx, nc));
    return 1;
}

/* ---- registration ---------------------------------------------------------------------------- */

static const lb_reg math_ops[] = {
    /* element-wise */
    {"add", l_add, true},
    {"sub", l_sub, true},
    {"mul", l_mul, true},
    {"div", l_div, true},
    {"pow", l_pow, true},
    {"maximum", l_maximum, true},
    {"minimum", l_minimum, true},
    {"eq", l_eq, true},
    {"ne", l_ne, true},
    {"lt", l_lt, true},
    {"le", l_le, true},
    {"gt", l_gt, true},
    {"ge", l_ge, true},
#define REG_UNARY(name) {#name, l_##name, true},
    UNARY_OPS(REG_UNARY)
#define REG_INPLACE_UNARY(name) {#name "_", l_##name##_, true},
    INPLACE_UNARY_OPS(REG_INPLACE_UNARY)
    {"gelu", l_gelu, true},
    {"leaky_relu", l_leaky_relu, true},
    {"clamp", l_clamp, true},
    {"clamp_", l_clamp_, true},
    {"where", l_where, false},
    {"add_", l_add_, true},
    {"sub_", l_sub_, true},
    {"mul_", l_mul_, true},
    {"div_", l_div_, true},
    {"pow_", l_pow_, true},
    /* reductions */
    {"sum", l_sum, true},
    {"mean", l_mean, true},
    {"prod", l_prod, true},
    {"logsumexp", l_logsumexp, true},
    {"amax", l_amax, true},
    {"amin", l_amin, true},
    {"var", l_var, true},
    {"std", l_std, true},
    {"norm", l_norm, true},
    {"max", l_max, true},
    {"min", l_min, true},
    {"argmax", l_argmax, true},
    {"argmin", l_argmin, true},
    /* linear algebra, indexing and joining */
    {"matmul", l_matmul, true},
    {"mm", l_matmul, true},
    {"index_select", l_index_select, true},
    {"gather", l_gather, true},
    {"scatter_add", l_scatter_add, true},
    {"scatter_add_", l_scatter_add_, true},
    {"masked_fill", l_masked_fill, true},
    {"masked_fill_", l_masked_fill_, true},
    {"cat", l_cat, false},
    {"stack", l_stack, false},
    {"split", l_split, true},
    {"chunk", l_chunk, true},
    {"one_hot", l_one_hot, true},
    {NULL, NULL, false},
};

void lb_open_math(lua_State *L, int mod_idx, int meth_idx)
{
    lb_register(L, mod_idx, meth_idx, math_ops);
}
