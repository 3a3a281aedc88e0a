/* nn_step.c — the time of one training step in Lumen: forward, loss, backward and the optimizer
 * step, for two models on random data at batch 64 (bench/nn_step.py times the same in PyTorch;
 * bench/nn_step.sh runs both and prints the ratio):
 *
 *   mlp    784-128-10, ReLU, cross_entropy, Adam (lr 1e-3)
 *   lenet  LeNet-5: conv 1->6 5x5 pad 2, ReLU, max_pool 2, conv 6->16 5x5, ReLU, max_pool 2,
 *          fc 400-120-84-10 with ReLU, cross_entropy, Adam (lr 1e-3)
 *
 *   ./build/bench/nn_step [--threads N] [--model mlp|lenet] [--runs R]
 *
 * Prints one line per model, "mlp 0.123 ms/step (min 0.120, loss 2.31 -> 2.05)": the median of
 * R timed runs (default 7), each of enough steps to last at least 0.2 s, after a warm-up of 20
 * steps. A model whose step fails prints "n/a" and the error. */
#include "lumen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 64
#define WARMUP 20
#define MIN_RUN_S 0.2
#define MAX_PARAMS 10

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- models ---------------------------------------------------------------------------------- */

typedef struct model model;
typedef lm_tensor *(*forward_fn)(const model *m, const lm_tensor *x);

struct model {
    const char *name;
    forward_fn forward;               /* x -> logits [BATCH, 10] */
    int nparams;
    lm_tensor *p[MAX_PARAMS];         /* leaves: weight, bias, weight, bias, ... */
    lm_tensor *m[MAX_PARAMS], *v[MAX_PARAMS]; /* Adam's state */
    lm_tensor *x, *target;
    int64_t t;                        /* Adam's step count */
};

/* Weight [out, in...] and bias [out] uniform in +-1/sqrt(fan_in), as PyTorch's default init. */
static bool add_layer(model *m, int wdim, const int64_t *wshape)
{
    int64_t fan_in = 1;
    for (int d = 1; d < wdim; d++) fan_in *= wshape[d];
    double bound = 1.0 / sqrt((double)fan_in);
    lm_tensor *w = lm_empty(wdim, wshape, LM_F32), *b = lm_empty(1, wshape, LM_F32);
    if (!w || !b || lm_uniform_(w, -bound, bound) || lm_uniform_(b, -bound, bound)) {
        lm_release(w);
        lm_release(b);
        return false;
    }
    lm_tensor *pair[2] = {w, b};
    for (int k = 0; k < 2; k++) {
        int i = m->nparams++;
        m->p[i] = pair[k];
        lm_requires_grad_(m->p[i], true);
        m->m[i] = lm_zeros_like(m->p[i]);
        m->v[i] = lm_zeros_like(m->p[i]);
        if (!m->m[i] || !m->v[i]) return false;
    }
    return true;
}

/* Releases a list of temporaries and returns r. */
static lm_tensor *drop(lm_tensor *r, int n, lm_tensor **ts)
{
    for (int i = 0; i < n; i++) lm_release(ts[i]);
    return r;
}

static lm_tensor *mlp_forward(const model *m, const lm_tensor *x)
{
    lm_tensor *a = lm_linear(x, m->p[0], m->p[1]);
    lm_tensor *h = lm_relu(a);
    lm_tensor *z = lm_linear(h, m->p[2], m->p[3]);
    return drop(z, 2, (lm_tensor *[]){a, h});
}

static lm_tensor *lenet_forward(const model *m, const lm_tensor *x)
{
    const int one[2] = {1, 1}, zero[2] = {0, 0}, two[2] = {2, 2};
    lm_tensor *c1 = lm_conv2d(x, m->p[0], m->p[1], one, two, one, 1);
    lm_tensor *r1 = lm_relu(c1);
    lm_tensor *s1 = lm_max_pool2d(r1, two, two, zero, one, false, NULL);
    lm_tensor *c2 = lm_conv2d(s1, m->p[2], m->p[3], one, zero, one, 1);
    lm_tensor *r2 = lm_relu(c2);
    lm_tensor *s2 = lm_max_pool2d(r2, two, two, zero, one, false, NULL);
    lm_tensor *f = lm_flatten(s2, 1, -1);
    lm_tensor *a3 = lm_linear(f, m->p[4], m->p[5]);
    lm_tensor *r3 = lm_relu(a3);
    lm_tensor *a4 = lm_linear(r3, m->p[6], m->p[7]);
    lm_tensor *r4 = lm_relu(a4);
    lm_tensor *z = lm_linear(r4, m->p[8], m->p[9]);
    return drop(z, 11, (lm_tensor *[]){c1, r1, s1, c2, r2, s2, f, a3, r3, a4, r4});
}

static bool model_init(model *m, const char *name)
{
    memset(m, 0, sizeof *m);
    m->name = name;
    lm_manual_seed(0);
    bool good;
    if (strcmp(name, "mlp") == 0) {
        m->forward = mlp_forward;
        m->x = lm_randn(LM_SHAPE(BATCH, 784), LM_F32);
        good = add_layer(m, LM_SHAPE(128, 784)) && add_layer(m, LM_SHAPE(10, 128));
    } else {
        m->forward = lenet_forward;
        m->x = lm_randn(LM_SHAPE(BATCH, 1, 28, 28), LM_F32);
        good = add_layer(m, LM_SHAPE(6, 1, 5, 5)) && add_layer(m, LM_SHAPE(16, 6, 5, 5)) &&
               add_layer(m, LM_SHAPE(120, 400)) && add_layer(m, LM_SHAPE(84, 120)) &&
               add_layer(m, LM_SHAPE(10, 84));
    }
    m->target = lm_randint(0, 10, LM_SHAPE(BATCH), LM_I64);
    return good && m->x && m->target;
}

static void model_free(model *m)
{
    for (int i = 0; i < m->nparams; i++) {
        lm_release(m->p[i]);
        lm_release(m->m[i]);
        lm_release(m->v[i]);
    }
    lm_release(m->x);
    lm_release(m->target);
}

/* One training step; *loss_out gets the loss. False when anything failed. */
static bool train_step(model *m, double *loss_out)
{
    static const lm_adam_opts adam = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    lm_tensor *z = m->forward(m, m->x);
    lm_tensor *loss = lm_cross_entropy(z, m->target, NULL, -100, 0.0, LM_REDUCTION_MEAN);
    bool good = loss != NULL;
    for (int i = 0; good && i < m->nparams; i++) lm_zero_grad(m->p[i]);
    good = good && lm_backward(loss, NULL, false) == LM_OK && lm_item(loss, loss_out) == LM_OK;
    m->t++;
    for (int i = 0; good && i < m->nparams; i++)
        good = lm_adam_step(m->p[i], m->m[i], m->v[i], NULL, m->t, adam) == LM_OK;
    lm_release(loss);
    lm_release(z);
    return good;
}

/* ---- timing ---------------------------------------------------------------------------------- */

static void bench_model(const char *name, int runs)
{
    model m;
    double first = 0, loss = 0;
    bool good = model_init(&m, name) && train_step(&m, &first);
    for (int i = 1; good && i < WARMUP; i++) good = train_step(&m, &loss);
    /* Steps per run from the warm-up's speed. */
    double t0 = now();
    for (int i = 0; good && i < 5; i++) good = train_step(&m, &loss);
    double once = (now() - t0) / 5;
    int steps = once > 0 ? (int)(MIN_RUN_S / once) + 1 : 100;
    double *ms = malloc(sizeof(double) * (size_t)runs);
    for (int r = 0; good && ms && r < runs; r++) {
        t0 = now();
        for (int i = 0; good && i < steps; i++) good = train_step(&m, &loss);
        ms[r] = 1e3 * (now() - t0) / steps;
    }
    if (good && ms) {
        qsort(ms, (size_t)runs, sizeof(double), cmp_double);
        printf("%s %.4f ms/step (min %.4f, %d runs of %d steps, loss %.4f -> %.4f)\n", name,
               ms[runs / 2], ms[0], runs, steps, first, loss);
    } else {
        printf("%s n/a (%s)\n", name, lm_last_error());
    }
    free(ms);
    model_free(&m);
}

int main(int argc, char **argv)
{
    int threads = 0, runs = 7;
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--model") == 0) only = argv[i + 1];
        else if (strcmp(argv[i], "--runs") == 0) runs = atoi(argv[i + 1]);
    }
    if (runs < 1) runs = 1;
    if (threads > 0) lm_set_num_threads(threads);
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("# lumen nn_step: batch %d, Adam; threads %d; OPENBLAS_CORETYPE=%s\n", BATCH,
           lm_get_num_threads(), ct ? ct : "(unset)");
    static const char *const models[] = {"mlp", "lenet"};
    for (int i = 0; i < 2; i++)
        if (!only || strcmp(only, models[i]) == 0) bench_model(models[i], runs);
    return 0;
}
