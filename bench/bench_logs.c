/*
 * bench_logs - the task-log path: Lua sj.log.info -> the server's
 * /batch/server/report/log, through the real snailjob-lua (issue 14,
 * item 3).
 *
 * Not a test: it prints figures. The REAL binary runs as a child process
 * with one executor that writes N lines with sj.log.info and returns. This
 * program plays the server over real gRPC on loopback with a minimal
 * driver (not sj_srv, which would store every record and be measured
 * instead of the host):
 *
 *   - an sj_server listener answering /beat, /register/job/executors,
 *     /report/dispatch/result and /batch/server/report/log; every log
 *     record is counted per taskId by scanning the body (no JSON tree), a
 *     "log lines dropped" notice is counted apart, and the protobuf size
 *     of each log request (what gRPC carries, before HTTP/2 framing) is
 *     summed;
 *   - an sj_channel to the host carrying /job/dispatch/v1 (protocol.md
 *     §5.1 CLUSTER body), one batch per task.
 *
 * Per phase (1 task, then 4 tasks in parallel, each writing N lines):
 *   lines/s  every line received / (last line received - first dispatch);
 *   lost     N per task minus the lines received, and the lines the
 *            host says it dropped; any loss makes the exit status 1
 *            (sj.log.* waits for room in a full queue: issue 14);
 *   bytes    protobuf bytes and JSON body bytes per line;
 *   RSS      host VmRSS sampled every 5 ms: peak over the idle figure,
 *            against the log queue's byte bound (log_queue_max_bytes).
 *
 * Usage: bench_logs [--binary PATH] [--lines N] [--queue-bytes N]
 *                   [--workers N] [--batch N] [--quick]
 * Threads: main runs the phases and samples RSS; the listener thread
 * counts; the channel thread takes dispatch replies.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sj_harness.h"

#include "bench_proc.h"

#include "sj_codec.h"
#include "sj_error.h"
#include "sj_transport.h"
#include "sj_wire.h"

#ifndef SJ_BINARY_DEFAULT
#define SJ_BINARY_DEFAULT "snailjob-lua"
#endif

#define TOKEN "SJ_bench_token_0123456789abcdef"
#define NAMESPACE "764d604ec6fc45f68cd92514c40e9e1a"
#define GROUP "bench_group"
#define CALL_TIMEOUT_MS 10000
#define MAX_TASKS 8
#define TARGET_1 100000.0 /* lines/s from one task */
#define TARGET_4 200000.0 /* lines/s from 4 tasks in parallel */

static const char EXECUTOR[] =
    "local sj = require 'snailjob'\n"
    "sj.job('logs', function(args)\n"
    "  local n = math.tointeger(tonumber(args.job_params))\n"
    "  local info = sj.log.info\n"
    "  for i = 1, n do info('bench line %d of %d', i, n) end\n"
    "  return sj.success(n)\n"
    "end)\n";

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the driver's listener (listener thread) ----------------------------- */

static struct {
    pthread_mutex_t lock;
    int64_t task[MAX_TASKS]; /* task ids of the phase; 0 = none */
    size_t lines[MAX_TASKS]; /* log records received per task */
    int done[MAX_TASKS];     /* result report received */
    size_t other;            /* records of no task of the phase */
    size_t drop_notices;     /* "N log lines dropped" records */
    size_t notice_lines;     /* the sum of their N */
    size_t batches, pb_bytes, json_bytes;
    long long first_us, last_us; /* first and last log batch */
    long beats, registers;
} d = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int slot_of(int64_t id)
{
    for (int i = 0; i < MAX_TASKS; i++)
        if (d.task[i] == id && id != 0)
            return i;
    return -1;
}

/* Count the records of one log body (lock held), each from its
 * {"logType" to the next: its "taskId":<n>, or, for a host's "snailjob-lua:
 * N log lines dropped" notice, N. */
static void count_records(const char *body)
{
    static const char rec[] = "{\"logType\"",
                      key[] = "\"taskId\":", note[] = "\"snailjob-lua: ";
    for (const char *p = strstr(body, rec); p != NULL;) {
        /* every search stays inside this record: a scan to the end of
         * the body per record would make the driver the bottleneck */
        const char *next = strstr(p + 1, rec);
        size_t len = next != NULL ? (size_t)(next - p) : strlen(p);
        const char *k = memmem(p, len, key, sizeof key - 1),
                   *n = memmem(p, len, note, sizeof note - 1);
        if (n != NULL && memmem(n, len - (size_t)(n - p), " log lines dropped",
                                18) != NULL) {
            d.drop_notices++;
            d.notice_lines += strtoull(n + sizeof note - 1, NULL, 10);
        } else if (k != NULL) {
            int s = slot_of(strtoll(k + sizeof key - 1, NULL, 10));
            if (s >= 0)
                d.lines[s]++;
            else
                d.other++;
        }
        p = next;
    }
}

static void server_handler(void *ud, const sj_request *req, sj_reply *reply)
{
    const char *uri = req->uri != NULL ? req->uri : "";
    const char *body = req->body != NULL ? req->body : "";

    (void)ud;
    sj_reply_set(reply, req->req_id, SJ_STATUS_YES, "", "true");
    pthread_mutex_lock(&d.lock);
    if (strcmp(uri, "/batch/server/report/log") == 0) {
        uint8_t *bytes = NULL;
        size_t n = 0;
        if (sj_codec_encode_request(req, &bytes, &n) == 0)
            d.pb_bytes += n;
        free(bytes);
        d.json_bytes += strlen(body);
        d.batches++;
        if (d.first_us == 0)
            d.first_us = now_us();
        d.last_us = now_us();
        count_records(body);
    } else if (strcmp(uri, "/report/dispatch/result") == 0) {
        const char *p = strstr(body, "\"taskId\":");
        int s = p ? slot_of(strtoll(p + 9, NULL, 10)) : -1;
        if (s >= 0)
            d.done[s] = 1;
    } else if (strcmp(uri, "/beat") == 0) {
        d.beats++;
        sj_reply_set(reply, req->req_id, SJ_STATUS_YES, "", "\"PONG\"");
    } else if (strcmp(uri, "/register/job/executors") == 0) {
        d.registers++;
    }
    pthread_mutex_unlock(&d.lock);
}

/* ---- dispatch (main thread) ---------------------------------------------- */

static void dispatch_done(void *ud, int err, const char *detail,
                          const sj_reply *reply)
{
    (void)ud;
    if (err != 0 || reply->status != SJ_STATUS_YES)
        fprintf(stderr, "bench_logs: dispatch not accepted: %s\n",
                err ? (detail ? detail : sj_strerror(err))
                    : (reply->message ? reply->message : "status 0"));
}

static int dispatch(sj_channel *ch, int64_t id, size_t lines)
{
    char body[800], key[] = "SJ-TOKEN", val[] = TOKEN,
                    uri[] = "/job/dispatch/v1";
    sj_header hdr = {key, val};
    sj_request req = {0};

    snprintf(body, sizeof body,
             "[{\"namespaceId\":\"" NAMESPACE "\",\"groupName\":\"" GROUP
             "\",\"jobId\":9,\"jobBizId\":\"logs\",\"taskBatchId\":%" PRId64
             ",\"taskId\":%" PRId64
             ",\"taskType\":1,\"taskName\":\"CLUSTER_TASK\","
             "\"parallelNum\":1,\"executorType\":2,\"executorInfo\":\"logs\","
             "\"executorTimeout\":600,\"argsStr\":\"{\\\"jobParams\\\":"
             "\\\"%zu\\\"}\",\"retryStatus\":false,\"retry\":false}]",
             id, id, lines);
    req.req_id = id;
    req.uri = uri;
    req.headers = &hdr;
    req.n_headers = 1;
    req.body = body;
    return sj_channel_call(ch, &req, CALL_TIMEOUT_MS, dispatch_done, NULL);
}

typedef struct phase_result {
    size_t tasks, per_task, received, lost, drop_notices, other, batches;
    size_t notice_lines;
    double lines_per_s, pb_per_line, json_per_line;
    long peak_kb;
    double host_cpu_us_per_line;
    int results;
} phase_result;

/* Run `tasks` tasks of `lines` lines each; 0, or -1 if they did not end. */
static int run_phase(sj_channel *ch, h_host *host, size_t tasks, size_t lines,
                     int64_t base, phase_result *out)
{
    long long t0, deadline, quiet_since = 0, c0;
    size_t seen = 0;
    int rc = 0;

    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&d.lock);
    for (int i = 0; i < MAX_TASKS; i++) {
        d.task[i] = (size_t)i < tasks ? base + i : 0;
        d.lines[i] = 0;
        d.done[i] = 0;
    }
    d.other = d.drop_notices = d.notice_lines = 0;
    d.batches = d.pb_bytes = d.json_bytes = 0;
    d.first_us = d.last_us = 0;
    pthread_mutex_unlock(&d.lock);

    c0 = bp_cpu_us(host->pid);
    t0 = now_us();
    for (size_t i = 0; i < tasks; i++)
        if (dispatch(ch, base + (int64_t)i, lines) != 0)
            rc = -1;
    deadline = t0 + 120 * 1000000LL;
    /* Until every result arrived and every line, or no new line for 5 s
     * after the results (then the rest is lost). */
    while (rc == 0) {
        size_t got = 0;
        int results = 0;
        long kb = bp_status_kb(host->pid, "VmRSS");
        if (kb > out->peak_kb)
            out->peak_kb = kb;
        pthread_mutex_lock(&d.lock);
        for (size_t i = 0; i < tasks; i++) {
            got += d.lines[i];
            results += d.done[i];
        }
        pthread_mutex_unlock(&d.lock);
        if ((size_t)results == tasks && got >= tasks * lines)
            break;
        if (got != seen) {
            seen = got;
            quiet_since = now_us();
        } else if ((size_t)results == tasks && quiet_since != 0 &&
                   now_us() - quiet_since > 5000000) {
            break;
        }
        if (now_us() > deadline || !h_host_alive(host)) {
            fprintf(stderr,
                    "bench_logs: phase of %zu tasks did not end "
                    "(host %s)\n",
                    tasks, h_host_alive(host) ? "alive" : "dead");
            rc = -1;
        }
        h_sleep_ms(5);
    }
    pthread_mutex_lock(&d.lock);
    out->tasks = tasks;
    out->per_task = lines;
    for (size_t i = 0; i < tasks; i++) {
        out->received += d.lines[i];
        out->results += d.done[i];
    }
    out->lost =
        tasks * lines > out->received ? tasks * lines - out->received : 0;
    out->drop_notices = d.drop_notices;
    out->notice_lines = d.notice_lines;
    out->other = d.other;
    out->batches = d.batches;
    if (d.last_us > t0)
        out->lines_per_s = (double)out->received / ((d.last_us - t0) / 1e6);
    if (out->received > 0) {
        out->pb_per_line = (double)d.pb_bytes / (double)out->received;
        out->json_per_line = (double)d.json_bytes / (double)out->received;
        out->host_cpu_us_per_line =
            (double)(bp_cpu_us(host->pid) - c0) / (double)out->received;
    }
    pthread_mutex_unlock(&d.lock);
    return rc;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_logs [--binary PATH] [--lines N] [--queue-bytes N]\n"
            "                  [--workers N] [--batch N] [--quick]\n"
            "  --binary       snailjob-lua to run (default $SJ_BINARY, else\n"
            "                 the one built next to this bench)\n"
            "  --lines        lines written by each task (200000)\n"
            "  --queue-bytes  the host's log_queue_max_bytes (67108864, its "
            "default)\n"
            "  --workers      host workers (4)\n"
            "  --batch        the host's log_remote_buffer_size (its default)\n"
            "  --quick        20000 lines per task\n");
}

int main(int argc, char **argv)
{
    const char *bin = getenv("SJ_BINARY");
    size_t lines = 200000, queue_bytes = 64u << 20, batch = 0;
    int workers = 4, port = 0, code = 0;
    char target[64], kv_workers[48], kv_queue[64], kv_batch[64] = "";
    sj_server *srv = NULL;
    sj_channel *ch = NULL;
    phase_result res[2];
    size_t shapes[2] = {1, 4};
    long idle_kb;
    h_host host;

    (void)h_failures;
    if (bin == NULL || bin[0] == '\0')
        bin = SJ_BINARY_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0)
            lines = 20000;
        else if (v != NULL && strcmp(a, "--binary") == 0)
            bin = v, i++;
        else if (v != NULL && strcmp(a, "--lines") == 0)
            lines = strtoul(v, NULL, 10), i++;
        else if (v != NULL && strcmp(a, "--queue-bytes") == 0)
            queue_bytes = strtoul(v, NULL, 10), i++;
        else if (v != NULL && strcmp(a, "--workers") == 0)
            workers = atoi(v), i++;
        else if (v != NULL && strcmp(a, "--batch") == 0)
            batch = strtoul(v, NULL, 10), i++;
        else {
            usage();
            return 2;
        }
    }
    if (lines < 1 || workers < 4 || queue_bytes < 65536) {
        usage();
        return 2;
    }
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "bench_logs: no snailjob-lua at '%s'\n", bin);
        return 2;
    }
    setenv("SJ_BINARY", bin, 1);
    signal(SIGPIPE, SIG_IGN);
    sj_transport_init();
    if (sj_server_start("127.0.0.1:0", server_handler, NULL, &srv, &port) !=
        0) {
        fprintf(stderr, "bench_logs: cannot start the listener\n");
        return 1;
    }
    h_host_dir(&host);
    h_write_file(host.dir, "executors/logs.lua", EXECUTOR);
    snprintf(kv_workers, sizeof kv_workers, "SNAIL_WORKERS=%d", workers);
    snprintf(kv_queue, sizeof kv_queue, "SNAIL_LOG_QUEUE_MAX_BYTES=%zu",
             queue_bytes);
    /* WARN: the lines go to the server only, not to the host's own log */
    if (batch > 0)
        snprintf(kv_batch, sizeof kv_batch, "SNAIL_LOG_REMOTE_BUFFER_SIZE=%zu",
                 batch);
    h_host_start(&host, port, kv_workers, kv_queue, "SNAIL_LOG_LEVEL=WARN",
                 "SNAIL_TOKEN=" TOKEN, "SNAIL_GROUP_NAME=" GROUP,
                 "SNAIL_NAMESPACE=" NAMESPACE, "SNAIL_BEAT_INTERVAL=1",
                 batch > 0 ? kv_batch : NULL, NULL);
    snprintf(target, sizeof target, "127.0.0.1:%d", host.port);
    if (sj_channel_open(target, NULL, &ch) != 0) {
        fprintf(stderr, "bench_logs: no channel to the host\n");
        code = 1;
        goto done;
    }
    for (long long until = h_now() + 20000;; h_sleep_ms(10)) {
        long regs;
        pthread_mutex_lock(&d.lock);
        regs = d.registers;
        pthread_mutex_unlock(&d.lock);
        if (regs > 0)
            break;
        if (h_now() > until || !h_host_alive(&host)) {
            fprintf(stderr, "bench_logs: the host did not register\n");
            code = 1;
            goto done;
        }
    }
    h_sleep_ms(1000);
    idle_kb = bp_status_kb(host.pid, "VmRSS");
    {
        phase_result warm; /* a small task: connect, load, settle */
        if (run_phase(ch, &host, 1, 1000, 100, &warm) != 0 || warm.lost != 0) {
            fprintf(stderr, "bench_logs: warm-up task failed\n");
            code = 1;
            goto done;
        }
    }
    for (int s = 0; s < 2; s++) {
        if (run_phase(ch, &host, shapes[s], lines, 1000 + 100 * s, &res[s]) !=
            0)
            code = 1;
        if (res[s].results != (int)shapes[s])
            code = 1; /* lost lines are a figure; a missing result is not */
    }

    printf("bench_logs: host %s, %d workers, log_queue_max_bytes %zu, "
           "log_remote_buffer_size %s; each task writes %zu lines "
           "with sj.log.info\n",
           bin, workers, queue_bytes, batch > 0 ? kv_batch + 29 : "default",
           lines);
    printf("  idle RSS %ld kB\n", idle_kb);
    printf("  tasks    lines/s  received    lost  drop-notices  batches  "
           "pb B/line  json B/line  host cpu us/line  RSS peak over idle\n");
    for (int s = 0; s < 2; s++)
        printf("  %5zu %10.0f %9zu %7zu %13zu %8zu %10.1f %12.1f %17.2f "
               "%+9ld kB\n",
               res[s].tasks, res[s].lines_per_s, res[s].received, res[s].lost,
               res[s].drop_notices, res[s].batches, res[s].pb_per_line,
               res[s].json_per_line, res[s].host_cpu_us_per_line,
               res[s].peak_kb - idle_kb);
    printf("  1 task: %.0f lines/s (target >= %.0f: %s); 4 tasks: %.0f "
           "lines/s (target >= %.0f: %s)\n",
           res[0].lines_per_s, TARGET_1,
           res[0].lines_per_s >= TARGET_1 ? "MET" : "MISSED",
           res[1].lines_per_s, TARGET_4,
           res[1].lines_per_s >= TARGET_4 ? "MET" : "MISSED");
    {
        long peak =
            res[0].peak_kb > res[1].peak_kb ? res[0].peak_kb : res[1].peak_kb;
        size_t lost = res[0].lost + res[1].lost;
        printf("  lines lost: %zu (target 0: %s); RSS peak over idle %ld kB "
               "(bound: log_queue_max_bytes = %zu kB: %s)\n",
               lost, lost == 0 ? "MET" : "MISSED", peak - idle_kb,
               queue_bytes / 1024,
               peak - idle_kb <= (long)(queue_bytes / 1024) ? "MET" : "MISSED");
        printf("  lines the host's notices say it dropped: %zu; lost without "
               "a notice: %zu\n",
               res[0].notice_lines + res[1].notice_lines,
               lost > res[0].notice_lines + res[1].notice_lines
                   ? lost - res[0].notice_lines - res[1].notice_lines
                   : 0);
        if (lost > 0)
            code = 1; /* sj.log.* waits for room: a loss is a bug, and a
                         silent one (no notice) even more so */
    }
    fflush(stdout);

done:
    sj_channel_close(ch);
    h_host_stop(&host, SIGTERM);
    if (code != 0)
        fprintf(stderr, "---- host log (start) ----\n%.4000s\n",
                h_read_file(host.log));
    h_host_cleanup(&host);
    sj_server_stop(srv);
    sj_transport_shutdown();
    return code;
}
