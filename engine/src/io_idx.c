/* io_idx.c — lm_load_idx: the IDX files MNIST ships in (http://yann.lecun.com/exdb/mnist/),
 * gzipped or plain.
 *
 * The format: two zero bytes, a type byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32,
 * 0x0E f64), the number of dims, one big-endian u32 size per dim, then the elements in C order,
 * big-endian. zlib's gz* functions read gzip and plain files alike, so one path serves both.
 *
 * The file must hold exactly the bytes the sizes promise. A plain file is checked against its
 * size before the tensor is allocated; a gzipped one against the most its size could inflate to,
 * then exactly while it is read (its length is not known in advance); a damaged gzip stream
 * fails with zlib's message. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_CHUNK (1u << 20)     /* bytes per gzread: bounded so it fits in an unsigned int */
#define IDX_GZBUFFER (128u << 10) /* zlib's default 8 KiB buffer makes MNIST reads slower */
#define DEFLATE_MAX_RATIO 1032    /* deflate cannot expand one byte to more than ~1032 bytes */

typedef struct {
    int code;
    const char *name;
    size_t size;
    lm_dtype dt;
} idx_type;

static const idx_type idx_types[] = {
    {0x08, "u8", 1, LM_U8},   {0x09, "i8", 1, LM_I64},  {0x0B, "i16", 2, LM_I64},
    {0x0C, "i32", 4, LM_I64}, {0x0D, "f32", 4, LM_F32}, {0x0E, "f64", 8, LM_F64},
};

/* Reads up to n bytes; returns how many were read, or -1 with the error set on a zlib error
 * (a damaged or truncated gzip stream). */
static int64_t gz_read(gzFile gz, void *buf, size_t n, const char *path)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got < IDX_CHUNK ? n - got : IDX_CHUNK;
        int r = gzread(gz, (char *)buf + got, (unsigned)want);
        if (r < 0 || (r == 0 && got < n)) {
            int errnum;
            const char *msg = gzerror(gz, &errnum);
            if (r < 0 || (errnum != Z_OK && errnum != Z_BUF_ERROR)) {
                lm__error(LM_ERR_IO, "load_idx: %s: %s", path,
                          errnum == Z_ERRNO ? strerror(errno) : msg);
                return -1;
            }
            break; /* end of file; Z_BUF_ERROR is a gzip stream cut short: the caller counts */
        }
        got += (size_t)r;
    }
    return (int64_t)got;
}

static uint64_t be_u32(const unsigned char *b)
{
    return (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
}

/* Converts n big-endian elements in place (same size) or from src into dst (widening to i64). */
static void convert(const idx_type *ty, const unsigned char *src, void *dst, size_t n)
{
    switch (ty->code) {
    case 0x08: break; /* read in place, nothing to do */
    case 0x09:
        for (size_t i = 0; i < n; i++) ((int64_t *)dst)[i] = (int8_t)src[i];
        break;
    case 0x0B:
        for (size_t i = 0; i < n; i++)
            ((int64_t *)dst)[i] = (int16_t)(uint16_t)(src[2 * i] << 8 | src[2 * i + 1]);
        break;
    case 0x0C:
        for (size_t i = 0; i < n; i++) ((int64_t *)dst)[i] = (int32_t)(uint32_t)be_u32(src + 4 * i);
        break;
    case 0x0D:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)be_u32(src + 4 * i);
            memcpy((float *)dst + i, &u, 4);
        }
        break;
    case 0x0E:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = be_u32(src + 8 * i) << 32 | be_u32(src + 8 * i + 4);
            memcpy((double *)dst + i, &u, 8);
        }
        break;
    }
}

/* The elements: read straight into the tensor when sizes match (then converted in place, which
 * is safe as each element is read before it is written), else through a chunk buffer. Returns
 * the bytes read (fewer than promised when the file is short), or -1 on a read error. */
static int64_t read_data(gzFile gz, const char *path, const idx_type *ty, lm_tensor *t)
{
    int64_t n = lm_numel(t);
    if (ty->size == lm_dtype_size(ty->dt)) {
        int64_t got = gz_read(gz, lm_data(t), (size_t)n * ty->size, path);
        if (got == n * (int64_t)ty->size) convert(ty, lm_data(t), lm_data(t), (size_t)n);
        return got;
    }
    size_t chunk_elems = IDX_CHUNK / ty->size;
    unsigned char *buf = malloc(IDX_CHUNK);
    if (!buf) {
        lm__error(LM_ERR_MEMORY, "load_idx: %s: no memory for a conversion buffer", path);
        return -1;
    }
    int64_t done = 0, bytes = 0;
    while (done < n) {
        size_t m = (size_t)(n - done) < chunk_elems ? (size_t)(n - done) : chunk_elems;
        int64_t got = gz_read(gz, buf, m * ty->size, path);
        if (got < 0) {
            free(buf);
            return -1;
        }
        bytes += got;
        if ((size_t)got < m * ty->size) break;
        convert(ty, buf, (int64_t *)lm_data(t) + done, m);
        done += (int64_t)m;
    }
    free(buf);
    return bytes;
}

/* Counts the bytes left after the data (they make the file invalid); -1 on a read error. */
static int64_t count_rest(gzFile gz, const char *path)
{
    unsigned char buf[4096];
    int64_t total = 0;
    for (;;) {
        int64_t got = gz_read(gz, buf, sizeof buf, path);
        if (got < 0) return -1;
        total += got;
        if (got < (int64_t)sizeof buf) return total;
    }
}

static lm_tensor *load_body(gzFile gz, const char *path)
{
    unsigned char head[4];
    int64_t got = gz_read(gz, head, 4, path);
    if (got < 0) return NULL;
    if (got < 4)
        LM_FAIL(LM_ERR_ARG, "load_idx: %s: truncated: %lld bytes, too short for the 4-byte magic",
                path, (long long)got);
    if (head[0] != 0 || head[1] != 0)
        LM_FAIL(LM_ERR_ARG, "load_idx: %s: not an IDX file (magic %02x %02x %02x %02x does not "
                "start with two zero bytes)", path, head[0], head[1], head[2], head[3]);
    const idx_type *ty = NULL;
    for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
        if (idx_types[i].code == head[2]) ty = &idx_types[i];
    if (!ty)
        LM_FAIL(LM_ERR_ARG, "load_idx: %s: unknown element type 0x%02x (known: 08 u8, 09 i8, 0B "
                "i16, 0C i32, 0D f32, 0E f64)", path, head[2]);
    int ndim = head[3];
    if (ndim > LM_MAX_DIMS)
        LM_FAIL(LM_ERR_ARG, "load_idx: %s: %d dims (tensors have at most %d)", path, ndim,
                LM_MAX_DIMS);
    unsigned char dims[4 * LM_MAX_DIMS];
    got = gz_read(gz, dims, 4 * (size_t)ndim, path);
    if (got < 0) return NULL;
    if (got < 4 * ndim)
        LM_FAIL(LM_ERR_ARG, "load_idx: %s: truncated in the sizes of %d dims (%lld of %d bytes)",
                path, ndim, (long long)got, 4 * ndim);
    int64_t shape[LM_MAX_DIMS], numel = 1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = (int64_t)be_u32(dims + 4 * i);
        /* Each size is below 2^32, so the product of up to 8 of them is checked step by step. */
        if (shape[i] && numel > INT64_MAX / 16 / shape[i])
            LM_FAIL(LM_ERR_ARG, "load_idx: %s: shape %s is too large", path,
                    lm__shp_raw(ndim, shape).s);
        numel *= shape[i];
    }
    uint64_t want = (uint64_t)numel * ty->size;
    uint64_t header = 4 + 4 * (uint64_t)ndim;

    /* Before allocating: a plain file must have exactly the promised size; a gzipped one
     * cannot hold more than deflate's maximum ratio allows, so a damaged header cannot make us
     * allocate far beyond what the file could hold. */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        uint64_t size = (uint64_t)st.st_size;
        if (gzdirect(gz) && size - header != want)
            LM_FAIL(LM_ERR_ARG, "load_idx: %s: the header promises %llu data bytes (shape %s %s) "
                    "but the file holds %llu", path, (unsigned long long)want,
                    lm__shp_raw(ndim, shape).s, ty->name, (unsigned long long)(size - header));
        if (!gzdirect(gz) && want / DEFLATE_MAX_RATIO > size)
            LM_FAIL(LM_ERR_ARG, "load_idx: %s: the header promises %llu data bytes (shape %s %s), "
                    "more than a %llu-byte gzip file can hold", path, (unsigned long long)want,
                    lm__shp_raw(ndim, shape).s, ty->name, (unsigned long long)size);
    }

    lm_tensor *t = lm__new("load_idx", ndim, shape, ty->dt, LM_CPU);
    if (!t) return NULL;
    got = numel ? read_data(gz, path, ty, t) : 0;
    int64_t rest = got == (int64_t)want ? count_rest(gz, path) : 0;
    if (got < 0 || rest < 0) {
        lm_release(t);
        return NULL;
    }
    if (got != (int64_t)want || rest != 0) {
        lm_release(t);
        int errnum;
        gzerror(gz, &errnum);
        LM_FAIL(LM_ERR_ARG, "load_idx: %s: the header promises %llu data bytes (shape %s %s) but "
                "the file holds %llu%s", path, (unsigned long long)want,
                lm__shp_raw(ndim, shape).s, ty->name, (unsigned long long)(got + rest),
                gzdirect(gz) ? "" : errnum == Z_BUF_ERROR ? " (the gzip stream is cut short)"
                                                          : " after decompression");
    }
    return t;
}

lm_tensor *lm_load_idx(const char *path)
{
    if (!path) LM_FAIL(LM_ERR_ARG, "load_idx: NULL path");
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        LM_FAIL(errno == ENOMEM ? LM_ERR_MEMORY : LM_ERR_IO, "load_idx: %s: %s", path,
                errno ? strerror(errno) : "cannot open");
    /* Fails only when called after a read or with a tiny size; the buffer is allocated at the
     * first read, whose failure is reported. */
    (void)gzbuffer(gz, IDX_GZBUFFER);
    lm_tensor *t = load_body(gz, path);
    int rc = gzclose(gz);
    if (t && rc != Z_OK) {
        /* A stream that ends without its gzip trailer is only noticed at close. */
        lm_release(t);
        LM_FAIL(LM_ERR_IO, "load_idx: %s: damaged gzip stream (zlib error %d at close)", path, rc);
    }
    return t;
}
