/*
 * sj_task.h - one dispatched task, from the server's JSON to the report.
 *
 * A task is created by the inbound endpoint from a /job/dispatch/v1 body
 * (sj_task_parse), owned by the dispatcher while queued, by exactly one
 * worker while it runs, and freed after its result has been handed to the
 * reporter. Other threads touch only `stop` (an atomic: the stop reason).
 *
 * The outcome enum names every way a run can end, and sj_task_report_json()
 * is the one place that maps an outcome to what the server is told
 * (protocol.md §4.3, §7).
 */
#ifndef SJ_TASK_H
#define SJ_TASK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Task types (protocol.md §6.1). */
enum {
    SJ_TYPE_CLUSTER = 1,
    SJ_TYPE_BROADCAST = 2,
    SJ_TYPE_SHARDING = 3,
    SJ_TYPE_MAP = 4,
    SJ_TYPE_MAP_REDUCE = 5
};

/* MapReduce stages. */
enum {
    SJ_STAGE_NONE = 0,
    SJ_STAGE_MAP = 1,
    SJ_STAGE_REDUCE = 2,
    SJ_STAGE_MERGE = 3
};

/* Task status in reports. */
enum { SJ_TASK_SUCCESS = 3, SJ_TASK_FAIL = 4 };

#define SJ_ROOT_MAP "ROOT_MAP"

/* Why a running task is being interrupted; stored in sj_task.stop. */
typedef enum sj_stop_reason {
    SJ_STOP_NONE = 0,
    SJ_STOP_SERVER,  /* /job/stop/v1 for its batch */
    SJ_STOP_TIMEOUT, /* its executorTimeout elapsed */
    SJ_STOP_SHUTDOWN /* the host is shutting down */
} sj_stop_reason;

/* How a run ended. */
typedef enum sj_outcome {
    SJ_OUT_OK = 0,      /* handler returned success (or nothing) */
    SJ_OUT_FAILED,      /* handler returned sj.failure(msg) */
    SJ_OUT_ERROR,       /* handler raised an error */
    SJ_OUT_TIMEOUT,     /* interrupted: executor timeout */
    SJ_OUT_STOPPED,     /* interrupted: stopped by the server */
    SJ_OUT_NOMEM,       /* the state hit its memory cap */
    SJ_OUT_NO_EXECUTOR, /* no executor (or stage handler) by that name */
    SJ_OUT_SHUTDOWN     /* the host shut down mid-task */
} sj_outcome;

const char *sj_outcome_name(sj_outcome out);

typedef struct sj_task {
    /* identity, echoed in every report */
    int64_t job_id;
    int64_t task_batch_id;
    int64_t task_id;
    int64_t workflow_task_batch_id; /* 0 = not a workflow */
    int64_t workflow_node_id;
    int task_type;
    int mr_stage; /* SJ_STAGE_NONE outside MAP/MAP_REDUCE */
    int parallel_num;
    int executor_type;
    int executor_timeout; /* seconds; <= 0 = none */
    bool has_sharding;    /* shardingIndex/Total present (first dispatch) */
    int sharding_index;
    int sharding_total;
    bool has_retry_count;
    int retry_count;
    bool has_retry_scene;
    int retry_scene;
    bool has_retry_status; /* echo exactly what arrived (protocol.md §7.3) */
    bool retry_status;
    bool has_retry;
    bool retry;
    char *namespace_id;
    char *group_name;
    char *job_biz_id;
    char *task_name;
    char *executor_info;
    char *wf_context; /* JSON object text, NULL outside workflows */

    /* argsStr, decoded per protocol.md §6.2 */
    char *job_params;  /* never NULL ("" when absent) */
    json_t *maps;      /* "maps" member or NULL */
    json_t *reduces;   /* "reduces" member or NULL */
    size_t args_bytes; /* length of the argsStr text they were decoded from */

    /* run-time, set by the dispatcher */
    long long received_ms; /* monotonic */
    long long deadline_ms; /* monotonic; 0 = none */
    atomic_int stop;       /* sj_stop_reason */
} sj_task;

/*
 * Parse a /job/dispatch/v1 body (a JSON array whose first element is the
 * DispatchJobRequest). Unknown fields are ignored, missing optional ones
 * tolerated (protocol.md §8.1). Returns 0 and a new task, or SJ_EJSON /
 * SJ_EINVAL with a sentence in `err` naming the field that was wrong.
 */
int sj_task_parse(const char *body, sj_task **out, char *err, size_t errlen);

/*
 * The same without building a jansson tree (sj_jscan), for the common
 * body: 1 and a new task, identical to what sj_task_parse makes of it; 0
 * when it declines (an error, or a form it leaves to jansson: a real
 * number, a repeated field, a key with escapes...), and the caller takes
 * the jansson path, which gives the same task or the error message.
 * sj_task_parse tries it first.
 */
int sj_task_parse_fast(const char *body, size_t len, sj_task **out);

/* The same from an already parsed body (borrowed: nothing of `root` is
 * kept; the task owns copies). Errors as above, but never "not JSON". */
int sj_task_from_json(const json_t *root, sj_task **out, char *err,
                      size_t errlen);

void sj_task_free(sj_task *t);

/*
 * Build the /report/dispatch/result body for a finished run.
 * `result` (borrowed, may be NULL) is the handler's result value;
 * `message` the failure text (may be NULL); `wf_changes` (borrowed, may be
 * NULL or empty) the context keys the task added. Returns malloc'd JSON
 * text, or NULL when the outcome is not reported at all (stopped / timed
 * out tasks, as the Java client does, protocol.md §7.1-7.2).
 */
char *sj_task_report_json(const sj_task *t, sj_outcome out,
                          const json_t *result, const char *message,
                          const json_t *wf_changes);

#endif
