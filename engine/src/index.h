/* index.h — the kernel table of the indexing and joining family: index_select, gather,
 * scatter_add, masked_fill, cat (stack goes through it), one_hot. split and chunk are views and
 * need no kernel. The op layer (index.c) checks every argument before a kernel runs. Index
 * values are checked by the gather and scatter kernels as they read them (they never touch
 * memory outside the indexed tensor and report a bad value); index_select and one_hot get
 * values the op layer checked. */
#ifndef LUMEN_INDEX_H
#define LUMEN_INDEX_H

#include "internal.h"

struct lm_index_kernels {
    /* The smallest and largest value of a non-empty i64 tensor (any strides): the op layer
     * validates index values with them where no gather kernel reads them first. */
    void (*index_range)(const lm_tensor *index, int64_t *min, int64_t *max);
    /* out (contiguous, t's dtype) = t.index_select(dim, index). index is i64 with ndim <= 1,
     * numel == out->shape[dim] and values in [0, size of dim): the op layer checks them once,
     * where the kernel reads each of them once per slice before dim. t has out's ndim (0-dim
     * t with a 0-dim out is allowed). */
    void (*index_select)(lm_tensor *out, const lm_tensor *t, int dim, const lm_tensor *index);
    /* out (contiguous, t's dtype, index's shape) = t.gather(dim, index). A 0-dim t or index
     * counts as 1-D of size 1; index.size(d) <= t.size(d) for d != dim. Index values are
     * checked while they are read (a separate pass would read a large index twice): returns
     * false with *bad set to a value outside [0, size of dim), and out's contents unspecified. */
    bool (*gather)(lm_tensor *out, const lm_tensor *t, int dim, const lm_tensor *index,
                   int64_t *bad);
    /* out[... index[i] along dim ...] += src[i] for every element i of index. out has no
     * internal overlap and shares no memory with index or src; src has out's dtype and every
     * size at least index's. Index values are checked as in gather: on false, out is partly
     * written, so an in-place scatter checks the index beforehand. */
    bool (*scatter_add)(lm_tensor *out, int dim, const lm_tensor *index, const lm_tensor *src,
                        int64_t *bad);
    /* out = mask != 0 ? value (converted to out's dtype) : src. All three have out's shape
     * (mask expanded, any dtype); src has out's dtype and may be out itself (in place). */
    void (*masked_fill)(lm_tensor *out, const lm_tensor *src, const lm_tensor *mask,
                        double value);
    /* out (contiguous) = the n inputs joined along dim, converting dtypes. Inputs without
     * elements are skipped (they include PyTorch's legacy 1-D [0] tensors, whose shape does
     * not match); the others have out's sizes except along dim. */
    void (*cat)(lm_tensor *out, int dim, int n, const lm_tensor *const *inputs);
    /* out (contiguous i64, index.shape + [C]) = 1 where the last coordinate equals index, else
     * 0. index is contiguous i64 with values in [0, C). */
    void (*one_hot)(lm_tensor *out, const lm_tensor *index);
};

#endif /* LUMEN_INDEX_H */
