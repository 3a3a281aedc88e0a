/* io_npy.c — NumPy's .npy files: lm_load_npy and lm_save_npy.
 *
 * The format (numpy/lib/format.py, "NEP 1"): the magic "\x93NUMPY", a major and a minor version
 * byte, the header length (u16 little-endian in 1.0, u32 in 2.0 and 3.0), then the header: a
 * Python dict literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and ended by '\n', then the raw elements. Writers pad the header so that
 * the data starts at a multiple of 64 bytes (old NumPy used 16; readers must not assume either).
 *
 * Loading reads the elements straight into the tensor's memory when the dtype maps one to one,
 * and through a bounded buffer when it widens (<i4 to i64, |b1 to u8). A Fortran-order array is
 * the C-order array of the reversed shape: it is read as such and permuted back, then made
 * contiguous. The file must hold exactly the bytes the header promises. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Elements are written and read in the host's byte order, which the files require to be
 * little-endian. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "io_npy.c assumes a little-endian host");

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
#define NPY_MAX_HEADER (1u << 20) /* a sane header is a few hundred bytes */
#define WIDEN_CHUNK 65536         /* elements converted per pass when widening */

/* The element types we read: the descr without its byte-order character, its size, and the
 * dtype the tensor gets. */
typedef struct {
    const char *code;
    size_t size;
    lm_dtype dt;
} npy_type;

static const npy_type npy_types[] = {
    {"f4", 4, LM_F32}, {"f8", 8, LM_F64}, {"i8", 8, LM_I64}, {"u1", 1, LM_U8},
    {"i4", 4, LM_I64}, {"i2", 2, LM_I64}, {"i1", 1, LM_I64}, {"b1", 1, LM_U8},
};
#define NPY_SUPPORTED "<f4 <f8 <i8 |u1 <i4 <i2 |i1 |b1"

/* ---- the header dict ------------------------------------------------------------------ */

typedef struct {
    const char *s; /* the header text, NUL-terminated */
    size_t pos;
    const char *path;
} hparser;

static void skip_space(hparser *p)
{
    while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' ||
           p->s[p->pos] == '\r')
        p->pos++;
}

static bool header_error(hparser *p, const char *what)
{
    lm__error(LM_ERR_ARG, "load_npy: %s: bad header at byte %zu: %s (header: %.200s)", p->path,
              p->pos, what, p->s);
    return false;
}

/* A Python string literal in single or double quotes, without escapes (keys and descr never
 * need them). Copies at most cap-1 characters. */
static bool parse_pystr(hparser *p, char *out, size_t cap)
{
    skip_space(p);
    char q = p->s[p->pos];
    if (q != '\'' && q != '"') return header_error(p, "expected a quoted string");
    size_t start = ++p->pos;
    while (p->s[p->pos] && p->s[p->pos] != q) {
        if (p->s[p->pos] == '\\') return header_error(p, "escapes in strings are not supported");
        p->pos++;
    }
    if (!p->s[p->pos]) return header_error(p, "unterminated string");
    size_t n = p->pos - start;
    if (n >= cap) return header_error(p, "string too long");
    memcpy(out, p->s + start, n);
    out[n] = '\0';
    p->pos++;
    return true;
}

static bool expect_char(hparser *p, char c, const char *what)
{
    skip_space(p);
    if (p->s[p->pos] != c) return header_error(p, what);
    p->pos++;
    return true;
}

/* A tuple of non-negative integers: (), (5,), (2, 3). Python 2 wrote longs as 3L. */
static bool parse_shape(hparser *p, int *ndim, int64_t *shape)
{
    if (!expect_char(p, '(', "expected '(' to open the shape")) return false;
    *ndim = 0;
    for (;;) {
        skip_space(p);
        if (p->s[p->pos] == ')') {
            p->pos++;
            return true;
        }
        if (p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return header_error(p, "expected a non-negative integer in the shape");
        int64_t v = 0;
        while (p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            int d = p->s[p->pos] - '0';
            if (v > (INT64_MAX - d) / 10) return header_error(p, "shape entry too large");
            v = v * 10 + d;
            p->pos++;
        }
        if (p->s[p->pos] == 'L') p->pos++;
        if (*ndim == LM_MAX_DIMS) return header_error(p, "more than 8 dims");
        shape[(*ndim)++] = v;
        skip_space(p);
        if (p->s[p->pos] == ',') {
            p->pos++;
        } else if (p->s[p->pos] != ')') {
            return header_error(p, "expected ',' or ')' in the shape");
        }
    }
}

typedef struct {
    char descr[32];
    bool fortran;
    int ndim;
    int64_t shape[LM_MAX_DIMS];
} npy_header;

/* The dict with exactly the keys descr, fortran_order and shape, in any order. */
static bool parse_header(hparser *p, npy_header *h)
{
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    if (!expect_char(p, '{', "expected '{'")) return false;
    for (;;) {
        skip_space(p);
        if (p->s[p->pos] == '}') {
            p->pos++;
            break;
        }
        char key[32];
        if (!parse_pystr(p, key, sizeof key)) return false;
        if (!expect_char(p, ':', "expected ':' after a key")) return false;
        skip_space(p);
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            if (p->s[p->pos] == '[')
                return header_error(p, "structured dtypes are not supported");
            if (!parse_pystr(p, h->descr, sizeof h->descr)) return false;
            seen_descr = true;
        } else if (strcmp(key, "fortran_order") == 0 && !seen_fortran) {
            if (strncmp(p->s + p->pos, "True", 4) == 0) {
                h->fortran = true;
                p->pos += 4;
            } else if (strncmp(p->s + p->pos, "False", 5) == 0) {
                h->fortran = false;
                p->pos += 5;
            } else {
                return header_error(p, "fortran_order must be True or False");
            }
            seen_fortran = true;
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            if (!parse_shape(p, &h->ndim, h->shape)) return false;
            seen_shape = true;
        } else {
            return header_error(p, "unexpected or repeated key (expected descr, fortran_order, "
                                   "shape)");
        }
        skip_space(p);
        if (p->s[p->pos] == ',') {
            p->pos++;
        } else if (p->s[p->pos] != '}') {
            return header_error(p, "expected ',' or '}'");
        }
    }
    skip_space(p);
    if (p->s[p->pos]) return header_error(p, "unexpected text after the dict");
    if (!seen_descr || !seen_fortran || !seen_shape)
        return header_error(p, "missing key (descr, fortran_order and shape are required)");
    return true;
}

/* Maps a descr such as '<f4' to our table; refuses big-endian and unknown types by name. */
static const npy_type *find_type(const char *path, const char *descr)
{
    char order = descr[0];
    if (order != '<' && order != '>' && order != '|' && order != '=') {
        lm__error(LM_ERR_ARG, "load_npy: %s: dtype '%s' has no byte-order character", path,
                  descr);
        return NULL;
    }
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++) {
        if (strcmp(descr + 1, npy_types[i].code) != 0) continue;
        /* '=' is the writer's native order: NumPy writes '<' or '>' instead, and a file that
         * says '=' came from a little-endian writer in practice. One-byte types have no order. */
        if (order == '>' && npy_types[i].size > 1) {
            lm__error(LM_ERR_UNSUPPORTED,
                      "load_npy: %s: big-endian dtype '%s' is not supported (convert with "
                      "a.astype('<%s'))",
                      path, descr, descr + 1);
            return NULL;
        }
        if (order == '|' && npy_types[i].size > 1) break;
        return &npy_types[i];
    }
    lm__error(LM_ERR_UNSUPPORTED, "load_npy: %s: dtype '%s' is not supported (supported: %s)",
              path, descr, NPY_SUPPORTED);
    return NULL;
}

/* ---- loading -------------------------------------------------------------------------- */

/* Reads exactly n bytes or fails naming what was being read. */
static bool read_exact(FILE *f, void *buf, size_t n, const char *path, const char *what)
{
    size_t got = fread(buf, 1, n, f);
    if (got == n) return true;
    if (ferror(f))
        lm__error(LM_ERR_IO, "load_npy: %s: read error in the %s: %s", path, what,
                  strerror(errno));
    else
        lm__error(LM_ERR_ARG, "load_npy: %s: truncated %s (%zu of %zu bytes)", path, what, got, n);
    return false;
}

/* Reads the header and leaves f at the first data byte; *data_start is that offset. */
static bool read_header(FILE *f, const char *path, npy_header *h, size_t *data_start)
{
    unsigned char pre[NPY_MAGIC_LEN + 2];
    if (!read_exact(f, pre, sizeof pre, path, "preamble")) return false;
    if (memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        lm__error(LM_ERR_ARG, "load_npy: %s: not a .npy file (no \\x93NUMPY magic)", path);
        return false;
    }
    int major = pre[NPY_MAGIC_LEN];
    if (major < 1 || major > 3) {
        lm__error(LM_ERR_UNSUPPORTED, "load_npy: %s: format version %d.%d is not supported "
                  "(1.0, 2.0, 3.0 are)", path, major, pre[NPY_MAGIC_LEN + 1]);
        return false;
    }
    unsigned char lenb[4] = {0};
    size_t lenlen = major == 1 ? 2 : 4;
    if (!read_exact(f, lenb, lenlen, path, "header length")) return false;
    uint32_t hlen = (uint32_t)lenb[0] | (uint32_t)lenb[1] << 8 | (uint32_t)lenb[2] << 16 |
                    (uint32_t)lenb[3] << 24;
    if (hlen > NPY_MAX_HEADER) {
        lm__error(LM_ERR_ARG, "load_npy: %s: header length %u is beyond the %u-byte limit", path,
                  hlen, NPY_MAX_HEADER);
        return false;
    }
    char *text = malloc((size_t)hlen + 1);
    if (!text) {
        lm__error(LM_ERR_MEMORY, "load_npy: %s: no memory for a %u-byte header", path, hlen);
        return false;
    }
    bool okay = read_exact(f, text, hlen, path, "header");
    if (okay) {
        text[hlen] = '\0';
        if (strlen(text) != hlen) {
            lm__error(LM_ERR_ARG, "load_npy: %s: NUL byte in the header", path);
            okay = false;
        }
    }
    if (okay) {
        hparser p = {text, 0, path};
        okay = parse_header(&p, h);
    }
    free(text);
    *data_start = sizeof pre + lenlen + hlen;
    return okay;
}

/* Reads n elements of type ty from f into dst (of dtype ty->dt), widening in chunks when the
 * sizes differ. */
static bool read_elements(FILE *f, const char *path, const npy_type *ty, void *dst, int64_t n)
{
    size_t out_size = lm_dtype_size(ty->dt);
    if (ty->size == out_size) {
        if (!read_exact(f, dst, (size_t)n * ty->size, path, "data")) return false;
        if (strcmp(ty->code, "b1") == 0) {
            unsigned char *b = dst;
            for (int64_t i = 0; i < n; i++) b[i] = b[i] != 0;
        }
        return true;
    }
    size_t chunk = (size_t)(n < WIDEN_CHUNK ? n : WIDEN_CHUNK);
    unsigned char *buf = malloc(chunk * ty->size);
    if (!buf) {
        lm__error(LM_ERR_MEMORY, "load_npy: %s: no memory for a conversion buffer", path);
        return false;
    }
    int64_t *out = dst; /* every widening goes to i64 */
    for (int64_t done = 0; done < n;) {
        size_t m = (size_t)(n - done < (int64_t)chunk ? n - done : (int64_t)chunk);
        if (!read_exact(f, buf, m * ty->size, path, "data")) {
            free(buf);
            return false;
        }
        for (size_t i = 0; i < m; i++) {
            int64_t v;
            switch (ty->size) {
            case 1: v = ((const int8_t *)buf)[i]; break;
            case 2: { int16_t x; memcpy(&x, buf + 2 * i, 2); v = x; break; }
            default: { int32_t x; memcpy(&x, buf + 4 * i, 4); v = x; break; }
            }
            out[done + (int64_t)i] = v;
        }
        done += (int64_t)m;
    }
    free(buf);
    return true;
}

/* The tensor in the file's memory order: the shape as given for C order, reversed for Fortran
 * order (then permuted back by the caller). */
static lm_tensor *load_body(FILE *f, const char *path)
{
    npy_header h = {0};
    size_t data_start;
    if (!read_header(f, path, &h, &data_start)) return NULL;
    const npy_type *ty = find_type(path, h.descr);
    if (!ty) return NULL;

    int64_t numel = 1;
    for (int i = 0; i < h.ndim; i++) {
        if (h.shape[i] && numel > INT64_MAX / 16 / h.shape[i])
            LM_FAIL(LM_ERR_ARG, "load_npy: %s: shape %s is too large", path,
                    lm__shp_raw(h.ndim, h.shape).s);
        numel *= h.shape[i];
    }
    /* Check the size first, so a damaged header cannot make us allocate a huge tensor. */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
        uint64_t want = (uint64_t)numel * ty->size;
        uint64_t have = (uint64_t)st.st_size > data_start ? (uint64_t)st.st_size - data_start : 0;
        if (have != want)
            LM_FAIL(LM_ERR_ARG,
                    "load_npy: %s: the header promises %llu data bytes (shape %s, '%s') but the "
                    "file holds %llu",
                    path, (unsigned long long)want, lm__shp_raw(h.ndim, h.shape).s, h.descr,
                    (unsigned long long)have);
    }

    int64_t shape[LM_MAX_DIMS];
    for (int i = 0; i < h.ndim; i++) shape[i] = h.fortran ? h.shape[h.ndim - 1 - i] : h.shape[i];
    lm_tensor *t = lm__new("load_npy", h.ndim, shape, ty->dt, LM_CPU);
    if (!t) return NULL;
    if (numel > 0 && !read_elements(f, path, ty, lm_data(t), numel)) {
        lm_release(t);
        return NULL;
    }
    if (!h.fortran || h.ndim < 2) return t;
    int perm[LM_MAX_DIMS];
    for (int i = 0; i < h.ndim; i++) perm[i] = h.ndim - 1 - i;
    lm_tensor *view = lm_permute(t, perm);
    lm_release(t);
    lm_tensor *c = lm_contiguous(view);
    lm_release(view);
    return c;
}

lm_tensor *lm_load_npy(const char *path)
{
    if (!path) LM_FAIL(LM_ERR_ARG, "load_npy: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) LM_FAIL(LM_ERR_IO, "load_npy: %s: %s", path, strerror(errno));
    lm_tensor *t = load_body(f, path);
    fclose(f);
    return t;
}

/* ---- saving --------------------------------------------------------------------------- */

static const char *descr_of(lm_dtype dt)
{
    switch (dt) {
    case LM_F32: return "<f4";
    case LM_F64: return "<f8";
    case LM_I64: return "<i8";
    case LM_U8: return "|u1";
    default: return NULL;
    }
}

/* The 1.0 preamble and header, padded with spaces and a final '\n' so that the data starts at
 * a multiple of NPY_ALIGN. Returns the total length written into buf. */
static size_t build_header(const lm_tensor *t, char *buf, size_t cap)
{
    char shape[LM_MAX_DIMS * 24 + 4];
    size_t n = 0;
    shape[n++] = '(';
    for (int i = 0; i < t->ndim; i++)
        n += (size_t)snprintf(shape + n, sizeof shape - n, i ? ", %lld" : "%lld",
                              (long long)t->shape[i]);
    if (t->ndim == 1) shape[n++] = ',';
    shape[n++] = ')';
    shape[n] = '\0';

    size_t pre = NPY_MAGIC_LEN + 2 + 2;
    int dict = snprintf(buf + pre, cap - pre, "{'descr': '%s', 'fortran_order': False, "
                        "'shape': %s, }", descr_of(t->dtype), shape);
    size_t total = pre + (size_t)dict + 1; /* + '\n' */
    total = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    memset(buf + pre + dict, ' ', total - pre - (size_t)dict - 1);
    buf[total - 1] = '\n';
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[NPY_MAGIC_LEN] = 1;
    buf[NPY_MAGIC_LEN + 1] = 0;
    uint16_t hlen = (uint16_t)(total - pre);
    buf[NPY_MAGIC_LEN + 2] = (char)(hlen & 0xff);
    buf[NPY_MAGIC_LEN + 3] = (char)(hlen >> 8);
    return total;
}

lm_status lm_save_npy(const lm_tensor *t, const char *path)
{
    if (!lm__arg(t, "save_npy")) return lm_last_status();
    if (!path) return lm__error(LM_ERR_ARG, "save_npy: NULL path");
    if (!descr_of(t->dtype))
        return lm__error(LM_ERR_DTYPE, "save_npy: %s: dtype %d cannot be saved", path, t->dtype);
    if (t->storage->device != LM_CPU)
        return lm__error(LM_ERR_UNSUPPORTED, "save_npy: %s: the tensor is not on the CPU", path);

    /* A detached view keeps lm_contiguous from recording an autograd node. */
    lm_tensor *d = lm_detach(t);
    lm_tensor *c = lm_contiguous(d);
    lm_release(d);
    if (!c) return lm_last_status();

    char header[512];
    size_t hlen = build_header(c, header, sizeof header);
    FILE *f = fopen(path, "wb");
    if (!f) {
        lm_release(c);
        return lm__error(LM_ERR_IO, "save_npy: %s: %s", path, strerror(errno));
    }
    size_t nbytes = lm_nbytes(c);
    bool okay = fwrite(header, 1, hlen, f) == hlen &&
                (nbytes == 0 || fwrite(lm_data(c), 1, nbytes, f) == nbytes);
    int err = errno;
    if (fclose(f) != 0 && okay) {
        okay = false;
        err = errno;
    }
    lm_release(c);
    if (okay) return LM_OK;
    /* A half-written file would load as a truncated array later: remove it. */
    remove(path);
    return lm__error(LM_ERR_IO, "save_npy: %s: write failed: %s", path, strerror(err));
}
