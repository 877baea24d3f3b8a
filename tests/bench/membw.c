/* Measured memory read bandwidth: the floor for a decode step is the bytes it
 * must read (weights + KV) divided by this. Streams a 512 MiB buffer (far
 * beyond the caches) with AVX2 loads when available, n threads, best of 7.
 *   ey_membw [THREADS]   -> prints "read_GBps <value>" */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint8_t *p, size_t n)
{
    __m256i acc = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 64) {
        acc = _mm256_xor_si256(acc, _mm256_load_si256((const __m256i *)(p + i)));
        acc2 = _mm256_xor_si256(acc2, _mm256_load_si256((const __m256i *)(p + i + 32)));
    }
    acc = _mm256_xor_si256(acc, acc2);
    return (uint64_t)_mm256_extract_epi64(acc, 0) ^ (uint64_t)_mm256_extract_epi64(acc, 3);
}

static uint64_t sum_plain(const uint8_t *p, size_t n)
{
    uint64_t a = 0;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        a ^= v;
    }
    return a;
}

int main(int argc, char **argv)
{
    int nt = argc > 1 ? atoi(argv[1]) : 1;
    size_t n = (size_t)512 << 20;
    uint8_t *buf = aligned_alloc(64, n);
    if (!buf) return 1;
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)i;
    int avx2 = __builtin_cpu_supports("avx2");
    double best = 0;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = now();
        uint64_t s = 0;
#pragma omp parallel num_threads(nt) reduction(^ : s)
        {
            int t = omp_get_thread_num(), k = omp_get_num_threads();
            size_t chunk = n / k / 64 * 64, off = chunk * t;
            if (t == k - 1) chunk = n - off;
            s ^= avx2 ? sum_avx2(buf + off, chunk) : sum_plain(buf + off, chunk);
        }
        double dt = now() - t0;
        sink ^= s;
        if (n / dt / 1e9 > best) best = n / dt / 1e9;
    }
    printf("read_GBps %.2f\n", best);
    free(buf);
    return (int)(sink & 0);
}
