/* tensor_lua.c — the tensor userdata: boxes, the metatable (fields, __gc/__close, __tostring,
 * __len), conversions between Lua values and tensors (lm.tensor, totable, item, frombytes,
 * tobytes), t:size and friends, and lm.randperm / isatty / perf_counter.
 *
 * Lua's collector sees tensor memory: Lua 5.4 has no external-memory API (NOTES.md), so fresh
 * tensor bytes are added to the collector's debt (LUA_GCSTEP) as if Lua had allocated them, and
 * a loop of temporaries is collected without collectgarbage(). The collector is pushed once
 * PACE_BYTES of fresh tensor memory have accumulated. Small on purpose: memory freed promptly is
 * reused while still in cache. Measured with bench/nn_step.lua (MLP, 1 thread, Lua over C):
 * 1.09-1.11 pushing every 1 KiB to 1 MiB, 1.18 every 4 MiB; pushing only after fresh bytes
 * reached half the live tensor bytes (Lua's own rule for its heap) made an MNIST epoch 35%
 * slower, the dataset being live. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lumen_lua.h"

/* ---- boxes -------------------------------------------------------------------------------- */

#define PACE_BYTES ((size_t)256 << 10)

/* Fresh tensor bytes not yet reported to the collector; one per process is enough: it only
 * paces the collector. */
static size_t g_fresh;

static void count_fresh(lua_State *L, size_t nbytes)
{
    g_fresh += nbytes;
    if (g_fresh >= PACE_BYTES) {
        size_t kb = g_fresh / 1024;
        g_fresh = 0;
        lua_gc(L, LUA_GCSTEP, kb > 1 << 20 ? 1 << 20 : (int)kb);
    }
}

lb_box *lb_newbox(lua_State *L)
{
    lb_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->t = NULL;
    luaL_setmetatable(L, LB_TENSOR_MT);
    return box;
}

void lb_setbox(lua_State *L, lb_box *box, lm_tensor *t)
{
    if (!t) lb_fail(L);
    box->t = t;
    /* Each storage is counted once, when a box first holds it: a view shares a storage that
     * was counted when it was made (counting views too made every t[i] look like an
     * allocation), and an op that saves its output for backward (relu) shares it with the
     * graph, so its refcount says nothing about freshness. */
    if (!t->storage->host_counted) {
        t->storage->host_counted = true;
        count_fresh(L, t->storage->nbytes);
    }
}

void lb_push(lua_State *L, lm_tensor *t)
{
    if (!t) lb_fail(L);
    /* For tensors that already exist elsewhere (t.grad): their memory is not new, so it is not
     * counted. lua_newuserdatauv may raise here and leak t on out-of-memory; callers that can
     * create the box first use lb_newbox + lb_setbox instead. */
    lb_box *box = lb_newbox(L);
    box->t = t;
}

lm_tensor *lb_test(lua_State *L, int idx)
{
    lb_box *box = luaL_testudata(L, idx, LB_TENSOR_MT);
    return box ? box->t : NULL;
}

bool lb_is_tensor(lua_State *L, int idx) { return luaL_testudata(L, idx, LB_TENSOR_MT) != NULL; }

bool lb_is_closed(lua_State *L, int idx)
{
    lb_box *box = luaL_testudata(L, idx, LB_TENSOR_MT);
    return box && !box->t;
}

lm_tensor *lb_check(lua_State *L, int idx)
{
    lb_box *box = luaL_testudata(L, idx, LB_TENSOR_MT);
    if (!box) {
        const char *got = luaL_typename(L, idx);
        luaL_argerror(L, idx, lua_pushfstring(L, "tensor expected, got %s", got));
    }
    if (!box->t) luaL_argerror(L, idx, "tensor was closed (used after <close> or free)");
    return box->t;
}

lm_tensor *lb_opt(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return NULL;
    return lb_check(L, idx);
}

/* ---- errors ------------------------------------------------------------------------------ */

int lb_fail(lua_State *L)
{
    const char *msg = lm_last_error();
    return luaL_error(L, "%s", msg && *msg ? msg : "engine error (no message)");
}

void lb_check_status(lua_State *L, lm_status s)
{
    if (s != LM_OK) lb_fail(L);
}

/* Run under lua_pcall by lb_push_cstring: the string is a light userdata argument. */
static int push_cstring_protected(lua_State *L)
{
    lua_pushstring(L, lua_touserdata(L, 1));
    return 1;
}

int lb_push_cstring(lua_State *L, char *s)
{
    if (!s) return lb_fail(L);
    /* lua_checkstack reports failure instead of raising, so s cannot leak before the pcall. */
    if (!lua_checkstack(L, 2)) {
        free(s);
        return luaL_error(L, "out of memory (Lua stack)");
    }
    lua_pushcfunction(L, push_cstring_protected);
    lua_pushlightuserdata(L, s);
    int rc = lua_pcall(L, 1, 1, 0);
    free(s);
    if (rc != LUA_OK) return lua_error(L);
    return 1;
}

/* ---- lm.tensor: nested Lua tables -> tensor ---------------------------------------------- */

/* At most this many elements: their 8-byte slots must not overflow a size_t. */
#define NEST_MAX_NUMEL (INT64_MAX / 16)

typedef struct {
    int ndim;
    int64_t shape[LM_MAX_DIMS];
} nest_info;

/* Finds the shape from the first element of each level (nest_fill checks every level against
 * it) and returns the element count. */
static int64_t nest_shape(lua_State *L, int idx, nest_info *info)
{
    lua_pushvalue(L, idx);
    info->ndim = 0;
    int64_t n = 1;
    while (lua_type(L, -1) == LUA_TTABLE) {
        if (info->ndim == LM_MAX_DIMS) luaL_error(L, "tensor: more than %d nested levels", LM_MAX_DIMS);
        int64_t len = lb_len(L, -1, INT_MAX - 1, "tensor: a nested table");
        info->shape[info->ndim++] = len;
        if (len == 0) {
            n = 0;
            break;
        }
        if (n > NEST_MAX_NUMEL / len) luaL_error(L, "tensor: too many elements");
        n *= len;
        lua_geti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    return n;
}

/* One element: an int64 while every element so far is an integer (or a boolean), a double
 * from the first float on. Integers thus keep all 64 bits (math.maxinteger included). */
typedef union {
    int64_t i;
    double d;
} nest_slot;

typedef struct {
    nest_slot *out;
    int64_t pos;
    bool all_int, any_bool;
} nest_fill_state;

static void nest_put(lua_State *L, int idx, nest_fill_state *st)
{
    nest_slot *o = &st->out[st->pos];
    if (lua_isinteger(L, idx) || lua_isboolean(L, idx)) {
        int64_t v = lua_isboolean(L, idx) ? lua_toboolean(L, idx) : lua_tointeger(L, idx);
        if (lua_isboolean(L, idx)) st->any_bool = true;
        if (st->all_int) o->i = v;
        else o->d = (double)v;
    } else {
        if (st->all_int) {
            for (int64_t k = 0; k < st->pos; k++) st->out[k].d = (double)st->out[k].i;
            st->all_int = false;
        }
        o->d = lua_tonumber(L, idx);
    }
    st->pos++;
}

static void nest_fill(lua_State *L, int idx, const nest_info *info, int level,
                      nest_fill_state *st)
{
    if (level == info->ndim) {
        int type = lua_type(L, idx);
        if (type != LUA_TNUMBER && type != LUA_TBOOLEAN) {
            char buf[96];
            lm_shape_str(info->ndim, info->shape, buf, sizeof buf);
            luaL_error(L, "tensor: expected a number at depth %d (shape %s), got %s", level + 1,
                       buf, luaL_typename(L, idx));
        }
        nest_put(L, idx, st);
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE) {
        char buf[96];
        lm_shape_str(info->ndim, info->shape, buf, sizeof buf);
        luaL_error(L, "tensor: ragged nested table: level %d has %s where shape %s expects %I "
                      "entries", level + 1, luaL_typename(L, idx), buf,
                   (lua_Integer)info->shape[level]);
    }
    int64_t len = lb_len(L, idx, INT_MAX - 1, "tensor: a nested table");
    if (len != info->shape[level]) {
        char buf[96];
        lm_shape_str(info->ndim, info->shape, buf, sizeof buf);
        luaL_error(L, "tensor: ragged nested table: level %d has %I entries where shape %s "
                      "expects %I", level + 1, (lua_Integer)len, buf,
                   (lua_Integer)info->shape[level]);
    }
    luaL_checkstack(L, 4, "tensor: nesting too deep");
    for (int64_t i = 0; i < info->shape[level]; i++) {
        lua_geti(L, idx, i + 1);
        nest_fill(L, lua_gettop(L), info, level + 1, st);
        lua_pop(L, 1);
    }
}

/* lm.tensor(value[, {dtype=, requires_grad=}]): a number (0-dim), nested sequences, or a tensor
 * (copied). Without dtype, all-integer data gives i64, booleans u8, otherwise f32 (PyTorch). */
static int l_tensor(lua_State *L)
{
    static const char *const keys[] = {"dtype", "requires_grad", NULL};
    int opts = 0;
    if (!lua_isnoneornil(L, 2)) {
        if (!lb_opts(L, 2)) return luaL_argerror(L, 2, "options table expected");
        lb_check_keys(L, 2, keys);
        opts = 2;
    }
    bool has_dtype = lb_opt_has(L, opts, "dtype");
    lm_dtype dt = lb_opt_dtype_field(L, opts, "dtype", LM_F32);
    bool requires_grad = lb_opt_bool(L, opts, "requires_grad", false);
    lb_box *box;
    if (lb_is_tensor(L, 1)) {
        lm_tensor *src = lb_check(L, 1);
        box = lb_newbox(L);
        lm_tensor *c = lm_clone(src);
        lm_tensor *d = c ? lm_to_dtype(c, has_dtype ? dt : src->dtype) : NULL;
        lm_release(c);
        lm_tensor *det = d ? lm_detach(d) : NULL;
        lm_release(d);
        lb_setbox(L, box, det);
    } else {
        int vtype = lua_type(L, 1);
        if (vtype != LUA_TTABLE && vtype != LUA_TNUMBER && vtype != LUA_TBOOLEAN)
            return luaL_argerror(L, 1, lua_pushfstring(L, "table, number or tensor expected, got %s",
                                                       luaL_typename(L, 1)));
        nest_info info;
        int64_t n = nest_shape(L, 1, &info);
        nest_fill_state st = {
            .out = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(nest_slot), 0),
            .all_int = true,
        };
        nest_fill(L, 1, &info, 0, &st);
        if (!has_dtype) dt = st.any_bool && st.all_int ? LM_U8 : st.all_int && n ? LM_I64 : LM_F32;
        box = lb_newbox(L);
        /* Integers go to dt from int64, so a large one is never rounded through a double. */
        lm_tensor *f = lm_from_data(st.out, st.all_int ? LM_I64 : LM_F64, info.ndim, info.shape);
        lm_tensor *t = f ? lm_to_dtype(f, dt) : NULL;
        lm_release(f);
        lb_setbox(L, box, t);
    }
    if (requires_grad) lb_check_status(L, lm_requires_grad_(box->t, true));
    return 1;
}

/* ---- tensor -> Lua values ------------------------------------------------------------------ */

static void push_element(lua_State *L, const lm_tensor *t, const char *p)
{
    switch (t->dtype) {
    case LM_F32: lua_pushnumber(L, *(const float *)p); break;
    case LM_F64: lua_pushnumber(L, *(const double *)p); break;
    case LM_I64: lua_pushinteger(L, *(const int64_t *)p); break;
    case LM_U8: lua_pushinteger(L, *(const uint8_t *)p); break;
    default: lua_pushnil(L);
    }
}

static void push_nested(lua_State *L, const lm_tensor *t, int level, const char *p)
{
    if (level == t->ndim) {
        push_element(L, t, p);
        return;
    }
    luaL_checkstack(L, 4, "totable: nesting too deep");
    int64_t n = t->shape[level];
    lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
    size_t step = (size_t)t->strides[level] * lm_dtype_size(t->dtype);
    for (int64_t i = 0; i < n; i++) {
        push_nested(L, t, level + 1, p + (ptrdiff_t)(i * (int64_t)step));
        lua_rawseti(L, -2, i + 1);
    }
}

static int l_totable(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    if (t->storage->device != LM_CPU) return luaL_error(L, "totable: tensor is not on the CPU");
    push_nested(L, t, 0, lm_data(t));
    return 1;
}

static int l_item(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    double v;
    lb_check_status(L, lm_item(t, &v));
    /* An integer is read from the element itself (lm_data points at it whatever the strides):
     * through the double, values beyond 2^53 would be rounded. */
    if (t->storage->device == LM_CPU && (t->dtype == LM_I64 || t->dtype == LM_U8)) {
        push_element(L, t, lm_data(t));
        return 1;
    }
    lua_Integer i;
    if (!lm_dtype_is_float(t->dtype) && lua_numbertointeger(v, &i)) lua_pushinteger(L, i);
    else lua_pushnumber(L, v);
    return 1;
}

static int l_tobytes(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    /* The buffer Lua owns is reserved before the contiguous copy exists: reserving may raise,
     * and nothing that could raise runs while c is held. */
    size_t n = lm_nbytes(t);
    luaL_Buffer b;
    char *dst = luaL_buffinitsize(L, &b, n);
    lm_tensor *c = lm_contiguous(t);
    if (!c) return lb_fail(L);
    memcpy(dst, lm_data(c), n);
    lm_release(c);
    luaL_pushresultsize(&b, n);
    return 1;
}

/* lm.frombytes(s, dtype, shape...): raw little-endian bytes (as tobytes gives) -> tensor. */
static int l_frombytes(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lm_dtype dt = lb_check_dtype(L, 2);
    int64_t shape[LM_MAX_DIMS];
    int ndim;
    if (lua_isnoneornil(L, 3)) {
        ndim = 1;
        shape[0] = (int64_t)(len / lm_dtype_size(dt));
    } else {
        ndim = lb_check_shape(L, 3, shape, NULL, false);
    }
    /* The byte count of the shape, capped at len + 1 so that it cannot overflow. */
    size_t need = lm_dtype_size(dt);
    bool empty = false;
    for (int i = 0; i < ndim; i++) empty = empty || shape[i] == 0;
    for (int i = 0; i < ndim && !empty; i++)
        need = need > len / (size_t)shape[i] ? len + 1 : need * (size_t)shape[i];
    if (empty) need = 0;
    if (need != len) {
        char buf[96];
        lm_shape_str(ndim, shape, buf, sizeof buf);
        return luaL_error(L, "frombytes: %I bytes do not make a %s tensor of shape %s",
                          (lua_Integer)len, lm_dtype_name(dt), buf);
    }
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_from_data(s, dt, ndim, shape));
    return 1;
}

/* ---- methods and fields ------------------------------------------------------------------- */

static void push_shape(lua_State *L, const lm_tensor *t)
{
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* t:size() -> shape sequence; t:size(d) -> size of 0-based dim d. */
static int l_size(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    if (lua_isnoneornil(L, 2)) {
        push_shape(L, t);
        return 1;
    }
    lua_Integer d = luaL_checkinteger(L, 2);
    if (d < -t->ndim || d >= t->ndim || t->ndim == 0) {
        char buf[96];
        return luaL_error(L, "size: dim %I is out of range for a tensor of shape %s (%d dims)", d,
                          lm_shape_str(t->ndim, t->shape, buf, sizeof buf), t->ndim);
    }
    lua_pushinteger(L, lm_size(t, (int)d));
    return 1;
}

static int l_dim(lua_State *L) { lua_pushinteger(L, lb_check(L, 1)->ndim); return 1; }
static int l_numel(lua_State *L) { lua_pushinteger(L, lm_numel(lb_check(L, 1))); return 1; }
static int l_is_contiguous(lua_State *L)
{
    lua_pushboolean(L, lm_is_contiguous(lb_check(L, 1)));
    return 1;
}
static int l_element_size(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lm_dtype_size(lb_check(L, 1)->dtype));
    return 1;
}
static int l_is_tensor(lua_State *L) { lua_pushboolean(L, lb_is_tensor(L, 1)); return 1; }

/* t:all() / t:any(): whether every / some element is non-zero, as a Lua boolean (a tensor of
 * one element would only be unwrapped again in an `if`). */
static int all_any(lua_State *L, bool want_all)
{
    lm_tensor *t = lb_check(L, 1);
    lm_tensor *c = lm_contiguous(t);
    if (!c) return lb_fail(L);
    int64_t n = lm_numel(c);
    size_t es = lm_dtype_size(c->dtype);
    const unsigned char *p = lm_data(c);
    bool result = want_all;
    for (int64_t i = 0; i < n; i++) {
        bool nz = false;
        switch (c->dtype) {
        case LM_F32: nz = ((const float *)p)[i] != 0; break;
        case LM_F64: nz = ((const double *)p)[i] != 0; break;
        case LM_I64: nz = ((const int64_t *)p)[i] != 0; break;
        default: nz = p[(size_t)i * es] != 0; break;
        }
        if (nz != want_all) {
            result = !want_all;
            break;
        }
    }
    lm_release(c);
    lua_pushboolean(L, result);
    return 1;
}
static int l_all(lua_State *L) { return all_any(L, true); }
static int l_any(lua_State *L) { return all_any(L, false); }

/* t:free(): gives the memory back now (the same as leaving a <close> scope). */
static int t_close(lua_State *L)
{
    lb_box *box = luaL_checkudata(L, 1, LB_TENSOR_MT);
    lm_tensor *t = box->t;
    box->t = NULL;
    lm_release(t);
    return 0;
}

static int t_tostring(lua_State *L)
{
    lb_box *box = luaL_checkudata(L, 1, LB_TENSOR_MT);
    if (!box->t) {
        lua_pushliteral(L, "tensor(<closed>)");
        return 1;
    }
    return lb_push_cstring(L, lm_to_string(box->t));
}

static int t_len(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    if (t->ndim == 0) return luaL_error(L, "#: a 0-dim tensor has no length (use :item())");
    lua_pushinteger(L, t->shape[0]);
    return 1;
}

/* Fields read as t.NAME. Returns false when NAME is not a field. */
static bool push_field(lua_State *L, lm_tensor *t, const char *k)
{
    switch (k[0]) {
    case 's':
        if (strcmp(k, "shape") == 0) { push_shape(L, t); return true; }
        break;
    case 'd':
        if (strcmp(k, "dtype") == 0) { lua_pushstring(L, lm_dtype_name(t->dtype)); return true; }
        if (strcmp(k, "device") == 0) {
            lua_pushstring(L, t->storage->device == LM_CPU ? "cpu" : "cuda");
            return true;
        }
        break;
    case 'n':
        if (strcmp(k, "ndim") == 0) { lua_pushinteger(L, t->ndim); return true; }
        break;
    case 'g':
        if (strcmp(k, "grad") == 0) {
            if (t->grad) lb_push(L, lm_retain(t->grad));
            else lua_pushnil(L);
            return true;
        }
        break;
    case 'r':
        if (strcmp(k, "requires_grad") == 0) { lua_pushboolean(L, t->requires_grad); return true; }
        break;
    case 'i':
        if (strcmp(k, "is_leaf") == 0) { lua_pushboolean(L, lm_is_leaf(t)); return true; }
        break;
    }
    return false;
}

/* __index: methods (upvalue 1), then fields, then t[i] / t[{...}] / t[mask]. */
static int t_index(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
        lua_pop(L, 1);
        lm_tensor *t = lb_check(L, 1);
        if (push_field(L, t, lua_tostring(L, 2))) return 1;
        return luaL_error(L, "tensor has no field or method '%s'", lua_tostring(L, 2));
    }
    return lb_index_get(L);
}

static int t_newindex(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING) {
        lm_tensor *t = lb_check(L, 1);
        const char *k = lua_tostring(L, 2);
        if (strcmp(k, "grad") == 0) {
            lm_tensor *g = lua_isnil(L, 3) ? NULL : lb_check(L, 3);
            lb_check_status(L, lm_set_grad(t, g));
            return 0;
        }
        if (strcmp(k, "requires_grad") == 0) {
            luaL_checktype(L, 3, LUA_TBOOLEAN);
            lb_check_status(L, lm_requires_grad_(t, lua_toboolean(L, 3)));
            return 0;
        }
        return luaL_error(L, "cannot set field '%s' of a tensor (settable: grad, requires_grad)", k);
    }
    return lb_index_set(L);
}

/* ---- misc module functions ------------------------------------------------------------------ */

/* lm.isatty(fd=1): whether a file descriptor is a terminal (for progress bars). */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty(lua_isnoneornil(L, 1) ? 1 : lb_check_int(L, 1)) == 1);
    return 1;
}

/* lm.perf_counter(): monotonic wall-clock seconds, for timing epochs (os.clock is the CPU time
 * of every thread together). */
static int l_perf_counter(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
    return 1;
}

/* splitmix64: a small, good generator for seeding permutations independently of the engine. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* lm.randperm(n[, {seed=}]): a random permutation of 0..n-1 (i64). With a seed, the result is a
 * function of (seed, n) only; without one, the seed is drawn from the engine's Philox stream,
 * which advances it (so checkpoints, which save the engine RNG state, replay it). */
static int l_randperm(lua_State *L)
{
    static const char *const keys[] = {"seed", NULL};
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 0) return luaL_argerror(L, 1, "n must be >= 0");
    int opts = 0;
    if (!lua_isnoneornil(L, 2)) {
        if (!lb_opts(L, 2)) return luaL_argerror(L, 2, "options table expected");
        lb_check_keys(L, 2, keys);
        opts = 2;
    }
    uint64_t state;
    if (lb_opt_has(L, opts, "seed")) {
        state = (uint64_t)lb_opt_int(L, opts, "seed", 0);
    } else {
        lm_tensor *r = lm_randint(0, INT64_MAX, LM_SHAPE(1), LM_I64);
        if (!r) return lb_fail(L);
        state = (uint64_t)*(int64_t *)lm_data(r);
        lm_release(r);
    }
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_empty(1, (int64_t[]){n}, LM_I64));
    int64_t *p = lm_data(box->t);
    for (int64_t i = 0; i < n; i++) p[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        /* Lemire's unbiased bounded integer in [0, i]. */
        uint64_t bound = (uint64_t)i + 1, x = splitmix64(&state);
        __uint128_t m = (__uint128_t)x * bound;
        uint64_t low = (uint64_t)m;
        if (low < bound) {
            uint64_t thresh = -bound % bound;
            while (low < thresh) {
                x = splitmix64(&state);
                m = (__uint128_t)x * bound;
                low = (uint64_t)m;
            }
        }
        int64_t j = (int64_t)(m >> 64);
        int64_t tmp = p[i];
        p[i] = p[j];
        p[j] = tmp;
    }
    return 1;
}

static const lb_reg tensor_regs[] = {
    {"tensor", l_tensor, false},
    {"frombytes", l_frombytes, false},
    {"is_tensor", l_is_tensor, false},
    {"isatty", l_isatty, false},
    {"perf_counter", l_perf_counter, false},
    {"randperm", l_randperm, false},
    {"totable", l_totable, true},
    {"item", l_item, true},
    {"tobytes", l_tobytes, true},
    {"size", l_size, true},
    {"dim", l_dim, true},
    {"numel", l_numel, true},
    {"nelement", l_numel, true},
    {"is_contiguous", l_is_contiguous, true},
    {"element_size", l_element_size, true},
    {"all", l_all, true},
    {"any", l_any, true},
    {"free", t_close, true},
    {NULL, NULL, false},
};

void lb_open_tensor(lua_State *L, int mod_idx, int meth_idx)
{
    lb_register(L, mod_idx, meth_idx, tensor_regs);
    luaL_newmetatable(L, LB_TENSOR_MT);   /* sets __name, which error messages and tap.lua use */
    lua_pushvalue(L, meth_idx);
    lua_pushcclosure(L, t_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, t_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, t_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, t_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, t_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, t_len);
    lua_setfield(L, -2, "__len");
    lua_pop(L, 1);
}
