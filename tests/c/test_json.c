/*
 * sj_json, the one JSON writer of outbound bodies: sorted keys (or the
 * parsed order for the server emulation), shortest reals, exact 64-bit
 * integers, escapes and the depth limit.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sj_error.h"
#include "sj_json.h"
#include "sj_test.h"

static char *text_of(const char *json, int ordered)
{
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    char *t = ordered ? sj_json_text_ordered(v) : sj_json_text(v);
    json_decref(v);
    return t;
}

#define CHECK_WRITES(in, ordered, want)                                        \
    do {                                                                       \
        char *t_ = text_of(in, ordered);                                       \
        CHECK_STR_EQ(t_, want);                                                \
        free(t_);                                                              \
    } while (0)

static void test_values(void)
{
    CHECK_WRITES("{\"b\":1,\"a\":0.1,\"c\":{\"z\":null,\"y\":true}}", 0,
                 "{\"a\":0.1,\"b\":1,\"c\":{\"y\":true,\"z\":null}}");
    CHECK_WRITES("{\"b\":1,\"a\":0.1,\"c\":{\"z\":null,\"y\":true}}", 1,
                 "{\"b\":1,\"a\":0.1,\"c\":{\"z\":null,\"y\":true}}");
    CHECK_WRITES("[1.0,1e300,-2.5,0.30000000000000004]", 0,
                 "[1.0,1e+300,-2.5,0.30000000000000004]");
    CHECK_WRITES("[9223372036854775807,-9223372036854775808]", 0,
                 "[9223372036854775807,-9223372036854775808]");
    CHECK_WRITES("\"a\\\"b\\\\c\\n\\u0001\u00e9\"", 0,
                 "\"a\\\"b\\\\c\\n\\u0001\u00e9\"");
    CHECK_WRITES("{}", 0, "{}");
    CHECK_WRITES("[]", 1, "[]");
}

static void test_limits(void)
{
    json_t *deep = json_array(), *cur = deep;
    char *t = NULL;

    for (int i = 1; i < SJ_JSON_MAX_DEPTH; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    CHECK(sj_json_dump(deep, &t, NULL) == 0 && t != NULL);
    free(t);
    json_array_append_new(cur, json_array()); /* one level too deep */
    CHECK(sj_json_dump(deep, &t, NULL) == SJ_ETOOBIG && t == NULL);
    CHECK(sj_json_text(deep) == NULL);
    CHECK(sj_json_dump(NULL, &t, NULL) == SJ_EINVAL);
    json_decref(deep);
}

int main(void)
{
    SJ_TEST_RUN(test_values);
    SJ_TEST_RUN(test_limits);
    return SJ_TEST_DONE("json");
}
