/* nn_conv.c — conv1d, conv2d and conv_transpose2d: argument checks, output shapes and autograd
 * on top of the backend's convolution kernels (conv.h).
 *
 * One geometry (lm_conv_geom) describes a convolution from an input [N, C, H, W] to an output
 * [N, O, oH, oW]. Three kernels serve every op and gradient:
 *   conv2d              forward; the input gradient of conv_transpose2d
 *   conv2d_input_grad   the input gradient; the forward of conv_transpose2d
 *   conv2d_weight_grad  the weight gradient of both (with the roles of x and gy swapped)
 * conv1d is conv2d with H = kH = 1: its contiguous [N, C, L] data is that of [N, C, 1, L], so
 * the kernels get its tensors as they are. The bias gradient is a sum over N, H and W.
 *
 * When the weight will need a gradient, the forward lets the backend keep x's patch matrices
 * (im2col) if it wants them (saved_cols_numel): they are saved with the node and freed with the
 * graph, and the backward's weight gradient skips rebuilding them. */
#include "autograd.h"
#include "conv.h"

#include <stdio.h>
#include <string.h>

/* ---- geometry ------------------------------------------------------------------------------ */

/* The geometry travels in node->iv in this order. */
enum { G_N, G_C, G_H, G_W, G_O, G_OH, G_OW, G_KH, G_KW, G_SH, G_SW, G_PH, G_PW, G_DH, G_DW,
       G_GROUPS, G_COUNT };

_Static_assert(sizeof(lm_conv_geom) == G_COUNT * sizeof(int64_t),
               "every field of lm_conv_geom travels in node->iv");

static void geom_to_ints(const lm_conv_geom *g, int64_t *v)
{
    const int64_t f[G_COUNT] = {g->n,  g->c,  g->h,  g->w,  g->o,  g->oh, g->ow, g->kh,
                                g->kw, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->groups};
    memcpy(v, f, sizeof f);
}

static lm_conv_geom geom_from_ints(const int64_t *v)
{
    return (lm_conv_geom){.n = v[G_N],   .c = v[G_C],   .h = v[G_H],   .w = v[G_W],
                          .o = v[G_O],   .oh = v[G_OH], .ow = v[G_OW], .kh = v[G_KH],
                          .kw = v[G_KW], .sh = v[G_SH], .sw = v[G_SW], .ph = v[G_PH],
                          .pw = v[G_PW], .dh = v[G_DH], .dw = v[G_DW], .groups = v[G_GROUPS]};
}

/* "5x3" for two spatial dims, "5" for one (the last sp entries of v). */
typedef struct { char s[48]; } dimbuf;
static dimbuf dims_str(int sp, const int64_t *v)
{
    dimbuf b;
    if (sp == 1)
        snprintf(b.s, sizeof b.s, "%lld", (long long)v[0]);
    else
        snprintf(b.s, sizeof b.s, "%lldx%lld", (long long)v[0], (long long)v[1]);
    return b;
}

/* The options of a call, widened: sp spatial dims (1 or 2), entries for the missing height of
 * conv1d are the identity (stride 1, no padding, dilation 1). */
typedef struct {
    int sp;
    int64_t stride[2], padding[2], dilation[2], output_padding[2];
    int64_t groups;
} conv_opts;

/* Checks what every convolution needs of its tensors and options; transposed tells the
 * weight's layout. */
static bool check_args(const char *op, const conv_opts *o, bool transposed, const lm_tensor *x,
                       const lm_tensor *w, const lm_tensor *b)
{
    if (!lm__arg(x, op) || !lm__arg(w, op)) return false;
    const char *xlay = o->sp == 1 ? "[N, C, L]" : "[N, C, H, W]";
    const char *wlay = transposed ? "[C, O/groups, kH, kW]"
                       : o->sp == 1 ? "[O, C/groups, K]"
                                    : "[O, C/groups, kH, kW]";
    if (x->dtype != LM_F32 && x->dtype != LM_F64) {
        lm__error(LM_ERR_DTYPE, "%s: expects an f32 or f64 input, got %s", op,
                  lm_dtype_name(x->dtype));
        return false;
    }
    if (w->dtype != x->dtype || (b && b->dtype != x->dtype)) {
        lm__error(LM_ERR_DTYPE, "%s: input (%s), weight (%s)%s%s must have one dtype", op,
                  lm_dtype_name(x->dtype), lm_dtype_name(w->dtype), b ? " and bias " : "",
                  b ? lm_dtype_name(b->dtype) : "");
        return false;
    }
    if (x->storage->device != w->storage->device ||
        (b && b->storage->device != x->storage->device)) {
        lm__error(LM_ERR_ARG, "%s: input, weight and bias must be on one device", op);
        return false;
    }
    if (x->ndim != o->sp + 2) {
        lm__error(LM_ERR_SHAPE, "%s: expects a %d-D input %s, got %s", op, o->sp + 2, xlay,
                  lm__shp(x).s);
        return false;
    }
    if (w->ndim != o->sp + 2) {
        lm__error(LM_ERR_SHAPE, "%s: expects a %d-D weight %s, got %s", op, o->sp + 2, wlay,
                  lm__shp(w).s);
        return false;
    }
    for (int d = 0; d < w->ndim; d++)
        if (w->shape[d] == 0) {
            lm__error(LM_ERR_SHAPE, "%s: weight %s has an empty dim", op, lm__shp(w).s);
            return false;
        }
    const int64_t *s = o->stride + 2 - o->sp, *p = o->padding + 2 - o->sp,
                  *dl = o->dilation + 2 - o->sp;
    for (int i = 0; i < o->sp; i++) {
        if (s[i] <= 0 || dl[i] <= 0 || p[i] < 0) {
            lm__error(LM_ERR_ARG,
                      "%s: stride (%s) and dilation (%s) must be positive and padding (%s) "
                      "non-negative",
                      op, dims_str(o->sp, s).s, dims_str(o->sp, dl).s, dims_str(o->sp, p).s);
            return false;
        }
    }
    if (o->groups <= 0) {
        lm__error(LM_ERR_ARG, "%s: groups must be positive, got %lld", op, (long long)o->groups);
        return false;
    }
    const int64_t c = x->shape[1];
    if (c % o->groups != 0) {
        lm__error(LM_ERR_SHAPE, "%s: groups %lld does not divide the %lld channels of input %s",
                  op, (long long)o->groups, (long long)c, lm__shp(x).s);
        return false;
    }
    /* The channels x has: C (conv), or the weight's first dim (transposed). */
    const int64_t want = transposed ? w->shape[0] : w->shape[1] * o->groups;
    if (c != want) {
        lm__error(LM_ERR_SHAPE, "%s: input %s has %lld channels but weight %s expects %lld%s", op,
                  lm__shp(x).s, (long long)c, lm__shp(w).s, (long long)want,
                  o->groups > 1 ? " (weight's in-channels times groups)" : "");
        return false;
    }
    if (!transposed && w->shape[0] % o->groups != 0) {
        lm__error(LM_ERR_SHAPE, "%s: groups %lld does not divide the %lld output channels of "
                  "weight %s", op, (long long)o->groups, (long long)w->shape[0], lm__shp(w).s);
        return false;
    }
    const int64_t out_c = transposed ? w->shape[1] * o->groups : w->shape[0];
    if (b && (b->ndim != 1 || b->shape[0] != out_c)) {
        lm__error(LM_ERR_SHAPE, "%s: bias %s must be 1-D with %lld elements (the output channels "
                  "of weight %s)", op, lm__shp(b).s, (long long)out_c, lm__shp(w).s);
        return false;
    }
    return true;
}

/* ---- forward and backward ---------------------------------------------------------------- */

/* Contiguous copies of the tensors the kernels read, made without recording them. */
static bool contiguous_inputs(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                              lm_tensor **xc, lm_tensor **wc, lm_tensor **bc)
{
    bool prev = lm_set_grad_enabled(false);
    *xc = lm_contiguous(x);
    *wc = *xc ? lm_contiguous(w) : NULL;
    *bc = *wc && b ? lm_contiguous(b) : NULL;
    lm_set_grad_enabled(prev);
    if (*xc && *wc && (!b || *bc)) return true;
    lm_release(*xc);
    lm_release(*wc);
    lm_release(*bc);
    return false;
}

/* An output or gradient of an op, uninitialised: the kernels overwrite every element. */
static lm_tensor *empty_as(const char *op, int ndim, const int64_t *shape, const lm_tensor *like)
{
    return lm__new(op, ndim, shape, like->dtype, like->storage->device);
}

/* Records the op when an input requires grad: the geometry, x and w contiguous, and the
 * forward's patch matrices when it kept them. Takes out. */
static lm_tensor *record(const lm_grad_op *gop, lm_tensor *out, const lm_tensor *x,
                         const lm_tensor *w, const lm_tensor *b, const lm_conv_geom *g,
                         const lm_tensor *xc, const lm_tensor *wc, const lm_tensor *cols)
{
    const lm_tensor *in[3] = {x, w, b};
    if (!lm__needs_grad(3, in)) return out;
    int64_t v[G_COUNT];
    geom_to_ints(g, v);
    lm_node *n = lm__record(gop, out, 3, in);
    if (!n || lm__save_ints(n, G_COUNT, v) || lm__save(n, xc) || lm__save(n, wc) ||
        (cols && lm__save(n, cols))) {
        lm_release(out);
        return NULL;
    }
    return out;
}

/* Gradients of a convolution (transposed: of a transposed one). Input 0 is x, 1 the weight,
 * 2 the bias; the saved tensors are x and the weight, contiguous, and maybe the patch
 * matrices of x. */
static lm_status conv_backward_any(lm_node *n, const lm_tensor *grad, lm_tensor **gi,
                                   bool transposed)
{
    const lm_tensor *x = lm__saved(n, 0), *w = lm__saved(n, 1);
    const lm_tensor *cols = n->n_saved > 2 ? lm__saved(n, 2) : NULL;
    if (!x || !w || (n->n_saved > 2 && !cols)) return lm_last_status();
    const char *op = n->op->name;
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return lm_last_status();
    const lm_conv_geom g = geom_from_ints(n->iv);
    lm_tensor *gc = lm_contiguous(grad);
    if (!gc) return lm_last_status();
    lm_status st = LM_OK;
    if (lm__input_needs_grad(n, 0)) {
        gi[0] = empty_as(op, n->inputs[0].ndim, n->inputs[0].shape, gc);
        if (!gi[0])
            st = lm_last_status();
        else
            st = transposed ? be->conv->conv2d(&g, gc, w, NULL, gi[0], NULL)
                            : be->conv->conv2d_input_grad(&g, gc, w, NULL, gi[0]);
    }
    if (!st && lm__input_needs_grad(n, 1)) {
        gi[1] = empty_as(op, n->inputs[1].ndim, n->inputs[1].shape, gc);
        if (!gi[1])
            st = lm_last_status();
        else
            st = transposed ? be->conv->conv2d_weight_grad(&g, gc, x, NULL, gi[1])
                            : be->conv->conv2d_weight_grad(&g, x, gc, cols, gi[1]);
    }
    if (!st && lm__input_needs_grad(n, 2)) {
        /* Over N and every spatial dim: [N, O, L] or [N, O, H, W]. */
        gi[2] = gc->ndim == 3 ? lm_sum(gc, LM_DIMS(0, 2), false)
                              : lm_sum(gc, LM_DIMS(0, 2, 3), false);
        if (!gi[2]) st = lm_last_status();
    }
    lm_release(gc);
    return st;
}

static lm_status conv_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    return conv_backward_any(n, g, gi, false);
}

static lm_status conv_transpose_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    return conv_backward_any(n, g, gi, true);
}

static const lm_grad_op conv1d_grad = {"conv1d", conv_backward};
static const lm_grad_op conv2d_grad = {"conv2d", conv_backward};
static const lm_grad_op conv_transpose2d_grad = {"conv_transpose2d", conv_transpose_backward};

/* conv1d and conv2d, with o widened to two spatial dims. */
static lm_tensor *conv_forward(const char *op, const lm_grad_op *gop, const conv_opts *o,
                               const lm_tensor *x, const lm_tensor *w, const lm_tensor *b)
{
    if (!check_args(op, o, false, x, w, b)) return NULL;
    const int sp = o->sp;
    lm_conv_geom g = {
        .n = x->shape[0], .c = x->shape[1], .o = w->shape[0],
        .h = sp == 1 ? 1 : x->shape[2], .w = x->shape[x->ndim - 1],
        .kh = sp == 1 ? 1 : w->shape[2], .kw = w->shape[w->ndim - 1],
        .sh = o->stride[0], .sw = o->stride[1], .ph = o->padding[0], .pw = o->padding[1],
        .dh = o->dilation[0], .dw = o->dilation[1], .groups = o->groups,
    };
    const int64_t in[2] = {g.h, g.w}, k[2] = {g.kh, g.kw};
    int64_t out[2], padded[2], span[2];
    for (int i = 0; i < 2; i++) {
        padded[i] = in[i] + 2 * o->padding[i];
        span[i] = o->dilation[i] * (k[i] - 1) + 1;
        out[i] = padded[i] >= span[i] ? (padded[i] - span[i]) / o->stride[i] + 1 : 0;
    }
    if (out[0] == 0 || out[1] == 0)
        LM_FAIL(LM_ERR_SHAPE,
                "%s: kernel %s (dilated to %s) is larger than the padded input %s (input %s, "
                "padding %s)",
                op, dims_str(sp, k + 2 - sp).s, dims_str(sp, span + 2 - sp).s,
                dims_str(sp, padded + 2 - sp).s, lm__shp(x).s,
                dims_str(sp, o->padding + 2 - sp).s);
    g.oh = out[0];
    g.ow = out[1];
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return NULL;
    lm_tensor *xc, *wc, *bc;
    if (!contiguous_inputs(x, w, b, &xc, &wc, &bc)) return NULL;
    const int64_t shape[4] = {g.n, g.o, sp == 1 ? g.ow : g.oh, g.ow};
    lm_tensor *y = empty_as(op, sp + 2, shape, x);
    /* The weight gradient will need x's patch matrices: keep them when the backend would. */
    const int64_t ncols =
        lm_grad_enabled() && w->requires_grad ? be->conv->saved_cols_numel(&g) : 0;
    lm_tensor *cols = y && ncols ? empty_as(op, 1, &ncols, x) : NULL;
    if (y && ((ncols && !cols) || be->conv->conv2d(&g, xc, wc, bc, y, cols))) {
        lm_release(y);
        y = NULL;
    }
    if (y) y = record(gop, y, x, w, b, &g, xc, wc, cols);
    lm_release(cols);
    lm_release(xc);
    lm_release(wc);
    lm_release(bc);
    return y;
}

lm_tensor *lm_conv1d(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b, int stride,
                     int padding, int dilation, int groups)
{
    const conv_opts o = {.sp = 1,
                         .stride = {1, stride},
                         .padding = {0, padding},
                         .dilation = {1, dilation},
                         .groups = groups};
    return conv_forward("conv1d", &conv1d_grad, &o, x, w, b);
}

lm_tensor *lm_conv2d(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                     const int stride[2], const int padding[2], const int dilation[2], int groups)
{
    if (!stride || !padding || !dilation)
        LM_FAIL(LM_ERR_ARG, "conv2d: NULL stride, padding or dilation");
    const conv_opts o = {.sp = 2,
                         .stride = {stride[0], stride[1]},
                         .padding = {padding[0], padding[1]},
                         .dilation = {dilation[0], dilation[1]},
                         .groups = groups};
    return conv_forward("conv2d", &conv2d_grad, &o, x, w, b);
}

lm_tensor *lm_conv_transpose2d(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                               const int stride[2], const int padding[2],
                               const int output_padding[2], const int dilation[2], int groups)
{
    const char *op = "conv_transpose2d";
    if (!stride || !padding || !output_padding || !dilation)
        LM_FAIL(LM_ERR_ARG, "%s: NULL stride, padding, output_padding or dilation", op);
    const conv_opts o = {.sp = 2,
                         .stride = {stride[0], stride[1]},
                         .padding = {padding[0], padding[1]},
                         .dilation = {dilation[0], dilation[1]},
                         .output_padding = {output_padding[0], output_padding[1]},
                         .groups = groups};
    if (!check_args(op, &o, true, x, w, b)) return NULL;
    for (int i = 0; i < 2; i++)
        if (o.output_padding[i] < 0 ||
            (o.output_padding[i] >= o.stride[i] && o.output_padding[i] >= o.dilation[i]))
            LM_FAIL(LM_ERR_ARG,
                    "%s: output_padding (%s) must be non-negative and smaller than either the "
                    "stride (%s) or the dilation (%s)",
                    op, dims_str(2, o.output_padding).s, dims_str(2, o.stride).s,
                    dims_str(2, o.dilation).s);
    /* The convolution this op is the input gradient of maps y [N, O, oH, oW] back onto x. */
    lm_conv_geom g = {
        .n = x->shape[0], .c = w->shape[1] * o.groups, .o = x->shape[1],
        .oh = x->shape[2], .ow = x->shape[3], .kh = w->shape[2], .kw = w->shape[3],
        .sh = o.stride[0], .sw = o.stride[1], .ph = o.padding[0], .pw = o.padding[1],
        .dh = o.dilation[0], .dw = o.dilation[1], .groups = o.groups,
    };
    g.h = (g.oh - 1) * g.sh - 2 * g.ph + g.dh * (g.kh - 1) + o.output_padding[0] + 1;
    g.w = (g.ow - 1) * g.sw - 2 * g.pw + g.dw * (g.kw - 1) + o.output_padding[1] + 1;
    if (g.h <= 0 || g.w <= 0)
        LM_FAIL(LM_ERR_SHAPE,
                "%s: input %s with weight %s, stride %s and padding %s gives an output of "
                "%lldx%lld",
                op, lm__shp(x).s, lm__shp(w).s, dims_str(2, o.stride).s,
                dims_str(2, o.padding).s, (long long)g.h, (long long)g.w);
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return NULL;
    lm_tensor *xc, *wc, *bc;
    if (!contiguous_inputs(x, w, b, &xc, &wc, &bc)) return NULL;
    lm_tensor *y = empty_as(op, 4, (const int64_t[]){g.n, g.c, g.h, g.w}, x);
    if (y && be->conv->conv2d_input_grad(&g, xc, wc, bc, y)) {
        lm_release(y);
        y = NULL;
    }
    if (y) y = record(&conv_transpose2d_grad, y, x, w, b, &g, xc, wc, NULL);
    lm_release(xc);
    lm_release(wc);
    lm_release(bc);
    return y;
}
