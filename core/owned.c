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

/* a 64-byte aligned host allocation owned by o (NULL: no memory) */
static void *owned_alloc(ey_owned *o, size_t bytes)
{
    void *r = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (r && ey_owned_host(o, r)) {
        free(r);
        r = NULL;
    }
    return r;
}

ey_err ey_owned_upload_mm(ey_owned *o, ey_backend *be, ey_dtype *type, const void *host,
                          size_t bytes, int64_t N, int64_t K, ey_ptr *out)
{
    const struct ey_backend_i *bi = &be->iface;
    ey_dtype rt = bi->weight_type && bi->weight_repack ? bi->weight_type(be, *type, N, K) : *type;
    if (rt == *type) return ey_owned_upload(o, be, host, bytes, out);
    void *r = owned_alloc(o, bytes);
    if (!r) return ey_err_set(EY_ERR_NOMEM, "no memory for a %lld x %lld weight", (long long)N,
                              (long long)K);
    bi->weight_repack(be, rt, r, host, N, K);
    *type = rt;
    return ey_owned_upload(o, be, r, bytes, out);
}

ey_err ey_owned_upload_quant(ey_owned *o, ey_backend *be, ey_dtype *type, ey_dtype q,
                             const void *host, int64_t N, int64_t K, ey_ptr *out)
{
    EY_ASSERT((q == EY_Q8_0 || q == EY_Q4_0 || q == EY_Q4_1) && K % EY_QK == 0 &&
              (*type == EY_F32 || *type == EY_F16 || *type == EY_BF16));
    const size_t rb = ey_dtype_row_bytes(q, K), sb = ey_dtype_row_bytes(*type, K);
    uint8_t *d = owned_alloc(o, rb * (size_t)N);
    float *f = malloc((size_t)K * sizeof *f);
    if (!d || !f) {
        free(f);
        return ey_err_set(EY_ERR_NOMEM, "no memory for a %lld x %lld weight", (long long)N,
                          (long long)K);
    }
    for (int64_t n = 0; n < N; n++) {
        ey_dequant_row(*type, (const uint8_t *)host + (size_t)n * sb, f, K);
        ey_quantize_row(q, f, d + (size_t)n * rb, K);
    }
    free(f);
    *type = q;
    return ey_owned_upload_mm(o, be, type, d, rb * (size_t)N, N, K, out);
}

void ey_owned_free(ey_owned *o, ey_backend *be)
{
    for (int i = 0; i < o->n_bufs; i++) be->iface.buf_free(be, o->bufs[i]);
    free(o->bufs);
    for (int i = 0; i < o->n_host; i++) free(o->host[i]);
    free(o->host);
    memset(o, 0, sizeof *o);
}
