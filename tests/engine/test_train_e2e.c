/* test_train_e2e.c — end-to-end training in C: the engine's ops, autograd and the fused
 * optimizer steps working together.
 *
 *   - XOR: a 2-8-1 MLP (tanh hidden layer, sigmoid output, binary cross-entropy) trained with
 *     SGD and momentum reaches a loss below 0.01 and classifies the four points.
 *   - Logistic regression on a separable synthetic 2-D set (binary cross-entropy with logits,
 *     Adam) reaches 100% training accuracy.
 *   - Thousands of forward/backward/step iterations of a small ReLU MLP with cross-entropy and
 *     AdamW: every call succeeds and the loss keeps decreasing. Run under valgrind, this is the
 *     check that a training loop frees its graphs.
 *
 * Everything is deterministic (lm_manual_seed) and takes well under a second. */
#include "lumen.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>

/* ---- a parameter and its optimizer state ---------------------------------------------------- */

typedef struct {
    lm_tensor *w;          /* the leaf being trained */
    lm_tensor *s1, *s2;    /* momentum buffer (SGD), or exp_avg / exp_avg_sq (Adam) */
} param;

/* A leaf of the shape with values uniform in [-bound, bound), as PyTorch's default init of
 * nn.Linear (bound = 1/sqrt(fan_in)), and zeroed state. */
static param param_new(int ndim, const int64_t *shape, double bound)
{
    param p = {lm_empty(ndim, shape, LM_F32), lm_zeros(ndim, shape, LM_F32),
               lm_zeros(ndim, shape, LM_F32)};
    lm_uniform_(p.w, -bound, bound);
    lm_requires_grad_(p.w, true);
    return p;
}

static void param_free(param *p)
{
    lm_release(p->w);
    lm_release(p->s1);
    lm_release(p->s2);
}

/* Linear layer: weight [out, in] and bias [out]. */
typedef struct {
    param w, b;
} linear;

static linear linear_new(int64_t in, int64_t out)
{
    double bound = 1.0 / sqrt((double)in);
    return (linear){param_new(LM_SHAPE(out, in), bound), param_new(LM_SHAPE(out), bound)};
}

static lm_tensor *linear_fwd(const linear *l, const lm_tensor *x)
{
    return lm_linear(x, l->w.w, l->b.w);
}

static void linear_free(linear *l)
{
    param_free(&l->w);
    param_free(&l->b);
}

/* Drops the gradients, runs backward of loss, then applies fn's step to every parameter.
 * Returns false (with a diagnostic) when anything fails. */
typedef lm_status (*step_fn)(param *p, int64_t t, const void *opts);

static bool train_step(lm_tensor *loss, param **ps, int np, step_fn fn, int64_t t,
                       const void *opts)
{
    for (int i = 0; i < np; i++) lm_zero_grad(ps[i]->w);
    if (!loss || lm_backward(loss, NULL, false) != LM_OK) {
        diag("step %lld: forward or backward failed: %s", (long long)t, lm_last_error());
        return false;
    }
    for (int i = 0; i < np; i++) {
        if (fn(ps[i], t, opts) != LM_OK) {
            diag("step %lld: optimizer failed: %s", (long long)t, lm_last_error());
            return false;
        }
    }
    return true;
}

static lm_status sgd_fn(param *p, int64_t t, const void *opts)
{
    return lm_sgd_step(p->w, p->s1, t == 1, *(const lm_sgd_opts *)opts);
}

static lm_status adam_fn(param *p, int64_t t, const void *opts)
{
    return lm_adam_step(p->w, p->s1, p->s2, NULL, t, *(const lm_adam_opts *)opts);
}

static double item(const lm_tensor *t)
{
    double v = NAN;
    if (t) lm_item(t, &v);
    return v;
}

/* ---- XOR ------------------------------------------------------------------------------------ */

static lm_tensor *xor_forward(const linear *l1, const linear *l2, const lm_tensor *x)
{
    lm_tensor *a = linear_fwd(l1, x);
    lm_tensor *h = lm_tanh(a);
    lm_tensor *z = linear_fwd(l2, h);
    lm_tensor *y = lm_sigmoid(z);
    lm_release(a);
    lm_release(h);
    lm_release(z);
    return y;
}

static void test_xor(void)
{
    static const float xs[] = {0, 0, 0, 1, 1, 0, 1, 1};
    static const float ys[] = {0, 1, 1, 0};
    lm_tensor *x = lm_from_data(xs, LM_F32, LM_SHAPE(4, 2));
    lm_tensor *y = lm_from_data(ys, LM_F32, LM_SHAPE(4, 1));
    lm_manual_seed(1);
    linear l1 = linear_new(2, 8), l2 = linear_new(8, 1);
    param *ps[] = {&l1.w, &l1.b, &l2.w, &l2.b};
    lm_sgd_opts o = {.lr = 0.5, .momentum = 0.9};
    double loss_v = NAN;
    int steps = 0;
    bool good = true;
    for (int t = 1; t <= 2000 && good; t++) {
        lm_tensor *out = xor_forward(&l1, &l2, x);
        lm_tensor *loss = lm_binary_cross_entropy(out, y, NULL, LM_REDUCTION_MEAN);
        loss_v = item(loss);
        good = train_step(loss, ps, 4, sgd_fn, t, &o);
        lm_release(loss);
        lm_release(out);
        steps = t;
        if (loss_v < 0.01) break;
    }
    ok(good && loss_v < 0.01, "XOR: a 2-8-1 tanh MLP with SGD+momentum reaches loss %.4g < 0.01 "
       "in %d steps", loss_v, steps);
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *out = xor_forward(&l1, &l2, x);
    lm_set_grad_enabled(prev);
    bool right = out != NULL;
    for (int i = 0; right && i < 4; i++) {
        double v = NAN;
        lm_get(out, (int64_t[]){i, 0}, &v);
        right = (v > 0.5) == (ys[i] > 0.5);
    }
    ok(right, "XOR: the trained MLP classifies the four points");
    ok(out && out->grad_fn == NULL, "XOR: no graph is recorded under no_grad");
    lm_release(out);
    linear_free(&l1);
    linear_free(&l2);
    lm_release(x);
    lm_release(y);
}

/* ---- logistic regression ---------------------------------------------------------------------- */

/* n points uniform in [-1, 1)^2, labelled by the side of the line x0 + 2 x1 = 0.3; points
 * closer to the line than a margin are pushed away from it, so the set is separable. */
static void separable_set(int64_t n, lm_tensor **x, lm_tensor **y)
{
    *x = lm_empty(LM_SHAPE(n, 2), LM_F32);
    *y = lm_empty(LM_SHAPE(n, 1), LM_F32);
    lm_uniform_(*x, -1, 1);
    float *xv = lm_data(*x), *yv = lm_data(*y);
    for (int64_t i = 0; i < n; i++) {
        double s = xv[2 * i] + 2.0 * xv[2 * i + 1] - 0.3;
        if (fabs(s) < 0.1) xv[2 * i + 1] += s >= 0 ? 0.1f : -0.1f;
        yv[i] = s >= 0 ? 1.0f : 0.0f;
    }
}

static void test_logistic(void)
{
    lm_manual_seed(2);
    lm_tensor *x, *y;
    separable_set(256, &x, &y);
    linear l = linear_new(2, 1);
    param *ps[] = {&l.w, &l.b};
    lm_adam_opts o = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    double first = NAN, last = NAN;
    bool good = true;
    for (int t = 1; t <= 300 && good; t++) {
        lm_tensor *z = linear_fwd(&l, x);
        lm_tensor *loss = lm_binary_cross_entropy_with_logits(z, y, NULL, NULL,
                                                              LM_REDUCTION_MEAN);
        last = item(loss);
        if (t == 1) first = last;
        good = train_step(loss, ps, 2, adam_fn, t, &o);
        lm_release(loss);
        lm_release(z);
    }
    ok(good && last < first, "logistic regression: loss %.4g -> %.4g", first, last);
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *z = linear_fwd(&l, x);
    lm_tensor *pred = lm_gt_scalar(z, 0.0);
    lm_tensor *yu = lm_gt_scalar(y, 0.5);
    lm_tensor *hit = lm_eq(pred, yu);
    lm_tensor *hits = lm_sum(hit, 0, NULL, false);
    lm_set_grad_enabled(prev);
    double correct = item(hits);
    ok(correct == 256, "logistic regression: 100%% training accuracy on a separable set "
       "(%g of 256)", correct);
    lm_release(hits);
    lm_release(hit);
    lm_release(yu);
    lm_release(pred);
    lm_release(z);
    linear_free(&l);
    lm_release(x);
    lm_release(y);
}

/* ---- many iterations -------------------------------------------------------------------------- */

static void test_many_steps(void)
{
    enum { BATCH = 32, STEPS = 3000 };
    lm_manual_seed(3);
    lm_tensor *x = lm_randn(LM_SHAPE(BATCH, 4), LM_F32);
    lm_tensor *target = lm_randint(0, 3, LM_SHAPE(BATCH), LM_I64);
    linear l1 = linear_new(4, 16), l2 = linear_new(16, 3);
    param *ps[] = {&l1.w, &l1.b, &l2.w, &l2.b};
    lm_adam_opts o = {.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                      .weight_decay = 1e-4, .decoupled_weight_decay = true};
    double losses[STEPS] = {0};
    bool good = true;
    int t = 1;
    for (; t <= STEPS && good; t++) {
        lm_tensor *a = linear_fwd(&l1, x);
        lm_tensor *h = lm_relu(a);
        lm_tensor *z = linear_fwd(&l2, h);
        lm_tensor *loss = lm_cross_entropy(z, target, NULL, -100, 0.0, LM_REDUCTION_MEAN);
        losses[t - 1] = item(loss);
        good = train_step(loss, ps, 4, adam_fn, t, &o);
        lm_release(loss);
        lm_release(z);
        lm_release(h);
        lm_release(a);
    }
    ok(good, "%d forward/backward/AdamW steps of a 4-16-3 MLP all succeed", t - 1);
    /* The loss of random labels falls as the MLP memorises them; compare averages over
     * windows, as single steps may go up. */
    double early = 0, mid = 0, late = 0;
    for (int i = 0; i < 100; i++) {
        early += losses[i] / 100;
        mid += losses[STEPS / 2 + i] / 100;
        late += losses[STEPS - 100 + i] / 100;
    }
    ok(good && mid < early && late < mid,
       "the loss keeps decreasing: %.4g (first 100) > %.4g (middle) > %.4g (last 100)", early,
       mid, late);
    linear_free(&l1);
    linear_free(&l2);
    lm_release(x);
    lm_release(target);
}

int main(void)
{
    plan_auto();
    lm_set_num_threads(1);
    test_xor();
    test_logistic();
    test_many_steps();
    return done();
}
