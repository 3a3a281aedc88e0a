/* elementwise.c — placeholder until written. */
#include "internal.h"
