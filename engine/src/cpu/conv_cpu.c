/* conv_cpu.c — placeholder until written. */
#include "../internal.h"
struct lm_conv_kernels { int unused; };
LM_INTERNAL const struct lm_conv_kernels lm__cpu_conv_kernels = {0};
