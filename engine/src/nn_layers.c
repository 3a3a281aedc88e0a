/* nn_layers.c — placeholder until written. */
#include "internal.h"
