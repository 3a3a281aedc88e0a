/* index_cpu.c — placeholder until written. */
#include "../internal.h"
struct lm_index_kernels { int unused; };
LM_INTERNAL const struct lm_index_kernels lm__cpu_index_kernels = {0};
