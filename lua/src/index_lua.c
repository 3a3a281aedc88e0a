/* index_lua.c — t[key] and t[key] = value, following DESIGN.md's indexing rules and PyTorch's
 * semantics (tensor addressing is 0-based):
 *   t[i]                select along dim 0 (negative counts from the end): a view
 *   t[{a, b, ...}]      one entry per leading dim: an integer selects (drops the dim), {} keeps
 *                       the whole dim, {start, end[, step]} slices start..end-1 as Python's
 *                       start:end:step, {start} runs to the end; dims not named are kept whole.
 *                       A view, unless an entry is an index tensor (below): then a copy
 *   t[idx]              idx a 1-D i64 tensor: the rows idx[0], idx[1], ... along dim 0 (a
 *                       copy); as an entry of a table key, along that entry's dim (at most one
 *                       index tensor per key)
 *   t[mask]             mask a u8 tensor of t's shape or of its leading dims: the selected
 *                       elements (or rows) in order, a copy of shape [count, rest...]
 * Index tensors may hold negative positions, counted from the end; a position out of range is
 * an error naming it and the size.
 *
 * Assignment writes into t, as PyTorch's index_put_: the value (a number, a boolean or a
 * tensor) is broadcast to the shape that t[key] reads, leading size-1 dims of a tensor value
 * dropped first.
 *   integers and ranges     the view is filled, or the value copied into it
 *   t[idx] = v              row idx[j] gets v[j] when v has #idx rows; a value that broadcasts
 *                           (a row, a scalar) goes to every selected row; for a repeated index
 *                           the last write wins
 *   t[mask] = v             a number or one-element tensor fills the selected elements; a
 *                           tensor of count(mask) elements fills them in order (masked_scatter);
 *                           with a leading-dims mask, the selected rows
 * Integers are written exactly (lumen_lua.h). The writes are the engine's in-place ops (fill_,
 * copy_, masked_fill_), which refuse a tensor that requires grad while gradients are recorded.
 *
 * Lifetime: views and index copies made on the way live in boxes on the stack (a result that is
 * one of them is returned as that box), so a Lua error never leaks one; C locals hold engine
 * references only across engine calls, which cannot raise. */
#include <limits.h>
#include <stdio.h>

#include "lumen_lua.h"

/* ---- keys ---------------------------------------------------------------------------------- */

/* Replaces the view in box by next (a new reference); raises the engine error when next is
 * NULL. */
static void rebox(lua_State *L, lb_box *box, lm_tensor *next)
{
    if (!next) lb_fail(L);
    lm_release(box->t);
    box->t = next;
}

/* Pushes a box holding a copy of the index tensor at idx (i64, 1-D) with negative positions
 * counted from the end of a dim of size n, and returns the copy. Raises for another kind of
 * tensor or a position out of range; `where` names the dim in the message. */
static lm_tensor *push_index(lua_State *L, int idx, int64_t n, const char *where)
{
    if (lb_is_closed(L, idx)) luaL_error(L, "index: the index tensor for %s was closed", where);
    lm_tensor *k = lb_test(L, idx);
    char buf[96];
    if (k->dtype != LM_I64)
        luaL_error(L, "index: an index tensor must be i64, got %s (for %s)", lm_dtype_name(k->dtype),
                   where);
    if (k->ndim != 1)
        luaL_error(L, "index: an index tensor must be 1-D, got shape %s (for %s)",
                   lm_shape_str(k->ndim, k->shape, buf, sizeof buf), where);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_clone(k));
    int64_t *p = lm_data(box->t);
    int64_t m = lm_numel(box->t);
    for (int64_t j = 0; j < m; j++) {
        if (p[j] < -n || p[j] >= n)
            luaL_error(L, "index: index %I is out of range for %s of size %I", (lua_Integer)p[j],
                       where, (lua_Integer)n);
        if (p[j] < 0) p[j] += n;
    }
    return box->t;
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

/* What a table key addresses: the view its integers and ranges make (an index tensor's dim
 * kept whole) and, when it has an index tensor, that index (normalised) and its dim. */
typedef struct key_view {
    lm_tensor *view;  /* held by a box on the stack */
    lm_tensor *index; /* held by a box above it; NULL when the key has no index tensor */
    int dim;
} key_view;

/* Resolves the table key at stack index key against t, pushing the view's box and then, when
 * there is an index tensor, the index's box (push_index). */
static key_view resolve_table(lua_State *L, lm_tensor *t, int key)
{
    lb_box *hold = lb_newbox(L);
    hold->t = lm_retain(t);
    key_view kv = {NULL, NULL, -1};
    int n = lb_len(L, key, INT_MAX - 1, "index: the key");
    int dim = 0, index_at = 0, index_entry = 0;
    for (int i = 1; i <= n; i++) {
        int type = lua_geti(L, key, i);
        if (type == LUA_TNUMBER) {
            int isnum = 0;
            lua_Integer idx = lua_tointegerx(L, -1, &isnum);
            if (!isnum) luaL_error(L, "index: entry %d must be an integer, got %s", i, lua_tostring(L, -1));
            rebox(L, hold, lm_select(hold->t, dim, (int64_t)idx));
        } else if (type == LUA_TTABLE) {
            int r = lua_gettop(L);
            int len = lb_len(L, r, INT_MAX - 1, "index: a range entry");
            if (len > 3) luaL_error(L, "index: range entry %d has %d numbers; at most 3 ({start, end, step})", i, len);
            if (len > 0) {
                int64_t start = range_bound(L, r, 1, 0);
                int64_t end = range_bound(L, r, 2, INT64_MAX);
                int64_t stp = range_bound(L, r, 3, 1);
                rebox(L, hold, lm_slice(hold->t, dim, start, end, stp));
            }
            dim++;
        } else if (lb_is_tensor(L, -1)) {
            if (index_at)
                luaL_error(L, "index: entries %d and %d are both index tensors; a key takes at "
                              "most one (index one dim at a time)", index_entry, i);
            index_at = lua_gettop(L); /* stays on the stack until it is copied */
            index_entry = i;
            kv.dim = dim++;
            continue;
        } else {
            luaL_error(L, "index: entry %d must be an integer, a range table or an index tensor, got %s",
                       i, luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    if (index_at) {
        if (kv.dim >= hold->t->ndim)
            luaL_error(L, "index: entry %d addresses dim %d of a tensor with %d dims left",
                       index_entry, kv.dim, hold->t->ndim);
        /* Each entry addresses one leading dim of t, so entry i is t's dim i - 1. */
        char where[32];
        snprintf(where, sizeof where, "dim %d", index_entry - 1);
        kv.index = push_index(L, index_at, hold->t->shape[kv.dim], where);
        lua_remove(L, index_at);
    }
    kv.view = hold->t;
    return kv;
}

/* The number of leading dims of t that the u8 mask covers; raises unless the mask's shape is
 * t's or that of its leading dims. */
static int mask_dims(lua_State *L, const lm_tensor *t, const lm_tensor *mask)
{
    bool ok = mask->ndim >= 1 && mask->ndim <= t->ndim;
    for (int d = 0; ok && d < mask->ndim; d++) ok = mask->shape[d] == t->shape[d];
    if (!ok) {
        char a[96], b[96];
        lm_shape_str(t->ndim, t->shape, a, sizeof a);
        lm_shape_str(mask->ndim, mask->shape, b, sizeof b);
        luaL_error(L, "index: mask %s does not match tensor %s (a mask has the tensor's shape or "
                      "that of its leading dims)", b, a);
    }
    return mask->ndim;
}

/* Pushes a box holding the mask as a contiguous tensor, and returns it. */
static lm_tensor *push_contiguous_mask(lua_State *L, const lm_tensor *mask)
{
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_contiguous(mask));
    return box->t;
}

/* t's shape with the k dims the mask covers merged into one: [count of positions, rest...]. */
static int rows_shape(const lm_tensor *t, int k, int64_t shape[LM_MAX_DIMS])
{
    int64_t lead = 1;
    for (int d = 0; d < k; d++) lead *= t->shape[d];
    shape[0] = lead;
    for (int d = k; d < t->ndim; d++) shape[1 + d - k] = t->shape[d];
    return 1 + t->ndim - k;
}

/* ---- t[key] ---------------------------------------------------------------------------------- */

/* t[mask]: the selected elements (rows) of t, as [count, rest...]. */
static int mask_get(lua_State *L, lm_tensor *t, const lm_tensor *mask)
{
    int k = mask_dims(L, t, mask);
    lm_tensor *m = push_contiguous_mask(L, mask);
    const uint8_t *mp = lm_data(m);
    int64_t n = lm_numel(m), count = 0;
    for (int64_t i = 0; i < n; i++) count += mp[i] != 0;
    lb_box *pos = lb_newbox(L);
    lb_setbox(L, pos, lm_empty(1, &count, LM_I64));
    int64_t *pp = lm_data(pos->t), j = 0;
    for (int64_t i = 0; i < n; i++)
        if (mp[i]) pp[j++] = i;
    int64_t shape[LM_MAX_DIMS];
    int nd = rows_shape(t, k, shape);
    /* A view when t's strides allow it, else a copy: the result is a copy either way. */
    lb_box *rows = lb_newbox(L);
    lb_setbox(L, rows, lm_reshape(t, nd, shape));
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_index_select(rows->t, 0, pos->t));
    return 1;
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
        key_view kv = resolve_table(L, t, 2);
        if (!kv.index) return 1; /* the view's box, on top */
        lb_box *box = lb_newbox(L);
        lb_setbox(L, box, lm_index_select(kv.view, kv.dim, kv.index));
        return 1;
    }
    if (lb_is_closed(L, 2)) return luaL_error(L, "index: the key tensor was closed");
    lm_tensor *k = lb_test(L, 2);
    if (k && k->dtype == LM_U8) return mask_get(L, t, k);
    if (k && k->dtype == LM_I64) {
        if (t->ndim == 0) return luaL_error(L, "index: a 0-dim tensor cannot take an index tensor");
        lm_tensor *idx = push_index(L, 2, t->shape[0], "dim 0");
        lb_box *box = lb_newbox(L);
        lb_setbox(L, box, lm_index_select(t, 0, idx));
        return 1;
    }
    return luaL_error(L, "index: cannot index a tensor with %s (use an integer, a table of "
                         "ranges, a u8 mask or an i64 index tensor)",
                      k ? lm_dtype_name(k->dtype) : luaL_typename(L, 2));
}

/* ---- t[key] = value ------------------------------------------------------------------------- */

/* The value of an assignment: a number a double carries exactly (box NULL, d), or a tensor held
 * by a box on the stack (a tensor value, or an exact 0-dim tensor for a larger integer). */
typedef struct value {
    lb_box *box;
    double d;
} value;

/* Reads the value at stack index 3, for writing into dst. Called before any view is made, so a
 * bad value raises with nothing to release. */
static value check_value(lua_State *L, const lm_tensor *dst)
{
    value v = {NULL, 0};
    int vtype = lua_type(L, 3);
    if (vtype == LUA_TNUMBER || vtype == LUA_TBOOLEAN) {
        lb_scalar s = lb_check_scalar(L, 3);
        v.d = s.d;
        if (!lb_scalar_exact(s)) {
            v.box = lb_newbox(L);
            lb_setbox(L, v.box, lb_scalar_tensor(s, dst->dtype));
        }
        return v;
    }
    if (!lb_is_tensor(L, 3))
        luaL_error(L, "index assignment: value must be a number or a tensor, got %s",
                   luaL_typename(L, 3));
    lm_tensor *src = lb_check(L, 3);
    v.box = lb_newbox(L);
    /* Rows are written one at a time: a value sharing dst's memory is copied first, so that no
     * row is read after an earlier row overwrote it. */
    if (src->storage == dst->storage) lb_setbox(L, v.box, lm_clone(src));
    else v.box->t = lm_retain(src);
    return v;
}

/* The value as one number when it is one (a number, or a one-element tensor outside any graph
 * whose element a double holds exactly), for the fill fast paths. */
static bool value_scalar(const value *v, double *d)
{
    if (!v->box) {
        *d = v->d;
        return true;
    }
    const lm_tensor *x = v->box->t;
    if (lm_numel(x) != 1 || x->requires_grad || x->storage->device != LM_CPU) return false;
    if (lm_item(x, d) != LM_OK) return false;
    if (x->dtype != LM_I64) return true;
    return lb_scalar_exact((lb_scalar){*d, *(const int64_t *)lm_data(x), true});
}

/* Drops leading size-1 dims of a tensor value that has more than ndim dims, as PyTorch does
 * before broadcasting an assigned value. */
static void fit_value(lua_State *L, value *v, int ndim)
{
    while (v->box->t->ndim > ndim && v->box->t->shape[0] == 1)
        rebox(L, v->box, lm_select(v->box->t, 0, 0));
}

static void broadcast_error(lua_State *L, const lm_tensor *v, int ndim, const int64_t *shape,
                            const char *why)
{
    if (lm_last_status() == LM_ERR_MEMORY) lb_fail(L);
    char a[96], b[96];
    luaL_error(L, "index assignment: a value of shape %s cannot be broadcast to %s, the shape %s",
               lm_shape_str(v->ndim, v->shape, a, sizeof a), lm_shape_str(ndim, shape, b, sizeof b),
               why);
}

/* Writes the value into the view dst. */
static void write_view(lua_State *L, lm_tensor *dst, value *v)
{
    if (!v->box) {
        lb_check_status(L, lm_fill_(dst, v->d));
        return;
    }
    fit_value(L, v, dst->ndim);
    lb_check_status(L, lm_copy_(dst, v->box->t));
}

/* Writes the value into the rows idx[0], idx[1], ... of dst along dim: row idx[j] gets slice j
 * (along dim) of the value broadcast to the selection's shape. */
static void write_rows(lua_State *L, lm_tensor *dst, int dim, const lm_tensor *idx, value *v)
{
    const int64_t *p = lm_data(idx);
    int64_t n = lm_numel(idx);
    lm_tensor *src = NULL;
    if (v->box) {
        int64_t shape[LM_MAX_DIMS];
        for (int d = 0; d < dst->ndim; d++) shape[d] = d == dim ? n : dst->shape[d];
        fit_value(L, v, dst->ndim);
        src = lm_expand(v->box->t, dst->ndim, shape);
        if (!src) broadcast_error(L, v->box->t, dst->ndim, shape, "that the index tensor selects");
    }
    lm_status st = LM_OK;
    for (int64_t j = 0; j < n && st == LM_OK; j++) {
        lm_tensor *row = lm_select(dst, dim, p[j]);
        lm_tensor *piece = row && src ? lm_select(src, dim, j) : NULL;
        if (!row || (src && !piece)) st = lm_last_status();
        else st = src ? lm_copy_(row, piece) : lm_fill_(row, v->d);
        lm_release(piece);
        lm_release(row);
    }
    lm_release(src);
    lb_check_status(L, st);
}

/* t[mask] = value: a fill of the selected positions, or the value's rows (its elements, for a
 * full-shape mask) written into them in order. The scatter is vectorised: row r of t takes row
 * src[r] of the value, where src counts the selected positions before r, and
 * t = where(mask, value[src], t). */
static void write_mask(lua_State *L, lm_tensor *t, const lm_tensor *mask, value *v)
{
    int k = mask_dims(L, t, mask);
    /* The mask with t's rank (trailing 1s), so that it broadcasts over the rows it picks. */
    int64_t mshape[LM_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) mshape[d] = d < k ? mask->shape[d] : 1;
    double d;
    if (value_scalar(v, &d)) {
        lm_tensor *m = lm_reshape(mask, t->ndim, mshape);
        lm_status st = m ? lm_masked_fill_(t, m, d) : lm_last_status();
        lm_release(m);
        lb_check_status(L, st);
        return;
    }
    lm_tensor *m = push_contiguous_mask(L, mask);
    const uint8_t *mp = lm_data(m);
    int64_t lead = lm_numel(m), count = 0;
    lb_box *src = lb_newbox(L);
    lb_setbox(L, src, lm_empty(1, &lead, LM_I64));
    int64_t *sp = lm_data(src->t);
    for (int64_t i = 0; i < lead; i++) sp[i] = mp[i] ? count++ : 0;
    int64_t shape[LM_MAX_DIMS];
    int nd = rows_shape(t, k, shape);
    shape[0] = count;
    /* A value with as many elements as the mask selects fills them in order, whatever its
     * shape (masked_scatter). */
    const lm_tensor *x = v->box->t;
    if (k == t->ndim && x->ndim != 1 && lm_numel(x) == count)
        rebox(L, v->box, lm_reshape(x, 1, &count));
    fit_value(L, v, nd);
    lm_tensor *e = lm_expand(v->box->t, nd, shape);
    if (!e) broadcast_error(L, v->box->t, nd, shape, "that the mask selects");
    if (count == 0) {
        lm_release(e);
        return;
    }
    /* Each step fails cleanly on a NULL input, keeping the first error. */
    lm_tensor *g = lm_index_select(e, 0, src->t);
    lm_tensor *full = lm_reshape(g, t->ndim, t->shape);
    lm_tensor *mr = lm_reshape(mask, t->ndim, mshape);
    lm_tensor *w = lm_where(mr, full, t);
    lm_status st = w ? lm_copy_(t, w) : lm_last_status();
    lm_release(w);
    lm_release(mr);
    lm_release(full);
    lm_release(g);
    lm_release(e);
    lb_check_status(L, st);
}

int lb_index_set(lua_State *L)
{
    lua_settop(L, 3);
    lm_tensor *t = lb_check(L, 1);
    int ktype = lua_type(L, 2);
    if (ktype != LUA_TNUMBER && ktype != LUA_TTABLE && lb_is_closed(L, 2))
        return luaL_error(L, "index assignment: the key tensor was closed");
    lm_tensor *k = lb_test(L, 2);
    int isint = 0;
    lua_Integer i = ktype == LUA_TNUMBER ? lua_tointegerx(L, 2, &isint) : 0;
    if (ktype == LUA_TNUMBER && !isint)
        return luaL_error(L, "index: %s is not an integer", lua_tostring(L, 2));
    if (ktype != LUA_TNUMBER && ktype != LUA_TTABLE &&
        !(k && (k->dtype == LM_U8 || k->dtype == LM_I64)))
        return luaL_error(L, "index assignment: cannot index a tensor with %s",
                          k ? lm_dtype_name(k->dtype) : luaL_typename(L, 2));
    value v = check_value(L, t);
    if (ktype == LUA_TNUMBER) {
        lb_box *box = lb_newbox(L);
        lb_setbox(L, box, lm_select(t, 0, (int64_t)i));
        write_view(L, box->t, &v);
    } else if (ktype == LUA_TTABLE) {
        key_view kv = resolve_table(L, t, 2);
        if (kv.index) write_rows(L, kv.view, kv.dim, kv.index, &v);
        else write_view(L, kv.view, &v);
    } else if (k->dtype == LM_U8) {
        write_mask(L, t, k, &v);
    } else {
        if (t->ndim == 0) return luaL_error(L, "index: a 0-dim tensor cannot take an index tensor");
        write_rows(L, t, 0, push_index(L, 2, t->shape[0], "dim 0"), &v);
    }
    return 0;
}
