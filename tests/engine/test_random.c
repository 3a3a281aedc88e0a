/* test_random.c — the Philox generator and the random ops.
 *
 * References are computed here, independently of the engine: a plain 32-bit Philox 4x32-10
 * written from the paper (checked against Random123's known-answer vectors), the documented
 * word layout (which counter and word element i uses), and libm for Box-Muller. Then: offsets
 * advance by exactly the counters used, state save/restore and seeding reproduce, thread count
 * does not change values, non-contiguous views are filled in C order, statistics of 1e5 draws,
 * every dtype each op accepts, and every error path. */
#include "tap.h"

#include "lumen.h"
#include "philox.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ---- the reference generator ------------------------------------------------------------- */

typedef struct {
    uint32_t w[4];
} block;

static block ref_philox(const uint32_t ctr[4], uint32_t k0, uint32_t k1)
{
    uint32_t x[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint64_t a = (uint64_t)0xD2511F53u * x[0], b = (uint64_t)0xCD9E8D57u * x[2];
        uint32_t n0 = (uint32_t)(b >> 32) ^ x[1] ^ k0, n2 = (uint32_t)(a >> 32) ^ x[3] ^ k1;
        x[0] = n0;
        x[1] = (uint32_t)b;
        x[2] = n2;
        x[3] = (uint32_t)a;
    }
    block out = {{x[0], x[1], x[2], x[3]}};
    return out;
}

/* The block of the 128-bit counter offset + index under seed. */
static block ref_block(uint64_t seed, uint64_t offset, uint64_t index)
{
    unsigned __int128 c = (unsigned __int128)offset + index;
    uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), (uint32_t)(c >> 64), (uint32_t)(c >> 96)};
    return ref_philox(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
}

static uint32_t word32(uint64_t seed, uint64_t off, int64_t i)
{
    return ref_block(seed, off, (uint64_t)i / 4).w[i % 4];
}

static uint64_t word64(uint64_t seed, uint64_t off, int64_t i)
{
    block b = ref_block(seed, off, (uint64_t)i / 2);
    int k = 2 * (int)(i % 2);
    return (uint64_t)b.w[k] | (uint64_t)b.w[k + 1] << 32;
}

static double ref_rand_f32(uint64_t seed, uint64_t off, int64_t i)
{
    return ldexp((double)(word32(seed, off, i) >> 8), -24);
}

static double ref_rand_f64(uint64_t seed, uint64_t off, int64_t i)
{
    return ldexp((double)(word64(seed, off, i) >> 11), -53);
}

static double ref_randn_f32(uint64_t seed, uint64_t off, int64_t i)
{
    block b = ref_block(seed, off, (uint64_t)i / 2);
    int k = 2 * (int)(i % 2);
    double u1 = ldexp((double)((b.w[k] >> 8) + 1), -24), u2 = ldexp((double)(b.w[k + 1] >> 8), -24);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static double ref_randn_f64(uint64_t seed, uint64_t off, int64_t i)
{
    block b = ref_block(seed, off, (uint64_t)i);
    uint64_t x1 = (uint64_t)b.w[0] | (uint64_t)b.w[1] << 32;
    uint64_t x2 = (uint64_t)b.w[2] | (uint64_t)b.w[3] << 32;
    double u1 = ldexp((double)((x1 >> 11) + 1), -53), u2 = ldexp((double)(x2 >> 11), -53);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static int64_t ref_randint(uint64_t seed, uint64_t off, int64_t i, int64_t low, int64_t high)
{
    uint64_t range = (uint64_t)high - (uint64_t)low;
    uint64_t r = (uint64_t)(((unsigned __int128)word64(seed, off, i) * range) >> 64);
    return (int64_t)((uint64_t)low + r);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static double at(const lm_tensor *t, int64_t flat)
{
    int64_t idx[LM_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = flat % t->shape[d];
        flat /= t->shape[d];
    }
    double v = NAN;
    lm_get(t, idx, &v);
    return v;
}

static uint64_t offset_now(void)
{
    uint64_t off;
    lm_rng_get_state(NULL, &off);
    return off;
}

static void mean_var(const lm_tensor *t, double *mean, double *var)
{
    int64_t n = lm_numel(t);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += at(t, i);
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) s2 += (at(t, i) - *mean) * (at(t, i) - *mean);
    *var = s2 / (double)(n - 1);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_default_seed(void)
{
    uint64_t seed = 0, off = 1;
    lm_rng_get_state(&seed, &off);
    is_int((int64_t)seed, INT64_C(67280421310721), "default seed is the documented constant");
    is_int((int64_t)off, 0, "default offset is 0");
}

static void test_philox_kat(void)
{
    /* Random123 kat_vectors, philox4x32_10. */
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (int k = 0; k < 3; k++) {
        lm_philox_words c = {{kat[k].ctr[0], kat[k].ctr[1], kat[k].ctr[2], kat[k].ctr[3]}};
        lm_philox_words e = lm__philox4x32_10(c, kat[k].key[0], kat[k].key[1]);
        block r = ref_philox(kat[k].ctr, kat[k].key[0], kat[k].key[1]);
        for (int j = 0; j < 4; j++) {
            is_int(e.w[j], kat[k].out[j], "engine philox KAT %d word %d", k, j);
            is_int(r.w[j], kat[k].out[j], "reference philox KAT %d word %d", k, j);
        }
    }
}

static void test_values_against_reference(void)
{
    const uint64_t seed = 0x123456789abcdefULL;
    lm_manual_seed(seed);
    is_int((int64_t)offset_now(), 0, "manual_seed sets offset 0");

    /* 11 elements: the last counter is used only in part. */
    lm_tensor *a = lm_rand(LM_SHAPE(11), LM_F32);
    int bad = 0;
    for (int i = 0; i < 11; i++) bad += at(a, i) != ref_rand_f32(seed, 0, i);
    is_int(bad, 0, "rand f32 = top 24 bits of counter offset+i/4, word i%%4");
    is_int((int64_t)offset_now(), 3, "rand f32 of 11 used 3 counters");

    lm_tensor *b = lm_rand(LM_SHAPE(3, 3), LM_F64);
    bad = 0;
    for (int i = 0; i < 9; i++) bad += at(b, i) != ref_rand_f64(seed, 3, i);
    is_int(bad, 0, "rand f64 = 53 bits of two words");
    is_int((int64_t)offset_now(), 3 + 5, "rand f64 of 9 used 5 counters");

    lm_tensor *c = lm_randn(LM_SHAPE(7), LM_F32);
    double worst = 0;
    for (int i = 0; i < 7; i++) worst = fmax(worst, fabs(at(c, i) - ref_randn_f32(seed, 8, i)));
    ok(worst < 2e-6, "randn f32 = Box-Muller of the pair (worst %g)", worst);
    is_int((int64_t)offset_now(), 8 + 4, "randn f32 of 7 used 4 counters");

    lm_tensor *d = lm_randn(LM_SHAPE(5), LM_F64);
    worst = 0;
    for (int i = 0; i < 5; i++) worst = fmax(worst, fabs(at(d, i) - ref_randn_f64(seed, 12, i)));
    ok(worst < 1e-14, "randn f64 = Box-Muller of two 53-bit uniforms (worst %g)", worst);
    is_int((int64_t)offset_now(), 12 + 5, "randn f64 of 5 used 5 counters");

    lm_tensor *e = lm_randint(-3, 1000, LM_SHAPE(5), LM_I64);
    bad = 0;
    for (int i = 0; i < 5; i++) bad += at(e, i) != (double)ref_randint(seed, 17, i, -3, 1000);
    is_int(bad, 0, "randint = low + (64-bit word * range) >> 64");
    is_int((int64_t)offset_now(), 17 + 3, "randint of 5 used 3 counters");

    lm_tensor *f = lm_zeros(LM_SHAPE(6), LM_U8);
    is_int(lm_bernoulli_(f, 0.25), LM_OK, "bernoulli_ u8");
    bad = 0;
    for (int i = 0; i < 6; i++) {
        double want = word32(seed, 20, i) < (uint64_t)(0.25 * 4294967296.0) ? 1 : 0;
        bad += at(f, i) != want;
    }
    is_int(bad, 0, "bernoulli = word < p * 2^32");
    is_int((int64_t)offset_now(), 20 + 2, "bernoulli of 6 used 2 counters");

    lm_tensor *g = lm_empty(LM_SHAPE(4, 2), LM_F64);
    is_int(lm_uniform_(g, -2.0, 3.0), LM_OK, "uniform_ f64");
    worst = 0;
    for (int i = 0; i < 8; i++)
        worst = fmax(worst, fabs(at(g, i) - (-2.0 + 5.0 * ref_rand_f64(seed, 22, i))));
    ok(worst < 1e-15, "uniform_ = lo + (hi-lo)*u (worst %g)", worst);

    lm_tensor *h = lm_empty(LM_SHAPE(3), LM_F32);
    is_int(lm_normal_(h, 3.0, 0.5), LM_OK, "normal_ f32");
    worst = 0;
    for (int i = 0; i < 3; i++)
        worst = fmax(worst, fabs(at(h, i) - (3.0 + 0.5 * ref_randn_f32(seed, 26, i))));
    ok(worst < 4e-6, "normal_ = mean + std*z (worst %g)", worst);

    lm_tensor *z = lm_rand(LM_SHAPE(0, 5), LM_F32);
    ok(z && lm_numel(z) == 0, "rand of an empty shape");
    is_int((int64_t)offset_now(), 26 + 2, "an empty tensor uses no counters");
    lm_tensor *s = lm_rand(0, NULL, LM_F64);
    ok(s && s->ndim == 0 && at(s, 0) == ref_rand_f64(seed, 28, 0), "0-dim rand");
    is_int((int64_t)offset_now(), 29, "0-dim uses one counter");
    lm_release(a);
    lm_release(b);
    lm_release(c);
    lm_release(d);
    lm_release(e);
    lm_release(f);
    lm_release(g);
    lm_release(h);
    lm_release(z);
    lm_release(s);
}

static void test_counter_carry(void)
{
    /* Counters 2^64-2, 2^64-1, then 2^64: the carry reaches the third counter word. */
    lm_rng_set_state(77, UINT64_MAX - 1);
    lm_tensor *a = lm_rand(LM_SHAPE(12), LM_F32);
    int bad = 0;
    for (int i = 0; i < 12; i++) bad += at(a, i) != ref_rand_f32(77, UINT64_MAX - 1, i);
    is_int(bad, 0, "counter carries past 64 bits");
    is_int((int64_t)offset_now(), 1, "offset wraps past the counters used");
    lm_release(a);
}

static void test_dtypes(void)
{
    const uint64_t seed = 5;
    static const lm_dtype all[] = {LM_F32, LM_F64, LM_I64, LM_U8};
    for (int k = 0; k < 4; k++) {
        lm_manual_seed(seed);
        lm_tensor *t = lm_randint(-4, 9, LM_SHAPE(2, 5), all[k]);
        if (all[k] == LM_U8) {
            ok(t == NULL, "randint u8 refuses a negative low");
            lm_clear_error();
            t = lm_randint(3, 200, LM_SHAPE(2, 5), LM_U8);
        }
        if (!ok(t != NULL, "randint %s", lm_dtype_name(all[k]))) continue;
        is_int(t->dtype, all[k], "randint dtype %s", lm_dtype_name(all[k]));
        int64_t lo = all[k] == LM_U8 ? 3 : -4, hi = all[k] == LM_U8 ? 200 : 9;
        int bad = 0;
        for (int i = 0; i < 10; i++) bad += at(t, i) != (double)ref_randint(seed, 0, i, lo, hi);
        is_int(bad, 0, "randint %s values", lm_dtype_name(all[k]));
        lm_release(t);

        lm_manual_seed(seed);
        lm_tensor *b = lm_full(LM_SHAPE(9), 7, all[k]);
        is_int(lm_bernoulli_(b, 0.5), LM_OK, "bernoulli_ %s", lm_dtype_name(all[k]));
        bad = 0;
        for (int i = 0; i < 9; i++)
            bad += at(b, i) != (word32(seed, 0, i) < UINT64_C(0x80000000) ? 1.0 : 0.0);
        is_int(bad, 0, "bernoulli_ %s values", lm_dtype_name(all[k]));
        lm_release(b);
    }
    /* The full int64 span: range 2^64 - 1. */
    lm_manual_seed(seed);
    lm_tensor *w = lm_randint(INT64_MIN, INT64_MAX, LM_SHAPE(4), LM_I64);
    int bad = 0;
    for (int i = 0; i < 4; i++)
        bad += ((int64_t *)lm_data(w))[i] != ref_randint(seed, 0, i, INT64_MIN, INT64_MAX);
    is_int(bad, 0, "randint over the whole int64 range");
    lm_release(w);
    /* f32 randint up to 2^24 is exact. */
    lm_tensor *big = lm_randint(0, (INT64_C(1) << 24) + 1, LM_SHAPE(3), LM_F32);
    ok(big != NULL, "randint f32 up to 2^24 is accepted");
    lm_release(big);
    /* bernoulli p = 0 and p = 1 are exact. */
    lm_tensor *p0 = lm_ones(LM_SHAPE(1000), LM_F32), *p1 = lm_zeros(LM_SHAPE(1000), LM_I64);
    lm_bernoulli_(p0, 0.0);
    lm_bernoulli_(p1, 1.0);
    double s0 = 0, s1 = 0;
    for (int i = 0; i < 1000; i++) {
        s0 += at(p0, i);
        s1 += at(p1, i);
    }
    is_close(s0, 0, 0, "bernoulli p=0 gives only zeros");
    is_close(s1, 1000, 0, "bernoulli p=1 gives only ones");
    lm_release(p0);
    lm_release(p1);
}

static void test_uniform_bounds(void)
{
    /* seed 1, counter 6318945, word 1 has its top 24 bits set: u = 1 - 2^-24, and
     * 1 + u rounds to 2.0f; the result must stay below hi. */
    lm_rng_set_state(1, 6318945);
    lm_tensor *t = lm_empty(LM_SHAPE(4), LM_F32);
    lm_uniform_(t, 1.0, 2.0);
    is_int(word32(1, 6318945, 1) >> 8, 0xffffff, "the chosen word is all ones at the top");
    ok(at(t, 1) < 2.0, "uniform_ never returns hi (got %.9g)", at(t, 1));
    is_close(at(t, 1), nextafterf(2.0f, 1.0f), 0, "it returns the largest float below hi");
    is_int(lm_uniform_(t, 1.5, 1.5), LM_OK, "uniform_ with lo == hi");
    int bad = 0;
    for (int i = 0; i < 4; i++) bad += at(t, i) != 1.5;
    is_int(bad, 0, "lo == hi gives lo");
    lm_release(t);
}

static void test_determinism(void)
{
    lm_manual_seed(42);
    lm_tensor *a = lm_randn(LM_SHAPE(100), LM_F32);
    uint64_t seed, off;
    lm_rng_get_state(&seed, &off);
    lm_tensor *b = lm_randn(LM_SHAPE(100), LM_F32);
    lm_manual_seed(42);
    lm_tensor *a2 = lm_randn(LM_SHAPE(100), LM_F32);
    lm_rng_set_state(seed, off);
    lm_tensor *b2 = lm_randn(LM_SHAPE(100), LM_F32);
    lm_manual_seed(43);
    lm_tensor *c = lm_randn(LM_SHAPE(100), LM_F32);
    ok(memcmp(lm_data(a), lm_data(a2), 400) == 0, "same seed, same numbers");
    ok(memcmp(lm_data(b), lm_data(b2), 400) == 0, "restored state, same numbers");
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 100; i++) {
        same_ab += at(a, i) == at(b, i);
        same_ac += at(a, i) == at(c, i);
    }
    is_int(same_ab, 0, "successive calls (different offsets) differ");
    is_int(same_ac, 0, "different seeds differ");
    lm_release(a);
    lm_release(b);
    lm_release(a2);
    lm_release(b2);
    lm_release(c);
}

/* A short call runs its elements through the scalar tail, a long one through the vector loop:
 * the same element must come out bit for bit the same either way. */
static void test_prefix_consistency(void)
{
    static const lm_dtype dts[] = {LM_F32, LM_F64};
    static const char *names[] = {"rand", "randn", "randint", "bernoulli_"};
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) {
            lm_tensor *r[2];
            const int64_t sizes[2] = {1000, 7};
            for (int s = 0; s < 2; s++) {
                lm_manual_seed(31);
                switch (j) {
                case 0: r[s] = lm_rand(LM_SHAPE(sizes[s]), dts[k]); break;
                case 1: r[s] = lm_randn(LM_SHAPE(sizes[s]), dts[k]); break;
                case 2: r[s] = lm_randint(-1000, 1000, LM_SHAPE(sizes[s]), dts[k]); break;
                default:
                    r[s] = lm_empty(LM_SHAPE(sizes[s]), dts[k]);
                    lm_bernoulli_(r[s], 0.4);
                    break;
                }
            }
            ok(memcmp(lm_data(r[0]), lm_data(r[1]), lm_nbytes(r[1])) == 0,
               "%s %s: the first 7 of 1000 equal a call of 7", names[j], lm_dtype_name(dts[k]));
            lm_release(r[0]);
            lm_release(r[1]);
        }
}

/* Large tensors take the parallel path: 1 and 2 threads must give the same bits. */
static void test_threads(void)
{
    const int64_t n = 100003;
    static const lm_dtype dts[] = {LM_F32, LM_F64};
    for (int k = 0; k < 2; k++) {
        lm_tensor *r[2][5];
        for (int th = 0; th < 2; th++) {
            lm_set_num_threads(th + 1);
            lm_manual_seed(9);
            r[th][0] = lm_rand(LM_SHAPE(n), dts[k]);
            r[th][1] = lm_randn(LM_SHAPE(n), dts[k]);
            r[th][2] = lm_randint(-50, 50, LM_SHAPE(n), dts[k]);
            r[th][3] = lm_empty(LM_SHAPE(n), dts[k]);
            lm_bernoulli_(r[th][3], 0.7);
            r[th][4] = lm_empty(LM_SHAPE(n), dts[k]);
            lm_normal_(r[th][4], -1.0, 3.0);
        }
        lm_set_num_threads(1);
        static const char *names[] = {"rand", "randn", "randint", "bernoulli_", "normal_"};
        for (int j = 0; j < 5; j++) {
            ok(memcmp(lm_data(r[0][j]), lm_data(r[1][j]), lm_nbytes(r[0][j])) == 0,
               "%s %s: 1 and 2 threads give the same values", names[j], lm_dtype_name(dts[k]));
            lm_release(r[0][j]);
            lm_release(r[1][j]);
        }
    }
    /* And the parallel values still follow the per-element rule. */
    lm_set_num_threads(2);
    lm_manual_seed(10);
    lm_tensor *t = lm_rand(LM_SHAPE(n), LM_F32);
    int bad = 0;
    for (int64_t i = 0; i < n; i += 997) bad += at(t, i) != ref_rand_f32(10, 0, i);
    bad += at(t, n - 1) != ref_rand_f32(10, 0, n - 1);
    is_int(bad, 0, "parallel rand follows the element rule");
    lm_set_num_threads(1);
    lm_release(t);
}

static void test_views(void)
{
    const uint64_t seed = 11;
    /* A transposed view: element (i, j) of the view gets number i*4 + j. */
    lm_tensor *base = lm_zeros(LM_SHAPE(4, 3), LM_F32);
    lm_tensor *tv = lm_t(base);
    lm_manual_seed(seed);
    is_int(lm_uniform_(tv, 0.0, 1.0), LM_OK, "uniform_ on a transposed view");
    int bad = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) {
            double got;
            lm_get(base, (const int64_t[]){j, i}, &got);
            bad += got != ref_rand_f32(seed, 0, i * 4 + j);
        }
    is_int(bad, 0, "transposed view filled in its own C order");
    /* Every second element: the others stay 0. */
    lm_tensor *row = lm_zeros(LM_SHAPE(10), LM_F64);
    lm_tensor *even = lm_slice(row, 0, 0, 10, 2);
    lm_manual_seed(seed);
    is_int(lm_normal_(even, 0.0, 1.0), LM_OK, "normal_ on a stepped slice");
    bad = 0;
    for (int i = 0; i < 10; i++) {
        double want = i % 2 ? 0.0 : ref_randn_f64(seed, 0, i / 2);
        bad += fabs(at(row, i) - want) > 1e-14;
    }
    is_int(bad, 0, "stepped slice gets draws 0..4, gaps untouched");
    /* Size-1 dims are contiguous views. */
    lm_tensor *one = lm_zeros(LM_SHAPE(1, 5, 1), LM_I64);
    lm_manual_seed(seed);
    lm_bernoulli_(one, 0.5);
    bad = 0;
    for (int i = 0; i < 5; i++) bad += at(one, i) != (word32(seed, 0, i) < UINT64_C(0x80000000));
    is_int(bad, 0, "size-1 dims");
    /* An expanded view would be written several times. */
    lm_tensor *src = lm_zeros(LM_SHAPE(1, 3), LM_F32);
    lm_tensor *ex = lm_expand(src, LM_SHAPE(4, 3));
    uint64_t before = offset_now();
    is_int(lm_uniform_(ex, 0, 1), LM_ERR_STATE, "uniform_ on an expanded view fails");
    has_str(lm_last_error(), "uniform_", "message names the op");
    has_str(lm_last_error(), "[4,3]", "message names the shape");
    is_int((int64_t)offset_now(), (int64_t)before, "a failed call uses no counters");
    lm_clear_error();
    lm_release(base);
    lm_release(tv);
    lm_release(row);
    lm_release(even);
    lm_release(one);
    lm_release(src);
    lm_release(ex);
}

static void test_statistics(void)
{
    const int64_t n = 100000;
    lm_manual_seed(2024);
    double m, v;
    static const lm_dtype dts[] = {LM_F32, LM_F64};
    for (int k = 0; k < 2; k++) {
        const char *dn = lm_dtype_name(dts[k]);
        lm_tensor *u = lm_rand(LM_SHAPE(n), dts[k]);
        mean_var(u, &m, &v);
        /* Standard errors: mean sqrt(1/12/n) = 9e-4, variance ~2.7e-4 (uniform). */
        ok(fabs(m - 0.5) < 4 * 9.2e-4, "rand %s mean %.5f", dn, m);
        ok(fabs(v - 1.0 / 12) < 4 * 2.7e-4, "rand %s variance %.5f", dn, v);
        double lo = 1, hi = 0;
        for (int64_t i = 0; i < n; i++) {
            lo = fmin(lo, at(u, i));
            hi = fmax(hi, at(u, i));
        }
        ok(lo >= 0 && hi < 1 && lo < 1e-3 && hi > 1 - 1e-3, "rand %s in [0,1), spread", dn);

        lm_tensor *z = lm_randn(LM_SHAPE(n), dts[k]);
        mean_var(z, &m, &v);
        ok(fabs(m) < 4 * 3.2e-3, "randn %s mean %.5f", dn, m);
        ok(fabs(v - 1) < 4 * 4.5e-3, "randn %s variance %.5f", dn, v);
        int64_t tail = 0;
        for (int64_t i = 0; i < n; i++) tail += fabs(at(z, i)) > 2;
        /* P(|z| > 2) = 0.0455, standard error 6.6e-4. */
        ok(fabs((double)tail / n - 0.0455) < 4 * 6.6e-4, "randn %s tail P(|z|>2) = %.4f", dn,
           (double)tail / n);

        lm_tensor *g = lm_empty(LM_SHAPE(n), dts[k]);
        lm_normal_(g, 3.0, 2.0);
        mean_var(g, &m, &v);
        ok(fabs(m - 3) < 4 * 6.4e-3, "normal_(3,2) %s mean %.4f", dn, m);
        ok(fabs(v - 4) < 4 * 1.8e-2, "normal_(3,2) %s variance %.4f", dn, v);

        lm_uniform_(g, -2.0, 5.0);
        mean_var(g, &m, &v);
        ok(fabs(m - 1.5) < 4 * 6.4e-3, "uniform_(-2,5) %s mean %.4f", dn, m);
        ok(fabs(v - 49.0 / 12) < 4 * 1.3e-2, "uniform_(-2,5) %s variance %.4f", dn, v);

        lm_bernoulli_(g, 0.3);
        mean_var(g, &m, &v);
        ok(fabs(m - 0.3) < 4 * 1.45e-3, "bernoulli_(0.3) %s mean %.4f", dn, m);
        lm_release(u);
        lm_release(z);
        lm_release(g);
    }
    lm_tensor *r = lm_randint(-3, 4, LM_SHAPE(n), LM_I64);
    int64_t count[7] = {0}, outside = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t x = ((int64_t *)lm_data(r))[i];
        if (x < -3 || x > 3) outside++;
        else count[x + 3]++;
    }
    is_int(outside, 0, "randint(-3, 4) stays in [-3, 4)");
    int64_t fewest = n, most = 0;
    for (int k = 0; k < 7; k++) {
        if (count[k] < fewest) fewest = count[k];
        if (count[k] > most) most = count[k];
    }
    /* Each count ~ n/7 = 14286 with standard deviation 111. */
    ok(fewest > 14286 - 500 && most < 14286 + 500, "randint covers every value evenly (%lld..%lld)",
       (long long)fewest, (long long)most);
    lm_release(r);
    lm_tensor *bytes = lm_randint(0, 256, LM_SHAPE(n), LM_U8);
    bool seen[256] = {false};
    for (int64_t i = 0; i < n; i++) seen[((uint8_t *)lm_data(bytes))[i]] = true;
    int distinct = 0;
    for (int k = 0; k < 256; k++) distinct += seen[k];
    is_int(distinct, 256, "randint u8 [0, 256) reaches every byte");
    lm_release(bytes);
}

static void test_errors(void)
{
    lm_manual_seed(3);
    uint64_t before = offset_now();
    lm_clear_error();

    ok(lm_rand(LM_SHAPE(2), LM_I64) == NULL, "rand i64 fails");
    is_int(lm_last_status(), LM_ERR_DTYPE, "rand i64: LM_ERR_DTYPE");
    has_str(lm_last_error(), "rand: dtype i64", "rand i64: message names op and dtype");
    ok(lm_randn(LM_SHAPE(2), LM_U8) == NULL, "randn u8 fails");
    has_str(lm_last_error(), "randn: dtype u8", "randn u8: message");
    lm_tensor *it = lm_zeros(LM_SHAPE(2, 3), LM_I64);
    is_int(lm_uniform_(it, 0, 1), LM_ERR_DTYPE, "uniform_ on i64 fails");
    has_str(lm_last_error(), "[2,3]", "uniform_ i64: message names the shape");
    is_int(lm_normal_(it, 0, 1), LM_ERR_DTYPE, "normal_ on i64 fails");
    has_str(lm_last_error(), "normal_: dtype i64", "normal_ i64: message");
    lm_release(it);

    ok(lm_randint(5, 5, LM_SHAPE(2), LM_I64) == NULL, "randint low == high fails");
    is_int(lm_last_status(), LM_ERR_ARG, "randint low == high: LM_ERR_ARG");
    has_str(lm_last_error(), "randint: low (5) must be less than high (5)", "randint: message");
    ok(lm_randint(0, 300, LM_SHAPE(2), LM_U8) == NULL, "randint u8 beyond 255 fails");
    has_str(lm_last_error(), "does not fit in u8", "randint u8: message");
    ok(lm_randint(0, (INT64_C(1) << 24) + 2, LM_SHAPE(2), LM_F32) == NULL,
       "randint f32 beyond 2^24 fails");
    has_str(lm_last_error(), "does not fit in f32", "randint f32: message");
    ok(lm_randint(0, 2, LM_SHAPE(2), (lm_dtype)9) == NULL, "randint unknown dtype fails");
    is_int(lm_last_status(), LM_ERR_DTYPE, "randint unknown dtype: LM_ERR_DTYPE");
    ok(lm_rand(LM_SHAPE(2, -1), LM_F32) == NULL, "rand with a negative size fails");
    has_str(lm_last_error(), "rand: negative size -1", "rand negative size: message");

    lm_tensor *t = lm_zeros(LM_SHAPE(3), LM_F32);
    is_int(lm_uniform_(t, 1, 0), LM_ERR_ARG, "uniform_ lo > hi fails");
    has_str(lm_last_error(), "lo=1 > hi=0", "uniform_ lo > hi: message");
    has_str(lm_last_error(), "uniform_", "uniform_: names the op");
    is_int(lm_uniform_(t, 0, INFINITY), LM_ERR_ARG, "uniform_ infinite hi fails");
    has_str(lm_last_error(), "not finite", "uniform_ inf: message");
    is_int(lm_uniform_(t, -1e300, 1e300), LM_ERR_ARG, "uniform_ beyond f32 range fails");
    is_int(lm_normal_(t, 0, -1), LM_ERR_ARG, "normal_ std < 0 fails");
    has_str(lm_last_error(), "std=-1", "normal_: message shows std");
    is_int(lm_normal_(t, NAN, 1), LM_ERR_ARG, "normal_ nan mean fails");
    is_int(lm_bernoulli_(t, 1.5), LM_ERR_ARG, "bernoulli_ p > 1 fails");
    has_str(lm_last_error(), "bernoulli_: expects p in [0, 1], got p=1.5", "bernoulli_: message");
    is_int(lm_bernoulli_(t, NAN), LM_ERR_ARG, "bernoulli_ p = nan fails");
    is_int(lm_bernoulli_(t, -0.1), LM_ERR_ARG, "bernoulli_ p < 0 fails");
    double sum = 0;
    for (int i = 0; i < 3; i++) sum += at(t, i);
    is_close(sum, 0, 0, "failed calls leave the tensor untouched");
    lm_release(t);

    lm_clear_error();
    is_int(lm_uniform_(NULL, 0, 1), LM_ERR_ARG, "uniform_(NULL) fails");
    has_str(lm_last_error(), "uniform_: NULL tensor", "uniform_(NULL): message");
    lm_clear_error();
    is_int(lm_normal_(NULL, 0, 1), LM_ERR_ARG, "normal_(NULL) fails");
    has_str(lm_last_error(), "normal_: NULL tensor", "normal_(NULL): message");
    lm_clear_error();
    is_int(lm_bernoulli_(NULL, 0.5), LM_ERR_ARG, "bernoulli_(NULL) fails");
    has_str(lm_last_error(), "bernoulli_: NULL tensor", "bernoulli_(NULL): message");
    lm_clear_error();
    is_int((int64_t)offset_now(), (int64_t)before, "no failed call advanced the offset");

    /* Out of memory: the new tensor, and the temporary of a non-contiguous fill. */
    lm_debug_fail_alloc_after(1);
    ok(lm_rand(LM_SHAPE(8), LM_F32) == NULL, "rand under OOM fails");
    is_int(lm_last_status(), LM_ERR_MEMORY, "rand under OOM: LM_ERR_MEMORY");
    lm_debug_fail_alloc_after(0);
    lm_tensor *m = lm_zeros(LM_SHAPE(4, 4), LM_F32), *mt = lm_t(m);
    lm_clear_error();
    lm_debug_fail_alloc_after(1);
    is_int(lm_normal_(mt, 0, 1), LM_ERR_MEMORY, "normal_ of a view under OOM fails");
    lm_debug_fail_alloc_after(0);
    is_int((int64_t)offset_now(), (int64_t)before, "OOM failures use no counters");
    lm_clear_error();
    lm_release(m);
    lm_release(mt);
}

int main(void)
{
    plan_auto();
    test_default_seed();
    test_philox_kat();
    test_values_against_reference();
    test_counter_carry();
    test_dtypes();
    test_uniform_bounds();
    test_determinism();
    test_prefix_consistency();
    test_threads();
    test_views();
    test_statistics();
    test_errors();
    /* The 2-thread runs leave OpenMP's worker threads alive past main; releasing them lets
     * valgrind account for every block. */
    omp_pause_resource_all(omp_pause_hard);
    return done();
}
