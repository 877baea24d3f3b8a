/* eyc_stats_prometheus on a hand-built StatsResult, compared byte for byte
 * with the expected exposition text. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eyrie_client.h"
#include "test.h"

static char *render(const Eyrie__StatsResult *s)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    TEST_CHECK(f != NULL);
    TEST_CHECK(eyc_stats_prometheus(s, f) == 0);
    fclose(f);
    return buf;
}

static void check_text(const char *got, const char *want)
{
    TEST_CHECK_MSG(!strcmp(got, want), "\n--- got ---\n%s--- want ---\n%s", got, want);
}

int main(void)
{
    /* counter family with two label sets, split by another metric (grouped
     * on output), a label value needing every escape, a gauge without HELP,
     * a histogram without a +Inf bucket and one with it, odd values */
    Eyrie__Label l_chat = {PROTOBUF_C_MESSAGE_INIT(&eyrie__label__descriptor), "task", "chat"};
    Eyrie__Label l_comp = {PROTOBUF_C_MESSAGE_INIT(&eyrie__label__descriptor), "task", "complete"};
    Eyrie__Label l_esc = {PROTOBUF_C_MESSAGE_INIT(&eyrie__label__descriptor), "model",
                          "a\\b \"q\"\nz"};
    Eyrie__Label l_pos = {PROTOBUF_C_MESSAGE_INIT(&eyrie__label__descriptor), "position", "0"};
    Eyrie__Label *lab_chat[] = {&l_chat}, *lab_comp[] = {&l_comp}, *lab_esc[] = {&l_esc},
                 *lab_pos[] = {&l_pos};

    Eyrie__Metric m1 = EYRIE__METRIC__INIT;
    m1.name = "requests_total";
    m1.help = "Requests received.\nBy task \\ kind.";
    m1.has_type = true;
    m1.type = EYRIE__METRIC_TYPE__METRIC_COUNTER;
    m1.n_labels = 1;
    m1.labels = lab_chat;
    m1.has_value = true;
    m1.value = 12;

    Eyrie__Metric m2 = EYRIE__METRIC__INIT;
    m2.name = "jobs_running";
    m2.has_type = true;
    m2.type = EYRIE__METRIC_TYPE__METRIC_GAUGE;
    m2.has_value = true;
    m2.value = 0.1;

    Eyrie__Metric m3 = m1;
    m3.help = NULL;
    m3.labels = lab_comp;
    m3.value = 3e20;

    Eyrie__Metric m4 = EYRIE__METRIC__INIT;
    m4.name = "model_info";
    m4.help = "Loaded model.";
    m4.has_type = true;
    m4.type = EYRIE__METRIC_TYPE__METRIC_GAUGE;
    m4.n_labels = 1;
    m4.labels = lab_esc;
    m4.has_value = true;
    m4.value = 1;

    Eyrie__Bucket b1 = {PROTOBUF_C_MESSAGE_INIT(&eyrie__bucket__descriptor), 0.005, 1};
    Eyrie__Bucket b2 = {PROTOBUF_C_MESSAGE_INIT(&eyrie__bucket__descriptor), 0.25, 4};
    Eyrie__Bucket b3 = {PROTOBUF_C_MESSAGE_INIT(&eyrie__bucket__descriptor), 1, 6};
    Eyrie__Bucket *bk[] = {&b1, &b2, &b3};
    Eyrie__Metric m5 = EYRIE__METRIC__INIT;
    m5.name = "request_seconds";
    m5.help = "End-to-end request latency.";
    m5.has_type = true;
    m5.type = EYRIE__METRIC_TYPE__METRIC_HISTOGRAM;
    m5.n_buckets = 3;
    m5.buckets = bk;
    m5.has_sum = true;
    m5.sum = 2.5;
    m5.has_count = true;
    m5.count = 7;

    Eyrie__Bucket c1 = {PROTOBUF_C_MESSAGE_INIT(&eyrie__bucket__descriptor), 1, 2};
    Eyrie__Bucket c2 = {PROTOBUF_C_MESSAGE_INIT(&eyrie__bucket__descriptor), INFINITY, 5};
    Eyrie__Bucket *ck[] = {&c1, &c2};
    Eyrie__Metric m6 = EYRIE__METRIC__INIT;
    m6.name = "spec_accept_length";
    m6.has_type = true;
    m6.type = EYRIE__METRIC_TYPE__METRIC_HISTOGRAM;
    m6.n_labels = 1;
    m6.labels = lab_pos;
    m6.n_buckets = 2;
    m6.buckets = ck;
    m6.has_sum = true;
    m6.sum = 9;
    /* no count: taken from the +Inf bucket */

    Eyrie__Metric m7 = EYRIE__METRIC__INIT;
    m7.name = "bad-name";
    m7.has_type = true;
    m7.type = EYRIE__METRIC_TYPE__METRIC_GAUGE;
    m7.has_value = true;
    m7.value = NAN;

    Eyrie__Metric *ms[] = {&m1, &m2, &m3, &m4, &m5, &m6, &m7};
    Eyrie__StatsResult s = EYRIE__STATS_RESULT__INIT;
    s.n_metrics = 7;
    s.metrics = ms;

    const char *want =
        "# HELP eyrie_requests_total Requests received.\\nBy task \\\\ kind.\n"
        "# TYPE eyrie_requests_total counter\n"
        "eyrie_requests_total{task=\"chat\"} 12\n"
        "eyrie_requests_total{task=\"complete\"} 3e+20\n"
        "# TYPE eyrie_jobs_running gauge\n"
        "eyrie_jobs_running 0.1\n"
        "# HELP eyrie_model_info Loaded model.\n"
        "# TYPE eyrie_model_info gauge\n"
        "eyrie_model_info{model=\"a\\\\b \\\"q\\\"\\nz\"} 1\n"
        "# HELP eyrie_request_seconds End-to-end request latency.\n"
        "# TYPE eyrie_request_seconds histogram\n"
        "eyrie_request_seconds_bucket{le=\"0.005\"} 1\n"
        "eyrie_request_seconds_bucket{le=\"0.25\"} 4\n"
        "eyrie_request_seconds_bucket{le=\"1\"} 6\n"
        "eyrie_request_seconds_bucket{le=\"+Inf\"} 7\n"
        "eyrie_request_seconds_sum 2.5\n"
        "eyrie_request_seconds_count 7\n"
        "# TYPE eyrie_spec_accept_length histogram\n"
        "eyrie_spec_accept_length_bucket{position=\"0\",le=\"1\"} 2\n"
        "eyrie_spec_accept_length_bucket{position=\"0\",le=\"+Inf\"} 5\n"
        "eyrie_spec_accept_length_sum{position=\"0\"} 9\n"
        "eyrie_spec_accept_length_count{position=\"0\"} 5\n"
        "# TYPE eyrie_bad_name gauge\n"
        "eyrie_bad_name NaN\n";
    char *got = render(&s);
    check_text(got, want);
    free(got);

    /* a round trip through the wire format gives the same text */
    size_t n = eyrie__stats_result__get_packed_size(&s);
    uint8_t *buf = malloc(n);
    eyrie__stats_result__pack(&s, buf);
    Eyrie__StatsResult *u = eyrie__stats_result__unpack(NULL, n, buf);
    TEST_CHECK(u != NULL);
    if (u) {
        got = render(u);
        check_text(got, want);
        free(got);
        eyrie__stats_result__free_unpacked(u, NULL);
    }
    free(buf);

    /* empty: nothing at all */
    Eyrie__StatsResult e = EYRIE__STATS_RESULT__INIT;
    got = render(&e);
    check_text(got, "");
    free(got);
    return test_result();
}
