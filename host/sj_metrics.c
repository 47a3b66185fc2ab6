#include "sj_metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "sj_dl.h"
#include "sj_error.h"
#include "sj_log.h"

/* ---- the counters ----------------------------------------------------------
 */

static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                 1,     2.5,  5,     10,   30,  60,   300};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

/* sj_outcome_name's names, in order, then everything else. */
static const char *const statuses[] = {
    "ok",          "failed",   "error", "timeout", "stopped", "out-of-memory",
    "no-executor", "shutdown", "other"};
#define NSTATUSES (sizeof statuses / sizeof statuses[0])

static const char *const refusal_names[SJ_REFUSED__COUNT] = {
    "token", "malformed", "queue_full", "closed"};
static const char *const cause_names[SJ_CAUSE__COUNT] = {"stop", "timeout",
                                                         "memory", "shutdown"};

typedef struct exec_stats {
    char name[128];
    unsigned long long finished[NSTATUSES];
    unsigned long long bucket[NBUCKETS]; /* not cumulative; summed on render */
    unsigned long long count;
    double sum;
} exec_stats;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static exec_stats table[SJ_METRICS_MAX_EXECUTORS + 1]; /* last: "_other" */
static size_t n_table;                                 /* guarded */

static atomic_ullong refused[SJ_REFUSED__COUNT];
static atomic_ullong interrupted[SJ_CAUSE__COUNT];
static atomic_ullong reload_failures;
static atomic_ullong workers_retired;
static atomic_int state = SJ_METRICS_STARTING;
static atomic_llong state_since_ms; /* wall clock */

static pthread_mutex_t collect_lock = PTHREAD_MUTEX_INITIALIZER;
static sj_metrics_collect_fn collect_fn; /* guarded by collect_lock */
static void *collect_ud;

static atomic_llong beat_ms = 10000; /* the serving daemon's beat interval */

void sj_metrics_task_finished(const char *executor, const char *status,
                              double seconds)
{
    exec_stats *e = NULL;
    size_t s, b;

    if (executor == NULL)
        executor = "";
    for (s = 0; s < NSTATUSES - 1; s++)
        if (status != NULL && strcmp(status, statuses[s]) == 0)
            break;
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < n_table && e == NULL; i++)
        if (strncmp(table[i].name, executor, sizeof table[i].name - 1) == 0)
            e = &table[i];
    if (e == NULL) {
        if (n_table < SJ_METRICS_MAX_EXECUTORS) {
            e = &table[n_table++];
            snprintf(e->name, sizeof e->name, "%s", executor);
        } else {
            e = &table[SJ_METRICS_MAX_EXECUTORS];
            snprintf(e->name, sizeof e->name, "_other");
        }
    }
    e->finished[s]++;
    for (b = 0; b < NBUCKETS && seconds > buckets[b]; b++)
        ;
    if (b < NBUCKETS)
        e->bucket[b]++;
    e->count++;
    e->sum += seconds > 0 ? seconds : 0;
    pthread_mutex_unlock(&table_lock);
}

void sj_metrics_dispatch_refused(sj_metrics_refusal reason)
{
    if ((unsigned)reason < SJ_REFUSED__COUNT)
        atomic_fetch_add(&refused[reason], 1);
}

void sj_metrics_interrupted(sj_metrics_cause cause)
{
    if ((unsigned)cause < SJ_CAUSE__COUNT)
        atomic_fetch_add(&interrupted[cause], 1);
}

void sj_metrics_reload_failed(void)
{
    atomic_fetch_add(&reload_failures, 1);
}

void sj_metrics_worker_retired(void)
{
    atomic_fetch_add(&workers_retired, 1);
}

void sj_metrics_set_state(sj_metrics_state st)
{
    atomic_store(&state, (int)st);
    atomic_store(&state_since_ms, sj_now_ms());
}

sj_metrics_state sj_metrics_get_state(void)
{
    return (sj_metrics_state)atomic_load(&state);
}

void sj_metrics_set_collector(sj_metrics_collect_fn fn, void *ud)
{
    pthread_mutex_lock(&collect_lock);
    collect_fn = fn;
    collect_ud = ud;
    pthread_mutex_unlock(&collect_lock);
}

void sj_metrics_reset(void)
{
    pthread_mutex_lock(&table_lock);
    memset(table, 0, sizeof table);
    n_table = 0;
    pthread_mutex_unlock(&table_lock);
    for (size_t i = 0; i < SJ_REFUSED__COUNT; i++)
        atomic_store(&refused[i], 0);
    for (size_t i = 0; i < SJ_CAUSE__COUNT; i++)
        atomic_store(&interrupted[i], 0);
    atomic_store(&reload_failures, 0);
    atomic_store(&workers_retired, 0);
}

/* 1 with *s filled when a collector is set. */
static int snapshot(sj_metrics_snapshot *s)
{
    int have;

    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&collect_lock);
    have = collect_fn != NULL;
    if (have)
        collect_fn(collect_ud, s);
    pthread_mutex_unlock(&collect_lock);
    if (s->n_workers > SJ_METRICS_MAX_WORKERS)
        s->n_workers = SJ_METRICS_MAX_WORKERS;
    return have;
}

/* ---- rendering ----------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void bput(buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bput(buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void escape_label(const char *in, char *out, size_t n)
{
    size_t o = 0;

    for (; *in != '\0' && o + 3 < n; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

static void family(buf *b, const char *name, const char *type, const char *help)
{
    bput(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *sj_metrics_render(void)
{
    buf b = {malloc(4096), 0, 4096, 0};
    sj_metrics_snapshot s;
    exec_stats *copy;
    size_t n;
    char label[300];
    int have;

    if (b.p == NULL)
        return NULL;
    b.p[0] = '\0';
    copy = malloc(sizeof table);
    if (copy == NULL) {
        free(b.p);
        return NULL;
    }
    pthread_mutex_lock(&table_lock);
    n = n_table;
    memcpy(copy, table, sizeof table);
    pthread_mutex_unlock(&table_lock);
    if (copy[SJ_METRICS_MAX_EXECUTORS].count > 0)
        copy[n++] = copy[SJ_METRICS_MAX_EXECUTORS];
    have = snapshot(&s);

    family(&b, "snailjob_tasks_finished_total", "counter",
           "Tasks that ended, by executor and outcome.");
    for (size_t i = 0; i < n; i++) {
        escape_label(copy[i].name, label, sizeof label);
        for (size_t k = 0; k < NSTATUSES; k++)
            if (copy[i].finished[k] > 0)
                bput(&b,
                     "snailjob_tasks_finished_total{executor=\"%s\","
                     "status=\"%s\"} %llu\n",
                     label, statuses[k], copy[i].finished[k]);
    }
    family(&b, "snailjob_task_duration_seconds", "histogram",
           "Run time of tasks, by executor.");
    for (size_t i = 0; i < n; i++) {
        unsigned long long cum = 0;
        escape_label(copy[i].name, label, sizeof label);
        for (size_t k = 0; k < NBUCKETS; k++) {
            cum += copy[i].bucket[k];
            bput(&b,
                 "snailjob_task_duration_seconds_bucket{executor=\"%s\","
                 "le=\"%g\"} %llu\n",
                 label, buckets[k], cum);
        }
        bput(&b,
             "snailjob_task_duration_seconds_bucket{executor=\"%s\","
             "le=\"+Inf\"} %llu\n",
             label, copy[i].count);
        bput(&b, "snailjob_task_duration_seconds_sum{executor=\"%s\"} %.6f\n",
             label, copy[i].sum);
        bput(&b, "snailjob_task_duration_seconds_count{executor=\"%s\"} %llu\n",
             label, copy[i].count);
    }
    free(copy);

    family(&b, "snailjob_dispatch_refused_total", "counter",
           "Inbound calls (dispatches, stops) refused, by reason.");
    for (size_t k = 0; k < SJ_REFUSED__COUNT; k++)
        bput(&b, "snailjob_dispatch_refused_total{reason=\"%s\"} %llu\n",
             refusal_names[k], atomic_load(&refused[k]));
    family(&b, "snailjob_task_interruptions_total", "counter",
           "Tasks interrupted, by cause.");
    for (size_t k = 0; k < SJ_CAUSE__COUNT; k++)
        bput(&b, "snailjob_task_interruptions_total{cause=\"%s\"} %llu\n",
             cause_names[k], atomic_load(&interrupted[k]));
    family(&b, "snailjob_reload_failures_total", "counter",
           "Reloads of the executor files that failed.");
    bput(&b, "snailjob_reload_failures_total %llu\n",
         atomic_load(&reload_failures));
    family(&b, "snailjob_workers_retired_total", "counter",
           "Worker threads retired (replaced after a fault).");
    bput(&b, "snailjob_workers_retired_total %llu\n",
         atomic_load(&workers_retired));
    family(&b, "snailjob_state", "gauge",
           "Host state: 0 starting, 1 serving, 2 draining.");
    bput(&b, "snailjob_state %d\n", atomic_load(&state));

    if (have) {
        const struct {
            const char *name, *type, *help;
            double v;
        } one[] = {
            {"snailjob_tasks_running", "gauge", "Tasks running now.",
             (double)s.running},
            {"snailjob_tasks_queued", "gauge", "Tasks waiting for a worker.",
             (double)s.queued},
            {"snailjob_log_lines_sent_total", "counter",
             "Task log lines the server acknowledged.",
             (double)s.log_lines_sent},
            {"snailjob_log_lines_dropped_total", "counter",
             "Task log lines dropped (queue bound), each one reported.",
             (double)s.log_lines_dropped},
            {"snailjob_journal_pending", "gauge",
             "Result reports journaled and not yet acknowledged.",
             (double)s.journal_pending},
            {"snailjob_journal_oldest_age_seconds", "gauge",
             "Age of the oldest unacknowledged result report.",
             s.journal_oldest_age_s},
            {"snailjob_server_reachable", "gauge",
             "1 when the last heartbeat was accepted.", s.reachable ? 1 : 0},
            {"snailjob_server_last_success_timestamp_seconds", "gauge",
             "Unix time of the last accepted heartbeat (0: none yet).",
             s.last_ok_ms / 1000.0},
            {"snailjob_reload_generation", "gauge",
             "Generation of executor code in force.", (double)s.generation},
        };
        for (size_t k = 0; k < sizeof one / sizeof one[0]; k++) {
            family(&b, one[k].name, one[k].type, one[k].help);
            bput(&b, "%s %.15g\n", one[k].name, one[k].v);
        }
        family(&b, "snailjob_lua_memory_bytes", "gauge",
               "Bytes held by each worker's Lua state.");
        for (size_t i = 0; i < s.n_workers; i++)
            bput(&b, "snailjob_lua_memory_bytes{worker=\"%zu\"} %zu\n", i,
                 s.lua_bytes[i]);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

int sj_metrics_health(char *body, size_t n)
{
    sj_metrics_snapshot s;
    long long now = sj_now_ms(), ref, limit = 3 * atomic_load(&beat_ms);
    int st = atomic_load(&state);

    if (st == SJ_METRICS_STARTING) {
        snprintf(body, n, "starting\n");
        return 503;
    }
    if (st == SJ_METRICS_DRAINING) {
        snprintf(body, n, "draining\n");
        return 503;
    }
    if (snapshot(&s)) {
        ref = s.last_ok_ms > atomic_load(&state_since_ms)
                  ? s.last_ok_ms
                  : atomic_load(&state_since_ms);
        if (now - ref > limit) {
            snprintf(body, n, "server unreachable for %lld s\n",
                     (now - ref) / 1000);
            return 503;
        }
    }
    snprintf(body, n, "serving\n");
    return 200;
}

/* ---- serving ----------------------------------------------------------------
 */

/* libmicrohttpd, loaded by sj_metrics_serve when metrics_listen is set
 * (sj_dl.h): linking it maps gnutls and its dependencies into every
 * host. Filled once on the main thread before the daemon starts. */
#define MHD_SONAME "libmicrohttpd.so.12"
static struct mhd_api {
    __typeof__(&MHD_add_response_header) add_response_header;
    __typeof__(&MHD_create_response_from_buffer) create_response_from_buffer;
    __typeof__(&MHD_destroy_response) destroy_response;
    __typeof__(&MHD_queue_response) queue_response;
    __typeof__(&MHD_start_daemon) start_daemon;
    __typeof__(&MHD_stop_daemon) stop_daemon;
} mhd;
static int mhd_loaded;

#define MHD_SYM(f) SJ_DL_SYM(struct mhd_api, f, "MHD_" #f)
static const sj_dl_sym mhd_syms[] = {
    MHD_SYM(add_response_header), MHD_SYM(create_response_from_buffer),
    MHD_SYM(destroy_response),    MHD_SYM(queue_response),
    MHD_SYM(start_daemon),        MHD_SYM(stop_daemon),
};

static struct MHD_Daemon *daemon_; /* main thread only */

static enum MHD_Result answer(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    struct MHD_Response *r;
    char health[128], *text = NULL;
    const char *type = "text/plain; charset=utf-8";
    unsigned code;
    enum MHD_Result ok;

    (void)cls;
    (void)version;
    (void)upload;
    (void)con_cls;
    if (*upload_size != 0) { /* a body is not for us: ignore it */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
        snprintf(health, sizeof health, "GET only\n");
    } else if (strcmp(url, "/metrics") == 0) {
        if ((text = sj_metrics_render()) == NULL)
            return MHD_NO;
        code = MHD_HTTP_OK;
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (strcmp(url, "/healthz") == 0) {
        code = (unsigned)sj_metrics_health(health, sizeof health);
    } else {
        code = MHD_HTTP_NOT_FOUND;
        snprintf(health, sizeof health, "not found: /metrics, /healthz\n");
    }
    if (text != NULL)
        r = mhd.create_response_from_buffer(strlen(text), text,
                                            MHD_RESPMEM_MUST_FREE);
    else
        r = mhd.create_response_from_buffer(strlen(health), health,
                                            MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    mhd.add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    ok = mhd.queue_response(c, code, r);
    mhd.destroy_response(r);
    return ok;
}

/* Splits "host:port" / "[v6]:port" into host and port text. */
static int split(const char *listen, char *host, size_t hn, char *port,
                 size_t pn, char *err, size_t errlen)
{
    const char *colon, *h = listen;
    size_t hl;
    char *end;
    long p;

    if (listen == NULL || listen[0] == '\0')
        goto bad;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (close == NULL || close[1] != ':')
            goto bad;
        h = listen + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        if ((colon = strrchr(listen, ':')) == NULL)
            goto bad;
        hl = (size_t)(colon - listen);
    }
    if (hl == 0 || hl >= hn)
        goto bad;
    memcpy(host, h, hl);
    host[hl] = '\0';
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 0 || p > 65535)
        goto bad;
    snprintf(port, pn, "%ld", p);
    return 0;
bad:
    snprintf(err, errlen,
             "metrics_listen: expected host:port (e.g. 127.0.0.1:9464 or "
             "[::1]:9464), got '%s'",
             listen ? listen : "");
    return SJ_EINVAL;
}

int sj_metrics_parse_listen(const char *listen, char *err, size_t errlen)
{
    char host[256], port[8];
    return split(listen, host, sizeof host, port, sizeof port, err, errlen);
}

int sj_metrics_serve(const char *where, double beat_interval, int *port,
                     char *err, size_t errlen)
{
    struct addrinfo hints, *ai = NULL;
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    char host[256], ports[8];
    int fd = -1, one = 1, rc, flags;

    if ((rc = split(where, host, sizeof host, ports, sizeof ports, err,
                    errlen)) != 0)
        return rc;
    if (daemon_ != NULL) {
        snprintf(err, errlen, "metrics: already serving");
        return SJ_EINVAL;
    }
    if (!mhd_loaded) {
        char why[400];
        if ((rc = sj_dl_load(MHD_SONAME, mhd_syms,
                             sizeof mhd_syms / sizeof mhd_syms[0], &mhd, why,
                             sizeof why)) != 0) {
            snprintf(err, errlen, "metrics_listen %s: %s", where, why);
            return rc;
        }
        mhd_loaded = 1;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, ports, &hints, &ai)) != 0) {
        snprintf(err, errlen, "metrics_listen %s: %s", where, gai_strerror(rc));
        return SJ_EINVAL;
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
        snprintf(err, errlen, "metrics: cannot listen on %s: %s", where,
                 strerror(errno));
        goto fail;
    }
    flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO; /* epoll here */
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    atomic_store(&beat_ms, (long long)(beat_interval * 1000));
    daemon_ = mhd.start_daemon(
        (unsigned)flags, 0, NULL, NULL, answer, NULL, MHD_OPTION_LISTEN_SOCKET,
        fd, MHD_OPTION_CONNECTION_LIMIT, 32u, MHD_OPTION_CONNECTION_TIMEOUT,
        10u, MHD_OPTION_END);
    if (daemon_ == NULL) {
        snprintf(err, errlen, "metrics: cannot start the HTTP server on %s",
                 where);
        goto fail;
    }
    if (port != NULL) {
        *port = 0;
        if (getsockname(fd, (struct sockaddr *)&sa, &salen) == 0)
            *port = ntohs(sa.ss_family == AF_INET6
                              ? ((struct sockaddr_in6 *)&sa)->sin6_port
                              : ((struct sockaddr_in *)&sa)->sin_port);
    }
    freeaddrinfo(ai);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return SJ_EIO;
}

void sj_metrics_unserve(void)
{
    if (daemon_ != NULL)
        mhd.stop_daemon(daemon_);
    daemon_ = NULL;
}
