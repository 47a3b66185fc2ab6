/*
 * sj_limits.h - the limits of a Lua state: the count hook, the
 * uncatchable interruption, the allocator's refusal once a run is over its
 * limits, the cleanup budget, the bounded load, and the one mapping from
 * a stop reason to a trip and from a trip to an outcome.
 *
 * The state of the limits lives in the state's sj_lualib_ctx (sj_lualib.h)
 * so any coroutine reaches it. A run is armed by sj_limits_arm_run for
 * ctx->task (stop flag and deadline); a load is armed by
 * sj_limits_arm_load (load deadline, sj_limits_abort_loads and, where
 * asked, a pending SIGTERM/SIGINT of the calling thread). Once tripped,
 * the hook raises the interruption marker (a light userdata no script can
 * forge); pcall can catch it, but the hook raises it again on every
 * instruction once the cleanup budget is spent. Until then, to-be-closed
 * variables' __close handlers (and code that caught the marker) run
 * normally, allocation included: that is the cleanup budget
 * (ctx->cleanup_ms, from the moment of the trip).
 *
 * sj_limits_poll and sj_limits_interrupt are the API other C code uses to
 * make a blocking wait interruptible: poll every few milliseconds, and when
 * it returns a reason, `return sj_limits_interrupt(L, why);`.
 *
 * Threads: everything runs on the thread that owns the state, except
 * sj_limits_abort_loads (any thread, async-signal-safe) and
 * sj_limits_seen (any thread: the place a run was last seen, for a
 * watchdog that gives up on a worker stuck in C).
 */
#ifndef SJ_LIMITS_H
#define SJ_LIMITS_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

#include "sj_log.h"
#include "sj_lualib.h"
#include "sj_task.h"

/* Install the hook, the panic handler and the warning function (both to
 * the host log) on the fresh state `L`, whose ctx is already attached. */
void sj_limits_attach(lua_State *L, sj_lualib_ctx *ctx);

/* Wrap the standard functions that catch errors (pcall, xpcall,
 * coroutine.resume, coroutine.close) so that a caught interruption is
 * raised again at once: once a run is tripped, only __close handlers run
 * (within the cleanup budget), never code after a pcall. Call after
 * luaL_openlibs, in protected mode. Stack: unchanged. */
void sj_limits_open(lua_State *L);

/* Release what attach set up (the ctx's lock); after lua_close. */
void sj_limits_detach(sj_lualib_ctx *ctx);

/* Arm for a run of ctx->task; the handler about to be called is at stack
 * index `fidx` (its definition site is where the run is first "seen"). */
void sj_limits_arm_run(lua_State *L, sj_lualib_ctx *ctx, int fidx);

/* Arm for loading: trips SJ_TRIP_TIMEOUT after timeout_ms (0 = none) and
 * SJ_TRIP_SHUTDOWN after sj_limits_abort_loads or, when watch_signals, a
 * SIGTERM/SIGINT pending for the calling thread. */
void sj_limits_arm_load(lua_State *L, sj_lualib_ctx *ctx, long long timeout_ms,
                        bool watch_signals);

/* Arm for closing the state: __gc and __close handlers that lua_close
 * runs get ctx->cleanup_ms in all, then every instruction raises. */
void sj_limits_arm_close(lua_State *L, sj_lualib_ctx *ctx);

/* Stop enforcing (the hook returns to its cheap count). */
void sj_limits_disarm(lua_State *L, sj_lualib_ctx *ctx);

/* The reason the armed run or load is over its limits, or SJ_TRIP_NONE.
 * Cheap; no Lua. */
sj_trip sj_limits_poll(const sj_lualib_ctx *ctx);

/* Record `why` (unless a reason is already recorded) and raise the
 * interruption marker; once the cleanup budget is spent the hook raises
 * it on every instruction. Never returns. */
int sj_limits_interrupt(lua_State *L, sj_trip why);

/* Raise the interruption when the armed run is over its limits (newly, or
 * past its cleanup budget); return otherwise. For C functions that wait. */
void sj_limits_check(lua_State *L, sj_lualib_ctx *ctx);

/* What sj_limits_check would raise, without raising: the reason a
 * waiting C function must end now (a new trip of the armed run or load,
 * or, after a trip, the spent cleanup budget), or SJ_TRIP_NONE. For
 * waits that release what they hold before `return sj_limits_interrupt(L,
 * why)` (sj_http, sj_exec). */
sj_trip sj_limits_due(const sj_lualib_ctx *ctx);

/* Is the value at `idx` the interruption marker? */
bool sj_limits_is_interrupt(lua_State *L, int idx);

/* The allocator's part, for growth to `nsize` while armed: true refuses
 * it (the run is tripped and its cleanup budget is spent). See sj_vm.c. */
bool sj_limits_alloc_refuse(sj_lualib_ctx *ctx, size_t nsize);

/* Every process-wide load from now on trips at once (SIGTERM while a
 * reload loads a file that loops). Any thread; async-signal-safe. */
void sj_limits_abort_loads(void);

/* The trip a task's stop flag (sj_stop_reason) stands for. */
sj_trip sj_limits_trip_of_stop(int stop);

/* The outcome of a run interrupted for `why` (*reason: the stop reason of
 * an SJ_OUT_STOPPED), and the line that says so into line[n]; returns the
 * level to log it at. timeout_s and mem_cap are for the sentence. */
sj_log_level sj_limits_outcome(sj_trip why, int timeout_s, size_t mem_cap,
                               sj_outcome *out, sj_stop_reason *reason,
                               char *line, size_t n);

/* "file.lua:42" where the armed run was last seen (the handler's
 * definition, then wherever the hook last fired), into buf. Any thread. */
void sj_limits_seen(sj_lualib_ctx *ctx, char *buf, size_t n);

#endif
