/* Minimal always-on test macros: a failed check prints and marks the test
 * failed; main returns test_result(). Exit 77 means "skipped" to meson. */
#ifndef EY_TEST_H
#define EY_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int g_test_failures;
static int g_test_checks;

#define TEST_CHECK(cond)                                                       \
    do {                                                                       \
        g_test_checks++;                                                       \
        if (!(cond)) {                                                         \
            g_test_failures++;                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
        }                                                                      \
    } while (0)

#define TEST_CHECK_MSG(cond, ...)                                              \
    do {                                                                       \
        g_test_checks++;                                                       \
        if (!(cond)) {                                                         \
            g_test_failures++;                                                 \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__,   \
                    #cond);                                                    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

#define TEST_SKIP(...)                                                         \
    do {                                                                       \
        fprintf(stderr, "SKIP: ");                                             \
        fprintf(stderr, __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                   \
        exit(77);                                                              \
    } while (0)

static inline int test_result(void)
{
    fprintf(stderr, "%d checks, %d failed\n", g_test_checks, g_test_failures);
    return g_test_failures ? 1 : (g_test_checks ? 0 : 1);
}

#endif
