/*
 * test_e2e_run.c - `snailjob-lua run` and `snailjob-lua check`, through the
 * real binary (SJ_BINARY) as a child process.
 *
 * For each job type, `run --json` must give the same final status and
 * result as the same job driven by the gRPC emulator (sj_emu) against a
 * spawned host running the same executor files. Then: the workflow context
 * round trip, a failing executor, --timeout on an endless loop, an unknown
 * executor, and `check` on a good setup and on each kind of problem.
 */
#include <jansson.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_harness.h"
#include "sj_log.h"

static const char EXECUTORS[] =
    "local sj = require 'snailjob'\n"
    "sj.job('echoJob', function(args)\n"
    "  sj.log.info('echo %s', args.job_params)\n"
    "  return sj.success('echo:' .. args.job_params)\n"
    "end)\n"
    "sj.job('shardJob', function(args)\n"
    "  sj.log.info('shard %d', args.sharding_index)\n"
    "  return sj.success(args.job_params .. '#' ..\n"
    "    tostring(args.sharding_index) .. '/' .. "
    "tostring(args.sharding_total))\n"
    "end)\n"
    "sj.job('ctxJob', function(args)\n"
    "  local n = tonumber(args:get_wf_context('n')) or 0\n"
    "  args:append_context('n', n + 1)\n"
    "  args:append_context('seen', true)\n"
    "  return sj.success(n + 1)\n"
    "end)\n"
    "sj.job('failJob', function(args)\n"
    "  sj.log.warn('about to fail')\n"
    "  error('boom in failJob')\n"
    "end)\n"
    "sj.job('spinJob', function(args)\n"
    "  sj.log.info('spinning')\n"
    "  while true do end\n"
    "end)\n"
    "local m = sj.map('fanMap')\n"
    "m:map(function(args) return sj.mr_do_map({'x', 'y', 'z'}, 'LEAF') end)\n"
    "m:map('LEAF', function(args) return sj.success(args.map_result .. '!') "
    "end)\n"
    "local mr = sj.map_reduce('sumMR')\n"
    "mr:map(function(args) return sj.mr_do_map({1, 2, 3, 4, 5, 6}, 'DOUBLE') "
    "end)\n"
    "mr:map('DOUBLE', function(args)\n"
    "  return sj.success(tonumber(args.map_result) * 2)\n"
    "end)\n"
    "mr:reduce(function(args)\n"
    "  local s = 0\n"
    "  for _, x in ipairs(args.map_result) do s = s + tonumber(x) end\n"
    "  sj.log.info('reduce %d', s)\n"
    "  return sj.success(s)\n"
    "end)\n"
    "mr:merge(function(args)\n"
    "  local s = 0\n"
    "  for _, x in ipairs(args.reduces) do s = s + tonumber(x) end\n"
    "  return sj.success(s)\n"
    "end)\n";

/* ---- running the binary ------------------------------------------------ */

typedef struct cmd_out {
    int code; /* exit status, 128+sig, or -1 when it had to be killed */
    char *out;
    char *err;
    long long ms;
} cmd_out;

static void cmd_free(cmd_out *c)
{
    free(c->out);
    free(c->err);
    memset(c, 0, sizeof *c);
}

/*
 * Run SJ_BINARY with `args` (NULL-terminated) in `dir`, with
 * SNAIL_EXECUTORS=executors, no inherited SNAIL_*, and the extra
 * "NAME=value" settings of `env` (NULL-terminated, may be NULL). stdout and
 * stderr are captured. Killed after `limit_ms`.
 */
static long long sigint_after_ms; /* > 0: run_cmd sends SIGINT then */

static void run_cmd(const char *dir, const char *const *args,
                    const char *const *env, long long limit_ms, cmd_out *c)
{
    int interrupted = 0;
    const char *bin = getenv("SJ_BINARY");
    char outp[400], errp[400];
    const char *argv[32];
    long long t0 = h_now();
    int status = 0, n = 0;
    pid_t pid;

    memset(c, 0, sizeof *c);
    snprintf(outp, sizeof outp, "%s/stdout.txt", dir);
    snprintf(errp, sizeof errp, "%s/stderr.txt", dir);
    argv[n++] = bin;
    for (; args[n - 1] != NULL && n < 31; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid = fork();
    if (pid == 0) {
        int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fo, 1);
        dup2(fe, 2);
        if (chdir(dir) != 0)
            _exit(127);
        h_clear_snail_env();
        setenv("SNAIL_EXECUTORS", "executors", 1);
        setenv("SNAIL_WORKERS", "2", 1);
        for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
            const char *eq = strchr(env[i], '=');
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(eq - env[i]), env[i]);
            setenv(name, eq + 1, 1);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    c->code = -1;
    for (;;) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            c->code = WIFEXITED(status) ? WEXITSTATUS(status)
                                        : 128 + WTERMSIG(status);
            break;
        }
        if (sigint_after_ms > 0 && !interrupted &&
            h_now() - t0 > sigint_after_ms) {
            kill(pid, SIGINT);
            interrupted = 1;
        }
        if (h_now() - t0 > limit_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        h_sleep_ms(5);
    }
    c->ms = h_now() - t0;
    c->out = h_read_file(outp);
    c->err = h_read_file(errp);
}

/* `run --json` plus `extra` options; the parsed object (new ref) or NULL. */
static json_t *run_json(const char *dir, const char *const *extra, cmd_out *c)
{
    const char *args[24] = {"run", "--json"};
    size_t n = 2;
    json_error_t je;
    json_t *o;

    for (size_t i = 0; extra[i] != NULL && n < 23; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    run_cmd(dir, args, NULL, H_MS(30000), c);
    o = json_loads(c->out, 0, &je);
    if (o == NULL && c->code != 2)
        fprintf(stderr,
                "run --json output is not JSON (%s):\n%s\nstderr:\n%s\n",
                je.text, c->out, c->err);
    return o;
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

#define CHECK_STR(a, b)                                                        \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        CHECKF(a_ != NULL && b_ != NULL && strcmp(a_, b_) == 0,                \
               "got '%s', expected '%s'", a_ ? a_ : "(null)",                  \
               b_ ? b_ : "(null)");                                            \
    } while (0)

/* ---- the same job through the emulator ------------------------------------
 */

static sj_emu *emu;
static int emu_port;
static h_host hosts[3];
static char dir[256]; /* the run's working directory */

static const char *status_word(int st)
{
    switch (st) {
    case SJ_SRV_SUCCESS:
        return "SUCCESS";
    case SJ_SRV_FAIL:
        return "FAIL";
    case SJ_SRV_STOP:
        return "STOP";
    case SJ_SRV_CANCEL:
        return "CANCEL";
    }
    return "?";
}

/* `want` hosts registered their executors, which each does once its
 * workers are loaded; the pool is published just after, hence the pause. */
static int wait_nodes(size_t want)
{
    sj_srv *s = sj_emu_srv(emu);

    for (long long until = h_now() + H_MS(10000); h_now() < until;) {
        sj_srv_node_info *v;
        size_t n = 0;
        if (sj_srv_nodes(s, &v, &n) == 0)
            sj_srv_nodes_free(v, n);
        if (n >= want &&
            sj_srv_request_count(s, "/register/job/executors") >= want) {
            h_sleep_ms(H_MS(200));
            return 1;
        }
        h_sleep_ms(20);
    }
    return 0;
}

/* Trigger over gRPC; *status and *result (malloc'd) of the final batch. */
static void emu_job(int type, const char *executor, const char *args,
                    int shards, const char **status, char **result)
{
    sj_srv *s = sj_emu_srv(emu);
    sj_srv_job j = {.job_id = 7,
                    .task_type = type,
                    .executor_info = executor,
                    .args = args,
                    .shard_num = shards,
                    .executor_timeout = 60,
                    .parallel_num = 2};
    int64_t id = 0;
    int st;

    *status = "?";
    *result = NULL;
    CHECK(sj_srv_trigger(s, &j, &id) == 0);
    st = sj_srv_wait_batch(s, id, (int)H_MS(20000));
    *status = status_word(st);
    if (strcmp(*status, "?") == 0)
        fprintf(stderr, "%s: sj_srv_wait_batch: %d (%s)\n", executor, st,
                st < 0 ? sj_strerror(st) : "not final");
    if (sj_srv_batch_result(s, id, result) != 0)
        *result = NULL;
    if (st != SJ_SRV_SUCCESS) {
        sj_srv_task_info *t;
        size_t n;
        if (sj_srv_batch_tasks(s, id, &t, &n) == 0) {
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, "  emulator task %s %d: %s\n", t[i].name,
                        t[i].status, t[i].message ? t[i].message : "");
            sj_srv_tasks_free(t, n);
        }
    }
}

/* run --json and the emulator agree on status and result. */
static void compare(const char *what, int type, const char *executor,
                    const char *args, int shards, const char *const *extra,
                    const char *want_result)
{
    const char *emu_status;
    char *emu_result;
    cmd_out c;
    json_t *o;

    emu_job(type, executor, args, shards, &emu_status, &emu_result);
    o = run_json(dir, extra, &c);
    CHECKF(c.code == 0, "%s: run exit %d, stderr: %s", what, c.code, c.err);
    CHECKF(strcmp(emu_status, "SUCCESS") == 0, "%s: emulator %s", what,
           emu_status);
    CHECK_STR(jstr(o, "status"), emu_status);
    CHECK_STR(jstr(o, "result"), emu_result);
    if (want_result != NULL)
        CHECK_STR(jstr(o, "result"), want_result);
    fprintf(stderr, "  %-10s emulator %s %s | run %s %s (%lld ms)\n", what,
            emu_status, emu_result ? emu_result : "(null)",
            jstr(o, "status") ? jstr(o, "status") : "(null)",
            jstr(o, "result") ? jstr(o, "result") : "(null)", c.ms);
    json_decref(o);
    free(emu_result);
    cmd_free(&c);
}

static void test_same_as_emulator(void)
{
    const char *cluster[] = {"echoJob", "--params", "hi", NULL};
    const char *sharding[] = {
        "shardJob", "--type", "sharding", "--params", "[\"a\",\"b\",\"c\"]",
        NULL};
    const char *map[] = {"fanMap", NULL};
    const char *mr[] = {"sumMR", "--shards", "2", NULL};
    const char *bc[] = {"echoJob", "--type",   "broadcast", "--nodes",
                        "3",       "--params", "b",         NULL};
    cmd_out c;
    json_t *o;

    h_host_start(&hosts[0], emu_port, NULL);
    CHECK(wait_nodes(1));
    compare("cluster", SJ_SRV_CLUSTER, "echoJob", "hi", 0, cluster, "echo:hi");
    compare("sharding", SJ_SRV_SHARDING, "shardJob", "[\"a\",\"b\",\"c\"]", 0,
            sharding, "[\"a#0/3\",\"b#1/3\",\"c#2/3\"]");
    compare("map", SJ_SRV_MAP, "fanMap", NULL, 0, map,
            "[\"x!\",\"y!\",\"z!\"]");
    compare("mapreduce", SJ_SRV_MAP_REDUCE, "sumMR", NULL, 2, mr, "42");

    /* Broadcast over three real hosts vs three simulated nodes. */
    for (int i = 1; i < 3; i++) {
        h_host_dir(&hosts[i]);
        h_write_file(hosts[i].dir, "executors/e.lua", EXECUTORS);
        h_host_start(&hosts[i], emu_port, NULL);
    }
    CHECK(wait_nodes(3));
    compare("broadcast", SJ_SRV_BROADCAST, "echoJob", "b", 0, bc,
            "[\"echo:b\",\"echo:b\",\"echo:b\"]");

    /* The broadcast tasks went to three distinct simulated nodes. */
    o = run_json(dir, bc, &c);
    {
        json_t *tasks = json_object_get(o, "tasks");
        CHECK(json_array_size(tasks) == 3);
        for (size_t i = 0; i < json_array_size(tasks); i++) {
            char want[16];
            snprintf(want, sizeof want, "local-%zu", i + 1);
            CHECK_STR(jstr(json_array_get(tasks, i), "host_id"), want);
        }
    }
    json_decref(o);
    cmd_free(&c);
}

/* The MapReduce run in detail: stages, per-task logs, the text output. */
static void test_mapreduce_report(void)
{
    const char *mr[] = {"sumMR", "--shards", "2", NULL};
    const char *text[] = {"run", "sumMR", "--shards", "2", NULL};
    size_t reduces = 0, merges = 0, logs_reduce = 0;
    json_t *o, *tasks, *logs;
    cmd_out c;

    o = run_json(dir, mr, &c);
    tasks = json_object_get(o, "tasks");
    logs = json_object_get(o, "logs");
    CHECK_STR(jstr(o, "kind"), "map_reduce");
    CHECK_STR(jstr(o, "type"), "mapreduce"); /* the default for its kind */
    CHECK(json_array_size(tasks) == 1 + 6 + 2 + 1);
    for (size_t i = 0; i < json_array_size(tasks); i++) {
        const char *stage = jstr(json_array_get(tasks, i), "stage");
        CHECK_STR(jstr(json_array_get(tasks, i), "status"), "SUCCESS");
        reduces += stage && strcmp(stage, "REDUCE") == 0;
        merges += stage && strcmp(stage, "MERGE") == 0;
    }
    CHECK(reduces == 2 && merges == 1);
    for (size_t i = 0; i < json_array_size(logs); i++) {
        json_t *l = json_array_get(logs, i);
        const char *msg = jstr(l, "message");
        if (msg && strncmp(msg, "reduce ", 7) == 0) {
            logs_reduce++;
            CHECK_STR(jstr(l, "task_name"), "REDUCE_TASK");
            CHECK_STR(jstr(l, "level"), "INFO");
        }
    }
    CHECK(logs_reduce == 2);
    json_decref(o);
    cmd_free(&c);

    run_cmd(dir, text, NULL, H_MS(30000), &c);
    CHECK(c.code == 0);
    CHECKF(strstr(c.out, "result    42") != NULL, "%s", c.out);
    CHECK(strstr(c.out, "MERGE_REDUCE_TASK") != NULL);
    CHECK(strstr(c.out, "INFO  e.lua:") != NULL); /* a log line, located */
    cmd_free(&c);
}

static void test_wf_context(void)
{
    const char *args[] = {"ctxJob", "--wf-context", "{\"n\":41,\"keep\":\"x\"}",
                          NULL};
    json_t *o, *ctx, *ch;
    cmd_out c;

    o = run_json(dir, args, &c);
    CHECK(c.code == 0);
    CHECK_STR(jstr(o, "status"), "SUCCESS");
    CHECK_STR(jstr(o, "result"), "42");
    ctx = json_object_get(o, "wf_context");
    ch = json_object_get(o, "wf_changed");
    CHECK(json_integer_value(json_object_get(ctx, "n")) == 42);
    CHECK_STR(jstr(ctx, "keep"), "x");
    CHECK(json_is_true(json_object_get(ctx, "seen")));
    CHECK(json_object_size(ch) == 2 && json_object_get(ch, "keep") == NULL);
    CHECK(json_integer_value(json_object_get(ch, "n")) == 42);
    json_decref(o);
    cmd_free(&c);

    {
        const char *bad[] = {"ctxJob", "--wf-context", "[1]", NULL};
        o = run_json(dir, bad, &c);
        CHECK(c.code == 2 && o == NULL);
        CHECK(strstr(c.err, "--wf-context") != NULL);
        json_decref(o);
        cmd_free(&c);
    }
}

static void test_failure_and_timeout(void)
{
    const char *fail[] = {"failJob", NULL};
    const char *spin[] = {"spinJob", "--timeout", "1", NULL};
    const char *unknown[] = {"run", "echoJbo", NULL};
    const char *badtype[] = {"run", "echoJob", "--type", "nope", NULL};
    json_t *o, *t, *logs;
    cmd_out c;
    int traced = 0;

    o = run_json(dir, fail, &c);
    CHECK(c.code == 1);
    CHECK_STR(jstr(o, "status"), "FAIL");
    t = json_array_get(json_object_get(o, "tasks"), 0);
    CHECK_STR(jstr(t, "status"), "FAIL");
    CHECK(jstr(t, "message") && strstr(jstr(t, "message"), "boom in failJob"));
    logs = json_object_get(o, "logs");
    for (size_t i = 0; i < json_array_size(logs); i++) {
        const char *m = jstr(json_array_get(logs, i), "message");
        traced += m && strstr(m, "boom in failJob") && strstr(m, "traceback");
    }
    CHECKF(traced == 1, "the error and its traceback are in the task log");
    json_decref(o);
    cmd_free(&c);

    o = run_json(dir, spin, &c);
    CHECK(c.code == 1);
    CHECK_STR(jstr(o, "status"), "STOP");
    CHECK_STR(jstr(o, "reason"), "executor timeout");
    CHECKF(c.ms < H_MS(6000), "a 1 s timeout took %lld ms", c.ms);
    logs = json_object_get(o, "logs");
    traced = 0;
    for (size_t i = 0; i < json_array_size(logs); i++) {
        const char *m = jstr(json_array_get(logs, i), "message");
        traced += m && strstr(m, "interrupted") != NULL;
    }
    CHECKF(traced == 1, "the task log says why it was interrupted");
    json_decref(o);
    cmd_free(&c);

    /* Ctrl-C is the console's stop: STOP, not a killed process. */
    {
        const char *spin_long[] = {"spinJob", NULL};
        sigint_after_ms = H_MS(700);
        o = run_json(dir, spin_long, &c);
        sigint_after_ms = 0;
        CHECK(c.code == 1);
        CHECK_STR(jstr(o, "status"), "STOP");
        CHECK_STR(jstr(o, "reason"), "stopped");
        CHECKF(c.ms < H_MS(5000), "SIGINT took %lld ms", c.ms);
        json_decref(o);
        cmd_free(&c);
    }

    run_cmd(dir, unknown, NULL, H_MS(30000), &c);
    CHECK(c.code == 1);
    CHECKF(strstr(c.err, "'echoJbo'") &&
               strstr(c.err, "did you mean 'echoJob'"),
           "%s", c.err);
    cmd_free(&c);

    run_cmd(dir, badtype, NULL, H_MS(30000), &c);
    CHECK(c.code == 2 && strstr(c.err, "--type") != NULL);
    cmd_free(&c);
}

/* ---- check ------------------------------------------------------------------
 */

static void test_check(void)
{
    const char *check[] = {"check", NULL};
    const char *check_bad_cfg[] = {"-c", "bad.conf.lua", "check", NULL};
    char port[32], free_port[32], bdir[300];
    const char *env_ok[] = {"SNAIL_SERVER_HOST=127.0.0.1", port, NULL};
    const char *env_token[] = {"SNAIL_SERVER_HOST=127.0.0.1", port,
                               "SNAIL_TOKEN=SJ_wrong", NULL};
    const char *env_down[] = {"SNAIL_SERVER_HOST=127.0.0.1", free_port, NULL};
    const char *env_broken[] = {"SNAIL_SERVER_HOST=127.0.0.1", port,
                                "SNAIL_EXECUTORS=broken", NULL};
    cmd_out c;

    snprintf(port, sizeof port, "SNAIL_SERVER_PORT=%d", emu_port);
    snprintf(free_port, sizeof free_port, "SNAIL_SERVER_PORT=%d",
             h_free_port());

    run_cmd(dir, check, env_ok, H_MS(15000), &c);
    CHECKF(c.code == 0, "check exit %d: %s", c.code, c.err);
    CHECKF(strstr(c.out, "reachable, token accepted") != NULL, "%s", c.out);
    CHECK(strstr(c.out, "sumMR") && strstr(c.out, "map_reduce"));
    CHECK(strstr(c.out, "fanMap") && strstr(c.out, "echoJob"));
    cmd_free(&c);

    h_write_file(dir, "bad.conf.lua", "return { sever_port = 1 }\n");
    run_cmd(dir, check_bad_cfg, env_ok, H_MS(15000), &c);
    CHECK(c.code == 2);
    CHECKF(strstr(c.err, "unknown key 'sever_port'") != NULL, "%s", c.err);
    cmd_free(&c);

    snprintf(bdir, sizeof bdir, "%s/broken", dir);
    mkdir(bdir, 0700);
    h_write_file(bdir, "ok.lua",
                 "require('snailjob').job('fine', "
                 "function() end)\n");
    h_write_file(bdir, "syntax.lua",
                 "local sj = require 'snailjob'\n"
                 "sj.job('x', function() return 1 end\n"
                 "local y = 2\n");
    run_cmd(dir, check, env_broken, H_MS(15000), &c);
    CHECK(c.code == 3);
    CHECKF(strstr(c.err, "syntax.lua:3:") != NULL, "%s", c.err);
    cmd_free(&c);

    run_cmd(dir, check, env_down, H_MS(15000), &c);
    CHECK(c.code == 1);
    CHECKF(strstr(c.err, "unreachable") != NULL, "%s", c.err);
    CHECKF(c.ms < H_MS(8000), "unreachable took %lld ms", c.ms);
    cmd_free(&c);

    run_cmd(dir, check, env_token, H_MS(15000), &c);
    CHECK(c.code == 1);
    CHECKF(strstr(c.err, "refused") &&
               strstr(c.err, "Token authentication failed") &&
               strstr(c.err, "token:\xe2\x80\xa6]"),
           "%s", c.err);
    /* the server repeats the token it refused; check masks it (a token
     * this short shows nothing but the ellipsis) */
    CHECKF(strstr(c.err, "SJ_wrong") == NULL &&
               strstr(c.out, "SJ_wrong") == NULL,
           "%s", c.err);
    cmd_free(&c);
}

int main(void)
{
    char path[300];

    if (getenv("SJ_BINARY") == NULL) {
        fprintf(stderr, "SJ_BINARY is not set\n");
        return 1;
    }
    sj_log_set_level(SJ_LOG_ERROR);
    h_host_dir(&hosts[0]);
    snprintf(dir, sizeof dir, "%s", hosts[0].dir); /* shared: same files */
    snprintf(path, sizeof path, "%s/executors", dir);
    h_write_file(path, "e.lua", EXECUTORS);
    /* As for `run`, a map parent's own report completes the batch: with
     * the Java rule (0) a parent reporting after its children leaves the
     * batch RUNNING until its timeout (protocol.md §6.6). */
    sj_emu_config ec = {.srv = {.complete_on_nonleaf = 1}};
    if (sj_emu_open(&ec, "127.0.0.1:0", &emu, &emu_port) != 0) {
        fprintf(stderr, "cannot start the emulator\n");
        return 1;
    }

    test_same_as_emulator();
    printf("%s test_same_as_emulator\n", h_failures ? "FAIL" : "ok  ");
    {
        int before = h_failures;
        test_mapreduce_report();
        printf("%s test_mapreduce_report\n",
               before != h_failures ? "FAIL" : "ok  ");
        before = h_failures;
        test_wf_context();
        printf("%s test_wf_context\n", before != h_failures ? "FAIL" : "ok  ");
        before = h_failures;
        test_failure_and_timeout();
        printf("%s test_failure_and_timeout\n",
               before != h_failures ? "FAIL" : "ok  ");
        before = h_failures;
        test_check();
        printf("%s test_check\n", before != h_failures ? "FAIL" : "ok  ");
    }

    for (int i = 0; i < 3; i++) {
        if (hosts[i].pid > 0)
            CHECK(h_host_stop(&hosts[i], SIGTERM) == 0);
        h_host_cleanup(&hosts[i]);
    }
    sj_emu_destroy(emu);
    if (h_failures) {
        fprintf(stderr, "test_e2e_run: %d check(s) failed\n", h_failures);
        return 1;
    }
    printf("test_e2e_run: all checks passed\n");
    return 0;
}
