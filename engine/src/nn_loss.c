/* nn_loss.c — placeholder until written. */
#include "internal.h"
