/* eyrie — plain-C reference matrix product (see cpu_matmul.h).
 *
 * One W row at a time is dequantized to f32 with ey_dequant_row into a
 * buffer allocated once per call (an R8 row is first put back in its base
 * layout), then dotted with each x row accumulating in
 * f32 in k order. Slow on purpose: it is the yardstick for the fast paths. */
#include <stdint.h>
#include <stdlib.h>

#include "../../common/ey_err.h"
#include "cpu_matmul.h"

void ey_cpu_matmul_ref(float *y, ey_dtype wt, const void *W, const float *bias,
                       const float *x, int64_t N, int64_t K, int T)
{
    if (N <= 0 || T <= 0) return;
    size_t rb = ey_dtype_row_bytes(wt, K);
    EY_ASSERT(K >= 0 && (rb > 0 || K == 0));
    float *w = malloc((size_t)(K > 0 ? K : 1) * sizeof(float));
    EY_ASSERT(w != NULL);
    /* a repacked (R8) matrix: each row is first put back in its base layout */
    const int r8 = ey_dtype_is_r8(wt);
    const ey_dtype bt = ey_dtype_r8_base(wt);
    uint8_t *row = r8 ? malloc(rb) : NULL;
    EY_ASSERT(!r8 || row != NULL);
    for (int64_t n = 0; n < N; n++) {
        if (r8) {
            ey_r8_row(wt, W, n, K, row);
            ey_dequant_row(bt, row, w, K);
        } else {
            ey_dequant_row(wt, (const uint8_t *)W + (size_t)n * rb, w, K);
        }
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * (size_t)K;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++) acc += w[k] * xt[k];
            if (bias) acc += bias[n];
            y[(size_t)t * (size_t)N + (size_t)n] = acc;
        }
    }
    free(row);
    free(w);
}
