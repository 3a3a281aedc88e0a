/* io_lua.c — the engine's file formats from Lua: lm.load_npy / lm.save_npy,
 * lm.safetensors_load / lm.safetensors_save (the raw layer under lm.save, lm.load and
 * lm.checkpoint in lua/lumen/serialize.lua), lm.load_idx and lm.load_csv. */
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

/* Column names from lm_load_csv, kept in a userdata so a Lua error while they are turned into
 * Lua strings frees them. */
typedef struct { char **names; int n; } names_box;

static int names_box_gc(lua_State *L)
{
    names_box *b = lua_touserdata(L, 1);
    for (int i = 0; b->names && i < b->n; i++) free(b->names[i]);
    free(b->names);
    b->names = NULL;
    return 0;
}

/* lm.load_csv(path, {header=true, delimiter=",", dtype="f32"}) -> tensor, column names. */
static int l_load_csv(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int opts = lb_opts(L, 2) ? 2 : 0;
    bool header = lb_opt_bool(L, opts, "header", true);
    const char *delim = lb_opt_str(L, opts, "delimiter", ",");
    if (strlen(delim) != 1) return luaL_error(L, "load_csv: delimiter must be one character, got '%s'", delim);
    lm_dtype dt = lb_opt_dtype_field(L, opts, "dtype", LM_F32);
    names_box *nb = lua_newuserdatauv(L, sizeof *nb, 0);
    nb->names = NULL;
    nb->n = 0;
    lua_newtable(L);
    lua_pushcfunction(L, names_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    int nbi = lua_gettop(L);
    lb_box *box = lb_newbox(L);
    int ncols = 0;
    lm_tensor *t = lm_load_csv(path, header, delim[0], dt, header ? &nb->names : NULL, &ncols);
    nb->n = ncols;
    lb_setbox(L, box, t);
    lua_createtable(L, ncols, 0);
    for (int i = 0; nb->names && i < ncols; i++) {
        lua_pushstring(L, nb->names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    /* Free the C strings now rather than at the next collection. */
    lua_pushcfunction(L, names_box_gc);
    lua_pushvalue(L, nbi);
    lua_call(L, 1, 0);
    return 2;
}

/* A tensor file kept in a userdata so a Lua error while building the result frees it. */
typedef struct { lm_tensor_file *f; } file_box;

static int file_box_gc(lua_State *L)
{
    file_box *b = lua_touserdata(L, 1);
    lm_tensor_file_free(b->f);
    b->f = NULL;
    return 0;
}

/* lm.safetensors_load(path) -> names (sequence), tensors (sequence), metadata (table). */
static int l_safetensors_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    file_box *fb = lua_newuserdatauv(L, sizeof *fb, 0);
    fb->f = NULL;
    lua_newtable(L);
    lua_pushcfunction(L, file_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    int fbi = lua_gettop(L);
    fb->f = lm_safetensors_load(path);
    if (!fb->f) return lb_fail(L);
    lm_tensor_file *f = fb->f;
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
    lm_tensor_file_free(f);
    fb->f = NULL;
    lua_remove(L, fbi);
    return 3;
}

/* lm.safetensors_save(path, names, tensors[, metadata]): names and tensors are sequences of the
 * same length; metadata a table of string keys and string values. */
static int l_safetensors_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    int n = (int)luaL_len(L, 2);
    if ((int)luaL_len(L, 3) != n)
        return luaL_error(L, "safetensors_save: %d names but %d tensors", n, (int)luaL_len(L, 3));
    /* Arrays live in Lua userdata so an error frees them. Names and tensors stay referenced by
     * the argument tables for the duration of the call. */
    const char **nm = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    lm_tensor **ts = lua_newuserdatauv(L, sizeof(lm_tensor *) * (size_t)(n + 1), 0);
    for (int i = 0; i < n; i++) {
        lua_geti(L, 2, i + 1);
        size_t len;
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "safetensors_save: name %d is a %s, not a string", i + 1, luaL_typename(L, -1));
        nm[i] = lua_tolstring(L, -1, &len);
        if (strlen(nm[i]) != len) return luaL_error(L, "safetensors_save: name %d contains a NUL byte", i + 1);
        lua_pop(L, 1);
        lua_geti(L, 3, i + 1);
        ts[i] = lb_test(L, -1);
        if (!ts[i]) return luaL_error(L, "safetensors_save: '%s' is a %s, not a tensor", nm[i], luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    int nmeta = 0;
    const char **mk = NULL, **mv = NULL;
    if (lua_type(L, 4) == LUA_TTABLE) {
        for (lua_pushnil(L); lua_next(L, 4); lua_pop(L, 1)) nmeta++;
        mk = lua_newuserdatauv(L, sizeof(char *) * (size_t)(nmeta + 1), 0);
        mv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(nmeta + 1), 0);
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
    } else if (!lua_isnoneornil(L, 4)) {
        return luaL_argerror(L, 4, "metadata must be a table of strings");
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
    lb_register(L, mod_idx, meth_idx, io_regs);
}
