/* nn_lua.c — the engine's neural-network ops as Lua functions (lm.NAME; softmax and log_softmax
 * also as methods): linear, convolutions, pooling, normalisation, dropout, embedding, losses,
 * attention and the fused optimizer steps. nn.functional (lua/lumen/) re-exports them.
 *
 * Names, argument order and defaults are PyTorch's (torch.nn.functional): positional arguments
 * in PyTorch's order, or the same names in a trailing options table, which wins where both are
 * given: lm.conv2d(x, w, b, 2, 1) is lm.conv2d(x, w, b, {stride = 2, padding = 1}). A key the op
 * does not take is an error listing the keys it takes (args_lua.c reads both forms). As in
 * every op file, arguments are read first, then the box is pushed, then the engine is called.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "lumen_lua.h"

/* ---- options: reduction, spatial sizes, padding -------------------------------------------- */

/* reduction = "mean" | "sum" | "none" (option only, as PyTorch's keyword). */
static lm_reduction reduction_opt(lua_State *L, int o)
{
    const char *r = lb_opt_str(L, o, "reduction", "mean");
    if (!strcmp(r, "mean")) return LM_REDUCTION_MEAN;
    if (!strcmp(r, "sum")) return LM_REDUCTION_SUM;
    if (!strcmp(r, "none")) return LM_REDUCTION_NONE;
    return (lm_reduction)luaL_error(L, "reduction must be \"mean\", \"sum\" or \"none\", "
                                       "got \"%s\"", r);
}

/* The value at idx as n ints: an integer (every dim) or a table of n integers. Errors are
 * reported against argument argn (the position, or the options table). */
static void int_tuple(lua_State *L, int idx, int argn, const char *key, int n, int out[2])
{
    bool ok = false;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        int isint = 0;
        lua_Integer v = lua_tointegerx(L, idx, &isint);
        ok = isint && v >= INT_MIN && v <= INT_MAX;
        for (int i = 0; i < n; i++) out[i] = (int)v;
    } else if (lua_type(L, idx) == LUA_TTABLE && lua_rawlen(L, idx) == (lua_Unsigned)n) {
        ok = true;
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, idx, i + 1);
            int isint = 0;
            lua_Integer v = lua_tointegerx(L, -1, &isint);
            ok = ok && isint && v >= INT_MIN && v <= INT_MAX;
            out[i] = (int)v;
            lua_pop(L, 1);
        }
    }
    if (!ok)
        luaL_argerror(L, argn, lua_pushfstring(L, "'%s' must be an integer%s, got %s", key,
                                               n == 2 ? " or a table {h, w}" : "",
                                               luaL_typename(L, idx)));
}

/* Where a value comes from: the stack index holding it (0: not given) and the argument to
 * blame in errors. An option's value is pushed; value_done pops it. */
typedef struct source {
    int at, argn;
    bool pushed;
} source;

static source value_arg(lua_State *L, int idx, int npos, int o, const char *key)
{
    if (lb_opt_has(L, o, key)) {
        lua_getfield(L, o, key);
        return (source){lua_gettop(L), o, true};
    }
    return (source){lb_given(L, idx, npos) ? idx : 0, idx, false};
}

static void value_done(lua_State *L, source src)
{
    if (src.pushed) lua_pop(L, 1); /* the value stays referenced by the options table */
}

/* A spatial option at position idx or as option key: fills out and returns true when given. */
static bool tuple_arg(lua_State *L, int idx, int npos, int o, const char *key, int n, int out[2])
{
    source src = value_arg(L, idx, npos, o, key);
    if (!src.at) return false;
    int_tuple(L, src.at, src.argn, key, n, out);
    value_done(L, src);
    return true;
}

/* padding: integers, or "valid" (0) / "same" (the output keeps the input's size: stride 1 and
 * an even total padding dilation * (kernel - 1), as the engine pads both sides equally). */
static void padding_arg(lua_State *L, int idx, int npos, int o, int n, const lm_tensor *w,
                        const int stride[2], const int dilation[2], int pad[2])
{
    source src = value_arg(L, idx, npos, o, "padding");
    pad[0] = pad[1] = 0;
    if (!src.at) return;
    if (lua_type(L, src.at) != LUA_TSTRING) {
        int_tuple(L, src.at, src.argn, "padding", n, pad);
        value_done(L, src);
        return;
    }
    const char *mode = lua_tostring(L, src.at);
    if (!strcmp(mode, "same")) {
        for (int i = 0; i < n && w->ndim == n + 2; i++) {
            if (stride[i] != 1)
                luaL_argerror(L, src.argn, lua_pushfstring(L, "padding \"same\" needs stride 1, "
                                                           "got %d", stride[i]));
            int64_t total = (int64_t)dilation[i] * (w->shape[2 + i] - 1);
            if (total % 2)
                luaL_argerror(L, src.argn, lua_pushfstring(L,
                              "padding \"same\" with kernel %d and dilation %d pads one side more, "
                              "which the engine does not do: pad explicitly",
                              (int)w->shape[2 + i], dilation[i]));
            pad[i] = (int)(total / 2);
        }
    } else if (strcmp(mode, "valid") != 0) {
        luaL_argerror(L, src.argn, lua_pushfstring(L, "padding must be an integer, \"same\" or "
                                                   "\"valid\", got \"%s\"", mode));
    }
    value_done(L, src);
}

/* ---- linear and convolutions ----------------------------------------------------------------- */

static int l_linear(lua_State *L)
{
    lm_tensor *x = lb_check(L, 1), *w = lb_check(L, 2), *b = lb_opt(L, 3);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_linear(x, w, b));
    return 1;
}

static const char *const conv_keys[] = {"bias", "stride", "padding", "dilation", "groups", NULL};

/* conv1d(x, w [, b, stride, padding, dilation, groups]) and conv2d likewise, ints or {h, w}. */
static int conv(lua_State *L, int n)
{
    int npos;
    int o = lb_options(L, conv_keys, &npos);
    lm_tensor *x = lb_check(L, 1), *w = lb_check(L, 2);
    lm_tensor *b = lb_tensor_arg(L, 3, npos, o, "bias");
    int stride[2] = {1, 1}, dilation[2] = {1, 1}, pad[2];
    tuple_arg(L, 4, npos, o, "stride", n, stride);
    tuple_arg(L, 6, npos, o, "dilation", n, dilation);
    padding_arg(L, 5, npos, o, n, w, stride, dilation, pad);
    int groups = lb_int_arg(L, 7, npos, o, "groups", 1);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, n == 1 ? lm_conv1d(x, w, b, stride[0], pad[0], dilation[0], groups)
                             : lm_conv2d(x, w, b, stride, pad, dilation, groups));
    return 1;
}

static int l_conv1d(lua_State *L) { return conv(L, 1); }
static int l_conv2d(lua_State *L) { return conv(L, 2); }

/* conv_transpose2d(x, w [, b, stride, padding, output_padding, groups, dilation]): PyTorch's
 * order, where groups comes before dilation. */
static int l_conv_transpose2d(lua_State *L)
{
    static const char *const keys[] = {"bias", "stride", "padding", "output_padding",
                                       "groups", "dilation", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1), *w = lb_check(L, 2);
    lm_tensor *b = lb_tensor_arg(L, 3, npos, o, "bias");
    int stride[2] = {1, 1}, pad[2] = {0, 0}, out_pad[2] = {0, 0}, dilation[2] = {1, 1};
    tuple_arg(L, 4, npos, o, "stride", 2, stride);
    tuple_arg(L, 5, npos, o, "padding", 2, pad);
    tuple_arg(L, 6, npos, o, "output_padding", 2, out_pad);
    int groups = lb_int_arg(L, 7, npos, o, "groups", 1);
    tuple_arg(L, 8, npos, o, "dilation", 2, dilation);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_conv_transpose2d(x, w, b, stride, pad, out_pad, dilation, groups));
    return 1;
}

/* ---- pooling --------------------------------------------------------------------------------- */

/* max_pool2d(x, kernel_size [, stride, padding, dilation, ceil_mode, return_indices]); with
 * return_indices it returns values, indices (flat positions in each H*W plane). */
static int l_max_pool2d(lua_State *L)
{
    static const char *const keys[] = {"kernel_size", "stride", "padding", "dilation",
                                       "ceil_mode", "return_indices", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1);
    int kernel[2], stride[2], pad[2] = {0, 0}, dilation[2] = {1, 1};
    if (!tuple_arg(L, 2, npos, o, "kernel_size", 2, kernel))
        return luaL_error(L, "max_pool2d: kernel_size is required");
    bool has_stride = tuple_arg(L, 3, npos, o, "stride", 2, stride);
    tuple_arg(L, 4, npos, o, "padding", 2, pad);
    tuple_arg(L, 5, npos, o, "dilation", 2, dilation);
    bool ceil_mode = lb_bool_arg(L, 6, npos, o, "ceil_mode", false);
    bool want_indices = lb_bool_arg(L, 7, npos, o, "return_indices", false);
    int vi = lua_gettop(L) + 1;
    lb_box *vb = lb_newbox(L);
    if (!want_indices) {
        lb_setbox(L, vb, lm_max_pool2d(x, kernel, has_stride ? stride : NULL, pad, dilation,
                                       ceil_mode, NULL));
        return 1;
    }
    lb_box *ib = lb_newbox(L);
    lm_tensor *indices = NULL;
    lm_tensor *values = lm_max_pool2d(x, kernel, has_stride ? stride : NULL, pad, dilation,
                                      ceil_mode, &indices);
    if (!values) return lb_fail(L);
    lb_setbox(L, ib, indices);
    lb_setbox_at(L, vi, values);
    return 2;
}

/* avg_pool2d(x, kernel_size [, stride, padding, ceil_mode, count_include_pad]). */
static int l_avg_pool2d(lua_State *L)
{
    static const char *const keys[] = {"kernel_size", "stride", "padding", "ceil_mode",
                                       "count_include_pad", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1);
    int kernel[2], stride[2], pad[2] = {0, 0};
    if (!tuple_arg(L, 2, npos, o, "kernel_size", 2, kernel))
        return luaL_error(L, "avg_pool2d: kernel_size is required");
    bool has_stride = tuple_arg(L, 3, npos, o, "stride", 2, stride);
    tuple_arg(L, 4, npos, o, "padding", 2, pad);
    bool ceil_mode = lb_bool_arg(L, 5, npos, o, "ceil_mode", false);
    bool count_pad = lb_bool_arg(L, 6, npos, o, "count_include_pad", true);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_avg_pool2d(x, kernel, has_stride ? stride : NULL, pad, ceil_mode,
                                    count_pad));
    return 1;
}

/* adaptive_avg_pool2d(x, size or {h, w}). */
static int l_adaptive_avg_pool2d(lua_State *L)
{
    static const char *const keys[] = {"output_size", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1);
    int size[2];
    if (!tuple_arg(L, 2, npos, o, "output_size", 2, size))
        return luaL_error(L, "adaptive_avg_pool2d: output_size is required");
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_adaptive_avg_pool2d(x, size[0], size[1]));
    return 1;
}

/* ---- normalisation, dropout, embedding, softmax ---------------------------------------------- */

/* batch_norm(x, running_mean, running_var [, weight, bias, training, momentum, eps]); the
 * running statistics may be nil (training then uses batch statistics only). */
static int l_batch_norm(lua_State *L)
{
    static const char *const keys[] = {"weight", "bias", "training", "momentum", "eps", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1);
    lm_tensor *rm = lb_given(L, 2, npos) ? lb_check(L, 2) : NULL;
    lm_tensor *rv = lb_given(L, 3, npos) ? lb_check(L, 3) : NULL;
    lm_tensor *w = lb_tensor_arg(L, 4, npos, o, "weight");
    lm_tensor *b = lb_tensor_arg(L, 5, npos, o, "bias");
    bool training = lb_bool_arg(L, 6, npos, o, "training", false);
    double momentum = lb_num_arg(L, 7, npos, o, "momentum", 0.1);
    double eps = lb_num_arg(L, 8, npos, o, "eps", 1e-5);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_batch_norm(x, rm, rv, w, b, training, momentum, eps));
    return 1;
}

/* layer_norm(x, normalized_shape (int or table) [, weight, bias, eps]). */
static int l_layer_norm(lua_State *L)
{
    static const char *const keys[] = {"weight", "bias", "eps", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1);
    int64_t shape[LM_MAX_DIMS];
    int n;
    if (lua_type(L, 2) == LUA_TTABLE) {
        int next;
        n = lb_check_shape(L, 2, shape, &next, false);
    } else {
        shape[0] = luaL_checkinteger(L, 2);
        n = 1;
    }
    lm_tensor *w = lb_tensor_arg(L, 3, npos, o, "weight");
    lm_tensor *b = lb_tensor_arg(L, 4, npos, o, "bias");
    double eps = lb_num_arg(L, 5, npos, o, "eps", 1e-5);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_layer_norm(x, n, shape, w, b, eps));
    return 1;
}

/* group_norm(x, num_groups [, weight, bias, eps]). */
static int l_group_norm(lua_State *L)
{
    static const char *const keys[] = {"weight", "bias", "eps", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1);
    lua_Integer groups = luaL_checkinteger(L, 2);
    lm_tensor *w = lb_tensor_arg(L, 3, npos, o, "weight");
    lm_tensor *b = lb_tensor_arg(L, 4, npos, o, "bias");
    double eps = lb_num_arg(L, 5, npos, o, "eps", 1e-5);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_group_norm(x, groups, w, b, eps));
    return 1;
}

/* dropout(x [, p = 0.5, training = true]). */
static int l_dropout(lua_State *L)
{
    static const char *const keys[] = {"p", "training", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1);
    double p = lb_num_arg(L, 2, npos, o, "p", 0.5);
    bool training = lb_bool_arg(L, 3, npos, o, "training", true);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_dropout(x, p, training));
    return 1;
}

/* embedding(weight, indices [, padding_idx]). PyTorch's F.embedding takes (indices, weight):
 * that order is recognised by the dtypes (integer indices first, floating weight second). */
static int l_embedding(lua_State *L)
{
    static const char *const keys[] = {"padding_idx", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *w = lb_check(L, 1), *idx = lb_check(L, 2);
    if (!lm_dtype_is_float(w->dtype) && lm_dtype_is_float(idx->dtype)) {
        lm_tensor *swap = w;
        w = idx;
        idx = swap;
    }
    lua_Integer pad = lb_integer_arg(L, 3, npos, o, "padding_idx", -1);
    if (pad < 0 && (lb_given(L, 3, npos) || lb_opt_has(L, o, "padding_idx")) && w->ndim == 2) {
        /* PyTorch counts a negative padding_idx from the end. */
        if (pad < -w->shape[0])
            return luaL_error(L, "embedding: padding_idx %I is out of range for a vocabulary of "
                              "%I rows", (lua_Integer)pad, (lua_Integer)w->shape[0]);
        pad += w->shape[0];
    }
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_embedding(w, idx, pad));
    return 1;
}

static int softmax_like(lua_State *L, lm_tensor *(*fn)(const lm_tensor *, int))
{
    static const char *const keys[] = {"dim", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1);
    if (!lb_given(L, 2, npos) && !lb_opt_has(L, o, "dim"))
        return luaL_argerror(L, 2, "dim is required");
    int dim = lb_int_arg(L, 2, npos, o, "dim", -1);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, fn(x, dim));
    return 1;
}

static int l_softmax(lua_State *L) { return softmax_like(L, lm_softmax); }
static int l_log_softmax(lua_State *L) { return softmax_like(L, lm_log_softmax); }

/* ---- losses ---------------------------------------------------------------------------------- */

/* cross_entropy(logits, target [, weight] [, {weight, ignore_index = -100,
 * label_smoothing = 0, reduction = "mean"}]). */
static int l_cross_entropy(lua_State *L)
{
    static const char *const keys[] = {"weight", "ignore_index", "label_smoothing", "reduction",
                                       NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1), *target = lb_check(L, 2);
    lm_tensor *w = lb_tensor_arg(L, 3, npos, o, "weight");
    lua_Integer ignore = lb_opt_int(L, o, "ignore_index", -100);
    double smoothing = lb_opt_num(L, o, "label_smoothing", 0);
    lm_reduction red = reduction_opt(L, o);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_cross_entropy(x, target, w, ignore, smoothing, red));
    return 1;
}

static int l_nll_loss(lua_State *L)
{
    static const char *const keys[] = {"weight", "ignore_index", "reduction", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1), *target = lb_check(L, 2);
    lm_tensor *w = lb_tensor_arg(L, 3, npos, o, "weight");
    lua_Integer ignore = lb_opt_int(L, o, "ignore_index", -100);
    lm_reduction red = reduction_opt(L, o);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_nll_loss(x, target, w, ignore, red));
    return 1;
}

static const char *const reduction_keys[] = {"reduction", NULL};

static int pointwise_loss(lua_State *L,
                          lm_tensor *(*fn)(const lm_tensor *, const lm_tensor *, lm_reduction))
{
    int npos;
    int o = lb_options(L, reduction_keys, &npos);
    lm_tensor *x = lb_check(L, 1), *target = lb_check(L, 2);
    lm_reduction red = reduction_opt(L, o);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, fn(x, target, red));
    return 1;
}

static int l_mse_loss(lua_State *L) { return pointwise_loss(L, lm_mse_loss); }
static int l_l1_loss(lua_State *L) { return pointwise_loss(L, lm_l1_loss); }

static int l_smooth_l1_loss(lua_State *L)
{
    static const char *const keys[] = {"beta", "reduction", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1), *target = lb_check(L, 2);
    double beta = lb_opt_num(L, o, "beta", 1.0);
    lm_reduction red = reduction_opt(L, o);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_smooth_l1_loss(x, target, beta, red));
    return 1;
}

static int l_binary_cross_entropy(lua_State *L)
{
    static const char *const keys[] = {"weight", "reduction", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1), *target = lb_check(L, 2);
    lm_tensor *w = lb_tensor_arg(L, 3, npos, o, "weight");
    lm_reduction red = reduction_opt(L, o);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_binary_cross_entropy(x, target, w, red));
    return 1;
}

static int l_binary_cross_entropy_with_logits(lua_State *L)
{
    static const char *const keys[] = {"weight", "pos_weight", "reduction", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *x = lb_check(L, 1), *target = lb_check(L, 2);
    lm_tensor *w = lb_tensor_arg(L, 3, npos, o, "weight");
    lm_tensor *pw = lb_opt_tensor_field(L, o, "pos_weight");
    lm_reduction red = reduction_opt(L, o);
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, lm_binary_cross_entropy_with_logits(x, target, w, pw, red));
    return 1;
}

/* ---- attention ------------------------------------------------------------------------------- */

/* Attention with dropout on the probabilities, which the engine's fused op does not do: the
 * same computation from primitives (autograd follows it), as PyTorch's reference
 * implementation. Each engine call fails cleanly on a NULL input from the step before, keeping
 * the first error, so the chain needs one check at the end. */
static lm_tensor *attention_dropout(const lm_tensor *q, const lm_tensor *k, const lm_tensor *v,
                                    const lm_tensor *mask, bool causal, double scale, double p)
{
    /* The fused op reports bad shapes with every shape named. */
    if (q->ndim < 2 || k->ndim < 2)
        return lm_scaled_dot_product_attention(q, k, v, mask, causal, scale);
    if (!(scale > 0)) scale = 1.0 / sqrt((double)q->shape[q->ndim - 1]);
    lm_tensor *kt = lm_transpose(k, -2, -1);
    lm_tensor *qk = lm_matmul(q, kt);
    lm_release(kt);
    lm_tensor *s = lm_mul_scalar(qk, scale);
    lm_release(qk);
    if (mask && mask->dtype == LM_U8) {
        lm_tensor *off = lm_eq_scalar(mask, 0);
        lm_tensor *m = lm_masked_fill(s, off, -INFINITY);
        lm_release(off);
        lm_release(s);
        s = m;
    } else if (mask) {
        lm_tensor *mc = lm_to_dtype(mask, q->dtype);
        lm_tensor *m = lm_add(s, mc);
        lm_release(mc);
        lm_release(s);
        s = m;
    }
    if (causal) {
        int64_t len_q = q->shape[q->ndim - 2], len_k = k->shape[k->ndim - 2];
        lm_tensor *rows = lm_arange(0, (double)len_q, 1, LM_I64);
        lm_tensor *rows2 = lm_unsqueeze(rows, 1);
        lm_tensor *cols = lm_arange(0, (double)len_k, 1, LM_I64);
        lm_tensor *future = lm_gt(cols, rows2);
        lm_tensor *m = lm_masked_fill(s, future, -INFINITY);
        lm_release(rows);
        lm_release(rows2);
        lm_release(cols);
        lm_release(future);
        lm_release(s);
        s = m;
    }
    lm_tensor *probs = lm_softmax(s, -1);
    lm_release(s);
    lm_tensor *dropped = lm_dropout(probs, p, true);
    lm_release(probs);
    lm_tensor *out = lm_matmul(dropped, v);
    lm_release(dropped);
    return out;
}

/* scaled_dot_product_attention(q, k, v [, attn_mask, dropout_p, is_causal, scale]). */
static int l_scaled_dot_product_attention(lua_State *L)
{
    static const char *const keys[] = {"attn_mask", "dropout_p", "is_causal", "scale", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *q = lb_check(L, 1), *k = lb_check(L, 2), *v = lb_check(L, 3);
    lm_tensor *mask = lb_tensor_arg(L, 4, npos, o, "attn_mask");
    double p = lb_num_arg(L, 5, npos, o, "dropout_p", 0);
    bool causal = lb_bool_arg(L, 6, npos, o, "is_causal", false);
    double scale = lb_num_arg(L, 7, npos, o, "scale", 0);
    if (!(p >= 0 && p <= 1))
        return luaL_error(L, "scaled_dot_product_attention: dropout_p must be in [0, 1], got %f",
                          p);
    if (mask && causal)
        return luaL_error(L, "scaled_dot_product_attention: give attn_mask or is_causal, not both");
    lb_box *box = lb_newbox(L);
    lb_setbox(L, box, p > 0 ? attention_dropout(q, k, v, mask, causal, scale, p)
                            : lm_scaled_dot_product_attention(q, k, v, mask, causal, scale));
    return 1;
}

/* ---- fused optimizer steps ----------------------------------------------------------------- */

/* The state tensor at idx, or NULL when nil. */
static lm_tensor *state_arg(lua_State *L, int idx, int npos)
{
    return lb_given(L, idx, npos) ? lb_check(L, idx) : NULL;
}

/* sgd_step(param, momentum_buf or nil, first, {lr, momentum = 0, dampening = 0,
 * weight_decay = 0, nesterov = false, maximize = false}); lr is required, as in PyTorch. */
static int l_sgd_step(lua_State *L)
{
    static const char *const keys[] = {"lr", "momentum", "dampening", "weight_decay",
                                       "nesterov", "maximize", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *param = lb_check(L, 1), *buf = state_arg(L, 2, npos);
    bool first = lb_given(L, 3, npos) ? lb_check_bool(L, 3) : false;
    if (!lb_opt_has(L, o, "lr")) return luaL_error(L, "sgd_step: option 'lr' is required");
    lm_sgd_opts so = {
        .lr = lb_opt_num(L, o, "lr", 0),
        .momentum = lb_opt_num(L, o, "momentum", 0),
        .dampening = lb_opt_num(L, o, "dampening", 0),
        .weight_decay = lb_opt_num(L, o, "weight_decay", 0),
        .nesterov = lb_opt_bool(L, o, "nesterov", false),
        .maximize = lb_opt_bool(L, o, "maximize", false),
    };
    lb_check_status(L, lm_sgd_step(param, buf, first, so));
    return 0;
}

/* adam_step(param, exp_avg, exp_avg_sq, max_exp_avg_sq or nil, step, {lr = 1e-3,
 * betas = {0.9, 0.999} | beta1, beta2, eps = 1e-8, weight_decay = 0,
 * decoupled_weight_decay = false, amsgrad = false, maximize = false}). */
static int l_adam_step(lua_State *L)
{
    static const char *const keys[] = {"lr", "betas", "beta1", "beta2", "eps", "weight_decay",
                                       "decoupled_weight_decay", "amsgrad", "maximize", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *param = lb_check(L, 1), *m = lb_check(L, 2), *v = lb_check(L, 3);
    lm_tensor *vmax = state_arg(L, 4, npos);
    lua_Integer step = luaL_checkinteger(L, 5);
    double beta1 = 0.9, beta2 = 0.999;
    if (lb_opt_has(L, o, "betas")) {
        lua_getfield(L, o, "betas");
        if (lua_type(L, -1) != LUA_TTABLE || lua_rawlen(L, -1) != 2)
            return luaL_error(L, "adam_step: option 'betas' must be a table {beta1, beta2}");
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        if (lua_type(L, -2) != LUA_TNUMBER || lua_type(L, -1) != LUA_TNUMBER)
            return luaL_error(L, "adam_step: option 'betas' must hold two numbers");
        beta1 = lua_tonumber(L, -2);
        beta2 = lua_tonumber(L, -1);
        lua_pop(L, 3);
    }
    lm_adam_opts ao = {
        .lr = lb_opt_num(L, o, "lr", 1e-3),
        .beta1 = lb_opt_num(L, o, "beta1", beta1),
        .beta2 = lb_opt_num(L, o, "beta2", beta2),
        .eps = lb_opt_num(L, o, "eps", 1e-8),
        .weight_decay = lb_opt_num(L, o, "weight_decay", 0),
        .decoupled_weight_decay = lb_opt_bool(L, o, "decoupled_weight_decay", false),
        .amsgrad = lb_opt_bool(L, o, "amsgrad", false),
        .maximize = lb_opt_bool(L, o, "maximize", false),
    };
    lb_check_status(L, lm_adam_step(param, m, v, vmax, step, ao));
    return 0;
}

/* rmsprop_step(param, square_avg, momentum_buf or nil, grad_avg or nil, {lr = 1e-2,
 * alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0, centered = false,
 * maximize = false}). */
static int l_rmsprop_step(lua_State *L)
{
    static const char *const keys[] = {"lr", "alpha", "eps", "weight_decay", "momentum",
                                       "centered", "maximize", NULL};
    int npos;
    int o = lb_options(L, keys, &npos);
    lm_tensor *param = lb_check(L, 1), *sq = lb_check(L, 2);
    lm_tensor *buf = state_arg(L, 3, npos), *gavg = state_arg(L, 4, npos);
    lm_rmsprop_opts ro = {
        .lr = lb_opt_num(L, o, "lr", 1e-2),
        .alpha = lb_opt_num(L, o, "alpha", 0.99),
        .eps = lb_opt_num(L, o, "eps", 1e-8),
        .weight_decay = lb_opt_num(L, o, "weight_decay", 0),
        .momentum = lb_opt_num(L, o, "momentum", 0),
        .centered = lb_opt_bool(L, o, "centered", false),
        .maximize = lb_opt_bool(L, o, "maximize", false),
    };
    lb_check_status(L, lm_rmsprop_step(param, sq, buf, gavg, ro));
    return 0;
}

/* ---- registration ---------------------------------------------------------------------------- */

static const lb_reg nn_ops[] = {
    {"linear", l_linear, false},
    {"conv1d", l_conv1d, false},
    {"conv2d", l_conv2d, false},
    {"conv_transpose2d", l_conv_transpose2d, false},
    {"max_pool2d", l_max_pool2d, false},
    {"avg_pool2d", l_avg_pool2d, false},
    {"adaptive_avg_pool2d", l_adaptive_avg_pool2d, false},
    {"batch_norm", l_batch_norm, false},
    {"layer_norm", l_layer_norm, false},
    {"group_norm", l_group_norm, false},
    {"dropout", l_dropout, false},
    {"embedding", l_embedding, false},
    {"softmax", l_softmax, true},
    {"log_softmax", l_log_softmax, true},
    {"cross_entropy", l_cross_entropy, false},
    {"nll_loss", l_nll_loss, false},
    {"mse_loss", l_mse_loss, false},
    {"l1_loss", l_l1_loss, false},
    {"smooth_l1_loss", l_smooth_l1_loss, false},
    {"binary_cross_entropy", l_binary_cross_entropy, false},
    {"binary_cross_entropy_with_logits", l_binary_cross_entropy_with_logits, false},
    {"scaled_dot_product_attention", l_scaled_dot_product_attention, false},
    {"sgd_step", l_sgd_step, false},
    {"adam_step", l_adam_step, false},
    {"rmsprop_step", l_rmsprop_step, false},
    {NULL, NULL, false},
};

void lb_open_nn(lua_State *L, int mod_idx, int meth_idx)
{
    lb_register(L, mod_idx, meth_idx, nn_ops);
}
