/* philox.h — the Philox 4x32-10 counter-based generator (Salmon, Moraes, Dror, Shaw: "Parallel
 * random numbers: as easy as 1, 2, 3", SC 2011; Random123 and PyTorch's CUDA generator use it),
 * and the rules that turn its output words into the numbers of each random op.
 *
 * Why this header defines functions: every backend must compute the same number for the same
 * (seed, offset, element index). The CPU kernels and the CUDA kernels (built by nvcc in another
 * translation unit) therefore include this one definition of the arithmetic instead of keeping
 * copies in step by hand. It is the only header of the engine with function bodies; they are
 * `static inline` (and __host__ __device__ under nvcc) and use plain integer and float
 * arithmetic that vectorizes on the CPU.
 *
 * Glossary: key = the 64-bit seed as two 32-bit words (low word first); counter = 128 bits as
 * four 32-bit words (least significant first); one Philox call maps (counter, key) to four
 * 32-bit words w0..w3.
 *
 * Which words each element of a call uses (offset = the generator's offset at the call, i = the
 * element's C-order index in the tensor):
 *   32-bit draws (f32 uniform, bernoulli):  counter offset + i/4, word i%4.
 *   64-bit draws (f64 uniform, randint):    counter offset + i/2, words 2*(i%2) (low half) and
 *                                           2*(i%2)+1 (high half).
 *   f32 normal (two 32-bit uniforms):       counter offset + i/2, u1 from word 2*(i%2),
 *                                           u2 from word 2*(i%2)+1.
 *   f64 normal (two 64-bit uniforms):       counter offset + i, u1 from words 0,1; u2 from 2,3.
 * A call of n elements then advances the offset by ceil(n / per_counter) counters. Normals are
 * z = sqrt(-2 ln u1) * cos(2 pi u2) with u1 in (0, 1]; Box-Muller's sine half is dropped so that
 * an element needs no neighbour.
 *
 * Floating-point results are the same on every device only if both sides evaluate these
 * expressions without contracting a*b+c into a fused multiply-add: gcc does not contract in
 * ISO C mode (-std=c11); nvcc needs -fmad=false for the kernels that include this header. */
#ifndef LUMEN_PHILOX_H
#define LUMEN_PHILOX_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define LM_PHILOX_FN static inline __host__ __device__
#else
#define LM_PHILOX_FN static inline
#endif

/* Multipliers and Weyl key increments of Philox 4x32, as in the paper and Random123. */
#define LM_PHILOX_M0 0xD2511F53u
#define LM_PHILOX_M1 0xCD9E8D57u
#define LM_PHILOX_W0 0x9E3779B9u /* golden ratio */
#define LM_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

typedef struct lm_philox_words {
    uint32_t w[4];
} lm_philox_words;

/* Philox 4x32 with 10 rounds: the output block for one counter under one key.
 * The 32-bit words are held in 64-bit variables: gcc then vectorizes with 64-bit lanes, where
 * the widening 32x32->64 products need no shuffles between lane widths (measured here: a
 * uniform fill 2x faster than with uint32_t words). The values are those of the 32-bit
 * definition: every word is masked back to 32 bits. */
LM_PHILOX_FN lm_philox_words lm__philox4x32_10(lm_philox_words ctr, uint32_t key0, uint32_t key1)
{
    uint64_t x0 = ctr.w[0], x1 = ctr.w[1], x2 = ctr.w[2], x3 = ctr.w[3];
    uint64_t k0 = key0, k1 = key1;
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = x0 * LM_PHILOX_M0;
        uint64_t p1 = x2 * LM_PHILOX_M1;
        x0 = (p1 >> 32) ^ x1 ^ k0;
        x1 = p1 & 0xffffffffu;
        x2 = (p0 >> 32) ^ x3 ^ k1;
        x3 = p0 & 0xffffffffu;
        k0 = (k0 + LM_PHILOX_W0) & 0xffffffffu;
        k1 = (k1 + LM_PHILOX_W1) & 0xffffffffu;
    }
    lm_philox_words r = {{(uint32_t)x0, (uint32_t)x1, (uint32_t)x2, (uint32_t)x3}};
    return r;
}

/* The 128-bit counter offset + index, where offset + index may carry past 64 bits. */
LM_PHILOX_FN lm_philox_words lm__philox_counter(uint64_t offset, uint64_t index)
{
    uint64_t c = offset + index;
    lm_philox_words r = {{(uint32_t)c, (uint32_t)(c >> 32), c < offset ? 1u : 0u, 0u}};
    return r;
}

/* The block of counter offset + index under the key made from seed. */
LM_PHILOX_FN lm_philox_words lm__philox_block(uint64_t seed, uint64_t offset, uint64_t index)
{
    return lm__philox4x32_10(lm__philox_counter(offset, index), (uint32_t)seed,
                             (uint32_t)(seed >> 32));
}

/* ---- from words to numbers ------------------------------------------------------------ */

/* [0, 1) from the top 24 bits of a word: every value is a multiple of 2^-24, so exact in f32. */
LM_PHILOX_FN float lm__u01_f32(uint32_t w) { return (float)(w >> 8) * 0x1p-24f; }
/* (0, 1]: the same grid shifted by one step, so a logarithm never sees 0. */
LM_PHILOX_FN float lm__u01_open_f32(uint32_t w) { return (float)((w >> 8) + 1) * 0x1p-24f; }
/* [0, 1) and (0, 1] from the top 53 bits of two words (lo, hi). */
LM_PHILOX_FN double lm__u01_f64(uint32_t lo, uint32_t hi)
{
    return (double)((((uint64_t)hi << 32) | lo) >> 11) * 0x1p-53;
}
LM_PHILOX_FN double lm__u01_open_f64(uint32_t lo, uint32_t hi)
{
    return (double)(((((uint64_t)hi << 32) | lo) >> 11) + 1) * 0x1p-53;
}

/* randint: a 64-bit draw reduced to [0, range) by multiply-shift, floor(x * range / 2^64).
 * No division, and every result has probability within range/2^64 of 1/range: a relative bias
 * below 2^-32 for ranges under 2^32. */
LM_PHILOX_FN uint64_t lm__reduce_range(uint32_t lo, uint32_t hi, uint64_t range)
{
    uint64_t x = ((uint64_t)hi << 32) | lo;
#if defined(__CUDA_ARCH__)
    return __umul64hi(x, range);
#else
    return (uint64_t)(((unsigned __int128)x * range) >> 64);
#endif
}

/* bernoulli: a word w gives 1 when w < threshold = floor(p * 2^32), so p = 1 always gives 1
 * and p = 0 never. */
LM_PHILOX_FN uint64_t lm__bernoulli_threshold(double p) { return (uint64_t)(p * 4294967296.0); }

/* Box-Muller in f32. The elementary functions are written out here, not taken from libm, so
 * that vectorized and scalar code (and the CUDA kernels) produce the very same bits: libm's
 * vector variants differ from its scalar ones in the last bits.
 *
 * log for x in (0, 1]: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), log(x) = e*ln2 + log1p(m-1),
 * log1p by the Cephes single-precision minimax polynomial (about 1 ulp); ln2 is split in two
 * so e*ln2 stays exact. */
LM_PHILOX_FN float lm__log_unit_f32(float x)
{
    union { float f; uint32_t u; } b = {x};
    int32_t e = (int32_t)(b.u >> 23) - 126; /* x = m' * 2^e with m' in [0.5, 1) */
    b.u = (b.u & 0x007fffffu) | 0x3f000000u;
    float m = b.f;
    int small = m < 0.70710678118654752f;
    e -= small;
    m = small ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    float fe = (float)e;
    y += fe * -2.12194440e-4f;
    y += -0.5f * z;
    return m + y + fe * 0.693359375f;
}

/* cos(2*pi*u) for u in [0, 1). The reduction is exact in binary: r = |u - round(u)| in
 * [0, 1/2], then cos(2*pi*r) = -cos(2*pi*(1/2 - r)) folds r into [0, 1/4] (1/2 - r is exact
 * there, Sterbenz), where a Taylor polynomial in r^2 up to (2*pi*r)^14/14! is accurate to 1e-10. */
LM_PHILOX_FN float lm__cos2pi_f32(float u)
{
    float r = u < 0.5f ? u : 1.0f - u;
    int flip = r > 0.25f;
    r = flip ? 0.5f - r : r;
    float s = r * r;
    float c = -1.7143907110886720e+00f;  /* -(2pi)^14/14! */
    c = c * s + 7.9035363713184690e+00f; /*  (2pi)^12/12! */
    c = c * s - 2.6426256783374400e+01f; /* -(2pi)^10/10! */
    c = c * s + 6.0244641371876660e+01f; /*  (2pi)^8/8!   */
    c = c * s - 8.5456817206693730e+01f; /* -(2pi)^6/6!   */
    c = c * s + 6.4939394022668300e+01f; /*  (2pi)^4/4!   */
    c = c * s - 1.9739208802178716e+01f; /* -(2pi)^2/2!   */
    c = c * s + 1.0f;
    return flip ? -c : c;
}

/* A standard normal from two f32 words. The square root is correctly rounded everywhere
 * (IEEE 754), so libm's sqrtf gives the same bits in scalar and vector code. */
LM_PHILOX_FN float lm__normal_f32(uint32_t w1, uint32_t w2)
{
    float rad = -2.0f * lm__log_unit_f32(lm__u01_open_f32(w1));
    return sqrtf(rad) * lm__cos2pi_f32(lm__u01_f32(w2));
}

/* Box-Muller in f64, written out for the same reason. log for x in (0, 1]: with f = m - 1 and
 * s = f / (2 + f), log(1 + f) = 2*atanh(s) = 2s + s*R(s^2), R(z) = sum 2/(2k+1) z^k; |s| <=
 * 0.1716 makes the terms up to k = 11 exact to 1e-18. 2s is formed as f - s*f. */
LM_PHILOX_FN double lm__log_unit_f64(double x)
{
    union { double d; uint64_t u; } b = {x};
    int64_t e = (int64_t)(b.u >> 52) - 1022; /* x = m' * 2^e with m' in [0.5, 1) */
    b.u = (b.u & 0x000fffffffffffffu) | 0x3fe0000000000000u;
    double m = b.d;
    int small = m < 0.70710678118654752440;
    e -= small;
    double f = small ? m + m - 1.0 : m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s;
    double r = 2.0 / 23;
    r = r * z + 2.0 / 21;
    r = r * z + 2.0 / 19;
    r = r * z + 2.0 / 17;
    r = r * z + 2.0 / 15;
    r = r * z + 2.0 / 13;
    r = r * z + 2.0 / 11;
    r = r * z + 2.0 / 9;
    r = r * z + 2.0 / 7;
    r = r * z + 2.0 / 5;
    r = r * z + 2.0 / 3;
    r = r * z;
    double de = (double)e;
    /* ln2 = hi + lo with hi's low 32 bits zero, so de * hi is exact. */
    return de * 6.93147180369123816490e-01 + ((f - s * (f - r)) + de * 1.90821492927058770002e-10);
}

/* cos(2*pi*u) for u in [0, 1): folded exactly into r in [0, 1/8] of either cos(2*pi*r) or
 * sin(2*pi*r) (cos(2*pi*r) = sin(2*pi*(1/4 - r))), then Taylor polynomials in r whose first
 * omitted terms are below 1e-17. */
LM_PHILOX_FN double lm__cos2pi_f64(double u)
{
    double r = u < 0.5 ? u : 1.0 - u;
    int flip = r > 0.25;
    r = flip ? 0.5 - r : r;
    int use_sin = r > 0.125;
    r = use_sin ? 0.25 - r : r;
    double q = r * r;
    double c = 2.8200596845579123e-01;  /*  (2pi)^16/16! */
    c = c * q - 1.7143907110886720e+00; /* -(2pi)^14/14! */
    c = c * q + 7.9035363713184690e+00;
    c = c * q - 2.6426256783374400e+01;
    c = c * q + 6.0244641371876660e+01;
    c = c * q - 8.5456817206693730e+01;
    c = c * q + 6.4939394022668300e+01;
    c = c * q - 1.9739208802178716e+01;
    c = c * q + 1.0;
    double sn = 1.0422916220813984e-01;   /*  (2pi)^17/17! */
    sn = sn * q - 7.1812230177850060e-01; /* -(2pi)^15/15! */
    sn = sn * q + 3.8199525848482820e+00;
    sn = sn * q - 1.5094642576822990e+01;
    sn = sn * q + 4.2058693944897655e+01;
    sn = sn * q - 7.6705859753061390e+01;
    sn = sn * q + 8.1605249276075060e+01;
    sn = sn * q - 4.1341702240399760e+01;
    sn = sn * q + 6.2831853071795860e+00;
    sn = sn * r;
    double v = use_sin ? sn : c;
    return flip ? -v : v;
}

LM_PHILOX_FN double lm__normal_f64(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3)
{
    double rad = -2.0 * lm__log_unit_f64(lm__u01_open_f64(w0, w1));
    return sqrt(rad) * lm__cos2pi_f64(lm__u01_f64(w2, w3));
}

#endif /* LUMEN_PHILOX_H */
