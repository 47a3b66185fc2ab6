/*
 * End to end, hot reload (issue 5 items 1, 2, 6): the real snailjob-lua
 * binary (2 workers) against the in-process emulator over real gRPC on
 * loopback, its executor directory edited while it runs.
 *
 * The tests run in order on one host, each starting from the code the
 * previous one left. The host log (DEBUG) is the observation point for
 * reloads: "reload (<why>): generation G published ..." once a generation
 * is in force, "reload (<why>) failed; ..." when the old code stays.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_harness.h"
#include "sj_log.h"
#include "sj_srv.h"

static sj_emu *emu;
static sj_srv *srv;
static h_host host;
static char exec_dir[300];
static int generation = 1; /* the host's current generation, as expected */

/* a.lua, version V: aJob returns "a<V>", slowJob marks its start, sleeps
 * 1 s and returns "slow<V>"; hupJob returns what version.txt (in the
 * host's working directory, which is not watched) held at load time. */
static void write_a(int v)
{
    char text[1024];
    snprintf(text, sizeof text,
             "local sj = require 'snailjob'\n"
             "local V = '%d'\n"
             "local f = io.open('version.txt')\n"
             "local HV = f and f:read('l') or 'none'\n"
             "if f then f:close() end\n"
             "sj.job('aJob', function() return sj.success('a' .. V) end)\n"
             "sj.job('slowJob', function()\n"
             "  local m = io.open('slow-started', 'w'); m:close()\n"
             "  sj.sleep(1)\n"
             "  return sj.success('slow' .. V)\n"
             "end)\n"
             "sj.job('hupJob', function() return sj.success(HV) end)\n",
             v);
    h_write_file(exec_dir, "a.lua", text);
}

/* v.lua, version V, written atomically (temp file + rename): verJob
 * reads the load-time version before and after a short loop. */
static void write_v(int v)
{
    char text[1024], tmp[400], dst[400];
    snprintf(text, sizeof text,
             "local sj = require 'snailjob'\n"
             "local VERSION = 'v%d'\n"
             "sj.job('verJob', function()\n"
             "  local before = VERSION\n"
             "  local x = 0\n"
             "  for i = 1, 20000 do x = x + i end\n"
             "  return sj.success(before .. '|' .. VERSION)\n"
             "end)\n",
             v);
    h_write_file(exec_dir, ".v.tmp", text);
    snprintf(tmp, sizeof tmp, "%s/.v.tmp", exec_dir);
    snprintf(dst, sizeof dst, "%s/v.lua", exec_dir);
    CHECK(rename(tmp, dst) == 0);
}

/* 1 once the host log has `needle` (polled for up to timeout_ms). */
static int wait_log(const char *needle, long long timeout_ms)
{
    long long until = h_now() + timeout_ms;
    do {
        if (h_log_has(&host, needle))
            return 1;
        h_sleep_ms(5);
    } while (h_now() < until);
    return 0;
}

/* Wait for the next generation to be published; returns 1 if it was. */
static int wait_generation(void)
{
    char needle[64];
    snprintf(needle, sizeof needle, "generation %d published", ++generation);
    int ok = wait_log(needle, H_MS(3000));
    CHECKF(ok, "no '%s' in the host log", needle);
    return ok;
}

static sj_srv_job job_of(const char *executor)
{
    sj_srv_job j;
    memset(&j, 0, sizeof j);
    j.job_id = 77;
    j.task_type = SJ_SRV_CLUSTER;
    j.executor_info = executor;
    j.executor_timeout = 20;
    return j;
}

/* Trigger `executor`; wait for the end. Returns the batch status and puts
 * the result (malloc'd, "" if none) and the task's message in *result /
 * *message when not NULL. */
static int run_job(const char *executor, char **result, char **message)
{
    sj_srv_job j = job_of(executor);
    int64_t id = 0;
    int st;

    if (result != NULL)
        *result = strdup("");
    if (message != NULL)
        *message = strdup("");
    if (sj_srv_trigger(srv, &j, &id) != 0)
        return -1;
    st = sj_srv_wait_batch(srv, id, (int)H_MS(8000));
    if (result != NULL && st == SJ_SRV_SUCCESS) {
        free(*result);
        if (sj_srv_batch_result(srv, id, result) != 0)
            *result = strdup("");
    }
    if (message != NULL) {
        sj_srv_task_info *v = NULL;
        size_t n = 0;
        if (sj_srv_batch_tasks(srv, id, &v, &n) == 0 && n == 1 &&
            v[0].message != NULL) {
            free(*message);
            *message = strdup(v[0].message);
        }
        sj_srv_tasks_free(v, n);
    }
    return st;
}

/* The job's result must be exactly `want`. */
static void expect_result(const char *executor, const char *want)
{
    char *result;
    int st = run_job(executor, &result, NULL);
    CHECKF(st == SJ_SRV_SUCCESS, "%s: batch status %d", executor, st);
    CHECKF(strcmp(result, want) == 0, "%s: result '%s', expected '%s'",
           executor, result, want);
    free(result);
}

static int host_has_node(void)
{
    sj_srv_node_info *v = NULL;
    size_t n = 0;
    int found = 0;
    if (sj_srv_nodes(srv, &v, &n) == 0)
        for (size_t i = 0; i < n; i++)
            found |= v[i].port == host.port;
    sj_srv_nodes_free(v, n);
    return found;
}

static int wait_ready(void)
{
    long long until = h_now() + H_MS(10000);
    while (h_now() < until) {
        if (host_has_node() && sj_srv_has_executor(srv, "aJob"))
            return 1;
        h_sleep_ms(20);
    }
    return 0;
}

/* ---- 1. a changed handler result is used by the next dispatch ----------- */

static void test_changed_result(void)
{
    expect_result("aJob", "a1");
    write_a(2);
    if (wait_generation())
        expect_result("aJob", "a2");
    /* Both workers moved on (the idle ones are woken, not left behind). */
    CHECK(wait_log("worker-1 on generation 2", H_MS(1000)));
    CHECK(wait_log("worker-2 on generation 2", H_MS(1000)));
}

/* ---- 2. a syntax error keeps the old code and names file and line ------- */

static void test_syntax_error(void)
{
    h_write_file(exec_dir, "a.lua",
                 "local sj = require 'snailjob'\n"
                 "sj.job('aJob', function()\n"
                 "  return sj.success('broken' .. )\n"
                 "end)\n");
    CHECK(wait_log("failed; generation 2 stays in force", H_MS(3000)));
    CHECK(h_log_has(&host, "executors/a.lua:3:"));
    expect_result("aJob", "a2");

    /* An error at load time and a duplicate name are refused the same way. */
    h_write_file(exec_dir, "a.lua",
                 "local sj = require 'snailjob'\n"
                 "error('refused at load')\n");
    CHECK(wait_log("executors/a.lua:2: refused at load", H_MS(3000)));
    h_write_file(exec_dir, "dup.lua",
                 "local sj = require 'snailjob'\n"
                 "sj.job('bJob', function() return 'dup' end)\n");
    write_a(3); /* good again, but dup.lua clashes with b.lua */
    CHECK(wait_log("executor 'bJob' is declared twice: first at "
                   "executors/b.lua:2, again at executors/dup.lua:2",
                   H_MS(3000)));
    expect_result("aJob", "a2");
    expect_result("bJob", "b1");
    {
        char path[400];
        snprintf(path, sizeof path, "%s/dup.lua", exec_dir);
        CHECK(unlink(path) == 0);
    }
    if (wait_generation())
        expect_result("aJob", "a3");
}

/* ---- 3. deleting a file removes its executors ---------------------------- */

static void test_delete_file(void)
{
    char path[400], *message;
    int st;

    expect_result("bJob", "b1");
    snprintf(path, sizeof path, "%s/b.lua", exec_dir);
    CHECK(unlink(path) == 0);
    if (!wait_generation())
        return;
    CHECK(h_log_has(&host, "executor bJob removed"));
    st = run_job("bJob", NULL, &message);
    CHECKF(st == SJ_SRV_FAIL, "bJob after delete: status %d", st);
    CHECKF(strstr(message, "no executor named 'bJob'") != NULL, "message: %s",
           message);
    free(message);
    CHECK(sj_srv_has_executor(srv, "bJob")); /* the server never forgets */
    expect_result("aJob", "a3");
}

/* ---- 4. a new file's executors are registered with the server ---------- */

static void test_new_file(void)
{
    size_t before = sj_srv_request_count(srv, "/register/job/executors");
    long long until;

    CHECK(!sj_srv_has_executor(srv, "cJob"));
    h_write_file(exec_dir, "c.lua",
                 "local sj = require 'snailjob'\n"
                 "sj.job('cJob', function() return sj.success('c1') end)\n");
    if (!wait_generation())
        return;
    until = h_now() + H_MS(3000);
    while (!sj_srv_has_executor(srv, "cJob") && h_now() < until)
        h_sleep_ms(10);
    CHECK(sj_srv_has_executor(srv, "cJob"));
    CHECK(sj_srv_request_count(srv, "/register/job/executors") > before);
    expect_result("cJob", "c1");
}

/* ---- 5. SIGHUP reloads ------------------------------------------------- */

static void test_sighup(void)
{
    expect_result("hupJob", "none");
    h_write_file(host.dir, "version.txt", "h2\n");
    h_sleep_ms(H_MS(300));
    expect_result("hupJob", "none"); /* not watched: nothing reloaded */
    kill(host.pid, SIGHUP);
    if (!wait_generation())
        return;
    CHECK(h_log_has(&host, "reload (SIGHUP): generation"));
    expect_result("hupJob", "h2");
}

/* ---- 6. a reload during a long task leaves it on the old code ---------- */

static void test_long_task(void)
{
    sj_srv_job j = job_of("slowJob");
    char marker[400], *result = NULL;
    int64_t id = 0;
    long long until;
    int st;

    snprintf(marker, sizeof marker, "%s/slow-started", host.dir);
    unlink(marker);
    CHECK(sj_srv_trigger(srv, &j, &id) == 0);
    until = h_now() + H_MS(3000);
    while (access(marker, F_OK) != 0 && h_now() < until)
        h_sleep_ms(5);
    CHECK(access(marker, F_OK) == 0);
    write_a(4);
    if (wait_generation())
        expect_result("aJob", "a4"); /* on the idle worker, new code */
    st = sj_srv_wait_batch(srv, id, (int)H_MS(5000));
    CHECKF(st == SJ_SRV_SUCCESS, "slowJob: status %d", st);
    if (st == SJ_SRV_SUCCESS && sj_srv_batch_result(srv, id, &result) == 0)
        CHECKF(strcmp(result, "slow3") == 0, "slowJob result '%s'", result);
    free(result);
    expect_result("slowJob", "slow4"); /* its worker switched afterwards */
}

/* ---- 7. reload under load -------------------------------------------- */

#define MAX_BATCHES 4000

static int64_t load_ids[MAX_BATCHES];
static atomic_int load_n, load_stop, load_trigger_errors;

/* Triggers verJob every ~3 ms (scaled by SJ_TIME_FACTOR, as sanitizer
 * builds are slower) until told to stop. */
static void *load_thread(void *arg)
{
    (void)arg;
    sj_srv_job j = job_of("verJob");
    while (!atomic_load(&load_stop) && atomic_load(&load_n) < MAX_BATCHES) {
        int64_t id = 0;
        if (sj_srv_trigger(srv, &j, &id) == 0)
            load_ids[atomic_fetch_add(&load_n, 1)] = id;
        else
            atomic_fetch_add(&load_trigger_errors, 1);
        h_sleep_ms(H_MS(3));
    }
    return NULL;
}

static void test_under_load(void)
{
    pthread_t th;
    int failed = 0, mixed = 0, unfinished = 0, seen[22] = {0}, versions = 0;
    long long t0, t1;
    int n;

    write_v(0);
    if (!wait_generation())
        return;
    expect_result("verJob", "v0|v0");
    atomic_store(&load_n, 0);
    atomic_store(&load_stop, 0);
    pthread_create(&th, NULL, load_thread, NULL);
    h_sleep_ms(200);
    t0 = h_now();
    for (int v = 1; v <= 20; v++) {
        write_v(v);
        if (!wait_generation())
            break;
        h_sleep_ms(30); /* let some tasks run on it */
    }
    h_sleep_ms(200);
    atomic_store(&load_stop, 1);
    pthread_join(th, NULL);
    t1 = h_now();
    n = atomic_load(&load_n);

    for (int i = 0; i < n; i++) {
        int st = sj_srv_wait_batch(srv, load_ids[i], (int)H_MS(10000));
        char *result = NULL;
        int a = -1, b = -2;
        if (st != SJ_SRV_SUCCESS) {
            if (st == SJ_ETIMEOUT)
                unfinished++;
            else if (failed++ == 0) { /* say why, once */
                sj_srv_task_info *v = NULL;
                size_t nt = 0;
                sj_srv_batch_tasks(srv, load_ids[i], &v, &nt);
                fprintf(stderr, "batch %" PRId64 ": status %d: %s\n",
                        load_ids[i], st,
                        nt && v[0].message ? v[0].message : "(no task)");
                sj_srv_tasks_free(v, nt);
            }
            continue;
        }
        if (sj_srv_batch_result(srv, load_ids[i], &result) != 0 ||
            sscanf(result, "v%d|v%d", &a, &b) != 2 || a != b || a < 0 ||
            a > 20) {
            fprintf(stderr, "batch %" PRId64 ": result '%s'\n", load_ids[i],
                    result ? result : "(none)");
            mixed++;
        } else if (!seen[a]++) {
            versions++;
        }
        free(result);
    }
    printf("under load: %d tasks in %lld ms (%.0f/s), 20 reloads, %d "
           "versions seen, %d failed, %d mixed, %d unfinished\n",
           n, t1 - t0 + 200, n * 1000.0 / (double)(t1 - t0 + 200), versions,
           failed, mixed, unfinished);
    CHECKF(n >= 300 / h_factor(), "only %d tasks dispatched", n);
    CHECK(atomic_load(&load_trigger_errors) == 0);
    CHECK(failed == 0);
    CHECK(mixed == 0);
    CHECK(unfinished == 0);
    /* The reloads did apply under load: tasks ran on most versions. */
    CHECKF(versions >= (h_factor() > 1 ? 10 : 15), "only %d versions seen",
           versions);
    CHECK(seen[20] > 0);
}

int main(void)
{
    int port = 0, code;
    char b_text[] = "local sj = require 'snailjob'\n"
                    "sj.job('bJob', function() return sj.success('b1') end)\n";

    sj_log_set_level(SJ_LOG_ERROR);
    if (sj_emu_open(NULL, "127.0.0.1:0", &emu, &port) != 0) {
        fprintf(stderr, "cannot start the emulator\n");
        return 1;
    }
    srv = sj_emu_srv(emu);
    h_host_dir(&host);
    snprintf(exec_dir, sizeof exec_dir, "%s/executors", host.dir);
    write_a(1);
    h_write_file(exec_dir, "b.lua", b_text);
    h_host_start(&host, port, NULL);
    if (!wait_ready()) {
        fprintf(stderr, "the host did not register\n");
        h_failures++;
    } else {
        test_changed_result();
        printf("changed result: %s\n", h_failures ? "FAIL" : "ok");
        test_syntax_error();
        test_delete_file();
        test_new_file();
        test_sighup();
        test_long_task();
        test_under_load();
    }
    code = h_host_stop(&host, SIGTERM);
    CHECKF(code == 0, "host exit status %d", code);
    CHECK(!h_log_has(&host, "AddressSanitizer"));
    if (h_failures != 0) {
        char *log = h_read_file(host.log);
        fprintf(stderr, "---- host log (tail) ----\n%s\n",
                strlen(log) > 6000 ? log + strlen(log) - 6000 : log);
        free(log);
    }
    h_host_cleanup(&host);
    sj_emu_destroy(emu);
    printf("e2e_reload: %s\n", h_failures ? "FAILED" : "all checks passed");
    return h_failures ? 1 : 0;
}
