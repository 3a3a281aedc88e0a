/* loss.h — the kernel table of the softmax and loss family (struct lm_loss_kernels): softmax and
 * log_softmax along a dim, cross entropy and nll over class indices, and the point-wise losses
 * (mse, l1, smooth l1, binary cross entropy with probabilities or logits), as nn_loss.c and
 * nn_attention.c call them and a backend supplies them (the CPU one in cpu/loss_cpu.c).
 *
 * The op layer hands kernels contiguous tensors of one floating dtype (f32 or f64) with checked
 * shapes; i64 targets are contiguous but their values are not checked: the forward kernels check
 * them as they read them and report a bad one, so a separate pass over them is never needed.
 * Kernels never allocate and never fail otherwise. Sums over many elements (the totals that
 * mean and sum reductions use) accumulate in double, in an order that depends on the shape
 * only, so results do not depend on the number of threads.
 *
 * Glossary: a class loss reads its input as [N, C, inner] (logits [N, C, d1, ...] with inner =
 * d1 * ..., or [C] with N = inner = 1); a position is one of the N * inner (sample, d...) pairs,
 * each with one target class. */
#ifndef LUMEN_LOSS_H
#define LUMEN_LOSS_H

#include "internal.h"

/* A class loss's operands and options. */
typedef struct lm_class_loss {
    const lm_tensor *input;  /* [N, C, inner] as a contiguous tensor of any shape with that
                              * layout: logits (cross entropy) or log-probabilities (nll) */
    const lm_tensor *target; /* i64, N * inner elements, contiguous */
    const lm_tensor *weight; /* [C] contiguous, input's dtype, or NULL for all ones */
    int64_t n, c, inner;
    int64_t ignore_index;    /* positions with this target give 0 loss and 0 gradient */
    double label_smoothing;  /* cross entropy only, in [0, 1] */
} lm_class_loss;

/* The point-wise losses, element by element before the reduction (d = input - target):
 *   MSE         d²                          L1   |d|
 *   SMOOTH_L1   |d| < beta ? d²/(2 beta) : |d| - beta/2   (beta > 0)
 *   BCE         -w (y max(log x, -100) + (1 - y) max(log(1 - x), -100)),  x in [0, 1]
 *   BCE_LOGITS  w ((1 - y) x + (1 + (pw - 1) y) softplus(-x)),  stable for any x */
typedef enum lm_pointwise_loss {
    LM_LOSS_MSE,
    LM_LOSS_L1,
    LM_LOSS_SMOOTH_L1,
    LM_LOSS_BCE,
    LM_LOSS_BCE_LOGITS,
    LM_POINTWISE_LOSS_COUNT
} lm_pointwise_loss;

typedef struct lm_pointwise_args {
    lm_pointwise_loss op;
    const lm_tensor *input, *target; /* contiguous, one shape and dtype */
    const lm_tensor *weight;         /* BCE and BCE_LOGITS: contiguous, input's shape, or NULL */
    const lm_tensor *pos_weight;     /* BCE_LOGITS: contiguous, input's shape, or NULL */
    double beta;                     /* SMOOTH_L1 */
} lm_pointwise_args;

struct lm_loss_kernels {
    /* y = softmax(x) or, with logp, log_softmax(x) along dim; x and y contiguous, one shape.
     * With causal (dim the last of at least 2, softmax only as attention uses it), element j of
     * a row i (i: the index along the dim before) is left out, j > i: it gets 0 and the others
     * are normalised without it. A row holding NaN, or only -inf, gives NaN, as PyTorch. */
    void (*softmax)(lm_tensor *y, const lm_tensor *x, int dim, bool logp, bool causal);
    /* The gradient of x from the gradient of y, given y (all contiguous, one shape):
     * softmax: gx = y (gy - sum(gy y)); log_softmax: gx = gy - exp(y) sum(gy). Elements left out
     * by causal get 0. */
    void (*softmax_backward)(lm_tensor *gx, const lm_tensor *gy, const lm_tensor *y, int dim,
                             bool logp, bool causal);
    /* Cross entropy of logits: loss (N * inner elements, input's dtype) per position, 0 where
     * ignored; lse (same layout) the log-sum-exp of each position's logits, for the backward;
     * *total the sum of loss and *weight_sum the sum of weight[target] over the positions not
     * ignored (their count without weight): mean reduction divides one by the other, as
     * PyTorch (with label smoothing too). Returns false with *bad set to a target outside
     * [0, C) that is not ignore_index (the first in order); loss is then unspecified. */
    bool (*cross_entropy)(const lm_class_loss *a, lm_tensor *loss, lm_tensor *lse, double *total,
                          double *weight_sum, int64_t *bad);
    /* grad_input ([N, C, inner], contiguous) of cross entropy for the checked targets of a
     * forward: position i's loss gradient is scale * grad_loss[i], or scale when grad_loss is
     * NULL. */
    void (*cross_entropy_backward)(const lm_class_loss *a, lm_tensor *grad_input,
                                   const lm_tensor *lse, const lm_tensor *grad_loss, double scale);
    /* nll: loss[i] = -weight[t] input[i, t], with the same outputs and failure as cross_entropy
     * (no lse). */
    bool (*nll_loss)(const lm_class_loss *a, lm_tensor *loss, double *total, double *weight_sum,
                     int64_t *bad);
    void (*nll_loss_backward)(const lm_class_loss *a, lm_tensor *grad_input,
                              const lm_tensor *grad_loss, double scale);
    /* Point-wise loss per element into loss (contiguous, input's shape) and its sum in *total.
     * BCE returns false with *bad set to the flat index of the first input outside [0, 1]
     * (or NaN); the others always succeed. */
    bool (*pointwise)(const lm_pointwise_args *a, lm_tensor *loss, double *total, int64_t *bad);
    /* Gradients of the input and the target (either may be NULL when not wanted; contiguous,
     * input's shape) for a loss gradient grad_loss per element times scale, or scale alone
     * when grad_loss is NULL. */
    void (*pointwise_backward)(const lm_pointwise_args *a, lm_tensor *grad_input,
                               lm_tensor *grad_target, const lm_tensor *grad_loss, double scale);
};

#endif /* LUMEN_LOSS_H */
