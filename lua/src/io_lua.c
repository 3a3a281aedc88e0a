/* io_lua.c — the engine's file formats from Lua: lm.load_npy / lm.save_npy,
 * lm.safetensors_load / lm.safetensors_save (the raw layer under lm.save, lm.load and
 * lm.checkpoint in lua/lumen/serialize.lua), lm.load_idx and lm.load_csv, and the guard
 * userdata that keeps their C memory from leaking on a Lua error. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lumen_lua.h"

static int l_load_npy(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_load_npy(path));
    return 1;
}

static int l_save_npy(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    lb_check_status(L, lm_save_npy(t, luaL_checkstring(L, 2)));
    return 0;
}

static int l_load_idx(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_load_idx(path));
    return 1;
}

/* ---- guards: C memory owned by a userdata -------------------------------------------------- */

/* C memory that a Lua error must not leak (column names, a tensor file) is handed to a guard: a
 * userdata whose __gc (or an explicit guard_release) frees it with the guard's own function.
 * The guard is pushed before the memory exists, as tensor boxes are. */
#define GUARD_MT "lumen.Guard"

typedef struct guard {
    void (*free_fn)(struct guard *g);
    void *p;
    int n;
} guard;

static guard *guard_new(lua_State *L, void (*free_fn)(guard *g))
{
    guard *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->free_fn = free_fn;
    g->p = NULL;
    g->n = 0;
    luaL_setmetatable(L, GUARD_MT);
    return g;
}

/* Frees now what g holds; idempotent, so the later __gc does nothing. */
static void guard_release(guard *g)
{
    if (g->p) g->free_fn(g);
    g->p = NULL;
}

static int guard_gc(lua_State *L)
{
    guard_release(luaL_checkudata(L, 1, GUARD_MT));
    return 0;
}

static void free_names(guard *g)
{
    char **names = g->p;
    for (int i = 0; i < g->n; i++) free(names[i]);
    free(names);
}

static void free_tensor_file(guard *g) { lm_tensor_file_free(g->p); }

/* ---- CSV ------------------------------------------------------------------------------------ */

/* lm.load_csv(path, {header=true, delimiter=",", dtype="f32"}) -> tensor, column names. */
static int l_load_csv(lua_State *L)
{
    static const char *const keys[] = {"header", "delimiter", "dtype", NULL};
    const char *path = luaL_checkstring(L, 1);
    int opts = 0;
    if (!lua_isnoneornil(L, 2)) {
        if (!lb_opts(L, 2)) return luaL_argerror(L, 2, "options table expected");
        lb_check_keys(L, 2, keys);
        opts = 2;
    }
    bool header = lb_opt_bool(L, opts, "header", true);
    const char *delim = lb_opt_str(L, opts, "delimiter", ",");
    if (strlen(delim) != 1) return luaL_error(L, "load_csv: delimiter must be one character, got '%s'", delim);
    lm_dtype dt = lb_opt_dtype_field(L, opts, "dtype", LM_F32);
    guard *names = guard_new(L, free_names);
    lb_box *box = lb_newbox(L);
    char **cols = NULL;
    int ncols = 0;
    lm_tensor *t = lm_load_csv(path, header, delim[0], dt, header ? &cols : NULL, &ncols);
    names->p = cols;
    names->n = cols ? ncols : 0;
    lb_setbox(L, box, t);
    lua_createtable(L, ncols, 0);
    for (int i = 0; cols && i < ncols; i++) {
        lua_pushstring(L, cols[i]);
        lua_rawseti(L, -2, i + 1);
    }
    /* Free the C strings now rather than at the next collection. */
    guard_release(names);
    return 2;
}

/* ---- safetensors ---------------------------------------------------------------------------- */

/* lm.safetensors_load(path) -> names (sequence), tensors (sequence), metadata (table). */
static int l_safetensors_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    guard *fg = guard_new(L, free_tensor_file);
    lm_tensor_file *f = lm_safetensors_load(path);
    if (!f) return lb_fail(L);
    fg->p = f;
    lua_createtable(L, f->n, 0);
    int names = lua_gettop(L);
    lua_createtable(L, f->n, 0);
    int tensors = lua_gettop(L);
    for (int i = 0; i < f->n; i++) {
        lua_pushstring(L, f->names[i]);
        lua_rawseti(L, names, i + 1);
        lb_box *box = lb_newbox(L);
        lb_setbox(L, box, f->tensors[i]); /* the box takes the file's reference */
        f->tensors[i] = NULL;
        lua_rawseti(L, tensors, i + 1);
    }
    lua_createtable(L, 0, f->n_meta);
    for (int i = 0; i < f->n_meta; i++) {
        lua_pushstring(L, f->meta_values[i]);
        lua_setfield(L, -2, f->meta_keys[i]);
    }
    guard_release(fg);
    return 3;
}

/* lm.safetensors_save(path, names, tensors[, metadata]): names and tensors are sequences of the
 * same length; metadata a table of string keys and string values. */
static int l_safetensors_save(lua_State *L)
{
    /* Exactly four slots, so that the arrays pushed below never stand in for a missing
     * metadata argument. */
    lua_settop(L, 4);
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!lua_isnil(L, 4) && lua_type(L, 4) != LUA_TTABLE)
        return luaL_argerror(L, 4, "metadata must be a table of strings");
    int n = lb_len(L, 2, INT_MAX - 1, "safetensors_save: names");
    int nt = lb_len(L, 3, INT_MAX - 1, "safetensors_save: tensors");
    if (nt != n) return luaL_error(L, "safetensors_save: %d names but %d tensors", n, nt);
    /* Arrays live in Lua userdata so an error frees them. Names and tensors stay referenced by
     * the argument tables for the duration of the call. */
    const char **nm = lua_newuserdatauv(L, sizeof(char *) * ((size_t)n + 1), 0);
    lm_tensor **ts = lua_newuserdatauv(L, sizeof(lm_tensor *) * ((size_t)n + 1), 0);
    for (int i = 0; i < n; i++) {
        lua_geti(L, 2, i + 1);
        size_t len;
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "safetensors_save: name %d is a %s, not a string", i + 1, luaL_typename(L, -1));
        nm[i] = lua_tolstring(L, -1, &len);
        if (strlen(nm[i]) != len) return luaL_error(L, "safetensors_save: name %d contains a NUL byte", i + 1);
        lua_pop(L, 1);
        lua_geti(L, 3, i + 1);
        if (lb_is_closed(L, -1))
            return luaL_error(L, "safetensors_save: tensor '%s' (%d) was closed", nm[i], i + 1);
        ts[i] = lb_test(L, -1);
        if (!ts[i]) return luaL_error(L, "safetensors_save: '%s' is a %s, not a tensor", nm[i], luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    int nmeta = 0;
    const char **mk = NULL, **mv = NULL;
    if (lua_type(L, 4) == LUA_TTABLE) {
        for (lua_pushnil(L); lua_next(L, 4); lua_pop(L, 1)) {
            if (nmeta == INT_MAX - 1) return luaL_error(L, "safetensors_save: too many metadata entries");
            nmeta++;
        }
        mk = lua_newuserdatauv(L, sizeof(char *) * ((size_t)nmeta + 1), 0);
        mv = lua_newuserdatauv(L, sizeof(char *) * ((size_t)nmeta + 1), 0);
        int i = 0;
        for (lua_pushnil(L); lua_next(L, 4); lua_pop(L, 1)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "safetensors_save: metadata keys and values must be strings "
                                     "(got %s = %s)", luaL_typename(L, -2), luaL_typename(L, -1));
            size_t klen, vlen;
            mk[i] = lua_tolstring(L, -2, &klen);
            mv[i] = lua_tolstring(L, -1, &vlen);
            if (strlen(mk[i]) != klen || strlen(mv[i]) != vlen)
                return luaL_error(L, "safetensors_save: metadata '%s' contains a NUL byte", mk[i]);
            i++;
        }
    }
    lb_check_status(L, lm_safetensors_save(path, n, nm, ts, nmeta, mk, mv));
    return 0;
}

static const lb_reg io_regs[] = {
    {"load_npy", l_load_npy, false},
    {"save_npy", l_save_npy, true},
    {"load_idx", l_load_idx, false},
    {"load_csv", l_load_csv, false},
    {"safetensors_load", l_safetensors_load, false},
    {"safetensors_save", l_safetensors_save, false},
    {NULL, NULL, false},
};

void lb_open_io(lua_State *L, int mod_idx, int meth_idx)
{
    if (luaL_newmetatable(L, GUARD_MT)) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lb_register(L, mod_idx, meth_idx, io_regs);
}
