/* elementwise_cpu.c — placeholder until written. */
#include "../internal.h"
struct lm_elementwise_kernels { int unused; };
LM_INTERNAL const struct lm_elementwise_kernels lm__cpu_elementwise_kernels = {0};
