/*
 * sj_pool.h - the worker threads, their Lua VMs and the task queue.
 *
 * N workers, each owning one sj_vm (one lua_State) that only it touches.
 * Dispatched tasks wait in one bounded FIFO; a worker takes the oldest task
 * whose batch is below its parallelNum on this host. A watchdog thread
 * turns passed executor deadlines into stop flags; /job/stop/v1 sets the
 * flag of every running task of the batch and drops its queued ones. The
 * VM's hook turns a flag into an interruption (sj_vm.h). Finished tasks are
 * reported through sj_upstream, or deliberately not (sj_task_report_json).
 *
 * sj_pool_dispatch/_stop_batch: any thread (the endpoint's). Start/stop:
 * the main thread.
 */
#ifndef SJ_POOL_H
#define SJ_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "sj_task.h"
#include "sj_upstream.h"

typedef struct sj_pool sj_pool;

typedef struct sj_pool_options {
    int workers;
    int queue_size;
    const char *const *files; /* executor files, expanded, in load order */
    size_t n_files;
    const char *lua_path;     /* extra package.path entries or "" */
    const char *lua_cpath;
    size_t memory_limit;      /* bytes per Lua state, 0 = none */
    sj_upstream *up;          /* borrowed */
} sj_pool_options;

/* Start the workers; each loads every executor file into its own state.
 * A file that fails to load fails the start with `err` naming it. */
int sj_pool_start(const sj_pool_options *opts, sj_pool **out, char *err,
                  size_t errlen);

/* Interrupt running tasks (not reported), drop queued ones, join. */
void sj_pool_stop(sj_pool *pool);

/* sj_endpoint_ops.dispatch / .stop */
int sj_pool_dispatch(void *pool, sj_task *t, char *why, size_t whylen);
void sj_pool_stop_batch(void *pool, int64_t task_batch_id);

/* Executor names and kinds as loaded ("job", "map", "map_reduce"); the
 * arrays stay valid until sj_pool_stop. */
size_t sj_pool_executors(sj_pool *pool, const char *const **names,
                         const char *const **kinds);

/* Tasks waiting and running, for tests and benchmarks. */
void sj_pool_counts(sj_pool *pool, size_t *queued, size_t *running);

#endif
