/* index_lua.c — t[key] and t[key] = value, following DESIGN.md's indexing rules (tensor
 * addressing is 0-based):
 *   t[i]                select along dim 0 (negative counts from the end)
 *   t[{a, b, ...}]      one entry per leading dim: an integer selects (drops the dim), {} keeps
 *                       the whole dim, {start, end[, step]} slices start..end-1 as Python's
 *                       start:end:step, {start} runs to the end, an i64 tensor picks rows
 *                       (index_select); dims not named are kept whole
 *   t[mask]             u8 mask of t's shape: the selected elements as a 1-D tensor (a copy)
 *   t[idx]              i64 1-D tensor: index_select along dim 0 (a copy)
 * Assignment writes through the same views: a number fills, a tensor is copied (broadcast);
 * t[mask] = v is masked_fill. Selections that are views stay differentiable. */
#include <stdlib.h>

#include "lumen_lua.h"

/* Replaces *cur by next (both owned); raises the engine error when next is NULL. */
static void step(lua_State *L, lm_tensor **cur, lm_tensor *next)
{
    lm_release(*cur);
    *cur = next;
    if (!next) lb_fail(L);
}

static int64_t range_bound(lua_State *L, int tidx, int i, int64_t def)
{
    int type = lua_geti(L, tidx, i);
    int64_t v = def;
    if (type != LUA_TNIL) {
        int isnum = 0;
        v = (int64_t)lua_tointegerx(L, -1, &isnum);
        if (!isnum) luaL_error(L, "index: range bounds must be integers, got %s", luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

/* The view that key (a table of per-dim entries) addresses. Works on a private reference that is
 * kept in a box at the top of the stack so an error in between cannot leak it. */
static lm_tensor *resolve_table(lua_State *L, lm_tensor *t, int key)
{
    lb_box *hold = lb_newbox(L);     /* owns the intermediate result */
    hold->t = lm_retain(t);
    int n = (int)luaL_len(L, key);
    int dim = 0;
    for (int i = 1; i <= n; i++) {
        int type = lua_geti(L, key, i);
        lm_tensor *cur = hold->t;
        if (type == LUA_TNUMBER) {
            int isnum = 0;
            lua_Integer idx = lua_tointegerx(L, -1, &isnum);
            if (!isnum) luaL_error(L, "index: entry %d must be an integer, got %s", i, lua_tostring(L, -1));
            hold->t = NULL;
            step(L, &cur, lm_select(cur, dim, (int64_t)idx));
            hold->t = cur;
        } else if (type == LUA_TTABLE) {
            int r = lua_gettop(L);
            int len = (int)luaL_len(L, r);
            if (len > 3) luaL_error(L, "index: range entry %d has %d numbers; at most 3 ({start, end, step})", i, len);
            if (len > 0) {
                int64_t start = range_bound(L, r, 1, 0);
                int64_t end = range_bound(L, r, 2, INT64_MAX);
                int64_t stp = range_bound(L, r, 3, 1);
                hold->t = NULL;
                step(L, &cur, lm_slice(cur, dim, start, end, stp));
                hold->t = cur;
            }
            dim++;
        } else if (type == LUA_TUSERDATA && lb_is_tensor(L, -1)) {
            lm_tensor *idx = lb_check(L, -1);
            hold->t = NULL;
            step(L, &cur, lm_index_select(cur, dim, idx));
            hold->t = cur;
            dim++;
        } else {
            luaL_error(L, "index: entry %d must be an integer, a range table or an index tensor, got %s",
                       i, luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    lm_tensor *out = hold->t;
    hold->t = NULL;
    lua_pop(L, 1);
    return out;
}

/* Flat positions of the non-zero entries of a u8 mask of t's shape, as an i64 1-D tensor. */
static lm_tensor *mask_positions(lua_State *L, const lm_tensor *t, const lm_tensor *mask)
{
    if (mask->ndim != t->ndim) goto mismatch;
    for (int d = 0; d < t->ndim; d++)
        if (mask->shape[d] != t->shape[d]) goto mismatch;
    lm_tensor *m = lm_contiguous(mask);
    if (!m) lb_fail(L);
    const uint8_t *mp = lm_data(m);
    int64_t n = lm_numel(m), count = 0;
    for (int64_t i = 0; i < n; i++) count += mp[i] != 0;
    lm_tensor *pos = lm_empty(1, (int64_t[]){count}, LM_I64);
    if (!pos) {
        lm_release(m);
        lb_fail(L);
    }
    int64_t *pp = lm_data(pos), k = 0;
    for (int64_t i = 0; i < n; i++)
        if (mp[i]) pp[k++] = i;
    lm_release(m);
    return pos;
mismatch:;
    char a[96], b[96];
    lm_shape_str(t->ndim, t->shape, a, sizeof a);
    lm_shape_str(mask->ndim, mask->shape, b, sizeof b);
    luaL_error(L, "index: mask %s does not match tensor %s", b, a);
    return NULL;
}

int lb_index_get(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int ktype = lua_type(L, 2);
    if (ktype == LUA_TNUMBER) {
        int isnum = 0;
        lua_Integer i = lua_tointegerx(L, 2, &isnum);
        if (!isnum) return luaL_error(L, "index: %s is not an integer", lua_tostring(L, 2));
        lb_box *box = lb_newbox(L);
        lb_setbox(L, box, lm_select(t, 0, (int64_t)i));
        return 1;
    }
    if (ktype == LUA_TTABLE) {
        lm_tensor *v = resolve_table(L, t, 2);
        lb_box *box = lb_newbox(L);  /* may raise after v exists: rare, v is then lost */
        lb_setbox(L, box, v);
        return 1;
    }
    lm_tensor *k = lb_test(L, 2);
    if (k && k->dtype == LM_U8) {
        lb_box *box = lb_newbox(L);
        lm_tensor *pos = mask_positions(L, t, k);
        lm_tensor *flat = lm_reshape(t, 1, (int64_t[]){-1});
        lm_tensor *sel = flat ? lm_index_select(flat, 0, pos) : NULL;
        lm_release(flat);
        lm_release(pos);
        lb_setbox(L, box, sel);
        return 1;
    }
    if (k && k->dtype == LM_I64) {
        lb_box *box = lb_newbox(L);
        lb_setbox(L, box, lm_index_select(t, 0, k));
        return 1;
    }
    return luaL_error(L, "index: cannot index a tensor with %s (use an integer, a table of "
                         "ranges, a u8 mask or an i64 index tensor)",
                      k ? lm_dtype_name(k->dtype) : luaL_typename(L, 2));
}

/* Writes value (stack index 3) into the view v. */
static void assign(lua_State *L, lm_tensor *v)
{
    lm_status s;
    if (lua_type(L, 3) == LUA_TNUMBER) s = lm_fill_(v, lua_tonumber(L, 3));
    else if (lua_type(L, 3) == LUA_TBOOLEAN) s = lm_fill_(v, lua_toboolean(L, 3));
    else s = lm_copy_(v, lb_check(L, 3));
    lm_release(v);
    lb_check_status(L, s);
}

int lb_index_set(lua_State *L)
{
    lm_tensor *t = lb_check(L, 1);
    int ktype = lua_type(L, 2);
    int vtype = lua_type(L, 3);
    if (vtype != LUA_TNUMBER && vtype != LUA_TBOOLEAN && !lb_is_tensor(L, 3))
        return luaL_error(L, "index assignment: value must be a number or a tensor, got %s",
                          luaL_typename(L, 3));
    if (ktype == LUA_TNUMBER) {
        int isnum = 0;
        lua_Integer i = lua_tointegerx(L, 2, &isnum);
        if (!isnum) return luaL_error(L, "index: %s is not an integer", lua_tostring(L, 2));
        lm_tensor *v = lm_select(t, 0, (int64_t)i);
        if (!v) return lb_fail(L);
        assign(L, v);
        return 0;
    }
    if (ktype == LUA_TTABLE) {
        assign(L, resolve_table(L, t, 2));
        return 0;
    }
    lm_tensor *k = lb_test(L, 2);
    if (k && k->dtype == LM_U8) {
        if (vtype == LUA_TNUMBER || vtype == LUA_TBOOLEAN) {
            double v = vtype == LUA_TNUMBER ? lua_tonumber(L, 3) : lua_toboolean(L, 3);
            lb_check_status(L, lm_masked_fill_(t, k, v));
            return 0;
        }
        /* A tensor value: t = where(mask, value, t), value broadcast to t's shape. */
        lm_tensor *w = lm_where(k, lb_check(L, 3), t);
        if (!w) return lb_fail(L);
        lm_status s = lm_copy_(t, w);
        lm_release(w);
        lb_check_status(L, s);
        return 0;
    }
    if (k && k->dtype == LM_I64) {
        if (k->ndim != 1) return luaL_error(L, "index assignment: an index tensor must be 1-D");
        lm_tensor *kc = lm_contiguous(k);
        if (!kc) return lb_fail(L);
        int64_t n = lm_numel(kc);
        /* The index data is copied out so an error in the loop cannot leak kc. */
        int64_t *idx = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(int64_t), 0);
        for (int64_t j = 0; j < n; j++) idx[j] = ((const int64_t *)lm_data(kc))[j];
        lm_release(kc);
        for (int64_t j = 0; j < n; j++) {
            lm_tensor *v = lm_select(t, 0, idx[j]);
            if (!v) return lb_fail(L);
            assign(L, v);
        }
        return 0;
    }
    return luaL_error(L, "index assignment: cannot index a tensor with %s",
                      k ? lm_dtype_name(k->dtype) : luaL_typename(L, 2));
}
