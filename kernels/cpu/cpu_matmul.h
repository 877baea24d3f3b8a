/* eyrie — CPU matrix products of typed weights with f32 activations.
 *
 *   y[t*N + n] = sum_k W[n,k] * x[t*K + k]  (+ bias[n] if bias != NULL)
 *
 * for t < T, n < N. W is N rows of K elements of type wt (ey_dtype.h), rows
 * contiguous (row stride ey_dtype_row_bytes(wt, K)). K is a multiple of 32
 * for quantized types.
 *
 * ey_cpu_matmul_ref is the plain-C reference: it dequantizes one W row at a
 * time to f32 and accumulates in f32 in k order. ey_cpu_matmul is the fast
 * path: chosen at run time among AVX-512 (VNNI where present), AVX2 and a
 * portable path; for quantized weights it quantizes x once per call into
 * `scratch` (int8 blocks, as llama.cpp does) and uses integer dot products;
 * it is multi-threaded over output rows with OpenMP using n_threads, and the
 * result is bitwise identical for any n_threads. */
#ifndef EY_CPU_MATMUL_H
#define EY_CPU_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "../ey_dtype.h"

void ey_cpu_matmul_ref(float *y, ey_dtype wt, const void *W, const float *bias,
                       const float *x, int64_t N, int64_t K, int T);

/* Bytes of scratch ey_cpu_matmul needs for (wt, K, T); may be 0. */
size_t ey_cpu_matmul_scratch_bytes(ey_dtype wt, int64_t K, int T);

void ey_cpu_matmul(float *y, ey_dtype wt, const void *W, const float *bias,
                   const float *x, int64_t N, int64_t K, int T, void *scratch,
                   int n_threads);

/* Repacked layouts (R8, ey_dtype.h). ey_cpu_matmul also takes EY_Q4_0_R8 /
 * EY_Q4_1_R8 / EY_Q8_0_R8 weights (ey_r8_pack of a Q4_0 / Q4_1 / Q8_0
 * matrix with N a multiple of 8): one 32-byte load carries 4 quants of 8
 * rows, so every integer dot instruction serves 8 rows and each block's
 * scale work is done once for 8 rows; the extra x rows of a speculative
 * verify cost far less than on the row-major layout. Results are bitwise
 * identical on every path (the scalar one included), for any n_threads and
 * T, but round differently from the row-major kernels (both sit within the
 * reference tolerance of tests/kernels/test_matmul.c).
 *
 * ey_cpu_repack_type: the R8 type for (wt, N, K), or wt when there is none
 * (other types, N % 8 != 0), or when EYRIE_REPACK=0 is set. */
ey_dtype ey_cpu_repack_type(ey_dtype wt, int64_t N, int64_t K);

/* Name of the path ey_cpu_matmul dispatches to on this CPU ("avx512vnni",
 * "avx512", "avx2", "scalar"); EYRIE_CPU_ISA=scalar|avx2|avx512 in the
 * environment caps it (for tests and benchmarks). */
const char *ey_cpu_matmul_isa(void);

#endif
