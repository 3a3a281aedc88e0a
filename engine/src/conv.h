/* conv.h — the convolution and pooling family (nn_conv.c, nn_pool.c): the geometry the op layer
 * computes and the kernel table a backend fills (the CPU one in cpu/conv_cpu.c).
 *
 * Glossary: N batch, C input channels, H x W input plane, O output channels, oH x oW output
 * plane, kH x kW kernel, s stride, p padding (zeros), d dilation, G groups. Every tensor a
 * kernel gets is contiguous (the op layer copies when needed) and f32 or f64, all of one dtype.
 *
 * One geometry serves a convolution and its transpose: conv_transpose2d is the input gradient
 * of the conv2d that maps its output back onto its input, so the kernels are shared and the
 * transposed op only swaps which side is called "input". */
#ifndef LUMEN_CONV_H
#define LUMEN_CONV_H

#include "internal.h"

/* A conv2d that maps x [N, C, H, W] to y [N, O, oH, oW] with weights w [O, C/G, kH, kW]. oH
 * and oW are given, not derived: a transposed convolution's output_padding makes its input
 * (this y) one row or column shorter than the formula would give. */
typedef struct lm_conv_geom {
    int64_t n, c, h, w;
    int64_t o, oh, ow;
    int64_t kh, kw;
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t groups;
} lm_conv_geom;

/* A pooling window walk over planes [H, W] -> [oH, oW] (one plane per (n, c) pair). */
typedef struct lm_pool_geom {
    int64_t planes;
    int64_t h, w, oh, ow;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw; /* dilation is 1 for average pooling */
    bool count_include_pad;                 /* average pooling: divide by the padded window */
} lm_pool_geom;

struct lm_conv_kernels {
    /* Kernels read only the data of their tensors (contiguous; the geometry gives the shapes),
     * so conv1d passes its [N, C, L] tensors as they are. */

    /* The elements of the patch matrices conv2d may keep for conv2d_weight_grad (so the
     * backward need not rebuild them), or 0 when the backend has no use for them here (a 1x1
     * convolution, or matrices too large to keep). */
    int64_t (*saved_cols_numel)(const lm_conv_geom *g);
    /* y [N, O, oH, oW] = conv(x [N, C, H, W], w [O, C/G, kH, kW]) + b [O] (b may be NULL).
     * cols, when not NULL, has saved_cols_numel(g) elements of x's dtype and receives the
     * patch matrices. */
    lm_status (*conv2d)(const lm_conv_geom *g, const lm_tensor *x, const lm_tensor *w,
                        const lm_tensor *b, lm_tensor *y, lm_tensor *cols);
    /* The input gradient: gx [N, C, H, W] = conv2dᵀ(gy [N, O, oH, oW], w), overwriting gx,
     * plus b [C] per channel when b is given (conv_transpose2d's bias). */
    lm_status (*conv2d_input_grad)(const lm_conv_geom *g, const lm_tensor *gy, const lm_tensor *w,
                                   const lm_tensor *b, lm_tensor *gx);
    /* The weight gradient gw [O, C/G, kH, kW] from x and gy, overwriting gw; cols are the
     * matrices conv2d kept for this x, or NULL to rebuild them from x. Summed over the batch in
     * an order that does not depend on the number of threads. */
    lm_status (*conv2d_weight_grad)(const lm_conv_geom *g, const lm_tensor *x,
                                    const lm_tensor *gy, const lm_tensor *cols, lm_tensor *gw);
    /* y = max of each window (NaN wins); idx (i64, may be NULL) = the flat position in its
     * H*W plane of the max. */
    void (*max_pool2d)(const lm_pool_geom *g, const lm_tensor *x, lm_tensor *y, lm_tensor *idx);
    /* gx = zeros, then gx[plane][idx] += gy for every output element. */
    void (*max_pool2d_backward)(const lm_pool_geom *g, const lm_tensor *gy, const lm_tensor *idx,
                                lm_tensor *gx);
    void (*avg_pool2d)(const lm_pool_geom *g, const lm_tensor *x, lm_tensor *y);
    void (*avg_pool2d_backward)(const lm_pool_geom *g, const lm_tensor *gy, lm_tensor *gx);
    /* Windows [floor(i*H/oH), ceil((i+1)*H/oH)) in each dim; the geometry's k, s, p unused. */
    void (*adaptive_avg_pool2d)(const lm_pool_geom *g, const lm_tensor *x, lm_tensor *y);
    void (*adaptive_avg_pool2d_backward)(const lm_pool_geom *g, const lm_tensor *gy,
                                         lm_tensor *gx);
};

#endif /* LUMEN_CONV_H */
