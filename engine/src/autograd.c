/* autograd.c — recording nodes, the backward walk, gradient mode, detach and module scopes.
 *
 * Ownership: a tensor owns one reference to its grad_fn node; a node owns references to its
 * inputs' nodes and to the leaves it feeds, never to its own output (saved outputs are detached
 * views), so graphs have no reference cycles and die with the last tensor that uses them. */
#include "autograd.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local bool grad_enabled = true;
static uint64_t next_node_id = 1;
static uint64_t walk_stamp = 0;

bool lm_set_grad_enabled(bool enabled)
{
    bool prev = grad_enabled;
    grad_enabled = enabled;
    return prev;
}

bool lm_grad_enabled(void) { return grad_enabled; }

/* ---- scopes ----------------------------------------------------------------------------- */

/* Module paths are long-lived: intern them so nodes hold a pointer, not a copy. The interned
 * strings live for the process (nodes anywhere may point at them, and a scope set once is set
 * again on every forward), so only the slot array moves when the table grows: addresses handed
 * out stay valid. An open-addressing table with linear probing, kept at most half full so
 * probes stay short at any count (a model with thousands of modules sets a scope per module per
 * forward). The current scope is per thread, the table shared: a mutex serialises interning. */
typedef struct {
    uint64_t hash;
    char *s; /* NULL: an empty slot */
} scope_slot;

static struct {
    pthread_mutex_t lock;
    scope_slot *slots;
    size_t cap; /* a power of two, or 0 before the first scope */
    size_t count;
} scopes = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local const char *current_scope = "";

/* The slot holding s, or the empty slot where it belongs; ends because the table is never full. */
static scope_slot *scope_probe(scope_slot *slots, size_t cap, uint64_t h, const char *s)
{
    for (size_t k = h & (cap - 1);; k = (k + 1) & (cap - 1)) {
        scope_slot *e = &slots[k];
        if (!e->s || (e->hash == h && strcmp(e->s, s) == 0)) return e;
    }
}

/* Doubles the slot array (64 slots at first); false when memory runs out. */
static bool scope_grow(void)
{
    size_t cap = scopes.cap ? scopes.cap * 2 : 64;
    scope_slot *slots = calloc(cap, sizeof *slots);
    if (!slots) return false;
    for (size_t i = 0; i < scopes.cap; i++) {
        scope_slot *e = &scopes.slots[i];
        if (e->s) *scope_probe(slots, cap, e->hash, e->s) = *e;
    }
    free(scopes.slots);
    scopes.slots = slots;
    scopes.cap = cap;
    return true;
}

/* The interned copy of s, or NULL when memory runs out. */
static const char *intern_scope(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = s; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    pthread_mutex_lock(&scopes.lock);
    scope_slot *e = scopes.cap ? scope_probe(scopes.slots, scopes.cap, h, s) : NULL;
    if ((!e || !e->s) && (2 * (scopes.count + 1) <= scopes.cap || scope_grow())) {
        e = scope_probe(scopes.slots, scopes.cap, h, s);
        e->s = strdup(s);
        if (e->s) {
            e->hash = h;
            scopes.count++;
        }
    }
    const char *found = e ? e->s : NULL;
    pthread_mutex_unlock(&scopes.lock);
    return found;
}

const char *lm_set_scope(const char *scope)
{
    const char *prev = current_scope;
    if (!scope || !*scope) {
        current_scope = "";
    } else {
        /* Out of memory: new nodes go unscoped rather than failing the forward pass. */
        const char *s = intern_scope(scope);
        current_scope = s ? s : "";
    }
    return prev;
}

const char *lm_get_scope(void) { return current_scope; }

/* ---- recording -------------------------------------------------------------------------- */

bool lm__needs_grad(int n, const lm_tensor *const *inputs)
{
    if (!grad_enabled) return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

lm_node *lm__record(const lm_grad_op *op, lm_tensor *out, int n, const lm_tensor *const *inputs)
{
    lm_node *node = lm__malloc(sizeof *node);
    if (!node) return NULL;
    memset(node, 0, sizeof *node);
    node->inputs = lm__malloc(sizeof(lm_node_input) * (size_t)(n > 0 ? n : 1));
    if (!node->inputs) {
        lm__free(node);
        return NULL;
    }
    memset(node->inputs, 0, sizeof(lm_node_input) * (size_t)(n > 0 ? n : 1));
    node->refcount = 1;
    node->op = op;
    node->id = next_node_id++;
    node->scope = current_scope;
    node->n_inputs = n;
    for (int i = 0; i < n; i++) {
        const lm_tensor *in = inputs[i];
        lm_node_input *slot = &node->inputs[i];
        if (!in) continue;
        slot->ndim = in->ndim;
        memcpy(slot->shape, in->shape, sizeof slot->shape);
        slot->dtype = in->dtype;
        if (!in->requires_grad) continue;
        if (in->grad_fn) {
            slot->node = in->grad_fn;
            slot->node->refcount++;
        } else {
            slot->leaf = lm_retain((lm_tensor *)in);
        }
    }
    node->out_ndim = out->ndim;
    memcpy(node->out_shape, out->shape, sizeof node->out_shape);
    node->out_dtype = out->dtype;
    if (out->grad_fn) lm__node_release(out->grad_fn);
    out->grad_fn = node;
    out->requires_grad = true;
    return node;
}

lm_status lm__save(lm_node *node, const lm_tensor *t)
{
    if (node->n_saved >= LM_NODE_MAX_SAVED)
        return lm__error(LM_ERR_STATE, "%s: too many saved tensors", node->op->name);
    lm_tensor *v = lm__view_of(t, t->ndim, t->shape, t->strides, t->offset);
    if (!v) return lm_last_status();
    node->saved_version[node->n_saved] = t->storage->version;
    node->saved[node->n_saved++] = v;
    return LM_OK;
}

lm_status lm__save_ints(lm_node *node, int n, const int64_t *v)
{
    int64_t *copy = lm__malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    if (!copy) return lm_last_status();
    memcpy(copy, v, sizeof(int64_t) * (size_t)n);
    lm__free(node->iv);
    node->iv = copy;
    node->n_iv = n;
    return LM_OK;
}

const lm_tensor *lm__saved(lm_node *node, int i)
{
    if (node->saved_freed || !node->saved[i]) {
        lm__error(LM_ERR_STATE,
                  "backward: trying to backward through the graph a second time (the saved tensors "
                  "of %s were freed after the first backward); pass retain_graph = true to the "
                  "first backward",
                  node->op->name);
        return NULL;
    }
    const lm_tensor *t = node->saved[i];
    if (t->storage->version != node->saved_version[i]) {
        lm__error(LM_ERR_STATE,
                  "backward: one of the tensors needed for the gradient of %s (shape %s) has been "
                  "modified by an in-place operation: it is at version %u, expected version %u",
                  node->op->name, lm__shp(t).s, t->storage->version, node->saved_version[i]);
        return NULL;
    }
    return t;
}

bool lm__input_needs_grad(const lm_node *node, int i)
{
    return node->inputs[i].node || node->inputs[i].leaf;
}

lm_tensor *lm__sum_to(const lm_tensor *g, int ndim, const int64_t *shape)
{
    int lead = g->ndim - ndim;
    int dims[LM_MAX_DIMS], nd = 0;
    for (int i = 0; i < g->ndim; i++) {
        int j = i - lead;
        if (j < 0 || (shape[j] == 1 && g->shape[i] != 1)) dims[nd++] = i;
    }
    if (nd == 0) return lm_reshape(g, ndim, shape);
    lm_tensor *s = lm_sum(g, nd, dims, true);
    if (!s) return NULL;
    lm_tensor *r = lm_reshape(s, ndim, shape);
    lm_release(s);
    return r;
}

/* ---- releasing ---------------------------------------------------------------------------- */

static void free_saved(lm_node *node)
{
    for (int i = 0; i < node->n_saved; i++) {
        lm_release(node->saved[i]);
        node->saved[i] = NULL;
    }
}

void lm__node_release(lm_node *node)
{
    if (!node || --node->refcount > 0) return;
    /* An explicit list instead of recursion: a long chain of nodes must not overflow the C stack. */
    node->link = NULL;
    lm_node *list = node;
    while (list) {
        lm_node *x = list;
        list = x->link;
        for (int i = 0; i < x->n_inputs; i++) {
            lm_node *child = x->inputs[i].node;
            if (child && --child->refcount == 0) {
                child->link = list;
                list = child;
            }
            lm_release(x->inputs[i].leaf);
        }
        free_saved(x);
        lm_release(x->grad);
        lm__free(x->iv);
        lm__free(x->inputs);
        lm__free(x);
    }
}

void lm__tensor_dying(lm_tensor *t)
{
    if (t->grad_fn && t->grad_fn->retain_target == t) t->grad_fn->retain_target = NULL;
}

lm_status lm__check_inplace_grad(const char *op, const lm_tensor *t)
{
    if (!grad_enabled || !t->requires_grad) return LM_OK;
    if (!t->grad_fn)
        return lm__error(LM_ERR_STATE,
                         "%s: a leaf tensor that requires grad is used in an in-place operation "
                         "(shape %s); write into it under no_grad, or into a clone",
                         op, lm__shp(t).s);
    if (t->grad_fn->op->is_view)
        return lm__error(LM_ERR_STATE,
                         "%s: in-place operation on a view (made by %s, shape %s) of a tensor that "
                         "requires grad; its base's gradient would miss the write: clone() the "
                         "view first",
                         op, t->grad_fn->op->name, lm__shp(t).s);
    return LM_OK;
}

void lm__take_history(lm_tensor *dst, lm_tensor *result)
{
    lm_node *node = result->grad_fn, *old = dst->grad_fn;
    if (!node) return;
    result->grad_fn = NULL;
    dst->grad_fn = node;
    dst->requires_grad = true;
    if (old) {
        /* retain_grad follows the tensor to its new node; the old node must not keep a pointer
         * to dst (it may outlive dst as another tensor's input). */
        if (old->retain_target == dst) {
            old->retain_target = NULL;
            node->retain_target = dst;
        }
        lm__node_release(old);
    }
}

/* ---- user-facing switches ------------------------------------------------------------------ */

bool lm_is_leaf(const lm_tensor *t) { return t && !t->grad_fn; }

lm_status lm_requires_grad_(lm_tensor *t, bool requires_grad)
{
    if (!lm__arg(t, "requires_grad_")) return lm_last_status();
    if (t->grad_fn && !requires_grad)
        return lm__error(LM_ERR_STATE,
                         "requires_grad_: cannot turn off gradient tracking of a non-leaf tensor "
                         "(shape %s, made by %s); use detach()",
                         lm__shp(t).s, t->grad_fn->op->name);
    if (requires_grad && !lm_dtype_is_float(t->dtype))
        return lm__error(LM_ERR_DTYPE,
                         "requires_grad_: only floating-point tensors can require gradients, got %s",
                         lm_dtype_name(t->dtype));
    t->requires_grad = requires_grad;
    return LM_OK;
}

lm_tensor *lm_detach(const lm_tensor *t)
{
    if (!lm__arg(t, "detach")) return NULL;
    return lm__view_of(t, t->ndim, t->shape, t->strides, t->offset);
}

lm_status lm_retain_grad(lm_tensor *t)
{
    if (!lm__arg(t, "retain_grad")) return lm_last_status();
    if (!t->requires_grad)
        return lm__error(LM_ERR_STATE, "retain_grad: the tensor (shape %s) does not require grad",
                         lm__shp(t).s);
    if (t->grad_fn) t->grad_fn->retain_target = t;
    return LM_OK;
}

void lm_zero_grad(lm_tensor *t)
{
    if (!t) return;
    lm_release(t->grad);
    t->grad = NULL;
}

lm_status lm_set_grad(lm_tensor *t, lm_tensor *grad)
{
    if (!lm__arg(t, "set_grad")) return lm_last_status();
    if (grad) {
        bool same = grad->ndim == t->ndim && grad->dtype == t->dtype &&
                    grad->storage->device == t->storage->device;
        for (int d = 0; same && d < t->ndim; d++) same = grad->shape[d] == t->shape[d];
        if (!same)
            return lm__error(LM_ERR_SHAPE,
                             "set_grad: a gradient of shape %s and dtype %s does not fit a tensor of "
                             "shape %s and dtype %s",
                             lm__shp(grad).s, lm_dtype_name(grad->dtype), lm__shp(t).s,
                             lm_dtype_name(t->dtype));
        if (grad == t)
            return lm__error(LM_ERR_ARG, "set_grad: a tensor cannot be its own gradient");
    }
    lm_retain(grad);
    lm_release(t->grad);
    t->grad = grad;
    return LM_OK;
}

/* ---- backward ------------------------------------------------------------------------------ */

/* Adds g (owned) into *slot. A leaf's gradient is kept contiguous and owned by the leaf, so
 * later accumulations can add in place; a node's gradient is replaced by a new sum because g may
 * be shared with other inputs. */
static lm_status accumulate(lm_tensor **slot, lm_tensor *g, bool in_place)
{
    if (!*slot && !in_place) { /* a node's gradient is only read, and summed out of place */
        *slot = g;
        return LM_OK;
    }
    if (!*slot) {
        if (g->refcount == 1 && g->storage->refcount == 1 && lm_is_contiguous(g) && !g->grad_fn) {
            *slot = g;
            return LM_OK;
        }
        lm_tensor *c = lm_clone(g);
        lm_release(g);
        if (!c) return lm_last_status();
        *slot = c;
        return LM_OK;
    }
    if (in_place) {
        lm_status st = lm_add_(*slot, g);
        lm_release(g);
        return st;
    }
    lm_tensor *s = lm_add(*slot, g);
    lm_release(g);
    if (!s) return lm_last_status();
    lm_release(*slot);
    *slot = s;
    return LM_OK;
}

/* Brings a backward's gradient for input i to the input's shape and dtype. Takes g. */
static lm_tensor *fit_gradient(lm_node *node, int i, lm_tensor *g)
{
    const lm_node_input *in = &node->inputs[i];
    bool same = g->ndim == in->ndim;
    for (int d = 0; same && d < g->ndim; d++) same = g->shape[d] == in->shape[d];
    if (!same) {
        int ndim;
        int64_t bshape[LM_MAX_DIMS];
        if (lm__broadcast_shapes(node->op->name, in->ndim, in->shape, g->ndim, g->shape, &ndim,
                                 bshape) != LM_OK ||
            ndim != g->ndim) {
            lm__error(LM_ERR_STATE,
                      "backward: %s returned a gradient of shape %s for input %d of shape %s",
                      node->op->name, lm__shp(g).s, i, lm__shp_raw(in->ndim, in->shape).s);
            lm_release(g);
            return NULL;
        }
        lm_tensor *s = lm__sum_to(g, in->ndim, in->shape);
        lm_release(g);
        if (!s) return NULL;
        g = s;
    }
    if (g->dtype != in->dtype) {
        lm_tensor *c = lm_to_dtype(g, in->dtype);
        lm_release(g);
        g = c;
    }
    return g;
}

static int by_decreasing_id(const void *a, const void *b)
{
    uint64_t x = (*(lm_node *const *)a)->id, y = (*(lm_node *const *)b)->id;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Every node reachable from root, sorted by decreasing id: node ids grow in creation order and
 * an input is always created before its consumer, so this is a reverse topological order. */
static lm_node **collect(lm_node *root, int *count)
{
    uint64_t stamp = ++walk_stamp;
    int cap = 64, n = 0;
    lm_node **all = malloc(sizeof *all * (size_t)cap);
    if (!all) {
        lm__error(LM_ERR_MEMORY, "backward: out of memory");
        return NULL;
    }
    root->mark = stamp;
    root->link = NULL;
    lm_node *todo = root;
    while (todo) {
        lm_node *x = todo;
        todo = x->link;
        if (n == cap) {
            lm_node **bigger = realloc(all, sizeof *all * (size_t)(cap *= 2));
            if (!bigger) {
                free(all);
                lm__error(LM_ERR_MEMORY, "backward: out of memory");
                return NULL;
            }
            all = bigger;
        }
        all[n++] = x;
        for (int i = 0; i < x->n_inputs; i++) {
            lm_node *c = x->inputs[i].node;
            if (c && c->mark != stamp) {
                c->mark = stamp;
                c->link = todo;
                todo = c;
            }
        }
    }
    qsort(all, (size_t)n, sizeof *all, by_decreasing_id);
    *count = n;
    return all;
}

static lm_status run_backward(lm_node **order, int count, bool retain_graph)
{
    for (int k = 0; k < count; k++) {
        lm_node *node = order[k];
        if (!node->grad) continue; /* no gradient flowed here */
        if (node->retain_target) {
            lm_tensor *g = lm_retain(node->grad);
            lm_status st = accumulate(&node->retain_target->grad, g, true);
            if (st) return st;
        }
        lm_tensor *grads[node->n_inputs > 0 ? node->n_inputs : 1];
        memset(grads, 0, sizeof grads);
        lm_status st = node->op->backward(node, node->grad, grads);
        lm_release(node->grad);
        node->grad = NULL;
        for (int i = 0; i < node->n_inputs; i++) {
            lm_tensor *g = grads[i];
            grads[i] = NULL;
            if (!g) continue;
            if (st || !lm__input_needs_grad(node, i)) {
                lm_release(g);
                continue;
            }
            g = fit_gradient(node, i, g);
            if (!g) {
                st = lm_last_status();
                continue;
            }
            lm_node_input *in = &node->inputs[i];
            lm_status a = in->node ? accumulate(&in->node->grad, g, false)
                                   : accumulate(&in->leaf->grad, g, true);
            if (a && !st) st = a;
        }
        if (st) return st;
        if (!retain_graph && node->n_saved) {
            free_saved(node);
            node->saved_freed = true;
        }
    }
    return LM_OK;
}

lm_status lm_backward(lm_tensor *t, const lm_tensor *seed, bool retain_graph)
{
    if (!lm__arg(t, "backward")) return lm_last_status();
    if (!t->requires_grad)
        return lm__error(LM_ERR_STATE,
                         "backward: the tensor (shape %s) does not require grad and has no grad_fn",
                         lm__shp(t).s);
    lm_tensor *g;
    if (seed) {
        bool same = seed->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = seed->shape[d] == t->shape[d];
        if (!same)
            return lm__error(LM_ERR_SHAPE, "backward: gradient of shape %s given for a tensor of shape %s",
                             lm__shp(seed).s, lm__shp(t).s);
        g = lm_to_dtype(seed, t->dtype);
    } else {
        if (lm_numel(t) != 1)
            return lm__error(LM_ERR_SHAPE,
                             "backward: a gradient can be created implicitly only for a one-element "
                             "output, this one has shape %s; pass a seed",
                             lm__shp(t).s);
        g = lm_ones_like(t);
    }
    if (!g) return lm_last_status();
    bool prev = lm_set_grad_enabled(false);
    lm_status st;
    if (!t->grad_fn) {
        st = accumulate(&t->grad, g, true);
    } else {
        int count = 0;
        lm_node **order = collect(t->grad_fn, &count);
        if (!order) {
            lm_release(g);
            lm_set_grad_enabled(prev);
            return lm_last_status();
        }
        t->grad_fn->grad = g;
        st = run_backward(order, count, retain_graph);
        for (int k = 0; k < count; k++) { /* after an error, drop partial sums */
            lm_release(order[k]->grad);
            order[k]->grad = NULL;
        }
        free(order);
    }
    lm_set_grad_enabled(prev);
    return st;
}
