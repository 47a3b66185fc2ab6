/*
 * sj_srv.c - the SnailJob server's job logic (see sj_srv.h).
 *
 * Layout: helpers; registry (beats, labels, client selection); outbound
 * queue; tasks, argsStr and dispatch bodies; the batch state machine
 * (batch_event(), the one place where a batch changes status); the
 * client->server handlers; the public API.
 *
 * Every internal function below "registry" runs with `mu` held and appends
 * outbound calls to an `outq`; the public entry points flush that queue
 * through ops.send after unlocking.
 */
#include "sj_srv.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "sj_error.h"
#include "sj_json.h"
#include "sj_log.h"

#define DEF_NAMESPACE SJ_SRV_DEFAULT_NAMESPACE
#define DEF_GROUP SJ_SRV_DEFAULT_GROUP
#define DEF_TOKEN SJ_SRV_DEFAULT_TOKEN
#define DEF_EXPIRE_MS 40000
#define DEF_ID_BASE 1234567890123456000LL
#define DEF_TIMEOUT_S 60

/* ---- helpers ----------------------------------------------------------- */

static void oom(void)
{
    fputs("sj_srv: out of memory\n", stderr);
    abort();
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n != 0 ? n : 1);
    if (p == NULL)
        oom();
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n != 0 ? n : 1, size);
    if (p == NULL)
        oom();
    return p;
}

static char *xstrdup(const char *s)
{
    char *d;
    if (s == NULL)
        return NULL;
    if ((d = strdup(s)) == NULL)
        oom();
    return d;
}

static char *xprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        oom();
    va_end(ap);
    return s;
}

static void set_str(char **field, const char *s)
{
    char *copy = xstrdup(s);
    free(*field);
    *field = copy;
}

#define PUSH(vec, n, cap, item)                                                \
    do {                                                                       \
        if ((n) == (cap)) {                                                    \
            (cap) = (cap) != 0 ? 2 * (cap) : 8;                                \
            (vec) = xrealloc((vec), (cap) * sizeof *(vec));                    \
        }                                                                      \
        (vec)[(n)++] = (item);                                                 \
    } while (0)

/* json_object_set_new that treats failure as out of memory. */
static void jset(json_t *obj, const char *key, json_t *value)
{
    if (value == NULL || json_object_set_new(obj, key, value) != 0)
        oom();
}

static void jappend(json_t *arr, json_t *value)
{
    if (value == NULL || json_array_append_new(arr, value) != 0)
        oom();
}

static json_t *jobject(void)
{
    json_t *o = json_object();
    if (o == NULL)
        oom();
    return o;
}

static json_t *jarray(void)
{
    json_t *a = json_array();
    if (a == NULL)
        oom();
    return a;
}

/* Compact JSON text; objects with sorted keys (Jackson 3 sorts POJO
 * properties alphabetically) unless `keep_order`. */
static char *dumps(const json_t *j, int keep_order)
{
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    char *s;
    if (!keep_order)
        flags |= JSON_SORT_KEYS;
    if ((s = json_dumps(j, flags)) == NULL)
        oom();
    return s;
}

/* Jackson coerces "123" to a long; accept integers and numeric strings. */
static int get_i64(const json_t *obj, const char *key, int64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    char *end;
    long long x;

    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 1;
    }
    if (json_is_string(v) && json_string_value(v)[0] != '\0') {
        errno = 0;
        x = strtoll(json_string_value(v), &end, 10);
        if (errno == 0 && *end == '\0') {
            *out = x;
            return 1;
        }
    }
    return 0;
}

static int get_bool(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        return strcmp(json_string_value(v), "true") == 0;
    return json_is_true(v);
}

static const char *get_str(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A scalar as the text Java's String conversion would give. NULL for
 * objects, arrays and null. */
static char *scalar_text(const json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_number(v) || json_is_boolean(v))
        return dumps(v, 1);
    return NULL;
}

/* ---- types ------------------------------------------------------------- */

typedef struct node {
    char *host_id, *ip, *labels, *etype, *sysver;
    json_t *label_map; /* object of string values, NULL if no label */
    int port;
    int alive;
    long long last_update;
} node;

typedef struct beat {
    char *host_id, *ip, *labels, *etype, *sysver;
    int port;
} beat;

typedef struct task {
    int64_t id, parent_id;
    int64_t wf_batch_id, wf_node_id; /* workflow ids its dispatch carries */
    char *name, *result, *message, *args_str, *wf_context, *host_id;
    int mr_stage, status, leaf, retry_count;
    int omit_retry_count; /* first dispatch has no retryCount (§5.1) */
    int shard_index;      /* >= 0: first dispatch carries sharding fields */
    long long retry_at;   /* > 0: an automatic retry is due then */
} task;

typedef struct batch {
    int64_t id;
    /* the job, copied at trigger */
    int64_t job_id, wf_batch_id, wf_node_id;
    int type, shard_num, timeout_s, parallel, etype, max_retry, retry_interval;
    char *executor, *args, *biz_id, *wf_context;
    json_t *labels; /* target labels object, NULL none */
    char **targets;
    size_t n_targets;
    /* state */
    int status, reason, shard_total;
    /* one stage or one shard alone (sj_srv_job.stage / .shard_total) */
    int single_stage, single_shard;
    char *stage_name;
    json_t *stage_input;
    long long start_ms, deadline_ms;
    task **tasks;
    size_t n_tasks, cap_tasks;
} batch;

/* An outbound call whose outcome has not been reported yet. */
typedef struct pending {
    uint64_t token;
    int is_dispatch;
    int64_t batch_id, task_id;
    char *host_id, *body;
    int attempt;       /* RPC-level attempt, 1-based */
    int retry_traffic; /* the dispatch had retryStatus=true */
    int retry_scene;
} pending;

/* A dispatch to repeat after a transport failure (RPC-level retry). */
typedef struct rpc_retry {
    int64_t batch_id, task_id;
    char *body;
    int attempt;
    long long at;
} rpc_retry;

typedef struct record {
    sj_request req;
    long long at;
} record;

typedef struct sent_rec {
    char *uri, *host_id, *body;
} sent_rec;

typedef struct out {
    char *host_id, *ip, *uri, *body;
    int port;
    uint64_t token;
} out;

typedef struct outq {
    out *v;
    size_t n, cap;
} outq;

struct sj_srv {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* any change: records, batch status */

    char *ns, *group, *token;
    int beat_apply_ms, expire_ms, complete_on_nonleaf;
    void (*log_sink)(void *, const char *);
    void *log_sink_ud;
    long long (*clock)(void *);
    void *clock_ud;
    sj_srv_ops ops;

    int64_t next_id;
    uint64_t next_token;
    unsigned rr; /* ROUND route key */
    long long next_drain;

    node **nodes;
    size_t n_nodes, cap_nodes;
    beat *beats;
    size_t n_beats, cap_beats;
    char **executors;
    size_t n_executors, cap_executors;
    char **logs;
    size_t n_logs, cap_logs;
    batch **batches;
    size_t n_batches, cap_batches;
    pending *pend;
    size_t n_pend, cap_pend;
    rpc_retry *rpcr;
    size_t n_rpcr, cap_rpcr;
    record *recs;
    size_t n_recs, cap_recs;
    sent_rec *sent;
    size_t n_sent, cap_sent;
};

static long long default_clock(void *ud)
{
    (void)ud;
    return sj_mono_ms();
}

static long long now_ms(const sj_srv *s)
{
    return s->clock(s->clock_ud);
}

static int finished(int status)
{
    return status == SJ_SRV_SUCCESS || status == SJ_SRV_FAIL ||
           status == SJ_SRV_STOP || status == SJ_SRV_CANCEL;
}

/* ---- registry ---------------------------------------------------------- */

static void beat_free(beat *b)
{
    free(b->host_id);
    free(b->ip);
    free(b->labels);
    free(b->etype);
    free(b->sysver);
}

static void node_free(node *n)
{
    free(n->host_id);
    free(n->ip);
    free(n->labels);
    free(n->etype);
    free(n->sysver);
    json_decref(n->label_map);
    free(n);
}

static node *node_find(const sj_srv *s, const char *host_id)
{
    if (host_id == NULL)
        return NULL;
    for (size_t i = 0; i < s->n_nodes; i++)
        if (strcmp(s->nodes[i]->host_id, host_id) == 0)
            return s->nodes[i];
    return NULL;
}

/* Label JSON -> object of strings (Java parses a Map<String,String>).
 * NULL if the text is not a JSON object. */
static json_t *parse_labels(const char *text)
{
    json_t *in, *outm, *v;
    const char *k;
    char *sv;

    if ((in = json_loads(text, 0, NULL)) == NULL)
        return NULL;
    if (!json_is_object(in)) {
        json_decref(in);
        return NULL;
    }
    outm = jobject();
    json_object_foreach(in, k, v)
    {
        if ((sv = scalar_text(v)) != NULL) {
            jset(outm, k, json_string(sv));
            free(sv);
        }
    }
    json_decref(in);
    return outm;
}

/* Apply a beat (ClientRegister's refresh): a new host-id registers with
 * the address and labels of this beat; a known one is only refreshed and
 * flagged alive again (its address is never updated, §3.1). Consumes b. */
static void node_apply(sj_srv *s, beat *b)
{
    node *n = node_find(s, b->host_id);
    json_t *labels = NULL;

    if (n != NULL) {
        n->alive = 1;
        n->last_update = now_ms(s);
        beat_free(b);
        return;
    }
    if (b->labels != NULL && b->labels[0] != '\0' &&
        (labels = parse_labels(b->labels)) == NULL) {
        SJ_WARN("sj_srv: node %s: label is not a JSON object, dropped",
                b->host_id);
        beat_free(b);
        return;
    }
    n = xcalloc(1, sizeof *n);
    n->host_id = b->host_id;
    n->ip = b->ip;
    n->port = b->port;
    n->labels = b->labels;
    n->etype = b->etype;
    n->sysver = b->sysver;
    n->label_map = labels;
    n->alive = 1;
    n->last_update = now_ms(s);
    PUSH(s->nodes, s->n_nodes, s->cap_nodes, n);
}

/* InstanceManager#matchLabels: a node without labels matches anything;
 * otherwise every target label plus state=up must be equal. */
static int labels_match(const node *n, const json_t *target)
{
    const char *k, *want;
    json_t *v;

    if (n->label_map == NULL || json_object_size(n->label_map) == 0)
        return 1;
    want = get_str(n->label_map, "state");
    if (want == NULL || strcmp(want, "up") != 0)
        return 0;
    json_object_foreach((json_t *)target, k, v)
    {
        const char *have = get_str(n->label_map, k);
        if (!json_is_string(v) || have == NULL ||
            strcmp(have, json_string_value(v)) != 0)
            return 0;
    }
    return 1;
}

static int in_targets(const batch *b, const node *n)
{
    char addr[300];
    if (b->n_targets == 0)
        return 1;
    snprintf(addr, sizeof addr, "%s:%d", n->ip, n->port);
    for (size_t i = 0; i < b->n_targets; i++)
        if (strcmp(b->targets[i], n->host_id) == 0 ||
            strcmp(b->targets[i], addr) == 0)
            return 1;
    return 0;
}

static int cmp_node(const void *a, const void *b)
{
    const node *x = *(node *const *)a, *y = *(node *const *)b;
    return strcmp(x->host_id, y->host_id);
}

/* Alive nodes eligible for the batch, sorted by host-id (a TreeSet in
 * Java). Caller frees *out. */
static size_t live_nodes(const sj_srv *s, const batch *b, node ***out)
{
    node **v = xcalloc(s->n_nodes, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < s->n_nodes; i++) {
        node *x = s->nodes[i];
        if (x->alive && labels_match(x, b->labels) && in_targets(b, x))
            v[n++] = x;
    }
    qsort(v, n, sizeof *v, cmp_node);
    *out = v;
    return n;
}

/* The job's route key (CLUSTER) over the sorted live set, allocKey=jobId. */
static node *pick_route(const sj_srv *s, const batch *b)
{
    node **v, *n = NULL;
    size_t k = live_nodes(s, b, &v);
    if (k > 0)
        n = v[(uint64_t)b->job_id % k];
    free(v);
    return n;
}

/* Route key ROUND (MAP/MAP_REDUCE tasks and retries). */
static node *pick_round(sj_srv *s, const batch *b)
{
    node **v, *n = NULL;
    size_t k = live_nodes(s, b, &v);
    if (k > 0)
        n = v[s->rr++ % k];
    free(v);
    return n;
}

/* ---- outbound ---------------------------------------------------------- */

static void q_push(outq *q, const node *n, const char *uri, const char *body,
                   uint64_t token)
{
    out o = {xstrdup(n->host_id), xstrdup(n->ip), xstrdup(uri),
             xstrdup(body),       n->port,        token};
    PUSH(q->v, q->n, q->cap, o);
}

/* Deliver the queued calls; never with `mu` held. */
static void flush(sj_srv *s, outq *q)
{
    for (size_t i = 0; i < q->n; i++) {
        out *o = &q->v[i];
        sj_srv_node n = {o->host_id, o->ip, o->port};
        if (s->ops.send != NULL)
            s->ops.send(s->ops.ud, &n, o->uri, o->body, o->token);
        else
            sj_srv_send_done(s, o->token, SJ_SRV_SEND_DROPPED, NULL);
        free(o->host_id);
        free(o->ip);
        free(o->uri);
        free(o->body);
    }
    free(q->v);
    memset(q, 0, sizeof *q);
}

static void record_sent(sj_srv *s, const char *uri, const node *n,
                        const char *body)
{
    sent_rec r = {xstrdup(uri), xstrdup(n->host_id), xstrdup(body)};
    PUSH(s->sent, s->n_sent, s->cap_sent, r);
}

/* ---- tasks ------------------------------------------------------------- */

static void task_free(task *t)
{
    free(t->name);
    free(t->result);
    free(t->message);
    free(t->args_str);
    free(t->wf_context);
    free(t->host_id);
    free(t);
}

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->n_tasks; i++)
        task_free(b->tasks[i]);
    free(b->tasks);
    for (size_t i = 0; i < b->n_targets; i++)
        free(b->targets[i]);
    free(b->targets);
    free(b->executor);
    free(b->args);
    free(b->biz_id);
    free(b->wf_context);
    free(b->stage_name);
    json_decref(b->stage_input);
    json_decref(b->labels);
    free(b);
}

/* Ids come from one counter and rows are only ever appended: s->batches
 * and each batch's tasks are sorted by id, so lookups bisect (a 5,000-way
 * MapReduce made the linear scans the emulator's largest cost). */
static batch *batch_find(const sj_srv *s, int64_t id)
{
    size_t lo = 0, hi = s->n_batches;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->batches[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n_batches && s->batches[lo]->id == id ? s->batches[lo]
                                                         : NULL;
}

static task *task_find(const batch *b, int64_t id)
{
    size_t lo = 0, hi;
    if (b == NULL)
        return NULL;
    hi = b->n_tasks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->tasks[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < b->n_tasks && b->tasks[lo]->id == id ? b->tasks[lo] : NULL;
}

/* New task row; RUNNING on `n`, or CANCEL without a client (§6.6). Takes
 * ownership of args_str. */
static task *task_add(sj_srv *s, batch *b, const char *name, int stage,
                      int64_t parent, char *args_str, const node *n)
{
    task *t = xcalloc(1, sizeof *t);
    t->id = s->next_id++;
    t->parent_id = parent;
    t->wf_batch_id = b->wf_batch_id;
    t->wf_node_id = b->wf_node_id;
    t->name = xstrdup(name);
    t->mr_stage = stage;
    t->args_str = args_str;
    t->result = xstrdup("");
    t->leaf = 1;
    t->shard_index = -1;
    t->status = n != NULL ? SJ_SRV_RUNNING : SJ_SRV_CANCEL;
    t->host_id = n != NULL ? xstrdup(n->host_id) : NULL;
    PUSH(b->tasks, b->n_tasks, b->cap_tasks, t);
    return t;
}

/* argsStr: JSON text of JobArgsHolder {jobParams, maps, reduces}, nulls
 * omitted (§6.2). Steals maps and reduces. */
static char *args_holder(const char *params, json_t *maps, json_t *reduces)
{
    json_t *o = jobject();
    char *s;
    if (params != NULL)
        jset(o, "jobParams", json_string(params));
    if (maps != NULL && !json_is_null(maps))
        jset(o, "maps", maps);
    else
        json_decref(maps); /* a null element: omitted, as Jackson does */
    if (reduces != NULL)
        jset(o, "reduces", reduces);
    s = dumps(o, 0);
    json_decref(o);
    return s;
}

/* The body of /job/dispatch/v1 for task t: `[DispatchJobRequest]` with the
 * fields of §5.1. retry_scene 0 = first dispatch (also used unchanged for
 * RPC-level retries), 1 AUTO, 2 MANUAL. */
static char *dispatch_body(const sj_srv *s, const batch *b, const task *t,
                           int retry_scene)
{
    json_t *o = jobject(), *arr = jarray();
    int retry = retry_scene != 0;
    char *text;

    jset(o, "argsStr", json_string(t->args_str));
    jset(o, "executorInfo", json_string(b->executor));
    jset(o, "executorTimeout", json_integer(b->timeout_s));
    jset(o, "executorType", json_integer(b->etype));
    jset(o, "groupName", json_string(s->group));
    if (b->biz_id != NULL)
        jset(o, "jobBizId", json_string(b->biz_id));
    jset(o, "jobId", json_integer(b->job_id));
    if (b->type == SJ_SRV_MAP || b->type == SJ_SRV_MAP_REDUCE)
        jset(o, "mrStage", json_integer(t->mr_stage));
    jset(o, "namespaceId", json_string(s->ns));
    jset(o, "parallelNum", json_integer(b->parallel));
    jset(o, "retry", json_boolean(retry));
    if (retry || !t->omit_retry_count)
        jset(o, "retryCount", json_integer(t->retry_count));
    if (retry)
        jset(o, "retryScene", json_integer(retry_scene));
    jset(o, "retryStatus", json_boolean(retry));
    if (!retry && t->shard_index >= 0) {
        jset(o, "shardingIndex", json_integer(t->shard_index));
        jset(o, "shardingTotal", json_integer(b->shard_total));
    }
    jset(o, "taskBatchId", json_integer(b->id));
    jset(o, "taskId", json_integer(t->id));
    jset(o, "taskName", json_string(t->name));
    jset(o, "taskType", json_integer(b->type));
    if (t->wf_batch_id > 0) {
        if (b->wf_context != NULL)
            jset(o, "wfContext", json_string(b->wf_context));
        jset(o, "workflowNodeId", json_integer(t->wf_node_id));
        jset(o, "workflowTaskBatchId", json_integer(t->wf_batch_id));
    }
    jappend(arr, o);
    text = dumps(arr, 0);
    json_decref(arr);
    return text;
}

static void batch_event_settle(sj_srv *s, outq *q, batch *b, int retry,
                               int reason);

/* RequestClientActor#taskExecuteFailure: FAIL without the retry callback. */
static void task_fail_direct(sj_srv *s, outq *q, batch *b, task *t,
                             const char *message)
{
    t->status = SJ_SRV_FAIL;
    set_str(&t->message, message);
    batch_event_settle(s, q, b, 0, SJ_SRV_REASON_NONE);
}

/* Queue a dispatch of t to its node. Takes ownership of body. */
static void send_dispatch(sj_srv *s, outq *q, batch *b, task *t, char *body,
                          int attempt, int retry_scene)
{
    node *n = node_find(s, t->host_id);
    pending p;

    if (n == NULL || !n->alive) {
        free(body);
        task_fail_direct(s, q, b, t, "Client does not exist");
        return;
    }
    memset(&p, 0, sizeof p);
    p.token = ++s->next_token;
    p.is_dispatch = 1;
    p.batch_id = b->id;
    p.task_id = t->id;
    p.host_id = xstrdup(n->host_id);
    p.body = body;
    p.attempt = attempt;
    p.retry_traffic = retry_scene != 0;
    p.retry_scene = retry_scene;
    PUSH(s->pend, s->n_pend, s->cap_pend, p);
    record_sent(s, SJ_SRV_URI_DISPATCH, n, body);
    q_push(q, n, SJ_SRV_URI_DISPATCH, body, p.token);
}

static void dispatch_task(sj_srv *s, outq *q, batch *b, task *t,
                          int retry_scene)
{
    send_dispatch(s, q, b, t, dispatch_body(s, b, t, retry_scene), 1,
                  retry_scene);
}

/* /job/stop/v1 for one task row, if its node is alive (RealStopTaskActor). */
static void send_stop(sj_srv *s, outq *q, const batch *b, const task *t)
{
    node *n = node_find(s, t->host_id);
    json_t *o, *arr;
    pending p;
    char *body;

    if (n == NULL || !n->alive)
        return;
    o = jobject();
    arr = jarray();
    jset(o, "groupName", json_string(s->group));
    jset(o, "jobId", json_integer(b->job_id));
    jset(o, "taskBatchId", json_integer(b->id));
    jappend(arr, o);
    body = dumps(arr, 0);
    json_decref(arr);

    memset(&p, 0, sizeof p);
    p.token = ++s->next_token;
    p.batch_id = b->id;
    p.task_id = t->id;
    p.host_id = xstrdup(n->host_id);
    PUSH(s->pend, s->n_pend, s->cap_pend, p);
    record_sent(s, SJ_SRV_URI_STOP, n, body);
    q_push(q, n, SJ_SRV_URI_STOP, body, p.token);
    free(body);
}

/* One stop per task row that has a client (§5.2). */
static void stop_all(sj_srv *s, outq *q, const batch *b)
{
    for (size_t i = 0; i < b->n_tasks; i++)
        send_stop(s, q, b, b->tasks[i]);
}

static void dispatch_running(sj_srv *s, outq *q, batch *b, size_t from)
{
    /* Only the tasks created so far: a failed dispatch may settle the
     * batch and open a stage whose tasks are dispatched by that call. */
    size_t to = b->n_tasks;
    for (size_t i = from; i < to; i++)
        if (b->tasks[i]->status == SJ_SRV_RUNNING)
            dispatch_task(s, q, b, b->tasks[i], 0);
}

/* The one task of a single-stage or single-shard batch (sj_srv_job.stage,
 * .shard_total), with the arguments the full job would have given it. */
static void generate_single(sj_srv *s, batch *b)
{
    json_t *in = b->stage_input, *list;
    task *t;

    if (b->single_shard) {
        t = task_add(s, b, "SHARDING_TASK", 0, 0,
                     args_holder(b->args, NULL, NULL), pick_round(s, b));
        t->shard_index = b->single_shard - 1;
        return;
    }
    if (b->single_stage == SJ_SRV_STAGE_MAP) {
        task_add(s, b, b->stage_name ? b->stage_name : "ROOT_MAP",
                 SJ_SRV_STAGE_MAP, 0,
                 args_holder(b->args, in ? json_deep_copy(in) : json_string(""),
                             NULL),
                 pick_round(s, b));
        return;
    }
    /* REDUCE and MERGE inputs are stored results: strings. */
    list = jarray();
    for (size_t i = 0; i < json_array_size(in); i++) {
        json_t *e = json_array_get(in, i);
        char *text = json_is_string(e) ? NULL : dumps(e, 1);
        jappend(list, json_string(text ? text : json_string_value(e)));
        free(text);
    }
    t = task_add(s, b,
                 b->single_stage == SJ_SRV_STAGE_REDUCE ? "REDUCE_TASK"
                                                        : "MERGE_REDUCE_TASK",
                 b->single_stage, 0,
                 b->single_stage == SJ_SRV_STAGE_REDUCE
                     ? args_holder(b->args, list, NULL)
                     : args_holder(b->args, NULL, list),
                 pick_round(s, b));
    t->omit_retry_count = b->single_stage == SJ_SRV_STAGE_MERGE;
}

/* Task generation at batch start (§6.3-§6.6). Returns 0, or -1 if the
 * generator created nothing (SHARDING with bad arguments). */
static int generate_tasks(sj_srv *s, outq *q, batch *b)
{
    node **live;
    size_t k = live_nodes(s, b, &live), from = b->n_tasks;
    task *t;

    if (b->single_stage != 0 || b->single_shard) {
        generate_single(s, b);
        free(live);
        dispatch_running(s, q, b, from);
        return b->n_tasks > from ? 0 : -1;
    }
    switch (b->type) {
    case SJ_SRV_CLUSTER:
        t = task_add(s, b, "CLUSTER_TASK", 0, 0,
                     args_holder(b->args, NULL, NULL), pick_route(s, b));
        t->omit_retry_count = 1;
        break;
    case SJ_SRV_BROADCAST:
        /* One task per distinct ip:port; the first host-id wins. */
        for (size_t i = 0; i < k; i++) {
            int dup = 0;
            for (size_t j = 0; j < i && !dup; j++)
                dup = live[j]->port == live[i]->port &&
                      strcmp(live[j]->ip, live[i]->ip) == 0;
            if (!dup)
                task_add(s, b, "BROADCAST_TASK", 0, 0,
                         args_holder(b->args, NULL, NULL), live[i]);
        }
        break;
    case SJ_SRV_SHARDING: {
        /* The job args must be a JSON array of strings (numbers coerced). */
        json_t *arr =
            b->args ? json_loads(b->args, JSON_DECODE_ANY, NULL) : NULL;
        size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
        char **params = xcalloc(n, sizeof *params);
        int ok = n > 0;
        for (size_t i = 0; i < n && ok; i++)
            ok = (params[i] = scalar_text(json_array_get(arr, i))) != NULL;
        if (ok) {
            b->shard_total = (int)n;
            for (size_t i = 0; i < n; i++) {
                t = task_add(s, b, "SHARDING_TASK", 0, 0,
                             args_holder(params[i], NULL, NULL), live[i % k]);
                t->shard_index = (int)i;
            }
        } else {
            SJ_WARN("sj_srv: batch %" PRId64
                    ": sharding args are not a JSON array of strings",
                    b->id);
        }
        for (size_t i = 0; i < n; i++)
            free(params[i]);
        free(params);
        json_decref(arr);
        break;
    }
    case SJ_SRV_MAP:
    case SJ_SRV_MAP_REDUCE:
        task_add(s, b, "ROOT_MAP", SJ_SRV_STAGE_MAP, 0,
                 args_holder(b->args, json_string(""), NULL), pick_round(s, b));
        break;
    }
    free(live);
    dispatch_running(s, q, b, from);
    return b->n_tasks > from ? 0 : -1;
}

/* MapReduceJobExecutorHandler#needReduceTask: the next stage to open when
 * every task succeeded, or 0 when the batch is complete. */
static int next_mr_stage(const batch *b)
{
    size_t maps = 0, reduces = 0;
    for (size_t i = 0; i < b->n_tasks; i++) {
        switch (b->tasks[i]->mr_stage) {
        case SJ_SRV_STAGE_MERGE:
            return 0;
        case SJ_SRV_STAGE_REDUCE:
            reduces++;
            break;
        case SJ_SRV_STAGE_MAP:
            maps++;
            break;
        }
    }
    if (reduces > 1)
        return SJ_SRV_STAGE_MERGE;
    if (maps == b->n_tasks)
        return SJ_SRV_STAGE_REDUCE;
    return 0;
}

/* REDUCE or MERGE_REDUCE tasks (§6.7, ReduceActor + MapReduceTaskGenerator).
 * Inputs are the stored result strings of the previous stage's leaf tasks
 * in id order. Returns the number of tasks created. */
static size_t open_mr_stage(sj_srv *s, outq *q, batch *b, int stage)
{
    int prev =
        stage == SJ_SRV_STAGE_REDUCE ? SJ_SRV_STAGE_MAP : SJ_SRV_STAGE_REDUCE;
    size_t from = b->n_tasks, total = 0;
    char **in;

    for (size_t i = 0; i < b->n_tasks; i++)
        if (b->tasks[i]->mr_stage == stage)
            return 0; /* already opened */
    in = xcalloc(b->n_tasks, sizeof *in);
    for (size_t i = 0; i < b->n_tasks; i++)
        if (b->tasks[i]->mr_stage == prev && b->tasks[i]->leaf)
            in[total++] = b->tasks[i]->result;

    if (stage == SJ_SRV_STAGE_MERGE) {
        json_t *reduces = jarray();
        task *t;
        for (size_t i = 0; i < total; i++)
            jappend(reduces, json_string(in[i]));
        t = task_add(s, b, "MERGE_REDUCE_TASK", SJ_SRV_STAGE_MERGE, 0,
                     args_holder(b->args, NULL, reduces), pick_round(s, b));
        t->omit_retry_count = 1;
    } else if (total > 0) {
        /* averageAlgorithm: min(shardNum, |L|) contiguous chunks, the
         * first |L| mod k one element larger. */
        size_t k = (size_t)(b->shard_num > 0 ? b->shard_num : 1), pos = 0;
        if (k > total)
            k = total;
        for (size_t c = 0; c < k; c++) {
            size_t size = total / k + (c < total % k ? 1 : 0);
            json_t *maps = jarray();
            for (size_t i = 0; i < size; i++)
                jappend(maps, json_string(in[pos++]));
            task_add(s, b, "REDUCE_TASK", SJ_SRV_STAGE_REDUCE, 0,
                     args_holder(b->args, maps, NULL), pick_round(s, b));
        }
    }
    free(in);
    for (size_t i = from; i < b->n_tasks; i++) {
        b->tasks[i]->wf_batch_id = b->wf_batch_id;
        b->tasks[i]->wf_node_id = b->wf_node_id;
    }
    dispatch_running(s, q, b, from);
    return b->n_tasks - from;
}

/* ---- the batch state machine ------------------------------------------- */

typedef enum batch_ev {
    BEV_NO_CLIENT,   /* trigger without a live node: WAITING -> CANCEL */
    BEV_START,       /* WAITING -> RUNNING: tasks generated + dispatched,
                        timeout armed at executorTimeout s + 500 ms */
    BEV_SETTLE,      /* a leaf task finished: once no task is RUNNING,
                        any FAIL -> FAIL, else any STOP -> STOP, else
                        SUCCESS, or (MAP_REDUCE) open the next stage and
                        stay RUNNING; cleanup stops except CLUSTER */
    BEV_TIMEOUT,     /* RUNNING past its deadline: stops to every task,
                        unfinished tasks STOP, then SETTLE (reason 1) */
    BEV_MANUAL_STOP, /* the same with reason MANUAL_STOP */
    BEV_MANUAL_RETRY /* FAIL/STOP/CANCEL -> RUNNING: unsuccessful tasks
                        re-dispatched with retryScene=2, timeout re-armed */
} batch_ev;

static void task_retry(sj_srv *s, outq *q, batch *b, task *t, int scene);

/*
 * Every change of a batch's status happens here, in one switch, so the whole
 * life cycle (protocol.md §6.9, §7.2, §7.3) can be read at once. `retry` is
 * the effective retryStatus of the report that caused a SETTLE: retry
 * traffic may re-complete a finished batch, and a non-success verdict
 * from it updates the status without cleanup stops
 * (AbstractJobExecutorResultHandler#updateStatus).
 */
static void batch_event(sj_srv *s, outq *q, batch *b, batch_ev ev, int retry,
                        int reason)
{
    long long now = now_ms(s);
    size_t running = 0, fails = 0, stops = 0;
    int verdict, stage;

    switch (ev) {
    case BEV_NO_CLIENT:
        b->status = SJ_SRV_CANCEL;
        b->reason = SJ_SRV_REASON_NOT_CLIENT;
        break;

    case BEV_START:
        b->status = SJ_SRV_RUNNING;
        b->start_ms = now;
        b->deadline_ms = now + (long long)b->timeout_s * 1000 + 500;
        generate_tasks(s, q, b);
        break;

    case BEV_SETTLE:
        if (!retry && finished(b->status))
            break; /* idempotent for non-retry traffic */
        for (size_t i = 0; i < b->n_tasks; i++) {
            int st = b->tasks[i]->status;
            running += st == SJ_SRV_RUNNING;
            fails += st == SJ_SRV_FAIL;
            stops += st == SJ_SRV_STOP;
        }
        if (b->n_tasks == 0 || running > 0)
            break;
        verdict = fails > 0   ? SJ_SRV_FAIL
                  : stops > 0 ? SJ_SRV_STOP
                              : SJ_SRV_SUCCESS;
        if (verdict == SJ_SRV_SUCCESS && b->type == SJ_SRV_MAP_REDUCE &&
            b->single_stage == 0 && (stage = next_mr_stage(b)) != 0) {
            /* Not a completion: no status change, no stops. If the
             * stage has no input the batch waits for its timeout. */
            open_mr_stage(s, q, b, stage);
            break;
        }
        if (verdict != SJ_SRV_SUCCESS && retry) {
            b->status = verdict;
            b->reason = reason;
            break;
        }
        if (!retry && finished(b->status))
            break;
        b->status = verdict;
        b->reason = reason;
        if (b->type != SJ_SRV_CLUSTER)
            stop_all(s, q, b);
        break;

    case BEV_TIMEOUT:
    case BEV_MANUAL_STOP:
        if (finished(b->status))
            break;
        reason = ev == BEV_TIMEOUT ? SJ_SRV_REASON_TIMEOUT
                                   : SJ_SRV_REASON_MANUAL_STOP;
        if (b->n_tasks == 0) {
            b->status = SJ_SRV_STOP;
            b->reason = reason;
            break;
        }
        stop_all(s, q, b);
        for (size_t i = 0; i < b->n_tasks; i++) {
            task *t = b->tasks[i];
            if (t->status == SJ_SRV_SUCCESS)
                continue;
            t->status = SJ_SRV_STOP;
            t->retry_at = 0;
            set_str(&t->message, "Task stopped successfully");
            stops++;
        }
        /* Java settles once per stopped task; only the first can act.
         * With every task already SUCCESS nothing settles (§6.6 race). */
        if (stops > 0)
            batch_event(s, q, b, BEV_SETTLE, 0, reason);
        break;

    case BEV_MANUAL_RETRY:
        b->status = SJ_SRV_RUNNING;
        b->reason = SJ_SRV_REASON_NONE;
        b->deadline_ms = now + (long long)b->timeout_s * 1000 + 500;
        for (size_t i = 0; i < b->n_tasks; i++) {
            task *t = b->tasks[i];
            if (t->status == SJ_SRV_RUNNING || t->status == SJ_SRV_SUCCESS)
                continue;
            t->status = SJ_SRV_RUNNING;
            task_retry(s, q, b, t, 2);
        }
        break;
    }
    pthread_cond_broadcast(&s->cond);
}

static void batch_event_settle(sj_srv *s, outq *q, batch *b, int retry,
                               int reason)
{
    batch_event(s, q, b, BEV_SETTLE, retry, reason);
}

/* chooseNewClient of the callback handlers (§7.5). NULL keeps the node. */
static node *retry_client(sj_srv *s, const batch *b, const task *t)
{
    node **live, *n = NULL, *cur;
    size_t k;

    switch (b->type) {
    case SJ_SRV_CLUSTER:
        return pick_route(s, b);
    case SJ_SRV_BROADCAST:
        cur = node_find(s, t->host_id);
        if (cur != NULL && cur->alive)
            return NULL;
        k = live_nodes(s, b, &live);
        for (size_t i = 0; i < k && n == NULL; i++) {
            int used = 0;
            for (size_t j = 0; j < b->n_tasks && !used; j++)
                used = b->tasks[j]->host_id != NULL &&
                       strcmp(b->tasks[j]->host_id, live[i]->host_id) == 0;
            if (!used)
                n = live[i];
        }
        free(live);
        return n;
    default:
        return pick_round(s, b); /* Java picks at random */
    }
}

/* Count the retry, move the task if a new client is chosen, and dispatch
 * now (manual, scene 2) or after retryInterval (auto, scene 1). */
static void task_retry(sj_srv *s, outq *q, batch *b, task *t, int scene)
{
    node *n = retry_client(s, b, t);
    if (n != NULL)
        set_str(&t->host_id, n->host_id);
    t->retry_count++;
    if (scene == 2) {
        t->retry_at = 0;
        dispatch_task(s, q, b, t, 2);
    } else {
        /* 0 is "none": a zero interval fires at the next tick. */
        t->retry_at = now_ms(s) + (long long)b->retry_interval * 1000;
        if (t->retry_at <= 0)
            t->retry_at = 1;
    }
}

/*
 * A task's outcome (a client report, or a dispatch the client refused):
 * AbstractClientCallbackHandler#callback then JobExecutorResultActor.
 * `result` may be NULL (absent or null: stored value unchanged).
 */
static void task_outcome(sj_srv *s, outq *q, batch *b, task *t, int status,
                         const json_t *result, const char *message,
                         const char *wf_context, int retry_scene,
                         int retry_status)
{
    int scene = 0;

    if (retry_scene == 2 && !retry_status)
        scene = 2; /* manual retry requested (§7.3 echo rule) */
    else if (status == SJ_SRV_FAIL && t->retry_count < b->max_retry)
        scene = 1;
    if (scene != 0) {
        task_retry(s, q, b, t, scene);
        return; /* the task stays RUNNING meanwhile */
    }

    t->status = status;
    if (wf_context != NULL)
        set_str(&t->wf_context, wf_context);
    if (result != NULL && !json_is_null(result)) {
        /* Jackson keeps the client's key order and writes a double in its
         * shortest form (0.1, not jansson's 0.10000000000000001). */
        char *text = json_is_string(result) ? xstrdup(json_string_value(result))
                                            : sj_json_text_ordered(result);
        if (text == NULL)
            oom();
        free(t->result);
        t->result = text;
    }
    if (message != NULL)
        set_str(&t->message, message);
    if ((b->type == SJ_SRV_MAP || b->type == SJ_SRV_MAP_REDUCE) && !t->leaf &&
        !s->complete_on_nonleaf)
        return; /* a non-leaf result never completes the batch (§6.6) */
    batch_event(s, q, b, BEV_SETTLE, retry_status, SJ_SRV_REASON_NONE);
}

static void find_task(const sj_srv *s, int64_t task_id, batch **bp, task **tp)
{
    *bp = NULL;
    *tp = NULL;
    /* newest first: a report is most often for the latest batch; a task
     * is always younger than its batch */
    for (size_t i = s->n_batches; i-- > 0;) {
        if (s->batches[i]->id > task_id)
            continue;
        task *t = task_find(s->batches[i], task_id);
        if (t != NULL) {
            *bp = s->batches[i];
            *tp = t;
            return;
        }
    }
}

/* ---- client -> server handlers ----------------------------------------- */

/* Messages of Java exceptions the handlers would throw. */
#define MSG_ARGS_NULL                                                          \
    "Cannot load from object array because the return value of "               \
    "\"com.aizuda.snailjob.common.core.model.SnailJobRequest.getArgs()\" "     \
    "is null"
#define MSG_ARGS_EMPTY "Index 0 out of bounds for length 0"

typedef void (*handler_fn)(sj_srv *s, outq *q, const sj_request *req,
                           const json_t *args, sj_reply *reply);

static void answer(sj_reply *reply, const sj_request *req, int status,
                   const char *message, const char *data)
{
    if (sj_reply_set(reply, req->req_id, status, message, data) != 0)
        oom();
}

static void answer_fail(sj_reply *reply, const sj_request *req,
                        const char *message)
{
    answer(reply, req, SJ_STATUS_NO, message, "null");
}

/* args[0], or NULL after answering the exception Java would raise. */
static const json_t *first_arg(const sj_request *req, const json_t *args,
                               sj_reply *reply, const char *data)
{
    if (!json_is_array(args)) {
        answer(reply, req, SJ_STATUS_NO, MSG_ARGS_NULL, data);
        return NULL;
    }
    if (json_array_size(args) == 0) {
        answer(reply, req, SJ_STATUS_NO, MSG_ARGS_EMPTY, data);
        return NULL;
    }
    return json_array_get(args, 0);
}

/* Integer.valueOf's messages. 0 and *out, or -1 with msg filled. */
static int parse_port(const char *s, int *out, char *msg, size_t len)
{
    char *end;
    long v;

    if (s == NULL) {
        snprintf(msg, len, "Cannot parse null string: null");
        return -1;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (s[0] == '\0' || s[0] == ' ' || *end != '\0' || errno != 0 ||
        v < INT32_MIN || v > INT32_MAX) {
        snprintf(msg, len, "For input string: \"%s\"", s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* §4.1 BeatHttpRequestHandler. */
static void h_beat(sj_srv *s, outq *q, const sj_request *req,
                   const json_t *args, sj_reply *reply)
{
    char msg[600];
    beat b;
    (void)q;
    (void)args;

    memset(&b, 0, sizeof b);
    if (parse_port(sj_request_header(req, "host-port"), &b.port, msg,
                   sizeof msg) != 0) {
        answer_fail(reply, req, msg);
        return;
    }
    b.host_id = xstrdup(sj_request_header(req, "host-id"));
    b.ip = xstrdup(sj_request_header(req, "host-ip"));
    b.labels = xstrdup(sj_request_header(req, "label"));
    b.etype = xstrdup(sj_request_header(req, "executor-type"));
    b.sysver = xstrdup(sj_request_header(req, "system-version"));
    if (b.host_id == NULL || b.ip == NULL) {
        SJ_WARN("sj_srv: beat without host-id/host-ip ignored");
        beat_free(&b);
    } else if (s->beat_apply_ms <= 0) {
        node_apply(s, &b);
    } else {
        PUSH(s->beats, s->n_beats, s->cap_beats, b);
    }
    answer(reply, req, SJ_STATUS_YES, "", "\"PONG\"");
}

/* §4.2 RegisterJobExecutorsHttpRequestHandler. */
static void h_register(sj_srv *s, outq *q, const sj_request *req,
                       const json_t *args, sj_reply *reply)
{
    const json_t *list = first_arg(req, args, reply, "null"), *e;
    size_t i;
    (void)q;

    if (list == NULL)
        return;
    if (json_is_null(list)) {
        answer(reply, req, SJ_STATUS_NO,
               "Beat register job executors arg is null", "false");
        return;
    }
    if (!json_is_array(list)) {
        char *text = dumps(list, 1);
        char *msg =
            xprintf("Json to object conversion failed Parameters: %s", text);
        answer_fail(reply, req, msg);
        free(msg);
        free(text);
        return;
    }
    json_array_foreach(list, i, e)
    {
        const char *name = get_str(e, "executorInfo");
        int known = 0;
        if (name == NULL)
            continue;
        for (size_t j = 0; j < s->n_executors && !known; j++)
            known = strcmp(s->executors[j], name) == 0;
        if (!known)
            PUSH(s->executors, s->n_executors, s->cap_executors, xstrdup(name));
    }
    answer(reply, req, SJ_STATUS_YES,
           "Batch Register Job Executors Processed Successfully", "true");
}

/* §4.3 ReportDispatchResultPostHttpRequestHandler. */
static void h_result(sj_srv *s, outq *q, const sj_request *req,
                     const json_t *args, sj_reply *reply)
{
    const json_t *r = first_arg(req, args, reply, "null"), *er;
    int64_t job_id, batch_id, task_id, type, status, scene = 0;
    batch *b;
    task *t;

    if (r == NULL)
        return;
    if (!json_is_object(r) || !get_i64(r, "taskType", &type)) {
        answer_fail(reply, req, "taskType can not be null");
        return;
    }
    if (!get_i64(r, "taskId", &task_id) || !get_i64(r, "jobId", &job_id) ||
        !get_i64(r, "taskBatchId", &batch_id)) {
        answer_fail(reply, req, "taskId, jobId and taskBatchId are required");
        return;
    }
    if (!get_i64(r, "taskStatus", &status)) {
        answer_fail(reply, req, "taskStatus can not be null");
        return;
    }
    er = json_object_get(r, "executeResult");
    if (!json_is_object(er)) {
        answer_fail(reply, req, "executeResult can not be null");
        return;
    }
    get_i64(r, "retryScene", &scene);
    find_task(s, task_id, &b, &t);
    if (t == NULL) {
        if (type == SJ_SRV_MAP || type == SJ_SRV_MAP_REDUCE) {
            answer_fail(reply, req, "job task is null");
            return;
        }
        SJ_WARN("sj_srv: result for unknown task %" PRId64, task_id);
    } else {
        task_outcome(s, q, b, t, (int)status, json_object_get(er, "result"),
                     get_str(er, "message"), get_str(r, "wfContext"),
                     (int)scene,
                     get_bool(r, "retryStatus") || get_bool(r, "retry"));
    }
    answer(reply, req, SJ_STATUS_YES,
           "Report Dispatch Result Processed Successfully", "true");
}

/* §4.4 MapTaskPostHttpRequestHandler and MapReduceTaskGenerator (MAP). */
static void h_map(sj_srv *s, outq *q, const sj_request *req, const json_t *args,
                  sj_reply *reply)
{
    const json_t *m = first_arg(req, args, reply, "false"), *sub, *e;
    int64_t job_id = 0, batch_id = 0, parent_id = 0, wf_batch = 0, wf_node = 0;
    const char *wf;
    size_t i, from;
    batch *b = NULL;
    task *parent;

    if (m == NULL)
        return;
    if (!json_is_object(m)) {
        answer(reply, req, SJ_STATUS_NO, "Job config not existed", "false");
        return;
    }
    get_i64(m, "jobId", &job_id);
    get_i64(m, "taskBatchId", &batch_id);
    get_i64(m, "parentId", &parent_id);
    get_i64(m, "workflowTaskBatchId", &wf_batch);
    get_i64(m, "workflowNodeId", &wf_node);
    for (i = 0; i < s->n_batches && b == NULL; i++)
        if (s->batches[i]->job_id == job_id)
            b = s->batches[i];
    if (b == NULL) {
        answer(reply, req, SJ_STATUS_NO, "Job config not existed", "false");
        return;
    }
    if ((b = batch_find(s, batch_id)) == NULL || b->job_id != job_id) {
        answer(reply, req, SJ_STATUS_NO, "Job task batch not existed", "false");
        return;
    }
    sub = json_object_get(m, "subTask");
    if (!json_is_array(sub) || json_array_size(sub) == 0) {
        answer(reply, req, SJ_STATUS_NO, "Job task is empty", "false");
        return;
    }
    if (b->single_stage != 0) {
        /* One stage alone: the call is in the request record. */
        answer(reply, req, SJ_STATUS_YES,
               "Report Map Task Processed Successfully", "true");
        return;
    }
    wf = get_str(m, "wfContext");
    parent = task_find(b, parent_id);

    from = b->n_tasks;
    json_array_foreach(sub, i, e)
    {
        task *t = task_add(
            s, b, get_str(m, "taskName") ? get_str(m, "taskName") : "",
            SJ_SRV_STAGE_MAP, parent_id,
            args_holder(b->args, json_deep_copy(e), NULL), pick_round(s, b));
        t->wf_context = xstrdup(wf);
        t->wf_batch_id = wf_batch;
        t->wf_node_id = wf_node;
    }
    if (parent != NULL)
        parent->leaf = 0;
    dispatch_running(s, q, b, from);
    answer(reply, req, SJ_STATUS_YES, "Report Map Task Processed Successfully",
           "true");
}

/* A JOB log record the JobLogActor can store: a taskId and unique field
 * names (Collectors.groupingBy / toMap). */
static int log_record_ok(const json_t *rec)
{
    const json_t *fields = json_object_get(rec, "fieldList"), *f, *g;
    size_t i, j;
    int64_t id;

    if (!get_i64(rec, "taskId", &id))
        return 0;
    json_array_foreach(fields, i, f)
    {
        const char *name = get_str(f, "name");
        if (name == NULL)
            return 0;
        for (j = 0; j < i; j++) {
            const char *other;
            g = json_array_get(fields, j);
            other = get_str(g, "name");
            if (other != NULL && strcmp(name, other) == 0)
                return 0;
        }
    }
    return 1;
}

/* §4.5 ReportLogHttpRequestHandler + JobLogActor. */
static void h_log(sj_srv *s, outq *q, const sj_request *req, const json_t *args,
                  sj_reply *reply)
{
    const json_t *list, *rec;
    size_t i, n_ok = 0, n_job = 0;
    (void)q;

    if (!json_is_array(args) || json_array_size(args) == 0) {
        char *msg = xprintf("The log data to be reported cannot be empty. "
                            "ReqId:[%" PRId64 "]",
                            req->req_id);
        answer_fail(reply, req, msg);
        free(msg);
        return;
    }
    list = json_array_get(args, 0);
    json_array_foreach(list, i, rec)
    {
        const char *type = get_str(rec, "logType");
        if (type != NULL && strcmp(type, "JOB") != 0)
            continue; /* RETRY logs go elsewhere; others are ignored */
        n_job++;
        n_ok += log_record_ok(rec);
    }
    if (n_ok != n_job) {
        SJ_WARN("sj_srv: log batch dropped (record without taskId or with "
                "duplicate field names)");
    } else {
        json_array_foreach(list, i, rec)
        {
            const char *type = get_str(rec, "logType");
            if (type != NULL && strcmp(type, "JOB") != 0)
                continue;
            if (s->log_sink != NULL) {
                char *text = dumps(rec, 1);
                s->log_sink(s->log_sink_ud, text);
                free(text);
            } else {
                PUSH(s->logs, s->n_logs, s->cap_logs, dumps(rec, 1));
            }
        }
    }
    answer(reply, req, SJ_STATUS_YES,
           "Batch Log Retry Data Upload Processed Successfully", "true");
}

/* §4.6 ConfigHttpRequestHandler: no scenes, no notifications. */
static void h_sync(sj_srv *s, outq *q, const sj_request *req,
                   const json_t *args, sj_reply *reply)
{
    (void)s;
    (void)q;
    (void)args;
    answer(reply, req, SJ_STATUS_YES, "",
           "{\"notifyList\":[],\"sceneList\":[],\"version\":0}");
}

static const struct {
    const char *path;
    handler_fn fn;
} handlers[] = {
    {"/beat", h_beat},
    {"/register/job/executors", h_register},
    {"/report/dispatch/result", h_result},
    {"/batch/report/job/map/task/v1", h_map},
    {"/batch/server/report/log", h_log},
    {"/sync/version", h_sync},
};

/* The token check reads the protobuf header map, which is case-sensitive. */
static const char *header_exact(const sj_request *req, const char *key)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcmp(req->headers[i].key, key) == 0)
            return req->headers[i].value;
    return NULL;
}

static int blank(const char *s)
{
    if (s == NULL)
        return 1;
    for (; *s != '\0'; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
            return 0;
    return 1;
}

int sj_srv_handle(sj_srv *srv, const sj_request *req, sj_reply *reply)
{
    const char *group, *ns, *token, *expected;
    json_t *args = NULL;
    json_error_t jerr;
    outq q = {0};
    record rec;
    char *path = NULL, *msg;
    size_t i;

    if (srv == NULL || req == NULL || reply == NULL)
        return SJ_EINVAL;
    memset(&rec, 0, sizeof rec);
    if (sj_request_copy(&rec.req, req) != 0)
        oom();
    if (srv->log_sink != NULL && rec.req.uri != NULL &&
        strcmp(rec.req.uri, "/batch/server/report/log") == 0)
        sj_wire_set(&rec.req.body, NULL); /* the sink has the records */

    pthread_mutex_lock(&srv->mu);
    rec.at = now_ms(srv);
    PUSH(srv->recs, srv->n_recs, srv->cap_recs, rec);
    pthread_cond_broadcast(&srv->cond);

    if (blank(req->uri)) {
        pthread_mutex_unlock(&srv->mu);
        SJ_WARN("sj_srv: uri can not be null (request not answered)");
        return SJ_EINVAL;
    }

    /* 1. the body must be a JSON array (or null) */
    if (req->body == NULL ||
        (args = json_loads(req->body, JSON_DECODE_ANY, &jerr)) == NULL ||
        !(json_is_array(args) || json_is_null(args))) {
        msg = xprintf("Json to object conversion failed Parameters: %s",
                      req->body != NULL ? req->body : "");
        answer_fail(reply, req, msg);
        free(msg);
        goto done;
    }

    /* 2. the token of (group-name, namespace) */
    group = header_exact(req, "group-name");
    ns = header_exact(req, "namespace");
    token = header_exact(req, "token");
    expected = group != NULL && ns != NULL && strcmp(group, srv->group) == 0 &&
                       strcmp(ns, srv->ns) == 0
                   ? srv->token
                   : "";
    if (blank(token) || strcmp(token, expected) != 0) {
        msg = xprintf("Token authentication failed. [namespace:%s "
                      "groupName:%s token:%s]",
                      ns ? ns : "null", group ? group : "null",
                      token ? token : "null");
        answer_fail(reply, req, msg);
        free(msg);
        goto done;
    }

    /* 3. the handler of the path (query string ignored) */
    path = xstrdup(req->uri);
    path[strcspn(path, "?#")] = '\0';
    for (i = 0; i < sizeof handlers / sizeof handlers[0]; i++) {
        if (strcmp(handlers[i].path, path) == 0) {
            handlers[i].fn(srv, &q, req, json_is_null(args) ? NULL : args,
                           reply);
            goto done;
        }
    }
    msg = xprintf("No matching handler found. Path:[%s] method:[{}]", path);
    answer_fail(reply, req, msg);
    free(msg);

done:
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->mu);
    free(path);
    json_decref(args);
    flush(srv, &q);
    return 0;
}

/* ---- outcome of outbound calls, timers --------------------------------- */

void sj_srv_send_done(sj_srv *srv, uint64_t token, int outcome,
                      const char *message)
{
    pending p;
    outq q = {0};
    size_t i;
    batch *b;
    task *t;
    node *n;

    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->mu);
    for (i = 0; i < srv->n_pend && srv->pend[i].token != token; i++)
        ;
    if (i == srv->n_pend) {
        pthread_mutex_unlock(&srv->mu);
        return;
    }
    p = srv->pend[i];
    srv->pend[i] = srv->pend[--srv->n_pend];
    if (outcome == SJ_SRV_SEND_DROPPED)
        goto out;

    /* Any transport failure flags the node not alive (§2.4). */
    if (outcome == SJ_SRV_SEND_FAILED && (n = node_find(srv, p.host_id)))
        n->alive = 0;
    if (!p.is_dispatch || outcome == SJ_SRV_SEND_ACCEPTED)
        goto out; /* stop replies are ignored */
    b = batch_find(srv, p.batch_id);
    if ((t = task_find(b, p.task_id)) == NULL)
        goto out;
    if (message == NULL)
        message = outcome == SJ_SRV_SEND_FAILED ? "transport failure"
                                                : "dispatch refused";

    if (outcome == SJ_SRV_SEND_REJECTED) {
        /* The client answered but refused: FAIL through the callback. */
        task_outcome(srv, &q, b, t, SJ_SRV_FAIL, NULL, message, NULL,
                     p.retry_scene, p.retry_traffic);
    } else if (b->max_retry > 0 && !p.retry_traffic &&
               p.attempt < b->max_retry) {
        /* RPC-level retry with failover (RequestClientActor). */
        rpc_retry r = {b->id, t->id, p.body, p.attempt + 1,
                       now_ms(srv) + (long long)b->retry_interval * 1000};
        p.body = NULL;
        PUSH(srv->rpcr, srv->n_rpcr, srv->cap_rpcr, r);
    } else {
        task_fail_direct(srv, &q, b, t, message);
    }
out:
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->mu);
    free(p.host_id);
    free(p.body);
    flush(srv, &q);
}

void sj_srv_tick(sj_srv *srv, long long now)
{
    outq q = {0};
    size_t i, j;

    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->mu);

    /* Beats are drained in batches (ClientRegister, every 5 s in Java). */
    if (srv->beat_apply_ms > 0 && now >= srv->next_drain) {
        for (i = 0; i < srv->n_beats; i++)
            node_apply(srv, &srv->beats[i]);
        srv->n_beats = 0;
        srv->next_drain = now + srv->beat_apply_ms;
    }

    /* Expiry: no applied beat for expire_ms. */
    for (i = 0; i < srv->n_nodes;) {
        if (now - srv->nodes[i]->last_update > srv->expire_ms) {
            SJ_INFO("sj_srv: node %s expired", srv->nodes[i]->host_id);
            node_free(srv->nodes[i]);
            srv->nodes[i] = srv->nodes[--srv->n_nodes];
        } else {
            i++;
        }
    }

    /* RPC-level dispatch retries, failing over to another node. */
    for (i = 0; i < srv->n_rpcr;) {
        rpc_retry r = srv->rpcr[i];
        batch *b;
        task *t;
        node *n;
        if (now < r.at) {
            i++;
            continue;
        }
        srv->rpcr[i] = srv->rpcr[--srv->n_rpcr];
        b = batch_find(srv, r.batch_id);
        if ((t = task_find(b, r.task_id)) == NULL ||
            t->status != SJ_SRV_RUNNING) {
            free(r.body);
            continue;
        }
        n = b->type == SJ_SRV_CLUSTER ? pick_route(srv, b) : pick_round(srv, b);
        if (n != NULL)
            set_str(&t->host_id, n->host_id);
        send_dispatch(srv, &q, b, t, r.body, r.attempt, 0);
    }

    /* Automatic retries due, then batch timeouts. */
    for (i = 0; i < srv->n_batches; i++) {
        batch *b = srv->batches[i];
        for (j = 0; j < b->n_tasks; j++) {
            task *t = b->tasks[j];
            if (t->retry_at > 0 && now >= t->retry_at) {
                t->retry_at = 0;
                dispatch_task(srv, &q, b, t, 1);
            }
        }
        if (b->status == SJ_SRV_RUNNING && b->deadline_ms > 0 &&
            now >= b->deadline_ms) {
            /* One shot, as JobTimeoutCheckTask on the timer wheel: a batch
             * it cannot settle (every task SUCCESS, §6.6 race) must not
             * be sent a round of stops on every tick. Manual retry
             * re-arms it. */
            b->deadline_ms = 0;
            batch_event(srv, &q, b, BEV_TIMEOUT, 0, SJ_SRV_REASON_TIMEOUT);
        }
    }
    pthread_mutex_unlock(&srv->mu);
    flush(srv, &q);
}

/* ---- lifecycle --------------------------------------------------------- */

int sj_srv_create(const sj_srv_config *cfg, const sj_srv_ops *ops, sj_srv **out)
{
    sj_srv_config def;
    pthread_condattr_t ca;
    sj_srv *s;

    if (out == NULL)
        return SJ_EINVAL;
    *out = NULL;
    memset(&def, 0, sizeof def);
    if (cfg == NULL)
        cfg = &def;
    if ((s = calloc(1, sizeof *s)) == NULL)
        return SJ_ENOMEM;
    if (pthread_mutex_init(&s->mu, NULL) != 0)
        goto fail_mutex;
    if (pthread_condattr_init(&ca) != 0)
        goto fail_cond;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&s->cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        goto fail_cond;
    }
    pthread_condattr_destroy(&ca);

    s->ns = xstrdup(cfg->namespace_id ? cfg->namespace_id : DEF_NAMESPACE);
    s->group = xstrdup(cfg->group_name ? cfg->group_name : DEF_GROUP);
    s->token = xstrdup(cfg->token ? cfg->token : DEF_TOKEN);
    s->beat_apply_ms = cfg->beat_apply_ms > 0 ? cfg->beat_apply_ms : 0;
    s->expire_ms = cfg->expire_ms > 0 ? cfg->expire_ms : DEF_EXPIRE_MS;
    s->next_id = cfg->id_base != 0 ? cfg->id_base : DEF_ID_BASE;
    s->complete_on_nonleaf = cfg->complete_on_nonleaf;
    s->clock = cfg->clock != NULL ? cfg->clock : default_clock;
    s->clock_ud = cfg->clock_ud;
    s->log_sink = cfg->log_sink;
    s->log_sink_ud = cfg->log_sink_ud;
    if (ops != NULL)
        s->ops = *ops;
    *out = s;
    return 0;

fail_cond:
    pthread_mutex_destroy(&s->mu);
fail_mutex:
    free(s);
    return SJ_ENOMEM;
}

void sj_srv_destroy(sj_srv *s)
{
    size_t i;
    if (s == NULL)
        return;
    for (i = 0; i < s->n_nodes; i++)
        node_free(s->nodes[i]);
    free(s->nodes);
    for (i = 0; i < s->n_beats; i++)
        beat_free(&s->beats[i]);
    free(s->beats);
    for (i = 0; i < s->n_executors; i++)
        free(s->executors[i]);
    free(s->executors);
    for (i = 0; i < s->n_logs; i++)
        free(s->logs[i]);
    free(s->logs);
    for (i = 0; i < s->n_batches; i++)
        batch_free(s->batches[i]);
    free(s->batches);
    for (i = 0; i < s->n_pend; i++) {
        free(s->pend[i].host_id);
        free(s->pend[i].body);
    }
    free(s->pend);
    for (i = 0; i < s->n_rpcr; i++)
        free(s->rpcr[i].body);
    free(s->rpcr);
    for (i = 0; i < s->n_recs; i++)
        sj_request_free(&s->recs[i].req);
    free(s->recs);
    for (i = 0; i < s->n_sent; i++) {
        free(s->sent[i].uri);
        free(s->sent[i].host_id);
        free(s->sent[i].body);
    }
    free(s->sent);
    free(s->ns);
    free(s->group);
    free(s->token);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- jobs -------------------------------------------------------------- */

/* JSON strings must be UTF-8; NULL is fine (absent). */
static int utf8_ok(const char *s)
{
    json_t *j;
    if (s == NULL)
        return 1;
    if ((j = json_string(s)) == NULL)
        return 0;
    json_decref(j);
    return 1;
}

int sj_srv_trigger(sj_srv *srv, const sj_srv_job *job, int64_t *batch_id)
{
    json_t *labels = NULL, *input = NULL;
    node **live;
    outq q = {0};
    batch *b;

    if (srv == NULL || job == NULL || job->task_type < SJ_SRV_CLUSTER ||
        job->task_type > SJ_SRV_MAP_REDUCE || !utf8_ok(job->executor_info) ||
        !utf8_ok(job->args) || !utf8_ok(job->job_biz_id) ||
        !utf8_ok(job->wf_context))
        return SJ_EINVAL;
    if (job->stage != 0) {
        int mr = job->task_type == SJ_SRV_MAP_REDUCE;
        if ((job->task_type != SJ_SRV_MAP && !mr) ||
            (job->stage != SJ_SRV_STAGE_MAP && !mr) ||
            job->stage < SJ_SRV_STAGE_MAP || job->stage > SJ_SRV_STAGE_MERGE ||
            !utf8_ok(job->stage_task_name))
            return SJ_EINVAL;
        if (job->stage_input != NULL &&
            (input = json_loads(job->stage_input, JSON_DECODE_ANY, NULL)) ==
                NULL)
            return SJ_EINVAL;
        if (job->stage != SJ_SRV_STAGE_MAP && !json_is_array(input)) {
            json_decref(input);
            return SJ_EINVAL;
        }
    }
    if (job->shard_total > 0 &&
        (job->task_type != SJ_SRV_SHARDING || job->shard_index < 0 ||
         job->shard_index >= job->shard_total))
        return SJ_EINVAL;
    if (job->labels != NULL && (labels = parse_labels(job->labels)) == NULL) {
        json_decref(input);
        return SJ_EINVAL;
    }

    b = xcalloc(1, sizeof *b);
    b->single_stage = job->stage;
    b->stage_name = xstrdup(job->stage_task_name);
    b->stage_input = input;
    if (job->shard_total > 0) {
        b->single_shard = job->shard_index + 1;
        b->shard_total = job->shard_total;
    }
    b->job_id = job->job_id != 0 ? job->job_id : 1;
    b->type = job->task_type;
    b->executor = xstrdup(job->executor_info ? job->executor_info : "");
    b->args = xstrdup(job->args);
    b->shard_num = job->shard_num > 0 ? job->shard_num : 1;
    b->timeout_s =
        job->executor_timeout > 0 ? job->executor_timeout : DEF_TIMEOUT_S;
    b->parallel = job->parallel_num > 0 ? job->parallel_num : 1;
    b->etype = job->executor_type > 0 ? job->executor_type : 1;
    b->max_retry = job->max_retry_times > 0 ? job->max_retry_times : 0;
    b->retry_interval = job->retry_interval > 0 ? job->retry_interval : 0;
    b->biz_id = xstrdup(job->job_biz_id);
    b->labels = labels;
    b->wf_batch_id = job->workflow_task_batch_id;
    b->wf_node_id = job->workflow_node_id;
    b->wf_context = xstrdup(job->wf_context);
    if (job->n_targets > 0) {
        b->targets = xcalloc(job->n_targets, sizeof *b->targets);
        for (size_t i = 0; i < job->n_targets; i++)
            b->targets[b->n_targets++] = xstrdup(job->targets[i]);
    }
    b->status = SJ_SRV_WAITING;

    pthread_mutex_lock(&srv->mu);
    b->id = srv->next_id++;
    PUSH(srv->batches, srv->n_batches, srv->cap_batches, b);
    if (live_nodes(srv, b, &live) == 0)
        batch_event(srv, &q, b, BEV_NO_CLIENT, 0, SJ_SRV_REASON_NOT_CLIENT);
    else
        batch_event(srv, &q, b, BEV_START, 0, SJ_SRV_REASON_NONE);
    free(live);
    if (batch_id != NULL)
        *batch_id = b->id;
    pthread_mutex_unlock(&srv->mu);
    flush(srv, &q);
    return 0;
}

int sj_srv_stop_batch(sj_srv *srv, int64_t batch_id)
{
    outq q = {0};
    batch *b;
    int rc = 0;

    pthread_mutex_lock(&srv->mu);
    if ((b = batch_find(srv, batch_id)) == NULL)
        rc = SJ_ENOENT;
    else if (finished(b->status))
        rc = SJ_EINVAL;
    else
        batch_event(srv, &q, b, BEV_MANUAL_STOP, 0, SJ_SRV_REASON_MANUAL_STOP);
    pthread_mutex_unlock(&srv->mu);
    flush(srv, &q);
    return rc;
}

int sj_srv_retry_batch(sj_srv *srv, int64_t batch_id)
{
    outq q = {0};
    batch *b;
    int rc = 0;

    pthread_mutex_lock(&srv->mu);
    if ((b = batch_find(srv, batch_id)) == NULL)
        rc = SJ_ENOENT;
    else if (!finished(b->status) || b->status == SJ_SRV_SUCCESS)
        rc = SJ_EINVAL; /* "job batch can not be null." in Java */
    else
        batch_event(srv, &q, b, BEV_MANUAL_RETRY, 1, SJ_SRV_REASON_NONE);
    pthread_mutex_unlock(&srv->mu);
    flush(srv, &q);
    return rc;
}

int sj_srv_batch_status(sj_srv *srv, int64_t batch_id)
{
    batch *b;
    int rc;
    pthread_mutex_lock(&srv->mu);
    b = batch_find(srv, batch_id);
    rc = b != NULL ? b->status : SJ_ENOENT;
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

/* Absolute CLOCK_MONOTONIC deadline timeout_ms from now. */
static struct timespec deadline_in(int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int sj_srv_wait_batch(sj_srv *srv, int64_t batch_id, int timeout_ms)
{
    struct timespec dl = deadline_in(timeout_ms > 0 ? timeout_ms : 0);
    batch *b;
    int rc;

    pthread_mutex_lock(&srv->mu);
    for (;;) {
        if ((b = batch_find(srv, batch_id)) == NULL) {
            rc = SJ_ENOENT;
            break;
        }
        if (finished(b->status)) {
            rc = b->status;
            break;
        }
        if (pthread_cond_timedwait(&srv->cond, &srv->mu, &dl) == ETIMEDOUT) {
            rc = finished(b->status) ? b->status : SJ_ETIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

int sj_srv_batches(sj_srv *srv, sj_srv_batch_info **out, size_t *n)
{
    sj_srv_batch_info *v;
    pthread_mutex_lock(&srv->mu);
    v = xcalloc(srv->n_batches, sizeof *v);
    for (size_t i = 0; i < srv->n_batches; i++) {
        const batch *b = srv->batches[i];
        v[i].batch_id = b->id;
        v[i].job_id = b->job_id;
        v[i].task_type = b->type;
        v[i].status = b->status;
        v[i].reason = b->reason;
        v[i].n_tasks = b->n_tasks;
        v[i].executor_info = xstrdup(b->executor);
    }
    *n = srv->n_batches;
    pthread_mutex_unlock(&srv->mu);
    *out = v;
    return 0;
}

void sj_srv_batches_free(sj_srv_batch_info *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i].executor_info);
    free(v);
}

int sj_srv_batch_tasks(sj_srv *srv, int64_t batch_id, sj_srv_task_info **out,
                       size_t *n)
{
    sj_srv_task_info *v;
    batch *b;

    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&srv->mu);
    if ((b = batch_find(srv, batch_id)) == NULL) {
        pthread_mutex_unlock(&srv->mu);
        return SJ_ENOENT;
    }
    v = xcalloc(b->n_tasks, sizeof *v);
    for (size_t i = 0; i < b->n_tasks; i++) {
        const task *t = b->tasks[i];
        v[i].task_id = t->id;
        v[i].parent_id = t->parent_id;
        v[i].name = xstrdup(t->name);
        v[i].mr_stage = t->mr_stage;
        v[i].status = t->status;
        v[i].leaf = t->leaf;
        v[i].retry_count = t->retry_count;
        v[i].result = xstrdup(t->result);
        v[i].message = xstrdup(t->message);
        v[i].args_str = xstrdup(t->args_str);
        v[i].wf_context = xstrdup(t->wf_context);
        v[i].host_id = xstrdup(t->host_id);
    }
    *n = b->n_tasks;
    pthread_mutex_unlock(&srv->mu);
    *out = v;
    return 0;
}

void sj_srv_tasks_free(sj_srv_task_info *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i].name);
        free(v[i].result);
        free(v[i].message);
        free(v[i].args_str);
        free(v[i].wf_context);
        free(v[i].host_id);
    }
    free(v);
}

int sj_srv_batch_result(sj_srv *srv, int64_t batch_id, char **out)
{
    const task *pick = NULL;
    json_t *arr = NULL;
    size_t reduces = 0;
    batch *b;
    int rc = 0;

    *out = NULL;
    pthread_mutex_lock(&srv->mu);
    if ((b = batch_find(srv, batch_id)) == NULL || b->n_tasks == 0 ||
        !finished(b->status)) {
        rc = SJ_ENOENT;
        goto done;
    }
    switch (b->single_stage != 0 || b->single_shard ? SJ_SRV_CLUSTER
                                                    : b->type) {
    case SJ_SRV_CLUSTER:
        pick = b->tasks[0];
        break;
    case SJ_SRV_MAP_REDUCE:
        for (size_t i = 0; i < b->n_tasks; i++) {
            const task *t = b->tasks[i];
            if (t->mr_stage == SJ_SRV_STAGE_MERGE)
                pick = t;
            if (t->mr_stage == SJ_SRV_STAGE_REDUCE && reduces++ == 0 &&
                pick == NULL)
                pick = t;
        }
        if (pick != NULL && pick->mr_stage == SJ_SRV_STAGE_REDUCE &&
            reduces > 1)
            pick = NULL; /* merge not there yet */
        break;
    default:
        arr = jarray();
        for (size_t i = 0; i < b->n_tasks; i++)
            if (b->type != SJ_SRV_MAP || b->tasks[i]->leaf)
                jappend(arr, json_string(b->tasks[i]->result));
        *out = dumps(arr, 1);
        json_decref(arr);
        goto done;
    }
    if (pick == NULL)
        rc = SJ_ENOENT;
    else
        *out = xstrdup(pick->result);
done:
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

/* Shallow key-by-key merge of `text` (JSON object) into ctx; null keys and
 * values skipped (WorkflowBatchHandler#mergeAllWorkflowContext). */
static void merge_ctx(json_t *ctx, const char *text)
{
    json_t *o, *v;
    const char *k;
    if (text == NULL || (o = json_loads(text, 0, NULL)) == NULL)
        return;
    if (json_is_object(o))
        json_object_foreach(o, k, v)
        {
            if (!json_is_null(v))
                jset(ctx, k, json_incref(v));
        }
    json_decref(o);
}

int sj_srv_batch_wf_context(sj_srv *srv, int64_t batch_id, char **out)
{
    json_t *ctx;
    batch *b;

    *out = NULL;
    pthread_mutex_lock(&srv->mu);
    if ((b = batch_find(srv, batch_id)) == NULL) {
        pthread_mutex_unlock(&srv->mu);
        return SJ_ENOENT;
    }
    ctx = jobject();
    merge_ctx(ctx, b->wf_context);
    for (size_t i = 0; i < b->n_tasks; i++)
        merge_ctx(ctx, b->tasks[i]->wf_context);
    *out = dumps(ctx, 1);
    json_decref(ctx);
    pthread_mutex_unlock(&srv->mu);
    return 0;
}

/* ---- registry, logs and records ---------------------------------------- */

int sj_srv_nodes(sj_srv *srv, sj_srv_node_info **out, size_t *n)
{
    sj_srv_node_info *v;
    node **sorted;

    pthread_mutex_lock(&srv->mu);
    sorted = xcalloc(srv->n_nodes, sizeof *sorted);
    if (srv->n_nodes > 0) { /* srv->nodes may be NULL */
        memcpy(sorted, srv->nodes, srv->n_nodes * sizeof *sorted);
        qsort(sorted, srv->n_nodes, sizeof *sorted, cmp_node);
    }
    v = xcalloc(srv->n_nodes, sizeof *v);
    for (size_t i = 0; i < srv->n_nodes; i++) {
        const node *x = sorted[i];
        v[i].host_id = xstrdup(x->host_id);
        v[i].ip = xstrdup(x->ip);
        v[i].port = x->port;
        v[i].labels = xstrdup(x->labels);
        v[i].executor_type = xstrdup(x->etype);
        v[i].system_version = xstrdup(x->sysver);
        v[i].alive = x->alive;
        v[i].last_beat_ms = x->last_update;
    }
    *n = srv->n_nodes;
    pthread_mutex_unlock(&srv->mu);
    free(sorted);
    *out = v;
    return 0;
}

void sj_srv_nodes_free(sj_srv_node_info *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i].host_id);
        free(v[i].ip);
        free(v[i].labels);
        free(v[i].executor_type);
        free(v[i].system_version);
    }
    free(v);
}

size_t sj_srv_executor_count(sj_srv *srv)
{
    size_t n;
    pthread_mutex_lock(&srv->mu);
    n = srv->n_executors;
    pthread_mutex_unlock(&srv->mu);
    return n;
}

int sj_srv_has_executor(sj_srv *srv, const char *name)
{
    int found = 0;
    pthread_mutex_lock(&srv->mu);
    for (size_t i = 0; i < srv->n_executors && !found; i++)
        found = strcmp(srv->executors[i], name) == 0;
    pthread_mutex_unlock(&srv->mu);
    return found;
}

size_t sj_srv_log_count(sj_srv *srv)
{
    size_t n;
    pthread_mutex_lock(&srv->mu);
    n = srv->n_logs;
    pthread_mutex_unlock(&srv->mu);
    return n;
}

int sj_srv_log_get(sj_srv *srv, size_t i, char **json)
{
    int rc = 0;
    *json = NULL;
    pthread_mutex_lock(&srv->mu);
    if (i < srv->n_logs)
        *json = xstrdup(srv->logs[i]);
    else
        rc = SJ_ENOENT;
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

static int uri_is(const char *want, const char *have)
{
    return want == NULL || (have != NULL && strcmp(want, have) == 0);
}

static size_t count_recs(const sj_srv *s, const char *uri)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_recs; i++)
        n += uri_is(uri, s->recs[i].req.uri);
    return n;
}

size_t sj_srv_request_count(sj_srv *srv, const char *uri)
{
    size_t n;
    pthread_mutex_lock(&srv->mu);
    n = count_recs(srv, uri);
    pthread_mutex_unlock(&srv->mu);
    return n;
}

int sj_srv_wait_requests(sj_srv *srv, const char *uri, size_t n, int timeout_ms)
{
    struct timespec dl = deadline_in(timeout_ms > 0 ? timeout_ms : 0);
    int rc = 0;

    pthread_mutex_lock(&srv->mu);
    while (count_recs(srv, uri) < n) {
        if (pthread_cond_timedwait(&srv->cond, &srv->mu, &dl) == ETIMEDOUT) {
            rc = count_recs(srv, uri) >= n ? 0 : SJ_ETIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

int sj_srv_request_get(sj_srv *srv, const char *uri, size_t i, sj_request *out,
                       long long *recv_ms)
{
    int rc = SJ_ENOENT;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&srv->mu);
    for (size_t k = 0; k < srv->n_recs; k++) {
        if (!uri_is(uri, srv->recs[k].req.uri) || i-- != 0)
            continue;
        rc = sj_request_copy(out, &srv->recs[k].req);
        if (rc == 0 && recv_ms != NULL)
            *recv_ms = srv->recs[k].at;
        break;
    }
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

size_t sj_srv_sent_count(sj_srv *srv, const char *uri)
{
    size_t n = 0;
    pthread_mutex_lock(&srv->mu);
    for (size_t i = 0; i < srv->n_sent; i++)
        n += uri_is(uri, srv->sent[i].uri);
    pthread_mutex_unlock(&srv->mu);
    return n;
}

int sj_srv_sent_get(sj_srv *srv, const char *uri, size_t i, char **body,
                    char **host_id)
{
    int rc = SJ_ENOENT;
    if (body != NULL)
        *body = NULL;
    if (host_id != NULL)
        *host_id = NULL;
    pthread_mutex_lock(&srv->mu);
    for (size_t k = 0; k < srv->n_sent; k++) {
        if (!uri_is(uri, srv->sent[k].uri) || i-- != 0)
            continue;
        if (body != NULL)
            *body = xstrdup(srv->sent[k].body);
        if (host_id != NULL)
            *host_id = xstrdup(srv->sent[k].host_id);
        rc = 0;
        break;
    }
    pthread_mutex_unlock(&srv->mu);
    return rc;
}
