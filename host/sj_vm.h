/*
 * sj_vm.h - one Lua VM: a lua_State with the executor files loaded, its
 * executor registry, and the run of one task at a time.
 *
 * A VM is built from a list of executor files (sj_vm_open) and then used
 * by exactly one thread, the worker that owns it: open, run, list and
 * close all happen on that thread; VMs share nothing. A reload builds a
 * new VM from the files and the worker switches between tasks (style
 * habit 17); after an interrupted or out-of-memory run the worker should
 * do the same (sj_vm_needs_rebuild), since the handler was cut off at an
 * arbitrary point.
 *
 * The one thing another thread may do during sj_vm_run is set the task's
 * `stop` flag (an atomic, sj_task.h). The run also ends at
 * `t->deadline_ms`. Both are enforced inside the VM by sj_limits (a count
 * hook whose interruption pcall cannot swallow, plus checks in the
 * allocator and in sj.sleep): a handler reacts within milliseconds even if
 * it never checks, except inside a C call (the pool retires such a worker,
 * sj_pool.h). Pending __close handlers then run within the cleanup budget.
 * Loading is bounded the same way (load_timeout, memory cap, signals), and
 * the state is sandboxed (sj_sandbox.h).
 *
 * Ownership: the VM owns its lua_State and copies of everything in the
 * options except `ud`. An sj_run's members are owned by the caller and
 * released with sj_run_free.
 */
#ifndef SJ_VM_H
#define SJ_VM_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "sj_log.h"
#include "sj_task.h"

typedef struct sj_vm sj_vm;

/*
 * Host callbacks (given to sj_vm_open, stored in the context).
 *
 * task_log: one line of a running task's log (sj.log.* inside a task, and
 * the lines the host writes about the run itself: error tracebacks and
 * "interrupted: ..." lines). `msg` has `len` bytes
 * (NUL-terminated, but may hold NULs).
 * `location` is "file.lua:42" for script lines; for the host's own lines it
 * is where the handler was when it was interrupted, or "". Must not call
 * back into the state.
 *
 * task_log_wait: the same for a script's own sj.log.* lines, which may
 * wait (back-pressure) while the host's log queue is full: `due(due_ud)`
 * (cheap, no Lua) says, nonzero, that the run must end and the wait with
 * it; returns 0, or that nonzero value. NULL: those lines go to task_log.
 *
 * map_report: report `sub_tasks` (borrowed JSON array, 1..200 elements) as
 * sub-tasks named `next_task_name` of the map task `t`, with the workflow
 * context changes made so far (`wf_changes`, borrowed object, may be
 * empty). Blocks until the server answered; returns 0, SJ_ECANCELED once
 * t->stop became non-zero while waiting, or another negative code with a
 * sentence (the server's message when it refused) in `err`.
 */
typedef void (*sj_task_log_cb)(void *ud, const sj_task *t, sj_log_level level,
                               const char *msg, size_t len,
                               const char *location);
typedef int (*sj_task_log_wait_cb)(void *ud, const sj_task *t,
                                   sj_log_level level, const char *msg,
                                   size_t len, const char *location,
                                   int (*due)(void *), void *due_ud);
typedef int (*sj_map_report_cb)(void *ud, sj_task *t,
                                const char *next_task_name, json_t *sub_tasks,
                                const json_t *wf_changes, char *err,
                                size_t errlen);

typedef struct sj_vm_options {
    /* Executor files, regular .lua paths, loaded in this order. Each
     * file's directory is also added to package.path as
     * "<dir>/?.lua;<dir>/?/init.lua" so executors can require siblings. */
    const char *const *files;
    size_t n_files;
    /* Optional snapshot of the files' text: when non-NULL, file i is
     * compiled from sources[i] (source_lens[i] bytes, borrowed for the
     * call) instead of being read from disk, with files[i] as its chunk
     * name (messages still say "path:line:"). A reload uses this so that
     * every worker builds exactly the code that was validated. A leading
     * "#" line is skipped as luaL_loadfile does. */
    const char *const *sources;
    const size_t *source_lens;
    /* Prepended to package.path / package.cpath ("a/?.lua;b/?.lua");
     * NULL or "" adds nothing. */
    const char *lua_path;
    const char *lua_cpath;
    /* Bytes the state may hold; growth past it is refused (LUA_ERRMEM).
     * 0 = no cap. */
    size_t memory_limit;
    /* The built-in executors to load before the files (the `builtins`
     * and `http_allow` settings' text, sj_builtins.h); NULL = none. */
    const char *builtins;
    const char *http_allow;
    /* Each file's load may take this long (0 = no limit): past it, the
     * load fails with file:line (SJ_ELUA). With watch_signals, a pending
     * SIGTERM/SIGINT of the calling thread (blocked there) ends a load
     * too, as does sj_limits_abort_loads (SJ_ECANCELED). */
    long long load_timeout_ms;
    bool watch_signals;
    /* Budget for __close handlers (and lua_close's finalizers) once a run
     * was interrupted, in ms. */
    long long cleanup_ms;
    /* What the sandbox gives back (sj_sandbox.h): a ","-list of
     * "os.execute", "io.popen", "debug"; NULL or "" for none. */
    const char *lua_allow;
    /* Host callbacks (above); any may be NULL. */
    sj_task_log_cb task_log;
    sj_task_log_wait_cb task_log_wait;
    sj_map_report_cb map_report;
    void *ud;
} sj_vm_options;

struct sj_config;
/* Fill the settings part of `o` (paths, memory cap, load timeout, cleanup
 * budget, lua_allow) from a loaded config; the rest is left alone. */
void sj_vm_options_from_config(sj_vm_options *o, const struct sj_config *cfg);

/* What a run produced; zeroed by sj_vm_run, released by sj_run_free. */
typedef struct sj_run {
    sj_outcome outcome;
    sj_stop_reason stop_reason; /* with SJ_OUT_STOPPED: SERVER or SHUTDOWN */
    json_t *result;             /* new ref or NULL (SJ_OUT_OK only) */
    char *message;              /* malloc'd or NULL: why it failed */
    json_t *wf_changes;         /* object of changed keys, or NULL */
} sj_run;

/*
 * Build a VM: a state with the capped allocator, the standard libraries,
 * package.path/cpath extended, "snailjob" in package.preload, and every
 * file of `opts` loaded and run (in protected mode, with a traceback).
 * Returns 0 and *out, or a negative SJ_E... code with a sentence in `err`
 * naming the file and line (SJ_ELUA: a file failed to load or run, or
 * declared an executor name already declared, or did not finish within
 * load_timeout; SJ_ECANCELED: a signal or sj_limits_abort_loads ended a
 * load; SJ_ENOMEM; SJ_EINVAL). On error nothing is left open.
 */
int sj_vm_open(const sj_vm_options *opts, sj_vm **out, char *err,
               size_t errlen);

/* Close the state and free the VM (NULL is fine). */
void sj_vm_close(sj_vm *vm);

/* The executors the files declared, sorted by name: i in [0, count).
 * Strings live as long as the VM. `kind` is "job", "map" or "map_reduce". */
size_t sj_vm_executor_count(const sj_vm *vm);
const char *sj_vm_executor_name(const sj_vm *vm, size_t i);
const char *sj_vm_executor_kind(const sj_vm *vm, size_t i);

/* The Lua module files `require` found while the executor files loaded
 * (from the executor folders, lua_path or Lua's defaults), in order;
 * valid as long as the VM. Hot reload watches them. */
size_t sj_vm_module_files(const sj_vm *vm, const char *const **files);

/* The same list as malloc'd copies that outlive the VM (for a list kept
 * across rebuilds): *names and *kinds get *n strings each. Returns 0 or
 * SJ_ENOMEM (nothing allocated then). Free with sj_vm_executor_list_free. */
int sj_vm_executor_list(const sj_vm *vm, char ***names, char ***kinds,
                        size_t *n);
void sj_vm_executor_list_free(char **names, char **kinds, size_t n);

/*
 * Run task `t` (borrowed; it must outlive the call) on the handler its
 * executor name, task type and stage select (lua-api.md), and fill `out`.
 * Blocks until the handler returns or is interrupted. Lines about the run
 * (a raised error with its traceback, "interrupted: ...", a missing
 * executor) go to the task_log callback and the host log.
 * Returns 0, or SJ_EINVAL for NULL arguments; how the run ended is in
 * out->outcome (never SJ_OUT_SHUTDOWN: a shutdown stop is SJ_OUT_STOPPED
 * with out->stop_reason SJ_STOP_SHUTDOWN).
 * Lua stack: empty before and after.
 */
int sj_vm_run(sj_vm *vm, sj_task *t, sj_run *out);

/* True once a run was interrupted (stop, timeout) or hit the memory cap:
 * the owner should close this VM and open a fresh one before the next
 * task. */
bool sj_vm_needs_rebuild(const sj_vm *vm);

/* "file.lua:42" where the current run was last seen (its handler's
 * definition, then wherever the hook last fired), for a watchdog that
 * gives up on a worker stuck in a C call. Any thread, while the run lasts. */
void sj_vm_seen(sj_vm *vm, char *buf, size_t n);

/* Bytes the state holds now. */
size_t sj_vm_mem_used(const sj_vm *vm);

/* Release what a run produced and zero it (NULL is fine). */
void sj_run_free(sj_run *run);

#endif
