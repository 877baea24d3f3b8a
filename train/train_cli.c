/* eyrie — `eyrie train-drafter`: train an EAGLE-3 drafter for a target
 * (issue 4; docs/training.md).
 *
 * Data comes either offline (a directory written by `eyrie dump-hidden`:
 * aux captures and the target's top-k logits per token) or online (a JSONL
 * conversation file; the target runs inside training, on the same CPU
 * backend, to produce the same records per sequence). The run directory
 * holds checkpoint.bin (parameters, AdamW moments, step; written
 * atomically), log.jsonl (one line per logged step) and, on export, the
 * drafter in the original EAGLE-3 layout (drafter/config.json +
 * model.safetensors with d2t/t2d and the aux layer ids written explicitly).
 *
 * The data order is a function of (seed, epoch): a step's sequences are
 * fixed by the step number, so a run resumed from its checkpoint with the
 * same command continues exactly (bit for bit at the same thread count). */
#include "train_cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/ey_args.h"
#include "../core/convo.h"
#include "../core/eagle3.h"
#include "../core/forward.h"
#include "../core/generate.h"
#include "../core/model.h"
#include "../core/sample.h"
#include "../core/spec.h"
#include "../core/tokenizer.h"
#include "../daemon/convo_jsonl.h"
#include "../kernels/ey_backend.h"
#include "../kernels/ey_dtype.h"
#include "e3_train.h"
#include "hidden_io.h"
#include "target_feats.h"

/* ---------------------------------------------------------------- options */

typedef struct topts {
    const char *model, *data, *hidden, *out, *freq, *eval, *init;
    int draft_vocab, K, epochs, batch, max_len, topk, threads, save_every, log_every;
    int eval_limit, eval_tokens, eval_every;
    long stop_after;
    float decay, lr, warmup_ratio, min_lr_ratio, clip, wd, beta1, beta2, init_std;
    uint64_t seed;
    ey_dtype export_dtype;
    bool head_target, no_export, restart;
    ey_spec_method eval_method;
} topts;

/* What a checkpoint must agree on to be resumed (the data order and the
 * schedule depend on all of it). */
typedef struct run_state {
    char magic[8]; /* "EYRUNST1" */
    uint64_t seed, data_hash;
    int32_t batch, epochs, K, n_seq, max_len, topk;
    int64_t total_steps;
    float lr, warmup_ratio, min_lr_ratio, clip, wd, beta1, beta2, decay;
} run_state;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: eyrie train-drafter [--model M] (--hidden DIR | --data CONVS.jsonl) --out RUN\n"
        "                           [options]\n"
        "\n"
        "Trains an EAGLE-3 drafter for the target M with the training-time test\n"
        "(docs/training.md). RUN receives checkpoint.bin, log.jsonl and the exported\n"
        "drafter (RUN/drafter). Re-running the same command resumes from the checkpoint.\n"
        "\n"
        "data:\n"
        "  --hidden DIR         offline records written by `eyrie dump-hidden`\n"
        "  --data FILE          online: conversations (OpenAI/ShareGPT JSONL); the target\n"
        "                       runs inside training\n"
        "  --max-len N          tokens per conversation at most, online (default 2048)\n"
        "  --teacher-topk N     online: teacher entries per row (default 0 = the whole\n"
        "                       draft vocabulary, exact)\n"
        "drafter:\n"
        "  --draft-vocab N      draft vocabulary size (default 4096)\n"
        "  --freq FILE          token counts (`eyrie token-freq`); default: counted over the\n"
        "                       loss-masked tokens of the training data\n"
        "  --head-init random|target  target: lm_head/norm from the target's rows (default\n"
        "                       random, as EA-train)\n"
        "  --init-std S         std of the random init (default 0.02)\n"
        "  --init DIR           start from an existing drafter (eyrie layout, same dims)\n"
        "training:\n"
        "  --ttt-steps K        unrolled steps (default 7)   --decay D  step weight (0.8)\n"
        "  --epochs E (1)  --batch B sequences per step (4)  --lr LR (3e-4)\n"
        "  --warmup R           warmup fraction of the steps (0.02)\n"
        "  --min-lr R           final lr as a fraction of --lr (0.1)\n"
        "  --clip C (0.5)  --weight-decay W (0)  --beta1 (0.9)  --beta2 (0.95)\n"
        "  --seed S (0)  --threads N (all cores)\n"
        "  --save-every N       checkpoint every N steps (default 50; also at the end and\n"
        "                       on SIGINT/SIGTERM)\n"
        "  --stop-after N       stop (checkpointed) once N steps are done in total\n"
        "  --restart            ignore an existing checkpoint\n"
        "  --log-every N        log line every N steps (default 10)\n"
        "export and evaluation:\n"
        "  --dtype bf16|f16|f32 exported dtype (default bf16)   --no-export\n"
        "  --eval FILE          held-out prompts (JSONL, first user message) for tau through\n"
        "                       the real decoding engine after training\n"
        "  --eval-limit N (all)  --eval-tokens N (128)  --eval-method tree|chain (tree)\n"
        "  --eval-every N       also evaluate every N steps\n");
}

static bool parse_args(int argc, char **argv, topts *o)
{
    memset(o, 0, sizeof *o);
    o->draft_vocab = 4096;
    o->K = 7;
    o->decay = 0.8f;
    o->epochs = 1;
    o->batch = 4;
    o->lr = 3e-4f;
    o->warmup_ratio = 0.02f;
    o->min_lr_ratio = 0.1f;
    o->clip = 0.5f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->init_std = 0.02f;
    o->max_len = 2048;
    o->save_every = 50;
    o->log_every = 10;
    o->eval_tokens = 128;
    o->export_dtype = EY_BF16;
    o->eval_method = EY_SPEC_TREE;
    enum {
        O_MODEL = 256, O_DATA, O_HIDDEN, O_OUT, O_FREQ, O_VOCAB, O_K, O_DECAY, O_EPOCHS, O_BATCH,
        O_LR, O_WARM, O_MINLR, O_CLIP, O_WD, O_B1, O_B2, O_SEED, O_THREADS, O_SAVE, O_STOP,
        O_LOG, O_DTYPE, O_NOEXP, O_EVAL, O_ELIM, O_ETOK, O_EMETH, O_EEVERY, O_MAXLEN, O_TOPK,
        O_HEAD, O_STD, O_INIT, O_RESTART, O_HELP
    };
    static const struct option lo[] = {
        {"model", 1, 0, O_MODEL}, {"data", 1, 0, O_DATA}, {"hidden", 1, 0, O_HIDDEN},
        {"out", 1, 0, O_OUT}, {"freq", 1, 0, O_FREQ}, {"draft-vocab", 1, 0, O_VOCAB},
        {"ttt-steps", 1, 0, O_K}, {"decay", 1, 0, O_DECAY}, {"epochs", 1, 0, O_EPOCHS},
        {"batch", 1, 0, O_BATCH}, {"lr", 1, 0, O_LR}, {"warmup", 1, 0, O_WARM},
        {"min-lr", 1, 0, O_MINLR}, {"clip", 1, 0, O_CLIP}, {"weight-decay", 1, 0, O_WD},
        {"beta1", 1, 0, O_B1}, {"beta2", 1, 0, O_B2}, {"seed", 1, 0, O_SEED},
        {"threads", 1, 0, O_THREADS}, {"save-every", 1, 0, O_SAVE}, {"stop-after", 1, 0, O_STOP},
        {"log-every", 1, 0, O_LOG}, {"dtype", 1, 0, O_DTYPE}, {"no-export", 0, 0, O_NOEXP},
        {"eval", 1, 0, O_EVAL}, {"eval-limit", 1, 0, O_ELIM}, {"eval-tokens", 1, 0, O_ETOK},
        {"eval-method", 1, 0, O_EMETH}, {"eval-every", 1, 0, O_EEVERY},
        {"max-len", 1, 0, O_MAXLEN}, {"teacher-topk", 1, 0, O_TOPK}, {"head-init", 1, 0, O_HEAD},
        {"init-std", 1, 0, O_STD}, {"init", 1, 0, O_INIT}, {"restart", 0, 0, O_RESTART},
        {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    bool ok = true;
#define BAD()                                                                                     \
    do {                                                                                         \
        fprintf(stderr, "eyrie train-drafter: bad value '%s' for %s\n", optarg, argv[optind - 1]); \
        return false;                                                                            \
    } while (0)
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_DATA: o->data = optarg; break;
        case O_HIDDEN: o->hidden = optarg; break;
        case O_OUT: o->out = optarg; break;
        case O_FREQ: o->freq = optarg; break;
        case O_INIT: o->init = optarg; break;
        case O_EVAL: o->eval = optarg; break;
        case O_VOCAB: if (!ey_arg_int(optarg, 2, EY_MAX_VOCAB, &o->draft_vocab)) BAD(); break;
        case O_K: if (!ey_arg_int(optarg, 1, EY_E3T_MAX_STEPS, &o->K)) BAD(); break;
        case O_EPOCHS: if (!ey_arg_int(optarg, 1, 100000, &o->epochs)) BAD(); break;
        case O_BATCH: if (!ey_arg_int(optarg, 1, 4096, &o->batch)) BAD(); break;
        case O_THREADS: if (!ey_arg_int(optarg, 1, 1024, &o->threads)) BAD(); break;
        case O_SAVE: if (!ey_arg_int(optarg, 1, INT_MAX, &o->save_every)) BAD(); break;
        case O_LOG: if (!ey_arg_int(optarg, 1, INT_MAX, &o->log_every)) BAD(); break;
        case O_STOP: if (!ey_arg_long(optarg, 1, LONG_MAX, &o->stop_after)) BAD(); break;
        case O_ELIM: if (!ey_arg_int(optarg, 1, INT_MAX, &o->eval_limit)) BAD(); break;
        case O_ETOK: if (!ey_arg_int(optarg, 1, 65536, &o->eval_tokens)) BAD(); break;
        case O_EEVERY: if (!ey_arg_int(optarg, 1, INT_MAX, &o->eval_every)) BAD(); break;
        case O_MAXLEN: if (!ey_arg_int(optarg, 2, EY_E3T_MAX_T, &o->max_len)) BAD(); break;
        case O_TOPK: if (!ey_arg_int(optarg, 0, EY_MAX_VOCAB, &o->topk)) BAD(); break;
        case O_SEED: if (!ey_arg_u64(optarg, &o->seed)) BAD(); break;
        case O_DECAY: if (!ey_arg_float(optarg, &o->decay) || !(o->decay > 0) || o->decay > 1) BAD(); break;
        case O_LR: if (!ey_arg_float(optarg, &o->lr) || !(o->lr > 0) || o->lr > 1) BAD(); break;
        case O_WARM: if (!ey_arg_float(optarg, &o->warmup_ratio) || !(o->warmup_ratio >= 0) || o->warmup_ratio >= 1) BAD(); break;
        case O_MINLR: if (!ey_arg_float(optarg, &o->min_lr_ratio) || !(o->min_lr_ratio >= 0) || o->min_lr_ratio > 1) BAD(); break;
        case O_CLIP: if (!ey_arg_float(optarg, &o->clip) || !(o->clip >= 0)) BAD(); break;
        case O_WD: if (!ey_arg_float(optarg, &o->wd) || !(o->wd >= 0) || o->wd >= 1) BAD(); break;
        case O_B1: if (!ey_arg_float(optarg, &o->beta1) || !(o->beta1 >= 0) || o->beta1 >= 1) BAD(); break;
        case O_B2: if (!ey_arg_float(optarg, &o->beta2) || !(o->beta2 >= 0) || o->beta2 >= 1) BAD(); break;
        case O_STD: if (!ey_arg_float(optarg, &o->init_std) || !(o->init_std > 0) || o->init_std > 1) BAD(); break;
        case O_DTYPE:
            if (!strcmp(optarg, "bf16")) o->export_dtype = EY_BF16;
            else if (!strcmp(optarg, "f16")) o->export_dtype = EY_F16;
            else if (!strcmp(optarg, "f32")) o->export_dtype = EY_F32;
            else BAD();
            break;
        case O_EMETH:
            if (!strcmp(optarg, "tree")) o->eval_method = EY_SPEC_TREE;
            else if (!strcmp(optarg, "chain")) o->eval_method = EY_SPEC_CHAIN;
            else BAD();
            break;
        case O_HEAD:
            if (!strcmp(optarg, "target")) o->head_target = true;
            else if (strcmp(optarg, "random")) BAD();
            break;
        case O_NOEXP: o->no_export = true; break;
        case O_RESTART: o->restart = true; break;
        case O_HELP: usage(stdout); exit(0);
        default:
            fprintf(stderr, "eyrie train-drafter: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            return false;
        }
    }
#undef BAD
    if (optind < argc) {
        fprintf(stderr, "eyrie train-drafter: unexpected argument '%s'\n", argv[optind]);
        ok = false;
    }
    if (ok && (!o->out || (!o->data == !o->hidden))) {
        fprintf(stderr, "eyrie train-drafter: --out RUN and exactly one of --hidden DIR or "
                        "--data FILE are required\n");
        ok = false;
    }
    return ok;
}

/* ---------------------------------------------------------------- data */

/* One source of training sequences: offline records or online conversations. */
typedef struct source {
    int n;
    ey_hid_file *hf;       /* offline */
    ey_hid_rec rec;
    float *aux;            /* offline: converted aux of the current record */
    size_t aux_cap;
    /* online */
    int32_t **ids;
    uint8_t **mask;
    int *len;
    ey_ctx *ctx;
    ey_tfeat tf;
    int topk;
    const int32_t *restrict_ids;
    int n_restrict;
} source;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static ey_err source_get(source *s, int i, ey_e3t_seq *q)
{
    if (s->hf) {
        ey_err e = ey_hid_get(s->hf, i, &s->rec, &s->aux, &s->aux_cap);
        if (e) return e;
        /* rows are prefixes: a longer record trains on its first EY_E3T_MAX_T */
        *q = (ey_e3t_seq){.T = s->rec.T < EY_E3T_MAX_T ? s->rec.T : EY_E3T_MAX_T, .ids = s->rec.ids, .mask = s->rec.mask, .aux = s->aux,
                          .kmax = s->rec.k, .n_teach = s->rec.n_teach,
                          .teach_ids = s->rec.teach_ids, .teach_logits = s->rec.teach_logits,
                          .top1 = s->rec.top1};
        return EY_OK;
    }
    int k = s->restrict_ids ? s->n_restrict : s->topk;
    ey_err e = ey_tfeat_compute(s->ctx, s->ids[i], s->len[i], k, s->restrict_ids, s->n_restrict,
                                &s->tf);
    if (e) return e;
    *q = (ey_e3t_seq){.T = s->len[i], .ids = s->ids[i], .mask = s->mask[i], .aux = s->tf.aux,
                      .kmax = k, .n_teach = s->tf.n_teach, .teach_ids = s->tf.teach_ids,
                      .teach_logits = s->tf.teach_logits, .top1 = s->tf.top1};
    return EY_OK;
}

/* Online: every conversation of the file, tokenized with its loss mask. */
static ey_err load_conversations(const ey_model *m, const char *path, int max_len, source *s,
                                 uint64_t *hash)
{
    FILE *fp = fopen(path, "r");
    if (!fp) return ey_err_set(EY_ERR_IO, "cannot open '%s'", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int line_no = 0, cap_n = 0;
    long skipped = 0;
    ey_err e = EY_OK;
    while (!e && (len = getline(&line, &cap, fp)) != -1) {
        line_no++;
        if (ey_jsonl_blank(line, &len)) continue;
        char err[256];
        int32_t *ids = NULL;
        uint8_t *mask = NULL;
        int n = 0;
        bool bad_line;
        ey_err ce = ey_jsonl_convo_tokens(m, line, &ids, &mask, &n, &bad_line, err, sizeof err);
        if (ce == EY_ERR_NOMEM) {
            e = ce;
            break;
        }
        if (n > max_len) n = max_len;
        int masked = 0;
        for (int i = 0; !ce && i < n; i++) masked += mask[i];
        if (ce || n < 3 || !masked) {
            fprintf(stderr, "eyrie train-drafter: %s:%d: %s; skipped\n", path, line_no,
                    ce ? err : "no assistant tokens");
            free(ids);
            free(mask);
            skipped++;
            continue;
        }
        if (s->n == cap_n) {
            int nc = cap_n ? cap_n * 2 : 256;
            int32_t **ni = realloc(s->ids, (size_t)nc * sizeof *ni);
            if (ni) s->ids = ni;
            uint8_t **nm = realloc(s->mask, (size_t)nc * sizeof *nm);
            if (nm) s->mask = nm;
            int *nl = realloc(s->len, (size_t)nc * sizeof *nl);
            if (nl) s->len = nl;
            if (!ni || !nm || !nl) {
                free(ids);
                free(mask);
                e = ey_err_set(EY_ERR_NOMEM, "no memory");
                break;
            }
            cap_n = nc;
        }
        s->ids[s->n] = ids;
        s->mask[s->n] = mask;
        s->len[s->n] = n;
        *hash = fnv(*hash, ids, (size_t)n * sizeof *ids);
        *hash = fnv(*hash, mask, (size_t)n);
        s->n++;
    }
    free(line);
    fclose(fp);
    if (!e && !s->n) e = ey_err_set(EY_ERR_FORMAT, "'%s' has no usable conversation", path);
    if (!e && skipped)
        fprintf(stderr, "eyrie train-drafter: %ld conversation(s) skipped\n", skipped);
    return e;
}

static void source_free(source *s)
{
    if (s->hf) ey_hid_close(s->hf);
    free(s->aux);
    for (int i = 0; s->ids && i < s->n; i++) {
        free(s->ids[i]);
        free(s->mask[i]);
    }
    free(s->ids);
    free(s->mask);
    free(s->len);
    ey_tfeat_free(&s->tf);
    if (s->ctx) ey_ctx_free(s->ctx);
}

/* ---------------------------------------------------------------- vocab */

/* Draft vocabulary (docs/eagle3.md §1.4): the Vd most frequent loss-masked
 * ids (ties to the lower id; zero-count ids pad), sorted ascending. */
static ey_err pick_vocab(const topts *o, source *src, int V, int Vd, int32_t *sel)
{
    double *cnt = calloc((size_t)V, sizeof *cnt);
    if (!cnt) return ey_err_set(EY_ERR_NOMEM, "no memory");
    ey_err e = EY_OK;
    if (o->freq) {
        e = ey_e3_read_freq(o->freq, V, cnt);
    } else {
        for (int i = 0; i < src->n && !e; i++) {
            const int32_t *ids;
            const uint8_t *mask;
            int T;
            if (src->hf) {
                if ((e = ey_hid_get(src->hf, i, &src->rec, NULL, NULL))) break;
                ids = src->rec.ids;
                mask = src->rec.mask;
                T = src->rec.T;
            } else {
                ids = src->ids[i];
                mask = src->mask[i];
                T = src->len[i];
            }
            for (int t = 0; t < T; t++)
                if (mask[t] && ids[t] >= 0 && ids[t] < V) cnt[ids[t]]++;
        }
    }
    if (!e) e = ey_e3_vocab_from_counts(cnt, V, Vd, sel);
    if (!e) {
        double covered = 0, all = 0;
        for (int i = 0; i < V; i++) all += cnt[i];
        for (int i = 0; i < Vd; i++) covered += cnt[sel[i]];
        fprintf(stderr, "eyrie train-drafter: draft vocabulary %d of %d ids covers %.2f%% of the "
                        "%.0f counted tokens\n", Vd, V, all > 0 ? 100.0 * covered / all : 0.0, all);
    }
    free(cnt);
    return e;
}

/* ---------------------------------------------------------------- init */

static ey_err init_params(ey_e3t *tr, const ey_e3t_dims *d, const topts *o, const ey_model *m)
{
    const ey_e3t_layout *L = ey_e3t_layout_of(tr);
    float *p = ey_e3t_params(tr);
    ey_rng r;
    ey_rng_seed(&r, o->seed ^ 0x5eed5eedull);
    for (int i = 0; i < E3T_N_TENSORS; i++) {
        float *w = p + L->off[i];
        size_t n = L->rows[i] * L->cols[i];
        bool vec = L->cols[i] == 1;
        for (size_t k = 0; k < n; k++) w[k] = vec ? 1.0f : (float)(ey_rng_normal(&r) * o->init_std);
    }
    if (!o->head_target) return EY_OK;
    /* lm_head rows of the draft vocabulary and the final norm from the target */
    ey_err e = ey_weight_rows_f32(m->be, &m->output, d->H, ey_e3t_vocab(tr), d->Vd,
                                  p + L->off[E3T_LM_HEAD]);
    if (!e) e = ey_weight_rows_f32(m->be, &m->out_norm, d->H, NULL, 1, p + L->off[E3T_NORM]);
    return e;
}

/* Start from an existing drafter directory (safetensors written by eyrie). */
static ey_err init_from_dir(ey_e3t *tr, const ey_e3t_dims *d, const char *dir,
                           const ey_model *m)
{
    ey_eagle3 *dr = NULL;
    ey_err e = ey_eagle3_load(dir, m, NULL, &dr);
    if (e) return e;
    const ey_eagle3_config *c = &dr->cfg;
    if (c->layout != EY_E3_LAYOUT_EAGLE || c->H != d->H || c->n_head != d->nh ||
        c->n_kv_head != d->nkv || c->head_dim != d->hd || c->n_ff != d->I || c->Vd != d->Vd ||
        c->n_aux != d->n_aux || c->norm_before_fc || c->fc_norm || c->norm_before_residual ||
        c->norm_output || c->attn_bias || c->mlp_bias || !c->use_aux) {
        ey_eagle3_free(dr);
        return ey_err_set(EY_ERR_FORMAT, "--init %s: not a drafter of this shape in the EAGLE "
                          "layout (--draft-vocab must match its draft vocabulary)", dir);
    }
    const ey_e3t_layout *L = ey_e3t_layout_of(tr);
    float *p = ey_e3t_params(tr);
    const ey_weight *ws[E3T_N_TENSORS] = {&dr->fc, &dr->hidden_norm, &dr->input_layernorm,
                                          &dr->wq, &dr->wk, &dr->wv, &dr->wo, &dr->post_norm,
                                          &dr->w_gate, &dr->w_up, &dr->w_down, &dr->norm,
                                          &dr->lm_head};
    for (int i = 0; !e && i < E3T_N_TENSORS; i++) {
        if (!ws[i]->p.buf) {
            e = ey_err_set(EY_ERR_FORMAT, "--init %s: tensor %s missing", dir,
                           ey_e3t_tensor_name(i));
            break;
        }
        /* vectors are stored as one row */
        size_t rows = L->cols[i] == 1 ? 1 : L->rows[i], cols = L->cols[i] == 1 ? L->rows[i] : L->cols[i];
        e = ey_weight_rows_f32(dr->be, ws[i], (int64_t)cols, NULL, (int)rows, p + L->off[i]);
    }
    if (!e) {
        int32_t *sel = malloc((size_t)dr->cfg.Vd * sizeof *sel);
        if (!sel) e = ey_err_set(EY_ERR_NOMEM, "no memory");
        for (int i = 0; !e && i < dr->cfg.Vd; i++) sel[i] = dr->d2t[i]; /* absolute ids once loaded */
        if (!e) e = ey_e3t_set_vocab(tr, sel);
        free(sel);
    }
    ey_eagle3_free(dr);
    return e;
}

/* ---------------------------------------------------------------- export */

static ey_err export_drafter(ey_e3t *tr, const ey_e3t_dims *d, const ey_model *m,
                             const int *aux, const char *dir, ey_dtype dt)
{
    const ey_e3t_layout *L = ey_e3t_layout_of(tr);
    const float *p = ey_e3t_params(tr);
    ey_e3_values v = {
        .fc = p + L->off[E3T_FC], .hidden_norm = p + L->off[E3T_HIDDEN_NORM],
        .input_layernorm = p + L->off[E3T_INPUT_LN], .wq = p + L->off[E3T_WQ],
        .wk = p + L->off[E3T_WK], .wv = p + L->off[E3T_WV], .wo = p + L->off[E3T_WO],
        .post_norm = p + L->off[E3T_POST_NORM], .w_gate = p + L->off[E3T_WGATE],
        .w_up = p + L->off[E3T_WUP], .w_down = p + L->off[E3T_WDOWN], .norm = p + L->off[E3T_NORM],
        .lm_head = p + L->off[E3T_LM_HEAD], .vocab = ey_e3t_vocab(tr)};
    ey_eagle3_init_opts io = {.layout = EY_E3_LAYOUT_EAGLE, .draft_vocab = d->Vd, .n_ff = d->I,
                              .dtype = dt, .write_aux_ids = true, .aux_ids = aux, .values = &v};
    return ey_eagle3_write_random(m, dir, &io);
}

/* ---------------------------------------------------------------- eval */

typedef struct eval_res {
    int prompts;
    long rounds, accepted, tokens;
    long accepted_at[EY_SPEC_MAX_DEPTH];
    int n_pos;
    double seconds;
} eval_res;

static char *first_user(const char *line)
{
    char err[256];
    ey_jsonl_conv jc;
    if (!ey_jsonl_conv_parse(line, 0, &jc, err, sizeof err)) return NULL;
    char *u = NULL;
    for (int i = 0; i < jc.n_msg && !u; i++)
        if (!strcmp(jc.role[i], "user")) u = strdup(jc.content[i]);
    ey_jsonl_conv_free(&jc, jc.n_msg);
    return u;
}

/* tau on held-out prompts through the real engine (ey_spec_generate). */
static ey_err evaluate(const topts *o, ey_model *m, const char *drafter_dir, eval_res *r)
{
    memset(r, 0, sizeof *r);
    ey_eagle3 *dr = NULL;
    ey_err e = ey_eagle3_load(drafter_dir, m, NULL, &dr);
    if (e) return e;
    ey_spec_opts so = ey_spec_opts_default();
    so.method = o->eval_method;
    if (so.method == EY_SPEC_CHAIN) so.k = 4;
    int rows = ey_spec_ctx_rows(&so);
    ey_ctx *c = NULL;
    ey_eagle3_ctx *dc = NULL;
    int n_ctx = 4096 < m->cfg.n_ctx_train ? 4096 : m->cfg.n_ctx_train;
    if (!(e = ey_ctx_create(m, n_ctx, rows > 512 ? rows : 512, rows, &c)))
        e = ey_spec_ctx_capture(c, dr);
    FILE *fp = e ? NULL : fopen(o->eval, "r");
    if (!e && !fp) e = ey_err_set(EY_ERR_IO, "cannot open '%s'", o->eval);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    struct timespec t0, t1;
    const bool tty = isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!e && !g_stop && (!o->eval_limit || r->prompts < o->eval_limit) &&
           (len = getline(&line, &cap, fp)) != -1) {
        char *user = first_user(line);
        if (!user) continue;
        int32_t *ids = NULL;
        int n = 0;
        e = ey_prompt_chat(m, NULL, user, &ids, &n);
        free(user);
        if (e) break;
        ey_gen_params gp = {.max_tokens = o->eval_tokens};
        gp.sampling = ey_sampling_default();
        gp.sampling.temperature = 0; /* greedy */
        ey_gen_result res;
        ey_spec_stats st;
        memset(&res, 0, sizeof res);
        e = ey_spec_generate(c, dr, &so, ids, n, &gp, NULL, NULL, &res, &st);
        free(ids);
        if (!e) {
            r->prompts++;
            r->rounds += st.rounds;
            r->accepted += st.accepted;
            r->tokens += res.n_ids;
            if (st.n_pos > r->n_pos) r->n_pos = st.n_pos;
            for (int i = 0; i < st.n_pos && i < EY_SPEC_MAX_DEPTH; i++)
                r->accepted_at[i] += st.accepted_at[i];
        }
        ey_gen_result_free(&res);
        if (tty)
            fprintf(stderr, "\reyrie train-drafter: eval %d prompts, tau %.3f", r->prompts,
                    r->rounds ? 1.0 + (double)r->accepted / r->rounds : 0.0);
    }
    if (tty) fprintf(stderr, "\n");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    free(line);
    if (fp) fclose(fp);
    if (c) ey_ctx_free(c);
    (void)dc;
    ey_eagle3_free(dr);
    return e;
}

/* ---------------------------------------------------------------- main loop */

static void shuffle_epoch(int32_t *perm, int n, uint64_t seed, int epoch)
{
    ey_rng r;
    ey_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1);
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(ey_rng_next(&r) % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void log_eval(FILE *logf, long step, const eval_res *er)
{
    double tau = er->rounds ? 1.0 + (double)er->accepted / er->rounds : 0;
    fprintf(stderr, "eyrie train-drafter: eval at step %ld: %d prompts, tau %.3f, per position",
            step, er->prompts, tau);
    for (int i = 0; i < er->n_pos; i++)
        fprintf(stderr, " %.3f", er->rounds ? (double)er->accepted_at[i] / er->rounds : 0.0);
    fprintf(stderr, " (%.1f s)\n", er->seconds);
    if (logf) {
        fprintf(logf, "{\"step\": %ld, \"eval_prompts\": %d, \"eval_tau\": %.4f, "
                      "\"eval_tokens\": %ld, \"eval_per_position\": [", step, er->prompts, tau,
                er->tokens);
        for (int i = 0; i < er->n_pos; i++)
            fprintf(logf, "%s%.4f", i ? ", " : "",
                    er->rounds ? (double)er->accepted_at[i] / er->rounds : 0.0);
        fprintf(logf, "]}\n");
        fflush(logf);
    }
}

int ey_cli_train_drafter(int argc, char **argv, const char *default_model)
{
    topts o;
    if (!parse_args(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    const char *mpath = o.model ? o.model : default_model;
    if (!mpath) {
        fprintf(stderr, "eyrie train-drafter: --model M is required\n");
        return 2;
    }
    int rc = 1;
    ey_backend *be = NULL;
    ey_model *m = NULL;
    ey_e3t *tr = NULL;
    float *embed = NULL;
    int32_t *sel = NULL, *perm = NULL;
    FILE *logf = NULL;
    source src;
    memset(&src, 0, sizeof src);
    char path[4096 + 64];
    ey_err e = ey_backend_cpu_create(o.threads, &be);
    if (!e) e = ey_model_load(mpath, be, &m);
    if (e) {
        if (!o.model && e == EY_ERR_IO)
            fprintf(stderr, "eyrie: the default model is not fetched yet; run "
                            "scripts/fetch-model.sh (or scripts/setup.sh)\n");
        fprintf(stderr, "eyrie train-drafter: %s: %s: %s\n", mpath, ey_strerror(e),
                ey_err_detail());
        goto out;
    }
    const ey_model_config *tc = &m->cfg;
    if (o.topk > tc->n_vocab) {
        fprintf(stderr, "eyrie train-drafter: --teacher-topk %d exceeds the vocabulary %d\n", o.topk,
                tc->n_vocab);
        goto out;
    }
    if (o.data && o.max_len > tc->n_ctx_train && tc->n_ctx_train >= 2) {
        fprintf(stderr, "eyrie train-drafter: --max-len %d capped at the model's training context "
                        "%d\n", o.max_len, tc->n_ctx_train);
        o.max_len = tc->n_ctx_train;
    }
    if (o.eval && access(o.eval, R_OK)) {
        fprintf(stderr, "eyrie train-drafter: cannot read --eval '%s'\n", o.eval);
        goto out;
    }
    if (mkdir(o.out, 0755) && errno != EEXIST) {
        fprintf(stderr, "eyrie train-drafter: cannot create '%s'\n", o.out);
        goto out;
    }

    /* ---- data */
    int aux[EY_E3_MAX_AUX], n_aux = 3;
    uint64_t data_hash = 1469598103934665603ull;
    if (o.hidden) {
        if ((e = ey_hid_open(o.hidden, &src.hf))) goto fail;
        const ey_hid_meta *hm = ey_hid_meta_of(src.hf);
        if (hm->Ht != tc->n_embd || hm->V != tc->n_vocab || hm->n_layer != tc->n_layer) {
            e = ey_err_set(EY_ERR_FORMAT, "%s was dumped from another model (hidden %d, vocab "
                           "%d, layers %d)", o.hidden, hm->Ht, hm->V, hm->n_layer);
            goto fail;
        }
        n_aux = hm->n_aux;
        if (n_aux != 3) {
            e = ey_err_set(EY_ERR_FORMAT, "%s has %d aux layers; EAGLE-3 uses 3", o.hidden, n_aux);
            goto fail;
        }
        for (int i = 0; i < n_aux; i++) aux[i] = hm->aux_layers[i];
        src.n = ey_hid_count(src.hf);
        data_hash = fnv(data_hash, &hm->n_tokens, sizeof hm->n_tokens);
        data_hash = fnv(data_hash, &hm->k, sizeof hm->k);
        data_hash = fnv(data_hash, hm->aux_layers, sizeof hm->aux_layers);
        data_hash = fnv(data_hash, hm->model, strnlen(hm->model, sizeof hm->model));
        for (long i = 0; i < ey_hid_count(src.hf); i++) {
            int len = ey_hid_len(src.hf, i);
            data_hash = fnv(data_hash, &len, sizeof len);
        }
        data_hash = fnv(data_hash, &src.n, sizeof src.n);
        if (!src.n) {
            e = ey_err_set(EY_ERR_FORMAT, "%s has no records", o.hidden);
            goto fail;
        }
    } else {
        if (!m->tok) {
            e = ey_err_set(EY_ERR_FORMAT, "the model has no tokenizer");
            goto fail;
        }
        ey_tfeat_default_aux(tc->n_layer, aux);
        if ((e = load_conversations(m, o.data, o.max_len, &src, &data_hash))) goto fail;
        int maxT = 0;
        for (int i = 0; i < src.n; i++) maxT = src.len[i] > maxT ? src.len[i] : maxT;
        if ((e = ey_ctx_create(m, maxT, maxT < 256 ? maxT : 256, maxT < 256 ? maxT : 256, &src.ctx)))
            goto fail;
        if ((e = ey_ctx_set_capture(src.ctx, aux, n_aux))) goto fail;
        src.topk = o.topk;
    }
    long n_tok = 0;
    for (int i = 0; !src.hf && i < src.n; i++) n_tok += src.len[i];
    if (src.hf) n_tok = (long)ey_hid_meta_of(src.hf)->n_tokens;

    /* ---- trainer */
    ey_e3t_dims d = {.H = tc->n_embd, .n_aux = n_aux, .Ht = tc->n_embd, .nh = tc->n_head,
                     .nkv = tc->n_kv_head, .hd = tc->head_dim, .I = tc->n_ff, .V = tc->n_vocab,
                     .Vd = o.draft_vocab, .eps = tc->rms_eps};
    if (d.Vd > d.V) {
        e = ey_err_set(EY_ERR_ARG, "--draft-vocab %d exceeds the target vocabulary %d", d.Vd, d.V);
        goto fail;
    }
    float inv_freq[512];
    for (int i = 0; i < d.hd / 2; i++)
        inv_freq[i] = ey_rope_inv_freq(tc->rope_theta, i, d.hd, "none", 1, 0, 0, 0);
    embed = malloc((size_t)d.V * d.H * sizeof *embed);
    if (!embed) {
        e = ey_err_set(EY_ERR_NOMEM, "no memory for the embedding");
        goto fail;
    }
    if ((e = ey_weight_rows_f32(m->be, &m->tok_embd, d.H, NULL, d.V, embed))) goto fail;
    ey_e3t_opts to = {.K = o.K, .decay = o.decay, .rope_theta = tc->rope_theta,
                      .inv_freq = inv_freq};
    if ((e = ey_e3t_create(&d, &to, embed, &tr))) goto fail;
    sel = malloc((size_t)d.Vd * sizeof *sel);
    perm = malloc((size_t)src.n * sizeof *perm);
    if (!sel || !perm) {
        e = ey_err_set(EY_ERR_NOMEM, "no memory");
        goto fail;
    }

    const long spe = (src.n + o.batch - 1) / o.batch;
    const long total = spe * o.epochs;
    run_state rs;
    memset(&rs, 0, sizeof rs);
    memcpy(rs.magic, "EYRUNST1", 8);
    rs.seed = o.seed;
    rs.data_hash = data_hash;
    rs.batch = o.batch;
    rs.epochs = o.epochs;
    rs.K = o.K;
    rs.n_seq = src.n;
    rs.max_len = o.max_len;
    rs.topk = o.topk;
    rs.total_steps = total;
    rs.lr = o.lr;
    rs.warmup_ratio = o.warmup_ratio;
    rs.min_lr_ratio = o.min_lr_ratio;
    rs.clip = o.clip;
    rs.wd = o.wd;
    rs.beta1 = o.beta1;
    rs.beta2 = o.beta2;
    rs.decay = o.decay;

    long step = 0;
    char ckpt[4096 + 64];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.bin", o.out);
    bool resumed = false;
    if (!o.restart && access(ckpt, F_OK) == 0) {
        run_state got;
        if ((e = ey_e3t_load(tr, ckpt, &step, &got, sizeof got))) goto fail;
        if (memcmp(&got, &rs, sizeof rs)) {
            e = ey_err_set(EY_ERR_ARG, "%s was written by a run with other data or options; "
                           "pass the same options, or --restart", ckpt);
            goto fail;
        }
        if (src.restrict_ids == NULL && !o.hidden && !o.topk) {
            src.restrict_ids = ey_e3t_vocab(tr);
            src.n_restrict = d.Vd;
        }
        if (step > total) {
            e = ey_err_set(EY_ERR_FORMAT, "%s: step %ld beyond the run's %ld steps", ckpt, step,
                           total);
            goto fail;
        }
        resumed = true;
        fprintf(stderr, "eyrie train-drafter: resumed from %s at step %ld of %ld\n", ckpt, step,
                total);
    } else {
        if (o.init) {
            if ((e = init_from_dir(tr, &d, o.init, m))) goto fail;
        } else {
            if ((e = pick_vocab(&o, &src, d.V, d.Vd, sel))) goto fail;
            if ((e = ey_e3t_set_vocab(tr, sel))) goto fail;
            if ((e = init_params(tr, &d, &o, m))) goto fail;
        }
        if (!o.hidden && !o.topk) {
            src.restrict_ids = ey_e3t_vocab(tr);
            src.n_restrict = d.Vd;
        }
    }
    snprintf(path, sizeof path, "%s/log.jsonl", o.out);
    if (!(logf = fopen(path, resumed ? "a" : "w"))) {
        e = ey_err_set(EY_ERR_IO, "cannot open '%s'", path);
        goto fail;
    }
    ey_e3t_optim opt = {.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2, .eps = 1e-8f,
                        .weight_decay = o.wd, .clip = o.clip,
                        .warmup = (long)(o.warmup_ratio * (double)total), .total = total,
                        .min_lr_ratio = o.min_lr_ratio};
    fprintf(stderr, "eyrie train-drafter: %d sequences, %ld tokens, %ld steps of %d (%d epochs), "
                    "K=%d, %zu parameters, %s\n", src.n, n_tok, total, o.batch, o.epochs, o.K,
            ey_e3t_layout_of(tr)->n, o.hidden ? "offline" : "online");

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    /* a progress bar on a terminal, one line per update otherwise */
    const bool tty = isatty(STDERR_FILENO);
    ey_e3t_stats acc;
    memset(&acc, 0, sizeof acc);
    long acc_tok = 0;
    double t_start = now_s(), t_log = t_start;
    int cur_epoch = -1;
    long stop_at = o.stop_after && o.stop_after < total ? o.stop_after : total;
    while (step < stop_at && !g_stop) {
        int ep = (int)(step / spe);
        long b = step % spe;
        if (ep != cur_epoch) {
            shuffle_epoch(perm, src.n, o.seed, ep);
            cur_epoch = ep;
        }
        int i0 = (int)(b * o.batch), i1 = i0 + o.batch < src.n ? i0 + o.batch : src.n;
        /* the loss divisor: all rows of the batch */
        double norm = 0;
        for (int i = i0; i < i1; i++) {
            /* the rows source_get gives: records cut to EY_E3T_MAX_T */
            int T = src.hf ? ey_hid_len(src.hf, perm[i]) : src.len[perm[i]];
            norm += T < EY_E3T_MAX_T ? T : EY_E3T_MAX_T;
        }
        ey_e3t_zero_grad(tr);
        for (int i = i0; i < i1 && !e; i++) {
            ey_e3t_seq q;
            if (!(e = source_get(&src, perm[i], &q))) {
                e = ey_e3t_accumulate(tr, &q, norm, &acc, NULL);
                acc_tok += q.T;
            }
        }
        if (e) goto fail;
        double gn = ey_e3t_adamw_step(tr, &opt, step);
        if (!isfinite(gn)) {
            e = ey_err_set(EY_ERR_FORMAT, "non-finite gradient at step %ld (non-finite or "
                           "overflowing data?); the last checkpoint is kept", step + 1);
            goto fail;
        }
        step++;
        if (step % o.log_every == 0 || step == stop_at) {
            double t = now_s();
            double l0 = acc.counted[0] ? acc.loss[0] / acc.counted[0] : 0;
            fprintf(logf, "{\"step\": %ld, \"epoch\": %.4f, \"lr\": %.6g, \"grad_norm\": %.4f, "
                          "\"tokens_per_s\": %.1f, \"loss\": [", step, (double)step / spe,
                    ey_e3t_lr_at(&opt, step - 1), gn, acc_tok / (t - t_log));
            for (int j = 0; j < o.K; j++)
                fprintf(logf, "%s%.4f", j ? ", " : "",
                        acc.counted[j] ? acc.loss[j] / acc.counted[j] : 0.0);
            fprintf(logf, "], \"acc\": [");
            for (int j = 0; j < o.K; j++)
                fprintf(logf, "%s%.4f", j ? ", " : "",
                        acc.counted[j] ? (double)acc.correct[j] / acc.counted[j] : 0.0);
            fprintf(logf, "]}\n");
            fflush(logf);
            /* progress bar */
            int w = 24, fill = (int)((double)step / total * w);
            double el = t - t_start, eta = el / (double)(step) * (double)(stop_at - step);
            if (resumed) eta = 0;
            fprintf(stderr, "%s[", tty ? "\r" : "");
            for (int i = 0; i < w; i++) fputc(i < fill ? '=' : i == fill ? '>' : ' ', stderr);
            fprintf(stderr, "] %ld/%ld ep %.2f loss %.3f acc", step, total, (double)step / spe, l0);
            for (int j = 0; j < o.K && j < 4; j++)
                fprintf(stderr, " %.2f", acc.counted[j] ? (double)acc.correct[j] / acc.counted[j] : 0.0);
            fprintf(stderr, " lr %.2e %.0f tok/s", ey_e3t_lr_at(&opt, step - 1),
                    acc_tok / (t - t_log));
            if (eta > 0) fprintf(stderr, " ETA %dm%02ds", (int)(eta / 60), (int)eta % 60);
            fprintf(stderr, tty ? "   " : "\n");
            memset(&acc, 0, sizeof acc);
            acc_tok = 0;
            t_log = t;
        }
        if (step % o.save_every == 0 || step == stop_at || g_stop)
            if ((e = ey_e3t_save(tr, ckpt, step, &rs, sizeof rs))) goto fail;
        if (o.eval && o.eval_every && step % o.eval_every == 0 && step < total && !g_stop) {
            /* checkpoint first: an evaluation never costs training steps */
            if ((e = ey_e3t_save(tr, ckpt, step, &rs, sizeof rs))) goto fail;
            snprintf(path, sizeof path, "%s/drafter", o.out);
            eval_res er;
            if (tty) fprintf(stderr, "\n");
            if ((e = export_drafter(tr, &d, m, aux, path, o.export_dtype)) ||
                (e = evaluate(&o, m, path, &er)))
                fprintf(stderr, "eyrie train-drafter: evaluation at step %ld failed (%s); "
                                "training goes on\n", step, ey_err_detail());
            else log_eval(logf, step, &er);
            e = EY_OK;
        }
    }
    if (tty) fprintf(stderr, "\n");
    if (g_stop) {
        if ((e = ey_e3t_save(tr, ckpt, step, &rs, sizeof rs))) goto fail;
        fprintf(stderr, "eyrie train-drafter: interrupted at step %ld; checkpoint saved, re-run "
                        "the same command to resume\n", step);
        rc = 130;
        goto out;
    }
    if ((e = ey_e3t_save(tr, ckpt, step, &rs, sizeof rs))) goto fail;
    if (step < total) {
        fprintf(stderr, "eyrie train-drafter: stopped at step %ld of %ld (--stop-after)\n", step,
                total);
        rc = 0;
        goto out;
    }
    if (!o.no_export) {
        snprintf(path, sizeof path, "%s/drafter", o.out);
        if ((e = export_drafter(tr, &d, m, aux, path, o.export_dtype))) goto fail;
        fprintf(stderr, "eyrie train-drafter: drafter written to %s\n", path);
        if (o.eval) {
            eval_res er;
            if ((e = evaluate(&o, m, path, &er))) goto fail;
            log_eval(logf, step, &er);
        }
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "%seyrie train-drafter: %s: %s\n", isatty(STDERR_FILENO) ? "\n" : "",
            ey_strerror(e), ey_err_detail());
out:
    if (logf) fclose(logf);
    source_free(&src);
    ey_e3t_free(tr);
    free(embed);
    free(sel);
    free(perm);
    if (m) ey_model_free(m);
    ey_backend_destroy(be);
    return rc;
}
