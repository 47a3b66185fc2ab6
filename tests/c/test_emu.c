/*
 * The server emulator: sj_srv driven directly (fake clock, fake outbound
 * ops, hand-made client requests), then sj_emu once over real gRPC.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_log.h"
#include "sj_srv.h"
#include "sj_test.h"
#include "sj_transport.h"

#define NS SJ_SRV_DEFAULT_NAMESPACE
#define GROUP SJ_SRV_DEFAULT_GROUP
#define TOKEN SJ_SRV_DEFAULT_TOKEN
#define ID_BASE 1234567890123456000LL

/* ---- fixtures: clock, outbound calls, requests -------------------------- */

static long long fake_now;
static long long fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

#define MANUAL 99 /* no automatic answer to sends */

typedef struct sent {
    char *host, *uri, *body;
    uint64_t token;
} sent;

static sj_srv *srv;
static sent *sends;
static size_t n_sends, cap_sends;
static int auto_outcome = SJ_SRV_SEND_ACCEPTED;
static const char *auto_message;

static void fake_send(void *ud, const sj_srv_node *node, const char *uri,
                      const char *body, uint64_t token)
{
    (void)ud;
    if (n_sends == cap_sends) {
        cap_sends = cap_sends ? 2 * cap_sends : 64;
        sends = realloc(sends, cap_sends * sizeof *sends);
    }
    sends[n_sends].host = strdup(node->host_id);
    sends[n_sends].uri = strdup(uri);
    sends[n_sends].body = strdup(body);
    sends[n_sends].token = token;
    n_sends++;
    if (auto_outcome != MANUAL)
        sj_srv_send_done(srv, token, auto_outcome, auto_message);
}

static void setup_cfg(const sj_srv_config *cfg)
{
    sj_srv_config def;
    sj_srv_ops ops = {fake_send, NULL};
    memset(&def, 0, sizeof def);
    if (cfg != NULL)
        def = *cfg;
    def.clock = fake_clock;
    fake_now = 1000;
    auto_outcome = SJ_SRV_SEND_ACCEPTED;
    auto_message = NULL;
    CHECK_INT_EQ(sj_srv_create(&def, &ops, &srv), 0);
}

static void setup(void)
{
    setup_cfg(NULL);
}

static void teardown(void)
{
    sj_srv_destroy(srv);
    srv = NULL;
    for (size_t i = 0; i < n_sends; i++) {
        free(sends[i].host);
        free(sends[i].uri);
        free(sends[i].body);
    }
    free(sends);
    sends = NULL;
    n_sends = cap_sends = 0;
}

static size_t count_sent(const char *uri)
{
    size_t n = 0;
    for (size_t i = 0; i < n_sends; i++)
        n += strcmp(sends[i].uri, uri) == 0;
    return n;
}

static const sent *nth_sent(const char *uri, size_t k)
{
    for (size_t i = 0; i < n_sends; i++)
        if (strcmp(sends[i].uri, uri) == 0 && k-- == 0)
            return &sends[i];
    return NULL;
}

/* The DispatchJobRequest of the k-th dispatch (new reference) or NULL. */
static json_t *dispatch(size_t k)
{
    const sent *s = nth_sent(SJ_SRV_URI_DISPATCH, k);
    json_t *arr, *d;
    if (s == NULL)
        return NULL;
    arr = json_loads(s->body, 0, NULL);
    if (!json_is_array(arr) || json_array_size(arr) != 1) {
        json_decref(arr);
        return NULL;
    }
    d = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return d;
}

static long long jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int64_t next_req_id = 9007199254740000LL;

static void req_init(sj_request *r, const char *uri, const char *body,
                     const char *host_id, const char *token)
{
    memset(r, 0, sizeof *r);
    r->req_id = next_req_id++;
    sj_wire_set(&r->uri, uri);
    sj_wire_set(&r->body, body);
    sj_request_add_header(r, "host-id", host_id);
    sj_request_add_header(r, "host-ip", "10.0.0.1");
    sj_request_add_header(r, "host-port", "17889");
    sj_request_add_header(r, "group-name", GROUP);
    sj_request_add_header(r, "namespace", NS);
    if (token != NULL)
        sj_request_add_header(r, "token", token);
    sj_request_add_header(r, "version", "0");
    sj_request_add_header(r, "executor-type", "2");
}

/* Handle a request; the reply's reqId must always be the request's. */
static int call(sj_request *r, sj_reply *rep)
{
    int rc;
    memset(rep, 0, sizeof *rep);
    rc = sj_srv_handle(srv, r, rep);
    if (rc == 0)
        CHECK_INT_EQ(rep->req_id, r->req_id);
    sj_request_free(r);
    return rc;
}

/* One call with the standard headers; returns the reply status. */
static int simple(const char *uri, const char *body, sj_reply *rep)
{
    sj_request r;
    req_init(&r, uri, body, "c-1", TOKEN);
    call(&r, rep);
    return rep->status;
}

static void beat_at(const char *host_id, const char *ip, const char *port,
                    const char *label)
{
    sj_request r;
    sj_reply rep;
    memset(&r, 0, sizeof r);
    r.req_id = next_req_id++;
    sj_wire_set(&r.uri, "/beat");
    sj_wire_set(&r.body, "[\"PING\"]");
    sj_request_add_header(&r, "host-id", host_id);
    sj_request_add_header(&r, "host-ip", ip);
    sj_request_add_header(&r, "host-port", port);
    sj_request_add_header(&r, "group-name", GROUP);
    sj_request_add_header(&r, "namespace", NS);
    sj_request_add_header(&r, "token", TOKEN);
    sj_request_add_header(&r, "executor-type", "2");
    if (label != NULL)
        sj_request_add_header(&r, "label", label);
    call(&r, &rep);
    CHECK_INT_EQ(rep.status, 1);
    CHECK_STR_EQ(rep.data, "\"PONG\"");
    CHECK_STR_EQ(rep.message, "");
    sj_reply_free(&rep);
}

/* A client's result report for dispatch d, echoing what a client must. */
static void report(const json_t *d, int task_status, const char *result,
                   const char *wf_context)
{
    json_t *r = json_object(), *er = json_object(), *arr = json_array();
    const char *keys[] = {"jobId",         "taskBatchId", "taskId",
                          "taskType",      "groupName",   "retryStatus",
                          "retry",         "retryScene",  "workflowTaskBatchId",
                          "workflowNodeId"};
    sj_reply rep;
    char *body;

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (json_object_get(d, keys[i]) != NULL)
            json_object_set(r, keys[i], json_object_get(d, keys[i]));
    json_object_set_new(r, "taskStatus", json_integer(task_status));
    json_object_set_new(er, "status", json_integer(task_status == 3));
    if (result != NULL)
        json_object_set_new(er, "result",
                            json_loads(result, JSON_DECODE_ANY, NULL));
    json_object_set_new(er, "message",
                        json_string(task_status == 3 ? "ok" : "boom"));
    json_object_set_new(r, "executeResult", er);
    if (wf_context != NULL)
        json_object_set_new(r, "wfContext", json_string(wf_context));
    json_array_append_new(arr, r);
    body = json_dumps(arr, JSON_COMPACT);
    CHECK_INT_EQ(simple("/report/dispatch/result", body, &rep), 1);
    CHECK_STR_EQ(rep.message, "Report Dispatch Result Processed Successfully");
    CHECK_STR_EQ(rep.data, "true");
    sj_reply_free(&rep);
    free(body);
    json_decref(arr);
}

/* A MAP task's fan-out report; returns the reply status. */
static int map_report(const json_t *d, const char *name, const char *subtask)
{
    char *body;
    sj_reply rep;
    int st;

    body = NULL;
    if (asprintf(&body,
                 "[{\"jobId\":%lld,\"taskBatchId\":%lld,\"parentId\":%lld,"
                 "\"taskName\":\"%s\",\"subTask\":%s,\"wfContext\":\"{}\"}]",
                 jint(d, "jobId"), jint(d, "taskBatchId"), jint(d, "taskId"),
                 name, subtask) < 0)
        return -1;
    st = simple("/batch/report/job/map/task/v1", body, &rep);
    if (st == 1)
        CHECK_STR_EQ(rep.message, "Report Map Task Processed Successfully");
    sj_reply_free(&rep);
    free(body);
    return st;
}

static sj_srv_job job_of(int type, const char *args)
{
    sj_srv_job j;
    memset(&j, 0, sizeof j);
    j.job_id = 7;
    j.task_type = type;
    j.executor_info = "demoExecutor";
    j.args = args;
    j.executor_timeout = 60;
    j.parallel_num = 2;
    return j;
}

static int64_t trigger(const sj_srv_job *j)
{
    int64_t id = 0;
    CHECK_INT_EQ(sj_srv_trigger(srv, j, &id), 0);
    return id;
}

static void two_nodes(void)
{
    beat_at("c-a", "10.0.0.1", "17889", NULL);
    beat_at("c-b", "10.0.0.2", "17889", "{\"state\":\"up\",\"env\":\"prod\"}");
}

/* ---- registry, tokens and envelopes ----------------------------------- */

static void test_beat_registry(void)
{
    sj_srv_config cfg;
    sj_srv_node_info *nodes;
    sj_reply rep;
    size_t n;

    memset(&cfg, 0, sizeof cfg);
    cfg.beat_apply_ms = 5000;
    setup_cfg(&cfg);

    beat_at("c-a", "10.0.0.1", "17889", "{\"state\":\"up\",\"n\":1}");
    sj_srv_nodes(srv, &nodes, &n);
    CHECK_INT_EQ(n, 0); /* queued, not applied yet */
    sj_srv_nodes_free(nodes, n);
    sj_srv_tick(srv, fake_now); /* first drain */
    sj_srv_nodes(srv, &nodes, &n);
    CHECK_INT_EQ(n, 1);
    if (n == 1) {
        CHECK_STR_EQ(nodes[0].host_id, "c-a");
        CHECK_STR_EQ(nodes[0].ip, "10.0.0.1");
        CHECK_INT_EQ(nodes[0].port, 17889);
        CHECK_STR_EQ(nodes[0].labels, "{\"state\":\"up\",\"n\":1}");
        CHECK_STR_EQ(nodes[0].executor_type, "2");
        CHECK_INT_EQ(nodes[0].alive, 1);
    }
    sj_srv_nodes_free(nodes, n);

    fake_now = 2000;
    beat_at("c-b", "10.0.0.2", "17890", NULL);
    sj_srv_tick(srv, 5999);
    CHECK_INT_EQ(sj_srv_request_count(srv, "/beat"), 2);
    sj_srv_nodes(srv, &nodes, &n);
    CHECK_INT_EQ(n, 1); /* the next drain is at 6000 */
    sj_srv_nodes_free(nodes, n);
    fake_now = 6000;
    sj_srv_tick(srv, 6000);
    sj_srv_nodes(srv, &nodes, &n);
    CHECK_INT_EQ(n, 2);
    sj_srv_nodes_free(nodes, n);

    /* Expiry 40 s after the last applied beat. */
    fake_now = 41000;
    sj_srv_tick(srv, 41000);
    sj_srv_nodes(srv, &nodes, &n);
    CHECK_INT_EQ(n, 2);
    sj_srv_nodes_free(nodes, n);
    fake_now = 41001;
    sj_srv_tick(srv, 41001);
    sj_srv_nodes(srv, &nodes, &n);
    CHECK_INT_EQ(n, 1);
    if (n == 1)
        CHECK_STR_EQ(nodes[0].host_id, "c-b");
    sj_srv_nodes_free(nodes, n);

    /* A non-numeric port is Integer.valueOf's error. */
    {
        sj_request r;
        memset(&r, 0, sizeof r);
        sj_wire_set(&r.uri, "/beat");
        sj_wire_set(&r.body, "[\"PING\"]");
        sj_request_add_header(&r, "host-id", "c-x");
        sj_request_add_header(&r, "host-port", "abc");
        sj_request_add_header(&r, "group-name", GROUP);
        sj_request_add_header(&r, "namespace", NS);
        sj_request_add_header(&r, "token", TOKEN);
        call(&r, &rep);
        CHECK_INT_EQ(rep.status, 0);
        CHECK_STR_EQ(rep.message, "For input string: \"abc\"");
        sj_reply_free(&rep);
    }

    /* Executors, /sync/version, logs. */
    CHECK_INT_EQ(simple("/register/job/executors",
                        "[[{\"executorInfo\":\"a\"},{\"executorInfo\":\"b\"}]]",
                        &rep),
                 1);
    CHECK_STR_EQ(rep.message,
                 "Batch Register Job Executors Processed Successfully");
    CHECK_STR_EQ(rep.data, "true");
    sj_reply_free(&rep);
    simple("/register/job/executors", "[[{\"executorInfo\":\"b\"}]]", &rep);
    sj_reply_free(&rep);
    CHECK_INT_EQ(sj_srv_executor_count(srv), 2);
    CHECK(sj_srv_has_executor(srv, "a") && !sj_srv_has_executor(srv, "zz"));
    CHECK_INT_EQ(simple("/register/job/executors", "[null]", &rep), 0);
    CHECK_STR_EQ(rep.message, "Beat register job executors arg is null");
    sj_reply_free(&rep);
    CHECK_INT_EQ(simple("/register/job/executors", "[]", &rep), 0);
    CHECK_STR_EQ(rep.message, "Index 0 out of bounds for length 0");
    sj_reply_free(&rep);

    CHECK_INT_EQ(simple("/sync/version", "null", &rep), 1);
    CHECK_STR_EQ(rep.data,
                 "{\"notifyList\":[],\"sceneList\":[],\"version\":0}");
    sj_reply_free(&rep);

    CHECK_INT_EQ(
        simple("/batch/server/report/log",
               "[[{\"logType\":\"JOB\",\"taskId\":5,\"taskBatchId\":4,"
               "\"jobId\":7,\"realTime\":1,\"fieldList\":[{\"name\":"
               "\"message\",\"value\":\"hi\"},{\"name\":\"level\",\"value\":"
               "\"INFO\"}]},{\"taskId\":6,\"fieldList\":[]}]]",
               &rep),
        1);
    CHECK_STR_EQ(rep.message,
                 "Batch Log Retry Data Upload Processed Successfully");
    sj_reply_free(&rep);
    CHECK_INT_EQ(sj_srv_log_count(srv), 2);
    /* One bad record (duplicate field name / no taskId) loses the batch. */
    simple("/batch/server/report/log",
           "[[{\"taskId\":5,\"fieldList\":[{\"name\":\"a\",\"value\":\"1\"},"
           "{\"name\":\"a\",\"value\":\"2\"}]},{\"taskId\":5,\"fieldList\":[]}]"
           "]",
           &rep);
    CHECK_INT_EQ(rep.status, 1);
    sj_reply_free(&rep);
    simple("/batch/server/report/log", "[[{\"fieldList\":[]}]]", &rep);
    sj_reply_free(&rep);
    CHECK_INT_EQ(sj_srv_log_count(srv), 2);
    {
        char *rec = NULL;
        CHECK_INT_EQ(sj_srv_log_get(srv, 0, &rec), 0);
        CHECK(rec != NULL && strstr(rec, "\"value\":\"hi\"") != NULL);
        free(rec);
    }
    {
        sj_request r;
        req_init(&r, "/batch/server/report/log", "[]", "c-1", TOKEN);
        r.req_id = 42;
        call(&r, &rep);
        CHECK_INT_EQ(rep.status, 0);
        CHECK_STR_EQ(rep.message, "The log data to be reported cannot be "
                                  "empty. ReqId:[42]");
        sj_reply_free(&rep);
    }
    teardown();
}

static void test_envelope_errors(void)
{
    sj_request r;
    sj_reply rep;
    long long at = 0;

    setup();
    /* Wrong token: the exact message, data "null", reqId echoed. */
    req_init(&r, "/beat", "[\"PING\"]", "c-1", "wrong");
    r.req_id = 77;
    call(&r, &rep);
    CHECK_INT_EQ(rep.status, 0);
    CHECK_INT_EQ(rep.req_id, 77);
    CHECK_STR_EQ(rep.data, "null");
    CHECK_STR_EQ(rep.message, "Token authentication failed. [namespace:" NS
                              " groupName:" GROUP " token:wrong]");
    sj_reply_free(&rep);

    /* No token at all, and the right token for another group. */
    req_init(&r, "/beat", "[\"PING\"]", "c-1", NULL);
    call(&r, &rep);
    CHECK_STR_EQ(rep.message, "Token authentication failed. [namespace:" NS
                              " groupName:" GROUP " token:null]");
    sj_reply_free(&rep);
    memset(&r, 0, sizeof r);
    sj_wire_set(&r.uri, "/beat");
    sj_wire_set(&r.body, "[]");
    sj_request_add_header(&r, "group-name", "other");
    sj_request_add_header(&r, "namespace", NS);
    sj_request_add_header(&r, "token", TOKEN);
    call(&r, &rep);
    CHECK_INT_EQ(rep.status, 0);
    CHECK_STR_EQ(rep.message, "Token authentication failed. [namespace:" NS
                              " groupName:other token:" TOKEN "]");
    sj_reply_free(&rep);

    /* Unknown URI. */
    CHECK_INT_EQ(simple("/job/idle/v1", "[]", &rep), 0);
    CHECK_STR_EQ(rep.message,
                 "No matching handler found. Path:[/job/idle/v1] method:[{}]");
    CHECK_STR_EQ(rep.data, "null");
    sj_reply_free(&rep);

    /* Bodies that are not a JSON array. */
    CHECK_INT_EQ(simple("/beat", "{\"a\":1}", &rep), 0);
    CHECK_STR_EQ(rep.message,
                 "Json to object conversion failed Parameters: {\"a\":1}");
    sj_reply_free(&rep);
    CHECK_INT_EQ(simple("/beat", "[1,", &rep), 0);
    sj_reply_free(&rep);
    CHECK_INT_EQ(simple("/beat", "[] []", &rep), 0);
    sj_reply_free(&rep);
    /* ... and `null`, which /beat accepts but a job endpoint does not. */
    CHECK_INT_EQ(simple("/beat", "null", &rep), 1);
    sj_reply_free(&rep);
    CHECK_INT_EQ(simple("/report/dispatch/result", "null", &rep), 0);
    sj_reply_free(&rep);

    /* A blank uri is never answered. */
    req_init(&r, "", "[]", "c-1", TOKEN);
    CHECK_INT_EQ(call(&r, &rep), SJ_EINVAL);
    CHECK(rep.message == NULL && rep.status == 0);

    /* Every request was recorded, with its receive time. */
    CHECK_INT_EQ(sj_srv_request_count(srv, "/beat"), 7);
    CHECK_INT_EQ(sj_srv_request_count(srv, NULL), 10);
    fake_now = 5555;
    simple("/sync/version", "null", &rep);
    sj_reply_free(&rep);
    CHECK_INT_EQ(sj_srv_request_get(srv, "/sync/version", 0, &r, &at), 0);
    CHECK_INT_EQ(at, 5555);
    CHECK_STR_EQ(r.body, "null");
    CHECK_STR_EQ(sj_request_header(&r, "TOKEN"), TOKEN);
    sj_request_free(&r);
    CHECK_INT_EQ(sj_srv_request_get(srv, "/beat", 2, &r, NULL), 0);
    CHECK_STR_EQ(sj_request_header(&r, "group-name"), "other");
    sj_request_free(&r);
    CHECK_INT_EQ(sj_srv_request_get(srv, "/beat", 7, &r, NULL), SJ_ENOENT);
    CHECK_INT_EQ(sj_srv_wait_requests(srv, "/beat", 7, 0), 0);
    CHECK_INT_EQ(sj_srv_wait_requests(srv, "/beat", 8, 30), SJ_ETIMEOUT);
    teardown();
}

/* ---- task types --------------------------------------------------------- */

static void test_cluster(void)
{
    sj_srv_job j = job_of(SJ_SRV_CLUSTER, "{\"a\":1}");
    sj_srv_task_info *tasks;
    json_t *d;
    size_t n;
    int64_t id;
    char *res;

    setup();
    /* No live node: CANCEL at once, nothing sent. */
    id = trigger(&j);
    CHECK_INT_EQ(id, ID_BASE);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_CANCEL);
    CHECK_INT_EQ(n_sends, 0);

    two_nodes();
    id = trigger(&j);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 1);
    d = dispatch(0);
    CHECK(d != NULL);
    /* Jackson 3 writes properties sorted; nulls omitted. */
    {
        const char *want =
            "[{\"argsStr\":\"{\\\"jobParams\\\":\\\"{\\\\\\\"a\\\\\\\":1}"
            "\\\"}\",\"executorInfo\":\"demoExecutor\",";
        CHECK(strncmp(nth_sent(SJ_SRV_URI_DISPATCH, 0)->body, want,
                      strlen(want)) == 0);
    }
    CHECK_STR_EQ(jstr(d, "argsStr"), "{\"jobParams\":\"{\\\"a\\\":1}\"}");
    CHECK_INT_EQ(jint(d, "taskBatchId"), id);
    CHECK_INT_EQ(jint(d, "taskBatchId"), ID_BASE + 1);
    CHECK_INT_EQ(jint(d, "taskId"), ID_BASE + 2);
    CHECK_INT_EQ(jint(d, "jobId"), 7);
    CHECK_INT_EQ(jint(d, "taskType"), 1);
    CHECK_STR_EQ(jstr(d, "taskName"), "CLUSTER_TASK");
    CHECK_STR_EQ(jstr(d, "groupName"), GROUP);
    CHECK_STR_EQ(jstr(d, "namespaceId"), NS);
    CHECK_INT_EQ(jint(d, "executorTimeout"), 60);
    CHECK_INT_EQ(jint(d, "executorType"), 1);
    CHECK_INT_EQ(jint(d, "parallelNum"), 2);
    CHECK(json_is_false(json_object_get(d, "retry")));
    CHECK(json_is_false(json_object_get(d, "retryStatus")));
    CHECK(json_object_get(d, "retryCount") == NULL);
    CHECK(json_object_get(d, "retryScene") == NULL);
    CHECK(json_object_get(d, "mrStage") == NULL);
    CHECK(json_object_get(d, "wfContext") == NULL);
    CHECK(json_object_get(d, "shardingIndex") == NULL);
    /* allocKey = jobId over sorted host-ids: 7 % 2 -> c-b */
    CHECK_STR_EQ(nth_sent(SJ_SRV_URI_DISPATCH, 0)->host, "c-b");

    report(d, 3, "{\"x\":1,\"a\":[true]}", NULL);
    CHECK_INT_EQ(sj_srv_wait_batch(srv, id, 0), SJ_SRV_SUCCESS);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 0); /* no cleanup for CLUSTER */
    CHECK_INT_EQ(sj_srv_batch_result(srv, id, &res), 0);
    CHECK_STR_EQ(res, "{\"x\":1,\"a\":[true]}");
    free(res);
    sj_srv_batch_tasks(srv, id, &tasks, &n);
    CHECK_INT_EQ(n, 1);
    if (n == 1) {
        CHECK_INT_EQ(tasks[0].status, SJ_SRV_SUCCESS);
        CHECK_STR_EQ(tasks[0].host_id, "c-b");
        CHECK_INT_EQ(tasks[0].parent_id, 0);
    }
    sj_srv_tasks_free(tasks, n);
    /* A duplicate report changes nothing. */
    report(d, 4, NULL, NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_SUCCESS);
    json_decref(d);

    /* Labels: c-b is labelled env=prod, c-a has no label (matches any
     * job), so a job for env=dev can only go to c-a. */
    j.labels = "{\"env\":\"dev\"}";
    id = trigger(&j);
    CHECK_STR_EQ(nth_sent(SJ_SRV_URI_DISPATCH, 1)->host, "c-a");
    teardown();
}

static void test_broadcast(void)
{
    sj_srv_job j = job_of(SJ_SRV_BROADCAST, "p");
    sj_srv_task_info *tasks;
    json_t *d0, *d1;
    const sent *s;
    int64_t id;
    size_t n;
    char *res;

    setup();
    two_nodes();
    /* Same ip:port as c-a under another host-id: no extra task. */
    beat_at("c-c", "10.0.0.1", "17889", NULL);
    id = trigger(&j);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 2);
    d0 = dispatch(0);
    d1 = dispatch(1);
    CHECK_STR_EQ(jstr(d0, "taskName"), "BROADCAST_TASK");
    CHECK_STR_EQ(jstr(d0, "argsStr"), "{\"jobParams\":\"p\"}");
    CHECK_INT_EQ(jint(d0, "retryCount"), 0);
    CHECK(jint(d0, "taskId") != jint(d1, "taskId"));
    CHECK_STR_EQ(nth_sent(SJ_SRV_URI_DISPATCH, 0)->host, "c-a");
    CHECK_STR_EQ(nth_sent(SJ_SRV_URI_DISPATCH, 1)->host, "c-b");

    report(d0, 3, "\"plain text\"", NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 0);
    report(d1, 3, "12", NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_SUCCESS);
    /* Cleanup: one stop per task row. */
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 2);
    s = nth_sent(SJ_SRV_URI_STOP, 0);
    if (s != NULL) {
        char want[200];
        snprintf(want, sizeof want,
                 "[{\"groupName\":\"%s\",\"jobId\":7,\"taskBatchId\":%" PRId64
                 "}]",
                 GROUP, id);
        CHECK_STR_EQ(s->body, want);
    }
    CHECK_INT_EQ(sj_srv_batch_result(srv, id, &res), 0);
    CHECK_STR_EQ(res, "[\"plain text\",\"12\"]"); /* strings stored raw */
    free(res);
    json_decref(d0);
    json_decref(d1);

    /* One FAIL makes the batch FAIL. */
    id = trigger(&j);
    d0 = dispatch(2);
    d1 = dispatch(3);
    report(d0, 4, NULL, NULL);
    report(d1, 3, NULL, NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_FAIL);
    sj_srv_batch_tasks(srv, id, &tasks, &n);
    CHECK_INT_EQ(n, 2);
    if (n == 2) {
        CHECK_INT_EQ(tasks[0].status, SJ_SRV_FAIL);
        CHECK_STR_EQ(tasks[0].message, "boom");
        CHECK_STR_EQ(tasks[1].result, "");
    }
    sj_srv_tasks_free(tasks, n);
    json_decref(d0);
    json_decref(d1);
    teardown();
}

static void test_sharding(void)
{
    sj_srv_job j = job_of(SJ_SRV_SHARDING, "[\"a\",\"b\",3]");
    int64_t id;

    setup();
    two_nodes();
    id = trigger(&j);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 3);
    for (size_t i = 0; i < 3; i++) {
        const char *want[] = {"{\"jobParams\":\"a\"}", "{\"jobParams\":\"b\"}",
                              "{\"jobParams\":\"3\"}"};
        const char *host[] = {"c-a", "c-b", "c-a"};
        json_t *d = dispatch(i);
        CHECK_STR_EQ(jstr(d, "taskName"), "SHARDING_TASK");
        CHECK_INT_EQ(jint(d, "shardingIndex"), i);
        CHECK_INT_EQ(jint(d, "shardingTotal"), 3);
        CHECK_STR_EQ(jstr(d, "argsStr"), want[i]);
        CHECK_STR_EQ(nth_sent(SJ_SRV_URI_DISPATCH, i)->host, host[i]);
        report(d, 3, NULL, NULL);
        json_decref(d);
    }
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_SUCCESS);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 3);

    /* Not an array of strings: no task, the batch waits for its timeout. */
    j = job_of(SJ_SRV_SHARDING, "{\"a\":1}");
    j.executor_timeout = 2;
    id = trigger(&j);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 3);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    fake_now += 2500;
    sj_srv_tick(srv, fake_now);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_STOP);
    teardown();
}

static void test_map(void)
{
    sj_srv_job j = job_of(SJ_SRV_MAP, "P");
    sj_srv_task_info *tasks;
    json_t *root, *c[3];
    int64_t id;
    size_t n;
    char *res;

    setup();
    two_nodes();
    id = trigger(&j);
    root = dispatch(0);
    CHECK_STR_EQ(jstr(root, "taskName"), "ROOT_MAP");
    CHECK_STR_EQ(jstr(root, "argsStr"), "{\"jobParams\":\"P\",\"maps\":\"\"}");
    CHECK_INT_EQ(jint(root, "mrStage"), 1);
    CHECK_INT_EQ(jint(root, "retryCount"), 0);
    CHECK_INT_EQ(jint(root, "taskType"), 4);

    CHECK_INT_EQ(map_report(root, "SECOND", "[]"), 0);
    CHECK_INT_EQ(map_report(root, "SECOND", "[[1,2],[3],{\"r\":\"eu\"}]"), 1);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 4);
    for (int i = 0; i < 3; i++) {
        c[i] = dispatch(1 + i);
        CHECK_STR_EQ(jstr(c[i], "taskName"), "SECOND");
        CHECK_INT_EQ(jint(c[i], "mrStage"), 1);
    }
    CHECK_STR_EQ(jstr(c[0], "argsStr"), "{\"jobParams\":\"P\",\"maps\":[1,2]}");
    CHECK_STR_EQ(jstr(c[2], "argsStr"),
                 "{\"jobParams\":\"P\",\"maps\":{\"r\":\"eu\"}}");

    /* The non-leaf root's own report does not complete anything. */
    report(root, 3, NULL, NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    report(c[0], 3, "\"x\"", NULL);
    report(c[1], 3, "[1]", NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    report(c[2], 3, NULL, NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_SUCCESS);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 4);
    CHECK_INT_EQ(sj_srv_batch_result(srv, id, &res), 0);
    CHECK_STR_EQ(res, "[\"x\",\"[1]\",\"\"]");
    free(res);
    sj_srv_batch_tasks(srv, id, &tasks, &n);
    CHECK_INT_EQ(n, 4);
    if (n == 4) {
        CHECK_INT_EQ(tasks[0].leaf, 0);
        CHECK_INT_EQ(tasks[1].leaf, 1);
        CHECK_INT_EQ(tasks[1].parent_id, tasks[0].task_id);
        CHECK_STR_EQ(tasks[1].wf_context, "{}");
    }
    sj_srv_tasks_free(tasks, n);
    json_decref(root);
    for (int i = 0; i < 3; i++)
        json_decref(c[i]);
    teardown();
}

/* Children finishing before the parent's report: the batch stays RUNNING
 * (the Java race of §6.6) unless complete_on_nonleaf is set. */
static void test_nonleaf_rule(void)
{
    sj_srv_job j = job_of(SJ_SRV_MAP, "P");
    for (int mode = 0; mode < 2; mode++) {
        sj_srv_config cfg;
        json_t *root, *child;
        int64_t id;

        memset(&cfg, 0, sizeof cfg);
        cfg.complete_on_nonleaf = mode;
        setup_cfg(&cfg);
        two_nodes();
        id = trigger(&j);
        root = dispatch(0);
        map_report(root, "CHILD", "[1]");
        child = dispatch(1);
        report(child, 3, "1", NULL);
        CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
        report(root, 3, NULL, NULL);
        CHECK_INT_EQ(sj_srv_batch_status(srv, id),
                     mode ? SJ_SRV_SUCCESS : SJ_SRV_RUNNING);
        json_decref(root);
        json_decref(child);
        teardown();
    }
}

/* The batch timeout fires once (JobTimeoutCheckTask is one-shot): a batch
 * it cannot settle - every task SUCCESS after the §6.6 race - stays
 * RUNNING and gets one round of stops, not one per tick. */
static void test_timeout_once(void)
{
    sj_srv_job j = job_of(SJ_SRV_MAP, "P");
    json_t *root, *child;
    int64_t id;

    setup();
    two_nodes();
    j.executor_timeout = 2;
    id = trigger(&j);
    root = dispatch(0);
    map_report(root, "CHILD", "[1]");
    child = dispatch(1);
    report(child, 3, "1", NULL);
    report(root, 3, NULL, NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    fake_now += 2600;
    sj_srv_tick(srv, fake_now);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 2);
    for (int i = 0; i < 10; i++) {
        fake_now += 20;
        sj_srv_tick(srv, fake_now);
    }
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 2);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    json_decref(root);
    json_decref(child);
    teardown();
}

/* A null sub-task element: JobArgsHolder.maps null, omitted (NON_NULL). */
static void test_map_null_element(void)
{
    sj_srv_job j = job_of(SJ_SRV_MAP, "P");
    json_t *root, *child;

    setup();
    two_nodes();
    trigger(&j);
    root = dispatch(0);
    CHECK_INT_EQ(map_report(root, "N", "[null]"), 1);
    child = dispatch(1);
    CHECK_STR_EQ(jstr(child, "argsStr"), "{\"jobParams\":\"P\"}");
    json_decref(root);
    json_decref(child);
    teardown();
}

static long long sum_maps(const json_t *d)
{
    json_t *args = json_loads(jstr(d, "argsStr"), 0, NULL), *v;
    const char *key = json_object_get(args, "maps") ? "maps" : "reduces";
    long long sum = 0;
    size_t i;
    json_array_foreach(json_object_get(args, key), i, v) sum +=
        json_is_string(v) ? atoll(json_string_value(v)) : -1000;
    json_decref(args);
    return sum;
}

static void test_map_reduce(void)
{
    sj_srv_job j = job_of(SJ_SRV_MAP_REDUCE, "2026");
    json_t *root, *d;
    int64_t id;
    char *res, buf[32];

    setup();
    two_nodes();
    j.shard_num = 2;
    id = trigger(&j);
    root = dispatch(0);
    CHECK_INT_EQ(jint(root, "taskType"), 5);
    CHECK_STR_EQ(jstr(root, "argsStr"),
                 "{\"jobParams\":\"2026\",\"maps\":\"\"}");
    CHECK_INT_EQ(map_report(root, "DOUBLE", "[1,2,3,4,5,6]"), 1);
    report(root, 3, NULL, NULL);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 7);
    for (size_t i = 1; i <= 6; i++) {
        d = dispatch(i);
        snprintf(buf, sizeof buf, "%lld", 2 * (long long)i);
        /* maps is the raw element: a number */
        {
            json_t *a = json_loads(jstr(d, "argsStr"), 0, NULL);
            CHECK_INT_EQ(json_integer_value(json_object_get(a, "maps")), i);
            json_decref(a);
        }
        report(d, 3, buf, NULL);
        json_decref(d);
    }
    /* MAP stage done: two REDUCE tasks, no stops, still RUNNING. */
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 0);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 9);
    {
        json_t *r0 = dispatch(7), *r1 = dispatch(8);
        CHECK_STR_EQ(jstr(r0, "taskName"), "REDUCE_TASK");
        CHECK_INT_EQ(jint(r0, "mrStage"), 2);
        CHECK_INT_EQ(jint(r0, "retryCount"), 0);
        CHECK_STR_EQ(jstr(r0, "argsStr"),
                     "{\"jobParams\":\"2026\",\"maps\":[\"2\",\"4\",\"6\"]}");
        CHECK_STR_EQ(jstr(r1, "argsStr"), "{\"jobParams\":\"2026\",\"maps\":"
                                          "[\"8\",\"10\",\"12\"]}");
        snprintf(buf, sizeof buf, "%lld", sum_maps(r0));
        CHECK_STR_EQ(buf, "12");
        report(r0, 3, buf, NULL);
        CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 9);
        snprintf(buf, sizeof buf, "%lld", sum_maps(r1));
        report(r1, 3, buf, NULL);
        json_decref(r0);
        json_decref(r1);
    }
    /* Two reduces: MERGE_REDUCE over their results. */
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 10);
    d = dispatch(9);
    CHECK_STR_EQ(jstr(d, "taskName"), "MERGE_REDUCE_TASK");
    CHECK_INT_EQ(jint(d, "mrStage"), 3);
    CHECK(json_object_get(d, "retryCount") == NULL);
    CHECK_STR_EQ(jstr(d, "argsStr"),
                 "{\"jobParams\":\"2026\",\"reduces\":[\"12\",\"30\"]}");
    CHECK_INT_EQ(sj_srv_batch_result(srv, id, &res), SJ_ENOENT);
    snprintf(buf, sizeof buf, "%lld", sum_maps(d));
    report(d, 3, buf, NULL);
    json_decref(d);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_SUCCESS);
    CHECK_INT_EQ(sj_srv_batch_result(srv, id, &res), 0);
    CHECK_STR_EQ(res, "42");
    free(res);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 10); /* 1+6+2+1 rows */
    json_decref(root);

    /* §10.1: three results (number, object, null) over shardNum 2. */
    id = trigger(&j);
    root = dispatch(10);
    map_report(root, "M", "[1,2,3]");
    report(root, 3, NULL, NULL);
    {
        const char *results[] = {"12", "{\"sum\":7}", NULL};
        for (int i = 0; i < 3; i++) {
            d = dispatch(11 + i);
            report(d, 3, results[i], NULL);
            json_decref(d);
        }
    }
    d = dispatch(14);
    CHECK_STR_EQ(jstr(d, "argsStr"), "{\"jobParams\":\"2026\",\"maps\":"
                                     "[\"12\",\"{\\\"sum\\\":7}\"]}");
    json_decref(d);
    d = dispatch(15);
    CHECK_STR_EQ(jstr(d, "argsStr"),
                 "{\"jobParams\":\"2026\",\"maps\":[\"\"]}");
    json_decref(d);
    json_decref(root);

    /* One reduce task: the batch completes after it, no merge. */
    j.shard_num = 1;
    j.args = NULL;
    id = trigger(&j);
    root = dispatch(16);
    CHECK_STR_EQ(jstr(root, "argsStr"), "{\"maps\":\"\"}");
    report(root, 3, "\"r\"", NULL);
    d = dispatch(17);
    CHECK_STR_EQ(jstr(d, "argsStr"), "{\"maps\":[\"r\"]}");
    report(d, 3, "\"done\"", NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_SUCCESS);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 18);
    CHECK_INT_EQ(sj_srv_batch_result(srv, id, &res), 0);
    CHECK_STR_EQ(res, "done");
    free(res);
    json_decref(d);
    json_decref(root);
    teardown();
}

/* ---- lifecycle ---------------------------------------------------------- */

static void test_timeout(void)
{
    sj_srv_job j = job_of(SJ_SRV_CLUSTER, NULL);
    sj_srv_task_info *tasks;
    sj_srv_batch_info *b;
    json_t *d;
    int64_t id;
    size_t n;

    setup();
    two_nodes();
    j.executor_timeout = 1;
    id = trigger(&j);
    d = dispatch(0);
    CHECK_STR_EQ(jstr(d, "argsStr"), "{}");
    json_decref(d);
    sj_srv_tick(srv, fake_now + 1499);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    sj_srv_tick(srv, fake_now + 1500);
    CHECK_INT_EQ(sj_srv_wait_batch(srv, id, 10), SJ_SRV_STOP);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 1); /* CLUSTER: no cleanup */
    sj_srv_batches(srv, &b, &n);
    CHECK_INT_EQ(n, 1);
    if (n == 1)
        CHECK_INT_EQ(b[0].reason, SJ_SRV_REASON_TIMEOUT);
    sj_srv_batches_free(b, n);

    /* BROADCAST, one task done: stops for every row, then cleanup. */
    j.task_type = SJ_SRV_BROADCAST;
    id = trigger(&j);
    d = dispatch(1);
    report(d, 3, NULL, NULL);
    json_decref(d);
    fake_now += 1500;
    sj_srv_tick(srv, fake_now);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_STOP);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_STOP), 1 + 2 + 2);
    sj_srv_batch_tasks(srv, id, &tasks, &n);
    CHECK_INT_EQ(n, 2);
    if (n == 2) {
        CHECK_INT_EQ(tasks[0].status, SJ_SRV_SUCCESS);
        CHECK_INT_EQ(tasks[1].status, SJ_SRV_STOP);
        CHECK_STR_EQ(tasks[1].message, "Task stopped successfully");
    }
    sj_srv_tasks_free(tasks, n);

    /* A manual stop: reason MANUAL_STOP; then a manual retry. */
    j.task_type = SJ_SRV_CLUSTER;
    j.executor_timeout = 60;
    id = trigger(&j);
    CHECK_INT_EQ(sj_srv_stop_batch(srv, id), 0);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_STOP);
    CHECK_INT_EQ(sj_srv_stop_batch(srv, id), SJ_EINVAL);
    CHECK_INT_EQ(sj_srv_stop_batch(srv, 12345), SJ_ENOENT);
    CHECK_INT_EQ(sj_srv_retry_batch(srv, id), 0);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    d = dispatch(4);
    CHECK(d != NULL);
    CHECK_INT_EQ(jint(d, "retryScene"), 2);
    CHECK(json_is_true(json_object_get(d, "retryStatus")));
    CHECK_INT_EQ(jint(d, "retryCount"), 1);
    report(d, 3, "\"again\"", NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_SUCCESS);
    json_decref(d);
    teardown();
}

static void test_retry(void)
{
    sj_srv_job j = job_of(SJ_SRV_CLUSTER, "x");
    sj_srv_node_info *nodes;
    json_t *d0, *d1, *d2;
    int64_t id;
    size_t n;

    setup();
    two_nodes();
    j.max_retry_times = 2;
    j.retry_interval = 3;
    id = trigger(&j);
    d0 = dispatch(0);
    report(d0, 4, NULL, NULL);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    sj_srv_tick(srv, fake_now + 2999);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 1);
    sj_srv_tick(srv, fake_now + 3000);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 2);
    d1 = dispatch(1);
    CHECK_INT_EQ(jint(d1, "taskId"), jint(d0, "taskId"));
    CHECK(json_is_true(json_object_get(d1, "retryStatus")));
    CHECK(json_is_true(json_object_get(d1, "retry")));
    CHECK_INT_EQ(jint(d1, "retryScene"), 1);
    CHECK_INT_EQ(jint(d1, "retryCount"), 1);
    report(d1, 4, NULL, NULL);
    fake_now += 3000;
    sj_srv_tick(srv, fake_now);
    d2 = dispatch(2);
    CHECK_INT_EQ(jint(d2, "retryCount"), 2);
    report(d2, 4, NULL, NULL);
    fake_now += 3000;
    sj_srv_tick(srv, fake_now);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 3);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_FAIL);
    json_decref(d0);
    json_decref(d1);
    json_decref(d2);

    /* Echo rule: retryScene=2 reported without retryStatus asks for a
     * manual retry, at once. */
    id = trigger(&j);
    d0 = dispatch(3);
    json_object_set_new(d0, "retryScene", json_integer(2));
    report(d0, 3, NULL, NULL);
    CHECK_INT_EQ(count_sent(SJ_SRV_URI_DISPATCH), 5);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
    d1 = dispatch(4);
    report(d1, 3, NULL, NULL); /* echoes retryStatus=true */
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_SUCCESS);
    json_decref(d0);
    json_decref(d1);

    /* A refused dispatch (status 1, data false) without retries: FAIL. */
    j.max_retry_times = 0;
    auto_outcome = SJ_SRV_SEND_REJECTED;
    auto_message = "unknown executor";
    id = trigger(&j);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_FAIL);
    {
        sj_srv_task_info *t;
        sj_srv_batch_tasks(srv, id, &t, &n);
        CHECK_INT_EQ(n, 1);
        if (n == 1)
            CHECK_STR_EQ(t[0].message, "unknown executor");
        sj_srv_tasks_free(t, n);
    }

    /* A transport failure flags the node not alive and fails the task;
     * its next beat makes it alive again. */
    auto_outcome = SJ_SRV_SEND_FAILED;
    auto_message = "deadline exceeded";
    id = trigger(&j);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_FAIL);
    sj_srv_nodes(srv, &nodes, &n);
    CHECK(n == 2 && nodes[0].alive + nodes[1].alive == 1);
    sj_srv_nodes_free(nodes, n);
    beat_at("c-b", "10.0.0.2", "17889", NULL);
    sj_srv_nodes(srv, &nodes, &n);
    CHECK(n == 2 && nodes[0].alive + nodes[1].alive == 2);
    sj_srv_nodes_free(nodes, n);

    /* With retries, a transport failure is retried after the interval on
     * another node, as the same first dispatch. */
    j.max_retry_times = 2;
    auto_outcome = MANUAL;
    id = trigger(&j);
    {
        const sent *s = nth_sent(SJ_SRV_URI_DISPATCH, 7);
        CHECK(s != NULL);
        if (s != NULL) {
            char *first = strdup(s->body);
            sj_srv_send_done(srv, s->token, SJ_SRV_SEND_FAILED, "refused");
            CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_RUNNING);
            fake_now += 3000;
            sj_srv_tick(srv, fake_now);
            s = nth_sent(SJ_SRV_URI_DISPATCH, 8);
            CHECK(s != NULL && strcmp(s->body, first) == 0);
            CHECK(s != NULL && strcmp(s->host, "c-a") == 0);
            if (s != NULL)
                sj_srv_send_done(srv, s->token, SJ_SRV_SEND_ACCEPTED, NULL);
            free(first);
        }
    }
    teardown();
}

static void test_workflow_context(void)
{
    sj_srv_job j = job_of(SJ_SRV_BROADCAST, "w");
    json_t *d0, *d1, *m;
    int64_t id;
    char *ctx;

    setup();
    two_nodes();
    j.workflow_task_batch_id = 9007199254740993LL;
    j.workflow_node_id = 31;
    j.wf_context = "{\"a\":1,\"b\":\"x\"}";
    id = trigger(&j);
    d0 = dispatch(0);
    d1 = dispatch(1);
    CHECK_STR_EQ(jstr(d0, "wfContext"), "{\"a\":1,\"b\":\"x\"}");
    CHECK_INT_EQ(jint(d0, "workflowTaskBatchId"), 9007199254740993LL);
    CHECK_INT_EQ(jint(d0, "workflowNodeId"), 31);
    report(d0, 3, NULL, "{\"b\":\"y\",\"c\":2}");
    report(d1, 3, NULL, "{\"d\":null,\"e\":true}");
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_SUCCESS);
    CHECK_INT_EQ(sj_srv_batch_wf_context(srv, id, &ctx), 0);
    m = json_loads(ctx, 0, NULL);
    CHECK_INT_EQ(json_object_size(m), 4);
    CHECK_INT_EQ(jint(m, "a"), 1);
    CHECK_STR_EQ(jstr(m, "b"), "y");
    CHECK_INT_EQ(jint(m, "c"), 2);
    CHECK(json_is_true(json_object_get(m, "e")));
    CHECK(json_object_get(m, "d") == NULL);
    json_decref(m);
    free(ctx);
    json_decref(d0);
    json_decref(d1);
    teardown();
}

/* ---- sj_emu over real gRPC ---------------------------------------------- */

static long long factor(void)
{
    const char *f = getenv("SJ_TIME_FACTOR");
    return f != NULL && atoi(f) > 0 ? atoi(f) : 1;
}

static atomic_int client_dispatches, client_stops, client_bad_token;
static sj_request last_dispatch;
static atomic_int have_dispatch;

/* A minimal client endpoint: accepts every dispatch. */
static void client_handler(void *ud, const sj_request *req, sj_reply *reply)
{
    const char *tok = sj_request_header(req, "SJ-TOKEN");
    (void)ud;
    if (tok == NULL || strcmp(tok, TOKEN) != 0) {
        atomic_fetch_add(&client_bad_token, 1);
        sj_reply_set(reply, req->req_id, 0, "Authentication failed.", "null");
        return;
    }
    if (strcmp(req->uri, SJ_SRV_URI_DISPATCH) == 0) {
        if (!atomic_load(&have_dispatch)) {
            sj_request_copy(&last_dispatch, req);
            atomic_store(&have_dispatch, 1);
        }
        atomic_fetch_add(&client_dispatches, 1);
    } else if (strcmp(req->uri, SJ_SRV_URI_STOP) == 0) {
        atomic_fetch_add(&client_stops, 1);
    }
    sj_reply_set(reply, req->req_id, 1, "", "true");
}

static int client_call(sj_channel *ch, const char *uri, const char *body,
                       int client_port, sj_reply *rep)
{
    sj_request r;
    char port[16];
    int rc;
    snprintf(port, sizeof port, "%d", client_port);
    memset(&r, 0, sizeof r);
    r.req_id = 5;
    sj_wire_set(&r.uri, uri);
    sj_wire_set(&r.body, body);
    sj_request_add_header(&r, "host-id", "c-grpc");
    sj_request_add_header(&r, "host-ip", "127.0.0.1");
    sj_request_add_header(&r, "host-port", port);
    sj_request_add_header(&r, "group-name", GROUP);
    sj_request_add_header(&r, "namespace", NS);
    sj_request_add_header(&r, "token", TOKEN);
    rc = sj_channel_call_sync(ch, &r, (int)(5000 * factor()), NULL, rep, NULL,
                              0);
    sj_request_free(&r);
    return rc;
}

static void test_grpc_emu(void)
{
    sj_server *client = NULL;
    sj_channel *ch = NULL;
    sj_emu *emu = NULL;
    sj_srv *s;
    sj_srv_job j = job_of(SJ_SRV_BROADCAST, "g");
    sj_reply rep;
    char target[64], addr[64];
    int emu_port = 0, client_port = 0, rc;
    int64_t id;

    CHECK_INT_EQ(sj_emu_open(NULL, "127.0.0.1:0", &emu, &emu_port), 0);
    CHECK(emu_port > 0);
    CHECK_INT_EQ(sj_server_start("127.0.0.1:0", client_handler, NULL, &client,
                                 &client_port),
                 0);
    if (emu == NULL || client == NULL)
        goto done;
    s = sj_emu_srv(emu);
    snprintf(target, sizeof target, "127.0.0.1:%d", emu_port);
    CHECK_INT_EQ(sj_channel_open(target, NULL, &ch), 0);

    rc = client_call(ch, "/beat", "[\"PING\"]", client_port, &rep);
    CHECK_INT_EQ(rc, 0);
    CHECK_INT_EQ(rep.req_id, 5);
    CHECK_STR_EQ(rep.data, "\"PONG\"");
    sj_reply_free(&rep);

    id = 0;
    CHECK_INT_EQ(sj_srv_trigger(s, &j, &id), 0);
    for (int i = 0; i < 300 && !atomic_load(&have_dispatch); i++)
        usleep(10 * 1000 * factor());
    CHECK(atomic_load(&have_dispatch));
    if (atomic_load(&have_dispatch)) {
        char port[16];
        json_t *arr = json_loads(last_dispatch.body, 0, NULL);
        json_t *d = json_array_get(arr, 0);
        snprintf(port, sizeof port, "%d", emu_port);
        CHECK_STR_EQ(last_dispatch.uri, SJ_SRV_URI_DISPATCH);
        CHECK_STR_EQ(sj_request_header(&last_dispatch, "group-name"),
                     "DEFAULT_SERVER");
        CHECK_STR_EQ(sj_request_header(&last_dispatch, "token"),
                     SJ_EMU_SERVER_TOKEN);
        CHECK_STR_EQ(sj_request_header(&last_dispatch, "namespace"), NS);
        CHECK_STR_EQ(sj_request_header(&last_dispatch, "host-port"), port);
        CHECK(sj_request_header(&last_dispatch, "host-id") != NULL);
        CHECK_INT_EQ(jint(d, "taskBatchId"), id);
        if (d != NULL) {
            json_t *r = json_object(), *ra = json_array();
            char *body;
            json_object_set(r, "jobId", json_object_get(d, "jobId"));
            json_object_set(r, "taskBatchId",
                            json_object_get(d, "taskBatchId"));
            json_object_set(r, "taskId", json_object_get(d, "taskId"));
            json_object_set(r, "taskType", json_object_get(d, "taskType"));
            json_object_set_new(r, "taskStatus", json_integer(3));
            json_object_set_new(r, "retry", json_false());
            json_object_set_new(r, "retryStatus", json_false());
            json_object_set_new(r, "executeResult",
                                json_pack("{s:i,s:s,s:s}", "status", 1,
                                          "result", "ok", "message", "ok"));
            json_array_append_new(ra, r);
            body = json_dumps(ra, JSON_COMPACT);
            CHECK_INT_EQ(client_call(ch, "/report/dispatch/result", body,
                                     client_port, &rep),
                         0);
            CHECK_INT_EQ(rep.status, 1);
            sj_reply_free(&rep);
            free(body);
            json_decref(ra);
        }
        json_decref(arr);
    }
    CHECK_INT_EQ(sj_srv_wait_batch(s, id, (int)(5000 * factor())),
                 SJ_SRV_SUCCESS);
    for (int i = 0; i < 300 && atomic_load(&client_stops) < 1; i++)
        usleep(10 * 1000 * factor());
    CHECK_INT_EQ(atomic_load(&client_stops), 1); /* cleanup stop */
    CHECK_INT_EQ(atomic_load(&client_bad_token), 0);

    /* A crafted call with a wrong SJ-TOKEN reaches the client as such. */
    snprintf(addr, sizeof addr, "127.0.0.1:%d", client_port);
    CHECK_INT_EQ(sj_emu_call(emu, addr, "/job/stop/v1", "[{}]", "nope",
                             (int)(3000 * factor()), &rep),
                 0);
    CHECK_INT_EQ(rep.status, 0);
    CHECK_INT_EQ(atomic_load(&client_bad_token), 1);
    sj_reply_free(&rep);

    /* Kill and restart the server on the same port: state survives. */
    sj_emu_stop(emu);
    CHECK_INT_EQ(sj_emu_port(emu), 0);
    CHECK(client_call(ch, "/beat", "[]", client_port, &rep) != 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", emu_port);
    CHECK_INT_EQ(sj_emu_start(emu, addr, NULL), 0);
    CHECK_INT_EQ(sj_emu_port(emu), emu_port);
    rc = -1;
    for (int i = 0; i < 50 && rc != 0; i++) {
        rc = client_call(ch, "/beat", "[]", client_port, &rep);
        if (rc == 0)
            sj_reply_free(&rep);
        else
            usleep(100 * 1000);
    }
    CHECK_INT_EQ(rc, 0);
    CHECK_INT_EQ(sj_srv_batch_status(s, id), SJ_SRV_SUCCESS);

    /* A dead client: the dispatch fails, the node is flagged not alive. */
    sj_server_stop(client);
    client = NULL;
    j.task_type = SJ_SRV_CLUSTER;
    CHECK_INT_EQ(sj_srv_trigger(s, &j, &id), 0);
    CHECK_INT_EQ(sj_srv_wait_batch(s, id, (int)(8000 * factor())), SJ_SRV_FAIL);
    {
        sj_srv_node_info *nodes;
        size_t n;
        sj_srv_nodes(s, &nodes, &n);
        CHECK(n == 1 && nodes[0].alive == 0);
        sj_srv_nodes_free(nodes, n);
    }
done:
    sj_channel_close(ch);
    sj_server_stop(client);
    sj_emu_destroy(emu);
    sj_request_free(&last_dispatch);
}

int main(void)
{
    sj_log_set_level(SJ_LOG_ERROR);
    SJ_TEST_RUN(test_beat_registry);
    SJ_TEST_RUN(test_envelope_errors);
    SJ_TEST_RUN(test_cluster);
    SJ_TEST_RUN(test_broadcast);
    SJ_TEST_RUN(test_sharding);
    SJ_TEST_RUN(test_map);
    SJ_TEST_RUN(test_nonleaf_rule);
    SJ_TEST_RUN(test_timeout_once);
    SJ_TEST_RUN(test_map_null_element);
    SJ_TEST_RUN(test_map_reduce);
    SJ_TEST_RUN(test_timeout);
    SJ_TEST_RUN(test_retry);
    SJ_TEST_RUN(test_workflow_context);
    SJ_TEST_RUN(test_grpc_emu);
    return SJ_TEST_DONE("test_emu");
}
