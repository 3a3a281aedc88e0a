/* error.c — the thread-local error state: a status code and a message naming the op. */
#include "internal.h"

#include <stdio.h>

static _Thread_local lm_status last_status = LM_OK;
static _Thread_local char last_message[1024];

lm_status lm__error(lm_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    last_status = code;
    return code;
}

bool lm__arg(const lm_tensor *t, const char *op)
{
    if (t) return true;
    /* A NULL argument is usually the result of a failed call just before: keep its message and
     * status visible, as they say what went wrong. Errors are not cleared on success, so an old
     * message may also show up here; it is labelled as earlier. */
    if (last_status == LM_OK) {
        lm__error(LM_ERR_ARG, "%s: NULL tensor argument", op);
    } else {
        char earlier[sizeof last_message];
        snprintf(earlier, sizeof earlier, "%s", last_message);
        lm__error(last_status, "%s: NULL tensor argument (earlier error: %s)", op, earlier);
    }
    return false;
}

const char *lm_last_error(void) { return last_status == LM_OK ? "" : last_message; }
lm_status lm_last_status(void) { return last_status; }

void lm_clear_error(void)
{
    last_status = LM_OK;
    last_message[0] = '\0';
}

const char *lm_status_name(lm_status s)
{
    static const char *const names[] = {
        [LM_OK] = "ok",
        [LM_ERR_ARG] = "bad argument",
        [LM_ERR_SHAPE] = "shape error",
        [LM_ERR_DTYPE] = "dtype error",
        [LM_ERR_INDEX] = "index out of range",
        [LM_ERR_MEMORY] = "out of memory",
        [LM_ERR_IO] = "i/o error",
        [LM_ERR_STATE] = "invalid state",
        [LM_ERR_UNSUPPORTED] = "unsupported",
    };
    _Static_assert(sizeof names / sizeof names[0] == LM_STATUS_COUNT, "a status has no name");
    return (unsigned)s < LM_STATUS_COUNT ? names[s] : "unknown status";
}
