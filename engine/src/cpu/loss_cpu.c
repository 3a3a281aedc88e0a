/* loss_cpu.c — placeholder until written. */
#include "../internal.h"
struct lm_loss_kernels { int unused; };
LM_INTERNAL const struct lm_loss_kernels lm__cpu_loss_kernels = {0};
