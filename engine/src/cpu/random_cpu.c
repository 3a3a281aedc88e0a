/* random_cpu.c — placeholder until written. */
#include "../internal.h"
struct lm_random_kernels { int unused; };
LM_INTERNAL const struct lm_random_kernels lm__cpu_random_kernels = {0};
