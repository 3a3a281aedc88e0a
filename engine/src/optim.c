/* optim.c — the fused optimizer steps lm_sgd_step, lm_adam_step (AdamW, amsgrad) and
 * lm_rmsprop_step: the checks of the parameter, its gradient, its state and the
 * hyper-parameters, then one call of the backend's kernel (optim.h), which updates everything in
 * one pass.
 *
 * A step is not an op of the graph: it writes the parameter and its state in place and records
 * nothing, as PyTorch's optimizers run under no_grad. It bumps the storage version of what it
 * wrote, so a graph that saved the old parameter refuses to run backward with the new one.
 *
 * Kernels take contiguous operands. Parameters and their state almost always are (Lua's nn
 * creates them so, and a leaf's gradient is kept contiguous by autograd); a view is handled by
 * running the kernel on contiguous copies and copying the written ones back. */
#include "optim.h"

#include <math.h>

/* Operand slots: the parameter first, its gradient second, then the state tensors. */
enum { PARAM = 0, GRAD = 1, MAX_OPERANDS = 5 };

typedef struct operands {
    const char *names[MAX_OPERANDS]; /* for messages: "exp_avg", ... */
    lm_tensor *user[MAX_OPERANDS];   /* what the caller passed (NULL: a state the options skip) */
    lm_tensor *work[MAX_OPERANDS];   /* what the kernel gets: user itself or a contiguous copy */
    int n;
} operands;

/* ---- checks --------------------------------------------------------------------------------- */

/* Fails unless v >= 0 (NaN fails too). */
static bool nonneg_ok(const char *op, const char *name, double v)
{
    if (v >= 0) return true;
    lm__error(LM_ERR_ARG, "%s: invalid %s %g (must be >= 0)", op, name, v);
    return false;
}

/* Fails unless 0 <= v < 1 (NaN fails too). */
static bool beta_ok(const char *op, const char *name, double v)
{
    if (v >= 0 && v < 1) return true;
    lm__error(LM_ERR_ARG, "%s: invalid %s %g (must be in [0, 1))", op, name, v);
    return false;
}

/* The parameter is an f32 or f64 tensor with a gradient of its shape, dtype and device. */
static bool param_ok(const char *op, const lm_tensor *p)
{
    if (!lm__arg(p, op)) return false;
    if (p->dtype != LM_F32 && p->dtype != LM_F64) {
        lm__error(LM_ERR_DTYPE, "%s: parameter %s has dtype %s; optimizers update f32 or f64 "
                  "tensors", op, lm__shp(p).s, lm_dtype_name(p->dtype));
        return false;
    }
    const lm_tensor *g = p->grad;
    if (!g) {
        lm__error(LM_ERR_STATE, "%s: parameter %s has no gradient (run backward first, or skip "
                  "parameters whose grad is NULL)", op, lm__shp(p).s);
        return false;
    }
    bool same = g->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = g->shape[d] == p->shape[d];
    if (!same) {
        lm__error(LM_ERR_SHAPE, "%s: gradient %s does not have the parameter's shape %s", op,
                  lm__shp(g).s, lm__shp(p).s);
        return false;
    }
    if (g->dtype != p->dtype) {
        lm__error(LM_ERR_DTYPE, "%s: gradient has dtype %s but parameter %s has %s", op,
                  lm_dtype_name(g->dtype), lm__shp(p).s, lm_dtype_name(p->dtype));
        return false;
    }
    if (g->storage->device != p->storage->device) {
        lm__error(LM_ERR_UNSUPPORTED, "%s: gradient and parameter %s are on different devices",
                  op, lm__shp(p).s);
        return false;
    }
    return true;
}

/* Adds a state tensor the options need: it must exist and match the parameter. */
static bool add_state(const char *op, operands *ops, const char *name, lm_tensor *s)
{
    const lm_tensor *p = ops->user[PARAM];
    if (!s) {
        lm__error(LM_ERR_ARG, "%s: %s is NULL, but these options need it (a tensor of the "
                  "parameter's shape %s, zeros at the first step)", op, name, lm__shp(p).s);
        return false;
    }
    bool same = s->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = s->shape[d] == p->shape[d];
    if (!same) {
        lm__error(LM_ERR_SHAPE, "%s: %s has shape %s but the parameter has %s", op, name,
                  lm__shp(s).s, lm__shp(p).s);
        return false;
    }
    if (s->dtype != p->dtype) {
        lm__error(LM_ERR_DTYPE, "%s: %s has dtype %s but parameter %s has %s", op, name,
                  lm_dtype_name(s->dtype), lm__shp(p).s, lm_dtype_name(p->dtype));
        return false;
    }
    if (s->storage->device != p->storage->device) {
        lm__error(LM_ERR_UNSUPPORTED, "%s: %s and parameter %s are on different devices", op,
                  name, lm__shp(p).s);
        return false;
    }
    ops->names[ops->n] = name;
    ops->user[ops->n++] = s;
    return true;
}

/* Every written operand (all but the gradient) must own its elements: one pass reads and writes
 * each element once, so a shared location would be updated twice from stale values. */
static bool no_overlap(const char *op, const operands *ops)
{
    for (int i = 0; i < ops->n; i++) {
        if (i == GRAD) continue;
        const lm_tensor *w = ops->user[i];
        if (lm__has_internal_overlap(w)) {
            lm__error(LM_ERR_STATE, "%s: more than one element of %s (shape %s) refers to a "
                      "single memory location; clone() it first", op, ops->names[i],
                      lm__shp(w).s);
            return false;
        }
        for (int j = 0; j < ops->n; j++) {
            if (j == i || lm__overlap(w, ops->user[j]) == LM_OVERLAP_NONE) continue;
            lm__error(LM_ERR_STATE, "%s: %s and %s (shape %s) share memory; each needs its own "
                      "tensor", op, ops->names[i], ops->names[j], lm__shp(w).s);
            return false;
        }
    }
    return true;
}

/* Starts the operand list with the parameter and its gradient (param_ok has passed). */
static operands start_operands(lm_tensor *param)
{
    operands ops = {.n = 2};
    ops.names[PARAM] = "parameter";
    ops.names[GRAD] = "gradient";
    ops.user[PARAM] = param;
    ops.user[GRAD] = param->grad;
    return ops;
}

/* ---- running a kernel ------------------------------------------------------------------------ */

static void release_work(operands *ops)
{
    for (int i = 0; i < ops->n; i++) {
        lm_release(ops->work[i]);
        ops->work[i] = NULL;
    }
}

/* Fills ops->work: each operand itself when contiguous, else a contiguous copy. */
static lm_status prepare(const char *op, const lm_backend *be, operands *ops)
{
    for (int i = 0; i < ops->n; i++) {
        lm_tensor *u = ops->user[i];
        if (lm_is_contiguous(u)) {
            ops->work[i] = lm_retain(u);
            continue;
        }
        lm_tensor *c = lm__new(op, u->ndim, u->shape, u->dtype, u->storage->device);
        if (!c) {
            release_work(ops);
            return lm_last_status();
        }
        be->copy->copy(c, u);
        ops->work[i] = c;
    }
    return LM_OK;
}

/* Copies the written copies back into the caller's views, bumps versions, releases the work. */
static void finish(const lm_backend *be, operands *ops)
{
    for (int i = 0; i < ops->n; i++) {
        if (i == GRAD) continue;
        if (ops->work[i] != ops->user[i]) be->copy->copy(ops->user[i], ops->work[i]);
        lm__bump_version(ops->user[i]);
    }
    release_work(ops);
}

/* ---- the steps ------------------------------------------------------------------------------- */

lm_status lm_sgd_step(lm_tensor *param, lm_tensor *momentum_buf, bool first, lm_sgd_opts o)
{
    const char *op = "sgd_step";
    if (!param_ok(op, param)) return lm_last_status();
    if (!nonneg_ok(op, "lr", o.lr) || !nonneg_ok(op, "momentum", o.momentum) ||
        !nonneg_ok(op, "weight_decay", o.weight_decay))
        return lm_last_status();
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
        return lm__error(LM_ERR_ARG, "%s: nesterov momentum needs momentum > 0 and dampening 0 "
                         "(got momentum %g, dampening %g)", op, o.momentum, o.dampening);
    operands ops = start_operands(param);
    bool has_buf = o.momentum != 0;
    if (has_buf && !add_state(op, &ops, "momentum_buf", momentum_buf)) return lm_last_status();
    if (!no_overlap(op, &ops)) return lm_last_status();
    const lm_backend *be = lm__backend(param->storage->device, op);
    if (!be || prepare(op, be, &ops)) return lm_last_status();
    be->optim->sgd(ops.work[PARAM], ops.work[GRAD], has_buf ? ops.work[2] : NULL, first, &o);
    finish(be, &ops);
    return LM_OK;
}

lm_status lm_adam_step(lm_tensor *param, lm_tensor *exp_avg, lm_tensor *exp_avg_sq,
                       lm_tensor *max_exp_avg_sq, int64_t step, lm_adam_opts o)
{
    const char *op = "adam_step";
    if (!param_ok(op, param)) return lm_last_status();
    if (!nonneg_ok(op, "lr", o.lr) || !nonneg_ok(op, "eps", o.eps) ||
        !beta_ok(op, "beta1", o.beta1) || !beta_ok(op, "beta2", o.beta2) ||
        !nonneg_ok(op, "weight_decay", o.weight_decay))
        return lm_last_status();
    if (step < 1)
        return lm__error(LM_ERR_ARG, "%s: invalid step %lld (steps count from 1)", op,
                         (long long)step);
    operands ops = start_operands(param);
    if (!add_state(op, &ops, "exp_avg", exp_avg) ||
        !add_state(op, &ops, "exp_avg_sq", exp_avg_sq) ||
        (o.amsgrad && !add_state(op, &ops, "max_exp_avg_sq", max_exp_avg_sq)) ||
        !no_overlap(op, &ops))
        return lm_last_status();
    /* As PyTorch computes them in Python, in double. */
    lm_adam_scalars s = {
        .step_size = o.lr / (1.0 - pow(o.beta1, (double)step)),
        .bias_correction2_sqrt = sqrt(1.0 - pow(o.beta2, (double)step)),
    };
    const lm_backend *be = lm__backend(param->storage->device, op);
    if (!be || prepare(op, be, &ops)) return lm_last_status();
    be->optim->adam(ops.work[PARAM], ops.work[GRAD], ops.work[2], ops.work[3],
                    o.amsgrad ? ops.work[4] : NULL, &o, s);
    finish(be, &ops);
    return LM_OK;
}

lm_status lm_rmsprop_step(lm_tensor *param, lm_tensor *square_avg, lm_tensor *momentum_buf,
                          lm_tensor *grad_avg, lm_rmsprop_opts o)
{
    const char *op = "rmsprop_step";
    if (!param_ok(op, param)) return lm_last_status();
    if (!nonneg_ok(op, "lr", o.lr) || !nonneg_ok(op, "eps", o.eps) ||
        !nonneg_ok(op, "momentum", o.momentum) ||
        !nonneg_ok(op, "weight_decay", o.weight_decay) || !nonneg_ok(op, "alpha", o.alpha))
        return lm_last_status();
    operands ops = start_operands(param);
    bool has_buf = o.momentum > 0;
    if (!add_state(op, &ops, "square_avg", square_avg) ||
        (has_buf && !add_state(op, &ops, "momentum_buf", momentum_buf)) ||
        (o.centered && !add_state(op, &ops, "grad_avg", grad_avg)) || !no_overlap(op, &ops))
        return lm_last_status();
    const lm_backend *be = lm__backend(param->storage->device, op);
    if (!be || prepare(op, be, &ops)) return lm_last_status();
    int next = 3;
    lm_tensor *buf = has_buf ? ops.work[next++] : NULL;
    lm_tensor *gavg = o.centered ? ops.work[next] : NULL;
    be->optim->rmsprop(ops.work[PARAM], ops.work[GRAD], ops.work[2], buf, gavg, &o);
    finish(be, &ops);
    return LM_OK;
}
