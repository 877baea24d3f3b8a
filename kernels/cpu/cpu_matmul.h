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

/* Name of the path ey_cpu_matmul dispatches to on this CPU ("avx512vnni",
 * "avx512", "avx2", "scalar"); EYRIE_CPU_ISA=scalar|avx2|avx512 in the
 * environment caps it (for tests and benchmarks). */
const char *ey_cpu_matmul_isa(void);

#endif
