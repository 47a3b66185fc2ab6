#include "sj_task.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_error.h"
#include "sj_jscan.h"
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

/* The DispatchJobRequest fields read, in the order their errors are
 * looked for; both parsers below fill a task from this one table. */
typedef enum fkind { F_I64, F_I32, F_BOOL, F_STR } fkind;

enum { NO_HAS = (size_t)-1 };

typedef struct field {
    const char *key;
    size_t klen; /* strlen(key) */
    fkind kind;
    size_t off;     /* in sj_task; argsStr: none (ARGS) */
    size_t has_off; /* the bool set when present, or NO_HAS */
    int required;
} field;

#define ARGS ((size_t)-2)
#define TF(key, kind, member, req)                                             \
    {                                                                          \
        key, sizeof key - 1, kind, offsetof(sj_task, member), NO_HAS, req      \
    }
#define TH(key, kind, member, has)                                             \
    {                                                                          \
        key, sizeof key - 1, kind, offsetof(sj_task, member),                  \
            offsetof(sj_task, has), 0                                          \
    }

/* The fields read across others, placed by index in the table below (a
 * wrong index overrides its neighbour: -Werror=override-init). */
enum { F_MR_STAGE = 6, F_SHARD_INDEX = 10, F_SHARD_TOTAL = 11 };

static const field fields[] = {
    TF("jobId", F_I64, job_id, 1),
    TF("taskBatchId", F_I64, task_batch_id, 1),
    TF("taskId", F_I64, task_id, 1),
    TF("taskType", F_I32, task_type, 1),
    TF("workflowTaskBatchId", F_I64, workflow_task_batch_id, 0),
    TF("workflowNodeId", F_I64, workflow_node_id, 0),
    [F_MR_STAGE] = TF("mrStage", F_I32, mr_stage, 0),
    TF("parallelNum", F_I32, parallel_num, 0),
    TF("executorType", F_I32, executor_type, 0),
    TF("executorTimeout", F_I32, executor_timeout, 0),
    /* has_sharding: both present (the first dispatch of a shard) */
    [F_SHARD_INDEX] = TF("shardingIndex", F_I32, sharding_index, 0),
    [F_SHARD_TOTAL] = TF("shardingTotal", F_I32, sharding_total, 0),
    TH("retryCount", F_I32, retry_count, has_retry_count),
    TH("retryScene", F_I32, retry_scene, has_retry_scene),
    TH("retryStatus", F_BOOL, retry_status, has_retry_status),
    TH("retry", F_BOOL, retry, has_retry),
    TF("namespaceId", F_STR, namespace_id, 0),
    TF("groupName", F_STR, group_name, 0),
    TF("jobBizId", F_STR, job_biz_id, 0),
    TF("taskName", F_STR, task_name, 0),
    TF("executorInfo", F_STR, executor_info, 0),
    TF("wfContext", F_STR, wf_context, 0),
    {"argsStr", 7, F_STR, ARGS, NO_HAS, 0},
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

/* Where field f's value goes: the task's member, or the args text. */
static void *slot(sj_task *t, char **args, const field *f)
{
    return f->off == ARGS ? (void *)args : (char *)t + f->off;
}

/* Field f present with value v (already converted): store it. */
static void put_int(sj_task *t, const field *f, int64_t v)
{
    if (f->kind == F_I64)
        *(int64_t *)slot(t, NULL, f) = v;
    else
        *(int *)slot(t, NULL, f) = (int)v;
    if (f->has_off != NO_HAS)
        *(bool *)((char *)t + f->has_off) = true;
}

static void put_bool(sj_task *t, const field *f, bool v)
{
    *(bool *)slot(t, NULL, f) = v;
    if (f->has_off != NO_HAS)
        *(bool *)((char *)t + f->has_off) = true;
}

/* An id quoted as text: the whole text a decimal integer (as strtoll
 * reads it). */
static bool int_from_text(const char *text, int64_t *v)
{
    char *end;
    long long n = strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0')
        return false;
    *v = n;
    return true;
}

static bool fits_int32(const field *f, int64_t n)
{
    return f->kind != F_I32 || (n >= INT32_MIN && n <= INT32_MAX);
}

/* Field readers: a present field of the wrong JSON type is an error that
 * names the field; an absent one leaves the default. */
typedef struct reader {
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

/* jansson value x of field f (NULL: absent) into t; returns whether it was
 * present and stored. */
static bool read_tree(reader *r, sj_task *t, char **args, const field *f,
                      json_t *x)
{
    int64_t n;

    if (x == NULL || json_is_null(x)) {
        if (f->required)
            wrong(r, f->key, "present (an integer)");
        return false;
    }
    switch (f->kind) {
    case F_I64:
    case F_I32:
        if (json_is_integer(x))
            n = json_integer_value(x);
        else if (!json_is_string(x) ||
                 !int_from_text(json_string_value(x), &n)) {
            wrong(r, f->key, "an integer");
            return false;
        }
        if (!fits_int32(f, n)) {
            wrong(r, f->key, "a 32-bit integer");
            return false;
        }
        put_int(t, f, n);
        return true;
    case F_BOOL:
        if (!json_is_boolean(x)) {
            wrong(r, f->key, "a boolean");
            return false;
        }
        put_bool(t, f, json_is_true(x));
        return true;
    case F_STR:
        if (!json_is_string(x)) {
            wrong(r, f->key, "a string");
            return false;
        }
        if ((*(char **)slot(t, args, f) = strdup(json_string_value(x))) ==
            NULL) {
            wrong(r, f->key, "copied (out of memory)");
            return false;
        }
        return true;
    }
    return false;
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

/* The checks across fields, once every field is read. */
static void check_task(reader *r, const sj_task *t, bool has_stage)
{
    if (!r->failed && (t->executor_info == NULL || !t->executor_info[0]))
        wrong(r, "executorInfo", "a non-empty executor name");
    if (!r->failed &&
        (t->task_type < SJ_TYPE_CLUSTER || t->task_type > SJ_TYPE_MAP_REDUCE))
        wrong(r, "taskType", "1 (cluster) to 5 (map-reduce)");
    if (!r->failed && has_stage &&
        (t->mr_stage < SJ_STAGE_MAP || t->mr_stage > SJ_STAGE_MERGE))
        wrong(r, "mrStage", "1 (map), 2 (reduce) or 3 (merge)");
}

int sj_task_parse(const char *body, sj_task **out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;
    int rc;

    if (body != NULL && sj_task_parse_fast(body, strlen(body), out) == 1)
        return 0;
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
    json_t *obj = json_array_get(root, 0);
    bool present[N_FIELDS];

    *out = NULL;
    if (!json_is_array(root) || !json_is_object(obj)) {
        snprintf(err, errlen,
                 "dispatch body must be a JSON array holding "
                 "one DispatchJobRequest object");
        return SJ_EJSON;
    }
    if ((t = calloc(1, sizeof *t)) == NULL)
        return SJ_ENOMEM;
    for (size_t i = 0; i < N_FIELDS; i++)
        present[i] = read_tree(&r, t, &args, &fields[i],
                               json_object_get(obj, fields[i].key));
    t->has_sharding = present[F_SHARD_INDEX] && present[F_SHARD_TOTAL];
    check_task(&r, t, present[F_MR_STAGE]);
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

/* ---- the fast path (sj_jscan) ---------------------------------------- */

/* Scanned value v of field f into t: 1 stored, 0 null (absent),
 * SJ_JS_DECLINE for anything jansson's path must judge (a wrong type, a
 * number out of range, no memory). */
static int read_scanned(sj_task *t, char **args, const field *f, const sj_jv *v)
{
    int64_t n;

    if (v->type == SJ_JV_NULL)
        return 0;
    switch (f->kind) {
    case F_I64:
    case F_I32:
        if (v->type == SJ_JV_INT) {
            n = v->i;
        } else if (v->type == SJ_JV_STRING) {
            char *text = sj_jv_strdup(v);
            bool ok = text != NULL && int_from_text(text, &n);
            free(text);
            if (!ok)
                return SJ_JS_DECLINE;
        } else {
            return SJ_JS_DECLINE;
        }
        if (!fits_int32(f, n))
            return SJ_JS_DECLINE;
        put_int(t, f, n);
        return 1;
    case F_BOOL:
        if (v->type != SJ_JV_TRUE && v->type != SJ_JV_FALSE)
            return SJ_JS_DECLINE;
        put_bool(t, f, v->type == SJ_JV_TRUE);
        return 1;
    case F_STR:
        if (v->type != SJ_JV_STRING ||
            (*(char **)slot(t, args, f) = sj_jv_strdup(v)) == NULL)
            return SJ_JS_DECLINE;
        return 1;
    }
    return SJ_JS_DECLINE;
}

/* A JSON value's text (a span already validated) as a tree. */
static json_t *tree_of(const sj_jv *v)
{
    int quoted = v->type == SJ_JV_STRING; /* its span leaves the quotes out */

    return json_loadb(v->start - quoted,
                      (size_t)(v->end - v->start) + 2 * (size_t)quoted,
                      JSON_DECODE_ANY, NULL);
}

/* parse_args without a jansson tree for {jobParams: text}: 1 done,
 * SJ_JS_DECLINE to leave it to parse_args. */
static int parse_args_fast(sj_task *t, const char *args)
{
    sj_jscan s;
    sj_jv key, v, jp = {.type = SJ_JV_NULL}, maps = jp, reduces = jp;
    int rc;

    t->args_bytes = args != NULL ? strlen(args) : 0;
    if (args == NULL || args[0] == '\0') {
        t->job_params = strdup("");
        return t->job_params != NULL ? 1 : SJ_JS_DECLINE;
    }
    sj_jscan_init(&s, args, t->args_bytes);
    if (sj_jscan_object(&s) != 0)
        return SJ_JS_DECLINE;
    while ((rc = sj_jscan_member(&s, &key, &v)) == 1) {
        /* A repeated key: the last one counts in jansson; leave it. */
        sj_jv *want = sj_jv_is(&key, "jobParams") ? &jp
                      : sj_jv_is(&key, "maps")    ? &maps
                      : sj_jv_is(&key, "reduces") ? &reduces
                                                  : NULL;
        if (want != NULL && want->start != NULL)
            return SJ_JS_DECLINE;
        if (want != NULL)
            *want = v;
    }
    if (rc != 0 || sj_jscan_finish(&s) != 0 ||
        (jp.type != SJ_JV_STRING && jp.type != SJ_JV_NULL))
        return SJ_JS_DECLINE;
    t->job_params = jp.type == SJ_JV_STRING ? sj_jv_strdup(&jp) : strdup("");
    if (maps.start != NULL && (t->maps = tree_of(&maps)) == NULL)
        return SJ_JS_DECLINE;
    if (reduces.start != NULL && (t->reduces = tree_of(&reduces)) == NULL)
        return SJ_JS_DECLINE;
    return t->job_params != NULL ? 1 : SJ_JS_DECLINE;
}

/* A task parsed with the fast path, or NULL (declined). */
static sj_task *scan_task(const char *body, size_t len)
{
    sj_jscan s;
    sj_jv key, v;
    sj_task *t = calloc(1, sizeof *t);
    char *args = NULL;
    bool present[N_FIELDS] = {false}, seen[N_FIELDS] = {false};
    int rc;
    reader r = {.err = (char[1]){0}, .errlen = 1};

    if (t == NULL)
        return NULL;
    sj_jscan_init(&s, body, len);
    if (sj_jscan_array(&s) != 0 || sj_jscan_object(&s) != 0)
        goto declined;
    while ((rc = sj_jscan_member(&s, &key, &v)) == 1) {
        for (size_t i = 0; i < N_FIELDS; i++) {
            if (!sj_jv_eq(&key, fields[i].key, fields[i].klen))
                continue;
            /* a repeated field: the last one counts in jansson */
            if (seen[i])
                goto declined;
            seen[i] = true;
            int got = read_scanned(t, &args, &fields[i], &v);
            if (got == SJ_JS_DECLINE)
                goto declined;
            present[i] = got == 1;
            break;
        }
    }
    if (rc != 0)
        goto declined;
    while ((rc = sj_jscan_element(&s, &v)) == 1) /* the other arguments */
        ;
    if (rc != 0 || sj_jscan_finish(&s) != 0)
        goto declined;
    for (size_t i = 0; i < N_FIELDS; i++)
        if (fields[i].required && !present[i])
            goto declined;
    t->has_sharding = present[F_SHARD_INDEX] && present[F_SHARD_TOTAL];
    check_task(&r, t, present[F_MR_STAGE]);
    if (r.failed)
        goto declined;
    if ((rc = parse_args_fast(t, args)) != 1) {
        free(t->job_params);
        json_decref(t->maps);
        json_decref(t->reduces);
        t->job_params = NULL;
        t->maps = t->reduces = NULL;
        if (parse_args(t, args) != 0)
            goto declined;
    }
    free(args);
    atomic_init(&t->stop, SJ_STOP_NONE);
    return t;

declined:
    free(args);
    sj_task_free(t);
    return NULL;
}

int sj_task_parse_fast(const char *body, size_t len, sj_task **out)
{
    *out = scan_task(body, len);
    return *out != NULL ? 1 : 0;
}

/* ,"key":value with `value` already JSON text (n bytes), for the report
 * below; the keys are plain names, written as they are. */
static int put_member(sj_json_buf *b, const char *key, const char *value,
                      size_t n)
{
    int rc = sj_json_buf_add(b, ",\"", 2);

    if (rc == 0)
        rc = sj_json_buf_add(b, key, strlen(key));
    if (rc == 0)
        rc = sj_json_buf_add(b, "\":", 2);
    if (rc == 0)
        rc = sj_json_buf_add(b, value, n);
    return rc;
}

static int put_member_int(sj_json_buf *b, const char *key, int64_t n)
{
    char num[24];

    return put_member(b, key, num, (size_t)sj_json_fmt_int(n, num));
}

static int put_member_bool(sj_json_buf *b, const char *key, bool v)
{
    return put_member(b, key, v ? "true" : "false", v ? 4 : 5);
}

char *sj_task_report_json(const sj_task *t, sj_outcome out,
                          const json_t *result, const char *message,
                          const json_t *wf_changes)
{
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

    /* Written straight, keys in sj_json's (sorted) order: the same bytes
     * as dumping a jansson tree of it, without building one per task. */
    const char *msg = message != NULL ? message
                      : ok            ? "Task executed successfully"
                                      : "Task execution failed";
    sj_json_buf b = {0};
    int rc = sj_json_buf_add(&b, "[{\"executeResult\":{\"message\":", 29);

    if (rc == 0)
        rc = sj_json_buf_str(&b, msg, strlen(msg));
    if (rc == 0 && result != NULL) {
        rc = sj_json_buf_add(&b, ",\"result\":", 10);
        if (rc == 0)
            rc = sj_json_buf_value(&b, result);
    }
    if (rc == 0)
        rc = sj_json_buf_add(&b, ok ? ",\"status\":1}" : ",\"status\":0}", 12);
    if (rc == 0 && t->group_name != NULL) {
        rc = sj_json_buf_add(&b, ",\"groupName\":", 13);
        if (rc == 0)
            rc = sj_json_buf_str(&b, t->group_name, strlen(t->group_name));
    }
    if (rc == 0)
        rc = put_member_int(&b, "jobId", t->job_id);
    /* Echo the retry fields exactly (protocol.md §7.3). `retry` is a Java
     * primitive: never null, default false. */
    if (rc == 0)
        rc = put_member_bool(&b, "retry",
                             t->has_retry ? t->retry : t->retry_status);
    if (rc == 0 && t->has_retry_scene)
        rc = put_member_int(&b, "retryScene", t->retry_scene);
    if (rc == 0)
        rc = put_member_bool(&b, "retryStatus",
                             t->has_retry_status ? t->retry_status : t->retry);
    if (rc == 0)
        rc = put_member_int(&b, "taskBatchId", t->task_batch_id);
    if (rc == 0)
        rc = put_member_int(&b, "taskId", t->task_id);
    if (rc == 0)
        rc = put_member_int(&b, "taskStatus",
                            ok ? SJ_TASK_SUCCESS : SJ_TASK_FAIL);
    if (rc == 0)
        rc = put_member_int(&b, "taskType", t->task_type);
    if (rc == 0 && wf_changes != NULL && json_object_size(wf_changes) > 0) {
        char *wf = sj_json_text(wf_changes);
        if (wf != NULL) {
            rc = sj_json_buf_add(&b, ",\"wfContext\":", 13);
            if (rc == 0)
                rc = sj_json_buf_str(&b, wf, strlen(wf));
        }
        free(wf);
    }
    if (rc == 0 && t->workflow_task_batch_id != 0) {
        rc = put_member_int(&b, "workflowNodeId", t->workflow_node_id);
        if (rc == 0)
            rc = put_member_int(&b, "workflowTaskBatchId",
                                t->workflow_task_batch_id);
    }
    if (rc == 0)
        rc = sj_json_buf_add(&b, "}]", 2);
    if (rc != 0) {
        free(b.p);
        return NULL;
    }
    text = b.p;
    return text;
}
