/* norm_cpu.c — placeholder until written. */
#include "../internal.h"
struct lm_norm_kernels { int unused; };
LM_INTERNAL const struct lm_norm_kernels lm__cpu_norm_kernels = {0};
