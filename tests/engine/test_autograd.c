/* test_autograd.c — the autograd core: leaves and accumulation, seeds, freed graphs, version
 * checks, no_grad, detach, retain_grad, deep graphs, scopes and the exported graph. Uses views
 * (whose backward lives in view.c) and a tiny op defined here, so it tests the core alone. */
#include "autograd.h"
#include "gradcheck.h"
#include "lumen.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A test op: y = x * x element-wise, saving x; backward 2 * x * g. */
static lm_status square_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = lm__saved(n, 0);
    if (!x) return lm_last_status();
    lm_tensor *two_x = lm_mul_scalar(x, 2.0);
    gi[0] = two_x ? lm_mul(two_x, g) : NULL;
    lm_release(two_x);
    return gi[0] ? LM_OK : lm_last_status();
}
static const lm_grad_op square_grad = {"square", square_backward};

static lm_tensor *square(lm_tensor *x)
{
    bool prev = lm_set_grad_enabled(false); /* compute without recording the primitive */
    lm_tensor *y = lm_mul(x, x);
    lm_set_grad_enabled(prev);
    if (y && lm__needs_grad(1, (const lm_tensor *[]){x})) {
        lm_node *n = lm__record(&square_grad, y, 1, (const lm_tensor *[]){x});
        if (!n || lm__save(n, x)) {
            lm_release(y);
            return NULL;
        }
    }
    return y;
}

static lm_tensor *iota(int ndim, const int64_t *shape, lm_dtype dt)
{
    lm_tensor *t = lm_arange(0, (double)(shape ? lm__shape_numel(ndim, shape) : 1), 1, dt);
    lm_tensor *r = lm_reshape(t, ndim, shape);
    lm_release(t);
    lm_tensor *c = lm_clone(r); /* own storage, a leaf */
    lm_release(r);
    return c;
}

static double at(const lm_tensor *t, const int64_t *idx)
{
    double v = -1;
    if (!t) return -999;
    lm_get(t, idx, &v);
    return v;
}

static void test_leaves(void)
{
    lm_tensor *i = iota(LM_SHAPE(3), LM_I64);
    ok(lm_requires_grad_(i, true) == LM_ERR_DTYPE, "integer tensors cannot require grad");
    has_str(lm_last_error(), "only floating-point tensors can require gradients, got i64", "message");
    lm_release(i);
    lm_tensor *x = iota(LM_SHAPE(2, 3), LM_F64);
    ok(lm_requires_grad_(x, true) == LM_OK && x->requires_grad && lm_is_leaf(x), "a leaf that requires grad");
    lm_tensor *t = lm_transpose(x, 0, 1);
    ok(t->requires_grad && !lm_is_leaf(t) && t->grad_fn, "a view of it records a node");
    ok(lm_requires_grad_(t, false) == LM_ERR_STATE, "a non-leaf cannot stop requiring grad");
    has_str(lm_last_error(), "use detach()", "message says what to do");
    lm_tensor *seed = iota(LM_SHAPE(3, 2), LM_F64);
    ok(lm_backward(t, seed, false) == LM_OK, "backward through transpose with a seed");
    ok(x->grad && at(x->grad, (int64_t[]){1, 2}) == at(seed, (int64_t[]){2, 1}), "x.grad is seed transposed");
    ok(lm_is_contiguous(x->grad), "a leaf's gradient is contiguous");
    lm_tensor *t2 = lm_transpose(x, 0, 1);
    ok(lm_backward(t2, seed, false) == LM_OK && at(x->grad, (int64_t[]){1, 2}) == 2 * at(seed, (int64_t[]){2, 1}),
       "a second backward accumulates");
    lm_zero_grad(x);
    ok(x->grad == NULL, "zero_grad drops the gradient");
    ok(lm_backward(t2, NULL, false) == LM_ERR_SHAPE, "no seed for a non-scalar output fails");
    has_str(lm_last_error(), "only for a one-element output, this one has shape [3,2]", "message");
    lm_tensor *bad = iota(LM_SHAPE(2, 3), LM_F64);
    ok(lm_backward(t2, bad, false) == LM_ERR_SHAPE, "a seed of the wrong shape fails");
    has_str(lm_last_error(), "gradient of shape [2,3] given for a tensor of shape [3,2]", "message names both shapes");
    lm_tensor *plain = iota(LM_SHAPE(2), LM_F64);
    ok(lm_backward(plain, NULL, false) == LM_ERR_STATE, "backward of a tensor that needs no grad fails");
    has_str(lm_last_error(), "does not require grad", "message");
    lm_release(plain);
    lm_release(bad);
    lm_release(t2);
    lm_release(seed);
    lm_release(t);
    lm_release(x);
}

static void test_set_grad(void)
{
    lm_tensor *p = iota(LM_SHAPE(2, 2), LM_F32);
    lm_tensor *g = lm_ones(LM_SHAPE(2, 2), LM_F32);
    ok(lm_set_grad(p, g) == LM_OK && p->grad == g && g->refcount == 2, "set_grad keeps a reference");
    lm_tensor *bad = lm_ones(LM_SHAPE(4), LM_F32);
    ok(lm_set_grad(p, bad) == LM_ERR_SHAPE, "a gradient of another shape is refused");
    has_str(lm_last_error(), "set_grad: a gradient of shape [4] and dtype f32 does not fit a tensor of shape [2,2]",
            "message names both shapes");
    lm_tensor *bad64 = lm_ones(LM_SHAPE(2, 2), LM_F64);
    ok(lm_set_grad(p, bad64) == LM_ERR_SHAPE, "a gradient of another dtype is refused");
    ok(p->grad == g, "a refused gradient leaves the old one");
    ok(lm_set_grad(p, NULL) == LM_OK && p->grad == NULL && g->refcount == 1, "NULL drops it");
    lm_release(bad64);
    lm_release(bad);
    lm_release(g);
    lm_release(p);
}

static void test_saved_tensors(void)
{
    lm_tensor *x = iota(LM_SHAPE(3), LM_F64);
    lm_requires_grad_(x, true);
    lm_tensor *y = square(x);
    lm_tensor *s = lm_select(y, 0, 2);
    ok(lm_backward(s, NULL, true) == LM_OK, "backward with retain_graph");
    ok(at(x->grad, (int64_t[]){2}) == 4 && at(x->grad, (int64_t[]){0}) == 0, "d(x2^2)/dx = [0,0,4]");
    ok(lm_backward(s, NULL, false) == LM_OK && at(x->grad, (int64_t[]){2}) == 8, "a retained graph runs again");
    ok(lm_backward(s, NULL, false) == LM_ERR_STATE, "a third backward through the freed graph fails");
    has_str(lm_last_error(), "backward through the graph a second time", "message");
    has_str(lm_last_error(), "retain_graph", "and names the remedy");
    lm_release(s);
    lm_release(y);

    /* Modifying a saved tensor in place is detected by its version. */
    lm_zero_grad(x);
    lm_tensor *c = lm_clone(x);   /* a non-leaf that is saved by square */
    lm_tensor *y2 = square(c);
    bool prev = lm_set_grad_enabled(false);
    ok(lm_fill_(c, 5.0) == LM_OK, "in-place fill under no_grad");
    lm_set_grad_enabled(prev);
    lm_tensor *s2 = lm_select(y2, 0, 1);
    ok(lm_backward(s2, NULL, false) == LM_ERR_STATE, "backward after the saved tensor changed fails");
    has_str(lm_last_error(), "modified by an in-place operation", "message says so");
    has_str(lm_last_error(), "square", "and names the op");
    lm_release(s2);
    lm_release(y2);
    ok(lm_fill_(c, 1.0) == LM_ERR_STATE, "fill_ of a tensor requiring grad while recording is refused");
    has_str(lm_last_error(), "requires grad; write into it under no_grad", "message");
    /* In-place writes through a view of a graph tensor would bypass the base's history. */
    lm_tensor *v = lm_narrow(c, 0, 0, 2);
    ok(lm_add_scalar_(v, 1.0) == LM_ERR_STATE, "in-place op on a view of a non-leaf is refused");
    has_str(lm_last_error(), "in-place operation on a view (made by slice, shape [2])", "message names the view");
    lm_release(v);
    ok(lm_add_scalar_(x, 1.0) == LM_ERR_STATE, "in-place op on a leaf requiring grad is refused");
    has_str(lm_last_error(), "a leaf tensor that requires grad is used in an in-place operation", "message");
    lm_release(c);
    lm_release(x);
}

static void test_modes(void)
{
    lm_tensor *x = iota(LM_SHAPE(2, 2), LM_F32);
    lm_requires_grad_(x, true);
    ok(lm_grad_enabled(), "gradient mode is on by default");
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *t = lm_transpose(x, 0, 1);
    ok(prev && !t->requires_grad && !t->grad_fn, "no_grad: ops record nothing");
    bool inner = lm_set_grad_enabled(false);
    lm_set_grad_enabled(inner);
    ok(!lm_grad_enabled(), "nested no_grad restores the outer mode");
    lm_set_grad_enabled(prev);
    ok(lm_grad_enabled(), "and the outermost restores recording");
    lm_tensor *d = lm_detach(x);
    ok(d && !d->requires_grad && d->storage == x->storage && lm_is_leaf(d), "detach shares memory, needs no grad");
    lm_tensor *c = lm_clone(x);
    ok(lm_retain_grad(c) == LM_OK, "retain_grad on a non-leaf");
    lm_tensor *v = lm_view(c, LM_SHAPE(4));
    lm_tensor *seed = lm_ones(LM_SHAPE(4), LM_F32);
    ok(lm_backward(v, seed, false) == LM_OK, "backward through view and clone");
    ok(c->grad && at(c->grad, (int64_t[]){1, 1}) == 1, "the non-leaf kept its gradient");
    ok(x->grad && at(x->grad, (int64_t[]){0, 1}) == 1, "and the leaf got its own");
    lm_tensor *f64 = lm_to_dtype(x, LM_F64);
    lm_tensor *seed64 = lm_full(LM_SHAPE(2, 2), 0.5, LM_F64);
    lm_zero_grad(x);
    ok(lm_backward(f64, seed64, false) == LM_OK && x->grad->dtype == LM_F32 &&
       at(x->grad, (int64_t[]){0, 0}) == 0.5, "a conversion's gradient comes back in the input's dtype");
    lm_tensor *ix = lm_to_dtype(x, LM_I64);
    ok(ix && !ix->requires_grad, "converting to an integer dtype ends the graph");
    lm_release(ix);
    lm_release(seed64);
    lm_release(f64);
    lm_release(seed);
    lm_release(v);
    lm_release(c);
    lm_release(d);
    lm_release(t);
    lm_release(x);
}

static void test_view_gradients(void)
{
    lm_tensor *x = iota(LM_SHAPE(3, 1), LM_F64);
    lm_requires_grad_(x, true);
    lm_tensor *e = lm_expand(x, LM_SHAPE(2, 3, 4));
    lm_tensor *seed = lm_ones(LM_SHAPE(2, 3, 4), LM_F64);
    ok(lm_backward(e, seed, false) == LM_OK && at(x->grad, (int64_t[]){1, 0}) == 8,
       "expand's gradient is summed over the broadcast dims (2*4)");
    lm_release(seed);
    lm_release(e);
    lm_release(x);

    lm_tensor *y = iota(LM_SHAPE(4, 5), LM_F64);
    lm_requires_grad_(y, true);
    lm_tensor *sl = lm_slice(y, 1, 1, 5, 2); /* columns 1 and 3 */
    lm_tensor *sel = lm_select(sl, 0, 2);    /* row 2 */
    lm_tensor *g = lm_from_data((double[]){10, 20}, LM_F64, LM_SHAPE(2));
    ok(lm_backward(sel, g, false) == LM_OK, "backward through slice and select");
    bool good = at(y->grad, (int64_t[]){2, 1}) == 10 && at(y->grad, (int64_t[]){2, 3}) == 20;
    double total = 0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 5; j++) total += at(y->grad, (int64_t[]){i, j});
    ok(good && total == 30, "the gradient lands only at the picked elements");
    lm_tensor *p = lm_permute(y, (int[]){1, 0});
    lm_tensor *u = lm_unsqueeze(p, 1);
    lm_tensor *sq = lm_squeeze(u, 1);
    lm_tensor *fl = lm_flatten(sq, 0, -1);
    lm_tensor *seed2 = lm_arange(0, 20, 1, LM_F64);
    lm_zero_grad(y);
    ok(lm_backward(fl, seed2, false) == LM_OK && at(y->grad, (int64_t[]){3, 1}) == 1 * 4 + 3,
       "permute, unsqueeze, squeeze, flatten route each gradient home");
    lm_release(seed2);
    lm_release(fl);
    lm_release(sq);
    lm_release(u);
    lm_release(p);
    lm_release(g);
    lm_release(sel);
    lm_release(sl);
    lm_release(y);
}

static void test_deep_graph(void)
{
    /* 100,000 chained views: backward and release must not recurse per node. */
    lm_tensor *x = iota(LM_SHAPE(2, 3), LM_F32);
    lm_requires_grad_(x, true);
    lm_tensor *cur = lm_retain(x);
    for (int i = 0; i < 100000; i++) {
        lm_tensor *next = lm_transpose(cur, 0, 1);
        lm_release(cur);
        cur = next;
    }
    lm_tensor *seed = lm_ones(LM_SHAPE(2, 3), LM_F32);
    ok(cur && lm_backward(cur, seed, false) == LM_OK && at(x->grad, (int64_t[]){1, 2}) == 1,
       "backward through 100000 nodes");
    lm_release(seed);
    lm_release(cur);
    ok(x->refcount == 1, "releasing the chain frees every node");
    lm_release(x);
}

static void test_graph_export(void)
{
    lm_tensor *w = iota(LM_SHAPE(2, 3), LM_F32);
    lm_requires_grad_(w, true);
    const char *prev = lm_set_scope("encoder.layers.0");
    lm_tensor *t = lm_transpose(w, 0, 1);
    lm_set_scope("head");
    lm_tensor *v = lm_unsqueeze(t, 0);
    is_str(lm_set_scope(prev), "head", "set_scope returns the previous scope");
    char *json = lm_graph_export(v);
    ok(json != NULL, "graph_export returns JSON");
    has_str(json, "{\"id\":0,\"op\":\"transpose\",\"shape\":[3,2],\"dtype\":\"f32\",\"scope\":\"encoder.layers.0\"}",
            "the transpose node with its module scope");
    has_str(json, "\"op\":\"unsqueeze\",\"shape\":[1,3,2],\"dtype\":\"f32\",\"scope\":\"head\"", "the unsqueeze node");
    has_str(json, "{\"id\":2,\"op\":\"leaf\",\"shape\":[2,3]", "the leaf");
    has_str(json, "\"edges\":[[2,0],[0,1]]", "edges leaf -> transpose -> unsqueeze");
    free(json);
    json = lm_graph_export(w);
    is_str(json, "{\"nodes\":[{\"id\":0,\"op\":\"leaf\",\"shape\":[2,3],\"dtype\":\"f32\",\"scope\":\"\"}],\"edges\":[]}",
           "a leaf alone");
    free(json);
    lm_release(v);
    lm_release(t);
    lm_release(w);
}

/* More scopes than a model is likely to have (the table once stopped at 1024): each one
 * interned, found again, and exported on the node recorded under it. */
static void test_many_scopes(void)
{
    enum { N = 5000 };
    char name[32], before[32] = "";
    const char *first = NULL;
    bool roundtrip = true;
    lm_tensor *x = iota(LM_SHAPE(2), LM_F32);
    lm_requires_grad_(x, true);
    lm_tensor *cur = lm_retain(x);
    const char *outer = lm_set_scope(NULL);
    for (int i = 0; i < N && cur; i++) {
        snprintf(name, sizeof name, "block.%d.mlp", i);
        roundtrip &= strcmp(lm_set_scope(name), before) == 0 && strcmp(lm_get_scope(), name) == 0;
        if (i == 0) first = lm_get_scope();
        memcpy(before, name, sizeof before);
        lm_tensor *next = lm_view(cur, LM_SHAPE(2));
        lm_release(cur);
        cur = next;
    }
    ok(cur != NULL, "%d views recorded, one per scope", N);
    ok(roundtrip, "each of %d scopes reads back through get_scope and set_scope's result", N);
    lm_set_scope("block.0.mlp");
    ok(lm_get_scope() == first, "setting an early scope again finds the same interned string");
    lm_set_scope("block.4999.mlp");
    const char *last = lm_get_scope();
    lm_set_scope("block.4999.mlp");
    ok(lm_get_scope() == last, "and so does setting the latest one");
    lm_set_scope(outer);

    /* Every view node carries its own scope; leaves have none. */
    char *json = cur ? lm_graph_export(cur) : NULL;
    ok(json != NULL, "graph_export of the chain");
    static bool seen[N];
    int distinct = 0, other = 0;
    const char key[] = "\"scope\":\"";
    for (const char *p = json ? strstr(json, key) : NULL; p; p = strstr(p, key)) {
        p += sizeof key - 1;
        int i = -1, len = 0;
        if (sscanf(p, "block.%d.mlp\"%n", &i, &len) == 1 && len > 0 && i >= 0 && i < N) {
            distinct += !seen[i];
            seen[i] = true;
        } else if (*p != '"') {
            other++;
        }
    }
    is_int(distinct, N, "the export names all %d scopes", N);
    is_int(other, 0, "and no other non-empty scope");
    free(json);
    lm_release(cur);
    lm_release(x);
}

/* ---- finite-difference checks of every view and copy ------------------------------------- */

static lm_tensor *f_view(lm_tensor **x, void *c) { (void)c; return lm_view(x[0], LM_SHAPE(4, 3)); }
static lm_tensor *f_reshape(lm_tensor **x, void *c) { (void)c; return lm_reshape(x[0], LM_SHAPE(2, -1)); }
static lm_tensor *f_transpose(lm_tensor **x, void *c) { (void)c; return lm_transpose(x[0], 0, 1); }
static lm_tensor *f_t(lm_tensor **x, void *c) { (void)c; return lm_t(x[0]); }
static lm_tensor *f_permute(lm_tensor **x, void *c) { (void)c; return lm_permute(x[0], (int[]){1, 0}); }
static lm_tensor *f_slice(lm_tensor **x, void *c) { (void)c; return lm_slice(x[0], 1, 1, 6, 2); }
static lm_tensor *f_narrow(lm_tensor **x, void *c) { (void)c; return lm_narrow(x[0], 1, 1, 2); }
static lm_tensor *f_select(lm_tensor **x, void *c) { (void)c; return lm_select(x[0], 1, -1); }
static lm_tensor *f_expand(lm_tensor **x, void *c)
{
    (void)c;
    lm_tensor *s = lm_narrow(x[0], 0, 0, 1);
    lm_tensor *e = lm_expand(s, LM_SHAPE(2, 5, 6));
    lm_release(s);
    return e;
}
static lm_tensor *f_squeeze(lm_tensor **x, void *c)
{
    (void)c;
    lm_tensor *u = lm_unsqueeze(x[0], 1);
    lm_tensor *s = lm_squeeze(u, 1);
    lm_release(u);
    return s;
}
static lm_tensor *f_unsqueeze(lm_tensor **x, void *c) { (void)c; return lm_unsqueeze(x[0], -1); }
static lm_tensor *f_flatten(lm_tensor **x, void *c) { (void)c; return lm_flatten(x[0], 0, -1); }
static lm_tensor *f_contiguous(lm_tensor **x, void *c)
{
    (void)c;
    lm_tensor *t = lm_transpose(x[0], 0, 1);
    lm_tensor *r = lm_contiguous(t);
    lm_release(t);
    return r;
}
static lm_tensor *f_clone(lm_tensor **x, void *c) { (void)c; return lm_clone(x[0]); }
static lm_tensor *f_to(lm_tensor **x, void *c)
{
    (void)c;
    lm_tensor *f = lm_to_dtype(x[0], LM_F32);
    lm_tensor *d = lm_to_dtype(f, LM_F64);
    lm_release(f);
    return d;
}

static void test_gradchecks(void)
{
    lm_tensor *x = gc_input(LM_SHAPE(2, 6), -1, 1);
    lm_tensor *in[1] = {x};
    gradcheck("view", f_view, 1, in, NULL);
    gradcheck("reshape", f_reshape, 1, in, NULL);
    gradcheck("transpose", f_transpose, 1, in, NULL);
    gradcheck("t", f_t, 1, in, NULL);
    gradcheck("permute", f_permute, 1, in, NULL);
    gradcheck("slice", f_slice, 1, in, NULL);
    gradcheck("narrow", f_narrow, 1, in, NULL);
    gradcheck("select", f_select, 1, in, NULL);
    gradcheck("expand", f_expand, 1, in, NULL);
    gradcheck("squeeze", f_squeeze, 1, in, NULL);
    gradcheck("unsqueeze", f_unsqueeze, 1, in, NULL);
    gradcheck("flatten", f_flatten, 1, in, NULL);
    gradcheck("contiguous", f_contiguous, 1, in, NULL);
    gradcheck("clone", f_clone, 1, in, NULL);
    gradcheck_opts("to (f64 -> f32 -> f64)", f_to, 1, in, NULL, (gc_opts){.eps = 1e-3, .atol = 1e-4, .rtol = 1e-3});
    /* A non-contiguous leaf: a transposed view made without recording. */
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *base = gc_input(LM_SHAPE(6, 2), -1, 1);
    lm_tensor *tv = lm_transpose(base, 0, 1);
    lm_set_grad_enabled(prev);
    lm_requires_grad_(tv, true);
    lm_tensor *in2[1] = {tv};
    gradcheck("view of a transposed leaf (reshape copies)", f_reshape, 1, in2, NULL);
    gradcheck("slice of a transposed leaf", f_slice, 1, in2, NULL);
    lm_release(tv);
    lm_release(base);
    lm_release(x);
}

int main(void)
{
    plan_auto();
    lm_manual_seed(1);
    test_leaves();
    test_set_grad();
    test_saved_tensors();
    test_modes();
    test_view_gradients();
    test_deep_graph();
    test_graph_export();
    test_many_scopes();
    test_gradchecks();
    return done();
}
