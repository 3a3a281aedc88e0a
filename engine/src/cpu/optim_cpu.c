/* optim_cpu.c — placeholder until written. */
#include "../internal.h"
struct lm_optim_kernels { int unused; };
LM_INTERNAL const struct lm_optim_kernels lm__cpu_optim_kernels = {0};
