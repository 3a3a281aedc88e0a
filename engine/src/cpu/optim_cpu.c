/* optim_cpu.c — CPU kernels of the fused optimizer steps (SGD, Adam/AdamW, RMSprop): one pass
 * over the parameter, its gradient and its state, element by element, in place.
 *
 * Each step reads and writes every stream once, so it runs at memory speed: the loops are
 * written with restrict pointers and `omp simd`, and a large tensor is cut into blocks handed to
 * OpenMP threads. The per-element update is spelled in PyTorch's order (optim.h says why); the
 * options that decide which state streams exist (momentum buffer, amsgrad's maximum, centered
 * RMSprop) are compile-time arguments of always-inlined range functions, so each combination
 * gets its own loop with no pointer that may be NULL inside it. The other options (maximize,
 * weight decay, nesterov) are loop-invariant selects that vectorize as blends.
 *
 * The kernels are generated once per float dtype by DEFINE_OPTIM_KERNELS (T is float or double;
 * the hyper-parameters are rounded to T, as ATen rounds a Python scalar to the tensor's dtype). */
#include "../optim.h"

#include <math.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Elements per work item: large enough that scheduling is free next to the work, small enough
 * that both threads get several blocks of a mid-sized parameter. */
#define BLOCK 16384

/* A pragma inside a macro, with its clauses spelled as code (stringized here). */
#define PRAGMA(x) _Pragma(#x)

/* Runs RANGE(lo, hi) over [0, n) in blocks, on several threads when n is large. */
#define FOR_BLOCKS(n, RANGE)                                                                     \
    do {                                                                                         \
        const int64_t n_ = (n), nblocks_ = (n_ + BLOCK - 1) / BLOCK;                             \
        PRAGMA(omp parallel for if (n_ >= LM_PARALLEL_GRAIN) num_threads(lm__threads())         \
               schedule(static))                                                                 \
        for (int64_t blk_ = 0; blk_ < nblocks_; blk_++) {                                        \
            int64_t lo = blk_ * BLOCK, hi = lo + BLOCK < n_ ? lo + BLOCK : n_;                   \
            RANGE;                                                                               \
        }                                                                                        \
    } while (0)

/* torch.maximum: NaN in either operand gives NaN. */
#define NAN_MAX(a, b) (((a) != (a) || (a) > (b)) ? (a) : (b))

#define DEFINE_OPTIM_KERNELS(T, SFX, SQRT)                                                       \
    /* SGD: d = ±g (+ wd * p); buf = first ? d : buf * momentum + (1 - dampening) * d;           \
     * d = nesterov ? d + momentum * buf : buf; p = p - lr * d. */                                \
    ALWAYS_INLINE void sgd_range_##SFX(int64_t lo, int64_t hi, T *restrict p,                    \
                                       const T *restrict g, T *restrict buf,                      \
                                       const lm_sgd_opts *o, bool first, bool has_buf)            \
    {                                                                                            \
        const T wd = (T)o->weight_decay, mom = (T)o->momentum;                                   \
        const T keep = (T)(1.0 - o->dampening), neg_lr = (T)-o->lr;                              \
        const bool decay = o->weight_decay != 0, maximize = o->maximize;                         \
        const bool nesterov = o->nesterov;                                                       \
        _Pragma("omp simd") for (int64_t i = lo; i < hi; i++)                                    \
        {                                                                                        \
            T d = maximize ? -g[i] : g[i];                                                       \
            d = decay ? d + wd * p[i] : d;                                                       \
            if (has_buf) {                                                                       \
                T b = first ? d : buf[i] * mom + keep * d;                                       \
                buf[i] = b;                                                                      \
                d = nesterov ? d + mom * b : b;                                                  \
            }                                                                                    \
            p[i] = p[i] + neg_lr * d;                                                            \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    static void sgd_##SFX(lm_tensor *param, const lm_tensor *grad, lm_tensor *buf, bool first,   \
                          const lm_sgd_opts *o)                                                  \
    {                                                                                            \
        int64_t n = lm_numel(param);                                                             \
        T *p = lm_data(param), *b = buf ? lm_data(buf) : NULL;                                   \
        const T *g = lm_data(grad);                                                              \
        if (b)                                                                                   \
            FOR_BLOCKS(n, sgd_range_##SFX(lo, hi, p, g, b, o, first, true));                     \
        else                                                                                     \
            FOR_BLOCKS(n, sgd_range_##SFX(lo, hi, p, g, NULL, o, false, false));                 \
    }                                                                                            \
                                                                                                 \
    /* Adam: d = ±g; AdamW: p = p * (1 - lr * wd), Adam: d = d + wd * p;                         \
     * m = m * beta1 + (1 - beta1) * d; v = v * beta2 + (1 - beta2) * d * d;                     \
     * amsgrad: vmax = max(vmax, v), used for v below;                                           \
     * p = p - step_size * (m / (sqrt(v) / bias_correction2_sqrt + eps)). */                     \
    ALWAYS_INLINE void adam_range_##SFX(int64_t lo, int64_t hi, T *restrict p,                   \
                                        const T *restrict g, T *restrict m, T *restrict v,        \
                                        T *restrict vmax, const lm_adam_opts *o,                  \
                                        lm_adam_scalars s, bool amsgrad)                          \
    {                                                                                            \
        const T b1 = (T)o->beta1, b2 = (T)o->beta2;                                              \
        const T omb1 = (T)(1.0 - o->beta1), omb2 = (T)(1.0 - o->beta2);                         \
        const T wd = (T)o->weight_decay, shrink = (T)(1.0 - o->lr * o->weight_decay);            \
        const T eps = (T)o->eps, bc2 = (T)s.bias_correction2_sqrt;                               \
        const T neg_step = (T)-s.step_size;                                                      \
        const bool decoupled = o->decoupled_weight_decay;                                        \
        const bool coupled = !decoupled && o->weight_decay != 0, maximize = o->maximize;         \
        _Pragma("omp simd") for (int64_t i = lo; i < hi; i++)                                    \
        {                                                                                        \
            T d = maximize ? -g[i] : g[i];                                                       \
            T pi = decoupled ? p[i] * shrink : p[i];                                             \
            d = coupled ? d + wd * pi : d;                                                       \
            T mi = m[i] * b1 + omb1 * d;                                                         \
            T vi = v[i] * b2 + omb2 * d * d;                                                     \
            m[i] = mi;                                                                           \
            v[i] = vi;                                                                           \
            if (amsgrad) {                                                                       \
                T mx = vmax[i];                                                                  \
                vi = NAN_MAX(mx, vi);                                                            \
                vmax[i] = vi;                                                                    \
            }                                                                                    \
            T denom = SQRT(vi) / bc2 + eps;                                                      \
            p[i] = pi + neg_step * (mi / denom);                                                 \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    static void adam_##SFX(lm_tensor *param, const lm_tensor *grad, lm_tensor *exp_avg,          \
                           lm_tensor *exp_avg_sq, lm_tensor *max_exp_avg_sq,                     \
                           const lm_adam_opts *o, lm_adam_scalars s)                             \
    {                                                                                            \
        int64_t n = lm_numel(param);                                                             \
        T *p = lm_data(param), *m = lm_data(exp_avg), *v = lm_data(exp_avg_sq);                  \
        const T *g = lm_data(grad);                                                              \
        if (max_exp_avg_sq) {                                                                    \
            T *vmax = lm_data(max_exp_avg_sq);                                                   \
            FOR_BLOCKS(n, adam_range_##SFX(lo, hi, p, g, m, v, vmax, o, s, true));               \
        } else {                                                                                 \
            FOR_BLOCKS(n, adam_range_##SFX(lo, hi, p, g, m, v, NULL, o, s, false));              \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    /* RMSprop: d = ±g (+ wd * p); sq = sq * alpha + (1 - alpha) * d * d;                        \
     * centered: ga = ga * alpha + (1 - alpha) * d, avg = sqrt(sq - ga * ga), else sqrt(sq);     \
     * avg = avg + eps; momentum: buf = buf * momentum + d / avg, p = p - lr * buf;              \
     * else p = p - lr * (d / avg). */                                                           \
    ALWAYS_INLINE void rmsprop_range_##SFX(int64_t lo, int64_t hi, T *restrict p,                \
                                           const T *restrict g, T *restrict sq,                   \
                                           T *restrict buf, T *restrict ga,                       \
                                           const lm_rmsprop_opts *o, bool has_buf,                \
                                           bool centered)                                         \
    {                                                                                            \
        const T alpha = (T)o->alpha, oma = (T)(1.0 - o->alpha), eps = (T)o->eps;                 \
        const T wd = (T)o->weight_decay, mom = (T)o->momentum, neg_lr = (T)-o->lr;               \
        const bool decay = o->weight_decay != 0, maximize = o->maximize;                         \
        _Pragma("omp simd") for (int64_t i = lo; i < hi; i++)                                    \
        {                                                                                        \
            T d = maximize ? -g[i] : g[i];                                                       \
            d = decay ? d + wd * p[i] : d;                                                       \
            T si = sq[i] * alpha + oma * d * d;                                                  \
            sq[i] = si;                                                                          \
            T avg;                                                                               \
            if (centered) {                                                                      \
                T gi = ga[i] * alpha + oma * d;                                                  \
                ga[i] = gi;                                                                      \
                avg = SQRT(si + (T)-1 * gi * gi);                                                \
            } else {                                                                             \
                avg = SQRT(si);                                                                  \
            }                                                                                    \
            avg = avg + eps;                                                                     \
            if (has_buf) {                                                                       \
                T b = buf[i] * mom + d / avg;                                                    \
                buf[i] = b;                                                                      \
                p[i] = p[i] + neg_lr * b;                                                        \
            } else {                                                                             \
                p[i] = p[i] + neg_lr * (d / avg);                                                \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    static void rmsprop_##SFX(lm_tensor *param, const lm_tensor *grad, lm_tensor *square_avg,    \
                              lm_tensor *momentum_buf, lm_tensor *grad_avg,                      \
                              const lm_rmsprop_opts *o)                                          \
    {                                                                                            \
        int64_t n = lm_numel(param);                                                             \
        T *p = lm_data(param), *sq = lm_data(square_avg);                                        \
        T *b = momentum_buf ? lm_data(momentum_buf) : NULL;                                      \
        T *ga = grad_avg ? lm_data(grad_avg) : NULL;                                             \
        const T *g = lm_data(grad);                                                              \
        if (b && ga)                                                                             \
            FOR_BLOCKS(n, rmsprop_range_##SFX(lo, hi, p, g, sq, b, ga, o, true, true));          \
        else if (b)                                                                              \
            FOR_BLOCKS(n, rmsprop_range_##SFX(lo, hi, p, g, sq, b, NULL, o, true, false));       \
        else if (ga)                                                                             \
            FOR_BLOCKS(n, rmsprop_range_##SFX(lo, hi, p, g, sq, NULL, ga, o, false, true));      \
        else                                                                                     \
            FOR_BLOCKS(n, rmsprop_range_##SFX(lo, hi, p, g, sq, NULL, NULL, o, false, false));   \
    }

DEFINE_OPTIM_KERNELS(float, f32, sqrtf)
DEFINE_OPTIM_KERNELS(double, f64, sqrt)

/* ---- dispatch on dtype (the op layer admits only f32 and f64) ------------------------------ */

static void sgd(lm_tensor *param, const lm_tensor *grad, lm_tensor *buf, bool first,
                const lm_sgd_opts *o)
{
    if (param->dtype == LM_F32) sgd_f32(param, grad, buf, first, o);
    else sgd_f64(param, grad, buf, first, o);
}

static void adam(lm_tensor *param, const lm_tensor *grad, lm_tensor *exp_avg,
                 lm_tensor *exp_avg_sq, lm_tensor *max_exp_avg_sq, const lm_adam_opts *o,
                 lm_adam_scalars s)
{
    if (param->dtype == LM_F32) adam_f32(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, o, s);
    else adam_f64(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, o, s);
}

static void rmsprop(lm_tensor *param, const lm_tensor *grad, lm_tensor *square_avg,
                    lm_tensor *momentum_buf, lm_tensor *grad_avg, const lm_rmsprop_opts *o)
{
    if (param->dtype == LM_F32) rmsprop_f32(param, grad, square_avg, momentum_buf, grad_avg, o);
    else rmsprop_f64(param, grad, square_avg, momentum_buf, grad_avg, o);
}

LM_INTERNAL const struct lm_optim_kernels lm__cpu_optim_kernels = {
    .sgd = sgd,
    .adam = adam,
    .rmsprop = rmsprop,
};
