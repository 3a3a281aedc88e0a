/* strbuf.c — the growing string of strbuf.h. */
#include "strbuf.h"

#include <stdlib.h>
#include <string.h>

void lm__sb_put(lm__strbuf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void lm__sb_str(lm__strbuf *b, const char *s) { lm__sb_put(b, s, strlen(s)); }
