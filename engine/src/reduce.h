/* reduce.h — the reduction family (sum, mean, prod, var, std, logsumexp, norm, amax/amin,
 * max/min with indices, argmax/argmin): the op list and the kernel table a backend fills.
 *
 * Dtypes (PyTorch's, with one difference): sum and prod of u8/i64 give i64; mean, var, std,
 * logsumexp and norm of u8/i64 give f32 (PyTorch refuses mean/var/std/norm of integers; we
 * promote instead, accumulating in double); the max/min family keeps the input dtype and gives
 * i64 indices. */
#ifndef LUMEN_REDUCE_H
#define LUMEN_REDUCE_H

#include "internal.h"

/* One entry per public op kind, so that autograd can tell amax (gradient shared between ties)
 * from argmax (none); MAX/MIN serve lm_max (shared between ties, like amax) and lm_max_dim
 * (gradient to the returned index), which reduce.c tells apart by the dims given. */
typedef enum lm_reduce_op {
    LM_REDUCE_SUM = 0,
    LM_REDUCE_MEAN,
    LM_REDUCE_PROD,
    LM_REDUCE_VAR,
    LM_REDUCE_STD,
    LM_REDUCE_LOGSUMEXP,
    LM_REDUCE_NORM,
    LM_REDUCE_AMAX,
    LM_REDUCE_AMIN,
    LM_REDUCE_MAX,    /* lm_max, lm_max_dim: values and/or indices */
    LM_REDUCE_MIN,
    LM_REDUCE_ARGMAX, /* indices only */
    LM_REDUCE_ARGMIN,
    LM_REDUCE_OP_COUNT
} lm_reduce_op;

typedef struct lm_reduce_params {
    int64_t correction; /* var, std: divide by max(0, n - correction) */
    double p;           /* norm: 0 (count of non-zeros), 1, 2, INFINITY or any p > 0 */
} lm_reduce_params;

struct lm_reduce_kernels {
    /* Reduces `in` (any strides, any dtype) over the dims whose bit is set in mask.
     * out and indices are contiguous, hold one element per combination of the kept dims in C
     * order (their shape may or may not keep the reduced dims), and have the dtype the op layer
     * chose (indices: i64). out is NULL for ARGMAX/ARGMIN; indices is non-NULL only for
     * MAX/MIN/ARGMAX/ARGMIN, and then mask has at most one bit set. For the max/min family the
     * reduced dims are not empty (the op layer refuses that). Returns LM_OK, or LM_ERR_MEMORY
     * with the error set when scratch memory cannot be had. Results do not depend on the
     * number of threads. */
    lm_status (*reduce)(lm_reduce_op op, lm_tensor *out, lm_tensor *indices, const lm_tensor *in,
                        uint32_t mask, const lm_reduce_params *params);
};

#endif /* LUMEN_REDUCE_H */
