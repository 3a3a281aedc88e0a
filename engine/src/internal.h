/* internal.h — what the engine's own files share and users never see: error helpers, tensor
 * construction, dims and broadcasting helpers, the element iterator and the backend lookup.
 * Symbols here use the lm__ prefix and hidden visibility. */
#ifndef LUMEN_INTERNAL_H
#define LUMEN_INTERNAL_H

#include "lumen.h"

#include <stdarg.h>

#define LM_INTERNAL __attribute__((visibility("hidden")))

/* Below this many elements a loop runs on one thread: starting the team costs more. */
#define LM_PARALLEL_GRAIN 32768

/* ---- errors ------------------------------------------------------------------------------- */

/* Sets the thread-local error and returns code. fmt starts with the op name: "add: ...". */
LM_INTERNAL lm_status lm__error(lm_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Fails (and returns NULL) from a function returning a tensor. */
#define LM_FAIL(code, ...) \
    do { lm__error((code), __VA_ARGS__); return NULL; } while (0)
/* Sets "op: NULL tensor argument" unless an earlier error is pending (so chains keep the first
 * message). Returns false when t is NULL. */
LM_INTERNAL bool lm__arg(const lm_tensor *t, const char *op);

/* A shape rendered as "[2,3]" in a buffer that lives until the end of the full expression:
 * lm__error(..., "%s", lm__shp(t).s). */
typedef struct { char s[128]; } lm_shapebuf;
LM_INTERNAL lm_shapebuf lm__shp(const lm_tensor *t);
LM_INTERNAL lm_shapebuf lm__shp_raw(int ndim, const int64_t *shape);

/* ---- memory and construction -------------------------------------------------------------- */

/* 64-byte aligned; honours lm_debug_fail_alloc_after. Sets LM_ERR_MEMORY on failure. */
LM_INTERNAL void *lm__malloc(size_t nbytes);
LM_INTERNAL void lm__free(void *p);
LM_INTERNAL lm_storage *lm__storage_new(size_t nbytes, lm_device dev);
LM_INTERNAL void lm__storage_release(lm_storage *s);

/* A new contiguous tensor with uninitialised memory; validates the shape (op names the caller
 * in messages). */
LM_INTERNAL lm_tensor *lm__new(const char *op, int ndim, const int64_t *shape, lm_dtype dt,
                               lm_device dev);
/* A view of base's storage with the given geometry; the caller ensures it stays in bounds. */
LM_INTERNAL lm_tensor *lm__view_of(const lm_tensor *base, int ndim, const int64_t *shape,
                                   const int64_t *strides, int64_t offset);
/* Contiguous strides for a shape. */
LM_INTERNAL void lm__contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
LM_INTERNAL int64_t lm__shape_numel(int ndim, const int64_t *shape);

/* ---- dims, shapes, dtypes ------------------------------------------------------------------ */

/* Wraps a possibly negative dim into [0, ndim); returns -1 with an error naming op otherwise.
 * For ndim == 0, dims 0 and -1 are accepted as PyTorch does (they return 0). */
LM_INTERNAL int lm__wrap_dim(int dim, int ndim, const char *op);
/* Turns a dims list into a bit mask of reduced dims (all dims when ndims == 0). Rejects
 * repeated dims. Returns false with an error. */
LM_INTERNAL bool lm__dims_mask(const char *op, const lm_tensor *t, int ndims, const int *dims,
                               uint32_t *mask);
/* The broadcast of two shapes, or an error "op: shapes [..] and [..] cannot be broadcast". */
LM_INTERNAL lm_status lm__broadcast_shapes(const char *op, int na, const int64_t *sa, int nb,
                                           const int64_t *sb, int *nout, int64_t *out);
/* A view of t expanded to shape (t must be broadcastable to it). */
LM_INTERNAL lm_tensor *lm__expand_to(const lm_tensor *t, int ndim, const int64_t *shape);

/* Reading and writing one element of any dtype as a double (slow paths, printing, tests). */
LM_INTERNAL double lm__load(const void *p, lm_dtype dt);
LM_INTERNAL void lm__store(void *p, lm_dtype dt, double v);
/* Float to integer conversion of NaN or out-of-range values is undefined in C: NaN gives 0 and
 * values beyond the i64 range saturate (PyTorch leaves these results unspecified). */
static inline int64_t lm__f2i(double v)
{
    if (v != v) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}
/* Address of the element at a flat C-order index of t (any strides). */
LM_INTERNAL char *lm__elem_ptr(const lm_tensor *t, int64_t flat);

/* Does writing into t touch one memory location from several indices (expanded dims)? */
LM_INTERNAL bool lm__has_internal_overlap(const lm_tensor *t);
/* How the memory of a and b relates: none, exactly the same elements in the same layout, or a
 * partial overlap (an in-place op must refuse the last). */
typedef enum { LM_OVERLAP_NONE, LM_OVERLAP_FULL, LM_OVERLAP_PARTIAL } lm_overlap;
LM_INTERNAL lm_overlap lm__overlap(const lm_tensor *a, const lm_tensor *b);
/* Checks that out can be written in place given inputs (NULL entries are skipped). Sets the
 * error naming op. */
LM_INTERNAL lm_status lm__check_inplace(const char *op, const lm_tensor *out, int n,
                                        const lm_tensor *const *inputs);
/* Marks an in-place write for autograd's version check. */
LM_INTERNAL void lm__bump_version(lm_tensor *t);

/* ---- the element iterator ------------------------------------------------------------------ */

/* A loop over a 1-D run of n elements: data[k] is operand k's first element, strides[k] its
 * stride in BYTES. ctx is the caller's. */
typedef void (*lm_loop_fn)(char **data, const int64_t *strides, int64_t n, void *ctx);

#define LM_ITER_MAX_OPS 4
/* Calls fn over every element of nops tensors that all have ops[0]'s shape (expand inputs
 * first), merging dims that are contiguous in every operand so the inner runs are as long as
 * possible, and splitting the work across OpenMP threads when there are at least
 * LM_PARALLEL_GRAIN elements (parallel = false forces one thread, e.g. for scatters). */
LM_INTERNAL void lm__iter(int nops, const lm_tensor *const *ops, lm_loop_fn fn, void *ctx,
                          bool parallel);

/* ---- backends ------------------------------------------------------------------------------ */

/* Each op family declares its kernel table in its own header (elementwise.h, reduce.h, ...);
 * a backend fills one table per family. Op code asks for the tensor's backend and calls through
 * these tables: no device checks in op code. */
struct lm_copy_kernels;
struct lm_elementwise_kernels;
struct lm_reduce_kernels;
struct lm_blas_kernels;
struct lm_index_kernels;
struct lm_random_kernels;
struct lm_conv_kernels;
struct lm_norm_kernels;
struct lm_loss_kernels;
struct lm_optim_kernels;

typedef struct lm_backend {
    const char *name;
    lm_device device;
    const struct lm_copy_kernels *copy;
    const struct lm_elementwise_kernels *elementwise;
    const struct lm_reduce_kernels *reduce;
    const struct lm_blas_kernels *blas;
    const struct lm_index_kernels *index;
    const struct lm_random_kernels *random;
    const struct lm_conv_kernels *conv;     /* convolutions and pooling (nn_conv.c, nn_pool.c) */
    const struct lm_norm_kernels *norm;     /* normalisations, dropout, embedding (nn_layers.c) */
    const struct lm_loss_kernels *loss;     /* softmax, losses, attention (nn_loss.c) */
    const struct lm_optim_kernels *optim;   /* fused optimizer steps (optim.c) */
} lm_backend;

/* The backend of a device, or NULL with an LM_ERR_UNSUPPORTED error naming op. */
LM_INTERNAL const lm_backend *lm__backend(lm_device dev, const char *op);

/* ---- copy kernels (copy.c) ----------------------------------------------------------------- */

struct lm_copy_kernels {
    /* dst and src have the same shape; any dtypes (converting), any strides. */
    void (*copy)(lm_tensor *dst, const lm_tensor *src);
    /* Every element of dst (any strides) gets value converted to dst's dtype. */
    void (*fill)(lm_tensor *dst, double value);
};

/* ---- threads ------------------------------------------------------------------------------- */

LM_INTERNAL int lm__threads(void);

#endif /* LUMEN_INTERNAL_H */
