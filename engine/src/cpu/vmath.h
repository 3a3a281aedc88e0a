/* vmath.h — float math written so gcc vectorizes it (glibc has no vector expf/logf without
 * -ffast-math), shared by the CPU kernels. Functions in a header on purpose: they must inline
 * into each kernel's loop to vectorize. */
#ifndef LUMEN_CPU_VMATH_H
#define LUMEN_CPU_VMATH_H

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* exp(x) = 2^n * exp(r) with n = round(x / ln 2), |r| <= ln(2)/2, exp(r) from Cephes' degree-6
 * polynomial (about 1 ulp). n is rounded by adding 1.5 * 2^23, which leaves it in the low
 * mantissa bits, so no float-to-int conversion is needed. 2^n is applied as two halves so that
 * every n from -151 to 128 is representable: inputs clamped to [-105, 89] then give 0 through
 * the subnormals up to +inf with no special case, and NaN passes through the arithmetic. */
static inline float exp_f32(float x)
{
    const float shifter = 12582912.0f; /* 1.5 * 2^23, bit pattern 0x4b400000 */
    float xc = x < -105.0f ? -105.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;
    float t = xc * 1.44269504088896341f + shifter;
    float n = t - shifter;
    float r = xc - n * 0.693359375f; /* ln 2 split in two so n * hi is exact */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    int32_t ni = (int32_t)(tb - 0x4b400000u);
    int32_t n1 = ni >> 1, n2 = ni - n1;
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return y * s1 * s2;
}

/* log(x) = e ln 2 + log(1 + m) with 1 + m in [sqrt(1/2), sqrt(2)), from the exponent and
 * mantissa bits, and Cephes' logf polynomial (about 1 ulp). Subnormal inputs are scaled by 2^23
 * first; zero, negatives, +inf and NaN are selected at the end so the loop stays branch-free. */
static inline float log_f32(float x)
{
    bool subnormal = x < FLT_MIN;
    float xs = subnormal ? x * 8388608.0f : x;
    uint32_t b;
    memcpy(&b, &xs, sizeof b);
    int32_t e = (int32_t)((b >> 23) & 0xff) - 126 - (subnormal ? 23 : 0);
    uint32_t mb = (b & 0x007fffffu) | 0x3f000000u; /* the mantissa as a float in [0.5, 1) */
    float m;
    memcpy(&m, &mb, sizeof m);
    bool low = m < 0.707106781186547524f;
    float fe = (float)e - (low ? 1.0f : 0.0f); /* selecting in float keeps gcc vectorizing */
    m = low ? m + m - 1.0f : m - 1.0f;
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
    y += fe * -2.12194440e-4f;
    y += -0.5f * z;
    float r = (m + y) + fe * 0.693359375f;
    r = x == 0.0f ? -INFINITY : r;
    r = x < 0.0f ? NAN : r;
    return x != x || x == INFINITY ? x : r;
}

#endif /* LUMEN_CPU_VMATH_H */
