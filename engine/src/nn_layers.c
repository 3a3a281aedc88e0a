/* nn_layers.c — the layers' ops, forward and backward: linear, batch_norm, layer_norm,
 * group_norm, dropout and embedding.
 *
 * linear is one GEMM forward (the output starts as rows of the bias and the product is added
 * onto it, beta = 1) and one GEMM per weight or input gradient, on the backend's blas kernels;
 * inputs are read where they lie when their strides suit BLAS (a transposed view costs no copy).
 * The normalisations check shapes here and run the fused kernels of the norm family (norm.h):
 * layer_norm is the group norm of an [rows, normalised size, 1] block with one group. dropout
 * draws its mask with lm_bernoulli_ (Philox: the mask depends on the seed only) and multiplies;
 * embedding reads rows with the index family's index_select kernel and sums gradient rows with
 * the norm family's embedding_backward. */
#include "autograd.h"
#include "index.h"
#include "linalg.h"
#include "norm.h"

#include <string.h>

/* ---- shared checks --------------------------------------------------------------------------- */

static bool float_dtype(const char *op, const char *what, const lm_tensor *t)
{
    if (lm_dtype_is_float(t->dtype)) return true;
    lm__error(LM_ERR_DTYPE, "%s: %s must be f32 or f64, got %s (shape %s)", op, what,
              lm_dtype_name(t->dtype), lm__shp(t).s);
    return false;
}

/* A parameter (weight, bias, running statistic) of x: shape [ndim, shape], x's dtype and
 * device. NULL passes. */
static bool check_param(const char *op, const char *what, const lm_tensor *p, const lm_tensor *x,
                        int ndim, const int64_t *shape)
{
    if (!p) return true;
    bool same = p->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = p->shape[d] == shape[d];
    if (!same) {
        lm__error(LM_ERR_SHAPE, "%s: %s of shape %s does not fit input %s (expected %s)", op, what,
                  lm__shp(p).s, lm__shp(x).s, lm__shp_raw(ndim, shape).s);
        return false;
    }
    if (p->dtype != x->dtype) {
        lm__error(LM_ERR_DTYPE, "%s: %s is %s but the input is %s (shapes %s and %s)", op, what,
                  lm_dtype_name(p->dtype), lm_dtype_name(x->dtype), lm__shp(p).s, lm__shp(x).s);
        return false;
    }
    if (p->storage->device != x->storage->device) {
        lm__error(LM_ERR_ARG, "%s: %s and input are on different devices (shapes %s and %s)", op,
                  what, lm__shp(p).s, lm__shp(x).s);
        return false;
    }
    return true;
}

/* The gradient slot of input i, allocated with the input's recorded shape when it needs one. */
static bool grad_slot(lm_node *n, int i, const char *op, lm_dtype dt, lm_device dev,
                      lm_tensor **out)
{
    *out = NULL;
    if (!lm__input_needs_grad(n, i)) return true;
    *out = lm__new(op, n->inputs[i].ndim, n->inputs[i].shape, dt, dev);
    return *out != NULL;
}

static void release_all(int n, lm_tensor **t)
{
    for (int i = 0; i < n; i++) {
        lm_release(t[i]);
        t[i] = NULL;
    }
}

/* ---- linear ---------------------------------------------------------------------------------- */

static int64_t max1(int64_t v) { return v > 1 ? v : 1; }

/* A matrix operand of a gemm: data, and where it lies for BLAS. */
typedef struct {
    lm_tensor *hold;  /* a contiguous copy when the tensor's strides did not suit BLAS, or NULL */
    const void *data;
    bool trans;
    int64_t ld;
} matrix;

/* The row stride of t seen as [numel / last, last]: its leading dims must step through memory
 * as one dim (they do for a contiguous tensor and for a 2-D view of any strides). */
static bool merged_row_stride(const lm_tensor *t, int64_t *rs)
{
    int64_t base = 0, span = 0;
    for (int d = t->ndim - 2; d >= 0; d--) {
        if (t->shape[d] == 1) continue;
        if (span == 0) {
            base = t->strides[d];
            span = t->shape[d];
        } else if (t->strides[d] != base * span) {
            return false;
        } else {
            span *= t->shape[d];
        }
    }
    *rs = base;
    return true;
}

/* t seen as a [rows, cols] matrix (cols its last dim, its leading dims merged into rows), read
 * in place when its strides allow, else from a contiguous copy (made unrecorded: only the
 * caller's op records). */
static bool matrix_of(const lm_tensor *t, int64_t rows, int64_t cols, matrix *m)
{
    m->hold = NULL;
    int64_t rs = 0, cs = t->strides[t->ndim - 1];
    if (!merged_row_stride(t, &rs) || !lm__blas_layout(rows, cols, rs, cs, &m->trans, &m->ld)) {
        bool prev = lm_set_grad_enabled(false);
        m->hold = lm_contiguous(t);
        lm_set_grad_enabled(prev);
        if (!m->hold) return false;
        t = m->hold;
        /* Contiguous strides always give the row-major layout. */
        m->trans = false;
        m->ld = max1(cols);
    }
    m->data = lm_data(t);
    return true;
}

/* The transpose of a matrix operand: the same memory read the other way. */
static matrix transposed(const matrix *m)
{
    return (matrix){.hold = NULL, .data = m->data, .trans = !m->trans, .ld = m->ld};
}

/* c ([m, n], contiguous) = a · b (+ c when accumulate). */
static lm_status gemm(const lm_backend *be, const char *op, const matrix *a, const matrix *b,
                      int64_t m, int64_t n, int64_t k, bool accumulate, lm_tensor *c)
{
    lm_gemm g = {
        .dtype = c->dtype,
        .trans_a = a->trans,
        .trans_b = b->trans,
        .m = m,
        .n = n,
        .k = k,
        .alpha = 1.0,
        .beta = accumulate ? 1.0 : 0.0,
        .a = a->data,
        .lda = a->ld,
        .b = b->data,
        .ldb = b->ld,
        .c = lm_data(c),
        .ldc = max1(n),
    };
    return be->blas->gemm(op, &g);
}

/* Saved: 0 x as the forward read it (the input or its contiguous copy), 1 weight. */
static lm_status linear_backward(lm_node *node, const lm_tensor *g, lm_tensor **gi)
{
    const char *op = "linear_backward";
    const lm_tensor *x = lm__saved(node, 0), *w = lm__saved(node, 1);
    if (!x || !w) return lm_last_status();
    const lm_backend *be = lm__backend(g->storage->device, op);
    if (!be) return lm_last_status();
    const int64_t out = w->shape[0], in = w->shape[1];
    const int64_t rows = lm__shape_numel(g->ndim - 1, g->shape);
    lm_tensor *res[3] = {NULL, NULL, NULL};
    matrix gm = {0}, xm = {0}, wm = {0};
    lm_status st = LM_OK;
    if (!matrix_of(g, rows, out, &gm)) return lm_last_status();
    /* grad_x [rows, in] = g [rows, out] · w [out, in] */
    if (lm__input_needs_grad(node, 0)) {
        if (!grad_slot(node, 0, op, g->dtype, g->storage->device, &res[0]) ||
            !matrix_of(w, out, in, &wm))
            goto fail;
        if (lm_numel(res[0]) > 0 &&
            (st = gemm(be, op, &gm, &wm, rows, in, out, false, res[0])) != LM_OK)
            goto fail;
    }
    /* grad_w [out, in] = gᵀ [out, rows] · x [rows, in] */
    if (lm__input_needs_grad(node, 1)) {
        const matrix gt = transposed(&gm);
        if (!grad_slot(node, 1, op, g->dtype, g->storage->device, &res[1]) ||
            !matrix_of(x, rows, in, &xm))
            goto fail;
        if (lm_numel(res[1]) > 0 &&
            (st = gemm(be, op, &gt, &xm, out, in, rows, false, res[1])) != LM_OK)
            goto fail;
    }
    /* grad_b = the column sums of g */
    if (lm__input_needs_grad(node, 2)) {
        lm_tensor *g2 = lm_reshape(g, 2, (const int64_t[]){rows, out});
        res[2] = g2 ? lm_sum(g2, LM_DIMS(0), false) : NULL;
        lm_release(g2);
        if (!res[2]) goto fail;
    }
    lm_release(gm.hold);
    lm_release(xm.hold);
    lm_release(wm.hold);
    for (int i = 0; i < 3; i++) gi[i] = res[i];
    return LM_OK;
fail:
    if (!st) st = lm_last_status();
    lm_release(gm.hold);
    lm_release(xm.hold);
    lm_release(wm.hold);
    release_all(3, res);
    return st;
}

static const lm_grad_op linear_grad = {"linear", linear_backward, false};

lm_tensor *lm_linear(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b)
{
    const char *op = "linear";
    if (!lm__arg(x, op) || !lm__arg(w, op)) return NULL;
    if (!float_dtype(op, "input", x)) return NULL;
    if (x->ndim < 1)
        LM_FAIL(LM_ERR_SHAPE, "linear: input must have at least 1 dim, got shape %s",
                lm__shp(x).s);
    if (w->ndim != 2)
        LM_FAIL(LM_ERR_SHAPE, "linear: weight must be 2-D [out, in], got shape %s (input %s)",
                lm__shp(w).s, lm__shp(x).s);
    const int64_t in = w->shape[1], out = w->shape[0];
    if (x->shape[x->ndim - 1] != in)
        LM_FAIL(LM_ERR_SHAPE, "linear: input %s has %lld features but weight %s expects %lld",
                lm__shp(x).s, (long long)x->shape[x->ndim - 1], lm__shp(w).s, (long long)in);
    if (!check_param(op, "weight", w, x, 2, w->shape) ||
        !check_param(op, "bias", b, x, 1, (const int64_t[]){out}))
        return NULL;
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return NULL;

    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    const int64_t rows = lm__shape_numel(x->ndim - 1, x->shape);
    lm_tensor *y = lm__new(op, x->ndim, shape, x->dtype, x->storage->device);
    if (!y) return NULL;
    matrix xm = {0}, wm = {0};
    if (lm_numel(y) > 0) {
        /* y starts as rows of the bias and the product is added onto it: one pass over y. */
        if (b) {
            lm_tensor *bb = lm__expand_to(b, 2, (const int64_t[]){rows, out});
            lm_tensor *y2 = bb ? lm__view_of(y, 2, (const int64_t[]){rows, out},
                                             (const int64_t[]){out, 1}, 0)
                               : NULL;
            if (y2) be->copy->copy(y2, bb);
            lm_release(y2);
            lm_release(bb);
            if (!y2) goto fail;
        }
        if (!matrix_of(x, rows, in, &xm) || !matrix_of(w, out, in, &wm)) goto fail;
        const matrix wt = transposed(&wm);
        if (gemm(be, op, &xm, &wt, rows, out, in, b != NULL, y) != LM_OK) goto fail;
    }
    const lm_tensor *inputs[3] = {x, w, b};
    if (lm__needs_grad(3, inputs)) {
        lm_node *n = lm__record(&linear_grad, y, 3, inputs);
        /* Backward reads x as the forward did: a copy made for BLAS is kept, not made again. */
        if (!n || lm__save(n, xm.hold ? xm.hold : x) || lm__save(n, w)) goto fail;
    }
    lm_release(xm.hold);
    lm_release(wm.hold);
    return y;
fail:
    lm_release(xm.hold);
    lm_release(wm.hold);
    lm_release(y);
    return NULL;
}

/* ---- normalisation: shared parts ------------------------------------------------------------- */

/* The tensors a norm kernel reads, made contiguous, with ones and zeros standing in for an
 * absent weight and bias. */
typedef struct {
    lm_tensor *x, *w, *b;
} norm_inputs;

static void norm_inputs_release(norm_inputs *in)
{
    lm_release(in->x);
    lm_release(in->w);
    lm_release(in->b);
}

static bool norm_inputs_make(norm_inputs *in, const lm_tensor *x, const lm_tensor *w,
                             const lm_tensor *b, int64_t channels)
{
    const int64_t shape[1] = {channels};
    bool prev = lm_set_grad_enabled(false);
    in->x = lm_contiguous(x);
    in->w = w ? lm_contiguous(w) : lm_ones(1, shape, x->dtype);
    in->b = b ? lm_contiguous(b) : lm_zeros(1, shape, x->dtype);
    lm_set_grad_enabled(prev);
    if (in->x && in->w && in->b) return true;
    norm_inputs_release(in);
    return false;
}

/* ---- layer_norm and group_norm ----------------------------------------------------------- */

/* ip: A, C, S, G. Saved: 0 x (contiguous), 1 weight (ones when absent), 2 mean, 3 rstd. */
static lm_status group_norm_backward(lm_node *node, const lm_tensor *g, lm_tensor **gi)
{
    const char *op = node->op->name;
    const lm_tensor *x = lm__saved(node, 0), *w = lm__saved(node, 1);
    const lm_tensor *mean = lm__saved(node, 2), *rstd = lm__saved(node, 3);
    if (!x || !w || !mean || !rstd) return lm_last_status();
    const lm_backend *be = lm__backend(g->storage->device, op);
    if (!be) return lm_last_status();
    const lm_norm_geom geom = {node->ip[0], node->ip[1], node->ip[2], node->ip[3]};
    lm_tensor *res[3] = {NULL, NULL, NULL};
    lm_tensor *gc = lm_contiguous(g);
    if (!gc) return lm_last_status();
    for (int i = 0; i < 3; i++)
        if (!grad_slot(node, i, op, g->dtype, g->storage->device, &res[i])) goto fail;
    if (lm_numel(x) > 0) {
        be->norm->group_norm_backward(&geom, x, w, mean, rstd, gc, res[0], res[1], res[2]);
    } else {
        /* No elements: the parameters got nothing. */
        for (int i = 1; i < 3; i++)
            if (res[i] && lm_zero_(res[i]) != LM_OK) goto fail;
    }
    lm_release(gc);
    for (int i = 0; i < 3; i++) gi[i] = res[i];
    return LM_OK;
fail:
    lm_release(gc);
    release_all(3, res);
    return lm_last_status();
}

static const lm_grad_op layer_norm_grad = {"layer_norm", group_norm_backward, false};
static const lm_grad_op group_norm_grad = {"group_norm", group_norm_backward, false};

/* The shared forward of layer_norm and group_norm, once shapes are checked. */
static lm_tensor *group_norm_run(const lm_grad_op *grad, const lm_tensor *x, const lm_tensor *w,
                                 const lm_tensor *b, double eps, lm_norm_geom geom)
{
    const char *op = grad->name;
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return NULL;
    norm_inputs in;
    if (!norm_inputs_make(&in, x, w, b, geom.channels)) return NULL;
    const int64_t nstat = geom.outer * geom.groups;
    lm_tensor *y = lm__new(op, x->ndim, x->shape, x->dtype, x->storage->device);
    lm_tensor *mean = lm__new(op, 1, &nstat, x->dtype, x->storage->device);
    lm_tensor *rstd = lm__new(op, 1, &nstat, x->dtype, x->storage->device);
    if (!y || !mean || !rstd) goto fail;
    if (lm_numel(x) > 0)
        be->norm->group_norm_forward(&geom, in.x, in.w, in.b, eps, y, mean, rstd);
    const lm_tensor *inputs[3] = {x, w, b};
    if (lm__needs_grad(3, inputs)) {
        lm_node *n = lm__record(grad, y, 3, inputs);
        if (!n || lm__save(n, in.x) || lm__save(n, in.w) || lm__save(n, mean) ||
            lm__save(n, rstd))
            goto fail;
        n->ip[0] = geom.outer;
        n->ip[1] = geom.channels;
        n->ip[2] = geom.inner;
        n->ip[3] = geom.groups;
    }
    lm_release(mean);
    lm_release(rstd);
    norm_inputs_release(&in);
    return y;
fail:
    lm_release(y);
    lm_release(mean);
    lm_release(rstd);
    norm_inputs_release(&in);
    return NULL;
}

lm_tensor *lm_layer_norm(const lm_tensor *x, int n_norm, const int64_t *normalized_shape,
                         const lm_tensor *weight, const lm_tensor *bias, double eps)
{
    const char *op = "layer_norm";
    if (!lm__arg(x, op) || !float_dtype(op, "input", x)) return NULL;
    if (n_norm < 1 || n_norm > LM_MAX_DIMS || !normalized_shape)
        LM_FAIL(LM_ERR_ARG, "layer_norm: normalized_shape must have 1 to %d dims, got %d",
                LM_MAX_DIMS, n_norm);
    bool fits = n_norm <= x->ndim;
    for (int d = 0; fits && d < n_norm; d++)
        fits = x->shape[x->ndim - n_norm + d] == normalized_shape[d];
    if (!fits)
        LM_FAIL(LM_ERR_SHAPE, "layer_norm: normalized_shape %s does not match the last dims of "
                "input %s", lm__shp_raw(n_norm, normalized_shape).s, lm__shp(x).s);
    if (!check_param(op, "weight", weight, x, n_norm, normalized_shape) ||
        !check_param(op, "bias", bias, x, n_norm, normalized_shape))
        return NULL;
    const int64_t size = lm__shape_numel(n_norm, normalized_shape);
    const lm_norm_geom geom = {lm__shape_numel(x->ndim - n_norm, x->shape), size, 1, 1};
    return group_norm_run(&layer_norm_grad, x, weight, bias, eps, geom);
}

lm_tensor *lm_group_norm(const lm_tensor *x, int64_t groups, const lm_tensor *weight,
                         const lm_tensor *bias, double eps)
{
    const char *op = "group_norm";
    if (!lm__arg(x, op) || !float_dtype(op, "input", x)) return NULL;
    if (x->ndim < 2)
        LM_FAIL(LM_ERR_SHAPE, "group_norm: input must be [N, C, *], got shape %s", lm__shp(x).s);
    const int64_t channels = x->shape[1];
    if (groups < 1 || channels % groups != 0)
        LM_FAIL(LM_ERR_ARG, "group_norm: %lld channels (input %s) cannot be split into %lld groups",
                (long long)channels, lm__shp(x).s, (long long)groups);
    if (!check_param(op, "weight", weight, x, 1, &channels) ||
        !check_param(op, "bias", bias, x, 1, &channels))
        return NULL;
    const lm_norm_geom geom = {x->shape[0], channels, lm__shape_numel(x->ndim - 2, x->shape + 2),
                               groups};
    return group_norm_run(&group_norm_grad, x, weight, bias, eps, geom);
}

/* ---- batch_norm ------------------------------------------------------------------------------ */

/* ip: A, C, S, training. Saved: 0 x (contiguous), 1 weight (ones when absent), 2 mean,
 * 3 invstd (the batch's in training, from the running estimates otherwise). */
static lm_status batch_norm_backward(lm_node *node, const lm_tensor *g, lm_tensor **gi)
{
    const char *op = "batch_norm";
    const lm_tensor *x = lm__saved(node, 0), *w = lm__saved(node, 1);
    const lm_tensor *mean = lm__saved(node, 2), *invstd = lm__saved(node, 3);
    if (!x || !w || !mean || !invstd) return lm_last_status();
    const lm_backend *be = lm__backend(g->storage->device, op);
    if (!be) return lm_last_status();
    const lm_norm_geom geom = {node->ip[0], node->ip[1], node->ip[2], 1};
    lm_tensor *res[3] = {NULL, NULL, NULL};
    lm_tensor *gc = lm_contiguous(g);
    if (!gc) return lm_last_status();
    for (int i = 0; i < 3; i++)
        if (!grad_slot(node, i, op, g->dtype, g->storage->device, &res[i])) goto fail;
    if (lm_numel(x) > 0) {
        be->norm->batch_norm_backward(&geom, x, mean, invstd, w, gc, node->ip[3] != 0, res[0],
                                      res[1], res[2]);
    } else {
        for (int i = 1; i < 3; i++)
            if (res[i] && lm_zero_(res[i]) != LM_OK) goto fail;
    }
    lm_release(gc);
    for (int i = 0; i < 3; i++) gi[i] = res[i];
    return LM_OK;
fail:
    lm_release(gc);
    release_all(3, res);
    return lm_last_status();
}

static const lm_grad_op batch_norm_grad = {"batch_norm", batch_norm_backward, false};

/* running = (1 - momentum) * running + momentum * batch, in place and unrecorded. */
static lm_status blend_into(lm_tensor *running, const lm_tensor *batch, double momentum)
{
    lm_tensor *part = lm_mul_scalar(batch, momentum);
    if (!part) return lm_last_status();
    lm_status st = lm_mul_scalar_(running, 1.0 - momentum);
    if (!st) st = lm_add_(running, part);
    lm_release(part);
    return st;
}

/* The running estimates move towards the batch's mean and unbiased variance (var is the
 * biased one, count values per channel). */
static lm_status update_running(lm_tensor *running_mean, lm_tensor *running_var,
                                const lm_tensor *mean, lm_tensor *var, int64_t count,
                                double momentum)
{
    bool prev = lm_set_grad_enabled(false);
    lm_status st = blend_into(running_mean, mean, momentum);
    if (!st) st = lm_mul_scalar_(var, (double)count / (double)(count - 1));
    if (!st) st = blend_into(running_var, var, momentum);
    lm_set_grad_enabled(prev);
    return st;
}

/* Training statistics of the batch: mean, invstd and, when var is not NULL, the biased
 * variance. */
static lm_status batch_stats(const lm_backend *be, const lm_norm_geom *geom, const lm_tensor *x,
                             double eps, lm_tensor **mean, lm_tensor **invstd, lm_tensor **var)
{
    const char *op = "batch_norm";
    const int64_t c = geom->channels;
    *mean = lm__new(op, 1, &c, x->dtype, x->storage->device);
    *invstd = lm__new(op, 1, &c, x->dtype, x->storage->device);
    if (var) *var = lm__new(op, 1, &c, x->dtype, x->storage->device);
    if (*mean && *invstd && (!var || *var)) {
        be->norm->batch_norm_stats(geom, x, eps, *mean, *invstd, var ? *var : NULL);
        return LM_OK;
    }
    lm_release(*mean);
    lm_release(*invstd);
    *mean = *invstd = NULL;
    if (var) {
        lm_release(*var);
        *var = NULL;
    }
    return lm_last_status();
}

/* Eval statistics: the running mean as it is and 1/sqrt(running_var + eps). */
static lm_status running_stats(const lm_tensor *running_mean, const lm_tensor *running_var,
                               double eps, lm_tensor **mean, lm_tensor **invstd)
{
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *shifted = lm_add_scalar(running_var, eps);
    *invstd = shifted ? lm_rsqrt(shifted) : NULL;
    *mean = *invstd ? lm_contiguous(running_mean) : NULL;
    lm_set_grad_enabled(prev);
    lm_release(shifted);
    if (*mean) return LM_OK;
    lm_release(*invstd);
    *invstd = NULL;
    return lm_last_status();
}

lm_tensor *lm_batch_norm(const lm_tensor *x, lm_tensor *running_mean, lm_tensor *running_var,
                         const lm_tensor *weight, const lm_tensor *bias, bool training,
                         double momentum, double eps)
{
    const char *op = "batch_norm";
    if (!lm__arg(x, op) || !float_dtype(op, "input", x)) return NULL;
    if (x->ndim < 2)
        LM_FAIL(LM_ERR_SHAPE, "batch_norm: input must be [N, C, *], got shape %s", lm__shp(x).s);
    const int64_t channels = x->shape[1];
    if (!running_mean != !running_var)
        LM_FAIL(LM_ERR_ARG, "batch_norm: running_mean and running_var must be given together "
                "(input %s)", lm__shp(x).s);
    if (!training && !running_mean)
        LM_FAIL(LM_ERR_ARG, "batch_norm: eval mode needs running_mean and running_var "
                "(input %s)", lm__shp(x).s);
    if (!check_param(op, "weight", weight, x, 1, &channels) ||
        !check_param(op, "bias", bias, x, 1, &channels) ||
        !check_param(op, "running_mean", running_mean, x, 1, &channels) ||
        !check_param(op, "running_var", running_var, x, 1, &channels))
        return NULL;
    const lm_norm_geom geom = {x->shape[0], channels, lm__shape_numel(x->ndim - 2, x->shape + 2),
                               1};
    if (training && geom.outer * geom.inner <= 1)
        LM_FAIL(LM_ERR_SHAPE, "batch_norm: expected more than 1 value per channel when training, "
                "got input %s", lm__shp(x).s);
    const lm_backend *be = lm__backend(x->storage->device, op);
    if (!be) return NULL;
    norm_inputs in;
    if (!norm_inputs_make(&in, x, weight, bias, channels)) return NULL;
    /* var: the batch variance, when the running estimates are to be updated. */
    lm_tensor *mean = NULL, *invstd = NULL, *var = NULL, *y = NULL;
    const bool update = training && running_mean;
    lm_status st = training ? batch_stats(be, &geom, in.x, eps, &mean, &invstd,
                                          update ? &var : NULL)
                            : running_stats(running_mean, running_var, eps, &mean, &invstd);
    if (st) goto fail;
    y = lm__new(op, x->ndim, x->shape, x->dtype, x->storage->device);
    if (!y) goto fail;
    if (lm_numel(x) > 0) be->norm->batch_norm_forward(&geom, in.x, mean, invstd, in.w, in.b, y);
    const lm_tensor *inputs[3] = {x, weight, bias};
    if (lm__needs_grad(3, inputs)) {
        lm_node *n = lm__record(&batch_norm_grad, y, 3, inputs);
        if (!n || lm__save(n, in.x) || lm__save(n, in.w) || lm__save(n, mean) ||
            lm__save(n, invstd))
            goto fail;
        n->ip[0] = geom.outer;
        n->ip[1] = geom.channels;
        n->ip[2] = geom.inner;
        n->ip[3] = training;
    }
    /* Last, so that a failure above leaves the running estimates untouched. */
    if (update && update_running(running_mean, running_var, mean, var,
                                 geom.outer * geom.inner, momentum) != LM_OK)
        goto fail;
    lm_release(mean);
    lm_release(invstd);
    lm_release(var);
    norm_inputs_release(&in);
    return y;
fail:
    lm_release(y);
    lm_release(mean);
    lm_release(invstd);
    lm_release(var);
    norm_inputs_release(&in);
    return NULL;
}

/* ---- dropout --------------------------------------------------------------------------------- */

/* Saved: 0 the mask, 0 or 1/(1-p) per element. */
static lm_status dropout_backward(lm_node *node, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *mask = lm__saved(node, 0);
    if (!mask) return lm_last_status();
    gi[0] = lm_mul(g, mask);
    return gi[0] ? LM_OK : lm_last_status();
}

static const lm_grad_op dropout_grad = {"dropout", dropout_backward, false};

lm_tensor *lm_dropout(const lm_tensor *x, double p, bool training)
{
    const char *op = "dropout";
    if (!lm__arg(x, op)) return NULL;
    if (!(p >= 0.0 && p <= 1.0))
        LM_FAIL(LM_ERR_ARG, "dropout: probability p must be in [0, 1], got %g (input %s)", p,
                lm__shp(x).s);
    if (!float_dtype(op, "input", x)) return NULL;
    /* As PyTorch: the input itself, which keeps its own history. */
    if (!training || p == 0.0) return lm_retain((lm_tensor *)x);
    /* Kept elements are scaled by 1/(1-p) in the mask itself, so that forward and backward are
     * one multiplication each; p == 1 keeps nothing and the scale is never needed. */
    bool prev = lm_set_grad_enabled(false);
    lm_tensor *mask = lm__new(op, x->ndim, x->shape, x->dtype, x->storage->device);
    lm_status st = mask ? lm_bernoulli_(mask, 1.0 - p) : lm_last_status();
    if (!st && p < 1.0) st = lm_mul_scalar_(mask, 1.0 / (1.0 - p));
    lm_tensor *y = st ? NULL : lm_mul(x, mask);
    lm_set_grad_enabled(prev);
    if (y && lm__needs_grad(1, &x)) {
        lm_node *n = lm__record(&dropout_grad, y, 1, &x);
        if (!n || lm__save(n, mask)) {
            lm_release(y);
            y = NULL;
        }
    }
    lm_release(mask);
    return y;
}

/* ---- embedding ------------------------------------------------------------------------------- */

/* ip[0]: padding_idx. Saved: 0 the indices, contiguous and flat. */
static lm_status embedding_backward(lm_node *node, const lm_tensor *g, lm_tensor **gi)
{
    const char *op = "embedding";
    const lm_tensor *idx = lm__saved(node, 0);
    if (!idx) return lm_last_status();
    const lm_backend *be = lm__backend(g->storage->device, op);
    if (!be) return lm_last_status();
    lm_tensor *gw = lm__new(op, 2, node->inputs[0].shape, g->dtype, g->storage->device);
    lm_tensor *gc = gw ? lm_contiguous(g) : NULL;
    if (!gc) {
        lm_release(gw);
        return lm_last_status();
    }
    if (lm_numel(gw) > 0) {
        const int64_t dim = gw->shape[1];
        lm_tensor *g2 = lm__view_of(gc, 2, (const int64_t[]){lm_numel(idx), dim},
                                    (const int64_t[]){dim, 1}, gc->offset);
        if (!g2) {
            lm_release(gc);
            lm_release(gw);
            return lm_last_status();
        }
        be->norm->embedding_backward(gw, g2, idx, node->ip[0]);
        lm_release(g2);
    }
    lm_release(gc);
    gi[0] = gw;
    return LM_OK;
}

static const lm_grad_op embedding_grad = {"embedding", embedding_backward, false};

lm_tensor *lm_embedding(const lm_tensor *weight, const lm_tensor *indices, int64_t padding_idx)
{
    const char *op = "embedding";
    if (!lm__arg(weight, op) || !lm__arg(indices, op)) return NULL;
    if (weight->ndim != 2)
        LM_FAIL(LM_ERR_SHAPE, "embedding: weight must be 2-D [V, D], got shape %s",
                lm__shp(weight).s);
    if (indices->dtype != LM_I64)
        LM_FAIL(LM_ERR_DTYPE, "embedding: indices must be i64, got %s (shape %s)",
                lm_dtype_name(indices->dtype), lm__shp(indices).s);
    if (indices->ndim >= LM_MAX_DIMS)
        LM_FAIL(LM_ERR_SHAPE, "embedding: indices of shape %s leave no room for the embedding dim "
                "(at most %d dims)", lm__shp(indices).s, LM_MAX_DIMS);
    if (weight->storage->device != indices->storage->device)
        LM_FAIL(LM_ERR_ARG, "embedding: weight and indices are on different devices (shapes %s "
                "and %s)", lm__shp(weight).s, lm__shp(indices).s);
    const int64_t vocab = weight->shape[0], dim = weight->shape[1], n = lm_numel(indices);
    if (padding_idx >= vocab)
        LM_FAIL(LM_ERR_ARG, "embedding: padding_idx %lld is out of range for a vocabulary of "
                "%lld rows (weight %s)", (long long)padding_idx, (long long)vocab,
                lm__shp(weight).s);
    const lm_backend *be = lm__backend(weight->storage->device, op);
    if (!be) return NULL;
    lm_tensor *ic = lm_contiguous(indices);
    lm_tensor *flat = ic ? lm__view_of(ic, 1, &n, (const int64_t[]){1}, ic->offset) : NULL;
    lm_release(ic);
    if (!flat) return NULL;
    lm_tensor *y = NULL, *y2 = NULL;
    if (n > 0) {
        int64_t lo, hi;
        be->index->index_range(flat, &lo, &hi);
        if (lo < 0 || hi >= vocab) {
            lm__error(LM_ERR_INDEX, "embedding: index %lld is out of range for a vocabulary of "
                      "%lld rows (weight %s)", (long long)(lo < 0 ? lo : hi), (long long)vocab,
                      lm__shp(weight).s);
            goto fail;
        }
    }
    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, indices->shape, sizeof(int64_t) * (size_t)indices->ndim);
    shape[indices->ndim] = dim;
    y = lm__new(op, indices->ndim + 1, shape, weight->dtype, weight->storage->device);
    if (!y) goto fail;
    if (n * dim > 0) {
        y2 = lm__view_of(y, 2, (const int64_t[]){n, dim}, (const int64_t[]){dim, 1}, 0);
        if (!y2) goto fail;
        be->index->index_select(y2, weight, 0, flat);
        lm_release(y2);
    }
    if (lm__needs_grad(1, &weight)) {
        lm_node *node = lm__record(&embedding_grad, y, 1, &weight);
        if (!node || lm__save(node, flat)) goto fail;
        node->ip[0] = padding_idx;
    }
    lm_release(flat);
    return y;
fail:
    lm_release(y);
    lm_release(flat);
    return NULL;
}
