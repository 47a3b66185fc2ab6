#include "sj_task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_error.h"
#include "sj_json.h"

static const char *const outcome_names[] = {
    [SJ_OUT_OK] = "ok",
    [SJ_OUT_FAILED] = "failed",
    [SJ_OUT_ERROR] = "error",
    [SJ_OUT_TIMEOUT] = "timeout",
    [SJ_OUT_STOPPED] = "stopped",
    [SJ_OUT_NOMEM] = "out-of-memory",
    [SJ_OUT_NO_EXECUTOR] = "no-executor",
    [SJ_OUT_SHUTDOWN] = "shutdown",
};

const char *sj_outcome_name(sj_outcome out)
{
    if ((unsigned)out < sizeof outcome_names / sizeof outcome_names[0])
        return outcome_names[out];
    return "?";
}

void sj_task_free(sj_task *t)
{
    if (t == NULL)
        return;
    free(t->namespace_id);
    free(t->group_name);
    free(t->job_biz_id);
    free(t->task_name);
    free(t->executor_info);
    free(t->wf_context);
    free(t->job_params);
    json_decref(t->maps);
    json_decref(t->reduces);
    free(t);
}

/* Field readers: a present field of the wrong JSON type is an error that
 * names the field; an absent one leaves the default. */
typedef struct reader {
    json_t *obj;
    char *err;
    size_t errlen;
    int failed;
} reader;

static void wrong(reader *r, const char *key, const char *want)
{
    if (!r->failed)
        snprintf(r->err, r->errlen, "dispatch field '%s' must be %s", key,
                 want);
    r->failed = 1;
}

static bool get_int(reader *r, const char *key, int64_t *v, int required)
{
    json_t *x = json_object_get(r->obj, key);
    if (x == NULL || json_is_null(x)) {
        if (required)
            wrong(r, key, "present (an integer)");
        return false;
    }
    if (json_is_integer(x)) {
        *v = json_integer_value(x);
        return true;
    }
    if (json_is_string(x)) { /* tolerate ids quoted as text */
        char *end;
        long long n = strtoll(json_string_value(x), &end, 10);
        if (*json_string_value(x) != '\0' && *end == '\0') {
            *v = n;
            return true;
        }
    }
    wrong(r, key, "an integer");
    return false;
}

static bool get_int32(reader *r, const char *key, int *v, int required)
{
    int64_t n;
    if (!get_int(r, key, &n, required))
        return false;
    if (n < INT32_MIN || n > INT32_MAX) {
        wrong(r, key, "a 32-bit integer");
        return false;
    }
    *v = (int)n;
    return true;
}

static bool get_bool(reader *r, const char *key, bool *v)
{
    json_t *x = json_object_get(r->obj, key);
    if (x == NULL || json_is_null(x))
        return false;
    if (!json_is_boolean(x)) {
        wrong(r, key, "a boolean");
        return false;
    }
    *v = json_is_true(x);
    return true;
}

static void get_str(reader *r, const char *key, char **v)
{
    json_t *x = json_object_get(r->obj, key);
    if (x == NULL || json_is_null(x))
        return;
    if (!json_is_string(x)) {
        wrong(r, key, "a string");
        return;
    }
    if ((*v = strdup(json_string_value(x))) == NULL)
        wrong(r, key, "copied (out of memory)");
}

/* argsStr is the JSON text of {jobParams, maps, reduces}; anything else is
 * the parameter text itself, as the Java client treats it (§6.2). */
static int parse_args(sj_task *t, const char *args)
{
    json_t *holder = NULL, *jp;

    t->args_bytes = args != NULL ? strlen(args) : 0;
    if (args != NULL && args[0] != '\0')
        holder = json_loads(args, JSON_DECODE_ANY, NULL);
    if (holder != NULL && json_is_object(holder)) {
        jp = json_object_get(holder, "jobParams");
        if (json_is_string(jp))
            t->job_params = strdup(json_string_value(jp));
        else if (jp != NULL && !json_is_null(jp))
            t->job_params = json_dumps(jp, JSON_COMPACT | JSON_ENCODE_ANY);
        if ((t->maps = json_object_get(holder, "maps")) != NULL)
            json_incref(t->maps);
        if ((t->reduces = json_object_get(holder, "reduces")) != NULL)
            json_incref(t->reduces);
    } else if (args != NULL) {
        t->job_params = strdup(args);
    }
    json_decref(holder);
    if (t->job_params == NULL)
        t->job_params = strdup("");
    return t->job_params == NULL ? SJ_ENOMEM : 0;
}

int sj_task_parse(const char *body, sj_task **out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;
    int rc;

    *out = NULL;
    root = json_loads(body != NULL ? body : "", JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "dispatch body is not JSON: %s (line %d)",
                 jerr.text, jerr.line);
        return SJ_EJSON;
    }
    rc = sj_task_from_json(root, out, err, errlen);
    json_decref(root);
    return rc;
}

int sj_task_from_json(const json_t *root, sj_task **out, char *err,
                      size_t errlen)
{
    char *args = NULL;
    sj_task *t;
    reader r = {.err = err, .errlen = errlen};
    int64_t n;

    *out = NULL;
    r.obj = json_array_get(root, 0);
    if (!json_is_array(root) || !json_is_object(r.obj)) {
        snprintf(err, errlen,
                 "dispatch body must be a JSON array holding "
                 "one DispatchJobRequest object");
        return SJ_EJSON;
    }
    if ((t = calloc(1, sizeof *t)) == NULL)
        return SJ_ENOMEM;
    get_int(&r, "jobId", &t->job_id, 1);
    get_int(&r, "taskBatchId", &t->task_batch_id, 1);
    get_int(&r, "taskId", &t->task_id, 1);
    get_int32(&r, "taskType", &t->task_type, 1);
    get_int(&r, "workflowTaskBatchId", &t->workflow_task_batch_id, 0);
    get_int(&r, "workflowNodeId", &t->workflow_node_id, 0);
    get_int32(&r, "mrStage", &t->mr_stage, 0);
    get_int32(&r, "parallelNum", &t->parallel_num, 0);
    get_int32(&r, "executorType", &t->executor_type, 0);
    get_int32(&r, "executorTimeout", &t->executor_timeout, 0);
    t->has_sharding = get_int32(&r, "shardingIndex", &t->sharding_index, 0);
    t->has_sharding &= get_int32(&r, "shardingTotal", &t->sharding_total, 0);
    t->has_retry_count = get_int32(&r, "retryCount", &t->retry_count, 0);
    t->has_retry_scene = get_int32(&r, "retryScene", &t->retry_scene, 0);
    t->has_retry_status = get_bool(&r, "retryStatus", &t->retry_status);
    t->has_retry = get_bool(&r, "retry", &t->retry);
    get_str(&r, "namespaceId", &t->namespace_id);
    get_str(&r, "groupName", &t->group_name);
    get_str(&r, "jobBizId", &t->job_biz_id);
    get_str(&r, "taskName", &t->task_name);
    get_str(&r, "executorInfo", &t->executor_info);
    get_str(&r, "wfContext", &t->wf_context);
    get_str(&r, "argsStr", &args);
    if (!r.failed && (t->executor_info == NULL || !t->executor_info[0]))
        wrong(&r, "executorInfo", "a non-empty executor name");
    if (!r.failed &&
        (t->task_type < SJ_TYPE_CLUSTER || t->task_type > SJ_TYPE_MAP_REDUCE))
        wrong(&r, "taskType", "1 (cluster) to 5 (map-reduce)");
    if (!r.failed && get_int(&r, "mrStage", &n, 0) &&
        (n < SJ_STAGE_MAP || n > SJ_STAGE_MERGE))
        wrong(&r, "mrStage", "1 (map), 2 (reduce) or 3 (merge)");
    if (!r.failed && parse_args(t, args) != 0)
        wrong(&r, "argsStr", "copied (out of memory)");
    free(args);
    if (r.failed) {
        sj_task_free(t);
        return SJ_EINVAL;
    }
    atomic_init(&t->stop, SJ_STOP_NONE);
    *out = t;
    return 0;
}

char *sj_task_report_json(const sj_task *t, sj_outcome out,
                          const json_t *result, const char *message,
                          const json_t *wf_changes)
{
    json_t *req, *er;
    char *text;
    int ok;

    switch (out) {
    case SJ_OUT_OK:
        ok = 1;
        break;
    case SJ_OUT_FAILED:
    case SJ_OUT_ERROR:
    case SJ_OUT_NOMEM:
    case SJ_OUT_NO_EXECUTOR:
    case SJ_OUT_SHUTDOWN: /* FAIL: the server did not stop it, and its
                             retry policy should apply (issue 11) */
        ok = 0;
        break;
    case SJ_OUT_TIMEOUT:
    case SJ_OUT_STOPPED:
    default:
        /* The server already marks such tasks STOP; a late FAIL could even
         * trigger a retry (protocol.md §7.1), so say nothing. */
        return NULL;
    }

    er = json_pack("{s:i}", "status", ok);
    if (result != NULL)
        json_object_set(er, "result", (json_t *)result);
    json_object_set_new(er, "message",
                        json_string(message != NULL ? message
                                    : ok ? "Task executed successfully"
                                         : "Task execution failed"));
    req = json_pack("{s:I,s:I,s:I,s:i,s:i,s:o}", "jobId", (json_int_t)t->job_id,
                    "taskBatchId", (json_int_t)t->task_batch_id, "taskId",
                    (json_int_t)t->task_id, "taskType", t->task_type,
                    "taskStatus", ok ? SJ_TASK_SUCCESS : SJ_TASK_FAIL,
                    "executeResult", er);
    if (req == NULL)
        return NULL;
    if (t->group_name != NULL)
        json_object_set_new(req, "groupName", json_string(t->group_name));
    if (t->workflow_task_batch_id != 0) {
        json_object_set_new(req, "workflowTaskBatchId",
                            json_integer(t->workflow_task_batch_id));
        json_object_set_new(req, "workflowNodeId",
                            json_integer(t->workflow_node_id));
    }
    /* Echo the retry fields exactly (protocol.md §7.3). `retry` is a Java
     * primitive: never null, default false. */
    if (t->has_retry_scene)
        json_object_set_new(req, "retryScene", json_integer(t->retry_scene));
    json_object_set_new(
        req, "retryStatus",
        json_boolean(t->has_retry_status ? t->retry_status : t->retry));
    json_object_set_new(
        req, "retry", json_boolean(t->has_retry ? t->retry : t->retry_status));
    if (wf_changes != NULL && json_object_size(wf_changes) > 0) {
        char *wf = sj_json_text(wf_changes);
        if (wf != NULL)
            json_object_set_new(req, "wfContext", json_string(wf));
        free(wf);
    }
    json_t *args = json_pack("[o]", req);
    text = args != NULL ? sj_json_text(args) : NULL;
    json_decref(args);
    return text;
}
