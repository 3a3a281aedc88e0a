/* nn_pool.c — max_pool2d (with indices), avg_pool2d and adaptive_avg_pool2d: output shapes as
 * PyTorch's, argument checks and autograd, on the backend's pooling kernels (conv.h).
 *
 * Inputs are [N, C, H, W] or [C, H, W]: the kernels see planes of H x W, one per leading index.
 * Output sizes: floor((H + 2p - d(k-1) - 1) / s) + 1, or with ceil_mode the ceiling, less one
 * when the last window would start beyond the input and its right padding (PyTorch's rule: a
 * window must start inside the input or the left padding). As PyTorch's defaults, a NULL
 * stride means the kernel size, a NULL padding 0 and a NULL dilation 1. */
#include "autograd.h"
#include "conv.h"

#include <stddef.h>

/* The geometry travels in node->iv in this order. */
enum { P_PLANES, P_H, P_W, P_OH, P_OW, P_KH, P_KW, P_SH, P_SW, P_PH, P_PW, P_DH, P_DW, P_CIP,
       P_COUNT };

_Static_assert(offsetof(lm_pool_geom, count_include_pad) == P_CIP * sizeof(int64_t),
               "every field of lm_pool_geom travels in node->iv");

static void geom_to_ints(const lm_pool_geom *g, int64_t *v)
{
    const int64_t f[P_COUNT] = {g->planes, g->h,  g->w,  g->oh, g->ow, g->kh, g->kw,
                                g->sh,     g->sw, g->ph, g->pw, g->dh, g->dw, g->count_include_pad};
    for (int i = 0; i < P_COUNT; i++) v[i] = f[i];
}

static lm_pool_geom geom_from_ints(const int64_t *v)
{
    return (lm_pool_geom){.planes = v[P_PLANES], .h = v[P_H],   .w = v[P_W],   .oh = v[P_OH],
                          .ow = v[P_OW],         .kh = v[P_KH], .kw = v[P_KW], .sh = v[P_SH],
                          .sw = v[P_SW],         .ph = v[P_PH], .pw = v[P_PW], .dh = v[P_DH],
                          .dw = v[P_DW],         .count_include_pad = v[P_CIP] != 0};
}

/* Checks the input of a pooling op: f32/f64, [N, C, H, W] or [C, H, W], a non-empty plane. */
static bool check_input(const char *op, const lm_tensor *x)
{
    if (!lm__arg(x, op)) return false;
    if (x->dtype != LM_F32 && x->dtype != LM_F64) {
        lm__error(LM_ERR_DTYPE, "%s: expects an f32 or f64 input, got %s", op,
                  lm_dtype_name(x->dtype));
        return false;
    }
    if (x->ndim != 3 && x->ndim != 4) {
        lm__error(LM_ERR_SHAPE, "%s: expects a 3-D [C, H, W] or 4-D [N, C, H, W] input, got %s",
                  op, lm__shp(x).s);
        return false;
    }
    if (x->shape[x->ndim - 1] == 0 || x->shape[x->ndim - 2] == 0) {
        lm__error(LM_ERR_SHAPE, "%s: input %s has an empty plane", op, lm__shp(x).s);
        return false;
    }
    return true;
}

/* One output size of a window pooling as PyTorch's pooling_output_shape, or 0 when none fits. */
static int64_t pooled_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode)
{
    const int64_t span = in + 2 * p - d * (k - 1) - 1;
    if (span < 0) return 0;
    int64_t out = (span + (ceil_mode ? s - 1 : 0)) / s + 1;
    if (ceil_mode && (out - 1) * s >= in + p) out--;
    return out;
}

/* Fills the window geometry of max/avg pooling after checking kernel, stride, padding and
 * dilation. NULL stride means the kernel (PyTorch's default), NULL padding 0, NULL dilation 1. */
static bool window_geom(const char *op, const lm_tensor *x, const int *kernel, const int *stride,
                        const int *padding, const int *dilation, bool ceil_mode,
                        lm_pool_geom *g)
{
    if (!kernel) {
        lm__error(LM_ERR_ARG, "%s: NULL kernel size", op);
        return false;
    }
    const int64_t k[2] = {kernel[0], kernel[1]};
    const int64_t s[2] = {stride ? stride[0] : kernel[0], stride ? stride[1] : kernel[1]};
    const int64_t p[2] = {padding ? padding[0] : 0, padding ? padding[1] : 0};
    const int64_t d[2] = {dilation ? dilation[0] : 1, dilation ? dilation[1] : 1};
    for (int i = 0; i < 2; i++) {
        if (k[i] <= 0 || s[i] <= 0 || d[i] <= 0 || p[i] < 0) {
            lm__error(LM_ERR_ARG,
                      "%s: kernel (%lldx%lld), stride (%lldx%lld) and dilation (%lldx%lld) must "
                      "be positive and padding (%lldx%lld) non-negative",
                      op, (long long)k[0], (long long)k[1], (long long)s[0], (long long)s[1],
                      (long long)d[0], (long long)d[1], (long long)p[0], (long long)p[1]);
            return false;
        }
        if (p[i] > k[i] / 2) {
            lm__error(LM_ERR_ARG,
                      "%s: padding (%lldx%lld) must be at most half the kernel (%lldx%lld)", op,
                      (long long)p[0], (long long)p[1], (long long)k[0], (long long)k[1]);
            return false;
        }
    }
    const int64_t h = x->shape[x->ndim - 2], w = x->shape[x->ndim - 1];
    *g = (lm_pool_geom){
        .planes = lm_numel(x) / (h * w), .h = h, .w = w,
        .oh = pooled_size(h, k[0], s[0], p[0], d[0], ceil_mode),
        .ow = pooled_size(w, k[1], s[1], p[1], d[1], ceil_mode),
        .kh = k[0], .kw = k[1], .sh = s[0], .sw = s[1], .ph = p[0], .pw = p[1],
        .dh = d[0], .dw = d[1],
    };
    if (g->oh <= 0 || g->ow <= 0) {
        lm__error(LM_ERR_SHAPE,
                  "%s: kernel %lldx%lld (dilation %lldx%lld) does not fit the input %s with "
                  "padding %lldx%lld: the output would be %lldx%lld",
                  op, (long long)k[0], (long long)k[1], (long long)d[0], (long long)d[1],
                  lm__shp(x).s, (long long)p[0], (long long)p[1], (long long)g->oh,
                  (long long)g->ow);
        return false;
    }
    return true;
}

/* The output (or another tensor) of x's leading dims and an oH x oW plane. */
static lm_tensor *plane_tensor(const char *op, const lm_tensor *x, int64_t oh, int64_t ow,
                               lm_dtype dt)
{
    int64_t shape[4];
    for (int i = 0; i < x->ndim - 2; i++) shape[i] = x->shape[i];
    shape[x->ndim - 2] = oh;
    shape[x->ndim - 1] = ow;
    return lm__new(op, x->ndim, shape, dt, x->storage->device);
}

/* x contiguous for the kernels, without recording the copy: the op records x itself. */
static lm_tensor *contiguous_input(const lm_tensor *x)
{
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *c = lm_contiguous(x);
    lm_set_grad_enabled(prev);
    return c;
}

/* Records op with its geometry (and idx, for max pooling) when x requires grad. Takes y. */
static lm_tensor *record(const lm_grad_op *gop, lm_tensor *y, const lm_tensor *x,
                         const lm_pool_geom *g, const lm_tensor *idx)
{
    if (!lm__needs_grad(1, &x)) return y;
    int64_t v[P_COUNT];
    geom_to_ints(g, v);
    lm_node *n = lm__record(gop, y, 1, &x);
    if (!n || lm__save_ints(n, P_COUNT, v) || (idx && lm__save(n, idx))) {
        lm_release(y);
        return NULL;
    }
    return y;
}

/* The gradient buffer for x and a contiguous grad_out; false with an error. */
static bool backward_buffers(lm_node *n, const lm_tensor *grad, lm_tensor **gc, lm_tensor **gx,
                             const lm_backend **be)
{
    *be = lm__backend(grad->storage->device, n->op->name);
    *gc = *be ? lm_contiguous(grad) : NULL;
    *gx = *gc ? lm__new(n->op->name, n->inputs[0].ndim, n->inputs[0].shape, grad->dtype,
                        grad->storage->device)
              : NULL;
    if (*gx) return true;
    lm_release(*gc);
    return false;
}

/* ---- max pooling ------------------------------------------------------------------------- */

static lm_status max_pool2d_backward(lm_node *n, const lm_tensor *grad, lm_tensor **gi)
{
    const lm_tensor *idx = lm__saved(n, 0);
    if (!idx) return lm_last_status();
    const lm_pool_geom g = geom_from_ints(n->iv);
    lm_tensor *gc, *gx;
    const lm_backend *be;
    if (!backward_buffers(n, grad, &gc, &gx, &be)) return lm_last_status();
    be->conv->max_pool2d_backward(&g, gc, idx, gx);
    lm_release(gc);
    gi[0] = gx;
    return LM_OK;
}

static const lm_grad_op max_pool2d_grad = {"max_pool2d", max_pool2d_backward};

lm_tensor *lm_max_pool2d(const lm_tensor *x, const int kernel[2], const int stride[2],
                         const int padding[2], const int dilation[2], bool ceil_mode,
                         lm_tensor **indices)
{
    const char *op = "max_pool2d";
    if (indices) *indices = NULL;
    lm_pool_geom g;
    if (!check_input(op, x) ||
        !window_geom(op, x, kernel, stride, padding, dilation, ceil_mode, &g))
        return NULL;
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return NULL;
    const bool grad = lm__needs_grad(1, &x);
    lm_tensor *xc = contiguous_input(x);
    lm_tensor *y = xc ? plane_tensor(op, x, g.oh, g.ow, x->dtype) : NULL;
    lm_tensor *idx = y && (grad || indices) ? plane_tensor(op, x, g.oh, g.ow, LM_I64) : NULL;
    if (!y || ((grad || indices) && !idx)) {
        lm_release(xc);
        lm_release(y);
        return NULL;
    }
    be->conv->max_pool2d(&g, xc, y, idx);
    lm_release(xc);
    y = record(&max_pool2d_grad, y, x, &g, idx);
    if (y && indices)
        *indices = idx;
    else
        lm_release(idx);
    return y;
}

/* ---- average pooling --------------------------------------------------------------------- */

static lm_status avg_pool2d_backward(lm_node *n, const lm_tensor *grad, lm_tensor **gi)
{
    const lm_pool_geom g = geom_from_ints(n->iv);
    lm_tensor *gc, *gx;
    const lm_backend *be;
    if (!backward_buffers(n, grad, &gc, &gx, &be)) return lm_last_status();
    be->conv->avg_pool2d_backward(&g, gc, gx);
    lm_release(gc);
    gi[0] = gx;
    return LM_OK;
}

static const lm_grad_op avg_pool2d_grad = {"avg_pool2d", avg_pool2d_backward};

lm_tensor *lm_avg_pool2d(const lm_tensor *x, const int kernel[2], const int stride[2],
                         const int padding[2], bool ceil_mode, bool count_include_pad)
{
    const char *op = "avg_pool2d";
    lm_pool_geom g;
    if (!check_input(op, x) || !window_geom(op, x, kernel, stride, padding, NULL, ceil_mode, &g))
        return NULL;
    g.count_include_pad = count_include_pad;
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return NULL;
    lm_tensor *xc = contiguous_input(x);
    lm_tensor *y = xc ? plane_tensor(op, x, g.oh, g.ow, x->dtype) : NULL;
    if (y) be->conv->avg_pool2d(&g, xc, y);
    lm_release(xc);
    return y ? record(&avg_pool2d_grad, y, x, &g, NULL) : NULL;
}

/* ---- adaptive average pooling ------------------------------------------------------------ */

static lm_status adaptive_avg_pool2d_backward(lm_node *n, const lm_tensor *grad, lm_tensor **gi)
{
    const lm_pool_geom g = geom_from_ints(n->iv);
    lm_tensor *gc, *gx;
    const lm_backend *be;
    if (!backward_buffers(n, grad, &gc, &gx, &be)) return lm_last_status();
    be->conv->adaptive_avg_pool2d_backward(&g, gc, gx);
    lm_release(gc);
    gi[0] = gx;
    return LM_OK;
}

static const lm_grad_op adaptive_avg_pool2d_grad = {"adaptive_avg_pool2d",
                                                    adaptive_avg_pool2d_backward};

lm_tensor *lm_adaptive_avg_pool2d(const lm_tensor *x, int64_t out_h, int64_t out_w)
{
    const char *op = "adaptive_avg_pool2d";
    if (!check_input(op, x)) return NULL;
    if (out_h <= 0 || out_w <= 0)
        LM_FAIL(LM_ERR_ARG, "%s: output size %lldx%lld must be positive (input %s)", op,
                (long long)out_h, (long long)out_w, lm__shp(x).s);
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return NULL;
    const int64_t h = x->shape[x->ndim - 2], w = x->shape[x->ndim - 1];
    const lm_pool_geom g = {.planes = lm_numel(x) / (h * w), .h = h, .w = w, .oh = out_h,
                            .ow = out_w};
    lm_tensor *xc = contiguous_input(x);
    lm_tensor *y = xc ? plane_tensor(op, x, out_h, out_w, x->dtype) : NULL;
    if (y) be->conv->adaptive_avg_pool2d(&g, xc, y);
    lm_release(xc);
    return y ? record(&adaptive_avg_pool2d_grad, y, x, &g, NULL) : NULL;
}
