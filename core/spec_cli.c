/* eyrie — `eyrie drafter-init` and the JSON form of the spec statistics. */
#include "spec_cli.h"

#include "../common/ey_args.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void usage(FILE *f)
{
    fprintf(f,
        "usage: eyrie drafter-init [--target MODEL] --out DIR [options]\n"
        "\n"
        "Writes a randomly initialised EAGLE-3 drafter for MODEL (config.json +\n"
        "model.safetensors, the original SafeAILab layout unless --layout says\n"
        "otherwise); eyrie generate --drafter DIR can use it at once.\n"
        "\n"
        "  --target MODEL     GGUF file or HF directory (default: the default model)\n"
        "  --out DIR          output directory (created)\n"
        "  --draft-vocab N    draft vocabulary size (default: the target's)\n"
        "  --freq FILE        'id count' lines: the draft vocabulary is the N most\n"
        "                     frequent ids (default: the first N ids)\n"
        "  --seed S           initialisation seed (default 0)\n"
        "  --layout L         eagle (default) | specforge | speculators | angelslim\n"
        "  --dtype T          bf16 (default) | f16 | f32\n"
        "  --n-ff N           draft MLP width (default: the target's)\n");
}

bool ey_spec_method_parse(const char *s, ey_spec_method *m)
{
    if (!strcmp(s, "none")) *m = EY_SPEC_NONE;
    else if (!strcmp(s, "chain")) *m = EY_SPEC_CHAIN;
    else if (!strcmp(s, "tree")) *m = EY_SPEC_TREE;
    else return false;
    return true;
}

int ey_cli_drafter_init(int argc, char **argv)
{
    enum { O_TARGET = 256, O_OUT, O_VOCAB, O_FREQ, O_SEED, O_LAYOUT, O_DTYPE, O_NFF, O_HELP };
    static const struct option opts[] = {
        {"target", required_argument, 0, O_TARGET}, {"out", required_argument, 0, O_OUT},
        {"draft-vocab", required_argument, 0, O_VOCAB}, {"freq", required_argument, 0, O_FREQ},
        {"seed", required_argument, 0, O_SEED}, {"layout", required_argument, 0, O_LAYOUT},
        {"dtype", required_argument, 0, O_DTYPE}, {"n-ff", required_argument, 0, O_NFF},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *target = NULL, *out = NULL;
    ey_eagle3_init_opts io = {.layout = EY_E3_LAYOUT_EAGLE, .dtype = EY_BF16};
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        long v = 0;
        switch (o) {
        case O_TARGET: target = optarg; break;
        case O_OUT: out = optarg; break;
        case O_VOCAB:
            ok = ey_arg_long(optarg, 1, EY_MAX_VOCAB, &v);
            io.draft_vocab = (int)v;
            break;
        case O_FREQ: io.freq_path = optarg; break;
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            ok = !errno && end != optarg && !*end && *optarg != '-';
            io.seed = s;
            break;
        }
        case O_LAYOUT:
            if (!strcmp(optarg, "eagle")) io.layout = EY_E3_LAYOUT_EAGLE;
            else if (!strcmp(optarg, "specforge")) io.layout = EY_E3_LAYOUT_SPECFORGE;
            else if (!strcmp(optarg, "speculators")) io.layout = EY_E3_LAYOUT_SPECULATORS;
            else if (!strcmp(optarg, "angelslim")) io.layout = EY_E3_LAYOUT_ANGELSLIM;
            else ok = false;
            break;
        case O_DTYPE:
            if (!strcmp(optarg, "bf16")) io.dtype = EY_BF16;
            else if (!strcmp(optarg, "f16")) io.dtype = EY_F16;
            else if (!strcmp(optarg, "f32")) io.dtype = EY_F32;
            else ok = false;
            break;
        case O_NFF:
            ok = ey_arg_long(optarg, 1, EY_MAX_FF, &v);
            io.n_ff = (int)v;
            break;
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "eyrie drafter-init: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "eyrie drafter-init: bad value '%s' for --%s\n", optarg,
                    opts[o - O_TARGET].name);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eyrie drafter-init: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!out) {
        fprintf(stderr, "eyrie drafter-init: --out DIR is required\n");
        usage(stderr);
        return 2;
    }
    char *def = NULL;
    if (!target && !(target = def = ey_default_model_path())) {
        fprintf(stderr, "eyrie drafter-init: no memory\n");
        return 1;
    }
    ey_backend *be = NULL;
    ey_model *m = NULL;
    ey_eagle3 *d = NULL;
    int rc = 1;
    ey_err e = ey_backend_cpu_create(1, &be);
    if (!e) e = ey_model_load(target, be, &m);
    if (e) {
        fprintf(stderr, "eyrie drafter-init: %s: %s: %s\n", target, ey_strerror(e),
                ey_err_detail());
        goto out;
    }
    if ((e = ey_eagle3_write_random(m, out, &io))) {
        fprintf(stderr, "eyrie drafter-init: %s: %s\n", ey_strerror(e), ey_err_detail());
        goto out;
    }
    /* read it back: what was written must load */
    if ((e = ey_eagle3_load(out, m, NULL, &d))) {
        fprintf(stderr, "eyrie drafter-init: written drafter does not load: %s\n",
                ey_err_detail());
        goto out;
    }
    printf("wrote %s: EAGLE-3 drafter for %s (hidden %d, heads %d/%d, head_dim %d, ff %d, "
           "vocab %d -> draft vocab %d, aux layers %d,%d,%d)\n", out, m->name, d->cfg.H,
           d->cfg.n_head, d->cfg.n_kv_head, d->cfg.head_dim, d->cfg.n_ff, d->cfg.V, d->cfg.Vd,
           d->cfg.aux_layers[0], d->cfg.aux_layers[1], d->cfg.aux_layers[2]);
    rc = 0;
out:
    ey_eagle3_free(d);
    ey_model_free(m);
    ey_backend_destroy(be);
    free(def);
    return rc;
}

cJSON *ey_spec_stats_json(const ey_spec_stats *st)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "method", st->method ? st->method : "none");
    cJSON_AddNumberToObject(o, "rounds", st->rounds);
    cJSON_AddNumberToObject(o, "drafted", (double)st->drafted);
    cJSON_AddNumberToObject(o, "accepted", (double)st->accepted);
    cJSON_AddNumberToObject(o, "mean_accept_len", st->mean_accept_len);
    cJSON_AddNumberToObject(o, "accept_rate", st->accept_rate);
    cJSON *pp = cJSON_AddArrayToObject(o, "per_position");
    for (int i = 0; pp && i < st->n_pos; i++)
        cJSON_AddItemToArray(pp, cJSON_CreateNumber(st->per_position[i]));
    cJSON_AddNumberToObject(o, "draft_ms", st->draft_ms);
    cJSON_AddNumberToObject(o, "verify_ms", st->verify_ms);
    return o;
}
