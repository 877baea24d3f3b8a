/* eyrie — strict parsing of numeric command-line values, shared by the
 * command-line front ends: the whole string must be a number in range. */
#ifndef EY_ARGS_H
#define EY_ARGS_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline bool ey_arg_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static inline bool ey_arg_int(const char *s, long lo, long hi, int *out)
{
    long v;
    if (!ey_arg_long(s, lo, hi, &v)) return false;
    *out = (int)v;
    return true;
}

static inline bool ey_arg_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

static inline bool ey_arg_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

/* A --device value: "cpu", or "cuda" / "cuda:N" (N in [0, 64]). */
static inline bool ey_arg_device(const char *s, bool *cuda, int *dev)
{
    *cuda = false;
    *dev = 0;
    if (!strcmp(s, "cpu")) return true;
    if (strncmp(s, "cuda", 4) || (s[4] && s[4] != ':')) return false;
    *cuda = true;
    return !s[4] || ey_arg_int(s + 5, 0, 64, dev);
}

#endif
