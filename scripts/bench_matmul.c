/* eyrie — benchmark of the CPU matmul kernels on SmolLM2-135M shapes.
 *
 * Build: ninja -C build (tests/kernels/bench_matmul), or
 *   gcc -O2 -fopenmp -I. scripts/bench_matmul.c kernels/cpu/cpu_matmul*.c \
 *       kernels/ey_dtype.c common/ey_err.c -lm -o bench_matmul
 * Run:   bench_matmul [threads...]        (default: 1 and 2)
 *        EYRIE_CPU_ISA=scalar|avx2|avx512 caps the path.
 *
 * Prints, for each thread count:
 *  - T=1 (decode) GB/s of weight bytes and GOPS (2*N*K*T) for the model's
 *    matrices: layers Q4_1 (q/o 576x576, k/v 192x576, gate/up 1536x576,
 *    down 576x1536) and the tied Q8_0 embedding as LM head (49152x576), and
 *    the per-token time of 30 layers + head;
 *  - the same for the matrices repacked by 8 rows (Q4_1 / Q8_0 R8, the
 *    layout the CPU backend loads them in);
 *  - the verify cost curve: time for T = 1..64 rows relative to T = 1.
 * Weights are allocated in enough copies (>= 128 MiB, 4x a 32 MiB L3) and cycled so each
 * call streams from DRAM, as in decode where the model exceeds the caches. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu_matmul.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

typedef struct wset {
    ey_dtype wt;
    int64_t N, K;
    size_t bytes; /* one copy */
    int copies;
    uint8_t *w;
} wset;

static wset make_wset(ey_dtype wt, int64_t N, int64_t K)
{
    /* a repacked (R8) set: made in the base type, then repacked */
    const ey_dtype rt = wt;
    wt = ey_dtype_r8_base(wt);
    wset s = {.wt = wt, .N = N, .K = K};
    s.bytes = ey_dtype_row_bytes(wt, K) * (size_t)N;
    s.copies = (int)((128u << 20) / s.bytes) + 1;
    if (s.copies < 2) s.copies = 2;
    s.w = malloc(s.bytes * s.copies);
    if (!s.w) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    /* random bytes with sane f16 scales in every block */
    for (size_t i = 0; i < s.bytes; i += 8) {
        uint64_t r = rnd();
        memcpy(s.w + i, &r, s.bytes - i < 8 ? s.bytes - i : 8);
    }
    size_t bb = ey_dtype_block_bytes(wt);
    if (ey_dtype_block(wt) > 1)
        for (size_t i = 0; i + bb <= s.bytes; i += bb) {
            uint16_t d = ey_f32_to_f16(0.01f + (rnd() % 100) * 1e-4f);
            memcpy(s.w + i, &d, 2);
            if (wt == EY_Q4_1) memcpy(s.w + i + 2, &d, 2);
        }
    else if (wt == EY_F32)
        for (size_t i = 0; i < s.bytes / 4; i++) ((float *)s.w)[i] = (float)(rnd() % 1000) * 1e-3f;
    if (rt != wt) {
        uint8_t *tmp = malloc(s.bytes);
        memcpy(tmp, s.w, s.bytes);
        ey_r8_pack(rt, s.w, tmp, N, K);
        free(tmp);
        s.wt = rt;
    }
    for (int c = 1; c < s.copies; c++) memcpy(s.w + c * s.bytes, s.w, s.bytes);
    return s;
}

static float *g_x, *g_y;
static void *g_scratch;

/* seconds per call, cycling weight copies: the best single call over at
 * least min_s (the minimum filters out other load on the machine) */
static double time_mm(const wset *s, int T, int nt, double min_s)
{
    int c = 0;
    for (int i = 0; i < 3; i++, c = (c + 1) % s->copies)
        ey_cpu_matmul(g_y, s->wt, s->w + (size_t)c * s->bytes, NULL, g_x, s->N, s->K, T, g_scratch, nt);
    double best = 1e30, start = now(), t1;
    do {
        double t0 = now();
        ey_cpu_matmul(g_y, s->wt, s->w + (size_t)c * s->bytes, NULL, g_x, s->N, s->K, T, g_scratch, nt);
        c = (c + 1) % s->copies;
        t1 = now();
        if (t1 - t0 < best) best = t1 - t0;
    } while (t1 - start < min_s);
    return best;
}

int main(int argc, char **argv)
{
    int threads[8] = {1, 2}, n_thr = 2;
    if (argc > 1) {
        n_thr = 0;
        for (int i = 1; i < argc && n_thr < 8; i++) threads[n_thr++] = atoi(argv[i]);
    }
    const int64_t KMAX = 16384;
    const int TMAX = 64;
    g_x = malloc(sizeof(float) * KMAX * TMAX);
    g_y = malloc(sizeof(float) * 49152 * TMAX);
    for (int64_t i = 0; i < KMAX * TMAX; i++) g_x[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
    g_scratch = malloc(ey_cpu_matmul_scratch_bytes(EY_Q8_0, KMAX, TMAX) + 64);

    printf("eyrie matmul bench: path %s\n", ey_cpu_matmul_isa());

    struct {
        const char *name;
        ey_dtype wt;
        int64_t N, K;
        int per_layer; /* 1: a layer matrix; 2: the same, repacked (R8); 0: the head
                        * (once per token); 3: the head repacked; -1: shown only */
    } mats[] = {
        {"attn_q", EY_Q4_1, 576, 576, 1},    {"attn_k", EY_Q4_1, 192, 576, 1},
        {"attn_v", EY_Q4_1, 192, 576, 1},    {"attn_o", EY_Q4_1, 576, 576, 1},
        {"ffn_gate", EY_Q4_1, 1536, 576, 1}, {"ffn_up", EY_Q4_1, 1536, 576, 1},
        {"ffn_down", EY_Q4_1, 576, 1536, 1}, {"head q8_0", EY_Q8_0, 49152, 576, 0},
        {"head q4_1", EY_Q4_1, 49152, 576, -1}, {"ffn_up f16", EY_F16, 1536, 576, -1},
        {"ffn_up bf16", EY_BF16, 1536, 576, -1}, {"ffn_up f32", EY_F32, 1536, 576, -1},
        {"attn_q r8", EY_Q4_1_R8, 576, 576, 2},    {"attn_k r8", EY_Q4_1_R8, 192, 576, 2},
        {"attn_v r8", EY_Q4_1_R8, 192, 576, 2},    {"attn_o r8", EY_Q4_1_R8, 576, 576, 2},
        {"ffn_gate r8", EY_Q4_1_R8, 1536, 576, 2}, {"ffn_up r8", EY_Q4_1_R8, 1536, 576, 2},
        {"ffn_down r8", EY_Q4_1_R8, 576, 1536, 2}, {"head q4_1 r8", EY_Q4_1_R8, 49152, 576, -1},
        {"head q8_0 r8", EY_Q8_0_R8, 49152, 576, 3},
    };
    const int nm = (int)(sizeof mats / sizeof *mats);
    wset ws[sizeof mats / sizeof *mats];
    for (int i = 0; i < nm; i++) ws[i] = make_wset(mats[i].wt, mats[i].N, mats[i].K);

    for (int ti = 0; ti < n_thr; ti++) {
        int nt = threads[ti];
        printf("\n== %d thread%s, T=1 (decode)\n", nt, nt > 1 ? "s" : "");
        printf("%-12s %-5s %6s %6s %10s %8s %8s\n", "matrix", "type", "N", "K", "us/call", "GB/s", "GOPS");
        double tok = 0, tok8 = 0, head = 0, head8 = 0;
        for (int i = 0; i < nm; i++) {
            double s = time_mm(&ws[i], 1, nt, 0.3);
            printf("%-12s %-5s %6lld %6lld %10.2f %8.2f %8.2f\n", mats[i].name, ey_dtype_name(mats[i].wt),
                   (long long)mats[i].N, (long long)mats[i].K, s * 1e6, ws[i].bytes / s * 1e-9,
                   2.0 * mats[i].N * mats[i].K / s * 1e-9);
            if (mats[i].per_layer == 1) tok += 30 * s;
            else if (mats[i].per_layer == 2) tok8 += 30 * s;
            else if (mats[i].per_layer == 0) head = s;
            else if (mats[i].per_layer == 3) head8 = s;
        }
        printf("matmuls per token (30 layers + q8_0 head): %.3f ms -> %.1f tok/s upper bound\n",
               (tok + head) * 1e3, 1.0 / (tok + head));
        printf("  all repacked (R8, as the CPU loads them): %.3f ms -> %.1f tok/s upper bound\n",
               (tok8 + head8) * 1e3, 1.0 / (tok8 + head8));

        printf("\n== %d thread%s, verify cost curve: time(T) / time(1)\n", nt, nt > 1 ? "s" : "");
        static const int Ts[] = {1, 2, 4, 8, 16, 32, 64};
        int curve[] = {5, 17, 6, 18, 7, 20, 8, 19};
        printf("%-22s", "shape \\ T");
        for (int j = 0; j < 7; j++) printf(" %9d", Ts[j]);
        printf("\n");
        for (int ci = 0; ci < (int)(sizeof curve / sizeof *curve); ci++) {
            const wset *s = &ws[curve[ci]];
            double base = 0, tt[7];
            for (int j = 0; j < 7; j++) {
                tt[j] = time_mm(s, Ts[j], nt, 0.2);
                if (j == 0) base = tt[0];
            }
            char lbl[64];
            snprintf(lbl, sizeof lbl, "%s %lldx%lld", ey_dtype_name(s->wt), (long long)s->N, (long long)s->K);
            printf("%-22s", lbl);
            for (int j = 0; j < 7; j++) printf(" %9.2f", tt[j] / base);
            printf("   (T=1 %.1f us)\n%-22s", base * 1e6, "  GOPS");
            for (int j = 0; j < 7; j++) printf(" %9.1f", 2.0 * s->N * s->K * Ts[j] / tt[j] * 1e-9);
            printf("\n");
        }
    }
    for (int i = 0; i < nm; i++) free(ws[i].w);
    free(g_x);
    free(g_y);
    free(g_scratch);
    return 0;
}
