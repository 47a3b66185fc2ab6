/*
 * End to end, issue 11: kill -9 at random points under a 10,000-job load,
 * with the emulator restarting too. Through the real binary ($SJ_BINARY)
 * and the in-process emulator over gRPC on loopback.
 *
 * Every job appends its taskId to done.txt just before it returns its
 * result. After the storm, one last host delivers what the journal holds.
 * Then:
 *   - every task in done.txt has a result at the server, except those
 *     whose host was killed between that append and the journal write (a
 *     window of microseconds; at most one per worker per kill, counted and
 *     printed);
 *   - no journal holds a pending record;
 *   - results delivered twice (the acknowledgement was lost in a kill) are
 *     counted and printed: the server must tolerate them, they are not
 *     losses.
 *
 * Plain builds run 10,000 jobs (about 10-30 s on a loaded 2-core machine);
 * with SJ_TIME_FACTOR > 1 (sanitizers) 10,000 / factor (printed).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_harness.h"
#include "sj_log.h"
#include "sj_srv.h"

#define URI_RESULT "/report/dispatch/result"

#define CHECK_LL(a, b)                                                         \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        CHECKF(a_ == b_, "%s = %lld, expected %lld", #a, a_, b_);              \
    } while (0)
#define WORKERS 4

static const char *const EXECUTORS =
    "local sj = require 'snailjob'\n"
    "sj.job('crashJob', function(args)\n"
    "  local f = assert(io.open('done.txt', 'a'))\n"
    "  f:write(args.task_id, '\\n') f:close()\n"
    "  return sj.success(args.task_id)\n"
    "end)\n";

/* ids: a sorted array of task ids and how often each was seen */
typedef struct idset {
    int64_t *id;
    int *count;
    size_t n, cap;
} idset;

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void ids_add(idset *s, int64_t id)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->id = realloc(s->id, s->cap * sizeof *s->id);
    }
    s->id[s->n++] = id;
}

/* Sort, and fold repeats into count[]. */
static void ids_fold(idset *s)
{
    size_t k = 0;

    qsort(s->id, s->n, sizeof *s->id, cmp64);
    s->count = calloc(s->n ? s->n : 1, sizeof *s->count);
    for (size_t i = 0; i < s->n; i++) {
        if (k > 0 && s->id[k - 1] == s->id[i]) {
            s->count[k - 1]++;
            continue;
        }
        s->id[k] = s->id[i];
        s->count[k++] = 1;
    }
    s->n = k;
}

static int ids_has(const idset *s, int64_t id)
{
    return bsearch(&id, s->id, s->n, sizeof id, cmp64) != NULL;
}

static void results_seen(sj_srv *srv, idset *out)
{
    size_t n = sj_srv_request_count(srv, URI_RESULT);

    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        sj_request r;
        if (sj_srv_request_get(srv, URI_RESULT, i, &r, NULL) == 0) {
            const char *p = r.body ? strstr(r.body, "\"taskId\":") : NULL;
            if (p != NULL)
                ids_add(out, strtoll(p + 9, NULL, 10));
            sj_request_free(&r);
        }
    }
    ids_fold(out);
}

static void done_seen(const h_host *h, idset *out)
{
    char path[400], *text, *p;

    snprintf(path, sizeof path, "%s/done.txt", h->dir);
    text = h_read_file(path);
    memset(out, 0, sizeof *out);
    for (p = text; *p != '\0';) {
        char *nl = strchr(p, '\n');
        if (nl == NULL)
            break; /* a line cut by a kill */
        ids_add(out, strtoll(p, NULL, 10));
        p = nl + 1;
    }
    free(text);
    ids_fold(out);
}

static void start_host(h_host *h, int port)
{
    char w[32];
    snprintf(w, sizeof w, "SNAIL_WORKERS=%d", WORKERS);
    h_host_start(h, port, w, "SNAIL_LOG_LEVEL=WARN", "SNAIL_BEAT_INTERVAL=1",
                 NULL);
}

static void test_kill9_storm(void)
{
    int port = 0, kills = 0, emu_restarts = 0;
    long long factor = h_factor() > 4 ? 4 : h_factor();
    int jobs = (int)(10000 / factor), triggered = 0;
    sj_emu *emu = NULL;
    sj_srv *srv;
    h_host h;
    char addr[64], journal[700];
    idset done, got;
    size_t lost = 0, dups = 0, extra = 0;
    long long t0 = h_now(), next_kill, until;
    unsigned seed = (unsigned)getpid();

    if (sj_emu_open(NULL, "127.0.0.1:0", &emu, &port) != 0) {
        CHECKF(0, "emulator did not start");
        return;
    }
    srv = sj_emu_srv(emu);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    h_host_dir(&h);
    h_write_file(h.dir, "executors/crash.lua", EXECUTORS);
    start_host(&h, port);
    until = h_now() + H_MS(10000);
    while (!sj_srv_has_executor(srv, "crashJob") && h_now() < until)
        h_sleep_ms(20);
    CHECK(sj_srv_has_executor(srv, "crashJob"));

    next_kill = h_now() + 300 + rand_r(&seed) % 700;
    while (triggered < jobs) {
        sj_srv_job j;
        memset(&j, 0, sizeof j);
        j.job_id = 1;
        j.task_type = SJ_SRV_CLUSTER;
        j.executor_info = "crashJob";
        j.executor_timeout = 5;
        for (int i = 0; i < 200 / factor && triggered < jobs;
             i++, triggered++) {
            int64_t id;
            sj_srv_trigger(srv, &j, &id);
        }
        h_sleep_ms(200);
        if (h_now() >= next_kill) {
            /* kill -9 at a random point; sometimes the server goes too */
            h_host_stop(&h, SIGKILL);
            kills++;
            if (kills % 3 == 0) {
                sj_emu_stop(emu);
                h_sleep_ms(rand_r(&seed) % 300);
                start_host(&h, port);
                h_sleep_ms(rand_r(&seed) % 300);
                CHECK_LL(sj_emu_start(emu, addr, NULL), 0);
                emu_restarts++;
            } else {
                start_host(&h, port);
            }
            next_kill = h_now() + 300 + rand_r(&seed) % 1200;
        }
    }
    /* Let the last host finish and deliver what its journal holds. */
    until = h_now() + H_MS(20000);
    size_t last = 0;
    long long stable_since = h_now();
    while (h_now() < until) {
        size_t n = sj_srv_request_count(srv, URI_RESULT);
        if (n != last) {
            last = n;
            stable_since = h_now();
        } else if (h_now() - stable_since > H_MS(1500)) {
            break;
        }
        h_sleep_ms(100);
    }
    CHECK_LL(h_host_stop(&h, SIGTERM), 0);

    done_seen(&h, &done);
    results_seen(srv, &got);
    for (size_t i = 0; i < done.n; i++)
        lost += !ids_has(&got, done.id[i]);
    for (size_t i = 0; i < got.n; i++) {
        dups += got.count[i] > 1 ? (size_t)got.count[i] - 1 : 0;
        extra += !ids_has(&done, got.id[i]);
    }
    h_journal_path(&h, NULL, journal, sizeof journal);
    printf("  %d jobs triggered in %lld ms, %d kill -9 of the host, %d "
           "emulator restarts; %zu tasks finished, %zu results received, "
           "%zu delivered twice (acks lost in a kill), %zu finished but not "
           "delivered (killed between the executor's return and the "
           "journal), journal pending %d\n",
           jobs, h_now() - t0, kills, emu_restarts, done.n, got.n, dups, lost,
           h_journal_count(journal, "", NULL));
    CHECKF(kills >= 3, "only %d kills", kills);
    CHECKF(done.n > (size_t)jobs / 4, "only %zu of %d jobs ran", done.n, jobs);
    CHECKF(lost <= (size_t)kills * WORKERS,
           "%zu finished results never delivered (%d kills)", lost, kills);
    CHECK_LL(extra, 0);
    CHECK_LL(h_journal_count(journal, "", NULL), 0);
    if (h_failures > 0)
        fprintf(stderr, "(host log: %s)\n", h.log);
    h_host_cleanup(&h);
    free(done.id);
    free(done.count);
    free(got.id);
    free(got.count);
    sj_emu_destroy(emu);
}

int main(void)
{
    sj_log_set_level(SJ_LOG_ERROR);
    RUN(test_kill9_storm);
    printf("%d failure(s)\n", h_failures);
    return h_failures != 0;
}
