/*
 * sj_test.h - the check macros shared by the C unit tests (tests/c).
 *
 * A failed check prints "file:line: what failed" on stderr and counts; the
 * program keeps going so one run shows every failure. Pattern:
 *
 *     static void test_x(void) { CHECK_INT_EQ(f(), 3); }
 *     int main(void) { SJ_TEST_RUN(test_x); return SJ_TEST_DONE("x"); }
 *
 * One test program per suite; include this header from exactly one file.
 */
#ifndef SJ_TEST_H
#define SJ_TEST_H

#include <stdio.h>
#include <string.h>

static int sj_test_failures __attribute__((unused));

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            sj_test_failures++;                                                \
        }                                                                      \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                     \
    do {                                                                       \
        long long sj_a_ = (long long)(a), sj_b_ = (long long)(b);              \
        if (sj_a_ != sj_b_) {                                                  \
            fprintf(stderr,                                                    \
                    "%s:%d: CHECK_INT_EQ failed: %s == %s (%lld != "           \
                    "%lld)\n",                                                 \
                    __FILE__, __LINE__, #a, #b, sj_a_, sj_b_);                 \
            sj_test_failures++;                                                \
        }                                                                      \
    } while (0)

/* NULL equals only NULL. */
#define CHECK_STR_EQ(a, b)                                                     \
    do {                                                                       \
        const char *sj_a_ = (a), *sj_b_ = (b);                                 \
        if (sj_a_ == NULL || sj_b_ == NULL ? sj_a_ != sj_b_                    \
                                           : strcmp(sj_a_, sj_b_) != 0) {      \
            fprintf(stderr,                                                    \
                    "%s:%d: CHECK_STR_EQ failed: %s == %s\n"                   \
                    "    got:      %s\n    expected: %s\n",                    \
                    __FILE__, __LINE__, #a, #b, sj_a_ ? sj_a_ : "(null)",      \
                    sj_b_ ? sj_b_ : "(null)");                                 \
            sj_test_failures++;                                                \
        }                                                                      \
    } while (0)

/* Run one test function and say whether its checks passed. */
#define SJ_TEST_RUN(fn)                                                        \
    do {                                                                       \
        int sj_before_ = sj_test_failures;                                     \
        fn();                                                                  \
        printf("%s %s\n", sj_before_ == sj_test_failures ? "ok  " : "FAIL",    \
               #fn);                                                           \
        fflush(stdout);                                                        \
    } while (0)

/* The exit status of main: 0 if every check passed. */
#define SJ_TEST_DONE(name)                                                     \
    (sj_test_failures == 0 ? (printf("%s: all checks passed\n", (name)), 0)    \
                           : (fprintf(stderr, "%s: %d check(s) failed\n",      \
                                      (name), sj_test_failures),               \
                              1))

#endif
