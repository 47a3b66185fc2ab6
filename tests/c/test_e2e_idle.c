/*
 * End to end, the idle-worker hand-off (issue 14): a dispatch wakes the
 * most recently idle worker only, so a host with many workers and little
 * load keeps running its tasks on one warm thread instead of waking each
 * worker in turn; and a burst still spreads over every worker.
 *
 * The real snailjob-lua binary (8 workers) against the in-process
 * emulator over real gRPC on loopback. Which worker ran a task is read
 * from the host's own DEBUG line "[worker-N] task <id> (...): <outcome>".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_emu.h"
#include "sj_harness.h"
#include "sj_log.h"
#include "sj_srv.h"

#define WORKERS 8

static const char executors_lua[] =
    "local sj = require 'snailjob'\n"
    "sj.job('quickJob', function(args) return sj.success(args.job_params) "
    "end)\n"
    "sj.job('napJob', function(args)\n"
    "  sj.sleep(0.3)\n"
    "  return sj.success(args.job_params)\n"
    "end)\n";

static sj_emu *emu;
static sj_srv *srv;
static int emu_port;
static h_host host;

static sj_srv_job job(const char *executor, const char *params)
{
    sj_srv_job j;
    memset(&j, 0, sizeof j);
    j.job_id = 14;
    j.task_type = SJ_SRV_CLUSTER;
    j.executor_info = executor;
    j.args = params;
    j.executor_timeout = 20;
    return j;
}

/*
 * The set of workers that ran the tasks whose DEBUG line contains
 * `executor` and was logged after byte `from` of the host log: a bit per
 * worker number; *n gets how many such lines there were.
 */
static unsigned workers_used(const char *executor, size_t from, int *n)
{
    char *log = h_read_file(host.log), *line, *save = NULL;
    char needle[64];
    unsigned set = 0;

    *n = 0;
    snprintf(needle, sizeof needle, ", %s): ", executor);
    if (strlen(log) < from) {
        free(log);
        return 0;
    }
    for (line = strtok_r(log + from, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        const char *w = strstr(line, "[worker-");
        if (w == NULL || strstr(line, needle) == NULL)
            continue;
        int k = atoi(w + 8);
        if (k >= 1 && k <= 31)
            set |= 1u << k;
        (*n)++;
    }
    free(log);
    return set;
}

static int popcount(unsigned v)
{
    int n = 0;
    for (; v != 0; v &= v - 1)
        n++;
    return n;
}

static size_t log_size(void)
{
    char *log = h_read_file(host.log);
    size_t n = strlen(log);
    free(log);
    return n;
}

/* One job at a time, with the workers idle in between: one warm worker
 * takes them all (the old shared condition variable woke each in turn). */
static void test_trickle_stays_on_one_worker(void)
{
    size_t from = log_size();
    int n = 0, ok = 0;
    unsigned used;

    for (int i = 0; i < 24; i++) {
        sj_srv_job j = job("quickJob", "trickle");
        int64_t id = 0;
        CHECK(sj_srv_trigger(srv, &j, &id) == 0);
        ok += sj_srv_wait_batch(srv, id, (int)H_MS(8000)) == SJ_SRV_SUCCESS;
        h_sleep_ms(20); /* every worker idle again */
    }
    CHECKF(ok == 24, "%d of 24 jobs succeeded", ok);
    h_sleep_ms(H_MS(200)); /* the last DEBUG lines reach the log */
    used = workers_used("quickJob", from, &n);
    CHECKF(n == 24, "%d task lines of quickJob in the host log", n);
    CHECKF(popcount(used) <= 2,
           "24 sequential jobs ran on %d workers (mask 0x%x), want 1 (2 at "
           "most)",
           popcount(used), used);
}

/* WORKERS jobs at once, each sleeping 0.3 s: every worker takes one, so
 * they overlap (the hand-off wakes as many workers as there are tasks). */
static void test_burst_uses_every_worker(void)
{
    size_t from = log_size();
    int64_t ids[WORKERS];
    long long t0 = h_now(), took;
    int n = 0, ok = 0;
    unsigned used;

    for (int i = 0; i < WORKERS; i++) {
        sj_srv_job j = job("napJob", "burst");
        ids[i] = 0;
        CHECK(sj_srv_trigger(srv, &j, &ids[i]) == 0);
    }
    for (int i = 0; i < WORKERS; i++)
        ok += sj_srv_wait_batch(srv, ids[i], (int)H_MS(8000)) == SJ_SRV_SUCCESS;
    took = h_now() - t0;
    CHECKF(ok == WORKERS, "%d of %d jobs succeeded", ok, WORKERS);
    /* one after another they would take 8 x 0.3 s = 2.4 s */
    CHECKF(took < 300 + H_MS(900), "%d parallel 0.3 s jobs took %lld ms",
           WORKERS, took);
    h_sleep_ms(H_MS(200));
    used = workers_used("napJob", from, &n);
    CHECKF(n == WORKERS, "%d task lines of napJob in the host log", n);
    CHECKF(popcount(used) == WORKERS, "the burst ran on %d workers (mask 0x%x)",
           popcount(used), used);
}

int main(void)
{
    sj_emu_config cfg;
    char kv[32];

    if (getenv("SJ_BINARY") == NULL) {
        fprintf(stderr, "test_e2e_idle: SJ_BINARY is not set\n");
        return 1;
    }
    sj_log_set_level(SJ_LOG_ERROR);
    memset(&cfg, 0, sizeof cfg);
    cfg.srv.beat_apply_ms = 0;
    if (sj_emu_open(&cfg, "127.0.0.1:0", &emu, &emu_port) != 0) {
        fprintf(stderr, "test_e2e_idle: cannot start the emulator\n");
        return 1;
    }
    srv = sj_emu_srv(emu);
    h_host_dir(&host);
    h_write_file(host.dir, "executors/idle.lua", executors_lua);
    snprintf(kv, sizeof kv, "SNAIL_WORKERS=%d", WORKERS);
    h_host_start(&host, emu_port, kv, NULL);
    for (long long until = h_now() + H_MS(10000);; h_sleep_ms(20)) {
        if (sj_srv_executor_count(srv) > 0 && h_log_has(&host, "listening"))
            break;
        if (h_now() > until || !h_host_alive(&host)) {
            fprintf(stderr, "test_e2e_idle: the host did not register\n");
            h_failures++;
            goto done;
        }
    }
    RUN(test_trickle_stays_on_one_worker);
    RUN(test_burst_uses_every_worker);
    CHECK(h_host_alive(&host));

done:
    CHECK(h_host_stop(&host, SIGTERM) == 0);
    if (h_failures != 0)
        h_log_tail(&host, "host", 4000);
    h_host_cleanup(&host);
    sj_emu_destroy(emu);
    printf("%s\n", h_failures == 0 ? "PASS" : "FAIL");
    return h_failures == 0 ? 0 : 1;
}
