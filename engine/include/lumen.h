/* lumen.h — the public API of Lumen's tensor engine (C11, prefix lm_).
 *
 * A short tour
 * ------------
 *   lm_tensor *x = lm_randn(LM_SHAPE(3, 4), LM_F32);     // new reference, or NULL on error
 *   lm_tensor *y = lm_mul_scalar(x, 2.0);
 *   lm_tensor *s = lm_sum(y, 0, NULL, false);           // reduce over every dim -> 0-dim tensor
 *   if (!s) fprintf(stderr, "%s\n", lm_last_error());  // "mul: ..." names the op and shapes
 *   char *txt = lm_to_string(s); puts(txt); free(txt);  // tensor(1.2345, dtype=f32)
 *   lm_release(s); lm_release(y); lm_release(x);
 *
 * Ownership: every function that returns an lm_tensor* returns a NEW reference that the caller
 * owns and gives back with lm_release(). Tensor arguments are borrowed. A function that fails
 * returns NULL (or a non-zero lm_status) and sets a thread-local message (lm_last_error()). Passing
 * NULL as a tensor argument fails without replacing the earlier message, so a chain of calls reports
 * the first error.
 *
 * Memory model: a tensor is a view (shape, strides, offset) onto a refcounted storage (bytes).
 * Views (reshape when possible, view, transpose, permute, narrow, slice, select, expand, squeeze,
 * unsqueeze, flatten) share the storage and copy nothing. Strides and the offset are counted in
 * ELEMENTS, not bytes. A stride of 0 (from expand) makes several indices address one element.
 *
 * Dims are 0-based everywhere and may be negative (-1 is the last dim), as in PyTorch.
 * Broadcasting and type promotion follow PyTorch: u8 < i64 < f32 < f64.
 */
#ifndef LUMEN_H
#define LUMEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LM_MAX_DIMS 8

/* ------------------------------------------------------------------------------------------ */
/* Types                                                                                        */

typedef enum lm_dtype {
    LM_F32 = 0, /* float, the default */
    LM_F64,     /* double: gradient checks, precise references */
    LM_I64,     /* int64_t: indices, labels */
    LM_U8,      /* uint8_t: images, masks, and the results of comparisons (0 or 1) */
    LM_DTYPE_COUNT
} lm_dtype;

typedef enum lm_device { LM_CPU = 0, LM_CUDA, LM_DEVICE_COUNT } lm_device;

/* Every failure has a code and a thread-local message (lm_last_error). */
typedef enum lm_status {
    LM_OK = 0,
    LM_ERR_ARG,         /* a bad argument: dim out of range, negative size, NULL pointer */
    LM_ERR_SHAPE,       /* shapes that do not fit: broadcast, matmul, view */
    LM_ERR_DTYPE,       /* a dtype the op does not accept */
    LM_ERR_INDEX,       /* an index out of range in the data of an index tensor */
    LM_ERR_MEMORY,      /* an allocation failed */
    LM_ERR_IO,          /* a file could not be read or written */
    LM_ERR_STATE,       /* an operation not allowed in this state (overlapping in-place write) */
    LM_ERR_UNSUPPORTED, /* valid, but not implemented for this device or dtype */
    LM_STATUS_COUNT
} lm_status;

/* Refcounted bytes. Several tensors (views) may share one storage. */
typedef struct lm_storage {
    void *data;        /* 64-byte aligned on the CPU */
    size_t nbytes;
    lm_device device;
    int refcount;
    uint32_t version;  /* bumped by every in-place write; autograd checks saved tensors with it */
    bool host_counted; /* for a host language's collector (the Lua binding sets it once it has
                          counted these bytes); the engine only initialises it to false */
} lm_storage;

struct lm_node;

/* A view onto a storage. Fields may be read directly; change them only through the API. */
typedef struct lm_tensor {
    lm_storage *storage;
    lm_dtype dtype;
    int ndim;                       /* 0 for a scalar tensor; at most LM_MAX_DIMS */
    int64_t shape[LM_MAX_DIMS];     /* sizes of each dim */
    int64_t strides[LM_MAX_DIMS];   /* in elements; 0 for an expanded (broadcast) dim */
    int64_t offset;                 /* in elements, from storage->data to element [0,...,0] */
    int refcount;
    /* autograd */
    bool requires_grad;
    struct lm_tensor *grad;         /* accumulated gradient, same shape, or NULL */
    struct lm_node *grad_fn;        /* the op that produced this tensor, NULL for leaves */
} lm_tensor;

/* Shape literal for C callers: lm_zeros(LM_SHAPE(2, 3), LM_F32). */
#define LM_SHAPE(...) \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
/* Dims literal: lm_sum(t, LM_DIMS(0, 2), true). */
#define LM_DIMS(...) \
    (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (const int[]){__VA_ARGS__}

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                       */

const char *lm_last_error(void);      /* message of the last failure on this thread ("" if none) */
lm_status lm_last_status(void);
void lm_clear_error(void);
const char *lm_status_name(lm_status s);

/* ------------------------------------------------------------------------------------------ */
/* Lifetime and inspection                                                                      */

lm_tensor *lm_retain(lm_tensor *t);   /* returns t with one more reference; NULL-safe */
void lm_release(lm_tensor *t);        /* NULL-safe */

const char *lm_dtype_name(lm_dtype dt);    /* "f32", "f64", "i64", "u8" */
size_t lm_dtype_size(lm_dtype dt);
bool lm_dtype_is_float(lm_dtype dt);
lm_dtype lm_promote_types(lm_dtype a, lm_dtype b);

int64_t lm_numel(const lm_tensor *t);
int64_t lm_size(const lm_tensor *t, int dim);       /* -1 and an error for a bad dim */
bool lm_is_contiguous(const lm_tensor *t);
void *lm_data(const lm_tensor *t);                  /* address of element [0,...,0] */
size_t lm_nbytes(const lm_tensor *t);               /* numel * element size */
/* Writes "[2,3]" into buf (always terminated); returns buf. */
char *lm_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);
/* The value of a one-element tensor as a double. */
lm_status lm_item(const lm_tensor *t, double *out);
/* The element at a full index (ndim entries, negatives allowed) as a double. */
lm_status lm_get(const lm_tensor *t, const int64_t *index, double *out);
lm_status lm_set(lm_tensor *t, const int64_t *index, double value);

/* ------------------------------------------------------------------------------------------ */
/* Creation                                                                                     */

lm_tensor *lm_empty(int ndim, const int64_t *shape, lm_dtype dt);
lm_tensor *lm_zeros(int ndim, const int64_t *shape, lm_dtype dt);
lm_tensor *lm_ones(int ndim, const int64_t *shape, lm_dtype dt);
lm_tensor *lm_full(int ndim, const int64_t *shape, double value, lm_dtype dt);
lm_tensor *lm_scalar(double value, lm_dtype dt);                 /* a 0-dim tensor */
/* Copies numel elements of type dt from data (C order). */
lm_tensor *lm_from_data(const void *data, lm_dtype dt, int ndim, const int64_t *shape);
/* Same shape and dtype as t, but new memory. */
lm_tensor *lm_empty_like(const lm_tensor *t);
lm_tensor *lm_zeros_like(const lm_tensor *t);
lm_tensor *lm_ones_like(const lm_tensor *t);
lm_tensor *lm_full_like(const lm_tensor *t, double value);
/* [start, end) by step, as torch.arange. */
lm_tensor *lm_arange(double start, double end, double step, lm_dtype dt);
lm_tensor *lm_linspace(double start, double end, int64_t steps, lm_dtype dt);
lm_tensor *lm_eye(int64_t n, int64_t m, lm_dtype dt);

/* Random numbers: Philox 4x32-10, counter based. Element i of a call gets a number that depends
 * only on (seed, offset at the call, i): the same for any thread count and on any device. Each
 * call advances the offset past the counters it used. */
void lm_manual_seed(uint64_t seed);
void lm_rng_get_state(uint64_t *seed, uint64_t *offset);
void lm_rng_set_state(uint64_t seed, uint64_t offset);
lm_tensor *lm_rand(int ndim, const int64_t *shape, lm_dtype dt);   /* uniform [0, 1) */
lm_tensor *lm_randn(int ndim, const int64_t *shape, lm_dtype dt);  /* standard normal */
/* Integers uniform in [low, high). */
lm_tensor *lm_randint(int64_t low, int64_t high, int ndim, const int64_t *shape, lm_dtype dt);
/* In place: uniform [lo, hi), normal (mean, std), Bernoulli(p) as 0/1. */
lm_status lm_uniform_(lm_tensor *t, double lo, double hi);
lm_status lm_normal_(lm_tensor *t, double mean, double std);
lm_status lm_bernoulli_(lm_tensor *t, double p);

/* ------------------------------------------------------------------------------------------ */
/* Views (no copy) and copies                                                                   */

/* One entry of shape may be -1 (inferred). view fails when the strides do not allow it;
 * reshape copies in that case. */
lm_tensor *lm_view(const lm_tensor *t, int ndim, const int64_t *shape);
lm_tensor *lm_reshape(const lm_tensor *t, int ndim, const int64_t *shape);
lm_tensor *lm_transpose(const lm_tensor *t, int dim0, int dim1);
lm_tensor *lm_t(const lm_tensor *t);                              /* transpose of a 0..2-D tensor */
lm_tensor *lm_permute(const lm_tensor *t, const int *dims);        /* t->ndim entries */
lm_tensor *lm_narrow(const lm_tensor *t, int dim, int64_t start, int64_t length);
/* Python-style slice start:end:step (step > 0); negative start/end count from the end and are
 * clamped like Python's. */
lm_tensor *lm_slice(const lm_tensor *t, int dim, int64_t start, int64_t end, int64_t step);
lm_tensor *lm_select(const lm_tensor *t, int dim, int64_t index); /* drops dim */
/* -1 in shape keeps that size; new leading dims may be added. */
lm_tensor *lm_expand(const lm_tensor *t, int ndim, const int64_t *shape);
lm_tensor *lm_expand_as(const lm_tensor *t, const lm_tensor *other);
lm_tensor *lm_squeeze(const lm_tensor *t, int dim);                /* no-op if size != 1 */
lm_tensor *lm_squeeze_all(const lm_tensor *t);
lm_tensor *lm_unsqueeze(const lm_tensor *t, int dim);
lm_tensor *lm_flatten(const lm_tensor *t, int start_dim, int end_dim);
/* Returns t itself (a new reference) when already contiguous, else a contiguous copy. */
lm_tensor *lm_contiguous(const lm_tensor *t);
lm_tensor *lm_clone(const lm_tensor *t);
/* Returns t itself (a new reference) when it already has dtype dt. */
lm_tensor *lm_to_dtype(const lm_tensor *t, lm_dtype dt);
/* Copies src into dst, broadcasting src to dst's shape and converting dtype. */
lm_status lm_copy_(lm_tensor *dst, const lm_tensor *src);
lm_status lm_fill_(lm_tensor *t, double value);
lm_status lm_zero_(lm_tensor *t);

/* ------------------------------------------------------------------------------------------ */
/* Element-wise ops, broadcasting, with type promotion                                          */

/* Binary: the result has the broadcast shape and the promoted dtype (div of integers gives f32;
 * comparisons give u8). */
lm_tensor *lm_add(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_sub(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_mul(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_div(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_pow(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_maximum(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_minimum(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_eq(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_ne(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_lt(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_le(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_gt(const lm_tensor *a, const lm_tensor *b);
lm_tensor *lm_ge(const lm_tensor *a, const lm_tensor *b);

/* With a number: an integer tensor stays integer unless the number has a fractional part
 * (then the result is f32). r-variants put the number first: rsub(t, s) = s - t. */
lm_tensor *lm_add_scalar(const lm_tensor *a, double s);
lm_tensor *lm_sub_scalar(const lm_tensor *a, double s);
lm_tensor *lm_rsub_scalar(const lm_tensor *a, double s);
lm_tensor *lm_mul_scalar(const lm_tensor *a, double s);
lm_tensor *lm_div_scalar(const lm_tensor *a, double s);
lm_tensor *lm_rdiv_scalar(const lm_tensor *a, double s);
lm_tensor *lm_pow_scalar(const lm_tensor *a, double s);
lm_tensor *lm_rpow_scalar(const lm_tensor *a, double s);
lm_tensor *lm_maximum_scalar(const lm_tensor *a, double s);
lm_tensor *lm_minimum_scalar(const lm_tensor *a, double s);
lm_tensor *lm_eq_scalar(const lm_tensor *a, double s);
lm_tensor *lm_ne_scalar(const lm_tensor *a, double s);
lm_tensor *lm_lt_scalar(const lm_tensor *a, double s);
lm_tensor *lm_le_scalar(const lm_tensor *a, double s);
lm_tensor *lm_gt_scalar(const lm_tensor *a, double s);
lm_tensor *lm_ge_scalar(const lm_tensor *a, double s);

/* Unary. Integer inputs of the float-valued functions (exp, log, ...) give f32. */
lm_tensor *lm_neg(const lm_tensor *a);
lm_tensor *lm_abs(const lm_tensor *a);
lm_tensor *lm_exp(const lm_tensor *a);
lm_tensor *lm_log(const lm_tensor *a);
lm_tensor *lm_log1p(const lm_tensor *a);
lm_tensor *lm_sqrt(const lm_tensor *a);
lm_tensor *lm_rsqrt(const lm_tensor *a);
lm_tensor *lm_sin(const lm_tensor *a);
lm_tensor *lm_cos(const lm_tensor *a);
lm_tensor *lm_tanh(const lm_tensor *a);
lm_tensor *lm_sigmoid(const lm_tensor *a);
lm_tensor *lm_relu(const lm_tensor *a);
lm_tensor *lm_gelu(const lm_tensor *a);        /* exact: x * Phi(x), with erf */
lm_tensor *lm_gelu_tanh(const lm_tensor *a);   /* the tanh approximation */
lm_tensor *lm_silu(const lm_tensor *a);
lm_tensor *lm_leaky_relu(const lm_tensor *a, double negative_slope);
/* Either bound may be -INFINITY / INFINITY for "none". */
lm_tensor *lm_clamp(const lm_tensor *a, double min, double max);
/* cond (u8 or any dtype: non-zero is true) ? a : b, all three broadcast together. */
lm_tensor *lm_where(const lm_tensor *cond, const lm_tensor *a, const lm_tensor *b);

/* In place: the result is written into a, which must already have the broadcast shape and a
 * dtype that can hold the result (an integer tensor cannot take a float result). A written-to
 * tensor whose elements overlap (an expanded view), or whose memory partly overlaps an input,
 * is an LM_ERR_STATE error, as in PyTorch. */
lm_status lm_add_(lm_tensor *a, const lm_tensor *b);
lm_status lm_sub_(lm_tensor *a, const lm_tensor *b);
lm_status lm_mul_(lm_tensor *a, const lm_tensor *b);
lm_status lm_div_(lm_tensor *a, const lm_tensor *b);
lm_status lm_pow_(lm_tensor *a, const lm_tensor *b);
lm_status lm_add_scalar_(lm_tensor *a, double s);
lm_status lm_sub_scalar_(lm_tensor *a, double s);
lm_status lm_mul_scalar_(lm_tensor *a, double s);
lm_status lm_div_scalar_(lm_tensor *a, double s);
lm_status lm_pow_scalar_(lm_tensor *a, double s);
lm_status lm_clamp_(lm_tensor *a, double min, double max);
lm_status lm_neg_(lm_tensor *a);
lm_status lm_exp_(lm_tensor *a);
lm_status lm_log_(lm_tensor *a);
lm_status lm_sqrt_(lm_tensor *a);
lm_status lm_relu_(lm_tensor *a);
lm_status lm_sigmoid_(lm_tensor *a);
lm_status lm_tanh_(lm_tensor *a);

/* ------------------------------------------------------------------------------------------ */
/* Reductions. ndims == 0 (dims may be NULL) reduces over every dim. keepdim keeps reduced dims
 * as size 1. Sums of integers give i64; mean/var/std/logsumexp/norm of integers give f32
 * (where PyTorch refuses them).                                                                */

lm_tensor *lm_sum(const lm_tensor *t, int ndims, const int *dims, bool keepdim);
lm_tensor *lm_mean(const lm_tensor *t, int ndims, const int *dims, bool keepdim);
lm_tensor *lm_prod(const lm_tensor *t, int ndims, const int *dims, bool keepdim);
/* correction 1 is the unbiased estimator (PyTorch's default), 0 the population one. */
lm_tensor *lm_var(const lm_tensor *t, int ndims, const int *dims, int64_t correction,
                  bool keepdim);
lm_tensor *lm_std(const lm_tensor *t, int ndims, const int *dims, int64_t correction,
                  bool keepdim);
lm_tensor *lm_logsumexp(const lm_tensor *t, int ndims, const int *dims, bool keepdim);
/* p-norm: p = 2 Euclidean, 1, INFINITY (max abs), 0 (count of non-zeros, as torch.norm), or any
 * p > 0; negative p is an error. */
lm_tensor *lm_norm(const lm_tensor *t, double p, int ndims, const int *dims, bool keepdim);
/* amax/amin: values only, over several dims. */
lm_tensor *lm_amax(const lm_tensor *t, int ndims, const int *dims, bool keepdim);
lm_tensor *lm_amin(const lm_tensor *t, int ndims, const int *dims, bool keepdim);
/* max/min along one dim: values and i64 indices (the first occurrence). Either out may be NULL. */
lm_status lm_max_dim(const lm_tensor *t, int dim, bool keepdim, lm_tensor **values,
                     lm_tensor **indices);
lm_status lm_min_dim(const lm_tensor *t, int dim, bool keepdim, lm_tensor **values,
                     lm_tensor **indices);
/* The largest / smallest element of the whole tensor, as a 0-dim tensor. */
lm_tensor *lm_max(const lm_tensor *t);
lm_tensor *lm_min(const lm_tensor *t);
/* i64 index of the max / min along dim; flatten_all = true gives the index into the flattened
 * tensor (dim and keepdim are then ignored). */
lm_tensor *lm_argmax(const lm_tensor *t, int dim, bool keepdim, bool flatten_all);
lm_tensor *lm_argmin(const lm_tensor *t, int dim, bool keepdim, bool flatten_all);

/* ------------------------------------------------------------------------------------------ */
/* Linear algebra                                                                               */

/* torch.matmul: 1-D·1-D dot, 2-D·2-D, 1-D promoted to a matrix and removed after, and batched
 * with broadcast batch dims. f32 and f64 (both operands the same dtype). Transposed views go to
 * BLAS without a copy. */
lm_tensor *lm_matmul(const lm_tensor *a, const lm_tensor *b);

/* ------------------------------------------------------------------------------------------ */
/* Indexing and joining                                                                         */

lm_tensor *lm_index_select(const lm_tensor *t, int dim, const lm_tensor *index);  /* i64 1-D */
lm_tensor *lm_gather(const lm_tensor *t, int dim, const lm_tensor *index);        /* i64 */
/* out = t; out[index[i][j]][j] += src[i][j] (dim 0), as torch.scatter_add. */
lm_tensor *lm_scatter_add(const lm_tensor *t, int dim, const lm_tensor *index,
                          const lm_tensor *src);
lm_status lm_scatter_add_(lm_tensor *t, int dim, const lm_tensor *index, const lm_tensor *src);
/* mask broadcasts to t's shape; elements where mask != 0 get value. */
lm_tensor *lm_masked_fill(const lm_tensor *t, const lm_tensor *mask, double value);
lm_status lm_masked_fill_(lm_tensor *t, const lm_tensor *mask, double value);
lm_tensor *lm_cat(int n, lm_tensor *const *tensors, int dim);
lm_tensor *lm_stack(int n, lm_tensor *const *tensors, int dim);
/* Views of consecutive pieces of split_size along dim (the last may be smaller). Writes at
 * most cap pieces into out; returns the number of pieces (which may exceed cap: then nothing is
 * written), or -1 on error. chunk cuts pieces of ceil(n/chunks), as torch.chunk: that may give
 * fewer than `chunks` pieces (6 into 4 gives 3); an empty dim gives `chunks` empty pieces. */
int lm_split(const lm_tensor *t, int64_t split_size, int dim, lm_tensor **out, int cap);
int lm_chunk(const lm_tensor *t, int chunks, int dim, lm_tensor **out, int cap);
/* index (i64) -> i64 tensor of shape index.shape + [num_classes]; num_classes < 0: max + 1. */
lm_tensor *lm_one_hot(const lm_tensor *index, int64_t num_classes);

/* ------------------------------------------------------------------------------------------ */
/* Neural-network ops (forward + backward). Layouts as PyTorch: images NCHW, sequences NCL,
 * Linear weights [out, in], conv weights [out, in/groups, kH, kW]. A NULL bias means none.     */

typedef enum lm_reduction { LM_REDUCTION_MEAN = 0, LM_REDUCTION_SUM, LM_REDUCTION_NONE } lm_reduction;

/* x [*, in] · wᵀ + b -> [*, out]. */
lm_tensor *lm_linear(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b);
/* x [N, C, L], w [O, C/groups, K]. */
lm_tensor *lm_conv1d(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b, int stride,
                     int padding, int dilation, int groups);
/* x [N, C, H, W], w [O, C/groups, kH, kW]; stride, padding, dilation are {h, w}. */
lm_tensor *lm_conv2d(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                     const int stride[2], const int padding[2], const int dilation[2], int groups);
/* x [N, C, H, W], w [C, O/groups, kH, kW] (PyTorch's layout for transposed convolutions). */
lm_tensor *lm_conv_transpose2d(const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                               const int stride[2], const int padding[2],
                               const int output_padding[2], const int dilation[2], int groups);
/* Pooling over [N, C, H, W] or [C, H, W]. A NULL stride means the kernel size, NULL padding 0,
 * NULL dilation 1. Max pooling's indices (i64, flat positions in each H*W plane as PyTorch) may
 * be NULL. */
lm_tensor *lm_max_pool2d(const lm_tensor *x, const int kernel[2], const int stride[2],
                         const int padding[2], const int dilation[2], bool ceil_mode,
                         lm_tensor **indices);
lm_tensor *lm_avg_pool2d(const lm_tensor *x, const int kernel[2], const int stride[2],
                         const int padding[2], bool ceil_mode, bool count_include_pad);
lm_tensor *lm_adaptive_avg_pool2d(const lm_tensor *x, int64_t out_h, int64_t out_w);
/* x [N, C, *]. Training: normalises with the batch statistics and updates running_mean/var in
 * place (unbiased variance, momentum as PyTorch) when they are given; eval: uses them. */
lm_tensor *lm_batch_norm(const lm_tensor *x, lm_tensor *running_mean, lm_tensor *running_var,
                         const lm_tensor *weight, const lm_tensor *bias, bool training,
                         double momentum, double eps);
/* Normalises over the last n_norm dims (whose sizes must equal normalized_shape). */
lm_tensor *lm_layer_norm(const lm_tensor *x, int n_norm, const int64_t *normalized_shape,
                         const lm_tensor *weight, const lm_tensor *bias, double eps);
lm_tensor *lm_group_norm(const lm_tensor *x, int64_t groups, const lm_tensor *weight,
                         const lm_tensor *bias, double eps);
/* Zeroes elements with probability p and scales the rest by 1/(1-p); identity when !training. */
lm_tensor *lm_dropout(const lm_tensor *x, double p, bool training);
/* weight [V, D], indices i64 of any shape -> [*, D]. Rows equal to padding_idx (>= 0) get no
 * gradient; padding_idx < 0 means none. */
lm_tensor *lm_embedding(const lm_tensor *weight, const lm_tensor *indices, int64_t padding_idx);
lm_tensor *lm_softmax(const lm_tensor *x, int dim);
lm_tensor *lm_log_softmax(const lm_tensor *x, int dim);
/* logits [N, C] or [N, C, d1...] (or [C]); target i64 class indices [N] / [N, d1...]. weight
 * (per class) may be NULL; targets equal to ignore_index contribute nothing (and are not counted
 * by the mean). */
lm_tensor *lm_cross_entropy(const lm_tensor *logits, const lm_tensor *target,
                            const lm_tensor *weight, int64_t ignore_index,
                            double label_smoothing, lm_reduction reduction);
lm_tensor *lm_nll_loss(const lm_tensor *log_probs, const lm_tensor *target,
                       const lm_tensor *weight, int64_t ignore_index, lm_reduction reduction);
lm_tensor *lm_mse_loss(const lm_tensor *input, const lm_tensor *target, lm_reduction reduction);
lm_tensor *lm_l1_loss(const lm_tensor *input, const lm_tensor *target, lm_reduction reduction);
lm_tensor *lm_smooth_l1_loss(const lm_tensor *input, const lm_tensor *target, double beta,
                             lm_reduction reduction);
/* input are probabilities in [0, 1]. */
lm_tensor *lm_binary_cross_entropy(const lm_tensor *input, const lm_tensor *target,
                                   const lm_tensor *weight, lm_reduction reduction);
lm_tensor *lm_binary_cross_entropy_with_logits(const lm_tensor *logits, const lm_tensor *target,
                                               const lm_tensor *weight,
                                               const lm_tensor *pos_weight,
                                               lm_reduction reduction);
/* q [*, L, E], k [*, S, E], v [*, S, Ev] -> [*, L, Ev]. attn_mask (broadcast to [*, L, S]) may be
 * NULL: a float mask is added to the scores, a u8 mask is boolean (0 = masked), as PyTorch 2;
 * is_causal masks j > i; scale <= 0 means 1/sqrt(E). Loss weights never get gradients. */
lm_tensor *lm_scaled_dot_product_attention(const lm_tensor *q, const lm_tensor *k,
                                           const lm_tensor *v, const lm_tensor *attn_mask,
                                           bool is_causal, double scale);

/* Fused optimizer steps: one pass over a parameter, its gradient and its state, in place, with
 * no graph. State tensors have the parameter's shape and dtype (zeros at the first step). */
typedef struct lm_sgd_opts {
    double lr, momentum, dampening, weight_decay;
    bool nesterov, maximize;
} lm_sgd_opts;
/* momentum_buf may be NULL when momentum == 0; `first` says the buffer is not initialised yet
 * (PyTorch sets it to the gradient at the first step). */
lm_status lm_sgd_step(lm_tensor *param, lm_tensor *momentum_buf, bool first, lm_sgd_opts o);

typedef struct lm_adam_opts {
    double lr, beta1, beta2, eps, weight_decay;
    bool decoupled_weight_decay; /* true: AdamW */
    bool amsgrad, maximize;
} lm_adam_opts;
/* step counts from 1 (the step being taken). max_exp_avg_sq only with amsgrad. */
lm_status lm_adam_step(lm_tensor *param, lm_tensor *exp_avg, lm_tensor *exp_avg_sq,
                       lm_tensor *max_exp_avg_sq, int64_t step, lm_adam_opts o);

typedef struct lm_rmsprop_opts {
    double lr, alpha, eps, weight_decay, momentum;
    bool centered, maximize;
} lm_rmsprop_opts;
/* momentum_buf with momentum > 0, grad_avg with centered; either may be NULL otherwise. */
lm_status lm_rmsprop_step(lm_tensor *param, lm_tensor *square_avg, lm_tensor *momentum_buf,
                          lm_tensor *grad_avg, lm_rmsprop_opts o);

/* ------------------------------------------------------------------------------------------ */
/* Autograd (define-by-run, reverse mode)                                                       */
/*
 * A tensor that requires grad and is an input of an op makes the op's result record a node
 * (t->grad_fn): the op, its inputs' nodes (or leaves), and the tensors its backward needs. A leaf
 * is a tensor without grad_fn; lm_backward accumulates gradients into the .grad of leaves that
 * require grad (and of non-leaves that called lm_retain_grad). In-place writes bump a storage
 * version; a backward that finds a saved tensor modified since it was saved fails, as PyTorch. */

/* Turns gradient tracking of a leaf on or off (a non-leaf cannot be turned off: detach it). */
lm_status lm_requires_grad_(lm_tensor *t, bool requires_grad);
bool lm_is_leaf(const lm_tensor *t);
/* Seeds with `seed` (same shape as t), or with 1 when seed is NULL and t has one element.
 * Frees the graph's saved tensors afterwards unless retain_graph. */
lm_status lm_backward(lm_tensor *t, const lm_tensor *seed, bool retain_graph);
/* A view of the same memory that is a leaf and does not require grad. */
lm_tensor *lm_detach(const lm_tensor *t);
/* Makes backward fill t->grad for a non-leaf too. */
lm_status lm_retain_grad(lm_tensor *t);
/* Drops t's gradient (t->grad becomes NULL), as PyTorch's zero_grad(set_to_none=True). */
void lm_zero_grad(lm_tensor *t);
/* Sets t's gradient to grad (same shape and dtype as t; a new reference is kept), or drops it
 * when grad is NULL. For optimizers and users that compute gradients themselves. */
lm_status lm_set_grad(lm_tensor *t, lm_tensor *grad);
/* Gradient mode for this thread: returns the previous mode, so scopes nest:
 *   bool prev = lm_set_grad_enabled(false); ...; lm_set_grad_enabled(prev); */
bool lm_set_grad_enabled(bool enabled);
bool lm_grad_enabled(void);
/* The module path recorded in new nodes ("encoder.layers.0.attn"); the Lua nn layer sets it
 * while a module's forward runs. NULL or "" clears it. Returns the previous scope (valid until the
 * next call). */
const char *lm_set_scope(const char *scope);
const char *lm_get_scope(void);
/* The graph that produced t as JSON for the dashboard:
 * {"nodes":[{"id":0,"op":"add","shape":[2,3],"dtype":"f32","scope":"0"}...],"edges":[[from,to]...]}
 * Leaves that require grad appear as op "leaf". Returns a malloc'd string (free() it). */
char *lm_graph_export(const lm_tensor *t);

/* ------------------------------------------------------------------------------------------ */
/* Threads                                                                                      */

/* Sets the threads of our OpenMP loops and of OpenBLAS together (they share one pool). */
void lm_set_num_threads(int n);
int lm_get_num_threads(void);

/* ------------------------------------------------------------------------------------------ */
/* Printing                                                                                     */

/* PyTorch-like text: "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], dtype=f32)".
 * Large tensors (more than 1000 elements) show 3 items at each edge of every dim and "...".
 * Returns a malloc'd string (free() it), or NULL on error. */
char *lm_to_string(const lm_tensor *t);
lm_status lm_print(const lm_tensor *t);   /* lm_to_string to stdout, with a newline */

/* ------------------------------------------------------------------------------------------ */
/* Files: .npy, safetensors, IDX (MNIST), CSV                                                   */
/* Failures name the path (LM_ERR_IO for a missing or unreadable file, LM_ERR_ARG for a file
 * whose contents do not follow the format, with the offending field). */

/* NumPy .npy (format 1.0/2.0/3.0, C or Fortran order): <f4 <f8 <i8 |u1 map to f32 f64 i64 u8;
 * <i4 <i2 |i1 |b1 widen to i64/u8. Writes format 1.0, C order. */
lm_tensor *lm_load_npy(const char *path);
lm_status lm_save_npy(const lm_tensor *t, const char *path);

/* safetensors (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length,
 * a JSON header {name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}, then the
 * bytes. Dtypes F32 F64 I64 U8. Tensors are written in the order given, names must be unique. */
typedef struct lm_tensor_file {
    int n;                /* tensors, in file order */
    char **names;
    lm_tensor **tensors;  /* owned: lm_tensor_file_free releases them */
    int n_meta;           /* __metadata__ entries */
    char **meta_keys;
    char **meta_values;
} lm_tensor_file;
lm_status lm_safetensors_save(const char *path, int n, const char *const *names,
                              lm_tensor *const *tensors, int n_meta,
                              const char *const *meta_keys, const char *const *meta_values);
lm_tensor_file *lm_safetensors_load(const char *path);
void lm_tensor_file_free(lm_tensor_file *f);   /* NULL-safe */

/* IDX (the MNIST format), gzipped or not (detected from the bytes). Element types u8 -> u8,
 * i8/i16/i32 -> i64, f32 -> f32, f64 -> f64; the shape is the file's. */
lm_tensor *lm_load_idx(const char *path);

/* CSV of numbers: one row per line, `delimiter`-separated, optional header line. Returns a
 * [rows, cols] tensor of dtype dt; empty cells are an error unless the value is NaN-able (f32/f64
 * give NaN). With header, *column_names (when not NULL) receives ncols malloc'd strings in a
 * malloc'd array (free each, then the array); *ncols receives the column count either way. */
lm_tensor *lm_load_csv(const char *path, bool header, char delimiter, lm_dtype dt,
                       char ***column_names, int *ncols);

/* ------------------------------------------------------------------------------------------ */
/* Memory                                                                                       */

/* Freed blocks of 64 KiB and more are kept (up to 1 GiB) and reused for the same size, so a
 * training loop does not page-fault fresh memory every step. This returns them to the system. */
void lm_release_cached_memory(void);

/* ------------------------------------------------------------------------------------------ */
/* Testing hooks                                                                                */

/* Makes the n-th engine allocation from now fail (n >= 1), or none when n <= 0. For tests of
 * the out-of-memory paths. */
void lm_debug_fail_alloc_after(int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* LUMEN_H */
