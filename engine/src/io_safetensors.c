/* io_safetensors.c — safetensors checkpoints: lm_safetensors_save, lm_safetensors_load and
 * lm_tensor_file_free, with the small JSON writer and strict JSON parser the header needs.
 *
 * The format (https://huggingface.co/docs/safetensors): an 8-byte little-endian u64 N, then N
 * bytes of UTF-8 JSON (may end with spaces; we pad so the data starts at a multiple of 8), then
 * the byte buffer. The header maps each tensor name to {"dtype", "shape", "data_offsets":
 * [BEGIN, END]} with offsets relative to the buffer, and may hold "__metadata__", a map of
 * strings to strings. The tensors must tile the buffer exactly: no holes, no overlaps.
 *
 * Loading trusts nothing: the header length is checked against the file and a limit before it is
 * read, the JSON is parsed strictly (errors give the byte position), every entry is checked
 * against its dtype and shape, and the tiling is checked before any tensor is allocated, so a
 * damaged file cannot make us allocate more than the file holds. Saving writes PATH.tmp, syncs
 * it and renames it over PATH, so a crash leaves either the old file or the new one. */
#include "internal.h"
#include "strbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "io_safetensors.c assumes a little-endian host");

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* a header beyond 100 MB is damage, not a model */
#define ST_MAX_DEPTH 16                    /* the header nests 3 deep; this bounds recursion */
#define ST_ALIGN 8
#define ST_META "__metadata__"

typedef struct {
    const char *name;
    lm_dtype dt;
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", LM_F32}, {"F64", LM_F64}, {"I64", LM_I64}, {"U8", LM_U8}};

static const char *st_dtype_name(lm_dtype dt)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dt == dt) return st_dtypes[i].name;
    return NULL;
}

/* Is s[0..n) well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF)? */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

/* ---- writing the header into an lm__strbuf (strbuf.h) ---------------------------------- */

static void sb_u64(lm__strbuf *b, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    lm__sb_put(b, num, (size_t)n);
}

/* A JSON string literal: quotes, backslashes and control characters escaped; other bytes (UTF-8,
 * checked by the caller) as they are. */
static void sb_json_str(lm__strbuf *b, const char *s)
{
    lm__sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': lm__sb_put(b, "\\\"", 2); break;
        case '\\': lm__sb_put(b, "\\\\", 2); break;
        case '\b': lm__sb_put(b, "\\b", 2); break;
        case '\f': lm__sb_put(b, "\\f", 2); break;
        case '\n': lm__sb_put(b, "\\n", 2); break;
        case '\r': lm__sb_put(b, "\\r", 2); break;
        case '\t': lm__sb_put(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                lm__sb_put(b, esc, 6);
            } else {
                lm__sb_put(b, (const char *)p, 1);
            }
        }
    }
    lm__sb_put(b, "\"", 1);
}

/* ---- JSON values and the strict parser ----------------------------------------------- */

typedef enum { J_OBJECT, J_ARRAY, J_STRING, J_INTEGER } jkind;

typedef struct jval jval;
typedef struct jmember jmember;

struct jval {
    jkind kind;
    size_t pos; /* header byte where the value starts, for messages */
    union {
        struct { jmember *items; int n; } obj;
        struct { jval *items; int n; } arr;
        char *str;   /* NUL-terminated UTF-8; \u0000 is refused, so no NUL inside */
        struct { bool neg; uint64_t u; } num;
    } u;
};

struct jmember {
    char *key;
    jval val;
};

static void jval_free(jval *v)
{
    switch (v->kind) {
    case J_OBJECT:
        for (int i = 0; i < v->u.obj.n; i++) {
            free(v->u.obj.items[i].key);
            jval_free(&v->u.obj.items[i].val);
        }
        free(v->u.obj.items);
        break;
    case J_ARRAY:
        for (int i = 0; i < v->u.arr.n; i++) jval_free(&v->u.arr.items[i]);
        free(v->u.arr.items);
        break;
    case J_STRING: free(v->u.str); break;
    case J_INTEGER: break;
    }
}

typedef struct {
    const char *s;
    size_t n, pos;
    const char *path;
    int depth;
} jparser;

static bool json_error(jparser *p, const char *what)
{
    lm__error(LM_ERR_ARG, "safetensors_load: %s: bad JSON header at byte %zu (file offset %zu): %s",
              p->path, p->pos, p->pos + 8, what);
    return false;
}

static bool json_oom(jparser *p)
{
    lm__error(LM_ERR_MEMORY, "safetensors_load: %s: no memory while parsing the header", p->path);
    return false;
}

static void json_space(jparser *p)
{
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                             p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits after "\u". */
static bool json_hex4(jparser *p, uint32_t *out)
{
    if (p->n - p->pos < 4) return json_error(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p->s[p->pos + (size_t)i]);
        if (d < 0) return json_error(p, "bad hex digit in a \\u escape");
        v = v << 4 | (uint32_t)d;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static void put_utf8(lm__strbuf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    }
    lm__sb_put(b, u, n);
}

/* A string at p->pos (which holds '"'); *out is malloc'd. */
static bool json_string(jparser *p, char **out)
{
    size_t start = p->pos;
    lm__strbuf b = {0};
    p->pos++;
    for (;;) {
        if (p->pos >= p->n) {
            free(b.s);
            p->pos = start;
            return json_error(p, "unterminated string");
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            free(b.s);
            return json_error(p, "control character in a string");
        }
        if (c != '\\') {
            lm__sb_put(&b, (const char *)&c, 1);
            p->pos++;
            continue;
        }
        p->pos++;
        char e = p->pos < p->n ? p->s[p->pos] : '\0';
        p->pos++;
        const char *simple = NULL;
        switch (e) {
        case '"': simple = "\""; break;
        case '\\': simple = "\\"; break;
        case '/': simple = "/"; break;
        case 'b': simple = "\b"; break;
        case 'f': simple = "\f"; break;
        case 'n': simple = "\n"; break;
        case 'r': simple = "\r"; break;
        case 't': simple = "\t"; break;
        case 'u': break;
        default:
            free(b.s);
            p->pos -= 2;
            return json_error(p, "bad escape in a string");
        }
        if (simple) {
            lm__sb_put(&b, simple, 1);
            continue;
        }
        size_t esc_pos = p->pos - 2;
        uint32_t cp;
        if (!json_hex4(p, &cp)) {
            free(b.s);
            return false;
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            /* A high surrogate must be followed by an escaped low one: together one code point. */
            uint32_t lo;
            if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                free(b.s);
                p->pos = esc_pos;
                return json_error(p, "unpaired surrogate in a \\u escape");
            }
            p->pos += 2;
            if (!json_hex4(p, &lo)) {
                free(b.s);
                return false;
            }
            if (lo < 0xdc00 || lo > 0xdfff) {
                free(b.s);
                p->pos = esc_pos;
                return json_error(p, "unpaired surrogate in a \\u escape");
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            free(b.s);
            p->pos = esc_pos;
            return json_error(p, "unpaired surrogate in a \\u escape");
        } else if (cp == 0) {
            free(b.s);
            p->pos = esc_pos;
            return json_error(p, "\\u0000 is not supported in names and strings");
        }
        put_utf8(&b, cp);
    }
    if (!b.s) lm__sb_put(&b, "", 0);
    if (b.failed) {
        free(b.s);
        return json_oom(p);
    }
    if (!utf8_valid((const unsigned char *)b.s, b.len)) {
        free(b.s);
        p->pos = start;
        return json_error(p, "string is not valid UTF-8");
    }
    *out = b.s;
    return true;
}

/* An integer: -?(0|[1-9][0-9]*); fractions and exponents are refused (the header has none). */
static bool json_integer(jparser *p, jval *v)
{
    v->kind = J_INTEGER;
    v->u.num.neg = false;
    v->u.num.u = 0;
    if (p->s[p->pos] == '-') {
        v->u.num.neg = true;
        p->pos++;
    }
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9')
        return json_error(p, "expected a digit");
    if (p->s[p->pos] == '0' && p->pos + 1 < p->n && p->s[p->pos + 1] >= '0' &&
        p->s[p->pos + 1] <= '9')
        return json_error(p, "leading zeros are not allowed");
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        unsigned d = (unsigned)(p->s[p->pos] - '0');
        if (v->u.num.u > (UINT64_MAX - d) / 10) return json_error(p, "integer too large");
        v->u.num.u = v->u.num.u * 10 + d;
        p->pos++;
    }
    if (p->pos < p->n && (p->s[p->pos] == '.' || p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
        return json_error(p, "numbers in the header must be integers");
    return true;
}

static bool json_value(jparser *p, jval *v);

static bool json_object(jparser *p, jval *v)
{
    v->kind = J_OBJECT;
    v->u.obj.items = NULL;
    v->u.obj.n = 0;
    int cap = 0;
    p->pos++; /* '{' */
    json_space(p);
    if (p->pos < p->n && p->s[p->pos] == '}') {
        p->pos++;
        return true;
    }
    for (;;) {
        json_space(p);
        if (p->pos >= p->n || p->s[p->pos] != '"') return json_error(p, "expected a string key");
        size_t key_pos = p->pos;
        char *key;
        if (!json_string(p, &key)) return false;
        for (int i = 0; i < v->u.obj.n; i++) {
            if (strcmp(v->u.obj.items[i].key, key) == 0) {
                free(key);
                p->pos = key_pos;
                return json_error(p, "duplicate key");
            }
        }
        if (v->u.obj.n == cap) {
            int ncap = cap ? 2 * cap : 8;
            jmember *items = realloc(v->u.obj.items, sizeof *items * (size_t)ncap);
            if (!items) {
                free(key);
                return json_oom(p);
            }
            v->u.obj.items = items;
            cap = ncap;
        }
        jmember *m = &v->u.obj.items[v->u.obj.n];
        m->key = key;
        json_space(p);
        if (p->pos >= p->n || p->s[p->pos] != ':') {
            free(key);
            return json_error(p, "expected ':' after an object key");
        }
        p->pos++;
        if (!json_value(p, &m->val)) {
            jval_free(&m->val);
            free(key);
            return false;
        }
        v->u.obj.n++;
        json_space(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
        } else if (p->pos < p->n && p->s[p->pos] == '}') {
            p->pos++;
            return true;
        } else {
            return json_error(p, "expected ',' or '}' in an object");
        }
    }
}

static bool json_array(jparser *p, jval *v)
{
    v->kind = J_ARRAY;
    v->u.arr.items = NULL;
    v->u.arr.n = 0;
    int cap = 0;
    p->pos++; /* '[' */
    json_space(p);
    if (p->pos < p->n && p->s[p->pos] == ']') {
        p->pos++;
        return true;
    }
    for (;;) {
        if (v->u.arr.n == cap) {
            int ncap = cap ? 2 * cap : 8;
            jval *items = realloc(v->u.arr.items, sizeof *items * (size_t)ncap);
            if (!items) return json_oom(p);
            v->u.arr.items = items;
            cap = ncap;
        }
        if (!json_value(p, &v->u.arr.items[v->u.arr.n])) {
            jval_free(&v->u.arr.items[v->u.arr.n]);
            return false;
        }
        v->u.arr.n++;
        json_space(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
        } else if (p->pos < p->n && p->s[p->pos] == ']') {
            p->pos++;
            return true;
        } else {
            return json_error(p, "expected ',' or ']' in an array");
        }
    }
}

/* On failure *v holds what was parsed so far, which jval_free releases. */
static bool json_value(jparser *p, jval *v)
{
    json_space(p);
    v->kind = J_INTEGER; /* nothing to free until a container or string exists */
    v->pos = p->pos;
    if (p->pos >= p->n) return json_error(p, "unexpected end of the header");
    char c = p->s[p->pos];
    if (c == '{' || c == '[') {
        if (p->depth == ST_MAX_DEPTH) return json_error(p, "nested too deeply");
        p->depth++;
        bool okay = c == '{' ? json_object(p, v) : json_array(p, v);
        p->depth--;
        return okay;
    }
    if (c == '"') {
        char *s;
        if (!json_string(p, &s)) return false;
        v->kind = J_STRING;
        v->u.str = s;
        return true;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return json_integer(p, v);
    if (c >= 0x20 && c < 0x7f) {
        char what[48];
        snprintf(what, sizeof what, "unexpected character '%c'", c);
        return json_error(p, what);
    }
    char what[48];
    snprintf(what, sizeof what, "unexpected byte 0x%02x", (unsigned char)c);
    return json_error(p, what);
}

/* The whole header: one object, then only whitespace. */
static bool json_parse(const char *s, size_t n, const char *path, jval *root)
{
    jparser p = {s, n, 0, path, 0};
    json_space(&p);
    if (p.pos >= n || s[p.pos] != '{') {
        root->kind = J_INTEGER;
        return json_error(&p, "the header must be a JSON object");
    }
    if (!json_value(&p, root)) return false;
    json_space(&p);
    if (p.pos != n) return json_error(&p, "unexpected text after the header object");
    return true;
}

static const jval *json_get(const jval *obj, const char *key)
{
    for (int i = 0; i < obj->u.obj.n; i++)
        if (strcmp(obj->u.obj.items[i].key, key) == 0) return &obj->u.obj.items[i].val;
    return NULL;
}

/* ---- loading -------------------------------------------------------------------------- */

/* One tensor entry of the header, checked. */
typedef struct {
    const char *name; /* points into the parsed header */
    lm_dtype dt;
    int ndim;
    int64_t shape[LM_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

#define ENTRY_FAIL(...) \
    do { lm__error(LM_ERR_ARG, __VA_ARGS__); return false; } while (0)

static bool check_entry(const char *path, const char *name, const jval *v, st_entry *e)
{
    e->name = name;
    if (v->kind != J_OBJECT)
        ENTRY_FAIL("safetensors_load: %s: tensor '%.100s': entry at byte %zu is not an object",
                   path, name, v->pos);
    const jval *dtype = json_get(v, "dtype"), *shape = json_get(v, "shape");
    const jval *offs = json_get(v, "data_offsets");
    if (!dtype || dtype->kind != J_STRING)
        ENTRY_FAIL("safetensors_load: %s: tensor '%.100s': missing or non-string \"dtype\"", path,
                   name);
    size_t k = 0, nd = sizeof st_dtypes / sizeof st_dtypes[0];
    while (k < nd && strcmp(st_dtypes[k].name, dtype->u.str) != 0) k++;
    if (k == nd) {
        /* Valid safetensors (BF16, I32, ...), but not a dtype of ours: unsupported, not bad. */
        lm__error(LM_ERR_UNSUPPORTED, "safetensors_load: %s: tensor '%.100s': unsupported dtype "
                  "'%.32s' (supported: F32 F64 I64 U8)", path, name, dtype->u.str);
        return false;
    }
    e->dt = st_dtypes[k].dt;

    if (!shape || shape->kind != J_ARRAY)
        ENTRY_FAIL("safetensors_load: %s: tensor '%.100s': missing or non-array \"shape\"", path,
                   name);
    if (shape->u.arr.n > LM_MAX_DIMS)
        ENTRY_FAIL("safetensors_load: %s: tensor '%.100s': %d dims (at most %d)", path, name,
                   shape->u.arr.n, LM_MAX_DIMS);
    e->ndim = shape->u.arr.n;
    uint64_t numel = 1;
    for (int i = 0; i < e->ndim; i++) {
        const jval *d = &shape->u.arr.items[i];
        if (d->kind != J_INTEGER || d->u.num.neg || d->u.num.u > (uint64_t)INT64_MAX)
            ENTRY_FAIL("safetensors_load: %s: tensor '%.100s': shape entry %d is not a "
                       "non-negative integer",
                       path, name, i);
        e->shape[i] = (int64_t)d->u.num.u;
        if (d->u.num.u && numel > (uint64_t)INT64_MAX / 16 / d->u.num.u)
            ENTRY_FAIL("safetensors_load: %s: tensor '%.100s': shape %s is too large", path, name,
                       lm__shp_raw(e->ndim, e->shape).s);
        numel *= d->u.num.u;
    }

    if (!offs || offs->kind != J_ARRAY || offs->u.arr.n != 2 ||
        offs->u.arr.items[0].kind != J_INTEGER || offs->u.arr.items[1].kind != J_INTEGER ||
        offs->u.arr.items[0].u.num.neg || offs->u.arr.items[1].u.num.neg)
        ENTRY_FAIL("safetensors_load: %s: tensor '%.100s': \"data_offsets\" must be [BEGIN, END] "
                   "with non-negative integers",
                   path, name);
    e->begin = offs->u.arr.items[0].u.num.u;
    e->end = offs->u.arr.items[1].u.num.u;
    if (e->end < e->begin)
        ENTRY_FAIL("safetensors_load: %s: tensor '%.100s': data_offsets [%llu,%llu] end before "
                   "they begin",
                   path, name, (unsigned long long)e->begin, (unsigned long long)e->end);
    uint64_t need = numel * lm_dtype_size(e->dt);
    if (e->end - e->begin != need)
        ENTRY_FAIL("safetensors_load: %s: tensor '%.100s': data_offsets [%llu,%llu] span %llu "
                   "bytes but shape %s %s needs %llu",
                   path, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                   (unsigned long long)(e->end - e->begin), lm__shp_raw(e->ndim, e->shape).s,
                   st_dtypes[k].name, (unsigned long long)need);
    return true;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* The tensors must cover [0, buffer) exactly, in some order. order receives the entries sorted
 * by offset (the order the data is read in); an empty tensor sorts before a non-empty one that
 * begins at the same byte. */
static bool check_tiling(const char *path, const st_entry *e, int n, uint64_t buffer,
                         const st_entry **order)
{
    for (int i = 0; i < n; i++) order[i] = &e[i];
    qsort(order, (size_t)n, sizeof *order, cmp_by_offset);
    uint64_t at = 0;
    const st_entry *prev = NULL;
    for (int i = 0; i < n; i++) {
        const st_entry *x = order[i];
        if (x->begin > at) {
            if (prev)
                ENTRY_FAIL("safetensors_load: %s: hole in the data between tensor '%.100s' (ends "
                           "at %llu) and tensor '%.100s' (begins at %llu)",
                           path, prev->name, (unsigned long long)at, x->name,
                           (unsigned long long)x->begin);
            ENTRY_FAIL("safetensors_load: %s: hole in the data before tensor '%.100s' (begins at "
                       "%llu, not 0)",
                       path, x->name, (unsigned long long)x->begin);
        }
        if (x->begin < at)
            ENTRY_FAIL("safetensors_load: %s: tensor '%.100s' data_offsets [%llu,%llu] overlap "
                       "tensor '%.100s' [%llu,%llu]",
                       path, x->name, (unsigned long long)x->begin, (unsigned long long)x->end,
                       prev->name, (unsigned long long)prev->begin,
                       (unsigned long long)prev->end);
        at = x->end;
        prev = x;
    }
    if (at != buffer) {
        if (at > buffer)
            ENTRY_FAIL("safetensors_load: %s: tensor '%.100s' ends at byte %llu of the data but "
                       "the file holds only %llu data bytes (truncated?)",
                       path, prev->name, (unsigned long long)at, (unsigned long long)buffer);
        ENTRY_FAIL("safetensors_load: %s: %llu data bytes after the last tensor (%llu of %llu "
                   "used)",
                   path, (unsigned long long)(buffer - at), (unsigned long long)at,
                   (unsigned long long)buffer);
    }
    return true;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static lm_tensor_file *file_new(int n, int n_meta)
{
    lm_tensor_file *tf = calloc(1, sizeof *tf);
    if (!tf) return NULL;
    if (n > 0) {
        tf->names = calloc((size_t)n, sizeof *tf->names);
        tf->tensors = calloc((size_t)n, sizeof *tf->tensors);
    }
    if (n_meta > 0) {
        tf->meta_keys = calloc((size_t)n_meta, sizeof *tf->meta_keys);
        tf->meta_values = calloc((size_t)n_meta, sizeof *tf->meta_values);
    }
    if ((n > 0 && (!tf->names || !tf->tensors)) ||
        (n_meta > 0 && (!tf->meta_keys || !tf->meta_values))) {
        lm_tensor_file_free(tf);
        return NULL;
    }
    return tf;
}

void lm_tensor_file_free(lm_tensor_file *f)
{
    if (!f) return;
    for (int i = 0; f->names && i < f->n; i++) free(f->names[i]);
    for (int i = 0; f->tensors && i < f->n; i++) lm_release(f->tensors[i]);
    for (int i = 0; f->meta_keys && i < f->n_meta; i++) free(f->meta_keys[i]);
    for (int i = 0; f->meta_values && i < f->n_meta; i++) free(f->meta_values[i]);
    free(f->names);
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f);
}

/* Builds the result from the checked header, reading the data in offset order. */
static lm_tensor_file *load_tensors(FILE *f, const char *path, const jval *root,
                                    const st_entry *e, const st_entry *const *order, int n)
{
    const jval *meta = json_get(root, ST_META);
    int n_meta = meta ? meta->u.obj.n : 0;
    lm_tensor_file *tf = file_new(n, n_meta);
    if (!tf) {
        lm__error(LM_ERR_MEMORY, "safetensors_load: %s: no memory for the result", path);
        return NULL;
    }
    tf->n = n;
    tf->n_meta = n_meta;
    for (int i = 0; i < n_meta; i++) {
        tf->meta_keys[i] = dup_str(meta->u.obj.items[i].key);
        tf->meta_values[i] = dup_str(meta->u.obj.items[i].val.u.str);
        if (!tf->meta_keys[i] || !tf->meta_values[i]) {
            lm_tensor_file_free(tf);
            lm__error(LM_ERR_MEMORY, "safetensors_load: %s: no memory for the metadata", path);
            return NULL;
        }
    }
    for (int i = 0; i < n; i++) {
        tf->names[i] = dup_str(e[i].name);
        if (!tf->names[i]) {
            lm_tensor_file_free(tf);
            lm__error(LM_ERR_MEMORY, "safetensors_load: %s: no memory for the names", path);
            return NULL;
        }
    }
    for (int k = 0; k < n; k++) {
        const st_entry *x = order[k];
        lm_tensor *t = lm__new("safetensors_load", x->ndim, x->shape, x->dt, LM_CPU);
        if (!t) {
            lm_tensor_file_free(tf);
            return NULL;
        }
        tf->tensors[x - e] = t;
        size_t nbytes = (size_t)(x->end - x->begin);
        if (nbytes && fread(lm_data(t), 1, nbytes, f) != nbytes) {
            if (ferror(f))
                lm__error(LM_ERR_IO, "safetensors_load: %s: read error in tensor '%.100s': %s",
                          path, x->name, strerror(errno));
            else
                lm__error(LM_ERR_IO, "safetensors_load: %s: the file ended inside tensor "
                          "'%.100s' (it changed while being read?)", path, x->name);
            lm_tensor_file_free(tf);
            return NULL;
        }
    }
    return tf;
}

/* Checks every header entry and the tiling, then loads. */
static lm_tensor_file *load_checked(FILE *f, const char *path, const jval *root, uint64_t buffer)
{
    int n = 0;
    for (int i = 0; i < root->u.obj.n; i++) {
        const jmember *m = &root->u.obj.items[i];
        if (strcmp(m->key, ST_META) != 0) {
            n++;
            continue;
        }
        if (m->val.kind != J_OBJECT) {
            lm__error(LM_ERR_ARG, "safetensors_load: %s: \"__metadata__\" at byte %zu is not an "
                      "object", path, m->val.pos);
            return NULL;
        }
        for (int j = 0; j < m->val.u.obj.n; j++) {
            if (m->val.u.obj.items[j].val.kind != J_STRING) {
                lm__error(LM_ERR_ARG, "safetensors_load: %s: metadata value of '%.100s' is not a "
                          "string", path, m->val.u.obj.items[j].key);
                return NULL;
            }
        }
    }
    st_entry *e = malloc(sizeof *e * (size_t)(n ? n : 1));
    const st_entry **order = malloc(sizeof *order * (size_t)(n ? n : 1));
    lm_tensor_file *tf = NULL;
    if (!e || !order) {
        lm__error(LM_ERR_MEMORY, "safetensors_load: %s: no memory for %d entries", path, n);
    } else {
        int k = 0;
        bool okay = true;
        for (int i = 0; okay && i < root->u.obj.n; i++) {
            const jmember *m = &root->u.obj.items[i];
            if (strcmp(m->key, ST_META) != 0) okay = check_entry(path, m->key, &m->val, &e[k++]);
        }
        if (okay && check_tiling(path, e, n, buffer, order))
            tf = load_tensors(f, path, root, e, order, n);
    }
    free(e);
    free(order);
    return tf;
}

static lm_tensor_file *load_file(FILE *f, const char *path)
{
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        lm__error(LM_ERR_IO, "safetensors_load: %s: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        lm__error(LM_ERR_IO, "safetensors_load: %s: not a regular file", path);
        return NULL;
    }
    uint64_t size = (uint64_t)st.st_size;
    unsigned char lenb[8];
    if (size < 8 || fread(lenb, 1, 8, f) != 8) {
        lm__error(LM_ERR_ARG, "safetensors_load: %s: %llu bytes is too short for the 8-byte "
                  "header length", path, (unsigned long long)size);
        return NULL;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | lenb[i];
    if (hlen > size - 8) {
        lm__error(LM_ERR_ARG, "safetensors_load: %s: header length %llu is beyond the end of the "
                  "file (%llu bytes)", path, (unsigned long long)hlen, (unsigned long long)size);
        return NULL;
    }
    if (hlen > ST_MAX_HEADER) {
        lm__error(LM_ERR_ARG, "safetensors_load: %s: header length %llu is beyond the %llu-byte "
                  "limit", path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        return NULL;
    }
    char *text = malloc((size_t)hlen + 1);
    if (!text) {
        lm__error(LM_ERR_MEMORY, "safetensors_load: %s: no memory for a %llu-byte header", path,
                  (unsigned long long)hlen);
        return NULL;
    }
    if (fread(text, 1, (size_t)hlen, f) != (size_t)hlen) {
        lm__error(LM_ERR_IO, "safetensors_load: %s: cannot read the %llu-byte header: %s", path,
                  (unsigned long long)hlen, ferror(f) ? strerror(errno) : "end of file");
        free(text);
        return NULL;
    }
    text[hlen] = '\0';
    jval root;
    lm_tensor_file *tf = NULL;
    if (json_parse(text, (size_t)hlen, path, &root))
        tf = load_checked(f, path, &root, size - 8 - hlen);
    jval_free(&root);
    free(text);
    return tf;
}

lm_tensor_file *lm_safetensors_load(const char *path)
{
    if (!path) LM_FAIL(LM_ERR_ARG, "safetensors_load: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) LM_FAIL(LM_ERR_IO, "safetensors_load: %s: %s", path, strerror(errno));
    lm_tensor_file *tf = load_file(f, path);
    fclose(f);
    return tf;
}

/* ---- saving --------------------------------------------------------------------------- */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names (or keys) must be present, valid UTF-8 and unique; what says which list. */
static lm_status check_names(const char *path, int n, const char *const *names, const char *what,
                             bool tensor_names)
{
    for (int i = 0; i < n; i++) {
        if (!names[i])
            return lm__error(LM_ERR_ARG, "safetensors_save: %s: %s %d is NULL", path, what, i);
        if (!utf8_valid((const unsigned char *)names[i], strlen(names[i])))
            return lm__error(LM_ERR_ARG, "safetensors_save: %s: %s %d is not valid UTF-8", path,
                             what, i);
        if (tensor_names && strcmp(names[i], ST_META) == 0)
            return lm__error(LM_ERR_ARG, "safetensors_save: %s: \"%s\" is reserved and cannot "
                             "name a tensor", path, ST_META);
    }
    if (n < 2) return LM_OK;
    const char **sorted = malloc(sizeof *sorted * (size_t)n);
    if (!sorted) return lm__error(LM_ERR_MEMORY, "safetensors_save: %s: no memory", path);
    memcpy(sorted, names, sizeof *sorted * (size_t)n);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str_ptr);
    lm_status s = LM_OK;
    for (int i = 1; i < n && s == LM_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            s = lm__error(LM_ERR_ARG, "safetensors_save: %s: %s '%.100s' appears twice", path,
                          what, sorted[i]);
    free(sorted);
    return s;
}

/* The JSON header, padded with spaces so that 8 + its length is a multiple of ST_ALIGN. */
static lm_status build_header(const char *path, int n, const char *const *names,
                              lm_tensor *const *tensors, int n_meta, const char *const *keys,
                              const char *const *values, lm__strbuf *b)
{
    lm__sb_str(b, "{");
    if (n_meta > 0) {
        lm__sb_str(b, "\"" ST_META "\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) lm__sb_str(b, ",");
            sb_json_str(b, keys[i]);
            lm__sb_str(b, ":");
            sb_json_str(b, values[i]);
        }
        lm__sb_str(b, "}");
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const lm_tensor *t = tensors[i];
        if (n_meta > 0 || i) lm__sb_str(b, ",");
        sb_json_str(b, names[i]);
        lm__sb_str(b, ":{\"dtype\":\"");
        lm__sb_str(b, st_dtype_name(t->dtype));
        lm__sb_str(b, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) lm__sb_str(b, ",");
            sb_u64(b, (uint64_t)t->shape[d]);
        }
        lm__sb_str(b, "],\"data_offsets\":[");
        sb_u64(b, at);
        lm__sb_str(b, ",");
        at += lm_nbytes(t);
        sb_u64(b, at);
        lm__sb_str(b, "]}");
    }
    lm__sb_str(b, "}");
    while (!b->failed && b->len % ST_ALIGN) lm__sb_str(b, " ");
    if (b->failed)
        return lm__error(LM_ERR_MEMORY, "safetensors_save: %s: no memory for the header", path);
    return LM_OK;
}

/* Writes the whole file to an open stream; returns false with errno set on a failed write. */
static bool write_all(FILE *f, const lm__strbuf *header, int n, lm_tensor *const *tensors,
                      lm_status *status)
{
    unsigned char lenb[8];
    uint64_t hlen = header->len;
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(hlen >> (8 * i));
    if (fwrite(lenb, 1, 8, f) != 8 || fwrite(header->s, 1, header->len, f) != header->len)
        return false;
    for (int i = 0; i < n; i++) {
        /* A detached view keeps lm_contiguous from recording an autograd node. */
        lm_tensor *d = lm_detach(tensors[i]);
        lm_tensor *c = lm_contiguous(d);
        lm_release(d);
        if (!c) {
            *status = lm_last_status();
            return false;
        }
        size_t nbytes = lm_nbytes(c);
        bool okay = nbytes == 0 || fwrite(lm_data(c), 1, nbytes, f) == nbytes;
        lm_release(c);
        if (!okay) return false;
    }
    return fflush(f) == 0 && fsync(fileno(f)) == 0;
}

lm_status lm_safetensors_save(const char *path, int n, const char *const *names,
                              lm_tensor *const *tensors, int n_meta,
                              const char *const *meta_keys, const char *const *meta_values)
{
    if (!path) return lm__error(LM_ERR_ARG, "safetensors_save: NULL path");
    if (n < 0 || n_meta < 0)
        return lm__error(LM_ERR_ARG, "safetensors_save: %s: negative count (%d tensors, %d "
                         "metadata entries)", path, n, n_meta);
    if (n > 0 && (!names || !tensors))
        return lm__error(LM_ERR_ARG, "safetensors_save: %s: NULL names or tensors", path);
    if (n_meta > 0 && (!meta_keys || !meta_values))
        return lm__error(LM_ERR_ARG, "safetensors_save: %s: NULL metadata keys or values", path);
    for (int i = 0; i < n; i++) {
        if (!tensors[i])
            return lm__error(LM_ERR_ARG, "safetensors_save: %s: tensor %d is NULL", path, i);
        if (tensors[i]->storage->device != LM_CPU)
            return lm__error(LM_ERR_UNSUPPORTED, "safetensors_save: %s: tensor '%.100s' is not "
                             "on the CPU", path, names[i] ? names[i] : "?");
        if (!st_dtype_name(tensors[i]->dtype))
            return lm__error(LM_ERR_DTYPE, "safetensors_save: %s: tensor '%.100s' has dtype %d",
                             path, names[i] ? names[i] : "?", tensors[i]->dtype);
    }
    lm_status s = check_names(path, n, names, "tensor name", true);
    if (s == LM_OK) s = check_names(path, n_meta, meta_keys, "metadata key", false);
    if (s != LM_OK) return s;
    for (int i = 0; i < n_meta; i++) {
        if (!meta_values[i])
            return lm__error(LM_ERR_ARG, "safetensors_save: %s: metadata value %d is NULL", path,
                             i);
        if (!utf8_valid((const unsigned char *)meta_values[i], strlen(meta_values[i])))
            return lm__error(LM_ERR_ARG, "safetensors_save: %s: metadata value of '%.100s' is "
                             "not valid UTF-8", path, meta_keys[i]);
    }

    lm__strbuf header = {0};
    s = build_header(path, n, names, tensors, n_meta, meta_keys, meta_values, &header);
    size_t plen = strlen(path);
    char *tmp = s == LM_OK ? malloc(plen + 5) : NULL;
    if (s == LM_OK && !tmp)
        s = lm__error(LM_ERR_MEMORY, "safetensors_save: %s: no memory", path);
    if (s != LM_OK) {
        free(header.s);
        return s;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    FILE *f = fopen(tmp, "wb");
    if (!f) {
        s = lm__error(LM_ERR_IO, "safetensors_save: %s: %s", tmp, strerror(errno));
    } else {
        lm_status inner = LM_OK;
        bool okay = write_all(f, &header, n, tensors, &inner);
        int err = errno;
        if (fclose(f) != 0 && okay) {
            okay = false;
            err = errno;
        }
        if (okay && rename(tmp, path) != 0) {
            okay = false;
            err = errno;
        }
        if (!okay) {
            remove(tmp);
            s = inner != LM_OK ? inner
                               : lm__error(LM_ERR_IO, "safetensors_save: %s: write failed: %s",
                                           path, strerror(err));
        }
    }
    free(tmp);
    free(header.s);
    return s;
}
