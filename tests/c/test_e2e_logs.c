/*
 * test_e2e_logs - the task-log path under pressure (issue 14): the real
 * snailjob-lua against the emulator over gRPC, with the log queue at its
 * smallest bound (log_queue_max_bytes = 65536).
 *
 *   no_loss          2 tasks in parallel write ~28 MB of lines through the
 *                    64 KiB queue: every line arrives, in order, none
 *                    dropped (sj.log.* waits for room instead)
 *   stop_in_wait     the emulator refuses log batches; a task blocked in
 *                    sj.log.* (the queue full) is stopped by the server
 *                    and ends within ~1 s (scaled), its worker free again
 *   stalled_server   the same refusal, a task writing 3,000 lines is not
 *                    hung: it waits ~5 s, then drops with a WARN; once the
 *                    server takes logs again the "N log lines dropped"
 *                    notice arrives, the lines that arrived in order
 *   run_mode         `snailjob-lua run` (no server) with the 64 KiB queue:
 *                    every line printed, none dropped
 */
#include <inttypes.h>
#include <jansson.h>

#include "sj_harness.h"

#include "sj_log.h"
#include "sj_srv.h"

#define URI_LOG "/batch/server/report/log"
#define QUEUE "SNAIL_LOG_QUEUE_MAX_BYTES=65536"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static const char EXECUTORS[] =
    "local sj = require 'snailjob'\n"
    "-- params: lines to write; each line is 'line <i>' plus padding\n"
    "sj.job('lines', function(args)\n"
    "  local n = math.tointeger(tonumber(args.job_params))\n"
    "  local pad = string.rep('x', 200)\n"
    "  for i = 1, n do sj.log.info('line %d %s', i, pad) end\n"
    "  return sj.success(n)\n"
    "end)\n"
    "-- writes until stopped, after creating 'started-<task>'\n"
    "sj.job('endless', function(args)\n"
    "  local f = assert(io.open('started-' .. args.task_id, 'w'))\n"
    "  f:close()\n"
    "  local i = 0\n"
    "  while true do i = i + 1; sj.log.info('line %d', i) end\n"
    "end)\n"
    "sj.job('quick', function(args)\n"
    "  return sj.success('quick')\n"
    "end)\n";

static int64_t trigger(sj_srv *srv, const h_host *h, const char *executor,
                       const char *args)
{
    char target[64];
    int64_t id = 0;

    snprintf(target, sizeof target, "127.0.0.1:%d", h->port);
    sj_srv_job j = h_job_on(9, target, executor, args);
    j.executor_timeout = 60;
    CHECKF(sj_srv_trigger(srv, &j, &id) == 0, "trigger %s", executor);
    return id;
}

/* The message of a stored log record (a JSON object text), or NULL. */
static const char *rec_message(json_t *rec)
{
    json_t *fields = json_object_get(rec, "fieldList");
    for (size_t i = 0; i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        const char *name = json_string_value(json_object_get(f, "name"));
        if (name != NULL && strcmp(name, "message") == 0)
            return json_string_value(json_object_get(f, "value"));
    }
    return NULL;
}

typedef struct task_lines {
    int64_t task;
    long next;  /* the line number expected next (from 1) */
    long count; /* "line <i>" records of the task */
    long out_of_order;
    long notices;      /* "N log lines dropped" records of the task */
    long notice_lines; /* the sum of their N */
} task_lines;

/* Walk the stored records: per task of `t`, count its lines and check
 * they come as line 1, 2, 3... (gaps allowed with `gaps`). */
static void scan_logs(sj_srv *srv, task_lines *t, size_t n, int gaps)
{
    size_t total = sj_srv_log_count(srv);

    for (size_t k = 0; k < n; k++) {
        t[k].next = 1;
        t[k].count = t[k].out_of_order = 0;
        t[k].notices = t[k].notice_lines = 0;
    }
    for (size_t i = 0; i < total; i++) {
        char *text = NULL;
        json_t *rec;
        const char *msg;
        long line;

        if (sj_srv_log_get(srv, i, &text) != 0)
            continue;
        rec = json_loads(text, 0, NULL);
        free(text);
        msg = rec != NULL ? rec_message(rec) : NULL;
        for (size_t k = 0; msg != NULL && k < n; k++) {
            if (json_integer_value(json_object_get(rec, "taskId")) != t[k].task)
                continue;
            if (sscanf(msg, "line %ld", &line) == 1) {
                t[k].count++;
                if (line != t[k].next && (!gaps || line < t[k].next))
                    t[k].out_of_order++;
                t[k].next = line + 1;
            } else if (strstr(msg, " log lines dropped") != NULL) {
                t[k].notices++;
                t[k].notice_lines +=
                    strtol(msg + strlen("snailjob-lua: "), NULL, 10);
            }
        }
        json_decref(rec);
    }
}

static int wait_file(const h_host *h, const char *name, long long ms)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", h->dir, name);
    for (long long until = h_now() + H_MS(ms); h_now() < until; h_sleep_ms(5))
        if (access(path, F_OK) == 0)
            return 1;
    CHECKF(0, "no %s after %lld ms", name, H_MS(ms));
    return 0;
}

/* An emulator and a host with EXECUTORS and the 64 KiB log queue, the
 * host registered (`executor` known); NULL with a failed check if not
 * (then nothing is left running). */
static sj_emu *up_with_host(h_host *h)
{
    int port = 0;
    sj_emu *emu = h_emu_up(0, &port);

    h_host_dir(h);
    if (emu == NULL)
        return NULL;
    h_write_file(h->dir, "executors/e.lua", EXECUTORS);
    h_host_start(h, port, QUEUE, "SNAIL_LOG_LEVEL=WARN", NULL);
    if (!h_wait_ready(sj_emu_srv(emu), h, "lines", 10000)) {
        h_host_stop(h, SIGKILL);
        h_host_cleanup(h);
        sj_emu_destroy(emu);
        return NULL;
    }
    return emu;
}

/* Stop the host, which must exit cleanly (under sanitizers: nothing
 * leaked), and the emulator. */
static void down(h_host *h, sj_emu *emu)
{
    CHECK(h_host_stop(h, SIGTERM) == 0);
    h_host_cleanup(h);
    sj_emu_destroy(emu);
}

/* ---- 1. no line lost through the smallest queue ------------------------- */

static void test_no_loss(void)
{
    const long lines = SANITIZED ? 3000 : 20000;
    h_host h;
    sj_emu *emu = up_with_host(&h);
    sj_srv *srv;
    char params[32];
    task_lines t[2] = {{0}};
    long long t0;

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);

    snprintf(params, sizeof params, "%ld", lines);
    t0 = h_now();
    int64_t b1 = trigger(srv, &h, "lines", params);
    int64_t b2 = trigger(srv, &h, "lines", params);
    t[0].task = b1 + 1;
    t[1].task = b2 + 1;
    CHECK(sj_srv_wait_batch(srv, b1, (int)H_MS(30000)) == SJ_SRV_SUCCESS);
    CHECK(sj_srv_wait_batch(srv, b2, (int)H_MS(30000)) == SJ_SRV_SUCCESS);
    /* The last batches leave at task end. */
    for (long long until = h_now() + H_MS(5000);
         sj_srv_log_count(srv) < (size_t)(2 * lines) && h_now() < until;)
        h_sleep_ms(20);
    h_sleep_ms(100);
    scan_logs(srv, t, 2, 0);
    for (int k = 0; k < 2; k++) {
        CHECKF(t[k].count == lines, "task %d: %ld of %ld lines arrived", k,
               t[k].count, lines);
        CHECKF(t[k].out_of_order == 0, "task %d: %ld lines out of order", k,
               t[k].out_of_order);
        CHECKF(t[k].notices == 0, "task %d: %ld drop notices", k, t[k].notices);
    }
    CHECK(!h_log_has(&h, "log queue full"));
    CHECK(!h_log_has(&h, "dropped"));
    printf("  no_loss: 2 x %ld lines of ~700 bytes through a 64 KiB queue "
           "in %lld ms, %zu log requests\n",
           lines, h_now() - t0, sj_srv_request_count(srv, URI_LOG));
    down(&h, emu);
}

/* ---- 2. a stop ends a wait for room ------------------------------------- */

static void test_stop_in_wait(void)
{
    h_host h;
    sj_emu *emu = up_with_host(&h);
    sj_srv *srv;
    char name[64];
    int64_t batch;
    long long t_stop, took = -1;

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);

    sj_emu_refuse(emu, URI_LOG); /* no batch is ever acknowledged */
    batch = trigger(srv, &h, "endless", "");
    snprintf(name, sizeof name, "started-%" PRId64, batch + 1);
    if (!wait_file(&h, name, 5000))
        goto done;
    /* 64 KiB hold ~200 lines: the task now waits for room. Well within
     * the 5 s after which it would drop instead (unscaled: the host's
     * own clock). */
    h_sleep_ms(1000);
    CHECKF(!h_log_has(&h, "log queue full"),
           "the task dropped lines instead of waiting");
    t_stop = h_now();
    CHECK(sj_srv_stop_batch(srv, batch) == 0);
    for (long long until = t_stop + H_MS(3000); h_now() < until; h_sleep_ms(5))
        if (h_log_has(&h, "interrupted: stopped by the server")) {
            took = h_now() - t_stop;
            break;
        }
    CHECKF(took >= 0 && took <= H_MS(1000),
           "the waiting task ended %lld ms after the stop", took);
    printf("  stop_in_wait: the task blocked in sj.log.info ended %lld ms "
           "after the server's stop\n",
           took);
    /* Its worker runs the next task. */
    sj_emu_refuse(emu, NULL);
    int64_t next = trigger(srv, &h, "quick", "");
    CHECK(sj_srv_wait_batch(srv, next, (int)H_MS(10000)) == SJ_SRV_SUCCESS);
done:
    down(&h, emu);
}

/* ---- 3. a server that takes no logs does not hang a task ---------------- */

static void test_stalled_server(void)
{
    const long lines = 3000;
    h_host h;
    sj_emu *emu = up_with_host(&h);
    sj_srv *srv;
    char params[32];
    task_lines t[1] = {{0}};
    int64_t batch;
    long long t0, took;

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);

    sj_emu_refuse(emu, URI_LOG);
    snprintf(params, sizeof params, "%ld", lines);
    t0 = h_now();
    batch = trigger(srv, &h, "lines", params);
    CHECK(sj_srv_wait_batch(srv, batch, (int)H_MS(20000)) == SJ_SRV_SUCCESS);
    took = h_now() - t0;
    /* It waited (5 s without an acknowledged batch), then dropped. */
    CHECKF(took >= 4500, "done after %lld ms: it did not wait", took);
    CHECKF(took <= 5000 + H_MS(4000), "done after %lld ms", took);
    CHECK(h_log_has(&h, "took no log batch for 5 s"));
    CHECK(h_log_has(&h, "log queue full (log_queue_max_bytes 65536"));

    /* The server takes logs again: the notice comes, and what arrived of
     * the task's lines is in order. */
    sj_emu_refuse(emu, NULL);
    t[0].task = batch + 1;
    for (long long until = h_now() + H_MS(10000); h_now() < until;
         h_sleep_ms(50)) {
        scan_logs(srv, t, 1, 1);
        if (t[0].notices > 0)
            break;
    }
    CHECKF(t[0].notices >= 1, "no drop notice arrived");
    CHECKF(t[0].notice_lines > 0 && t[0].notice_lines < lines,
           "the notice says %ld lines", t[0].notice_lines);
    CHECKF(t[0].count > 0 && t[0].count < lines, "%ld lines arrived",
           t[0].count);
    CHECKF(t[0].out_of_order == 0, "%ld lines out of order", t[0].out_of_order);
    printf("  stalled_server: %lld ms for %ld lines; %ld arrived, the "
           "notice counts %ld dropped (the rest: batches refused for good)\n",
           took, lines, t[0].count, t[0].notice_lines);
    down(&h, emu);
}

/* ---- 4. `run`, no server ------------------------------------------------- */

static void test_run_mode(void)
{
    const char *lines = SANITIZED ? "5000" : "20000";
    const char *args[] = {"run", "lines", "--params", lines, "--json", NULL};
    const char *env[] = {QUEUE, NULL};
    long want = atol(lines);
    h_host h;
    h_cmd c;
    json_t *o, *logs;

    h_host_dir(&h);
    h_write_file(h.dir, "executors/e.lua", EXECUTORS);
    h_run_cmd(h.dir, args, env, H_MS(60000), 0, &c);
    CHECKF(c.code == 0, "run exit %d: %s", c.code, c.err);
    o = json_loads(c.out, 0, NULL);
    logs = json_object_get(o, "logs");
    CHECKF((long)json_array_size(logs) == want, "%zu log lines of %ld",
           json_array_size(logs), want);
    CHECK(json_is_integer(json_object_get(o, "logs_dropped")));
    CHECK(json_integer_value(json_object_get(o, "logs_dropped")) == 0);
    CHECKF(strstr(c.err, "log queue full") == NULL, "stderr: %.300s", c.err);
    printf("  run_mode: %ld lines through a 64 KiB queue in %lld ms\n", want,
           c.ms);
    json_decref(o);
    h_cmd_free(&c);
    h_host_cleanup(&h);
}

int main(void)
{
    if (getenv("SJ_BINARY") == NULL) {
        fprintf(stderr, "SJ_BINARY is not set\n");
        return 1;
    }
    sj_log_set_level(SJ_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    RUN(test_no_loss);
    RUN(test_stop_in_wait);
    RUN(test_stalled_server);
    RUN(test_run_mode);
    printf("%s\n", h_failures ? "FAILED" : "all passed");
    return h_failures ? 1 : 0;
}
