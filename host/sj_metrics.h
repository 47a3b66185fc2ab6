/*
 * sj_metrics.h - what an operator scrapes: Prometheus /metrics and /healthz.
 *
 * Two halves:
 *
 *   Counting, always on and process-wide: other units bump counters
 *   through the small functions below (atomics, or one short mutex for
 *   the per-executor table). Values that already live elsewhere (queue
 *   lengths, journal, reachability, Lua memory) are not copied here: a
 *   collector callback fills an sj_metrics_snapshot when a scrape comes.
 *
 *   Serving, off unless metrics_listen is set: sj_metrics_serve loads
 *   libmicrohttpd (sj_dl.h: it is not linked, so hosts without metrics
 *   never map it and gnutls) and starts its daemon on "host:port" with
 *   its own thread, answering
 *     GET /metrics  Prometheus text format 0.0.4 (snailjob_* families);
 *     GET /healthz  200 "serving", or 503 with the reason: "starting",
 *                   "draining", or "server unreachable for N s" once the
 *                   last accepted heartbeat is older than 3 beat intervals;
 *   anything else 404. sj_metrics_serve/_unserve belong to the main thread.
 *
 * Label sets are bounded: at most SJ_METRICS_MAX_EXECUTORS executor names
 * (later ones are counted under executor="_other"); statuses, reasons and
 * causes are fixed lists. Label values are escaped as the format requires.
 * Any thread may call the counting functions, before, during or without
 * serving.
 */
#ifndef SJ_METRICS_H
#define SJ_METRICS_H

#include <stddef.h>

#define SJ_METRICS_MAX_EXECUTORS 64
#define SJ_METRICS_MAX_WORKERS 64 /* Lua memory is reported for these */

typedef enum sj_metrics_state {
    SJ_METRICS_STARTING = 0,
    SJ_METRICS_SERVING,
    SJ_METRICS_DRAINING
} sj_metrics_state;

/* Why a dispatch was refused (snailjob_dispatch_refused_total{reason}). */
typedef enum sj_metrics_refusal {
    SJ_REFUSED_TOKEN = 0,  /* SJ-TOKEN missing or wrong */
    SJ_REFUSED_MALFORMED,  /* body not a task */
    SJ_REFUSED_QUEUE_FULL, /* queue_size / queue_max_bytes */
    SJ_REFUSED_CLOSED,     /* starting or shutting down */
    SJ_REFUSED__COUNT
} sj_metrics_refusal;

/* Why a task was interrupted (snailjob_task_interruptions_total{cause}). */
typedef enum sj_metrics_cause {
    SJ_CAUSE_STOP = 0, /* the server stopped its batch */
    SJ_CAUSE_TIMEOUT,  /* executor timeout */
    SJ_CAUSE_MEMORY,   /* the Lua state hit memory_limit_mb */
    SJ_CAUSE_SHUTDOWN, /* the host shut down */
    SJ_CAUSE__COUNT
} sj_metrics_cause;

/* Values read at scrape time from the units that own them. */
typedef struct sj_metrics_snapshot {
    size_t running, queued;
    unsigned long log_lines_sent, log_lines_dropped;
    unsigned long journal_pending;
    double journal_oldest_age_s;
    int reachable;        /* last heartbeat accepted */
    long long last_ok_ms; /* wall-clock ms of the last accepted call, 0 */
    unsigned long long generation;
    size_t n_workers;
    size_t lua_bytes[SJ_METRICS_MAX_WORKERS];
} sj_metrics_snapshot;

typedef void (*sj_metrics_collect_fn)(void *ud, sj_metrics_snapshot *s);

/* ---- counting (any thread) ------------------------------------------- */

/* A task ended: `status` is its outcome name (sj_outcome_name). */
void sj_metrics_task_finished(const char *executor, const char *status,
                              double seconds);
void sj_metrics_dispatch_refused(sj_metrics_refusal reason);
void sj_metrics_interrupted(sj_metrics_cause cause);
void sj_metrics_reload_failed(void);
void sj_metrics_worker_retired(void);
void sj_metrics_set_state(sj_metrics_state state);
sj_metrics_state sj_metrics_get_state(void);

/* Where snapshots come from (NULL: none). Once this returns, no scrape
 * uses the previous callback any more: clear it before freeing what it
 * reads. */
void sj_metrics_set_collector(sj_metrics_collect_fn fn, void *ud);

/* The whole /metrics text as served (malloc'd, caller frees), or NULL on
 * ENOMEM. For tests and for the server below. */
char *sj_metrics_render(void);

/* The /healthz answer: HTTP code 200 or 503, and the body line. */
int sj_metrics_health(char *body, size_t n);

/* ---- serving (main thread) ------------------------------------------- */

/* Check a metrics_listen value ("127.0.0.1:9464", "[::1]:9464",
 * "localhost:0"): 0, or SJ_EINVAL with a sentence in `err`. */
int sj_metrics_parse_listen(const char *listen, char *err, size_t errlen);

/* Serve on `listen`. `beat_interval` (s) sets the unreachable limit.
 * 0 with *port the bound port (may be NULL); SJ_EINVAL (bad address),
 * SJ_EIO (cannot listen: `err` names the address and why). One at a
 * time. */
int sj_metrics_serve(const char *listen, double beat_interval, int *port,
                     char *err, size_t errlen);

/* Stop serving (waits for the daemon's thread). Safe when not serving. */
void sj_metrics_unserve(void);

/* Zero every counter (tests). */
void sj_metrics_reset(void);

#endif
