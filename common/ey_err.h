/* eyrie — error codes shared by every layer.
 *
 * One enum for the whole project. Functions that can fail on input (files,
 * client bytes, configs) return an ey_err and never abort; EY_ASSERT is only
 * for programmer errors and stays on in release builds. */
#ifndef EY_ERR_H
#define EY_ERR_H

#include <stdio.h>
#include <stdlib.h>

typedef enum ey_err {
    EY_OK = 0,
    EY_ERR_NOMEM,      /* allocation failed */
    EY_ERR_IO,         /* open/read/mmap failed */
    EY_ERR_FORMAT,     /* malformed or truncated file / message */
    EY_ERR_UNSUPPORTED,/* valid but not supported (tensor type, architecture, ...) */
    EY_ERR_MISSING,    /* required tensor / key / file absent */
    EY_ERR_SHAPE,      /* tensor shape does not match the config */
    EY_ERR_LIMIT,      /* a size limit would be exceeded (checked before allocating) */
    EY_ERR_ARG,        /* bad argument from the caller */
    EY_ERR_CAPACITY,   /* KV cache / context full */
    EY_ERR_DEVICE,     /* backend / device failure */
    EY_ERR_TOKENIZER,  /* tokenizer could not encode/decode */
    EY_ERR__COUNT
} ey_err;

const char *ey_strerror(ey_err e);

/* Thread-local detail message for the last error ("tensor 'blk.3.attn_q.weight':
 * type 99 unknown"). ey_err_set() formats it and returns the code, so
 * `return ey_err_set(EY_ERR_FORMAT, "...", ...)` reads naturally. */
ey_err ey_err_set(ey_err e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *ey_err_detail(void);
void ey_err_clear(void);

#define EY_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,        \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

#endif
