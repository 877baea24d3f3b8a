/* Independent-engine parity on the real default model: eyrie vs llama.cpp.
 *
 *   test_llamacpp MODEL FIXTURE.json ABS_TOL MARGIN
 *
 * The fixture (scripts/make_llamacpp_fixtures.py) holds, per prompt,
 * llama.cpp's token ids for the text, its greedy continuation and its
 * top-5 logits at every step. Checks:
 *  - eyrie's tokenization of the text equals llama.cpp's ids exactly;
 *  - teacher-forced along llama.cpp's greedy path (one batched forward),
 *    eyrie's logits for llama.cpp's top-5 ids are within ABS_TOL;
 *  - eyrie's argmax equals llama.cpp's wherever llama.cpp's top-1/top-2
 *    margin is >= MARGIN.
 * Exits 77 when the model has not been fetched. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../core/generate.h"
#include "../../core/safetensors.h"
#include "test.h"

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL FIXTURE ABS_TOL MARGIN\n", argv[0]);
        return 2;
    }
    if (access(argv[1], R_OK)) TEST_SKIP("default model not fetched (%s); run scripts/fetch-model.sh", argv[1]);
    double tol = atof(argv[3]), margin = atof(argv[4]);
    char *txt;
    TEST_CHECK(ey_read_file(argv[2], 16u << 20, &txt, NULL) == EY_OK);
    cJSON *fx = cJSON_Parse(txt);
    free(txt);
    ey_backend *be;
    TEST_CHECK(ey_backend_cpu_create(2, &be) == EY_OK);
    ey_model *m;
    ey_err e = ey_model_load(argv[1], be, &m);
    TEST_CHECK_MSG(e == EY_OK, "%s", ey_err_detail());
    if (e || !fx) return test_result();
    const int V = m->cfg.n_vocab;
    ey_ctx *ctx;
    TEST_CHECK(ey_ctx_create(m, 1024, 256, 64, &ctx) == EY_OK);
    float *logits = malloc((size_t)64 * V * sizeof *logits);
    int steps = 0, clear = 0, agree_clear = 0, agree_all = 0, n_cases = 0;
    double worst = 0;
    for (cJSON *c = cJSON_GetObjectItem(fx, "cases")->child; c; c = c->next, n_cases++) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        cJSON *pid = cJSON_GetObjectItem(c, "prompt_ids"), *gr = cJSON_GetObjectItem(c, "greedy"),
              *top = cJSON_GetObjectItem(c, "top5");
        int32_t *ids;
        int n;
        TEST_CHECK(ey_tokenize(m->tok, text, strlen(text), true, &ids, &n) == EY_OK);
        int np = cJSON_GetArraySize(pid), ng = cJSON_GetArraySize(gr);
        bool same = n == np;
        for (int i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(pid, i)->valueint;
        TEST_CHECK_MSG(same, "case %d: tokenization differs from llama.cpp", n_cases);
        free(ids);
        if (ng < 1 || ng > 64 || np + ng > 256) continue;
        int32_t seq[256];
        for (int i = 0; i < np; i++) seq[i] = cJSON_GetArrayItem(pid, i)->valueint;
        for (int i = 0; i < ng - 1; i++) seq[np + i] = cJSON_GetArrayItem(gr, i)->valueint;
        ey_seq s;
        ey_seq_init(&s, 1024);
        TEST_CHECK(ey_forward(ctx, &s, seq, np + ng - 1, NULL, NULL, ng, logits) == EY_OK);
        ey_seq_release(&ctx->kv, &s);
        for (int k = 0; k < ng; k++) {
            const float *row = logits + (size_t)k * V;
            cJSON *t5 = cJSON_GetArrayItem(top, k);
            int id0 = cJSON_GetArrayItem(cJSON_GetArrayItem(t5, 0), 0)->valueint;
            double l0 = cJSON_GetArrayItem(cJSON_GetArrayItem(t5, 0), 1)->valuedouble;
            double l1 = cJSON_GetArrayItem(cJSON_GetArrayItem(t5, 1), 1)->valuedouble;
            for (cJSON *p = t5->child; p; p = p->next) {
                int id = cJSON_GetArrayItem(p, 0)->valueint;
                double d = fabs(row[id] - cJSON_GetArrayItem(p, 1)->valuedouble);
                if (d > worst) worst = d;
                TEST_CHECK_MSG(d <= tol, "case %d step %d token %d: |%.3f - llama.cpp| = %.3f",
                               n_cases, k, id, row[id], d);
            }
            int am = ey_argmax(row, V);
            steps++;
            agree_all += am == id0;
            if (l0 - l1 >= margin) {
                clear++;
                agree_clear += am == id0;
                TEST_CHECK_MSG(am == id0, "case %d step %d: argmax %d, llama.cpp %d (margin %.3f)",
                               n_cases, k, am, id0, l0 - l1);
            }
        }
    }
    fprintf(stderr, "%d cases, %d steps: argmax agrees on %d (%.1f%%); on the %d steps with "
            "margin >= %.2f: %d; worst |logit diff| on llama.cpp's top-5: %.3f\n", n_cases,
            steps, agree_all, 100.0 * agree_all / (steps ? steps : 1), clear, margin, agree_clear,
            worst);
    TEST_CHECK(n_cases >= 8 && steps >= 100);
    free(logits);
    ey_ctx_free(ctx);
    ey_model_free(m);
    ey_backend_destroy(be);
    cJSON_Delete(fx);
    return test_result();
}
