/* print.c — lm_to_string and lm_print: the text of PyTorch's Tensor.__repr__
 * (torch/_tensor_str.py, default print options: precision 4, threshold 1000, edgeitems 3,
 * linewidth 80), except that the dtype is always shown: "tensor([1., 2.], dtype=f32)".
 *
 * One formatter is chosen for the whole tensor from the values that will be shown (with
 * summarisation only the edges), as PyTorch does: integers as "%lld"; floats that are all
 * integral as "1."; floats whose magnitudes span more than 1000x, exceed 1e8, or go below 1e-4
 * in scientific "%.4e"; others in "%.4f". Every element is right-aligned to the widest shown
 * finite value. Rows are then laid out recursively: elements wrap by count to fit 80 columns,
 * nested rows are indented under their bracket, and blocks of 3-D and higher tensors are
 * separated by blank lines. */
#include "internal.h"
#include "strbuf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION 4
#define THRESHOLD 1000 /* more elements than this are summarised */
#define EDGEITEMS 3
#define LINEWIDTH 80
#define PREFIX "tensor("

/* ---- writing into an lm__strbuf (strbuf.h) ----------------------------------------------- */

static void sb_spaces(lm__strbuf *b, int n)
{
    for (int i = 0; i < n; i++) lm__sb_put(b, " ", 1);
}

/* ---- elements --------------------------------------------------------------------------- */

static double load_float(const lm_tensor *t, int64_t off)
{
    const char *p = (const char *)t->storage->data + off * (int64_t)lm_dtype_size(t->dtype);
    return t->dtype == LM_F32 ? *(const float *)p : *(const double *)p;
}

/* Integers are read as integers: i64 values beyond 2^53 would lose digits through a double. */
static long long load_int(const lm_tensor *t, int64_t off)
{
    const char *p = (const char *)t->storage->data + off * (int64_t)lm_dtype_size(t->dtype);
    return t->dtype == LM_I64 ? (long long)*(const int64_t *)p : (long long)*(const uint8_t *)p;
}

/* Which indices of a dim are shown: all, or EDGEITEMS at each end when summarising. */
static int64_t shown_count(int64_t size, bool summarize)
{
    return summarize && size > 2 * EDGEITEMS ? 2 * EDGEITEMS : size;
}

static int64_t shown_index(int64_t size, bool summarize, int64_t j)
{
    return summarize && size > 2 * EDGEITEMS && j >= EDGEITEMS ? size - 2 * EDGEITEMS + j : j;
}

/* ---- the formatter ---------------------------------------------------------------------- */

typedef struct {
    bool floating;
    bool int_mode; /* floats: every shown finite value is integral */
    bool sci_mode;
    int width;
} formatter;

/* The text of one value without padding; returns its length. The formatter's rules keep every
 * shown value short (fixed and integral modes only for magnitudes up to 1e8), so a 64-byte
 * buffer always holds it. */
static int format_raw(const formatter *f, const lm_tensor *t, int64_t off, char *buf, size_t cap)
{
    int n;
    double v = f->floating ? load_float(t, off) : 0.0;
    if (!f->floating) n = snprintf(buf, cap, "%lld", load_int(t, off));
    else if (isnan(v)) n = snprintf(buf, cap, "nan");
    else if (isinf(v)) n = snprintf(buf, cap, v > 0 ? "inf" : "-inf");
    else if (f->sci_mode) n = snprintf(buf, cap, "%.*e", PRECISION, v);
    else if (f->int_mode) n = snprintf(buf, cap, "%.0f.", v);
    else n = snprintf(buf, cap, "%.*f", PRECISION, v);
    return n < (int)cap ? n : (int)cap - 1;
}

/* Visits the offsets of every shown element (C order over the shown indices). */
typedef void (*visit_fn)(const lm_tensor *t, int64_t off, void *ctx);

static void visit_shown(const lm_tensor *t, bool summarize, visit_fn fn, void *ctx)
{
    int64_t count[LM_MAX_DIMS], j[LM_MAX_DIMS] = {0};
    for (int d = 0; d < t->ndim; d++) {
        count[d] = shown_count(t->shape[d], summarize);
        if (count[d] == 0) return;
    }
    for (;;) {
        int64_t off = t->offset;
        for (int d = 0; d < t->ndim; d++)
            off += shown_index(t->shape[d], summarize, j[d]) * t->strides[d];
        fn(t, off, ctx);
        int d = t->ndim - 1;
        while (d >= 0 && ++j[d] == count[d]) j[d--] = 0;
        if (d < 0) return;
    }
}

typedef struct {
    bool int_mode;
    int64_t nonzero; /* finite, non-zero values seen */
    double min_abs, max_abs;
} float_stats;

static void collect_stats(const lm_tensor *t, int64_t off, void *ctx)
{
    float_stats *s = ctx;
    double v = load_float(t, off);
    if (!isfinite(v) || v == 0.0) return;
    double a = fabs(v);
    if (s->nonzero == 0 || a < s->min_abs) s->min_abs = a;
    if (s->nonzero == 0 || a > s->max_abs) s->max_abs = a;
    s->nonzero++;
    if (v != ceil(v)) s->int_mode = false;
}

/* PyTorch measures the width over the finite non-zero values of floats (zeros, nan and inf
 * may then stick out) and over every value of integers. */
typedef struct {
    const formatter *f;
    int width;
} width_ctx;

static void measure_width(const lm_tensor *t, int64_t off, void *ctx)
{
    width_ctx *w = ctx;
    if (w->f->floating) {
        double v = load_float(t, off);
        if (!isfinite(v) || v == 0.0) return;
    }
    char buf[64];
    int n = format_raw(w->f, t, off, buf, sizeof buf);
    if (n > w->width) w->width = n;
}

static formatter make_formatter(const lm_tensor *t, bool summarize)
{
    formatter f = {.floating = lm_dtype_is_float(t->dtype), .int_mode = true};
    if (f.floating) {
        float_stats s = {.int_mode = true};
        visit_shown(t, summarize, collect_stats, &s);
        if (s.nonzero > 0) {
            f.int_mode = s.int_mode;
            double ratio = s.max_abs / s.min_abs;
            f.sci_mode = ratio > 1000.0 || s.max_abs > 1.0e8 || (!f.int_mode && s.min_abs < 1.0e-4);
        }
    }
    width_ctx w = {&f, 1};
    visit_shown(t, summarize, measure_width, &w);
    f.width = w.width;
    return f;
}

static void put_value(lm__strbuf *b, const formatter *f, const lm_tensor *t, int64_t off)
{
    char buf[64];
    int n = format_raw(f, t, off, buf, sizeof buf);
    sb_spaces(b, f->width - n);
    lm__sb_put(b, buf, (size_t)n);
}

/* ---- layout ----------------------------------------------------------------------------- */

static void put_vector(lm__strbuf *b, const formatter *f, const lm_tensor *t, int64_t off, int indent,
                       bool summarize)
{
    int64_t size = t->shape[t->ndim - 1], stride = t->strides[t->ndim - 1];
    int per_line = (LINEWIDTH - indent) / (f->width + 2);
    if (per_line < 1) per_line = 1;
    bool cut = summarize && size > 2 * EDGEITEMS;
    int64_t items = cut ? 2 * EDGEITEMS + 1 : size; /* the " ..." counts as an item */
    lm__sb_str(b, "[");
    for (int64_t k = 0; k < items; k++) {
        if (k > 0) {
            if (k % per_line == 0) {
                lm__sb_str(b, ",\n");
                sb_spaces(b, indent + 1);
            } else {
                lm__sb_str(b, ", ");
            }
        }
        if (cut && k == EDGEITEMS) {
            lm__sb_str(b, " ...");
            continue;
        }
        int64_t i = cut && k > EDGEITEMS ? size - (items - k) : k;
        put_value(b, f, t, off + i * stride);
    }
    lm__sb_str(b, "]");
}

/* The sub-tensor at dims [dim, ndim) starting at offset off. */
static void put_tensor(lm__strbuf *b, const formatter *f, const lm_tensor *t, int dim, int64_t off,
                       int indent, bool summarize)
{
    if (dim == t->ndim - 1) {
        put_vector(b, f, t, off, indent, summarize);
        return;
    }
    int64_t size = t->shape[dim];
    bool cut = summarize && size > 2 * EDGEITEMS;
    int64_t items = cut ? 2 * EDGEITEMS + 1 : size;
    int newlines = t->ndim - dim - 1; /* one more blank line per level above a matrix */
    lm__sb_str(b, "[");
    for (int64_t k = 0; k < items; k++) {
        if (k > 0) {
            lm__sb_str(b, ",");
            for (int i = 0; i < newlines; i++) lm__sb_str(b, "\n");
            sb_spaces(b, indent + 1);
        }
        if (cut && k == EDGEITEMS) {
            lm__sb_str(b, "...");
            continue;
        }
        int64_t i = cut && k > EDGEITEMS ? size - (items - k) : k;
        put_tensor(b, f, t, dim + 1, off + i * t->strides[dim], indent + 1, summarize);
    }
    lm__sb_str(b, "]");
}

/* PyTorch's _add_suffixes: a suffix that would pass the line width goes on its own line. Its
 * measure of the last line is two characters longer than the line itself; kept for identical
 * output. */
static void put_suffix(lm__strbuf *b, const char *suffix, int *last_line_len)
{
    int n = (int)strlen(suffix);
    if (*last_line_len + n + 2 > LINEWIDTH) {
        lm__sb_str(b, ",\n");
        sb_spaces(b, (int)strlen(PREFIX));
        *last_line_len = (int)strlen(PREFIX) + n;
    } else {
        lm__sb_str(b, ", ");
        *last_line_len += n + 2;
    }
    lm__sb_str(b, suffix);
}

char *lm_to_string(const lm_tensor *t)
{
    if (!lm__arg(t, "to_string")) return NULL;
    if (t->storage->device != LM_CPU)
        LM_FAIL(LM_ERR_UNSUPPORTED, "to_string: tensor of shape %s is on device %d; only CPU "
                "tensors can be printed in this build", lm__shp(t).s, t->storage->device);
    if ((unsigned)t->dtype >= LM_DTYPE_COUNT)
        LM_FAIL(LM_ERR_DTYPE, "to_string: unknown dtype %d", t->dtype);
    lm__strbuf b = {0};
    lm__sb_str(&b, PREFIX);
    int64_t numel = lm_numel(t);
    char suffix[256];
    if (numel == 0) {
        lm__sb_str(&b, "[]");
    } else {
        bool summarize = numel > THRESHOLD;
        formatter f = make_formatter(t, summarize);
        if (t->ndim == 0) put_value(&b, &f, t, t->offset);
        else put_tensor(&b, &f, t, 0, t->offset, (int)strlen(PREFIX), summarize);
    }
    if (b.failed) {
        free(b.s);
        LM_FAIL(LM_ERR_MEMORY, "to_string: out of memory for the text of a tensor of shape %s",
                lm__shp(t).s);
    }
    const char *nl = strrchr(b.s, '\n');
    int last_line_len = (int)(nl ? b.s + b.len - nl + 1 : (ptrdiff_t)b.len + 2);
    /* An empty tensor shows its shape unless it is 1-D, as NumPy and PyTorch do. */
    if (numel == 0 && t->ndim != 1) {
        int n = snprintf(suffix, sizeof suffix, "size=(");
        for (int d = 0; d < t->ndim; d++)
            n += snprintf(suffix + n, sizeof suffix - (size_t)n, d ? ", %lld" : "%lld",
                          (long long)t->shape[d]);
        snprintf(suffix + n, sizeof suffix - (size_t)n, ")");
        put_suffix(&b, suffix, &last_line_len);
    }
    snprintf(suffix, sizeof suffix, "dtype=%s", lm_dtype_name(t->dtype));
    put_suffix(&b, suffix, &last_line_len);
    if (t->requires_grad && !t->grad_fn) put_suffix(&b, "requires_grad=True", &last_line_len);
    lm__sb_str(&b, ")");
    if (b.failed) {
        free(b.s);
        LM_FAIL(LM_ERR_MEMORY, "to_string: out of memory for the text of a tensor of shape %s",
                lm__shp(t).s);
    }
    return b.s;
}

lm_status lm_print(const lm_tensor *t)
{
    char *s = lm_to_string(t);
    if (!s) return lm_last_status();
    bool ok = puts(s) >= 0;
    free(s);
    if (!ok) return lm__error(LM_ERR_IO, "print: writing to stdout failed");
    return LM_OK;
}
