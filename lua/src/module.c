/* module.c — luaopen_lumen_core: the C module `lumen.core`. It builds the module table and the
 * tensor method table from each binding file, makes the tensor metatable, and points the
 * arithmetic metamethods at the module's functions (which take numbers on either side).
 * lua/lumen/init.lua adds the Lua libraries on top (`require "lumen"`). */
#include "lumen_lua.h"

#ifndef LUMEN_VERSION
#define LUMEN_VERSION "unknown"
#endif

static const struct { const char *meta, *fn; } arith[] = {
    {"__add", "add"}, {"__sub", "sub"}, {"__mul", "mul"},
    {"__div", "div"}, {"__pow", "pow"}, {"__unm", "neg"},
};

int luaopen_lumen_core(lua_State *L);

int luaopen_lumen_core(lua_State *L)
{
    lua_newtable(L);
    int mod = lua_gettop(L);
    lua_newtable(L);
    int meth = lua_gettop(L);

    lb_open_tensor(L, mod, meth);   /* first: it creates the metatable the others' boxes use */
    lb_open_ops(L, mod, meth);
    lb_open_math(L, mod, meth);
    lb_open_grad(L, mod, meth);
    lb_open_nn(L, mod, meth);
    lb_open_io(L, mod, meth);

    luaL_getmetatable(L, LB_TENSOR_MT);
    for (size_t i = 0; i < sizeof arith / sizeof arith[0]; i++) {
        if (lua_getfield(L, mod, arith[i].fn) != LUA_TFUNCTION)
            return luaL_error(L, "lumen.core: missing function '%s'", arith[i].fn);
        lua_setfield(L, -2, arith[i].meta);
    }
    lua_pop(L, 1);

    /* lm.Tensor: the method table, for extending tensors from Lua and for help(). */
    lua_pushvalue(L, meth);
    lua_setfield(L, mod, "Tensor");
    static const char *const dtypes[] = {"f32", "f64", "i64", "u8"};
    for (int i = 0; i < 4; i++) {
        lua_pushstring(L, dtypes[i]);
        lua_setfield(L, mod, dtypes[i]);
    }
    lua_pushliteral(L, LUMEN_VERSION);
    lua_setfield(L, mod, "version");
    lua_pop(L, 1); /* methods */
    return 1;
}
