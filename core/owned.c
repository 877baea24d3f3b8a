/* eyrie — see owned.h. */
#include "owned.h"

#include <stdlib.h>
#include <string.h>

static ey_err grow(void **arr, int *cap, int n, size_t elem)
{
    if (n < *cap) return EY_OK;
    int c = *cap ? *cap * 2 : 64;
    void *g = realloc(*arr, (size_t)c * elem);
    if (!g) return ey_err_set(EY_ERR_NOMEM, "no memory");
    *arr = g;
    *cap = c;
    return EY_OK;
}

ey_err ey_owned_host(ey_owned *o, void *h)
{
    ey_err e = grow((void **)&o->host, &o->cap_host, o->n_host, sizeof *o->host);
    if (e) return e;
    o->host[o->n_host++] = h;
    return EY_OK;
}

ey_err ey_owned_upload(ey_owned *o, ey_backend *be, const void *host, size_t bytes, ey_ptr *out)
{
    ey_err e = grow((void **)&o->bufs, &o->cap_bufs, o->n_bufs, sizeof *o->bufs);
    if (e) return e;
    ey_buf *b;
    if ((e = be->iface.buf_from_host(be, host, bytes, &b))) return e;
    o->bufs[o->n_bufs++] = b;
    *out = (ey_ptr){b, 0};
    return EY_OK;
}

void ey_owned_free(ey_owned *o, ey_backend *be)
{
    for (int i = 0; i < o->n_bufs; i++) be->iface.buf_free(be, o->bufs[i]);
    free(o->bufs);
    for (int i = 0; i < o->n_host; i++) free(o->host[i]);
    free(o->host);
    memset(o, 0, sizeof *o);
}
