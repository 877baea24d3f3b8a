/* Chat templates: ey_chat_render must reproduce what the HF Jinja template
 * renders (tests/fixtures/tokenizer/chat.json, made with jinja2 using
 * transformers' settings by scripts/make_tokenizer_fixtures.py).
 * usage: test_chat FIXTURES_DIR */
#include <time.h>

#include "core/chat.h"
#include "test.h"
#include "tok_test_util.h"

static void check_template(const char *name, const char *tpl, const cJSON *convs, const cJSON *expected)
{
    ey_chat_template t;
    ey_err e = ey_chat_template_init(&t, tpl);
    TEST_CHECK_MSG(e == EY_OK, "%s: %s", name, ey_err_detail());
    if (e) return;
    int k = 0;
    const cJSON *conv;
    cJSON_ArrayForEach(conv, convs)
    {
        const cJSON *exp = cJSON_GetArrayItem(expected, k);
        int n = cJSON_GetArraySize(conv);
        ey_chat_msg msgs[16];
        int i = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, conv)
        {
            msgs[i].role = cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring;
            msgs[i].content = cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring;
            i++;
        }
        if (cJSON_IsString(exp)) {
            char *out = NULL;
            e = ey_chat_render(&t, msgs, n, true, &out);
            TEST_CHECK_MSG(e == EY_OK, "%s conv %d: %s", name, k, ey_err_detail());
            bool ok = out && strcmp(out, exp->valuestring) == 0;
            TEST_CHECK_MSG(ok, "%s conv %d differs", name, k);
            if (!ok && out) fprintf(stderr, "--- expected:\n%s\n--- got:\n%s\n---\n", exp->valuestring, out);
            free(out);
        }
        k++;
    }
    ey_chat_template_free(&t);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    cJSON *doc = tt_load_json(argv[1], "chat.json");
    TEST_CHECK(doc != NULL);
    if (!doc) return test_result();
    const cJSON *tpls = cJSON_GetObjectItemCaseSensitive(doc, "templates");
    const cJSON *convs = cJSON_GetObjectItemCaseSensitive(doc, "conversations");
    const cJSON *exps = cJSON_GetObjectItemCaseSensitive(doc, "expected");
    const cJSON *tpl;
    int n_tpl = 0;
    cJSON_ArrayForEach(tpl, tpls)
    {
        check_template(tpl->string, tpl->valuestring, convs, cJSON_GetObjectItemCaseSensitive(exps, tpl->string));
        n_tpl++;
    }
    TEST_CHECK(n_tpl >= 5);

    /* detection details */
    ey_chat_template t;
    TEST_CHECK(ey_chat_template_init(&t, cJSON_GetObjectItemCaseSensitive(tpls, "smollm2")->valuestring) == EY_OK);
    TEST_CHECK(t.kind == EY_CHAT_CHATML && t.default_system &&
               !strcmp(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
    ey_chat_template_free(&t);
    TEST_CHECK(ey_chat_template_init(&t, cJSON_GetObjectItemCaseSensitive(tpls, "qwen25")->valuestring) == EY_OK);
    TEST_CHECK(t.kind == EY_CHAT_CHATML && t.default_system &&
               !strcmp(t.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."));
    ey_chat_template_free(&t);
    TEST_CHECK(ey_chat_template_init(&t, cJSON_GetObjectItemCaseSensitive(tpls, "qwen3")->valuestring) == EY_OK);
    TEST_CHECK(t.kind == EY_CHAT_CHATML && t.default_system == NULL);
    ey_chat_template_free(&t);
    TEST_CHECK(ey_chat_template_init(&t, cJSON_GetObjectItemCaseSensitive(tpls, "llama3")->valuestring) == EY_OK);
    TEST_CHECK(t.kind == EY_CHAT_LLAMA3 && t.bos_in_template);
    ey_chat_template_free(&t);

    /* Llama-3.2 takes today's date from the clock (strftime_now) */
    const char *l32 = cJSON_GetObjectItemCaseSensitive(tpls, "llama31")->valuestring;
    size_t l = strlen(l32);
    char *tpl32 = malloc(l + 64);
    snprintf(tpl32, l + 64, "%s{# strftime_now #}", l32);
    TEST_CHECK(ey_chat_template_init(&t, tpl32) == EY_OK);
    ey_chat_msg um = {"user", "hi"};
    char *out = NULL;
    TEST_CHECK(ey_chat_render(&t, &um, 1, true, &out) == EY_OK);
    char date[64], want[128];
    time_t now = time(NULL);
    struct tm tmv;
    localtime_r(&now, &tmv);
    strftime(date, sizeof date, "%d %b %Y", &tmv);
    snprintf(want, sizeof want, "Today Date: %s\n\n", date);
    TEST_CHECK_MSG(out && strstr(out, want), "llama-3.2 date: %s", out ? out : "(null)");
    free(out);
    ey_chat_template_free(&t);
    free(tpl32);

    /* no template: plain concatenation; unknown template: clear error */
    TEST_CHECK(ey_chat_template_init(&t, NULL) == EY_OK && t.kind == EY_CHAT_NONE);
    ey_chat_msg two[2] = {{"user", "a"}, {"assistant", "b"}};
    TEST_CHECK(ey_chat_render(&t, two, 2, true, &out) == EY_OK && !strcmp(out, "ab"));
    free(out);
    ey_chat_template_free(&t);
    TEST_CHECK(ey_chat_template_init(&t, "{{ messages }} [INST]") == EY_ERR_UNSUPPORTED);
    TEST_CHECK(strlen(ey_err_detail()) > 0);
    ey_chat_template_free(&t);
    TEST_CHECK(ey_chat_render(NULL, two, 2, true, &out) == EY_ERR_ARG);

    cJSON_Delete(doc);
    return test_result();
}
