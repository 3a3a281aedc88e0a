/* demo.c — what `make run` shows until the Lua side exists: a short tour of the engine, each
 * step printed the way the REPL will print it. */
#include "lumen.h"

#include <stdio.h>
#include <stdlib.h>

static void show(const char *what, lm_tensor *t)
{
    char *s = t ? lm_to_string(t) : NULL;
    printf(">>> %s\n%s\n\n", what, s ? s : lm_last_error());
    free(s);
}

int main(void)
{
    lm_manual_seed(0);
    lm_tensor *x = lm_arange(0, 6, 1, LM_F32);
    lm_tensor *m = lm_view(x, LM_SHAPE(2, 3));
    show("m = arange(6):view(2, 3)", m);
    lm_tensor *mt = lm_t(m);
    show("m:t()   -- a view, no copy", mt);
    lm_tensor *row = lm_from_data((float[]){10, 20, 30}, LM_F32, LM_SHAPE(3));
    lm_tensor *b = lm_add(m, row);
    show("m + tensor{10, 20, 30}   -- broadcasting", b);
    lm_tensor *p = lm_matmul(m, mt);
    show("m:matmul(m:t())", p);
    lm_tensor *s = lm_sum(m, LM_DIMS(1), false);
    show("m:sum{dim = 1}", s);
    lm_tensor *r = lm_randn(LM_SHAPE(2, 4), LM_F32);
    show("randn(2, 4) with seed 0", r);
    lm_tensor *g = lm_gelu(r);
    show("gelu of it", g);
    lm_tensor *bad = lm_add(m, r);
    show("m + randn(2, 4)   -- errors name the op and both shapes", bad);
    lm_tensor *big = lm_arange(0, 2000, 1, LM_F64);
    show("arange(2000, f64)   -- long tensors are summarised", big);
    lm_release(big);
    lm_release(g);
    lm_release(r);
    lm_release(s);
    lm_release(p);
    lm_release(b);
    lm_release(row);
    lm_release(mt);
    lm_release(m);
    lm_release(x);
    return 0;
}
