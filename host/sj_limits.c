/*
 * sj_limits.c - hook, interruption, allocator refusal, cleanup budget and
 * bounded loads. See sj_limits.h for the contract.
 */
#include "sj_limits.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

/* Instructions between two polls of the limits. */
#define HOOK_COUNT 1000
/* Hook ticks between two records of where the run is (sj_limits_seen). */
#define SEEN_EVERY 8
/* Budget of lua_close's finalizers when no cleanup budget is set. */
#define CLOSE_MS 1000

static char k_interrupt; /* its address, as light userdata, is the marker */

static atomic_int abort_loads;

static void hook(lua_State *L, lua_Debug *ar);

/* ---- polling -------------------------------------------------------------*/

sj_trip sj_limits_trip_of_stop(int stop)
{
    switch (stop) {
    case SJ_STOP_SERVER:
        return SJ_TRIP_SERVER;
    case SJ_STOP_SHUTDOWN:
        return SJ_TRIP_SHUTDOWN;
    case SJ_STOP_TIMEOUT:
        return SJ_TRIP_TIMEOUT;
    default:
        return SJ_TRIP_NONE;
    }
}

static bool signal_pending(void)
{
    sigset_t set;
    return sigpending(&set) == 0 &&
           (sigismember(&set, SIGTERM) == 1 || sigismember(&set, SIGINT) == 1);
}

sj_trip sj_limits_poll(const sj_lualib_ctx *ctx)
{
    const sj_task *t = ctx->task;
    if (t != NULL) {
        sj_trip why = sj_limits_trip_of_stop(
            atomic_load_explicit(&((sj_task *)t)->stop, memory_order_relaxed));
        if (why != SJ_TRIP_NONE)
            return why;
        if (t->deadline_ms > 0 && sj_mono_ms() >= t->deadline_ms)
            return SJ_TRIP_TIMEOUT;
    } else if (ctx->loading_armed) {
        if (atomic_load_explicit(&abort_loads, memory_order_relaxed) ||
            (ctx->watch_signals && signal_pending()))
            return SJ_TRIP_SHUTDOWN;
        if (ctx->load_deadline > 0 && sj_mono_ms() >= ctx->load_deadline)
            return SJ_TRIP_TIMEOUT;
    }
    if (ctx->mem_refused)
        return SJ_TRIP_NOMEM;
    return SJ_TRIP_NONE;
}

void sj_limits_abort_loads(void)
{
    atomic_store(&abort_loads, 1);
}

/* ---- the trip ------------------------------------------------------------*/

/* Record the first trip and start its cleanup budget. */
static void trip(sj_lualib_ctx *ctx, sj_trip why)
{
    if (ctx->tripped != SJ_TRIP_NONE)
        return;
    ctx->tripped = why;
    ctx->cleanup_until = sj_mono_ms() + ctx->cleanup_ms;
}

static bool budget_spent(const sj_lualib_ctx *ctx)
{
    return sj_mono_ms() >= ctx->cleanup_until;
}

/* Once the budget is spent, every instruction of L (and of the main
 * thread, whose caller may catch what a dead coroutine passes on) raises;
 * until then the hook polls the clock at its normal count. */
static void set_hook_for_trip(lua_State *L, sj_lualib_ctx *ctx)
{
    bool spent = budget_spent(ctx);
    int mask = spent ? LUA_MASKCOUNT | LUA_MASKLINE : LUA_MASKCOUNT;
    int count = spent ? 1 : HOOK_COUNT;
    lua_sethook(L, hook, mask, count);
    if (L != ctx->L)
        lua_sethook(ctx->L, hook, mask, count);
}

int sj_limits_interrupt(lua_State *L, sj_trip why)
{
    sj_lualib_ctx *ctx = sj_lualib_ctx_of(L);
    trip(ctx, why);
    if (ctx->trip_where[0] == '\0')
        sj_lualib_where(L, 1, ctx->trip_where, sizeof ctx->trip_where);
    set_hook_for_trip(L, ctx);
    lua_pushlightuserdata(L, &k_interrupt);
    return lua_error(L);
}

bool sj_limits_is_interrupt(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA &&
           lua_touserdata(L, idx) == &k_interrupt;
}

sj_trip sj_limits_due(const sj_lualib_ctx *ctx)
{
    if (!ctx->armed)
        return SJ_TRIP_NONE;
    if (ctx->tripped != SJ_TRIP_NONE)
        return budget_spent(ctx) ? ctx->tripped : SJ_TRIP_NONE;
    return sj_limits_poll(ctx);
}

void sj_limits_check(lua_State *L, sj_lualib_ctx *ctx)
{
    sj_trip why = sj_limits_due(ctx);
    if (why != SJ_TRIP_NONE)
        sj_limits_interrupt(L, why);
}

static void record_seen(lua_State *L, sj_lualib_ctx *ctx, lua_Debug *ar)
{
    char where[sizeof ctx->seen];
    sj_lualib_where_at(L, ar, where, sizeof where);
    if (where[0] == '\0')
        return;
    pthread_mutex_lock(&ctx->seen_lock);
    memcpy(ctx->seen, where, sizeof where);
    pthread_mutex_unlock(&ctx->seen_lock);
}

static void hook(lua_State *L, lua_Debug *ar)
{
    sj_lualib_ctx *ctx = sj_lualib_ctx_of(L);
    if (!ctx->armed)
        return;
    if (ctx->tripped == SJ_TRIP_NONE) {
        sj_trip why = sj_limits_poll(ctx);
        if (why == SJ_TRIP_NONE) {
            if (ctx->task != NULL && ++ctx->hook_ticks % SEEN_EVERY == 0)
                record_seen(L, ctx, ar);
            return;
        }
        trip(ctx, why);
    } else if (!budget_spent(ctx)) {
        return; /* cleanup (__close) may still run */
    }
    if (ctx->trip_where[0] == '\0')
        sj_lualib_where_at(L, ar, ctx->trip_where, sizeof ctx->trip_where);
    sj_limits_interrupt(L, ctx->tripped);
}

bool sj_limits_alloc_refuse(sj_lualib_ctx *ctx, size_t nsize)
{
    if (ctx->closing)
        return false;
    if (ctx->tripped != SJ_TRIP_NONE)
        return budget_spent(ctx);
    sj_trip why = SJ_TRIP_NONE;
    sj_task *t = ctx->task;
    if (t != NULL) {
        why = sj_limits_trip_of_stop(
            atomic_load_explicit(&t->stop, memory_order_relaxed));
        if (why == SJ_TRIP_NONE && t->deadline_ms > 0 &&
            ((++ctx->alloc_ticks & 63) == 0 || nsize >= 16384) &&
            sj_mono_ms() >= t->deadline_ms)
            why = SJ_TRIP_TIMEOUT;
    } else if (ctx->loading_armed &&
               ((++ctx->alloc_ticks & 63) == 0 || nsize >= 16384)) {
        why = sj_limits_poll(ctx);
    }
    if (why == SJ_TRIP_NONE)
        return false;
    /* Tripped here: the hook raises on the next instruction (lua_sethook
     * is safe at any point, as lua.c's SIGINT handler relies on); this
     * growth is still granted, as cleanup may follow. */
    trip(ctx, why);
    lua_sethook(ctx->L, hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
    return budget_spent(ctx);
}

/* ---- arming --------------------------------------------------------------*/

static void reset(sj_lualib_ctx *ctx)
{
    ctx->tripped = SJ_TRIP_NONE;
    ctx->mem_refused = false;
    ctx->trip_where[0] = '\0';
    ctx->alloc_ticks = 0;
    ctx->hook_ticks = 0;
    ctx->cleanup_until = 0;
    ctx->load_deadline = 0;
    ctx->loading_armed = false;
    ctx->watch_signals = false;
    ctx->closing = false;
}

void sj_limits_arm_run(lua_State *L, sj_lualib_ctx *ctx, int fidx)
{
    lua_Debug ar;
    char where[sizeof ctx->seen] = "";
    reset(ctx);
    lua_pushvalue(L, fidx);
    if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0) {
        const char *base = strrchr(ar.short_src, '/');
        snprintf(where, sizeof where, "%s:%d", base ? base + 1 : ar.short_src,
                 ar.linedefined);
    }
    pthread_mutex_lock(&ctx->seen_lock);
    memcpy(ctx->seen, where, sizeof where);
    pthread_mutex_unlock(&ctx->seen_lock);
    ctx->armed = true;
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_COUNT);
}

void sj_limits_arm_load(lua_State *L, sj_lualib_ctx *ctx, long long timeout_ms,
                        bool watch_signals)
{
    reset(ctx);
    ctx->loading_armed = true;
    ctx->watch_signals = watch_signals;
    ctx->load_deadline = timeout_ms > 0 ? sj_mono_ms() + timeout_ms : 0;
    ctx->armed = true;
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_COUNT);
}

void sj_limits_arm_close(lua_State *L, sj_lualib_ctx *ctx)
{
    sj_limits_arm_load(L, ctx, 0, false);
    ctx->task = NULL;
    ctx->closing = true; /* finalizers may allocate: only time is bounded */
    ctx->tripped = SJ_TRIP_SHUTDOWN;
    ctx->cleanup_until =
        sj_mono_ms() + (ctx->cleanup_ms > 0 ? ctx->cleanup_ms : CLOSE_MS);
    set_hook_for_trip(L, ctx);
}

void sj_limits_disarm(lua_State *L, sj_lualib_ctx *ctx)
{
    ctx->armed = false;
    ctx->loading_armed = false;
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_COUNT);
}

/* ---- catching functions --------------------------------------------------*/

/* After a wrapped pcall/xpcall/coroutine.resume/coroutine.close (its
 * results from index 1): a caught interruption goes on up, so only
 * __close handlers (which run while the error unwinds, inside the catching
 * call) use the cleanup budget, never the code that caught it. Once the
 * budget is spent, any caught error is re-raised as the interruption. */
static int after_catch(lua_State *L, int status, lua_KContext k)
{
    (void)status;
    (void)k;
    sj_lualib_ctx *ctx = sj_lualib_ctx_of(L);
    if (lua_gettop(L) >= 1 && lua_type(L, 1) == LUA_TBOOLEAN &&
        !lua_toboolean(L, 1) && ctx->armed && ctx->tripped != SJ_TRIP_NONE &&
        (sj_limits_is_interrupt(L, 2) || budget_spent(ctx)))
        return sj_limits_interrupt(L, ctx->tripped);
    return lua_gettop(L);
}

/* upvalue 1: the original function */
static int catching(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, after_catch);
    return after_catch(L, LUA_OK, 0);
}

/* xpcall's message handler wrapper: the interruption passes unchanged
 * (upvalue 1: the script's handler). */
static int xpcall_msgh(lua_State *L)
{
    if (sj_limits_is_interrupt(L, 1))
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* xpcall(f, msgh, ...): upvalue 1 the original xpcall. */
static int catching_xpcall(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_msgh, 1);
    lua_replace(L, 2);
    return catching(L);
}

static void wrap_field(lua_State *L, const char *name, lua_CFunction f)
{
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
}

void sj_limits_open(lua_State *L)
{
    lua_pushglobaltable(L);
    wrap_field(L, "pcall", catching);
    wrap_field(L, "xpcall", catching_xpcall);
    lua_pop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_COLIBNAME);
    wrap_field(L, "resume", catching);
    wrap_field(L, "close", catching);
    lua_pop(L, 2);
}

/* ---- the host's log for panics and warnings ------------------------------*/

static int at_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    SJ_ERROR("Lua panic (error outside a protected call): %s",
             msg ? msg : "(error object is not a string)");
    return 0; /* Lua aborts the process now */
}

static void warn_to_log(void *ud, const char *msg, int tocont)
{
    sj_lualib_ctx *ctx = ud;
    size_t n = strlen(msg);
    if (ctx->warn_len == 0 && !tocont && msg[0] == '@')
        return; /* a control message ("@on", "@off"): warnings stay on */
    size_t room = sizeof ctx->warn - 1 - ctx->warn_len;
    if (n > room)
        n = room;
    memcpy(ctx->warn + ctx->warn_len, msg, n);
    ctx->warn_len += n;
    ctx->warn[ctx->warn_len] = '\0';
    if (tocont)
        return;
    SJ_WARN("Lua warning: %s", ctx->warn);
    ctx->warn_len = 0;
}

void sj_limits_attach(lua_State *L, sj_lualib_ctx *ctx)
{
    pthread_mutex_init(&ctx->seen_lock, NULL);
    if (ctx->cleanup_ms <= 0)
        ctx->cleanup_ms = 0;
    lua_atpanic(L, at_panic);
    lua_setwarnf(L, warn_to_log, ctx);
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_COUNT);
}

void sj_limits_detach(sj_lualib_ctx *ctx)
{
    pthread_mutex_destroy(&ctx->seen_lock);
}

void sj_limits_seen(sj_lualib_ctx *ctx, char *buf, size_t n)
{
    pthread_mutex_lock(&ctx->seen_lock);
    snprintf(buf, n, "%s", ctx->seen[0] ? ctx->seen : "?");
    pthread_mutex_unlock(&ctx->seen_lock);
}

/* ---- trip -> outcome -----------------------------------------------------*/

sj_log_level sj_limits_outcome(sj_trip why, int timeout_s, size_t mem_cap,
                               sj_outcome *out, sj_stop_reason *reason,
                               char *line, size_t n)
{
    *reason = SJ_STOP_NONE;
    switch (why) {
    case SJ_TRIP_SERVER:
        *out = SJ_OUT_STOPPED;
        *reason = SJ_STOP_SERVER;
        snprintf(line, n, "interrupted: stopped by the server");
        return SJ_LOG_WARN;
    case SJ_TRIP_SHUTDOWN:
        *out = SJ_OUT_STOPPED;
        *reason = SJ_STOP_SHUTDOWN;
        snprintf(line, n, "interrupted: the host is shutting down");
        return SJ_LOG_WARN;
    case SJ_TRIP_TIMEOUT:
        *out = SJ_OUT_TIMEOUT;
        snprintf(line, n, "interrupted: executor timeout of %d s exceeded",
                 timeout_s);
        return SJ_LOG_ERROR;
    case SJ_TRIP_NOMEM:
    default:
        *out = SJ_OUT_NOMEM;
        if (mem_cap)
            snprintf(line, n,
                     "interrupted: out of memory: the Lua state reached its "
                     "memory cap of %zu bytes (%.1f MiB)",
                     mem_cap, (double)mem_cap / (1024.0 * 1024.0));
        else
            snprintf(line, n, "interrupted: out of memory");
        return SJ_LOG_ERROR;
    }
}
