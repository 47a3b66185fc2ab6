/*
 * sj_upstream.h - everything the host sends to the SnailJob server.
 *
 * Owns one thread ("upstream") that never blocks on the network: it
 * heartbeats (/beat), registers the executor names, delivers result reports
 * in order with many in flight, and flushes task-log batches. Results are
 * journaled (sj_spool) before the first attempt and retried with capped
 * backoff until the server acknowledges them, across server restarts and
 * host restarts. Log records wait in a bounded queue; when it is full the
 * oldest waiting lines of the task are kept and a "N log lines dropped"
 * record is sent in their place, never a silent loss.
 *
 * Server state (reachable or not) is logged once per change, not per try.
 * Any thread may call sj_upstream_report/_log/_flush/_call/_set_executors;
 * start and stop belong to the main thread.
 */
#ifndef SJ_UPSTREAM_H
#define SJ_UPSTREAM_H

#include <stdatomic.h>
#include <stddef.h>

#include "sj_config.h"
#include "sj_link.h"
#include "sj_log.h"
#include "sj_task.h"
#include "sj_wire.h"

typedef struct sj_upstream sj_upstream;

typedef struct sj_upstream_options {
    const sj_config *cfg; /* borrowed; outlives the upstream */
    const char *host_id;
    int host_port;        /* the port actually listening */
    sj_link *link;        /* owned from a successful start on; closed by stop */
    int no_spool;         /* 1: keep results in memory only (local runs) */
    int hold_beats;       /* 1: no heartbeat before the first
                             sj_upstream_set_executors, so the server
                             learns of the host only once it can run
                             dispatches */
} sj_upstream_options;

int sj_upstream_start(const sj_upstream_options *opts, sj_upstream **out,
                      char *err, size_t errlen);

/* Flush logs and results for at most `grace_ms`, then stop the thread.
 * What is still unacknowledged stays in the journal. NULL ok. */
void sj_upstream_stop(sj_upstream *up, int grace_ms);

/* Replace the executor names announced to the server (copied); they are
 * registered now and again whenever the server comes back. The first call
 * also releases the heartbeat held by `hold_beats`. */
int sj_upstream_set_executors(sj_upstream *up, const char *const *names,
                              size_t n);

/* Queue a /report/dispatch/result body (takes ownership of `body`). */
int sj_upstream_report(sj_upstream *up, char *body);

/* Queue one remote log line of task `t`. Never blocks. `location` may be
 * NULL. Level names follow Java's (DEBUG/INFO/WARN/ERROR). */
void sj_upstream_log(sj_upstream *up, const sj_task *t, sj_log_level level,
                     const char *msg, size_t len, const char *location);

/* Ask for the queued log lines to be sent now (at task end). */
void sj_upstream_flush(sj_upstream *up);

/* A blocking call with the host's headers (map reports). `body` is the
 * JSON argument array. Cancellable through `cancel`. */
int sj_upstream_call(sj_upstream *up, const char *uri, const char *body,
                     const atomic_int *cancel, sj_reply *out, char *err,
                     size_t errlen);

/* Fill `req` (zeroed) with a request to `uri` carrying the host headers. */
int sj_upstream_request(sj_upstream *up, const char *uri, const char *body,
                        sj_request *req);

/* 1 once the server answered a heartbeat, 0 while it is unreachable or
 * refusing. `why` (may be NULL) gets the last failure. */
int sj_upstream_connected(sj_upstream *up, char *why, size_t whylen);

/* Counters for tests and benchmarks. */
typedef struct sj_upstream_stats {
    unsigned long beats_ok, beats_failed;
    unsigned long reports_sent, reports_acked, reports_pending;
    unsigned long log_lines_sent, log_lines_dropped, log_lines_queued;
} sj_upstream_stats;
void sj_upstream_get_stats(sj_upstream *up, sj_upstream_stats *st);

#endif
