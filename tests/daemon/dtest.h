/* Helpers of the daemon integration tests: a temporary directory, eyried
 * (or eyrie-broker) started with fork/exec, a bounded wait for Health, a
 * bounded stop that returns the exit status, and an alarm() watchdog that
 * kills every child before failing the test. Header-only (static
 * functions): each test is one executable. */
#ifndef EY_DTEST_H
#define EY_DTEST_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eyrie_client.h"
#include "test.h"

#define DT_MAX_CHILDREN 16

/* LeakSanitizer, test processes only (the daemons, which are what is
 * tested, keep full leak checking: this hook is not inherited through
 * exec): nanomsg (not instrumented) now and then keeps one message chunk of
 * a REQ socket at exit (seen once in a few sanitizer runs of the load test
 * on a loaded machine: 85 bytes from nn_chunk_alloc, no other frame). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libnanomsg.so\n"; }

typedef struct dt_proc {
    pid_t pid;          /* 0: not running (reaped) */
    int status;         /* waitpid status once reaped */
    char log[256];      /* its stderr/stdout */
    char url[160];      /* first listen URL (daemons) */
    char name[32];
} dt_proc;

static dt_proc *g_dt_children[DT_MAX_CHILDREN];
static char g_dt_dir[128];

static inline double dt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void dt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static inline void dt_register(dt_proc *p)
{
    for (int i = 0; i < DT_MAX_CHILDREN; i++)
        if (!g_dt_children[i] || g_dt_children[i] == p) {
            g_dt_children[i] = p;
            return;
        }
}

static inline void dt_unregister(dt_proc *p)
{
    for (int i = 0; i < DT_MAX_CHILDREN; i++)
        if (g_dt_children[i] == p) g_dt_children[i] = NULL;
}

static inline int dt_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static inline void dt_rmdir(void)
{
    if (g_dt_dir[0]) nftw(g_dt_dir, dt_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    g_dt_dir[0] = 0;
}

/* Last resort: kill every child, leave the logs, fail. */
static inline void dt_on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "\nwatchdog: the test took too long; killing the daemons\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    for (int i = 0; i < DT_MAX_CHILDREN; i++)
        if (g_dt_children[i] && g_dt_children[i]->pid > 0) kill(g_dt_children[i]->pid, SIGKILL);
    _exit(1);
}

static inline void dt_watchdog(unsigned seconds)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = dt_on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    alarm(seconds);
}

/* A short temporary directory (ipc paths must stay under 108 bytes). */
static inline const char *dt_mkdir(void)
{
    const char *t = getenv("TMPDIR");
    if (!t || !*t || strlen(t) > 60) t = "/tmp";
    snprintf(g_dt_dir, sizeof g_dt_dir, "%s/eyd.XXXXXX", t);
    if (!mkdtemp(g_dt_dir)) {
        snprintf(g_dt_dir, sizeof g_dt_dir, "/tmp/eyd.XXXXXX");
        if (!mkdtemp(g_dt_dir)) {
            fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
            exit(1);
        }
    }
    return g_dt_dir;
}

static inline void dt_print_log(const dt_proc *p, int max_lines)
{
    FILE *f = fopen(p->log, "r");
    if (!f) return;
    /* count lines, then print the last max_lines */
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    rewind(f);
    int skip = n > max_lines ? n - max_lines : 0, ln = 0;
    fprintf(stderr, "---- %s log (%s), last %d of %d lines\n", p->name, p->log,
            n - skip, n);
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (ln++ >= skip) fputs(line, stderr);
    fprintf(stderr, "---- end of %s log\n", p->name);
    fclose(f);
}

/* fork/exec argv (NULL-terminated) with stdout/stderr to p->log. */
static inline bool dt_spawn(dt_proc *p, const char *name, char *const argv[])
{
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->log, sizeof p->log, "%s/%s.log", g_dt_dir, name);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        return false;
    }
    if (pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, 0);
            close(nul);
        }
        signal(SIGPIPE, SIG_DFL);
        alarm(0);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    p->pid = pid;
    p->status = 0;
    dt_register(p);
    return true;
}

/* Start eyried: --model MODEL --listen ipc://DIR/NAME.sock --threads 1 and
 * the NULL-terminated extra arguments. */
static inline bool dt_daemon_start(dt_proc *p, const char *exe, const char *model, const char *name,
                            const char *const *extra)
{
    memset(p, 0, sizeof *p);
    snprintf(p->url, sizeof p->url, "ipc://%s/%s.sock", g_dt_dir, name);
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)exe;
    argv[n++] = "--model";
    argv[n++] = (char *)model;
    argv[n++] = "--listen";
    argv[n++] = p->url;
    argv[n++] = "--threads";
    argv[n++] = "1";
    for (int i = 0; extra && extra[i] && n < 63; i++) argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    return dt_spawn(p, name, argv);
}

/* Non-blocking reap; true if it has exited. */
static inline bool dt_reaped(dt_proc *p)
{
    if (p->pid <= 0) return true;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
        p->status = st;
        p->pid = 0;
        dt_unregister(p);
        return true;
    }
    return false;
}

/* Wait up to timeout_ms for Health to answer "ok". */
static inline bool dt_wait_health(dt_proc *p, int timeout_ms)
{
    eyc_options o = {.timeout_ms = 300, .resend_ivl_ms = 200, .reconnect_ivl_ms = 20};
    eyc_client *c;
    if (eyc_connect(p->url, &o, &c)) {
        fprintf(stderr, "connect %s: %s\n", p->url, eyc_last_error());
        return false;
    }
    double until = dt_now_ms() + timeout_ms;
    bool ok = false;
    while (!ok && dt_now_ms() < until) {
        if (dt_reaped(p)) {
            fprintf(stderr, "%s exited before answering Health (status 0x%x)\n", p->name,
                    p->status);
            dt_print_log(p, 40);
            break;
        }
        Eyrie__Response *r;
        if (eyc_health(c, 300, &r) == EYC_OK) {
            ok = r->health->status && !strcmp(r->health->status, "ok");
            eyc_response_free(r);
        }
        if (!ok) dt_sleep_ms(50);
    }
    eyc_close(c);
    if (!ok && p->pid > 0) {
        fprintf(stderr, "%s did not answer Health within %d ms\n", p->name, timeout_ms);
        dt_print_log(p, 40);
    }
    return ok;
}

/* Wait up to timeout_ms for the process to exit (SIGKILL after that).
 * Returns its exit code, 128 + signal if killed by one, -1 on timeout. */
static inline int dt_wait_exit(dt_proc *p, int timeout_ms)
{
    double until = dt_now_ms() + timeout_ms;
    while (!dt_reaped(p)) {
        if (dt_now_ms() > until) {
            fprintf(stderr, "%s did not exit within %d ms: SIGKILL\n", p->name, timeout_ms);
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &p->status, 0);
            p->pid = 0;
            dt_unregister(p);
            dt_print_log(p, 40);
            return -1;
        }
        dt_sleep_ms(20);
    }
    if (WIFEXITED(p->status)) return WEXITSTATUS(p->status);
    if (WIFSIGNALED(p->status)) return 128 + WTERMSIG(p->status);
    return -1;
}

/* SIGTERM and wait; the exit code (see dt_wait_exit). A non-zero one prints
 * the log. */
static inline int dt_stop(dt_proc *p, int timeout_ms)
{
    if (p->pid <= 0) return -1;
    kill(p->pid, SIGTERM);
    int rc = dt_wait_exit(p, timeout_ms);
    if (rc != 0) {
        fprintf(stderr, "%s exit status %d\n", p->name, rc);
        dt_print_log(p, 60);
    }
    return rc;
}

static inline void dt_kill(dt_proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        dt_wait_exit(p, 5000);
    }
}

/* ---------------------------------------------------------------- Stats */

/* Value of metric `name` (with label value `lval`, or any label when NULL),
 * -1 when absent or Stats failed. */
static inline double dt_metric(eyc_client *c, const char *name, const char *lval)
{
    Eyrie__Response *r;
    if (eyc_stats(c, 5000, &r)) {
        fprintf(stderr, "stats: %s\n", eyc_errmsg(c));
        return -1;
    }
    double v = -1;
    for (size_t i = 0; i < r->stats->n_metrics; i++) {
        const Eyrie__Metric *m = r->stats->metrics[i];
        if (strcmp(m->name, name)) continue;
        if (lval && (m->n_labels < 1 || strcmp(m->labels[0]->value, lval))) continue;
        v = m->value;
        break;
    }
    eyc_response_free(r);
    return v;
}

/* A fresh client to url with sane bounded defaults. */
static inline eyc_client *dt_client(const char *url, int timeout_ms)
{
    eyc_options o = {.timeout_ms = timeout_ms, .resend_ivl_ms = 60000, .reconnect_ivl_ms = 20};
    eyc_client *c = NULL;
    if (eyc_connect(url, &o, &c)) fprintf(stderr, "connect %s: %s\n", url, eyc_last_error());
    return c;
}

/* A long greedy completion of `prompt` (max_tokens, ignore_eos): jobs that
 * stay running while a test pokes at the daemon. */
static inline void dt_long_gen(Eyrie__Generate *g, Eyrie__Sampling *s, const char *prompt,
                               int max_tokens)
{
    eyrie__generate__init(g);
    g->has_task = true;
    g->task = EYRIE__TASK__TASK_COMPLETE;
    g->prompt = (char *)prompt;
    g->has_max_tokens = true;
    g->max_tokens = max_tokens;
    g->has_ignore_eos = true;
    g->ignore_eos = true;
    eyrie__sampling__init(s);
    s->has_temperature = true;
    s->temperature = 0;
    g->sampling = s;
}

#endif
