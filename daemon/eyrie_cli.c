/* eyrie — command-line front end.
 *
 *   eyrie generate [--model PATH] (--prompt TEXT | --chat TEXT) [options]
 *
 * Exit codes: 0 ok, 1 runtime error (bad model file, ...), 2 bad arguments. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/generate.h"
#include "../core/model.h"
#include "../core/spec_cli.h"
#include "../kernels/ey_backend.h"
#include "../modalities/media_cli.h"

#define DEFAULT_MODEL_NAME "smollm2-135m-instruct-q4_1.gguf"

static void usage_generate(FILE *f)
{
    fprintf(f,
        "usage: eyrie generate [--model PATH] (--prompt TEXT | --chat TEXT) [options]\n"
        "\n"
        "  --model PATH         GGUF file or Hugging Face directory (default: the model\n"
        "                       fetched by scripts/fetch-model.sh, or $EYRIE_MODEL)\n"
        "  --prompt TEXT        raw completion of TEXT\n"
        "  --chat TEXT          one user turn through the model's chat template\n"
        "  --system TEXT        system prompt for --chat (default: the template's own)\n"
        "  --max-tokens N       completion tokens at most (default 256)\n"
        "  --temperature T      0 = greedy (default 0.8)\n"
        "  --top-k K            0 = off (default 40)\n"
        "  --top-p P            1 = off (default 0.95)\n"
        "  --min-p P            0 = off (default 0.05)\n"
        "  --repeat-penalty R   1 = off (default 1)\n"
        "  --repeat-last-n N    penalty window, -1 = all (default 64)\n"
        "  --seed S             sampling seed (default 0)\n"
        "  --stop TEXT          stop string (repeatable, up to %d)\n"
        "  --ignore-eos         keep generating past end-of-generation tokens\n"
        "  --threads N          CPU threads (default: all cores)\n"
        "  --ctx N              context size in tokens (default 4096)\n"
        "  --device DEV         cpu (default) | cuda[:N]\n"
        "  --json               print one JSON object instead of streaming text\n"
        "  --drafter DIR        EAGLE-3 drafter (speculative decoding; greedy output unchanged)\n"
        "  --spec-method M      none | chain (default with --drafter) | tree\n"
        "  --spec-k N           chain: drafts per round (default 4)\n"
        "  --spec-topk K        tree: children per node (default 4)\n"
        "  --spec-depth D       tree: draft levels (default 5)\n"
        "  --spec-tokens N      tree: nodes incl. root (default 16)\n",
        EY_MAX_STOP);
}

static void usage_main(FILE *f)
{
    fprintf(f, "usage: eyrie <command> [options]\n\n"
               "commands:\n"
               "  generate       generate text with a model (eyrie generate --help)\n"
               "  drafter-init   write a random EAGLE-3 drafter (eyrie drafter-init --help)\n"
               "  probe          decode an image or audio file and print what was found\n"
               "                 probe FILE [--json] [--vision qwen2vl|qwen3vl] [--max-pixels N]\n"
               "                       [--n-mels 80|128]\n"
               "  convert-audio  convert-audio IN OUT.{wav,flac,opus,ogg,mp3} [--rate HZ]\n"
               "                       [--bitrate BPS]\n");
}

static bool parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

static bool parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

static char *default_model_path(void)
{
    const char *env = getenv("EYRIE_MODEL");
    if (env && *env) return strdup(env);
    const char *cache = getenv("EYRIE_CACHE");
    const char *home = getenv("HOME");
    char buf[PATH_MAX];
    if (cache && *cache) snprintf(buf, sizeof buf, "%s/models/%s", cache, DEFAULT_MODEL_NAME);
    else snprintf(buf, sizeof buf, "%s/.cache/eyrie/models/%s", home ? home : ".",
                  DEFAULT_MODEL_NAME);
    return strdup(buf);
}

static void stream_cb(void *ud, const char *text, size_t len)
{
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static int fail(const char *what, ey_err e)
{
    const char *d = ey_err_detail();
    fprintf(stderr, "eyrie: %s: %s%s%s\n", what, ey_strerror(e), *d ? ": " : "", d);
    return 1;
}

static int cmd_generate(int argc, char **argv)
{
    enum { O_MODEL = 256, O_PROMPT, O_CHAT, O_SYSTEM, O_MAXTOK, O_TEMP, O_TOPK, O_TOPP, O_MINP,
           O_REP, O_REPN, O_SEED, O_STOP, O_IGNEOS, O_THREADS, O_CTX, O_DEVICE, O_JSON, O_HELP,
           O_DRAFTER, O_SPEC_METHOD, O_SPEC_K, O_SPEC_TOPK, O_SPEC_DEPTH, O_SPEC_TOKENS };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"prompt", required_argument, 0, O_PROMPT},
        {"chat", required_argument, 0, O_CHAT}, {"system", required_argument, 0, O_SYSTEM},
        {"max-tokens", required_argument, 0, O_MAXTOK},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP}, {"min-p", required_argument, 0, O_MINP},
        {"repeat-penalty", required_argument, 0, O_REP},
        {"repeat-last-n", required_argument, 0, O_REPN}, {"seed", required_argument, 0, O_SEED},
        {"stop", required_argument, 0, O_STOP}, {"ignore-eos", no_argument, 0, O_IGNEOS},
        {"threads", required_argument, 0, O_THREADS}, {"ctx", required_argument, 0, O_CTX},
        {"device", required_argument, 0, O_DEVICE}, {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, O_HELP},
        {"drafter", required_argument, 0, O_DRAFTER},
        {"spec-method", required_argument, 0, O_SPEC_METHOD},
        {"spec-k", required_argument, 0, O_SPEC_K}, {"spec-topk", required_argument, 0, O_SPEC_TOPK},
        {"spec-depth", required_argument, 0, O_SPEC_DEPTH},
        {"spec-tokens", required_argument, 0, O_SPEC_TOKENS}, {0, 0, 0, 0}};
    const char *model = NULL, *prompt = NULL, *chat = NULL, *system = NULL, *device = "cpu";
    ey_gen_params gp = {.max_tokens = 256, .sampling = ey_sampling_default()};
    int threads = 0, n_ctx = 4096;
    bool json = false;
    const char *drafter = NULL;
    ey_spec_opts so = ey_spec_opts_default();
    bool method_set = false;
    ey_eagle3 *dm = NULL;
    ey_spec_stats sst = {0};
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (o) {
        case O_MODEL: model = optarg; break;
        case O_PROMPT: prompt = optarg; break;
        case O_CHAT: chat = optarg; break;
        case O_SYSTEM: system = optarg; break;
        case O_MAXTOK: ok = parse_int(optarg, 1, 1 << 20, &gp.max_tokens); break;
        case O_TEMP: ok = parse_float(optarg, &gp.sampling.temperature); break;
        case O_TOPK: ok = parse_int(optarg, 0, INT_MAX, &gp.sampling.top_k); break;
        case O_TOPP: ok = parse_float(optarg, &gp.sampling.top_p); break;
        case O_MINP: ok = parse_float(optarg, &gp.sampling.min_p); break;
        case O_REP: ok = parse_float(optarg, &gp.sampling.repeat_penalty); break;
        case O_REPN: ok = parse_int(optarg, -1, INT_MAX, &gp.sampling.repeat_last_n); break;
        case O_SEED: ok = parse_u64(optarg, &gp.sampling.seed); break;
        case O_STOP:
            ok = gp.n_stop < EY_MAX_STOP && *optarg && strlen(optarg) <= EY_MAX_STOP_LEN;
            if (ok) gp.stop[gp.n_stop++] = optarg;
            break;
        case O_IGNEOS: gp.ignore_eos = true; break;
        case O_THREADS: ok = parse_int(optarg, 1, 1024, &threads); break;
        case O_CTX: ok = parse_int(optarg, 16, 1 << 20, &n_ctx); break;
        case O_DEVICE: device = optarg; break;
        case O_JSON: json = true; break;
        case O_HELP: usage_generate(stdout); return 0;
        case O_DRAFTER: drafter = optarg; break;
        case O_SPEC_METHOD:
            ok = ey_spec_method_parse(optarg, &so.method);
            method_set = true;
            break;
        case O_SPEC_K: ok = parse_int(optarg, 1, EY_SPEC_MAX_DEPTH, &so.k); break;
        case O_SPEC_TOPK: ok = parse_int(optarg, 1, EY_SPEC_MAX_TOPK, &so.top_k); break;
        case O_SPEC_DEPTH: ok = parse_int(optarg, 1, EY_SPEC_MAX_DEPTH, &so.depth); break;
        case O_SPEC_TOKENS: ok = parse_int(optarg, 2, EY_SPEC_MAX_NODES, &so.total_tokens); break;
        default:
            fprintf(stderr, "eyrie generate: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage_generate(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "eyrie generate: bad value '%s' for --%s\n", optarg,
                    opts[o - O_MODEL].name);
            usage_generate(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eyrie generate: unexpected argument '%s'\n", argv[optind]);
        usage_generate(stderr);
        return 2;
    }
    if (!!prompt == !!chat) {
        fprintf(stderr, "eyrie generate: give exactly one of --prompt or --chat\n");
        usage_generate(stderr);
        return 2;
    }
    if (system && !chat) {
        fprintf(stderr, "eyrie generate: --system needs --chat\n");
        return 2;
    }
    ey_err e = ey_sampling_check(&gp.sampling);
    if (e) {
        fprintf(stderr, "eyrie generate: %s\n", ey_err_detail());
        return 2;
    }
    if (method_set && so.method != EY_SPEC_NONE && !drafter) {
        fprintf(stderr, "eyrie generate: --spec-method needs --drafter\n");
        return 2;
    }
    if (!drafter) so.method = EY_SPEC_NONE;
    if ((e = ey_spec_opts_check(&so))) {
        fprintf(stderr, "eyrie generate: %s\n", ey_err_detail());
        return 2;
    }

    ey_backend *be = NULL;
    if (!strcmp(device, "cpu")) {
        e = ey_backend_cpu_create(threads, &be);
    } else if (!strncmp(device, "cuda", 4)) {
        int dev = 0;
        if (device[4] == ':' && !parse_int(device + 5, 0, 64, &dev)) {
            fprintf(stderr, "eyrie generate: bad device '%s'\n", device);
            return 2;
        }
        if (device[4] && device[4] != ':') {
            fprintf(stderr, "eyrie generate: bad device '%s'\n", device);
            return 2;
        }
        e = ey_backend_cuda_create(dev, &be);
    } else {
        fprintf(stderr, "eyrie generate: unknown device '%s' (cpu, cuda[:N])\n", device);
        return 2;
    }
    if (e) return fail("backend", e);

    char *mpath = model ? strdup(model) : default_model_path();
    ey_model *m = NULL;
    ey_ctx *ctx = NULL;
    int32_t *ids = NULL;
    int n_ids = 0, rc = 1;
    ey_gen_result res = {0};
    if ((e = ey_model_load(mpath, be, &m))) {
        if (!model && e == EY_ERR_IO)
            fprintf(stderr, "eyrie: the default model is not fetched yet; run "
                            "scripts/fetch-model.sh (or scripts/setup.sh)\n");
        rc = fail(mpath, e);
        goto out;
    }
    if (n_ctx > m->cfg.n_ctx_train) n_ctx = m->cfg.n_ctx_train;
    int rows = ey_spec_ctx_rows(&so);
    if ((e = ey_ctx_create(m, n_ctx, rows > 512 ? rows : 512, rows, &ctx))) {
        rc = fail("context", e);
        goto out;
    }
    if (so.method != EY_SPEC_NONE && (e = ey_eagle3_load(drafter, m, NULL, &dm))) {
        rc = fail(drafter, e);
        goto out;
    }
    e = chat ? ey_prompt_chat(m, system, chat, &ids, &n_ids) : ey_prompt_text(m, prompt, &ids, &n_ids);
    if (e) {
        rc = fail("prompt", e);
        goto out;
    }
    e = dm ? ey_spec_generate(ctx, dm, &so, ids, n_ids, &gp, json ? NULL : stream_cb, NULL, &res,
                              &sst)
           : ey_generate(ctx, ids, n_ids, &gp, json ? NULL : stream_cb, NULL, &res);
    if (e) {
        rc = fail("generate", e);
        goto out;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", res.text);
        cJSON *arr = cJSON_AddArrayToObject(o, "token_ids");
        for (int i = 0; i < res.n_ids; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(res.ids[i]));
        cJSON_AddStringToObject(o, "finish_reason", res.finish_reason);
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", res.prompt_tokens);
        cJSON_AddNumberToObject(u, "completion_tokens", res.n_ids);
        cJSON *t = cJSON_AddObjectToObject(o, "timing");
        cJSON_AddNumberToObject(t, "prefill_ms", res.prefill_ms);
        cJSON_AddNumberToObject(t, "decode_ms", res.decode_ms);
        cJSON_AddNumberToObject(t, "decode_tokens_per_s",
                                res.decode_ms > 0 ? res.decode_steps * 1000.0 / res.decode_ms : 0);
        if (dm) cJSON_AddItemToObject(o, "spec", ey_spec_stats_json(&sst));
        char *s = cJSON_PrintUnformatted(o);
        if (s) puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        putchar('\n');
        if (dm)
            fprintf(stderr, "spec %s: tau %.2f, %ld/%ld drafts accepted in %d rounds\n",
                    sst.method, sst.mean_accept_len, (long)sst.accepted, (long)sst.drafted,
                    sst.rounds);
    }
    rc = 0;
out:
    ey_gen_result_free(&res);
    ey_eagle3_free(dm);
    free(ids);
    ey_ctx_free(ctx);
    ey_model_free(m);
    free(mpath);
    ey_backend_destroy(be);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "drafter-init")) return ey_cli_drafter_init(argc - 1, argv + 1);
    if (!strcmp(cmd, "probe")) return ey_cli_probe(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert-audio")) return ey_cli_convert_audio(argc - 1, argv + 1);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage_main(stdout);
        return 0;
    }
    fprintf(stderr, "eyrie: unknown command '%s'\n", cmd);
    usage_main(stderr);
    return 2;
}
