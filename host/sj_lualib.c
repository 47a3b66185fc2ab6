/*
 * sj_lualib.c - the C half of the `snailjob` module and the interruption
 * machinery of a run. See sj_lualib.h for the contract.
 */
#include "sj_lualib.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "sj_error.h"
#include "sj_exec.h"
#include "sj_http.h"
#include "sj_limits.h"
#include "sj_luajson.h"

/* lua/snailjob.lua, compiled into the binary by cmake/embed.cmake. */
extern const char sj_embed_snailjob_lua[];
extern const size_t sj_embed_snailjob_lua_len;

#define MAX_MAP_ITEMS 200

/* Private registry keys: their addresses are the keys. */
static char k_executors; /* name -> { kind, spec, where } */
static char k_result_mt; /* metatable of sj.success / sj.failure results */
static char k_methods;   /* methods of `args` */
static char k_format;    /* string.format as it was at preload */
static char k_box_mt;    /* metatable of json_t boxes */
static char k_changes;   /* the current run's append_context table */

/* Keys in a per-run `args` metatable. */
static char k_serial;   /* run serial the args belong to */
static char k_args_chg; /* that run's changes table */
static char k_args_ctx; /* the dispatched wf_context table */

sj_lualib_ctx *sj_lualib_ctx_of(lua_State *L)
{
    return *(sj_lualib_ctx **)lua_getextraspace(L);
}

/* ---- helpers ------------------------------------------------------------ */

/* "file.lua:42" of the function `ar` describes, or "". */
/* The module's own Lua frames (lua/snailjob.lua) are never "where" a
 * user's script was: the place to name is the nearest executor frame. */
static bool is_module_frame(const lua_Debug *ar)
{
    return strcmp(ar->source, "=snailjob.lua") == 0;
}

static void format_where(const lua_Debug *ar, char *buf, size_t n)
{
    const char *src = ar->short_src;
    const char *base = strrchr(src, '/');
    snprintf(buf, n, "%s:%d", base ? base + 1 : src, ar->currentline);
}

void sj_lualib_where(lua_State *L, int level, char *buf, size_t n)
{
    lua_Debug ar;
    buf[0] = '\0';
    for (int lv = level; lua_getstack(L, lv, &ar); lv++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0 &&
            !is_module_frame(&ar)) {
            format_where(&ar, buf, n);
            return;
        }
    }
}

void sj_lualib_where_at(lua_State *L, lua_Debug *ar, char *buf, size_t n)
{
    buf[0] = '\0';
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0 && !is_module_frame(ar))
        format_where(ar, buf, n);
    else
        sj_lualib_where(L, 1, buf, n);
}

static int box_gc(lua_State *L)
{
    json_t **box = lua_touserdata(L, 1);
    if (box != NULL && *box != NULL) {
        json_decref(*box);
        *box = NULL;
    }
    return 0;
}

/* Push a userdata owning one json_t (initially NULL) and return its slot:
 * whatever is stored there is freed by the GC if a Lua error unwinds past
 * it, so C never leaks across a longjmp. Stack: +1. May raise (memory). */
static json_t **box_new(lua_State *L)
{
    json_t **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_box_mt);
    lua_setmetatable(L, -2);
    return box;
}

/* Take the value out of a box (the caller owns it). */
static json_t *box_take(json_t **box)
{
    json_t *v = *box;
    *box = NULL;
    return v;
}

/* ---- logging ------------------------------------------------------------ */

/* Must a script's sj.log.* stop waiting for room in the host's log
 * queue? Once the run is tripped (or must be), yes: its lines are then
 * dropped with a notice rather than waited for. Owner thread. */
static int log_due(void *ud)
{
    const sj_lualib_ctx *ctx = ud;
    return ctx->tripped != SJ_TRIP_NONE || sj_limits_poll(ctx) != SJ_TRIP_NONE;
}

/* A line to the running task's log and the host log; `wait`: a script's
 * own line, which may wait for room (task_log_wait). Returns nonzero if
 * such a wait was ended by the run's limits. */
static int task_line(sj_lualib_ctx *ctx, sj_log_level level, const char *msg,
                     size_t len, const char *location, bool wait)
{
    int n = len > 65536 ? 65536 : (int)len, ended = 0;
    if (location == NULL)
        location = "";
    if (ctx->task != NULL) {
        if (wait && ctx->task_log_wait != NULL)
            ended = ctx->task_log_wait(ctx->ud, ctx->task, level, msg, len,
                                       location, log_due, ctx);
        else if (ctx->task_log != NULL)
            ctx->task_log(ctx->ud, ctx->task, level, msg, len, location);
        sj_log(level, "[%s #%lld] %s%s%.*s",
               ctx->task->executor_info ? ctx->task->executor_info : "?",
               (long long)ctx->task->task_id, location, location[0] ? ": " : "",
               n, msg);
    } else {
        sj_log(level, "%s%s%.*s", location, location[0] ? ": " : "", n, msg);
    }
    return ended;
}

void sj_lualib_task_line(sj_lualib_ctx *ctx, sj_log_level level,
                         const char *msg, size_t len, const char *location)
{
    task_line(ctx, level, msg, len, location, false);
}

/* sj.log.* and sj.hostlog.*: (fmt, ...) with string.format semantics when
 * more arguments follow, else the one value as is (tostring'ed). */
static int log_line(lua_State *L, sj_log_level level, bool to_task)
{
    sj_lualib_ctx *ctx = sj_lualib_ctx_of(L);
    int n = lua_gettop(L);
    const char *msg = "";
    size_t len = 0;
    if (n == 1) {
        msg = luaL_tolstring(L, 1, &len);
    } else if (n > 1) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &k_format);
        lua_insert(L, 1);
        lua_call(L, n, 1);
        msg = lua_tolstring(L, -1, &len);
    }
    char loc[96];
    sj_lualib_where(L, 1, loc, sizeof loc);
    if (to_task && ctx->task != NULL) {
        /* A wait for room ended by a stop or timeout (the line went in
         * by dropping the oldest, announced): interrupt now, unless the
         * run is within its cleanup budget. */
        if (task_line(ctx, level, msg, len, loc, true))
            sj_limits_check(L, ctx);
    } else {
        int m = len > 65536 ? 65536 : (int)len;
        sj_log(level, "%s%s%.*s", loc, loc[0] ? ": " : "", m, msg);
    }
    return 0;
}

static int log_debug(lua_State *L)
{
    return log_line(L, SJ_LOG_DEBUG, true);
}

static int log_info(lua_State *L)
{
    return log_line(L, SJ_LOG_INFO, true);
}

static int log_warn(lua_State *L)
{
    return log_line(L, SJ_LOG_WARN, true);
}

static int log_error(lua_State *L)
{
    return log_line(L, SJ_LOG_ERROR, true);
}

static int hostlog_debug(lua_State *L)
{
    return log_line(L, SJ_LOG_DEBUG, false);
}

static int hostlog_info(lua_State *L)
{
    return log_line(L, SJ_LOG_INFO, false);
}

static int hostlog_warn(lua_State *L)
{
    return log_line(L, SJ_LOG_WARN, false);
}

static int hostlog_error(lua_State *L)
{
    return log_line(L, SJ_LOG_ERROR, false);
}

/* ---- sj.sleep ----------------------------------------------------------- */

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* sj.sleep(seconds): blocks this worker in slices of at most 10 ms; inside
 * a run a stop or timeout ends it at once with the interruption. */
static int snailjob_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    luaL_argcheck(L, s >= 0, 1, "seconds must be a non-negative number");
    sj_lualib_ctx *ctx = sj_lualib_ctx_of(L);
    if (s > 1e9)
        s = 1e9; /* about 31 years; keeps the arithmetic in range */
    long long end = mono_ns() + (long long)(s * 1e9);
    sj_limits_check(L, ctx);
    for (;;) {
        long long left = end - mono_ns();
        if (left <= 0)
            break;
        if (left > 10000000LL)
            left = 10000000LL;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        sj_limits_check(L, ctx);
    }
    return 0;
}

/* ---- declarations ------------------------------------------------------- */

/* "path:line" of the innermost Lua function loaded from a file (the
 * executor file or a module it required), skipping snailjob.lua. */
static void declaration_site(lua_State *L, char *buf, size_t n)
{
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar) || ar.source[0] != '@')
            continue;
        snprintf(buf, n, "%s:%d", ar.source + 1, ar.currentline);
        return;
    }
    sj_lualib_ctx *ctx = sj_lualib_ctx_of(L);
    snprintf(buf, n, "%s", ctx->load_file ? ctx->load_file : "?");
}

/* core.register(name, kind, spec) */
static int snailjob_register(lua_State *L)
{
    static const char *const kinds[] = {"job", "map", "map_reduce", NULL};
    static const char *const fnames[] = {"sj.job", "sj.map", "sj.map_reduce"};
    sj_lualib_ctx *ctx = sj_lualib_ctx_of(L);
    const char *name = luaL_checkstring(L, 1);
    int kind = luaL_checkoption(L, 2, NULL, kinds);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!ctx->loading)
        return luaL_error(L,
                          "%s: executors can only be declared while the "
                          "executor files load (not inside a handler)",
                          fnames[kind]);
    char site[512];
    declaration_site(L, site, sizeof site);

    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_executors);
    if (lua_getfield(L, -1, name) != LUA_TNIL) {
        lua_getfield(L, -1, "where");
        /* No luaL_where prefix: it would name snailjob.lua, not a file of
         * the user's; both of theirs are in the message. */
        lua_pushfstring(L,
                        "executor '%s' is declared twice: first at %s, "
                        "again at %s",
                        name, lua_tostring(L, -1), site);
        return lua_error(L);
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, kinds[kind]);
    lua_setfield(L, -2, "kind");
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "spec");
    lua_pushstring(L, site);
    lua_setfield(L, -2, "where");
    lua_setfield(L, -2, name);
    return 0;
}

/* core.set_result_mt(mt) */
static int snailjob_set_result_mt(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_result_mt);
    return 0;
}

/* core.failure([message]): sj.failure. In C so that a bad argument names
 * the handler's file:line even from `return sj.failure(x)`: a tail call
 * to a C function keeps the caller's frame, one to a Lua function does
 * not. Returns {status = "failure", message = text} with the Result
 * metatable. */
static int snailjob_failure(lua_State *L)
{
    int t = lua_type(L, 1);

    if (t == LUA_TNONE || t == LUA_TNIL)
        lua_pushliteral(L, "Task execution failed");
    else if (t == LUA_TNUMBER || t == LUA_TSTRING)
        lua_pushstring(L, lua_tostring(L, 1));
    else
        return luaL_error(L, "sj.failure: message must be a string, got %s",
                          luaL_typename(L, 1));
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "failure");
    lua_setfield(L, -2, "status");
    lua_insert(L, -2);
    lua_setfield(L, -2, "message");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_result_mt);
    lua_setmetatable(L, -2);
    return 1;
}

void sj_lualib_push_executors(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_executors);
}

void sj_lualib_push_result_mt(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_result_mt);
}

/* ---- workflow context and args ------------------------------------------ */

/* Fill *box with the changes table at `idx` as a JSON object. May raise. */
static void changes_to_json(lua_State *L, int idx, json_t **box)
{
    char err[200];
    idx = lua_absindex(L, idx);
    *box = json_object();
    if (*box == NULL)
        luaL_error(L, "out of memory");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        /* keys are strings: append_context only stores those */
        const char *key = lua_tostring(L, -2);
        json_t *v = sj_luajson_to(L, -1, err, sizeof err);
        if (v == NULL)
            luaL_error(L, "workflow context value '%s': %s", key, err);
        if (json_object_set_new(*box, key, v) != 0)
            luaL_error(L, "workflow context key '%s' is not valid UTF-8", key);
        lua_pop(L, 1);
    }
}

json_t *sj_lualib_wf_changes(lua_State *L, bool keep_empty)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_changes);
    if (!lua_istable(L, -1) || (lua_pushnil(L), lua_next(L, -2) == 0)) {
        lua_pop(L, 1);
        return keep_empty ? json_object() : NULL;
    }
    lua_pop(L, 2); /* key and value from the probe */
    json_t **box = box_new(L);
    changes_to_json(L, -2, box);
    json_t *obj = box_take(box);
    lua_pop(L, 2);
    return obj;
}

/* Check that `self` is the args of the run in progress; push its
 * metatable. Returns false (nothing pushed) for args of an ended run. */
static bool args_live(lua_State *L, sj_lualib_ctx *ctx)
{
    if (!lua_istable(L, 1) || !lua_getmetatable(L, 1))
        luaL_error(L, "args method called without args (use args:name())");
    lua_rawgetp(L, -1, &k_serial);
    bool live = ctx->task != NULL && lua_isinteger(L, -1) &&
                (unsigned long)lua_tointeger(L, -1) == ctx->run_serial;
    lua_pop(L, 1);
    if (!live)
        lua_pop(L, 1);
    return live;
}

/* args:append_context(key, value): record a workflow context change; nil
 * keys or values are ignored, as in the Java client. */
static int args_append_context(lua_State *L)
{
    sj_lualib_ctx *ctx = sj_lualib_ctx_of(L);
    lua_settop(L, 3);
    if (!args_live(L, ctx))
        return luaL_error(L, "args:append_context: the task of these args "
                             "has ended");
    if (lua_isnil(L, 2) || lua_isnil(L, 3))
        return 0;
    if (lua_type(L, 2) == LUA_TNUMBER)
        lua_tostring(L, 2); /* converts in place: keys are strings */
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_error(L,
                          "args:append_context: key must be a string, "
                          "got %s",
                          luaL_typename(L, 2));
    /* Check now that the value can be sent, so the error points here. */
    char err[200];
    json_t **box = box_new(L);
    *box = sj_luajson_to(L, 3, err, sizeof err);
    if (*box == NULL)
        return luaL_error(L,
                          "args:append_context: value for '%s' cannot "
                          "be sent as JSON: %s",
                          lua_tostring(L, 2), err);
    json_decref(box_take(box));
    lua_pop(L, 1);
    lua_rawgetp(L, 4, &k_args_chg);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    return 0;
}

/* args:get_wf_context(key): the change made in this run, else the context
 * the task was dispatched with. */
static int args_get_wf_context(lua_State *L)
{
    lua_settop(L, 2);
    if (!lua_istable(L, 1) || !lua_getmetatable(L, 1))
        return luaL_error(L, "args:get_wf_context: call it as "
                             "args:get_wf_context(key)");
    if (lua_isnil(L, 2)) {
        lua_pushnil(L);
        return 1;
    }
    if (lua_type(L, 2) == LUA_TNUMBER)
        lua_tostring(L, 2);
    lua_rawgetp(L, 3, &k_args_chg);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL)
        return 1;
    lua_rawgetp(L, 3, &k_args_ctx);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

/* args:is_stopped(): true once the batch was stopped or timed out (and for
 * args of a run that has ended). */
static int args_is_stopped(lua_State *L)
{
    sj_lualib_ctx *ctx = sj_lualib_ctx_of(L);
    lua_settop(L, 1);
    bool stopped = !args_live(L, ctx) || ctx->tripped != SJ_TRIP_NONE ||
                   sj_limits_poll(ctx) != SJ_TRIP_NONE;
    lua_pushboolean(L, stopped);
    return 1;
}

/* Push the Lua value of `v` (NULL pushes nil); `nil_nulls`: a null (at
 * the top or as an object member) becomes nil rather than sj.json.null. */
static void push_json_opt(lua_State *L, const json_t *v, bool nil_nulls)
{
    sj_luajson_opts o = {.null_as_nil = nil_nulls};
    if (v == NULL) {
        lua_pushnil(L);
        return;
    }
    int rc = sj_luajson_push_opts(L, v, &o);
    if (rc != 0)
        luaL_error(L, "cannot pass a task argument to Lua: %s",
                   sj_strerror(rc));
}

static void push_json(lua_State *L, const json_t *v)
{
    push_json_opt(L, v, false);
}

/* Push the value of JSON text `text`, or nil when it is not JSON. */
static void push_json_text(lua_State *L, const char *text)
{
    json_t **box = box_new(L);
    *box = json_loads(text, JSON_DECODE_ANY, NULL);
    push_json_opt(L, *box, true);
    json_decref(box_take(box));
    lua_remove(L, -2);
}

/* Push a list delivered by the server ("maps" at REDUCE, "reduces" at
 * MERGE): the array as a Lua sequence; a string holding a JSON array is
 * decoded first (as the Java client does); any other string becomes a
 * one-element list; nothing becomes an empty list. */
static void push_list(lua_State *L, const json_t *v)
{
    if (v == NULL || json_is_null(v)) {
        lua_newtable(L);
        return;
    }
    if (json_is_string(v)) {
        json_t **box = box_new(L);
        *box = json_loads(json_string_value(v), JSON_DECODE_ANY, NULL);
        if (*box != NULL && json_is_array(*box)) {
            push_json(L, *box);
        } else {
            lua_createtable(L, 1, 0);
            lua_pushstring(L, json_string_value(v));
            lua_rawseti(L, -2, 1);
        }
        json_decref(box_take(box));
        lua_remove(L, -2);
        return;
    }
    if (json_is_array(v)) {
        push_json(L, v);
        return;
    }
    lua_createtable(L, 1, 0);
    push_json(L, v);
    lua_rawseti(L, -2, 1);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

void sj_lualib_push_args(lua_State *L, sj_lualib_ctx *ctx)
{
    const sj_task *t = ctx->task;
    lua_createtable(L, 0, 20);
    int args = lua_gettop(L);
    set_int(L, "job_id", t->job_id);
    set_int(L, "task_batch_id", t->task_batch_id);
    set_int(L, "task_id", t->task_id);
    set_str(L, "job_params", t->job_params ? t->job_params : "");
    set_str(L, "executor_info", t->executor_info ? t->executor_info : "");
    set_int(L, "task_type", t->task_type);
    if (t->mr_stage != SJ_STAGE_NONE)
        set_int(L, "mr_stage", t->mr_stage);
    if (t->task_name != NULL)
        set_str(L, "task_name", t->task_name);
    if (t->has_sharding) {
        set_int(L, "sharding_index", t->sharding_index);
        set_int(L, "sharding_total", t->sharding_total);
    }
    if (t->has_retry_count)
        set_int(L, "retry_count", t->retry_count);
    if (t->job_biz_id != NULL)
        set_str(L, "job_biz_id", t->job_biz_id);
    if (t->workflow_task_batch_id != 0) {
        set_int(L, "workflow_task_batch_id", t->workflow_task_batch_id);
        set_int(L, "workflow_node_id", t->workflow_node_id);
    }

    /* wf_context: the dispatched workflow context, {} outside workflows */
    if (t->wf_context != NULL && t->wf_context[0] != '\0') {
        push_json_text(L, t->wf_context);
        if (!lua_istable(L, -1)) {
            sj_log(SJ_LOG_WARN,
                   "task %lld: wfContext is not a JSON object; using {}",
                   (long long)t->task_id);
            lua_pop(L, 1);
            lua_newtable(L);
        }
    } else {
        lua_newtable(L);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, args, "wf_context");
    int wfctx = lua_gettop(L);

    switch (ctx->stage) {
    case SJ_STAGE_MAP: {
        bool root =
            t->task_name == NULL || strcmp(t->task_name, SJ_ROOT_MAP) == 0;
        if (!root && t->maps != NULL) {
            push_json_opt(L, t->maps, true);
            lua_setfield(L, args, "map_result");
        }
        break;
    }
    case SJ_STAGE_REDUCE:
        push_list(L, t->maps);
        lua_setfield(L, args, "map_result");
        break;
    case SJ_STAGE_MERGE:
        push_list(L, t->reduces);
        lua_setfield(L, args, "reduces");
        break;
    default:
        break;
    }

    /* this run's changes table, reachable from the registry (reports) and
     * from the args' private metatable (methods) */
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_changes);
    int changes = lua_gettop(L);

    lua_createtable(L, 0, 6);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_methods);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "snailjob.args");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0); /* getmetatable(args) hides the private keys */
    lua_setfield(L, -2, "__metatable");
    lua_pushinteger(L, (lua_Integer)ctx->run_serial);
    lua_rawsetp(L, -2, &k_serial);
    lua_pushvalue(L, changes);
    lua_rawsetp(L, -2, &k_args_chg);
    lua_pushvalue(L, wfctx);
    lua_rawsetp(L, -2, &k_args_ctx);
    lua_setmetatable(L, args);
    lua_settop(L, args);
}

/* ---- sj.mr_do_map ------------------------------------------------------- */

/* Raise "where: message" with the position of the script that called
 * sj.mr_do_map (level 2: level 1 is the wrapper in snailjob.lua). */
static int mr_error(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    luaL_where(L, 2);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

/* core.mr_do_map(list, next_task_name): report the sub-tasks; raises on
 * misuse and when the server refuses; a stop while waiting interrupts. */
static int snailjob_mr_do_map(lua_State *L)
{
    sj_lualib_ctx *ctx = sj_lualib_ctx_of(L);
    size_t nlen = 0;
    const char *name =
        lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &nlen) : NULL;
    size_t blank = 0; /* Java refuses blank names (StrUtil.isBlank) */
    while (name != NULL && blank < nlen && isspace((unsigned char)name[blank]))
        blank++;
    if (name == NULL || blank == nlen)
        return mr_error(L, "sj.mr_do_map: next_task_name must be a "
                           "non-empty string");
    if (strcmp(name, SJ_ROOT_MAP) == 0)
        return mr_error(L,
                        "sj.mr_do_map: next_task_name must not be "
                        "%s",
                        SJ_ROOT_MAP);
    if (!lua_istable(L, 1))
        return mr_error(L,
                        "sj.mr_do_map: the list must be a table, got "
                        "%s",
                        luaL_typename(L, 1));
    lua_Unsigned n = lua_rawlen(L, 1);
    if (n == 0)
        return mr_error(L, "sj.mr_do_map: the list is empty");
    if (n > MAX_MAP_ITEMS)
        return mr_error(L,
                        "sj.mr_do_map: the list has %I elements; at most "
                        "%d are allowed",
                        (lua_Integer)n, MAX_MAP_ITEMS);
    if (ctx->task == NULL || !ctx->armed || ctx->stage != SJ_STAGE_MAP)
        return mr_error(L, "sj.mr_do_map: called outside a map stage "
                           "(only a map handler can fan out)");
    if (ctx->map_report == NULL)
        return mr_error(L, "sj.mr_do_map: this host cannot report map "
                           "tasks");
    lua_settop(L, 2);

    /* Convert everything into boxes first: a Lua error on the way (memory,
     * an element that is not JSON) leaks nothing. */
    char err[512];
    json_t **list = box_new(L);
    *list = json_array();
    if (*list == NULL)
        return luaL_error(L, "out of memory");
    for (lua_Unsigned i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i);
        json_t *v = sj_luajson_to(L, -1, err, sizeof err);
        if (v == NULL)
            return mr_error(L,
                            "sj.mr_do_map: element %I cannot be sent "
                            "as JSON: %s",
                            (lua_Integer)i, err);
        json_array_append_new(*list, v);
        lua_pop(L, 1);
    }
    json_t **changes = box_new(L);
    *changes = sj_lualib_wf_changes(L, true);

    err[0] = '\0';
    int rc = ctx->map_report(ctx->ud, ctx->task, name, *list, *changes, err,
                             sizeof err);
    json_decref(box_take(list));
    json_decref(box_take(changes));
    if (rc == SJ_ECANCELED) {
        sj_trip why = sj_limits_poll(ctx);
        return sj_limits_interrupt(L,
                                   why != SJ_TRIP_NONE ? why : SJ_TRIP_SERVER);
    }
    if (rc < 0)
        return mr_error(L,
                        "sj.mr_do_map: the server refused the map "
                        "report: %s",
                        err[0] ? err : sj_strerror(rc));
    sj_limits_check(L, ctx);
    return 0;
}

/* ---- module ------------------------------------------------------------- */

static const luaL_Reg core_funcs[] = {
    {"register", snailjob_register}, {"set_result_mt", snailjob_set_result_mt},
    {"failure", snailjob_failure},   {"mr_do_map", snailjob_mr_do_map},
    {"sleep", snailjob_sleep},       {NULL, NULL}};

static const luaL_Reg log_funcs[] = {{"debug", log_debug},
                                     {"info", log_info},
                                     {"warn", log_warn},
                                     {"error", log_error},
                                     {NULL, NULL}};

static const luaL_Reg hostlog_funcs[] = {{"debug", hostlog_debug},
                                         {"info", hostlog_info},
                                         {"warn", hostlog_warn},
                                         {"error", hostlog_error},
                                         {NULL, NULL}};

static const luaL_Reg args_methods[] = {{"append_context", args_append_context},
                                        {"get_wf_context", args_get_wf_context},
                                        {"is_stopped", args_is_stopped},
                                        {NULL, NULL}};

int sj_lualib_open_core(lua_State *L)
{
    luaL_newlib(L, core_funcs);
    luaL_newlib(L, log_funcs);
    lua_setfield(L, -2, "log");
    luaL_newlib(L, hostlog_funcs);
    lua_setfield(L, -2, "hostlog");
    lua_pushcfunction(L, sj_luajson_open);
    lua_call(L, 0, 1);
    lua_setfield(L, -2, "json");
    sj_http_open(L);
    lua_setfield(L, -2, "http");
    sj_exec_open(L);
    lua_setfield(L, -2, "exec");
    return 1;
}

/* package.preload["snailjob"]: run the embedded lua/snailjob.lua. */
static int open_snailjob(lua_State *L)
{
    if (luaL_loadbufferx(L, sj_embed_snailjob_lua, sj_embed_snailjob_lua_len,
                         "=snailjob.lua", "t") != LUA_OK)
        return lua_error(L);
    lua_pushliteral(L, "snailjob");
    lua_call(L, 1, 1);
    return 1;
}

void sj_lualib_attach(lua_State *L, sj_lualib_ctx *ctx)
{
    *(sj_lualib_ctx **)lua_getextraspace(L) = ctx;
    ctx->L = L;
    sj_limits_attach(L, ctx);
}

void sj_lualib_preload(lua_State *L)
{
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_executors);

    luaL_newlib(L, args_methods);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_methods);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "snailjob.json_box");
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_box_mt);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_STRLIBNAME);
    lua_getfield(L, -1, "format");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_format);
    lua_pop(L, 2);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, sj_lualib_open_core);
    lua_setfield(L, -2, "snailjob.core");
    lua_pushcfunction(L, open_snailjob);
    lua_setfield(L, -2, "snailjob");
    lua_pop(L, 1);
}
