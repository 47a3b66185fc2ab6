#include "sj_upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sj_builtins.h"
#include "sj_error.h"
#include "sj_json.h"
#include "sj_logrec.h"
#include "sj_spool.h"

#define REPORT_WINDOW 64      /* result reports in flight at once */
#define REPORT_MAX_REFUSALS 5 /* status-0 answers before giving up */
#define LOG_QUEUE_MAX 200000  /* log records waiting, all tasks */
#define LOG_BATCH_MAX 1000    /* records per /batch/server/report/log */
/* A backlog (this many batches of log_remote_buffer_size waiting) leaves
 * in batches of up to LOG_BATCH_MAX records and LOG_BACKLOG_BYTES. */
#define LOG_BACKLOG_BATCHES 4
#define LOG_BACKLOG_BYTES (1024 * 1024)
/* A script's sj.log.* waits for room in the full queue while the server
 * takes batches; after this long without an acknowledged batch it drops
 * (with a notice) instead, until a batch is acknowledged again. */
#define LOG_STALL_MS 5000
#define LOG_WAIT_SLICE_MS 10 /* the caller's interruption is polled */
/* The server takes messages of 10 MiB at most (protocol.md): a log batch
 * stays under this, and no line is longer than LOG_LINE_CAP. */
#define LOG_BATCH_BYTES (4 * 1024 * 1024)
#define LOG_LINE_CAP (1024 * 1024) /* escaped (x6 at worst) < 10 MiB */
#define LOG_REC_OVERHEAD 400       /* JSON around a line's message, about */
#define LOG_MAX_REFUSALS 5         /* in-band refusals of one batch */
#define TRIM_AFTER_BYTES (8 * 1024 * 1024) /* backlog worth a malloc_trim */
#define SPOOL_RETRY_MS 1000 /* journal writes of a full disk, again */
/* Results the journal refused, held in memory: beyond this, dispatches
 * are refused until they are delivered or journaled. */
#define UNJOURNALED_MAX_BYTES (64 * 1024 * 1024)
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
    int journaled;       /* 0: the journal refused it (full disk): in
                            memory only, journaled again later */
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
    size_t bytes; /* what it costs queued: text, node, malloc's headers */
    char text[];  /* the record as compact JSON (a few bytes per line, not
                     jansson's kilobytes of objects while queued) */
} logrec;

struct sj_upstream {
    const sj_config *cfg;
    sj_link *link;
    char host_id[80];
    char host_port[16];
    char target[300];
    char *labels_json;
    char *labels_down_json; /* the same with "state":"down" (draining) */
    atomic_int down;        /* 1: draining, beats say state=down */
    /* Lines queued so far, and that count when a flush was last asked:
     * equal, sj_upstream_flush has nothing to ask and takes no lock. */
    atomic_ullong log_seq, flush_seq;
    int down_beat_sent;
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
    char *drop_template;      /* a record (JSON) of the last task that lost
                                 lines */
    size_t log_bytes;         /* bytes of the queued records */
    pthread_cond_t log_room;  /* broadcast when records leave */
    long long log_full_since; /* monotonic ms a writer first waited
                                 since the last ack; 0: none */
    int log_stalled;       /* no ack for LOG_STALL_MS: writers drop, not wait */
    size_t log_bytes_peak; /* since the last trim */
    int log_refusals;      /* of the batch in flight / next */
    unsigned long dropped_episode; /* lines dropped since the WARN */
    int spool_full;                /* the journal refused a write: ENOSPC */
    long long spool_retry_at;
    size_t unjournaled; /* reports held in memory only */
    size_t unjournaled_bytes;

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
        sj_request_add_header(req, "label",
                              atomic_load(&up->down) ? up->labels_down_json
                                                     : up->labels_json)) {
        sj_request_free(req);
        return SJ_ENOMEM;
    }
    return 0;
}

static int rpc_timeout_ms(const sj_upstream *up)
{
    return (int)(up->cfg->rpc_timeout * 1000.0);
}

/* Start an async call; the callback gets `ud`. Needs no lock. */
static int send_call(sj_upstream *up, const char *uri, const char *body,
                     sj_call_cb cb, void *ud)
{
    sj_request req;
    int rc = sj_upstream_request(up, uri, body, &req);

    if (rc == 0)
        rc = up->link->call(up->link, &req, rpc_timeout_ms(up), cb, ud);
    sj_request_free(&req);
    return rc;
}

/* The same, counted in calls_in_flight. Lock held. */
static int start_call(sj_upstream *up, const char *uri, const char *body,
                      sj_call_cb cb, void *ud)
{
    int rc = send_call(up, uri, body, cb, ud);

    if (rc == 0)
        up->calls_in_flight++;
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
        if (atomic_load(&up->down) && !up->down_beat_sent)
            up->next_beat = now; /* the state=down beat goes next */
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
    text = sj_json_text(args);
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
        if (up->spool && r->journaled)
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
    if (!r->journaled && up->unjournaled > 0) {
        up->unjournaled--;
        up->unjournaled_bytes -= strlen(r->body);
    }
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

/* The taskId of a report body, for messages; -1 if not found. */
static long long report_task_id(const char *body)
{
    const char *p = strstr(body, "\"taskId\":");
    return p != NULL ? strtoll(p + 9, NULL, 10) : -1;
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
        if (up->spool && r->journaled)
            sj_spool_ack(up->spool, r->seq);
        if (r->releases) /* accepted by the server: its batch may go on */
            barrier_release(up, r->batch);
        report_unlink(up, r);
    } else if ((err == 0 && ++r->refusals >= REPORT_MAX_REFUSALS) ||
               err == SJ_ETOOBIG || err == SJ_EPROTO) {
        /* Refused for good: the server keeps saying no (unknown task, bad
         * token), or the call cannot succeed (too large, malformed).
         * Resending cannot help: say so, naming the task, and let it go
         * from the journal. */
        SJ_ERROR("result of task %lld refused for good, removed from the "
                 "journal: %s (%zu bytes)",
                 report_task_id(r->body),
                 err == 0 ? (reply->message ? reply->message : "status 0")
                          : (detail ? detail : sj_strerror(err)),
                 strlen(r->body));
        if (up->spool && r->journaled)
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

static int enqueue_report(sj_upstream *up, char *body, uint64_t seq,
                          int journaled)
{
    report *r = calloc(1, sizeof *r);
    if (r == NULL)
        return SJ_ENOMEM;
    r->body = body;
    r->seq = seq;
    r->journaled = journaled;
    if (!journaled) {
        up->unjournaled++;
        up->unjournaled_bytes += strlen(body);
    }
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

/* The journal refused a write (lock held): say so once per episode; the
 * report stays in memory, is delivered as usual and journaled again when
 * there is room (journal_again). */
static void spool_refused(sj_upstream *up, int rc)
{
    if (!up->spool_full)
        SJ_ERROR("journal %s: %s: results are kept in memory, delivered, and "
                 "journaled again every %d ms",
                 sj_spool_path(up->spool), sj_strerror(rc), SPOOL_RETRY_MS);
    up->spool_full = 1;
    up->spool_retry_at = sj_mono_ms() + SPOOL_RETRY_MS;
}

/* Journal the reports held in memory only, oldest first, until one fails.
 * Lock held (the journal has its own; it never takes ours). */
static void journal_again(sj_upstream *up, long long now)
{
    size_t done = 0;

    if (up->unjournaled == 0 || up->spool == NULL || now < up->spool_retry_at)
        return;
    for (report *r = up->rhead; r != NULL && up->unjournaled > 0; r = r->next) {
        int rc;
        if (r->journaled)
            continue;
        if ((rc = sj_spool_append(up->spool, r->body, &r->seq)) != 0) {
            up->spool_retry_at = now + SPOOL_RETRY_MS;
            return;
        }
        r->journaled = 1;
        up->unjournaled--;
        up->unjournaled_bytes -= strlen(r->body);
        done++;
    }
    if (up->spool_full)
        SJ_INFO("journal %s writable again: %zu result(s) held in memory "
                "journaled",
                sj_spool_path(up->spool), done);
    up->spool_full = 0;
}

/* Send r, marked in flight (and counted) under the lock by the caller, who
 * no longer holds it. r is the report_done callback's from a successful
 * start on; if the call cannot start, it goes back to waiting and the
 * upstream thread retries it. */
static void send_own_report(sj_upstream *up, report *r)
{
    report_ctx *ctx = malloc(sizeof *ctx);

    if (ctx != NULL) {
        ctx->up = up;
        ctx->r = r;
        if (send_call(up, "/report/dispatch/result", r->body, report_done,
                      ctx) == 0)
            return;
        free(ctx);
    }
    pthread_mutex_lock(&up->lock);
    r->in_flight = 0;
    r->next_try = sj_mono_ms() + BACKOFF_MIN_MS;
    up->reports_in_flight--;
    call_finished(up); /* wakes the upstream thread */
    pthread_mutex_unlock(&up->lock);
}

int sj_upstream_report(sj_upstream *up, char *body)
{
    return sj_upstream_report_task(up, 0, body, 0);
}

int sj_upstream_report_task(sj_upstream *up, int64_t batch, char *body,
                            int own_hold)
{
    uint64_t seq = 0;
    int rc, journaled = 0, jrc = 0;

    /* Journal first: once this returns the result survives a crash. */
    if (up->spool != NULL && (jrc = sj_spool_append(up->spool, body, &seq)))
        seq = 0;
    /* Without a journal (local runs, or none could be opened) nothing is
     * held back for it. */
    journaled = up->spool == NULL || jrc == 0;
    pthread_mutex_lock(&up->lock);
    if (jrc != 0)
        spool_refused(up, jrc);
    rc = enqueue_report(up, body, seq, journaled);
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
     * order, same window): one thread hop fewer per task. When it is the
     * only report waiting, it is started after the unlock: building and
     * sending a call (a sendmsg) under the lock stalled the gRPC thread,
     * which takes the lock for every acknowledgement, and the other
     * workers. Only what could not start (window full, backing off) is
     * left to the upstream thread. */
    report *mine = NULL;
    if (rc == 0 && !up->stopping) {
        report *r = up->rtail;
        if (!r->held && up->reports_in_flight < REPORT_WINDOW &&
            up->n_reports - up->n_held == up->reports_in_flight + 1) {
            r->in_flight = 1;
            up->reports_in_flight++;
            up->calls_in_flight++;
            mine = r;
        } else {
            pump_reports(up, sj_mono_ms(), 0);
        }
    }
    if (rc != 0 || up->stopping || (!up->rtail->in_flight && !up->rtail->held))
        pthread_cond_signal(&up->cond);
    pthread_mutex_unlock(&up->lock);
    if (rc != 0)
        free(body);
    if (mine != NULL)
        send_own_report(up, mine);
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

    if (copy == NULL || enqueue_report(up, copy, seq, 1) != 0) {
        free(copy);
        return;
    }
    up->stats.reports_sent++;
}

/* ---- logs ---------------------------------------------------------------- */

/* Wait on `c` (a CLOCK_MONOTONIC condition) until `wake_mono` (ms). */
static void cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m,
                            long long wake_mono)
{
    struct timespec ts;

    ts.tv_sec = wake_mono / 1000;
    ts.tv_nsec = (wake_mono % 1000) * 1000000;
    pthread_cond_timedwait(c, m, &ts);
}

/* Count a dropped record, keeping it as the template of the notice (its
 * task gets the notice). Lock held. */
static void note_dropped(sj_upstream *up, char *rec)
{
    if (up->dropped_episode++ == 0)
        SJ_WARN("log queue full (log_queue_max_bytes %d, %zu bytes queued): "
                "dropping the oldest task log lines until the server takes "
                "them",
                up->cfg->log_queue_max_bytes, up->log_bytes);
    up->dropped_unreported++;
    up->stats.log_lines_dropped++;
    free(up->drop_template);
    up->drop_template = rec;
}

/* Drop the oldest queued record that is not in flight; 0 if none. Lock
 * held. */
static int drop_oldest_log(sj_upstream *up)
{
    logrec **lp = &up->lhead, *l, *prev = NULL;

    for (size_t i = 0; i < up->logs_in_flight && *lp != NULL; i++) {
        prev = *lp;
        lp = &(*lp)->next;
    }
    if ((l = *lp) == NULL)
        return 0;
    *lp = l->next;
    if (up->ltail == l)
        up->ltail = prev;
    up->n_logs--;
    up->log_bytes -= l->bytes;
    /* The node becomes the template: its text moves to the front. */
    memmove(l, l->text, strlen(l->text) + 1);
    note_dropped(up, (char *)l);
    return 1;
}

/* Is the queue over a bound with `bytes` more? `waiter`: the bound a
 * script's line waits at, 1/16 below log_queue_max_bytes: the rest is
 * for the host's own lines and the memory around the queue (the running
 * Lua states, gRPC's buffers), so the host stays within the bound. Lock
 * held. */
static int log_full(const sj_upstream *up, size_t bytes, int waiter)
{
    size_t bound = (size_t)up->cfg->log_queue_max_bytes;

    if (waiter)
        bound -= bound / 16;
    return up->n_logs >= LOG_QUEUE_MAX || up->log_bytes + bytes > bound;
}

/* May a writer wait for room? Only while something queued can leave,
 * the server is reachable and it acknowledged a batch within LOG_STALL_MS
 * of the first wait since its last acknowledgement (a batch refused for
 * good makes room, but is no delivery). Lock held. */
static int log_may_wait(sj_upstream *up)
{
    if (up->stopping || up->n_logs == 0 || up->state != LINK_UP ||
        up->log_stalled)
        return 0;
    long long now = sj_mono_ms();
    if (up->log_full_since == 0)
        up->log_full_since = now;
    if (now - up->log_full_since < LOG_STALL_MS)
        return 1;
    up->log_stalled = 1;
    SJ_WARN("log queue full and the server took no log batch for %d s: "
            "task log lines are dropped (oldest first, with a notice) "
            "instead of waiting, until it takes one",
            LOG_STALL_MS / 1000);
    return 0;
}

/* Back-pressure: wait while the queue is full for a record of `bytes`,
 * polling due(due_ud) without the lock every LOG_WAIT_SLICE_MS; returns
 * its nonzero value if that ended the wait, else 0 (room, or no more
 * waiting). Lock held (released while waiting). */
static int log_wait_room(sj_upstream *up, size_t bytes, int (*due)(void *),
                         void *due_ud)
{
    int why = 0;

    if (!log_full(up, bytes, 1) || !log_may_wait(up))
        return 0;
    up->stats.log_waits++;
    do {
        pthread_mutex_unlock(&up->lock);
        why = due(due_ud);
        pthread_mutex_lock(&up->lock);
        if (why != 0)
            break;
        cond_wait_until(&up->log_room, &up->lock,
                        sj_mono_ms() + LOG_WAIT_SLICE_MS);
    } while (log_full(up, bytes, 1) && log_may_wait(up));
    return why;
}

int sj_upstream_log(sj_upstream *up, const sj_task *t, sj_log_level level,
                    const char *msg, size_t len, const char *location,
                    int (*due)(void *), void *due_ud)
{
    static const char *const levels[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    sj_logrec r;
    logrec *l;
    char *text;
    size_t tlen = 0;

    char *cut = NULL;
    size_t max = (size_t)up->cfg->log_line_max;

    if (level > SJ_LOG_ERROR)
        level = SJ_LOG_ERROR;
    if (max == 0 || max > LOG_LINE_CAP)
        max = LOG_LINE_CAP;
    if (len > max) {
        /* Cut at a UTF-8 character boundary, and say how much went. */
        size_t keep = max;
        while (keep > 0 && ((unsigned char)msg[keep] & 0xC0) == 0x80)
            keep--;
        if ((cut = malloc(keep + 96)) == NULL)
            return 0;
        memcpy(cut, msg, keep);
        len = keep + (size_t)snprintf(cut + keep, 96,
                                      " [snailjob-lua: %zu of %zu bytes cut, "
                                      "over log_line_max]",
                                      len - keep, len);
        msg = cut;
    }
    /* The record as the JSON text it is sent as, in one pass (sj_logrec:
     * what jansson's dump of the record tree gave, without the tree). */
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
    text = sj_logrec_text(&r, &tlen);
    free(cut);
    if (text == NULL || (l = malloc(sizeof *l + tlen + 1)) == NULL) {
        free(text);
        return 0;
    }
    memcpy(l->text, text, tlen + 1);
    free(text);
    size_t bytes = sizeof *l + tlen + 1 + 16;
    int why = 0;

    pthread_mutex_lock(&up->lock);
    if (due != NULL)
        why = log_wait_room(up, bytes, due, due_ud);
    /* Over the bounds (count, bytes), not waiting: the oldest lines not
     * in flight make room, counted for the "lines dropped" notice. */
    while (log_full(up, bytes, 0) && drop_oldest_log(up))
        ;
    if (log_full(up, bytes, 0)) {
        /* Still full (all in flight): this one goes instead. */
        memmove(l, l->text, tlen + 1);
        note_dropped(up, (char *)l);
        pthread_mutex_unlock(&up->lock);
        return why;
    }
    l->bytes = bytes;
    up->log_bytes += bytes;
    if (up->log_bytes > up->log_bytes_peak)
        up->log_bytes_peak = up->log_bytes;
    l->next = NULL;
    if (up->ltail)
        up->ltail->next = l;
    else
        up->lhead = l;
    up->ltail = l;
    if (up->n_logs++ == 0)
        up->first_log_at = sj_mono_ms();
    atomic_fetch_add_explicit(&up->log_seq, 1, memory_order_relaxed);
    up->stats.log_lines_queued++;
    /* A full batch wakes the sender, unless one is in flight: its
     * completion wakes the sender anyway (a wake-up per line would cost
     * the sender's thread a switch per line). */
    if (up->n_logs >= (size_t)up->cfg->log_remote_buffer_size &&
        up->logs_in_flight == 0)
        pthread_cond_signal(&up->cond);
    pthread_mutex_unlock(&up->lock);
    return why;
}

void sj_upstream_flush(sj_upstream *up)
{
    /* No line queued since the last flush was asked (which covers every
     * line queued before it): nothing to do, and no lock. Every task ends
     * with a flush; taking the lock each time let a worker preempted while
     * holding it stall every report behind it (issue 14). */
    if (atomic_load(&up->log_seq) == atomic_load(&up->flush_seq))
        return;
    pthread_mutex_lock(&up->lock);
    atomic_store(&up->flush_seq, atomic_load(&up->log_seq));
    if (up->n_logs > 0) { /* nothing queued: no need to wake the thread */
        up->flush_now = 1;
        pthread_cond_signal(&up->cond);
    }
    pthread_mutex_unlock(&up->lock);
}

/* Replace the dropped-lines template's message; lock held. */
static void queue_drop_notice(sj_upstream *up)
{
    json_t *rec, *fields;
    char msg[128], *text;
    logrec *l;
    size_t tlen;

    if (up->dropped_unreported == 0 || up->n_logs >= LOG_QUEUE_MAX / 2 ||
        up->log_bytes > (size_t)up->cfg->log_queue_max_bytes / 2 ||
        (rec = json_loads(up->drop_template, 0, NULL)) == NULL)
        return;
    snprintf(msg, sizeof msg,
             "snailjob-lua: %lu log lines dropped (log queue full)",
             up->dropped_unreported);
    SJ_WARN("log queue: %lu task log line(s) were dropped while it was full",
            up->dropped_episode);
    up->dropped_episode = 0;
    fields = json_object_get(rec, "fieldList");
    for (size_t i = 0; i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        const char *name = json_string_value(json_object_get(f, "name"));
        if (name && strcmp(name, "message") == 0)
            json_object_set_new(f, "value", json_string(msg));
        if (name && strcmp(name, "level") == 0)
            json_object_set_new(f, "value", json_string("WARN"));
    }
    text = sj_json_text(rec);
    json_decref(rec);
    if (text == NULL)
        return;
    tlen = strlen(text);
    if ((l = malloc(sizeof *l + tlen + 1)) == NULL) {
        free(text);
        return;
    }
    memcpy(l->text, text, tlen + 1);
    free(text);
    l->bytes = sizeof *l + tlen + 1 + 16;
    up->log_bytes += l->bytes;
    l->next = NULL;
    if (up->ltail)
        up->ltail->next = l;
    else
        up->lhead = l;
    up->ltail = l;
    up->n_logs++;
    atomic_fetch_add_explicit(&up->log_seq, 1, memory_order_relaxed);
    free(up->drop_template);
    up->drop_template = NULL;
    up->dropped_unreported = 0;
}

static void logs_done(void *ud, int err, const char *detail,
                      const sj_reply *reply)
{
    sj_upstream *up = ud;

    pthread_mutex_lock(&up->lock);
    int final = err == SJ_ETOOBIG || err == SJ_EPROTO ||
                (err == 0 && reply->status != SJ_STATUS_YES &&
                 ++up->log_refusals >= LOG_MAX_REFUSALS);
    if (final)
        SJ_ERROR("a batch of %zu task log line(s) was refused for good, "
                 "dropped: %s",
                 up->logs_in_flight,
                 err ? (detail ? detail : sj_strerror(err))
                     : (reply->message ? reply->message : "status 0"));
    if ((err == 0 && reply->status == SJ_STATUS_YES) || final) {
        for (size_t i = 0; i < up->logs_in_flight && up->lhead; i++) {
            logrec *l = up->lhead;
            up->lhead = l->next;
            up->log_bytes -= l->bytes;
            free(l);
            up->n_logs--;
        }
        if (up->lhead == NULL)
            up->ltail = NULL;
        up->log_refusals = 0;
        if (!final) {
            up->stats.log_lines_sent += up->logs_in_flight;
            up->log_full_since = 0;
            up->log_stalled = 0;
        }
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
    pthread_cond_broadcast(&up->log_room);
    call_finished(up);
    pthread_mutex_unlock(&up->lock);
}

/* Send the oldest queued records as one batch; lock held. */
static void send_logs(sj_upstream *up)
{
    size_t n = 0, size = (size_t)up->cfg->log_remote_buffer_size, max;
    char *body, *p;

    /* A batch holds log_remote_buffer_size records (Java's window of 50),
     * one batch in flight at a time, so lines arrive in order. A backlog
     * (LOG_BACKLOG_BATCHES such batches waiting: writers outrun the
     * round trips) leaves in batches of up to LOG_BATCH_MAX records and
     * LOG_BACKLOG_BYTES, as Java's window sends all it holds when its
     * threshold is reached. */
    if (size == 0 || size > LOG_BATCH_MAX)
        size = LOG_BATCH_MAX;
    max = up->n_logs >= LOG_BACKLOG_BATCHES * size ? LOG_BATCH_MAX : size;
    /* and an eighth of the queue's bound at most: its body and gRPC's
     * copy live beside the queue, in the 1/16 of the bound that scripts'
     * lines leave free (log_full) */
    size_t backlog_bytes = (size_t)up->cfg->log_queue_max_bytes / 8;
    if (backlog_bytes > LOG_BACKLOG_BYTES)
        backlog_bytes = LOG_BACKLOG_BYTES;
    /* The body is "[[rec,rec,...]]", under LOG_BATCH_BYTES unless one
     * record alone is larger (a line is cut well below the limit). */
    size_t bytes = 0;
    logrec *l;
    for (l = up->lhead;
         l && n < max && (n == 0 || bytes + l->bytes <= LOG_BATCH_BYTES) &&
         (n < size || bytes + l->bytes <= backlog_bytes);
         l = l->next, n++)
        bytes += strlen(l->text) + 1;
    if ((body = p = malloc(bytes + 8)) == NULL)
        return;
    *p++ = '[';
    *p++ = '[';
    l = up->lhead;
    for (size_t i = 0; i < n; i++, l = l->next) {
        size_t tl = strlen(l->text);
        if (i > 0)
            *p++ = ',';
        memcpy(p, l->text, tl);
        p += tl;
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
        up->down_beat_sent = atomic_load(&up->down);
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
    journal_again(up, now);
    if (up->unjournaled > 0)
        wake = min_ll(wake, up->spool_retry_at);

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
    cond_wait_until(&up->cond, &up->lock, wake_mono);
}

static void *upstream_thread(void *arg)
{
    sj_upstream *up = arg;

    sj_log_thread_name("upstream");
    pthread_mutex_lock(&up->lock);
    while (!up->stopping) {
        long long wake = pump(up, sj_mono_ms());
        if (up->n_logs == 0 && up->log_bytes_peak > TRIM_AFTER_BYTES) {
            /* A backlog was delivered: give its pages back, so the host is
             * as small as before the outage. */
            up->log_bytes_peak = 0;
            pthread_mutex_unlock(&up->lock);
            malloc_trim(0);
            pthread_mutex_lock(&up->lock);
        }
        if (!up->stopping)
            wait_until(up, wake);
    }
    pthread_mutex_unlock(&up->lock);
    return NULL;
}

/* ---- life cycle -------------------------------------------------------- */

/* `labels` (a JSON object text) with "state":"down". */
static char *labels_down(const char *labels)
{
    json_t *obj = json_loads(labels, 0, NULL);
    char *text = NULL;

    if (obj != NULL &&
        json_object_set_new(obj, "state", json_string("down")) == 0)
        text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(obj);
    return text;
}

void sj_upstream_set_down(sj_upstream *up)
{
    pthread_mutex_lock(&up->lock);
    atomic_store(&up->down, 1);
    up->down_beat_sent = 0;
    up->next_beat = 0; /* now, or right after the beat in flight */
    up->beats_held = 0;
    pthread_cond_signal(&up->cond);
    pthread_mutex_unlock(&up->lock);
}

/* Wait until queued logs and (unheld) results are delivered, the server
 * is unreachable, or `until` (monotonic ms) passes. */
static void drain_wait(sj_upstream *up, long long until)
{
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
    pthread_mutex_unlock(&up->lock);
}

size_t sj_upstream_flush_wait(sj_upstream *up, int grace_ms)
{
    size_t left;

    drain_wait(up, sj_mono_ms() + grace_ms);
    sj_spool_sync_now(up->spool);
    pthread_mutex_lock(&up->lock);
    left = up->n_reports;
    pthread_mutex_unlock(&up->lock);
    return left;
}

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
    if (up->labels_json == NULL ||
        (up->labels_down_json = labels_down(up->labels_json)) == NULL) {
        rc = SJ_ENOMEM;
        goto fail;
    }
    up->beats_held = opts->hold_beats;
    pthread_mutex_init(&up->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&up->cond, &ca);
    pthread_cond_init(&up->log_room, &ca);
    pthread_condattr_destroy(&ca);

    if (!opts->no_spool) {
        char dir[1024], key[1024];
        if (opts->cfg->spool_dir[0] == '\0')
            sj_spool_warn_old(".snailjob-spool"); /* the old default */
        if (sj_config_spool_dir(opts->cfg, dir, sizeof dir) != 0) {
            snprintf(err, errlen,
                     "no journal directory: set spool_dir (SNAIL_SPOOL_DIR), "
                     "STATE_DIRECTORY, XDG_STATE_HOME or HOME");
            rc = SJ_ECONFIG;
            goto fail_sync;
        }
        snprintf(key, sizeof key, "server=%s namespace=%s group=%s", up->target,
                 opts->cfg->namespace_id, opts->cfg->group_name);
        rc = sj_spool_open(dir, key, opts->host_port,
                           sj_spool_sync_parse(opts->cfg->spool_sync),
                           recover_report, up, &up->spool, err, errlen);
        if (rc == SJ_ENOSPC) {
            /* A full disk must not keep the host from starting. */
            SJ_ERROR("%s: running without a journal; results are delivered "
                     "from memory only",
                     err);
            up->spool = NULL;
            rc = 0;
        }
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
    pthread_cond_destroy(&up->log_room);
    pthread_cond_destroy(&up->cond);
    pthread_mutex_destroy(&up->lock);
fail:
    free(up->labels_json);
    free(up->labels_down_json);
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
    drain_wait(up, until);
    pthread_mutex_lock(&up->lock);
    up->stopping = 1;
    pthread_cond_signal(&up->cond);
    pthread_cond_broadcast(&up->log_room);
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
        free(l);
    }
    free(up->drop_template);
    sj_spool_close(up->spool);
    for (size_t i = 0; i < up->n_names; i++)
        free(up->names[i]);
    free(up->names);
    free(up->labels_json);
    free(up->labels_down_json);
    pthread_cond_destroy(&up->log_room);
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

int sj_upstream_backlogged(sj_upstream *up, char *why, size_t whylen)
{
    int full;

    pthread_mutex_lock(&up->lock);
    full = up->unjournaled_bytes > UNJOURNALED_MAX_BYTES;
    if (full)
        snprintf(why, whylen,
                 "snailjob-lua cannot journal results (%s) and holds %zu "
                 "bytes of them in memory: try another client",
                 up->spool ? "disk full" : "no journal", up->unjournaled_bytes);
    pthread_mutex_unlock(&up->lock);
    return full;
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
