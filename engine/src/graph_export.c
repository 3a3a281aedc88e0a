/* graph_export.c — the autograd graph as JSON for the dashboard's graph view (DESIGN.md):
 * {"nodes":[{"id","op","shape","dtype","scope"}],"edges":[[from,to]]}. Node ids are dense and
 * ascend in creation order; leaves that require grad appear as op "leaf". */
#include "autograd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = true;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

static void put_json_string(text *t, const char *s)
{
    put(t, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') put(t, "\\%c", *p);
        else if (*p < 0x20) put(t, "\\u%04x", *p);
        else put(t, "%c", *p);
    }
    put(t, "\"");
}

static void put_shape(text *t, int ndim, const int64_t *shape)
{
    put(t, "[");
    for (int i = 0; i < ndim; i++) put(t, i ? ",%lld" : "%lld", (long long)shape[i]);
    put(t, "]");
}

/* Nodes reachable from root in increasing id order (a forward topological order). */
static lm_node **reachable(lm_node *root, int *count)
{
    int cap = 64, n = 0;
    lm_node **all = malloc(sizeof *all * (size_t)cap);
    if (!all) return NULL;
    lm_node **todo = malloc(sizeof *todo * (size_t)cap);
    int ntodo = 0, todocap = cap;
    if (!todo) {
        free(all);
        return NULL;
    }
    todo[ntodo++] = root;
    while (ntodo) {
        lm_node *x = todo[--ntodo];
        bool seen = false;
        for (int i = 0; i < n && !seen; i++) seen = all[i] == x;
        if (seen) continue;
        if (n == cap) {
            lm_node **b = realloc(all, sizeof *all * (size_t)(cap *= 2));
            if (!b) goto oom;
            all = b;
        }
        all[n++] = x;
        for (int i = 0; i < x->n_inputs; i++) {
            if (!x->inputs[i].node) continue;
            if (ntodo == todocap) {
                lm_node **b = realloc(todo, sizeof *todo * (size_t)(todocap *= 2));
                if (!b) goto oom;
                todo = b;
            }
            todo[ntodo++] = x->inputs[i].node;
        }
    }
    free(todo);
    /* Insertion sort by id: graphs exported for viewing are small enough. */
    for (int i = 1; i < n; i++) {
        lm_node *x = all[i];
        int j = i - 1;
        while (j >= 0 && all[j]->id > x->id) {
            all[j + 1] = all[j];
            j--;
        }
        all[j + 1] = x;
    }
    *count = n;
    return all;
oom:
    free(all);
    free(todo);
    return NULL;
}

static int index_of(lm_node **all, int n, const lm_node *x)
{
    for (int i = 0; i < n; i++)
        if (all[i] == x) return i;
    return -1;
}

char *lm_graph_export(const lm_tensor *t)
{
    if (!lm__arg(t, "graph_export")) return NULL;
    text out = {0};
    int n = 0;
    lm_node **all = NULL;
    if (t->grad_fn) {
        all = reachable(t->grad_fn, &n);
        if (!all) {
            lm__error(LM_ERR_MEMORY, "graph_export: out of memory");
            return NULL;
        }
    }
    /* Leaves get ids after the op nodes; a leaf used twice is one node. */
    const lm_tensor **leaves = NULL;
    int nleaves = 0, leafcap = 0;
    put(&out, "{\"nodes\":[");
    bool first = true;
    for (int i = 0; i < n; i++) {
        lm_node *x = all[i];
        put(&out, "%s{\"id\":%d,\"op\":", first ? "" : ",", i);
        first = false;
        put_json_string(&out, x->op->name);
        put(&out, ",\"shape\":");
        put_shape(&out, x->out_ndim, x->out_shape);
        put(&out, ",\"dtype\":\"%s\",\"scope\":", lm_dtype_name(x->out_dtype));
        put_json_string(&out, x->scope ? x->scope : "");
        put(&out, "}");
        for (int k = 0; k < x->n_inputs; k++) {
            const lm_tensor *leaf = x->inputs[k].leaf;
            if (!leaf) continue;
            bool seen = false;
            for (int j = 0; j < nleaves && !seen; j++) seen = leaves[j] == leaf;
            if (seen) continue;
            if (nleaves == leafcap) {
                leafcap = leafcap ? leafcap * 2 : 16;
                const lm_tensor **b = realloc(leaves, sizeof *leaves * (size_t)leafcap);
                if (!b) {
                    out.failed = true;
                    break;
                }
                leaves = b;
            }
            leaves[nleaves++] = leaf;
        }
    }
    const lm_tensor *self_leaf[1] = {t};
    if (!t->grad_fn && t->requires_grad) { /* a leaf on its own: one node, no edges */
        leaves = self_leaf;
        nleaves = 1;
    }
    for (int j = 0; j < nleaves; j++) {
        const lm_tensor *leaf = leaves[j];
        put(&out, "%s{\"id\":%d,\"op\":\"leaf\",\"shape\":", first ? "" : ",", n + j);
        first = false;
        put_shape(&out, leaf->ndim, leaf->shape);
        put(&out, ",\"dtype\":\"%s\",\"scope\":\"\"}", lm_dtype_name(leaf->dtype));
    }
    put(&out, "],\"edges\":[");
    first = true;
    for (int i = 0; i < n; i++) {
        lm_node *x = all[i];
        for (int k = 0; k < x->n_inputs; k++) {
            int from = -1;
            if (x->inputs[k].node) {
                from = index_of(all, n, x->inputs[k].node);
            } else if (x->inputs[k].leaf) {
                for (int j = 0; j < nleaves; j++)
                    if (leaves[j] == x->inputs[k].leaf) from = n + j;
            }
            if (from < 0) continue;
            put(&out, "%s[%d,%d]", first ? "" : ",", from, i);
            first = false;
        }
    }
    put(&out, "]}");
    if (leaves != self_leaf) free(leaves);
    free(all);
    if (out.failed) {
        free(out.buf);
        lm__error(LM_ERR_MEMORY, "graph_export: out of memory");
        return NULL;
    }
    return out.buf;
}
