/*
 * sj_upstream.h - everything the host sends to the SnailJob server.
 *
 * Owns one thread ("upstream") that never blocks on the network: it
 * heartbeats (/beat), registers the executor names, delivers result reports
 * in order with many in flight, and flushes task-log batches. Results are
 * journaled (sj_spool) before the first attempt and retried with capped
 * backoff until the server acknowledges them, across server restarts and
 * host restarts. Log records wait in a bounded queue; when it is full a
 * script's sj.log.* waits for room while the server takes batches
 * (back-pressure, sj_upstream_log); otherwise the oldest waiting lines
 * are dropped and a "N log lines dropped" record is sent in their place,
 * never a silent loss. Log batches go one at a time, in order; a backlog
 * leaves in batches of up to 1,000 lines and 1 MiB.
 *
 * Edges (issue 11): a log line over log_line_max is cut with a marker
 * saying how much; log batches stay under 4 MiB (the server takes 10 MiB);
 * the log queue is bounded in bytes (log_queue_max_bytes): past it (and
 * past a script's wait for room) the oldest lines not in flight are
 * dropped, a WARN per episode gives the count; a
 * report or batch refused for good (gRPC RESOURCE_EXHAUSTED or a
 * malformed call, or 5 in-band refusals) is dropped with an ERROR naming
 * the task, so nothing waits behind it. A result the journal cannot take
 * (full disk) is kept in memory, delivered, and journaled again later.
 * After a backlog over 8 MiB is delivered the heap is trimmed.
 *
 * Server state (reachable or not) is logged once per change, not per try.
 * Any thread may call sj_upstream_report/_log/_flush/_call/_set_executors;
 * start and stop belong to the main thread.
 */
#ifndef SJ_UPSTREAM_H
#define SJ_UPSTREAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sj_config.h"
#include "sj_link.h"
#include "sj_log.h"
#include "sj_task.h"
#include "sj_wire.h"

typedef struct sj_upstream sj_upstream;

typedef struct sj_upstream_options {
    const sj_config *cfg; /* borrowed; outlives the upstream */
    const char *host_id;
    int host_port;  /* the port actually listening */
    sj_link *link;  /* owned from a successful start on; closed by stop */
    int no_spool;   /* 1: keep results in memory only (local runs) */
    int hold_beats; /* 1: no heartbeat before the first
                       sj_upstream_set_executors, so the server
                       learns of the host only once it can run
                       dispatches */
} sj_upstream_options;

int sj_upstream_start(const sj_upstream_options *opts, sj_upstream **out,
                      char *err, size_t errlen);

/* Flush logs and results for at most `grace_ms`, then stop the thread.
 * What is still unacknowledged stays in the journal. NULL ok. */
void sj_upstream_stop(sj_upstream *up, int grace_ms);

/* Draining (SIGTERM): from now on every call's labels say state=down, and
 * a heartbeat saying so goes at once, so the server stops choosing this
 * host (protocol.md §3.1). */
void sj_upstream_set_down(sj_upstream *up);

/* Wait at most `grace_ms` for queued logs and results to be delivered
 * (not past the server becoming unreachable), sync the journal; returns
 * the results still unacknowledged. For an exit that cannot stop the
 * workers (one stuck in C): the upstream keeps running. */
size_t sj_upstream_flush_wait(sj_upstream *up, int grace_ms);

/* Replace the executor names announced to the server (copied); they are
 * registered now and again whenever the server comes back. The first call
 * also releases the heartbeat held by `hold_beats`. */
int sj_upstream_set_executors(sj_upstream *up, const char *const *names,
                              size_t n);

/* Queue a /report/dispatch/result body (takes ownership of `body`); never
 * held by a report barrier (below). */
int sj_upstream_report(sj_upstream *up, char *body);

/*
 * Report barrier per batch (protocol.md §6.6, the fan-out race). The Java
 * server completes a MAP / MAP_REDUCE batch only on a leaf task's report
 * and only when no task of it is RUNNING; a non-leaf parent's own report
 * never triggers that check. Children of a parent fanning out from this
 * host often run here too, and if all their results reach the server
 * before the parent's own one, the batch stays RUNNING until its timeout.
 *
 * So a task about to call /batch/report/job/map/task/v1 takes a hold on
 * its batch (sj_upstream_hold). While batch B has holders, result reports
 * of B queued with sj_upstream_report_task(.., own_hold=0) are journaled
 * at once (a crash loses nothing) but not sent. A holder ends its hold
 * exactly once: by queueing its own report with own_hold=1 - that report
 * is never held, and the hold ends when the server acknowledges it (or
 * refuses it for good) - or, if it ends unreported (stopped, timed out,
 * shut down), with sj_upstream_release. When B's last holder is gone, its
 * held reports go out in their original order; if the server stopped B
 * meanwhile (sj_upstream_drop_held) they are dropped instead. Holds nest
 * (a child that fans out again is one more holder). Nothing the holder
 * waits for (the map report's reply) depends on held reports, so holds
 * cannot deadlock; a holder whose own report cannot be delivered keeps
 * B's reports held (they stay journaled, and sj_upstream_stop does not
 * wait for them). Reports recovered from the journal at start are never
 * held.
 *
 * The emulator applies a report before it answers; the Java server
 * answers once its result actor has the message, so there the row update
 * may trail the answer by that actor's queue: the barrier narrows the
 * race to that, it cannot close it from the client.
 *
 * Any thread. Counts and held reports belong to the upstream.
 */

/* One more holder of `batch`. 0 or SJ_ENOMEM (then nothing is held). */
int sj_upstream_hold(sj_upstream *up, int64_t batch);

/* End one hold of `batch` without a report of the holder. */
void sj_upstream_release(sj_upstream *up, int64_t batch);

/* The server stopped `batch` (/job/stop/v1): forget its reports held now,
 * and those held later until its last holder is gone, marking them done
 * in the journal - the server already settled those tasks, and a late
 * FAIL could still start a retry (protocol.md §7.1). Returns how many were
 * dropped now. Hold counts are not changed. */
size_t sj_upstream_drop_held(sj_upstream *up, int64_t batch);

/* Queue the result report (takes ownership of `body`) of a task of
 * `batch`. own_hold 0: held while the batch has holders. own_hold 1: the
 * reporting task holds the batch; the report goes at once and its
 * acknowledgement (or final refusal) ends that hold - also if queueing
 * fails (then the hold ends now). */
int sj_upstream_report_task(sj_upstream *up, int64_t batch, char *body,
                            int own_hold);

/*
 * Queue one remote log line of task `t`. `location` may be NULL. Level
 * names follow Java's (DEBUG/INFO/WARN/ERROR).
 *
 * When the queue is at its bound (log_queue_max_bytes, or 200,000 lines):
 *   - due == NULL (the host's own lines about a task): never blocks; the
 *     oldest lines not in flight make room, counted for the notice;
 *   - due != NULL (a script's sj.log.*): back-pressure. The caller waits
 *     for the sender to make room, with no lock held but the upstream's
 *     own (released while waiting), calling due(due_ud) every 10 ms; a
 *     nonzero value ends the wait. It waits only while something queued
 *     can leave, the server is reachable (the last heartbeat was
 *     accepted) and it acknowledged a log batch within the last 5 s
 *     (since the wait began): once 5 s pass without one, a WARN says so
 *     and every writer drops as above, without waiting, until a batch is
 *     acknowledged again. Stopping the upstream ends every wait.
 * A wait that ends without room falls back to the drop. Returns 0, or the
 * nonzero value of due that ended the wait (the line was then queued or
 * dropped as with due == NULL).
 */
int sj_upstream_log(sj_upstream *up, const sj_task *t, sj_log_level level,
                    const char *msg, size_t len, const char *location,
                    int (*due)(void *), void *due_ud);

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

/* 1 (with `why`) while results the journal could not take (full disk)
 * hold more than 64 MiB of memory: dispatches are then refused. */
int sj_upstream_backlogged(sj_upstream *up, char *why, size_t whylen);

/* 1 once the server answered a heartbeat, 0 while it is unreachable or
 * refusing. `why` (may be NULL) gets the last failure. */
int sj_upstream_connected(sj_upstream *up, char *why, size_t whylen);

/* Counters for tests and benchmarks. */
typedef struct sj_upstream_stats {
    unsigned long beats_ok, beats_failed;
    unsigned long reports_sent, reports_acked, reports_pending;
    unsigned long reports_held; /* pending reports held by a barrier now */
    unsigned long log_lines_sent, log_lines_dropped, log_lines_queued;
    unsigned long log_waits;        /* sj.log.* calls that waited for room */
    long long oldest_report_age_ms; /* of the oldest pending report, or 0 */
    long long last_ok_ms; /* wall-clock ms of the last accepted beat, 0 */
    int reachable;        /* the last heartbeat was accepted */
} sj_upstream_stats;
void sj_upstream_get_stats(sj_upstream *up, sj_upstream_stats *st);

#endif
