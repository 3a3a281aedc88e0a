/* creation.c — placeholder until written. */
#include "internal.h"
