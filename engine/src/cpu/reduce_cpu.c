/* reduce_cpu.c — placeholder until written. */
#include "../internal.h"
struct lm_reduce_kernels { int unused; };
LM_INTERNAL const struct lm_reduce_kernels lm__cpu_reduce_kernels = {0};
