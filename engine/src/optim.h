/* optim.h — the kernel table of the fused optimizer steps, shared by the op layer (optim.c) and
 * each backend (cpu/optim_cpu.c, later the CUDA one).
 *
 * The op layer hands kernels validated operands: param, grad and every state tensor given are
 * CONTIGUOUS, of one float dtype (f32 or f64) and of the parameter's element count, and none
 * overlaps another. A state the options do not use is NULL. Kernels only compute, in place, in
 * one pass over the elements; they never fail and never allocate.
 *
 * The arithmetic follows PyTorch 1.13's single-tensor paths (torch/optim/sgd.py, adam.py,
 * adamw.py, rmsprop.py) op by op, in the parameter's dtype, with each Python scalar rounded to
 * that dtype as ATen does, so f32 results agree with PyTorch's to the last bit or two. */
#ifndef LUMEN_OPTIM_H
#define LUMEN_OPTIM_H

#include "internal.h"

/* Adam's per-step scalars, computed once by the op layer in double as PyTorch does in Python:
 * step_size = lr / (1 - beta1^step), bias_correction2_sqrt = sqrt(1 - beta2^step). */
typedef struct lm_adam_scalars {
    double step_size, bias_correction2_sqrt;
} lm_adam_scalars;

struct lm_optim_kernels {
    /* SGD: buf is NULL when o->momentum == 0; first: set buf to the update instead of
     * decaying it. */
    void (*sgd)(lm_tensor *param, const lm_tensor *grad, lm_tensor *buf, bool first,
                const lm_sgd_opts *o);
    /* Adam / AdamW: max_exp_avg_sq is non-NULL exactly when o->amsgrad. */
    void (*adam)(lm_tensor *param, const lm_tensor *grad, lm_tensor *exp_avg,
                 lm_tensor *exp_avg_sq, lm_tensor *max_exp_avg_sq, const lm_adam_opts *o,
                 lm_adam_scalars s);
    /* RMSprop: momentum_buf non-NULL exactly when o->momentum > 0, grad_avg when o->centered. */
    void (*rmsprop)(lm_tensor *param, const lm_tensor *grad, lm_tensor *square_avg,
                    lm_tensor *momentum_buf, lm_tensor *grad_avg, const lm_rmsprop_opts *o);
};

#endif /* LUMEN_OPTIM_H */
