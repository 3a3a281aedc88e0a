/* args_lua.c — the argument readers every binding file shares (lumen_lua.h): dtype names,
 * shapes and dims, keyword option tables, strict scalar checks, PyTorch-style arguments given by
 * position or by keyword, the check that refuses unknown keywords, registration, and the small
 * result helpers.
 *
 * An argument read by lb_num_arg and its kin may come at its position or in the trailing
 * options table under its PyTorch name; the option wins where both are given, so a caller can
 * override one positional value without rewriting the call. */
#include <limits.h>
#include <string.h>

#include "lumen_lua.h"

/* ---- single values -------------------------------------------------------------------------- */

lm_tensor *lb_tensor_at(lua_State *L, int idx)
{
    return lb_is_tensor(L, idx) ? lb_check(L, idx) : NULL;
}

double lb_check_num(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TNUMBER);
    return lua_tonumber(L, idx);
}

int lb_check_int(lua_State *L, int idx)
{
    lua_Integer v = luaL_checkinteger(L, idx);
    luaL_argcheck(L, v >= INT_MIN && v <= INT_MAX, idx, "integer out of range");
    return (int)v;
}

bool lb_check_bool(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TBOOLEAN);
    return lua_toboolean(L, idx);
}

lb_scalar lb_check_scalar(lua_State *L, int idx)
{
    lb_scalar s = {0, 0, false};
    if (lua_isboolean(L, idx)) {
        s.is_int = true;
        s.i = lua_toboolean(L, idx);
    } else if (lua_type(L, idx) == LUA_TNUMBER && lua_isinteger(L, idx)) {
        s.is_int = true;
        s.i = lua_tointeger(L, idx);
    } else {
        s.d = lb_check_num(L, idx);
        return s;
    }
    s.d = (double)s.i;
    return s;
}

lb_scalar lb_check_fill_scalar(lua_State *L, int idx)
{
    lm_tensor *v = lb_tensor_at(L, idx);
    if (!v) {
        if (lua_type(L, idx) != LUA_TNUMBER && !lua_isboolean(L, idx))
            luaL_typeerror(L, idx, "number");
        return lb_check_scalar(L, idx);
    }
    lb_scalar s = {0, 0, false};
    if (lm_item(v, &s.d) != LM_OK) lb_fail(L);
    /* lm_item has checked that v has one element, which lm_data points at. */
    if (v->dtype == LM_I64 && v->storage->device == LM_CPU) {
        s.is_int = true;
        s.i = *(const int64_t *)lm_data(v);
    }
    return s;
}

/* Integers of at most 53 bits are doubles exactly. */
#define EXACT_INT_MAX ((int64_t)1 << 53)

bool lb_scalar_exact(lb_scalar s)
{
    return !s.is_int || (s.i >= -EXACT_INT_MAX && s.i <= EXACT_INT_MAX);
}

lm_tensor *lb_scalar_tensor(lb_scalar s, lm_dtype dt)
{
    if (!s.is_int) return lm_scalar(s.d, dt);
    lm_tensor *i = lm_from_data(&s.i, LM_I64, 0, NULL);
    lm_tensor *r = i ? lm_to_dtype(i, dt) : NULL;
    lm_release(i);
    return r;
}

lm_status lb_fill_exact(lm_tensor *t, lb_scalar s)
{
    if (lb_scalar_exact(s)) return lm_fill_(t, s.d);
    lm_tensor *v = lb_scalar_tensor(s, t->dtype);
    lm_status st = v ? lm_copy_(t, v) : lm_last_status();
    lm_release(v);
    return st;
}

/* ---- positional or keyword ------------------------------------------------------------------ */

void lb_check_keys(lua_State *L, int o, const char *const *keys)
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

int lb_options(lua_State *L, const char *const *keys, int *npos)
{
    int o = lb_trailing_opts(L);
    *npos = o ? o - 1 : lua_gettop(L);
    if (o) lb_check_keys(L, o, keys);
    return o;
}

bool lb_given(lua_State *L, int idx, int npos) { return idx <= npos && !lua_isnil(L, idx); }

double lb_num_arg(lua_State *L, int idx, int npos, int o, const char *key, double def)
{
    double v = lb_given(L, idx, npos) ? lb_check_num(L, idx) : def;
    return lb_opt_num(L, o, key, v);
}

lua_Integer lb_integer_arg(lua_State *L, int idx, int npos, int o, const char *key,
                           lua_Integer def)
{
    lua_Integer v = lb_given(L, idx, npos) ? luaL_checkinteger(L, idx) : def;
    return lb_opt_int(L, o, key, v);
}

int lb_int_arg(lua_State *L, int idx, int npos, int o, const char *key, int def)
{
    lua_Integer v = lb_integer_arg(L, idx, npos, o, key, def);
    if (v < INT_MIN || v > INT_MAX) {
        if (lb_opt_has(L, o, key))
            luaL_argerror(L, o, lua_pushfstring(L, "option '%s' out of range", key));
        luaL_argerror(L, idx, lua_pushfstring(L, "'%s' out of range", key));
    }
    return (int)v;
}

bool lb_bool_arg(lua_State *L, int idx, int npos, int o, const char *key, bool def)
{
    bool v = lb_given(L, idx, npos) ? lb_check_bool(L, idx) : def;
    return lb_opt_bool(L, o, key, v);
}

lm_tensor *lb_tensor_arg(lua_State *L, int idx, int npos, int o, const char *key)
{
    lm_tensor *t = lb_given(L, idx, npos) ? lb_check(L, idx) : NULL;
    lm_tensor *ot = lb_opt_tensor_field(L, o, key);
    return ot ? ot : t;
}

int lb_dims_arg(lua_State *L, int idx, int npos, int o, int dims[LM_MAX_DIMS])
{
    int n = 0;
    if (lb_given(L, idx, npos)) n = lb_check_dims(L, idx, dims);
    if (lb_opt_has(L, o, "dim")) {
        lua_getfield(L, o, "dim");
        int t = lua_type(L, -1);
        if (t != LUA_TNUMBER && t != LUA_TTABLE)
            luaL_argerror(L, o, "option 'dim' must be an integer or a table of integers");
        n = lb_check_dims(L, lua_gettop(L), dims);
        lua_pop(L, 1);
    }
    return n;
}

/* ---- results -------------------------------------------------------------------------------- */

int lb_unary(lua_State *L, lm_tensor *(*fn)(const lm_tensor *))
{
    lm_tensor *t = lb_check(L, 1);
    lb_box *b = lb_newbox(L);
    lb_setbox(L, b, fn(t));
    return 1;
}

int lb_binary(lua_State *L, lm_tensor *(*fn)(const lm_tensor *, const lm_tensor *))
{
    lm_tensor *a = lb_check(L, 1), *b = lb_check(L, 2);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, fn(a, b));
    return 1;
}

int lb_self_result(lua_State *L, lm_status s)
{
    lb_check_status(L, s);
    lua_settop(L, 1);
    return 1;
}

void lb_setbox_at(lua_State *L, int idx, lm_tensor *t)
{
    lua_pushvalue(L, idx);
    lb_setbox(L, lua_touserdata(L, -1), t);
    lua_pop(L, 1);
}

/* ---- dtypes, shapes, dims ---------------------------------------------------------------- */

static const struct { const char *name; lm_dtype dt; } dtype_names[] = {
    {"f32", LM_F32}, {"float32", LM_F32}, {"float", LM_F32},
    {"f64", LM_F64}, {"float64", LM_F64}, {"double", LM_F64},
    {"i64", LM_I64}, {"int64", LM_I64}, {"long", LM_I64},
    {"u8", LM_U8},   {"uint8", LM_U8},    {"byte", LM_U8}, {"bool", LM_U8},
};

lm_dtype lb_dtype_from_name(lua_State *L, const char *name)
{
    for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++)
        if (strcmp(name, dtype_names[i].name) == 0) return dtype_names[i].dt;
    luaL_error(L, "unknown dtype '%s' (expected f32, f64, i64 or u8)", name);
    return LM_F32;
}

lm_dtype lb_check_dtype(lua_State *L, int idx)
{
    return lb_dtype_from_name(L, luaL_checkstring(L, idx));
}

static int64_t check_size(lua_State *L, int idx, bool allow_neg)
{
    int isnum = 0;
    lua_Integer v = lua_tointegerx(L, idx, &isnum);
    if (!isnum)
        luaL_error(L, "size must be an integer, got %s",
                   lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : luaL_typename(L, idx));
    if (v < 0 && !(allow_neg && v == -1)) luaL_error(L, "size must be >= 0, got %I", v);
    return (int64_t)v;
}

int lb_check_shape(lua_State *L, int idx, int64_t shape[LM_MAX_DIMS], int *next, bool allow_neg)
{
    int n = 0;
    /* {} followed by an options table is the empty shape (a 0-dim tensor), not options. */
    if (lua_type(L, idx) == LUA_TTABLE &&
        (!lb_opts(L, idx) || lua_type(L, idx + 1) == LUA_TTABLE)) {
        n = lb_len(L, idx, LM_MAX_DIMS, "shape");
        for (int i = 0; i < n; i++) {
            lua_geti(L, idx, i + 1);
            shape[i] = check_size(L, -1, allow_neg);
            lua_pop(L, 1);
        }
        if (next) *next = idx + 1;
        return n;
    }
    while (lua_type(L, idx + n) == LUA_TNUMBER) {
        if (n == LM_MAX_DIMS) luaL_error(L, "shape has more than %d dims", LM_MAX_DIMS);
        shape[n] = check_size(L, idx + n, allow_neg);
        n++;
    }
    if (next) *next = idx + n;
    return n;
}

int lb_check_dims(lua_State *L, int idx, int dims[LM_MAX_DIMS])
{
    if (lua_type(L, idx) == LUA_TTABLE) {
        int n = lb_len(L, idx, LM_MAX_DIMS, "dims");
        for (int i = 0; i < n; i++) {
            lua_geti(L, idx, i + 1);
            int isnum = 0;
            lua_Integer d = lua_tointegerx(L, -1, &isnum);
            if (!isnum) luaL_error(L, "dims must be integers, got %s", luaL_typename(L, -1));
            if (d < -LM_MAX_DIMS || d >= LM_MAX_DIMS) luaL_error(L, "dim %I is out of range", d);
            dims[i] = (int)d;
            lua_pop(L, 1);
        }
        return n;
    }
    lua_Integer d = luaL_checkinteger(L, idx);
    if (d < -LM_MAX_DIMS || d >= LM_MAX_DIMS) luaL_argerror(L, idx, "dim out of range");
    dims[0] = (int)d;
    return 1;
}

int lb_len(lua_State *L, int idx, int max, const char *what)
{
    lua_Integer n = luaL_len(L, idx);
    if (n < 0) luaL_error(L, "%s has a negative length (%I)", what, n);
    if (n > max) luaL_error(L, "%s has %I entries; at most %d", what, n, max);
    return (int)n;
}

/* ---- keyword options ------------------------------------------------------------------------ */

bool lb_opts(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE) return false;
    bool has_first = lua_rawgeti(L, idx, 1) != LUA_TNIL;
    lua_pop(L, 1);
    if (has_first) return false;
    /* {} is an empty options table, but also an empty sequence: callers that accept both read it
     * as options, which has no effect. */
    return true;
}

int lb_trailing_opts(lua_State *L)
{
    int top = lua_gettop(L);
    return top > 0 && lb_opts(L, top) ? top : 0;
}

static int opt_field(lua_State *L, int opts_idx, const char *key)
{
    if (opts_idx == 0) return LUA_TNIL;
    int type = lua_getfield(L, opts_idx, key);
    if (type == LUA_TNIL) lua_pop(L, 1);
    return type;
}

/* "bad option 'p' to 'dropout' (number expected, got string)": names the function, as
 * luaL_argerror does for positional arguments. */
static void opt_type_error(lua_State *L, const char *key, const char *want)
{
    lua_Debug ar;
    const char *fname = "?";
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) fname = ar.name;
    luaL_error(L, "bad option '%s' to '%s' (%s expected, got %s)", key, fname, want,
               luaL_typename(L, -1));
}

lua_Integer lb_opt_int(lua_State *L, int opts_idx, const char *key, lua_Integer def)
{
    if (opt_field(L, opts_idx, key) == LUA_TNIL) return def;
    int isnum = 0;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    if (!isnum) opt_type_error(L, key, "integer");
    lua_pop(L, 1);
    return v;
}

double lb_opt_num(lua_State *L, int opts_idx, const char *key, double def)
{
    if (opt_field(L, opts_idx, key) == LUA_TNIL) return def;
    if (lua_type(L, -1) != LUA_TNUMBER) opt_type_error(L, key, "number");
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

bool lb_opt_bool(lua_State *L, int opts_idx, const char *key, bool def)
{
    if (opt_field(L, opts_idx, key) == LUA_TNIL) return def;
    if (lua_type(L, -1) != LUA_TBOOLEAN) opt_type_error(L, key, "boolean");
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

const char *lb_opt_str(lua_State *L, int opts_idx, const char *key, const char *def)
{
    if (opt_field(L, opts_idx, key) == LUA_TNIL) return def;
    if (lua_type(L, -1) != LUA_TSTRING) opt_type_error(L, key, "string");
    /* The string stays alive: it is referenced by the options table, which is on the stack. */
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1);
    return s;
}

lm_dtype lb_opt_dtype_field(lua_State *L, int opts_idx, const char *key, lm_dtype def)
{
    const char *name = lb_opt_str(L, opts_idx, key, NULL);
    return name ? lb_dtype_from_name(L, name) : def;
}

lm_tensor *lb_opt_tensor_field(lua_State *L, int opts_idx, const char *key)
{
    if (opt_field(L, opts_idx, key) == LUA_TNIL) return NULL;
    if (lb_is_closed(L, -1)) luaL_error(L, "bad option '%s' (tensor was closed)", key);
    lm_tensor *t = lb_test(L, -1);
    if (!t) opt_type_error(L, key, "tensor");
    lua_pop(L, 1); /* still referenced by the options table */
    return t;
}

bool lb_opt_has(lua_State *L, int opts_idx, const char *key)
{
    if (opt_field(L, opts_idx, key) == LUA_TNIL) return false;
    lua_pop(L, 1);
    return true;
}

void lb_register(lua_State *L, int mod_idx, int meth_idx, const lb_reg *regs)
{
    for (; regs->name; regs++) {
        lua_pushcfunction(L, regs->fn);
        if (regs->method) {
            lua_pushvalue(L, -1);
            lua_setfield(L, meth_idx, regs->name);
        }
        lua_setfield(L, mod_idx, regs->name);
    }
}
