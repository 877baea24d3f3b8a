/* eyrie-broker — an nn_device front for a pool of eyrie daemons.
 *
 *   eyrie-broker --front URL [--back URL]... [--back-bind URL]... [--max-bytes N]
 *
 * Clients connect their REQ sockets to --front (bound here). Daemons are
 * reached through --back: each --back URL is a daemon's listening address
 * this broker connects to; --back-bind binds an address daemons would
 * connect to. Requests are spread over the connected daemons by nanomsg's
 * own round robin (raw REQ side); replies travel back along the routing
 * header. This is nanomsg's nn_device, nothing else: no state, no parsing.
 *
 * A daemon behind the broker that dies is noticed by the client's REQ resend
 * interval (NN_REQ_RESEND_IVL), not at once: the client's own pipe (to the
 * broker) is still up. Stop with SIGINT/SIGTERM. Exit codes: 0 stopped by a
 * signal, 1 socket error, 2 bad arguments. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#define MAX_URLS 64
#define IPC_PATH_MAX 107

static void usage(FILE *f)
{
    fprintf(f, "usage: eyrie-broker --front URL [--back URL]... [--back-bind URL]... "
               "[--max-bytes N]\n"
               "  --front URL      bind: clients connect here (raw REP)\n"
               "  --back URL       connect to a daemon listening at URL (repeatable)\n"
               "  --back-bind URL  bind URL for daemons that connect (repeatable)\n"
               "  --max-bytes N    largest message accepted on either side "
               "(default 67174400 = 64 MiB + 64 KiB)\n");
}

static bool url_ok(const char *u)
{
    size_t n = strlen(u);
    if (n >= NN_SOCKADDR_MAX) return false;
    /* nanomsg aborts on an ipc path that does not fit sun_path */
    if (!strncmp(u, "ipc://", 6) && n - 6 > IPC_PATH_MAX) return false;
    return n > 0;
}

static volatile int g_stopping;

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    int sig;
    sigwait(set, &sig);
    fprintf(stderr, "eyrie-broker: signal %d, stopping\n", sig);
    g_stopping = 1;
    nn_term(); /* makes nn_device return with ETERM */
    return NULL;
}

int main(int argc, char **argv)
{
    const char *front = NULL, *back[MAX_URLS], *back_bind[MAX_URLS];
    int n_back = 0, n_back_bind = 0;
    long max_bytes = 64L * 1024 * 1024 + 64 * 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "eyrie-broker: '%s' needs a value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--front")) front = v;
        else if (!strcmp(a, "--back") && n_back < MAX_URLS) back[n_back++] = v;
        else if (!strcmp(a, "--back-bind") && n_back_bind < MAX_URLS) back_bind[n_back_bind++] = v;
        else if (!strcmp(a, "--max-bytes")) {
            char *end;
            errno = 0;
            max_bytes = strtol(v, &end, 10);
            if (errno || *end || max_bytes < 1024 || max_bytes > 0x7fffffffL) {
                fprintf(stderr, "eyrie-broker: bad --max-bytes '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "eyrie-broker: unknown or repeated-too-often option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!front || n_back + n_back_bind == 0) {
        fprintf(stderr, "eyrie-broker: need --front and at least one --back or --back-bind\n");
        usage(stderr);
        return 2;
    }
    const char *all[2 * MAX_URLS + 1];
    int n_all = 0;
    all[n_all++] = front;
    for (int i = 0; i < n_back; i++) all[n_all++] = back[i];
    for (int i = 0; i < n_back_bind; i++) all[n_all++] = back_bind[i];
    for (int i = 0; i < n_all; i++)
        if (!url_ok(all[i])) {
            fprintf(stderr, "eyrie-broker: bad URL '%s' (ipc paths at most %d bytes)\n", all[i],
                    IPC_PATH_MAX);
            return 2;
        }

    /* signals go to one thread that calls nn_term */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, signal_thread, &set)) {
        fprintf(stderr, "eyrie-broker: cannot start the signal thread\n");
        return 1;
    }

    int fs = nn_socket(AF_SP_RAW, NN_REP), bs = nn_socket(AF_SP_RAW, NN_REQ);
    if (fs < 0 || bs < 0) {
        fprintf(stderr, "eyrie-broker: nn_socket: %s\n", nn_strerror(nn_errno()));
        return 1;
    }
    int mb = (int)max_bytes;
    /* explicit receive limits on both sides (nanomsg's default is 1 MiB) */
    if (nn_setsockopt(fs, NN_SOL_SOCKET, NN_RCVMAXSIZE, &mb, sizeof mb) < 0 ||
        nn_setsockopt(bs, NN_SOL_SOCKET, NN_RCVMAXSIZE, &mb, sizeof mb) < 0) {
        fprintf(stderr, "eyrie-broker: nn_setsockopt: %s\n", nn_strerror(nn_errno()));
        return 1;
    }
    if (nn_bind(fs, front) < 0) {
        fprintf(stderr, "eyrie-broker: bind %s: %s\n", front, nn_strerror(nn_errno()));
        return 1;
    }
    for (int i = 0; i < n_back; i++)
        if (nn_connect(bs, back[i]) < 0) {
            fprintf(stderr, "eyrie-broker: connect %s: %s\n", back[i], nn_strerror(nn_errno()));
            return 1;
        }
    for (int i = 0; i < n_back_bind; i++)
        if (nn_bind(bs, back_bind[i]) < 0) {
            fprintf(stderr, "eyrie-broker: bind %s: %s\n", back_bind[i], nn_strerror(nn_errno()));
            return 1;
        }
    fprintf(stderr, "eyrie-broker: %s -> %d daemon address(es)\n", front, n_back + n_back_bind);
    int rc = nn_device(fs, bs);
    int err = nn_errno();
    nn_close(fs);
    nn_close(bs);
    /* nn_term makes nn_device fail with ETERM (or EBADF in nanomsg 1.1) */
    if (rc < 0 && (err == ETERM || g_stopping)) return 0;
    fprintf(stderr, "eyrie-broker: nn_device: %s\n", nn_strerror(err));
    return 1;
}
