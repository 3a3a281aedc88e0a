/* linalg.c — lm_matmul: torch.matmul's shape rules on top of the backend's gemm kernels.
 *
 * Each operand is read as a stack of matrices: leading batch dims, then [rows, cols]. A 1-D
 * first operand is a single row and a 1-D second operand a single column; their dim is dropped
 * from the result. Batch dims broadcast as NumPy's. A matrix whose strides form a row-major
 * layout (column stride 1) or a transposed one (row stride 1) goes to BLAS where it lies, so
 * a.T, b.T and row slices cost no copy; any other layout is copied once, broadcast batch dims
 * excluded, so an expanded operand is never materialised. */
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

/* Finds a BLAS layout for a rows x cols matrix with the given strides. The stride of a size-1
 * dim is arbitrary in a view (unsqueeze, select), so it is replaced by one that gives a legal
 * leading dim (BLAS wants ld >= max(1, cols) row-major, ld >= max(1, rows) transposed). */
static bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, bool *trans,
                        int64_t *ld)
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
    if (blas_layout(o->rows, o->cols, rs, cs, &o->trans, &o->ld)) return true;
    o->copy = compact_copy(t, o->nbatch);
    if (!o->copy) return false;
    o->t = o->copy;
    matrix_strides(o->copy, first, &rs, &cs);
    /* Contiguous strides always give the row-major layout. */
    blas_layout(o->rows, o->cols, rs, cs, &o->trans, &o->ld);
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

lm_tensor *lm_matmul(const lm_tensor *a, const lm_tensor *b)
{
    if (!lm__arg(a, "matmul") || !lm__arg(b, "matmul")) return NULL;
    int nbatch, ndim;
    int64_t bshape[LM_MAX_DIMS], shape[LM_MAX_DIMS];
    if (!matmul_shapes(a, b, &nbatch, bshape, &ndim, shape)) return NULL;
    const lm_backend *be = lm__backend(a->storage->device, "matmul");
    if (!be) return NULL;
    lm_tensor *c = lm__new("matmul", ndim, shape, a->dtype, a->storage->device);
    if (!c || lm_numel(c) == 0) return c;
    if (matmul_compute(be, a, b, c, nbatch, bshape) != LM_OK) {
        lm_release(c);
        return NULL;
    }
    return c;
}
