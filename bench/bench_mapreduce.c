/*
 * bench_mapreduce - MapReduce end to end at 200-, 1,000- and 5,000-way
 * fan-out (issue 4, item 7; issue 14, item 4).
 *
 * Not a test: it prints figures. The REAL snailjob-lua binary runs as a
 * child process; the in-process emulator (sj_emu: sj_srv behind a real
 * gRPC listener and real outbound channels) plays the SnailJob server on
 * loopback. One run is a MAP_REDUCE batch: ROOT_MAP fans out WIDTH
 * elements in one map report when WIDTH <= 200; above that (a map report
 * holds at most 200) it fans out ceil(WIDTH / 200) GROUP tasks, and each
 * GROUP fans out its range of at most 200 elements (nested maps). Each
 * leaf MAP child doubles its element, shardNum REDUCE tasks sum their
 * partition and MERGE_REDUCE sums the reduces (checked: WIDTH * (WIDTH+1)).
 *
 * Measured per run, in the same process:
 *   wall    trigger -> batch SUCCESS as sj_srv sees it (median of runs);
 *   RPCs    every call of the run from the emulator's records, both ways:
 *           client->server (map report, result reports, logs) and
 *           server->client (dispatches; the cleanup stops sent after the
 *           completion are counted apart: they are not inside the wall);
 *   floor   a bare sj_server + sj_channel echo pair doing the same number
 *           of unary calls (the in-wall ones) with ~dispatch-sized
 *           messages, 1 in flight (sequential) and 8 in flight; the ratio
 *           is wall / floor;
 *   CPU     of the host process per run (/proc/<pid>/stat).
 *
 * Target (issue 14): wall <= 1.5 x the same calls on the pipelined echo
 * pair (8 in flight).
 *
 * Usage: bench_mapreduce [--binary PATH] [--runs N] [--width N[,N...]]
 *                        [--shards N] [--workers N] [--quick]
 * Threads: main only, plus the emulator's and the transport's own.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sj_harness.h"

#include "bench_proc.h"

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_srv.h"
#include "sj_transport.h"
#include "sj_wire.h"

#ifndef SJ_BINARY_DEFAULT
#define SJ_BINARY_DEFAULT "snailjob-lua"
#endif

#define MAP_URI "/batch/report/job/map/task/v1"
#define RESULT_URI "/report/dispatch/result"
#define LOG_URI "/batch/server/report/log"
#define BEAT_URI "/beat"
#define CALL_TIMEOUT_MS 10000
#define TARGET_RATIO_8 1.5 /* wall / the same calls 8 in flight */

static const char EXECUTOR[] =
    "local sj = require 'snailjob'\n"
    "local mr = sj.map_reduce('benchMapReduce')\n"
    "local function range(lo, hi)\n"
    "  local list = {}\n"
    "  for i = lo, hi do list[#list + 1] = i end\n"
    "  return list\n"
    "end\n"
    "mr:map(function(args)\n"
    "  local n = math.tointeger(tonumber(args.job_params))\n"
    "  if n <= 200 then return sj.mr_do_map(range(1, n), 'DOUBLE') end\n"
    "  local groups = {}\n"
    "  for lo = 1, n, 200 do\n"
    "    groups[#groups + 1] = lo .. ':' .. math.min(lo + 199, n)\n"
    "  end\n"
    "  return sj.mr_do_map(groups, 'GROUP')\n"
    "end)\n"
    "mr:map('GROUP', function(args)\n"
    "  local lo, hi = tostring(args.map_result):match('^(%d+):(%d+)$')\n"
    "  return sj.mr_do_map(range(tonumber(lo), tonumber(hi)), 'DOUBLE')\n"
    "end)\n"
    "mr:map('DOUBLE', function(args)\n"
    "  return sj.success(args.map_result * 2)\n"
    "end)\n"
    "mr:reduce(function(args)\n"
    "  local sum = 0\n"
    "  for _, x in ipairs(args.map_result) do sum = sum + tonumber(x) end\n"
    "  return sj.success(sum)\n"
    "end)\n"
    "mr:merge(function(args)\n"
    "  local sum = 0\n"
    "  for _, x in ipairs(args.reduces) do sum = sum + tonumber(x) end\n"
    "  return sj.success(sum)\n"
    "end)\n";

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static long long median(long long *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_ll);
    return n ? v[n / 2] : 0;
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the floor: a bare echo pair ----------------------------------------- */

static void echo_handler(void *ud, const sj_request *req, sj_reply *reply)
{
    (void)ud;
    sj_reply_set(reply, req->req_id, SJ_STATUS_YES, "", "true");
}

typedef struct flight {
    sj_channel *ch;
    const sj_request *req;
    size_t total;
    atomic_size_t issued, done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int failed;
} flight;

static void flight_cb(void *ud, int err, const char *detail,
                      const sj_reply *reply);

static void flight_issue(flight *f)
{
    if (atomic_fetch_add(&f->issued, 1) >= f->total)
        return;
    if (sj_channel_call(f->ch, f->req, CALL_TIMEOUT_MS, flight_cb, f) != 0) {
        pthread_mutex_lock(&f->mu);
        f->failed = 1;
        pthread_cond_signal(&f->cv);
        pthread_mutex_unlock(&f->mu);
    }
}

static void flight_cb(void *ud, int err, const char *detail,
                      const sj_reply *reply)
{
    flight *f = ud;
    (void)detail;
    if (err != 0 || reply->status != SJ_STATUS_YES) {
        pthread_mutex_lock(&f->mu);
        f->failed = 1;
        pthread_cond_signal(&f->cv);
        pthread_mutex_unlock(&f->mu);
        return;
    }
    if (atomic_fetch_add(&f->done, 1) + 1 == f->total) {
        pthread_mutex_lock(&f->mu);
        pthread_cond_signal(&f->cv);
        pthread_mutex_unlock(&f->mu);
        return;
    }
    flight_issue(f); /* the next call leaves from the callback */
}

/* Wall time (us) of n unary calls with `depth` in flight; -1 on error. */
static long long echo_run(sj_channel *ch, const sj_request *req, size_t n,
                          int depth)
{
    flight f;
    long long t0 = now_us(), t;

    memset(&f, 0, sizeof f);
    f.ch = ch;
    f.req = req;
    f.total = n;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    for (int i = 0; i < depth; i++)
        flight_issue(&f);
    pthread_mutex_lock(&f.mu);
    while (!f.failed && atomic_load(&f.done) < n)
        pthread_cond_wait(&f.cv, &f.mu);
    pthread_mutex_unlock(&f.mu);
    t = now_us() - t0;
    /* let the callbacks of a failed run drain before f goes away */
    if (f.failed)
        h_sleep_ms(CALL_TIMEOUT_MS);
    pthread_mutex_destroy(&f.mu);
    pthread_cond_destroy(&f.cv);
    return f.failed ? -1 : t;
}

/* ---- main ---------------------------------------------------------------- */

typedef struct counts {
    size_t in_all, in_map, in_result, in_log, in_beat;
    size_t out_all, out_dispatch, out_stop;
} counts;

static void snapshot(sj_srv *srv, counts *c)
{
    c->in_all = sj_srv_request_count(srv, NULL);
    c->in_map = sj_srv_request_count(srv, MAP_URI);
    c->in_result = sj_srv_request_count(srv, RESULT_URI);
    c->in_log = sj_srv_request_count(srv, LOG_URI);
    c->in_beat = sj_srv_request_count(srv, BEAT_URI);
    c->out_all = sj_srv_sent_count(srv, NULL);
    c->out_dispatch = sj_srv_sent_count(srv, SJ_SRV_URI_DISPATCH);
    c->out_stop = sj_srv_sent_count(srv, SJ_SRV_URI_STOP);
}

static void diff(const counts *a, const counts *b, counts *d)
{
    d->in_all = b->in_all - a->in_all;
    d->in_map = b->in_map - a->in_map;
    d->in_result = b->in_result - a->in_result;
    d->in_log = b->in_log - a->in_log;
    d->in_beat = b->in_beat - a->in_beat;
    d->out_all = b->out_all - a->out_all;
    d->out_dispatch = b->out_dispatch - a->out_dispatch;
    d->out_stop = b->out_stop - a->out_stop;
}

/* `runs` measured MapReduces of `width` (after `warm` more), each followed
 * by its echo floor; prints the figures. 0, or 1 on a failed run. */
static int run_width(sj_srv *srv, h_host *host, sj_channel *ch,
                     const sj_request *req, int width, int shards, int workers,
                     int runs, int warm)
{
    long long *walls = NULL, *fl_seq = NULL, *fl_8 = NULL, *r_seq = NULL,
              *r_8 = NULL, expect, host_us = 0;
    size_t n_calls = 0;
    counts c0, c1, d, tot;
    char width_s[16], *res = NULL;
    int code = 0;

    walls = calloc((size_t)runs, sizeof *walls);
    fl_seq = calloc((size_t)runs, sizeof *fl_seq);
    fl_8 = calloc((size_t)runs, sizeof *fl_8);
    r_seq = calloc((size_t)runs, sizeof *r_seq);
    r_8 = calloc((size_t)runs, sizeof *r_8);
    memset(&tot, 0, sizeof tot);
    snprintf(width_s, sizeof width_s, "%d", width);
    expect = (long long)width * (width + 1);
    for (int r = -warm; r < runs; r++) {
        sj_srv_job j;
        int64_t id = 0;
        long long t0, t1, c0_us;
        int st;

        memset(&j, 0, sizeof j);
        j.job_id = 4200;
        j.task_type = SJ_SRV_MAP_REDUCE;
        j.executor_info = "benchMapReduce";
        j.args = width_s;
        j.shard_num = shards;
        j.executor_timeout = 60;
        j.parallel_num = workers;
        c0_us = bp_cpu_us(host->pid);
        snapshot(srv, &c0);
        t0 = now_us();
        if (sj_srv_trigger(srv, &j, &id) != 0) {
            fprintf(stderr, "bench_mapreduce: trigger failed\n");
            code = 1;
            break;
        }
        st = sj_srv_wait_batch(srv, id, 120000);
        t1 = now_us();
        snapshot(srv, &c1);
        if (st != SJ_SRV_SUCCESS || sj_srv_batch_result(srv, id, &res) != 0 ||
            atoll(res) != expect) {
            fprintf(stderr,
                    "bench_mapreduce: run %d: status %d, result %s "
                    "(want %lld)\n",
                    r, st, res ? res : "none", expect);
            code = 1;
            break;
        }
        free(res);
        res = NULL;
        diff(&c0, &c1, &d);
        if (n_calls == 0) /* the same every run: take the first */
            n_calls = (d.in_all - d.in_beat) + (d.out_all - d.out_stop);
        /* the cleanup stops (one per task row) go out meanwhile: wait until
         * they are all sent, so they do not load the floor or the next run */
        for (size_t last = (size_t)-1, now;
             (now = sj_srv_sent_count(srv, SJ_SRV_URI_STOP)) != last;
             last = now)
            h_sleep_ms(100);
        if (r < 0)
            continue;
        host_us += bp_cpu_us(host->pid) - c0_us;
        walls[r] = t1 - t0;
        tot.in_all += d.in_all - d.in_beat;
        tot.in_map += d.in_map;
        tot.in_result += d.in_result;
        tot.in_log += d.in_log;
        tot.in_beat += d.in_beat;
        tot.out_all += d.out_all;
        tot.out_dispatch += d.out_dispatch;
        tot.out_stop += d.out_stop;
        /* the floor right after, under the same machine load */
        fl_seq[r] = echo_run(ch, req, n_calls, 1);
        fl_8[r] = echo_run(ch, req, n_calls, 8);
        if (fl_seq[r] <= 0 || fl_8[r] <= 0) {
            fprintf(stderr, "bench_mapreduce: echo calls failed\n");
            code = 1;
            break;
        }
        r_seq[r] = walls[r] * 1000 / fl_seq[r];
        r_8[r] = walls[r] * 1000 / fl_8[r];
    }
    if (code != 0)
        goto done_free;

    {
        size_t per_in = tot.in_all / (size_t)runs;
        size_t per_out = (tot.out_all - tot.out_stop) / (size_t)runs;
        double cpu_ms = (double)host_us / 1000.0 / runs;
        long long med_wall, med_seq = median(fl_seq, (size_t)runs),
                            med_8 = median(fl_8, (size_t)runs);

        qsort(walls, (size_t)runs, sizeof *walls, cmp_ll);
        med_wall = walls[runs / 2];
        printf("bench_mapreduce: %d-way MapReduce (shardNum %d: %d REDUCE + "
               "%s), host workers %d, parallelNum %d, %d runs (+%d warm-up)\n",
               width, shards, shards < width ? shards : width,
               shards > 1 ? "MERGE" : "no MERGE", workers, workers, runs, warm);
        printf("  wall trigger->SUCCESS: median %.1f ms, min %.1f ms, max "
               "%.1f ms\n",
               med_wall / 1e3, walls[0] / 1e3, walls[runs - 1] / 1e3);
        printf("  RPCs per run (emulator records): %zu in the wall = "
               "client->server %zu (%zu map report, %zu result reports, "
               "%zu log batches) + server->client %zu dispatches; "
               "+ %zu cleanup stops after SUCCESS; beats excluded "
               "(%zu in all runs)\n",
               per_in + per_out, per_in, tot.in_map / (size_t)runs,
               tot.in_result / (size_t)runs, tot.in_log / (size_t)runs, per_out,
               tot.out_stop / (size_t)runs, tot.in_beat);
        printf("  gRPC floor for %zu calls (echo pair, after each run): "
               "1 in flight median %.1f ms (%.0f us/call), 8 in flight "
               "%.1f ms (%.0f us/call)\n",
               n_calls, med_seq / 1e3, (double)med_seq / (double)n_calls,
               med_8 / 1e3, (double)med_8 / (double)n_calls);
        printf("  ratio wall / floor (median of per-run ratios): %.2fx "
               "(1 in flight), %.2fx (8 in flight)\n",
               median(r_seq, (size_t)runs) / 1e3,
               median(r_8, (size_t)runs) / 1e3);
        printf("  host CPU per run: %.1f ms (%.0f us per in-wall RPC)\n",
               cpu_ms, cpu_ms * 1000.0 / (double)n_calls);
        printf("  wall <= %.1f x the pipelined echo pair (8 in flight): "
               "%s\n",
               TARGET_RATIO_8,
               median(r_8, (size_t)runs) <= TARGET_RATIO_8 * 1000 ? "MET"
                                                                  : "MISSED");
    }

done_free:
    free(walls);
    free(fl_seq);
    free(fl_8);
    free(r_seq);
    free(r_8);
    free(res);
    return code;
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: bench_mapreduce [--binary PATH] [--runs N] [--width N,...]\n"
        "                       [--shards N] [--workers N] [--quick]\n"
        "  --binary   snailjob-lua to run (default $SJ_BINARY, else the\n"
        "             one built next to this bench)\n"
        "  --runs     measured runs per width (20 at 200-way, fewer for\n"
        "             wider, at least 3; 2 more warm up)\n"
        "  --width    leaf map tasks, a list (200,1000,5000); above 200\n"
        "             the root fans out groups of at most 200 (nested)\n"
        "  --shards   shardNum: REDUCE tasks (2, so MERGE runs too)\n"
        "  --workers  host workers (2)\n"
        "  --quick    5 runs per width\n");
}

int main(int argc, char **argv)
{
    const char *bin = getenv("SJ_BINARY");
    int runs = 20, shards = 2, workers = 2, warm = 2, port = 0, runs_given = 0;
    char workers_kv[32], target[64], widths[128] = "200,1000,5000",
                                     *save = NULL;
    sj_server *es = NULL;
    sj_channel *ch = NULL;
    sj_request req;
    int eport = 0;
    sj_emu_config cfg;
    sj_emu *emu = NULL;
    sj_srv *srv;
    h_host host;
    int code = 0;

    (void)h_failures;
    memset(&req, 0, sizeof req);
    if (bin == NULL || bin[0] == '\0')
        bin = SJ_BINARY_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0)
            runs = 5, runs_given = 1;
        else if (v != NULL && strcmp(a, "--binary") == 0)
            bin = v, i++;
        else if (v != NULL && strcmp(a, "--runs") == 0)
            runs = atoi(v), runs_given = 1, i++;
        else if (v != NULL && strcmp(a, "--width") == 0)
            snprintf(widths, sizeof widths, "%s", v), i++;
        else if (v != NULL && strcmp(a, "--shards") == 0)
            shards = atoi(v), i++;
        else if (v != NULL && strcmp(a, "--workers") == 0)
            workers = atoi(v), i++;
        else {
            usage();
            return 2;
        }
    }
    if (runs < 1 || shards < 1 || workers < 1) {
        usage();
        return 2;
    }
    for (const char *w = widths; *w != '\0'; w++) {
        int v = atoi(w);
        if (v < 1 || v > 40000) { /* 200 groups of 200 at most */
            usage();
            return 2;
        }
        while (*w != '\0' && *w != ',')
            w++;
        if (*w == '\0')
            break;
    }
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "bench_mapreduce: no snailjob-lua at '%s'\n", bin);
        return 2;
    }
    setenv("SJ_BINARY", bin, 1);
    signal(SIGPIPE, SIG_IGN);

    /* the emulator and the host */
    memset(&cfg, 0, sizeof cfg);
    cfg.srv.beat_apply_ms = 0;
    if (sj_emu_open(&cfg, "127.0.0.1:0", &emu, &port) != 0) {
        fprintf(stderr, "bench_mapreduce: cannot start the emulator\n");
        return 1;
    }
    srv = sj_emu_srv(emu);
    h_host_dir(&host);
    h_write_file(host.dir, "executors/bench.lua", EXECUTOR);
    snprintf(workers_kv, sizeof workers_kv, "SNAIL_WORKERS=%d", workers);
    /* A nested fan-out queues every leaf of a wide map on this one host
     * at once (the server dispatches a map report's children together):
     * the default queue_size (65536) takes 5,000 of them. */
    h_host_start(&host, port, workers_kv, "SNAIL_LOG_LEVEL=WARN",
                 "SNAIL_BEAT_INTERVAL=10", NULL);
    for (long long until = h_now() + 15000; h_now() < until;) {
        sj_srv_node_info *nodes;
        size_t n = 0;
        if (sj_srv_nodes(srv, &nodes, &n) == 0)
            sj_srv_nodes_free(nodes, n);
        if (n > 0 && sj_srv_executor_count(srv) > 0)
            break;
        if (!h_host_alive(&host))
            break;
        h_sleep_ms(10);
    }
    if (!h_host_alive(&host) || sj_srv_executor_count(srv) == 0) {
        fprintf(stderr, "bench_mapreduce: the host did not register:\n%s\n",
                h_read_file(host.log));
        code = 1;
        goto done;
    }

    /* the echo pair of the floor, measured between the runs */
    /* a dispatch-sized body (~450 bytes like §5.1's) */
    sj_wire_set(&req.uri, SJ_SRV_URI_DISPATCH);
    sj_wire_set(&req.body,
                "[{\"argsStr\":\"{\\\"jobParams\\\":\\\"200\\\",\\\"maps\\\":"
                "17}\",\"executorInfo\":\"benchMapReduce\","
                "\"executorTimeout\":60,\"executorType\":1,\"groupName\":"
                "\"snail_job_demo_group\",\"jobId\":4200,\"mrStage\":1,"
                "\"namespaceId\":\"764d604ec6fc45f68cd92514c40e9e1a\","
                "\"parallelNum\":2,\"retry\":false,\"retryCount\":0,"
                "\"retryStatus\":false,\"taskBatchId\":1234567890123456000,"
                "\"taskId\":1234567890123456017,\"taskName\":\"DOUBLE\","
                "\"taskType\":5}]");
    sj_request_add_header(&req, "SJ-TOKEN", SJ_SRV_DEFAULT_TOKEN);
    sj_request_add_header(&req, "host-id", SJ_EMU_SERVER_HOST_ID);
    if (sj_server_start("127.0.0.1:0", echo_handler, NULL, &es, &eport) != 0) {
        fprintf(stderr, "bench_mapreduce: no echo server\n");
        code = 1;
        goto done;
    }
    snprintf(target, sizeof target, "127.0.0.1:%d", eport);
    if (sj_channel_open(target, NULL, &ch) != 0) {
        fprintf(stderr, "bench_mapreduce: no echo channel\n");
        code = 1;
        goto done;
    }
    echo_run(ch, &req, 200, 8); /* connect and warm up */

    for (char *t = strtok_r(widths, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        int width = atoi(t), n = runs;
        if (!runs_given) /* fewer runs of the wide shapes: same load */
            n = width <= 200             ? runs
                : runs * 200 / width < 3 ? 3
                                         : runs * 200 / width;
        if (run_width(srv, &host, ch, &req, width, shards, workers, n, warm))
            code = 1;
        fflush(stdout);
    }

done:
    sj_channel_close(ch);
    sj_server_stop(es);
    sj_request_free(&req);
    h_host_stop(&host, SIGTERM);
    if (code != 0)
        fprintf(stderr, "---- host log ----\n%s\n", h_read_file(host.log));
    h_host_cleanup(&host);
    sj_emu_destroy(emu);
    return code;
}
