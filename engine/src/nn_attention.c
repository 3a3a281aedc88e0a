/* nn_attention.c — scaled dot-product attention: softmax(q kᵀ · scale + mask) v.
 *
 * Glossary: q [*, L, E], k [*, S, E], v [*, S, Ev]; P [*, L, S] the attention probabilities.
 *
 * The forward is composed from lm_matmul and the softmax kernel of the loss family (loss.h),
 * with the causal mask applied inside the softmax (no [L, S] mask is built). It records one
 * node, "scaled_dot_product_attention", that keeps q, k, v and P, and whose backward is
 *   dv = Pᵀ g,  dP = g vᵀ,  dS = P (dP - rowsum(dP P)),  dq = scale dS k,  dk = scale dSᵀ q,
 * and dS itself for a floating mask (added after scaling). Batch dims broadcast as in matmul;
 * the engine sums each gradient down to its input's shape. The tests check it against the same
 * composition built from primitives, forward and backward.
 *
 * attn_mask: a floating mask is added to the scaled scores; a u8 mask is boolean as in
 * PyTorch 2 (non-zero: the position takes part; zero: it gets -inf). It must broadcast to the
 * scores' shape [*, L, S]. A row with every position masked gives NaN, as PyTorch. */
#include "autograd.h"
#include "loss.h"

#include <math.h>

/* ip[0]: causal, ip[1]: a floating mask is an input; dp[0]: scale. saved: q, k, v, P. */
static lm_status attention_backward(lm_node *node, const lm_tensor *g, lm_tensor **gi)
{
    const char *op = node->op->name;
    const lm_tensor *q = lm__saved(node, 0), *k = lm__saved(node, 1), *v = lm__saved(node, 2);
    const lm_tensor *p = lm__saved(node, 3);
    if (!q || !k || !v || !p) return lm_last_status();
    const lm_backend *be = lm__backend(p->storage->device, op);
    if (!be) return lm_last_status();
    lm_status st = LM_OK;
    if (lm__input_needs_grad(node, 2)) {
        lm_tensor *pt = lm_transpose(p, -2, -1);
        gi[2] = pt ? lm_matmul(pt, g) : NULL;
        lm_release(pt);
        if (!gi[2]) return lm_last_status();
    }
    bool want_scores = lm__input_needs_grad(node, 0) || lm__input_needs_grad(node, 1) ||
                       (node->ip[1] && lm__input_needs_grad(node, 3));
    if (!want_scores) return LM_OK;
    lm_tensor *vt = lm_transpose(v, -2, -1);
    lm_tensor *dp = vt ? lm_matmul(g, vt) : NULL;
    lm_release(vt);
    lm_tensor *ds = dp ? lm__new(op, p->ndim, p->shape, p->dtype, p->storage->device) : NULL;
    if (ds && lm_numel(ds) > 0)
        be->loss->softmax_backward(ds, dp, p, p->ndim - 1, false, node->ip[0] != 0);
    lm_release(dp);
    if (!ds) return lm_last_status();
    if (node->ip[1] && lm__input_needs_grad(node, 3)) gi[3] = lm_retain(ds);
    lm_tensor *dss = lm_mul_scalar(ds, node->dp[0]);
    lm_release(ds);
    if (!dss) return lm_last_status();
    if (lm__input_needs_grad(node, 0)) {
        gi[0] = lm_matmul(dss, k);
        if (!gi[0]) st = lm_last_status();
    }
    if (!st && lm__input_needs_grad(node, 1)) {
        lm_tensor *dst = lm_transpose(dss, -2, -1);
        gi[1] = dst ? lm_matmul(dst, q) : NULL;
        lm_release(dst);
        if (!gi[1]) st = lm_last_status();
    }
    lm_release(dss);
    return st;
}

static const lm_grad_op attention_grad = {"scaled_dot_product_attention", attention_backward};

/* Checks shapes and dtypes; fills the scores' shape [*, L, S]. */
static bool attention_shapes(const char *op, const lm_tensor *q, const lm_tensor *k,
                             const lm_tensor *v, const lm_tensor *mask, int *nd, int64_t *shape)
{
    const lm_tensor *all[3] = {q, k, v};
    for (int i = 0; i < 3; i++) {
        if (all[i]->ndim < 2) {
            lm__error(LM_ERR_SHAPE,
                      "%s: q, k and v need at least 2 dims ([*, L, E], [*, S, E], [*, S, Ev]), "
                      "got shapes %s, %s and %s",
                      op, lm__shp(q).s, lm__shp(k).s, lm__shp(v).s);
            return false;
        }
        if (!lm_dtype_is_float(all[i]->dtype) || all[i]->dtype != q->dtype) {
            lm__error(LM_ERR_DTYPE,
                      "%s: q, k and v must share one floating dtype, got %s, %s and %s", op,
                      lm_dtype_name(q->dtype), lm_dtype_name(k->dtype), lm_dtype_name(v->dtype));
            return false;
        }
        if (all[i]->storage->device != q->storage->device) {
            lm__error(LM_ERR_ARG, "%s: q, k and v must be on one device (shapes %s, %s, %s)", op,
                      lm__shp(q).s, lm__shp(k).s, lm__shp(v).s);
            return false;
        }
    }
    int64_t e = q->shape[q->ndim - 1], s = k->shape[k->ndim - 2];
    if (k->shape[k->ndim - 1] != e) {
        lm__error(LM_ERR_SHAPE, "%s: q %s and k %s must have the same last dim (E)", op,
                  lm__shp(q).s, lm__shp(k).s);
        return false;
    }
    if (v->shape[v->ndim - 2] != s) {
        lm__error(LM_ERR_SHAPE, "%s: k %s and v %s must have the same sequence length (S, dim -2)",
                  op, lm__shp(k).s, lm__shp(v).s);
        return false;
    }
    int nb, nb2;
    int64_t b[LM_MAX_DIMS], b2[LM_MAX_DIMS];
    if (lm__broadcast_shapes(op, q->ndim - 2, q->shape, k->ndim - 2, k->shape, &nb, b) ||
        lm__broadcast_shapes(op, nb, b, v->ndim - 2, v->shape, &nb2, b2)) {
        lm__error(LM_ERR_SHAPE, "%s: the batch dims of q %s, k %s and v %s cannot be broadcast", op,
                  lm__shp(q).s, lm__shp(k).s, lm__shp(v).s);
        return false;
    }
    for (int d = 0; d < nb2; d++) shape[d] = b2[d];
    shape[nb2] = q->shape[q->ndim - 2];
    shape[nb2 + 1] = s;
    *nd = nb2 + 2;
    if (!mask) return true;
    if (mask->dtype != LM_U8 && !lm_dtype_is_float(mask->dtype)) {
        lm__error(LM_ERR_DTYPE, "%s: attn_mask must be floating (added) or u8 (boolean), got %s",
                  op, lm_dtype_name(mask->dtype));
        return false;
    }
    int nm;
    int64_t m[LM_MAX_DIMS];
    bool fits = lm__broadcast_shapes(op, mask->ndim, mask->shape, *nd, shape, &nm, m) == LM_OK &&
                nm == *nd;
    for (int d = 0; fits && d < nm; d++) fits = m[d] == shape[d];
    if (!fits) {
        lm__error(LM_ERR_SHAPE,
                  "%s: attn_mask shape %s cannot be broadcast to the scores' shape %s", op,
                  lm__shp(mask).s, lm__shp_raw(*nd, shape).s);
        return false;
    }
    return true;
}

/* The scaled and masked scores q kᵀ · scale + mask, contiguous, of shape [*, L, S] with the
 * batch dims of q, k and v broadcast together (v's may add some: q kᵀ is then expanded). */
static lm_tensor *scores(const lm_tensor *q, const lm_tensor *k, const lm_tensor *mask,
                         double scale, int nd, const int64_t *shape)
{
    lm_tensor *kt = lm_transpose(k, -2, -1);
    lm_tensor *s = kt ? lm_matmul(q, kt) : NULL;
    lm_release(kt);
    if (s && lm_numel(s) != lm__shape_numel(nd, shape)) {
        lm_tensor *e = lm_expand(s, nd, shape);
        lm_release(s);
        s = e ? lm_contiguous(e) : NULL;
        lm_release(e);
    }
    if (!s || lm_mul_scalar_(s, scale)) goto fail;
    if (mask && mask->dtype == LM_U8) {
        lm_tensor *off = lm_eq_scalar(mask, 0);
        lm_status st = off ? lm_masked_fill_(s, off, -INFINITY) : lm_last_status();
        lm_release(off);
        if (st) goto fail;
    } else if (mask && lm_add_(s, mask)) {
        goto fail;
    }
    return s;
fail:
    lm_release(s);
    return NULL;
}

lm_tensor *lm_scaled_dot_product_attention(const lm_tensor *q, const lm_tensor *k,
                                           const lm_tensor *v, const lm_tensor *attn_mask,
                                           bool is_causal, double scale)
{
    const char *op = "scaled_dot_product_attention";
    if (!lm__arg(q, op) || !lm__arg(k, op) || !lm__arg(v, op)) return NULL;
    int nd;
    int64_t shape[LM_MAX_DIMS];
    if (!attention_shapes(op, q, k, v, attn_mask, &nd, shape)) return NULL;
    const lm_backend *be = lm__backend(q->storage->device, op);
    if (!be) return NULL;
    if (!(scale > 0)) scale = 1.0 / sqrt((double)q->shape[q->ndim - 1]);

    bool prev = lm_set_grad_enabled(false);
    lm_tensor *mask = NULL, *s = NULL, *p = NULL, *out = NULL;
    if (attn_mask) mask = attn_mask->dtype == LM_U8 ? lm_retain((lm_tensor *)attn_mask)
                                                    : lm_to_dtype(attn_mask, q->dtype);
    if (mask || !attn_mask) s = scores(q, k, mask, scale, nd, shape);
    if (s) p = lm__new(op, s->ndim, s->shape, s->dtype, s->storage->device);
    if (p && lm_numel(p) > 0) be->loss->softmax(p, s, s->ndim - 1, false, is_causal);
    if (p) out = lm_matmul(p, v);
    lm_set_grad_enabled(prev);
    lm_release(s);
    lm_release(mask);

    bool float_mask = attn_mask && attn_mask->dtype != LM_U8;
    const lm_tensor *ins[4] = {q, k, v, float_mask ? attn_mask : NULL};
    if (out && lm__needs_grad(4, ins)) {
        lm_node *n = lm__record(&attention_grad, out, 4, ins);
        if (!n || lm__save(n, q) || lm__save(n, k) || lm__save(n, v) || lm__save(n, p)) {
            lm_release(out);
            out = NULL;
        } else {
            n->ip[0] = is_causal;
            n->ip[1] = float_mask;
            n->dp[0] = scale;
        }
    }
    lm_release(p);
    return out;
}
