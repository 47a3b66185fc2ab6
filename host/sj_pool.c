#include "sj_pool.h"

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sj_config.h"
#include "sj_error.h"
#include "sj_idset.h"
#include "sj_json.h"
#include "sj_log.h"
#include "sj_metrics.h"
#include "sj_vm.h"

#define STOP_GRACE_MS 3000 /* default stop_grace */

#define WATCHDOG_MS 10    /* deadline resolution */
#define IDLE_TRIM_MS 1000 /* idle this long after tasks: malloc_trim */
#define SHUTDOWN_GRACE_MS 5000

typedef struct qnode {
    struct qnode *next;
    sj_task *t;
    size_t bytes; /* task_bytes(t), counted in pool->queued_bytes */
} qnode;

/*
 * One generation of executor code: the file list, each file's text as read
 * when the generation was made, and the executors it declares. Immutable
 * once published; shared by reference count (the pool holds one for its
 * current generation, each worker one for the generation its VM was built
 * from), freed by whoever drops the last reference.
 */
typedef struct gen {
    atomic_int refs;
    unsigned long long number;
    size_t n;
    char **paths;
    char **texts;
    size_t *lens;
    char **names; /* executor names and kinds, sorted by name */
    char **kinds;
    size_t n_names;
    char **modules; /* module files its load required (sj_vm_module_files) */
    size_t n_modules;
} gen;

typedef struct worker worker;
static void *worker_thread(void *arg);
static void pool_unref(sj_pool *pool);

struct worker {
    sj_pool *pool;
    int index;
    pthread_t thread;
    sj_vm *vm; /* this thread's only */
    gen *gen;  /* what vm was built from; this thread's only */
    unsigned long long failed_gen; /* last generation it could not build */
    atomic_ullong gen_number;      /* gen->number, for other threads */
    atomic_size_t lua_bytes;       /* vm's memory after its last task */
    sj_task *current;              /* guarded by pool->lock */
    int ready; /* 1 loaded, -1 failed; guarded by pool->lock */
    /* retirement, guarded by pool->lock: the thread running `current`
     * is this slot's only while `incarnation` is what it saw at take */
    unsigned incarnation;
    int finishing;       /* its run returned: it reports, not the watchdog */
    long long stop_seen; /* when the watchdog first saw current's stop */
    int exited;          /* the slot's thread left its loop */
    int no_thread;       /* retired at shutdown: nothing to join */
    /* idle: waiting on its own `wake`, on the pool's idle stack (a busy
     * worker, the only kind ever retired, is never on it) */
    pthread_cond_t wake;
    int idle;           /* guarded by pool->lock */
    worker *idle_below; /* next on the idle stack */
};

struct sj_pool {
    sj_pool_options opts;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* state, for the threads that start/stop it */
    /* Idle workers, the most recently idle on top: a dispatch wakes that
     * one only (its caches are warm; the others stay asleep when fewer
     * workers keep up with the load). Guarded by lock. */
    worker *idle_top;
    /* At most one worker spins for a moment before it sleeps (see
     * spin_for_task); a dispatch wakes nobody while it does. */
    int spinning;  /* guarded by lock */
    int spin_pays; /* the last idle period ended within SPIN_US; lock */
    atomic_ullong dispatches; /* tasks queued so far, read while spinning */
    qnode *head, *tail;
    sj_idset queued_ids; /* the task ids of the queue, for duplicates */
    size_t queued;
    size_t queued_bytes; /* about what the queued tasks hold */
    int shutting_down;
    int draining; /* sj_pool_drain_begin: dispatches refused */
    worker *workers;
    int n_workers;
    pthread_t watchdog;
    char load_error[1024];
    /* fan-out ordering, see deliver(); guarded by lock */
    struct fan *fans; /* tasks holding their batch's report barrier */
    gen *gen;         /* current generation; guarded by lock */
    pthread_mutex_t reload_lock; /* one sj_pool_reload at a time */
    atomic_int refs;             /* sj_pool_stop's + one per retired thread */
    atomic_size_t retired;       /* workers retired so far */
};

/* ---- generations ------------------------------------------------------- */

static void gen_unref(gen *g)
{
    if (g == NULL || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    for (size_t i = 0; i < g->n; i++) {
        free(g->paths[i]);
        free(g->texts[i]);
    }
    free(g->paths);
    free(g->texts);
    free(g->lens);
    sj_vm_executor_list_free(g->names, g->kinds, g->n_names);
    for (size_t i = 0; i < g->n_modules; i++)
        free(g->modules[i]);
    free(g->modules);
    free(g);
}

static gen *gen_ref(gen *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

static int read_text(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, *v;
    size_t n = 0, cap = 0, got;

    if (f == NULL)
        return -1;
    do {
        if (cap - n < 4096) {
            cap = cap ? 2 * cap : 8192;
            if ((v = realloc(buf, cap + 1)) == NULL) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return -1;
            }
            buf = v;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    if (ferror(f)) {
        free(buf);
        fclose(f);
        errno = EIO;
        return -1;
    }
    fclose(f);
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

/* A generation (number 0, one reference, no executor list yet) holding a
 * snapshot of every file. SJ_ENOENT with `err` naming an unreadable file. */
static int gen_new(const char *const *files, size_t n, gen **out, char *err,
                   size_t errlen)
{
    gen *g = calloc(1, sizeof *g);

    if (g == NULL)
        goto fail_mem;
    atomic_init(&g->refs, 1);
    g->paths = calloc(n ? n : 1, sizeof *g->paths);
    g->texts = calloc(n ? n : 1, sizeof *g->texts);
    g->lens = calloc(n ? n : 1, sizeof *g->lens);
    if (g->paths == NULL || g->texts == NULL || g->lens == NULL)
        goto fail_mem;
    g->n = n; /* gen_unref frees the NULL slots too */
    for (size_t i = 0; i < n; i++) {
        if ((g->paths[i] = strdup(files[i])) == NULL)
            goto fail_mem;
        if (read_text(files[i], &g->texts[i], &g->lens[i]) != 0) {
            snprintf(err, errlen, "cannot read executor file %s: %s", files[i],
                     strerror(errno));
            gen_unref(g);
            return SJ_ENOENT;
        }
    }
    *out = g;
    return 0;
fail_mem:
    if (g != NULL && (g->paths == NULL || g->texts == NULL || g->lens == NULL))
        g->n = 0;
    gen_unref(g);
    snprintf(err, errlen, "out of memory reading the executor files");
    return SJ_ENOMEM;
}

/* Copy vm's module file list into g (0 or SJ_ENOMEM). */
static int gen_set_modules(gen *g, const sj_vm *vm)
{
    const char *const *files;
    size_t n = sj_vm_module_files(vm, &files);
    g->modules = calloc(n ? n : 1, sizeof *g->modules);
    if (g->modules == NULL)
        return SJ_ENOMEM;
    for (; g->n_modules < n; g->n_modules++)
        if ((g->modules[g->n_modules] = strdup(files[g->n_modules])) == NULL)
            return SJ_ENOMEM;
    return 0;
}

/* ---- VM callbacks (worker threads) ------------------------------------ */

/* Is t the task of a slot's worker? A retired worker's task is not: it was
 * reported already, and the upstream may be gone (lock held). */
static int is_current(sj_pool *pool, const sj_task *t)
{
    for (int i = 0; i < pool->n_workers; i++)
        if (pool->workers[i].current == t)
            return 1;
    return 0;
}

static int task_live(sj_pool *pool, const sj_task *t)
{
    pthread_mutex_lock(&pool->lock);
    int live = is_current(pool, t);
    pthread_mutex_unlock(&pool->lock);
    return live;
}

static void task_log(void *ud, const sj_task *t, sj_log_level level,
                     const char *msg, size_t len, const char *location)
{
    sj_pool *pool = ud;
    if (task_live(pool, t))
        sj_upstream_log(pool->opts.up, t, level, msg, len, location, NULL,
                        NULL);
}

/* A script's sj.log.*: waits for room in the log queue (no pool lock
 * held while it does). */
static int task_log_wait(void *ud, const sj_task *t, sj_log_level level,
                         const char *msg, size_t len, const char *location,
                         int (*due)(void *), void *due_ud)
{
    sj_pool *pool = ud;
    if (!task_live(pool, t))
        return 0;
    return sj_upstream_log(pool->opts.up, t, level, msg, len, location, due,
                           due_ud);
}

/* A task that holds its batch's report barrier (sj_upstream_hold) from
 * its first map report until deliver(). */
struct fan {
    struct fan *next;
    const sj_task *t;
};

static int map_report(void *ud, sj_task *t, const char *next_task_name,
                      json_t *sub_tasks, const json_t *wf_changes, char *err,
                      size_t errlen)
{
    sj_pool *pool = ud;
    json_t *req, *args;
    char *body, *wf;
    sj_reply reply;
    struct fan *f;
    int rc;

    if (!task_live(pool, t)) {
        snprintf(err, errlen, "the task was reported already (retired)");
        return SJ_ECANCELED;
    }
    /* From now on t is a (would-be) parent: hold its batch's other
     * reports before the server can create children (see deliver()). Only
     * this worker's thread adds or removes t's entry. */
    pthread_mutex_lock(&pool->lock);
    for (f = pool->fans; f != NULL && f->t != t; f = f->next)
        ;
    pthread_mutex_unlock(&pool->lock);
    if (f == NULL && (f = malloc(sizeof *f)) != NULL) {
        if (sj_upstream_hold(pool->opts.up, t->task_batch_id) == 0) {
            f->t = t;
            pthread_mutex_lock(&pool->lock);
            f->next = pool->fans;
            pool->fans = f;
            pthread_mutex_unlock(&pool->lock);
        } else {
            free(f);
        }
    }

    wf = wf_changes != NULL ? sj_json_text(wf_changes) : NULL;
    req = json_pack("{s:I,s:I,s:I,s:s,s:O,s:s}", "jobId", (json_int_t)t->job_id,
                    "taskBatchId", (json_int_t)t->task_batch_id, "parentId",
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
    body = args != NULL ? sj_json_text(args) : NULL;
    json_decref(args);
    if (body == NULL) {
        snprintf(err, errlen, "cannot encode the map report");
        return SJ_ENOMEM;
    }
    rc = sj_upstream_call(pool->opts.up, "/batch/report/job/map/task/v1", body,
                          &t->stop, &reply, err, errlen);
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

/*
 * Hand t's report (may be NULL: not reported) to the upstream, keeping the
 * fan-out order of protocol.md §6.6: the server completes a batch only on
 * a leaf's report and only once no task of it is RUNNING; a non-leaf
 * parent's own report never completes it. Children often run here while
 * their parent still waits for its map report's answer (§4.4), and a leaf
 * reporting before that parent would leave the batch RUNNING until its
 * timeout. So a task that called map_report holds its batch's report
 * barrier in the upstream (sj_upstream.h): the other reports of the batch
 * are journaled but wait until the parent's own report is acknowledged,
 * or until it ends unreported. Never blocks a worker.
 */
/* Unlink t's fan entry, if any (lock held); the caller frees it. */
static struct fan *fan_take(sj_pool *pool, const sj_task *t)
{
    for (struct fan **fp = &pool->fans; *fp != NULL; fp = &(*fp)->next)
        if ((*fp)->t == t) {
            struct fan *mine = *fp;
            *fp = mine->next;
            return mine;
        }
    return NULL;
}

/* The upstream half of deliver, for a batch whose fan entry was taken. */
static void deliver_taken(sj_pool *pool, int64_t batch, char *report,
                          struct fan *mine)
{
    if (report != NULL)
        sj_upstream_report_task(pool->opts.up, batch, report, mine != NULL);
    else if (mine != NULL)
        sj_upstream_release(pool->opts.up, batch);
    free(mine);
}

static void deliver(sj_pool *pool, const sj_task *t, char *report)
{
    pthread_mutex_lock(&pool->lock);
    struct fan *mine = fan_take(pool, t);
    pthread_mutex_unlock(&pool->lock);
    deliver_taken(pool, t->task_batch_id, report, mine);
}

/* ---- idle workers (lock held) ------------------------------------------ */

static void idle_remove(sj_pool *pool, worker *w)
{
    if (!w->idle)
        return;
    for (worker **p = &pool->idle_top; *p != NULL; p = &(*p)->idle_below)
        if (*p == w) {
            *p = w->idle_below;
            break;
        }
    w->idle = 0;
    w->idle_below = NULL;
}

/* Take the most recently idle worker off the idle stack, to be signalled;
 * NULL if none was idle. */
static worker *pop_idle(sj_pool *pool)
{
    worker *w = pool->idle_top;
    if (w != NULL)
        idle_remove(pool, w);
    return w;
}

/* Wake the most recently idle worker; 0 if none was idle. */
static int wake_one(sj_pool *pool)
{
    worker *w = pop_idle(pool);
    if (w == NULL)
        return 0;
    pthread_cond_signal(&w->wake);
    return 1;
}

/* A state change every thread must see: idle workers and the waiters on
 * pool->cond (start, stop). */
static void wake_all(sj_pool *pool)
{
    while (wake_one(pool))
        ;
    pthread_cond_broadcast(&pool->cond);
}

/* ---- queue (lock held) ------------------------------------------------- */

/* A queued task's node leaves the queue (already unlinked): its id leaves
 * the set of queued ids; the task too when `with_task`. */
static void qnode_free(sj_pool *pool, qnode *q, int with_task)
{
    sj_idset_del(&pool->queued_ids, q->t->task_id);
    if (with_task)
        sj_task_free(q->t);
    free(q);
}

static size_t batch_running(sj_pool *pool, int64_t batch)
{
    size_t n = 0;
    for (int i = 0; i < pool->n_workers; i++)
        if (pool->workers[i].current &&
            pool->workers[i].current->task_batch_id == batch)
            n++;
    return n;
}

/* 1 if t's batch may run one more task here. */
static int may_run(sj_pool *pool, const sj_task *t)
{
    return t->parallel_num <= 0 ||
           batch_running(pool, t->task_batch_id) < (size_t)t->parallel_num;
}

/* Wake an idle worker for each queued task that may run now, after the
 * first `self` of them (left to the calling worker, which takes one
 * next). A woken worker that finds nothing sleeps again. */
static void wake_runnable(sj_pool *pool, size_t self)
{
    size_t n = 0;

    for (qnode *q = pool->head; q != NULL && pool->idle_top != NULL;
         q = q->next)
        if (may_run(pool, q->t) && ++n > self)
            wake_one(pool);
}

/* Oldest queued task whose batch may run one more task here. */
static sj_task *take_task(sj_pool *pool)
{
    qnode *prev = NULL;

    for (qnode *q = pool->head; q != NULL; prev = q, q = q->next) {
        sj_task *t = q->t;
        if (!may_run(pool, t))
            continue;
        if (prev)
            prev->next = q->next;
        else
            pool->head = q->next;
        if (pool->tail == q)
            pool->tail = prev;
        pool->queued--;
        pool->queued_bytes -= q->bytes;
        qnode_free(pool, q, 0);
        return t;
    }
    return NULL;
}

/* ---- workers ----------------------------------------------------------- */

/*
 * How long an idle worker stays awake for the next task before it sleeps.
 * Waking a sleeping thread costs a futex and, on a virtual machine whose
 * other CPU is halted, an inter-processor interrupt: 60-95 us measured
 * here, on the path of every dispatch that finds the pool idle (one in
 * flight: the next dispatch comes one round trip after the last report).
 * One worker at a time spins, and only between tasks, never while tasks
 * wait; it yields the CPU on every turn, so a thread with work runs first.
 * It spins only while spinning pays: after a spin that caught nothing,
 * workers sleep at once until a dispatch comes within SPIN_US of one
 * going to sleep again (so dispatches spaced wider than that cost no
 * spinning at all).
 */
#define SPIN_US 300

/* Lock held, nothing to take: spin for a dispatch for up to SPIN_US with
 * the lock released. Returns 1 if this worker spun (the caller looks at
 * the queue again), 0 if another worker spins already. */
static int spin_for_task(sj_pool *pool)
{
    unsigned long long seen = atomic_load(&pool->dispatches);
    long long until;

    if (pool->spinning > 0 || !pool->spin_pays || pool->shutting_down)
        return 0;
    pool->spinning = 1;
    pthread_mutex_unlock(&pool->lock);
    until = sj_mono_us() + SPIN_US;
    while (atomic_load(&pool->dispatches) == seen && sj_mono_us() < until)
        sched_yield();
    pthread_mutex_lock(&pool->lock);
    pool->spinning = 0;
    pool->spin_pays = atomic_load(&pool->dispatches) != seen;
    return 1;
}

#define SHUTDOWN_QUEUED "snailjob-lua host shut down before the task started"
#define SHUTDOWN_RUNNING                                                       \
    "snailjob-lua host shut down: task interrupted after shutdown_grace"
#define SHUTDOWN_STUCK                                                         \
    "snailjob-lua host shut down: task did not stop after shutdown_grace "     \
    "(blocked outside Lua), abandoned"

/* 1 (with `why` giving both sizes) if the run's result is over
 * result_max: it is then reported FAIL instead. */
static int result_over_max(sj_pool *pool, const sj_run *run, char *why,
                           size_t whylen)
{
    size_t n;

    if (run->result == NULL || pool->opts.result_max == 0)
        return 0;
    n = json_dumpb(run->result, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    if (n <= pool->opts.result_max)
        return 0;
    snprintf(why, whylen,
             "result is %zu bytes, over result_max (%zu bytes): not sent", n,
             pool->opts.result_max);
    return 1;
}

/* The metrics of one ended task (sj_metrics.h). */
static void count_outcome(const sj_task *t, sj_outcome out,
                          sj_stop_reason reason, long long ms)
{
    sj_metrics_task_finished(t->executor_info, sj_outcome_name(out),
                             ms / 1000.0);
    switch (out) {
    case SJ_OUT_TIMEOUT:
        sj_metrics_interrupted(SJ_CAUSE_TIMEOUT);
        break;
    case SJ_OUT_NOMEM:
        sj_metrics_interrupted(SJ_CAUSE_MEMORY);
        break;
    case SJ_OUT_SHUTDOWN:
        sj_metrics_interrupted(SJ_CAUSE_SHUTDOWN);
        break;
    case SJ_OUT_STOPPED:
        sj_metrics_interrupted(reason == SJ_STOP_SHUTDOWN ? SJ_CAUSE_SHUTDOWN
                                                          : SJ_CAUSE_STOP);
        break;
    default:
        break;
    }
}

/* Run t on vm; returns 0 once reported, or -1 when the worker was retired
 * meanwhile (incarnation `me` is gone: nothing is reported). */
static int run_task(worker *w, sj_vm *vm, sj_task *t, unsigned me)
{
    sj_pool *pool = w->pool;
    sj_run run;
    long long t0 = sj_mono_ms();
    char *report;
    int stop = atomic_load(&t->stop);

    memset(&run, 0, sizeof run);
    if (stop != SJ_STOP_NONE) {
        /* Its deadline passed, or it was stopped, while it waited. */
        run.outcome = stop == SJ_STOP_TIMEOUT    ? SJ_OUT_TIMEOUT
                      : stop == SJ_STOP_SHUTDOWN ? SJ_OUT_SHUTDOWN
                                                 : SJ_OUT_STOPPED;
        const char *why = stop == SJ_STOP_TIMEOUT
                              ? "not started: executor timeout passed while "
                                "the task waited in the queue"
                              : "not started: stopped while queued";
        sj_upstream_log(pool->opts.up, t, SJ_LOG_WARN, why, strlen(why), NULL,
                        NULL, NULL);
    } else {
        sj_vm_run(vm, t, &run);
    }
    pthread_mutex_lock(&pool->lock);
    if (w->incarnation != me) {
        pthread_mutex_unlock(&pool->lock);
        sj_run_free(&run);
        return -1;
    }
    w->finishing = 1;
    /* Its batch's barrier entry, if it holds one, in the same hold of the
     * lock (deliver's own lock round, per task, is saved). */
    struct fan *mine = fan_take(pool, t);
    pthread_mutex_unlock(&pool->lock);
    count_outcome(t, run.outcome, run.stop_reason, sj_mono_ms() - t0);
    SJ_DEBUG("task %lld (batch %lld, %s): %s in %lld ms", (long long)t->task_id,
             (long long)t->task_batch_id, t->executor_info,
             sj_outcome_name(run.outcome), sj_mono_ms() - t0);
    char toobig[256];
    if (run.outcome == SJ_OUT_STOPPED && run.stop_reason == SJ_STOP_SHUTDOWN)
        run.outcome = SJ_OUT_SHUTDOWN; /* reported FAIL (sj_task.h) */
    if (result_over_max(pool, &run, toobig, sizeof toobig)) {
        SJ_WARN("task %lld (batch %lld): %s", (long long)t->task_id,
                (long long)t->task_batch_id, toobig);
        report =
            sj_task_report_json(t, SJ_OUT_FAILED, NULL, toobig, run.wf_changes);
    } else {
        report = sj_task_report_json(
            t, run.outcome, run.result,
            run.outcome == SJ_OUT_SHUTDOWN ? SHUTDOWN_RUNNING : run.message,
            run.wf_changes);
    }
    if (report == NULL)
        SJ_INFO("task %lld (batch %lld) %s: not reported, as the server "
                "already stops it",
                (long long)t->task_id, (long long)t->task_batch_id,
                sj_outcome_name(run.outcome));
    deliver_taken(pool, t->task_batch_id, report, mine);
    sj_upstream_flush(pool->opts.up);
    sj_run_free(&run);
    return 0;
}

/* A VM built from generation g's snapshot, on the calling thread. */
static int open_vm(sj_pool *pool, const gen *g, sj_vm **vm, char *err,
                   size_t errlen)
{
    sj_vm_options vo;

    memset(&vo, 0, sizeof vo);
    vo.files = (const char *const *)g->paths;
    vo.n_files = g->n;
    vo.sources = (const char *const *)g->texts;
    vo.source_lens = g->lens;
    vo.lua_path = pool->opts.lua_path;
    vo.lua_cpath = pool->opts.lua_cpath;
    vo.builtins = pool->opts.builtins;
    vo.http_allow = pool->opts.http_allow;
    vo.memory_limit = pool->opts.memory_limit;
    vo.lua_allow = pool->opts.lua_allow;
    vo.load_timeout_ms = pool->opts.load_timeout_ms;
    vo.cleanup_ms = pool->opts.cleanup_ms;
    vo.task_log = task_log;
    vo.task_log_wait = task_log_wait;
    vo.map_report = map_report;
    vo.ud = pool;
    return sj_vm_open(&vo, vm, err, errlen);
}

/*
 * Build w's VM from the pool's current generation and switch to it; the
 * previous VM (if any) is closed only once the new one stands. Called
 * with pool->lock held, which is released while building. Returns 0 or
 * the sj_vm_open error, leaving w's VM and generation as they were.
 */
static int rebuild(worker *w, char *err, size_t errlen)
{
    sj_pool *pool = w->pool;
    gen *g = gen_ref(pool->gen);
    long long t0 = sj_mono_ms();
    sj_vm *vm = NULL;
    int rc;

    pthread_mutex_unlock(&pool->lock);
    rc = open_vm(pool, g, &vm, err, errlen);
    if (rc == 0) {
        sj_vm_close(w->vm);
        w->vm = vm;
        gen_unref(w->gen);
        w->gen = g;
        atomic_store(&w->gen_number, g->number);
        atomic_store(&w->lua_bytes, sj_vm_mem_used(vm));
        SJ_DEBUG("worker-%d on generation %llu (built in %lld ms)", w->index,
                 g->number, sj_mono_ms() - t0);
    } else {
        gen_unref(g);
    }
    pthread_mutex_lock(&pool->lock);
    return rc;
}

static void *worker_thread(void *arg)
{
    worker *w = arg;
    sj_pool *pool = w->pool;
    char name[16], err[1024];
    int rc, spun = 0;

    snprintf(name, sizeof name, "worker-%d", w->index);
    sj_log_thread_name(name);
    pthread_mutex_lock(&pool->lock);
    rc = rebuild(w, err, sizeof err);
    w->ready = rc == 0 ? 1 : -1;
    if (rc != 0 && pool->load_error[0] == '\0')
        snprintf(pool->load_error, sizeof pool->load_error, "%s", err);
    pthread_cond_broadcast(&pool->cond);
    while (rc == 0 && !pool->shutting_down) {
        gen *cur = pool->gen;
        if (w->vm == NULL || (cur != w->gen && cur->number != w->failed_gen)) {
            /* Between tasks: a new generation was published (or the last
             * run spoiled the VM). A task never sees the switch. */
            unsigned long long had = w->gen->number;
            if (rebuild(w, err, sizeof err) == 0)
                continue;
            if (w->vm == NULL) {
                SJ_ERROR("worker-%d cannot rebuild its Lua state: %s", w->index,
                         err);
                break;
            }
            w->failed_gen = cur->number;
            SJ_ERROR("worker-%d cannot build generation %llu and keeps "
                     "generation %llu: %s",
                     w->index, cur->number, had, err);
            continue;
        }
        sj_task *t = take_task(pool);
        if (t == NULL && !spun && spin_for_task(pool)) {
            spun = 1;
            continue;
        }
        spun = 0;
        if (t == NULL) {
            long long slept = sj_mono_us();
            w->idle = 1;
            w->idle_below = pool->idle_top;
            pool->idle_top = w;
            pthread_cond_wait(&w->wake, &pool->lock);
            idle_remove(pool, w); /* woken by a spurious wake-up */
            if (sj_mono_us() - slept <= SPIN_US)
                pool->spin_pays = 1; /* a spin would have caught it */
            continue;
        }
        w->current = t;
        w->finishing = 0;
        w->stop_seen = 0;
        unsigned me = w->incarnation;
        sj_vm *vm = w->vm;
        gen *mine = w->gen;
        pthread_mutex_unlock(&pool->lock);

        sj_log_task_begin(t->job_id, t->task_batch_id, t->task_id,
                          t->executor_info);
        int retired = run_task(w, vm, t, me) != 0;
        sj_log_task_end();
        if (retired) {
            /* Retired while stuck: the slot has a new worker; this thread
             * only cleans up what it still owns. */
            sj_vm_close(vm);
            gen_unref(mine);
            sj_task_free(t);
            pool_unref(pool);
            return NULL;
        }
        atomic_store(&w->lua_bytes, sj_vm_mem_used(w->vm));
        if (sj_vm_needs_rebuild(w->vm)) {
            /* Interrupted or out of memory: the loop's top builds a clean
             * state (from the newest generation) before the next task. */
            sj_vm_close(w->vm);
            w->vm = NULL;
        }

        pthread_mutex_lock(&pool->lock);
        w->current = NULL;
        sj_task_free(t);
        /* A batch slot freed: this worker takes the next runnable task
         * itself; idle ones are woken only for runnable tasks beyond that
         * one (waking every idle worker whenever something is queued cost
         * three futile wake-ups per job with 4 workers, one in flight). */
        wake_runnable(pool, 1);
    }
    w->exited = 1;
    pthread_mutex_unlock(&pool->lock);
    sj_vm_close(w->vm);
    w->vm = NULL;
    gen_unref(w->gen);
    w->gen = NULL;
    return NULL;
}

/*
 * Give up on w, whose task has not given up control (lock held): detach
 * its thread, which keeps its VM, generation and task and cleans them up
 * if its call ever returns, and start a fresh worker in the slot. When
 * `report`, the task's report (STOP, or FAIL for a timeout) is built now
 * and handed out by the caller after unlocking (*rep, *fan, *batch).
 */
static void retire(sj_pool *pool, worker *w, int report, char **rep,
                   struct fan **fan, int64_t *batch)
{
    sj_task *t = w->current;
    int stop = atomic_load(&t->stop);
    long long grace = pool->opts.stop_grace_ms;
    char where[96];
    size_t n;

    sj_vm_seen(w->vm, where, sizeof where);
    if (report) {
        char line[300];
        snprintf(line, sizeof line,
                 "the handler did not give up control within stop_grace "
                 "(%.3g s) after its %s, stuck near %s (in a C call): the "
                 "task is given up and its worker retired",
                 (double)grace / 1000.0,
                 stop == SJ_STOP_TIMEOUT ? "timeout" : "stop", where);
        sj_upstream_log(pool->opts.up, t, SJ_LOG_ERROR, line, strlen(line),
                        where, NULL, NULL);
        sj_outcome out = stop == SJ_STOP_TIMEOUT    ? SJ_OUT_TIMEOUT
                         : stop == SJ_STOP_SHUTDOWN ? SJ_OUT_SHUTDOWN
                                                    : SJ_OUT_STOPPED;
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%s; the handler did not give up control within stop_grace "
                 "(%.3g s), stuck near %s: its worker was retired",
                 stop == SJ_STOP_TIMEOUT ? "executor timeout exceeded"
                                         : "stopped",
                 (double)grace / 1000.0, where);
        *rep = sj_task_report_json(t, out, NULL, msg, NULL);
        count_outcome(t, out, SJ_STOP_NONE, sj_mono_ms() - t->received_ms);
        *fan = fan_take(pool, t);
        *batch = t->task_batch_id;
    }
    n = atomic_fetch_add(&pool->retired, 1) + 1;
    sj_metrics_worker_retired();
    SJ_ERROR("worker-%d retired: task %lld (executor %s) did not give up "
             "control within stop_grace %.3g s after its %s, stuck near %s "
             "(in a C call); %zu worker(s) retired so far",
             w->index, (long long)t->task_id,
             t->executor_info ? t->executor_info : "?", (double)grace / 1000.0,
             stop == SJ_STOP_TIMEOUT    ? "timeout"
             : stop == SJ_STOP_SHUTDOWN ? "shutdown stop"
                                        : "stop",
             where, n);
    if (n == (size_t)pool->n_workers + 1)
        SJ_ERROR("degraded: %zu workers retired, more than workers = %d; "
                 "their threads stay stuck and hold their memory (restart "
                 "the host when you can)",
                 n, pool->n_workers);
    atomic_fetch_add(&pool->refs, 1); /* the retired thread's */
    pthread_detach(w->thread);
    w->incarnation++;
    w->current = NULL;
    w->vm = NULL;  /* the retired thread's now */
    w->gen = NULL; /* likewise */
    w->stop_seen = 0;
    w->finishing = 0;
    w->ready = 0;
    w->exited = 0;
    if (pool->shutting_down ||
        pthread_create(&w->thread, NULL, worker_thread, w) != 0) {
        if (!pool->shutting_down)
            SJ_ERROR("worker-%d: cannot start a fresh worker in the retired "
                     "one's place",
                     w->index);
        w->exited = 1;
        w->no_thread = 1;
    }
}

/* Watchdog (lock held): retire workers past stop_grace after their stop.
 * Reports go out after the lock is released (*out: up to n_workers). */
typedef struct retired_report {
    char *report;
    struct fan *fan;
    int64_t batch;
} retired_report;

static size_t retire_stuck(sj_pool *pool, long long now, retired_report *out)
{
    size_t n = 0;
    for (int i = 0; i < pool->n_workers; i++) {
        worker *w = &pool->workers[i];
        sj_task *t = w->current;
        if (t == NULL || w->finishing || atomic_load(&t->stop) == SJ_STOP_NONE)
            continue;
        if (w->stop_seen == 0) {
            w->stop_seen = now;
            continue;
        }
        if (now - w->stop_seen < pool->opts.stop_grace_ms)
            continue;
        retire(pool, w, 1, &out[n].report, &out[n].fan, &out[n].batch);
        n++;
    }
    return n;
}

/* Turns passed deadlines into stop flags, so that blocking waits (map
 * reports, sj.sleep) end too, not only running Lua code. */
static void *watchdog_thread(void *arg)
{
    sj_pool *pool = arg;
    struct timespec ts = {0, WATCHDOG_MS * 1000000};
    long long last_busy = sj_mono_ms();
    int trimmed = 1; /* nothing to give back before the first task */
    retired_report *retired = calloc((size_t)pool->n_workers, sizeof *retired);

    if (retired == NULL) {
        SJ_ERROR("watchdog: out of memory");
        return NULL;
    }

    sj_log_thread_name("watchdog");
    pthread_mutex_lock(&pool->lock);
    while (!pool->shutting_down) {
        long long now = sj_mono_ms();
        int busy = pool->head != NULL;
        for (int i = 0; i < pool->n_workers; i++) {
            sj_task *t = pool->workers[i].current;
            int none = SJ_STOP_NONE;
            busy |= t != NULL;
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
        size_t n_retired = retire_stuck(pool, now, retired);
        if (n_retired > 0) {
            pthread_mutex_unlock(&pool->lock);
            for (size_t i = 0; i < n_retired; i++)
                deliver_taken(pool, retired[i].batch, retired[i].report,
                              retired[i].fan);
            sj_upstream_flush(pool->opts.up);
            pthread_mutex_lock(&pool->lock);
        }
        if (busy) {
            last_busy = now;
            trimmed = 0;
        }
        pthread_mutex_unlock(&pool->lock);
        if (!trimmed && now - last_busy >= IDLE_TRIM_MS) {
            /* Idle after work: hand the heap pages freed by the burst back
             * to the system, so an idle host is as small as a fresh one. */
            malloc_trim(0);
            trimmed = 1;
        }
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    free(retired);
    return NULL;
}

/* ---- public ------------------------------------------------------------ */

/* About the memory a queued task holds: its argument texts. The map or
 * reduce input counts as the argsStr text it was decoded from (which holds
 * it), not by dumping it again on the dispatch path. */
static size_t task_bytes(const sj_task *t)
{
    size_t n = sizeof *t + 256 + strlen(t->job_params);

    if (t->wf_context != NULL)
        n += strlen(t->wf_context);
    if (t->maps != NULL || t->reduces != NULL)
        n += t->args_bytes;
    return n;
}

/* 1 if task `id` is queued or running here. Lock held. */
static int is_duplicate(sj_pool *pool, int64_t id)
{
    for (int i = 0; i < pool->n_workers; i++)
        if (pool->workers[i].current != NULL &&
            pool->workers[i].current->task_id == id)
            return 1;
    return sj_idset_has(&pool->queued_ids, id);
}

int sj_pool_dispatch(void *ud, sj_task *t, char *why, size_t whylen)
{
    sj_pool *pool = ud;
    qnode *q = NULL;

    size_t bytes = task_bytes(t);

    pthread_mutex_lock(&pool->lock);
    if (pool->shutting_down || pool->draining) {
        pthread_mutex_unlock(&pool->lock);
        snprintf(why, whylen,
                 "snailjob-lua is shutting down: not taking new tasks");
        return SJ_ECLOSED;
    }
    if (pool->opts.up != NULL &&
        sj_upstream_backlogged(pool->opts.up, why, whylen)) {
        pthread_mutex_unlock(&pool->lock);
        return SJ_EFULL;
    }
    if (is_duplicate(pool, t->task_id)) {
        pthread_mutex_unlock(&pool->lock);
        /* The server resent a task it already gave us (a lost answer):
         * acknowledge it, but run it once. */
        SJ_WARN("task %lld (batch %lld) dispatched again while queued or "
                "running here: acknowledged, not run twice",
                (long long)t->task_id, (long long)t->task_batch_id);
        sj_task_free(t);
        return 0;
    }
    if (pool->opts.queue_max_bytes > 0 && pool->queued > 0 &&
        pool->queued_bytes + bytes > pool->opts.queue_max_bytes) {
        size_t n = pool->queued, b = pool->queued_bytes;
        pthread_mutex_unlock(&pool->lock);
        snprintf(why, whylen,
                 "snailjob-lua task queue is full by size (%zu waiting, %zu "
                 "bytes, this one %zu, queue_max_bytes %zu): try another "
                 "client",
                 n, b, bytes, pool->opts.queue_max_bytes);
        return SJ_EFULL;
    }
    if (pool->queued >= (size_t)pool->opts.queue_size ||
        (q = malloc(sizeof *q)) == NULL ||
        sj_idset_add(&pool->queued_ids, t->task_id) != 0) {
        free(q);
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
    q->bytes = bytes;
    pool->queued_bytes += bytes;
    if (pool->tail)
        pool->tail->next = q;
    else
        pool->head = q;
    pool->tail = q;
    pool->queued++;
    atomic_fetch_add(&pool->dispatches, 1);
    /* A spinning worker takes it without a wake-up. */
    worker *w = pool->spinning > 0 ? NULL : pop_idle(pool);
    pthread_mutex_unlock(&pool->lock);
    /* Signalled after the unlock, so the worker does not wake only to
     * block on the lock this thread still holds (a futex round trip on
     * every dispatch). It is off the idle stack, so no other wake-up is
     * aimed at it; if it woke spuriously meanwhile and took the task, the
     * signal is one more spurious wake-up it sleeps through. */
    if (w != NULL)
        pthread_cond_signal(&w->wake);
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
            pool->queued_bytes -= q->bytes;
            qnode_free(pool, q, 1);
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
    /* §7.1: nothing more is reported for it, held reports included */
    if (pool->opts.up != NULL)
        sj_upstream_drop_held(pool->opts.up, batch);
}

/* Release what sj_pool_start acquired, once every thread is joined. */
static void pool_free(sj_pool *pool)
{
    gen_unref(pool->gen);
    pthread_mutex_destroy(&pool->reload_lock);
    pthread_cond_destroy(&pool->cond);
    sj_idset_free(&pool->queued_ids);
    pthread_mutex_destroy(&pool->lock);
    for (int i = 0; i < pool->n_workers; i++)
        pthread_cond_destroy(&pool->workers[i].wake);
    free(pool->workers);
    free(pool);
}

static void pool_unref(sj_pool *pool)
{
    if (atomic_fetch_sub(&pool->refs, 1) == 1)
        pool_free(pool);
}

int sj_pool_start(const sj_pool_options *opts, sj_pool **out, char *err,
                  size_t errlen)
{
    sj_pool *pool;
    int started = 0, rc = 0;

    if ((pool = calloc(1, sizeof *pool)) == NULL)
        return SJ_ENOMEM;
    pool->opts = *opts;
    if (pool->opts.stop_grace_ms <= 0)
        pool->opts.stop_grace_ms = STOP_GRACE_MS;
    atomic_init(&pool->refs, 1);
    pool->n_workers = opts->workers > 0 ? opts->workers : 1;
    pool->workers = calloc((size_t)pool->n_workers, sizeof *pool->workers);
    if (pool->workers == NULL) {
        free(pool);
        return SJ_ENOMEM;
    }
    if ((rc = gen_new(opts->files, opts->n_files, &pool->gen, err, errlen)) !=
        0) {
        free(pool->workers);
        free(pool);
        return rc == SJ_ENOENT ? SJ_ELUA : rc;
    }
    pool->gen->number = 1;
    pool->opts.files = NULL; /* borrowed; the generation has its own copy */
    pool->opts.n_files = 0;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    pool->spin_pays = 1;
    pthread_mutex_init(&pool->reload_lock, NULL);
    for (int i = 0; i < pool->n_workers; i++)
        pthread_cond_init(&pool->workers[i].wake, NULL);

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
        rc = sj_vm_executor_list(pool->workers[0].vm, &pool->gen->names,
                                 &pool->gen->kinds, &pool->gen->n_names);
    if (rc == 0)
        rc = gen_set_modules(pool->gen, pool->workers[0].vm);
    if (rc == 0 &&
        pthread_create(&pool->watchdog, NULL, watchdog_thread, pool) != 0)
        rc = SJ_ENOMEM;
    if (rc != 0) {
        pthread_mutex_lock(&pool->lock);
        pool->shutting_down = 1;
        wake_all(pool);
        pthread_mutex_unlock(&pool->lock);
        for (int i = 0; i < started; i++)
            pthread_join(pool->workers[i].thread, NULL);
        pool_free(pool);
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
        qnode_free(pool, q, 1);
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
    wake_all(pool);
    if (running > 0)
        SJ_WARN("shutdown: interrupting %zu running task(s)", running);
    /* Never wait for a worker stuck in a C call: past stop_grace it is
     * retired (its task is not reported, as for any shutdown stop). */
    until = sj_mono_ms() + pool->opts.stop_grace_ms;
    for (;;) {
        int stuck = 0;
        for (int i = 0; i < pool->n_workers; i++) {
            worker *w = &pool->workers[i];
            stuck += !w->exited && w->current != NULL && !w->finishing;
        }
        if (stuck == 0)
            break;
        if (sj_mono_ms() >= until) {
            for (int i = 0; i < pool->n_workers; i++) {
                worker *w = &pool->workers[i];
                if (!w->exited && w->current != NULL && !w->finishing)
                    retire(pool, w, 0, NULL, NULL, NULL);
            }
            break;
        }
        pthread_mutex_unlock(&pool->lock);
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->n_workers; i++)
        if (!pool->workers[i].no_thread)
            pthread_join(pool->workers[i].thread, NULL);
    pthread_join(pool->watchdog, NULL);
    pool_unref(pool);
}

size_t sj_pool_executors(sj_pool *pool, const char *const **names,
                         const char *const **kinds)
{
    /* Only a reload replaces pool->gen, and the caller is the reloading
     * thread (sj_pool.h), so no lock is needed to read it. */
    gen *g = pool->gen;
    *names = (const char *const *)g->names;
    *kinds = (const char *const *)g->kinds;
    return g->n_names;
}

int sj_pool_reload(sj_pool *pool, const char *const *files, size_t n_files,
                   unsigned long long *generation, char *err, size_t errlen)
{
    gen *g = NULL, *old;
    sj_vm *scratch = NULL;
    int rc;

    pthread_mutex_lock(&pool->reload_lock);
    if ((rc = gen_new(files, n_files, &g, err, errlen)) != 0)
        goto fail;
    /* Everything a worker will do, once, here: if this fails, nothing
     * changed anywhere. */
    if ((rc = open_vm(pool, g, &scratch, err, errlen)) != 0)
        goto fail_gen;
    rc = sj_vm_executor_list(scratch, &g->names, &g->kinds, &g->n_names);
    if (rc == 0)
        rc = gen_set_modules(g, scratch);
    sj_vm_close(scratch);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory listing the executors");
        goto fail_gen;
    }
    pthread_mutex_lock(&pool->lock);
    old = pool->gen;
    g->number = old->number + 1;
    pool->gen = g;
    wake_all(pool); /* idle workers switch now */
    pthread_mutex_unlock(&pool->lock);
    gen_unref(old);
    if (generation != NULL)
        *generation = g->number;
    pthread_mutex_unlock(&pool->reload_lock);
    return 0;

fail_gen:
    gen_unref(g);
fail:
    pthread_mutex_unlock(&pool->reload_lock);
    return rc;
}

size_t sj_pool_module_files(sj_pool *pool, const char *const **files)
{
    gen *g = pool->gen; /* as sj_pool_executors: the reloading thread */
    *files = (const char *const *)g->modules;
    return g->n_modules;
}

unsigned long long sj_pool_generation(sj_pool *pool)
{
    unsigned long long n;
    pthread_mutex_lock(&pool->lock);
    n = pool->gen->number;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

size_t sj_pool_worker_generations(sj_pool *pool, unsigned long long *out,
                                  size_t max)
{
    for (int i = 0; i < pool->n_workers && (size_t)i < max; i++)
        out[i] = atomic_load(&pool->workers[i].gen_number);
    return (size_t)pool->n_workers;
}

size_t sj_pool_worker_memory(sj_pool *pool, size_t *out, size_t max)
{
    for (int i = 0; i < pool->n_workers && (size_t)i < max; i++)
        out[i] = atomic_load(&pool->workers[i].lua_bytes);
    return (size_t)pool->n_workers;
}

void sj_pool_options_from_config(sj_pool_options *po, const sj_config *cfg)
{
    po->lua_path = cfg->lua_path;
    po->lua_cpath = cfg->lua_cpath;
    po->memory_limit = (size_t)cfg->memory_limit_mb * 1024 * 1024;
    po->lua_allow = cfg->lua_allow;
    po->load_timeout_ms = (long long)(cfg->load_timeout * 1000.0);
    po->cleanup_ms = (long long)(cfg->cleanup_budget * 1000.0);
    po->stop_grace_ms = (long long)(cfg->stop_grace * 1000.0);
    po->result_max = (size_t)cfg->result_max;
    po->queue_max_bytes = (size_t)cfg->queue_max_bytes;
    po->builtins = cfg->builtins;
    po->http_allow = cfg->http_allow;
}

size_t sj_pool_retired(sj_pool *pool)
{
    return atomic_load(&pool->retired);
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

/* ---- draining (SIGTERM) -------------------------------------------------- */

size_t sj_pool_drain_begin(sj_pool *pool)
{
    qnode *q, *next;
    size_t n = 0;

    pthread_mutex_lock(&pool->lock);
    pool->draining = 1;
    q = pool->head;
    pool->head = pool->tail = NULL;
    pool->queued = 0;
    pool->queued_bytes = 0;
    pthread_mutex_unlock(&pool->lock);
    for (; q != NULL; q = next, n++) {
        next = q->next;
        deliver(pool, q->t,
                sj_task_report_json(q->t, SJ_OUT_SHUTDOWN, NULL,
                                    SHUTDOWN_QUEUED, NULL));
        qnode_free(pool, q, 1);
    }
    if (n > 0)
        sj_upstream_flush(pool->opts.up);
    return n;
}

size_t sj_pool_running(sj_pool *pool)
{
    size_t queued, running;
    sj_pool_counts(pool, &queued, &running);
    return running;
}

void sj_pool_interrupt(sj_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    for (int i = 0; i < pool->n_workers; i++) {
        sj_task *t = pool->workers[i].current;
        if (t != NULL)
            atomic_store(&t->stop, SJ_STOP_SHUTDOWN);
    }
    pthread_mutex_unlock(&pool->lock);
}

size_t sj_pool_abandon(sj_pool *pool)
{
    retired_report *out = calloc((size_t)pool->n_workers, sizeof *out);
    size_t n = 0;

    if (out == NULL)
        return 0;
    pthread_mutex_lock(&pool->lock);
    for (int i = 0; i < pool->n_workers; i++) {
        worker *w = &pool->workers[i];
        sj_task *t = w->current;
        if (t == NULL || w->finishing || w->exited)
            continue;
        /* Retired (sj_pool_stop then never joins it); its report is ours,
         * saying the host shut down, and its late one is never sent. */
        SJ_ERROR("shutdown: task %lld (batch %lld, %s) on worker-%d did not "
                 "stop; reported FAIL and its worker abandoned",
                 (long long)t->task_id, (long long)t->task_batch_id,
                 t->executor_info, w->index);
        out[n].report =
            sj_task_report_json(t, SJ_OUT_SHUTDOWN, NULL, SHUTDOWN_STUCK, NULL);
        out[n].fan = fan_take(pool, t);
        out[n].batch = t->task_batch_id;
        n++;
        retire(pool, w, 0, NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&pool->lock);
    for (size_t i = 0; i < n; i++)
        deliver_taken(pool, out[i].batch, out[i].report, out[i].fan);
    free(out);
    return n;
}
