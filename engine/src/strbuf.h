/* strbuf.h — a growing NUL-terminated string for text the engine writes (the printer, the
 * safetensors header). An allocation failure sets `failed` and makes later appends no-ops, so
 * writers check once at the end. */
#ifndef LUMEN_STRBUF_H
#define LUMEN_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "internal.h"

typedef struct lm__strbuf {
    char *s;
    size_t len, cap;
    bool failed; /* an allocation failed: later appends do nothing */
} lm__strbuf;

LM_INTERNAL void lm__sb_put(lm__strbuf *b, const char *s, size_t n);
LM_INTERNAL void lm__sb_str(lm__strbuf *b, const char *s);

#endif
