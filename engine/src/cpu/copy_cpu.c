/* copy_cpu.c — CPU kernels for copying between any two dtypes and for filling with a value. */
#include "../internal.h"

#include <math.h>
#include <string.h>

#define f2i lm__f2i

#define CVT_f32(v) ((float)(v))
#define CVT_f64(v) ((double)(v))
#define CVT_i64(v) ((int64_t)(v))
#define CVT_u8(v) ((uint8_t)(v))

/* One kernel per (destination, source) pair. Same-dtype contiguous runs become memcpy. */
#define COPY_KERNEL(DN, DT, SN, ST, CONV)                                                     \
    static void copy_##DN##_##SN(char **d, const int64_t *s, int64_t n, void *ctx)              \
    {                                                                                            \
        (void)ctx;                                                                               \
        char *o = d[0];                                                                          \
        const char *a = d[1];                                                                    \
        if (s[0] == (int64_t)sizeof(DT) && s[1] == (int64_t)sizeof(ST)) {                        \
            DT *restrict op = (DT *)o;                                                           \
            const ST *restrict ap = (const ST *)a;                                               \
            for (int64_t i = 0; i < n; i++) op[i] = CONV(ap[i]);                                 \
        } else if (s[0] == (int64_t)sizeof(DT) && s[1] == 0) { /* an expanded source */         \
            DT *restrict op = (DT *)o;                                                           \
            const DT v = CONV(*(const ST *)a);                                                   \
            for (int64_t i = 0; i < n; i++) op[i] = v;                                           \
        } else {                                                                                 \
            for (int64_t i = 0; i < n; i++)                                                      \
                *(DT *)(o + i * s[0]) = CONV(*(const ST *)(a + i * s[1]));                       \
        }                                                                                        \
    }

#define F32_FROM(x) ((float)(x))
#define F64_FROM(x) ((double)(x))
#define I64_FROM_INT(x) ((int64_t)(x))
#define I64_FROM_FLOAT(x) f2i(x)
#define U8_FROM_INT(x) ((uint8_t)(x))
#define U8_FROM_FLOAT(x) ((uint8_t)f2i(x))

COPY_KERNEL(f32, float, f32, float, F32_FROM)
COPY_KERNEL(f32, float, f64, double, F32_FROM)
COPY_KERNEL(f32, float, i64, int64_t, F32_FROM)
COPY_KERNEL(f32, float, u8, uint8_t, F32_FROM)
COPY_KERNEL(f64, double, f32, float, F64_FROM)
COPY_KERNEL(f64, double, f64, double, F64_FROM)
COPY_KERNEL(f64, double, i64, int64_t, F64_FROM)
COPY_KERNEL(f64, double, u8, uint8_t, F64_FROM)
COPY_KERNEL(i64, int64_t, f32, float, I64_FROM_FLOAT)
COPY_KERNEL(i64, int64_t, f64, double, I64_FROM_FLOAT)
COPY_KERNEL(i64, int64_t, i64, int64_t, I64_FROM_INT)
COPY_KERNEL(i64, int64_t, u8, uint8_t, I64_FROM_INT)
COPY_KERNEL(u8, uint8_t, f32, float, U8_FROM_FLOAT)
COPY_KERNEL(u8, uint8_t, f64, double, U8_FROM_FLOAT)
COPY_KERNEL(u8, uint8_t, i64, int64_t, U8_FROM_INT)
COPY_KERNEL(u8, uint8_t, u8, uint8_t, U8_FROM_INT)

static const lm_loop_fn copy_table[LM_DTYPE_COUNT][LM_DTYPE_COUNT] = {
    [LM_F32] = {[LM_F32] = copy_f32_f32, [LM_F64] = copy_f32_f64, [LM_I64] = copy_f32_i64, [LM_U8] = copy_f32_u8},
    [LM_F64] = {[LM_F32] = copy_f64_f32, [LM_F64] = copy_f64_f64, [LM_I64] = copy_f64_i64, [LM_U8] = copy_f64_u8},
    [LM_I64] = {[LM_F32] = copy_i64_f32, [LM_F64] = copy_i64_f64, [LM_I64] = copy_i64_i64, [LM_U8] = copy_i64_u8},
    [LM_U8] = {[LM_F32] = copy_u8_f32, [LM_F64] = copy_u8_f64, [LM_I64] = copy_u8_i64, [LM_U8] = copy_u8_u8},
};
_Static_assert(LM_DTYPE_COUNT == 4, "copy_table covers every dtype pair");

static void cpu_copy(lm_tensor *dst, const lm_tensor *src)
{
    if (dst->dtype == src->dtype && lm_is_contiguous(dst) && lm_is_contiguous(src)) {
        memmove(lm_data(dst), lm_data(src), lm_nbytes(dst));
        return;
    }
    const lm_tensor *ops[2] = {dst, src};
    lm__iter(2, ops, copy_table[dst->dtype][src->dtype], NULL, true);
}

#define FILL_KERNEL(N, T)                                                                       \
    static void fill_##N(char **d, const int64_t *s, int64_t n, void *ctx)                       \
    {                                                                                            \
        T v = *(const T *)ctx;                                                                   \
        if (s[0] == (int64_t)sizeof(T)) {                                                        \
            T *restrict o = (T *)d[0];                                                           \
            for (int64_t i = 0; i < n; i++) o[i] = v;                                            \
        } else {                                                                                 \
            for (int64_t i = 0; i < n; i++) *(T *)(d[0] + i * s[0]) = v;                         \
        }                                                                                        \
    }
FILL_KERNEL(f32, float)
FILL_KERNEL(f64, double)
FILL_KERNEL(i64, int64_t)
FILL_KERNEL(u8, uint8_t)

static void cpu_fill(lm_tensor *dst, double value)
{
    static const lm_loop_fn fill_table[LM_DTYPE_COUNT] = {
        [LM_F32] = fill_f32, [LM_F64] = fill_f64, [LM_I64] = fill_i64, [LM_U8] = fill_u8};
    union { float f; double d; int64_t i; uint8_t u; } v;
    lm__store(&v, dst->dtype, value);
    const lm_tensor *ops[1] = {dst};
    lm__iter(1, ops, fill_table[dst->dtype], &v, true);
}

LM_INTERNAL const struct lm_copy_kernels lm__cpu_copy_kernels = {
    .copy = cpu_copy,
    .fill = cpu_fill,
};
