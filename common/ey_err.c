#include "ey_err.h"

#include <stdarg.h>
#include <string.h>

static const char *const k_names[EY_ERR__COUNT] = {
    [EY_OK] = "ok",
    [EY_ERR_NOMEM] = "out of memory",
    [EY_ERR_IO] = "i/o error",
    [EY_ERR_FORMAT] = "malformed input",
    [EY_ERR_UNSUPPORTED] = "unsupported",
    [EY_ERR_MISSING] = "missing",
    [EY_ERR_SHAPE] = "shape mismatch",
    [EY_ERR_LIMIT] = "limit exceeded",
    [EY_ERR_ARG] = "bad argument",
    [EY_ERR_CAPACITY] = "capacity exhausted",
    [EY_ERR_DEVICE] = "device error",
    [EY_ERR_TOKENIZER] = "tokenizer error",
};

static _Thread_local char g_detail[512];

const char *ey_strerror(ey_err e)
{
    if ((unsigned)e >= EY_ERR__COUNT) return "unknown error";
    return k_names[e];
}

ey_err ey_err_set(ey_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_detail, sizeof g_detail, fmt, ap);
    va_end(ap);
    return e;
}

const char *ey_err_detail(void) { return g_detail[0] ? g_detail : ""; }
void ey_err_clear(void) { g_detail[0] = 0; }
