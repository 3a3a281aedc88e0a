/* nn_pool.c — placeholder until written. */
#include "internal.h"
