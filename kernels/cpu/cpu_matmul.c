/* eyrie — fast CPU matrix products (see cpu_matmul.h).
 *
 * Paths, chosen at run time (EYRIE_CPU_ISA=scalar|avx2|avx512 caps them):
 *   avx512vnni  AVX2-shaped kernels built for AVX-512VL+VNNI: 256-bit vpdpbusd
 *   avx512      the AVX2 kernels built for AVX-512 (32 vector registers)
 *   avx2        AVX2 + FMA + F16C: vpmaddubsw/vpmaddwd integer dots
 *   scalar      portable C
 * The x86 kernels are written once below (the part under EY_MM_TEMPLATE) and
 * instantiated per ISA by including this file into itself with per-function
 * target attributes, so the file builds with default flags.
 *
 * Quantized weights (Q4_0/Q4_1/Q8_0): every x row is quantized once per call
 * into `scratch` as int8 blocks of 32 with an f32 scale dx and the block sum
 * sx = dx * sum(q) (llama.cpp's q8_1 idea); the quantization gives bitwise
 * the same bytes on every path. Per weight block b and x row t:
 *   y += (dw_b * dx_tb) * idot(qw_b, qx_tb)                 (vector, per block)
 *      + coef * vw_b * sx_tb                                (one dot per row)
 * with (coef, vw) = (-8, dw) for Q4_0 (q - 8), (1, m) for Q4_1, and for Q8_0
 * (0, -) with the sign trick on AVX2 or (-128, dw) with vpdpbusd on (qw ^ 0x80).
 *
 * x quantization: d = amax/127, q = round-to-nearest-even(x * (1/d)) in f32
 * (tests/kernels/test_matmul.c relies on this rule for its tight check).
 *
 * Register blocking: a tile is R weight rows x TT x rows (TT <= 4, R in
 * {4, 2, 1}, R * TT <= 8 accumulators on AVX2, 16 on AVX-512): each weight
 * block is decoded once and used against TT x rows, each x block loaded once
 * for R weight rows; T = 1 uses R = 4 (also amortizes per-row costs). The
 * per-block scales dw * dx are precomputed per tile (f16 scales inserted in
 * registers 8 blocks at a time, read in the tile for T <= 4, per chunk of
 * EY_MM_ROWS rows beyond), and the next tile prefetched at T <= 4. Threads
 * split the output rows into contiguous static ranges of EY_MM_ROWS; every y
 * element is computed by one thread with one accumulator in block order,
 * whatever the thread count, tile shape or T, so results are bitwise
 * identical for any n_threads, and row t of a T-row call equals a T = 1 call
 * (speculative verify reproduces decode). No allocation: quantized
 * x lives in the caller's scratch, temporaries on the stack (< 32 KiB). */
#ifndef EY_MM_TEMPLATE

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/ey_err.h"
#include "cpu_matmul.h"

#if defined(__x86_64__) || defined(__i386__)
#define EY_MM_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define EY_MM_X86 0
#endif

#define EY_MM_QSEG 128 /* weight blocks per row segment (K <= 4096 in one) */
#define EY_MM_ROWS 16  /* output rows per work item */
/* work items start at multiples of EY_MM_ROWS: whole 8-row groups for R8 */
_Static_assert(EY_MM_ROWS % 8 == 0, "R8 groups must not straddle work items");

enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_AVX512VNNI = 3 };

static inline int mm_is_quant(ey_dtype wt)
{
    return wt == EY_Q4_0 || wt == EY_Q4_1 || wt == EY_Q8_0 || ey_dtype_is_r8(wt);
}

static inline int mm_is_r8(ey_dtype wt) { return ey_dtype_is_r8(wt); }

/* ------------------------------------------------------ R8 repacking */

ey_dtype ey_cpu_repack_type(ey_dtype wt, int64_t N, int64_t K)
{
    const char *e = getenv("EYRIE_REPACK");
    if (e && !strcmp(e, "0")) return wt;
    if (N <= 0 || N % 8 || K <= 0 || K % EY_QK) return wt;
    return ey_dtype_r8_of(wt);
}

/* bytes of the f16 fields of one R8 block (d[8], and m[8] for Q4_1) */
static inline size_t mm_r8_head(ey_dtype wt) { return wt == EY_Q4_1_R8 ? 32 : 16; }

static inline size_t mm_al64(size_t v) { return (v + 63) & ~(size_t)63; }

/* Scratch layout for one quantized x row: q[K] int8, then dx[nb] f32, then
 * sx[nb] f32, each part 64-byte aligned (relative to a 64-aligned base). */
static inline size_t mm_xrow_bytes(int64_t K)
{
    size_t nb = (size_t)(K / EY_QK);
    return mm_al64((size_t)K) + 2 * mm_al64(nb * sizeof(float));
}

size_t ey_cpu_matmul_scratch_bytes(ey_dtype wt, int64_t K, int T)
{
    if (!mm_is_quant(wt) || K <= 0 || T <= 0) return 0;
    return 64 + (size_t)T * mm_xrow_bytes(K);
}

typedef struct mm_args {
    float *y;
    ey_dtype wt;
    const uint8_t *W;
    size_t rb; /* bytes per W row */
    const float *bias;
    const float *x;
    uint8_t *xs; /* quantized x base (64-aligned) */
    size_t xrs;  /* bytes per quantized x row */
    int64_t N, K, nb;
    int T;
} mm_args;

static inline const int8_t *mm_xq(const mm_args *a, int t)
{
    return (const int8_t *)(a->xs + (size_t)t * a->xrs);
}
static inline const float *mm_xd(const mm_args *a, int t)
{
    return (const float *)(a->xs + (size_t)t * a->xrs + mm_al64((size_t)a->K));
}
static inline const float *mm_xsum(const mm_args *a, int t)
{
    return (const float *)(a->xs + (size_t)t * a->xrs + mm_al64((size_t)a->K) +
                           mm_al64((size_t)a->nb * sizeof(float)));
}

static inline uint16_t mm_rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* ---------------------------------------------------------------- scalar */

/* Quantize flattened blocks [i0, i1) of x (block i = row i / nb, block
 * i % nb). Round to nearest even (lrintf), as cvtps2dq does, so every path
 * produces the same bytes. */
static void mm_quant_scalar(const mm_args *a, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++) {
        int t = (int)(i / a->nb);
        int64_t b = i % a->nb;
        const float *p = a->x + (size_t)t * (size_t)a->K + (size_t)b * EY_QK;
        int8_t *q = (int8_t *)mm_xq(a, t) + b * EY_QK;
        float amax = 0.0f;
        for (int j = 0; j < EY_QK; j++) {
            float v = fabsf(p[j]);
            amax = v > amax ? v : amax;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < EY_QK; j++) {
            int v = (int)lrintf(p[j] * id);
            q[j] = (int8_t)v;
            sum += v;
        }
        ((float *)mm_xd(a, t))[b] = d;
        ((float *)mm_xsum(a, t))[b] = d * (float)sum;
    }
}

static void mm_q_scalar(const mm_args *a, int64_t n0, int64_t n1)
{
    const ey_dtype wt = a->wt;
    const size_t bsz = ey_dtype_block_bytes(wt);
    const int qoff = wt == EY_Q4_1 ? 4 : 2;
    const float coef = wt == EY_Q4_0 ? -8.0f : wt == EY_Q4_1 ? 1.0f : 0.0f;
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = a->W + (size_t)n * a->rb;
        for (int t = 0; t < a->T; t++) {
            const int8_t *xq = mm_xq(a, t);
            const float *xd = mm_xd(a, t), *xsum = mm_xsum(a, t);
            float acc = 0.0f, off = 0.0f;
            for (int64_t b = 0; b < a->nb; b++) {
                const uint8_t *blk = row + (size_t)b * bsz;
                const uint8_t *qs = blk + qoff;
                const int8_t *xb = xq + b * EY_QK;
                int dot = 0;
                if (wt == EY_Q8_0) {
                    for (int j = 0; j < EY_QK; j++) dot += (int8_t)qs[j] * xb[j];
                } else {
                    for (int j = 0; j < EY_QK / 2; j++)
                        dot += (qs[j] & 15) * xb[j] + (qs[j] >> 4) * xb[j + 16];
                }
                float dw = ey_f16_to_f32(mm_rd16(blk));
                acc += (dw * xd[b]) * (float)dot;
                if (wt == EY_Q4_1) off += ey_f16_to_f32(mm_rd16(blk + 2)) * xsum[b];
                else if (wt == EY_Q4_0) off += dw * xsum[b];
            }
            float r = acc + coef * off;
            if (a->bias) r += a->bias[n];
            a->y[(size_t)t * (size_t)a->N + (size_t)n] = r;
        }
    }
}

/* R8 weights, one output at a time with the vector kernels' arithmetic (so
 * the result is bitwise theirs): per block acc = fma(idot, d * dx, acc),
 * then for Q4 acc = fma(v, sx, acc) with v = m (Q4_1) or -8 d (Q4_0); bias
 * added last. */
static void mm_r8_scalar(const mm_args *a, int64_t n0, int64_t n1)
{
    const size_t bsz = ey_dtype_block_bytes(a->wt), head = mm_r8_head(a->wt);
    const int q41 = a->wt == EY_Q4_1_R8, q8 = a->wt == EY_Q8_0_R8;
    for (int64_t n = n0; n < n1; n++) {
        const int r = (int)(n % 8);
        const uint8_t *grp = a->W + (size_t)(n / 8) * 8 * a->rb;
        for (int t = 0; t < a->T; t++) {
            const int8_t *xq = mm_xq(a, t);
            const float *xd = mm_xd(a, t), *xsum = mm_xsum(a, t);
            float acc = 0.0f;
            for (int64_t b = 0; b < a->nb; b++) {
                const uint8_t *p = grp + (size_t)b * 8 * bsz;
                const int8_t *xb = xq + b * EY_QK;
                int dot = 0;
                for (int c = 0; c < (q8 ? 8 : 4); c++)
                    for (int j = 0; j < 4; j++) {
                        const uint8_t q = p[head + 32 * c + 4 * r + j];
                        if (q8) dot += (int8_t)q * xb[4 * c + j];
                        else dot += (q & 15) * xb[4 * c + j] + (q >> 4) * xb[16 + 4 * c + j];
                    }
                const float d = ey_f16_to_f32(mm_rd16(p + 2 * r));
                acc = fmaf((float)dot, d * xd[b], acc);
                if (!q8) {
                    const float v = q41 ? ey_f16_to_f32(mm_rd16(p + 16 + 2 * r)) : d * -8.0f;
                    acc = fmaf(v, xsum[b], acc);
                }
            }
            if (a->bias) acc += a->bias[n];
            a->y[(size_t)t * (size_t)a->N + (size_t)n] = acc;
        }
    }
}

static inline float mm_wf(ey_dtype wt, const uint8_t *row, int64_t k)
{
    if (wt == EY_F32) {
        float v;
        memcpy(&v, row + 4 * k, 4);
        return v;
    }
    uint16_t h = mm_rd16(row + 2 * k);
    return wt == EY_F16 ? ey_f16_to_f32(h) : ey_bf16_to_f32(h);
}

static void mm_f_scalar(const mm_args *a, int64_t n0, int64_t n1)
{
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = a->W + (size_t)n * a->rb;
        for (int t0 = 0; t0 < a->T; t0 += 4) {
            int tt = a->T - t0 < 4 ? a->T - t0 : 4;
            float acc[4] = {0, 0, 0, 0};
            for (int64_t k = 0; k < a->K; k++) {
                float w = mm_wf(a->wt, row, k);
                for (int t = 0; t < tt; t++)
                    acc[t] += w * a->x[(size_t)(t0 + t) * (size_t)a->K + (size_t)k];
            }
            for (int t = 0; t < tt; t++) {
                float r = acc[t];
                if (a->bias) r += a->bias[n];
                a->y[(size_t)(t0 + t) * (size_t)a->N + (size_t)n] = r;
            }
        }
    }
}

/* ------------------------------------------------------- x86 instances */
#if EY_MM_X86

#define EY_MM_CAT2(a, b) a##_##b
#define EY_MM_CAT(a, b) EY_MM_CAT2(a, b)
#define EY_MM_AI __attribute__((always_inline)) inline
/* the loops over the x rows of a tile must unroll so accumulators stay in
 * registers (-O2 would not always do it) */
#define EY_MM_UNROLL _Pragma("GCC unroll 8")

/* AVX2 */
#define EY_MM_TEMPLATE 1
#define EY_MM_SFX avx2
#define EY_MM_AMAX 8
#define EY_MM_TGT __attribute__((target("avx2,fma,f16c")))
#define EY_MM_VNNI 0
#define EY_MM_TMAX 4
#include "cpu_matmul.c" /* itself, as the template */
#undef EY_MM_SFX
#undef EY_MM_TGT
#undef EY_MM_VNNI
#undef EY_MM_TMAX
#undef EY_MM_AMAX

/* AVX-512 without VNNI: the AVX2 kernels with 32 registers. With
 * EY_MM_EMU_VNNI (a test build) the AVX-512 instances are built for AVX2 and
 * vpdpbusd is emulated exactly, so their logic can be tested on AVX2 hosts. */
#ifdef EY_MM_EMU_VNNI
#define EY_MM_TGT512 __attribute__((target("avx2,fma,f16c")))
#define EY_MM_TGT512V __attribute__((target("avx2,fma,f16c")))
#else
#define EY_MM_TGT512                                                           \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#define EY_MM_TGT512V                                                          \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#endif
#define EY_MM_SFX avx512
#define EY_MM_AMAX 16
#define EY_MM_TGT EY_MM_TGT512
#define EY_MM_VNNI 0
#define EY_MM_TMAX 4
#include "cpu_matmul.c" /* itself, as the template */
#undef EY_MM_SFX
#undef EY_MM_TGT
#undef EY_MM_VNNI
#undef EY_MM_TMAX
#undef EY_MM_AMAX

#define EY_MM_SFX avx512vnni
#define EY_MM_AMAX 16
#define EY_MM_TGT EY_MM_TGT512V
#define EY_MM_VNNI 1
#define EY_MM_TMAX 4
#include "cpu_matmul.c" /* itself, as the template */
#undef EY_MM_SFX
#undef EY_MM_TGT
#undef EY_MM_VNNI
#undef EY_MM_TMAX
#undef EY_MM_AMAX
#undef EY_MM_TEMPLATE

#endif /* EY_MM_X86 */

/* --------------------------------------------------------------- dispatch */

static int mm_cpu_best(void)
{
#if EY_MM_X86
    static int cached = -1;
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c >= 0) return c;
    __builtin_cpu_init();
    c = ISA_SCALAR;
    /* F16C through cpuid: older clang lacks __builtin_cpu_supports("f16c") */
    unsigned int ea, eb, ec = 0, ed;
    int f16c = __get_cpuid(1, &ea, &eb, &ec, &ed) && (ec & bit_F16C);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) {
        c = ISA_AVX2;
#ifdef EY_MM_EMU_VNNI
        c = ISA_AVX512VNNI;
#else
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
            c = ISA_AVX512;
            if (__builtin_cpu_supports("avx512vnni")) c = ISA_AVX512VNNI;
        }
#endif
    }
    __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    return c;
#else
    return ISA_SCALAR;
#endif
}

/* Best path the CPU has, capped by EYRIE_CPU_ISA (read on every call so
 * tests and benchmarks can switch it). */
static int mm_isa(void)
{
    int c = mm_cpu_best();
    const char *e = getenv("EYRIE_CPU_ISA");
    if (e && *e) {
        int cap = ISA_AVX512VNNI;
        if (!strcmp(e, "scalar")) cap = ISA_SCALAR;
        else if (!strcmp(e, "avx2")) cap = ISA_AVX2;
        if (c > cap) c = cap;
    }
    return c;
}

const char *ey_cpu_matmul_isa(void)
{
    static const char *const names[] = {"scalar", "avx2", "avx512", "avx512vnni"};
    return names[mm_isa()];
}

typedef void (*mm_fn)(const mm_args *a, int64_t i0, int64_t i1);

void ey_cpu_matmul(float *y, ey_dtype wt, const void *W, const float *bias,
                   const float *x, int64_t N, int64_t K, int T, void *scratch,
                   int n_threads)
{
    if (N <= 0 || T <= 0) return;
    EY_ASSERT(K >= 0);
    if (K == 0) {
        for (int t = 0; t < T; t++)
            for (int64_t n = 0; n < N; n++) y[(size_t)t * (size_t)N + (size_t)n] = bias ? bias[n] : 0.0f;
        return;
    }
    const int quant = mm_is_quant(wt);
    mm_args a = {
        .y = y, .wt = wt, .W = W, .rb = ey_dtype_row_bytes(wt, K), .bias = bias, .x = x,
        .xs = NULL, .xrs = 0, .N = N, .K = K, .nb = K / EY_QK, .T = T,
    };
    EY_ASSERT(a.rb > 0);
    const int r8 = mm_is_r8(wt);
    EY_ASSERT(!r8 || N % 8 == 0);
    mm_fn qfn = mm_quant_scalar, kfn = r8 ? mm_r8_scalar : quant ? mm_q_scalar : mm_f_scalar;
    switch (mm_isa()) {
#if EY_MM_X86
    case ISA_AVX512VNNI:
        qfn = mm_quant_avx512vnni;
        kfn = r8 ? mm_r8_avx512vnni : quant ? mm_q_avx512vnni : mm_f_avx512vnni;
        break;
    case ISA_AVX512:
        qfn = mm_quant_avx512;
        kfn = r8 ? mm_r8_avx512 : quant ? mm_q_avx512 : mm_f_avx512;
        break;
    case ISA_AVX2:
        qfn = mm_quant_avx2;
        kfn = r8 ? mm_r8_avx2 : quant ? mm_q_avx2 : mm_f_avx2;
        break;
#endif
    default:
        break;
    }
    if (quant) {
        EY_ASSERT(scratch != NULL);
        a.xs = (uint8_t *)mm_al64((size_t)(uintptr_t)scratch);
        a.xrs = mm_xrow_bytes(K);
    }
    const int64_t nq = (int64_t)T * a.nb;       /* x blocks to quantize */
    const int64_t nw = (N + EY_MM_ROWS - 1) / EY_MM_ROWS; /* row groups */
    int nt = n_threads < 1 ? 1 : n_threads;
    if (nt > nw) nt = (int)nw;
    /* few x blocks (decode): quantize before the parallel region, which
     * saves a barrier */
    const int qpar = quant && nt > 1 && nq > 64;
    if (quant && !qpar) qfn(&a, 0, nq);
    if (nt <= 1) {
        kfn(&a, 0, N);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        if (qpar) {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < nq; i += 8) qfn(&a, i, i + 8 < nq ? i + 8 : nq);
        }
#pragma omp for schedule(static)
        for (int64_t g = 0; g < nw; g++) {
            int64_t n0 = g * EY_MM_ROWS;
            kfn(&a, n0, n0 + EY_MM_ROWS < N ? n0 + EY_MM_ROWS : N);
        }
    }
}

#else /* EY_MM_TEMPLATE: x86 kernels, instantiated per ISA ============== */

#define F(name) EY_MM_CAT(name, EY_MM_SFX)

/* Integer dot of 32 u8 x 32 s8 into 8 i32 lanes (lane i: bytes 4i..4i+3). */
#if EY_MM_VNNI && !defined(EY_MM_EMU_VNNI)
#define EY_MM_DOT(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#elif EY_MM_VNNI
/* exact emulation of vpdpbusd (no intermediate saturation) */
static EY_MM_AI EY_MM_TGT __m256i F(dpbusd)(__m256i u, __m256i s)
{
    const __m256i z = _mm256_setzero_si256();
    __m256i ulo = _mm256_unpacklo_epi8(u, z), uhi = _mm256_unpackhi_epi8(u, z);
    __m256i slo = _mm256_srai_epi16(_mm256_unpacklo_epi8(z, s), 8);
    __m256i shi = _mm256_srai_epi16(_mm256_unpackhi_epi8(z, s), 8);
    return _mm256_hadd_epi32(_mm256_madd_epi16(ulo, slo), _mm256_madd_epi16(uhi, shi));
}
#define EY_MM_DOT(u, s) F(dpbusd)((u), (s))
#else
#define EY_MM_DOT(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#endif

static EY_MM_AI EY_MM_TGT float F(hsum)(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static EY_MM_TGT void F(mm_quant)(const mm_args *a, int64_t i0, int64_t i1)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = i0; i < i1; i++) {
        int t = (int)(i / a->nb);
        int64_t b = i % a->nb;
        const float *p = a->x + (size_t)t * (size_t)a->K + (size_t)b * EY_QK;
        __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8);
        __m256 v2 = _mm256_loadu_ps(p + 16), v3 = _mm256_loadu_ps(p + 24);
        __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                  _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float d = _mm_cvtss_f32(m) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 iv = _mm256_set1_ps(id);
        __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, iv));
        __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, iv));
        __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, iv));
        __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, iv));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        int sum = _mm_cvtsi128_si32(s4);
        __m256i pk = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        pk = _mm256_permutevar8x32_epi32(pk, perm);
        _mm256_store_si256((__m256i *)(mm_xq(a, t) + b * EY_QK), pk);
        ((float *)mm_xd(a, t))[b] = d;
        ((float *)mm_xsum(a, t))[b] = d * (float)sum;
    }
}

/* Register tile: R weight rows x TT x rows, R * TT <= EY_MM_AMAX accumulators.
 * ac[r*TT+t] += (dw_rb dx_tb) * idot(block b of row r, x_t); qs[r]: row r's
 * segment start; sc[(r*TT+t)*EY_MM_QSEG + b]: the block scales. */
static EY_MM_AI EY_MM_TGT void F(q_block)(const int R, const int TT, const int kind,
                                           const uint8_t *const *qs, const int8_t *const *xq,
                                           int b, const float *sc, __m256 *ac)
{
    const size_t bsz = kind == 0 ? 18 : kind == 1 ? 20 : 34;
    __m256i w[4], wu[4];
    EY_MM_UNROLL
    for (int r = 0; r < R; r++) {
        const uint8_t *p = qs[r] + (size_t)b * bsz;
        if (kind == 2) {
            w[r] = _mm256_loadu_si256((const __m256i *)p);
#if EY_MM_VNNI
            wu[r] = _mm256_xor_si256(w[r], _mm256_set1_epi8((char)0x80));
#else
            wu[r] = _mm256_sign_epi8(w[r], w[r]); /* |w| */
#endif
        } else {
            __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
            w[r] = _mm256_and_si256(_mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)),
                                    _mm256_set1_epi8(0x0f));
            wu[r] = w[r];
        }
    }
    EY_MM_UNROLL
    for (int t = 0; t < TT; t++) {
        const __m256i xv = _mm256_load_si256((const __m256i *)(xq[t] + b * EY_QK));
        EY_MM_UNROLL
        for (int r = 0; r < R; r++) {
#if EY_MM_VNNI
            __m256i p = EY_MM_DOT(wu[r], xv);
#else
            __m256i p = EY_MM_DOT(wu[r], kind == 2 ? _mm256_sign_epi8(xv, w[r]) : xv);
#endif
            const int i = r * TT + t;
            ac[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(sc + i * EY_MM_QSEG + b),
                                    ac[i]);
        }
    }
}

#ifndef EY_MM_PF
#define EY_MM_PF 1 /* software prefetch of the next tile at small T */
#endif
/* the f16 at p + j * bsz for j < 8 (j clamped to n - 1) */
static EY_MM_AI EY_MM_TGT __m128i F(h16x8)(const uint8_t *p, size_t bsz, int n)
{
    __m128i h = _mm_cvtsi32_si128(mm_rd16(p));
#define EY_MM_INS(j) h = _mm_insert_epi16(h, (short)mm_rd16(p + (size_t)((j) < n ? (j) : n - 1) * bsz), (j))
    EY_MM_INS(1); EY_MM_INS(2); EY_MM_INS(3); EY_MM_INS(4); EY_MM_INS(5); EY_MM_INS(6); EY_MM_INS(7);
#undef EY_MM_INS
    return h;
}

/* out[b] = f16 at p + b * stride, for b < n */
static EY_MM_AI EY_MM_TGT void F(gather_f16)(const uint8_t *p, size_t stride, int n, float *out)
{
    int b = 0;
    for (; b + 8 <= n; b += 8) {
        const uint8_t *q = p + (size_t)b * stride;
        /* built in registers: scalar stores + a vector load would stall
         * store forwarding */
        __m128i h = _mm_setr_epi16((short)mm_rd16(q), (short)mm_rd16(q + stride),
                                   (short)mm_rd16(q + 2 * stride), (short)mm_rd16(q + 3 * stride),
                                   (short)mm_rd16(q + 4 * stride), (short)mm_rd16(q + 5 * stride),
                                   (short)mm_rd16(q + 6 * stride), (short)mm_rd16(q + 7 * stride));
        _mm256_store_ps(out + b, _mm256_cvtph_ps(h));
    }
    for (; b < n; b++) out[b] = _cvtsh_ss(mm_rd16(p + (size_t)b * stride));
}

/* Q4_1: d[b] and m[b] from the adjacent f16 pair at p + b * stride */
static EY_MM_AI EY_MM_TGT void F(gather_f16x2)(const uint8_t *p, size_t stride, int n, float *d,
                                                float *m)
{
    int b = 0;
    for (; b + 8 <= n; b += 8) {
        /* 16-bit loads inserted in registers: assembling dwords in memory
         * and reloading them as a vector stalled store forwarding */
        const uint8_t *q = p + (size_t)b * stride;
        _mm256_store_ps(d + b, _mm256_cvtph_ps(F(h16x8)(q, stride, 8)));
        _mm256_store_ps(m + b, _mm256_cvtph_ps(F(h16x8)(q + 2, stride, 8)));
    }
    for (; b < n; b++) {
        d[b] = _cvtsh_ss(mm_rd16(p + (size_t)b * stride));
        m[b] = _cvtsh_ss(mm_rd16(p + (size_t)b * stride + 2));
    }
}

/* Small-T tile (the whole x tile, T <= EY_MM_TMAX): R W row segments of nb
 * blocks (block starts at rw[r]) against TT x rows, the f16 scales read in
 * the tile (dw == NULL) or taken from per-chunk arrays dw/vw [R][EY_MM_QSEG]
 * (T > 4; the same values). y = sum_b (dw_b dx_b) idot_b + coef * sum_b vw_b
 * sx_b, the offset dot vectorized over 8 blocks (tail lanes masked). pf: the
 * distance to the next tile, prefetched (0: none). out[r*TT+t]. */
static EY_MM_AI EY_MM_TGT void F(q_tile_s)(const int R, const int TT, const int kind,
                                            const uint8_t *const *rw, int nb, size_t pf,
                                            const float *dw, const float *vw, const int8_t *const *xq,
                                            const float *const *xd, const float *const *xsum,
                                            float *out)
{
    const size_t bsz = kind == 0 ? 18 : kind == 1 ? 20 : 34;
    const int qoff = kind == 1 ? 4 : 2;
    const float coef = kind == 0 ? -8.0f : kind == 1 ? 1.0f : EY_MM_VNNI ? -128.0f : 0.0f;
    float sc[EY_MM_AMAX * EY_MM_QSEG] __attribute__((aligned(32)));
    __m256 ov[EY_MM_AMAX];
    EY_MM_UNROLL
    for (int i = 0; i < R * TT; i++) ov[i] = _mm256_setzero_ps();
    /* rows outer: the heads are read in address order (the first touch of
     * the tile's weights; the hardware prefetcher follows it) */
    EY_MM_UNROLL
    for (int r = 0; r < R; r++) {
        for (int b = 0; b < nb; b += 8) {
            const int n = nb - b < 8 ? nb - b : 8;
            const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            /* f16 scales by 16-bit loads inserted in registers (faster
             * here than vpgatherdd, and no store-forwarding stall) */
            const uint8_t *q = rw[r] + (size_t)b * bsz;
            if (pf) { /* the same span of the next tile */
                _mm_prefetch((const char *)(q + pf), _MM_HINT_T0);
                _mm_prefetch((const char *)(q + pf + 64), _MM_HINT_T0);
                _mm_prefetch((const char *)(q + pf + 128), _MM_HINT_T0);
                if (kind == 2) {
                    _mm_prefetch((const char *)(q + pf + 192), _MM_HINT_T0);
                    _mm_prefetch((const char *)(q + pf + 256), _MM_HINT_T0);
                }
            }
            __m256 d8, v8;
            if (!dw) {
                d8 = _mm256_cvtph_ps(F(h16x8)(q, bsz, n));
                v8 = kind == 1 ? _mm256_cvtph_ps(F(h16x8)(q + 2, bsz, n)) : d8;
            } else if (n == 8) { /* the same values, converted per row chunk */
                d8 = _mm256_load_ps(dw + r * EY_MM_QSEG + b);
                v8 = kind == 1 ? _mm256_load_ps(vw + r * EY_MM_QSEG + b) : d8;
            } else {
                d8 = _mm256_maskload_ps(dw + r * EY_MM_QSEG + b, m);
                v8 = kind == 1 ? _mm256_maskload_ps(vw + r * EY_MM_QSEG + b, m) : d8;
            }
            EY_MM_UNROLL
            for (int t = 0; t < TT; t++) {
                const int i = r * TT + t;
                __m256 xd8, xs8 = _mm256_setzero_ps();
                if (n == 8) {
                    xd8 = _mm256_loadu_ps(xd[t] + b);
                    if (coef != 0.0f) xs8 = _mm256_loadu_ps(xsum[t] + b);
                } else {
                    xd8 = _mm256_maskload_ps(xd[t] + b, m);
                    if (coef != 0.0f) xs8 = _mm256_maskload_ps(xsum[t] + b, m);
                }
                _mm256_store_ps(sc + i * EY_MM_QSEG + b, _mm256_mul_ps(d8, xd8));
                if (coef != 0.0f) ov[i] = _mm256_fmadd_ps(v8, xs8, ov[i]);
            }
        }
    }
    const uint8_t *qs[4];
    EY_MM_UNROLL
    for (int r = 0; r < R; r++) qs[r] = rw[r] + qoff;
    __m256 a0[EY_MM_AMAX];
    EY_MM_UNROLL
    for (int i = 0; i < R * TT; i++) a0[i] = _mm256_setzero_ps();
    /* one accumulator per (row, x row), blocks in order, whatever R and TT:
     * y[t][n] does not depend on T, the tile or the thread count (greedy
     * speculative verify must reproduce T = 1 decode) */
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        F(q_block)(R, TT, kind, qs, xq, b, sc, a0);
        F(q_block)(R, TT, kind, qs, xq, b + 1, sc, a0);
    }
    if (b < nb) F(q_block)(R, TT, kind, qs, xq, b, sc, a0);
    EY_MM_UNROLL
    for (int i = 0; i < R * TT; i++)
        out[i] = F(hsum)(a0[i]) + (coef != 0.0f ? coef * F(hsum)(ov[i]) : 0.0f);
}

static EY_MM_TGT void F(q_tile_s_any)(int R, int TT, int kind, const uint8_t *const *rw, int nb,
                                      size_t pf, const float *dw, const float *vw,
                                      const int8_t *const *xq, const float *const *xd,
                                      const float *const *xsum, float *out)
{
#define EY_MM_QT(r, tt, k)                                                     \
    case ((r) * 8 + (tt)) * 3 + (k):                                           \
        F(q_tile_s)(r, tt, k, rw, nb, pf, dw, vw, xq, xd, xsum, out);          \
        return;
#define EY_MM_QT3(r, tt) EY_MM_QT(r, tt, 0) EY_MM_QT(r, tt, 1) EY_MM_QT(r, tt, 2)
    switch ((R * 8 + TT) * 3 + kind) {
        EY_MM_QT3(1, 1) EY_MM_QT3(1, 2) EY_MM_QT3(1, 3) EY_MM_QT3(1, 4)
        EY_MM_QT3(2, 1) EY_MM_QT3(2, 2) EY_MM_QT3(2, 3) EY_MM_QT3(2, 4)
        EY_MM_QT3(4, 1) EY_MM_QT3(4, 2)
#if EY_MM_AMAX >= 16
        EY_MM_QT3(4, 3) EY_MM_QT3(4, 4)
#endif
    default:
        EY_ASSERT(0);
    }
#undef EY_MM_QT3
#undef EY_MM_QT
}

/* T <= EY_MM_TMAX: one x tile; tiles of rmax rows from n0 (a multiple of
 * EY_MM_ROWS, itself a multiple of 4), so every row's tile is the same for
 * any thread count. */
static EY_MM_TGT void F(mm_q_small)(const mm_args *a, int64_t n0, int64_t n1)
{
    const ey_dtype wt = a->wt;
    const int kind = wt == EY_Q4_0 ? 0 : wt == EY_Q4_1 ? 1 : 2;
    const size_t bsz = ey_dtype_block_bytes(wt);
    const int tt = a->T;
    const int rmax = EY_MM_AMAX / tt >= 4 ? 4 : EY_MM_AMAX / tt >= 2 ? 2 : 1;
    for (int64_t s0 = 0; s0 < a->nb; s0 += EY_MM_QSEG) {
        const int ns = (int)(a->nb - s0 < EY_MM_QSEG ? a->nb - s0 : EY_MM_QSEG);
        const int last = s0 + ns == a->nb;
        const int8_t *xq[EY_MM_TMAX];
        const float *xd[EY_MM_TMAX], *xsum[EY_MM_TMAX];
        for (int t = 0; t < tt; t++) {
            xq[t] = mm_xq(a, t) + s0 * EY_QK;
            xd[t] = mm_xd(a, t) + s0;
            xsum[t] = mm_xsum(a, t) + s0;
        }
        for (int64_t n = n0; n < n1;) {
            const int R = n1 - n >= rmax ? rmax : 1;
            const uint8_t *rw[4];
            float out[EY_MM_AMAX];
            for (int r = 0; r < R; r++) rw[r] = a->W + (size_t)(n + r) * a->rb + (size_t)s0 * bsz;
            F(q_tile_s_any)(R, tt, kind, rw, ns, EY_MM_PF ? (size_t)(EY_MM_PF * R) * a->rb : 0, NULL, NULL, xq, xd,
                            xsum, out);
            for (int r = 0; r < R; r++)
                for (int t = 0; t < tt; t++) {
                    float *yp = a->y + (size_t)t * (size_t)a->N + (size_t)(n + r);
                    float v = s0 == 0 ? out[r * tt + t] : *yp + out[r * tt + t];
                    if (last && a->bias) v += a->bias[n + r];
                    *yp = v;
                }
            n += R;
        }
    }
}

static EY_MM_TGT void F(mm_q)(const mm_args *a, int64_t n0, int64_t n1)
{
    if (a->T <= EY_MM_TMAX) {
        F(mm_q_small)(a, n0, n1);
        return;
    }
    const ey_dtype wt = a->wt;
    const int kind = wt == EY_Q4_0 ? 0 : wt == EY_Q4_1 ? 1 : 2;
    const size_t bsz = ey_dtype_block_bytes(wt);
    /* rows per tile: as many as the accumulators allow for the x-row tile.
     * Groups start at multiples of EY_MM_ROWS (n0 is one; itself a multiple
     * of 4), so the grouping of every row is independent of the thread
     * count. */
    const int tmax = a->T < EY_MM_TMAX ? a->T : EY_MM_TMAX;
    const int rmax = EY_MM_AMAX / tmax >= 4 ? 4 : EY_MM_AMAX / tmax >= 2 ? 2 : 1;
    /* scales of a chunk of EY_MM_ROWS rows, reused by every x-row tile */
    float dw[EY_MM_ROWS * EY_MM_QSEG] __attribute__((aligned(32)));
    float vw[EY_MM_ROWS * EY_MM_QSEG] __attribute__((aligned(32)));
    for (int64_t c0 = n0; c0 < n1; c0 += EY_MM_ROWS) {
        const int nc = (int)(n1 - c0 < EY_MM_ROWS ? n1 - c0 : EY_MM_ROWS);
        for (int64_t s0 = 0; s0 < a->nb; s0 += EY_MM_QSEG) {
            const int ns = (int)(a->nb - s0 < EY_MM_QSEG ? a->nb - s0 : EY_MM_QSEG);
            const int last = s0 + ns == a->nb;
            for (int r = 0; r < nc; r++) {
                const uint8_t *seg = a->W + (size_t)(c0 + r) * a->rb + (size_t)s0 * bsz;
                if (kind == 1)
                    F(gather_f16x2)(seg, bsz, ns, dw + r * EY_MM_QSEG, vw + r * EY_MM_QSEG);
                else
                    F(gather_f16)(seg, bsz, ns, dw + r * EY_MM_QSEG);
            }
            /* x-row tiles outer, rows inner: the x tile stays in L1 and the
             * chunk's weights in L1/L2 while T grows */
            for (int t0 = 0; t0 < a->T; t0 += EY_MM_TMAX) {
                const int tt = a->T - t0 < EY_MM_TMAX ? a->T - t0 : EY_MM_TMAX;
                const int8_t *xq[EY_MM_TMAX];
                const float *xd[EY_MM_TMAX], *xsum[EY_MM_TMAX];
                for (int t = 0; t < tt; t++) {
                    xq[t] = mm_xq(a, t0 + t) + s0 * EY_QK;
                    xd[t] = mm_xd(a, t0 + t) + s0;
                    xsum[t] = mm_xsum(a, t0 + t) + s0;
                }
                for (int r0 = 0; r0 < nc;) {
                    const int R = nc - r0 >= rmax ? rmax : 1;
                    const uint8_t *rw[4];
                    float out[EY_MM_AMAX];
                    for (int r = 0; r < R; r++)
                        rw[r] = a->W + (size_t)(c0 + r0 + r) * a->rb + (size_t)s0 * bsz;
                    F(q_tile_s_any)(R, tt, kind, rw, ns, 0, dw + r0 * EY_MM_QSEG, vw + r0 * EY_MM_QSEG, xq,
                                    xd, xsum, out);
                    for (int r = 0; r < R; r++) {
                        const int64_t n = c0 + r0 + r;
                        for (int t = 0; t < tt; t++) {
                            float *yp = a->y + (size_t)(t0 + t) * (size_t)a->N + (size_t)n;
                            float v = s0 == 0 ? out[r * tt + t] : *yp + out[r * tt + t];
                            if (last && a->bias) v += a->bias[n];
                            *yp = v;
                        }
                    }
                    r0 += R;
                }
            }
        }
    }
}

/* ---- R8 (8 rows interleaved, see cpu_matmul.h) ---- */

#if EY_MM_VNNI && !defined(EY_MM_EMU_VNNI)
#define EY_MM_DPACC(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#elif EY_MM_VNNI
#define EY_MM_DPACC(acc, u, s) _mm256_add_epi32((acc), F(dpbusd)((u), (s)))
#endif

static EY_MM_AI EY_MM_TGT __m256i F(bc32)(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* One group of 8 rows (base grp, nb blocks) against TT <= 4 x rows:
 * acc[t] lane r = y[t][row r]. Per block the 4 chunks give 8 registers of
 * 4 weights x 8 rows; the integer dot of a row's block lands in lane r
 * (i16 partial sums on AVX2 stay below 8 * 2 * 15 * 127 < 2^15, exact). */
static EY_MM_AI EY_MM_TGT void F(r8_tile)(const int TT, const int kind, const uint8_t *grp,
                                           int64_t nb, const int8_t *const *xq,
                                           const float *const *xd, const float *const *xsum,
                                           __m256 *acc)
{
    const size_t gb = kind == 1 ? 160 : 144, head = kind == 1 ? 32 : 16;
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    EY_MM_UNROLL
    for (int t = 0; t < TT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = grp + (size_t)b * gb;
        __m256i s[EY_MM_TMAX];
        EY_MM_UNROLL
        for (int t = 0; t < TT; t++) s[t] = _mm256_setzero_si256();
        EY_MM_UNROLL
        for (int c = 0; c < 4; c++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(p + head + 32 * c));
            const __m256i wl = _mm256_and_si256(w, lo4);
            const __m256i wh = _mm256_and_si256(_mm256_srli_epi16(w, 4), lo4);
            EY_MM_UNROLL
            for (int t = 0; t < TT; t++) {
                const int8_t *xb = xq[t] + b * EY_QK + 4 * c;
#if EY_MM_VNNI
                s[t] = EY_MM_DPACC(s[t], wl, F(bc32)(xb));
                s[t] = EY_MM_DPACC(s[t], wh, F(bc32)(xb + 16));
#else
                s[t] = _mm256_add_epi16(s[t], _mm256_add_epi16(_mm256_maddubs_epi16(wl, F(bc32)(xb)),
                                                               _mm256_maddubs_epi16(wh, F(bc32)(xb + 16))));
#endif
            }
        }
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        const __m256 v8 = kind == 1 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16)))
                                    : _mm256_mul_ps(d8, _mm256_set1_ps(-8.0f));
        EY_MM_UNROLL
        for (int t = 0; t < TT; t++) {
#if EY_MM_VNNI
            const __m256i i = s[t];
#else
            const __m256i i = _mm256_madd_epi16(s[t], _mm256_set1_epi16(1));
#endif
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(d8, _mm256_set1_ps(xd[t][b])),
                                     acc[t]);
            acc[t] = _mm256_fmadd_ps(v8, _mm256_set1_ps(xsum[t][b]), acc[t]);
        }
    }
}

/* Q8_0 R8: 8 chunks of 4 signed quants x 8 rows per block; the sign trick
 * (|w| as u8 against x with w's sign) keeps every path's integer dot exact */
static EY_MM_AI EY_MM_TGT void F(r8q8_tile)(const int TT, const uint8_t *grp, int64_t nb,
                                             const int8_t *const *xq, const float *const *xd,
                                             __m256 *acc)
{
    EY_MM_UNROLL
    for (int t = 0; t < TT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = grp + (size_t)b * 272;
        __m256i s[EY_MM_TMAX];
        EY_MM_UNROLL
        for (int t = 0; t < TT; t++) s[t] = _mm256_setzero_si256();
        EY_MM_UNROLL
        for (int c = 0; c < 8; c++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * c));
            const __m256i aw = _mm256_sign_epi8(w, w);
            EY_MM_UNROLL
            for (int t = 0; t < TT; t++) {
                const __m256i xs = _mm256_sign_epi8(F(bc32)(xq[t] + b * EY_QK + 4 * c), w);
#if EY_MM_VNNI
                s[t] = EY_MM_DPACC(s[t], aw, xs);
#else
                s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xs),
                                                                _mm256_set1_epi16(1)));
#endif
            }
        }
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        EY_MM_UNROLL
        for (int t = 0; t < TT; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), _mm256_mul_ps(d8, _mm256_set1_ps(xd[t][b])),
                                     acc[t]);
    }
}

static EY_MM_TGT void F(r8_tile_any)(int TT, int kind, const uint8_t *grp, int64_t nb,
                                     const int8_t *const *xq, const float *const *xd,
                                     const float *const *xsum, __m256 *acc)
{
#define EY_MM_RT(tt, k)                                                        \
    if (TT == (tt) && kind == (k)) {                                           \
        F(r8_tile)(tt, k, grp, nb, xq, xd, xsum, acc);                         \
        return;                                                                \
    }
    EY_MM_RT(1, 0) EY_MM_RT(2, 0) EY_MM_RT(3, 0) EY_MM_RT(4, 0)
    EY_MM_RT(1, 1) EY_MM_RT(2, 1) EY_MM_RT(3, 1) EY_MM_RT(4, 1)
#undef EY_MM_RT
#define EY_MM_RT8(tt)                                                          \
    if (TT == (tt) && kind == 2) {                                             \
        F(r8q8_tile)(tt, grp, nb, xq, xd, acc);                                \
        return;                                                                \
    }
    EY_MM_RT8(1) EY_MM_RT8(2) EY_MM_RT8(3) EY_MM_RT8(4)
#undef EY_MM_RT8
    EY_ASSERT(0);
}

/* R8 rows [n0, n1) (multiples of 8): x-row tiles of <= 4 outer, groups of 8
 * rows inner (the work item's groups stay in L1/L2 across the tiles) */
static EY_MM_TGT void F(mm_r8)(const mm_args *a, int64_t n0, int64_t n1)
{
    const int kind = a->wt == EY_Q4_1_R8 ? 1 : a->wt == EY_Q8_0_R8 ? 2 : 0;
    for (int t0 = 0; t0 < a->T; t0 += EY_MM_TMAX) {
        const int tt = a->T - t0 < EY_MM_TMAX ? a->T - t0 : EY_MM_TMAX;
        const int8_t *xq[EY_MM_TMAX];
        const float *xd[EY_MM_TMAX], *xsum[EY_MM_TMAX];
        for (int t = 0; t < tt; t++) {
            xq[t] = mm_xq(a, t0 + t);
            xd[t] = mm_xd(a, t0 + t);
            xsum[t] = mm_xsum(a, t0 + t);
        }
        for (int64_t n = n0; n < n1; n += 8) {
            __m256 acc[EY_MM_TMAX];
            F(r8_tile_any)(tt, kind, a->W + (size_t)(n / 8) * 8 * a->rb, a->nb, xq, xd, xsum, acc);
            for (int t = 0; t < tt; t++) {
                __m256 v = acc[t];
                if (a->bias) v = _mm256_add_ps(v, _mm256_loadu_ps(a->bias + n));
                _mm256_storeu_ps(a->y + (size_t)(t0 + t) * (size_t)a->N + (size_t)n, v);
            }
        }
    }
}

#ifdef EY_MM_DPACC
#undef EY_MM_DPACC
#endif

/* 8 weights at k converted to f32 */
static EY_MM_AI EY_MM_TGT __m256 F(ld8)(const int wt, const uint8_t *row, int64_t k)
{
    if (wt == EY_F32) return _mm256_loadu_ps((const float *)(row + 4 * k));
    __m128i h = _mm_loadu_si128((const __m128i *)(row + 2 * k));
    if (wt == EY_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static EY_MM_AI EY_MM_TGT void F(f_tile)(const int TT, const int wt, const uint8_t *row, int64_t K,
                                          const float *const *x, float *out)
{
    __m256 a0[EY_MM_TMAX], a1[EY_MM_TMAX];
    EY_MM_UNROLL
    for (int t = 0; t < TT; t++) a0[t] = a1[t] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m256 w0 = F(ld8)(wt, row, k), w1 = F(ld8)(wt, row, k + 8);
        EY_MM_UNROLL
        for (int t = 0; t < TT; t++) {
            a0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + k), a0[t]);
            a1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[t] + k + 8), a1[t]);
        }
    }
    if (k + 8 <= K) {
        __m256 w0 = F(ld8)(wt, row, k);
        EY_MM_UNROLL
        for (int t = 0; t < TT; t++) a0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + k), a0[t]);
        k += 8;
    }
    EY_MM_UNROLL
    for (int t = 0; t < TT; t++) {
        float s = F(hsum)(_mm256_add_ps(a0[t], a1[t]));
        for (int64_t j = k; j < K; j++) s += mm_wf((ey_dtype)wt, row, j) * x[t][j];
        out[t] = s;
    }
}

static EY_MM_TGT void F(f_tile_any)(int TT, int wt, const uint8_t *row, int64_t K,
                                    const float *const *x, float *out)
{
#define EY_MM_FT(tt, w)                                                        \
    if (TT == (tt) && wt == (w)) {                                             \
        F(f_tile)(tt, w, row, K, x, out);                                      \
        return;                                                                \
    }
    EY_MM_FT(1, EY_F32) EY_MM_FT(2, EY_F32) EY_MM_FT(3, EY_F32) EY_MM_FT(4, EY_F32)
    EY_MM_FT(1, EY_F16) EY_MM_FT(2, EY_F16) EY_MM_FT(3, EY_F16) EY_MM_FT(4, EY_F16)
    EY_MM_FT(1, EY_BF16) EY_MM_FT(2, EY_BF16) EY_MM_FT(3, EY_BF16) EY_MM_FT(4, EY_BF16)
#undef EY_MM_FT
    EY_ASSERT(0);
}

static EY_MM_TGT void F(mm_f)(const mm_args *a, int64_t n0, int64_t n1)
{
    /* chunks of EY_MM_ROWS rows; x-row tiles outer so each x tile stays in
     * L1 while the chunk's rows (L1/L2) are reused across tiles */
    for (int64_t c0 = n0; c0 < n1; c0 += EY_MM_ROWS) {
        const int64_t c1 = n1 - c0 < EY_MM_ROWS ? n1 : c0 + EY_MM_ROWS;
        for (int t0 = 0; t0 < a->T; t0 += EY_MM_TMAX) {
            const int tt = a->T - t0 < EY_MM_TMAX ? a->T - t0 : EY_MM_TMAX;
            const float *x[EY_MM_TMAX];
            for (int t = 0; t < tt; t++) x[t] = a->x + (size_t)(t0 + t) * (size_t)a->K;
            for (int64_t n = c0; n < c1; n++) {
                float out[EY_MM_TMAX];
                F(f_tile_any)(tt, (int)a->wt, a->W + (size_t)n * a->rb, a->K, x, out);
                for (int t = 0; t < tt; t++) {
                    float r = out[t];
                    if (a->bias) r += a->bias[n];
                    a->y[(size_t)(t0 + t) * (size_t)a->N + (size_t)n] = r;
                }
            }
        }
    }
}

#undef F
#undef EY_MM_DOT

#endif /* EY_MM_TEMPLATE */
