/* test_optim.c — the fused optimizer steps lm_sgd_step, lm_adam_step (AdamW, amsgrad) and
 * lm_rmsprop_step.
 *
 * Every configuration of the table `cases` runs on one tiny f32 parameter [2,3] with three fixed
 * gradients and is compared after one and after three steps (parameter and state) with
 *   - PyTorch 1.13's numbers for the same inputs (torch_refs below, printed by
 *     tests/engine/optim_reference.py: `/usr/bin/python3 tests/engine/optim_reference.py`), and
 *   - an independent double-precision loop written here from the algorithms of PyTorch's
 *     documentation (Adam in its textbook form with bias-corrected moments),
 * and in f64 against the same loop to 1e-12. Then: views (transposed, sliced) against the
 * contiguous result, a large tensor on one and two threads, version bumps, and the errors. */
#include "lumen.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N 6 /* elements of the tiny parameter, shape [2,3] */
#define STEPS 3

static const double P0[N] = {0.5, -1.25, 2.0, -0.75, 0.1, 3.0};
static const double GRADS[STEPS][N] = {
    {0.1, -0.2, 0.3, -0.4, 0.5, -0.6},
    {0.25, 0.05, -0.35, 0.6, -0.1, 0.2},
    {-0.3, 0.45, 0.15, -0.05, 0.7, -0.55},
};

typedef enum { SGD, ADAM, RMSPROP } kind;

/* One configuration; the state slots are, in order: SGD momentum_buf; Adam exp_avg,
 * exp_avg_sq, max_exp_avg_sq; RMSprop square_avg, momentum_buf, grad_avg. */
typedef struct {
    const char *name;
    kind k;
    lm_sgd_opts sgd;
    lm_adam_opts adam;
    lm_rmsprop_opts rms;
} optim_case;

#define ADAM_DEFAULTS .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8
#define RMS_DEFAULTS .lr = 0.01, .alpha = 0.99, .eps = 1e-8

/* Must match CASES in optim_reference.py entry by entry. */
static const optim_case cases[] = {
    {"sgd", SGD, .sgd = {.lr = 0.1}},
    {"sgd momentum", SGD, .sgd = {.lr = 0.1, .momentum = 0.9}},
    {"sgd dampening", SGD, .sgd = {.lr = 0.1, .momentum = 0.9, .dampening = 0.3}},
    {"sgd nesterov", SGD, .sgd = {.lr = 0.1, .momentum = 0.9, .nesterov = true}},
    {"sgd weight_decay", SGD, .sgd = {.lr = 0.1, .momentum = 0.5, .weight_decay = 0.01}},
    {"sgd maximize", SGD,
     .sgd = {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .maximize = true}},
    {"sgd weight_decay no momentum", SGD, .sgd = {.lr = 0.2, .weight_decay = 0.3}},
    {"adam", ADAM, .adam = {ADAM_DEFAULTS}},
    {"adam betas eps", ADAM, .adam = {.lr = 0.05, .beta1 = 0.5, .beta2 = 0.8, .eps = 1e-3}},
    {"adam weight_decay", ADAM, .adam = {ADAM_DEFAULTS, .weight_decay = 0.1}},
    {"adamw", ADAM, .adam = {ADAM_DEFAULTS, .weight_decay = 0.1, .decoupled_weight_decay = true}},
    {"adam amsgrad", ADAM,
     .adam = {.lr = 0.01, .beta1 = 0.8, .beta2 = 0.5, .eps = 1e-8, .amsgrad = true}},
    {"adam maximize", ADAM, .adam = {ADAM_DEFAULTS, .weight_decay = 0.05, .maximize = true}},
    {"adamw amsgrad maximize", ADAM,
     .adam = {.lr = 0.02, .beta1 = 0.8, .beta2 = 0.5, .eps = 1e-8, .weight_decay = 0.1,
              .decoupled_weight_decay = true, .amsgrad = true, .maximize = true}},
    {"rmsprop", RMSPROP, .rms = {RMS_DEFAULTS}},
    {"rmsprop momentum", RMSPROP, .rms = {RMS_DEFAULTS, .momentum = 0.9}},
    {"rmsprop centered", RMSPROP, .rms = {RMS_DEFAULTS, .centered = true}},
    {"rmsprop centered momentum weight_decay", RMSPROP,
     .rms = {.lr = 0.01, .alpha = 0.9, .eps = 1e-8, .momentum = 0.5, .weight_decay = 0.1,
             .centered = true}},
    {"rmsprop maximize", RMSPROP,
     .rms = {.lr = 0.01, .alpha = 0.8, .eps = 1e-4, .weight_decay = 0.05, .maximize = true}},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* PyTorch's results: the parameter after step 1 and after step 3, and the state after step 3
 * (zeros for a state the configuration does not use). */
typedef struct {
    const char *name;
    float p1[N], p3[N];
    float state[3][N];
} torch_ref;

static const torch_ref torch_refs[] = {
    /* Made by tests/engine/optim_reference.py with PyTorch 1.13.0a0 (Debian's python3-torch). */
    {"sgd",
     {0.49000001f, -1.23000002f, 1.97000003f, -0.709999979f, 0.0500000007f, 3.05999994f},
     {0.495000005f, -1.27999997f, 1.99000013f, -0.764999986f, -0.00999999791f, 3.09500003f},
     {{0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}},
    {"sgd momentum",
     {0.49000001f, -1.23000002f, 1.97000003f, -0.709999979f, 0.0500000007f, 3.05999994f},
     {0.45539999f, -1.25030005f, 1.97020006f, -0.75059998f, -0.0864999965f, 3.17959976f},
     {{0.00599998236f, 0.333000004f, 0.078000024f, 0.166000038f, 1.01499999f, -0.856000066f}}},
    {"sgd dampening",
     {0.49000001f, -1.23000002f, 1.97000003f, -0.709999979f, 0.0500000007f, 3.05999994f},
     {0.460650027f, -1.23395002f, 1.95474994f, -0.717899978f, -0.0711999983f, 3.17449999f},
     {{0.0284999795f, 0.184499994f, 0.127500013f, 0.0190000199f, 0.831999958f, -0.745000005f}}},
    {"sgd nesterov",
     {0.481000006f, -1.21200001f, 1.94299996f, -0.674000025f, 0.00500000129f, 3.11400008f},
     {0.454860032f, -1.28026998f, 1.96317995f, -0.765540063f, -0.177849993f, 3.2566402f},
     {{0.00599998236f, 0.333000004f, 0.078000024f, 0.166000038f, 1.01499999f, -0.856000066f}}},
    {"sgd weight_decay",
     {0.489499986f, -1.22874999f, 1.96800005f, -0.709249973f, 0.0499000028f, 3.05699992f},
     {0.472931951f, -1.26224756f, 1.9765631f, -0.761875451f, -0.0427846387f, 3.11710215f},
     {{-0.141714916f, 0.403512299f, 0.084690325f, 0.137097105f, 0.775847435f, -0.546590567f}}},
    {"sgd maximize",
     {0.504999995f, -1.25750005f, 2.00999999f, -0.782500029f, 0.149000004f, 2.91000009f},
     {0.516160488f, -1.17946577f, 1.91777098f, -0.706768274f, 0.279142916f, 2.65561104f},
     {{0.132895008f, -0.672092497f, 0.461289972f, -0.371567488f, -0.975328982f, 1.64288998f}}},
    {"sgd weight_decay no momentum",
     {0.449999988f, -1.13499999f, 1.81999993f, -0.625f, -0.00600000611f, 2.94000006f},
     {0.410620004f, -1.10228598f, 1.64395201f, -0.65504998f, -0.126501605f, 2.67018414f},
     {{0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}},
    {"adam",
     {0.49000001f, -1.24000001f, 1.99000001f, -0.74000001f, 0.0900000036f, 3.00999999f},
     {0.480507851f, -1.23960376f, 1.9902631f, -0.743945003f, 0.0774001628f, 3.02052975f},
     {{0.000599998515f, 0.0332999974f, 0.00780000119f, 0.0165999979f, 0.101499997f, -0.0856000036f},
      {0.00016241752f, 0.000244917552f, 0.000234697596f, 0.000521820213f, 0.000749490282f, 0.000701740501f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}},
    {"adam betas eps",
     {0.450495064f, -1.20024872f, 1.95016611f, -0.700124681f, 0.0500998013f, 3.04991674f},
     {0.417645186f, -1.22771001f, 1.96511722f, -0.736336589f, -0.00705386326f, 3.09326124f},
     {{-0.075000003f, 0.212499991f, 0.025000006f, 0.0750000104f, 0.387499988f, -0.300000012f},
      {0.0292800013f, 0.0460199974f, 0.0356200002f, 0.078580007f, 0.131600007f, 0.112980008f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}},
    {"adam weight_decay",
     {0.49000001f, -1.24000001f, 1.99000001f, -0.74000001f, 0.0900000036f, 3.00999999f},
     {0.478229135f, -1.23177242f, 1.97945023f, -0.740719438f, 0.07714165f, 3.00747275f},
     {{0.0138634443f, -0.000303142762f, 0.0617673807f, -0.00354534062f, 0.103967108f, -0.00413944293f},
      {0.00017525327f, 0.000217694804f, 0.00039378216f, 0.000516975066f, 0.000769784208f, 0.000402717851f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}},
    {"adamw",
     {0.489500016f, -1.23874998f, 1.98800004f, -0.739250004f, 0.0899000019f, 3.00699997f},
     {0.479038745f, -1.23588228f, 1.98428798f, -0.741714776f, 0.0771255642f, 3.0115149f},
     {{0.000599998515f, 0.0332999974f, 0.00780000119f, 0.0165999979f, 0.101499997f, -0.0856000036f},
      {0.00016241752f, 0.000244917552f, 0.000234697596f, 0.000521820213f, 0.000749490282f, 0.000701740501f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}},
    {"adam amsgrad",
     {0.49000001f, -1.24000001f, 1.99000001f, -0.74000001f, 0.0900000036f, 3.00999999f},
     {0.481912434f, -1.24050283f, 1.99100745f, -0.744294286f, 0.0790920109f, 3.01970887f},
     {{-0.0072000036f, 0.0723999962f, 0.0124000032f, 0.0348000005f, 0.188000008f, -0.154800013f},
      {0.0618750043f, 0.106874995f, 0.0531250015f, 0.111250006f, 0.278750002f, 0.206250012f},
      {0.0618750043f, 0.106874995f, 0.0837500021f, 0.220000014f, 0.278750002f, 0.206250012f}}},
    {"adam maximize",
     {0.50999999f, -1.25999999f, 2.00999999f, -0.75999999f, 0.109999999f, 2.99000001f},
     {0.518178701f, -1.25452769f, 2.00341606f, -0.75450027f, 0.122441158f, 2.9759624f},
     {{0.00631590234f, -0.0503347479f, 0.0193745773f, -0.0268416908f, -0.100024991f, 0.126124069f},
      {0.000162212891f, 0.000294816768f, 0.000245137868f, 0.000537928427f, 0.00073763734f, 0.0010527909f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}},
    {"adamw amsgrad maximize",
     {0.518999994f, -1.26750004f, 2.01600003f, -0.76849997f, 0.119800009f, 2.97399998f},
     {0.53306663f, -1.26141465f, 2.00593662f, -0.756851971f, 0.14112094f, 2.94271088f},
     {{0.0072000036f, -0.0723999962f, -0.0124000032f, -0.0348000005f, -0.188000008f, 0.154800013f},
      {0.0618750043f, 0.106874995f, 0.0531250015f, 0.111250006f, 0.278750002f, 0.206250012f},
      {0.0618750043f, 0.106874995f, 0.0837500021f, 0.220000014f, 0.278750002f, 0.206250012f}}},
    {"rmsprop",
     {0.400000095f, -1.1500001f, 1.9000001f, -0.650000036f, 2.98023224e-08f, 3.0999999f},
     {0.381698608f, -1.26543498f, 1.94494402f, -0.726370871f, -0.0613972805f, 3.13421059f},
     {{0.00161676004f, 0.00244178995f, 0.00231984025f, 0.00515716057f, 0.00744924974f, 0.00694936048f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}},
    {"rmsprop momentum",
     {0.400000095f, -1.1500001f, 1.89999998f, -0.650000036f, 2.27987762e-08f, 3.0999999f},
     {0.12707822f, -1.11636674f, 1.84242213f, -0.630370915f, -0.21466133f, 3.2766211f},
     {{0.00161676004f, 0.00244178995f, 0.00231984025f, 0.00515716057f, 0.00744924974f, 0.00694936048f},
      {9.00102425f, 3.19981003f, 4.36648512f, -1.2962476f, 14.4367952f, -11.8387194f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}},
    {"rmsprop centered",
     {0.399496317f, -1.14949632f, 1.8994962f, -0.649496257f, -0.000503756106f, 3.10050368f},
     {0.380408049f, -1.26516712f, 1.9444387f, -0.725899041f, -0.0624969862f, 3.13507557f},
     {{0.00161676004f, 0.00244178995f, 0.00231984025f, 0.00515716057f, 0.00744924974f, 0.00694936048f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f},
      {0.00045510006f, 0.00303479959f, 0.00097530015f, 0.00151959981f, 0.0109104989f, -0.00940060057f}}},
    {"rmsprop centered momentum weight_decay",
     {0.466666669f, -1.2166667f, 1.9666667f, -0.716666698f, 0.0666666701f, 3.0333333f},
     {0.414920062f, -1.20355046f, 1.93673646f, -0.72201705f, 0.0223246999f, 3.02972245f},
     {{0.0164067987f, 0.0199586656f, 0.034336932f, 0.0448962636f, 0.0716415122f, 0.0362302624f},
      {0.374362707f, 1.12366664f, 2.31671524f, -0.206834614f, 3.38371658f, -0.74763f},
      {0.0130366329f, 0.000301862252f, 0.0612990372f, -0.00316584855f, 0.103471614f, -0.00377753982f}}},
    {"rmsprop maximize",
     {0.522294223f, -1.27232432f, 2.02233577f, -0.772346914f, 0.122350588f, 2.97764587f},
     {0.524861455f, -1.23571575f, 2.00411296f, -0.752846837f, 0.136422753f, 2.96240258f},
     {{0.0301499069f, 0.057090167f, 0.0381794609f, 0.0821038038f, 0.129531831f, 0.17012912f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}},
};
_Static_assert(sizeof torch_refs / sizeof torch_refs[0] == sizeof cases / sizeof cases[0],
               "one PyTorch reference per case");

static int nstates(kind k) { return k == SGD ? 1 : 3; }

/* ---- the independent reference: PyTorch's documented algorithms, in double ------------------ */

static void reference(const optim_case *c, int nsteps, double p[N], double st[3][N])
{
    memcpy(p, P0, sizeof P0);
    memset(st, 0, 3 * N * sizeof(double));
    for (int t = 1; t <= nsteps; t++) {
        for (int i = 0; i < N; i++) {
            double g = GRADS[t - 1][i];
            if (c->k == SGD) {
                const lm_sgd_opts *o = &c->sgd;
                if (o->maximize) g = -g;
                g += o->weight_decay * p[i];
                if (o->momentum != 0) {
                    double *b = &st[0][i];
                    *b = t == 1 ? g : o->momentum * *b + (1 - o->dampening) * g;
                    g = o->nesterov ? g + o->momentum * *b : *b;
                }
                p[i] -= o->lr * g;
            } else if (c->k == ADAM) {
                const lm_adam_opts *o = &c->adam;
                double *m = &st[0][i], *v = &st[1][i], *vmax = &st[2][i];
                if (o->maximize) g = -g;
                if (o->decoupled_weight_decay) p[i] *= 1 - o->lr * o->weight_decay;
                else g += o->weight_decay * p[i];
                *m = o->beta1 * *m + (1 - o->beta1) * g;
                *v = o->beta2 * *v + (1 - o->beta2) * g * g;
                double m_hat = *m / (1 - pow(o->beta1, t));
                double v_used = *v;
                if (o->amsgrad) {
                    *vmax = fmax(*vmax, *v);
                    v_used = *vmax;
                }
                double v_hat = v_used / (1 - pow(o->beta2, t));
                p[i] -= o->lr * m_hat / (sqrt(v_hat) + o->eps);
            } else {
                const lm_rmsprop_opts *o = &c->rms;
                double *v = &st[0][i], *b = &st[1][i], *gav = &st[2][i];
                if (o->maximize) g = -g;
                g += o->weight_decay * p[i];
                *v = o->alpha * *v + (1 - o->alpha) * g * g;
                double vt = *v;
                if (o->centered) {
                    *gav = o->alpha * *gav + (1 - o->alpha) * g;
                    vt -= *gav * *gav;
                }
                double upd = g / (sqrt(vt) + o->eps);
                if (o->momentum > 0) {
                    *b = o->momentum * *b + upd;
                    upd = *b;
                }
                p[i] -= o->lr * upd;
            }
        }
    }
}

/* ---- running Lumen --------------------------------------------------------------------------- */

static double get_flat(const lm_tensor *t, int i)
{
    int64_t idx[2] = {i / 3, i % 3};
    double v = NAN;
    lm_get(t, idx, &v);
    return v;
}

/* Gives param the gradient of step t (a new contiguous tensor: the tests stand in for backward,
 * which leaves a leaf's gradient contiguous). */
static void set_grad(lm_tensor *param, int t)
{
    lm_tensor *g = lm_from_data(GRADS[t], LM_F64, LM_SHAPE(2, 3));
    lm_release(param->grad);
    param->grad = lm_to_dtype(g, param->dtype);
    lm_release(g);
}

/* One step of case c on param with state slots st (NULL where unused). */
static lm_status step_case(const optim_case *c, lm_tensor *param, lm_tensor **st, int t)
{
    switch (c->k) {
    case SGD:
        return lm_sgd_step(param, c->sgd.momentum != 0 ? st[0] : NULL, t == 1, c->sgd);
    case ADAM:
        return lm_adam_step(param, st[0], st[1], c->adam.amsgrad ? st[2] : NULL, t, c->adam);
    default:
        return lm_rmsprop_step(param, st[0], c->rms.momentum > 0 ? st[1] : NULL,
                               c->rms.centered ? st[2] : NULL, c->rms);
    }
}

/* Runs nsteps of case c on a [2,3] parameter of dtype dt; p and st get the results. */
static bool run_lumen(const optim_case *c, lm_dtype dt, int nsteps, double p[N], double st[3][N])
{
    lm_tensor *p0 = lm_from_data(P0, LM_F64, LM_SHAPE(2, 3));
    lm_tensor *param = lm_to_dtype(p0, dt);
    lm_release(p0);
    lm_requires_grad_(param, true);
    lm_tensor *state[3] = {NULL, NULL, NULL};
    for (int s = 0; s < nstates(c->k); s++) state[s] = lm_zeros(LM_SHAPE(2, 3), dt);
    bool good = true;
    for (int t = 1; t <= nsteps && good; t++) {
        set_grad(param, t - 1);
        good = step_case(c, param, state, t) == LM_OK;
        if (!good) diag("%s: step %d failed: %s", c->name, t, lm_last_error());
    }
    memset(st, 0, 3 * N * sizeof(double));
    for (int i = 0; i < N; i++) {
        p[i] = get_flat(param, i);
        for (int s = 0; s < 3; s++) st[s][i] = state[s] ? get_flat(state[s], i) : 0;
    }
    for (int s = 0; s < 3; s++) lm_release(state[s]);
    lm_release(param);
    return good;
}

/* Largest |got - want| / max(1, |want|) over n values; reports the worst in a diagnostic when it
 * exceeds tol. */
static bool close_all(const char *what, const double *got, const double *want, int n, double tol)
{
    double worst = 0;
    int at = 0;
    for (int i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]) / fmax(1.0, fabs(want[i]));
        if (!(e <= worst)) {
            worst = e;
            at = i;
        }
    }
    if (worst <= tol) return true;
    diag("%s: element %d: got %.9g, want %.9g (error %.3g > %.3g)", what, at, got[at], want[at],
         worst, tol);
    return false;
}

/* Which state slots case c uses, as a mask of the three. */
static unsigned used_states(const optim_case *c)
{
    switch (c->k) {
    case SGD: return c->sgd.momentum != 0 ? 1u : 0u;
    case ADAM: return 3u | (c->adam.amsgrad ? 4u : 0u);
    default: return 1u | (c->rms.momentum > 0 ? 2u : 0u) | (c->rms.centered ? 4u : 0u);
    }
}

/* Parameter and used states of (p, st) against (wp, wst). */
static bool close_case(const optim_case *c, const char *what, const double p[N],
                       double st[3][N], const double wp[N], double wst[3][N], double tol)
{
    bool good = close_all(what, p, wp, N, tol);
    unsigned used = used_states(c);
    for (int s = 0; s < 3; s++)
        if (used & (1u << s)) good &= close_all(what, st[s], wst[s], N, tol);
    return good;
}

static void test_cases(void)
{
    for (int ci = 0; ci < NCASES; ci++) {
        const optim_case *c = &cases[ci];
        const torch_ref *r = &torch_refs[ci];
        if (strcmp(c->name, r->name) != 0) {
            ok(false, "%s: the PyTorch table is out of order (%s)", c->name, r->name);
            continue;
        }
        double p[N], st[3][N], wp[N], wst[3][N], tp1[N], tp3[N], tst[3][N];
        for (int i = 0; i < N; i++) {
            tp1[i] = r->p1[i];
            tp3[i] = r->p3[i];
            for (int s = 0; s < 3; s++) tst[s][i] = r->state[s][i];
        }
        /* f32 against PyTorch's f32: the same operations in the same order, a few ulps apart. */
        bool ran = run_lumen(c, LM_F32, 1, p, st);
        ok(ran && close_all(c->name, p, tp1, N, 1e-6), "%s: one step matches PyTorch", c->name);
        ran = run_lumen(c, LM_F32, 3, p, st);
        ok(ran && close_case(c, c->name, p, st, tp3, tst, 1e-6),
           "%s: three steps (parameter and state) match PyTorch", c->name);
        /* f32 against the double loop: f32 rounding only. */
        reference(c, 1, wp, wst);
        ran = run_lumen(c, LM_F32, 1, p, st);
        ok(ran && close_case(c, c->name, p, st, wp, wst, 1e-5),
           "%s: one step matches the f64 formula loop", c->name);
        reference(c, 3, wp, wst);
        ran = run_lumen(c, LM_F32, 3, p, st);
        ok(ran && close_case(c, c->name, p, st, wp, wst, 1e-5),
           "%s: three steps match the f64 formula loop", c->name);
        /* f64 parameters: the kernel's arithmetic in double agrees with the loop to rounding. */
        ran = run_lumen(c, LM_F64, 3, p, st);
        ok(ran && close_case(c, c->name, p, st, wp, wst, 1e-12),
           "%s: f64 parameter, three steps, matches the formula loop to 1e-12", c->name);
    }
}

/* ---- views ----------------------------------------------------------------------------------- */

/* A [2,3] f32 tensor with P0's values laid out as the transpose of a [3,2] storage. */
static lm_tensor *transposed_p0(void)
{
    double tv[N];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) tv[j * 2 + i] = P0[i * 3 + j];
    lm_tensor *b64 = lm_from_data(tv, LM_F64, LM_SHAPE(3, 2));
    lm_tensor *b = lm_to_dtype(b64, LM_F32);
    lm_tensor *t = lm_transpose(b, 0, 1);
    lm_release(b64);
    lm_release(b);
    return t;
}

static const optim_case *find_case(const char *name)
{
    for (int i = 0; i < NCASES; i++)
        if (strcmp(cases[i].name, name) == 0) return &cases[i];
    abort();
}

static void test_views(void)
{
    /* Parameter and state as transposed views: the same numbers as the contiguous run. */
    const optim_case *c = find_case("adamw amsgrad maximize"); /* every Adam stream */
    double want[N], wst[3][N];
    run_lumen(c, LM_F32, 3, want, wst);
    lm_tensor *param = transposed_p0();
    lm_requires_grad_(param, true);
    lm_tensor *state[3];
    for (int s = 0; s < 3; s++) {
        lm_tensor *z = lm_zeros(LM_SHAPE(3, 2), LM_F32);
        state[s] = lm_transpose(z, 0, 1);
        lm_release(z);
    }
    ok(!lm_is_contiguous(param) && !lm_is_contiguous(state[0]), "the views are not contiguous");
    bool good = true;
    for (int t = 1; t <= 3; t++) {
        set_grad(param, t - 1);
        good &= step_case(c, param, state, t) == LM_OK;
    }
    double got[N], gst[3][N];
    for (int i = 0; i < N; i++) {
        got[i] = get_flat(param, i);
        for (int s = 0; s < 3; s++) gst[s][i] = get_flat(state[s], i);
    }
    bool same = true;
    for (int i = 0; i < N; i++) {
        same &= got[i] == want[i];
        for (int s = 0; s < 3; s++) same &= gst[s][i] == wst[s][i];
    }
    ok(good && same, "adam on transposed parameter and state views equals the contiguous run");
    for (int s = 0; s < 3; s++) lm_release(state[s]);
    lm_release(param);

    /* A stepped slice of a larger tensor: the elements between stay as they were. */
    c = find_case("sgd nesterov");
    run_lumen(c, LM_F32, 3, want, wst);
    lm_tensor *base = lm_full(LM_SHAPE(2, 6), 7.0, LM_F32);
    lm_tensor *sl = lm_slice(base, 1, 0, 6, 2); /* columns 0, 2, 4 */
    lm_tensor *p0 = lm_from_data(P0, LM_F64, LM_SHAPE(2, 3));
    lm_copy_(sl, p0);
    lm_release(p0);
    lm_requires_grad_(sl, true);
    lm_tensor *buf = lm_zeros(LM_SHAPE(2, 3), LM_F32);
    good = true;
    for (int t = 1; t <= 3; t++) {
        set_grad(sl, t - 1);
        good &= lm_sgd_step(sl, buf, t == 1, c->sgd) == LM_OK;
    }
    same = true;
    for (int i = 0; i < N; i++) same &= get_flat(sl, i) == want[i];
    const float *bv = lm_data(base);
    for (int i = 0; i < 2; i++)
        for (int j = 1; j < 6; j += 2) same &= bv[i * 6 + j] == 7.0f;
    ok(good && same, "sgd on a stepped slice updates its elements and no others");
    lm_release(buf);
    lm_release(sl);
    lm_release(base);
}

/* ---- large tensors, threads ------------------------------------------------------------------ */

/* Adam with amsgrad (five streams) on a parameter large enough for the threaded path, against a
 * double loop, and the same numbers on one and on two threads. */
static void test_large(void)
{
    const int64_t n = 3 * 16384 + 123; /* several blocks and a ragged end */
    lm_adam_opts o = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8,
                      .weight_decay = 0.01, .amsgrad = true};
    lm_manual_seed(7);
    lm_tensor *p0 = lm_randn(LM_SHAPE(n), LM_F32);
    lm_tensor *g0 = lm_randn(LM_SHAPE(n), LM_F32);
    float *res[2] = {NULL, NULL};
    bool good = true;
    for (int run = 0; run < 2; run++) {
        lm_set_num_threads(run + 1);
        lm_tensor *p = lm_clone(p0);
        lm_requires_grad_(p, true);
        lm_tensor *m = lm_zeros(LM_SHAPE(n), LM_F32), *v = lm_zeros(LM_SHAPE(n), LM_F32);
        lm_tensor *vmax = lm_zeros(LM_SHAPE(n), LM_F32);
        for (int t = 1; t <= 2; t++) {
            lm_release(p->grad);
            p->grad = lm_mul_scalar(g0, t == 1 ? 1.0 : -0.5);
            good &= lm_adam_step(p, m, v, vmax, t, o) == LM_OK;
        }
        res[run] = malloc((size_t)n * sizeof(float));
        memcpy(res[run], lm_data(p), (size_t)n * sizeof(float));
        lm_release(m);
        lm_release(v);
        lm_release(vmax);
        lm_release(p);
    }
    lm_set_num_threads(1);
    ok(good && memcmp(res[0], res[1], (size_t)n * sizeof(float)) == 0,
       "adam on %lld elements: one and two threads give the same bits", (long long)n);
    const float *pv = lm_data(p0), *gv = lm_data(g0);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double p = pv[i], m = 0, v = 0, vmax = 0;
        for (int t = 1; t <= 2; t++) {
            double g = gv[i] * (t == 1 ? 1.0 : -0.5) + o.weight_decay * p;
            m = o.beta1 * m + (1 - o.beta1) * g;
            v = o.beta2 * v + (1 - o.beta2) * g * g;
            vmax = fmax(vmax, v);
            double m_hat = m / (1 - pow(o.beta1, t)), v_hat = vmax / (1 - pow(o.beta2, t));
            p -= o.lr * m_hat / (sqrt(v_hat) + o.eps);
        }
        worst = fmax(worst, fabs(res[0][i] - p) / fmax(1.0, fabs(p)));
    }
    ok(worst < 1e-5, "adam on %lld elements matches the f64 loop (worst %.2g)", (long long)n,
       worst);
    free(res[0]);
    free(res[1]);
    lm_release(p0);
    lm_release(g0);
}

/* ---- what a step touches --------------------------------------------------------------------- */

static void test_side_effects(void)
{
    lm_tensor *p = lm_from_data(P0, LM_F64, LM_SHAPE(2, 3));
    lm_requires_grad_(p, true);
    set_grad(p, 0);
    lm_tensor *sq = lm_zeros(LM_SHAPE(2, 3), LM_F64), *ga = lm_zeros(LM_SHAPE(2, 3), LM_F64);
    uint32_t pv = p->storage->version, sv = sq->storage->version, gv = p->grad->storage->version;
    lm_rmsprop_opts o = {RMS_DEFAULTS, .centered = true};
    ok(lm_rmsprop_step(p, sq, NULL, ga, o) == LM_OK, "rmsprop centered without momentum buffer");
    ok(p->storage->version != pv && sq->storage->version != sv && ga->storage->version != 0,
       "the step bumps the versions of the parameter and its state");
    ok(p->grad->storage->version == gv && get_flat(p->grad, 1) == GRADS[0][1],
       "the gradient is left as it was");
    ok(p->grad_fn == NULL && p->requires_grad, "the parameter stays a leaf requiring grad");

    /* A zero-size parameter is a no-op, not an error. */
    lm_tensor *e = lm_zeros(LM_SHAPE(0, 3), LM_F32);
    lm_requires_grad_(e, true);
    e->grad = lm_zeros(LM_SHAPE(0, 3), LM_F32);
    lm_tensor *em = lm_zeros(LM_SHAPE(0, 3), LM_F32), *ev = lm_zeros(LM_SHAPE(0, 3), LM_F32);
    ok(lm_adam_step(e, em, ev, NULL, 1, (lm_adam_opts){ADAM_DEFAULTS}) == LM_OK,
       "adam on an empty parameter");
    lm_release(em);
    lm_release(ev);
    lm_release(e);
    lm_release(sq);
    lm_release(ga);
    lm_release(p);
}

/* ---- errors ---------------------------------------------------------------------------------- */

/* Checks that a failed call returned code, said needle, and left the parameter untouched. */
static void check_error(lm_status st, lm_status code, const lm_tensor *p, const char *needle,
                        const char *what)
{
    bool untouched = true;
    for (int i = 0; p && i < N; i++) untouched &= get_flat(p, i) == (double)(float)P0[i];
    ok(st == code && untouched, "%s: fails with %s, parameter untouched", what,
       lm_status_name(code));
    has_str(lm_last_error(), needle, "%s: message", what);
}

static lm_tensor *f32_param(void)
{
    lm_tensor *p64 = lm_from_data(P0, LM_F64, LM_SHAPE(2, 3));
    lm_tensor *p = lm_to_dtype(p64, LM_F32);
    lm_release(p64);
    lm_requires_grad_(p, true);
    return p;
}

/* The default options with one field changed (designated initializers may not override). */
static lm_adam_opts adam_bad(double lr, double beta1, double beta2, double eps)
{
    return (lm_adam_opts){.lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps};
}

static void test_errors(void)
{
    lm_tensor *p = f32_param();
    lm_tensor *m = lm_zeros(LM_SHAPE(2, 3), LM_F32), *v = lm_zeros(LM_SHAPE(2, 3), LM_F32);
    lm_sgd_opts sgd = {.lr = 0.1, .momentum = 0.9};
    lm_adam_opts adam = {ADAM_DEFAULTS};
    lm_rmsprop_opts rms = {RMS_DEFAULTS};

    check_error(lm_sgd_step(p, m, true, sgd), LM_ERR_STATE, p,
                "sgd_step: parameter [2,3] has no gradient", "a parameter without gradient");
    check_error(lm_adam_step(p, m, v, NULL, 1, adam), LM_ERR_STATE, p,
                "adam_step: parameter [2,3] has no gradient", "adam without gradient");
    check_error(lm_rmsprop_step(p, m, NULL, NULL, rms), LM_ERR_STATE, p,
                "rmsprop_step: parameter [2,3] has no gradient", "rmsprop without gradient");
    lm_clear_error();
    check_error(lm_sgd_step(NULL, NULL, true, sgd), LM_ERR_ARG, NULL, "NULL tensor",
                "a NULL parameter");

    lm_tensor *ip = lm_zeros(LM_SHAPE(2, 3), LM_I64);
    check_error(lm_sgd_step(ip, NULL, true, (lm_sgd_opts){.lr = 0.1}), LM_ERR_DTYPE, NULL,
                "sgd_step: parameter [2,3] has dtype i64", "an integer parameter");
    lm_release(ip);

    p->grad = lm_zeros(LM_SHAPE(3, 2), LM_F32);
    check_error(lm_sgd_step(p, m, true, sgd), LM_ERR_SHAPE, p,
                "gradient [3,2] does not have the parameter's shape [2,3]",
                "a gradient of another shape");
    set_grad(p, 0);
    lm_tensor *m_wrong = lm_zeros(LM_SHAPE(3, 2), LM_F32);
    check_error(lm_adam_step(p, m_wrong, v, NULL, 1, adam), LM_ERR_SHAPE, p,
                "adam_step: exp_avg has shape [3,2] but the parameter has [2,3]",
                "a state of another shape");
    lm_tensor *v64 = lm_zeros(LM_SHAPE(2, 3), LM_F64);
    check_error(lm_adam_step(p, m, v64, NULL, 1, adam), LM_ERR_DTYPE, p,
                "adam_step: exp_avg_sq has dtype f64 but parameter [2,3] has f32",
                "a state of another dtype");
    check_error(lm_rmsprop_step(p, m_wrong, NULL, NULL, rms), LM_ERR_SHAPE, p,
                "rmsprop_step: square_avg has shape [3,2]", "rmsprop state of another shape");
    check_error(lm_sgd_step(p, v64, false, sgd), LM_ERR_DTYPE, p,
                "sgd_step: momentum_buf has dtype f64", "sgd buffer of another dtype");
    lm_release(v64);
    lm_release(m_wrong);

    check_error(lm_sgd_step(p, NULL, true, sgd), LM_ERR_ARG, p,
                "sgd_step: momentum_buf is NULL, but these options need it",
                "momentum without buffer");
    check_error(lm_adam_step(p, m, v, NULL, 1, (lm_adam_opts){ADAM_DEFAULTS, .amsgrad = true}),
                LM_ERR_ARG, p, "adam_step: max_exp_avg_sq is NULL", "amsgrad without its buffer");
    check_error(lm_adam_step(p, NULL, v, NULL, 1, adam), LM_ERR_ARG, p,
                "adam_step: exp_avg is NULL", "adam without exp_avg");
    lm_rmsprop_opts centered = {RMS_DEFAULTS, .centered = true};
    check_error(lm_rmsprop_step(p, m, NULL, NULL, centered), LM_ERR_ARG, p,
                "rmsprop_step: grad_avg is NULL", "centered without grad_avg");
    lm_rmsprop_opts with_momentum = {RMS_DEFAULTS, .momentum = 0.5};
    check_error(lm_rmsprop_step(p, m, NULL, NULL, with_momentum), LM_ERR_ARG, p,
                "rmsprop_step: momentum_buf is NULL", "rmsprop momentum without buffer");

    check_error(lm_sgd_step(p, m, true, (lm_sgd_opts){.lr = -0.1}), LM_ERR_ARG, p,
                "sgd_step: invalid lr -0.1 (must be >= 0)", "a negative learning rate");
    check_error(lm_sgd_step(p, m, true, (lm_sgd_opts){.lr = NAN}), LM_ERR_ARG, p,
                "sgd_step: invalid lr nan", "a NaN learning rate");
    check_error(lm_sgd_step(p, m, true, (lm_sgd_opts){.lr = 0.1, .momentum = -1}), LM_ERR_ARG, p,
                "invalid momentum -1", "a negative momentum");
    check_error(lm_sgd_step(p, m, true, (lm_sgd_opts){.lr = 0.1, .weight_decay = -1e-4}),
                LM_ERR_ARG, p, "invalid weight_decay -0.0001", "a negative weight decay");
    check_error(lm_sgd_step(p, m, true,
                            (lm_sgd_opts){.lr = 0.1, .momentum = 0.9, .dampening = 0.1,
                                          .nesterov = true}),
                LM_ERR_ARG, p, "nesterov momentum needs momentum > 0 and dampening 0",
                "nesterov with dampening");
    check_error(lm_sgd_step(p, m, true, (lm_sgd_opts){.lr = 0.1, .nesterov = true}), LM_ERR_ARG,
                p, "nesterov momentum needs momentum > 0", "nesterov without momentum");
    check_error(lm_adam_step(p, m, v, NULL, 1, adam_bad(-1, 0.9, 0.999, 1e-8)),
                LM_ERR_ARG, p, "adam_step: invalid lr -1", "adam with a negative lr");
    check_error(lm_adam_step(p, m, v, NULL, 1, adam_bad(0.01, 1.0, 0.999, 1e-8)),
                LM_ERR_ARG, p, "adam_step: invalid beta1 1 (must be in [0, 1))", "beta1 = 1");
    check_error(lm_adam_step(p, m, v, NULL, 1, adam_bad(0.01, 0.9, -0.5, 1e-8)),
                LM_ERR_ARG, p, "adam_step: invalid beta2 -0.5 (must be in [0, 1))", "beta2 < 0");
    check_error(lm_adam_step(p, m, v, NULL, 1, adam_bad(0.01, 0.9, NAN, 1e-8)),
                LM_ERR_ARG, p, "invalid beta2 nan", "beta2 NaN");
    check_error(lm_adam_step(p, m, v, NULL, 1, adam_bad(0.01, 0.9, 0.999, -1e-8)),
                LM_ERR_ARG, p, "invalid eps", "a negative eps");
    check_error(lm_adam_step(p, m, v, NULL, 0, adam), LM_ERR_ARG, p,
                "adam_step: invalid step 0 (steps count from 1)", "step 0");
    check_error(lm_rmsprop_step(p, m, NULL, NULL, (lm_rmsprop_opts){.lr = 0.01, .alpha = -0.1}),
                LM_ERR_ARG, p, "rmsprop_step: invalid alpha -0.1", "a negative alpha");

    /* Memory shared between what a step writes. */
    check_error(lm_adam_step(p, m, m, NULL, 1, adam), LM_ERR_STATE, p,
                "adam_step: exp_avg and exp_avg_sq (shape [2,3]) share memory",
                "the same tensor as two states");
    lm_tensor *pv = lm_detach(p);
    check_error(lm_sgd_step(p, pv, true, sgd), LM_ERR_STATE, p,
                "sgd_step: parameter and momentum_buf (shape [2,3]) share memory",
                "the parameter as its own buffer");
    lm_release(pv);
    check_error(lm_sgd_step(p, p->grad, true, sgd), LM_ERR_STATE, p,
                "momentum_buf and gradient (shape [2,3]) share memory", "the gradient as buffer");
    lm_tensor *row = lm_zeros(LM_SHAPE(3), LM_F32);
    lm_tensor *ex = lm_expand(row, LM_SHAPE(2, 3));
    check_error(lm_adam_step(p, m, ex, NULL, 1, adam), LM_ERR_STATE, p,
                "more than one element of exp_avg_sq (shape [2,3]) refers to a single memory "
                "location", "an expanded state");
    lm_release(ex);
    lm_release(row);

    /* Out of memory in the copies of the view path: an error, nothing changed, nothing leaked. */
    lm_tensor *tp = transposed_p0();
    lm_requires_grad_(tp, true);
    set_grad(tp, 0);
    lm_tensor *buf = lm_zeros(LM_SHAPE(2, 3), LM_F32);
    lm_debug_fail_alloc_after(2);
    lm_status st = lm_sgd_step(tp, buf, true, sgd);
    lm_debug_fail_alloc_after(0);
    check_error(st, LM_ERR_MEMORY, tp, "", "an allocation failure in the view path");
    ok(lm_sgd_step(tp, buf, true, sgd) == LM_OK, "the same step succeeds afterwards");
    lm_release(buf);
    lm_release(tp);

    lm_release(m);
    lm_release(v);
    lm_release(p);
}

int main(void)
{
    plan_auto();
    lm_set_num_threads(1);
    test_cases();
    test_views();
    test_large();
    test_side_effects();
    test_errors();
    return done();
}
