/* backend_cpu.c — the CPU backend: the kernel tables of every op family, run with OpenMP and
 * OpenBLAS. Each table is defined in its family's file under cpu/. */
#include "../internal.h"

extern const struct lm_copy_kernels lm__cpu_copy_kernels;
extern const struct lm_elementwise_kernels lm__cpu_elementwise_kernels;
extern const struct lm_reduce_kernels lm__cpu_reduce_kernels;
extern const struct lm_blas_kernels lm__cpu_blas_kernels;
extern const struct lm_index_kernels lm__cpu_index_kernels;
extern const struct lm_random_kernels lm__cpu_random_kernels;
extern const struct lm_conv_kernels lm__cpu_conv_kernels;
extern const struct lm_norm_kernels lm__cpu_norm_kernels;
extern const struct lm_loss_kernels lm__cpu_loss_kernels;
extern const struct lm_optim_kernels lm__cpu_optim_kernels;

LM_INTERNAL const lm_backend lm__cpu_backend = {
    .name = "cpu",
    .device = LM_CPU,
    .copy = &lm__cpu_copy_kernels,
    .elementwise = &lm__cpu_elementwise_kernels,
    .reduce = &lm__cpu_reduce_kernels,
    .blas = &lm__cpu_blas_kernels,
    .index = &lm__cpu_index_kernels,
    .random = &lm__cpu_random_kernels,
    .conv = &lm__cpu_conv_kernels,
    .norm = &lm__cpu_norm_kernels,
    .loss = &lm__cpu_loss_kernels,
    .optim = &lm__cpu_optim_kernels,
};
