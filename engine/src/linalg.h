/* linalg.h — the kernel table of the linear-algebra family (struct lm_blas_kernels): a general
 * matrix product and its batched form, as linalg.c calls them and a backend supplies them (the
 * CPU one on OpenBLAS in cpu/blas_cpu.c, later one on cuBLAS).
 *
 * Matrices are row-major with a leading dim, as in CBLAS with CblasRowMajor. op(A) is the
 * [m,k] matrix the product uses: A itself, stored [m,k] with row stride lda >= max(1,k), or,
 * with trans_a, the transpose of an A stored [k,m] with lda >= max(1,m). The same holds for B
 * ([k,n] or, transposed, stored [n,k]). C is [m,n] with ldc >= max(1,n). The op layer finds
 * these layouts in the views it is given, so a transposed view reaches BLAS without a copy. */
#ifndef LUMEN_LINALG_H
#define LUMEN_LINALG_H

#include "internal.h"

/* C = alpha * op(A) op(B) + beta * C. Pointers address element [0,0] of each matrix; leading
 * dims count elements. m, n or k may be 0 (k == 0 gives C = beta * C; beta == 0 writes zeros
 * without reading C). dtype is LM_F32 or LM_F64, the same for A, B and C. */
typedef struct lm_gemm {
    lm_dtype dtype;
    bool trans_a, trans_b;
    int64_t m, n, k;
    double alpha, beta;
    const void *a;
    int64_t lda;
    const void *b;
    int64_t ldb;
    void *c;
    int64_t ldc;
} lm_gemm;

/* The batch of a batched product: ndim batch dims of the given shape; product number
 * (i0, i1, ...) reads A at a + sum(i_d * stride_a[d]) and likewise B and C. Strides count
 * elements; a stride of 0 reuses one matrix for every index of that dim (broadcasting), so an
 * operand shared by all products is never copied. C's matrices must not overlap. */
typedef struct lm_gemm_batch {
    int ndim;
    int64_t shape[LM_MAX_DIMS];
    int64_t stride_a[LM_MAX_DIMS];
    int64_t stride_b[LM_MAX_DIMS];
    int64_t stride_c[LM_MAX_DIMS];
} lm_gemm_batch;

struct lm_blas_kernels {
    /* One product. Fails (LM_ERR_UNSUPPORTED, message naming op) when a size or leading dim
     * exceeds what the backend's BLAS can address. */
    lm_status (*gemm)(const char *op, const lm_gemm *g);
    /* The same product for every batch index, g's pointers being those of index (0, ..., 0).
     * The backend decides how to spread the work (over batches or inside each product). */
    lm_status (*gemm_batched)(const char *op, const lm_gemm *g, const lm_gemm_batch *batch);
};

/* The BLAS layout of a rows x cols matrix whose element (i, j) lies at i*rs + j*cs: row-major
 * with leading dim ld, or (trans) the row-major transpose; false when neither fits and the
 * matrix needs a contiguous copy. Shared by matmul and linear. */
LM_INTERNAL bool lm__blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, bool *trans,
                                 int64_t *ld);

#endif /* LUMEN_LINALG_H */
