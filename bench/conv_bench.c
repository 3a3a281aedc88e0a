/* conv_bench.c — conv2d forward and forward+backward GFLOP/s on LeNet's and a ResNet layer,
 * through the public API, next to bench/conv_bench.py (PyTorch, same layers and timing).
 * Usage: ninja -C build && ./build/bench/conv_bench [threads]; /usr/bin/python3 bench/conv_bench.py */
#include "lumen.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct { const char *name; int n, c, h, w, o, k, pad; } layer;

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of reps timings (after warm-up) of one call. */
static double time_it(int reps, lm_tensor *x, lm_tensor *w, lm_tensor *b, int pad, bool bwd)
{
    double t[64];
    const int s[2] = {1, 1}, p[2] = {pad, pad}, d[2] = {1, 1};
    for (int r = -3; r < reps; r++) {
        double t0 = now();
        lm_tensor *y = lm_conv2d(x, w, b, s, p, d, 1);
        if (bwd) {
            lm_tensor *seed = lm_ones_like(y);
            lm_backward(y, seed, false);
            lm_release(seed);
            lm_zero_grad(x);
            lm_zero_grad(w);
            lm_zero_grad(b);
        }
        lm_release(y);
        if (r >= 0) t[r] = now() - t0;
    }
    qsort(t, reps, sizeof t[0], cmp);
    return t[reps / 2];
}

int main(int argc, char **argv)
{
    if (argc > 1) lm_set_num_threads(atoi(argv[1]));
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("threads %d, OPENBLAS_CORETYPE=%s\n", lm_get_num_threads(), ct ? ct : "(unset)");
    layer L[] = {{"lenet conv1 64x1x28x28 -> 6, 5x5 pad 2", 64, 1, 28, 28, 6, 5, 2},
                 {"lenet conv2 64x6x14x14 -> 16, 5x5", 64, 6, 14, 14, 16, 5, 0},
                 {"resnet 8x64x56x56 -> 64, 3x3 pad 1", 8, 64, 56, 56, 64, 3, 1}};
    lm_manual_seed(0);
    for (int i = 0; i < 3; i++) {
        layer l = L[i];
        lm_tensor *x = lm_randn(LM_SHAPE(l.n, l.c, l.h, l.w), LM_F32);
        lm_tensor *w = lm_randn(LM_SHAPE(l.o, l.c, l.k, l.k), LM_F32);
        lm_tensor *b = lm_randn(LM_SHAPE(l.o), LM_F32);
        lm_requires_grad_(x, true);
        lm_requires_grad_(w, true);
        lm_requires_grad_(b, true);
        int oh = l.h + 2 * l.pad - l.k + 1, ow = l.w + 2 * l.pad - l.k + 1;
        double flop = 2.0 * l.n * l.o * l.c * l.k * l.k * oh * ow;
        int reps = i == 2 ? 15 : 41;
        bool prev = lm_set_grad_enabled(false);
        double tf = time_it(reps, x, w, b, l.pad, false);
        lm_set_grad_enabled(prev);
        double tb = time_it(reps, x, w, b, l.pad, true);
        printf("%-42s fwd %8.3f ms %6.1f GFLOP/s | fwd+bwd %8.3f ms %6.1f GFLOP/s\n", l.name,
               tf * 1e3, flop / tf * 1e-9, tb * 1e3, 3 * flop / tb * 1e-9);
        lm_release(b);
        lm_release(w);
        lm_release(x);
    }
    return 0;
}
