/* eyrie — see owned.h. */
#include "owned.h"

#include <math.h>
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

ey_err ey_owned_upload_quant(ey_owned *o, ey_backend *be, const char *name, ey_dtype *type,
                             ey_dtype q, const void *host, int64_t N, int64_t K, ey_ptr *out)
{
    EY_ASSERT((q == EY_Q8_0 || q == EY_Q4_0 || q == EY_Q4_1) && K % EY_QK == 0 &&
              (*type == EY_F32 || *type == EY_F16 || *type == EY_BF16));
    const size_t rb = ey_dtype_row_bytes(q, K), sb = ey_dtype_row_bytes(*type, K),
                 bytes = rb * (size_t)N;
    uint8_t *d = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    float *f = malloc((size_t)K * sizeof *f);
    ey_err e = EY_OK;
    if (!d || !f) e = ey_err_set(EY_ERR_NOMEM, "no memory to quantize '%s'", name);
    for (int64_t n = 0; !e && n < N; n++) {
        ey_dequant_row(*type, (const uint8_t *)host + (size_t)n * sb, f, K);
        /* block scales and Q4_1 minimums are stored as f16 */
        for (int64_t k = 0; !e && k < K; k++)
            if (!(fabsf(f[k]) <= 65504.0f))
                e = ey_err_set(EY_ERR_FORMAT, "'%s' holds %g at [%lld, %lld]: not quantizable to "
                               "%s (non-finite or beyond the f16 range)", name, (double)f[k],
                               (long long)n, (long long)k, ey_dtype_name(q));
        if (!e) ey_quantize_row(q, f, d + (size_t)n * rb, K);
    }
    free(f);
    if (e) {
        free(d);
        return e;
    }
    *type = q;
    const struct ey_backend_i *bi = &be->iface;
    if (bi->weight_type && bi->weight_repack && bi->weight_type(be, q, N, K) != q) {
        /* the backend keeps its own repacked copy: this one is not needed */
        e = ey_owned_upload_mm(o, be, type, d, bytes, N, K, out);
        free(d);
        return e;
    }
    if ((e = ey_owned_host(o, d))) {
        free(d);
        return e;
    }
    return ey_owned_upload(o, be, d, bytes, out);
}

void ey_owned_free(ey_owned *o, ey_backend *be)
{
    for (int i = 0; i < o->n_bufs; i++) be->iface.buf_free(be, o->bufs[i]);
    free(o->bufs);
    for (int i = 0; i < o->n_host; i++) free(o->host[i]);
    free(o->host);
    memset(o, 0, sizeof *o);
}
