/* nn_attention.c — placeholder until written. */
#include "internal.h"
