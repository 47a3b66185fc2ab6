/*
 * sj_srv.h - the job side of a SnailJob server, without any transport.
 *
 * sj_srv answers client->server calls (sj_srv_handle) exactly as the Java
 * server 2.0.x does (protocol.md §3.1, §4) and drives batches and tasks
 * through the server's state machine (§6, §7): task generation for the
 * five task types, MAP fan-out, REDUCE/MERGE_REDUCE stages, completion,
 * cleanup stops, batch timeout, automatic and manual retries and the
 * workflow context merge. It is embedded by the gRPC emulator (sj_emu) and
 * by `snailjob-lua run`.
 *
 * It owns: a record of every request it received (deep copies with their
 * receive time), the node registry fed by /beat, the registered executor
 * names, the stored log records, all batches and tasks, and a record of
 * every outbound call it made.
 *
 * Outbound calls (/job/dispatch/v1, /job/stop/v1) leave through
 * sj_srv_ops.send, which is never called with the internal mutex held; the
 * embedder delivers them asynchronously and reports each outcome with
 * sj_srv_send_done(). Time only moves in sj_srv_tick(): the embedder calls
 * it every ~20 ms with the same clock as sj_srv_config.clock (default
 * sj_mono_ms), so a test with a fake clock is fully deterministic.
 *
 * Threads: every function may be called from any thread, concurrently;
 * ops.send may be called from any of those threads (including from inside
 * sj_srv_send_done). Allocation failure inside the state machine aborts the
 * process: this is an emulator, not a production server.
 */
#ifndef SJ_SRV_H
#define SJ_SRV_H

#include <stddef.h>
#include <stdint.h>

#include "sj_wire.h"

/* Task types (protocol.md §6.1). */
enum {
    SJ_SRV_CLUSTER = 1,
    SJ_SRV_BROADCAST = 2,
    SJ_SRV_SHARDING = 3,
    SJ_SRV_MAP = 4,
    SJ_SRV_MAP_REDUCE = 5
};

/* Batch and task status (sj_job_task_batch / sj_job_task). */
enum {
    SJ_SRV_WAITING = 1,
    SJ_SRV_RUNNING = 2,
    SJ_SRV_SUCCESS = 3,
    SJ_SRV_FAIL = 4,
    SJ_SRV_STOP = 5,
    SJ_SRV_CANCEL = 6
};

/* MapReduce stages (0 for the other task types). */
enum { SJ_SRV_STAGE_MAP = 1, SJ_SRV_STAGE_REDUCE = 2, SJ_SRV_STAGE_MERGE = 3 };

/* Batch operation reasons used here (JobOperationReasonEnum). */
enum {
    SJ_SRV_REASON_NONE = 0,
    SJ_SRV_REASON_TIMEOUT = 1,
    SJ_SRV_REASON_NOT_CLIENT = 2,
    SJ_SRV_REASON_MANUAL_STOP = 8
};

/* Outcome of one outbound call, for sj_srv_send_done(). */
enum {
    SJ_SRV_SEND_DROPPED = -2, /* embedder shutting down: forget the call */
    SJ_SRV_SEND_FAILED = -1,  /* transport error, deadline, bad `data` */
    SJ_SRV_SEND_REJECTED = 0, /* answered, but not status 1 + data true */
    SJ_SRV_SEND_ACCEPTED = 1  /* status 1 and data "true" */
};

/* Defaults of sj_srv_config (the Java client's and demo's values). */
#define SJ_SRV_DEFAULT_NAMESPACE "764d604ec6fc45f68cd92514c40e9e1a"
#define SJ_SRV_DEFAULT_GROUP "snail_job_demo_group"
#define SJ_SRV_DEFAULT_TOKEN "SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj"

#define SJ_SRV_URI_DISPATCH "/job/dispatch/v1"
#define SJ_SRV_URI_STOP "/job/stop/v1"

typedef struct sj_srv sj_srv;

/* Where an outbound call goes; valid only during the send callback. */
typedef struct sj_srv_node {
    const char *host_id;
    const char *ip;
    int port;
} sj_srv_node;

typedef struct sj_srv_ops {
    /* Deliver `body` to `node` on `uri` and later call sj_srv_send_done()
     * with `token` (exactly once; DROPPED if it never will be delivered). */
    void (*send)(void *ud, const sj_srv_node *node, const char *uri,
                 const char *body, uint64_t token);
    void *ud;
} sj_srv_ops;

typedef struct sj_srv_config {
    const char *namespace_id; /* NULL: SJ_SRV_DEFAULT_NAMESPACE */
    const char *group_name;   /* NULL: SJ_SRV_DEFAULT_GROUP */
    const char *token;        /* group token; NULL: SJ_SRV_DEFAULT_TOKEN */
    int beat_apply_ms; /* beats are applied every this many ms; 0 = at once
                          (the Java server: 5000) */
    int expire_ms;     /* node removed this long after its last applied
                          beat; 0 = 40000 */
    int64_t id_base;   /* first batch/task id; 0 = 1234567890123456000 */
    /* 0 (as Java): a non-leaf MAP task's own report never completes the
     * batch (protocol.md §6.6 race). 1: it does, for local runs. */
    int complete_on_nonleaf;
    long long (*clock)(void *ud); /* NULL: sj_mono_ms */
    void *clock_ud;
    /* NULL: JOB log records are stored (sj_srv_log_get). Otherwise each
     * accepted record goes to log_sink (JSON object text, borrowed) and is
     * not kept, and /batch/server/report/log requests are recorded without
     * their body: memory stays flat however much a job logs (`run`). Called
     * with the internal mutex held: it must not call back into sj_srv. */
    void (*log_sink)(void *ud, const char *record);
    void *log_sink_ud;
} sj_srv_config;

/* cfg and ops may be NULL (defaults; sends are then dropped). 0 or
 * SJ_ENOMEM. */
int sj_srv_create(const sj_srv_config *cfg, const sj_srv_ops *ops,
                  sj_srv **out);
/* Frees everything; pending outbound calls are forgotten. NULL ok. */
void sj_srv_destroy(sj_srv *srv);

/*
 * Answer one client->server call. `reply` must be zeroed; it is filled
 * like the Java server's GrpcResult (reqId echoed, data JSON text).
 * Returns 0, or SJ_EINVAL for a blank uri: the Java server never answers
 * those, `reply` is left empty and the caller should not answer either.
 */
int sj_srv_handle(sj_srv *srv, const sj_request *req, sj_reply *reply);

/* Report the outcome of the outbound call `token`. `message` (may be NULL)
 * is the reply message or the transport error. Unknown tokens are ignored. */
void sj_srv_send_done(sj_srv *srv, uint64_t token, int outcome,
                      const char *message);

/* Run due timers: beat application, node expiry, retry intervals, batch
 * timeouts. `now_ms` comes from the configured clock. */
void sj_srv_tick(sj_srv *srv, long long now_ms);

/* ---- jobs -------------------------------------------------------------- */

typedef struct sj_srv_job {
    int64_t job_id;            /* 0: 1 */
    int task_type;             /* SJ_SRV_CLUSTER .. SJ_SRV_MAP_REDUCE */
    const char *executor_info; /* executor name */
    const char *args;          /* job argument text (jobParams); for
                                  MAP_REDUCE the inner "argsStr"; NULL none */
    int shard_num;             /* MAP_REDUCE: reduce tasks wanted; <=0: 1 */
    int executor_timeout;      /* seconds; <= 0: 60 */
    int parallel_num;          /* <= 0: 1 */
    int executor_type;         /* <= 0: 1 (JAVA) */
    int max_retry_times;
    int retry_interval;     /* seconds */
    const char *job_biz_id; /* NULL: omitted from dispatches */
    const char *labels;     /* JSON object of target labels; NULL none */
    int64_t workflow_task_batch_id; /* 0: not a workflow node */
    int64_t workflow_node_id;
    const char *wf_context;     /* workflow context JSON object text */
    const char *const *targets; /* restrict to these host-ids or "ip:port" */
    size_t n_targets;
    /* One stage alone, with crafted input (`run --stage`), for MAP and
     * MAP_REDUCE jobs: 0 runs the whole job. SJ_SRV_STAGE_MAP: one map task
     * named stage_task_name (NULL: ROOT_MAP) whose map element is
     * stage_input (JSON text; NULL: none); SJ_SRV_STAGE_REDUCE: one reduce
     * task, stage_input a JSON array of map results; SJ_SRV_STAGE_MERGE:
     * one merge task, stage_input a JSON array of reduce results (array
     * elements that are not strings are passed as their JSON text, as the
     * server stores results). No next stage is opened, and a map report of
     * the task is answered but creates no sub-tasks (it stays in the
     * request record). The batch result is that task's result. */
    int stage;
    const char *stage_task_name;
    const char *stage_input;
    /* SHARDING with shard_total > 0: one task only, shard shard_index of
     * shard_total, `args` being its own parameter. */
    int shard_index, shard_total;
} sj_srv_job;

/*
 * Run the job once (a manual trigger). *batch_id gets the new batch, which
 * is CANCEL at once (reason NOT_CLIENT) if no live node matches; otherwise
 * its tasks are dispatched before this returns. 0, or SJ_EINVAL (bad task
 * type, labels not a JSON object, a string not UTF-8, a stage for another
 * task type or with input of the wrong shape).
 */
int sj_srv_trigger(sj_srv *srv, const sj_srv_job *job, int64_t *batch_id);

/* Console "stop": stops sent, unfinished tasks STOP, batch STOP (reason
 * MANUAL_STOP). 0, SJ_ENOENT, or SJ_EINVAL if already finished. */
int sj_srv_stop_batch(sj_srv *srv, int64_t batch_id);

/* Console "retry" of a FAIL/STOP/CANCEL batch: unsuccessful tasks RUNNING
 * again and re-dispatched at once with retryScene=2 and retryCount+1; the
 * timeout is re-armed. 0, SJ_ENOENT, or SJ_EINVAL for another status. */
int sj_srv_retry_batch(sj_srv *srv, int64_t batch_id);

/* Current status of a batch, or SJ_ENOENT. */
int sj_srv_batch_status(sj_srv *srv, int64_t batch_id);

/* Wait until the batch is SUCCESS, FAIL, STOP or CANCEL and return that
 * status; SJ_ETIMEOUT or SJ_ENOENT. */
int sj_srv_wait_batch(sj_srv *srv, int64_t batch_id, int timeout_ms);

typedef struct sj_srv_batch_info {
    int64_t batch_id;
    int64_t job_id;
    int task_type;
    int status;
    int reason; /* SJ_SRV_REASON_* */
    size_t n_tasks;
    char *executor_info;
} sj_srv_batch_info;

/* All batches, oldest first; free with sj_srv_batches_free. */
int sj_srv_batches(sj_srv *srv, sj_srv_batch_info **out, size_t *n);
void sj_srv_batches_free(sj_srv_batch_info *v, size_t n);

typedef struct sj_srv_task_info {
    int64_t task_id;
    int64_t parent_id; /* 0 for roots */
    char *name;        /* CLUSTER_TASK, ROOT_MAP, REDUCE_TASK, ... */
    int mr_stage;      /* SJ_SRV_STAGE_* or 0 */
    int status;        /* SJ_SRV_RUNNING .. SJ_SRV_CANCEL */
    int leaf;
    int retry_count;
    char *result;     /* result_message as stored (§4.3): "" initially */
    char *message;    /* last executeResult.message or failure text */
    char *args_str;   /* argsStr as dispatched */
    char *wf_context; /* context changes reported for it, or NULL */
    char *host_id;    /* node it was given to, NULL if none (CANCEL) */
} sj_srv_task_info;

/* A batch's tasks in id order; free with sj_srv_tasks_free. 0/SJ_ENOENT. */
int sj_srv_batch_tasks(sj_srv *srv, int64_t batch_id, sj_srv_task_info **out,
                       size_t *n);
void sj_srv_tasks_free(sj_srv_task_info *v, size_t n);

/*
 * The batch's result as text (malloc'd): CLUSTER the task's result;
 * MAP_REDUCE the MERGE_REDUCE result, or the single REDUCE result; MAP a
 * JSON array of the leaf tasks' results (strings, id order); BROADCAST and
 * SHARDING a JSON array of every task's result. SJ_ENOENT until the batch
 * has finished (any final status).
 */
int sj_srv_batch_result(sj_srv *srv, int64_t batch_id, char **out);

/* The workflow context after merging every task's reported changes into
 * the batch's starting context (protocol.md §6.8), as JSON object text. */
int sj_srv_batch_wf_context(sj_srv *srv, int64_t batch_id, char **out);

/* ---- registry ---------------------------------------------------------- */

typedef struct sj_srv_node_info {
    char *host_id;
    char *ip;
    int port;
    char *labels;         /* label header as received, NULL if none */
    char *executor_type;  /* header, NULL if none */
    char *system_version; /* header, NULL if none */
    int alive;            /* 0 after a failed call until the next beat */
    long long last_beat_ms;
} sj_srv_node_info;

/* Registered nodes (applied beats, not yet expired), by host-id. */
int sj_srv_nodes(sj_srv *srv, sj_srv_node_info **out, size_t *n);
void sj_srv_nodes_free(sj_srv_node_info *v, size_t n);

/* Executor names registered through /register/job/executors. */
size_t sj_srv_executor_count(sj_srv *srv);
/* 1 if `name` was registered, else 0. */
int sj_srv_has_executor(sj_srv *srv, const char *name);

/* Stored log records (protocol.md §4.5), each as JSON object text. */
size_t sj_srv_log_count(sj_srv *srv);
int sj_srv_log_get(sj_srv *srv, size_t i, char **json);

/* ---- request and send records ------------------------------------------ */

/* Number of requests received on `uri` (NULL: all). */
size_t sj_srv_request_count(sj_srv *srv, const char *uri);
/* Wait until at least n requests on `uri` (NULL: any) arrived. 0 or
 * SJ_ETIMEOUT. */
int sj_srv_wait_requests(sj_srv *srv, const char *uri, size_t n,
                         int timeout_ms);
/* Deep copy of the i-th (0-based) request on `uri` (NULL: any) and its
 * receive time (clock ms, may be NULL). 0, SJ_ENOENT. Free with
 * sj_request_free. */
int sj_srv_request_get(sj_srv *srv, const char *uri, size_t i, sj_request *out,
                       long long *recv_ms);

/* Number of outbound calls made on `uri` (NULL: all), and the i-th one's
 * body and target host-id (malloc'd; either pointer may be NULL). */
size_t sj_srv_sent_count(sj_srv *srv, const char *uri);
int sj_srv_sent_get(sj_srv *srv, const char *uri, size_t i, char **body,
                    char **host_id);

#endif
