/* ops_lua.c — the engine's tensor ops as Lua functions: creation and random numbers, views and
 * copies, element-wise arithmetic and comparisons, reductions, indexing and joining, autograd
 * and engine settings. Each is lm.NAME and, where it reads as one, a method t:NAME.
 *
 * Rules every function here keeps (lumen_lua.h has the helpers):
 * - All arguments are read and checked first; then the result box is pushed (lb_newbox), the
 *   engine is called, and its result goes into the box (lb_setbox) with nothing pushed between.
 *   Engine tensors made here for Lua numbers (lm_scalar) come after the last check that can
 *   raise and are released before lb_setbox, so an error never leaks one.
 * - A number is accepted on either side of a binary op: 2 - t is rsub, 2 < t is t > 2. The
 *   arithmetic metamethods of the tensor metatable are these functions (module.c).
 * - In-place functions (NAME_) return their first argument itself, so calls chain.
 * - Keyword options come in a trailing table; a key the function does not take is an error that
 *   lists the keys it takes, so a misspelt option never goes unnoticed.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lumen_lua.h"

#define GRAD_MODE_MT "lumen.GradMode"

/* ---- argument helpers ----------------------------------------------------------------------- */

/* The tensor at idx, or NULL when idx holds something else (a closed tensor still raises). */
static lm_tensor *tensor_at(lua_State *L, int idx)
{
    return lb_is_tensor(L, idx) ? lb_check(L, idx) : NULL;
}

static bool is_number(lua_State *L, int idx) { return lua_type(L, idx) == LUA_TNUMBER; }

/* A number argument proper (a numeric string is refused: it is almost always a mistake). */
static double check_num(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TNUMBER);
    return lua_tonumber(L, idx);
}

/* An integer argument that fits an int (dims, counts). */
static int check_int(lua_State *L, int idx)
{
    lua_Integer v = luaL_checkinteger(L, idx);
    luaL_argcheck(L, v >= INT_MIN && v <= INT_MAX, idx, "integer out of range");
    return (int)v;
}

static bool check_bool(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TBOOLEAN);
    return lua_toboolean(L, idx);
}

/* Raises "bad argument #opts (unknown option 'k'; NAME takes a, b)" for a key of the options
 * table at o that is not in keys (NULL-terminated). */
static void check_keys(lua_State *L, int o, const char *const *keys)
{
    lua_pushnil(L);
    while (lua_next(L, o)) {
        lua_pop(L, 1);
        bool known = false;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            for (int i = 0; keys[i] && !known; i++) known = strcmp(k, keys[i]) == 0;
        }
        if (known) continue;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        if (lua_type(L, -2) == LUA_TSTRING) {
            lua_pushfstring(L, "unknown option '%s'", lua_tostring(L, -2));
        } else {
            lua_pushfstring(L, "unknown option key of type %s", luaL_typename(L, -2));
        }
        luaL_addvalue(&b);
        luaL_addstring(&b, keys[0] ? "; takes " : "; takes no options");
        for (int i = 0; keys[i]; i++) {
            if (i) luaL_addstring(&b, ", ");
            luaL_addstring(&b, keys[i]);
        }
        luaL_pushresult(&b);
        luaL_argerror(L, o, lua_tostring(L, -1));
    }
}

/* The trailing options table's index (0 when none), its keys checked; *npos receives the
 * number of positional arguments before it. */
static int options(lua_State *L, const char *const *keys, int *npos)
{
    int o = lb_trailing_opts(L);
    *npos = o ? o - 1 : lua_gettop(L);
    if (o) check_keys(L, o, keys);
    return o;
}

/* True when positional argument idx was given (and is not nil). */
static bool given(lua_State *L, int idx, int npos) { return idx <= npos && !lua_isnil(L, idx); }

/* A value given at position idx or as option key (the option wins), else def. */
static double num_arg(lua_State *L, int idx, int npos, int o, const char *key, double def)
{
    double v = given(L, idx, npos) ? check_num(L, idx) : def;
    return lb_opt_num(L, o, key, v);
}

static int int_arg(lua_State *L, int idx, int npos, int o, const char *key, int def)
{
    int v = given(L, idx, npos) ? check_int(L, idx) : def;
    lua_Integer r = lb_opt_int(L, o, key, v);
    if (r < INT_MIN || r > INT_MAX)
        luaL_argerror(L, o, lua_pushfstring(L, "option '%s' out of range", key));
    return (int)r;
}

static bool bool_arg(lua_State *L, int idx, int npos, int o, const char *key, bool def)
{
    bool v = given(L, idx, npos) ? check_bool(L, idx) : def;
    return lb_opt_bool(L, o, key, v);
}

/* Dims given at position idx (an integer or a table of integers) or as option `dim`. Returns
 * the count (0: every dim) and whether any was given. */
static int dims_arg(lua_State *L, int idx, int npos, int o, int dims[LM_MAX_DIMS], bool *any)
{
    int n = 0;
    *any = false;
    if (given(L, idx, npos)) {
        n = lb_check_dims(L, idx, dims);
        *any = true;
    }
    if (o && lb_opt_has(L, o, "dim")) {
        lua_getfield(L, o, "dim");
        int t = lua_type(L, -1);
        if (t != LUA_TNUMBER && t != LUA_TTABLE)
            luaL_argerror(L, o, "option 'dim' must be an integer or a table of integers");
        n = lb_check_dims(L, lua_gettop(L), dims);
        lua_pop(L, 1);
        *any = true;
    }
    return n;
}

/* Writes the shape of t into buf for messages. */
static const char *shape_of(const lm_tensor *t, char *buf, size_t cap)
{
    return lm_shape_str(t->ndim, t->shape, buf, cap);
}

/* ---- results --------------------------------------------------------------------------------- */

/* Ends an in-place function: raises on failure, else returns the first argument itself. */
static int self_result(lua_State *L, lm_status s)
{
    lb_check_status(L, s);
    lua_settop(L, 1);
    return 1;
}

/* Stores r in the box at idx, which need not be on top (lb_setbox works on the top box). */
static void set_box_at(lua_State *L, int idx, lm_tensor *r)
{
    lua_pushvalue(L, idx);
    lb_setbox(L, lua_touserdata(L, -1), r);
    lua_pop(L, 1);
}

/* Stores a freshly created tensor in the box on top, turning on gradient tracking when asked. */
static int created(lua_State *L, lb_box *b, lm_tensor *t, bool requires_grad)
{
    if (t && requires_grad && lm_requires_grad_(t, true) != LM_OK) {
        lm_release(t);
        t = NULL;
    }
    lb_setbox(L, b, t);
    return 1;
}

/* ---- creation -------------------------------------------------------------------------------- */

static const char *const create_keys[] = {"dtype", "requires_grad", NULL};

/* The options table at idx, if any argument is there; anything else is refused. */
static int trailing_create_opts(lua_State *L, int idx)
{
    if (lua_isnone(L, idx)) return 0;
    if (!lb_opts(L, idx)) luaL_argerror(L, idx, "options table expected");
    check_keys(L, idx, create_keys);
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
    lm_dtype dt = lb_opt_dtype_field(L, o, "dtype", LM_F32);
    bool rg = lb_opt_bool(L, o, "requires_grad", false);
    lb_box *b = lb_newbox(L);
    return created(L, b, fn(ndim, shape, dt), rg);
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

static double value_arg(lua_State *L, int idx)
{
    if (lua_isboolean(L, idx)) return lua_toboolean(L, idx) ? 1.0 : 0.0;
    return check_num(L, idx);
}

/* full(shape, value [, opts]): the dtype follows the value (integer -> i64, float -> f32,
 * boolean -> u8) unless opts.dtype says otherwise. */
static int l_full(lua_State *L)
{
    int64_t shape[LM_MAX_DIMS];
    int ndim = lone_shape(L, 1, shape);
    double v = value_arg(L, 2);
    int o = trailing_create_opts(L, 3);
    lm_dtype dt = lb_opt_dtype_field(L, o, "dtype", dtype_of_value(L, 2));
    bool rg = lb_opt_bool(L, o, "requires_grad", false);
    lb_box *b = lb_newbox(L);
    return created(L, b, lm_full(ndim, shape, v, dt), rg);
}

/* NAME_like(t [, opts]): t's shape, t's dtype unless opts.dtype. */
static int create_like(lua_State *L, shape_ctor fn)
{
    lm_tensor *t = lb_check(L, 1);
    int o = trailing_create_opts(L, 2);
    lm_dtype dt = lb_opt_dtype_field(L, o, "dtype", t->dtype);
    bool rg = lb_opt_bool(L, o, "requires_grad", false);
    lb_box *b = lb_newbox(L);
    return created(L, b, fn(t->ndim, t->shape, dt), rg);
}

static int l_empty_like(lua_State *L) { return create_like(L, lm_empty); }
static int l_zeros_like(lua_State *L) { return create_like(L, lm_zeros); }
static int l_ones_like(lua_State *L) { return create_like(L, lm_ones); }
static int l_rand_like(lua_State *L) { return create_like(L, lm_rand); }
static int l_randn_like(lua_State *L) { return create_like(L, lm_randn); }

static int l_full_like(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    double v = value_arg(L, 2);
    int o = trailing_create_opts(L, 3);
    lm_dtype dt = lb_opt_dtype_field(L, o, "dtype", t->dtype);
    bool rg = lb_opt_bool(L, o, "requires_grad", false);
    lb_box *b = lb_newbox(L);
    return created(L, b, lm_full(t->ndim, t->shape, v, dt), rg);
}

/* arange(end), arange(start, end [, step]) [, opts]: i64 when every number given is a Lua
 * integer, f32 otherwise (as torch.arange with Python ints and floats). */
static int l_arange(lua_State *L)
{
    int npos;
    int o = options(L, create_keys, &npos);
    luaL_argcheck(L, npos >= 1 && npos <= 3, npos < 1 ? 1 : 4,
                  "arange takes (end) or (start, end [, step])");
    bool all_int = true;
    double v[3] = {0, 0, 0};
    for (int i = 1; i <= npos; i++) {
        v[i - 1] = check_num(L, i);
        all_int = all_int && lua_isinteger(L, i);
    }
    double start = npos == 1 ? 0 : v[0], end = npos == 1 ? v[0] : v[1];
    double step = npos == 3 ? v[2] : 1;
    lm_dtype dt = lb_opt_dtype_field(L, o, "dtype", all_int ? LM_I64 : LM_F32);
    bool rg = lb_opt_bool(L, o, "requires_grad", false);
    lb_box *b = lb_newbox(L);
    return created(L, b, lm_arange(start, end, step, dt), rg);
}

static int l_linspace(lua_State *L)
{
    int npos;
    int o = options(L, create_keys, &npos);
    double start = check_num(L, 1), end = check_num(L, 2);
    lua_Integer steps = luaL_checkinteger(L, 3);
    lm_dtype dt = lb_opt_dtype_field(L, o, "dtype", LM_F32);
    bool rg = lb_opt_bool(L, o, "requires_grad", false);
    lb_box *b = lb_newbox(L);
    return created(L, b, lm_linspace(start, end, steps, dt), rg);
}

static int l_eye(lua_State *L)
{
    int npos;
    int o = options(L, create_keys, &npos);
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer m = given(L, 2, npos) ? luaL_checkinteger(L, 2) : n;
    lm_dtype dt = lb_opt_dtype_field(L, o, "dtype", LM_F32);
    bool rg = lb_opt_bool(L, o, "requires_grad", false);
    lb_box *b = lb_newbox(L);
    return created(L, b, lm_eye(n, m, dt), rg);
}

/* randint(low, high, shape [, opts]) or randint(high, shape [, opts]); i64 by default. */
static int l_randint(lua_State *L)
{
    int npos;
    int o = options(L, create_keys, &npos);
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

static int l_uniform_(lua_State *L)
{
    static const char *const keys[] = {"from", "to", NULL};
    int npos;
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    double lo = num_arg(L, 2, npos, o, "from", 0), hi = num_arg(L, 3, npos, o, "to", 1);
    return self_result(L, lm_uniform_(t, lo, hi));
}

static int l_normal_(lua_State *L)
{
    static const char *const keys[] = {"mean", "std", NULL};
    int npos;
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    double mean = num_arg(L, 2, npos, o, "mean", 0), std = num_arg(L, 3, npos, o, "std", 1);
    return self_result(L, lm_normal_(t, mean, std));
}

static int l_bernoulli_(lua_State *L)
{
    static const char *const keys[] = {"p", NULL};
    int npos;
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    return self_result(L, lm_bernoulli_(t, num_arg(L, 2, npos, o, "p", 0.5)));
}

/* ---- views and copies ------------------------------------------------------------------------ */

typedef lm_tensor *(*unary_fn)(const lm_tensor *);

static int unary(lua_State *L, unary_fn fn)
{
    lm_tensor *t = lb_check(L, 1);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, fn(t));
    return 1;
}

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

static int l_view_as(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1), *o = lb_check(L, 2);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_view(t, o->ndim, o->shape));
    return 1;
}

static int l_reshape_as(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1), *o = lb_check(L, 2);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_reshape(t, o->ndim, o->shape));
    return 1;
}

static int l_expand_as(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1), *o = lb_check(L, 2);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_expand_as(t, o));
    return 1;
}

static int l_transpose(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int d0 = check_int(L, 2), d1 = check_int(L, 3);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_transpose(t, d0, d1));
    return 1;
}

static int l_t(lua_State *L) { return unary(L, lm_t); }

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
        for (int i = 0; i < n; i++) dims[i] = check_int(L, i + 2);
    }
    if (n != t->ndim) {
        char buf[160];
        return luaL_error(L, "permute: %d dims given for a tensor of shape %s (%d dims)", n,
                          shape_of(t, buf, sizeof buf), t->ndim);
    }
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_permute(t, dims));
    return 1;
}

static int l_narrow(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = check_int(L, 2);
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_narrow(t, dim, start, len));
    return 1;
}

/* slice(dim, start, end [, step]): Python's start:end:step; nil start or end is open. */
static int l_slice(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = check_int(L, 2);
    lua_Integer start = luaL_optinteger(L, 3, 0), end = luaL_optinteger(L, 4, INT64_MAX);
    lua_Integer step = luaL_optinteger(L, 5, 1);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_slice(t, dim, start, end, step));
    return 1;
}

static int l_select(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = check_int(L, 2);
    lua_Integer i = luaL_checkinteger(L, 3);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_select(t, dim, i));
    return 1;
}

/* squeeze() drops every size-1 dim; squeeze(dim) only that one (when its size is 1). */
static int l_squeeze(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    if (lua_isnoneornil(L, 2)) return unary(L, lm_squeeze_all);
    int dim = check_int(L, 2);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_squeeze(t, dim));
    return 1;
}

static int l_unsqueeze(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = check_int(L, 2);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_unsqueeze(t, dim));
    return 1;
}

static int l_flatten(lua_State *L)
{
    static const char *const keys[] = {"start_dim", "end_dim", NULL};
    int npos;
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    int s = int_arg(L, 2, npos, o, "start_dim", 0), e = int_arg(L, 3, npos, o, "end_dim", -1);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_flatten(t, s, e));
    return 1;
}

static int l_contiguous(lua_State *L) { return unary(L, lm_contiguous); }
static int l_clone(lua_State *L) { return unary(L, lm_clone); }

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
    lm_tensor *t = lb_check(L, 1), *o = tensor_at(L, 2);
    if (o) return to_dtype(L, o->dtype);
    if (lb_opts(L, 2)) {
        static const char *const keys[] = {"dtype", NULL};
        check_keys(L, 2, keys);
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
    lm_tensor *t = lb_check(L, 1), *src = tensor_at(L, 2);
    if (src) return self_result(L, lm_copy_(t, src));
    if (!is_number(L, 2)) luaL_typeerror(L, 2, "tensor or number");
    return self_result(L, lm_fill_(t, lua_tonumber(L, 2)));
}

/* A fill value: a number, a boolean, or a one-element tensor. */
static double fill_value(lua_State *L, int idx)
{
    lm_tensor *v = tensor_at(L, idx);
    if (!v) {
        if (!is_number(L, idx) && !lua_isboolean(L, idx)) luaL_typeerror(L, idx, "number");
        return value_arg(L, idx);
    }
    double x;
    if (lm_item(v, &x) != LM_OK) lb_fail(L);
    return x;
}

static int l_fill_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    return self_result(L, lm_fill_(t, fill_value(L, 2)));
}

static int l_zero_(lua_State *L) { return self_result(L, lm_zero_(lb_check(L, 1))); }

/* ---- element-wise ---------------------------------------------------------------------------- */

typedef lm_tensor *(*tt_fn)(const lm_tensor *, const lm_tensor *);
typedef lm_tensor *(*tn_fn)(const lm_tensor *, double);

/* a OP b with tensors, or a number on either side: tn computes tensor OP number, nt computes
 * number OP tensor (rsub for sub, gt for lt, ...). */
static int binary(lua_State *L, tt_fn tt, tn_fn tn, tn_fn nt)
{
    lm_tensor *a = tensor_at(L, 1), *b = tensor_at(L, 2);
    lb_box *box;
    if (a && b) {
        box = lb_newbox(L);
        lb_setbox(L, box, tt(a, b));
    } else if (a) {
        if (!is_number(L, 2)) luaL_typeerror(L, 2, "tensor or number");
        double s = lua_tonumber(L, 2);
        box = lb_newbox(L);
        lb_setbox(L, box, tn(a, s));
    } else if (b) {
        if (!is_number(L, 1)) luaL_typeerror(L, 1, "tensor or number");
        double s = lua_tonumber(L, 1);
        box = lb_newbox(L);
        lb_setbox(L, box, nt(b, s));
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
    int o = options(L, keys, &npos);
    double alpha = lb_opt_num(L, o, "alpha", 1);
    if (alpha == 1) {
        return sub ? binary(L, lm_sub, lm_sub_scalar, lm_rsub_scalar)
                   : binary(L, lm_add, lm_add_scalar, lm_add_scalar);
    }
    lm_tensor *a = lb_check(L, 1), *b = tensor_at(L, 2);
    double s = sub ? -alpha : alpha;
    if (!b) {
        double n = check_num(L, 2);
        lb_box *box = lb_newbox(L);
        lb_setbox(L, box, lm_add_scalar(a, s * n));
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
static int l_mul(lua_State *L) { return binary(L, lm_mul, lm_mul_scalar, lm_mul_scalar); }
static int l_div(lua_State *L) { return binary(L, lm_div, lm_div_scalar, lm_rdiv_scalar); }
static int l_pow(lua_State *L) { return binary(L, lm_pow, lm_pow_scalar, lm_rpow_scalar); }
static int l_maximum(lua_State *L)
{
    return binary(L, lm_maximum, lm_maximum_scalar, lm_maximum_scalar);
}
static int l_minimum(lua_State *L)
{
    return binary(L, lm_minimum, lm_minimum_scalar, lm_minimum_scalar);
}
static int l_eq(lua_State *L) { return binary(L, lm_eq, lm_eq_scalar, lm_eq_scalar); }
static int l_ne(lua_State *L) { return binary(L, lm_ne, lm_ne_scalar, lm_ne_scalar); }
static int l_lt(lua_State *L) { return binary(L, lm_lt, lm_lt_scalar, lm_gt_scalar); }
static int l_le(lua_State *L) { return binary(L, lm_le, lm_le_scalar, lm_ge_scalar); }
static int l_gt(lua_State *L) { return binary(L, lm_gt, lm_gt_scalar, lm_lt_scalar); }
static int l_ge(lua_State *L) { return binary(L, lm_ge, lm_ge_scalar, lm_le_scalar); }

#define UNARY_OPS(X) \
    X(neg) X(abs) X(exp) X(log) X(log1p) X(sqrt) X(rsqrt) X(sin) X(cos) X(tanh) X(sigmoid) \
    X(relu) X(silu)
#define DEF_UNARY(name) \
    static int l_##name(lua_State *L) { return unary(L, lm_##name); }
UNARY_OPS(DEF_UNARY)

#define INPLACE_UNARY_OPS(X) X(neg) X(exp) X(log) X(sqrt) X(relu) X(sigmoid) X(tanh)
#define DEF_INPLACE_UNARY(name) \
    static int l_##name##_(lua_State *L) { return self_result(L, lm_##name##_(lb_check(L, 1))); }
INPLACE_UNARY_OPS(DEF_INPLACE_UNARY)

/* gelu(x [, "none" | "tanh"]) or gelu(x, {approximate = ...}). */
static int l_gelu(lua_State *L)
{
    static const char *const keys[] = {"approximate", NULL};
    int npos;
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    const char *approx = given(L, 2, npos) ? luaL_checkstring(L, 2) : "none";
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
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    double slope = num_arg(L, 2, npos, o, "negative_slope", 0.01);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_leaky_relu(t, slope));
    return 1;
}

/* The bounds of clamp(x, min, max) / clamp(x, {min=, max=}); nil is unbounded on that side. */
static void clamp_bounds(lua_State *L, double *lo, double *hi)
{
    static const char *const keys[] = {"min", "max", NULL};
    int npos;
    int o = options(L, keys, &npos);
    bool any = given(L, 2, npos) || given(L, 3, npos) || (o && (lb_opt_has(L, o, "min") ||
                                                                lb_opt_has(L, o, "max")));
    if (!any) luaL_error(L, "clamp: give min, max or both");
    *lo = num_arg(L, 2, npos, o, "min", -INFINITY);
    *hi = num_arg(L, 3, npos, o, "max", INFINITY);
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
    return self_result(L, lm_clamp_(t, lo, hi));
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
    lm_tensor *c = lb_check(L, 1), *a = tensor_at(L, 2), *b = tensor_at(L, 3);
    if (!a && !is_number(L, 2)) luaL_typeerror(L, 2, "tensor or number");
    if (!b && !is_number(L, 3)) luaL_typeerror(L, 3, "tensor or number");
    lm_dtype adt = a ? a->dtype : where_dtype(L, 2, b, 3);
    lm_dtype bdt = b ? b->dtype : where_dtype(L, 3, a, 2);
    lb_box *box = lb_newbox(L);
    lm_tensor *sa = a ? NULL : lm_scalar(lua_tonumber(L, 2), adt);
    lm_tensor *sb = b ? NULL : lm_scalar(lua_tonumber(L, 3), bdt);
    lm_tensor *r = NULL;
    if ((a || sa) && (b || sb)) r = lm_where(c, a ? a : sa, b ? b : sb);
    lm_release(sa);
    lm_release(sb);
    lb_setbox(L, box, r);
    return 1;
}

typedef lm_status (*inplace_tt)(lm_tensor *, const lm_tensor *);
typedef lm_status (*inplace_tn)(lm_tensor *, double);

static int inplace_binary(lua_State *L, inplace_tt tt, inplace_tn tn)
{
    lm_tensor *a = lb_check(L, 1), *b = tensor_at(L, 2);
    if (b) return self_result(L, tt(a, b));
    if (!is_number(L, 2)) luaL_typeerror(L, 2, "tensor or number");
    return self_result(L, tn(a, lua_tonumber(L, 2)));
}

/* add_/sub_ with alpha: a += alpha * b. */
static int add_sub_(lua_State *L, bool sub)
{
    static const char *const keys[] = {"alpha", NULL};
    int npos;
    int o = options(L, keys, &npos);
    double alpha = lb_opt_num(L, o, "alpha", 1);
    if (alpha == 1)
        return sub ? inplace_binary(L, lm_sub_, lm_sub_scalar_)
                   : inplace_binary(L, lm_add_, lm_add_scalar_);
    lm_tensor *a = lb_check(L, 1), *b = tensor_at(L, 2);
    double s = sub ? -alpha : alpha;
    if (!b) return self_result(L, lm_add_scalar_(a, s * check_num(L, 2)));
    lm_tensor *scaled = lm_mul_scalar(b, s);
    lm_status st = scaled ? lm_add_(a, scaled) : lm_last_status();
    lm_release(scaled);
    return self_result(L, st);
}

static int l_add_(lua_State *L) { return add_sub_(L, false); }
static int l_sub_(lua_State *L) { return add_sub_(L, true); }
static int l_mul_(lua_State *L) { return inplace_binary(L, lm_mul_, lm_mul_scalar_); }
static int l_div_(lua_State *L) { return inplace_binary(L, lm_div_, lm_div_scalar_); }
static int l_pow_(lua_State *L) { return inplace_binary(L, lm_pow_, lm_pow_scalar_); }

/* ---- reductions ------------------------------------------------------------------------------ */

/* sum(t), sum(t, dim | {dims}), sum(t, dim, keepdim), sum(t, {dim = ..., keepdim = ...}). */
static int reduction(lua_State *L, lm_tensor *(*fn)(const lm_tensor *, int, const int *, bool))
{
    static const char *const keys[] = {"dim", "keepdim", NULL};
    int npos;
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    int dims[LM_MAX_DIMS];
    bool any;
    int n = dims_arg(L, 2, npos, o, dims, &any);
    bool keepdim = bool_arg(L, 3, npos, o, "keepdim", false);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, fn(t, n, dims, keepdim));
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
    int npos;
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    int dims[LM_MAX_DIMS];
    bool any;
    int n = dims_arg(L, 2, npos, o, dims, &any);
    bool keepdim = bool_arg(L, 3, npos, o, "keepdim", false);
    lua_Integer correction = lb_opt_int(L, o, "correction", 1);
    if (o && lb_opt_has(L, o, "unbiased")) {
        if (lb_opt_has(L, o, "correction"))
            return luaL_argerror(L, o, "give correction or unbiased, not both");
        correction = lb_opt_bool(L, o, "unbiased", true) ? 1 : 0;
    }
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, is_std ? lm_std(t, n, dims, correction, keepdim)
                           : lm_var(t, n, dims, correction, keepdim));
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
    return check_num(L, idx);
}

/* norm(t [, p [, dim [, keepdim]]]) or with {p, dim, keepdim}. */
static int l_norm(lua_State *L)
{
    static const char *const keys[] = {"p", "dim", "keepdim", NULL};
    int npos;
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    double p = given(L, 2, npos) ? norm_p(L, 2) : 2;
    if (o && lb_opt_has(L, o, "p")) {
        lua_getfield(L, o, "p");
        p = norm_p(L, lua_gettop(L));
        lua_pop(L, 1);
    }
    int dims[LM_MAX_DIMS];
    bool any;
    int n = dims_arg(L, 3, npos, o, dims, &any);
    bool keepdim = bool_arg(L, 4, npos, o, "keepdim", false);
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
    if (tensor_at(L, 2)) return is_max ? l_maximum(L) : l_minimum(L);
    int npos;
    int o = options(L, keys, &npos);
    bool has_dim = given(L, 2, npos) || (o && lb_opt_has(L, o, "dim"));
    if (!has_dim) {
        lb_box *b = lb_newbox(L);
        lb_setbox(L, b, is_max ? lm_max(t) : lm_min(t));
        return 1;
    }
    int dim = int_arg(L, 2, npos, o, "dim", 0);
    bool keepdim = bool_arg(L, 3, npos, o, "keepdim", false);
    int vi = lua_gettop(L) + 1;
    lb_newbox(L);
    lb_box *ib = lb_newbox(L);
    lm_tensor *values = NULL, *indices = NULL;
    lm_status st = is_max ? lm_max_dim(t, dim, keepdim, &values, &indices)
                          : lm_min_dim(t, dim, keepdim, &values, &indices);
    if (st != LM_OK) return lb_fail(L);
    lb_setbox(L, ib, indices);
    set_box_at(L, vi, values);
    return 2;
}

static int l_max(lua_State *L) { return max_min(L, true); }
static int l_min(lua_State *L) { return max_min(L, false); }

/* argmax(t) indexes the flattened tensor; argmax(t, dim [, keepdim]) reduces dim. */
static int arg_max_min(lua_State *L, bool is_max)
{
    static const char *const keys[] = {"dim", "keepdim", NULL};
    int npos;
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    bool flat = !(given(L, 2, npos) || (o && lb_opt_has(L, o, "dim")));
    int dim = int_arg(L, 2, npos, o, "dim", 0);
    bool keepdim = bool_arg(L, 3, npos, o, "keepdim", false);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, is_max ? lm_argmax(t, dim, keepdim, flat) : lm_argmin(t, dim, keepdim, flat));
    return 1;
}

static int l_argmax(lua_State *L) { return arg_max_min(L, true); }
static int l_argmin(lua_State *L) { return arg_max_min(L, false); }

/* ---- linear algebra, indexing and joining -------------------------------------------------- */

static int l_matmul(lua_State *L)
{
    lm_tensor *a = lb_check(L, 1), *b = lb_check(L, 2);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_matmul(a, b));
    return 1;
}

static int l_index_select(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = check_int(L, 2);
    lm_tensor *idx = lb_check(L, 3);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_index_select(t, dim, idx));
    return 1;
}

static int l_gather(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = check_int(L, 2);
    lm_tensor *idx = lb_check(L, 3);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_gather(t, dim, idx));
    return 1;
}

static int l_scatter_add(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = check_int(L, 2);
    lm_tensor *idx = lb_check(L, 3), *src = lb_check(L, 4);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_scatter_add(t, dim, idx, src));
    return 1;
}

static int l_scatter_add_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int dim = check_int(L, 2);
    lm_tensor *idx = lb_check(L, 3), *src = lb_check(L, 4);
    return self_result(L, lm_scatter_add_(t, dim, idx, src));
}

static int l_masked_fill(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1), *mask = lb_check(L, 2);
    double v = fill_value(L, 3);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_masked_fill(t, mask, v));
    return 1;
}

static int l_masked_fill_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1), *mask = lb_check(L, 2);
    return self_result(L, lm_masked_fill_(t, mask, fill_value(L, 3)));
}

/* cat/stack(list [, dim] [, {dim = }]): list is a Lua sequence of tensors. The pointer array
 * lives in a userdata so an error cannot leak it; the tensors stay referenced by the list. */
static int join(lua_State *L, lm_tensor *(*fn)(int, lm_tensor *const *, int))
{
    static const char *const keys[] = {"dim", NULL};
    int npos;
    int o = options(L, keys, &npos);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argcheck(L, !lb_opts(L, 1), 1, "a sequence of tensors expected");
    int dim = int_arg(L, 2, npos, o, "dim", 0);
    lua_Unsigned n = lua_rawlen(L, 1);
    luaL_argcheck(L, n <= INT_MAX, 1, "too many tensors");
    lm_tensor **ts = lua_newuserdatauv(L, (n ? n : 1) * sizeof *ts, 0);
    for (lua_Unsigned i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        ts[i] = tensor_at(L, -1);
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
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    lua_Integer size = luaL_checkinteger(L, 2);
    int dim = int_arg(L, 3, npos, o, "dim", 0);
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
    int o = options(L, keys, &npos);
    lm_tensor *idx = lb_check(L, 1);
    lua_Integer nc = given(L, 2, npos) ? luaL_checkinteger(L, 2) : -1;
    nc = lb_opt_int(L, o, "num_classes", nc);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, lm_one_hot(idx, nc));
    return 1;
}

/* ---- autograd -------------------------------------------------------------------------------- */

/* backward([seed] [, {retain_graph = false}]); seed may be nil. */
static int l_backward(lua_State *L)
{
    static const char *const keys[] = {"retain_graph", NULL};
    int npos;
    int o = options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    lm_tensor *seed = given(L, 2, npos) ? lb_check(L, 2) : NULL;
    bool retain = bool_arg(L, 3, npos, o, "retain_graph", false);
    lb_check_status(L, lm_backward(t, seed, retain));
    return 0;
}

static int l_detach(lua_State *L) { return unary(L, lm_detach); }

static int l_retain_grad(lua_State *L) { return self_result(L, lm_retain_grad(lb_check(L, 1))); }

static int l_requires_grad_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    bool on = lua_isnoneornil(L, 2) ? true : check_bool(L, 2);
    return self_result(L, lm_requires_grad_(t, on));
}

static int l_set_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, lm_set_grad_enabled(check_bool(L, 1)));
    return 1;
}

static int l_is_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, lm_grad_enabled());
    return 1;
}

/* The to-be-closed value of lm.no_grad() / lm.enable_grad(): closing it restores the mode that
 * was in force when it was made. Closing twice does nothing. */
typedef struct grad_mode {
    bool prev;
    bool closed;
} grad_mode;

static int grad_mode_close(lua_State *L)
{
    grad_mode *g = luaL_checkudata(L, 1, GRAD_MODE_MT);
    if (!g->closed) {
        g->closed = true;
        lm_set_grad_enabled(g->prev);
    }
    return 0;
}

static int grad_mode_tostring(lua_State *L)
{
    grad_mode *g = luaL_checkudata(L, 1, GRAD_MODE_MT);
    lua_pushfstring(L, "grad mode scope (%s)", g->closed ? "closed" : "open");
    return 1;
}

/* mode() -> a to-be-closed scope; mode(fn, ...) -> fn's results, run with the mode set and the
 * previous mode restored even when fn raises (the error goes on unchanged). */
static int with_grad_mode(lua_State *L, bool enabled)
{
    if (lua_isnone(L, 1)) {
        grad_mode *g = lua_newuserdatauv(L, sizeof *g, 0);
        luaL_setmetatable(L, GRAD_MODE_MT);
        g->closed = false;
        g->prev = lm_set_grad_enabled(enabled);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TFUNCTION);
    bool prev = lm_set_grad_enabled(enabled);
    int rc = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    lm_set_grad_enabled(prev);
    if (rc != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

static int l_no_grad(lua_State *L) { return with_grad_mode(L, false); }
static int l_enable_grad(lua_State *L) { return with_grad_mode(L, true); }

/* set_scope(path or nil) -> the previous path (nil when none); get_scope() -> path or nil. */
static void push_scope(lua_State *L, const char *s)
{
    if (s && *s) {
        lua_pushstring(L, s);
    } else {
        lua_pushnil(L);
    }
}

static int l_set_scope(lua_State *L)
{
    const char *s = luaL_optstring(L, 1, NULL);
    push_scope(L, lm_set_scope(s));
    return 1;
}

static int l_get_scope(lua_State *L)
{
    push_scope(L, lm_get_scope());
    return 1;
}

/* Pushes the C string in upvalue-free argument 1 (a light userdata); run under lua_pcall so
 * the malloc'd string can be freed even if pushing it raises a memory error. */
static int push_cstring(lua_State *L)
{
    lua_pushstring(L, lua_touserdata(L, 1));
    return 1;
}

static int l_graph_json(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    char *json = lm_graph_export(t);
    if (!json) return lb_fail(L);
    lua_pushcfunction(L, push_cstring);
    lua_pushlightuserdata(L, json);
    int rc = lua_pcall(L, 1, 1, 0);
    free(json);
    if (rc != LUA_OK) return lua_error(L);
    return 1;
}

/* ---- engine settings ------------------------------------------------------------------------- */

static int l_set_num_threads(lua_State *L)
{
    int n = check_int(L, 1);
    luaL_argcheck(L, n >= 1, 1, "thread count must be at least 1");
    lm_set_num_threads(n);
    return 0;
}

static int l_get_num_threads(lua_State *L)
{
    lua_pushinteger(L, lm_get_num_threads());
    return 1;
}

static int l_release_cached_memory(lua_State *L)
{
    (void)L;
    lm_release_cached_memory();
    return 0;
}

/* promote_types("i64", "f32") -> "f32". */
static int l_promote_types(lua_State *L)
{
    lm_dtype a = lb_check_dtype(L, 1), b = lb_check_dtype(L, 2);
    lua_pushstring(L, lm_dtype_name(lm_promote_types(a, b)));
    return 1;
}

/* Testing hook: the n-th engine allocation from now fails (n <= 0: none). */
static int l_debug_fail_alloc_after(lua_State *L)
{
    lm_debug_fail_alloc_after(luaL_checkinteger(L, 1));
    return 0;
}

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
    /* autograd */
    {"backward", l_backward, true},
    {"detach", l_detach, true},
    {"retain_grad", l_retain_grad, true},
    {"requires_grad_", l_requires_grad_, true},
    {"set_grad_enabled", l_set_grad_enabled, false},
    {"is_grad_enabled", l_is_grad_enabled, false},
    {"no_grad", l_no_grad, false},
    {"enable_grad", l_enable_grad, false},
    {"set_scope", l_set_scope, false},
    {"get_scope", l_get_scope, false},
    {"graph_json", l_graph_json, true},
    /* engine settings */
    {"set_num_threads", l_set_num_threads, false},
    {"get_num_threads", l_get_num_threads, false},
    {"release_cached_memory", l_release_cached_memory, false},
    {"promote_types", l_promote_types, false},
    {"debug_fail_alloc_after", l_debug_fail_alloc_after, false},
    {NULL, NULL, false},
};

void lb_open_ops(lua_State *L, int mod_idx, int meth_idx)
{
    if (luaL_newmetatable(L, GRAD_MODE_MT)) {
        lua_pushcfunction(L, grad_mode_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, grad_mode_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lb_register(L, mod_idx, meth_idx, ops);
}
