/* elementwise_cpu.c — CPU kernels of the element-wise family: one loop per (op, dtype), generated
 * from the tables BINARY_KERNELS, UNARY_KERNELS, the where grid and UNARY_BACKWARD_KERNELS (the
 * fused backward of the activations) below, run by lm__iter.
 *
 * Each loop has a contiguous fast path (binary loops also one for a broadcast scalar operand,
 * stride 0, on either side; backward loops one for a broadcast incoming gradient) written with
 * restrict pointers and `omp simd` so gcc vectorizes it, and a strided fallback. In-place ops
 * pass the output as an exact alias of the first input; that is safe under restrict here because
 * element i is read only to compute element i.
 *
 * glibc's expf, logf and erfcf have no vector variants without -ffast-math, so the f32
 * functions built on them (exp, sigmoid, silu, tanh, gelu, gelu_tanh, log, log1p, and the
 * backward of the activations) use exp_f32, log_f32 and erfc_f32 below, which vectorize. sin,
 * cos and pow call libm per element, and f64 always does: f64 serves gradient checks, where
 * libm's accuracy is what counts. */
#include "../elementwise.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define T_F32 float
#define T_F64 double
#define T_I64 int64_t
#define T_U8 uint8_t

/* ---- scalar helpers ---------------------------------------------------------------------- */

#include "vmath.h"

/* log1p(x) = log(u) * x / (u - 1) with u = 1 + x: the quotient cancels the rounding of u
 * (Goldberg's trick), so small x keep their relative precision. Where u rounds to 1 the result
 * is x; it is added rather than selected (log(1) is exactly 0 there) and the divisor made
 * non-zero, because gcc does not vectorize a log or a division it cannot execute on every
 * lane. */
static inline float log1p_f32(float x)
{
    float u = 1.0f + x;
    float d = u - 1.0f;
    float q = x / (d == 0.0f ? 1.0f : d);
    float r = log_f32(u) * q + (d == 0.0f ? x : 0.0f);
    return x == INFINITY ? x : r;
}

/* tanh: Cephes' odd polynomial below |x| = 0.625, where 1 - 2 / (e^2|x| + 1) would lose
 * relative precision; both branches are computed and one selected so the loop vectorizes. */
static inline float tanh_f32(float x)
{
    float ax = fabsf(x);
    float big = 1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f);
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * ax + ax;
    return copysignf(ax < 0.625f ? small : big, x);
}

/* erfc for f32 in vectorizable form. Below |x| = 0.5: 1 - erf(x) from erf's Taylor series to
 * x^11. Above: Numerical Recipes' erfcc fit, t exp(-z^2 + P(t)) with t = 1 / (1 + z/2),
 * relative error 1.2e-7; z^2 is split as zh^2 + (z - zh)(z + zh) with zh holding 12 bits so
 * exp(-zh^2) gets an exact argument: rounding z^2 itself would cost up to ~100 ulp for large z.
 * About 7 ulp overall, against glibc's erfcf, which runs per element. */
static inline float erfc_f32(float x)
{
    float z = fabsf(x);
    float x2 = x * x;
    float e = -8.548327e-4f; /* 2/sqrt(pi) * (-1)^k / (k! (2k + 1)), k = 5 .. 0 */
    e = e * x2 + 5.2239775e-3f;
    e = e * x2 - 2.68661706e-2f;
    e = e * x2 + 1.128379167e-1f;
    e = e * x2 - 3.76126389e-1f;
    e = e * x2 + 1.1283791671f;
    float small = 1.0f - x * e;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    uint32_t zb;
    memcpy(&zb, &z, sizeof zb);
    zb &= 0xfffff000u;
    float zh;
    memcpy(&zh, &zb, sizeof zh);
    float big = t * exp_f32(-zh * zh) * exp_f32(p - (z - zh) * (z + zh));
    big = x < 0.0f ? 2.0f - big : big;
    return z < 0.5f ? small : big;
}

static inline float gelu_tanh_f32(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanh_f32(k * (x + 0.044715f * x * x * x)));
}

static inline double gelu_tanh_f64(double x)
{
    const double k = 0.7978845608028654;
    return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
}

/* Squares are common (losses, variances) and x * x is exactly what pow rounds to; with a
 * number as exponent the test is loop-invariant, so gcc splits the loop and vectorizes it. */
static inline float pow_f32(float x, float y) { return y == 2.0f ? x * x : powf(x, y); }
static inline double pow_f64(double x, double y) { return y == 2.0 ? x * x : pow(x, y); }

/* Integer powers by squaring, wrapping on overflow like PyTorch. A negative exponent follows
 * PyTorch's integer rule: 1 for base 1, +-1 for base -1, 0 otherwise. */
static inline int64_t powi_i64(int64_t base, int64_t e)
{
    if (e < 0) return base == 1 ? 1 : base == -1 ? ((e & 1) ? -1 : 1) : 0;
    uint64_t r = 1, b = (uint64_t)base;
    for (uint64_t k = (uint64_t)e; k; k >>= 1) {
        if (k & 1) r *= b;
        b *= b;
    }
    return (int64_t)r;
}

static inline uint8_t powi_u8(uint8_t base, uint8_t e)
{
    unsigned r = 1, b = base;
    for (unsigned k = e; k; k >>= 1) {
        if (k & 1) r = (r * b) & 0xff;
        b = (b * b) & 0xff;
    }
    return (uint8_t)r;
}

/* min(max(x, lo), hi) in PyTorch's order: lo > hi gives hi. */
#define CLAMP_FN(N, T)                                                                           \
    static inline T clamp_##N(T x, T lo, T hi)                                                   \
    {                                                                                            \
        T r = x < lo ? lo : x;                                                                   \
        return r > hi ? hi : r;                                                                  \
    }
CLAMP_FN(i64, int64_t)
CLAMP_FN(u8, uint8_t)
CLAMP_FN(f32_ordered, float)
CLAMP_FN(f64_ordered, double)

/* For floats NaN in x or in a bound gives NaN: the sum is NaN exactly when one of them is. */
static inline float clamp_f32(float x, float lo, float hi)
{
    bool nan = (x != x) | (lo != lo) | (hi != hi);
    return nan ? x + lo + hi : clamp_f32_ordered(x, lo, hi);
}
static inline double clamp_f64(double x, double lo, double hi)
{
    bool nan = (x != x) | (lo != lo) | (hi != hi);
    return nan ? x + lo + hi : clamp_f64_ordered(x, lo, hi);
}

/* Unary parameters arrive as doubles; integer kernels saturate them to their range. */
static inline int64_t sat_i64(double v)
{
    return v <= -0x1p63 ? INT64_MIN : v >= 0x1p63 ? INT64_MAX : (int64_t)v;
}
static inline uint8_t sat_u8(double v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v; }
#define PARAM_F32(v) ((float)(v))
#define PARAM_F64(v) (v)
#define PARAM_I64(v) sat_i64(v)
#define PARAM_U8(v) sat_u8(v)

/* ---- binary ------------------------------------------------------------------------------ */

/* (op, input dtype, result dtype, result from x and y). Integer add/sub/mul go through uint64_t
 * so that overflow wraps as in PyTorch instead of being undefined. DIV has no integer rows: the
 * op layer divides integers in f32. maximum/minimum return x when it is NaN, and y otherwise
 * when the comparison fails, so NaN in either input propagates. */
#define CMP_ROWS(X, OP, E) X(OP, F32, U8, E) X(OP, F64, U8, E) X(OP, I64, U8, E) X(OP, U8, U8, E)
#define BINARY_KERNELS(X)                                                                        \
    X(ADD, F32, F32, x + y)                                                                      \
    X(ADD, F64, F64, x + y)                                                                      \
    X(ADD, I64, I64, (int64_t)((uint64_t)x + (uint64_t)y))                                       \
    X(ADD, U8, U8, x + y)                                                                        \
    X(SUB, F32, F32, x - y)                                                                      \
    X(SUB, F64, F64, x - y)                                                                      \
    X(SUB, I64, I64, (int64_t)((uint64_t)x - (uint64_t)y))                                       \
    X(SUB, U8, U8, x - y)                                                                        \
    X(MUL, F32, F32, x * y)                                                                      \
    X(MUL, F64, F64, x * y)                                                                      \
    X(MUL, I64, I64, (int64_t)((uint64_t)x * (uint64_t)y))                                       \
    X(MUL, U8, U8, x * y)                                                                        \
    X(DIV, F32, F32, x / y)                                                                      \
    X(DIV, F64, F64, x / y)                                                                      \
    X(POW, F32, F32, pow_f32(x, y))                                                              \
    X(POW, F64, F64, pow_f64(x, y))                                                              \
    X(POW, I64, I64, powi_i64(x, y))                                                             \
    X(POW, U8, U8, powi_u8(x, y))                                                                \
    X(MAXIMUM, F32, F32, (x > y || x != x) ? x : y)                                              \
    X(MAXIMUM, F64, F64, (x > y || x != x) ? x : y)                                              \
    X(MAXIMUM, I64, I64, x > y ? x : y)                                                          \
    X(MAXIMUM, U8, U8, x > y ? x : y)                                                            \
    X(MINIMUM, F32, F32, (x < y || x != x) ? x : y)                                              \
    X(MINIMUM, F64, F64, (x < y || x != x) ? x : y)                                              \
    X(MINIMUM, I64, I64, x < y ? x : y)                                                          \
    X(MINIMUM, U8, U8, x < y ? x : y)                                                            \
    CMP_ROWS(X, EQ, x == y)                                                                      \
    CMP_ROWS(X, NE, x != y)                                                                      \
    CMP_ROWS(X, LT, x < y)                                                                       \
    CMP_ROWS(X, LE, x <= y)                                                                      \
    CMP_ROWS(X, GT, x > y)                                                                       \
    CMP_ROWS(X, GE, x >= y)

#define BINARY_LOOP(OP, DT, RT, EXPR)                                                            \
    static void binary_##OP##_##DT(char **d, const int64_t *s, int64_t n, void *ctx)             \
    {                                                                                            \
        typedef T_##DT T;                                                                        \
        typedef T_##RT R;                                                                        \
        (void)ctx;                                                                               \
        const int64_t ts = (int64_t)sizeof(T), rs = (int64_t)sizeof(R);                          \
        R *restrict o = (R *)d[0];                                                               \
        const T *restrict pa = (const T *)d[1];                                                  \
        const T *restrict pb = (const T *)d[2];                                                  \
        if (s[0] == rs && s[1] == ts && s[2] == ts) {                                            \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                                  \
            {                                                                                    \
                const T x = pa[i], y = pb[i];                                                    \
                o[i] = (R)(EXPR);                                                                \
            }                                                                                    \
        } else if (s[0] == rs && s[1] == ts && s[2] == 0) {                                      \
            const T y = *pb;                                                                     \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                                  \
            {                                                                                    \
                const T x = pa[i];                                                               \
                o[i] = (R)(EXPR);                                                                \
            }                                                                                    \
        } else if (s[0] == rs && s[1] == 0 && s[2] == ts) {                                      \
            const T x = *pa;                                                                     \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                                  \
            {                                                                                    \
                const T y = pb[i];                                                               \
                o[i] = (R)(EXPR);                                                                \
            }                                                                                    \
        } else {                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                    \
                const T x = *(const T *)(d[1] + i * s[1]), y = *(const T *)(d[2] + i * s[2]);    \
                *(R *)(d[0] + i * s[0]) = (R)(EXPR);                                             \
            }                                                                                    \
        }                                                                                        \
    }
BINARY_KERNELS(BINARY_LOOP)

#define BINARY_ENTRY(OP, DT, RT, EXPR) [LM_BINARY_##OP][LM_##DT] = binary_##OP##_##DT,
static const lm_loop_fn binary_loops[][LM_DTYPE_COUNT] = {BINARY_KERNELS(BINARY_ENTRY)};
_Static_assert(sizeof binary_loops / sizeof binary_loops[0] == LM_BINARY_COUNT,
               "BINARY_KERNELS has no row for the last binary op");

static void cpu_binary(lm_binary_op op, lm_tensor *out, const lm_tensor *a, const lm_tensor *b)
{
    const lm_tensor *ops[3] = {out, a, b};
    lm__iter(3, ops, binary_loops[op][a->dtype], NULL, true);
}

/* ---- unary ------------------------------------------------------------------------------- */

/* (op, dtype, result from x and the parameters p0, p1). Only NEG, ABS, RELU and CLAMP have
 * integer rows. relu and clamp keep NaN (x < 0 and x < lo are false for it), as PyTorch does;
 * a NaN clamp bound makes every result NaN, also as PyTorch. */
#define UNARY_KERNELS(X)                                                                         \
    X(NEG, F32, -x)                                                                              \
    X(NEG, F64, -x)                                                                              \
    X(NEG, I64, (int64_t)(0 - (uint64_t)x))                                                      \
    X(NEG, U8, 0 - x)                                                                            \
    X(ABS, F32, fabsf(x))                                                                        \
    X(ABS, F64, fabs(x))                                                                         \
    X(ABS, I64, x < 0 ? (int64_t)(0 - (uint64_t)x) : x)                                          \
    X(ABS, U8, x)                                                                                \
    X(EXP, F32, exp_f32(x))                                                                      \
    X(EXP, F64, exp(x))                                                                          \
    X(LOG, F32, log_f32(x))                                                                      \
    X(LOG, F64, log(x))                                                                          \
    X(LOG1P, F32, log1p_f32(x))                                                                  \
    X(LOG1P, F64, log1p(x))                                                                      \
    X(SQRT, F32, sqrtf(x))                                                                       \
    X(SQRT, F64, sqrt(x))                                                                        \
    X(RSQRT, F32, 1.0f / sqrtf(x))                                                               \
    X(RSQRT, F64, 1.0 / sqrt(x))                                                                 \
    X(SIN, F32, sinf(x))                                                                         \
    X(SIN, F64, sin(x))                                                                          \
    X(COS, F32, cosf(x))                                                                         \
    X(COS, F64, cos(x))                                                                          \
    X(TANH, F32, tanh_f32(x))                                                                    \
    X(TANH, F64, tanh(x))                                                                        \
    X(SIGMOID, F32, 1.0f / (1.0f + exp_f32(-x)))                                                 \
    X(SIGMOID, F64, 1.0 / (1.0 + exp(-x)))                                                       \
    X(RELU, F32, x < 0 ? 0.0f : x)                                                               \
    X(RELU, F64, x < 0 ? 0.0 : x)                                                                \
    X(RELU, I64, x < 0 ? 0 : x)                                                                  \
    X(RELU, U8, x)                                                                               \
    X(GELU, F32, 0.5f * x * erfc_f32(-x * (float)M_SQRT1_2))                                     \
    X(GELU, F64, 0.5 * x * erfc(-x * M_SQRT1_2))                                                 \
    X(GELU_TANH, F32, gelu_tanh_f32(x))                                                          \
    X(GELU_TANH, F64, gelu_tanh_f64(x))                                                          \
    X(SILU, F32, x / (1.0f + exp_f32(-x)))                                                       \
    X(SILU, F64, x / (1.0 + exp(-x)))                                                            \
    X(LEAKY_RELU, F32, x < 0 ? x * p0 : x)                                                       \
    X(LEAKY_RELU, F64, x < 0 ? x * p0 : x)                                                       \
    X(CLAMP, F32, clamp_f32(x, p0, p1))                                                          \
    X(CLAMP, F64, clamp_f64(x, p0, p1))                                                          \
    X(CLAMP, I64, clamp_i64(x, p0, p1))                                                          \
    X(CLAMP, U8, clamp_u8(x, p0, p1))

#define UNARY_LOOP(OP, DT, EXPR)                                                                 \
    static void unary_##OP##_##DT(char **d, const int64_t *s, int64_t n, void *ctx)              \
    {                                                                                            \
        typedef T_##DT T;                                                                        \
        const double *prm = ctx;                                                                 \
        const T p0 = PARAM_##DT(prm[0]), p1 = PARAM_##DT(prm[1]);                                \
        (void)p0;                                                                                \
        (void)p1;                                                                                \
        const int64_t ts = (int64_t)sizeof(T);                                                   \
        if (s[0] == ts && s[1] == ts) {                                                          \
            T *restrict o = (T *)d[0];                                                           \
            const T *restrict pa = (const T *)d[1];                                              \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                                  \
            {                                                                                    \
                const T x = pa[i];                                                               \
                o[i] = (T)(EXPR);                                                                \
            }                                                                                    \
        } else {                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                    \
                const T x = *(const T *)(d[1] + i * s[1]);                                       \
                *(T *)(d[0] + i * s[0]) = (T)(EXPR);                                             \
            }                                                                                    \
        }                                                                                        \
    }
UNARY_KERNELS(UNARY_LOOP)

#define UNARY_ENTRY(OP, DT, EXPR) [LM_UNARY_##OP][LM_##DT] = unary_##OP##_##DT,
static const lm_loop_fn unary_loops[][LM_DTYPE_COUNT] = {UNARY_KERNELS(UNARY_ENTRY)};
_Static_assert(sizeof unary_loops / sizeof unary_loops[0] == LM_UNARY_COUNT,
               "UNARY_KERNELS has no row for the last unary op");

static void cpu_unary(lm_unary_op op, lm_tensor *out, const lm_tensor *a, const double *params)
{
    const lm_tensor *ops[2] = {out, a};
    lm__iter(2, ops, unary_loops[op][a->dtype], (void *)params, true);
}

/* ---- where ------------------------------------------------------------------------------- */

/* One loop per (condition dtype, value dtype): a float condition is true when non-zero,
 * NaN included, as in PyTorch. */
#define WHERE_LOOP(CDT, DT)                                                                      \
    static void where_##CDT##_##DT(char **d, const int64_t *s, int64_t n, void *ctx)             \
    {                                                                                            \
        typedef T_##CDT C;                                                                       \
        typedef T_##DT T;                                                                        \
        (void)ctx;                                                                               \
        const int64_t ts = (int64_t)sizeof(T), cs = (int64_t)sizeof(C);                          \
        if (s[0] == ts && s[1] == cs && s[2] == ts && s[3] == ts) {                              \
            T *restrict o = (T *)d[0];                                                           \
            const C *restrict c = (const C *)d[1];                                               \
            const T *restrict pa = (const T *)d[2];                                              \
            const T *restrict pb = (const T *)d[3];                                              \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = c[i] != 0 ? pa[i] : pb[i]; \
        } else {                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                    \
                const C c = *(const C *)(d[1] + i * s[1]);                                       \
                *(T *)(d[0] + i * s[0]) =                                                        \
                    c != 0 ? *(const T *)(d[2] + i * s[2]) : *(const T *)(d[3] + i * s[3]);      \
            }                                                                                    \
        }                                                                                        \
    }
#define WHERE_GRID(X)                                                                            \
    X(F32, F32) X(F32, F64) X(F32, I64) X(F32, U8)                                               \
    X(F64, F32) X(F64, F64) X(F64, I64) X(F64, U8)                                               \
    X(I64, F32) X(I64, F64) X(I64, I64) X(I64, U8)                                               \
    X(U8, F32) X(U8, F64) X(U8, I64) X(U8, U8)
WHERE_GRID(WHERE_LOOP)

#define WHERE_ENTRY(CDT, DT) [LM_##CDT][LM_##DT] = where_##CDT##_##DT,
static const lm_loop_fn where_loops[][LM_DTYPE_COUNT] = {WHERE_GRID(WHERE_ENTRY)};
_Static_assert(sizeof where_loops / sizeof where_loops[0] == LM_DTYPE_COUNT,
               "WHERE_GRID has no row for the last dtype");

static void cpu_where(lm_tensor *out, const lm_tensor *cond, const lm_tensor *a,
                      const lm_tensor *b)
{
    const lm_tensor *ops[4] = {out, cond, a, b};
    lm__iter(4, ops, where_loops[cond->dtype][a->dtype], NULL, true);
}

/* ---- fused backward of the activations ---------------------------------------------------- */

/* d/dx of gelu = Phi(x) + x phi(x), Phi the normal CDF and phi its density. */
static inline float gelu_grad_f32(float x)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    float cdf = 0.5f * erfc_f32(-x * (float)M_SQRT1_2);
    return cdf + x * inv_sqrt_2pi * exp_f32(-0.5f * x * x);
}

static inline double gelu_grad_f64(double x)
{
    const double inv_sqrt_2pi = 0.3989422804014327;
    return 0.5 * erfc(-x * M_SQRT1_2) + x * inv_sqrt_2pi * exp(-0.5 * x * x);
}

/* gelu_tanh = x/2 (1 + t), t = tanh(k (x + c x^3)): the derivative is
 * (1 + t)/2 + x/2 (1 - t^2) k (1 + 3 c x^2). */
static inline float gelu_tanh_grad_f32(float x)
{
    const float k = 0.7978845608028654f, c = 0.044715f;
    float x2 = x * x;
    float t = tanh_f32(k * (x + c * x2 * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * c * x2);
}

static inline double gelu_tanh_grad_f64(double x)
{
    const double k = 0.7978845608028654, c = 0.044715;
    double x2 = x * x;
    double t = tanh(k * (x + c * x2 * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * c * x2);
}

/* silu = x s(x) with s the sigmoid: the derivative is s (1 + x (1 - s)). */
static inline float silu_grad_f32(float x)
{
    float sg = 1.0f / (1.0f + exp_f32(-x));
    return sg * (1.0f + x * (1.0f - sg));
}

static inline double silu_grad_f64(double x)
{
    double sg = 1.0 / (1.0 + exp(-x));
    return sg * (1.0 + x * (1.0 - sg));
}

/* (op, dtype, grad_in from the incoming gradient g, the saved value v and p0). v is the output
 * for RELU, SIGMOID and TANH, the input otherwise (see elementwise.h). relu passes no gradient
 * where its output is <= 0 and leaky_relu gives the slope where its input is <= 0, as PyTorch
 * (so both send 0 or the slope at the kink, and NaN keeps the gradient of relu). */
#define UNARY_BACKWARD_KERNELS(X)                                                                \
    X(RELU, F32, v <= 0 ? 0.0f : g)                                                              \
    X(RELU, F64, v <= 0 ? 0.0 : g)                                                               \
    X(SIGMOID, F32, g * v * (1.0f - v))                                                          \
    X(SIGMOID, F64, g * v * (1.0 - v))                                                           \
    X(TANH, F32, g * (1.0f - v * v))                                                             \
    X(TANH, F64, g * (1.0 - v * v))                                                              \
    X(GELU, F32, g * gelu_grad_f32(v))                                                           \
    X(GELU, F64, g * gelu_grad_f64(v))                                                           \
    X(GELU_TANH, F32, g * gelu_tanh_grad_f32(v))                                                 \
    X(GELU_TANH, F64, g * gelu_tanh_grad_f64(v))                                                 \
    X(SILU, F32, g * silu_grad_f32(v))                                                           \
    X(SILU, F64, g * silu_grad_f64(v))                                                           \
    X(LEAKY_RELU, F32, v > 0 ? g : g * p0)                                                       \
    X(LEAKY_RELU, F64, v > 0 ? g : g * p0)

/* Operands: grad_in, grad_out, saved. The incoming gradient is often an expanded number (the
 * backward of a sum or a mean), hence the second fast path with g read once. */
#define UNARY_BACKWARD_LOOP(OP, DT, EXPR)                                                        \
    static void unary_backward_##OP##_##DT(char **d, const int64_t *s, int64_t n, void *ctx)     \
    {                                                                                            \
        typedef T_##DT T;                                                                        \
        const double *prm = ctx;                                                                 \
        const T p0 = PARAM_##DT(prm[0]);                                                         \
        (void)p0;                                                                                \
        const int64_t ts = (int64_t)sizeof(T);                                                   \
        T *restrict o = (T *)d[0];                                                               \
        const T *restrict pg = (const T *)d[1];                                                  \
        const T *restrict pv = (const T *)d[2];                                                  \
        if (s[0] == ts && s[1] == ts && s[2] == ts) {                                            \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                                  \
            {                                                                                    \
                const T g = pg[i], v = pv[i];                                                    \
                o[i] = (T)(EXPR);                                                                \
            }                                                                                    \
        } else if (s[0] == ts && s[1] == 0 && s[2] == ts) {                                      \
            const T g = *pg;                                                                     \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                                  \
            {                                                                                    \
                const T v = pv[i];                                                               \
                o[i] = (T)(EXPR);                                                                \
            }                                                                                    \
        } else {                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                    \
                const T g = *(const T *)(d[1] + i * s[1]), v = *(const T *)(d[2] + i * s[2]);    \
                *(T *)(d[0] + i * s[0]) = (T)(EXPR);                                             \
            }                                                                                    \
        }                                                                                        \
    }
UNARY_BACKWARD_KERNELS(UNARY_BACKWARD_LOOP)

/* Sized by the enum: only the fused ops have entries. */
#define UNARY_BACKWARD_ENTRY(OP, DT, EXPR) [LM_UNARY_##OP][LM_##DT] = unary_backward_##OP##_##DT,
static const lm_loop_fn unary_backward_loops[LM_UNARY_COUNT][LM_DTYPE_COUNT] = {
    UNARY_BACKWARD_KERNELS(UNARY_BACKWARD_ENTRY)};

static void cpu_unary_backward(lm_unary_op op, lm_tensor *grad_in, const lm_tensor *grad_out,
                               const lm_tensor *saved, const double *params)
{
    const lm_tensor *ops[3] = {grad_in, grad_out, saved};
    lm__iter(3, ops, unary_backward_loops[op][saved->dtype], (void *)params, true);
}

LM_INTERNAL const struct lm_elementwise_kernels lm__cpu_elementwise_kernels = {
    .binary = cpu_binary,
    .unary = cpu_unary,
    .where = cpu_where,
    .unary_backward = cpu_unary_backward,
};
