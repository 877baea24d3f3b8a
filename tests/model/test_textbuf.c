/* Stop strings on streamed text: the earliest match of any stop string wins,
 * and a suffix that may still grow into a stop string is held back. */
#include <string.h>

#include "../../core/generate.h"
#include "test.h"

static char out[256];
static void cb(void *ud, const char *t, size_t n)
{
    (void)ud;
    strncat(out, t, n);
}

int main(void)
{
    ey_gen_params gp = {.max_tokens = 1, .n_stop = 2, .stop = {"b", "a"}};
    ey_textbuf tb = {0};
    size_t safe;
    TEST_CHECK(ey_textbuf_append(&tb, "xab", 3) == EY_OK);
    TEST_CHECK(ey_textbuf_check_stop(&tb, &gp, &safe));
    TEST_CHECK(strcmp(tb.s, "x") == 0 && tb.len == 1);
    free(tb.s);

    /* held back: "he" + "ll" may become the stop "hello" */
    ey_gen_params g2 = {.max_tokens = 1, .n_stop = 1, .stop = {"hello"}};
    ey_textbuf t2 = {0};
    out[0] = 0;
    TEST_CHECK(ey_textbuf_append(&t2, "say he", 6) == EY_OK);
    TEST_CHECK(!ey_textbuf_check_stop(&t2, &g2, &safe));
    TEST_CHECK(safe == 4);
    ey_textbuf_emit(&t2, safe, cb, NULL);
    TEST_CHECK(strcmp(out, "say ") == 0);
    TEST_CHECK(ey_textbuf_append(&t2, "llo world", 9) == EY_OK);
    TEST_CHECK(ey_textbuf_check_stop(&t2, &g2, &safe));
    ey_textbuf_emit(&t2, t2.len, cb, NULL);
    TEST_CHECK(strcmp(out, "say ") == 0);
    /* no stop: everything streams */
    ey_textbuf t3 = {0};
    out[0] = 0;
    TEST_CHECK(ey_textbuf_append(&t3, "say hey", 7) == EY_OK);
    TEST_CHECK(!ey_textbuf_check_stop(&t3, &g2, &safe) && safe == 7);
    free(t2.s);
    free(t3.s);
    return test_result();
}
