/* blas_cpu.c — placeholder until written. */
#include "../internal.h"
struct lm_blas_kernels { int unused; };
LM_INTERNAL const struct lm_blas_kernels lm__cpu_blas_kernels = {0};
