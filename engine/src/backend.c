/* backend.c — maps a device to its kernel tables. The CUDA backend registers itself here once
 * loaded; until then only the CPU answers. */
#include "internal.h"

extern const lm_backend lm__cpu_backend;

const lm_backend *lm__backend(lm_device dev, const char *op)
{
    if (dev == LM_CPU) return &lm__cpu_backend;
    lm__error(LM_ERR_UNSUPPORTED, "%s: device %d has no backend in this build", op, dev);
    return NULL;
}
