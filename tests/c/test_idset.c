/* test_idset: the pool's set of queued task ids against a plain array, over
 * random adds and deletes that grow it and leave many deleted slots. */
#include <stdint.h>
#include <stdlib.h>

#include "sj_idset.h"
#include "sj_test.h"

#define SPAN 4096 /* ids drawn from [base, base + SPAN) */

static void test_against_array(void)
{
    static unsigned char want[SPAN];
    sj_idset s = {0};
    const int64_t base = INT64_C(1234567890123456000); /* server-like ids */
    size_t n = 0, mismatches = 0;

    srand(7);
    for (int step = 0; step < 200000; step++) {
        int64_t k = rand() % SPAN;
        if (rand() % 3 != 0) { /* add twice as often: the set grows */
            CHECK(sj_idset_add(&s, base + k) == 0);
            n += !want[k];
            want[k] = 1;
        } else {
            sj_idset_del(&s, base + k);
            n -= want[k];
            want[k] = 0;
        }
        if (step % 997 == 0)
            for (int64_t j = 0; j < SPAN; j++)
                mismatches += sj_idset_has(&s, base + j) != want[j];
    }
    CHECK(mismatches == 0);
    CHECK(s.used == n);
    CHECK(s.filled * 2 <= s.cap); /* probes always end at an empty slot */
    /* ids outside the span, negative ones, and 0 are absent */
    CHECK(!sj_idset_has(&s, base - 1) && !sj_idset_has(&s, base + SPAN));
    CHECK(!sj_idset_has(&s, -1) && !sj_idset_has(&s, 0));
    /* empty it: every id goes, the slots stay bounded */
    for (int64_t j = 0; j < SPAN; j++)
        sj_idset_del(&s, base + j);
    CHECK(s.used == 0);
    for (int64_t j = 0; j < SPAN; j++)
        CHECK(!sj_idset_has(&s, base + j));
    sj_idset_free(&s);
    CHECK(!sj_idset_has(&s, base) && s.cap == 0);
}

/* A set that was never added to answers, and deletes, without a table. */
static void test_empty(void)
{
    sj_idset s = {0};
    CHECK(!sj_idset_has(&s, 42));
    sj_idset_del(&s, 42);
    CHECK(s.cap == 0 && s.used == 0);
    CHECK(sj_idset_add(&s, 42) == 0 && sj_idset_add(&s, 42) == 0);
    CHECK(s.used == 1 && sj_idset_has(&s, 42));
    sj_idset_free(&s);
}

int main(void)
{
    SJ_TEST_RUN(test_empty);
    SJ_TEST_RUN(test_against_array);
    return SJ_TEST_DONE("idset");
}
