/* Helpers shared by the speculative-decoding tests. */
#ifndef EY_SPEC_UTIL_H
#define EY_SPEC_UTIL_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../core/eagle3.h"
#include "../../core/spec.h"
#include "../test.h"

static char g_tmp_root[256];

/* A fresh directory under a per-process temp root. */
__attribute__((unused)) static const char *tmp_dir(const char *name)
{
    static char buf[512];
    if (!g_tmp_root[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(g_tmp_root, sizeof g_tmp_root, "%s/eyrie-spec-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(g_tmp_root)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    snprintf(buf, sizeof buf, "%s/%s", g_tmp_root, name);
    mkdir(buf, 0755);
    return buf;
}

__attribute__((unused)) static void tmp_cleanup(void)
{
    if (!g_tmp_root[0]) return;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp_root);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
}

static uint64_t g_rs = 88172645463325252ull;
__attribute__((unused)) static uint32_t rnd(void)
{
    g_rs ^= g_rs << 13;
    g_rs ^= g_rs >> 7;
    g_rs ^= g_rs << 17;
    return (uint32_t)(g_rs >> 11);
}

static ey_backend *cpu_backend(int threads)
{
    ey_backend *be = NULL;
    if (ey_backend_cpu_create(threads, &be)) {
        fprintf(stderr, "backend: %s\n", ey_err_detail());
        exit(1);
    }
    return be;
}

static ey_model *load_model(ey_backend *be, const char *path)
{
    ey_model *m = NULL;
    ey_err e = ey_model_load(path, be, &m);
    if (e) {
        fprintf(stderr, "load %s: %s: %s\n", path, ey_strerror(e), ey_err_detail());
        exit(1);
    }
    return m;
}

#endif
