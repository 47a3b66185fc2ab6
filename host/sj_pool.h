/*
 * sj_pool.h - the worker threads, their Lua VMs and the task queue.
 *
 * N workers, each owning one sj_vm (one lua_State) that only it touches.
 * Dispatched tasks wait in one bounded FIFO; a worker takes the oldest task
 * whose batch is below its parallelNum on this host. A dispatch wakes one
 * idle worker, the one idle most recently (its caches are warm, and under
 * a light load the other workers stay asleep). A watchdog thread
 * turns passed executor deadlines into stop flags; /job/stop/v1 sets the
 * flag of every running task of the batch and drops its queued ones. The
 * VM's hook turns a flag into an interruption (sj_vm.h). Finished tasks are
 * reported through sj_upstream, or deliberately not (sj_task_report_json).
 *
 * Hot reload (style habit 17) works by generations. A generation is the
 * executor file list plus a snapshot of each file's text, numbered from 1
 * (the start) and immutable once published. sj_pool_reload reads the files,
 * builds one scratch VM from the snapshot on the calling thread, and only
 * if that succeeds publishes the new generation; otherwise nothing changes.
 * Each worker compares its VM's generation with the current one between
 * tasks and, when they differ, builds a fresh VM from the new snapshot on
 * its own thread (idle workers are woken for this) and closes the old one.
 * A task that started on the old code finishes on it. Modules the files
 * `require` are read from disk by each build, not snapshotted; the files
 * a generation's load required are listed (sj_pool_module_files) so that
 * a change to one reloads too.
 *
 * sj_pool_dispatch/_stop_batch: any thread (the endpoint's). Start/stop:
 * the main thread. sj_pool_reload/_executors: one reloading thread at a
 * time (reloads are serialised anyway). _generation, _worker_generations,
 * _counts: any thread.
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
    const char *const *files; /* executor files, expanded, in load order;
                                 read at start, not kept */
    size_t n_files;
    const char *lua_path; /* extra package.path entries or "" */
    const char *lua_cpath;
    size_t memory_limit;       /* bytes per Lua state, 0 = none */
    size_t result_max;         /* a larger result is reported FAIL; 0 = none */
    size_t queue_max_bytes;    /* queued dispatches' bytes, then refused */
    sj_upstream *up;           /* borrowed */
    const char *lua_allow;     /* sj_sandbox.h; NULL or "" for none */
    long long load_timeout_ms; /* per executor file load; 0 = none */
    long long cleanup_ms;      /* __close budget after an interruption */
    /* A running task that has not given up control this long after its
     * stop or timeout is reported at once and its worker retired (below);
     * 0 = 3000. */
    long long stop_grace_ms;
    const char *builtins;   /* the `builtins` setting's text, or NULL */
    const char *http_allow; /* the `http_allow` setting's text, or NULL */
} sj_pool_options;

struct sj_config;
/* Fill the settings part of `po` (paths, memory cap, lua_allow, load
 * timeout, cleanup budget, stop_grace, builtins, http_allow) from a
 * loaded config. */
void sj_pool_options_from_config(sj_pool_options *po,
                                 const struct sj_config *cfg);

/* Start the workers on generation 1; each loads every executor file into
 * its own state. A file that cannot be read or fails to load fails the
 * start (SJ_ELUA) with `err` naming it. */
int sj_pool_start(const sj_pool_options *opts, sj_pool **out, char *err,
                  size_t errlen);

/* Interrupt running tasks (not reported), drop queued ones, join. A
 * worker whose task has not given up control within stop_grace of its
 * shutdown stop (stuck in a C call) is retired instead of joined: the
 * stop never waits for it. */
void sj_pool_stop(sj_pool *pool);

/*
 * Worker retirement. A task that has not given up control within
 * stop_grace after its stop or timeout (it is inside a C call, where no
 * hook runs) is reported at once (STOP, or FAIL for a timeout) by the
 * watchdog; its worker thread is detached and never reused (it closes its
 * state and frees the task if the call ever returns, and reports nothing),
 * and a fresh worker takes its slot, so `workers` usable workers remain.
 * Each retirement is logged at ERROR with the executor and where the run
 * was last seen; more retirements than workers log that the host is
 * degraded (stuck threads hold their memory). The pool itself is freed
 * when the last retired thread returns, or never.
 *
 * sj_pool_retired: how many workers were retired so far. Any thread.
 */
size_t sj_pool_retired(sj_pool *pool);

/* sj_endpoint_ops.dispatch / .stop */
int sj_pool_dispatch(void *pool, sj_task *t, char *why, size_t whylen);
void sj_pool_stop_batch(void *pool, int64_t task_batch_id);

/* Executor names and kinds of the current generation, sorted by name
 * ("job", "map", "map_reduce"); the arrays stay valid until the next
 * sj_pool_reload or sj_pool_stop, so call it from the reloading thread. */
size_t sj_pool_executors(sj_pool *pool, const char *const **names,
                         const char *const **kinds);

/* The Lua module files the current generation's load required (its
 * executor files' `require`s, from the executor folders or lua_path), for
 * hot reload to watch; valid like sj_pool_executors' arrays. */
size_t sj_pool_module_files(sj_pool *pool, const char *const **files);

/*
 * Reload: snapshot `files` (expanded, in load order), load them into a
 * scratch VM, and on success publish them as the next generation, whose
 * number goes to *generation (may be NULL). Returns 0, or the error of the
 * first failure with a sentence in `err` naming the file and line (SJ_ELUA:
 * syntax error, error at load, duplicate executor name; SJ_ENOENT: a file
 * cannot be read; SJ_ENOMEM); the current generation then stays in force
 * everywhere. Blocks for the scratch load only; workers switch afterwards
 * (watch sj_pool_worker_generations or the DEBUG line "worker-N on
 * generation G" each switch logs). A dispatch for an executor the new
 * generation no longer declares fails as an unknown executor.
 */
int sj_pool_reload(sj_pool *pool, const char *const *files, size_t n_files,
                   unsigned long long *generation, char *err, size_t errlen);

/* The current (last published) generation number. */
unsigned long long sj_pool_generation(sj_pool *pool);

/* The generation each worker's VM was built from, into out[0..max): a
 * worker still finishing a task on older code shows the older number.
 * Returns the number of workers. */
size_t sj_pool_worker_generations(sj_pool *pool, unsigned long long *out,
                                  size_t max);

/*
 * Draining on SIGTERM (main thread), in this order:
 *  sj_pool_drain_begin: refuse dispatches from now on ("shutting down"),
 *    report every queued task FAIL (the host shut down before it started,
 *    so the server's retry applies) at once; returns how many.
 *  sj_pool_running: tasks still running (poll it while the grace runs).
 *  sj_pool_interrupt: interrupt every running task (reported FAIL, "host
 *    shut down", when its worker comes back).
 *  sj_pool_abandon: report FAIL for each task whose worker did not come
 *    back (stuck in C); its late report, if any, is never sent. Returns
 *    how many. Such workers cannot be joined: exit without sj_pool_stop.
 * Then sj_pool_stop as usual (nothing runs any more). Duplicate dispatches
 * (a taskId queued or running here) are acknowledged and not run again.
 */
size_t sj_pool_drain_begin(sj_pool *pool);
size_t sj_pool_running(sj_pool *pool);
void sj_pool_interrupt(sj_pool *pool);
size_t sj_pool_abandon(sj_pool *pool);

/* Bytes each worker's Lua state held after its last task (or build),
 * into out[0..max). Returns the number of workers. Any thread. */
size_t sj_pool_worker_memory(sj_pool *pool, size_t *out, size_t max);

/* Tasks waiting and running, for tests and benchmarks. */
void sj_pool_counts(sj_pool *pool, size_t *queued, size_t *running);

#endif
