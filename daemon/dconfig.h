/* eyried — configuration: one declarative table gives the command-line
 * flags, the config-file keys (the same names), their defaults, ranges and
 * the generated --help text. */
#ifndef EYD_CONFIG_H
#define EYD_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#define EYD_MAX_LISTEN 8

typedef struct eyd_config {
    char *model;
    char *drafter;
    char *drafter_quant;
    char *listen[EYD_MAX_LISTEN];
    int n_listen;
    char *config;
    char *log_file;
    char *device;
    int threads;
    int ctx;               /* KV rows shared by all sequences */
    int seq_ctx;           /* context limit of one sequence */
    int max_running;
    int max_queued;
    int batch_rows;        /* rows per batched forward */
    int prefill_chunk;     /* prefill rows per sequence per step */
    int deadline_ms;       /* default per-job deadline (0: none) */
    int max_msg_bytes;
    int max_prompt_bytes;
    int max_media_bytes;
    int max_parts;
    int max_messages;
    int max_tokens_limit;
    int result_ttl_s;
    int max_results;
    int grace_s;
    int poll_max_ms;
    char *spec_method;
    int spec_k, spec_topk, spec_depth, spec_tokens;
    int spec_max_batch;    /* decoding sequences above which drafting is off */
    int spec_probe_rounds; /* rounds before a job's acceptance is judged */
    int spec_min_accept_pct; /* below (tau - 1) * 100 the job stops drafting */
    int spec_probe_jobs;   /* failed probes in a row before drafting is rationed */
    int spec_probe_every;  /* then one job in this many drafts */
} eyd_config;

/* Defaults, then the file named by --config (if any), then the flags.
 * Returns 0 ok, 1 --help printed, 2 bad usage (message on stderr). */
int eyd_config_load(eyd_config *c, int argc, char **argv);
void eyd_config_free(eyd_config *c);
void eyd_config_help(FILE *f);

#endif
