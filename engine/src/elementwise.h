/* elementwise.h — the element-wise family's op enums and kernel table, shared by the op layer
 * (elementwise.c) and each backend (cpu/elementwise_cpu.c, later the CUDA one).
 *
 * The op layer hands kernels validated operands: every tensor already has the output's shape
 * (inputs expanded with stride 0 on broadcast dims), inputs are converted to the compute dtype,
 * and strides are arbitrary. Kernels only compute; they never fail and never allocate. */
#ifndef LUMEN_ELEMENTWISE_H
#define LUMEN_ELEMENTWISE_H

#include "internal.h"

/* Binary ops. The comparisons come last: everything from LM_BINARY_EQ on gives u8 (0/1). */
typedef enum lm_binary_op {
    LM_BINARY_ADD,
    LM_BINARY_SUB,
    LM_BINARY_MUL,
    LM_BINARY_DIV,     /* true division: only float compute dtypes reach the kernel */
    LM_BINARY_POW,     /* integers: PyTorch's rule for negative exponents (0 unless |base| == 1) */
    LM_BINARY_MAXIMUM, /* NaN in either input gives NaN */
    LM_BINARY_MINIMUM,
    LM_BINARY_EQ,
    LM_BINARY_NE,
    LM_BINARY_LT,
    LM_BINARY_LE,
    LM_BINARY_GT,
    LM_BINARY_GE,
    LM_BINARY_COUNT
} lm_binary_op;

/* Unary ops. Only NEG, ABS, RELU and CLAMP have integer kernels; the op layer computes the others
 * in f32 for integer inputs. */
typedef enum lm_unary_op {
    LM_UNARY_NEG,
    LM_UNARY_ABS,
    LM_UNARY_EXP,
    LM_UNARY_LOG,
    LM_UNARY_LOG1P,
    LM_UNARY_SQRT,
    LM_UNARY_RSQRT,
    LM_UNARY_SIN,
    LM_UNARY_COS,
    LM_UNARY_TANH,
    LM_UNARY_SIGMOID,
    LM_UNARY_RELU,
    LM_UNARY_GELU,       /* exact: x * Phi(x) */
    LM_UNARY_GELU_TANH,  /* the tanh approximation */
    LM_UNARY_SILU,
    LM_UNARY_LEAKY_RELU, /* params[0]: negative slope */
    LM_UNARY_CLAMP,      /* params[0], params[1]: min, max (+-INFINITY for none; an integer
                          * kernel saturates them to its dtype's range) */
    LM_UNARY_COUNT
} lm_unary_op;

struct lm_elementwise_kernels {
    /* out = a op b. a and b share the compute dtype; out has it too, or u8 for comparisons.
     * out may be a itself (in-place ops); it never partly overlaps an input. */
    void (*binary)(lm_binary_op op, lm_tensor *out, const lm_tensor *a, const lm_tensor *b);
    /* out = op(a), out and a of one dtype; params holds two numbers (see lm_unary_op). */
    void (*unary)(lm_unary_op op, lm_tensor *out, const lm_tensor *a, const double *params);
    /* out = cond != 0 ? a : b. cond has any dtype; a, b and out share one dtype. */
    void (*where)(lm_tensor *out, const lm_tensor *cond, const lm_tensor *a, const lm_tensor *b);
    /* The fused backward of the activations that dominate training: grad_in = grad_out * op'(x)
     * in one pass. saved is what the forward kept: the output y for RELU, SIGMOID and TANH, the
     * input x for GELU, GELU_TANH, SILU and LEAKY_RELU (params[0]: slope); no other op reaches
     * it. The three tensors share one float dtype and the output's shape. */
    void (*unary_backward)(lm_unary_op op, lm_tensor *grad_in, const lm_tensor *grad_out,
                           const lm_tensor *saved, const double *params);
};

#endif /* LUMEN_ELEMENTWISE_H */
