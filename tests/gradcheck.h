/* gradcheck.h — compares an op's backward with central finite differences in float64.
 *
 *   static lm_tensor *f(lm_tensor **x, void *ctx) { return lm_mul(x[0], x[1]); }
 *   lm_tensor *in[2] = {a, b};           // f64 tensors; those with requires_grad are checked
 *   gradcheck("mul", f, 2, in, NULL);    // one TAP line naming the op
 *
 * The output is reduced to a scalar as sum(out * w) with fixed random weights w, so every
 * output element's gradient path is exercised with a distinct weight. Inputs may be
 * non-contiguous views (transposed, sliced, expanded is not allowed: a perturbation would move
 * several elements). */
#ifndef LUMEN_GRADCHECK_H
#define LUMEN_GRADCHECK_H

#include "lumen.h"
#include <stdbool.h>

typedef lm_tensor *(*gc_fn)(lm_tensor **inputs, void *ctx);

typedef struct {
    double eps;   /* finite-difference step, default 1e-6 */
    double atol;  /* default 1e-7 */
    double rtol;  /* default 1e-5 */
} gc_opts;

/* Emits one TAP line "gradcheck NAME"; diagnostics name the worst element on failure. */
bool gradcheck(const char *name, gc_fn f, int n, lm_tensor **inputs, void *ctx);
bool gradcheck_opts(const char *name, gc_fn f, int n, lm_tensor **inputs, void *ctx, gc_opts o);

/* A leaf f64 tensor of the shape with values uniform in [lo, hi), requiring grad. */
lm_tensor *gc_input(int ndim, const int64_t *shape, double lo, double hi);

#endif
