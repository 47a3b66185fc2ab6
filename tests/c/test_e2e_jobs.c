/*
 * End to end, job types and preemptive interruption (issue 3): the real
 * snailjob-lua binary (two host processes) against the in-process emulator
 * over real gRPC on loopback.
 *
 * Host A (one worker, 32 MiB memory cap) runs every targeted job, so the
 * jobs that follow an interruption prove the same worker recovered. Host B
 * joins for broadcast and sharding.
 *
 * Interruption latency is measured as the time_stamp of the task's remote
 * "interrupted: ..." log record (the host's wall clock) minus the wall
 * clock just before the test asked the emulator to send the stop: an upper
 * bound of the delay after the stop reached the host.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_harness.h"
#include "sj_log.h"
#include "sj_srv.h"

#define URI_RESULT "/report/dispatch/result"

enum { JOB_ID = 4242 }; /* the job id of every job on host A */
static const char executors_lua[] =
    "local sj = require 'snailjob'\n"
    "\n"
    "sj.job('testJobExecutor', function(args)\n"
    "  return sj.success({ params = args.job_params,\n"
    "    info = args.executor_info, batch = args.task_batch_id,\n"
    "    task = args.task_id, job = args.job_id })\n"
    "end)\n"
    "sj.job('echoJob', function(args)\n"
    "  return sj.success(args.job_params)\n"
    "end)\n"
    "sj.job('failJob', function(args)\n"
    "  return sj.failure('bad input: ' .. args.job_params)\n"
    "end)\n"
    "sj.job('nothingJob', function(args) end)\n"
    "sj.job('plainJob', function(args)\n"
    "  return { 1, 2.5, 'x', { k = false } }\n"
    "end)\n"
    "sj.job('portJob', function(args)\n"
    "  return sj.success({ port = os.getenv('SNAIL_HOST_PORT'),\n"
    "                      p = args.job_params })\n"
    "end)\n"
    "sj.job('shardJob', function(args)\n"
    "  return sj.success({ i = args.sharding_index,\n"
    "    n = args.sharding_total, p = args.job_params })\n"
    "end)\n"
    "sj.job('wfJob', function(args)\n"
    "  local ga = args:get_wf_context('a')\n"
    "  local wa = args.wf_context.a\n"
    "  local wk = args.wf_context.keep\n"
    "  args:append_context('a', 2)\n"
    "  args:append_context('b', { x = 'y' })\n"
    "  return sj.success({ ga = ga, wa = wa, wk = wk })\n"
    "end)\n"
    "sj.job('spinJob', function(args)\n"
    "  sj.log.info('spin start')\n"
    "  while true do end\n"
    "end)\n"
    "sj.job('pcallSpinJob', function(args)\n"
    "  sj.log.info('spin start')\n"
    "  while true do pcall(function() while true do end end) end\n"
    "end)\n"
    "sj.job('coSpinJob', function(args)\n"
    "  sj.log.info('spin start')\n"
    "  while true do\n"
    "    coroutine.resume(coroutine.create(function()\n"
    "      while true do pcall(function() while true do end end) end\n"
    "    end))\n"
    "  end\n"
    "end)\n"
    "sj.job('xpcallSpinJob', function(args)\n"
    "  sj.log.info('spin start')\n"
    "  while true do\n"
    "    xpcall(function() while true do end end,\n"
    "           function(m) while true do end end)\n"
    "  end\n"
    "end)\n"
    "-- created while the file loads, before any task runs\n"
    "local early = coroutine.wrap(function()\n"
    "  while true do pcall(function() while true do end end) end\n"
    "end)\n"
    "sj.job('earlyCoSpinJob', function(args)\n"
    "  sj.log.info('spin start')\n"
    "  while true do pcall(early) end\n"
    "end)\n"
    "local early2 = coroutine.wrap(function()\n"
    "  while true do pcall(function() while true do end end) end\n"
    "end)\n"
    "sj.job('earlyCoBigHeapJob', function(args)\n"
    "  local keep = {}\n"
    "  for i = 1, 150000 do keep[i] = { i } end\n"
    "  sj.log.info('spin start')\n"
    "  while true do pcall(early2) end\n"
    "end)\n"
    "sj.job('sleepJob', function(args)\n"
    "  sj.log.info('spin start')\n"
    "  sj.sleep(10)\n"
    "  return sj.success('woke up')\n"
    "end)\n"
    "sj.job('pcallSleepJob', function(args)\n"
    "  sj.log.info('spin start')\n"
    "  while true do pcall(sj.sleep, 10) end\n"
    "end)\n"
    "sj.job('memBigString', function(args)\n"
    "  local s = string.rep('z', 200 * 1024 * 1024)\n"
    "  return sj.success(#s)\n"
    "end)\n"
    "sj.job('memBomb', function(args)\n"
    "  local t, i = {}, 0\n"
    "  while true do\n"
    "    i = i + 1\n"
    "    t[i] = string.rep('x', 8000) .. i\n"
    "  end\n"
    "end)\n"
    "sj.job('memBombCaught', function(args)\n"
    "  local ok = pcall(function()\n"
    "    local t, i = {}, 0\n"
    "    while true do i = i + 1; t[i] = string.rep('y', 8000) .. i end\n"
    "  end)\n"
    "  return sj.success('survived ' .. tostring(ok))\n"
    "end)\n"
    "sj.job('objErrorJob', function(args)\n"
    "  error(setmetatable({}, { __tostring = function()\n"
    "    return 'custom failure object' end }))\n"
    "end)\n"
    "sj.job('slowShard', function(args)\n"
    "  sj.log.info('begin')\n"
    "  sj.sleep(0.15)\n"
    "  sj.log.info('end')\n"
    "  return sj.success(args.job_params)\n"
    "end)\n"
    "local function inner(x) error('boom ' .. x) end\n"
    "sj.job('errorJob', function(args)\n"
    "  sj.log.info('about to fail')\n"
    "  inner(args.job_params)\n"
    "end)\n";

static sj_emu *emu;
static sj_srv *srv;
static int emu_port;
static h_host host_a, host_b;
static char target_a[64];

/* ---- small helpers ------------------------------------------------------ */

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Trigger and wait for the end; returns the final status. */
static int run(const sj_srv_job *j, int64_t *batch)
{
    int64_t id = 0;
    int rc = sj_srv_trigger(srv, j, &id);
    CHECKF(rc == 0, "trigger %s: %d", j->executor_info, rc);
    if (batch != NULL)
        *batch = id;
    if (rc != 0)
        return rc;
    return sj_srv_wait_batch(srv, id, (int)H_MS(8000));
}

/* The batch's only task (copied out) or an empty info (task_id 0). */
static sj_srv_task_info the_task(int64_t batch)
{
    sj_srv_task_info *v = NULL, t;
    size_t n = 0;
    memset(&t, 0, sizeof t);
    if (sj_srv_batch_tasks(srv, batch, &v, &n) == 0 && n >= 1) {
        t = v[0];
        memset(&v[0], 0, sizeof v[0]); /* ownership moves to t */
    }
    CHECKF(n == 1, "batch %" PRId64 " has %zu tasks", batch, n);
    sj_srv_tasks_free(v, n);
    return t;
}

/* Members of a task copied out by the_task (the struct is the caller's). */
static void task_free(sj_srv_task_info *t)
{
    sj_srv_task_info *heap = malloc(sizeof *heap);
    if (heap == NULL)
        return;
    *heap = *t;
    sj_srv_tasks_free(heap, 1);
    memset(t, 0, sizeof *t);
}

/* Result reports received for `task_id` (count), and the last one's
 * DispatchJobResultRequest (new reference) in *last if not NULL. */
static size_t reports_for(int64_t task_id, json_t **last)
{
    size_t n = sj_srv_request_count(srv, URI_RESULT), found = 0;
    if (last != NULL)
        *last = NULL;
    for (size_t i = 0; i < n; i++) {
        sj_request r;
        memset(&r, 0, sizeof r);
        if (sj_srv_request_get(srv, URI_RESULT, i, &r, NULL) != 0)
            continue;
        json_t *arr = json_loads(r.body ? r.body : "", 0, NULL);
        json_t *d = json_array_get(arr, 0);
        json_t *id = json_object_get(d, "taskId");
        if (json_is_integer(id) && json_integer_value(id) == task_id) {
            found++;
            if (last != NULL) {
                json_decref(*last);
                *last = json_incref(d);
            }
        }
        json_decref(arr);
        sj_request_free(&r);
    }
    return found;
}

static const char *field_of(const json_t *rec, const char *name)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(rec, "fieldList"), i, f)
    {
        const char *n = json_string_value(json_object_get(f, "name"));
        if (n != NULL && strcmp(n, name) == 0)
            return json_string_value(json_object_get(f, "value"));
    }
    return NULL;
}

/*
 * Wait (up to timeout_ms) for a remote log record of `task_id` whose
 * message contains `needle`; returns the record (new reference) or NULL.
 */
static json_t *wait_log(int64_t task_id, const char *needle,
                        long long timeout_ms)
{
    long long until = h_now() + timeout_ms;
    size_t seen = 0;
    do {
        size_t n = sj_srv_log_count(srv);
        for (size_t i = seen; i < n; i++) {
            char *text = NULL;
            if (sj_srv_log_get(srv, i, &text) != 0)
                continue;
            json_t *rec = json_loads(text, 0, NULL);
            free(text);
            json_t *id = json_object_get(rec, "taskId");
            const char *msg = field_of(rec, "message");
            if (json_is_integer(id) && json_integer_value(id) == task_id &&
                msg != NULL && strstr(msg, needle) != NULL)
                return rec;
            json_decref(rec);
        }
        seen = n;
        h_sleep_ms(5);
    } while (h_now() < until);
    return NULL;
}

static long long rec_stamp(const json_t *rec)
{
    const char *s = field_of(rec, "time_stamp");
    return s != NULL ? atoll(s) : 0;
}

/* Time of day in ms of the first line of h's log containing both `a` and
 * `b` (the host's own clock and format "YYYY-mm-dd HH:MM:SS.mmm"), or -1. */
static long long log_line_ms(h_host *h, const char *a, const char *b)
{
    char *log = h_read_file(h->log);
    long long ms = -1;
    for (char *line = log; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        int Y, M, D, hh, mm, ss, mss;
        if (strstr(line, a) != NULL && strstr(line, b) != NULL &&
            sscanf(line, "%d-%d-%d %d:%d:%d.%d", &Y, &M, &D, &hh, &mm, &ss,
                   &mss) == 7) {
            struct tm tm = {.tm_year = Y - 1900,
                            .tm_mon = M - 1,
                            .tm_mday = D,
                            .tm_hour = hh,
                            .tm_min = mm,
                            .tm_sec = ss};
            ms = (long long)timegm(&tm) * 1000 + mss;
            break;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(log);
    return ms;
}

/* A cluster job on A succeeds: the worker is usable. */
static void check_next_job_works(const char *after)
{
    sj_srv_job j = h_job_on(JOB_ID, target_a, "echoJob", after);
    int64_t b;
    int st = run(&j, &b);
    CHECKF(st == SJ_SRV_SUCCESS, "job after %s: status %d", after, st);
    sj_srv_task_info t = the_task(b);
    CHECKF(t.result && strcmp(t.result, after) == 0, "after %s: result %s",
           after, t.result ? t.result : "(null)");
    task_free(&t);
}

static int host_has_node(int port)
{
    sj_srv_node_info *v = NULL;
    size_t n = 0;
    int found = 0;
    if (sj_srv_nodes(srv, &v, &n) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        found |= v[i].port == port && v[i].alive;
    sj_srv_nodes_free(v, n);
    return found;
}

/* Wait until h is registered with the emulator and its workers are up
 * (it logs "listening" once they are; it beats earlier than that). */
static int wait_node(h_host *h)
{
    long long until = h_now() + H_MS(10000);
    int port = h->port;
    while (h_now() < until && h_host_alive(h)) {
        if (host_has_node(port) && h_log_has(h, "listening on port") &&
            h_log_has(h, "executor xpcallSpinJob")) {
            h_sleep_ms(50);
            return 1;
        }
        h_sleep_ms(20);
    }
    return 0;
}

/* Send a hand-made CLUSTER dispatch to host A and check it is accepted
 * (status 1, data "true"); *took gets the reply's round trip in ms. */
static void crafted_dispatch(int64_t batch, int64_t task_id,
                             const char *executor, const char *args_str,
                             long long *took)
{
    json_t *d = json_pack(
        "[{s:s,s:s,s:I,s:I,s:I,s:i,s:s,s:i,s:i,s:s,s:i,s:s,s:b,s:b}]",
        "namespaceId", SJ_SRV_DEFAULT_NAMESPACE, "groupName",
        SJ_SRV_DEFAULT_GROUP, "jobId", (json_int_t)99, "taskBatchId",
        (json_int_t)batch, "taskId", (json_int_t)task_id, "taskType", 1,
        "taskName", "CLUSTER_TASK", "parallelNum", 1, "executorType", 2,
        "executorInfo", executor, "executorTimeout", 10, "argsStr", args_str,
        "retryStatus", 0, "retry", 0);
    char *body = json_dumps(d, JSON_COMPACT);
    sj_reply reply;
    long long t0 = h_now();
    memset(&reply, 0, sizeof reply);
    int rc = sj_emu_call(emu, target_a, SJ_SRV_URI_DISPATCH, body, NULL,
                         (int)H_MS(3000), &reply);
    *took = h_now() - t0;
    CHECKF(rc == 0 && reply.status == 1 && reply.data &&
               strcmp(reply.data, "true") == 0,
           "crafted dispatch of %" PRId64 ": rc %d status %d data %s", task_id,
           rc, reply.status, reply.data ? reply.data : "(null)");
    sj_reply_free(&reply);
    free(body);
    json_decref(d);
}

/* ---- 1. cluster ---------------------------------------------------------- */

static void test_cluster(void)
{
    /* job_params passed through exactly, even text that looks like JSON;
     * the result JSON reaches the server as returned. */
    static const char params[] =
        "{\"a\":1, \"s\":\"\\u00fc\\n\"} tail \xc3\xa9";
    sj_srv_job j = h_job_on(JOB_ID, target_a, "testJobExecutor", params);
    int64_t b;
    json_t *rep = NULL, *want;

    CHECK(run(&j, &b) == SJ_SRV_SUCCESS);
    sj_srv_task_info t = the_task(b);
    CHECK(reports_for(t.task_id, &rep) == 1);
    want = json_object();
    json_object_set_new(want, "params", json_string(params));
    json_object_set_new(want, "info", json_string("testJobExecutor"));
    json_object_set_new(want, "batch", json_integer(b));
    json_object_set_new(want, "task", json_integer(t.task_id));
    json_object_set_new(want, "job", json_integer(4242));
    {
        json_t *er = json_object_get(rep, "executeResult");
        json_t *res = json_object_get(er, "result");
        char *got = res ? json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        char *exp = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        CHECKF(json_equal(res, want), "result %s, expected %s",
               got ? got : "(none)", exp);
        CHECK(json_integer_value(json_object_get(rep, "taskStatus")) == 3);
        CHECK(json_integer_value(json_object_get(er, "status")) == 1);
        /* stored as its JSON text (protocol.md §4.3) */
        json_t *stored = json_loads(t.result ? t.result : "", 0, NULL);
        CHECK(json_equal(stored, want));
        json_decref(stored);
        free(got);
        free(exp);
    }
    json_decref(want);
    json_decref(rep);
    task_free(&t);

    /* sj.failure(msg): FAIL with exactly that message */
    j = h_job_on(JOB_ID, target_a, "failJob", "x1");
    CHECK(run(&j, &b) == SJ_SRV_FAIL);
    t = the_task(b);
    CHECK(t.status == SJ_SRV_FAIL);
    CHECKF(t.message && strcmp(t.message, "bad input: x1") == 0, "message %s",
           t.message ? t.message : "(null)");
    CHECK(reports_for(t.task_id, &rep) == 1);
    CHECK(json_integer_value(json_object_get(rep, "taskStatus")) == 4);
    json_decref(rep);
    task_free(&t);

    /* returning nothing: SUCCESS without a result */
    j = h_job_on(JOB_ID, target_a, "nothingJob", "x2");
    CHECK(run(&j, &b) == SJ_SRV_SUCCESS);
    t = the_task(b);
    CHECK(t.result != NULL && t.result[0] == '\0');
    CHECK(reports_for(t.task_id, &rep) == 1);
    {
        json_t *res =
            json_object_get(json_object_get(rep, "executeResult"), "result");
        CHECK(res == NULL || json_is_null(res));
    }
    json_decref(rep);
    task_free(&t);

    /* any other returned value is the result */
    j = h_job_on(JOB_ID, target_a, "plainJob", "x3");
    CHECK(run(&j, &b) == SJ_SRV_SUCCESS);
    t = the_task(b);
    CHECK(reports_for(t.task_id, &rep) == 1);
    {
        json_t *res =
            json_object_get(json_object_get(rep, "executeResult"), "result");
        json_t *want2 = json_loads("[1,2.5,\"x\",{\"k\":false}]", 0, NULL);
        char *got = res ? json_dumps(res, JSON_COMPACT) : NULL;
        CHECKF(json_equal(res, want2), "plain result %s", got ? got : "(none)");
        free(got);
        json_decref(want2);
    }
    json_decref(rep);
    task_free(&t);

    /* An argsStr that is not the JSON holder is the parameter text itself
     * (crafted dispatches: the emulator always builds a holder). */
    static const char *const raw[] = {"plain text, not {json", "[1,2]",
                                      "\"quoted\""};
    for (int k = 0; k < 3; k++) {
        int64_t task_id = 7000000000000000001LL + k;
        long long took;
        crafted_dispatch(7000000000000000000LL + k, task_id, "echoJob", raw[k],
                         &took);

        long long until = h_now() + H_MS(5000);
        while (reports_for(task_id, NULL) == 0 && h_now() < until)
            h_sleep_ms(10);
        CHECK(reports_for(task_id, &rep) == 1);
        json_t *er = json_object_get(rep, "executeResult");
        const char *got = json_string_value(json_object_get(er, "result"));
        CHECKF(got && strcmp(got, raw[k]) == 0, "argsStr %s gave %s", raw[k],
               got ? got : "(not a string)");
        CHECK(json_integer_value(json_object_get(rep, "taskStatus")) == 3);
        json_decref(rep);
    }
}

/* ---- 2. broadcast over 2 hosts ------------------------------------------ */

static void test_broadcast(void)
{
    sj_srv_job j = h_job_on(JOB_ID, target_a, "portJob", "bc");
    sj_srv_task_info *v = NULL;
    size_t n = 0;
    int64_t b;
    int seen_a = 0, seen_b = 0;

    j.task_type = SJ_SRV_BROADCAST;
    j.targets = NULL;
    j.n_targets = 0;
    CHECK(run(&j, &b) == SJ_SRV_SUCCESS);
    CHECK(sj_srv_batch_tasks(srv, b, &v, &n) == 0);
    CHECKF(n == 2, "broadcast tasks: %zu", n);
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_loads(v[i].result ? v[i].result : "", 0, NULL);
        const char *port = json_string_value(json_object_get(r, "port"));
        const char *p = json_string_value(json_object_get(r, "p"));
        CHECK(v[i].status == SJ_SRV_SUCCESS);
        CHECK(p && strcmp(p, "bc") == 0);
        if (port && atoi(port) == host_a.port)
            seen_a++;
        if (port && atoi(port) == host_b.port)
            seen_b++;
        json_decref(r);
    }
    CHECKF(seen_a == 1 && seen_b == 1, "broadcast ran on A %d, B %d times",
           seen_a, seen_b);
    if (n == 2)
        CHECK(v[0].host_id && v[1].host_id &&
              strcmp(v[0].host_id, v[1].host_id) != 0);
    sj_srv_tasks_free(v, n);
}

/* ---- 3. static sharding -------------------------------------------------- */

static void test_sharding(void)
{
    static const char *const elems[] = {"a", "b", "c"};
    sj_srv_job j =
        h_job_on(JOB_ID, target_a, "shardJob", "[\"a\",\"b\",\"c\"]");
    sj_srv_task_info *v = NULL;
    size_t n = 0;
    int64_t b;
    int seen[3] = {0, 0, 0};

    j.task_type = SJ_SRV_SHARDING;
    j.targets = NULL;
    j.n_targets = 0;
    j.parallel_num = 2;
    CHECK(run(&j, &b) == SJ_SRV_SUCCESS);
    CHECK(sj_srv_batch_tasks(srv, b, &v, &n) == 0);
    CHECKF(n == 3, "sharding tasks: %zu", n);
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_loads(v[i].result ? v[i].result : "", 0, NULL);
        json_t *ji = json_object_get(r, "i"), *jn = json_object_get(r, "n");
        const char *p = json_string_value(json_object_get(r, "p"));
        CHECKF(json_is_integer(ji) && json_is_integer(jn) && p,
               "shard result %s", v[i].result ? v[i].result : "(null)");
        if (json_is_integer(ji) && json_is_integer(jn) && p) {
            long long idx = json_integer_value(ji);
            CHECK(json_integer_value(jn) == 3);
            CHECKF(idx >= 0 && idx < 3 && strcmp(elems[idx], p) == 0,
                   "shard %lld got params %s", idx, p);
            if (idx >= 0 && idx < 3)
                seen[idx]++;
        }
        json_decref(r);
    }
    CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    /* spread over both hosts (round robin) */
    if (n == 3)
        CHECK(v[0].host_id && v[1].host_id &&
              strcmp(v[0].host_id, v[1].host_id) != 0);
    sj_srv_tasks_free(v, n);
}

/* ---- 4. workflow context ------------------------------------------------- */

static void test_workflow(void)
{
    sj_srv_job j = h_job_on(JOB_ID, target_a, "wfJob", "wf");
    json_t *rep = NULL, *res, *ctx, *want;
    char *merged = NULL;
    int64_t b;

    j.workflow_task_batch_id = 8000000000000000007LL;
    j.workflow_node_id = 31;
    j.wf_context = "{\"a\":1,\"keep\":\"k\"}";
    CHECK(run(&j, &b) == SJ_SRV_SUCCESS);
    sj_srv_task_info t = the_task(b);
    CHECK(reports_for(t.task_id, &rep) == 1);

    /* the handler read the context both ways */
    res = json_object_get(json_object_get(rep, "executeResult"), "result");
    want = json_pack("{s:i,s:i,s:s}", "ga", 1, "wa", 1, "wk", "k");
    CHECK(json_equal(res, want));
    json_decref(want);

    /* the report carries only the changed keys, and the workflow ids */
    CHECK(json_integer_value(json_object_get(rep, "workflowTaskBatchId")) ==
          8000000000000000007LL);
    CHECK(json_integer_value(json_object_get(rep, "workflowNodeId")) == 31);
    const char *wf = json_string_value(json_object_get(rep, "wfContext"));
    ctx = json_loads(wf ? wf : "", 0, NULL);
    want = json_pack("{s:i,s:{s:s}}", "a", 2, "b", "x", "y");
    CHECKF(json_equal(ctx, want), "reported wfContext %s", wf ? wf : "(none)");
    json_decref(ctx);
    json_decref(want);

    /* the server's merge */
    CHECK(sj_srv_batch_wf_context(srv, b, &merged) == 0);
    ctx = json_loads(merged ? merged : "", 0, NULL);
    want = json_pack("{s:i,s:s,s:{s:s}}", "a", 2, "keep", "k", "b", "x", "y");
    CHECKF(json_equal(ctx, want), "merged context %s",
           merged ? merged : "(none)");
    json_decref(ctx);
    json_decref(want);
    free(merged);
    json_decref(rep);
    task_free(&t);
}

/* ---- 5, 7, 11. stop of a running handler -------------------------------- */

/* Start `executor` on A, stop its batch once it runs, check the
 * interruption, the silence and the next job. */
static void stop_case(const char *executor)
{
    sj_srv_job j = h_job_on(JOB_ID, target_a, executor, "stop me");
    int64_t b = 0;
    json_t *rec;

    CHECK(sj_srv_trigger(srv, &j, &b) == 0);
    sj_srv_task_info t = the_task(b);
    rec = wait_log(t.task_id, "spin start", H_MS(5000));
    CHECKF(rec != NULL, "%s never started", executor);
    json_decref(rec);
    h_sleep_ms(50); /* well inside the handler's loop */

    long long sent = wall_ms();
    CHECK(sj_srv_stop_batch(srv, b) == 0);
    rec = wait_log(t.task_id, "interrupted: stopped by the server", H_MS(3000));
    CHECKF(rec != NULL, "%s: no \"interrupted\" line in the task log",
           executor);
    if (rec != NULL) {
        /* end to end: the test's "send" to the host's log record */
        long long delay = rec_stamp(rec) - sent;
        /* inside the host: the stop's arrival to the interruption, both
         * as the host logged them */
        char batch[40], task[40];
        long long arrived, stopped;
        snprintf(batch, sizeof batch, "batch %" PRId64, b);
        snprintf(task, sizeof task, "#%" PRId64 "]", t.task_id);
        arrived = log_line_ms(&host_a, "stop requested for", batch);
        stopped = log_line_ms(&host_a, task, "interrupted: stopped");
        printf("    %s: interrupted %lld ms after the stop arrived at the "
               "host (%lld ms after it was sent)\n",
               executor, stopped - arrived, delay);
        CHECKF(arrived > 0 && stopped > 0, "%s: host log lines missing",
               executor);
        CHECKF(stopped - arrived >= 0 && stopped - arrived < H_MS(100),
               "%s interrupted %lld ms after the stop arrived", executor,
               stopped - arrived);
        CHECKF(delay >= 0 && delay < H_MS(300),
               "%s interrupted %lld ms after the stop was sent", executor,
               delay);
        CHECK(json_integer_value(json_object_get(rec, "taskBatchId")) == b);
    }
    json_decref(rec);
    CHECK(sj_srv_batch_status(srv, b) == SJ_SRV_STOP);
    CHECK(h_log_has(&host_a, "stop requested for batch"));

    check_next_job_works(executor); /* same (only) worker, next task */
    /* no report for the stopped task (protocol.md §7.1) */
    CHECKF(reports_for(t.task_id, NULL) == 0, "%s: stopped task reported",
           executor);
    CHECK(h_host_alive(&host_a));
    task_free(&t);
}

static void test_stop_loop(void)
{
    stop_case("spinJob");

    /* A's one worker is busy: a task queued behind it and stopped there
     * never runs and is never reported; the running one is unaffected. */
    sj_srv_job spin = h_job_on(JOB_ID, target_a, "spinJob", "busy");
    sj_srv_job queued = h_job_on(JOB_ID, target_a, "echoJob", "queued");
    int64_t b_spin = 0, b_q = 0;
    CHECK(sj_srv_trigger(srv, &spin, &b_spin) == 0);
    sj_srv_task_info ts = the_task(b_spin);
    json_t *rec = wait_log(ts.task_id, "spin start", H_MS(5000));
    CHECK(rec != NULL);
    json_decref(rec);
    CHECK(sj_srv_trigger(srv, &queued, &b_q) == 0);
    sj_srv_task_info tq = the_task(b_q);
    /* acknowledged at once although the only worker is busy; queued
     * behind the spinner, it survives the stop of the other batches */
    long long took;
    crafted_dispatch(7100000000000000000LL, 7100000000000000001LL, "echoJob",
                     "{\"jobParams\":\"other batch\"}", &took);
    printf("    dispatch acknowledged in %lld ms with the worker busy\n", took);
    CHECKF(took < H_MS(300), "dispatch acknowledged after %lld ms", took);
    h_sleep_ms(50);
    CHECK(sj_srv_stop_batch(srv, b_q) == 0);
    h_sleep_ms(100);
    CHECK(sj_srv_batch_status(srv, b_spin) == SJ_SRV_RUNNING);
    CHECK(sj_srv_stop_batch(srv, b_spin) == 0);
    rec = wait_log(ts.task_id, "interrupted", H_MS(3000));
    CHECK(rec != NULL);
    json_decref(rec);
    check_next_job_works("queued stop");
    {
        json_t *rep = NULL;
        CHECK(reports_for(7100000000000000001LL, &rep) == 1);
        const char *got = json_string_value(
            json_object_get(json_object_get(rep, "executeResult"), "result"));
        CHECK(got && strcmp(got, "other batch") == 0);
        json_decref(rep);
    }
    CHECK(reports_for(tq.task_id, NULL) == 0);
    CHECK(reports_for(ts.task_id, NULL) == 0);
    CHECK(
        h_log_has(&host_a, "0 running task(s) interrupted, 1 queued dropped"));
    task_free(&ts);
    task_free(&tq);
}

static void test_stop_pcall_loop(void)
{
    stop_case("pcallSpinJob");
    stop_case("coSpinJob");
    stop_case("xpcallSpinJob");
    stop_case("earlyCoSpinJob");
    /* the same with a heap that makes every full GC expensive */
    stop_case("earlyCoBigHeapJob");
}

static void test_stop_sleep(void)
{
    stop_case("sleepJob");
    stop_case("pcallSleepJob");
    /* duplicate stop / stop of an unknown batch: harmless */
    sj_reply reply;
    memset(&reply, 0, sizeof reply);
    CHECK(sj_emu_call(emu, target_a, SJ_SRV_URI_STOP,
                      "[{\"jobId\":1,\"taskBatchId\":123456789012345,"
                      "\"groupName\":\"g\"}]",
                      NULL, (int)H_MS(2000), &reply) == 0);
    CHECK(reply.status == 1 && reply.data && strcmp(reply.data, "true") == 0);
    sj_reply_free(&reply);
    check_next_job_works("after unknown stop");
}

/* ---- 6. executor timeout ------------------------------------------------- */

static void timeout_case(const char *executor)
{
    sj_srv_job j = h_job_on(JOB_ID, target_a, executor, "timeout");
    sj_srv_batch_info *bi = NULL;
    size_t nb = 0;
    int64_t b = 0;
    json_t *rec;

    j.executor_timeout = 1;
    long long t0 = wall_ms();
    CHECK(sj_srv_trigger(srv, &j, &b) == 0);
    sj_srv_task_info t = the_task(b);
    rec = wait_log(t.task_id, "interrupted", H_MS(4000));
    CHECK(rec != NULL);
    if (rec != NULL) {
        const char *m = field_of(rec, "message");
        long long at = rec_stamp(rec) - t0;
        printf("    %s: timeout interrupted it %lld ms after the trigger\n",
               executor, at);
        CHECKF(m && strstr(m, "timeout"), "message %s", m ? m : "(null)");
        CHECKF(at >= 990 && at < 1000 + H_MS(150),
               "interrupted %lld ms after dispatch", at);
    }
    json_decref(rec);
    /* the emulator's own timeout makes the batch STOP */
    CHECK(sj_srv_wait_batch(srv, b, (int)H_MS(4000)) == SJ_SRV_STOP);
    CHECK(sj_srv_batches(srv, &bi, &nb) == 0);
    for (size_t i = 0; i < nb; i++)
        if (bi[i].batch_id == b)
            CHECK(bi[i].reason == SJ_SRV_REASON_TIMEOUT);
    sj_srv_batches_free(bi, nb);
    check_next_job_works("timeout");
    CHECKF(reports_for(t.task_id, NULL) == 0, "%s: timed out task reported",
           executor);
    task_free(&t);
}

static void test_timeout(void)
{
    timeout_case("spinJob");
    timeout_case("sleepJob"); /* sj.sleep(10) ends at the deadline too */
}

/* ---- 8. memory bomb ------------------------------------------------------ */

static void bomb_case(const char *executor)
{
    sj_srv_job j = h_job_on(JOB_ID, target_a, executor, "bomb");
    int64_t b;
    long long t0 = h_now();
    int st = run(&j, &b);

    printf("    %s: failed after %lld ms\n", executor, h_now() - t0);
    CHECKF(st == SJ_SRV_FAIL, "%s: status %d", executor, st);
    sj_srv_task_info t = the_task(b);
    CHECKF(t.message && strstr(t.message, "memory") && strstr(t.message, "32"),
           "%s: message %s", executor, t.message ? t.message : "(null)");
    json_t *rec = wait_log(t.task_id, "memory", H_MS(2000));
    CHECK(rec != NULL);
    json_decref(rec);
    CHECK(h_host_alive(&host_a));
    check_next_job_works(executor);
    task_free(&t);
}

static void test_memory_bomb(void)
{
    bomb_case("memBomb");
    /* catching the refusal with pcall does not turn it into a success */
    bomb_case("memBombCaught");
    /* one allocation past the cap, made in C (string.rep) */
    bomb_case("memBigString");
}

/* ---- 9. handler error ---------------------------------------------------- */

static void test_error(void)
{
    sj_srv_job j = h_job_on(JOB_ID, target_a, "errorJob", "xyz");
    int64_t b;
    json_t *rec;

    CHECK(run(&j, &b) == SJ_SRV_FAIL);
    sj_srv_task_info t = the_task(b);
    CHECKF(t.message && strstr(t.message, "boom xyz"), "message %s",
           t.message ? t.message : "(null)");
    /* the report's message has no traceback; the task log has both */
    CHECK(t.message && strstr(t.message, "stack traceback") == NULL);
    rec = wait_log(t.task_id, "boom xyz", H_MS(3000));
    CHECK(rec != NULL);
    if (rec != NULL) {
        const char *m = field_of(rec, "message");
        const char *lvl = field_of(rec, "level");
        CHECKF(m && strstr(m, "stack traceback:") && strstr(m, "inner"),
               "log message %s", m ? m : "(null)");
        CHECK(m && strstr(m, "jobs.lua:"));
        CHECK(lvl && strcmp(lvl, "ERROR") == 0);
        CHECK(json_integer_value(json_object_get(rec, "taskBatchId")) == b);
        CHECK(json_integer_value(json_object_get(rec, "jobId")) == 4242);
    }
    json_decref(rec);
    /* the line logged before it belongs to the same task */
    rec = wait_log(t.task_id, "about to fail", H_MS(1000));
    CHECK(rec != NULL);
    json_decref(rec);
    task_free(&t);

    /* an error object that is not a string: its __tostring */
    j = h_job_on(JOB_ID, target_a, "objErrorJob", "");
    CHECK(run(&j, &b) == SJ_SRV_FAIL);
    t = the_task(b);
    CHECKF(t.message && strstr(t.message, "custom failure object"),
           "message %s", t.message ? t.message : "(null)");
    rec = wait_log(t.task_id, "custom failure object", H_MS(3000));
    CHECK(rec != NULL);
    json_decref(rec);
    task_free(&t);
}

/* ---- 10. unknown executor ------------------------------------------------ */

static void test_unknown_executor(void)
{
    sj_srv_job j = h_job_on(JOB_ID, target_a, "testJobExecuter", "x");
    int64_t b;

    CHECK(run(&j, &b) == SJ_SRV_FAIL);
    sj_srv_task_info t = the_task(b);
    CHECKF(t.message && strstr(t.message, "testJobExecuter") &&
               strstr(t.message, "closest: 'testJobExecutor'"),
           "message %s", t.message ? t.message : "(null)");
    task_free(&t);
    check_next_job_works("unknown executor");
}

/* ---- parallelNum and a stop across hosts --------------------------------- */

/* Largest number of B's tasks of `batch` running at once, from their
 * "begin"/"end" log records. -1 if a record is missing. */
static int max_concurrency(int64_t batch, const sj_srv_task_info *v, size_t n)
{
    long long begin[8], end[8];
    int most = 0;
    if (n > 8)
        return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *b = wait_log(v[i].task_id, "begin", H_MS(3000));
        json_t *e = wait_log(v[i].task_id, "end", H_MS(3000));
        begin[i] = b ? rec_stamp(b) : -1;
        end[i] = e ? rec_stamp(e) : -1;
        CHECK(b &&
              json_integer_value(json_object_get(b, "taskBatchId")) == batch);
        json_decref(b);
        json_decref(e);
        if (begin[i] < 0 || end[i] < 0)
            return -1;
    }
    for (size_t i = 0; i < n; i++) { /* tasks running at task i's begin */
        int at = 0;
        for (size_t k = 0; k < n; k++)
            at += begin[k] <= begin[i] && begin[i] < end[k];
        if (at > most)
            most = at;
    }
    return most;
}

static void test_parallel_num(void)
{
    static const char *targets_b[1];
    char tb[64];
    sj_srv_job j =
        h_job_on(JOB_ID, target_a, "slowShard", "[\"p\",\"q\",\"r\",\"s\"]");
    sj_srv_task_info *v = NULL;
    size_t n = 0;
    int64_t b;

    /* host B has 2 workers: parallelNum 1 keeps the batch to one of them */
    snprintf(tb, sizeof tb, "127.0.0.1:%d", host_b.port);
    targets_b[0] = tb;
    j.targets = targets_b;
    j.task_type = SJ_SRV_SHARDING;
    for (int par = 1; par <= 2; par++) {
        j.parallel_num = par;
        CHECK(run(&j, &b) == SJ_SRV_SUCCESS);
        CHECK(sj_srv_batch_tasks(srv, b, &v, &n) == 0 && n == 4);
        int most = max_concurrency(b, v, n);
        printf("    parallelNum %d: at most %d task(s) at once\n", par, most);
        CHECKF(most == par, "parallelNum %d: %d at once", par, most);
        sj_srv_tasks_free(v, n);
        v = NULL;
    }
}

static void test_stop_broadcast(void)
{
    sj_srv_job j = h_job_on(JOB_ID, target_a, "spinJob", "everywhere");
    sj_srv_task_info *v = NULL;
    size_t n = 0;
    int64_t b = 0;

    j.task_type = SJ_SRV_BROADCAST;
    j.targets = NULL;
    j.n_targets = 0;
    CHECK(sj_srv_trigger(srv, &j, &b) == 0);
    CHECK(sj_srv_batch_tasks(srv, b, &v, &n) == 0 && n == 2);
    for (size_t i = 0; i < n; i++) {
        json_t *rec = wait_log(v[i].task_id, "spin start", H_MS(5000));
        CHECK(rec != NULL);
        json_decref(rec);
    }
    CHECK(sj_srv_stop_batch(srv, b) == 0);
    for (size_t i = 0; i < n; i++) {
        json_t *rec =
            wait_log(v[i].task_id, "interrupted: stopped", H_MS(3000));
        CHECK(rec != NULL);
        json_decref(rec);
    }
    check_next_job_works("broadcast stop");
    {
        /* host B's workers too */
        sj_srv_job pj = h_job_on(JOB_ID, target_a, "portJob", "after");
        int64_t b2;
        pj.task_type = SJ_SRV_BROADCAST;
        pj.targets = NULL;
        pj.n_targets = 0;
        CHECK(run(&pj, &b2) == SJ_SRV_SUCCESS);
    }
    for (size_t i = 0; i < n; i++)
        CHECK(reports_for(v[i].task_id, NULL) == 0);
    CHECK(sj_srv_batch_status(srv, b) == SJ_SRV_STOP);
    sj_srv_tasks_free(v, n);
}

/* ---- main ---------------------------------------------------------------- */

int main(void)
{
    sj_emu_config cfg;
    char addr[64];
    long long t0 = h_now();

    if (getenv("SJ_BINARY") == NULL) {
        fprintf(stderr, "test_e2e_jobs: SJ_BINARY is not set\n");
        return 1;
    }
    sj_log_set_level(SJ_LOG_ERROR);
    memset(&cfg, 0, sizeof cfg);
    cfg.srv.beat_apply_ms = 0;
    if (sj_emu_open(&cfg, "127.0.0.1:0", &emu, &emu_port) != 0) {
        fprintf(stderr, "test_e2e_jobs: cannot start the emulator\n");
        return 1;
    }
    srv = sj_emu_srv(emu);
    (void)addr;

    h_host_dir(&host_a);
    h_host_dir(&host_b);
    {
        char sub[400];
        snprintf(sub, sizeof sub, "%s/executors", host_a.dir);
        h_write_file(sub, "jobs.lua", executors_lua);
        snprintf(sub, sizeof sub, "%s/executors", host_b.dir);
        h_write_file(sub, "jobs.lua", executors_lua);
    }
    h_host_start(&host_a, emu_port, "SNAIL_WORKERS=1",
                 "SNAIL_MEMORY_LIMIT_MB=32", "SNAIL_BEAT_INTERVAL=1",
                 "SNAIL_LOG_REMOTE_INTERVAL=0.02", NULL);
    h_host_start(&host_b, emu_port, "SNAIL_WORKERS=2", "SNAIL_BEAT_INTERVAL=1",
                 "SNAIL_LOG_REMOTE_INTERVAL=0.02", NULL);
    snprintf(target_a, sizeof target_a, "127.0.0.1:%d", host_a.port);
    if (!wait_node(&host_a) || !wait_node(&host_b)) {
        fprintf(stderr,
                "the hosts did not register (A alive %d, B alive "
                "%d)\n",
                h_host_alive(&host_a), h_host_alive(&host_b));
        h_failures++;
        goto done;
    }

    RUN(test_cluster);
    RUN(test_broadcast);
    RUN(test_sharding);
    RUN(test_workflow);
    RUN(test_stop_loop);
    RUN(test_timeout);
    RUN(test_stop_pcall_loop);
    RUN(test_memory_bomb);
    RUN(test_error);
    RUN(test_unknown_executor);
    RUN(test_stop_sleep);
    RUN(test_parallel_num);
    RUN(test_stop_broadcast);
    CHECK(h_host_alive(&host_a));
    CHECK(h_host_alive(&host_b));

done:
    CHECK(h_host_stop(&host_a, SIGTERM) == 0);
    CHECK(h_host_stop(&host_b, SIGTERM) == 0);
    if (h_failures != 0) {
        h_log_tail(&host_b, "host B", 3000);
        h_log_tail(&host_a, "host A", 6000);
    }
    h_host_cleanup(&host_a);
    h_host_cleanup(&host_b);
    sj_emu_destroy(emu);
    printf("test_e2e_jobs: %lld ms\n", h_now() - t0);
    if (h_failures == 0)
        printf("test_e2e_jobs: all checks passed\n");
    else
        fprintf(stderr, "test_e2e_jobs: %d check(s) failed\n", h_failures);
    return h_failures != 0;
}
