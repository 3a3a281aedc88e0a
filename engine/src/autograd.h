/* autograd.h — how ops record themselves for backward (internal).
 *
 * An op that may be differentiated does, after computing its result `out`:
 *
 *     if (lm__needs_grad(2, (const lm_tensor *[]){a, b})) {
 *         lm_node *n = lm__record(&mul_grad, out, 2, (const lm_tensor *[]){a, b});
 *         if (!n || lm__save(n, a) || lm__save(n, b)) { lm_release(out); return NULL; }
 *     }
 *
 * where mul_grad is the op's descriptor: its name and its backward function, written next to
 * the forward in the op's family file. The backward gets the gradient of `out` and fills one
 * gradient per input (NULL where an input needs none: see lm__input_needs_grad). It may return
 * a gradient of the broadcast shape: the engine sums it down to the input's shape and converts
 * it to the input's dtype. Backward runs with gradient mode off. */
#ifndef LUMEN_AUTOGRAD_H
#define LUMEN_AUTOGRAD_H

#include "internal.h"

typedef struct lm_node lm_node;

typedef lm_status (*lm_backward_fn)(lm_node *node, const lm_tensor *grad_out,
                                    lm_tensor **grad_inputs);

typedef struct lm_grad_op {
    const char *name;        /* shown in errors and in the exported graph */
    lm_backward_fn backward;
    bool is_view;            /* the output shares the input's memory */
} lm_grad_op;

#define LM_NODE_MAX_SAVED 6
#define LM_NODE_MAX_PARAMS 8

typedef struct lm_node_input {
    lm_node *node;           /* the input's grad_fn (a reference), or NULL */
    lm_tensor *leaf;         /* the input itself when it is a leaf requiring grad (a reference) */
    int ndim;
    int64_t shape[LM_MAX_DIMS];
    lm_dtype dtype;
} lm_node_input;

struct lm_node {
    int refcount;
    const lm_grad_op *op;
    uint64_t id;                           /* creation order: a valid topological order */
    const char *scope;                     /* interned module path, "" when none */
    int n_inputs;
    lm_node_input *inputs;                 /* n_inputs entries */
    int n_saved;
    lm_tensor *saved[LM_NODE_MAX_SAVED];   /* detached views; NULL once freed */
    uint32_t saved_version[LM_NODE_MAX_SAVED];
    bool saved_freed;                      /* backward ran without retain_graph */
    int64_t ip[LM_NODE_MAX_PARAMS];        /* integer parameters of the op (dims, flags) */
    double dp[LM_NODE_MAX_PARAMS];         /* real parameters (slopes, epsilons) */
    int64_t *iv;                           /* an owned array for variable-length parameters */
    int n_iv;
    int out_ndim;
    int64_t out_shape[LM_MAX_DIMS];
    lm_dtype out_dtype;
    lm_tensor *retain_target;              /* weak: the output that asked to retain its grad */
    /* backward scratch */
    lm_tensor *grad;                       /* gradient of the output, summed over consumers */
    uint64_t mark;                         /* visit stamp of the last graph walk */
    lm_node *link;                         /* intrusive list for walks and releases */
};

/* Is gradient mode on and does any input require grad? */
LM_INTERNAL bool lm__needs_grad(int n, const lm_tensor *const *inputs);
/* Creates the node for out (out->grad_fn, out->requires_grad). NULL on allocation failure. */
LM_INTERNAL lm_node *lm__record(const lm_grad_op *op, lm_tensor *out, int n,
                                const lm_tensor *const *inputs);
/* Saves t for backward (a detached view and its storage version). Returns non-zero on error. */
LM_INTERNAL lm_status lm__save(lm_node *node, const lm_tensor *t);
/* Saved tensor i, or NULL with an error when it was freed or modified in place since. */
LM_INTERNAL const lm_tensor *lm__saved(lm_node *node, int i);
/* Does input i need a gradient? Backward functions skip the work for those that do not. */
LM_INTERNAL bool lm__input_needs_grad(const lm_node *node, int i);
/* Owns a copy of n integers as node->iv. */
LM_INTERNAL lm_status lm__save_ints(lm_node *node, int n, const int64_t *v);
/* Sums g down to a shape it was broadcast from (the reduction of broadcasting's backward). */
LM_INTERNAL lm_tensor *lm__sum_to(const lm_tensor *g, int ndim, const int64_t *shape);
/* May an in-place op write into t while gradients are recorded? Refuses (with an LM_ERR_STATE
 * naming op) a leaf that requires grad, and a view of a tensor in a graph (the write would
 * change the base's values behind its graph's back). */
LM_INTERNAL lm_status lm__check_inplace_grad(const char *op, const lm_tensor *t);
/* The tracked form of an in-place op: dst, whose values were just overwritten with result's,
 * takes over result's node so its history continues from the op (retain_grad follows it). */
LM_INTERNAL void lm__take_history(lm_tensor *dst, lm_tensor *result);
/* Releases the node of a tensor being freed (iteratively: graphs can be very deep). */
LM_INTERNAL void lm__node_release(lm_node *node);
/* Called by lm_release when t dies: clears weak references to it. */
LM_INTERNAL void lm__tensor_dying(lm_tensor *t);

#endif /* LUMEN_AUTOGRAD_H */
