/* grad_lua.c — autograd and engine settings as Lua functions: backward, detach, requires_grad_,
 * set_data_, the grad mode (set_grad_enabled, and no_grad / enable_grad as to-be-closed scopes
 * or around a function), the module scope that names graph nodes (set_scope), graph_json, the
 * thread count, the memory cache, dtype promotion and the allocation-failure testing hook.
 *
 * lm.no_grad() differs from torch.no_grad() in when it acts: PyTorch's context manager turns
 * gradients off when the `with` block is entered, but Lua's to-be-closed variables have no
 * "enter", so `local _ <close> = lm.no_grad()` turns them off at once, when lm.no_grad() is
 * called, and the scope going out restores the previous mode. A scope that is made but never
 * closed leaves gradients off. lm.no_grad(fn, ...) runs fn inside such a scope.
 */

#include "lumen_lua.h"

#define GRAD_MODE_MT "lumen.GradMode"

/* ---- autograd -------------------------------------------------------------------------------- */

/* backward([seed] [, {retain_graph = false}]); seed may be nil. */
static int l_backward(lua_State *L)
{
    static const char *const keys[] = {"retain_graph", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *t = lb_check(L, 1);
    lm_tensor *seed = lb_given(L, 2, npos) ? lb_check(L, 2) : NULL;
    bool retain = lb_bool_arg(L, 3, npos, o, "retain_graph", false);
    lb_check_status(L, lm_backward(t, seed, retain));
    return 0;
}

static int l_detach(lua_State *L) { return lb_unary(L, lm_detach); }

static int l_retain_grad(lua_State *L)
{
    return lb_self_result(L, lm_retain_grad(lb_check(L, 1)));
}

static int l_requires_grad_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    bool on = lua_isnoneornil(L, 2) ? true : lb_check_bool(L, 2);
    return lb_self_result(L, lm_requires_grad_(t, on));
}

/* t:set_data_(src), PyTorch's `t.data = src`: the box t starts holding a detached view of src's
 * memory (any dtype or shape), keeping t's requires_grad flag and dropping its gradient. Every
 * Lua reference to this box sees the change, so an optimizer that holds a parameter keeps
 * working after model:double(). Only a leaf may be rebound: a non-leaf's value is defined by
 * the graph that made it. */
static int l_set_data_(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1), *src = lb_check(L, 2);
    lb_box *box = lua_touserdata(L, 1);
    if (!lm_is_leaf(t)) {
        char buf[96];
        return luaL_error(L, "set_data_: the tensor (shape %s) is not a leaf: it was computed by "
                             "an op; detach it, or rebind the leaf it came from",
                          lm_shape_str(t->ndim, t->shape, buf, sizeof buf));
    }
    lm_tensor *d = lm_detach(src);
    if (!d) return lb_fail(L);
    if (t->requires_grad && lm_requires_grad_(d, true) != LM_OK) {
        lm_release(d);
        return lb_fail(L);
    }
    box->t = d;
    lm_release(t);
    lua_settop(L, 1);
    return 1;
}

static int l_set_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, lm_set_grad_enabled(lb_check_bool(L, 1)));
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

/* Pushes a scope: the mode is set now, and closing the scope restores the previous one. */
static void push_grad_mode(lua_State *L, bool enabled)
{
    grad_mode *g = lua_newuserdatauv(L, sizeof *g, 0);
    luaL_setmetatable(L, GRAD_MODE_MT);
    g->closed = false;
    g->prev = lm_set_grad_enabled(enabled);
}

/* The continuation of with_grad_mode after fn returns (also after fn yielded): its results are
 * everything above the scope at 1; returning closes the scope. */
static int grad_mode_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    return lua_gettop(L) - 1;
}

/* mode() -> a to-be-closed scope; mode(fn, ...) -> fn's results, run inside such a scope. The
 * scope sits in a to-be-closed slot of this C call rather than behind a pcall: an error from fn
 * goes on untouched (a message handler still sees fn's frames) and closes the scope on its way
 * out, and fn may yield. */
static int with_grad_mode(lua_State *L, bool enabled)
{
    if (lua_isnone(L, 1)) {
        push_grad_mode(L, enabled);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 1;
    push_grad_mode(L, enabled);
    lua_insert(L, 1);
    lua_toclose(L, 1);
    lua_callk(L, nargs, LUA_MULTRET, 0, grad_mode_done);
    return grad_mode_done(L, LUA_OK, 0);
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

static int l_graph_json(lua_State *L)
{
    return lb_push_cstring(L, lm_graph_export(lb_check(L, 1)));
}

/* ---- engine settings ------------------------------------------------------------------------- */

static int l_set_num_threads(lua_State *L)
{
    int n = lb_check_int(L, 1);
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

static const lb_reg grad_regs[] = {
    /* autograd */
    {"backward", l_backward, true},
    {"detach", l_detach, true},
    {"retain_grad", l_retain_grad, true},
    {"requires_grad_", l_requires_grad_, true},
    {"set_data_", l_set_data_, true},
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

void lb_open_grad(lua_State *L, int mod_idx, int meth_idx)
{
    if (luaL_newmetatable(L, GRAD_MODE_MT)) {
        lua_pushcfunction(L, grad_mode_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, grad_mode_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lb_register(L, mod_idx, meth_idx, grad_regs);
}
