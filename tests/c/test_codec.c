/* Codec and task parsing: bytes and JSON from the wire, trusted for nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_codec.h"
#include "sj_error.h"
#include "sj_harness.h"
#include "sj_json.h"
#include "sj_task.h"

static void test_reply_bytes(void)
{
    /* protocol.md §2.2: {status:1, data:"true"} is exactly these bytes. */
    const uint8_t want[] = {0x10, 0x01, 0x22, 0x04, 't', 'r', 'u', 'e'};
    sj_reply r = {0}, back;
    uint8_t *out;
    size_t len;

    sj_reply_set(&r, 0, SJ_STATUS_YES, NULL, "true");
    CHECK(sj_codec_encode_reply(&r, &out, &len) == 0);
    CHECK(len == sizeof want && memcmp(out, want, len) == 0);
    CHECK(sj_codec_decode_reply(out, len, &back) == 0);
    CHECK(back.status == 1 && back.req_id == 0 && back.message == NULL);
    CHECK(back.data && strcmp(back.data, "true") == 0);
    sj_reply_free(&back);
    sj_reply_free(&r);
    free(out);

    /* An absent status is 0: failure (protocol.md §9.16). */
    const uint8_t nostatus[] = {0x22, 0x04, 't', 'r', 'u', 'e'};
    CHECK(sj_codec_decode_reply(nostatus, sizeof nostatus, &back) == 0);
    CHECK(back.status == SJ_STATUS_NO);
    sj_reply_free(&back);
}

static void test_request_roundtrip(void)
{
    sj_request q = {0}, back;
    uint8_t *out;
    size_t len;

    q.req_id = 1234567890123456789LL;
    sj_wire_set(&q.uri, "/job/dispatch/v1");
    sj_wire_set(&q.body, "[{\"jobId\":1}]");
    sj_request_add_header(&q, "SJ-TOKEN", "tok");
    sj_request_add_header(&q, "host-id", "c-1");
    CHECK(sj_codec_encode_request(&q, &out, &len) == 0);
    CHECK(sj_codec_decode_request(out, len, &back) == 0);
    CHECK(back.req_id == q.req_id);
    CHECK(strcmp(back.uri, q.uri) == 0 && strcmp(back.body, q.body) == 0);
    CHECK(back.n_headers == 2);
    /* Header lookups are case-insensitive, as in the Java server. */
    CHECK(sj_request_header(&back, "sj-token") &&
          strcmp(sj_request_header(&back, "sj-token"), "tok") == 0);
    CHECK(sj_request_header(&back, "missing") == NULL);
    sj_request_free(&back);
    sj_request_free(&q);
    free(out);
}

static void test_garbage(void)
{
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x0f};
    const uint8_t trunc[] = {0x1a, 0x10, 'a'}; /* length beyond the end */
    sj_request q;
    sj_reply r;

    CHECK(sj_codec_decode_request(junk, sizeof junk, &q) == SJ_EPROTO);
    CHECK(q.uri == NULL && q.n_headers == 0);
    CHECK(sj_codec_decode_request(trunc, sizeof trunc, &q) == SJ_EPROTO);
    CHECK(sj_codec_decode_reply(junk, sizeof junk, &r) == SJ_EPROTO);
    CHECK(sj_codec_decode_request(junk, (size_t)SJ_MAX_MESSAGE + 1, &q) ==
          SJ_ETOOBIG);
    /* Every prefix of a valid message decodes or fails cleanly. */
    sj_request full = {0};
    uint8_t *out;
    size_t len;
    full.req_id = 77;
    sj_wire_set(&full.uri, "/beat");
    sj_wire_set(&full.body, "[\"PING\"]");
    sj_request_add_header(&full, "token", "x");
    sj_codec_encode_request(&full, &out, &len);
    for (size_t i = 0; i < len; i++)
        if (sj_codec_decode_request(out, i, &q) == 0)
            sj_request_free(&q);
    free(out);
    sj_request_free(&full);
}

static void test_dispatch_parse(void)
{
    /* protocol.md §10.1, with 64-bit ids beyond a double's precision. */
    const char *body =
        "[{\"argsStr\":\"{\\\"jobParams\\\":\\\"2026-01-01\\\",\\\"maps\\\":"
        "[\\\"12\\\",\\\"{\\\\\\\"sum\\\\\\\":7}\\\"]}\","
        "\"executorInfo\":\"orderSumJob\",\"executorTimeout\":120,"
        "\"executorType\":1,\"groupName\":\"demo_group\","
        "\"jobBizId\":\"order-sum\",\"jobId\":9007199254740993,\"mrStage\":2,"
        "\"namespaceId\":\"ns\",\"parallelNum\":2,\"retry\":false,"
        "\"retryCount\":0,\"retryStatus\":false,"
        "\"taskBatchId\":1234567890123456789,\"taskId\":5531,"
        "\"taskName\":\"REDUCE_TASK\",\"taskType\":5,\"unknownField\":[1]}]";
    char err[256];
    sj_task *t;

    CHECK(sj_task_parse(body, &t, err, sizeof err) == 0);
    if (t == NULL)
        return;
    CHECK(t->job_id == 9007199254740993LL);
    CHECK(t->task_batch_id == 1234567890123456789LL);
    CHECK(t->task_type == 5 && t->mr_stage == 2 && t->parallel_num == 2);
    CHECK(strcmp(t->job_params, "2026-01-01") == 0);
    CHECK(json_is_array(t->maps) && json_array_size(t->maps) == 2);
    /* the argsStr text the maps came from (what a queued task holds) */
    CHECK(t->args_bytes == strlen("{\"jobParams\":\"2026-01-01\",\"maps\":"
                                  "[\"12\",\"{\\\"sum\\\":7}\"]}"));
    CHECK(!t->has_sharding && t->has_retry_count && !t->has_retry_scene);
    sj_task_free(t);

    /* argsStr that is not the holder: passed through as the parameters. */
    CHECK(sj_task_parse("[{\"jobId\":1,\"taskBatchId\":2,\"taskId\":3,"
                        "\"taskType\":1,\"executorInfo\":\"x\","
                        "\"argsStr\":\"plain text\"}]",
                        &t, err, sizeof err) == 0);
    if (t != NULL) {
        CHECK(strcmp(t->job_params, "plain text") == 0 && t->maps == NULL);
        CHECK(t->args_bytes == strlen("plain text"));
        sj_task_free(t);
    }

    /* Errors name the field. */
    CHECK(sj_task_parse("[{\"jobId\":\"x1\",\"taskBatchId\":2,\"taskId\":3,"
                        "\"taskType\":1,\"executorInfo\":\"x\"}]",
                        &t, err, sizeof err) == SJ_EINVAL);
    CHECK(strstr(err, "jobId") != NULL);
    CHECK(sj_task_parse("[{\"jobId\":1,\"taskBatchId\":2,\"taskId\":3,"
                        "\"taskType\":9,\"executorInfo\":\"x\"}]",
                        &t, err, sizeof err) == SJ_EINVAL);
    CHECK(strstr(err, "taskType") != NULL);
    CHECK(sj_task_parse("{\"jobId\":1}", &t, err, sizeof err) == SJ_EJSON);
    CHECK(sj_task_parse("[{\"jobId\":1,", &t, err, sizeof err) == SJ_EJSON);
    CHECK(strstr(err, "not JSON") != NULL);
}

static void test_report(void)
{
    char err[256];
    sj_task *t;
    json_t *res = json_integer(1234567890123456789LL);
    json_t *wf = json_pack("{s:s}", "k", "v");
    char *text;

    CHECK(sj_task_parse("[{\"jobId\":1,\"taskBatchId\":2,\"taskId\":3,"
                        "\"taskType\":3,\"executorInfo\":\"x\","
                        "\"groupName\":\"g\",\"retryScene\":2,"
                        "\"retryStatus\":true,\"retry\":true,"
                        "\"workflowTaskBatchId\":8,\"workflowNodeId\":9}]",
                        &t, err, sizeof err) == 0);
    if (t == NULL)
        return;
    text = sj_task_report_json(t, SJ_OUT_OK, res, NULL, wf);
    CHECK(text != NULL);
    if (text != NULL) {
        CHECK(strstr(text, "\"taskStatus\":3"));
        CHECK(strstr(text, "\"result\":1234567890123456789"));
        CHECK(strstr(text, "\"retryScene\":2"));
        CHECK(strstr(text, "\"retryStatus\":true"));
        CHECK(strstr(text, "\"retry\":true"));
        CHECK(strstr(text, "\"workflowNodeId\":9"));
        CHECK(strstr(text, "\"wfContext\":\"{\\\"k\\\":\\\"v\\\"}\""));
        CHECK(strstr(text, "\"taskType\":3"));
        free(text);
    }
    text = sj_task_report_json(t, SJ_OUT_ERROR, NULL, "boom", NULL);
    CHECK(text && strstr(text, "\"taskStatus\":4") &&
          strstr(text, "\"message\":\"boom\"") && !strstr(text, "wfContext"));
    free(text);
    /* Interrupted runs are not reported (protocol.md §7.1, §7.2). */
    CHECK(sj_task_report_json(t, SJ_OUT_STOPPED, NULL, NULL, NULL) == NULL);
    CHECK(sj_task_report_json(t, SJ_OUT_TIMEOUT, NULL, NULL, NULL) == NULL);
    sj_task_free(t);
    json_decref(res);
    json_decref(wf);
}

/* The report as the jansson tree it stands for, dumped by sj_json: what
 * sj_task_report_json writes straight must be these bytes. */
static char *report_oracle(const sj_task *t, int ok, json_t *result,
                           const char *msg, json_t *wf)
{
    json_t *er = json_pack("{s:i,s:s}", "status", ok, "message", msg);
    json_t *req;
    char *text;

    if (result != NULL)
        json_object_set(er, "result", result);
    req = json_pack(
        "{s:I,s:I,s:I,s:i,s:i,s:o,s:b,s:b}", "jobId", (json_int_t)t->job_id,
        "taskBatchId", (json_int_t)t->task_batch_id, "taskId",
        (json_int_t)t->task_id, "taskType", t->task_type, "taskStatus",
        ok ? SJ_TASK_SUCCESS : SJ_TASK_FAIL, "executeResult", er, "retry",
        t->has_retry ? t->retry : t->retry_status, "retryStatus",
        t->has_retry_status ? t->retry_status : t->retry);
    if (t->group_name != NULL)
        json_object_set_new(req, "groupName", json_string(t->group_name));
    if (t->workflow_task_batch_id != 0) {
        json_object_set_new(req, "workflowTaskBatchId",
                            json_integer(t->workflow_task_batch_id));
        json_object_set_new(req, "workflowNodeId",
                            json_integer(t->workflow_node_id));
    }
    if (t->has_retry_scene)
        json_object_set_new(req, "retryScene", json_integer(t->retry_scene));
    if (wf != NULL) {
        char *w = sj_json_text(wf);
        json_object_set_new(req, "wfContext", json_string(w));
        free(w);
    }
    json_t *args = json_pack("[o]", req);
    text = sj_json_text(args);
    json_decref(args);
    return text;
}

/* The report is written without a tree: byte for byte the oracle's, for
 * tasks with and without the optional fields, and a message that is not
 * UTF-8 is kept (U+FFFD), not dropped. */
static void test_report_bytes(void)
{
    static const char *const bodies[] = {
        "[{\"jobId\":1,\"taskBatchId\":2,\"taskId\":3,\"taskType\":1,"
        "\"executorInfo\":\"x\"}]",
        "[{\"jobId\":-9223372036854775808,\"taskBatchId\":9007199254740993,"
        "\"taskId\":3,\"taskType\":4,\"executorInfo\":\"x\",\"groupName\":"
        "\"g\\\"\\u00e9\",\"retryScene\":7,\"retry\":true,"
        "\"workflowTaskBatchId\":8,\"workflowNodeId\":9}]",
        "[{\"jobId\":1,\"taskBatchId\":2,\"taskId\":3,\"taskType\":2,"
        "\"executorInfo\":\"x\",\"retryStatus\":true}]",
    };
    json_t *results[] = {NULL, json_pack("{s:[i,f,s,n],s:b}", "z", 1, 0.1,
                                         "\xe4\xbd\xa0", "a", 1)};
    json_t *wf = json_pack("{s:s,s:i}", "k", "v\n", "a", 2);
    char err[256];

    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        sj_task *t;
        CHECK(sj_task_parse(bodies[i], &t, err, sizeof err) == 0);
        if (t == NULL)
            continue;
        for (int ok = 0; ok <= 1; ok++)
            for (size_t r = 0; r < 2; r++) {
                json_t *w = r == 1 ? wf : NULL;
                char *got =
                    sj_task_report_json(t, ok ? SJ_OUT_OK : SJ_OUT_FAILED,
                                        results[r], r == 1 ? "m\t\"" : NULL, w);
                char *want = report_oracle(t, ok, results[r],
                                           r == 1 ? "m\t\""
                                           : ok   ? "Task executed successfully"
                                                  : "Task execution failed",
                                           w);
                CHECKF(got != NULL && want != NULL && strcmp(got, want) == 0,
                       "report %zu/%d/%zu:\n got %s\nwant %s", i, ok, r,
                       got ? got : "(null)", want ? want : "(null)");
                free(got);
                free(want);
            }
        char *bad = sj_task_report_json(t, SJ_OUT_FAILED, NULL, "a\xff", NULL);
        CHECKF(bad != NULL && strstr(bad, "\"message\":\"a\xef\xbf\xbd\""),
               "invalid UTF-8 message: %s", bad ? bad : "(null)");
        free(bad);
        sj_task_free(t);
    }
    json_decref(results[1]);
    json_decref(wf);
}

/* The fast parser takes the common dispatch itself (a fast path that
 * always declined would pass every differential check), and what it
 * makes equals the jansson path's task (tests/fuzz/fuzz_task.c checks that
 * over its corpus and under libFuzzer). */
static void test_dispatch_fast(void)
{
    const char *body =
        "[{\"jobId\":7,\"taskBatchId\":9,\"taskId\":11,\"taskType\":3,"
        "\"executorInfo\":\"echo\",\"shardingIndex\":1,\"shardingTotal\":4,"
        "\"argsStr\":\"{\\\"jobParams\\\":\\\"p\\\\u00e9\\\"}\","
        "\"taskName\":\"a\\ud83d\\ude00\"}]";
    sj_task *t = NULL;

    CHECK(sj_task_parse_fast(body, strlen(body), &t) == 1);
    if (t != NULL) {
        CHECK(t->job_id == 7 && t->task_batch_id == 9 && t->task_id == 11);
        CHECK(t->has_sharding && t->sharding_index == 1 &&
              t->sharding_total == 4);
        CHECK(strcmp(t->job_params, "p\xc3\xa9") == 0);
        CHECK(strcmp(t->task_name, "a\xf0\x9f\x98\x80") == 0);
        sj_task_free(t);
    }
    /* Forms it leaves to jansson: a repeated field, a real, bad input. */
    static const char *const declined[] = {
        "[{\"jobId\":1,\"jobId\":2,\"taskBatchId\":2,\"taskId\":3,"
        "\"taskType\":1,\"executorInfo\":\"x\"}]",
        "[{\"jobId\":1,\"taskBatchId\":2,\"taskId\":3,\"taskType\":1,"
        "\"executorInfo\":\"x\",\"w\":1.5}]",
        "[{\"jobId\":1,\"taskBatchId\":2,\"taskId\":3,\"taskType\":1,"
        "\"executorInfo\":\"x\"}",
        "[{\"jobId\":1,\"taskBatchId\":2,\"taskId\":3,\"taskType\":1,"
        "\"executorInfo\":\"x\",\"s\":\"\\ud800\"}]",
    };
    for (size_t i = 0; i < sizeof declined / sizeof declined[0]; i++) {
        t = NULL;
        CHECKF(sj_task_parse_fast(declined[i], strlen(declined[i]), &t) == 0,
               "accepted %s", declined[i]);
        sj_task_free(t);
    }
}

int main(void)
{
    test_reply_bytes();
    test_request_roundtrip();
    test_garbage();
    test_dispatch_parse();
    test_report();
    test_report_bytes();
    test_dispatch_fast();
    if (h_failures == 0)
        printf("test_codec: all checks passed\n");
    return h_failures != 0;
}
