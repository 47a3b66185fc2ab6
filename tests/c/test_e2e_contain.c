/*
 * test_e2e_contain.c - issue 10 ("Containment"): nothing an executor does
 * can hang, crash or escape the host. The real binary ($SJ_BINARY) against
 * the in-process emulator over real gRPC on loopback.
 *
 *   sandbox      package.loadlib of liblua's luaopen_os / luaopen_debug,
 *                a cpath + "x-os" require, debug.sethook, a corrupted
 *                binary chunk through load, os.exit, os.execute and
 *                io.popen: none escapes (host A); lua_allow gives
 *                os.execute and io.popen back (host B)
 *   stuck in C   a C module that sleeps in C (tests/cmod/sjblock.c) under
 *                a server stop and a timeout, and a pathological
 *                string.find: the worker is retired after stop_grace, the
 *                task given up with a log line, and two workers still run
 *                two tasks at once (the pair job proves it)
 *   cleanup      __close runs when a handler is interrupted; a __close
 *                that loops is cut at cleanup_budget
 *   loading      `while true do end` at the top of a file: at start the
 *                host exits 3 before it listens or beats; SIGTERM during
 *                that load is answered at once; by hot reload the old code
 *                stays with an ERROR; SIGTERM during a reload's load;
 *                `check` exits 3
 *   modules      a change to a module required from SNAIL_LUA_PATH reloads
 *   shutdown     SIGTERM while a worker is blocked in C completes within
 *                the shutdown grace (5 s) + stop_grace + 1 s
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_harness.h"
#include "sj_log.h"
#include "sj_srv.h"

#define LIBLUA "/usr/lib/x86_64-linux-gnu/liblua5.4.so.0"
#define STOP_GRACE_S 1
#define SHUTDOWN_GRACE_MS 5000 /* host A's shutdown_grace */

enum { JOB_ID = 1010 }; /* the job id of every job this suite triggers */
static const char executors_lua[] =
    "local sj = require 'snailjob'\n"
    "local function try(f, ...)\n"
    "  local ok, e = pcall(f, ...)\n"
    "  return (ok and 'ESCAPED ' or 'refused: ') .. tostring(e)\n"
    "end\n"
    "sj.job('escapeLoadlibOs', function()\n"
    "  return sj.success(try(function()\n"
    "    return package.loadlib('" LIBLUA "', 'luaopen_os')().exit(42) end))\n"
    "end)\n"
    "sj.job('escapeLoadlibDebug', function()\n"
    "  return sj.success(try(function()\n"
    "    local d = package.loadlib('" LIBLUA "', 'luaopen_debug')()\n"
    "    d.sethook(); return 'hook removed' end))\n"
    "end)\n"
    "sj.job('escapeCpath', function()\n"
    "  return sj.success(try(function()\n"
    "    package.cpath = '" LIBLUA "'\n"
    "    return require('x-os').exit(42) end))\n"
    "end)\n"
    "sj.job('escapeSethook', function()\n"
    "  return sj.success(try(function() debug.sethook(); return 'x' end))\n"
    "end)\n"
    "sj.job('escapeBinary', function()\n"
    "  local c = string.dump(function() return 1 end)\n"
    "  c = c:sub(1, 12) .. string.rep('\\255', 60) .. c:sub(73)\n"
    "  return sj.success(try(function()\n"
    "    local f, err = load(c, 'bad', 'b'); assert(f, err); return f() end))\n"
    "end)\n"
    "sj.job('escapeExit', function() os.exit(42) end)\n"
    "sj.job('escapeExecute', function()\n"
    "  return sj.success(try(os.execute, 'true') .. ' | ' ..\n"
    "    try(function() return io.popen('echo popen-ran'):read('a') end))\n"
    "end)\n"
    "sj.job('blockInC', function()\n"
    "  require('sjblock').sleep(30)\n"
    "end)\n"
    "sj.job('badFind', function()\n"
    "  local s = string.rep('a', 200000)\n"
    "  return sj.success(tostring(string.find(s, '.-.-.-.-.-b')))\n"
    "end)\n"
    "sj.job('pairJob', function(args)\n"
    "  local me, other = args.job_params:match('([^ ]+) ([^ ]+)')\n"
    "  io.open(me, 'w'):close()\n"
    "  for _ = 1, 1000 do\n"
    "    local f = io.open(other)\n"
    "    if f then f:close(); return sj.success('paired') end\n"
    "    sj.sleep(0.01)\n"
    "  end\n"
    "  return sj.failure('no partner: one worker only?')\n"
    "end)\n"
    "sj.job('closeJob', function(args)\n"
    "  local lock <close> = setmetatable({}, { __close = function()\n"
    "    sj.sleep(0.05)\n"
    "    local f = io.open(args.job_params, 'w'); f:write('closed'); "
    "f:close()\n"
    "  end })\n"
    "  for _ = 1, 40 do sj.sleep(1) end\n"
    "end)\n"
    "sj.job('closeLoopJob', function(args)\n"
    "  local lock <close> = setmetatable({}, { __close = function()\n"
    "    io.open(args.job_params, 'w'):close()\n"
    "    while true do end\n"
    "  end })\n"
    "  for _ = 1, 40 do sj.sleep(1) end\n"
    "end)\n"
    "sj.job('okJob', function() return sj.success('ok') end)\n"
    "sj.job('warnJob', function() warn('from ', 'a script') end)\n";

static const char loop_lua[] = "local sj = require 'snailjob'\n"
                               "sj.job('loopJob', function() end)\n"
                               "while true do end\n";

static sj_emu *emu;
static sj_srv *srv;
static int emu_port;
static h_host host_a;
static char target_a[64];
static char scratch[300]; /* a directory for the jobs' files */

/* ---- helpers -------------------------------------------------------------*/

static int64_t trigger(const sj_srv_job *j)
{
    int64_t b = 0;
    int rc = sj_srv_trigger(srv, j, &b);
    CHECKF(rc == 0, "trigger %s: %d", j->executor_info, rc);
    return b;
}

/* The batch's result text (the task's result), or NULL. */
static char *result_of(int64_t b)
{
    char *out = NULL;
    if (sj_srv_batch_result(srv, b, &out) != 0)
        return NULL;
    return out;
}

static int task_message_has(int64_t b, const char *needle)
{
    sj_srv_task_info *v = NULL;
    size_t n = 0;
    int has = 0;
    if (sj_srv_batch_tasks(srv, b, &v, &n) == 0)
        for (size_t i = 0; i < n; i++) {
            has |= v[i].message && strstr(v[i].message, needle);
            has |= v[i].result && strstr(v[i].result, needle);
        }
    sj_srv_tasks_free(v, n);
    return has;
}

/* How many remote log lines (of any task) contain `needle`. */
static int remote_log_count(const char *needle)
{
    size_t n = sj_srv_log_count(srv);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        char *text = NULL;
        if (sj_srv_log_get(srv, i, &text) != 0)
            continue;
        count += strstr(text, needle) != NULL;
        free(text);
    }
    return count;
}

/* Wait until more than `before` remote log lines contain `needle`. */
static int wait_remote_log(const char *needle, int before, long long timeout_ms)
{
    long long until = h_now() + timeout_ms;
    do {
        if (remote_log_count(needle) > before)
            return 1;
        h_sleep_ms(10);
    } while (h_now() < until);
    return 0;
}

static int wait_host_log(h_host *h, const char *needle, long long timeout_ms)
{
    long long until = h_now() + timeout_ms;
    while (h_now() < until) {
        if (h_log_has(h, needle))
            return 1;
        h_sleep_ms(20);
    }
    return 0;
}

static int wait_ready(h_host *h)
{
    long long until = h_now() + H_MS(10000);
    while (h_now() < until && h_host_alive(h)) {
        if (h_log_has(h, "listening on port")) {
            h_sleep_ms(300); /* registered with the emulator */
            return 1;
        }
        h_sleep_ms(20);
    }
    return 0;
}

/* Two tasks at once on `target`: both succeed only if two workers run them
 * at the same time (each waits for the other's file). */
static void check_two_workers(const char *target, const char *tag)
{
    char a[400], b[400], pa[900], pb[900];
    snprintf(a, sizeof a, "%s/%s-a", scratch, tag);
    snprintf(b, sizeof b, "%s/%s-b", scratch, tag);
    snprintf(pa, sizeof pa, "%s %s", a, b);
    snprintf(pb, sizeof pb, "%s %s", b, a);
    sj_srv_job ja = h_job_on(JOB_ID, target, "pairJob", pa);
    sj_srv_job jb = h_job_on(JOB_ID, target, "pairJob", pb);
    int64_t ba = trigger(&ja), bb = trigger(&jb);
    int sa = sj_srv_wait_batch(srv, ba, (int)H_MS(15000));
    int sb = sj_srv_wait_batch(srv, bb, (int)H_MS(15000));
    CHECKF(sa == SJ_SRV_SUCCESS && sb == SJ_SRV_SUCCESS,
           "%s: two workers: statuses %d %d", tag, sa, sb);
}

/* ---- sandbox
 * ---------------------------------------------------------------*/

static void expect_refused_on(const char *target, const char *executor,
                              const char *needle)
{
    sj_srv_job j = h_job_on(JOB_ID, target, executor, "");
    int64_t b = trigger(&j);
    int st = sj_srv_wait_batch(srv, b, (int)H_MS(8000));
    char *r = result_of(b);
    CHECKF(st == SJ_SRV_SUCCESS, "%s: status %d", executor, st);
    CHECKF(r && strstr(r, "refused: ") && !strstr(r, "ESCAPED") &&
               strstr(r, needle),
           "%s: result %s (wanted '%s')", executor, r ? r : "(null)", needle);
    printf("    %s: %.160s\n", executor, r ? r : "(null)");
    free(r);
}

static void expect_refused(const char *executor, const char *needle)
{
    expect_refused_on(target_a, executor, needle);
    CHECK(h_host_alive(&host_a));
}

static void test_sandbox(void)
{
    expect_refused("escapeLoadlibOs", "loadlib");
    expect_refused("escapeLoadlibDebug", "loadlib");
    expect_refused("escapeCpath", "module 'x-os' not found");
    expect_refused("escapeSethook", "sethook");
    expect_refused("escapeBinary", "binary chunk");
    expect_refused("escapeExecute", "os.execute is off");
    expect_refused("escapeExecute", "io.popen is off");

    sj_srv_job j = h_job_on(JOB_ID, target_a, "escapeExit", "");
    int64_t b = trigger(&j);
    CHECK(sj_srv_wait_batch(srv, b, (int)H_MS(8000)) == SJ_SRV_FAIL);
    CHECK(task_message_has(b, "os.exit is not available"));
    CHECK(h_host_alive(&host_a));

    /* warn() goes to the host log (no "@on" needed) */
    j = h_job_on(JOB_ID, target_a, "warnJob", "");
    b = trigger(&j);
    CHECK(sj_srv_wait_batch(srv, b, (int)H_MS(8000)) == SJ_SRV_SUCCESS);
    CHECK(wait_host_log(&host_a, "Lua warning: from a script", H_MS(2000)));
}

static void test_lua_allow(void)
{
    h_host hb;
    char target[64];
    h_host_dir(&hb);
    {
        char sub[400];
        snprintf(sub, sizeof sub, "%s/executors", hb.dir);
        h_write_file(sub, "jobs.lua", executors_lua);
    }
    h_host_start(&hb, emu_port, "SNAIL_LUA_ALLOW=os.execute,io.popen",
                 "SNAIL_BEAT_INTERVAL=1", NULL);
    snprintf(target, sizeof target, "127.0.0.1:%d", hb.port);
    CHECK(wait_ready(&hb));
    sj_srv_job j = h_job_on(JOB_ID, target, "escapeExecute", "");
    int64_t b = trigger(&j);
    CHECK(sj_srv_wait_batch(srv, b, (int)H_MS(8000)) == SJ_SRV_SUCCESS);
    char *r = result_of(b);
    CHECKF(r && strstr(r, "ESCAPED true") && strstr(r, "popen-ran"),
           "lua_allow: %s", r ? r : "(null)");
    free(r);
    /* what lua_allow does not name stays off */
    expect_refused_on(target, "escapeSethook", "sethook");
    expect_refused_on(target, "escapeLoadlibOs", "loadlib");
    CHECK(h_host_stop(&hb, SIGTERM) == 0);
    h_host_cleanup(&hb);
}

/* ---- stuck in C
 * ------------------------------------------------------------*/

static void stuck_case(const char *executor, int by_stop)
{
    int before = h_log_count(&host_a, "retired: task");
    int remote = remote_log_count("its worker retired");
    sj_srv_job j = h_job_on(JOB_ID, target_a, executor, "");
    if (!by_stop)
        j.executor_timeout = 1;
    long long t0 = h_now();
    int64_t b = trigger(&j);
    h_sleep_ms(300);
    if (by_stop)
        CHECK(sj_srv_stop_batch(srv, b) == 0);
    CHECKF(wait_remote_log("its worker retired", remote, H_MS(8000)),
           "%s: no retirement log line", executor);
    long long took = h_now() - t0;
    printf("    %s (%s): given up after %lld ms\n", executor,
           by_stop ? "stop" : "timeout", took);
    CHECK(wait_host_log(&host_a, "degraded", 1) == 0 || before >= 2);
    CHECK(wait_host_log(&host_a, "retired so far", H_MS(1000)));
    CHECK(h_log_count(&host_a, "retired: task") == before + 1);
    CHECK(h_log_has(&host_a, "jobs.lua:"));
    CHECK(h_host_alive(&host_a));
    check_two_workers(target_a, executor);
}

static void test_stuck_in_c(void)
{
    stuck_case("blockInC", 1);
    stuck_case("blockInC", 0);
    stuck_case("badFind", 0);
    /* a third retirement with workers = 2: the host says it is degraded */
    CHECK(wait_host_log(&host_a, "degraded: 3 workers retired", H_MS(2000)));
}

/* ---- cleanup
 * ----------------------------------------------------------------*/

static void close_case(const char *executor, int by_stop)
{
    char path[400];
    int interrupted = remote_log_count("interrupted:");
    snprintf(path, sizeof path, "%s/%s-%d.closed", scratch, executor, by_stop);
    sj_srv_job j = h_job_on(JOB_ID, target_a, executor, path);
    if (!by_stop)
        j.executor_timeout = 1;
    int64_t b = trigger(&j);
    h_sleep_ms(400);
    if (by_stop)
        CHECK(sj_srv_stop_batch(srv, b) == 0);
    long long t0 = h_now();
    CHECKF(wait_remote_log("interrupted:", interrupted, H_MS(6000)),
           "%s: no interruption", executor);
    long long until = h_now() + H_MS(3000);
    char *text = NULL;
    while (h_now() < until) {
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            fclose(f);
            break;
        }
        h_sleep_ms(10);
    }
    text = h_read_file(path);
    CHECKF(text != NULL && (strcmp(executor, "closeLoopJob") == 0 ||
                            strcmp(text, "closed") == 0),
           "%s: __close did not run (%s)", executor, text ? text : "none");
    free(text);
    printf("    %s (%s): cleanup done %lld ms after the interruption\n",
           executor, by_stop ? "stop" : "timeout", h_now() - t0);
    CHECK(h_host_alive(&host_a));
}

static void test_cleanup(void)
{
    close_case("closeJob", 1);
    close_case("closeJob", 0);
    /* a __close that loops is cut at cleanup_budget (0.5 s): the worker
     * is not retired and both workers are usable afterwards */
    int before = h_log_count(&host_a, "retired: task");
    long long t0 = h_now();
    close_case("closeLoopJob", 1);
    CHECK(h_log_count(&host_a, "retired: task") == before);
    check_two_workers(target_a, "after-close-loop");
    printf("    closeLoopJob: next tasks ran %lld ms after the stop\n",
           h_now() - t0);
}

/* ---- loading
 * -----------------------------------------------------------------*/

static int port_listening(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Has a host with this port ever beaten (is it a node of the emulator)? */
static int is_node(int port)
{
    sj_srv_node_info *v = NULL;
    size_t n = 0;
    int found = 0;
    if (sj_srv_nodes(srv, &v, &n) == 0)
        for (size_t i = 0; i < n; i++)
            found |= v[i].port == port;
    sj_srv_nodes_free(v, n);
    return found;
}

static int wait_exit(h_host *h, long long timeout_ms, long long *took)
{
    long long t0 = h_now();
    int status = 0;
    while (h_now() - t0 < timeout_ms) {
        if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
            h->pid = 0;
            *took = h_now() - t0;
            return WIFEXITED(status) ? WEXITSTATUS(status)
                                     : 128 + WTERMSIG(status);
        }
        h_sleep_ms(10);
    }
    *took = h_now() - t0;
    return -1;
}

static void test_load_loop_start(void)
{
    h_host h;
    long long took;
    char sub[400];

    h_host_dir(&h);
    snprintf(sub, sizeof sub, "%s/executors", h.dir);
    h_write_file(sub, "loop.lua", loop_lua);
    h_host_start(&h, emu_port, "SNAIL_LOAD_TIMEOUT=1", NULL);
    h_sleep_ms(500);
    CHECK(!port_listening(h.port));
    int code = wait_exit(&h, H_MS(8000), &took);
    CHECKF(code == 3, "exit %d after %lld ms", code, took);
    CHECK(h_log_has(&h, "load_timeout") && h_log_has(&h, "loop.lua:3"));
    CHECK(!h_log_has(&h, "listening on port"));
    CHECK(!is_node(h.port)); /* it never beat */
    h_host_cleanup(&h);

    /* SIGTERM during a load that would take 60 s */
    h_host_dir(&h);
    snprintf(sub, sizeof sub, "%s/executors", h.dir);
    h_write_file(sub, "loop.lua", loop_lua);
    h_host_start(&h, emu_port, "SNAIL_LOAD_TIMEOUT=60", NULL);
    h_sleep_ms(700);
    CHECK(h_host_alive(&h));
    kill(h.pid, SIGTERM);
    code = wait_exit(&h, H_MS(5000), &took);
    printf("    SIGTERM during a start's load loop: exit %d after %lld ms\n",
           code, took);
    CHECK(code == 0 && took < 1000 + H_MS(200));
    CHECK(!h_log_has(&h, "listening on port"));
    h_host_cleanup(&h);
}

static void test_check_loop(void)
{
    h_host h;
    char sub[400], cmd[1400];
    h_host_dir(&h);
    snprintf(sub, sizeof sub, "%s/executors", h.dir);
    h_write_file(sub, "loop.lua", loop_lua);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && env -i SNAIL_EXECUTORS=executors "
             "SNAIL_LOAD_TIMEOUT=1 '%s' check > check.out 2>&1",
             h.dir, getenv("SJ_BINARY"));
    long long t0 = h_now();
    int st = system(cmd);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 3, "check: status %d", st);
    CHECK(h_now() - t0 < H_MS(5000));
    snprintf(sub, sizeof sub, "%s/check.out", h.dir);
    char *out = h_read_file(sub);
    CHECKF(out && strstr(out, "load_timeout") && strstr(out, "loop.lua:3"),
           "check output: %s", out ? out : "(none)");
    free(out);
    h_host_cleanup(&h);
}

static void test_reload_loop(void)
{
    char sub[400];
    snprintf(sub, sizeof sub, "%s/executors", host_a.dir);
    h_write_file(sub, "zloop.lua", loop_lua);
    CHECKF(wait_host_log(&host_a, "stays in force", H_MS(10000)),
           "no reload ERROR");
    CHECK(h_log_has(&host_a, "load_timeout"));
    sj_srv_job j = h_job_on(JOB_ID, target_a, "okJob", "");
    int64_t b = trigger(&j);
    CHECK(sj_srv_wait_batch(srv, b, (int)H_MS(8000)) == SJ_SRV_SUCCESS);
    CHECK(h_host_alive(&host_a));
}

static void test_reload_loop_sigterm(void)
{
    h_host h;
    char sub[400];
    long long took;
    h_host_dir(&h);
    snprintf(sub, sizeof sub, "%s/executors", h.dir);
    h_write_file(
        sub, "ok.lua",
        "local sj = require 'snailjob'\nsj.job('x', function() end)\n");
    h_host_start(&h, emu_port, "SNAIL_LOAD_TIMEOUT=60", NULL);
    CHECK(wait_ready(&h));
    h_write_file(sub, "zloop.lua", loop_lua);
    CHECK(wait_host_log(&h, "loading 2 executor file(s)", H_MS(5000)));
    h_sleep_ms(500);
    CHECK(h_host_alive(&h));
    kill(h.pid, SIGTERM);
    int code = wait_exit(&h, H_MS(10000), &took);
    printf("    SIGTERM during a reload's load loop: exit %d after %lld ms\n",
           code, took);
    CHECK(code == 0 && took < SHUTDOWN_GRACE_MS + 1000 + H_MS(300));
    h_host_cleanup(&h);
}

/* A change to a module an executor file required (from SNAIL_LUA_PATH, a
 * directory that holds no executor file) reloads the executors. */
static void test_reload_follows_require(void)
{
    h_host h;
    char sub[400], lib[400], env[500], target[64];
    h_host_dir(&h);
    snprintf(sub, sizeof sub, "%s/executors", h.dir);
    snprintf(lib, sizeof lib, "%s/lib", h.dir);
    mkdir(lib, 0700);
    h_write_file(lib, "helper.lua", "return { v = 'one' }\n");
    h_write_file(sub, "uses.lua",
                 "local sj = require 'snailjob'\n"
                 "local helper = require 'helper'\n"
                 "sj.job('helperJob', function() return sj.success(helper.v) "
                 "end)\n");
    snprintf(env, sizeof env, "SNAIL_LUA_PATH=%s/?.lua", lib);
    h_host_start(&h, emu_port, env, "SNAIL_BEAT_INTERVAL=1", NULL);
    snprintf(target, sizeof target, "127.0.0.1:%d", h.port);
    CHECK(wait_ready(&h));
    h_write_file(lib, "helper.lua", "return { v = 'two' }\n");
    CHECKF(wait_host_log(&h, "generation 2 published", H_MS(5000)),
           "a module change did not reload");
    h_sleep_ms(200); /* idle workers switch */
    sj_srv_job j = h_job_on(JOB_ID, target, "helperJob", "");
    int64_t b = trigger(&j);
    CHECK(sj_srv_wait_batch(srv, b, (int)H_MS(8000)) == SJ_SRV_SUCCESS);
    char *r = result_of(b);
    CHECKF(r && strstr(r, "two"), "helperJob after the change: %s",
           r ? r : "(null)");
    free(r);
    CHECK(h_host_stop(&h, SIGTERM) == 0);
    h_host_cleanup(&h);
}

/* ---- shutdown while blocked in C
 * --------------------------------------------*/

static void test_shutdown_blocked(void)
{
    long long took;
    sj_srv_job j = h_job_on(JOB_ID, target_a, "blockInC", "");
    trigger(&j);
    h_sleep_ms(300);
    kill(host_a.pid, SIGTERM);
    int code = wait_exit(&host_a, H_MS(20000), &took);
    printf("    SIGTERM with a worker blocked in C: exit %d after %lld ms\n",
           code, took);
    CHECK(code == 0);
    CHECK(took < SHUTDOWN_GRACE_MS + STOP_GRACE_S * 1000 + 1000 + H_MS(300));
}

int main(void)
{
    sj_emu_config cfg;
    long long t0 = h_now();
    const char *cmod = getenv("SJ_CMOD_DIR");
    char cpath[600];

    if (getenv("SJ_BINARY") == NULL || cmod == NULL) {
        fprintf(stderr, "test_e2e_contain: SJ_BINARY or SJ_CMOD_DIR unset\n");
        return 1;
    }
    sj_log_set_level(SJ_LOG_ERROR);
    memset(&cfg, 0, sizeof cfg);
    cfg.srv.beat_apply_ms = 0;
    if (sj_emu_open(&cfg, "127.0.0.1:0", &emu, &emu_port) != 0) {
        fprintf(stderr, "test_e2e_contain: cannot start the emulator\n");
        return 1;
    }
    srv = sj_emu_srv(emu);
    h_host_dir(&host_a);
    snprintf(scratch, sizeof scratch, "%s", host_a.dir);
    {
        char sub[400];
        snprintf(sub, sizeof sub, "%s/executors", host_a.dir);
        h_write_file(sub, "jobs.lua", executors_lua);
    }
    snprintf(cpath, sizeof cpath, "SNAIL_LUA_CPATH=%s/?.so", cmod);
    h_host_start(&host_a, emu_port, cpath, "SNAIL_WORKERS=2",
                 "SNAIL_STOP_GRACE=1", "SNAIL_CLEANUP_BUDGET=0.5",
                 "SNAIL_LOAD_TIMEOUT=1", "SNAIL_BEAT_INTERVAL=1",
                 "SNAIL_LOG_REMOTE_INTERVAL=0.02", "SNAIL_SHUTDOWN_GRACE=5",
                 /* SHUTDOWN_GRACE_MS */ NULL);
    snprintf(target_a, sizeof target_a, "127.0.0.1:%d", host_a.port);
    if (!wait_ready(&host_a)) {
        fprintf(stderr, "host A did not start\n");
        h_failures++;
        goto done;
    }
    RUN(test_sandbox);
    RUN(test_lua_allow);
    RUN(test_cleanup);
    RUN(test_load_loop_start);
    RUN(test_check_loop);
    RUN(test_reload_loop);
    RUN(test_reload_loop_sigterm);
    RUN(test_reload_follows_require);
    /* last: a thread retired in string.find spins until host A exits */
    RUN(test_stuck_in_c);
    RUN(test_shutdown_blocked);

done:
    if (host_a.pid > 0)
        CHECK(h_host_stop(&host_a, SIGTERM) == 0);
    if (h_failures != 0)
        h_log_tail(&host_a, "host A", 8000);
    h_host_cleanup(&host_a);
    sj_emu_destroy(emu);
    printf("test_e2e_contain: %lld ms\n", h_now() - t0);
    if (h_failures == 0)
        printf("test_e2e_contain: all checks passed\n");
    else
        fprintf(stderr, "test_e2e_contain: %d check(s) failed\n", h_failures);
    return h_failures != 0;
}
