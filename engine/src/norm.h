/* norm.h — the kernel table of the normalisation family (struct lm_norm_kernels): the fused
 * forward and backward of batch, layer and group normalisation, and the gradient of an
 * embedding lookup, as nn_layers.c calls them and a backend supplies them (the CPU one in
 * cpu/norm_cpu.c).
 *
 * Every normalisation sees its input as a contiguous [A, C, S] block (glossary):
 *   A  outer size: the batch N, or the rows of a layer norm
 *   C  channels: each has its own weight and bias
 *   S  inner size: the spatial elements of one channel (1 for a layer norm)
 *   G  groups: group and layer norms take statistics per (a, group) over C/G channels x S,
 *      which is a contiguous run of (C/G)*S elements; a layer norm over the last dims of a
 *      tensor is the case A = rows, C = the normalised size, S = 1, G = 1.
 * Batch norm takes statistics per channel, over A x S.
 *
 * The op layer hands kernels contiguous tensors of one dtype, f32 or f64 (x, y, gradients,
 * weights, statistics alike), with shapes it checked and at least one element. weight and bias
 * are always given (the op layer passes ones and zeros for a norm without affine parameters,
 * which keeps every inner loop a single variant); a gradient output that is not wanted is NULL.
 * Statistics accumulate in double. Kernels never fail and never allocate; their results do not
 * depend on the number of threads. */
#ifndef LUMEN_NORM_H
#define LUMEN_NORM_H

#include "internal.h"

typedef struct lm_norm_geom {
    int64_t outer;    /* A */
    int64_t channels; /* C */
    int64_t inner;    /* S */
    int64_t groups;   /* G: divides C; 1 for batch norm */
} lm_norm_geom;

struct lm_norm_kernels {
    /* Group statistics and the normalised output: for each (a, g), mean and rstd =
     * 1/sqrt(biased var + eps) into mean[a*G + g], rstd[a*G + g] (each [A*G]), and
     * y = (x - mean) * rstd * weight[c] + bias[c]. */
    void (*group_norm_forward)(const lm_norm_geom *geom, const lm_tensor *x,
                               const lm_tensor *weight, const lm_tensor *bias, double eps,
                               lm_tensor *y, lm_tensor *mean, lm_tensor *rstd);
    /* Gradients of group_norm_forward given dy ([A, C, S]): dx ([A, C, S]), dweight and dbias
     * ([C]), each NULL when not wanted. */
    void (*group_norm_backward)(const lm_norm_geom *geom, const lm_tensor *x,
                                const lm_tensor *weight, const lm_tensor *mean,
                                const lm_tensor *rstd, const lm_tensor *dy, lm_tensor *dx,
                                lm_tensor *dweight, lm_tensor *dbias);
    /* Per-channel batch statistics ([C] each): mean, invstd = 1/sqrt(biased var + eps) and,
     * when var is not NULL, the biased variance itself (for the running estimate). */
    void (*batch_norm_stats)(const lm_norm_geom *geom, const lm_tensor *x, double eps,
                             lm_tensor *mean, lm_tensor *invstd, lm_tensor *var);
    /* y = (x - mean[c]) * invstd[c] * weight[c] + bias[c], with batch or running statistics. */
    void (*batch_norm_forward)(const lm_norm_geom *geom, const lm_tensor *x,
                               const lm_tensor *mean, const lm_tensor *invstd,
                               const lm_tensor *weight, const lm_tensor *bias, lm_tensor *y);
    /* Gradients of batch_norm_forward. training: mean and invstd are the batch's own statistics
     * (functions of x); otherwise they are constants (running statistics). */
    void (*batch_norm_backward)(const lm_norm_geom *geom, const lm_tensor *x,
                                const lm_tensor *mean, const lm_tensor *invstd,
                                const lm_tensor *weight, const lm_tensor *dy, bool training,
                                lm_tensor *dx, lm_tensor *dweight, lm_tensor *dbias);
    /* dweight ([V, D], written whole) = the rows of dy ([n, D]) summed into the rows that
     * indices ([n], i64, values in [0, V)) name, row padding_idx (if >= 0) left at zero. */
    void (*embedding_backward)(lm_tensor *dweight, const lm_tensor *dy, const lm_tensor *indices,
                               int64_t padding_idx);
};

#endif /* LUMEN_NORM_H */
