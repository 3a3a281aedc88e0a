/* linalg.c — lm_matmul: torch.matmul's shape rules on top of the backend's gemm kernels.
 *
 * Each operand is read as a stack of matrices: leading batch dims, then [rows, cols]. A 1-D
 * first operand is a single row and a 1-D second operand a single column; their dim is dropped
 * from the result. Batch dims broadcast as NumPy's. A matrix whose strides form a row-major
 * layout (column stride 1) or a transposed one (row stride 1) goes to BLAS where it lies, so
 * a.T, b.T and row slices cost no copy; any other layout is copied once, broadcast batch dims
 * excluded, so an expanded operand is never materialised.
 *
 * Backward: grad_a = g · bᵀ and grad_b = aᵀ · g, with the transposes taken as views so that
 * they reach BLAS without copies (one gemm per gradient for matrices). */
#include "autograd.h"
#include "linalg.h"

#include <string.h>

/* One operand as the product reads it. */
typedef struct {
    const lm_tensor *t; /* the tensor read: the operand, or copy */
    lm_tensor *copy;    /* a compact copy when the operand's strides do not suit BLAS */
    int nbatch;         /* leading dims of t that are batch dims */
    int64_t rows, cols; /* op(X): [M,K] for the first operand, [K,N] for the second */
    bool trans;         /* stored as the row-major transpose of op(X) */
    int64_t ld;         /* leading dim of the stored matrix */
} operand;

static int64_t max1(int64_t v) { return v > 1 ? v : 1; }

/* The row and column strides of t's matrices; a 1-D operand is one row (first) or one column
 * (second), whose other stride never matters. */
static void matrix_strides(const lm_tensor *t, bool first, int64_t *rs, int64_t *cs)
{
    if (t->ndim == 1) {
        *rs = first ? 0 : t->strides[0];
        *cs = first ? t->strides[0] : 0;
    } else {
        *rs = t->strides[t->ndim - 2];
        *cs = t->strides[t->ndim - 1];
    }
}

/* See linalg.h. The stride of a size-1 dim is arbitrary in a view (unsqueeze, select), so it is
 * replaced by one that gives a legal leading dim (BLAS wants ld >= max(1, cols) row-major,
 * ld >= max(1, rows) transposed). */
bool lm__blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, bool *trans, int64_t *ld)
{
    if (cs == 1 || cols == 1) {
        int64_t l = rows == 1 ? max1(cols) : rs;
        if (l >= max1(cols)) {
            *trans = false;
            *ld = l;
            return true;
        }
    }
    if (rs == 1 || rows == 1) {
        int64_t l = cols == 1 ? max1(rows) : cs;
        if (l >= max1(rows)) {
            *trans = true;
            *ld = l;
            return true;
        }
    }
    return false;
}

/* A contiguous copy of t in which batch dims of stride 0 (broadcast) keep size 1: broadcasting
 * expands them again, and the copy holds each distinct matrix once. */
static lm_tensor *compact_copy(const lm_tensor *t, int nbatch)
{
    int64_t shape[LM_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++)
        shape[d] = d < nbatch && t->strides[d] == 0 ? 1 : t->shape[d];
    lm_tensor *v = lm__view_of(t, t->ndim, shape, t->strides, t->offset);
    if (!v) return NULL;
    lm_tensor *c = lm_contiguous(v);
    lm_release(v);
    return c;
}

static bool operand_init(operand *o, const lm_tensor *t, bool first)
{
    o->t = t;
    o->copy = NULL;
    o->nbatch = t->ndim > 2 ? t->ndim - 2 : 0;
    if (t->ndim == 1) {
        o->rows = first ? 1 : t->shape[0];
        o->cols = first ? t->shape[0] : 1;
    } else {
        o->rows = t->shape[t->ndim - 2];
        o->cols = t->shape[t->ndim - 1];
    }
    int64_t rs, cs;
    matrix_strides(t, first, &rs, &cs);
    if (lm__blas_layout(o->rows, o->cols, rs, cs, &o->trans, &o->ld)) return true;
    o->copy = compact_copy(t, o->nbatch);
    if (!o->copy) return false;
    o->t = o->copy;
    matrix_strides(o->copy, first, &rs, &cs);
    /* Contiguous strides always give the row-major layout. */
    lm__blas_layout(o->rows, o->cols, rs, cs, &o->trans, &o->ld);
    return true;
}

/* The stride of o's batch dim that lines up with dim d of an nout-dim batch shape; 0 where o
 * has no such dim or broadcasts it. */
static int64_t batch_stride(const operand *o, int d, int nout)
{
    int j = d - (nout - o->nbatch);
    return j < 0 || o->t->shape[j] == 1 ? 0 : o->t->strides[j];
}

/* Fills the batch description: size-1 dims dropped, and neighbouring dims merged where all
 * three operands step through them as one, so the kernel loops over as few dims as possible. */
static void batch_plan(lm_gemm_batch *bt, const operand *a, const operand *b, int nout,
                       const int64_t *shape, int64_t matrix_numel)
{
    int64_t sc[LM_MAX_DIMS], s = matrix_numel;
    for (int d = nout - 1; d >= 0; d--) {
        sc[d] = s;
        s *= shape[d];
    }
    bt->ndim = 0;
    for (int d = 0; d < nout; d++) {
        if (shape[d] == 1) continue;
        int64_t sa = batch_stride(a, d, nout), sb = batch_stride(b, d, nout);
        int n = bt->ndim;
        if (n > 0 && bt->stride_a[n - 1] == sa * shape[d] && bt->stride_b[n - 1] == sb * shape[d] &&
            bt->stride_c[n - 1] == sc[d] * shape[d]) {
            bt->shape[n - 1] *= shape[d];
        } else {
            bt->shape[n] = shape[d];
            bt->ndim++;
            n++;
        }
        bt->stride_a[n - 1] = sa;
        bt->stride_b[n - 1] = sb;
        bt->stride_c[n - 1] = sc[d];
    }
}

/* Checks the operands and computes the result's shape; the batch shape goes to bshape. */
static bool matmul_shapes(const lm_tensor *a, const lm_tensor *b, int *nbatch, int64_t *bshape,
                          int *ndim, int64_t *shape)
{
    if (a->ndim == 0 || b->ndim == 0) {
        lm__error(LM_ERR_SHAPE,
                  "matmul: both arguments need at least 1 dim, but they have %d and %d "
                  "(shapes %s and %s)",
                  a->ndim, b->ndim, lm__shp(a).s, lm__shp(b).s);
        return false;
    }
    if (!lm_dtype_is_float(a->dtype) || !lm_dtype_is_float(b->dtype)) {
        lm__error(LM_ERR_DTYPE,
                  "matmul: expected f32 or f64 operands, got %s and %s (shapes %s and %s)",
                  lm_dtype_name(a->dtype), lm_dtype_name(b->dtype), lm__shp(a).s, lm__shp(b).s);
        return false;
    }
    if (a->dtype != b->dtype) {
        lm__error(LM_ERR_DTYPE,
                  "matmul: expected both operands to have the same dtype, but got %s and %s "
                  "(shapes %s and %s); convert one with lm_to_dtype",
                  lm_dtype_name(a->dtype), lm_dtype_name(b->dtype), lm__shp(a).s, lm__shp(b).s);
        return false;
    }
    if (a->storage->device != b->storage->device) {
        lm__error(LM_ERR_ARG, "matmul: operands are on different devices (shapes %s and %s)",
                  lm__shp(a).s, lm__shp(b).s);
        return false;
    }
    int64_t k1 = a->shape[a->ndim - 1], k2 = b->shape[b->ndim > 1 ? b->ndim - 2 : 0];
    if (k1 != k2) {
        lm__error(LM_ERR_SHAPE, "matmul: shapes %s and %s cannot be multiplied (%lld != %lld)",
                  lm__shp(a).s, lm__shp(b).s, (long long)k1, (long long)k2);
        return false;
    }
    int na = a->ndim > 2 ? a->ndim - 2 : 0, nb = b->ndim > 2 ? b->ndim - 2 : 0;
    if (lm__broadcast_shapes("matmul", na, a->shape, nb, b->shape, nbatch, bshape) != LM_OK) {
        lm__error(LM_ERR_SHAPE, "matmul: the batch dims %s and %s of shapes %s and %s cannot be "
                  "broadcast",
                  lm__shp_raw(na, a->shape).s, lm__shp_raw(nb, b->shape).s, lm__shp(a).s,
                  lm__shp(b).s);
        return false;
    }
    *ndim = *nbatch;
    memcpy(shape, bshape, sizeof(int64_t) * (size_t)*nbatch);
    if (a->ndim > 1) shape[(*ndim)++] = a->shape[a->ndim - 2];
    if (b->ndim > 1) shape[(*ndim)++] = b->shape[b->ndim - 1];
    return true;
}

/* Computes c = a · b for checked operands; c is contiguous with the result's shape. */
static lm_status matmul_compute(const lm_backend *be, const lm_tensor *a, const lm_tensor *b,
                                lm_tensor *c, int nbatch, const int64_t *bshape)
{
    operand oa, ob;
    if (!operand_init(&oa, a, true)) return lm_last_status();
    if (!operand_init(&ob, b, false)) {
        lm_release(oa.copy);
        return lm_last_status();
    }
    lm_gemm g = {
        .dtype = c->dtype,
        .trans_a = oa.trans,
        .trans_b = ob.trans,
        .m = oa.rows,
        .n = ob.cols,
        .k = oa.cols,
        .alpha = 1.0,
        .beta = 0.0,
        .a = lm_data(oa.t),
        .lda = oa.ld,
        .b = lm_data(ob.t),
        .ldb = ob.ld,
        .c = lm_data(c),
        .ldc = max1(ob.cols),
    };
    lm_gemm_batch bt;
    batch_plan(&bt, &oa, &ob, nbatch, bshape, g.m * g.n);
    /* [B,M,K] · [K,N] with A's rows evenly spaced across the batch is one [B*M,K] · [K,N]
     * product: a single large gemm instead of B small ones (while B*M fits BLAS's int). */
    if (bt.ndim == 1 && bt.stride_b[0] == 0 && !oa.trans && bt.stride_a[0] == g.m * g.lda &&
        bt.shape[0] * g.m <= INT32_MAX) {
        g.m *= bt.shape[0];
        bt.ndim = 0;
    }
    lm_status st = bt.ndim == 0 ? be->blas->gemm("matmul", &g)
                                : be->blas->gemm_batched("matmul", &g, &bt);
    lm_release(oa.copy);
    lm_release(ob.copy);
    return st;
}

/* ---- backward ------------------------------------------------------------------------------ */

/* The transpose of the last two dims of t (a view), releasing t. */
static lm_tensor *mT(lm_tensor *t)
{
    lm_tensor *r = lm_transpose(t, -2, -1);
    lm_release(t);
    return r;
}

/* t without dim d (of size 1), releasing t. */
static lm_tensor *drop_dim(lm_tensor *t, int d)
{
    lm_tensor *r = t ? lm_squeeze(t, d < 0 ? d + t->ndim : d) : NULL;
    lm_release(t);
    return r;
}

/* t viewed (or copied) as [rows, cols] with cols its last size, releasing t. */
static lm_tensor *as_matrix(lm_tensor *t)
{
    lm_tensor *r = t ? lm_reshape(t, 2, (const int64_t[]){-1, t->shape[t->ndim - 1]}) : NULL;
    lm_release(t);
    return r;
}

/* A 1-D first operand is read as a row [1,K] and a 1-D second one as a column [K,1]; the
 * gradient gets their dropped dims back, [..., M, N], each operand's gradient is computed for
 * the matrix form and then loses the added dim again. Broadcast batch dims come back in the
 * gradient's shape and the engine sums them down to the operand's, except in the common case of
 * a batched a with a matrix b (a linear layer on [B, T, in]): there b's gradient, the sum of
 * aᵀ · g over the batch, is one product of the flattened [B*M, K]ᵀ and [B*M, N]. ip[0] and
 * ip[1] are the slots of the saved a and b (-1 when not saved: a is needed only for b's
 * gradient, and b for a's). */
static lm_status matmul_backward(lm_node *n, const lm_tensor *g, lm_tensor **gi)
{
    const lm_tensor *a = n->ip[0] >= 0 ? lm__saved(n, (int)n->ip[0]) : NULL;
    const lm_tensor *b = n->ip[1] >= 0 ? lm__saved(n, (int)n->ip[1]) : NULL;
    if ((n->ip[0] >= 0 && !a) || (n->ip[1] >= 0 && !b)) return lm_last_status();
    int na = n->inputs[0].ndim, nb = n->inputs[1].ndim;
    lm_tensor *g2 = nb == 1 ? lm_unsqueeze(g, g->ndim) : lm_retain((lm_tensor *)g);
    if (g2 && na == 1) {
        lm_tensor *r = lm_unsqueeze(g2, -2);
        lm_release(g2);
        g2 = r;
    }
    if (!g2) return lm_last_status();
    if (b && lm__input_needs_grad(n, 0)) {
        lm_tensor *bt = nb == 1 ? lm_unsqueeze(b, 0) : lm_transpose(b, -2, -1);
        lm_tensor *ga = bt ? lm_matmul(g2, bt) : NULL;
        lm_release(bt);
        gi[0] = na == 1 ? drop_dim(ga, -2) : ga;
    }
    if (a && lm__input_needs_grad(n, 1)) {
        lm_tensor *gb;
        if (na > 2 && nb <= 2) {
            lm_tensor *at = mT(as_matrix(lm_retain((lm_tensor *)a)));
            lm_tensor *gm = as_matrix(lm_retain(g2));
            gb = at && gm ? lm_matmul(at, gm) : NULL;
            lm_release(at);
            lm_release(gm);
        } else {
            lm_tensor *at = na == 1 ? lm_unsqueeze(a, 1) : lm_transpose(a, -2, -1);
            gb = at ? lm_matmul(at, g2) : NULL;
            lm_release(at);
        }
        gi[1] = nb == 1 ? drop_dim(gb, -1) : gb;
    }
    lm_release(g2);
    bool failed = (b && lm__input_needs_grad(n, 0) && !gi[0]) ||
                  (a && lm__input_needs_grad(n, 1) && !gi[1]);
    return failed ? lm_last_status() : LM_OK;
}

static const lm_grad_op matmul_grad = {"matmul", matmul_backward};

lm_tensor *lm_matmul(const lm_tensor *a, const lm_tensor *b)
{
    if (!lm__arg(a, "matmul") || !lm__arg(b, "matmul")) return NULL;
    int nbatch, ndim;
    int64_t bshape[LM_MAX_DIMS], shape[LM_MAX_DIMS];
    if (!matmul_shapes(a, b, &nbatch, bshape, &ndim, shape)) return NULL;
    const lm_backend *be = lm__backend(a->storage->device, "matmul");
    if (!be) return NULL;
    lm_tensor *c = lm__new("matmul", ndim, shape, a->dtype, a->storage->device);
    if (!c) return NULL;
    if (lm_numel(c) > 0 && matmul_compute(be, a, b, c, nbatch, bshape) != LM_OK) {
        lm_release(c);
        return NULL;
    }
    const lm_tensor *in[2] = {a, b};
    if (lm__needs_grad(2, in)) {
        lm_node *node = lm__record(&matmul_grad, c, 2, in);
        int slot = 0;
        lm_status st = node ? LM_OK : lm_last_status();
        if (!st) node->ip[0] = node->ip[1] = -1;
        if (!st && b->requires_grad && !(st = lm__save(node, a))) node->ip[0] = slot++;
        if (!st && a->requires_grad && !(st = lm__save(node, b))) node->ip[1] = slot++;
        if (st) {
            lm_release(c);
            return NULL;
        }
    }
    return c;
}
