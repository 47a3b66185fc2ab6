/*
 * sj_logrec: the task-log record written as JSON text in one pass must be
 * what jansson's compact dump of the record tree gives (the form the
 * upstream sent before issue 14), byte for byte, and valid JSON for any
 * message bytes.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "sj_logrec.h"
#include "sj_test.h"

static json_t *field(const char *name, const char *value, size_t n)
{
    json_t *f = json_pack("{s:s}", "name", name);
    if (value != NULL)
        json_object_set_new(f, "value", json_stringn(value, n));
    return f;
}

/* The reference: the tree the upstream built with jansson, dumped. */
static char *reference(const sj_logrec *r)
{
    char stamp[24];
    json_t *fields = json_array(), *rec;
    char *text;

    snprintf(stamp, sizeof stamp, "%lld", r->real_time);
    json_array_append_new(fields, field("time_stamp", stamp, strlen(stamp)));
    json_array_append_new(fields, field("level", r->level, strlen(r->level)));
    json_array_append_new(fields, field("thread", "snailjob-lua", 12));
    /* as the upstream packed it: an invalid message fails the record */
    json_array_append_new(fields,
                          json_pack("{s:s,s:s%}", "name", "message", "value",
                                    r->message, r->message_len));
    json_array_append_new(fields,
                          field("location", r->location,
                                r->location != NULL ? strlen(r->location) : 0));
    json_array_append_new(fields, field("throwable", NULL, 0));
    json_array_append_new(fields, field("host", r->host, strlen(r->host)));
    json_array_append_new(fields, field("port", r->port, strlen(r->port)));
    rec = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:o}", "logType", "JOB",
                    "namespaceId", r->namespace_id, "groupName", r->group_name,
                    "jobId", (json_int_t)r->job_id, "taskBatchId",
                    (json_int_t)r->task_batch_id, "taskId",
                    (json_int_t)r->task_id, "realTime",
                    (json_int_t)r->real_time, "fieldList", fields);
    text = rec != NULL ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    return text;
}

static sj_logrec sample(const char *msg, size_t len, const char *location)
{
    sj_logrec r;
    memset(&r, 0, sizeof r);
    r.namespace_id = "764d604ec6fc45f68cd92514c40e9e1a";
    r.group_name = "snail_job_demo_group";
    r.job_id = 7;
    r.task_batch_id = 1234567890123456789LL; /* 64-bit ids stay exact */
    r.task_id = -9223372036854775807LL - 1;
    r.real_time = 1764806400123LL;
    r.level = "INFO";
    r.message = msg;
    r.message_len = len;
    r.location = location;
    r.host = "127.0.0.1";
    r.port = "17889";
    return r;
}

#define MSG(lit) lit, sizeof(lit) - 1

/* Byte-equal to jansson for messages jansson accepts. */
static void test_same_as_jansson(void)
{
    static const struct {
        const char *msg;
        size_t len;
        const char *location;
    } cases[] = {
        {MSG("job_params: 42"), "executors/demo.lua:12"},
        {MSG(""), NULL},
        {MSG("quote \" backslash \\ slash / done"), "a\"b"},
        {MSG("ctl \b\f\n\r\t \x01\x1f \x7f end"), NULL},
        {MSG("nul \0 inside"), NULL},
        {MSG("utf-8: \xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80"),
         "\xc3\xa9.lua:1"},
        {MSG("\xed\x9f\xbf \xf4\x8f\xbf\xbf edges"), NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sj_logrec r = sample(cases[i].msg, cases[i].len, cases[i].location);
        size_t len = 0;
        char *got = sj_logrec_text(&r, &len), *want = reference(&r);
        CHECK(want != NULL);
        CHECK(got != NULL);
        if (got == NULL || want == NULL) {
            free(got);
            free(want);
            continue;
        }
        CHECK_INT_EQ(len, strlen(got));
        if (strcmp(got, want) != 0)
            fprintf(stderr, "case %zu:\n got  %s\n want %s\n", i, got, want);
        CHECK_STR_EQ(got, want);
        free(got);
        free(want);
    }
}

/* Bytes that are not UTF-8 (jansson refused such a message, and the old
 * record went without its message field) become U+FFFD; the record stays
 * valid JSON and keeps the rest of the line. */
static void test_invalid_utf8_replaced(void)
{
    static const char *const bad[] = {
        "lone \x80 continuation",   "truncated \xe4\xb8",
        "overlong \xc0\xaf",        "surrogate \xed\xa0\x80",
        "too big \xf4\x90\x80\x80", "at the end \xf0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sj_logrec r = sample(bad[i], strlen(bad[i]), NULL);
        char *got = sj_logrec_text(&r, NULL), *ref;
        json_error_t e;
        json_t *v;
        const char *msg = NULL;

        CHECK(got != NULL);
        if (got == NULL)
            continue;
        v = json_loads(got, 0, &e);
        if (v == NULL)
            fprintf(stderr, "case %zu: %s: %s\n", i, e.text, got);
        CHECK(v != NULL);
        json_unpack(json_array_get(json_object_get(v, "fieldList"), 3), "{s:s}",
                    "value", &msg);
        CHECK(msg != NULL && strstr(msg, "\xef\xbf\xbd") != NULL);
        CHECK(msg != NULL && strncmp(msg, bad[i], 4) == 0);
        /* jansson refused the message: the old record went without it */
        ref = reference(&r);
        CHECK(ref != NULL && strstr(ref, "\"message\"") == NULL);
        free(ref);
        json_decref(v);
        free(got);
    }
}

/* A long message (a 64 KiB log_line_max line) is written whole. */
static void test_long_message(void)
{
    size_t n = 65536;
    char *msg = malloc(n);
    memset(msg, 'x', n);
    msg[100] = '"';
    sj_logrec r = sample(msg, n, NULL);
    size_t len = 0;
    char *got = sj_logrec_text(&r, &len), *want = reference(&r);
    CHECK(got != NULL && want != NULL && strcmp(got, want) == 0);
    CHECK(len > n);
    free(got);
    free(want);
    free(msg);
}

int main(void)
{
    SJ_TEST_RUN(test_same_as_jansson);
    SJ_TEST_RUN(test_invalid_utf8_replaced);
    SJ_TEST_RUN(test_long_message);
    return SJ_TEST_DONE("logrec");
}
