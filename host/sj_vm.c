/*
 * sj_vm.c - one Lua VM: state life cycle, the capped allocator, loading
 * executor files, routing a task to its handler and mapping how the run
 * ended to an outcome. See sj_vm.h for the contract; the interruption
 * machinery and the module's C functions are in sj_lualib.c.
 */
#include "sj_vm.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "sj_builtins.h"
#include "sj_config.h"
#include "sj_error.h"
#include "sj_limits.h"
#include "sj_log.h"
#include "sj_luajson.h"
#include "sj_lualib.h"
#include "sj_sandbox.h"
#include "sj_text.h"

typedef struct vm_exec {
    char *name;
    const char *kind; /* static: "job", "map" or "map_reduce" */
} vm_exec;

struct sj_vm {
    lua_State *L;
    sj_lualib_ctx ctx; /* in the state's extra space */
    size_t mem_used;
    size_t mem_cap;
    long long load_timeout_ms;
    bool needs_rebuild;
    vm_exec *execs; /* sorted by name */
    size_t nexecs;
    char **modules; /* Lua module files required while the files loaded */
    size_t nmodules;
    unsigned long serial;
    unsigned builtins; /* SJ_BUILTIN_* enabled (for messages) */
};

/* ---- allocator ---------------------------------------------------------- */

/* lua_Alloc that counts bytes and refuses growth past the cap (the state
 * then raises LUA_ERRMEM and stays usable), and refuses growth once an
 * armed run is tripped (sj_limits_alloc_refuse). Shrinking never fails. */
static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sj_vm *vm = ud;
    if (ptr == NULL)
        osize = 0; /* osize is then a type tag */
    if (nsize == 0) {
        free(ptr);
        vm->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize) {
        size_t grow = nsize - osize;
        if (vm->mem_cap != 0 &&
            (grow > vm->mem_cap || vm->mem_used > vm->mem_cap - grow)) {
            vm->ctx.mem_refused = true;
            return NULL;
        }
        if (vm->ctx.armed && sj_limits_alloc_refuse(&vm->ctx, nsize))
            return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p == NULL)
        return NULL;
    vm->mem_used = vm->mem_used - osize + nsize;
    return p;
}

/* ---- the protected gate ------------------------------------------------- */

/* error({code = 7}) as its JSON text, so that the task's message says
 * what was raised; a table JSON cannot hold (a function, a cycle) says
 * why. Pushes the message. */
static const char *push_table_error(lua_State *L, int idx)
{
    char why[256], *text = NULL;
    json_t *v = sj_luajson_to(L, idx, why, sizeof why);

    if (v != NULL && sj_luajson_dump(v, &text, NULL) == 0) {
        lua_pushstring(L, text);
        free(text);
    } else {
        lua_pushfstring(L, "(error object is a table value: %s)",
                        v != NULL ? "out of memory" : why);
    }
    json_decref(v);
    return lua_tostring(L, -1);
}

/* Message handler: keeps the interruption marker as it is (and allocates
 * nothing for it); adds a traceback to anything else. */
static int msghandler(lua_State *L)
{
    if (sj_limits_is_interrupt(L, 1))
        return 1;
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else if (lua_type(L, 1) == LUA_TTABLE)
            msg = push_table_error(L, 1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)",
                                  luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/*
 * The one way into Lua: call f(ud) in protected mode with the traceback
 * handler. Returns the lua_pcall status; on error the error value (the
 * message with its traceback, or the interruption marker) is on top.
 * Stack: +0 on success, +1 on error.
 */
static int gate(lua_State *L, lua_CFunction f, void *ud)
{
    int base = lua_gettop(L);
    lua_pushcfunction(L, msghandler);
    lua_pushcfunction(L, f);
    lua_pushlightuserdata(L, ud);
    int status = lua_pcall(L, 1, 0, base + 1);
    lua_remove(L, base + 1);
    return status;
}

/* The message part of a "message\nstack traceback:\n..." text. */
static size_t message_len(const char *full)
{
    const char *tb = strstr(full, "\nstack traceback:");
    return tb ? (size_t)(tb - full) : strlen(full);
}

/* Copy the error on top of the stack (without its traceback) into err. */
static void error_text(lua_State *L, int status, char *err, size_t errlen)
{
    const char *full = NULL;
    if (status == LUA_ERRMEM)
        full = "not enough memory";
    else if (lua_type(L, -1) == LUA_TSTRING)
        full = lua_tostring(L, -1);
    else
        full = "(error object is not a string)";
    snprintf(err, errlen, "%.*s", (int)message_len(full), full);
}

/* gate(L, f, ud) as one step of building a VM: 0, or SJ_ENOMEM / SJ_ELUA
 * with "<what>: <the error>" in err. */
static int gate_step(lua_State *L, lua_CFunction f, void *ud, const char *what,
                     char *err, size_t errlen)
{
    int status = gate(L, f, ud);
    char msg[1024];

    if (status == LUA_OK)
        return 0;
    error_text(L, status, msg, sizeof msg);
    snprintf(err, errlen, "%s: %s", what, msg);
    return status == LUA_ERRMEM ? SJ_ENOMEM : SJ_ELUA;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* ---- open ----------------------------------------------------------------*/

struct setup_args {
    const sj_vm_options *opts;
};

/* Append `add` (then ";") in front of package[field]... built as
 * <add>;<dirs>;<old value>. Expects package at index `pkg`. */
static void set_search_path(lua_State *L, int pkg, const char *field,
                            const char *add, const sj_vm_options *opts,
                            bool with_dirs)
{
    lua_pushliteral(L, "");
    if (add != NULL && add[0] != '\0') {
        lua_pushstring(L, add);
        lua_pushliteral(L, ";");
        lua_concat(L, 3);
    }
    if (with_dirs) {
        lua_newtable(L); /* directories already added */
        int seen = lua_gettop(L);
        for (size_t i = 0; i < opts->n_files; i++) {
            const char *f = opts->files[i];
            const char *slash = strrchr(f, '/');
            if (slash != NULL)
                lua_pushlstring(L, f, (size_t)(slash - f));
            else
                lua_pushliteral(L, ".");
            lua_pushvalue(L, -1);
            if (lua_rawget(L, seen) != LUA_TNIL) {
                lua_pop(L, 2);
                continue;
            }
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushboolean(L, 1);
            lua_rawset(L, seen);
            const char *dir = lua_tostring(L, -1);
            lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
            lua_remove(L, -2);
            /* stack: ... acc seen piece */
            lua_pushvalue(L, seen - 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
            lua_replace(L, seen - 1);
        }
        lua_pop(L, 1);
    }
    lua_getfield(L, pkg, field);
    lua_concat(L, 2);
    lua_setfield(L, pkg, field);
}

static int setup_c(lua_State *L)
{
    struct setup_args *sa = lua_touserdata(L, 1);
    luaL_openlibs(L);
    sj_limits_open(L);
    sj_lualib_preload(L);
    lua_getglobal(L, LUA_LOADLIBNAME);
    int pkg = lua_gettop(L);
    set_search_path(L, pkg, "path", sa->opts->lua_path, sa->opts, true);
    set_search_path(L, pkg, "cpath", sa->opts->lua_cpath, sa->opts, false);
    sj_sandbox_apply(L, sa->opts->lua_allow);
    return 0;
}

/* One executor file: from disk, or from its snapshot when src is set. */
typedef struct load_args {
    const char *path;
    const char *src;
    size_t len;
} load_args;

static int load_c(lua_State *L)
{
    const load_args *la = lua_touserdata(L, 1);
    int status;
    if (la->src == NULL) {
        status = luaL_loadfilex(L, la->path, "t");
    } else {
        const char *s = la->src;
        size_t n = la->len;
        if (n > 0 && s[0] == '#') { /* skip it, keep its newline */
            const char *nl = memchr(s, '\n', n);
            n = nl != NULL ? n - (size_t)(nl - s) : 0;
            s = nl != NULL ? nl : s + la->len;
        }
        lua_pushfstring(L, "@%s", la->path);
        status = luaL_loadbufferx(L, s, n, lua_tostring(L, -1), "t");
    }
    if (status != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 0);
    return 0;
}

static int builtins_c(lua_State *L)
{
    const sj_vm_options *o = lua_touserdata(L, 1);
    sj_builtins_load(L, sj_builtins_mask(o->builtins), o->http_allow);
    return 0;
}

static int cmp_exec(const void *a, const void *b)
{
    return strcmp(((const vm_exec *)a)->name, ((const vm_exec *)b)->name);
}

static const char *static_kind(const char *kind)
{
    if (kind != NULL && strcmp(kind, "map") == 0)
        return "map";
    if (kind != NULL && strcmp(kind, "map_reduce") == 0)
        return "map_reduce";
    return "job";
}

/* Copy the registry's names and kinds into vm->execs. Everything malloc'd
 * is owned by the VM as soon as it exists, so a Lua error leaks nothing. */
static int list_c(lua_State *L)
{
    sj_vm *vm = lua_touserdata(L, 1);
    sj_lualib_push_executors(L);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        n++;
        lua_pop(L, 1);
    }
    vm->execs = calloc(n ? n : 1, sizeof *vm->execs);
    if (vm->execs == NULL)
        return luaL_error(L, "out of memory");
    lua_pushnil(L);
    while (lua_next(L, -2) != 0 && vm->nexecs < n) {
        lua_getfield(L, -1, "kind");
        vm_exec *e = &vm->execs[vm->nexecs];
        e->kind = static_kind(lua_tostring(L, -1));
        e->name = strdup(lua_tostring(L, -3));
        if (e->name == NULL)
            return luaL_error(L, "out of memory");
        vm->nexecs++;
        lua_pop(L, 2);
    }
    qsort(vm->execs, vm->nexecs, sizeof *vm->execs, cmp_exec);
    lua_pop(L, 1);
    sj_sandbox_push_module_files(L);
    size_t m = (size_t)lua_rawlen(L, -1);
    vm->modules = calloc(m ? m : 1, sizeof *vm->modules);
    if (vm->modules == NULL)
        return luaL_error(L, "out of memory");
    for (size_t i = 0; i < m; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        vm->modules[i] = strdup(lua_tostring(L, -1));
        if (vm->modules[i] == NULL)
            return luaL_error(L, "out of memory");
        vm->nmodules++;
        lua_pop(L, 1);
    }
    return 0;
}

int sj_vm_open(const sj_vm_options *opts, sj_vm **out, char *err, size_t errlen)
{
    char dummy[1];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (out != NULL)
        *out = NULL;
    if (opts == NULL || out == NULL || (opts->n_files && !opts->files)) {
        snprintf(err, errlen, "sj_vm_open: missing options");
        return SJ_EINVAL;
    }
    int rc = SJ_ELUA;
    sj_vm *vm = calloc(1, sizeof *vm);
    if (vm == NULL) {
        snprintf(err, errlen, "out of memory");
        return SJ_ENOMEM;
    }
    vm->mem_cap = opts->memory_limit;
    vm->ctx.task_log = opts->task_log;
    vm->ctx.task_log_wait = opts->task_log_wait;
    vm->ctx.map_report = opts->map_report;
    vm->ctx.ud = opts->ud;
    vm->ctx.mem_cap = opts->memory_limit;
    vm->ctx.cleanup_ms = opts->cleanup_ms;
    vm->load_timeout_ms = opts->load_timeout_ms;

    vm->L = lua_newstate(vm_alloc, vm);
    if (vm->L == NULL) {
        snprintf(err, errlen,
                 "cannot create a Lua state (memory cap %zu bytes)",
                 opts->memory_limit);
        rc = SJ_ENOMEM;
        goto fail_state;
    }
    lua_State *L = vm->L;
    sj_lualib_attach(L, &vm->ctx);

    struct setup_args sa = {opts};
    int status = gate(L, setup_c, &sa);
    if (status != LUA_OK) {
        char msg[512];
        error_text(L, status, msg, sizeof msg);
        if (status == LUA_ERRMEM && vm->ctx.mem_refused)
            snprintf(err, errlen,
                     "setting up the Lua state: out of memory (the Lua "
                     "state's cap is %zu bytes)",
                     vm->mem_cap);
        else
            snprintf(err, errlen, "setting up the Lua state: %s", msg);
        rc = status == LUA_ERRMEM ? SJ_ENOMEM : SJ_ELUA;
        goto fail_lua;
    }

    vm->ctx.loading = true;
    vm->builtins = sj_builtins_mask(opts->builtins);
    if (vm->builtins != 0) {
        vm->ctx.load_file = "builtin executors";
        if ((rc = gate_step(L, builtins_c, (void *)opts,
                            "loading the built-in executors", err, errlen)) !=
            0)
            goto fail_lua;
    }
    for (size_t i = 0; i < opts->n_files; i++) {
        const char *path = opts->files[i];
        if (path == NULL) {
            snprintf(err, errlen, "executor file %zu is NULL", i);
            rc = SJ_EINVAL;
            goto fail_lua;
        }
        load_args la = {path, opts->sources ? opts->sources[i] : NULL,
                        opts->source_lens ? opts->source_lens[i] : 0};
        if (opts->sources != NULL && la.src == NULL) {
            snprintf(err, errlen, "executor file %s has no source", path);
            rc = SJ_EINVAL;
            goto fail_lua;
        }
        vm->ctx.load_file = path;
        sj_limits_arm_load(L, &vm->ctx, vm->load_timeout_ms,
                           opts->watch_signals);
        status = gate(L, load_c, &la);
        sj_trip tripped = vm->ctx.tripped;
        sj_limits_disarm(L, &vm->ctx);
        if (status != LUA_OK) {
            char msg[1024];
            error_text(L, status, msg, sizeof msg);
            if (tripped == SJ_TRIP_TIMEOUT)
                snprintf(err, errlen,
                         "loading %s: did not finish within load_timeout "
                         "(%.3g s): stopped at %s",
                         path, (double)vm->load_timeout_ms / 1000.0,
                         vm->ctx.trip_where[0] ? vm->ctx.trip_where : path);
            else if (tripped == SJ_TRIP_SHUTDOWN)
                snprintf(err, errlen,
                         "loading %s: interrupted (the host is shutting "
                         "down) at %s",
                         path,
                         vm->ctx.trip_where[0] ? vm->ctx.trip_where : path);
            else if (status == LUA_ERRMEM && vm->ctx.mem_refused)
                snprintf(err, errlen,
                         "loading %s: out of memory (the Lua state's cap is "
                         "%zu bytes)",
                         path, vm->mem_cap);
            else
                snprintf(err, errlen, "loading %s: %s", path, msg);
            if (lua_type(L, -1) == LUA_TSTRING)
                SJ_DEBUG("loading %s: %s", path, lua_tostring(L, -1));
            rc = tripped == SJ_TRIP_SHUTDOWN ? SJ_ECANCELED
                 : status == LUA_ERRMEM      ? SJ_ENOMEM
                                             : SJ_ELUA;
            goto fail_lua;
        }
    }
    vm->ctx.loading = false;
    vm->ctx.load_file = NULL;

    if ((rc = gate_step(L, list_c, vm, "listing executors", err, errlen)) != 0)
        goto fail_lua;
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    *out = vm;
    return 0;

fail_lua:
    vm->ctx.loading = false;
    vm->ctx.load_file = NULL;
fail_state:
    sj_vm_close(vm);
    return rc;
}

void sj_vm_options_from_config(sj_vm_options *o, const sj_config *cfg)
{
    o->lua_path = cfg->lua_path;
    o->lua_cpath = cfg->lua_cpath;
    o->memory_limit = (size_t)cfg->memory_limit_mb * 1024 * 1024;
    o->load_timeout_ms = (long long)(cfg->load_timeout * 1000.0);
    o->cleanup_ms = (long long)(cfg->cleanup_budget * 1000.0);
    o->lua_allow = cfg->lua_allow;
    o->builtins = cfg->builtins;
    o->http_allow = cfg->http_allow;
}

void sj_vm_close(sj_vm *vm)
{
    if (vm == NULL)
        return;
    if (vm->L != NULL) {
        /* __gc and pending __close handlers run now: bounded too */
        sj_limits_arm_close(vm->L, &vm->ctx);
        lua_close(vm->L);
        sj_limits_detach(&vm->ctx);
    }
    for (size_t i = 0; i < vm->nexecs; i++)
        free(vm->execs[i].name);
    free(vm->execs);
    for (size_t i = 0; i < vm->nmodules; i++)
        free(vm->modules[i]);
    free(vm->modules);
    free(vm);
}

size_t sj_vm_module_files(const sj_vm *vm, const char *const **files)
{
    *files = vm ? (const char *const *)vm->modules : NULL;
    return vm ? vm->nmodules : 0;
}

size_t sj_vm_executor_count(const sj_vm *vm)
{
    return vm ? vm->nexecs : 0;
}

const char *sj_vm_executor_name(const sj_vm *vm, size_t i)
{
    return vm && i < vm->nexecs ? vm->execs[i].name : NULL;
}

const char *sj_vm_executor_kind(const sj_vm *vm, size_t i)
{
    return vm && i < vm->nexecs ? vm->execs[i].kind : NULL;
}

int sj_vm_executor_list(const sj_vm *vm, char ***names, char ***kinds,
                        size_t *n)
{
    size_t count = sj_vm_executor_count(vm);
    char **nv = calloc(count ? count : 1, sizeof *nv);
    char **kv = calloc(count ? count : 1, sizeof *kv);
    *names = NULL;
    *kinds = NULL;
    *n = 0;
    if (nv == NULL || kv == NULL)
        goto fail;
    for (size_t i = 0; i < count; i++) {
        nv[i] = strdup(vm->execs[i].name);
        kv[i] = strdup(vm->execs[i].kind);
        if (nv[i] == NULL || kv[i] == NULL) {
            sj_vm_executor_list_free(nv, kv, i + 1);
            return SJ_ENOMEM;
        }
    }
    *names = nv;
    *kinds = kv;
    *n = count;
    return 0;
fail:
    free(nv);
    free(kv);
    return SJ_ENOMEM;
}

void sj_vm_executor_list_free(char **names, char **kinds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (names != NULL)
            free(names[i]);
        if (kinds != NULL)
            free(kinds[i]);
    }
    free(names);
    free(kinds);
}

bool sj_vm_needs_rebuild(const sj_vm *vm)
{
    return vm != NULL && vm->needs_rebuild;
}

size_t sj_vm_mem_used(const sj_vm *vm)
{
    return vm ? vm->mem_used : 0;
}

void sj_run_free(sj_run *run)
{
    if (run == NULL)
        return;
    json_decref(run->result);
    free(run->message);
    json_decref(run->wf_changes);
    memset(run, 0, sizeof *run);
}

/* ---- routing ------------------------------------------------------------ */

static const char *type_name(int type)
{
    switch (type) {
    case SJ_TYPE_CLUSTER:
        return "CLUSTER";
    case SJ_TYPE_BROADCAST:
        return "BROADCAST";
    case SJ_TYPE_SHARDING:
        return "SHARDING";
    case SJ_TYPE_MAP:
        return "MAP";
    case SJ_TYPE_MAP_REDUCE:
        return "MAP_REDUCE";
    default:
        return "unknown-type";
    }
}

static const char *stage_name(int stage)
{
    switch (stage) {
    case SJ_STAGE_MAP:
        return "MAP";
    case SJ_STAGE_REDUCE:
        return "REDUCE";
    case SJ_STAGE_MERGE:
        return "MERGE_REDUCE";
    default:
        return "NONE";
    }
}

/* Append printf-style text to buf (bounded, always terminated). */
static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
}

#define LIST_MAX 20 /* names listed in a message */

static void unknown_message(const sj_vm *vm, const char *name, char *msg,
                            size_t size)
{
    snprintf(msg, size, "no executor named '%s'; ", name);
    if (vm->nexecs == 0) {
        append(msg, size, "none registered");
        return;
    }
    append(msg, size, "registered: ");
    size_t best = 0, best_d = SIZE_MAX;
    for (size_t i = 0; i < vm->nexecs; i++) {
        if (i < LIST_MAX)
            append(msg, size, "%s%s", i ? ", " : "", vm->execs[i].name);
        size_t d = sj_text_distance(name, vm->execs[i].name, 0);
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    if (vm->nexecs > LIST_MAX)
        append(msg, size, ", ... (%zu in all)", vm->nexecs);
    if (best_d != SIZE_MAX)
        append(msg, size, " (closest: '%s')", vm->execs[best].name);
}

/* The keys of the table at `idx` (map handler names), comma-separated. */
static void append_keys(lua_State *L, int idx, char *msg, size_t size)
{
    int n = 0;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING && n < LIST_MAX)
            append(msg, size, "%s%s", n++ ? ", " : "", lua_tostring(L, -2));
        lua_pop(L, 1);
    }
    if (n == 0)
        append(msg, size, "none");
}

static bool no_executor(sj_run *out, const char *msg)
{
    out->outcome = SJ_OUT_NO_EXECUTOR;
    out->message = strdup(msg);
    return false;
}

/*
 * Find the handler for task t. On success the handler is on top of the
 * stack, ctx.stage is set and true is returned; otherwise out holds
 * SJ_OUT_NO_EXECUTOR and a message saying why. Stack: +n (caller trims).
 */
static bool route(lua_State *L, sj_vm *vm, const sj_task *t, sj_run *out)
{
    char msg[1024];
    const char *name = t->executor_info ? t->executor_info : "";
    sj_lualib_push_executors(L);
    if (lua_getfield(L, -1, name) != LUA_TTABLE) {
        if (!sj_builtins_hint(name, vm->builtins, msg, sizeof msg))
            unknown_message(vm, name, msg, sizeof msg);
        return no_executor(out, msg);
    }
    int entry = lua_gettop(L);
    lua_getfield(L, entry, "kind");
    const char *kind = static_kind(lua_tostring(L, -1));
    lua_getfield(L, entry, "spec");
    int spec = lua_gettop(L);
    if (!lua_istable(L, spec))
        return no_executor(out, "executor registry is corrupt");

    bool map_type =
        t->task_type == SJ_TYPE_MAP || t->task_type == SJ_TYPE_MAP_REDUCE;
    if (!map_type) {
        if (strcmp(kind, "job") != 0) {
            snprintf(msg, sizeof msg,
                     "executor '%s' is declared with sj.%s, but this is a "
                     "%s task, which needs a job handler; declare it with "
                     "sj.job",
                     name, kind, type_name(t->task_type));
            return no_executor(out, msg);
        }
        lua_getfield(L, spec, "job");
        vm->ctx.stage = SJ_STAGE_NONE;
    } else {
        int stage = t->mr_stage == SJ_STAGE_NONE ? SJ_STAGE_MAP : t->mr_stage;
        const char *tn = t->task_name ? t->task_name : SJ_ROOT_MAP;
        if (strcmp(kind, "job") == 0) {
            snprintf(msg, sizeof msg,
                     "executor '%s' is declared as a job (sj.job), but this "
                     "is a %s task (stage %s, task '%s'); declare it with "
                     "sj.map or sj.map_reduce",
                     name, type_name(t->task_type), stage_name(stage), tn);
            return no_executor(out, msg);
        }
        if (stage == SJ_STAGE_MAP) {
            lua_getfield(L, spec, "map");
            if (!lua_istable(L, -1))
                return no_executor(out, "executor registry is corrupt");
            lua_getfield(L, -1, tn);
            if (!lua_isfunction(L, -1)) {
                snprintf(msg, sizeof msg,
                         "executor '%s' has no map handler for task '%s' "
                         "(stage MAP); its map handlers: ",
                         name, tn);
                append_keys(L, -2, msg, sizeof msg);
                return no_executor(out, msg);
            }
        } else if (stage == SJ_STAGE_REDUCE || stage == SJ_STAGE_MERGE) {
            const char *field = stage == SJ_STAGE_REDUCE ? "reduce" : "merge";
            if (strcmp(kind, "map_reduce") != 0) {
                snprintf(msg, sizeof msg,
                         "executor '%s' is declared with sj.map, which has "
                         "no %s stage (stage %s, task '%s'); declare it "
                         "with sj.map_reduce",
                         name, field, stage_name(stage), tn);
                return no_executor(out, msg);
            }
            lua_getfield(L, spec, field);
            if (!lua_isfunction(L, -1)) {
                snprintf(msg, sizeof msg,
                         "executor '%s' has no %s handler (stage %s, task "
                         "'%s')",
                         name, field, stage_name(stage), tn);
                return no_executor(out, msg);
            }
        } else {
            snprintf(msg, sizeof msg,
                     "executor '%s': unknown map-reduce stage %d (task '%s')",
                     name, t->mr_stage, tn);
            return no_executor(out, msg);
        }
        vm->ctx.stage = stage;
    }
    if (!lua_isfunction(L, -1)) {
        snprintf(msg, sizeof msg, "executor '%s' has no handler", name);
        return no_executor(out, msg);
    }
    return true;
}

/* ---- run ---------------------------------------------------------------- */

struct run_args {
    sj_vm *vm;
    sj_task *t;
    sj_run *out;
};

/* Turn the handler's return value at `idx` into out (lua-api.md
 * "Results"). May raise (memory); whatever is stored in out is freed by
 * the caller then. */
static void collect_result(lua_State *L, int idx, sj_run *out)
{
    char err[512];
    bool marker = false;
    if (lua_getmetatable(L, idx)) {
        sj_lualib_push_result_mt(L);
        marker = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    int value = idx;
    if (marker) {
        lua_pushliteral(L, "status");
        lua_rawget(L, idx);
        bool failure = lua_type(L, -1) == LUA_TSTRING &&
                       strcmp(lua_tostring(L, -1), "failure") == 0;
        if (failure) {
            lua_pushliteral(L, "message");
            lua_rawget(L, idx);
            size_t len = 0;
            const char *m = luaL_tolstring(L, -1, &len);
            out->outcome = SJ_OUT_FAILED;
            out->message = dupn(m, len);
            return;
        }
        lua_pushliteral(L, "value");
        lua_rawget(L, idx);
        value = lua_gettop(L);
    }
    out->outcome = SJ_OUT_OK;
    if (lua_isnil(L, value))
        return;
    out->result = sj_luajson_to(L, value, err, sizeof err);
    if (out->result == NULL) {
        char msg[600];
        snprintf(msg, sizeof msg,
                 "the handler's result cannot be sent as JSON: %s", err);
        out->outcome = SJ_OUT_ERROR;
        out->message = strdup(msg);
    }
}

static int run_c(lua_State *L)
{
    struct run_args *ra = lua_touserdata(L, 1);
    sj_lualib_ctx *ctx = &ra->vm->ctx;
    lua_settop(L, 0);
    if (!route(L, ra->vm, ra->t, ra->out))
        return 0;
    lua_replace(L, 1); /* the handler */
    lua_settop(L, 1);
    sj_lualib_push_args(L, ctx);
    sj_limits_arm_run(L, ctx, 1);
    lua_call(L, 1, 1);
    sj_limits_disarm(L, ctx);
    collect_result(L, 1, ra->out);
    if (ra->out->outcome == SJ_OUT_OK || ra->out->outcome == SJ_OUT_FAILED)
        ra->out->wf_changes = sj_lualib_wf_changes(L, false);
    return 0;
}

/* Fill out for an interrupted run and say why in the task log. */
static void interrupted(sj_vm *vm, const sj_task *t, sj_run *out, sj_trip why)
{
    char line[256];
    sj_run_free(out);
    sj_log_level level =
        sj_limits_outcome(why, t->executor_timeout, vm->mem_cap, &out->outcome,
                          &out->stop_reason, line, sizeof line);
    out->message = strdup(line);
    sj_lualib_task_line(&vm->ctx, level, line, strlen(line),
                        vm->ctx.trip_where);
}

void sj_vm_seen(sj_vm *vm, char *buf, size_t n)
{
    sj_limits_seen(&vm->ctx, buf, n);
}

int sj_vm_run(sj_vm *vm, sj_task *t, sj_run *out)
{
    if (vm == NULL || t == NULL || out == NULL)
        return SJ_EINVAL;
    memset(out, 0, sizeof *out);
    lua_State *L = vm->L;
    sj_lualib_ctx *ctx = &vm->ctx;
    ctx->task = t;
    ctx->stage = SJ_STAGE_NONE;
    ctx->run_serial = ++vm->serial;
    ctx->tripped = SJ_TRIP_NONE;
    ctx->mem_refused = false;
    ctx->trip_where[0] = '\0';
    lua_settop(L, 0);

    struct run_args ra = {vm, t, out};
    int status = gate(L, run_c, &ra);
    sj_limits_disarm(L, ctx);

    if (ctx->tripped != SJ_TRIP_NONE) {
        /* cut off by the hook, sj.sleep, the allocator or a stop during
         * sj.mr_do_map: the state may hold half-done work */
        vm->needs_rebuild = true;
        interrupted(vm, t, out, ctx->tripped);
    } else if (status == LUA_OK) {
        sj_trip why = sj_limits_poll(ctx);
        if (why == SJ_TRIP_NOMEM)
            vm->needs_rebuild = true;
        if (why != SJ_TRIP_NONE) {
            /* returned, but the batch was stopped or timed out meanwhile:
             * its result must not be reported (protocol.md 7.1-7.2) */
            interrupted(vm, t, out, why);
        } else if (out->outcome == SJ_OUT_NO_EXECUTOR ||
                   out->outcome == SJ_OUT_ERROR) {
            const char *m = out->message ? out->message : "out of memory";
            sj_lualib_task_line(ctx, SJ_LOG_ERROR, m, strlen(m), "");
        }
    } else if (status == LUA_ERRMEM || ctx->mem_refused) {
        vm->needs_rebuild = true;
        interrupted(vm, t, out, SJ_TRIP_NOMEM);
    } else {
        /* a raised error: the message is reported, the traceback logged */
        sj_run_free(out);
        out->outcome = SJ_OUT_ERROR;
        if (status == LUA_ERRERR)
            vm->needs_rebuild = true;
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t len = 0;
            const char *full = lua_tolstring(L, -1, &len);
            out->message = dupn(full, message_len(full));
            sj_lualib_task_line(ctx, SJ_LOG_ERROR, full, len, "");
        } else {
            const char *m = sj_limits_is_interrupt(L, -1)
                                ? "error: an interruption was re-raised "
                                  "after its run"
                                : "error: (error object is not a string)";
            out->message = strdup(m);
            sj_lualib_task_line(ctx, SJ_LOG_ERROR, m, strlen(m), "");
        }
    }

    lua_settop(L, 0);
    ctx->task = NULL;
    ctx->stage = SJ_STAGE_NONE;
    ctx->tripped = SJ_TRIP_NONE;
    ctx->mem_refused = false;
    return 0;
}
