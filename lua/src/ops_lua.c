/* ops_lua.c — the engine's tensor ops that make and reshape tensors, as Lua functions:
 * creation (zeros, full, arange, eye, ..._like), random numbers (rand, randint, the generator's
 * state, in-place uniform_/normal_/bernoulli_), views (view, transpose, narrow, squeeze, ...)
 * and copies (clone, to, copy_, fill_). Each is lm.NAME and, where it reads as one, a method
 * t:NAME. Element-wise math, reductions and indexing are in math_lua.c; autograd and engine
 * settings in grad_lua.c.
 *
 * Creation functions take a trailing {dtype =, requires_grad =} table; their dtype defaults
 * follow PyTorch's inference from Python values (integers -> i64, floats -> f32).
 */
#include <stdint.h>

#include "lumen_lua.h"

/* ---- creation -------------------------------------------------------------------------------- */

/* A creation function reads its options and pushes its box (begin_create), calls the engine
 * with c.dtype, then hands the new tensor to created, which stores it in the box and turns on
 * gradient tracking when asked. */
typedef struct creation {
    lm_dtype dtype;
    bool requires_grad;
    lb_box *box;
} creation;

/* dtype (default def) and requires_grad from the options table at o (0: none). */
static creation begin_create(lua_State *L, int o, lm_dtype def)
{
    creation c;
    c.dtype = lb_opt_dtype_field(L, o, "dtype", def);
    c.requires_grad = lb_opt_bool(L, o, "requires_grad", false);
    c.box = lb_newbox(L);
    return c;
}

static int created(lua_State *L, creation c, lm_tensor *t)
{
    if (t && c.requires_grad && lm_requires_grad_(t, true) != LM_OK) {
        lm_release(t);
        t = NULL;
    }
    lb_setbox(L, c.box, t);
    return 1;
}

static const char *const create_keys[] = {"dtype", "requires_grad", NULL};

/* The options table at idx, if any argument is there; anything else is refused. */
static int trailing_create_opts(lua_State *L, int idx)
{
    if (lua_isnone(L, idx)) return 0;
    if (!lb_opts(L, idx)) luaL_argerror(L, idx, "options table expected");
    lb_check_keys(L, idx, create_keys);
    return idx;
}

typedef lm_tensor *(*shape_ctor)(int, const int64_t *, lm_dtype);

/* NAME(d0, d1, ... [, opts]) or NAME({d0, d1, ...} [, opts]). */
static int create_shaped(lua_State *L, shape_ctor fn)
{
    int64_t shape[LM_MAX_DIMS];
    int next;
    int ndim = lb_check_shape(L, 1, shape, &next, false);
    int o = trailing_create_opts(L, next);
    creation c = begin_create(L, o, LM_F32);
    return created(L, c, fn(ndim, shape, c.dtype));
}

static int l_empty(lua_State *L) { return create_shaped(L, lm_empty); }
static int l_zeros(lua_State *L) { return create_shaped(L, lm_zeros); }
static int l_ones(lua_State *L) { return create_shaped(L, lm_ones); }
static int l_rand(lua_State *L) { return create_shaped(L, lm_rand); }
static int l_randn(lua_State *L) { return create_shaped(L, lm_randn); }

/* A shape that must stand alone at idx (a table, or one integer for 1-D), because other
 * numbers follow it. */
static int lone_shape(lua_State *L, int idx, int64_t shape[LM_MAX_DIMS])
{
    if (lua_type(L, idx) == LUA_TTABLE) {
        int next;
        return lb_check_shape(L, idx, shape, &next, false);
    }
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 0, idx, "size must be non-negative");
    shape[0] = n;
    return 1;
}

/* The dtype a Lua value suggests, as PyTorch infers it from a Python value. */
static lm_dtype dtype_of_value(lua_State *L, int idx)
{
    if (lua_isboolean(L, idx)) return LM_U8;
    return lua_isinteger(L, idx) ? LM_I64 : LM_F32;
}

/* A new tensor filled with v, exactly for any 64-bit integer (lb_fill_exact). */
static lm_tensor *full_exact(int ndim, const int64_t *shape, lb_scalar v, lm_dtype dt)
{
    if (lb_scalar_exact(v)) return lm_full(ndim, shape, v.d, dt);
    lm_tensor *t = lm_empty(ndim, shape, dt);
    if (t && lb_fill_exact(t, v) != LM_OK) {
        lm_release(t);
        t = NULL;
    }
    return t;
}

/* full(shape, value [, opts]): the dtype follows the value (integer -> i64, float -> f32,
 * boolean -> u8) unless opts.dtype says otherwise. */
static int l_full(lua_State *L)
{
    int64_t shape[LM_MAX_DIMS];
    int ndim = lone_shape(L, 1, shape);
    lb_scalar v = lb_check_scalar(L, 2);
    int o = trailing_create_opts(L, 3);
    creation c = begin_create(L, o, dtype_of_value(L, 2));
    return created(L, c, full_exact(ndim, shape, v, c.dtype));
}

/* NAME_like(t [, opts]): t's shape, t's dtype unless opts.dtype. */
static int create_like(lua_State *L, shape_ctor fn)
{
    lm_tensor *t = lb_check(L, 1);
    int o = trailing_create_opts(L, 2);
    creation c = begin_create(L, o, t->dtype);
    return created(L, c, fn(t->ndim, t->shape, c.dtype));
}

static int l_empty_like(lua_State *L) { return create_like(L, lm_empty); }
static int l_zeros_like(lua_State *L) { return create_like(L, lm_zeros); }
static int l_ones_like(lua_State *L) { return create_like(L, lm_ones); }
static int l_rand_like(lua_State *L) { return create_like(L, lm_rand); }
static int l_randn_like(lua_State *L) { return create_like(L, lm_randn); }

static int l_full_like(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    lb_scalar v = lb_check_scalar(L, 2);
    int o = trailing_create_opts(L, 3);
    creation c = begin_create(L, o, t->dtype);
    return created(L, c, full_exact(t->ndim, t->shape, v, c.dtype));
}

/* arange(end), arange(start, end [, step]) [, opts]: i64 when every number given is a Lua
 * integer, f32 otherwise (as torch.arange with Python ints and floats). */
static int l_arange(lua_State *L)
{
    int npos;
    int o = lb_options(L, create_keys, &npos);
    luaL_argcheck(L, npos >= 1 && npos <= 3, npos < 1 ? 1 : 4,
                  "arange takes (end) or (start, end [, step])");
    bool all_int = true;
    double v[3] = {0, 0, 0};
    for (int i = 1; i <= npos; i++) {
        v[i - 1] = lb_check_num(L, i);
        all_int = all_int && lua_isinteger(L, i);
    }
    double start = npos == 1 ? 0 : v[0], end = npos == 1 ? v[0] : v[1];
    double step = npos == 3 ? v[2] : 1;
    creation c = begin_create(L, o, all_int ? LM_I64 : LM_F32);
    return created(L, c, lm_arange(start, end, step, c.dtype));
}

static int l_linspace(lua_State *L)
{
    int npos;
    int o = lb_options(L, create_keys, &npos);
    double start = lb_check_num(L, 1), end = lb_check_num(L, 2);
    lua_Integer steps = luaL_checkinteger(L, 3);
    creation c = begin_create(L, o, LM_F32);
    return created(L, c, lm_linspace(start, end, steps, c.dtype));
}

static int l_eye(lua_State *L)
{
    int npos;
    int o = lb_options(L, create_keys, &npos);
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer m = lb_given(L, 2, npos) ? luaL_checkinteger(L, 2) : n;
    creation c = begin_create(L, o, LM_F32);
    return created(L, c, lm_eye(n, m, c.dtype));
}

/* randint(low, high, shape [, opts]) or randint(high, shape [, opts]); i64 by default. */
static int l_randint(lua_State *L)
{
    int npos;
    int o = lb_options(L, create_keys, &npos);
    lua_Integer low = 0, high;
    int shape_idx;
    if (lua_type(L, 2) == LUA_TTABLE) {
        high = luaL_checkinteger(L, 1);
        shape_idx = 2;
    } else {
        low = luaL_checkinteger(L, 1);
        high = luaL_checkinteger(L, 2);
        shape_idx = 3;
    }
    int64_t shape[LM_MAX_DIMS];
    int ndim = lone_shape(L, shape_idx, shape);
    lm_dtype dt = lb_opt_dtype_field(L, o, "dtype", LM_I64);
    if (o) luaL_argcheck(L, !lb_opt_has(L, o, "requires_grad"), o,
                         "randint makes integers, which cannot require gradients");
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_randint(low, high, ndim, shape, dt));
    return 1;
}

static int l_manual_seed(lua_State *L)
{
    lm_manual_seed((uint64_t)luaL_checkinteger(L, 1));
    return 0;
}

/* The generator's state as two integers (seed, offset); set_rng_state takes them back. Values
 * above 2^63 come back negative and round-trip unchanged. */
static int l_rng_state(lua_State *L)
{
    uint64_t seed, offset;
    lm_rng_get_state(&seed, &offset);
    lua_pushinteger(L, (lua_Integer)seed);
    lua_pushinteger(L, (lua_Integer)offset);
    return 2;
}

static int l_set_rng_state(lua_State *L)
{
    uint64_t seed = (uint64_t)luaL_checkinteger(L, 1);
    uint64_t offset = (uint64_t)luaL_checkinteger(L, 2);
    lm_rng_set_state(seed, offset);
    return 0;
}

/* uniform_(from = 0, to = 1) / normal_(mean = 0, std = 1): the two parameters at positions 2
 * and 3 or by the names in keys, defaulting to 0 and 1. */
static int fill_random(lua_State *L, const char *const keys[3],
                       lm_status (*fn)(lm_tensor *, double, double))
{
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    double a = lb_num_arg(L, 2, npos, o, keys[0], 0), b = lb_num_arg(L, 3, npos, o, keys[1], 1);
    return lb_self_result(L, fn(t, a, b));
}

static int l_uniform_(lua_State *L)
{
    static const char *const keys[] = {"from", "to", NULL};
    return fill_random(L, keys, lm_uniform_);
}

static int l_normal_(lua_State *L)
{
    static const char *const keys[] = {"mean", "std", NULL};
    return fill_random(L, keys, lm_normal_);
}

static int l_bernoulli_(lua_State *L)
{
    static const char *const keys[] = {"p", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    return lb_self_result(L, lm_bernoulli_(t, lb_num_arg(L, 2, npos, o, "p", 0.5)));
}

/* ---- views and copies ------------------------------------------------------------------------ */

/* view / reshape / expand: the shape as integers or one table, -1 allowed. */
static int reshaped(lua_State *L, lm_tensor *(*fn)(const lm_tensor *, int, const int64_t *))
{
    lm_tensor *t = lb_check(L, 1);
    int64_t shape[LM_MAX_DIMS];
    int next;
    int ndim = lb_check_shape(L, 2, shape, &next, true);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, fn(t, ndim, shape));
    return 1;
}

static int l_view(lua_State *L) { return reshaped(L, lm_view); }
static int l_reshape(lua_State *L) { return reshaped(L, lm_reshape); }
static int l_expand(lua_State *L) { return reshaped(L, lm_expand); }

/* view_as / reshape_as(other): other's shape. */
static int reshaped_as(lua_State *L, lm_tensor *(*fn)(const lm_tensor *, int, const int64_t *))
{
    lm_tensor *t = lb_check(L, 1), *o = lb_check(L, 2);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, fn(t, o->ndim, o->shape));
    return 1;
}

static int l_view_as(lua_State *L) { return reshaped_as(L, lm_view); }
static int l_reshape_as(lua_State *L) { return reshaped_as(L, lm_reshape); }
static int l_expand_as(lua_State *L) { return lb_binary(L, lm_expand_as); }

static int l_transpose(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int d0 = lb_check_int(L, 2), d1 = lb_check_int(L, 3);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_transpose(t, d0, d1));
    return 1;
}

static int l_t(lua_State *L) { return lb_unary(L, lm_t); }

/* permute(d0, d1, ...) or permute({d0, d1, ...}): one entry per dim of t. */
static int l_permute(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dims[LM_MAX_DIMS], n;
    if (lua_type(L, 2) == LUA_TTABLE) {
        n = lb_check_dims(L, 2, dims);
    } else {
        n = lua_gettop(L) - 1;
        luaL_argcheck(L, n <= LM_MAX_DIMS, LM_MAX_DIMS + 2, "too many dims");
        for (int i = 0; i < n; i++) dims[i] = lb_check_int(L, i + 2);
    }
    if (n != t->ndim) {
        char buf[160];
        return luaL_error(L, "permute: %d dims given for a tensor of shape %s (%d dims)", n,
                          lm_shape_str(t->ndim, t->shape, buf, sizeof buf), t->ndim);
    }
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_permute(t, dims));
    return 1;
}

static int l_narrow(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = lb_check_int(L, 2);
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_narrow(t, dim, start, len));
    return 1;
}

/* slice(dim, start, end [, step]): Python's start:end:step; nil start or end is open. */
static int l_slice(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = lb_check_int(L, 2);
    lua_Integer start = luaL_optinteger(L, 3, 0), end = luaL_optinteger(L, 4, INT64_MAX);
    lua_Integer step = luaL_optinteger(L, 5, 1);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_slice(t, dim, start, end, step));
    return 1;
}

static int l_select(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = lb_check_int(L, 2);
    lua_Integer i = luaL_checkinteger(L, 3);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_select(t, dim, i));
    return 1;
}

/* squeeze(dim) / unsqueeze(dim). */
static int at_dim(lua_State *L, lm_tensor *(*fn)(const lm_tensor *, int))
{
    lm_tensor *t = lb_check(L, 1);
    int dim = lb_check_int(L, 2);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, fn(t, dim));
    return 1;
}

/* squeeze() drops every size-1 dim; squeeze(dim) only that one (when its size is 1). */
static int l_squeeze(lua_State *L)
{
    return lua_isnoneornil(L, 2) ? lb_unary(L, lm_squeeze_all) : at_dim(L, lm_squeeze);
}

static int l_unsqueeze(lua_State *L) { return at_dim(L, lm_unsqueeze); }

static int l_flatten(lua_State *L)
{
    static const char *const keys[] = {"start_dim", "end_dim", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    int s = lb_int_arg(L, 2, npos, o, "start_dim", 0), e = lb_int_arg(L, 3, npos, o, "end_dim", -1);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_flatten(t, s, e));
    return 1;
}

static int l_contiguous(lua_State *L) { return lb_unary(L, lm_contiguous); }
static int l_clone(lua_State *L) { return lb_unary(L, lm_clone); }

static int to_dtype(lua_State *L, lm_dtype dt)
{
    lm_tensor *t = lb_check(L, 1);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_to_dtype(t, dt));
    return 1;
}

/* to("f64"), to(other) (other's dtype) or to{dtype = "f64"}. */
static int l_to(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1), *o = lb_tensor_at(L, 2);
    if (o) return to_dtype(L, o->dtype);
    if (lb_opts(L, 2)) {
        static const char *const keys[] = {"dtype", NULL};
        lb_check_keys(L, 2, keys);
        return to_dtype(L, lb_opt_dtype_field(L, 2, "dtype", t->dtype));
    }
    return to_dtype(L, lb_check_dtype(L, 2));
}

static int l_float(lua_State *L) { return to_dtype(L, LM_F32); }
static int l_double(lua_State *L) { return to_dtype(L, LM_F64); }
static int l_long(lua_State *L) { return to_dtype(L, LM_I64); }
static int l_byte(lua_State *L) { return to_dtype(L, LM_U8); }

/* copy_(src): src a tensor (broadcast, converted) or a number (fill). */
static int l_copy_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1), *src = lb_tensor_at(L, 2);
    if (src) return lb_self_result(L, lm_copy_(t, src));
    if (lua_type(L, 2) != LUA_TNUMBER) luaL_typeerror(L, 2, "tensor or number");
    return lb_self_result(L, lb_fill_exact(t, lb_check_scalar(L, 2)));
}

static int l_fill_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    return lb_self_result(L, lb_fill_exact(t, lb_check_fill_scalar(L, 2)));
}

static int l_zero_(lua_State *L) { return lb_self_result(L, lm_zero_(lb_check(L, 1))); }

/* ---- registration ---------------------------------------------------------------------------- */

static const lb_reg ops[] = {
    /* creation and random numbers */
    {"empty", l_empty, false},
    {"zeros", l_zeros, false},
    {"ones", l_ones, false},
    {"full", l_full, false},
    {"empty_like", l_empty_like, false},
    {"zeros_like", l_zeros_like, false},
    {"ones_like", l_ones_like, false},
    {"full_like", l_full_like, false},
    {"rand_like", l_rand_like, false},
    {"randn_like", l_randn_like, false},
    {"arange", l_arange, false},
    {"linspace", l_linspace, false},
    {"eye", l_eye, false},
    {"rand", l_rand, false},
    {"randn", l_randn, false},
    {"randint", l_randint, false},
    {"manual_seed", l_manual_seed, false},
    {"rng_state", l_rng_state, false},
    {"set_rng_state", l_set_rng_state, false},
    {"uniform_", l_uniform_, true},
    {"normal_", l_normal_, true},
    {"bernoulli_", l_bernoulli_, true},
    /* views and copies */
    {"view", l_view, true},
    {"reshape", l_reshape, true},
    {"view_as", l_view_as, true},
    {"reshape_as", l_reshape_as, true},
    {"transpose", l_transpose, true},
    {"t", l_t, true},
    {"permute", l_permute, true},
    {"narrow", l_narrow, true},
    {"slice", l_slice, true},
    {"select", l_select, true},
    {"expand", l_expand, true},
    {"expand_as", l_expand_as, true},
    {"squeeze", l_squeeze, true},
    {"unsqueeze", l_unsqueeze, true},
    {"flatten", l_flatten, true},
    {"contiguous", l_contiguous, true},
    {"clone", l_clone, true},
    {"to", l_to, true},
    {"float", l_float, true},
    {"double", l_double, true},
    {"long", l_long, true},
    {"byte", l_byte, true},
    {"copy_", l_copy_, true},
    {"fill_", l_fill_, true},
    {"zero_", l_zero_, true},
    {NULL, NULL, false},
};

void lb_open_ops(lua_State *L, int mod_idx, int meth_idx)
{
    lb_register(L, mod_idx, meth_idx, ops);
}
