#include "sj_pool.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sj_error.h"
#include "sj_log.h"
#include "sj_vm.h"

#define WATCHDOG_MS 10       /* deadline resolution */
#define SHUTDOWN_GRACE_MS 5000

typedef struct qnode {
    struct qnode *next;
    sj_task *t;
} qnode;

typedef struct worker {
    sj_pool *pool;
    int index;
    pthread_t thread;
    sj_vm *vm;          /* this thread's only */
    sj_task *current;   /* guarded by pool->lock */
    int ready;          /* 1 loaded, -1 failed; guarded by pool->lock */
} worker;

struct sj_pool {
    sj_pool_options opts;
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* work arrived / slot freed / state */
    qnode *head, *tail;
    size_t queued;
    int shutting_down;
    worker *workers;
    int n_workers;
    pthread_t watchdog;
    char load_error[1024];
    /* executor list, from worker 0's VM at start */
    char **names;
    char **kinds;
    size_t n_names;
};

/* ---- VM callbacks (worker threads) ------------------------------------ */

static void task_log(void *ud, const sj_task *t, sj_log_level level, const char *msg,
                     size_t len, const char *location)
{
    sj_pool *pool = ud;
    sj_upstream_log(pool->opts.up, t, level, msg, len,
                    location);
}

static int map_report(void *ud, sj_task *t, const char *next_task_name,
                      json_t *sub_tasks, const json_t *wf_changes, char *err,
                      size_t errlen)
{
    sj_pool *pool = ud;
    json_t *req, *args;
    char *body, *wf;
    sj_reply reply;
    int rc;

    wf = json_dumps(wf_changes != NULL ? wf_changes : json_object(),
                    JSON_COMPACT);
    req = json_pack("{s:I,s:I,s:I,s:s,s:O,s:s}", "jobId",
                    (json_int_t)t->job_id, "taskBatchId",
                    (json_int_t)t->task_batch_id, "parentId",
                    (json_int_t)t->task_id, "taskName", next_task_name,
                    "subTask", sub_tasks, "wfContext", wf ? wf : "{}");
    free(wf);
    if (req != NULL && t->workflow_task_batch_id != 0) {
        json_object_set_new(req, "workflowTaskBatchId",
                            json_integer(t->workflow_task_batch_id));
        json_object_set_new(req, "workflowNodeId",
                            json_integer(t->workflow_node_id));
    }
    args = json_pack("[o]", req);
    body = args != NULL ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    if (body == NULL) {
        snprintf(err, errlen, "cannot encode the map report");
        return SJ_ENOMEM;
    }
    rc = sj_upstream_call(pool->opts.up, "/batch/report/job/map/task/v1",
                          body, &t->stop, &reply, err, errlen);
    free(body);
    if (rc != 0)
        return rc;
    /* Java accepts status 1 or data true (protocol.md §4.4). */
    if (reply.status != SJ_STATUS_YES &&
        !(reply.data && strcmp(reply.data, "true") == 0)) {
        snprintf(err, errlen, "server refused the map report: %s",
                 reply.message ? reply.message : "status 0");
        rc = SJ_EREFUSED;
    }
    sj_reply_free(&reply);
    return rc;
}

/* ---- queue (lock held) ------------------------------------------------- */

static size_t batch_running(sj_pool *pool, int64_t batch)
{
    size_t n = 0;
    for (int i = 0; i < pool->n_workers; i++)
        if (pool->workers[i].current &&
            pool->workers[i].current->task_batch_id == batch)
            n++;
    return n;
}

/* Oldest queued task whose batch may run one more task here. */
static sj_task *take_task(sj_pool *pool)
{
    qnode *prev = NULL;

    for (qnode *q = pool->head; q != NULL; prev = q, q = q->next) {
        sj_task *t = q->t;
        if (t->parallel_num > 0 &&
            batch_running(pool, t->task_batch_id) >= (size_t)t->parallel_num)
            continue;
        if (prev)
            prev->next = q->next;
        else
            pool->head = q->next;
        if (pool->tail == q)
            pool->tail = prev;
        pool->queued--;
        free(q);
        return t;
    }
    return NULL;
}

/* ---- workers ----------------------------------------------------------- */

static void run_task(worker *w, sj_task *t)
{
    sj_pool *pool = w->pool;
    sj_run run;
    long long t0 = sj_mono_ms();
    char *report;
    int stop = atomic_load(&t->stop);

    memset(&run, 0, sizeof run);
    if (stop != SJ_STOP_NONE) {
        /* Its deadline passed, or it was stopped, while it waited. */
        run.outcome = stop == SJ_STOP_TIMEOUT ? SJ_OUT_TIMEOUT
                      : stop == SJ_STOP_SHUTDOWN ? SJ_OUT_SHUTDOWN
                                                 : SJ_OUT_STOPPED;
        const char *why = stop == SJ_STOP_TIMEOUT
                              ? "not started: executor timeout passed while "
                                "the task waited in the queue"
                              : "not started: stopped while queued";
        sj_upstream_log(pool->opts.up, t, SJ_LOG_WARN, why, strlen(why),
                        NULL);
    } else {
        sj_vm_run(w->vm, t, &run);
    }
    SJ_DEBUG("task %lld (batch %lld, %s): %s in %lld ms",
             (long long)t->task_id, (long long)t->task_batch_id,
             t->executor_info, sj_outcome_name(run.outcome),
             sj_mono_ms() - t0);
    report = sj_task_report_json(t, run.outcome, run.result, run.message,
                                 run.wf_changes);
    if (report != NULL)
        sj_upstream_report(pool->opts.up, report);
    else
        SJ_INFO("task %lld (batch %lld) %s: not reported, as the server "
                "already stops it",
                (long long)t->task_id, (long long)t->task_batch_id,
                sj_outcome_name(run.outcome));
    sj_upstream_flush(pool->opts.up);
    sj_run_free(&run);
}

static int open_vm(worker *w, char *err, size_t errlen)
{
    sj_pool *pool = w->pool;
    sj_vm_options vo;

    memset(&vo, 0, sizeof vo);
    vo.files = pool->opts.files;
    vo.n_files = pool->opts.n_files;
    vo.lua_path = pool->opts.lua_path;
    vo.lua_cpath = pool->opts.lua_cpath;
    vo.memory_limit = pool->opts.memory_limit;
    vo.task_log = task_log;
    vo.map_report = map_report;
    vo.ud = pool;
    return sj_vm_open(&vo, &w->vm, err, errlen);
}

static void *worker_thread(void *arg)
{
    worker *w = arg;
    sj_pool *pool = w->pool;
    char name[16], err[1024];
    int rc;

    snprintf(name, sizeof name, "worker-%d", w->index);
    sj_log_thread_name(name);
    rc = open_vm(w, err, sizeof err);
    pthread_mutex_lock(&pool->lock);
    w->ready = rc == 0 ? 1 : -1;
    if (rc != 0 && pool->load_error[0] == '\0')
        snprintf(pool->load_error, sizeof pool->load_error, "%s", err);
    pthread_cond_broadcast(&pool->cond);
    while (rc == 0 && !pool->shutting_down) {
        sj_task *t = take_task(pool);
        if (t == NULL) {
            pthread_cond_wait(&pool->cond, &pool->lock);
            continue;
        }
        w->current = t;
        pthread_mutex_unlock(&pool->lock);

        run_task(w, t);
        if (sj_vm_needs_rebuild(w->vm)) {
            /* Interrupted or out of memory: start from a clean state. */
            sj_vm_close(w->vm);
            w->vm = NULL;
            if (open_vm(w, err, sizeof err) != 0) {
                SJ_ERROR("worker-%d cannot rebuild its Lua state: %s",
                         w->index, err);
            }
        }

        pthread_mutex_lock(&pool->lock);
        w->current = NULL;
        sj_task_free(t);
        if (w->vm == NULL)
            break;
        pthread_cond_broadcast(&pool->cond); /* a batch slot freed */
    }
    pthread_mutex_unlock(&pool->lock);
    sj_vm_close(w->vm);
    w->vm = NULL;
    return NULL;
}

/* Turns passed deadlines into stop flags, so that blocking waits (map
 * reports, sj.sleep) end too, not only running Lua code. */
static void *watchdog_thread(void *arg)
{
    sj_pool *pool = arg;
    struct timespec ts = {0, WATCHDOG_MS * 1000000};

    sj_log_thread_name("watchdog");
    pthread_mutex_lock(&pool->lock);
    while (!pool->shutting_down) {
        long long now = sj_mono_ms();
        for (int i = 0; i < pool->n_workers; i++) {
            sj_task *t = pool->workers[i].current;
            int none = SJ_STOP_NONE;
            if (t != NULL && t->deadline_ms > 0 && now >= t->deadline_ms)
                atomic_compare_exchange_strong(&t->stop, &none,
                                               SJ_STOP_TIMEOUT);
        }
        for (qnode *q = pool->head; q != NULL; q = q->next) {
            int none = SJ_STOP_NONE;
            if (q->t->deadline_ms > 0 && now >= q->t->deadline_ms)
                atomic_compare_exchange_strong(&q->t->stop, &none,
                                               SJ_STOP_TIMEOUT);
        }
        pthread_mutex_unlock(&pool->lock);
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* ---- public ------------------------------------------------------------ */

int sj_pool_dispatch(void *ud, sj_task *t, char *why, size_t whylen)
{
    sj_pool *pool = ud;
    qnode *q;

    pthread_mutex_lock(&pool->lock);
    if (pool->shutting_down) {
        pthread_mutex_unlock(&pool->lock);
        snprintf(why, whylen, "snailjob-lua is shutting down");
        return SJ_ECLOSED;
    }
    if (pool->queued >= (size_t)pool->opts.queue_size ||
        (q = malloc(sizeof *q)) == NULL) {
        size_t n = pool->queued;
        pthread_mutex_unlock(&pool->lock);
        snprintf(why, whylen,
                 "snailjob-lua task queue is full (%zu waiting, queue_size "
                 "%d): try another client",
                 n, pool->opts.queue_size);
        return SJ_EFULL;
    }
    t->received_ms = sj_mono_ms();
    if (t->executor_timeout > 0)
        t->deadline_ms = t->received_ms + (long long)t->executor_timeout * 1000;
    q->t = t;
    q->next = NULL;
    if (pool->tail)
        pool->tail->next = q;
    else
        pool->head = q;
    pool->tail = q;
    pool->queued++;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

void sj_pool_stop_batch(void *ud, int64_t batch)
{
    sj_pool *pool = ud;
    qnode *keep = NULL, **link = &keep, *q, *next;
    size_t dropped = 0, flagged = 0;

    pthread_mutex_lock(&pool->lock);
    for (int i = 0; i < pool->n_workers; i++) {
        sj_task *t = pool->workers[i].current;
        int none = SJ_STOP_NONE;
        if (t != NULL && t->task_batch_id == batch &&
            atomic_compare_exchange_strong(&t->stop, &none, SJ_STOP_SERVER))
            flagged++;
    }
    pool->tail = NULL;
    for (q = pool->head; q != NULL; q = next) {
        next = q->next;
        if (q->t->task_batch_id == batch) {
            sj_task_free(q->t);
            free(q);
            pool->queued--;
            dropped++;
            continue;
        }
        q->next = NULL;
        *link = q;
        link = &q->next;
        pool->tail = q;
    }
    pool->head = keep;
    pthread_mutex_unlock(&pool->lock);
    if (flagged || dropped)
        SJ_INFO("batch %lld stopped: %zu running task(s) interrupted, %zu "
                "queued dropped",
                (long long)batch, flagged, dropped);
}

int sj_pool_start(const sj_pool_options *opts, sj_pool **out, char *err,
                  size_t errlen)
{
    sj_pool *pool;
    int started = 0, rc = 0;

    if ((pool = calloc(1, sizeof *pool)) == NULL)
        return SJ_ENOMEM;
    pool->opts = *opts;
    pool->n_workers = opts->workers > 0 ? opts->workers : 1;
    pool->workers = calloc((size_t)pool->n_workers, sizeof *pool->workers);
    if (pool->workers == NULL) {
        free(pool);
        return SJ_ENOMEM;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);

    for (int i = 0; i < pool->n_workers; i++) {
        worker *w = &pool->workers[i];
        w->pool = pool;
        w->index = i + 1;
        if (pthread_create(&w->thread, NULL, worker_thread, w) != 0) {
            snprintf(err, errlen, "cannot start worker threads");
            rc = SJ_ENOMEM;
            break;
        }
        started++;
    }
    /* Wait until every worker loaded its state (or one failed). */
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        int ready = 0, failed = 0;
        for (int i = 0; i < started; i++) {
            ready += pool->workers[i].ready == 1;
            failed += pool->workers[i].ready == -1;
        }
        if (failed > 0 || ready + failed == started)
            break;
        pthread_cond_wait(&pool->cond, &pool->lock);
    }
    if (rc == 0 && pool->load_error[0] != '\0') {
        snprintf(err, errlen, "%s", pool->load_error);
        rc = SJ_ELUA;
    }
    pthread_mutex_unlock(&pool->lock);
    if (rc == 0)
        rc = sj_vm_executor_list(pool->workers[0].vm, &pool->names,
                                 &pool->kinds, &pool->n_names);
    if (rc == 0 &&
        pthread_create(&pool->watchdog, NULL, watchdog_thread, pool) != 0)
        rc = SJ_ENOMEM;
    if (rc != 0) {
        pthread_mutex_lock(&pool->lock);
        pool->shutting_down = 1;
        pthread_cond_broadcast(&pool->cond);
        pthread_mutex_unlock(&pool->lock);
        for (int i = 0; i < started; i++)
            pthread_join(pool->workers[i].thread, NULL);
        sj_vm_executor_list_free(pool->names, pool->kinds, pool->n_names);
        pthread_cond_destroy(&pool->cond);
        pthread_mutex_destroy(&pool->lock);
        free(pool->workers);
        free(pool);
        return rc;
    }
    *out = pool;
    return 0;
}

void sj_pool_stop(sj_pool *pool)
{
    long long until = sj_mono_ms() + SHUTDOWN_GRACE_MS;
    size_t running;

    if (pool == NULL)
        return;
    /* Let running tasks finish for a while; queued ones never start. */
    pthread_mutex_lock(&pool->lock);
    while (pool->head != NULL) {
        qnode *q = pool->head;
        pool->head = q->next;
        sj_task_free(q->t);
        free(q);
    }
    pool->tail = NULL;
    pool->queued = 0;
    for (;;) {
        running = 0;
        for (int i = 0; i < pool->n_workers; i++)
            running += pool->workers[i].current != NULL;
        if (running == 0 || sj_mono_ms() >= until)
            break;
        pthread_mutex_unlock(&pool->lock);
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&pool->lock);
    }
    for (int i = 0; i < pool->n_workers; i++) {
        sj_task *t = pool->workers[i].current;
        if (t != NULL)
            atomic_store(&t->stop, SJ_STOP_SHUTDOWN);
    }
    pool->shutting_down = 1;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    if (running > 0)
        SJ_WARN("shutdown: interrupting %zu running task(s)", running);
    for (int i = 0; i < pool->n_workers; i++)
        pthread_join(pool->workers[i].thread, NULL);
    pthread_join(pool->watchdog, NULL);
    sj_vm_executor_list_free(pool->names, pool->kinds, pool->n_names);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool->workers);
    free(pool);
}

size_t sj_pool_executors(sj_pool *pool, const char *const **names,
                         const char *const **kinds)
{
    *names = (const char *const *)pool->names;
    *kinds = (const char *const *)pool->kinds;
    return pool->n_names;
}

void sj_pool_counts(sj_pool *pool, size_t *queued, size_t *running)
{
    pthread_mutex_lock(&pool->lock);
    *queued = pool->queued;
    *running = 0;
    for (int i = 0; i < pool->n_workers; i++)
        *running += pool->workers[i].current != NULL;
    pthread_mutex_unlock(&pool->lock);
}
