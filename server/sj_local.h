/*
 * sj_local.h - `snailjob-lua run`: one job, end to end, with no server.
 *
 * sj_local_run() builds, inside the process, the production host (the
 * worker pool with its Lua states, the inbound endpoint with its parser and
 * SJ-TOKEN check, sj_upstream with its beats, reports, log batches and map
 * reports) and an sj_srv that plays the SnailJob server's part (task
 * generation, MAP fan-out, REDUCE partitioning, MERGE, broadcast, static
 * sharding, batch timeout, stops). Nothing is short-cut: the two halves
 * only meet through the same messages the network would carry:
 *
 *   host -> server  sj_upstream calls a "local link" (an sj_link whose
 *                   call() hands the sj_request to sj_srv_handle and runs
 *                   the callback later on the link thread);
 *   server -> host  sj_srv's ops.send queues /job/dispatch/v1 and
 *                   /job/stop/v1 onto the same link thread, which hands
 *                   them to sj_endpoint_handle with the server's headers
 *                   and reports the reply with sj_srv_send_done.
 *
 * Simulated nodes: the host itself beats as "local-1"; with nodes = N the
 * run also registers "local-2".."local-N" (one /beat each, distinct ports,
 * as the Java server dedups broadcast targets by ip:port). Every node is
 * routed to the one in-process pool.
 *
 * The batch times out after timeout_s (the job's executorTimeout, which
 * the host also enforces per task); a map parent's own report completes
 * the batch (sj_srv_config.complete_on_nonleaf = 1).
 *
 * Threads: call sj_local_run from the main thread; it starts and joins all
 * its threads (link, pool workers, watchdog, upstream) before returning.
 * With handle_signals it blocks SIGINT/SIGTERM in the calling thread (do
 * it before any other thread exists) and turns them into a console stop of
 * the batch. The report is owned by the caller (sj_local_report_free).
 */
#ifndef SJ_LOCAL_H
#define SJ_LOCAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sj_config.h"
#include "sj_local_print.h" /* printing a report */
#include "sj_srv.h"

#define SJ_LOCAL_DEFAULT_TIMEOUT 60 /* seconds */

typedef struct sj_local_options {
    const sj_config *cfg;     /* borrowed: token, group, workers, paths... */
    const char *const *files; /* executor files, expanded (sj_files) */
    size_t n_files;
    const char *executor;   /* executor name to run */
    int task_type;          /* SJ_SRV_CLUSTER..; 0: from its kind
                               (job -> CLUSTER, map -> MAP,
                               map_reduce -> MAP_REDUCE) */
    const char *params;     /* job parameter text; NULL: none */
    int shards;             /* MAP_REDUCE reduce tasks; <= 0: 1 */
    int nodes;              /* simulated hosts; <= 0: 1 */
    const char *wf_context; /* JSON object text: run as a workflow node
                               with this context; NULL: not a workflow */
    int timeout_s;          /* <= 0: SJ_LOCAL_DEFAULT_TIMEOUT */
    int handle_signals;     /* 1: SIGINT/SIGTERM stop the batch */
    /* One stage alone (sj_srv_job.stage): SJ_SRV_STAGE_MAP with
     * stage_task_name (NULL: ROOT_MAP) and stage_input its map element,
     * _REDUCE with stage_input the map results (a JSON array), _MERGE with
     * the reduce results; 0: the whole job. */
    int stage;
    const char *stage_task_name;
    const char *stage_input;
    int shard_index, shard_total; /* shard_total > 0: that shard alone */
    int64_t wf_node_id;           /* workflow node id; <= 0: 1 */
} sj_local_options;

/* One log line of a task, decoded from a record the server received. */
typedef struct sj_local_log {
    int64_t task_id;
    long long time_ms; /* time_stamp field (epoch ms), 0 if absent */
    char *level;       /* "INFO", ... */
    char *location;    /* "file.lua:12" or "" */
    char *message;
} sj_local_log;

typedef struct sj_local_report {
    char *executor;
    const char *kind; /* "job", "map", "map_reduce" (static) */
    int task_type;    /* what was run */
    int nodes;
    int64_t batch_id;
    int status;              /* SJ_SRV_SUCCESS, _FAIL, _STOP or _CANCEL */
    int reason;              /* SJ_SRV_REASON_* */
    char *result;            /* sj_srv_batch_result text, NULL if none */
    char *wf_context_in;     /* context given (JSON object text) or "{}" */
    char *wf_context;        /* after the merge of every task's changes */
    sj_srv_task_info *tasks; /* id order */
    size_t n_tasks;
    /* The log lines, streamed to an unlinked temporary file as the server
     * receives them (one JSON record per line) so that memory stays flat
     * however much a job logs; read with sj_local_log_next. */
    FILE *logs;
    size_t n_logs;
    unsigned long logs_dropped; /* lines the host could not deliver */
    char *map_calls;      /* JSON array: [{"parent_id","task_name","list"}],
                             one per mr_do_map the server received */
    long long elapsed_ms; /* trigger to final status */
} sj_local_report;

/*
 * Run the job once and fill `out` (zeroed here). Returns 0 whenever a
 * batch ran, whatever its final status; otherwise, with a sentence in
 * `err`: SJ_ENOENT (no executor by that name; `err` names the closest
 * ones), SJ_ELUA (an executor file failed to load; `err` names file and
 * line), SJ_EINVAL (bad option: wf_context not a JSON object, SHARDING
 * params not a JSON list of strings...), SJ_ENOMEM or another code when
 * the in-process host could not start.
 */
int sj_local_run(const sj_local_options *opts, sj_local_report *out, char *err,
                 size_t errlen);

void sj_local_report_free(sj_local_report *r);

/* The next log line of the report into `l` (free with sj_local_log_free):
 * 1, or 0 at the end. sj_local_log_rewind starts again. */
int sj_local_log_next(const sj_local_report *r, sj_local_log *l);
void sj_local_log_rewind(const sj_local_report *r);
void sj_local_log_free(sj_local_log *l);

/* "SUCCESS", "FAIL", "STOP", "CANCEL", "RUNNING", "WAITING" or "?". */
const char *sj_local_status_name(int status);

/* "MAP", "REDUCE", "MERGE" (SJ_SRV_STAGE_*), or NULL; and back from a
 * word (case ignored, "merge_reduce" too): 0 for an unknown word. */
const char *sj_local_stage_name(int stage);
int sj_local_stage_parse(const char *word);

/* "executor timeout", "no client", "stopped", or NULL. */
const char *sj_local_reason_name(int reason);

/* "cluster", "broadcast", "sharding", "map", "mapreduce" (the --type
 * words) and back: 0 for an unknown word. */
const char *sj_local_type_name(int task_type);
int sj_local_type_parse(const char *word);

#endif
