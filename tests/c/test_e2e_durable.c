/*
 * End to end, through the real snailjob-lua binary ($SJ_BINARY) and the
 * in-process emulator over real gRPC on loopback: issue 3's "no result is
 * ever lost" and "remote logs", and exact 64-bit ids.
 *
 *   ids        9007199254740993 and 1234567890123456789 round-trip exactly
 *   logs_10k   10,000 lines from one task arrive, in order, well formed
 *   server_down a result produced while the server is down is delivered
 *   kill9      a result spooled before `kill -9` is delivered by the next run
 *   queue_full the bounded task queue refuses the dispatch that overflows it
 *   parallel   parallelNum bounds a batch's concurrency on one host
 *   log_batching buffer size / interval honoured, logs flushed at task end
 *
 * Each test starts its own emulator and host(s) in temporary directories.
 * Timing bounds scale with SJ_TIME_FACTOR (H_MS).
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
#define URI_LOG "/batch/server/report/log"

#define ID_A 9007199254740993LL    /* 2^53 + 1: not a double */
#define ID_B 1234567890123456789LL /* not a double either */

#define CHECK_LL(a, b)                                                         \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        CHECKF(a_ == b_, "%s = %lld, expected %lld", #a, a_, b_);              \
    } while (0)

#define CHECK_STR(a, b)                                                        \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        CHECKF(a_ != NULL && strcmp(a_, b_) == 0, "%s = '%s', expected '%s'",  \
               #a, a_ ? a_ : "(null)", b_);                                    \
    } while (0)

/* ---- the executors every host loads ---------------------------------- */

static const char *const EXECUTORS =
    "local sj = require 'snailjob'\n"
    "\n"
    "sj.job('idsJob', function(args)\n"
    "  return sj.success({ job_id = args.job_id, task_id = args.task_id,\n"
    "    task_batch_id = args.task_batch_id,\n"
    "    types = math.type(args.job_id) .. ',' .. math.type(args.task_id)\n"
    "            .. ',' .. math.type(args.task_batch_id) })\n"
    "end)\n"
    "\n"
    "-- job_params: number of lines\n"
    "sj.job('logJob', function(args)\n"
    "  local n = tonumber(args.job_params) or 10000\n"
    "  for i = 1, n do sj.log.info('line %d', i) end\n"
    "  return sj.success(n)\n"
    "end)\n"
    "\n"
    "-- job_params: '<lines> <gap s> <tail s>'\n"
    "sj.job('fewLogsJob', function(args)\n"
    "  local n, gap, tail = args.job_params:match('(%S+) (%S+) (%S+)')\n"
    "  for i = 1, tonumber(n) do\n"
    "    sj.log.info('few %d', i)\n"
    "    if tonumber(gap) > 0 then sj.sleep(tonumber(gap)) end\n"
    "  end\n"
    "  sj.sleep(tonumber(tail))\n"
    "  return sj.success('done')\n"
    "end)\n"
    "\n"
    "-- job_params: seconds to sleep; leaves started-<taskId> in the cwd\n"
    "sj.job('sleepJob', function(args)\n"
    "  local f = assert(io.open('started-' .. args.task_id, 'w'))\n"
    "  f:write('x') f:close()\n"
    "  sj.sleep(tonumber(args.job_params) or 1)\n"
    "  return sj.success('slept ' .. args.task_id)\n"
    "end)\n"
    "\n"
    "-- a shard: appends 'S <index>' / 'E <index>' to overlap-<batch>.txt\n"
    "sj.job('overlapJob', function(args)\n"
    "  local function mark(what)\n"
    "    local f = assert(io.open('overlap-' .. args.task_batch_id ..\n"
    "                             '.txt', 'a'))\n"
    "    f:write(what, ' ', args.sharding_index, '\\n') f:close()\n"
    "  end\n"
    "  mark('S') sj.sleep(0.15) mark('E')\n"
    "  return sj.success(args.sharding_index)\n"
    "end)\n";

/* ---- fixtures ---------------------------------------------------------- */

static void host_new(h_host *h)
{
    h_host_dir(h);
    h_write_file(h->dir, "executors/e2e.lua", EXECUTORS);
}

static sj_srv_job job(int type, const char *executor, const char *args)
{
    sj_srv_job j;
    memset(&j, 0, sizeof j);
    j.job_id = 7;
    j.task_type = type;
    j.executor_info = executor;
    j.args = args;
    j.executor_timeout = 30;
    j.parallel_num = 1;
    return j;
}

/* Restrict a job to one host (several hosts on one emulator). */
static void target(sj_srv_job *j, const h_host *h, char *buf, size_t len,
                   const char **slot)
{
    snprintf(buf, len, "127.0.0.1:%d", h->port);
    *slot = buf;
    j->targets = slot;
    j->n_targets = 1;
}

static int64_t trigger(sj_srv *srv, const sj_srv_job *j)
{
    int64_t id = 0;
    CHECK_LL(sj_srv_trigger(srv, j, &id), 0);
    return id;
}

/* The single task of a batch (caller frees), or an all-zero info. */
static sj_srv_task_info only_task(sj_srv *srv, int64_t batch)
{
    sj_srv_task_info *v = NULL, t;
    size_t n = 0;

    memset(&t, 0, sizeof t);
    if (sj_srv_batch_tasks(srv, batch, &v, &n) == 0 && n == 1) {
        t = v[0];
        free(v);
        return t;
    }
    CHECKF(0, "batch %lld has %zu tasks, expected 1", (long long)batch, n);
    sj_srv_tasks_free(v, n);
    return t;
}

static void task_info_free(sj_srv_task_info *t)
{
    free(t->name);
    free(t->result);
    free(t->message);
    free(t->args_str);
    free(t->wf_context);
    free(t->host_id);
}

/* The first record of the i-th request on `uri`'s body argument array. */
static json_t *request_arg0(sj_srv *srv, const char *uri, size_t i,
                            sj_request *out, long long *recv_ms)
{
    json_t *body, *a0;

    memset(out, 0, sizeof *out);
    if (sj_srv_request_get(srv, uri, i, out, recv_ms) != 0)
        return NULL;
    body = json_loads(out->body ? out->body : "", 0, NULL);
    a0 = json_incref(json_array_get(body, 0));
    json_decref(body);
    return a0;
}

/* Number of result reports received for task `task_id`. */
static size_t reports_for(sj_srv *srv, int64_t task_id)
{
    size_t n = 0, total = sj_srv_request_count(srv, URI_RESULT);

    for (size_t i = 0; i < total; i++) {
        sj_request r;
        json_t *rep = request_arg0(srv, URI_RESULT, i, &r, NULL);
        n += json_integer_value(json_object_get(rep, "taskId")) == task_id;
        json_decref(rep);
        sj_request_free(&r);
    }
    return n;
}

static int wait_file(const h_host *h, const char *name, int timeout_ms)
{
    char path[600];
    long long until = h_now() + H_MS(timeout_ms);

    snprintf(path, sizeof path, "%s/%s", h->dir, name);
    while (h_now() < until) {
        if (access(path, F_OK) == 0)
            return 1;
        h_sleep_ms(10);
    }
    return 0;
}

static void host_end(h_host *h)
{
    if (h->pid > 0)
        h_host_stop(h, SIGTERM);
    if (h_failures > 0)
        fprintf(stderr, "(host log: %s)\n", h->log);
    h_host_cleanup(h);
}

/* ---- 1. exact 64-bit ids ----------------------------------------------- */

/* One emulator whose first batch id is `base` (the task gets base + 1). */
static void ids_round(int64_t base, int64_t job_id)
{
    int port = 0;
    sj_emu *emu = h_emu_up(base, &port);
    sj_srv *srv;
    h_host h;
    sj_srv_job j = job(SJ_SRV_CLUSTER, "idsJob", NULL);
    int64_t batch;
    char want[32];

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);
    host_new(&h);
    h_host_start(&h, port, NULL);
    if (!h_wait_ready(srv, &h, "overlapJob", 10000))
        goto done;

    j.job_id = job_id;
    batch = trigger(srv, &j);
    CHECK_LL(batch, base);
    CHECK_LL(sj_srv_wait_batch(srv, batch, (int)H_MS(10000)), SJ_SRV_SUCCESS);

    /* The dispatch carried the ids as JSON integers, exactly. */
    {
        char *body = NULL;
        json_t *arr;
        sj_srv_sent_get(srv, SJ_SRV_URI_DISPATCH, 0, &body, NULL);
        arr = json_loads(body ? body : "[]", 0, NULL);
        CHECK_LL(json_integer_value(
                     json_object_get(json_array_get(arr, 0), "taskId")),
                 base + 1);
        json_decref(arr);
        free(body);
    }

    /* The report's ids, as JSON integers and as text. */
    CHECK_LL(sj_srv_request_count(srv, URI_RESULT), 1);
    {
        sj_request r;
        json_t *rep = request_arg0(srv, URI_RESULT, 0, &r, NULL);
        CHECK_LL(json_integer_value(json_object_get(rep, "jobId")), job_id);
        CHECK_LL(json_integer_value(json_object_get(rep, "taskBatchId")), base);
        CHECK_LL(json_integer_value(json_object_get(rep, "taskId")), base + 1);
        snprintf(want, sizeof want, "\"jobId\":%" PRId64, job_id);
        CHECKF(r.body && strstr(r.body, want), "report %s lacks %s",
               r.body ? r.body : "(null)", want);
        snprintf(want, sizeof want, "\"taskId\":%" PRId64, base + 1);
        CHECKF(r.body && strstr(r.body, want), "report %s lacks %s",
               r.body ? r.body : "(null)", want);
        json_decref(rep);
        sj_request_free(&r);
    }

    /* The handler saw integers and sent them back unchanged. */
    {
        sj_srv_task_info t = only_task(srv, batch);
        json_t *res = json_loads(t.result ? t.result : "", 0, NULL);
        CHECKF(res != NULL, "result is not JSON: %s", t.result);
        CHECK_STR(json_string_value(json_object_get(res, "types")),
                  "integer,integer,integer");
        CHECK(json_is_integer(json_object_get(res, "job_id")));
        CHECK_LL(json_integer_value(json_object_get(res, "job_id")), job_id);
        CHECK_LL(json_integer_value(json_object_get(res, "task_batch_id")),
                 base);
        CHECK_LL(json_integer_value(json_object_get(res, "task_id")), base + 1);
        snprintf(want, sizeof want, "%" PRId64, job_id);
        CHECKF(t.result && strstr(t.result, want), "result %s lacks %s",
               t.result ? t.result : "(null)", want);
        snprintf(want, sizeof want, "%" PRId64, base + 1);
        CHECKF(t.result && strstr(t.result, want), "result %s lacks %s",
               t.result ? t.result : "(null)", want);
        json_decref(res);
        task_info_free(&t);
    }
done:
    host_end(&h);
    sj_emu_destroy(emu);
}

static void test_ids(void)
{
    /* batch = 2^53+1, task 2^53+2, job 1234567890123456789 */
    ids_round(ID_A, ID_B);
    /* task = 1234567890123456789, job 2^53+1 */
    ids_round(ID_B - 1, ID_A);
}

/* ---- 2. 10,000 log lines ----------------------------------------------- */

/* 1 if the record's fieldList names are unique; fills the fields we need. */
static int fields_of(const json_t *rec, const char **msg, const char **stamp,
                     const char **level, const char **port)
{
    const json_t *list = json_object_get(rec, "fieldList"), *f;
    const char *names[32];
    size_t i, n = 0;

    *msg = *stamp = *level = *port = NULL;
    if (!json_is_array(list) || json_array_size(list) > 32)
        return 0;
    json_array_foreach(list, i, f)
    {
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *value = json_string_value(json_object_get(f, "value"));
        if (name == NULL)
            return 0;
        for (size_t k = 0; k < n; k++)
            if (strcmp(names[k], name) == 0)
                return 0;
        names[n++] = name;
        if (strcmp(name, "message") == 0)
            *msg = value;
        else if (strcmp(name, "time_stamp") == 0)
            *stamp = value;
        else if (strcmp(name, "level") == 0)
            *level = value;
        else if (strcmp(name, "port") == 0)
            *port = value;
    }
    return 1;
}

static int is_decimal(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static void test_logs_10k(void)
{
    enum { LINES = 10000 };
    int port = 0;
    sj_emu *emu = h_emu_up(ID_A, &port);
    sj_srv *srv;
    h_host h;
    sj_srv_job j = job(SJ_SRV_CLUSTER, "logJob", "10000");
    int64_t batch, task;
    long long until;
    size_t n_lines = 0, bad_ids = 0, bad_fmt = 0, out_of_order = 0;
    size_t n_log, n_req, biggest = 0, most = 0;
    json_t *job_type;
    char hport[16];

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);
    host_new(&h);
    h_host_start(&h, port, "SNAIL_LOG_LEVEL=INFO", NULL);
    if (!h_wait_ready(srv, &h, "overlapJob", 10000))
        goto done;
    snprintf(hport, sizeof hport, "%d", h.port);

    j.job_id = ID_B;
    batch = trigger(srv, &j);
    task = batch + 1;
    CHECK_LL(sj_srv_wait_batch(srv, batch, (int)H_MS(20000)), SJ_SRV_SUCCESS);
    /* Logs leave at task end at the latest, one batch after another: wait
     * while they keep coming (a slow sanitizer build sends them slowly),
     * and give up only after H_MS(3000) without a new line. */
    {
        size_t seen = sj_srv_log_count(srv), now_n;
        until = h_now() + H_MS(3000);
        while ((now_n = sj_srv_log_count(srv)) < LINES && h_now() < until) {
            if (now_n != seen) {
                seen = now_n;
                until = h_now() + H_MS(3000);
            }
            h_sleep_ms(20);
        }
    }

    n_log = sj_srv_log_count(srv);
    job_type = json_string("JOB");
    for (size_t i = 0; i < n_log; i++) {
        char *text = NULL;
        json_t *rec;
        const char *msg, *stamp, *level, *lport;
        int k;

        sj_srv_log_get(srv, i, &text);
        rec = json_loads(text ? text : "", 0, NULL);
        free(text);
        if (!fields_of(rec, &msg, &stamp, &level, &lport)) {
            bad_fmt++;
            json_decref(rec);
            continue;
        }
        if (msg == NULL || sscanf(msg, "line %d", &k) != 1) {
            json_decref(rec); /* another line of this task's log */
            continue;
        }
        n_lines++;
        if (k != (int)n_lines)
            out_of_order++;
        if (json_integer_value(json_object_get(rec, "jobId")) != ID_B ||
            json_integer_value(json_object_get(rec, "taskBatchId")) != batch ||
            json_integer_value(json_object_get(rec, "taskId")) != task)
            bad_ids++;
        if (!is_decimal(stamp) || level == NULL || strcmp(level, "INFO") ||
            lport == NULL || strcmp(lport, hport) ||
            !json_is_integer(json_object_get(rec, "realTime")) ||
            json_integer_value(json_object_get(rec, "realTime")) <= 0 ||
            json_string_value(json_object_get(rec, "namespaceId")) == NULL ||
            json_string_value(json_object_get(rec, "groupName")) == NULL ||
            !json_equal(json_object_get(rec, "logType"), job_type))
            bad_fmt++;
        json_decref(rec);
    }
    json_decref(job_type);
    CHECK_LL(n_lines, LINES);
    CHECK_LL(out_of_order, 0);
    CHECK_LL(bad_ids, 0);
    CHECK_LL(bad_fmt, 0);

    /* Batched (not one call per line), each batch under 10 MiB, and the
     * body is the double array of §4.5. */
    n_req = sj_srv_request_count(srv, URI_LOG);
    for (size_t i = 0; i < n_req; i++) {
        sj_request r;
        json_t *list = request_arg0(srv, URI_LOG, i, &r, NULL);
        size_t len = r.body ? strlen(r.body) : 0;
        CHECKF(json_is_array(list), "log body is not [[...]]: %.80s",
               r.body ? r.body : "");
        if (json_array_size(list) > most)
            most = json_array_size(list);
        if (len > biggest)
            biggest = len;
        json_decref(list);
        sj_request_free(&r);
    }
    CHECKF(biggest < 10u * 1024 * 1024, "a log batch has %zu bytes", biggest);
    CHECKF(n_req >= 2 && n_req < LINES / 10, "%zu log requests for %d lines",
           n_req, LINES);
    /* log_remote_buffer_size (default 50) records per batch, but a
     * backlog (200 lines waiting) leaves in batches of up to 1,000
     * records and 1 MiB (the record that crosses it included). */
    CHECKF(most <= 1000, "a log batch has %zu records", most);
    CHECKF(biggest <= 1024 * 1024 + 4096, "a log batch has %zu bytes", biggest);
    fprintf(stderr, "logs_10k: %zu requests, largest %zu bytes\n", n_req,
            biggest);
    CHECK(!h_log_has(&h, "dropped"));
done:
    host_end(&h);
    sj_emu_destroy(emu);
}

/* ---- 3. a result produced while the server is down --------------------- */

static void test_server_down(void)
{
    int port = 0;
    sj_emu *emu = h_emu_up(ID_A, &port);
    sj_srv *srv;
    h_host h;
    sj_srv_job j = job(SJ_SRV_CLUSTER, "sleepJob", "1");
    int64_t batch, task;
    char name[64], addr[64];
    long long t_up;

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);
    host_new(&h);
    h_host_start(&h, port, NULL);
    if (!h_wait_ready(srv, &h, "overlapJob", 10000))
        goto done;

    batch = trigger(srv, &j);
    task = batch + 1;
    snprintf(name, sizeof name, "started-%" PRId64, task);
    CHECK(wait_file(&h, name, 5000));
    sj_emu_stop(emu); /* the task is running; its result has nowhere to go */

    /* The task ends after 1 s; let the host fail to deliver a few times
     * (its retry backoff grows) while the server stays down. */
    h_sleep_ms(H_MS(2500));
    CHECK_LL(sj_srv_request_count(srv, URI_RESULT), 0);
    CHECK_LL(sj_srv_batch_status(srv, batch), SJ_SRV_RUNNING);
    CHECK(h_host_alive(&h));

    /* It tried (and will retry): the host says so at DEBUG level. */
    CHECK(h_log_has(&h, "result report not delivered"));

    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    CHECK_LL(sj_emu_start(emu, addr, NULL), 0);
    t_up = h_now();
    CHECK_LL(sj_srv_wait_batch(srv, batch, (int)H_MS(10000)), SJ_SRV_SUCCESS);
    /* The retry backoff is capped at 5 s. */
    CHECKF(h_now() - t_up <= H_MS(6500), "delivered %lld ms after restart",
           h_now() - t_up);
    fprintf(stderr, "server_down: delivered %lld ms after the restart\n",
            h_now() - t_up);
    {
        sj_srv_task_info t = only_task(srv, batch);
        char want[64];
        snprintf(want, sizeof want, "slept %" PRId64, task);
        CHECK_STR(t.result, want);
        task_info_free(&t);
    }
    /* Every report received is for this task (re-sending is harmless);
     * normally there is exactly one. */
    CHECK(reports_for(srv, task) >= 1);
    CHECK_LL(reports_for(srv, task), sj_srv_request_count(srv, URI_RESULT));
    fprintf(stderr, "server_down: %zu report(s) received\n",
            sj_srv_request_count(srv, URI_RESULT));
done:
    host_end(&h);
    sj_emu_destroy(emu);
}

/* ---- 4. a spooled result survives kill -9 of the host ------------------ */

static void test_kill9(void)
{
    int port = 0;
    sj_emu *emu = h_emu_up(ID_B - 1, &port);
    sj_srv *srv;
    h_host h;
    sj_srv_job j = job(SJ_SRV_CLUSTER, "sleepJob", "0.3");
    int64_t batch, task;
    char name[64], addr[64], journal[600], idtext[32];
    char *first_host = NULL;
    long long until;
    int spooled = 0;

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);
    host_new(&h);
    h_host_start(&h, port, "SNAIL_SPOOL_DIR=spool", NULL);
    if (!h_wait_ready(srv, &h, "overlapJob", 10000))
        goto done;

    batch = trigger(srv, &j);
    task = batch + 1; /* 1234567890123456789 */
    snprintf(name, sizeof name, "started-%" PRId64, task);
    CHECK(wait_file(&h, name, 5000));
    sj_emu_stop(emu);

    /* Wait until the result is in the journal, then kill the host hard. */
    snprintf(idtext, sizeof idtext, "\"taskId\":%" PRId64, task);
    until = h_now() + H_MS(5000);
    while (!spooled && h_now() < until) {
        h_journal_path(&h, "spool", journal, sizeof journal);
        spooled = h_journal_count(journal, idtext, NULL) > 0;
        if (!spooled)
            h_sleep_ms(20);
    }
    CHECKF(spooled, "result never reached %s", journal);
    CHECK_LL(h_host_stop(&h, SIGKILL), 128 + SIGKILL);
    CHECK_LL(sj_srv_request_count(srv, URI_RESULT), 0);

    /* Same directory, same spool, same port; the server comes back after. */
    h_host_start(&h, port, "SNAIL_SPOOL_DIR=spool", NULL);
    h_sleep_ms(H_MS(300));
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    CHECK_LL(sj_emu_start(emu, addr, NULL), 0);
    CHECK_LL(sj_srv_wait_batch(srv, batch, (int)H_MS(10000)), SJ_SRV_SUCCESS);
    {
        sj_srv_task_info t = only_task(srv, batch);
        char want[64];
        sj_request r;
        json_t *rep = request_arg0(srv, URI_RESULT, 0, &r, NULL);
        const char *from = sj_request_header(&r, "host-id");

        snprintf(want, sizeof want, "slept %" PRId64, task);
        CHECK_STR(t.result, want);
        CHECK_LL(json_integer_value(json_object_get(rep, "taskId")), task);
        /* Delivered by the restarted process (a new host-id), not the
         * killed one that ran the task. */
        first_host = t.host_id ? strdup(t.host_id) : NULL;
        CHECKF(from != NULL && first_host != NULL &&
                   strcmp(from, first_host) != 0,
               "report from %s, task ran on %s", from ? from : "?",
               first_host ? first_host : "?");
        json_decref(rep);
        sj_request_free(&r);
        task_info_free(&t);
    }
    CHECK_LL(reports_for(srv, task), sj_srv_request_count(srv, URI_RESULT));
    CHECK(h_log_has(&h, "from an earlier run will be delivered"));
    /* Acknowledged: a clean stop leaves nothing to resend. */
    CHECK_LL(h_host_stop(&h, SIGTERM), 0);
    h_journal_path(&h, "spool", journal, sizeof journal);
    CHECK_LL(h_journal_count(journal, idtext, NULL), 0);
    free(first_host);
done:
    host_end(&h);
    sj_emu_destroy(emu);
}

/* ---- 5. the bounded task queue ----------------------------------------- */

static void test_queue_full(void)
{
    int port = 0;
    sj_emu *emu = h_emu_up(ID_A, &port);
    sj_srv *srv;
    h_host h;
    sj_srv_job j = job(SJ_SRV_CLUSTER, "sleepJob", "0.6");
    int64_t b[4];
    char name[64];
    int ok = 0, full = 0;

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);
    host_new(&h);
    h_host_start(&h, port, "SNAIL_WORKERS=1", "SNAIL_QUEUE_SIZE=2", NULL);
    if (!h_wait_ready(srv, &h, "overlapJob", 10000))
        goto done;

    /* One runs, two wait, the fourth finds the queue full. */
    b[0] = trigger(srv, &j);
    snprintf(name, sizeof name, "started-%" PRId64, b[0] + 1);
    CHECK(wait_file(&h, name, 5000));
    for (int i = 1; i < 4; i++)
        b[i] = trigger(srv, &j);
    for (int i = 0; i < 4; i++) {
        int st = sj_srv_wait_batch(srv, b[i], (int)H_MS(10000));
        sj_srv_task_info t = only_task(srv, b[i]);
        if (st == SJ_SRV_SUCCESS) {
            ok++;
        } else {
            CHECK_LL(st, SJ_SRV_FAIL);
            CHECKF(t.message && strstr(t.message, "queue is full"),
                   "batch %d failed with '%s'", i,
                   t.message ? t.message : "(null)");
            full += t.message && strstr(t.message, "queue is full");
        }
        task_info_free(&t);
    }
    CHECK_LL(sj_srv_batch_status(srv, b[0]), SJ_SRV_SUCCESS);
    CHECK_LL(ok, 3);
    CHECK_LL(full, 1);
    CHECK(h_log_has(&h, "queue is full"));
done:
    host_end(&h);
    sj_emu_destroy(emu);
}

/* ---- 6. parallelNum ---------------------------------------------------- */

/* Concurrency seen in overlap-<batch>.txt: the most shards between S and
 * E at once; -1 if the file is malformed. *n_shards gets the S count. */
static int max_overlap(const h_host *h, int64_t batch, int *n_shards)
{
    char path[600], *text, *line, *save = NULL;
    int running = 0, most = 0, open[16] = {0};

    snprintf(path, sizeof path, "%s/overlap-%" PRId64 ".txt", h->dir, batch);
    text = h_read_file(path);
    *n_shards = 0;
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char what;
        int idx;
        if (sscanf(line, "%c %d", &what, &idx) != 2 || idx < 0 || idx > 15) {
            most = -1;
            break;
        }
        if (what == 'S') {
            open[idx]++;
            (*n_shards)++;
            if (++running > most)
                most = running;
        } else if (what == 'E' && open[idx] == 1) {
            open[idx] = 0;
            running--;
        } else {
            most = -1;
            break;
        }
    }
    free(text);
    return most;
}

static void test_parallel(void)
{
    int port = 0, n_shards = 0;
    sj_emu *emu = h_emu_up(ID_A, &port);
    sj_srv *srv;
    h_host h;
    sj_srv_job j =
        job(SJ_SRV_SHARDING, "overlapJob", "[\"a\",\"b\",\"c\",\"d\"]");
    int64_t batch;
    long long t0, took;

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);
    host_new(&h);
    h_host_start(&h, port, "SNAIL_WORKERS=4", NULL);
    if (!h_wait_ready(srv, &h, "overlapJob", 10000))
        goto done;

    /* parallelNum 1: the four shards run one after another. */
    t0 = h_now();
    batch = trigger(srv, &j);
    CHECK_LL(sj_srv_wait_batch(srv, batch, (int)H_MS(10000)), SJ_SRV_SUCCESS);
    took = h_now() - t0;
    CHECK_LL(max_overlap(&h, batch, &n_shards), 1);
    CHECK_LL(n_shards, 4);
    CHECKF(took >= 4 * 150, "4 serial shards of 150 ms took %lld ms", took);

    /* Control: parallelNum 4 on the same host does overlap them, so the
     * check above could see it. */
    j.parallel_num = 4;
    batch = trigger(srv, &j);
    CHECK_LL(sj_srv_wait_batch(srv, batch, (int)H_MS(10000)), SJ_SRV_SUCCESS);
    CHECKF(max_overlap(&h, batch, &n_shards) >= 2,
           "parallelNum 4 with 4 workers never overlapped");
    CHECK_LL(n_shards, 4);
done:
    host_end(&h);
    sj_emu_destroy(emu);
}

/* ---- 7. log batching settings and the flush at task end ---------------- */

/* Number of log records of `task` whose message starts with `prefix`;
 * *n_requests: requests carrying them, *most: the most in one request,
 * *first_ms / *last_ms: receive times of the first and last of those. */
static size_t task_lines(sj_srv *srv, int64_t task, const char *prefix,
                         size_t *n_requests, size_t *most, long long *first_ms,
                         long long *last_ms)
{
    size_t n = 0, total = sj_srv_request_count(srv, URI_LOG);

    *n_requests = *most = 0;
    *first_ms = *last_ms = 0;
    for (size_t i = 0; i < total; i++) {
        sj_request r;
        long long at = 0;
        json_t *list = request_arg0(srv, URI_LOG, i, &r, &at), *rec;
        size_t k, here = 0;

        json_array_foreach(list, k, rec)
        {
            const char *msg, *stamp, *level, *port;
            if (json_integer_value(json_object_get(rec, "taskId")) != task ||
                !fields_of(rec, &msg, &stamp, &level, &port) || msg == NULL ||
                strncmp(msg, prefix, strlen(prefix)) != 0)
                continue;
            here++;
        }
        if (here > 0) {
            n += here;
            if (here > *most)
                *most = here;
            (*n_requests)++;
            if (*first_ms == 0)
                *first_ms = at;
            *last_ms = at;
        }
        json_decref(list);
        sj_request_free(&r);
    }
    return n;
}

static long long result_recv_ms(sj_srv *srv, int64_t task)
{
    size_t total = sj_srv_request_count(srv, URI_RESULT);
    long long at = 0;

    for (size_t i = 0; i < total; i++) {
        sj_request r;
        long long t = 0;
        json_t *rep = request_arg0(srv, URI_RESULT, i, &r, &t);
        if (json_integer_value(json_object_get(rep, "taskId")) == task)
            at = t;
        json_decref(rep);
        sj_request_free(&r);
    }
    return at;
}

static void test_log_batching(void)
{
    int port = 0;
    sj_emu *emu = h_emu_up(ID_A, &port);
    sj_srv *srv;
    h_host small, timed;
    char tbuf[2][64];
    const char *slot[2];
    int64_t batch;
    size_t n, reqs, most;
    long long first, last, res, t0;
    char params[64];

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);
    /* small: a batch every 2 lines, the interval never fires (30 s).
     * timed: the buffer never fills (1000), the interval is 0.3 s. */
    host_new(&small);
    host_new(&timed);
    h_host_start(&small, port, "SNAIL_LOG_REMOTE_BUFFER_SIZE=2",
                 "SNAIL_LOG_REMOTE_INTERVAL=30", NULL);
    h_host_start(&timed, port, "SNAIL_LOG_REMOTE_BUFFER_SIZE=1000",
                 "SNAIL_LOG_REMOTE_INTERVAL=0.3", NULL);
    if (!h_wait_ready(srv, &small, "overlapJob", 10000) ||
        !h_wait_ready(srv, &timed, "overlapJob", 10000))
        goto done;

    /* 5 lines, buffer 2: at least 3 requests; the odd line goes at task
     * end (the interval is 30 s), soon after the result. */
    {
        sj_srv_job j = job(SJ_SRV_CLUSTER, "fewLogsJob", "5 0 0");
        target(&j, &small, tbuf[0], sizeof tbuf[0], &slot[0]);
        batch = trigger(srv, &j);
        CHECK_LL(sj_srv_wait_batch(srv, batch, (int)H_MS(10000)),
                 SJ_SRV_SUCCESS);
        h_sleep_ms(H_MS(300));
        n = task_lines(srv, batch + 1, "few ", &reqs, &most, &first, &last);
        res = result_recv_ms(srv, batch + 1);
        CHECK_LL(n, 5);
        CHECKF(reqs >= 3, "5 lines with buffer 2 came in %zu request(s)", reqs);
        CHECKF(most <= 2, "a batch of %zu records with buffer 2", most);
        CHECKF(last - res <= H_MS(200),
               "last log batch %lld ms after the result", last - res);
    }

    /* 1 line, buffer 2, interval 30 s, then 0.5 s of sleep: only the
     * flush at task end can send it; it arrives within ~200 ms of the
     * result (an early send would be ~500 ms before it). */
    {
        sj_srv_job j = job(SJ_SRV_CLUSTER, "fewLogsJob", "1 0 0.5");
        target(&j, &small, tbuf[0], sizeof tbuf[0], &slot[0]);
        batch = trigger(srv, &j);
        CHECK_LL(sj_srv_wait_batch(srv, batch, (int)H_MS(10000)),
                 SJ_SRV_SUCCESS);
        h_sleep_ms(H_MS(300));
        n = task_lines(srv, batch + 1, "few ", &reqs, &most, &first, &last);
        res = result_recv_ms(srv, batch + 1);
        CHECK_LL(n, 1);
        CHECK(res > 0);
        CHECKF(first - res <= H_MS(200) && res - first <= H_MS(200),
               "the flushed line came %lld ms after the result", first - res);
    }

    /* Interval 0.3 s, buffer 1000: a line logged at the start of a 1.5 s
     * task (scaled) arrives after ~0.3 s, while the task still runs. */
    {
        sj_srv_job j = job(SJ_SRV_CLUSTER, "fewLogsJob", params);
        snprintf(params, sizeof params, "1 0 %.1f", 1.5 * (double)h_factor());
        target(&j, &timed, tbuf[1], sizeof tbuf[1], &slot[1]);
        t0 = sj_mono_ms();
        batch = trigger(srv, &j);
        CHECK_LL(sj_srv_wait_batch(srv, batch, (int)H_MS(10000)),
                 SJ_SRV_SUCCESS);
        n = task_lines(srv, batch + 1, "few ", &reqs, &most, &first, &last);
        res = result_recv_ms(srv, batch + 1);
        CHECK_LL(n, 1);
        CHECKF(first - t0 >= 250, "interval 0.3 s: sent after %lld ms",
               first - t0);
        CHECKF(first - t0 <= H_MS(1000), "interval 0.3 s: sent after %lld ms",
               first - t0);
        CHECKF(res - first >= 500, "log %lld ms before the result",
               res - first);
    }
done:
    host_end(&small);
    host_end(&timed);
    sj_emu_destroy(emu);
}

/* ---- main -------------------------------------------------------------- */

int main(void)
{
    if (getenv("SJ_BINARY") == NULL) {
        fprintf(stderr, "SJ_BINARY is not set\n");
        return 1;
    }
    sj_log_set_level(SJ_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    RUN(test_ids);
    RUN(test_logs_10k);
    RUN(test_server_down);
    RUN(test_kill9);
    RUN(test_queue_full);
    RUN(test_parallel);
    RUN(test_log_batching);
    if (h_failures == 0) {
        printf("test_e2e_durable: all checks passed\n");
        return 0;
    }
    fprintf(stderr, "test_e2e_durable: %d check(s) failed\n", h_failures);
    return 1;
}
