/* random.c — the global random generator and the random ops: rand, randn, randint, uniform_,
 * normal_, bernoulli_. Ops check their arguments, reserve Philox counters from the generator
 * and call the backend's random kernels (random.h); philox.h says which counter and word each
 * element uses.
 *
 * The generator is (seed, offset). A call that draws n elements takes counters offset,
 * offset + 1, ... and moves offset past the last one it used, so each element's number depends
 * only on (seed, offset at the call, element index): the same for any thread count and device. */
#include "random.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>

/* The seed until lm_manual_seed is called: PyTorch's default_rng_seed_val, a fixed constant so
 * that programs are reproducible even without seeding. */
#define LM_DEFAULT_SEED UINT64_C(67280421310721)

/* Calls from several threads each get their own counters: the mutex makes the read and the
 * advance of offset one step. */
static struct {
    pthread_mutex_t lock;
    uint64_t seed;
    uint64_t offset;
} generator = {PTHREAD_MUTEX_INITIALIZER, LM_DEFAULT_SEED, 0};

void lm_manual_seed(uint64_t seed) { lm_rng_set_state(seed, 0); }

void lm_rng_get_state(uint64_t *seed, uint64_t *offset)
{
    pthread_mutex_lock(&generator.lock);
    if (seed) *seed = generator.seed;
    if (offset) *offset = generator.offset;
    pthread_mutex_unlock(&generator.lock);
}

void lm_rng_set_state(uint64_t seed, uint64_t offset)
{
    pthread_mutex_lock(&generator.lock);
    generator.seed = seed;
    generator.offset = offset;
    pthread_mutex_unlock(&generator.lock);
}

static lm_philox_state reserve_counters(uint64_t counters)
{
    pthread_mutex_lock(&generator.lock);
    lm_philox_state s = {generator.seed, generator.offset};
    generator.offset += counters;
    pthread_mutex_unlock(&generator.lock);
    return s;
}

/* ---- the one path every random op takes ------------------------------------------------- */

typedef enum { DRAW_UNIFORM, DRAW_NORMAL, DRAW_RANDINT, DRAW_BERNOULLI, DRAW_COUNT } draw_kind;

typedef struct {
    draw_kind kind;
    double a, b;    /* uniform: lo, hi; normal: mean, std; bernoulli: p */
    int64_t low;    /* randint: [low, low + range) */
    uint64_t range;
} draw;

/* Elements per Philox counter for f32, f64 and integer tensors (philox.h); 0 where the draw
 * does not take that dtype. */
static const int per_counter[][3] = {
    [DRAW_UNIFORM] = {4, 2, 0},
    [DRAW_NORMAL] = {2, 1, 0},
    [DRAW_RANDINT] = {2, 2, 2},
    [DRAW_BERNOULLI] = {4, 4, 4},
};
_Static_assert(sizeof per_counter / sizeof per_counter[0] == DRAW_COUNT,
               "a draw kind lacks its layout");

/* Fills t (any strides; validated) with d's numbers. A non-contiguous t is filled through a
 * contiguous temporary, so element i is the i-th in C order whatever the layout. */
static lm_status draw_into(const char *op, lm_tensor *t, const draw *d)
{
    const lm_backend *be = lm__backend(t->storage->device, op);
    if (!be) return lm_last_status();
    int64_t n = lm_numel(t);
    if (n == 0) return LM_OK;
    lm_tensor *target = t;
    if (!lm_is_contiguous(t)) {
        target = lm__new(op, t->ndim, t->shape, t->dtype, t->storage->device);
        if (!target) return lm_last_status();
    }
    int col = t->dtype == LM_F32 ? 0 : t->dtype == LM_F64 ? 1 : 2;
    int per = per_counter[d->kind][col];
    lm_philox_state s = reserve_counters((uint64_t)((n + per - 1) / per));
    switch (d->kind) {
    case DRAW_UNIFORM: be->random->uniform(target, s, d->a, d->b); break;
    case DRAW_NORMAL: be->random->normal(target, s, d->a, d->b); break;
    case DRAW_RANDINT: be->random->randint(target, s, d->low, d->range); break;
    case DRAW_BERNOULLI: be->random->bernoulli(target, s, d->a); break;
    case DRAW_COUNT: break;
    }
    if (target != t) {
        be->copy->copy(t, target);
        lm_release(target);
    }
    lm__bump_version(t);
    return LM_OK;
}

/* In-place draws write every element once: an expanded view would be written several times. */
static lm_status draw_inplace(const char *op, lm_tensor *t, const draw *d)
{
    lm_status st = lm__check_inplace(op, t, 0, NULL);
    return st ? st : draw_into(op, t, d);
}

static lm_tensor *draw_new(const char *op, int ndim, const int64_t *shape, lm_dtype dt,
                           const draw *d)
{
    lm_tensor *t = lm__new(op, ndim, shape, dt, LM_CPU);
    if (t && draw_into(op, t, d) != LM_OK) {
        lm_release(t);
        return NULL;
    }
    return t;
}

/* ---- argument checks ---------------------------------------------------------------------- */

/* rand, randn, uniform_ and normal_ make floating-point numbers only. what names the tensor
 * ("shape [2,3]") or is "" for a tensor yet to be made. */
static bool float_dtype(const char *op, lm_dtype dt, const char *what)
{
    if (dt == LM_F32 || dt == LM_F64) return true;
    lm__error(LM_ERR_DTYPE, "%s: dtype %s is not supported%s (f32 or f64)", op, lm_dtype_name(dt),
              what);
    return false;
}

/* Is v finite in dt's precision? f32 bounds must not overflow to infinity when converted. */
static bool finite_in(double v, lm_dtype dt)
{
    return isfinite(v) && (dt != LM_F32 || isfinite((float)v));
}

/* ---- public ops --------------------------------------------------------------------------- */

lm_tensor *lm_rand(int ndim, const int64_t *shape, lm_dtype dt)
{
    if (!float_dtype("rand", dt, "")) return NULL;
    draw d = {.kind = DRAW_UNIFORM, .a = 0.0, .b = 1.0};
    return draw_new("rand", ndim, shape, dt, &d);
}

lm_tensor *lm_randn(int ndim, const int64_t *shape, lm_dtype dt)
{
    if (!float_dtype("randn", dt, "")) return NULL;
    draw d = {.kind = DRAW_NORMAL, .a = 0.0, .b = 1.0};
    return draw_new("randn", ndim, shape, dt, &d);
}

lm_tensor *lm_randint(int64_t low, int64_t high, int ndim, const int64_t *shape, lm_dtype dt)
{
    if (low >= high)
        LM_FAIL(LM_ERR_ARG, "randint: low (%lld) must be less than high (%lld)", (long long)low,
                (long long)high);
    /* Every value must be exact in the dtype: u8 holds 0..255, f32 and f64 every integer up
     * to 2^24 and 2^53 in magnitude (PyTorch only warns for f32). */
    int64_t min, max;
    switch (dt) {
    case LM_U8: min = 0, max = 255; break;
    case LM_F32: min = -(INT64_C(1) << 24), max = INT64_C(1) << 24; break;
    case LM_F64: min = -(INT64_C(1) << 53), max = INT64_C(1) << 53; break;
    case LM_I64: min = INT64_MIN, max = INT64_MAX; break;
    default: LM_FAIL(LM_ERR_DTYPE, "randint: unknown dtype %d", dt);
    }
    if (low < min || high - 1 > max)
        LM_FAIL(LM_ERR_ARG, "randint: range [%lld, %lld) does not fit in %s (%lld to %lld)",
                (long long)low, (long long)high, lm_dtype_name(dt), (long long)min, (long long)max);
    draw d = {.kind = DRAW_RANDINT, .low = low, .range = (uint64_t)high - (uint64_t)low};
    return draw_new("randint", ndim, shape, dt, &d);
}

lm_status lm_uniform_(lm_tensor *t, double lo, double hi)
{
    if (!lm__arg(t, "uniform_")) return lm_last_status();
    char what[160];
    snprintf(what, sizeof what, " for a tensor of shape %s", lm__shp(t).s);
    if (!float_dtype("uniform_", t->dtype, what)) return lm_last_status();
    if (!finite_in(lo, t->dtype) || !finite_in(hi, t->dtype) || !finite_in(hi - lo, t->dtype))
        return lm__error(LM_ERR_ARG,
                         "uniform_: bounds [%g, %g) are not finite in %s (tensor of shape %s)", lo,
                         hi, lm_dtype_name(t->dtype), lm__shp(t).s);
    if (lo > hi)
        return lm__error(LM_ERR_ARG,
                         "uniform_: expects a range [lo, hi) with lo <= hi, got lo=%g > hi=%g "
                         "(tensor of shape %s)",
                         lo, hi, lm__shp(t).s);
    draw d = {.kind = DRAW_UNIFORM, .a = lo, .b = hi};
    return draw_inplace("uniform_", t, &d);
}

lm_status lm_normal_(lm_tensor *t, double mean, double std)
{
    if (!lm__arg(t, "normal_")) return lm_last_status();
    char what[160];
    snprintf(what, sizeof what, " for a tensor of shape %s", lm__shp(t).s);
    if (!float_dtype("normal_", t->dtype, what)) return lm_last_status();
    if (!isfinite(mean) || !isfinite(std) || std < 0)
        return lm__error(LM_ERR_ARG,
                         "normal_: expects a finite mean and std >= 0, got mean=%g std=%g "
                         "(tensor of shape %s)",
                         mean, std, lm__shp(t).s);
    draw d = {.kind = DRAW_NORMAL, .a = mean, .b = std};
    return draw_inplace("normal_", t, &d);
}

lm_status lm_bernoulli_(lm_tensor *t, double p)
{
    if (!lm__arg(t, "bernoulli_")) return lm_last_status();
    if (!(p >= 0.0 && p <= 1.0))
        return lm__error(LM_ERR_ARG,
                         "bernoulli_: expects p in [0, 1], got p=%g (tensor of shape %s)", p,
                         lm__shp(t).s);
    if ((unsigned)t->dtype >= LM_DTYPE_COUNT)
        return lm__error(LM_ERR_DTYPE, "bernoulli_: unknown dtype %d", t->dtype);
    draw d = {.kind = DRAW_BERNOULLI, .a = p};
    return draw_inplace("bernoulli_", t, &d);
}
