/* nn_loss.c — softmax and log_softmax, and the losses: cross_entropy and nll_loss over class
 * indices, mse, l1, smooth l1, binary cross entropy on probabilities and on logits.
 *
 * Each op here is one autograd node with its own backward (a fused kernel of the loss family,
 * loss.h), not a chain of primitives: cross entropy on [64, 10] logits is one pass forward and
 * one pass backward, which is what a small training step needs. The tests compare each of them
 * with its composition from primitives, forward and backward.
 *
 * The op layer checks arguments and shapes, converts operands to contiguous tensors of the
 * compute dtype (with gradient recording off, so the conversions leave no nodes behind), runs
 * the kernel and records the node. Semantics follow PyTorch 1.13: mean reduction of a weighted
 * class loss divides by the sum of the weights of the targets not ignored; label smoothing
 * mixes in the uniform distribution as (1 - eps) nll + eps / C * sum_c w[c] (-log p[c]). Weights
 * and pos_weight take no gradient (as in PyTorch); a weight that requires one is refused. */
#include "autograd.h"
#include "loss.h"

#include <math.h>
#include <string.h>

/* ---- shared steps -------------------------------------------------------------------------- */

static bool check_reduction(const char *op, lm_reduction r)
{
    if ((unsigned)r <= LM_REDUCTION_NONE) return true;
    lm__error(LM_ERR_ARG, "%s: unknown reduction %d (expected mean, sum or none)", op, (int)r);
    return false;
}

static bool check_device(const char *op, const lm_tensor *a, const lm_tensor *b)
{
    if (!b || a->storage->device == b->storage->device) return true;
    lm__error(LM_ERR_ARG, "%s: expected all tensors on one device, got shapes %s and %s on "
              "devices %d and %d",
              op, lm__shp(a).s, lm__shp(b).s, a->storage->device, b->storage->device);
    return false;
}

/* A tensor whose gradient the op does not compute must not ask for one. */
static bool refuse_grad(const char *op, const char *what, const lm_tensor *t)
{
    if (!t || !t->requires_grad || !lm_grad_enabled()) return true;
    lm__error(LM_ERR_UNSUPPORTED,
              "%s: the gradient with respect to %s (shape %s) is not supported, as in PyTorch; "
              "detach it",
              op, what, lm__shp(t).s);
    return false;
}

/* t as a contiguous tensor of dtype dt, expanded to shape when ndim >= 0 (t broadcastable to
 * it), built with gradient recording off: the op records its own node. */
static lm_tensor *plain(const lm_tensor *t, lm_dtype dt, int ndim, const int64_t *shape)
{
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *c = lm_to_dtype(t, dt);
    if (c && ndim >= 0) {
        lm_tensor *e = lm__expand_to(c, ndim, shape);
        lm_release(c);
        c = e;
    }
    lm_tensor *r = c ? lm_contiguous(c) : NULL;
    lm_release(c);
    lm_set_grad_enabled(prev);
    return r;
}

static bool same_shape(int na, const int64_t *sa, int nb, const int64_t *sb)
{
    if (na != nb) return false;
    for (int i = 0; i < na; i++)
        if (sa[i] != sb[i]) return false;
    return true;
}

/* The value of a reduced loss as a 0-dim tensor of dtype dt. */
static lm_tensor *scalar_result(const char *op, double v, lm_dtype dt, lm_device dev)
{
    lm_tensor *r = lm__new(op, 0, NULL, dt, dev);
    if (!r) return NULL;
    const lm_backend *be = lm__backend(dev, op);
    if (!be) {
        lm_release(r);
        return NULL;
    }
    be->copy->fill(r, v);
    return r;
}

/* The loss gradient of a reduction's backward: a number (scale) for mean and sum, or the
 * per-element gradient made contiguous in dtype dt for none (*per_elem, owned). */
static lm_status reduction_grad(const lm_tensor *g, lm_reduction r, double divisor, lm_dtype dt,
                                double *scale, lm_tensor **per_elem)
{
    *per_elem = NULL;
    if (r == LM_REDUCTION_NONE) {
        *scale = 1;
        *per_elem = plain(g, dt, -1, NULL);
        return *per_elem ? LM_OK : lm_last_status();
    }
    double v;
    lm_status st = lm_item(g, &v);
    if (st) return st;
    *scale = r == LM_REDUCTION_MEAN ? v / divisor : v;
    return LM_OK;
}

/* ---- softmax and log_softmax --------------------------------------------------------------- */

/* ip[0]: the dim, ip[1]: log. saved[0]: the output. */
static lm_status softmax_backward(lm_node *node, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *y = lm__saved(node, 0);
    if (!y) return lm_last_status();
    const char *op = node->op->name;
    const lm_backend *be = lm__backend(y->storage->device, op);
    if (!be) return lm_last_status();
    lm_tensor *gc = plain(g, y->dtype, -1, NULL);
    lm_tensor *gx = gc ? lm__new(op, y->ndim, y->shape, y->dtype, y->storage->device) : NULL;
    if (gx && lm_numel(gx) > 0)
        be->loss->softmax_backward(gx, gc, y, (int)node->ip[0], node->ip[1] != 0, false);
    lm_release(gc);
    if (!gx) return lm_last_status();
    gi[0] = gx;
    return LM_OK;
}

static const lm_grad_op softmax_grad = {"softmax", softmax_backward};
static const lm_grad_op log_softmax_grad = {"log_softmax", softmax_backward};

static lm_tensor *softmax_op(const lm_grad_op *grad, const lm_tensor *x, int dim, bool logp)
{
    const char *op = grad->name;
    if (!lm__arg(x, op)) return NULL;
    int d = lm__wrap_dim(dim, x->ndim, op);
    if (d < 0) return NULL;
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return NULL;
    /* Integer inputs are computed in f32, as the other float-valued functions. */
    lm_dtype dt = lm_dtype_is_float(x->dtype) ? x->dtype : LM_F32;
    lm_tensor *xc = plain(x, dt, -1, NULL);
    lm_tensor *y = xc ? lm__new(op, x->ndim, x->shape, dt, x->storage->device) : NULL;
    if (y && lm_numel(y) > 0) be->loss->softmax(y, xc, d, logp, false);
    lm_release(xc);
    if (y && lm__needs_grad(1, &x)) {
        lm_node *n = lm__record(grad, y, 1, &x);
        if (!n || lm__save(n, y)) {
            lm_release(y);
            return NULL;
        }
        n->ip[0] = d;
        n->ip[1] = logp;
    }
    return y;
}

lm_tensor *lm_softmax(const lm_tensor *x, int dim)
{
    return softmax_op(&softmax_grad, x, dim, false);
}

lm_tensor *lm_log_softmax(const lm_tensor *x, int dim)
{
    return softmax_op(&log_softmax_grad, x, dim, true);
}

/* ---- class losses: cross_entropy and nll_loss ---------------------------------------------- */

/* A class loss's operands made ready for the kernels; the tensors are owned. */
typedef struct {
    lm_class_loss a;
    lm_tensor *input, *target, *weight;
    const lm_backend *be;
} class_setup;

static void class_release(class_setup *s)
{
    lm_release(s->input);
    lm_release(s->target);
    lm_release(s->weight);
}

/* Checks the operands (what = "logits" or "input") and fills s. */
static bool class_prepare(const char *op, const char *what, const lm_tensor *input,
                          const lm_tensor *target, const lm_tensor *weight, int64_t ignore_index,
                          double label_smoothing, lm_reduction reduction, class_setup *s)
{
    memset(s, 0, sizeof *s);
    if (!lm__arg(input, op) || !lm__arg(target, op)) return false;
    if (!check_reduction(op, reduction)) return false;
    if (!check_device(op, input, target) || !check_device(op, input, weight)) return false;
    if (!lm_dtype_is_float(input->dtype)) {
        lm__error(LM_ERR_DTYPE, "%s: %s must be f32 or f64, got %s (shape %s)", op, what,
                  lm_dtype_name(input->dtype), lm__shp(input).s);
        return false;
    }
    if (target->dtype != LM_I64) {
        lm__error(LM_ERR_DTYPE, "%s: target must hold i64 class indices, got %s (shape %s)", op,
                  lm_dtype_name(target->dtype), lm__shp(target).s);
        return false;
    }
    if (input->ndim == 0) {
        lm__error(LM_ERR_SHAPE,
                  "%s: %s need a class dim: expected [C], [N, C] or [N, C, d...], got a 0-dim "
                  "tensor",
                  op, what);
        return false;
    }
    /* The target has the input's shape without the class dim (dim 1, or dim 0 of a [C]). */
    int cdim = input->ndim == 1 ? 0 : 1;
    int64_t want[LM_MAX_DIMS];
    int nw = 0;
    for (int d = 0; d < input->ndim; d++)
        if (d != cdim) want[nw++] = input->shape[d];
    if (!same_shape(target->ndim, target->shape, nw, want)) {
        lm__error(LM_ERR_SHAPE, "%s: target shape %s does not match %s shape %s (expected %s)",
                  op, lm__shp(target).s, what, lm__shp(input).s, lm__shp_raw(nw, want).s);
        return false;
    }
    int64_t c = input->shape[cdim];
    if (c == 0) {
        lm__error(LM_ERR_SHAPE, "%s: %s of shape %s have no classes", op, what,
                  lm__shp(input).s);
        return false;
    }
    if (weight) {
        if (!lm_dtype_is_float(weight->dtype) || weight->ndim != 1 || weight->shape[0] != c) {
            lm__error(lm_dtype_is_float(weight->dtype) ? LM_ERR_SHAPE : LM_ERR_DTYPE,
                      "%s: weight must be a 1-D floating tensor with one entry per class: "
                      "got %s %s for the %lld classes of %s %s",
                      op, lm_dtype_name(weight->dtype), lm__shp(weight).s, (long long)c, what,
                      lm__shp(input).s);
            return false;
        }
        if (!refuse_grad(op, "weight", weight)) return false;
    }
    if (!(label_smoothing >= 0 && label_smoothing <= 1)) {
        lm__error(LM_ERR_ARG, "%s: label_smoothing must be in [0, 1], got %g", op,
                  label_smoothing);
        return false;
    }
    s->be = lm__backend(input->storage->device, op);
    if (!s->be) return false;
    s->input = plain(input, input->dtype, -1, NULL);
    s->target = s->input ? plain(target, LM_I64, -1, NULL) : NULL;
    s->weight = s->target && weight ? plain(weight, input->dtype, -1, NULL) : NULL;
    if (!s->target || (weight && !s->weight)) {
        class_release(s);
        return false;
    }
    s->a = (lm_class_loss){
        .input = s->input,
        .target = s->target,
        .weight = s->weight,
        .n = input->ndim == 1 ? 1 : input->shape[0],
        .c = c,
        .inner = 1,
        .ignore_index = ignore_index,
        .label_smoothing = label_smoothing,
    };
    for (int d = 2; d < input->ndim; d++) s->a.inner *= input->shape[d];
    return true;
}

/* Rebuilds the kernel arguments of a class loss from its node: saved[0] the target,
 * saved[1] the weight when ip[5], and ip[0..4] n, c, inner, ignore_index, reduction. */
static bool class_from_node(lm_node *node, const lm_tensor *input, lm_class_loss *a)
{
    const lm_tensor *target = lm__saved(node, 0);
    const lm_tensor *weight = node->ip[5] ? lm__saved(node, 1) : NULL;
    if (!target || (node->ip[5] && !weight)) return false;
    *a = (lm_class_loss){
        .input = input,
        .target = target,
        .weight = weight,
        .n = node->ip[0],
        .c = node->ip[1],
        .inner = node->ip[2],
        .ignore_index = node->ip[3],
        .label_smoothing = node->dp[0],
    };
    return true;
}

static lm_node *class_record(const lm_grad_op *grad, lm_tensor *out, const lm_tensor *input,
                             const class_setup *s, lm_reduction reduction, double divisor)
{
    lm_node *n = lm__record(grad, out, 1, &input);
    if (!n || lm__save(n, s->target) || (s->weight && lm__save(n, s->weight))) return NULL;
    n->ip[0] = s->a.n;
    n->ip[1] = s->a.c;
    n->ip[2] = s->a.inner;
    n->ip[3] = s->a.ignore_index;
    n->ip[4] = reduction;
    n->ip[5] = s->weight != NULL;
    n->dp[0] = s->a.label_smoothing;
    n->dp[1] = divisor;
    return n;
}

/* The loss as the reduction asks: loss itself for none (taken), else a 0-dim total. */
static lm_tensor *class_result(const char *op, lm_tensor *loss, double total, double weight_sum,
                               lm_reduction reduction)
{
    if (reduction == LM_REDUCTION_NONE) return loss;
    double v = reduction == LM_REDUCTION_MEAN ? total / weight_sum : total;
    lm_tensor *r = scalar_result(op, v, loss->dtype, loss->storage->device);
    lm_release(loss);
    return r;
}

static void bad_target(const char *op, int64_t bad, const class_setup *s, const char *what,
                       const lm_tensor *input)
{
    lm__error(LM_ERR_INDEX,
              "%s: target %lld is out of bounds for %lld classes (%s %s; ignore_index %lld)", op,
              (long long)bad, (long long)s->a.c, what, lm__shp(input).s,
              (long long)s->a.ignore_index);
}

/* saved as in class_from_node, then saved[1 or 2]: the log-sum-exps; dp[1]: the mean's
 * divisor. */
static lm_status cross_entropy_backward(lm_node *node, const lm_tensor *g, lm_tensor **gi)
{
    int k = node->ip[5] ? 2 : 1;
    const lm_tensor *logits = lm__saved(node, k), *lse = lm__saved(node, k + 1);
    lm_class_loss a;
    if (!logits || !lse || !class_from_node(node, logits, &a)) return lm_last_status();
    const lm_backend *be = lm__backend(logits->storage->device, "cross_entropy");
    if (!be) return lm_last_status();
    double scale;
    lm_tensor *per;
    lm_status st = reduction_grad(g, (lm_reduction)node->ip[4], node->dp[1], logits->dtype, &scale,
                                  &per);
    if (st) return st;
    lm_tensor *gx = lm__new("cross_entropy", logits->ndim, logits->shape, logits->dtype,
                            logits->storage->device);
    if (gx && lm_numel(gx) > 0) be->loss->cross_entropy_backward(&a, gx, lse, per, scale);
    lm_release(per);
    if (!gx) return lm_last_status();
    gi[0] = gx;
    return LM_OK;
}

static const lm_grad_op cross_entropy_grad = {"cross_entropy", cross_entropy_backward};

lm_tensor *lm_cross_entropy(const lm_tensor *logits, const lm_tensor *target,
                            const lm_tensor *weight, int64_t ignore_index,
                            double label_smoothing, lm_reduction reduction)
{
    const char *op = "cross_entropy";
    class_setup s;
    if (!class_prepare(op, "logits", logits, target, weight, ignore_index, label_smoothing,
                       reduction, &s))
        return NULL;
    lm_device dev = logits->storage->device;
    lm_tensor *loss = lm__new(op, target->ndim, target->shape, logits->dtype, dev);
    lm_tensor *lse = loss ? lm__new(op, target->ndim, target->shape, logits->dtype, dev) : NULL;
    double total = 0, weight_sum = 0;
    int64_t bad;
    lm_tensor *out = NULL;
    if (lse && lm_numel(loss) > 0 &&
        !s.be->loss->cross_entropy(&s.a, loss, lse, &total, &weight_sum, &bad)) {
        bad_target(op, bad, &s, "logits", logits);
    } else if (lse) {
        out = class_result(op, loss, total, weight_sum, reduction);
        loss = NULL;
    }
    if (out && lm__needs_grad(1, &logits)) {
        lm_node *n = class_record(&cross_entropy_grad, out, logits, &s, reduction, weight_sum);
        if (!n || lm__save(n, s.input) || lm__save(n, lse)) {
            lm_release(out);
            out = NULL;
        }
    }
    lm_release(loss);
    lm_release(lse);
    class_release(&s);
    return out;
}

static lm_status nll_loss_backward(lm_node *node, const lm_tensor *g, lm_tensor **gi)
{
    /* The input's values are not needed, only its shape and dtype (the node's input record). */
    const lm_node_input *in = &node->inputs[0];
    const lm_tensor *target = lm__saved(node, 0);
    if (!target) return lm_last_status();
    lm_tensor *gx = lm__new("nll_loss", in->ndim, in->shape, in->dtype, target->storage->device);
    lm_class_loss a;
    if (!gx || !class_from_node(node, gx, &a)) {
        lm_release(gx);
        return lm_last_status();
    }
    const lm_backend *be = lm__backend(a.target->storage->device, "nll_loss");
    double scale;
    lm_tensor *per = NULL;
    lm_status st = be ? reduction_grad(g, (lm_reduction)node->ip[4], node->dp[1], in->dtype,
                                       &scale, &per)
                      : lm_last_status();
    if (!st && lm_numel(gx) > 0) be->loss->nll_loss_backward(&a, gx, per, scale);
    lm_release(per);
    if (st) {
        lm_release(gx);
        return st;
    }
    gi[0] = gx;
    return LM_OK;
}

static const lm_grad_op nll_loss_grad = {"nll_loss", nll_loss_backward};

lm_tensor *lm_nll_loss(const lm_tensor *log_probs, const lm_tensor *target,
                       const lm_tensor *weight, int64_t ignore_index, lm_reduction reduction)
{
    const char *op = "nll_loss";
    class_setup s;
    if (!class_prepare(op, "input", log_probs, target, weight, ignore_index, 0, reduction, &s))
        return NULL;
    lm_tensor *loss = lm__new(op, target->ndim, target->shape, log_probs->dtype,
                              log_probs->storage->device);
    double total = 0, weight_sum = 0;
    int64_t bad;
    lm_tensor *out = NULL;
    if (loss && lm_numel(loss) > 0 &&
        !s.be->loss->nll_loss(&s.a, loss, &total, &weight_sum, &bad)) {
        bad_target(op, bad, &s, "input", log_probs);
    } else if (loss) {
        out = class_result(op, loss, total, weight_sum, reduction);
        loss = NULL;
    }
    if (out && lm__needs_grad(1, &log_probs) &&
        !class_record(&nll_loss_grad, out, log_probs, &s, reduction, weight_sum)) {
        lm_release(out);
        out = NULL;
    }
    lm_release(loss);
    class_release(&s);
    return out;
}

/* ---- point-wise losses --------------------------------------------------------------------- */

/* ip[0]: the loss kind, ip[1]: the reduction, ip[2]: weight saved, ip[3]: pos_weight saved;
 * dp[0]: beta, dp[1]: the element count (the mean's divisor). saved: input, target, then the
 * weights present. */
static lm_status pointwise_backward(lm_node *node, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *x = lm__saved(node, 0), *y = lm__saved(node, 1);
    const lm_tensor *w = node->ip[2] ? lm__saved(node, 2) : NULL;
    const lm_tensor *pw = node->ip[3] ? lm__saved(node, 2 + (node->ip[2] != 0)) : NULL;
    if (!x || !y || (node->ip[2] && !w) || (node->ip[3] && !pw)) return lm_last_status();
    const char *op = node->op->name;
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return lm_last_status();
    lm_pointwise_args a = {(lm_pointwise_loss)node->ip[0], x, y, w, pw, node->dp[0]};
    double scale;
    lm_tensor *per;
    lm_status st = reduction_grad(g, (lm_reduction)node->ip[1], node->dp[1], x->dtype, &scale,
                                  &per);
    if (st) return st;
    lm_tensor *gx = NULL, *gy = NULL;
    if (lm__input_needs_grad(node, 0))
        gx = lm__new(op, x->ndim, x->shape, x->dtype, x->storage->device);
    if (lm__input_needs_grad(node, 1))
        gy = lm__new(op, x->ndim, x->shape, x->dtype, x->storage->device);
    bool good = (gx || !lm__input_needs_grad(node, 0)) && (gy || !lm__input_needs_grad(node, 1));
    if (good && lm_numel(x) > 0) be->loss->pointwise_backward(&a, gx, gy, per, scale);
    lm_release(per);
    if (!good) {
        lm_release(gx);
        lm_release(gy);
        return lm_last_status();
    }
    gi[0] = gx;
    gi[1] = gy;
    return LM_OK;
}

static const lm_grad_op mse_loss_grad = {"mse_loss", pointwise_backward};
static const lm_grad_op l1_loss_grad = {"l1_loss", pointwise_backward};
static const lm_grad_op smooth_l1_loss_grad = {"smooth_l1_loss", pointwise_backward};
static const lm_grad_op bce_grad = {"binary_cross_entropy", pointwise_backward};
static const lm_grad_op bce_logits_grad = {"binary_cross_entropy_with_logits", pointwise_backward};

/* Checks that an optional per-element weight broadcasts to the loss's shape. */
static bool check_weight(const char *op, const char *what, const lm_tensor *w, int ndim,
                         const int64_t *shape)
{
    if (!w) return true;
    if (!lm_dtype_is_float(w->dtype)) {
        lm__error(LM_ERR_DTYPE, "%s: %s must be f32 or f64, got %s (shape %s)", op, what,
                  lm_dtype_name(w->dtype), lm__shp(w).s);
        return false;
    }
    int nb;
    int64_t b[LM_MAX_DIMS];
    bool fits = lm__broadcast_shapes(op, w->ndim, w->shape, ndim, shape, &nb, b) == LM_OK &&
                same_shape(nb, b, ndim, shape);
    if (!fits) {
        lm__error(LM_ERR_SHAPE, "%s: %s shape %s cannot be broadcast to the input shape %s", op,
                  what, lm__shp(w).s, lm__shp_raw(ndim, shape).s);
        return false;
    }
    return refuse_grad(op, what, w);
}

static lm_tensor *pointwise_loss(const lm_grad_op *grad, lm_pointwise_loss kind,
                                 const lm_tensor *input, const lm_tensor *target,
                                 const lm_tensor *weight, const lm_tensor *pos_weight,
                                 double beta, lm_reduction reduction)
{
    const char *op = grad->name;
    if (!lm__arg(input, op) || !lm__arg(target, op) || !check_reduction(op, reduction))
        return NULL;
    if (!check_device(op, input, target) || !check_device(op, input, weight) ||
        !check_device(op, input, pos_weight))
        return NULL;
    bool bce = kind == LM_LOSS_BCE || kind == LM_LOSS_BCE_LOGITS;
    int ndim;
    int64_t shape[LM_MAX_DIMS];
    if (bce) {
        /* PyTorch refuses to broadcast the target of the binary cross entropies. */
        if (!same_shape(input->ndim, input->shape, target->ndim, target->shape))
            LM_FAIL(LM_ERR_SHAPE, "%s: target shape %s must be the same as input shape %s", op,
                    lm__shp(target).s, lm__shp(input).s);
        ndim = input->ndim;
        memcpy(shape, input->shape, sizeof shape);
    } else if (lm__broadcast_shapes(op, input->ndim, input->shape, target->ndim, target->shape,
                                    &ndim, shape)) {
        LM_FAIL(LM_ERR_SHAPE, "%s: input shape %s and target shape %s cannot be broadcast", op,
                lm__shp(input).s, lm__shp(target).s);
    }
    if (!check_weight(op, "weight", weight, ndim, shape) ||
        !check_weight(op, "pos_weight", pos_weight, ndim, shape))
        return NULL;
    if (kind == LM_LOSS_SMOOTH_L1 && !(beta >= 0))
        LM_FAIL(LM_ERR_ARG, "%s: beta must be >= 0, got %g", op, beta);
    /* beta 0 is the L1 loss (PyTorch calls l1_loss then); its formula would divide by 0. */
    if (kind == LM_LOSS_SMOOTH_L1 && beta == 0) kind = LM_LOSS_L1;
    const lm_backend *be = lm__backend(input->storage->device, op);
    if (!be) return NULL;

    lm_dtype dt = lm_promote_types(input->dtype, target->dtype);
    if (!lm_dtype_is_float(dt)) dt = LM_F32;
    lm_tensor *x = plain(input, dt, ndim, shape);
    lm_tensor *y = x ? plain(target, dt, ndim, shape) : NULL;
    lm_tensor *w = y && weight ? plain(weight, dt, ndim, shape) : NULL;
    lm_tensor *pw = y && pos_weight ? plain(pos_weight, dt, ndim, shape) : NULL;
    lm_tensor *loss = NULL, *out = NULL;
    if (y && (w || !weight) && (pw || !pos_weight))
        loss = lm__new(op, ndim, shape, dt, input->storage->device);
    lm_pointwise_args a = {kind, x, y, w, kind == LM_LOSS_BCE_LOGITS ? pw : NULL, beta};
    double total = 0;
    int64_t bad;
    int64_t numel = lm__shape_numel(ndim, shape);
    if (loss && numel > 0 && !be->loss->pointwise(&a, loss, &total, &bad)) {
        int64_t idx[LM_MAX_DIMS], rem = bad;
        for (int d = ndim - 1; d >= 0; d--) {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        double v = NAN;
        lm_get(x, idx, &v);
        lm__error(LM_ERR_ARG,
                  "%s: all elements of input should be between 0 and 1, got %g at flat index %lld "
                  "(input shape %s)",
                  op, v, (long long)bad, lm__shp(input).s);
    } else if (loss) {
        out = reduction == LM_REDUCTION_NONE ? lm_retain(loss)
              : scalar_result(op, reduction == LM_REDUCTION_MEAN ? total / (double)numel : total,
                              dt, input->storage->device);
    }
    const lm_tensor *ins[2] = {input, target};
    if (out && lm__needs_grad(2, ins)) {
        lm_node *n = lm__record(grad, out, 2, ins);
        if (!n || lm__save(n, x) || lm__save(n, y) || (w && lm__save(n, w)) ||
            (a.pos_weight && lm__save(n, pw))) {
            lm_release(out);
            out = NULL;
        } else {
            n->ip[0] = kind;
            n->ip[1] = reduction;
            n->ip[2] = w != NULL;
            n->ip[3] = a.pos_weight != NULL;
            n->dp[0] = beta;
            n->dp[1] = (double)numel;
        }
    }
    lm_release(loss);
    lm_release(x);
    lm_release(y);
    lm_release(w);
    lm_release(pw);
    return out;
}

lm_tensor *lm_mse_loss(const lm_tensor *input, const lm_tensor *target, lm_reduction reduction)
{
    return pointwise_loss(&mse_loss_grad, LM_LOSS_MSE, input, target, NULL, NULL, 0, reduction);
}

lm_tensor *lm_l1_loss(const lm_tensor *input, const lm_tensor *target, lm_reduction reduction)
{
    return pointwise_loss(&l1_loss_grad, LM_LOSS_L1, input, target, NULL, NULL, 0, reduction);
}

lm_tensor *lm_smooth_l1_loss(const lm_tensor *input, const lm_tensor *target, double beta,
                             lm_reduction reduction)
{
    return pointwise_loss(&smooth_l1_loss_grad, LM_LOSS_SMOOTH_L1, input, target, NULL, NULL,
                          beta, reduction);
}

lm_tensor *lm_binary_cross_entropy(const lm_tensor *input, const lm_tensor *target,
                                   const lm_tensor *weight, lm_reduction reduction)
{
    return pointwise_loss(&bce_grad, LM_LOSS_BCE, input, target, weight, NULL, 0, reduction);
}

lm_tensor *lm_binary_cross_entropy_with_logits(const lm_tensor *logits, const lm_tensor *target,
                                               const lm_tensor *weight,
                                               const lm_tensor *pos_weight,
                                               lm_reduction reduction)
{
    return pointwise_loss(&bce_logits_grad, LM_LOSS_BCE_LOGITS, logits, target, weight,
                          pos_weight, 0, reduction);
}
