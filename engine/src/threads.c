/* threads.c — one thread count for our OpenMP loops and OpenBLAS (the OpenMP build of OpenBLAS
 * shares the same pool, so setting both keeps the two from oversubscribing the cores). */
#include "internal.h"

#include <omp.h>

void openblas_set_num_threads(int num_threads);

static int num_threads = 0; /* 0: not set yet, use OpenMP's default */

void lm_set_num_threads(int n)
{
    if (n < 1) n = 1;
    num_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int lm_get_num_threads(void) { return lm__threads(); }

int lm__threads(void) { return num_threads > 0 ? num_threads : omp_get_max_threads(); }
