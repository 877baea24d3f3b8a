/* libFuzzer target: one request message through the daemon's whole request
 * path — protobuf decoding under the allocation budget, envelope checks,
 * validation, prompt rendering and tokenization, queueing, Poll/Cancel/
 * Health/Stats/ListModels answers (packed and "sent" to a closed socket) —
 * with the tiny chat fixture model. Jobs are dropped after each input.
 *   scripts/fuzz-daemon.sh [SECONDS]
 * EYD_FUZZ_MODEL overrides the model; EYD_FUZZ_SEEDS=DIR writes seed
 * requests there and exits. */
#define main eyried_main
#include "../../daemon/eyried.c"
#undef main

static eyd_server g_s;

static void drop_jobs(eyd_server *s)
{
    for (int b = 0; b < EYD_HBUCKETS; b++) {
        for (eyd_job *j = s->table[b], *nx; j; j = nx) {
            nx = j->hnext;
            free_job(j);
        }
        s->table[b] = NULL;
    }
    s->q_head = s->q_tail = s->done_head = s->done_tail = NULL;
    s->n_queued = s->n_jobs = s->n_done = s->n_polls = 0;
}

static void seed(const char *dir, const char *name, Eyrie__Request *r)
{
    r->version = 1;
    size_t n = eyrie__request__get_packed_size(r);
    uint8_t *b = malloc(n);
    eyrie__request__pack(r, b);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b, 1, n, f);
        fclose(f);
    }
    free(b);
}

static void write_seeds(const char *dir)
{
    Eyrie__Part p = EYRIE__PART__INIT, *pp = &p;
    p.kind_case = EYRIE__PART__KIND_TEXT;
    p.text = "Hello there, how are you?";
    Eyrie__Message m = EYRIE__MESSAGE__INIT, *mp = &m;
    m.role = EYRIE__ROLE__ROLE_USER;
    m.n_parts = 1;
    m.parts = &pp;
    Eyrie__Sampling sm = EYRIE__SAMPLING__INIT;
    sm.has_temperature = true;
    sm.temperature = 0.7f;
    Eyrie__Speculative sp = EYRIE__SPECULATIVE__INIT;
    sp.has_method = true;
    sp.method = EYRIE__SPEC_METHOD__SPEC_TREE;
    char *stops[] = {"\n\n", "END"};
    Eyrie__Generate g = EYRIE__GENERATE__INIT;
    g.n_messages = 1;
    g.messages = &mp;
    g.sampling = &sm;
    g.spec = &sp;
    g.has_max_tokens = true;
    g.max_tokens = 16;
    g.n_stop = 2;
    g.stop = stops;
    Eyrie__Request r = EYRIE__REQUEST__INIT;
    r.id = "seed-1";
    r.body_case = EYRIE__REQUEST__BODY_GENERATE;
    r.generate = &g;
    seed(dir, "chat", &r);
    g.stream = g.has_stream = true;
    seed(dir, "chat-stream", &r);
    Eyrie__Generate c = EYRIE__GENERATE__INIT;
    c.has_task = true;
    c.task = EYRIE__TASK__TASK_COMPLETE;
    c.prompt = "The capital of France is";
    r.generate = &c;
    seed(dir, "complete", &r);
    Eyrie__Poll po = EYRIE__POLL__INIT;
    po.job_id = "seed-1";
    po.has_after = true;
    r.body_case = EYRIE__REQUEST__BODY_POLL;
    r.poll = &po;
    seed(dir, "poll", &r);
    Eyrie__Cancel ca = EYRIE__CANCEL__INIT;
    ca.job_id = "seed-1";
    r.body_case = EYRIE__REQUEST__BODY_CANCEL;
    r.cancel = &ca;
    seed(dir, "cancel", &r);
    Eyrie__Health h = EYRIE__HEALTH__INIT;
    r.body_case = EYRIE__REQUEST__BODY_HEALTH;
    r.health = &h;
    seed(dir, "health", &r);
    Eyrie__StatsRequest st = EYRIE__STATS_REQUEST__INIT;
    r.body_case = EYRIE__REQUEST__BODY_STATS;
    r.stats = &st;
    seed(dir, "stats", &r);
    Eyrie__ListModels lm = EYRIE__LIST_MODELS__INIT;
    r.body_case = EYRIE__REQUEST__BODY_LIST_MODELS;
    r.list_models = &lm;
    seed(dir, "models", &r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *sd = getenv("EYD_FUZZ_SEEDS");
    if (sd && *sd) {
        write_seeds(sd);
        exit(0);
    }
    const char *model = getenv("EYD_FUZZ_MODEL");
    if (!model || !*model) model = "tests/fixtures/models/chat-tiny";
    char *args[] = {"eyried", "--model", (char *)model, "--max-msg-bytes", "1048576",
                    "--max-tokens-limit", "64", NULL};
    if (eyd_config_load(&g_s.cfg, 7, args)) exit(1);
    g_s.sock = -1;
    if (ey_backend_cpu_create(1, &g_s.be) || ey_model_load(model, g_s.be, &g_s.m)) {
        fprintf(stderr, "fuzz_daemon: cannot load %s: %s\n", model, ey_err_detail());
        exit(1);
    }
    snprintf(g_s.model_name, sizeof g_s.model_name, "chat-tiny");
    g_s.rows_total = 16384;
    pthread_mutex_init(&g_s.mu, NULL);
    pthread_cond_init(&g_s.cv, NULL);
    g_s.t_start = eyd_now_ms();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pthread_mutex_lock(&g_s.mu);
    handle(&g_s, NULL, data, size);
    /* a second, identical message: the idempotent-resend path */
    handle(&g_s, NULL, data, size);
    drop_jobs(&g_s);
    pthread_mutex_unlock(&g_s.mu);
    return 0;
}
