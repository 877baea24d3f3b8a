/* ey_gen_result (+ ey_spec_stats) -> GenerateResult -> wire -> eyc_result_json
 * must print exactly what the in-process `eyrie generate --json` printed
 * before it was routed through the protocol (reference_json below is that
 * code, kept verbatim as the specification of the shape).
 *   test_result_json [TINY_MODEL]   (the model adds real ey_generate /
 *                                    ey_spec_generate results) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/generate.h"
#include "../../core/model.h"
#include "../../core/spec.h"
#include "../../core/spec_cli.h"
#include "../../daemon/result_pb.h"
#include "../../kernels/ey_backend.h"
#include "eyrie_client.h"
#include "test.h"

/* The --json object as docs/cli.md defines it, built directly from the engine
 * result (what the CLI printed before libeyrie; decode_tokens_per_s counts the
 * tokens after the first, so speculative runs are not undercounted). */
static char *reference_json(const ey_gen_result *res, const ey_spec_stats *sst)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", res->text);
    cJSON *arr = cJSON_AddArrayToObject(o, "token_ids");
    for (int i = 0; i < res->n_ids; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(res->ids[i]));
    cJSON_AddStringToObject(o, "finish_reason", res->finish_reason);
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", res->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", res->n_ids);
    cJSON *t = cJSON_AddObjectToObject(o, "timing");
    cJSON_AddNumberToObject(t, "prefill_ms", res->prefill_ms);
    cJSON_AddNumberToObject(t, "decode_ms", res->decode_ms);
    cJSON_AddNumberToObject(t, "decode_tokens_per_s",
                            res->decode_ms > 0 && res->n_ids > 0
                                ? (res->n_ids - 1) * 1000.0 / res->decode_ms : 0);
    if (sst) cJSON_AddItemToObject(o, "spec", ey_spec_stats_json(sst));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* through the protocol: convert, pack, unpack (what a client receives), render */
static char *wire_json(const ey_gen_result *res, const ey_spec_stats *sst)
{
    Eyrie__GenerateResult pb;
    TEST_CHECK(ey_result_to_pb(res, sst, 1.5, true, &pb));
    size_t n = eyrie__generate_result__get_packed_size(&pb);
    uint8_t *buf = malloc(n ? n : 1);
    eyrie__generate_result__pack(&pb, buf);
    ey_result_pb_free(&pb);
    Eyrie__GenerateResult *u = eyrie__generate_result__unpack(NULL, n, buf);
    free(buf);
    TEST_CHECK(u != NULL);
    if (!u) return strdup("");
    TEST_CHECK(u->timings && u->timings->has_queue_ms && u->timings->queue_ms == 1.5);
    cJSON *o = eyc_result_json(u);
    eyrie__generate_result__free_unpacked(u, NULL);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int g_cases;

static void check_case(const char *label, const ey_gen_result *res, const ey_spec_stats *sst)
{
    char *want = reference_json(res, sst);
    char *got = wire_json(res, sst);
    TEST_CHECK_MSG(!strcmp(want, got), "%s:\n  want %s\n  got  %s", label, want, got);
    free(want);
    free(got);
    g_cases++;
}

static void hand_built(void)
{
    int32_t ids[] = {17, 0, 2047, 99999, 2};
    char text[] = "Paris, \"the\" capital\n\xc3\xa9t\xc3\xa9 \\ \x01 done";
    ey_gen_result r = {.ids = ids, .n_ids = 5, .text = text, .text_len = strlen(text),
                       .finish_reason = "stop", .prompt_tokens = 37, .prefill_ms = 61.23456789,
                       .decode_ms = 90.1, .decode_steps = 4};
    check_case("plain stop", &r, NULL);

    r.finish_reason = "length";
    r.decode_ms = 1.0 / 3.0;
    check_case("plain length", &r, NULL);

    ey_gen_result e = {.ids = ids, .n_ids = 0, .text = "", .finish_reason = "length",
                       .prompt_tokens = 3, .prefill_ms = 0.5, .decode_ms = 0};
    check_case("empty", &e, NULL);

    ey_gen_result one = {.ids = ids, .n_ids = 1, .text = "x", .text_len = 1, .finish_reason = "stop",
                         .prompt_tokens = 3, .prefill_ms = 0.5, .decode_ms = 0.25};
    check_case("one token", &one, NULL);

    ey_spec_stats st = {.method = "tree", .rounds = 2, .drafted = 30, .accepted = 3,
                        .mean_accept_len = 2.5, .accept_rate = 0.1, .n_pos = 3,
                        .per_position = {1, 0.5, 0}, .draft_ms = 12.5, .verify_ms = 33.25};
    r.finish_reason = "stop";
    r.decode_steps = 2;
    r.decode_ms = 7.77;
    check_case("spec tree", &r, &st);

    ey_spec_stats z = {.method = "chain"};
    ey_gen_result r0 = {.ids = ids, .n_ids = 1, .text = "a", .text_len = 1, .finish_reason = "stop",
                        .prompt_tokens = 9, .prefill_ms = 2, .decode_ms = 0};
    check_case("spec no rounds", &r0, &z);
}

static void real_runs(const char *path)
{
    ey_backend *be = NULL;
    ey_model *m = NULL;
    ey_ctx *c = NULL;
    if (ey_backend_cpu_create(1, &be) || ey_model_load(path, be, &m) ||
        ey_ctx_create(m, 256, 64, 64, &c)) {
        TEST_CHECK_MSG(0, "load %s: %s", path, ey_err_detail());
        goto out;
    }
    int32_t prompt[] = {1, 5, 9, 33, 7, 101, 12};
    ey_gen_params gp = {.max_tokens = 24, .sampling = ey_sampling_default()};
    gp.sampling.temperature = 0;
    gp.ignore_eos = true;
    ey_gen_result ref = {0};
    if (ey_generate(c, prompt, 7, &gp, NULL, NULL, &ref)) {
        TEST_CHECK_MSG(0, "generate: %s", ey_err_detail());
        goto out;
    }
    check_case("ey_generate", &ref, NULL);
    TEST_CHECK(ref.decode_steps == ref.n_ids - 1);

    gp.max_tokens = 1;
    ey_gen_result r1 = {0};
    if (!ey_generate(c, prompt, 7, &gp, NULL, NULL, &r1)) {
        check_case("ey_generate 1 token", &r1, NULL);
        ey_gen_result_free(&r1);
    }
    gp.max_tokens = 24;

    /* the oracle drafter: exact speculative runs without drafter weights */
    uint8_t wrong[64] = {0};
    for (int i = 0; i < ref.n_ids; i += 3) wrong[i] = 1;
    ey_spec_oracle orc = {.cont = ref.ids, .n_cont = ref.n_ids, .wrong = wrong};
    ey_spec_opts so[2] = {ey_spec_opts_default(), ey_spec_opts_default()};
    so[0].method = EY_SPEC_CHAIN;
    so[0].k = 3;
    so[1].method = EY_SPEC_TREE;
    so[1].top_k = 2;
    so[1].depth = 3;
    so[1].total_tokens = 7;
    for (int i = 0; i < 2; i++) {
        so[i].oracle = &orc;
        ey_gen_result r = {0};
        ey_spec_stats st = {0};
        if (ey_spec_generate(c, NULL, &so[i], prompt, 7, &gp, NULL, NULL, &r, &st)) {
            TEST_CHECK_MSG(0, "spec: %s", ey_err_detail());
            continue;
        }
        check_case(i ? "spec tree (oracle)" : "spec chain (oracle)", &r, &st);
        TEST_CHECK(r.decode_steps == st.rounds);
        ey_gen_result_free(&r);
    }
    ey_gen_result_free(&ref);
out:
    ey_ctx_free(c);
    ey_model_free(m);
    ey_backend_destroy(be);
}

int main(int argc, char **argv)
{
    hand_built();
    if (argc > 1) real_runs(argv[1]);
    fprintf(stderr, "%d cases\n", g_cases);
    return test_result();
}
