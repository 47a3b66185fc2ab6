/*
 * sj_lualib.h - the C half of the `snailjob` Lua module, and the per-state
 * run context it works in.
 *
 * sj_lualib_preload() puts two loaders in package.preload of a state:
 * "snailjob.core" (the C functions below, registered with luaL_newlib) and
 * "snailjob" (lua/snailjob.lua, compiled into the binary), so executors
 * write `local sj = require "snailjob"` and nothing is a global.
 *
 * Each state carries one sj_lualib_ctx, owned by its sj_vm and reachable
 * from any coroutine of the state through lua_getextraspace. The context
 * names the task being run (if any), the host callbacks, and the
 * interruption state; the machinery that enforces the limits (hook,
 * marker, allocator refusal, cleanup budget) is sj_limits.
 *
 * Threads: everything here runs on the thread that owns the state. The only
 * thing other threads touch is sj_task.stop (an atomic), read here.
 *
 * Registry keys are addresses of static chars in sj_lualib.c; the executor
 * registry is a Lua table (name -> entry) readable with
 * sj_lualib_push_executors().
 */
#ifndef SJ_LUALIB_H
#define SJ_LUALIB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <lua.h>

#include "sj_log.h"
#include "sj_task.h"
#include "sj_vm.h" /* the callback types */

/* Why a run was interrupted by the host. */
typedef enum sj_trip {
    SJ_TRIP_NONE = 0,
    SJ_TRIP_SERVER,   /* t->stop == SJ_STOP_SERVER */
    SJ_TRIP_SHUTDOWN, /* t->stop == SJ_STOP_SHUTDOWN */
    SJ_TRIP_TIMEOUT,  /* deadline passed, or t->stop == SJ_STOP_TIMEOUT */
    SJ_TRIP_NOMEM     /* the allocator refused growth past the cap */
} sj_trip;

typedef struct sj_lualib_ctx {
    /* set once by the owner, before sj_lualib_preload */
    sj_task_log_cb task_log;
    sj_task_log_wait_cb task_log_wait;
    sj_map_report_cb map_report;
    void *ud;
    size_t mem_cap; /* for messages; 0 = none */

    lua_State *L; /* the main thread (set by attach) */

    /* lifecycle, maintained by the owner */
    bool loading;          /* executor files may declare executors now */
    const char *load_file; /* the file being loaded (messages) */

    /* the current run; task == NULL between runs */
    sj_task *task;
    int stage;                /* SJ_STAGE_* the handler was routed for */
    unsigned long run_serial; /* bumped per run; stale `args` see it */

    /* interruption: written on the owner thread only */
    bool armed;           /* the hook and allocator enforce limits */
    bool mem_refused;     /* the allocator refused growth (any time) */
    sj_trip tripped;      /* first reason the run was interrupted */
    unsigned alloc_ticks; /* allocator's clock-poll divider */
    char trip_where[96];  /* "file.lua:3" where it was tripped, or "" */

    /* limits (sj_limits.c), owner thread unless noted */
    long long cleanup_ms;      /* budget for __close after a trip */
    long long cleanup_until;   /* mono ms; 0 = no trip yet */
    long long load_deadline;   /* mono ms while a load is armed, 0 none */
    bool loading_armed;        /* a load (or close) is armed, not a run */
    bool watch_signals;        /* a pending SIGTERM/SIGINT trips a load */
    bool closing;              /* lua_close runs: time bounded, not memory */
    unsigned hook_ticks;       /* divider for recording `seen` */
    pthread_mutex_t seen_lock; /* guards seen (read by a watchdog) */
    char seen[96];             /* where the run was last seen */
    char warn[256];            /* a warning being assembled */
    size_t warn_len;
} sj_lualib_ctx;

/* The context of the state `L` belongs to (any coroutine of it). */
sj_lualib_ctx *sj_lualib_ctx_of(lua_State *L);

/*
 * Store `ctx` in the extra space of the fresh state `L` and attach the
 * limits (sj_limits_attach: the count hook on its main thread): every
 * coroutine copies both when created, so even coroutines made while the
 * files load are covered. Allocates nothing; call right after
 * lua_newstate. Stack: unchanged.
 */
void sj_lualib_attach(lua_State *L, sj_lualib_ctx *ctx);

/*
 * Create the private registry entries and put "snailjob" and
 * "snailjob.core" in package.preload (the sandbox, sj_sandbox, is applied
 * separately). Call once, after luaL_openlibs, in protected mode (it
 * allocates and may raise). Stack: unchanged.
 */
void sj_lualib_preload(lua_State *L);

/* Lua C function for package.preload["snailjob.core"]: pushes the core. */
int sj_lualib_open_core(lua_State *L);

/* "file.lua:42" of the nearest script frame at `level` or above (frames of
 * lua/snailjob.lua skipped), or "". */
void sj_lualib_where(lua_State *L, int level, char *buf, size_t n);

/* The same for the function a hook fired in (`ar` of level 0). */
void sj_lualib_where_at(lua_State *L, lua_Debug *ar, char *buf, size_t n);

/* Push the executor registry: a table name -> entry, where entry is
 * { kind = "job"|"map"|"map_reduce", spec = <spec>, where = "file:line" }
 * (spec as lua/snailjob.lua documents). Stack: +1. */
void sj_lualib_push_executors(lua_State *L);

/* Push the metatable of sj.success/sj.failure results, or nil before the
 * module was loaded. Stack: +1. */
void sj_lualib_push_result_mt(lua_State *L);

/*
 * Build the handler's `args` table for ctx->task per lua-api.md
 * "Arguments", with the methods append_context, get_wf_context and
 * is_stopped. May raise (allocation, bad wf_context is only logged).
 * Stack: +1.
 */
void sj_lualib_push_args(lua_State *L, sj_lualib_ctx *ctx);

/*
 * The workflow context changes recorded through args:append_context during
 * the current run, as a new JSON object; NULL when there are none (unless
 * `keep_empty`, then an empty object). Call in protected mode: it may raise
 * (memory). Stack: unchanged.
 */
json_t *sj_lualib_wf_changes(lua_State *L, bool keep_empty);

/* Write a host-generated line to the running task's log (if any) and to the
 * host log. */
void sj_lualib_task_line(sj_lualib_ctx *ctx, sj_log_level level,
                         const char *msg, size_t len, const char *location);

#endif
