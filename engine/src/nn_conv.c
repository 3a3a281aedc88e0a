/* nn_conv.c — placeholder until written. */
#include "internal.h"
