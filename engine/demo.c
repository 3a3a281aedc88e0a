/* demo.c — `make run` for now: a small tour of the engine. */
#include "lumen.h"
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    lm_tensor *x = lm_ones(LM_SHAPE(2, 3), LM_F32);
    lm_tensor *v = lm_transpose(x, 0, 1);
    printf("x is %lldx%lld, x^T contiguous: %d\n", (long long)x->shape[0], (long long)x->shape[1],
           lm_is_contiguous(v));
    lm_release(v);
    lm_release(x);
    return 0;
}
