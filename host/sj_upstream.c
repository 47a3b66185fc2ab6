#include "sj_upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sj_builtins.h"
#include "sj_error.h"
#include "sj_logrec.h"
#include "sj_spool.h"

#define REPORT_WINDOW 64      /* result reports in flight at once */
#define REPORT_MAX_REFUSALS 5 /* status-0 answers before giving up */
#define LOG_QUEUE_MAX 200000  /* log records waiting, all tasks */
#define LOG_BATCH_MAX 1000    /* records per /batch/server/report/log */
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define MAP_REPORT_TIMEOUT_MS 60000 /* Java's synchronous map report */

typedef enum link_state {
    LINK_UNKNOWN = 0, /* nothing answered yet */
    LINK_UP,          /* the last heartbeat was accepted */
    LINK_DOWN,        /* transport failure */
    LINK_REFUSED      /* the server answered status 0 (token, group...) */
} link_state;

typedef struct report {
    struct report *prev, *next;
    uint64_t seq;
    char *body;
    int refusals;
    int failures;
    int in_flight;
    long long next_try;  /* monotonic ms */
    int64_t batch;       /* taskBatchId for the barrier; 0: none */
    int held;            /* 1: waits for its batch's holders (not sent) */
    int releases;        /* 1: its ack ends one hold of `batch` */
    long long queued_at; /* monotonic ms it was queued (journal age) */
} report;

/* Holders of one batch's report barrier (sj_upstream.h). */
typedef struct barrier {
    struct barrier *next;
    int64_t batch;
    int holders; /* > 0 while listed */
    int stopped; /* the server stopped the batch: drop, never release */
} barrier;

typedef struct logrec {
    struct logrec *next;
    char *text; /* the record as sent (sj_logrec_text) */
    size_t len;
} logrec;

struct sj_upstream {
    const sj_config *cfg;
    sj_link *link;
    char host_id[80];
    char host_port[16];
    char target[300];
    char *labels_json;
    atomic_llong next_req_id;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stopping;
    int calls_in_flight; /* async calls whose callbacks have not run */

    /* heartbeat and registration */
    link_state state;
    char why[512];
    long long next_beat;
    int beat_in_flight;
    int beats_held; /* until the first sj_upstream_set_executors */
    int backoff_ms;
    char **names;
    size_t n_names;
    int need_register;
    int register_in_flight;

    /* results */
    sj_spool *spool;
    report *rhead, *rtail;
    size_t n_reports, reports_in_flight;
    barrier *barriers; /* batches with holders */
    size_t n_held;     /* reports with held set */

    /* logs */
    logrec *lhead, *ltail;
    size_t n_logs, logs_in_flight;
    long long first_log_at; /* monotonic ms of the oldest unsent record */
    int flush_now;
    long long log_retry_at;
    unsigned long dropped_unreported;
    struct {
        char *namespace_id, *group_name;
        int64_t job_id, task_batch_id, task_id;
    } drop; /* the last task that lost lines */

    sj_upstream_stats stats;
};

/* ---- requests --------------------------------------------------------- */

int sj_upstream_request(sj_upstream *up, const char *uri, const char *body,
                        sj_request *req)
{
    const sj_config *c = up->cfg;
    char type[16];

    memset(req, 0, sizeof *req);
    snprintf(type, sizeof type, "%d", c->executor_type);
    req->req_id = atomic_fetch_add(&up->next_req_id, 1);
    /* Headers of protocol.md §3.1. `label` goes on every call as the
     * Python client does; the server reads it on /beat. */
    if (sj_wire_set(&req->uri, uri) || sj_wire_set(&req->body, body) ||
        sj_request_add_header(req, "host-id", up->host_id) ||
        sj_request_add_header(req, "host-ip", c->host_ip) ||
        sj_request_add_header(req, "host-port", up->host_port) ||
        sj_request_add_header(req, "group-name", c->group_name) ||
        sj_request_add_header(req, "namespace", c->namespace_id) ||
        sj_request_add_header(req, "token", c->token) ||
        sj_request_add_header(req, "version", "0") ||
        sj_request_add_header(req, "system-version",
                              "snailjob-lua/" SJ_VERSION) ||
        sj_request_add_header(req, "executor-type", type) ||
        sj_request_add_header(req, "label", up->labels_json)) {
        sj_request_free(req);
        return SJ_ENOMEM;
    }
    return 0;
}

static int rpc_timeout_ms(const sj_upstream *up)
{
    return (int)(up->cfg->rpc_timeout * 1000.0);
}

/* Start an async call; the callback gets `ud`. Lock held. */
static int start_call(sj_upstream *up, const char *uri, const char *body,
                      sj_call_cb cb, void *ud)
{
    sj_request req;
    int rc = sj_upstream_request(up, uri, body, &req);

    if (rc == 0)
        rc = up->link->call(up->link, &req, rpc_timeout_ms(up), cb, ud);
    if (rc == 0)
        up->calls_in_flight++;
    sj_request_free(&req);
    return rc;
}

static void call_finished(sj_upstream *up)
{
    up->calls_in_flight--;
    pthread_cond_broadcast(&up->cond);
}

/* ---- heartbeat and registration -------------------------------------- */

static int beat_interval_ms(const sj_upstream *up)
{
    return (int)(up->cfg->beat_interval * 1000.0);
}

static int backoff_cap(const sj_upstream *up)
{
    int cap = beat_interval_ms(up);
    return cap < BACKOFF_MAX_MS ? cap : BACKOFF_MAX_MS;
}

/* Record the heartbeat outcome; log only when the state changes. */
static void set_state(sj_upstream *up, link_state st, const char *why)
{
    if (st == up->state && (st == LINK_UP || strcmp(why, up->why) == 0))
        return;
    if (st == up->state) { /* same state, another reason: not a change */
        SJ_DEBUG("server %s still %s: %s", up->target,
                 st == LINK_DOWN ? "unreachable" : "refusing", why);
        snprintf(up->why, sizeof up->why, "%s", why);
        return;
    }
    switch (st) {
    case LINK_UP:
        SJ_INFO("server %s: registered as %s (group %s, namespace %s)",
                up->target, up->host_id, up->cfg->group_name,
                up->cfg->namespace_id);
        up->need_register = 1; /* again after every return */
        break;
    case LINK_DOWN:
        SJ_WARN("server %s unreachable: %s; retrying every %d ms at most",
                up->target, why, backoff_cap(up));
        break;
    case LINK_REFUSED:
        SJ_ERROR("server %s refused this host: %s", up->target, why);
        break;
    case LINK_UNKNOWN:
        break;
    }
    up->state = st;
    snprintf(up->why, sizeof up->why, "%s", st == LINK_UP ? "" : why);
}

static void beat_done(void *ud, int err, const char *detail,
                      const sj_reply *reply)
{
    sj_upstream *up = ud;
    long long now = sj_mono_ms();

    pthread_mutex_lock(&up->lock);
    up->beat_in_flight = 0;
    if (err == 0 && reply->status == SJ_STATUS_YES) {
        if (up->state != LINK_UP) {
            /* The server is back: resend now rather than when each
             * report's backoff runs out. */
            for (report *r = up->rhead; r != NULL; r = r->next)
                if (!r->in_flight) {
                    r->next_try = now;
                    r->failures = 0;
                }
            up->log_retry_at = 0;
        }
        set_state(up, LINK_UP, "");
        up->stats.beats_ok++;
        up->stats.last_ok_ms = sj_now_ms();
        up->backoff_ms = BACKOFF_MIN_MS;
        up->next_beat = now + beat_interval_ms(up);
    } else {
        char why[512];
        if (err != 0)
            snprintf(why, sizeof why, "%s", detail ? detail : sj_strerror(err));
        else
            snprintf(why, sizeof why, "%s",
                     reply->message ? reply->message : "status 0");
        set_state(up, err != 0 ? LINK_DOWN : LINK_REFUSED, why);
        up->stats.beats_failed++;
        up->next_beat = now + up->backoff_ms;
        up->backoff_ms *= 2;
        if (up->backoff_ms > backoff_cap(up))
            up->backoff_ms = backoff_cap(up);
    }
    call_finished(up);
    pthread_mutex_unlock(&up->lock);
}

static void register_done(void *ud, int err, const char *detail,
                          const sj_reply *reply)
{
    sj_upstream *up = ud;

    pthread_mutex_lock(&up->lock);
    up->register_in_flight = 0;
    if (err == 0 && reply->status == SJ_STATUS_YES) {
        SJ_DEBUG("registered %zu executor names", up->n_names);
    } else {
        up->need_register = 1; /* tried again after the next good beat */
        SJ_WARN("executor registration failed: %s",
                err ? (detail ? detail : sj_strerror(err))
                    : (reply->message ? reply->message : "status 0"));
    }
    call_finished(up);
    pthread_mutex_unlock(&up->lock);
}

static char *register_body(sj_upstream *up)
{
    json_t *list = json_array(), *args;
    char *text;

    for (size_t i = 0; i < up->n_names; i++)
        json_array_append_new(list,
                              json_pack("{s:s}", "executorInfo", up->names[i]));
    args = json_pack("[o]", list);
    text = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    return text;
}

/* ---- results ----------------------------------------------------------- */

static barrier *barrier_find(const sj_upstream *up, int64_t batch)
{
    for (barrier *b = up->barriers; b != NULL; b = b->next)
        if (b->batch == batch)
            return b;
    return NULL;
}

static void report_unlink(sj_upstream *up, report *r);

/* Forget the held reports of `batch`, done in the journal. Lock held. */
static size_t drop_held(sj_upstream *up, int64_t batch)
{
    size_t n = 0;

    for (report *r = up->rhead, *next; r != NULL; r = next) {
        next = r->next;
        if (!r->held || r->batch != batch)
            continue;
        if (up->spool)
            sj_spool_ack(up->spool, r->seq);
        up->n_held--;
        report_unlink(up, r);
        n++;
    }
    if (n > 0)
        SJ_INFO("batch %" PRId64 " stopped by the server: %zu held result(s) "
                "dropped, not reported",
                batch, n);
    return n;
}

/* End one hold of `batch`; after the last one its held reports become due
 * (in list order, the pump sends them oldest first), or are dropped if the
 * batch was stopped meanwhile. Returns how many were released. Lock
 * held. */
static size_t barrier_release(sj_upstream *up, int64_t batch)
{
    barrier **bp, *b;
    size_t n = 0;
    int stopped;

    for (bp = &up->barriers; *bp != NULL && (*bp)->batch != batch;
         bp = &(*bp)->next)
        ;
    if ((b = *bp) == NULL || --b->holders > 0)
        return 0;
    *bp = b->next;
    stopped = b->stopped;
    free(b);
    if (stopped) {
        drop_held(up, batch);
        return 0;
    }
    for (report *r = up->rhead; r != NULL; r = r->next)
        if (r->held && r->batch == batch) {
            r->held = 0;
            up->n_held--;
            n++;
        }
    if (n > 0)
        SJ_DEBUG("batch %" PRId64 ": %zu held result(s) released", batch, n);
    return n;
}

typedef struct report_ctx {
    sj_upstream *up;
    report *r;
} report_ctx;

static void report_unlink(sj_upstream *up, report *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        up->rhead = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        up->rtail = r->prev;
    up->n_reports--;
    free(r->body);
    free(r);
}

static void report_done(void *ud, int err, const char *detail,
                        const sj_reply *reply)
{
    report_ctx *ctx = ud;
    sj_upstream *up = ctx->up;
    report *r = ctx->r;
    long long now = sj_mono_ms();

    free(ctx);
    pthread_mutex_lock(&up->lock);
    r->in_flight = 0;
    up->reports_in_flight--;
    if (err == 0 && reply->status == SJ_STATUS_YES) {
        up->stats.reports_acked++;
        if (up->spool)
            sj_spool_ack(up->spool, r->seq);
        if (r->releases) /* accepted by the server: its batch may go on */
            barrier_release(up, r->batch);
        report_unlink(up, r);
    } else if (err == 0 && ++r->refusals >= REPORT_MAX_REFUSALS) {
        /* The server keeps saying no (unknown task, bad token): resending
         * cannot help. Say so loudly and let it go. */
        SJ_ERROR("server refused a result %d times, giving up: %s; "
                 "report was %s",
                 r->refusals, reply->message ? reply->message : "status 0",
                 r->body);
        if (up->spool)
            sj_spool_ack(up->spool, r->seq);
        if (r->releases)
            barrier_release(up, r->batch);
        report_unlink(up, r);
    } else {
        int delay = BACKOFF_MIN_MS << (r->failures < 5 ? r->failures : 5);
        if (delay > BACKOFF_MAX_MS)
            delay = BACKOFF_MAX_MS;
        r->failures++;
        r->next_try = now + delay;
        if (r->failures == 1)
            SJ_DEBUG("result report not delivered (%s); will resend",
                     err ? (detail ? detail : sj_strerror(err))
                         : reply->message);
    }
    /* Wake the upstream thread only if reports wait for it (window room,
     * a resend time); an acknowledgement alone leaves it asleep. */
    up->calls_in_flight--;
    if (up->n_reports - up->n_held > up->reports_in_flight || up->stopping)
        pthread_cond_broadcast(&up->cond);
    pthread_mutex_unlock(&up->lock);
}

static int enqueue_report(sj_upstream *up, char *body, uint64_t seq)
{
    report *r = calloc(1, sizeof *r);
    if (r == NULL)
        return SJ_ENOMEM;
    r->body = body;
    r->seq = seq;
    r->queued_at = sj_mono_ms();
    r->prev = up->rtail;
    if (up->rtail)
        up->rtail->next = r;
    else
        up->rhead = r;
    up->rtail = r;
    up->n_reports++;
    return 0;
}

static long long pump_reports(sj_upstream *up, long long now, long long wake);

int sj_upstream_report(sj_upstream *up, char *body)
{
    return sj_upstream_report_task(up, 0, body, 0);
}

int sj_upstream_report_task(sj_upstream *up, int64_t batch, char *body,
                            int own_hold)
{
    uint64_t seq = 0;
    int rc;

    /* Journal first: once this returns the result survives a crash. */
    if (up->spool != NULL && (rc = sj_spool_append(up->spool, body, &seq))) {
        SJ_ERROR("spool write failed (%s): result kept in memory only",
                 sj_strerror(rc));
    }
    pthread_mutex_lock(&up->lock);
    rc = enqueue_report(up, body, seq);
    if (rc == 0 && batch != 0) {
        report *r = up->rtail;
        r->batch = batch;
        r->releases = own_hold;
        if (!own_hold && barrier_find(up, batch) != NULL) {
            r->held = 1;
            up->n_held++;
        }
    } else if (rc != 0 && own_hold) {
        barrier_release(up, batch); /* its report will never be acked */
    }
    up->stats.reports_sent++;
    /* Start it from this thread, as the upstream thread's pass would (same
     * order, same window): one thread hop fewer per task. Only what could
     * not start (window full, backing off) is left to that thread. */
    if (rc == 0 && !up->stopping)
        pump_reports(up, sj_mono_ms(), 0);
    if (rc != 0 || up->stopping || (!up->rtail->in_flight && !up->rtail->held))
        pthread_cond_signal(&up->cond);
    pthread_mutex_unlock(&up->lock);
    if (rc != 0)
        free(body);
    return rc;
}

int sj_upstream_hold(sj_upstream *up, int64_t batch)
{
    barrier *b;

    pthread_mutex_lock(&up->lock);
    if ((b = barrier_find(up, batch)) == NULL &&
        (b = calloc(1, sizeof *b)) != NULL) {
        b->batch = batch;
        b->next = up->barriers;
        up->barriers = b;
    }
    if (b != NULL)
        b->holders++;
    pthread_mutex_unlock(&up->lock);
    return b != NULL ? 0 : SJ_ENOMEM;
}

size_t sj_upstream_drop_held(sj_upstream *up, int64_t batch)
{
    barrier *b;
    size_t n;

    pthread_mutex_lock(&up->lock);
    if ((b = barrier_find(up, batch)) != NULL)
        b->stopped = 1; /* what is held later goes the same way */
    n = drop_held(up, batch);
    pthread_mutex_unlock(&up->lock);
    return n;
}

void sj_upstream_release(sj_upstream *up, int64_t batch)
{
    pthread_mutex_lock(&up->lock);
    if (barrier_release(up, batch) > 0)
        pthread_cond_signal(&up->cond); /* the upstream thread sends them */
    pthread_mutex_unlock(&up->lock);
}

static void recover_report(void *ud, uint64_t seq, const char *body)
{
    sj_upstream *up = ud;
    char *copy = strdup(body);

    if (copy == NULL || enqueue_report(up, copy, seq) != 0) {
        free(copy);
        return;
    }
    up->stats.reports_sent++;
}

/* ---- logs ---------------------------------------------------------------- */

void sj_upstream_log(sj_upstream *up, const sj_task *t, sj_log_level level,
                     const char *msg, size_t len, const char *location)
{
    static const char *const levels[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    sj_logrec r;
    logrec *l;

    if (level > SJ_LOG_ERROR)
        level = SJ_LOG_ERROR;
    memset(&r, 0, sizeof r);
    r.namespace_id = t->namespace_id ? t->namespace_id : up->cfg->namespace_id;
    r.group_name = t->group_name ? t->group_name : up->cfg->group_name;
    r.job_id = t->job_id;
    r.task_batch_id = t->task_batch_id;
    r.task_id = t->task_id;
    r.real_time = sj_now_ms();
    r.level = levels[level];
    r.message = msg;
    r.message_len = len;
    r.location = location;
    r.host = up->cfg->host_ip;
    r.port = up->host_port;
    if ((l = malloc(sizeof *l)) != NULL &&
        (l->text = sj_logrec_text(&r, &l->len)) == NULL) {
        free(l);
        l = NULL;
    }

    pthread_mutex_lock(&up->lock);
    if (up->n_logs >= LOG_QUEUE_MAX || l == NULL) {
        /* Full: count it and keep the task as the one the "lines
         * dropped" notice is sent for once there is room again. */
        int same = up->drop.namespace_id != NULL &&
                   up->drop.task_id == t->task_id &&
                   up->drop.task_batch_id == t->task_batch_id;
        char *ns = same ? NULL : strdup(r.namespace_id ? r.namespace_id : "");
        char *grp = same ? NULL : strdup(r.group_name ? r.group_name : "");
        up->dropped_unreported++;
        up->stats.log_lines_dropped++;
        if (ns != NULL && grp != NULL) {
            free(up->drop.namespace_id);
            free(up->drop.group_name);
            up->drop.namespace_id = ns;
            up->drop.group_name = grp;
            up->drop.job_id = t->job_id;
            up->drop.task_batch_id = t->task_batch_id;
            up->drop.task_id = t->task_id;
            ns = grp = NULL;
        }
        pthread_mutex_unlock(&up->lock);
        free(ns);
        free(grp);
        if (l != NULL)
            free(l->text);
        free(l);
        return;
    }
    l->next = NULL;
    if (up->ltail)
        up->ltail->next = l;
    else
        up->lhead = l;
    up->ltail = l;
    if (up->n_logs++ == 0)
        up->first_log_at = sj_mono_ms();
    up->stats.log_lines_queued++;
    if (up->n_logs >= (size_t)up->cfg->log_remote_buffer_size)
        pthread_cond_signal(&up->cond);
    pthread_mutex_unlock(&up->lock);
}

void sj_upstream_flush(sj_upstream *up)
{
    pthread_mutex_lock(&up->lock);
    if (up->n_logs > 0) { /* nothing queued: no need to wake the thread */
        up->flush_now = 1;
        pthread_cond_signal(&up->cond);
    }
    pthread_mutex_unlock(&up->lock);
}

/* Queue the "N log lines dropped" record for the last task that lost
 * lines, once there is room; lock held. */
static void queue_drop_notice(sj_upstream *up)
{
    char msg[128];
    sj_logrec r;
    logrec *l;

    if (up->dropped_unreported == 0 || up->drop.namespace_id == NULL ||
        up->n_logs >= LOG_QUEUE_MAX / 2 || (l = malloc(sizeof *l)) == NULL)
        return;
    snprintf(msg, sizeof msg,
             "snailjob-lua: %lu log lines dropped (log queue full)",
             up->dropped_unreported);
    memset(&r, 0, sizeof r);
    r.namespace_id = up->drop.namespace_id;
    r.group_name = up->drop.group_name;
    r.job_id = up->drop.job_id;
    r.task_batch_id = up->drop.task_batch_id;
    r.task_id = up->drop.task_id;
    r.real_time = sj_now_ms();
    r.level = "WARN";
    r.message = msg;
    r.message_len = strlen(msg);
    r.host = up->cfg->host_ip;
    r.port = up->host_port;
    if ((l->text = sj_logrec_text(&r, &l->len)) == NULL) {
        free(l);
        return;
    }
    l->next = NULL;
    if (up->ltail)
        up->ltail->next = l;
    else
        up->lhead = l;
    up->ltail = l;
    up->n_logs++;
    up->dropped_unreported = 0;
}

static void logs_done(void *ud, int err, const char *detail,
                      const sj_reply *reply)
{
    sj_upstream *up = ud;

    pthread_mutex_lock(&up->lock);
    if (err == 0 && reply->status == SJ_STATUS_YES) {
        for (size_t i = 0; i < up->logs_in_flight && up->lhead; i++) {
            logrec *l = up->lhead;
            up->lhead = l->next;
            free(l->text);
            free(l);
            up->n_logs--;
        }
        if (up->lhead == NULL)
            up->ltail = NULL;
        up->stats.log_lines_sent += up->logs_in_flight;
        up->first_log_at = sj_mono_ms();
        up->log_retry_at = 0;
        queue_drop_notice(up);
    } else {
        /* Keep them, in order, and try again shortly. */
        up->log_retry_at = sj_mono_ms() + up->backoff_ms;
        SJ_DEBUG("log batch not delivered: %s",
                 err ? (detail ? detail : sj_strerror(err))
                     : (reply->message ? reply->message : "status 0"));
    }
    up->logs_in_flight = 0;
    call_finished(up);
    pthread_mutex_unlock(&up->lock);
}

/* Send the oldest queued records as one batch, "[[rec,rec,...]]" (the
 * records are already JSON text); lock held. */
static void send_logs(sj_upstream *up)
{
    size_t n = 0, max = (size_t)up->cfg->log_remote_buffer_size, size = 4;
    char *body, *p;
    logrec *l;

    /* A batch holds at most log_remote_buffer_size records (Java's window
     * of 50); a backlog leaves as several batches, one after another. */
    if (max == 0 || max > LOG_BATCH_MAX)
        max = LOG_BATCH_MAX;
    for (l = up->lhead; l && n < max; l = l->next, n++)
        size += l->len + 1;
    if ((body = p = malloc(size + 1)) == NULL)
        return;
    *p++ = '[';
    *p++ = '[';
    n = 0;
    for (l = up->lhead; l && n < max; l = l->next, n++) {
        if (n > 0)
            *p++ = ',';
        memcpy(p, l->text, l->len);
        p += l->len;
    }
    *p++ = ']';
    *p++ = ']';
    *p = '\0';
    up->logs_in_flight = n;
    if (n == up->n_logs) /* a flush covers the whole queue */
        up->flush_now = 0;
    if (start_call(up, "/batch/server/report/log", body, logs_done, up) != 0)
        up->logs_in_flight = 0;
    free(body);
}

/* ---- the upstream thread ---------------------------------------------- */

static long long min_ll(long long a, long long b)
{
    return a < b ? a : b;
}

/* Start the due reports, oldest first, while the window has room; returns
 * `wake` lowered to the earliest retry of those backing off. Lock held. */
static long long pump_reports(sj_upstream *up, long long now, long long wake)
{
    for (report *r = up->rhead;
         r != NULL && up->reports_in_flight < REPORT_WINDOW; r = r->next) {
        if (r->in_flight || r->held)
            continue;
        if (r->next_try > now) {
            wake = min_ll(wake, r->next_try);
            continue;
        }
        report_ctx *ctx = malloc(sizeof *ctx);
        if (ctx == NULL)
            break;
        ctx->up = up;
        ctx->r = r;
        if (start_call(up, "/report/dispatch/result", r->body, report_done,
                       ctx) != 0) {
            free(ctx);
            r->next_try = now + BACKOFF_MIN_MS;
            continue;
        }
        r->in_flight = 1;
        up->reports_in_flight++;
    }
    return wake;
}

/* One pass: start whatever is due. Returns when to look again. Lock held. */
static long long pump(sj_upstream *up, long long now)
{
    long long wake = now + 1000;

    if (!up->beat_in_flight && !up->beats_held && now >= up->next_beat &&
        !up->stopping) {
        up->beat_in_flight = 1;
        if (start_call(up, "/beat", "[\"PING\"]", beat_done, up) != 0) {
            up->beat_in_flight = 0;
            up->next_beat = now + up->backoff_ms;
        }
    }
    if (!up->beat_in_flight && !up->beats_held)
        wake = min_ll(wake, up->next_beat);

    if (up->state == LINK_UP && up->need_register && !up->register_in_flight &&
        up->n_names > 0 && !up->stopping) {
        char *body = register_body(up);
        up->need_register = 0;
        up->register_in_flight = 1;
        if (body == NULL || start_call(up, "/register/job/executors", body,
                                       register_done, up) != 0) {
            up->register_in_flight = 0;
            up->need_register = 1;
        }
        free(body);
    }

    wake = pump_reports(up, now, wake);

    if (up->n_logs > 0 && up->logs_in_flight == 0) {
        long long due = up->first_log_at +
                        (long long)(up->cfg->log_remote_interval * 1000.0);
        int full = up->n_logs >= (size_t)up->cfg->log_remote_buffer_size;
        if (up->log_retry_at > now)
            wake = min_ll(wake, up->log_retry_at);
        else if (full || up->flush_now || up->stopping || now >= due)
            send_logs(up);
        else
            wake = min_ll(wake, due);
    }
    return wake;
}

static void wait_until(sj_upstream *up, long long wake_mono)
{
    struct timespec ts;
    long long ms = wake_mono;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000;
    pthread_cond_timedwait(&up->cond, &up->lock, &ts);
}

static void *upstream_thread(void *arg)
{
    sj_upstream *up = arg;

    sj_log_thread_name("upstream");
    pthread_mutex_lock(&up->lock);
    while (!up->stopping) {
        long long wake = pump(up, sj_mono_ms());
        if (!up->stopping)
            wait_until(up, wake);
    }
    pthread_mutex_unlock(&up->lock);
    return NULL;
}

/* ---- life cycle -------------------------------------------------------- */

int sj_upstream_start(const sj_upstream_options *opts, sj_upstream **out,
                      char *err, size_t errlen)
{
    pthread_condattr_t ca;
    sj_upstream *up;
    int rc;

    if ((up = calloc(1, sizeof *up)) == NULL)
        return SJ_ENOMEM;
    up->cfg = opts->cfg;
    snprintf(up->host_id, sizeof up->host_id, "%s", opts->host_id);
    snprintf(up->host_port, sizeof up->host_port, "%d", opts->host_port);
    snprintf(up->target, sizeof up->target, "%s:%d", opts->cfg->server_host,
             opts->cfg->server_port);
    atomic_init(&up->next_req_id, 1);
    up->backoff_ms = BACKOFF_MIN_MS;
    up->labels_json = sj_config_labels_json(opts->cfg);
    if (up->labels_json == NULL) {
        rc = SJ_ENOMEM;
        goto fail;
    }
    up->beats_held = opts->hold_beats;
    pthread_mutex_init(&up->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&up->cond, &ca);
    pthread_condattr_destroy(&ca);

    if (!opts->no_spool) {
        char name[64];
        snprintf(name, sizeof name, "results-%d", opts->host_port);
        rc = sj_spool_open(opts->cfg->spool_dir, name, recover_report, up,
                           &up->spool, err, errlen);
        if (rc != 0)
            goto fail_sync;
        if (up->n_reports > 0)
            SJ_INFO("spool: %zu result(s) from an earlier run will be "
                    "delivered",
                    up->n_reports);
    }
    up->link = opts->link;
    if (pthread_create(&up->thread, NULL, upstream_thread, up) != 0) {
        rc = SJ_ENOMEM;
        snprintf(err, errlen, "cannot start the upstream thread");
        goto fail_spool;
    }
    *out = up;
    return 0;

fail_spool:
    sj_spool_close(up->spool);
    while (up->rhead)
        report_unlink(up, up->rhead);
fail_sync:
    pthread_cond_destroy(&up->cond);
    pthread_mutex_destroy(&up->lock);
fail:
    free(up->labels_json);
    free(up);
    return rc;
}

void sj_upstream_stop(sj_upstream *up, int grace_ms)
{
    long long until;

    if (up == NULL)
        return;
    /* Give queued logs and results a chance to leave. */
    until = sj_mono_ms() + grace_ms;
    pthread_mutex_lock(&up->lock);
    up->flush_now = 1;
    pthread_cond_signal(&up->cond);
    /* Held reports whose holder can no longer release them are not
     * waited for: they stay in the journal. */
    while ((up->n_logs > 0 || up->n_reports > up->n_held) &&
           up->state == LINK_UP && sj_mono_ms() < until) {
        pthread_mutex_unlock(&up->lock);
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&up->lock);
        up->flush_now = 1;
        pthread_cond_signal(&up->cond);
    }
    up->stopping = 1;
    pthread_cond_signal(&up->cond);
    pthread_mutex_unlock(&up->lock);
    pthread_join(up->thread, NULL);

    /* Cancels what is in flight; every callback runs before this returns. */
    up->link->close(up->link);

    if (up->n_logs > 0 || up->dropped_unreported > 0)
        SJ_WARN("shutdown: %zu log line(s) could not be delivered",
                up->n_logs + up->dropped_unreported);
    if (up->n_reports > 0)
        SJ_WARN("shutdown: %zu result(s) not acknowledged; kept in the "
                "spool for the next start",
                up->n_reports);
    while (up->rhead)
        report_unlink(up, up->rhead);
    while (up->barriers) {
        barrier *b = up->barriers;
        up->barriers = b->next;
        free(b);
    }
    while (up->lhead) {
        logrec *l = up->lhead;
        up->lhead = l->next;
        free(l->text);
        free(l);
    }
    free(up->drop.namespace_id);
    free(up->drop.group_name);
    sj_spool_close(up->spool);
    for (size_t i = 0; i < up->n_names; i++)
        free(up->names[i]);
    free(up->names);
    free(up->labels_json);
    pthread_cond_destroy(&up->cond);
    pthread_mutex_destroy(&up->lock);
    free(up);
}

int sj_upstream_set_executors(sj_upstream *up, const char *const *names,
                              size_t n)
{
    char **copy = calloc(n ? n : 1, sizeof *copy);
    size_t m = 0;

    if (copy == NULL)
        return SJ_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        /* the console lists the built-ins itself (as the Java client,
         * which does not register them) */
        if (sj_builtins_is_executor(names[i]))
            continue;
        if ((copy[m++] = strdup(names[i])) == NULL) {
            while (m-- > 0)
                free(copy[m]);
            free(copy);
            return SJ_ENOMEM;
        }
    }
    pthread_mutex_lock(&up->lock);
    for (size_t i = 0; i < up->n_names; i++)
        free(up->names[i]);
    free(up->names);
    up->names = copy;
    up->n_names = m;
    up->need_register = 1;
    up->beats_held = 0;
    pthread_cond_signal(&up->cond);
    pthread_mutex_unlock(&up->lock);
    return 0;
}

int sj_upstream_call(sj_upstream *up, const char *uri, const char *body,
                     const atomic_int *cancel, sj_reply *out, char *err,
                     size_t errlen)
{
    sj_request req;
    int rc = sj_upstream_request(up, uri, body, &req);

    memset(out, 0, sizeof *out);
    if (rc != 0)
        return rc;
    rc = up->link->call_sync(up->link, &req, MAP_REPORT_TIMEOUT_MS, cancel, out,
                             err, errlen);
    sj_request_free(&req);
    return rc;
}

int sj_upstream_connected(sj_upstream *up, char *why, size_t whylen)
{
    int ok;
    pthread_mutex_lock(&up->lock);
    ok = up->state == LINK_UP;
    if (why != NULL)
        snprintf(why, whylen, "%s",
                 up->state == LINK_UNKNOWN ? "no answer yet" : up->why);
    pthread_mutex_unlock(&up->lock);
    return ok;
}

void sj_upstream_get_stats(sj_upstream *up, sj_upstream_stats *st)
{
    pthread_mutex_lock(&up->lock);
    *st = up->stats;
    st->reports_pending = up->n_reports;
    st->reports_held = up->n_held;
    st->oldest_report_age_ms = 0;
    for (report *r = up->rhead; r != NULL; r = r->next)
        if (sj_mono_ms() - r->queued_at > st->oldest_report_age_ms)
            st->oldest_report_age_ms = sj_mono_ms() - r->queued_at;
    st->reachable = up->state == LINK_UP;
    pthread_mutex_unlock(&up->lock);
}
