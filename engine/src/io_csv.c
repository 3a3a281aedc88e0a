/* io_csv.c — lm_load_csv: a CSV file of numbers as a [rows, cols] tensor.
 *
 * What is accepted: one row per line, ended by "\n" or "\r\n" (the last line's end optional); a
 * UTF-8 byte-order mark (as spreadsheets write) is skipped; cells may be surrounded by spaces and
 * tabs and may be quoted ("1.5", with "" for a quote inside, as RFC 4180, but not spanning
 * lines); numbers are what strtod reads in the C locale (ints, decimals, exponents, nan, inf),
 * whatever the process locale is. Integer dtypes take integers in their range only ("3", "3.0",
 * "1e3"; not "3.5"). An empty cell is NaN for f32/f64 and an error otherwise. Blank lines at the
 * end are ignored; a blank line between rows is an error, as it is ambiguous in a one-column file
 * (a missing value or nothing?).
 *
 * Errors name the place as editors do, PATH:LINE:COLUMN (1-based; the column counts bytes), and
 * say which cell (1-based) and why. The file is read whole, its lines are found in a first pass
 * (which fixes the row count), then each row is parsed straight into the tensor. */
#include "internal.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CELL_SHOWN 40 /* a cell quoted in a message is cut to this many bytes */

/* ---- the C locale, for strtod ---------------------------------------------------------- */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

/* ---- reading the file -------------------------------------------------------------------- */

/* The whole file, NUL-terminated; *len excludes the NUL. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        lm__error(LM_ERR_IO, "load_csv: %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            lm__error(LM_ERR_MEMORY, "load_csv: %s: no memory to read the file (%zu bytes so far)",
                      path, n);
            return NULL;
        }
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) free(buf);
        buf = bigger;
        cap *= 2;
    }
    bool failed = ferror(f);
    int err = errno;
    fclose(f);
    if (failed) {
        free(buf);
        lm__error(LM_ERR_IO, "load_csv: %s: read error: %s", path, strerror(err));
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---- lines and cells -------------------------------------------------------------------- */

typedef struct {
    const char *s, *e; /* the line without its "\n" or "\r\n" */
} line_span;

static bool is_blank(line_span l, char delim)
{
    for (const char *p = l.s; p < l.e; p++)
        if ((*p != ' ' && *p != '\t') || *p == delim) return false;
    return true;
}

/* Splits the text into lines; a final line without "\n" counts, an empty one after the last
 * "\n" does not. */
static line_span *split_lines(const char *path, const char *text, size_t len, int64_t *count)
{
    int64_t n = 0, cap = 1024;
    line_span *lines = malloc(sizeof *lines * (size_t)cap);
    const char *p = text, *end = text + len;
    while (lines && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        if (n == cap) {
            line_span *bigger = realloc(lines, sizeof *lines * (size_t)(cap *= 2));
            if (!bigger) free(lines);
            lines = bigger;
            if (!lines) break;
        }
        lines[n].s = p;
        lines[n].e = e > p && e[-1] == '\r' ? e - 1 : e;
        n++;
        p = nl ? nl + 1 : end;
    }
    if (!lines) {
        lm__error(LM_ERR_MEMORY, "load_csv: %s: no memory for the line index", path);
        return NULL;
    }
    *count = n;
    return lines;
}

/* Walks the cells of one line. Each cell's text (quotes removed, "" unescaped, surrounding
 * spaces trimmed) is copied NUL-terminated into a scratch buffer that grows as needed. */
typedef struct {
    const char *path;
    int64_t lineno;
    line_span line;
    const char *p;  /* next unread byte; NULL after the last cell */
    char delim;
    char *buf;      /* the current cell's text */
    size_t cap;
    size_t col;     /* 1-based byte column where the current cell's text starts */
    bool quoted;
} cell_reader;

static bool is_space(const cell_reader *r, char c) { return (c == ' ' || c == '\t') && c != r->delim; }

static bool put_byte(cell_reader *r, size_t at, char c)
{
    if (at + 1 >= r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        char *bigger = realloc(r->buf, cap);
        if (!bigger) {
            lm__error(LM_ERR_MEMORY, "load_csv: %s:%lld: no memory for a cell", r->path,
                      (long long)r->lineno);
            return false;
        }
        r->buf = bigger;
        r->cap = cap;
    }
    r->buf[at] = c;
    return true;
}

static void start_line(cell_reader *r, line_span line, int64_t lineno)
{
    r->line = line;
    r->lineno = lineno;
    r->p = line.s;
}

static size_t col_of(const cell_reader *r, const char *at) { return (size_t)(at - r->line.s) + 1; }

/* Reads the next cell; returns false with the error set on a malformed one. *more tells whether
 * a cell was read (false once the line is used up). */
static bool next_cell(cell_reader *r, bool *more)
{
    *more = r->p != NULL;
    if (!r->p) return true;
    const char *p = r->p, *e = r->line.e;
    while (p < e && is_space(r, *p)) p++;
    r->col = col_of(r, p);
    size_t n = 0;
    r->quoted = p < e && *p == '"';
    if (r->quoted) {
        const char *open = p++;
        for (;;) {
            if (p == e) {
                lm__error(LM_ERR_ARG, "load_csv: %s:%lld:%zu: unterminated quoted cell (quoted "
                          "cells cannot span lines)", r->path, (long long)r->lineno,
                          col_of(r, open));
                return false;
            }
            if (*p == '"') {
                if (p + 1 < e && p[1] == '"') {
                    if (!put_byte(r, n++, '"')) return false;
                    p += 2;
                    continue;
                }
                p++;
                break;
            }
            if (!put_byte(r, n++, *p++)) return false;
        }
        while (p < e && is_space(r, *p)) p++;
        if (p < e && *p != r->delim) {
            lm__error(LM_ERR_ARG, "load_csv: %s:%lld:%zu: text after a closing quote", r->path,
                      (long long)r->lineno, col_of(r, p));
            return false;
        }
    } else {
        const char *start = p;
        while (p < e && *p != r->delim) p++;
        const char *stop = p;
        while (stop > start && is_space(r, stop[-1])) stop--;
        for (const char *q = start; q < stop; q++)
            if (!put_byte(r, n++, *q)) return false;
    }
    if (!put_byte(r, n, '\0')) return false;
    r->p = p < e ? p + 1 : NULL; /* past the delimiter; a trailing one leaves an empty cell */
    return true;
}

/* The cell's text for a message: cut, with non-printable bytes shown as '?'. */
static void shown(const char *cell, char *out, size_t cap)
{
    size_t n = 0;
    for (; cell[n] && n + 4 < cap && n < CELL_SHOWN; n++)
        out[n] = cell[n] >= 0x20 && cell[n] < 0x7f ? cell[n] : '?';
    if (cell[n]) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* ---- numbers ---------------------------------------------------------------------------- */

static bool cell_error(const cell_reader *r, int64_t cell, const char *why)
{
    char text[CELL_SHOWN + 8];
    shown(r->buf, text, sizeof text);
    lm__error(LM_ERR_ARG, "load_csv: %s:%lld:%zu: cell \"%s\" (column %lld) %s", r->path,
              (long long)r->lineno, r->col, text, (long long)cell + 1, why);
    return false;
}

/* Parses the current cell into element `at` of the tensor's data. */
static bool store_cell(const cell_reader *r, int64_t cell, lm_dtype dt, void *data, int64_t at)
{
    const char *s = r->buf;
    char *end;
    if (lm_dtype_is_float(dt)) {
        double v = NAN;
        if (*s) {
            v = strtod_l(s, &end, c_locale);
            if (end == s || *end) return cell_error(r, cell, "is not a number");
        }
        if (dt == LM_F32) ((float *)data)[at] = (float)v;
        else ((double *)data)[at] = v;
        return true;
    }
    if (!*s) return cell_error(r, cell, dt == LM_U8 ? "is empty (u8 needs an integer)"
                                                    : "is empty (i64 needs an integer)");
    /* strtoll first: exact for every i64, where a double would round beyond 2^53. */
    errno = 0;
    long long ll = strtoll_l(s, &end, 10, c_locale);
    int64_t v;
    if (end != s && !*end) {
        if (errno == ERANGE) return cell_error(r, cell, "is out of range for i64");
        v = ll;
    } else {
        double d = strtod_l(s, &end, c_locale);
        if (end == s || *end) return cell_error(r, cell, "is not a number");
        if (!isfinite(d) || d != floor(d)) return cell_error(r, cell, "is not an integer");
        if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            return cell_error(r, cell, "is out of range for i64");
        v = (int64_t)d;
    }
    if (dt == LM_U8) {
        if (v < 0 || v > 255) return cell_error(r, cell, "is out of range for u8 (0..255)");
        ((uint8_t *)data)[at] = (uint8_t)v;
    } else {
        ((int64_t *)data)[at] = v;
    }
    return true;
}

/* ---- the loader ------------------------------------------------------------------------- */

static void free_names(char **names, int n)
{
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

/* The header's cells as malloc'd strings; *n receives their count. */
static char **read_header(cell_reader *r, int *n)
{
    int count = 0, cap = 16;
    char **names = malloc(sizeof *names * (size_t)cap);
    bool more = true;
    while (names) {
        if (!next_cell(r, &more)) {
            free_names(names, count);
            return NULL;
        }
        if (!more) break;
        if (count == cap) {
            char **bigger = realloc(names, sizeof *names * (size_t)(cap *= 2));
            if (!bigger) free_names(names, count);
            names = bigger;
            if (!names) break;
        }
        size_t len = strlen(r->buf) + 1;
        names[count] = malloc(len);
        if (!names[count]) {
            free_names(names, count);
            names = NULL;
            break;
        }
        memcpy(names[count++], r->buf, len);
    }
    if (!names) {
        lm__error(LM_ERR_MEMORY, "load_csv: %s: no memory for the header", r->path);
        return NULL;
    }
    *n = count;
    return names;
}

/* Counts the cells of a line (for the column count when there is no header). */
static bool count_cells(cell_reader *r, int64_t *n)
{
    bool more;
    *n = 0;
    for (;;) {
        if (!next_cell(r, &more)) return false;
        if (!more) return true;
        (*n)++;
    }
}

/* Parses the rows into t; cols cells per row; `expected` says where cols came from. */
static bool read_rows(cell_reader *r, const line_span *lines, int64_t first, int64_t rows,
                      int64_t cols, const char *expected, lm_tensor *t)
{
    void *data = lm_data(t);
    for (int64_t i = 0; i < rows; i++) {
        start_line(r, lines[first + i], first + i + 1);
        for (int64_t c = 0;; c++) {
            bool more;
            if (!next_cell(r, &more)) return false;
            if (!more) {
                if (c == cols) break;
                lm__error(LM_ERR_ARG, "load_csv: %s:%lld:%zu: row has %lld cells, expected %lld "
                          "(%s)", r->path, (long long)r->lineno, col_of(r, r->line.e) ,
                          (long long)c, (long long)cols, expected);
                return false;
            }
            if (c == cols) {
                int64_t total = cols + 1;
                while (next_cell(r, &more) && more) total++;
                lm__error(LM_ERR_ARG, "load_csv: %s:%lld:%zu: row has %lld cells, expected %lld "
                          "(%s)", r->path, (long long)r->lineno, r->col, (long long)total,
                          (long long)cols, expected);
                return false;
            }
            if (!store_cell(r, c, t->dtype, data, i * cols + c)) return false;
        }
    }
    return true;
}

static lm_tensor *load_text(const char *path, const char *text, size_t len, bool header,
                            char delim, lm_dtype dt, char ***column_names, int *ncols)
{
    int64_t nlines;
    line_span *lines = split_lines(path, text, len, &nlines);
    if (!lines) return NULL;
    while (nlines > 0 && is_blank(lines[nlines - 1], delim)) nlines--;

    cell_reader r = {.path = path, .delim = delim};
    lm_tensor *t = NULL;
    char **names = NULL;
    int nnames = 0;
    int64_t first = header ? 1 : 0, cols = 0;
    char expected[64] = "the header's count";
    bool okay = true;
    if (header) {
        if (nlines == 0 || is_blank(lines[0], delim)) {
            lm__error(LM_ERR_ARG, "load_csv: %s:1: the header line is %s", path,
                      nlines == 0 ? "missing (the file is empty)" : "blank");
            okay = false;
        } else {
            start_line(&r, lines[0], 1);
            names = read_header(&r, &nnames);
            okay = names != NULL;
            cols = nnames;
        }
    } else if (nlines > 0) {
        snprintf(expected, sizeof expected, "as line 1");
        start_line(&r, lines[0], 1);
        okay = count_cells(&r, &cols);
    }
    for (int64_t i = first; okay && i < nlines; i++) {
        if (is_blank(lines[i], delim)) {
            lm__error(LM_ERR_ARG, "load_csv: %s:%lld: blank line between rows (only trailing "
                      "blank lines are allowed)", path, (long long)i + 1);
            okay = false;
        }
    }
    int64_t rows = nlines > first ? nlines - first : 0;
    if (okay && cols > INT32_MAX) {
        lm__error(LM_ERR_ARG, "load_csv: %s: %lld columns is too many", path, (long long)cols);
        okay = false;
    }
    if (okay) {
        t = lm__new("load_csv", 2, (int64_t[]){rows, cols}, dt, LM_CPU);
        okay = t != NULL;
    }
    if (okay) okay = read_rows(&r, lines, first, rows, cols, expected, t);
    free(r.buf);
    free(lines);
    if (!okay) {
        lm_release(t);
        free_names(names, nnames);
        return NULL;
    }
    if (ncols) *ncols = (int)cols;
    if (column_names) *column_names = names;
    else free_names(names, nnames);
    return t;
}

lm_tensor *lm_load_csv(const char *path, bool header, char delimiter, lm_dtype dt,
                       char ***column_names, int *ncols)
{
    if (column_names) *column_names = NULL;
    if (ncols) *ncols = 0;
    if (!path) LM_FAIL(LM_ERR_ARG, "load_csv: NULL path");
    if ((unsigned)dt >= LM_DTYPE_COUNT)
        LM_FAIL(LM_ERR_DTYPE, "load_csv: %s: unknown dtype %d", path, dt);
    if (delimiter == '\0' || delimiter == '\n' || delimiter == '\r' || delimiter == '"' ||
        delimiter == '+' || delimiter == '-' || delimiter == '.' ||
        (delimiter >= '0' && delimiter <= '9') || (delimiter >= 'a' && delimiter <= 'z') ||
        (delimiter >= 'A' && delimiter <= 'Z'))
        LM_FAIL(LM_ERR_ARG, "load_csv: %s: delimiter 0x%02x cannot separate numbers", path,
                (unsigned char)delimiter);
    pthread_once(&c_locale_once, make_c_locale);
    if (!c_locale) LM_FAIL(LM_ERR_MEMORY, "load_csv: %s: cannot create the C locale", path);

    size_t len;
    char *text = read_file(path, &len);
    if (!text) return NULL;
    const char *body = text;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
        body += 3;
        len -= 3;
    }
    lm_tensor *t = load_text(path, body, len, header, delimiter, dt, column_names, ncols);
    free(text);
    return t;
}
