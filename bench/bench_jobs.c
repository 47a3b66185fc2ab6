/*
 * bench_jobs - dispatch -> result report through the real snailjob-lua.
 *
 * Not a test: it prints figures (issue 3, item 11). The REAL binary runs
 * as a child process with a trivial Lua job; this program plays the
 * SnailJob server over real gRPC on loopback with a minimal driver of its
 * own (not sj_srv: its state machine would be measured instead of the
 * host):
 *
 *   - an sj_server listener answering /beat, /register/job/executors,
 *     /report/dispatch/result (matched to its dispatch by taskId) and
 *     /batch/server/report/log;
 *   - an sj_channel to the host carrying /job/dispatch/v1 with SJ-TOKEN
 *     and a protocol.md §5.1 body; the next dispatch leaves from the
 *     report handler itself, so the driver adds no thread hop of its own.
 *
 * Measured in the same run:
 *   floor   a bare C-core echo pair (sj_server + sj_channel, ~100-byte
 *           messages, sequential unary calls); floor = 2 x echo p50, as a
 *           dispatch -> report round trip is two unary calls.
 *   latency dispatch -> report, 1 in flight: p50/p99 and p50 / floor.
 *   jobs/s  with 1, 8, 32 and 128 in flight (and CPU per job of the host
 *           and of this driver, which is less noisy than wall time).
 *   RSS     of the host with 4 workers when idle after start-up, and after
 *           100,000 jobs; the idle host's pages by kind (mapped files,
 *           heap, other anonymous) next to a bare gRPC C-core peer's
 *           (bench_bare_grpc, started for it: $BENCH_BARE_GRPC or the one
 *           built next to this bench), the floor any C-core client pays.
 *
 * Threads: main runs the phases; the listener thread answers the host and
 * starts the next dispatch; the channel thread takes dispatch replies.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sj_codec.h"
#include "sj_error.h"
#include "sj_transport.h"
#include "sj_wire.h"

#include "bench_proc.h"

#ifndef SJ_BINARY_DEFAULT
#define SJ_BINARY_DEFAULT "snailjob-lua"
#endif

#define TOKEN "SJ_bench_token_0123456789abcdef"
#define NAMESPACE "764d604ec6fc45f68cd92514c40e9e1a"
#define GROUP "bench_group"
#define CALL_TIMEOUT_MS 10000

/* Targets of issue 14 (issue 3's jobs/s target is kept for reference). */
#define TARGET_RATIO 1.3
#define TARGET_JOBS_PER_S 25000.0
#define TARGET_IDLE_RSS_KB 13619 /* 13.3 MB */
#define TARGET_RSS_GROWTH_KB (2 * 1024)
#define TARGET_HOST_CPU_US 100.0
#define TARGET_HOST_CS 5.0
#define TARGET_CEILING_PCT 80.0

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* Percentile of n sorted samples (nearest rank). */
static long long pct(const long long *v, size_t n, double p)
{
    size_t i;
    if (n == 0)
        return 0;
    i = (size_t)(p / 100.0 * (double)n);
    return v[i >= n ? n - 1 : i];
}

/* ---- the child host ----------------------------------------------------- */

static const char *spool_sync; /* --spool-sync: SNAIL_SPOOL_SYNC, or NULL */

static pid_t host_pid;
static char work_dir[256];

static void kill_host(void)
{
    if (host_pid > 0) {
        kill(host_pid, SIGKILL);
        waitpid(host_pid, NULL, 0);
        host_pid = 0;
    }
}

static void on_signal(int sig)
{
    if (host_pid > 0)
        kill(host_pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "bench_jobs: cannot write %s: %s\n", path,
                strerror(errno));
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void start_host(const char *bin, int server_port, int host_port,
                       int workers)
{
    char path[512], buf[32];

    snprintf(path, sizeof path, "%s/executors", work_dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/executors/bench.lua", work_dir);
    write_file(path, "local sj = require \"snailjob\"\n"
                     "sj.job(\"bench\", function(args) "
                     "return sj.success(args.task_id) end)\n");
    host_pid = fork();
    if (host_pid < 0) {
        perror("bench_jobs: fork");
        exit(1);
    }
    if (host_pid == 0) {
        /* A bench that dies (crash, SIGKILL) takes its host along. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        snprintf(path, sizeof path, "%s/host.log", work_dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (chdir(work_dir) != 0)
            _exit(127);
        for (char **e = __environ; *e != NULL;) { /* no SNAIL_* leaks in */
            if (strncmp(*e, "SNAIL_", 6) == 0) {
                char name[128];
                snprintf(name, sizeof name, "%.*s", (int)(strchr(*e, '=') - *e),
                         *e);
                unsetenv(name);
            } else {
                e++;
            }
        }
        setenv("SNAIL_SERVER_HOST", "127.0.0.1", 1);
        snprintf(buf, sizeof buf, "%d", server_port);
        setenv("SNAIL_SERVER_PORT", buf, 1);
        snprintf(buf, sizeof buf, "%d", host_port);
        setenv("SNAIL_HOST_PORT", buf, 1);
        setenv("SNAIL_HOST_IP", "127.0.0.1", 1);
        setenv("SNAIL_TOKEN", TOKEN, 1);
        setenv("SNAIL_GROUP_NAME", GROUP, 1);
        setenv("SNAIL_NAMESPACE", NAMESPACE, 1);
        setenv("SNAIL_EXECUTORS", "executors", 1);
        snprintf(buf, sizeof buf, "%d", workers);
        setenv("SNAIL_WORKERS", buf, 1);
        setenv("SNAIL_LOG_LEVEL", "INFO", 1);
        setenv("SNAIL_SPOOL_DIR", "spool", 1);
        if (spool_sync != NULL)
            setenv("SNAIL_SPOOL_SYNC", spool_sync, 1);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
}

/* VmRSS of a process in kB, -1 if unreadable. */
static long rss_kb(pid_t pid)
{
    return bp_status_kb(pid, "VmRSS");
}

#ifndef BENCH_BARE_GRPC_DEFAULT
#define BENCH_BARE_GRPC_DEFAULT "bench_bare_grpc"
#endif

/* The idle floor: start bench_bare_grpc (a gRPC C-core listener with a
 * connected channel to the driver, nothing else), let it settle as long
 * as the host did, and read where its pages are. 0, or -1 (printed) if it
 * could not run. */
static int bare_idle(int server_port, bp_mem *m)
{
    const char *bin = getenv("BENCH_BARE_GRPC");
    char target[64], line[64] = "";
    int fds[2], rc = -1;
    pid_t pid;
    FILE *out;

    if (bin == NULL || bin[0] == '\0')
        bin = BENCH_BARE_GRPC_DEFAULT;
    snprintf(target, sizeof target, "127.0.0.1:%d", server_port);
    if (pipe(fds) != 0)
        return -1;
    if ((pid = fork()) < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(bin, bin, target, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    out = fdopen(fds[0], "r");
    if (out != NULL && fgets(line, sizeof line, out) != NULL &&
        strncmp(line, "ready ", 6) == 0) {
        sleep_ms(2000); /* as long as the host was left idle */
        rc = bp_smaps(pid, m);
    } else {
        fprintf(stderr, "bench_jobs: %s did not start (BENCH_BARE_GRPC)\n",
                bin);
    }
    if (out != NULL)
        fclose(out);
    else
        close(fds[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return rc;
}

/* Host over the bare peer, and the mapped files only the host has. */
static void print_floor(const bp_mem *host, const bp_mem *bare)
{
    int col = 0;
    printf("  host over the bare peer  %+6ld kB: mapped files %+ld, heap "
           "%+ld, other anonymous %+ld, threads %+ld\n",
           host->rss - bare->rss, host->file - bare->file,
           host->heap - bare->heap, host->anon - bare->anon,
           host->threads - bare->threads);
    printf("    mapped files the bare peer does not map:");
    for (size_t i = 0; i < host->n; i++) {
        if (bp_mem_file(bare, host->maps[i].name) >= 0 || host->maps[i].rss < 8)
            continue;
        printf("%s %s %ld kB", col++ ? "," : "", host->maps[i].name,
               host->maps[i].rss);
    }
    printf("%s\n", col ? "" : " none");
}

/* Context switches of all threads of a process. Voluntary ones (a thread
 * blocks: futex, poll) count thread hand-offs and barely depend on the
 * machine's load; involuntary ones (preempted) do. `field` is
 * "voluntary_ctxt_switches" or "nonvoluntary_ctxt_switches". */
static long long ctx_count(pid_t pid, const char *field)
{
    size_t flen = strlen(field);
    char path[300], line[256];
    long long sum = 0;
    struct dirent *e;
    DIR *d;

    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    if ((d = opendir(path)) == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        FILE *f;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/status", (int)pid,
                 e->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        while (fgets(line, sizeof line, f) != NULL)
            if (strncmp(line, field, flen) == 0 && line[flen] == ':')
                sum += strtoll(line + flen + 1, NULL, 10);
        fclose(f);
    }
    closedir(d);
    return sum;
}

static long long ctx_switches(pid_t pid)
{
    return ctx_count(pid, "voluntary_ctxt_switches");
}

static long long ctx_switches_invol(pid_t pid)
{
    return ctx_count(pid, "nonvoluntary_ctxt_switches");
}

static long long self_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL +
           ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/* ---- perf around one phase (--perf, --perf-record) ------------------------
 */

/* `perf stat` (task-clock, context switches, migrations) or `perf record -g`
 * attached to `pid`, writing to `out`. Returns perf's pid, or -1. */
static pid_t perf_start(pid_t pid, int record, const char *out)
{
    char pidbuf[16];
    pid_t p;

    snprintf(pidbuf, sizeof pidbuf, "%d", (int)pid);
    p = fork();
    if (p < 0)
        return -1;
    if (p == 0) {
        int fd = open("/dev/null", O_WRONLY);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0)
            dup2(fd, 1);
        if (record)
            execlp("perf", "perf", "record", "-q", "-g", "-p", pidbuf, "-o",
                   out, (char *)NULL);
        else
            execlp("perf", "perf", "stat", "-x", ",", "-e",
                   "task-clock,context-switches,cpu-migrations", "-p", pidbuf,
                   "-o", out, (char *)NULL);
        _exit(127);
    }
    sleep_ms(300); /* let it attach to every thread */
    return p;
}

/* Stop perf (SIGINT makes it write its output; it then exits with some
 * status or re-raises SIGINT); -1 if it could not run at all (127). */
static int perf_stop(pid_t p)
{
    int status = 0;

    if (p <= 0)
        return -1;
    kill(p, SIGINT);
    if (waitpid(p, &status, 0) != p)
        return -1;
    if (WIFSIGNALED(status))
        return WTERMSIG(status) == SIGINT ? 0 : -1;
    return WEXITSTATUS(status) != 127 ? 0 : -1;
}

/* One counter of a `perf stat -x,` file ("value,unit,event,..."); -1 if
 * absent or not counted. */
static double perf_value(const char *file, const char *event)
{
    char line[512];
    double v = -1;
    FILE *f = fopen(file, "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        size_t len = strlen(event);
        if (line[0] == '#' || c2 == NULL)
            continue;
        if (strncmp(c2 + 1, event, len) == 0 &&
            (c2[1 + len] == ',' || c2[1 + len] == '\n') && line[0] != '<')
            v = strtod(line, NULL);
    }
    fclose(f);
    return v;
}

/* ---- the driver ---------------------------------------------------------- */

typedef struct phase {
    int64_t base; /* task ids of this phase: base .. base+total-1 */
    size_t total;
    atomic_size_t issued;  /* dispatches claimed */
    atomic_size_t done;    /* reports received (or dispatches refused) */
    atomic_size_t refused; /* dispatches not accepted */
    long long *t_start;    /* ns, per job */
    long long *t_done;     /* ns, per job; 0 = not yet */
    pthread_mutex_t lock;
    pthread_cond_t cond;
} phase;

static _Atomic(phase *) current;
static sj_channel *to_host;
static atomic_long beats, reports_dup, logs_batches;
static int64_t next_base = 1000000;

static void dispatch_done(void *ud, int err, const char *detail,
                          const sj_reply *reply);

static void finish_one(phase *ph)
{
    if (atomic_fetch_add(&ph->done, 1) + 1 == ph->total) {
        pthread_mutex_lock(&ph->lock);
        pthread_cond_signal(&ph->cond);
        pthread_mutex_unlock(&ph->lock);
    }
}

/* Claim and send the phase's next dispatch, if any is left. Any thread. */
static void issue_next(phase *ph)
{
    size_t i = atomic_fetch_add(&ph->issued, 1);
    char body[800], token_key[] = "SJ-TOKEN", token_val[] = TOKEN;
    char uri[] = "/job/dispatch/v1";
    sj_header hdr = {token_key, token_val};
    sj_request req = {0};
    int64_t id;
    int rc;

    if (i >= ph->total)
        return;
    id = ph->base + (int64_t)i;
    /* DispatchJobRequest as a 2.0.x server sends it for a CLUSTER job. */
    snprintf(body, sizeof body,
             "[{\"namespaceId\":\"" NAMESPACE "\",\"groupName\":\"" GROUP
             "\",\"jobId\":7,\"jobBizId\":\"bench\",\"taskBatchId\":%" PRId64
             ",\"taskId\":%" PRId64
             ",\"taskType\":1,\"taskName\":\"CLUSTER_TASK\","
             "\"parallelNum\":1,\"executorType\":2,\"executorInfo\":\"bench\","
             "\"executorTimeout\":60,\"argsStr\":\"{\\\"jobParams\\\":"
             "\\\"\\\"}\",\"retryStatus\":false,\"retry\":false}]",
             id, id);
    req.req_id = id;
    req.uri = uri;
    req.headers = &hdr;
    req.n_headers = 1;
    req.body = body;
    ph->t_start[i] = now_ns();
    /* The request is encoded before the call returns: stack storage is
     * fine, and nothing of it is freed here. */
    rc = sj_channel_call(to_host, &req, CALL_TIMEOUT_MS, dispatch_done,
                         (void *)(intptr_t)i);
    if (rc != 0) {
        fprintf(stderr, "bench_jobs: dispatch call failed: %s\n",
                sj_strerror(rc));
        atomic_fetch_add(&ph->refused, 1);
        finish_one(ph);
    }
}

/* Channel thread: the host's answer to a dispatch. */
static void dispatch_done(void *ud, int err, const char *detail,
                          const sj_reply *reply)
{
    phase *ph = atomic_load(&current);
    static atomic_int said;

    (void)ud;
    if (err == 0 && reply->status == SJ_STATUS_YES && reply->data != NULL &&
        strcmp(reply->data, "true") == 0)
        return; /* accepted: the report completes the job */
    if (atomic_fetch_add(&said, 1) < 5)
        fprintf(stderr, "bench_jobs: dispatch not accepted: %s\n",
                err ? (detail ? detail : sj_strerror(err))
                    : (reply->message ? reply->message : "status 0"));
    if (ph != NULL) {
        atomic_fetch_add(&ph->refused, 1);
        finish_one(ph);
        issue_next(ph);
    }
}

/* Listener thread: everything the host sends to "the server". */
static void server_handler(void *ud, const sj_request *req, sj_reply *reply)
{
    const char *uri = req->uri != NULL ? req->uri : "";

    (void)ud;
    if (strcmp(uri, "/report/dispatch/result") == 0) {
        phase *ph = atomic_load(&current);
        const char *p = req->body ? strstr(req->body, "\"taskId\":") : NULL;
        sj_reply_set(reply, req->req_id, SJ_STATUS_YES,
                     "Report Dispatch Result Processed Successfully", "true");
        if (ph == NULL || p == NULL)
            return;
        int64_t id = strtoll(p + 9, NULL, 10) - ph->base;
        if (id < 0 || (size_t)id >= ph->total)
            return; /* a late duplicate of an earlier phase */
        if (ph->t_done[id] != 0) {
            atomic_fetch_add(&reports_dup, 1);
            return;
        }
        ph->t_done[id] = now_ns();
        finish_one(ph);
        issue_next(ph);
    } else if (strcmp(uri, "/beat") == 0) {
        atomic_fetch_add(&beats, 1);
        sj_reply_set(reply, req->req_id, SJ_STATUS_YES, "", "\"PONG\"");
    } else if (strcmp(uri, "/batch/server/report/log") == 0) {
        atomic_fetch_add(&logs_batches, 1);
        sj_reply_set(reply, req->req_id, SJ_STATUS_YES,
                     "Batch Log Retry Data Upload Processed Successfully",
                     "true");
    } else {
        sj_reply_set(reply, req->req_id, SJ_STATUS_YES, "", "true");
    }
}

typedef struct result {
    size_t jobs, refused;
    double seconds;
    double jobs_per_s;
    long long p50_ns, p99_ns, max_ns;
    double host_cpu_us_per_job, self_cpu_us_per_job;
    double host_cs_per_job, self_cs_per_job;
    double host_ics_per_job; /* involuntary (preempted) */
} result;

/* Run `total` jobs with `inflight` of them outstanding at any time. */
static int run_phase(size_t total, size_t inflight, result *out, long long *acc,
                     size_t *n_acc)
{
    phase *ph = calloc(1, sizeof *ph);
    long long t0, t1, hc0, sc0, hs0, hi0, ss0, *lat;
    size_t n = 0;
    int rc = 0;

    if (ph == NULL)
        return -1;
    ph->base = next_base;
    next_base += (int64_t)total + 1000;
    ph->total = total;
    ph->t_start = calloc(total, sizeof *ph->t_start);
    ph->t_done = calloc(total, sizeof *ph->t_done);
    lat = calloc(total, sizeof *lat);
    if (ph->t_start == NULL || ph->t_done == NULL || lat == NULL) {
        fprintf(stderr, "bench_jobs: out of memory\n");
        exit(1);
    }
    pthread_mutex_init(&ph->lock, NULL);
    pthread_cond_init(&ph->cond, NULL);
    atomic_store(&current, ph);

    hc0 = bp_cpu_us(host_pid);
    sc0 = self_cpu_us();
    hs0 = ctx_switches(host_pid);
    hi0 = ctx_switches_invol(host_pid);
    ss0 = ctx_switches(getpid());
    t0 = now_ns();
    for (size_t i = 0; i < inflight && i < total; i++)
        issue_next(ph);
    pthread_mutex_lock(&ph->lock);
    {
        /* Stalled = no job finished for 30 s (a slow phase is fine). */
        size_t seen = 0;
        long long last = now_ns();
        while (atomic_load(&ph->done) < total) {
            struct timespec ts;
            size_t d;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&ph->cond, &ph->lock, &ts);
            if ((d = atomic_load(&ph->done)) != seen) {
                seen = d;
                last = now_ns();
            } else if (d < total && now_ns() - last > 30 * 1000000000LL) {
                fprintf(stderr,
                        "bench_jobs: stalled: %zu of %zu jobs done, none "
                        "for 30 s\n",
                        d, total);
                rc = -1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&ph->lock);
    t1 = now_ns();
    atomic_store(&current, NULL);
    sleep_ms(20); /* let in-flight callbacks of this phase drain */

    for (size_t i = 0; i < total; i++)
        if (ph->t_done[i] != 0)
            lat[n++] = ph->t_done[i] - ph->t_start[i];
    if (acc != NULL) {
        memcpy(acc + *n_acc, lat, n * sizeof *lat);
        *n_acc += n;
    }
    qsort(lat, n, sizeof *lat, cmp_ll);
    memset(out, 0, sizeof *out);
    out->jobs = n;
    out->refused = atomic_load(&ph->refused);
    out->seconds = (double)(t1 - t0) / 1e9;
    out->jobs_per_s = (double)n / out->seconds;
    out->p50_ns = pct(lat, n, 50);
    out->p99_ns = pct(lat, n, 99);
    out->max_ns = n ? lat[n - 1] : 0;
    out->host_cpu_us_per_job =
        n ? (double)(bp_cpu_us(host_pid) - hc0) / (double)n : 0;
    out->self_cpu_us_per_job =
        n ? (double)(self_cpu_us() - sc0) / (double)n : 0;
    out->host_cs_per_job =
        n ? (double)(ctx_switches(host_pid) - hs0) / (double)n : 0;
    out->host_ics_per_job =
        n ? (double)(ctx_switches_invol(host_pid) - hi0) / (double)n : 0;
    out->self_cs_per_job =
        n ? (double)(ctx_switches(getpid()) - ss0) / (double)n : 0;
    /* The phase may still be referenced by a callback racing the drain
     * above; it is small, so it is left allocated (bounded per run). */
    free(lat);
    return rc;
}

/* ---- the floor: a bare echo pair ----------------------------------------- */

static void echo_handler(void *ud, const sj_request *req, sj_reply *reply)
{
    (void)ud;
    sj_reply_set(reply, req->req_id, SJ_STATUS_YES, "", req->body);
}

/* One echo listener and a channel to it, kept open across measurements
 * so that they can be interleaved with the job runs. */
typedef struct echo_pair {
    sj_server *srv;
    sj_channel *ch;
    char body[128], uri[8], key[16], val[64];
    sj_header hdr;
    sj_request req;
    size_t request_bytes, reply_bytes;
    /* chained run in progress */
    size_t total, next;
    long long *lat, t_start;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int finished;
} echo_pair;

static void echo_open(echo_pair *e)
{
    char addr[64];
    int port;

    memset(e, 0, sizeof *e);
    /* ~100-byte messages, like a small job body and its reply */
    snprintf(e->body, sizeof e->body,
             "[{\"jobId\":7,\"taskBatchId\":1000001,\"taskId\":1000001,"
             "\"payload\":\"0123456789abcdef0123\"}]");
    snprintf(e->uri, sizeof e->uri, "/echo");
    snprintf(e->key, sizeof e->key, "SJ-TOKEN");
    snprintf(e->val, sizeof e->val, "%s", TOKEN);
    e->hdr = (sj_header){e->key, e->val};
    e->req = (sj_request){.req_id = 1,
                          .uri = e->uri,
                          .headers = &e->hdr,
                          .n_headers = 1,
                          .body = e->body};
    if (sj_server_start("127.0.0.1:0", echo_handler, NULL, &e->srv, &port) !=
        0) {
        fprintf(stderr, "bench_jobs: cannot start the echo server\n");
        exit(1);
    }
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    if (sj_channel_open(addr, NULL, &e->ch) != 0) {
        fprintf(stderr, "bench_jobs: cannot open the echo channel\n");
        exit(1);
    }
    {
        /* the protobuf sizes actually carried */
        sj_reply rep = {.req_id = 1,
                        .status = SJ_STATUS_YES,
                        .message = "",
                        .data = e->body};
        uint8_t *bytes = NULL;
        sj_codec_encode_request(&e->req, &bytes, &e->request_bytes);
        free(bytes);
        bytes = NULL;
        sj_codec_encode_reply(&rep, &bytes, &e->reply_bytes);
        free(bytes);
    }
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    /* warm-up: connect, let the channel settle */
    for (size_t i = 0; i < 300; i++) {
        sj_reply r;
        if (sj_channel_call_sync(e->ch, &e->req, CALL_TIMEOUT_MS, NULL, &r,
                                 NULL, 0) != 0) {
            fprintf(stderr, "bench_jobs: echo warm-up failed\n");
            exit(1);
        }
        sj_reply_free(&r);
    }
}

static void echo_close(echo_pair *e)
{
    sj_channel_close(e->ch);
    sj_server_stop(e->srv);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cond);
}

/* Blocking calls one after another; latencies into lat[0..n). */
static void echo_sync(echo_pair *e, size_t n, long long *lat)
{
    for (size_t i = 0; i < n; i++) {
        sj_reply r;
        long long t0 = now_ns();
        if (sj_channel_call_sync(e->ch, &e->req, CALL_TIMEOUT_MS, NULL, &r,
                                 NULL, 0) != 0) {
            fprintf(stderr, "bench_jobs: echo call failed\n");
            exit(1);
        }
        lat[i] = now_ns() - t0;
        sj_reply_free(&r);
    }
}

static void echo_cb(void *ud, int err, const char *detail,
                    const sj_reply *reply);

static void echo_issue(echo_pair *e)
{
    e->t_start = now_ns();
    if (sj_channel_call(e->ch, &e->req, CALL_TIMEOUT_MS, echo_cb, e) != 0) {
        fprintf(stderr, "bench_jobs: echo call failed\n");
        exit(1);
    }
}

static void echo_cb(void *ud, int err, const char *detail,
                    const sj_reply *reply)
{
    echo_pair *e = ud;

    if (err != 0 || reply->status != SJ_STATUS_YES) {
        fprintf(stderr, "bench_jobs: echo failed: %s\n",
                err ? (detail ? detail : sj_strerror(err)) : "status 0");
        exit(1);
    }
    e->lat[e->next++] = now_ns() - e->t_start;
    if (e->next < e->total) {
        echo_issue(e);
        return;
    }
    pthread_mutex_lock(&e->lock);
    e->finished = 1;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

/* Async chain: the next call leaves from the previous one's callback, as
 * the job driver's next dispatch leaves from the report handler. */
static void echo_chained(echo_pair *e, size_t n, long long *lat)
{
    e->total = n;
    e->next = 0;
    e->lat = lat;
    e->finished = 0;
    echo_issue(e);
    pthread_mutex_lock(&e->lock);
    while (!e->finished)
        pthread_cond_wait(&e->cond, &e->lock);
    pthread_mutex_unlock(&e->lock);
}

/* Bare transport ceiling: echo calls per second with `inflight` calls
 * outstanding, each callback starting the next. */
typedef struct echo_flood {
    size_t total;
    atomic_size_t issued, done;
    sj_channel *ch;
    const sj_request *req;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} echo_flood;

static void flood_cb(void *ud, int err, const char *detail,
                     const sj_reply *reply);

static void flood_issue(echo_flood *f)
{
    if (atomic_fetch_add(&f->issued, 1) >= f->total)
        return;
    if (sj_channel_call(f->ch, f->req, CALL_TIMEOUT_MS, flood_cb, f) != 0) {
        fprintf(stderr, "bench_jobs: echo call failed\n");
        exit(1);
    }
}

static void flood_cb(void *ud, int err, const char *detail,
                     const sj_reply *reply)
{
    echo_flood *f = ud;

    if (err != 0 || reply->status != SJ_STATUS_YES) {
        fprintf(stderr, "bench_jobs: echo failed: %s\n",
                err ? (detail ? detail : sj_strerror(err)) : "status 0");
        exit(1);
    }
    if (atomic_fetch_add(&f->done, 1) + 1 == f->total) {
        pthread_mutex_lock(&f->lock);
        pthread_cond_signal(&f->cond);
        pthread_mutex_unlock(&f->lock);
        return;
    }
    flood_issue(f);
}

static double echo_throughput(size_t n, size_t inflight, double *cpu_us_per)
{
    char body[] = "[{\"jobId\":7,\"taskBatchId\":1000001,\"taskId\":1000001,"
                  "\"payload\":\"0123456789abcdef0123\"}]";
    char uri[] = "/echo", key[] = "SJ-TOKEN", val[] = TOKEN;
    sj_header hdr = {key, val};
    sj_request req = {
        .req_id = 1, .uri = uri, .headers = &hdr, .n_headers = 1, .body = body};
    echo_flood f = {.total = n, .req = &req};
    sj_server *srv;
    char addr[64];
    int port;
    long long t0, t1, c0;

    if (sj_server_start("127.0.0.1:0", echo_handler, NULL, &srv, &port) != 0) {
        fprintf(stderr, "bench_jobs: cannot start the echo server\n");
        exit(1);
    }
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    if (sj_channel_open(addr, NULL, &f.ch) != 0) {
        fprintf(stderr, "bench_jobs: cannot open the echo channel\n");
        exit(1);
    }
    for (int i = 0; i < 100; i++) {
        sj_reply r;
        if (sj_channel_call_sync(f.ch, &req, CALL_TIMEOUT_MS, NULL, &r, NULL,
                                 0) != 0) {
            fprintf(stderr, "bench_jobs: echo warm-up failed\n");
            exit(1);
        }
        sj_reply_free(&r);
    }
    pthread_mutex_init(&f.lock, NULL);
    pthread_cond_init(&f.cond, NULL);
    c0 = self_cpu_us();
    t0 = now_ns();
    for (size_t i = 0; i < inflight; i++)
        flood_issue(&f);
    pthread_mutex_lock(&f.lock);
    while (atomic_load(&f.done) < n)
        pthread_cond_wait(&f.cond, &f.lock);
    pthread_mutex_unlock(&f.lock);
    t1 = now_ns();
    *cpu_us_per = (double)(self_cpu_us() - c0) / (double)n;
    sj_channel_close(f.ch);
    sj_server_stop(srv);
    pthread_mutex_destroy(&f.lock);
    pthread_cond_destroy(&f.cond);
    return (double)n / ((double)(t1 - t0) / 1e9);
}

/* ---- main ------------------------------------------------------------------
 */

static int free_port(void)
{
    /* Ask the kernel for an ephemeral port through a throwaway listener. */
    sj_server *s;
    int port = 0;
    if (sj_server_start("127.0.0.1:0", echo_handler, NULL, &s, &port) != 0)
        return 0;
    sj_server_stop(s);
    return port;
}

static void host_check_alive(void)
{
    int status;
    if (host_pid > 0 && waitpid(host_pid, &status, WNOHANG) == host_pid) {
        char cmd[400];
        host_pid = 0;
        fprintf(stderr, "bench_jobs: the host died (status %d); its log:\n",
                status);
        snprintf(cmd, sizeof cmd, "tail -n 30 '%s/host.log' >&2", work_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
        exit(1);
    }
}

static const char *verdict(int ok)
{
    return ok ? "MET" : "MISSED";
}

/* Start a host with `workers` workers and wait for its first beat; the
 * dispatch channel `to_host` is open on return. Exits on failure. */
static void host_up(const char *bin, int server_port, int workers)
{
    long b0 = atomic_load(&beats);
    long long t0 = now_ns();
    int host_port = free_port();
    char target[64];

    start_host(bin, server_port, host_port, workers);
    snprintf(target, sizeof target, "127.0.0.1:%d", host_port);
    if (sj_channel_open(target, NULL, &to_host) != 0) {
        fprintf(stderr, "bench_jobs: cannot open a channel to the host\n");
        exit(1);
    }
    while (atomic_load(&beats) == b0) {
        host_check_alive();
        if (now_ns() - t0 > 20 * 1000000000LL) {
            fprintf(stderr, "bench_jobs: no /beat from the host in 20 s\n");
            exit(1);
        }
        sleep_ms(10);
    }
}

/* Wait until the host accepts a dispatch (its executors are registered):
 * that probe job is run. Exits after 30 s. */
static void host_probe(void)
{
    long long t0 = now_ns();
    for (;;) {
        result probe;
        host_check_alive();
        if (run_phase(1, 1, &probe, NULL, NULL) == 0 && probe.jobs == 1)
            return;
        if (now_ns() - t0 > 30 * 1000000000LL) {
            fprintf(stderr, "bench_jobs: the host never accepted a "
                            "dispatch\n");
            exit(1);
        }
        sleep_ms(100);
    }
}

/* SIGTERM the host, wait up to 10 s, close the channel. 0 if it stopped. */
static int host_down(void)
{
    int status, rc = 0;

    kill(host_pid, SIGTERM);
    for (int i = 0; i < 1000 && waitpid(host_pid, &status, WNOHANG) == 0; i++)
        sleep_ms(10);
    if (waitpid(host_pid, &status, WNOHANG) == 0) {
        fprintf(stderr, "bench_jobs: host did not stop on SIGTERM\n");
        kill_host();
        rc = 1;
    }
    host_pid = 0;
    sj_channel_close(to_host);
    to_host = NULL;
    return rc;
}

/* Jobs/s at 128 in flight for each worker count of `list` ("1,4,8,16"),
 * a fresh host each, against the echo ceiling `echo_rate` (calls/s). A
 * count listed more than once ("4,8,16,4,8,16,4,8,16": interleaved
 * repetitions) is judged by its median, since one run on a shared
 * 2-core machine varies by 10-20 %. Returns 1 if a phase failed. */
#define SWEEP_MAX 64

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int worker_sweep(const char *bin, int server_port, const char *list,
                        size_t n, double echo_rate)
{
    int counts[SWEEP_MAX], n_counts = 0, code = 0, repeated = 0;
    double rates[SWEEP_MAX][SWEEP_MAX];
    size_t n_rates[SWEEP_MAX] = {0};
    char *copy = strdup(list), *save = NULL;

    printf("\nworkers sweep, 128 in flight, %zu jobs each (fresh host "
           "each; echo ceiling ~%.0f jobs/s):\n",
           n, echo_rate / 2);
    printf("  workers   jobs/s  of ceiling   p50 us | host cpu us/job  "
           "ctxsw vol  invol\n");
    for (char *t = strtok_r(copy, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        int w = atoi(t), k;
        result warm, r;
        if (w < 1)
            continue;
        host_up(bin, server_port, w);
        host_probe();
        if (run_phase(n / 4, 128, &warm, NULL, NULL) != 0 ||
            run_phase(n, 128, &r, NULL, NULL) != 0 || r.refused > 0)
            code = 1;
        printf("  %7d %8.0f %10.0f%% %8.1f | %15.1f %10.2f %6.2f\n", w,
               r.jobs_per_s, 100.0 * r.jobs_per_s / (echo_rate / 2),
               r.p50_ns / 1e3, r.host_cpu_us_per_job, r.host_cs_per_job,
               r.host_ics_per_job);
        fflush(stdout);
        for (k = 0; k < n_counts && counts[k] != w; k++)
            ;
        if (k == n_counts && n_counts < SWEEP_MAX)
            counts[n_counts++] = w;
        if (k < n_counts && n_rates[k] < SWEEP_MAX)
            rates[k][n_rates[k]++] = r.jobs_per_s;
        if (host_down() != 0)
            code = 1;
    }
    /* The median of each count (its one run when listed once). */
    double at4 = -1, worst_more = -1;
    for (int k = 0; k < n_counts; k++) {
        double med;
        qsort(rates[k], n_rates[k], sizeof rates[k][0], cmp_double);
        med = rates[k][n_rates[k] / 2];
        repeated |= n_rates[k] > 1;
        if (n_rates[k] > 1)
            printf("  %d workers: median %.0f jobs/s of %zu runs\n", counts[k],
                   med, n_rates[k]);
        if (counts[k] == 4)
            at4 = med;
        else if (counts[k] > 4 && (worst_more < 0 || med < worst_more))
            worst_more = med;
    }
    if (at4 > 0 && worst_more > 0)
        printf("  jobs/s with more than 4 workers never lower than with 4%s: "
               "%s (lowest %.0f vs %.0f)\n",
               repeated ? " (medians)" : "", verdict(worst_more >= at4),
               worst_more, at4);
    free(copy);
    return code;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_jobs [--binary PATH] [--workers N] [--seq N]\n"
            "                  [--tput N] [--rss-jobs N] [--echo N] [--quick]\n"
            "                  [--echo-only] [--perf] [--perf-record FILE]\n"
            "                  [--sweep LIST] [--spool-sync MODE]\n"
            "  --binary    snailjob-lua to run (default $SJ_BINARY, else\n"
            "              the one built next to this bench)\n"
            "  --workers   host workers (4)\n"
            "  --seq       sequential jobs for latency (5000)\n"
            "  --tput      jobs per in-flight level for jobs/s (20000)\n"
            "  --rss-jobs  jobs run in all before the final RSS (100000)\n"
            "  --echo      echo calls per floor measurement (5000)\n"
            "  --quick     a smoke run: 1/10 of every count\n"
            "  --echo-only only the bare transport figures (no host)\n"
            "  --perf      perf stat on the host around the 128-in-flight\n"
            "              level (task-clock, context switches, migrations)\n"
            "  --perf-record FILE  perf record -g on the host around the\n"
            "              128-in-flight level, into FILE (perf report -i)\n"
            "  --sweep LIST  after the rest, jobs/s at 128 in flight with\n"
            "              each worker count of LIST (\"1,4,8,16\"), a fresh\n"
            "              host each; a count listed again is judged by\n"
            "              its median (\"4,8,16,4,8,16,4,8,16\")\n"
            "  --spool-sync the journal's spool_sync: batch, always, never\n");
}

int main(int argc, char **argv)
{
    const char *bin = getenv("SJ_BINARY");
    size_t n_seq = 5000, n_tput = 20000, n_rss = 100000, n_echo = 5000;
    size_t levels[] = {1, 8, 32, 128}, total_jobs = 0;
    int workers = 4, quick = 0, echo_only = 0, server_port, code = 0,
        perf_stat = 0;
    const char *perf_record = NULL, *sweep = NULL;
    double perf_clock_ms = -1, perf_cs = -1, perf_mig = -1;
    long idle_kb, warm_kb, after_kb, peak_kb = 0;
    long idle_anon, idle_file, after_anon, after_file;
    bp_mem idle_mem, bare_mem;
    int bare_ok;
    result warm, seq, tput[4], rest, r;
    echo_pair ep;
    long long *seq_lat, *echo_lat, *sync_lat;
    size_t n_seq_lat = 0, n_echo_lat = 0;
    sj_server *srv;
    char tmpl[] = "/tmp/sj-bench-XXXXXX", perf_file[300];
    double echo_rate, echo_cpu;

    if (bin == NULL || bin[0] == '\0')
        bin = SJ_BINARY_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            quick = 1;
        } else if (strcmp(a, "--echo-only") == 0) {
            echo_only = 1;
        } else if (strcmp(a, "--perf") == 0) {
            perf_stat = 1;
        } else if (v != NULL && strcmp(a, "--perf-record") == 0) {
            perf_record = v, i++;
        } else if (v != NULL && strcmp(a, "--sweep") == 0) {
            sweep = v, i++;
        } else if (v != NULL && strcmp(a, "--spool-sync") == 0) {
            spool_sync = argv[++i];
        } else if (v != NULL && strcmp(a, "--binary") == 0) {
            bin = v, i++;
        } else if (v != NULL && strcmp(a, "--workers") == 0) {
            workers = atoi(v), i++;
        } else if (v != NULL && strcmp(a, "--seq") == 0) {
            n_seq = strtoul(v, NULL, 10), i++;
        } else if (v != NULL && strcmp(a, "--tput") == 0) {
            n_tput = strtoul(v, NULL, 10), i++;
        } else if (v != NULL && strcmp(a, "--rss-jobs") == 0) {
            n_rss = strtoul(v, NULL, 10), i++;
        } else if (v != NULL && strcmp(a, "--echo") == 0) {
            n_echo = strtoul(v, NULL, 10), i++;
        } else {
            usage();
            return 2;
        }
    }
    if (quick) {
        n_seq /= 10, n_tput /= 10, n_rss /= 10, n_echo /= 10;
    }
    if (n_seq < 10 || n_tput < 10 || n_echo < 10 || workers < 1) {
        usage();
        return 2;
    }
    if (access(bin, X_OK) != 0) {
        fprintf(stderr,
                "bench_jobs: no snailjob-lua binary at '%s' "
                "(--binary or SJ_BINARY)\n",
                bin);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (echo_only) { /* the transport alone, no host: gauge a machine */
        double rate, cpu;
        long long *lat = calloc(n_echo, sizeof *lat), c50, c99;
        sj_transport_init();
        echo_open(&ep);
        echo_chained(&ep, n_echo, lat);
        qsort(lat, n_echo, sizeof *lat, cmp_ll);
        c50 = pct(lat, n_echo, 50);
        c99 = pct(lat, n_echo, 99);
        echo_sync(&ep, n_echo, lat);
        qsort(lat, n_echo, sizeof *lat, cmp_ll);
        printf("echo pair (%zu/%zu-byte messages), sequential: chained p50 "
               "%.1f us p99 %.1f us; call_sync p50 %.1f us p99 %.1f us\n",
               ep.request_bytes, ep.reply_bytes, c50 / 1e3, c99 / 1e3,
               pct(lat, n_echo, 50) / 1e3, pct(lat, n_echo, 99) / 1e3);
        echo_close(&ep);
        free(lat);
        for (size_t l = 0; l < 4; l++) {
            rate = echo_throughput(n_tput, levels[l], &cpu);
            printf("echo pair, %3zu in flight: %.0f calls/s, %.1f us CPU "
                   "per call\n",
                   levels[l], rate, cpu);
        }
        sj_transport_shutdown();
        return 0;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    atexit(kill_host);

    sj_transport_init();
    if (mkdtemp(tmpl) == NULL) {
        perror("bench_jobs: mkdtemp");
        return 1;
    }
    snprintf(work_dir, sizeof work_dir, "%s", tmpl);
    if (sj_server_start("127.0.0.1:0", server_handler, NULL, &srv,
                        &server_port) != 0) {
        fprintf(stderr, "bench_jobs: cannot start the server listener\n");
        return 1;
    }
    printf("bench_jobs: host %s, %d workers, trivial Lua job; driver "
           "listener :%d\n",
           bin, workers, server_port);
    fflush(stdout);
    /* Ready = a first beat arrived and a probe dispatch is accepted. */
    host_up(bin, server_port, workers);
    /* Idle: started, beating, not one job run yet. The executor list is
     * registered right before dispatches are taken; give it a moment. */
    sleep_ms(2000);
    host_check_alive();
    idle_kb = rss_kb(host_pid);
    idle_anon = bp_status_kb(host_pid, "RssAnon");
    idle_file = bp_status_kb(host_pid, "RssFile");
    if (bp_smaps(host_pid, &idle_mem) != 0)
        memset(&idle_mem, 0, sizeof idle_mem);
    bare_ok = bare_idle(server_port, &bare_mem) == 0;
    host_probe();
    total_jobs++;

    printf("idle RSS (4 workers, started, no job yet): %ld kB\n", idle_kb);
    fflush(stdout);

    /* Warm-up, then the sequential jobs interleaved with the echo floor in
     * blocks, so that both see the same machine (it is shared and noisy). */
    if (run_phase(n_seq / 2, 8, &warm, NULL, NULL) != 0)
        code = 1;
    total_jobs += warm.jobs;
    warm_kb = rss_kb(host_pid);
    host_check_alive();

    seq_lat = calloc(n_seq, sizeof *seq_lat);
    echo_lat = calloc(n_echo, sizeof *echo_lat);
    sync_lat = calloc(n_echo, sizeof *sync_lat);
    if (seq_lat == NULL || echo_lat == NULL || sync_lat == NULL) {
        fprintf(stderr, "bench_jobs: out of memory\n");
        return 1;
    }
    echo_open(&ep);
    memset(&seq, 0, sizeof seq);
    {
        long long hc0 = bp_cpu_us(host_pid), hs0 = ctx_switches(host_pid);
        size_t blocks = n_seq / 250 ? n_seq / 250 : 1;
        for (size_t b = 0; b < blocks; b++) {
            size_t nj = n_seq / blocks + (b < n_seq % blocks);
            size_t ne = n_echo / blocks + (b < n_echo % blocks);
            echo_chained(&ep, ne, echo_lat + n_echo_lat);
            n_echo_lat += ne;
            if (run_phase(nj, 1, &r, seq_lat, &n_seq_lat) != 0)
                code = 1;
            seq.refused += r.refused;
            seq.seconds += r.seconds;
            host_check_alive();
        }
        seq.jobs = n_seq_lat;
        seq.host_cpu_us_per_job =
            (double)(bp_cpu_us(host_pid) - hc0) / (double)(n_seq_lat + 1);
        seq.host_cs_per_job =
            (double)(ctx_switches(host_pid) - hs0) / (double)(n_seq_lat + 1);
    }
    total_jobs += seq.jobs;
    echo_sync(&ep, n_echo, sync_lat);
    echo_close(&ep);
    qsort(seq_lat, n_seq_lat, sizeof *seq_lat, cmp_ll);
    qsort(echo_lat, n_echo_lat, sizeof *echo_lat, cmp_ll);
    qsort(sync_lat, n_echo, sizeof *sync_lat, cmp_ll);
    seq.p50_ns = pct(seq_lat, n_seq_lat, 50);
    seq.p99_ns = pct(seq_lat, n_seq_lat, 99);
    seq.max_ns = n_seq_lat ? seq_lat[n_seq_lat - 1] : 0;

    echo_rate = echo_throughput(n_tput, 128, &echo_cpu);

    for (size_t l = 0; l < 4; l++) {
        pid_t perf = -1;
        if (l == 3 && (perf_stat || perf_record != NULL)) {
            if (perf_record != NULL)
                snprintf(perf_file, sizeof perf_file, "%s", perf_record);
            else
                snprintf(perf_file, sizeof perf_file, "%s/perf-stat.txt",
                         work_dir);
            perf = perf_start(host_pid, perf_record != NULL, perf_file);
        }
        if (run_phase(n_tput, levels[l], &tput[l], NULL, NULL) != 0)
            code = 1;
        if (perf > 0) {
            if (perf_stop(perf) != 0)
                fprintf(stderr, "bench_jobs: perf failed or is missing "
                                "(kernel.perf_event_paranoid?)\n");
            else if (perf_record == NULL) {
                /* -1 (not counted) when perf may not attach */
                perf_clock_ms = perf_value(perf_file, "task-clock");
                perf_cs = perf_value(perf_file, "context-switches");
                perf_mig = perf_value(perf_file, "cpu-migrations");
            }
        }
        total_jobs += tput[l].jobs;
        host_check_alive();
        long kb = rss_kb(host_pid);
        if (kb > peak_kb)
            peak_kb = kb;
    }
    memset(&rest, 0, sizeof rest);
    if (total_jobs < n_rss)
        printf("running up to %zu jobs (32 in flight) for the RSS "
               "figure:\n",
               n_rss);
    while (total_jobs < n_rss) {
        size_t chunk = n_rss - total_jobs < 20000 ? n_rss - total_jobs : 20000;
        if (run_phase(chunk, 32, &rest, NULL, NULL) != 0) {
            code = 1;
            break;
        }
        total_jobs += rest.jobs;
        host_check_alive();
        long kb = rss_kb(host_pid);
        if (kb > peak_kb)
            peak_kb = kb;
        printf("  ... %zu jobs, host RSS %ld kB\n", total_jobs, kb);
        fflush(stdout);
    }
    sleep_ms(2000);
    host_check_alive();
    after_kb = rss_kb(host_pid);
    after_anon = bp_status_kb(host_pid, "RssAnon");
    after_file = bp_status_kb(host_pid, "RssFile");

    /* ---- figures ---- */
    long long echo_p50 = pct(echo_lat, n_echo_lat, 50);
    long long floor_ns = 2 * echo_p50;
    double ratio = (double)seq.p50_ns / (double)floor_ns;
    double best = 0;
    for (size_t l = 0; l < 4; l++)
        if (tput[l].jobs_per_s > best)
            best = tput[l].jobs_per_s;

    printf("\n");
    printf("echo floor (bare sj_server + sj_channel, %zu/%zu-byte unary "
           "calls, sequential, interleaved with the jobs below):\n",
           ep.request_bytes, ep.reply_bytes);
    printf("  chained from the callback, %zu calls: p50 %.1f us  p99 %.1f "
           "us\n",
           n_echo_lat, echo_p50 / 1e3, pct(echo_lat, n_echo_lat, 99) / 1e3);
    printf("  blocking call_sync, %zu calls:        p50 %.1f us  p99 %.1f "
           "us\n",
           n_echo, pct(sync_lat, n_echo, 50) / 1e3,
           pct(sync_lat, n_echo, 99) / 1e3);
    printf("  floor = 2 x chained p50 = %.1f us\n", floor_ns / 1e3);
    printf("  echo pair, 128 in flight: %.0f calls/s, %.1f us CPU per "
           "call (client + server halves)\n",
           echo_rate, echo_cpu);
    printf("  => transport-only ceiling for 2-call jobs here: ~%.0f jobs/s\n",
           echo_rate / 2);
    printf("\n");
    printf("dispatch -> result report, 1 in flight, %zu jobs:\n", seq.jobs);
    printf("  p50 %.1f us  p99 %.1f us  max %.1f us\n", seq.p50_ns / 1e3,
           seq.p99_ns / 1e3, seq.max_ns / 1e3);
    printf("  p50 / floor = %.2f  (target <= %.1f: %s)\n", ratio, TARGET_RATIO,
           verdict(ratio <= TARGET_RATIO));
    printf("\n");
    printf("throughput (%zu jobs per level):\n", n_tput);
    printf("  in flight   jobs/s   p50 us    p99 us | per job: host cpu us"
           "  ctxsw invol | driver cpu us  ctxsw\n");
    for (size_t l = 0; l < 4; l++)
        printf("  %9zu %8.0f %8.1f %9.1f | %20.1f %6.2f %5.2f | %13.1f "
               "%6.2f\n",
               levels[l], tput[l].jobs_per_s, tput[l].p50_ns / 1e3,
               tput[l].p99_ns / 1e3, tput[l].host_cpu_us_per_job,
               tput[l].host_cs_per_job, tput[l].host_ics_per_job,
               tput[l].self_cpu_us_per_job, tput[l].self_cs_per_job);
    printf("  (ctxsw: voluntary, the thread blocked; invol: preempted, "
           "which depends on the machine's load)\n");
    {
        double cpu = tput[3].host_cpu_us_per_job;
        double cs = tput[3].host_cs_per_job + tput[3].host_ics_per_job;
        if (perf_clock_ms >= 0 && tput[3].jobs > 0) {
            cpu = perf_clock_ms * 1000.0 / (double)tput[3].jobs;
            cs = perf_cs / (double)tput[3].jobs;
            printf("  perf stat on the host, 128 in flight: task-clock %.1f us "
                   "per job, %.2f context switches per job, %.3f migrations "
                   "per job\n",
                   cpu, cs, perf_mig / (double)tput[3].jobs);
        } else if (perf_record != NULL) {
            printf("  perf record of the host, 128 in flight: %s\n",
                   perf_record);
        }
        printf("  host CPU per job at 128 in flight %.1f us (target <= %.0f: "
               "%s); context switches per job %.2f (target <= %.0f: %s)\n",
               cpu, TARGET_HOST_CPU_US, verdict(cpu <= TARGET_HOST_CPU_US), cs,
               TARGET_HOST_CS, verdict(cs <= TARGET_HOST_CS));
    }
    printf("  (sequential run: host %.1f us CPU and %.2f voluntary context "
           "switches per job)\n",
           seq.host_cpu_us_per_job, seq.host_cs_per_job);
    printf("  best %.0f jobs/s = %.0f%% of the echo ceiling (issue 14: >= "
           "%.0f%% on 16 cores; issue 3's >= %.0f jobs/s: %s)\n",
           best, 100.0 * best / (echo_rate / 2), TARGET_CEILING_PCT,
           TARGET_JOBS_PER_S, verdict(best >= TARGET_JOBS_PER_S));
    printf("\n");
    printf("host RSS (VmRSS, %d workers):\n", workers);
    printf("  idle after start-up      %6ld kB  (target <= %d kB: %s)\n",
           idle_kb, TARGET_IDLE_RSS_KB,
           verdict(idle_kb > 0 && idle_kb <= TARGET_IDLE_RSS_KB));
    bp_mem_print("    ", &idle_mem);
    if (bare_ok) {
        printf("  bare gRPC C-core peer    %6ld kB  (bench_bare_grpc: a "
               "listener and a connected channel, idle)\n",
               bare_mem.rss);
        bp_mem_print("    ", &bare_mem);
        print_floor(&idle_mem, &bare_mem);
    }
    printf("  after %6zu jobs         %6ld kB\n", warm.jobs + 1, warm_kb);
    printf("  peak sampled             %6ld kB\n", peak_kb);
    printf("  after %6zu jobs, idle   %6ld kB  (%+ld kB vs idle; target "
           "within %d kB: %s)\n",
           total_jobs, after_kb, after_kb - idle_kb, TARGET_RSS_GROWTH_KB,
           verdict(after_kb - idle_kb <= TARGET_RSS_GROWTH_KB));
    printf("  of which: heap and stacks (RssAnon) %ld -> %ld kB (%+ld), "
           "mapped code and data (RssFile) %ld -> %ld kB (%+ld)\n",
           idle_anon, after_anon, after_anon - idle_anon, idle_file, after_file,
           after_file - idle_file);
    {
        size_t refused = warm.refused + seq.refused + rest.refused;
        for (size_t l = 0; l < 4; l++)
            refused += tput[l].refused;
        printf("\ndispatches refused %zu, duplicate reports %ld, beats %ld, "
               "log batches %ld\n",
               refused, atomic_load(&reports_dup), atomic_load(&beats),
               atomic_load(&logs_batches));
        if (refused > 0)
            code = 1;
    }
    fflush(stdout);

    if (sweep != NULL) {
        if (host_down() != 0)
            code = 1;
        if (worker_sweep(bin, server_port, sweep, n_tput, echo_rate) != 0)
            code = 1;
    }

    /* ---- tear down ---- */
    if (getenv("SJ_BENCH_HOLD") != NULL) { /* inspect the host by hand */
        fprintf(stderr, "bench_jobs: holding host pid %d for %s s\n",
                (int)host_pid, getenv("SJ_BENCH_HOLD"));
        sleep_ms(atol(getenv("SJ_BENCH_HOLD")) * 1000L);
    }
    if (host_pid > 0 && host_down() != 0)
        code = 1;
    sj_server_stop(srv);
    sj_transport_shutdown();
    if (getenv("SJ_KEEP") == NULL) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", work_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_jobs: could not remove %s\n", work_dir);
    } else {
        fprintf(stderr, "bench_jobs: kept %s\n", work_dir);
    }
    return code;
}
