/*
 * test_vm.c - the Lua VM: loading, routing, args, results, preemption,
 * the memory cap and the C half of the `snailjob` module.
 *
 * Executor files are written into a mkdtemp directory. Every VM opened is
 * closed again, so a valgrind run shows nothing left. Timing bounds scale
 * with $SJ_TIME_FACTOR (valgrind, sanitizers).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sj_error.h"
#include "sj_log.h"
#include "sj_task.h"
#include "sj_vm.h"

static int failures;

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #c);                                                       \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#define CHECKF(c, ...)                                                         \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__,   \
                    #c);                                                       \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#define CONTAINS(s, sub) ((s) != NULL && strstr((s), (sub)) != NULL)

static long long factor(void)
{
    const char *f = getenv("SJ_TIME_FACTOR");
    return f != NULL && atoi(f) > 0 ? atoi(f) : 1;
}
#define MS(x) ((long long)(x)*factor())

static void sleep_ms(long long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- fixtures ----------------------------------------------------------- */

static char dir[64];

static char *write_file(const char *name, const char *text)
{
    static char paths[32][256];
    static int n;
    char *p = paths[n++ % 32];
    snprintf(p, 256, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f == NULL) {
        perror(p);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    return p;
}

/* What the callbacks saw. */
typedef struct line {
    sj_log_level level;
    char msg[2048];
    char location[96];
} line;

typedef struct recorder {
    line lines[64];
    int nlines;
    int nmaps;
    char map_name[64];
    char *map_list; /* JSON text of the last sub_tasks */
    char *map_changes;
    int map_rc; /* what map_report returns */
    char map_err[128];
    sj_task *stop_in_map; /* set its stop flag inside map_report */
} recorder;

static recorder rec;

static void task_log(void *ud, const sj_task *t, sj_log_level level,
                     const char *msg, size_t len, const char *location)
{
    recorder *r = ud;
    (void)t;
    if (r->nlines >= 64)
        return;
    line *l = &r->lines[r->nlines++];
    l->level = level;
    snprintf(l->msg, sizeof l->msg, "%.*s", (int)len, msg);
    snprintf(l->location, sizeof l->location, "%s", location);
}

static int map_report(void *ud, sj_task *t, const char *name, json_t *sub_tasks,
                      const json_t *wf_changes, char *err, size_t errlen)
{
    recorder *r = ud;
    r->nmaps++;
    snprintf(r->map_name, sizeof r->map_name, "%s", name);
    free(r->map_list);
    free(r->map_changes);
    r->map_list = json_dumps(sub_tasks, JSON_COMPACT | JSON_ENCODE_ANY);
    r->map_changes =
        json_dumps(wf_changes, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    if (r->stop_in_map != NULL) {
        atomic_store(&t->stop, SJ_STOP_SERVER);
        return SJ_ECANCELED;
    }
    if (r->map_rc != 0)
        snprintf(err, errlen, "%s", r->map_err);
    return r->map_rc;
}

static void rec_reset(void)
{
    free(rec.map_list);
    free(rec.map_changes);
    memset(&rec, 0, sizeof rec);
}

static const char *find_line(const char *sub)
{
    for (int i = 0; i < rec.nlines; i++)
        if (strstr(rec.lines[i].msg, sub) != NULL)
            return rec.lines[i].msg;
    return NULL;
}

static sj_task *task(const char *executor, int type, int stage,
                     const char *task_name)
{
    sj_task *t = calloc(1, sizeof *t);
    t->job_id = 1;
    t->task_batch_id = 2;
    t->task_id = 3;
    t->task_type = type;
    t->mr_stage = stage;
    t->executor_info = strdup(executor);
    t->job_params = strdup("params");
    t->task_name = task_name ? strdup(task_name) : NULL;
    t->executor_timeout = 60;
    atomic_init(&t->stop, SJ_STOP_NONE);
    return t;
}

static sj_task *job(const char *executor)
{
    return task(executor, SJ_TYPE_CLUSTER, SJ_STAGE_NONE, "CLUSTER_TASK");
}

static int open_vm(const char *const *files, size_t n, size_t cap, sj_vm **vm,
                   char *err, size_t errlen)
{
    sj_vm_options o = {.files = files,
                       .n_files = n,
                       .memory_limit = cap,
                       .task_log = task_log,
                       .map_report = map_report,
                       .ud = &rec};
    return sj_vm_open(&o, vm, err, errlen);
}

/* Run t and return the result as compact JSON text (static) or "-". */
static const char *result_text(const sj_run *r)
{
    static char buf[512];
    if (r->result == NULL)
        return "-";
    char *s =
        json_dumps(r->result, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    snprintf(buf, sizeof buf, "%s", s);
    free(s);
    return buf;
}

/* Run a one-shot task, check the outcome, return message/result checks to
 * the caller through `out`. */
static void run(sj_vm *vm, sj_task *t, sj_run *out)
{
    CHECK(sj_vm_run(vm, t, out) == 0);
}

/* ---- executor files ----------------------------------------------------- */

static const char *JOBS =
    "local sj = require 'snailjob'\n"
    "local helper = require 'helper'\n"
    "sj.log.info('loading jobs %d', 1)\n"
    "sj.job('okTable', function(args) return sj.success({a = 1}) end)\n"
    "sj.job('okNothing', function(args) end)\n"
    "sj.job('okPlain', function(args) return 'plain' end)\n"
    "sj.job('fails', function(args) return sj.failure('boom') end)\n"
    "sj.job('raises', function(args)\n"
    "  local function inner() error('kaboom') end\n"
    "  inner()\n"
    "end)\n"
    "sj.job('ids', function(args)\n"
    "  assert(math.type(args.job_id) == 'integer')\n"
    "  return string.format('%d %d %d', args.job_id, args.task_batch_id,\n"
    "                       args.task_id)\n"
    "end)\n"
    "sj.job('taskId', function(args)\n"
    "  return string.format('%d', args.task_id)\n"
    "end)\n"
    "sj.job('context', function(args)\n"
    "  assert(args:get_wf_context('old') == 'v0')\n"
    "  args:append_context('k', 'v')\n"
    "  args:append_context('big', 1234567890123456789)\n"
    "  args:append_context(nil, 'x')\n"
    "  args:append_context('ignored', nil)\n"
    "  args:append_context('old', 'v1')\n"
    "  assert(args:get_wf_context('old') == 'v1')\n"
    "  assert(args.wf_context.old == 'v0')\n"
    "  assert(args:get_wf_context('missing') == nil)\n"
    "  assert(args:is_stopped() == false)\n"
    "  return sj.success(helper.twice(21))\n"
    "end)\n"
    "sj.job('argsDump', function(args)\n"
    "  return sj.success({params = args.job_params, info = "
    "args.executor_info,\n"
    "    si = args.sharding_index, st = args.sharding_total,\n"
    "    rc = args.retry_count, tt = args.task_type, biz = args.job_biz_id,\n"
    "    ctx = next(args.wf_context) == nil})\n"
    "end)\n"
    "sj.job('logs', function(args)\n"
    "  sj.log.warn('x=%d %s', 5, 'y')\n"
    "  sj.log.info('as is %d')\n"
    "  sj.hostlog.info('host only')\n"
    "  return sj.success(sj.json.encode({n = 9007199254740993}))\n"
    "end)\n"
    "sj.job('cjson', function(args)\n"
    "  local cjson = require 'cjson'\n"
    "  return cjson.encode({1})\n"
    "end)\n"
    "local kept\n"
    "sj.job('keepArgs', function(args) kept = args end)\n"
    "sj.job('staleArgs', function(args)\n"
    "  assert(kept:is_stopped() == true)\n"
    "  kept:append_context('k', 'v')\n"
    "end)\n"
    "sj.job('badResult', function(args) return function() end end)\n"
    "sj.job('declareLate', function(args) sj.job('late', function() end) end)\n"
    "sj.job('mapOutside', function(args) return sj.mr_do_map({1}, 'X') end)\n"
    "sj.job('spin', function(args) while true do end end)\n"
    "sj.job('spinPcall', function(args)\n"
    "  while true do pcall(function() while true do end end) end\n"
    "end)\n"
    "sj.job('spinCatchAll', function(args)\n"
    "  while true do\n"
    "    local ok, e = pcall(function() while true do end end)\n"
    "    ok, e = xpcall(function() local x = 0 while true do x = x + 1 end "
    "end,\n"
    "                   function(m) return m end)\n"
    "  end\n"
    "end)\n"
    "sj.job('stringLoop', function(args)\n"
    "  local s = string.rep('x', 1000000)\n"
    "  while true do local u = s .. 'y' .. s end\n"
    "end)\n"
    "sj.job('strings', function(args)\n"
    "  local t, i = {}, 0\n"
    "  while true do\n"
    "    i = i + 1\n"
    "    t[i % 100 + 1] = string.rep('ab', 1000) .. i\n"
    "    local parts = {}\n"
    "    for k = 1, 50 do parts[k] = tostring(k) end\n"
    "    t[0] = table.concat(parts, ',')\n"
    "  end\n"
    "end)\n"
    "local co = coroutine.wrap(function() while true do end end)\n"
    "sj.job('spinCoroutine', function(args) co() end)\n"
    "sj.job('sleeps', function(args) sj.sleep(5) return 'slept' end)\n"
    "sj.job('sleepShort', function(args) sj.sleep(0.02) return 'slept' end)\n"
    "sj.job('politeStop', function(args)\n"
    "  while not args:is_stopped() do sj.sleep(0.001) end\n"
    "  return sj.failure('stopped')\n"
    "end)\n"
    "sj.job('bomb', function(args)\n"
    "  local t = {}\n"
    "  for i = 1, 1e9 do t[i] = string.rep('x', 100) .. i end\n"
    "end)\n"
    "sj.job('bombPcall', function(args)\n"
    "  local t = {}\n"
    "  pcall(function() for i = 1, 1e9 do t[i] = string.rep('x', 100) .. i end "
    "end)\n"
    "  t = nil\n"
    "  collectgarbage()\n"
    "  return 'survived'\n"
    "end)\n";

static const char *HELPER = "return { twice = function(x) return 2 * x end }\n";

static const char *MAPS =
    "local sj = require 'snailjob'\n"
    "local m = sj.map('mapper')\n"
    "m:map(function(args)\n"
    "  assert(args.task_name == sj.ROOT_MAP)\n"
    "  assert(args.map_result == nil)\n"
    "  args:append_context('c', 1)\n"
    "  return sj.mr_do_map({9007199254740993, 'x', {a = 1}, 1.5}, 'TWO_MAP')\n"
    "end)\n"
    "m:map('TWO_MAP', function(args)\n"
    "  return sj.success({got = args.map_result, name = args.task_name})\n"
    "end)\n"
    "m:map('TOO_MANY', function(args)\n"
    "  local t = {} for i = 1, 201 do t[i] = i end\n"
    "  local r = sj.mr_do_map(t, 'X') return r\n"
    "end)\n"
    "m:map('EMPTY_LIST', function(args) return sj.mr_do_map({}, 'X') end)\n"
    "m:map('EMPTY_NAME', function(args) return sj.mr_do_map({1}, '') end)\n"
    "m:map('ROOT_NAME', function(args)\n"
    "  return sj.mr_do_map({1}, sj.ROOT_MAP)\n"
    "end)\n"
    "m:map('BAD_ELEM', function(args)\n"
    "  return sj.mr_do_map({1, function() end}, 'X')\n"
    "end)\n"
    "m:map('CATCH', function(args)\n"
    "  local ok, e = pcall(sj.mr_do_map, {}, 'X')\n"
    "  return sj.success(e)\n"
    "end)\n"
    "local mr = sj.map_reduce('reducer')\n"
    "mr:map(function(args) return sj.mr_do_map({1, 2, 3}, 'M') end)\n"
    "mr:map('M', function(args) return sj.success(args.map_result * 2) end)\n"
    "mr:reduce(function(args)\n"
    "  local sum = 0\n"
    "  for _, x in ipairs(args.map_result) do sum = sum + tonumber(x) end\n"
    "  return sj.success(sum)\n"
    "end)\n"
    "mr:merge(function(args)\n"
    "  return sj.success(table.concat(args.reduces, '+'))\n"
    "end)\n"
    "local half = sj.map_reduce('noMerge')\n"
    "half:map(function(args) return sj.success() end)\n";

/* ---- tests -------------------------------------------------------------- */

static sj_vm *open_main(void)
{
    const char *files[] = {write_file("jobs.lua", JOBS),
                           write_file("maps.lua", MAPS)};
    write_file("helper.lua", HELPER);
    char err[512];
    sj_vm *vm = NULL;
    int rc = open_vm(files, 2, 0, &vm, err, sizeof err);
    CHECKF(rc == 0, "open: %s", err);
    if (rc != 0)
        exit(1);
    return vm;
}

static void test_listing(sj_vm *vm)
{
    size_t n = sj_vm_executor_count(vm);
    CHECK(n > 20);
    for (size_t i = 1; i < n; i++)
        CHECK(strcmp(sj_vm_executor_name(vm, i - 1),
                     sj_vm_executor_name(vm, i)) < 0);
    bool seen_map = false, seen_mr = false, seen_job = false;
    for (size_t i = 0; i < n; i++) {
        const char *name = sj_vm_executor_name(vm, i);
        const char *kind = sj_vm_executor_kind(vm, i);
        if (strcmp(name, "mapper") == 0)
            seen_map = strcmp(kind, "map") == 0;
        if (strcmp(name, "reducer") == 0)
            seen_mr = strcmp(kind, "map_reduce") == 0;
        if (strcmp(name, "okTable") == 0)
            seen_job = strcmp(kind, "job") == 0;
    }
    CHECK(seen_map && seen_mr && seen_job);
    CHECK(sj_vm_executor_name(vm, n) == NULL);

    char **names, **kinds;
    size_t m;
    CHECK(sj_vm_executor_list(vm, &names, &kinds, &m) == 0);
    CHECK(m == n);
    for (size_t i = 0; i < m && i < n; i++)
        CHECK(strcmp(names[i], sj_vm_executor_name(vm, i)) == 0 &&
              strcmp(kinds[i], sj_vm_executor_kind(vm, i)) == 0);
    sj_vm_executor_list_free(names, kinds, m);
}

static void test_results(sj_vm *vm)
{
    sj_run r;
    sj_task *t;

    t = job("okTable");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_OK);
    CHECK(strcmp(result_text(&r), "{\"a\":1}") == 0);
    CHECK(r.message == NULL && r.wf_changes == NULL);
    sj_run_free(&r);
    sj_task_free(t);

    t = job("okNothing");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_OK && r.result == NULL);
    sj_run_free(&r);
    sj_task_free(t);

    t = job("okPlain");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_OK);
    CHECK(strcmp(result_text(&r), "\"plain\"") == 0);
    sj_run_free(&r);
    sj_task_free(t);

    t = job("fails");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_FAILED);
    CHECK(r.message != NULL && strcmp(r.message, "boom") == 0);
    CHECK(r.result == NULL);
    sj_run_free(&r);
    sj_task_free(t);

    rec_reset();
    t = job("raises");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_ERROR);
    CHECKF(CONTAINS(r.message, "jobs.lua:9: kaboom"), "%s", r.message);
    CHECK(!CONTAINS(r.message, "traceback"));
    const char *tb = find_line("stack traceback");
    CHECK(tb != NULL && CONTAINS(tb, "kaboom") && CONTAINS(tb, "inner"));
    CHECK(rec.nlines == 1 && rec.lines[0].level == SJ_LOG_ERROR);
    CHECK(!sj_vm_needs_rebuild(vm));
    sj_run_free(&r);
    sj_task_free(t);

    t = job("badResult");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_ERROR);
    CHECKF(CONTAINS(r.message, "cannot be sent as JSON"), "%s", r.message);
    sj_run_free(&r);
    sj_task_free(t);

    t = job("declareLate");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_ERROR);
    CHECKF(CONTAINS(r.message, "can only be declared while"), "%s", r.message);
    sj_run_free(&r);
    sj_task_free(t);

    t = job("cjson");
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK, "%s", r.message);
    CHECK(strcmp(result_text(&r), "\"[1]\"") == 0);
    sj_run_free(&r);
    sj_task_free(t);
}

static void test_args(sj_vm *vm)
{
    sj_run r;
    sj_task *t = job("ids");
    t->job_id = 9007199254740993LL;
    t->task_batch_id = 1234567890123456789LL;
    t->task_id = -9223372036854775807LL - 1;
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK, "%s", r.message);
    CHECKF(strcmp(result_text(&r), "\"9007199254740993 1234567890123456789 "
                                   "-9223372036854775808\"") == 0,
           "%s", result_text(&r));
    sj_run_free(&r);
    sj_task_free(t);

    t = job("taskId");
    t->task_id = 9007199254740993LL;
    run(vm, t, &r);
    CHECK(strcmp(result_text(&r), "\"9007199254740993\"") == 0);
    sj_run_free(&r);
    t->task_id = 1234567890123456789LL;
    run(vm, t, &r);
    CHECK(strcmp(result_text(&r), "\"1234567890123456789\"") == 0);
    sj_run_free(&r);
    sj_task_free(t);

    t = job("context");
    t->wf_context = strdup("{\"old\":\"v0\",\"n\":null}");
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK, "%s", r.message);
    CHECK(strcmp(result_text(&r), "42") == 0);
    CHECK(r.wf_changes != NULL && json_is_object(r.wf_changes));
    if (r.wf_changes != NULL) {
        char *s = json_dumps(r.wf_changes, JSON_COMPACT | JSON_SORT_KEYS);
        CHECKF(strcmp(s, "{\"big\":1234567890123456789,\"k\":\"v\","
                         "\"old\":\"v1\"}") == 0,
               "%s", s);
        free(s);
    }
    sj_run_free(&r);
    sj_task_free(t);

    t = task("argsDump", SJ_TYPE_SHARDING, SJ_STAGE_NONE, "SHARDING_TASK");
    t->has_sharding = true;
    t->sharding_index = 2;
    t->sharding_total = 5;
    t->has_retry_count = true;
    t->retry_count = 1;
    t->job_biz_id = strdup("biz");
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK, "%s", r.message);
    CHECKF(strcmp(result_text(&r),
                  "{\"biz\":\"biz\",\"ctx\":true,\"info\":\"argsDump\","
                  "\"params\":\"params\",\"rc\":1,\"si\":2,\"st\":5,"
                  "\"tt\":3}") == 0,
           "%s", result_text(&r));
    sj_run_free(&r);
    sj_task_free(t);

    /* args of an ended run are inert */
    t = job("keepArgs");
    run(vm, t, &r);
    sj_run_free(&r);
    sj_task_free(t);
    t = job("staleArgs");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_ERROR);
    CHECKF(CONTAINS(r.message, "the task of these args has ended"), "%s",
           r.message);
    sj_run_free(&r);
    sj_task_free(t);
}

static void test_logs(sj_vm *vm)
{
    sj_run r;
    rec_reset();
    sj_task *t = job("logs");
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK, "%s", r.message);
    CHECKF(strcmp(result_text(&r), "\"{\\\"n\\\":9007199254740993}\"") == 0,
           "%s", result_text(&r));
    CHECK(rec.nlines == 2);
    CHECK(strcmp(rec.lines[0].msg, "x=5 y") == 0);
    CHECK(rec.lines[0].level == SJ_LOG_WARN);
    CHECKF(strcmp(rec.lines[0].location, "jobs.lua:40") == 0, "%s",
           rec.lines[0].location);
    CHECK(strcmp(rec.lines[1].msg, "as is %d") == 0);
    CHECK(find_line("host only") == NULL);
    CHECK(find_line("loading jobs") == NULL); /* outside a task */
    sj_run_free(&r);
    sj_task_free(t);
}

static void test_unknown(sj_vm *vm)
{
    sj_run r;
    rec_reset();
    sj_task *t = job("okTabel");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_NO_EXECUTOR);
    CHECKF(CONTAINS(r.message, "no executor named 'okTabel'; registered: ") &&
               CONTAINS(r.message, "argsDump, badResult") &&
               CONTAINS(r.message, "(closest: 'okTable')"),
           "%s", r.message);
    CHECK(find_line("no executor named") != NULL);
    sj_run_free(&r);
    sj_task_free(t);
}

static void test_routing(sj_vm *vm)
{
    sj_run r;
    sj_task *t;

    /* ROOT_MAP: maps is "" and map_result nil; fans out */
    rec_reset();
    t = task("mapper", SJ_TYPE_MAP, SJ_STAGE_MAP, SJ_ROOT_MAP);
    t->maps = json_string("");
    t->wf_context = strdup("{\"w\":1}");
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK, "%s", r.message);
    CHECK(r.result == NULL);
    CHECK(rec.nmaps == 1 && strcmp(rec.map_name, "TWO_MAP") == 0);
    CHECKF(rec.map_list &&
               strcmp(rec.map_list, "[9007199254740993,\"x\",{\"a\":1},1.5]") ==
                   0,
           "%s", rec.map_list);
    CHECKF(rec.map_changes && strcmp(rec.map_changes, "{\"c\":1}") == 0, "%s",
           rec.map_changes);
    CHECK(r.wf_changes != NULL);
    sj_run_free(&r);
    sj_task_free(t);

    /* a named map stage gets its element */
    t = task("mapper", SJ_TYPE_MAP, SJ_STAGE_MAP, "TWO_MAP");
    t->maps = json_pack("{s:I}", "a", (json_int_t)9007199254740993LL);
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK, "%s", r.message);
    CHECKF(strcmp(result_text(&r), "{\"got\":{\"a\":9007199254740993},"
                                   "\"name\":\"TWO_MAP\"}") == 0,
           "%s", result_text(&r));
    sj_run_free(&r);
    sj_task_free(t);

    /* missing map handler */
    t = task("mapper", SJ_TYPE_MAP, SJ_STAGE_MAP, "NOPE");
    t->maps = json_integer(1);
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_NO_EXECUTOR);
    CHECKF(CONTAINS(r.message, "executor 'mapper' has no map handler for "
                               "task 'NOPE' (stage MAP)") &&
               CONTAINS(r.message, "TWO_MAP"),
           "%s", r.message);
    sj_run_free(&r);
    sj_task_free(t);

    /* map_reduce: map stage, reduce with a list, merge with reduces */
    t = task("reducer", SJ_TYPE_MAP_REDUCE, SJ_STAGE_MAP, "M");
    t->maps = json_integer(21);
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_OK && strcmp(result_text(&r), "42") == 0);
    sj_run_free(&r);
    sj_task_free(t);

    t = task("reducer", SJ_TYPE_MAP_REDUCE, SJ_STAGE_REDUCE, "REDUCE_TASK");
    t->maps = json_pack("[sss]", "1", "2", "39");
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK && strcmp(result_text(&r), "42") == 0,
           "%s %s", r.message, result_text(&r));
    sj_run_free(&r);
    sj_task_free(t);

    /* maps as a string holding a JSON array */
    t = task("reducer", SJ_TYPE_MAP_REDUCE, SJ_STAGE_REDUCE, "REDUCE_TASK");
    t->maps = json_string("[\"40\",\"2\"]");
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK && strcmp(result_text(&r), "42") == 0,
           "%s %s", r.message, result_text(&r));
    sj_run_free(&r);
    sj_task_free(t);

    t = task("reducer", SJ_TYPE_MAP_REDUCE, SJ_STAGE_MERGE,
             "MERGE_REDUCE_TASK");
    t->reduces = json_pack("[ss]", "{\"total\":19}", "23");
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK, "%s", r.message);
    CHECKF(strcmp(result_text(&r), "\"{\\\"total\\\":19}+23\"") == 0, "%s",
           result_text(&r));
    sj_run_free(&r);
    sj_task_free(t);

    /* stage handlers missing or of the wrong kind */
    t = task("noMerge", SJ_TYPE_MAP_REDUCE, SJ_STAGE_MERGE,
             "MERGE_REDUCE_TASK");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_NO_EXECUTOR);
    CHECKF(CONTAINS(r.message, "executor 'noMerge' has no merge handler "
                               "(stage MERGE_REDUCE, task "
                               "'MERGE_REDUCE_TASK')"),
           "%s", r.message);
    sj_run_free(&r);
    sj_task_free(t);

    t = task("mapper", SJ_TYPE_MAP_REDUCE, SJ_STAGE_REDUCE, "REDUCE_TASK");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_NO_EXECUTOR);
    CHECKF(CONTAINS(r.message, "declared with sj.map, which has no reduce"),
           "%s", r.message);
    sj_run_free(&r);
    sj_task_free(t);

    t = task("okTable", SJ_TYPE_MAP, SJ_STAGE_MAP, SJ_ROOT_MAP);
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_NO_EXECUTOR);
    CHECKF(CONTAINS(r.message, "executor 'okTable' is declared as a job"), "%s",
           r.message);
    sj_run_free(&r);
    sj_task_free(t);

    t = task("mapper", SJ_TYPE_BROADCAST, SJ_STAGE_NONE, "BROADCAST_TASK");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_NO_EXECUTOR);
    CHECKF(CONTAINS(r.message, "is declared with sj.map, but this is a "
                               "BROADCAST task"),
           "%s", r.message);
    sj_run_free(&r);
    sj_task_free(t);

    /* workflow node: a job with a workflow context */
    t = job("okTable");
    t->workflow_task_batch_id = 77;
    t->workflow_node_id = 5;
    t->wf_context = strdup("{}");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_OK);
    sj_run_free(&r);
    sj_task_free(t);
}

static void test_mr_do_map(sj_vm *vm)
{
    static const struct {
        const char *task_name;
        const char *msg;
    } cases[] = {
        {"TOO_MANY", "maps.lua:14: sj.mr_do_map: the list has 201 "
                     "elements; at most 200 "
                     "are allowed"},
        {"EMPTY_LIST", "sj.mr_do_map: the list is empty"},
        {"EMPTY_NAME", "sj.mr_do_map: next_task_name must be a non-empty "
                       "string"},
        {"ROOT_NAME", "sj.mr_do_map: next_task_name must not be ROOT_MAP"},
        {"BAD_ELEM", "sj.mr_do_map: element 2 cannot be sent as JSON"},
    };
    sj_run r;
    sj_task *t;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rec_reset();
        t = task("mapper", SJ_TYPE_MAP, SJ_STAGE_MAP, cases[i].task_name);
        t->maps = json_integer(1);
        run(vm, t, &r);
        CHECK(r.outcome == SJ_OUT_ERROR);
        CHECKF(CONTAINS(r.message, cases[i].msg), "%s: %s", cases[i].task_name,
               r.message);
        CHECK(rec.nmaps == 0);
        sj_run_free(&r);
        sj_task_free(t);
    }

    /* misuse raises: a handler can catch it */
    t = task("mapper", SJ_TYPE_MAP, SJ_STAGE_MAP, "CATCH");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_OK);
    CHECK(CONTAINS(result_text(&r), "the list is empty"));
    sj_run_free(&r);
    sj_task_free(t);

    /* outside a map stage */
    rec_reset();
    t = job("mapOutside");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_ERROR);
    CHECKF(CONTAINS(r.message, "sj.mr_do_map: called outside a map stage"),
           "%s", r.message);
    CHECK(rec.nmaps == 0);
    sj_run_free(&r);
    sj_task_free(t);

    /* the server refuses */
    rec_reset();
    rec.map_rc = SJ_EREFUSED;
    snprintf(rec.map_err, sizeof rec.map_err, "Map task quota exceeded");
    t = task("mapper", SJ_TYPE_MAP, SJ_STAGE_MAP, SJ_ROOT_MAP);
    t->maps = json_string("");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_ERROR);
    CHECKF(CONTAINS(r.message, "sj.mr_do_map: the server refused the map "
                               "report: Map task quota exceeded"),
           "%s", r.message);
    CHECK(rec.nmaps == 1);
    sj_run_free(&r);
    sj_task_free(t);

    /* stopped while waiting for the server */
    rec_reset();
    t = task("mapper", SJ_TYPE_MAP, SJ_STAGE_MAP, SJ_ROOT_MAP);
    rec.stop_in_map = t;
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_STOPPED && r.stop_reason == SJ_STOP_SERVER);
    CHECK(find_line("interrupted: stopped by the server") != NULL);
    CHECK(sj_vm_needs_rebuild(vm));
    sj_run_free(&r);
    sj_task_free(t);
    rec_reset();
}

/* ---- preemption --------------------------------------------------------- */

typedef struct stopper {
    sj_task *t;
    long long delay_ms;
    int reason;
    long long set_at;
} stopper;

static void *stop_later(void *arg)
{
    stopper *s = arg;
    sleep_ms(s->delay_ms);
    s->set_at = sj_mono_ms();
    atomic_store(&s->t->stop, s->reason);
    return NULL;
}

/* Run `executor` on a fresh VM, stop it from another thread after 50 ms,
 * and check it ends STOPPED within `bound` ms of the flag. */
static void check_stopped(const char *executor, int reason, long long bound)
{
    sj_vm *vm = open_main();
    sj_task *t = job(executor);
    stopper s = {t, 50, reason, 0};
    pthread_t th;
    sj_run r;
    rec_reset();
    pthread_create(&th, NULL, stop_later, &s);
    run(vm, t, &r);
    long long done = sj_mono_ms();
    pthread_join(th, NULL);
    CHECKF(r.outcome == SJ_OUT_STOPPED, "%s: %s (%s)", executor,
           sj_outcome_name(r.outcome), r.message);
    CHECK((int)r.stop_reason == reason);
    CHECK(r.result == NULL);
    CHECKF(done - s.set_at <= MS(bound), "%s: stopped after %lld ms", executor,
           done - s.set_at);
    if (getenv("SJ_TEST_VERBOSE"))
        fprintf(stderr, "%s: stopped %lld ms after the flag\n", executor,
                done - s.set_at);
    CHECK(sj_vm_needs_rebuild(vm));
    const char *why = reason == SJ_STOP_SERVER
                          ? "interrupted: stopped by the server"
                          : "interrupted: the host is shutting down";
    CHECKF(find_line(why) != NULL, "%s: no '%s' line", executor, why);
    sj_run_free(&r);
    sj_task_free(t);
    sj_vm_close(vm);
}

static void test_preemption(void)
{
    check_stopped("spin", SJ_STOP_SERVER, 100);
    check_stopped("spinPcall", SJ_STOP_SERVER, 100);
    check_stopped("spinCatchAll", SJ_STOP_SHUTDOWN, 100);
    check_stopped("spinCoroutine", SJ_STOP_SERVER, 100);
    check_stopped("stringLoop", SJ_STOP_SERVER, 100);
    check_stopped("strings", SJ_STOP_SERVER, 100);
    check_stopped("sleeps", SJ_STOP_SERVER, 100);
    check_stopped("politeStop", SJ_STOP_SERVER, 100);

    /* deadline */
    sj_vm *vm = open_main();
    sj_task *t = job("spin");
    sj_run r;
    rec_reset();
    t->executor_timeout = 1;
    t->deadline_ms = sj_mono_ms() + 100;
    run(vm, t, &r);
    long long late = sj_mono_ms() - t->deadline_ms;
    CHECK(r.outcome == SJ_OUT_TIMEOUT);
    CHECKF(late >= 0 && late <= MS(100), "timeout %lld ms late", late);
    CHECK(find_line("interrupted: executor timeout of 1 s exceeded") != NULL);
    CHECKF(rec.nlines > 0 && strcmp(rec.lines[0].location, "jobs.lua:58") == 0,
           "%s", rec.lines[0].location);
    CHECK(sj_vm_needs_rebuild(vm));
    sj_run_free(&r);
    sj_task_free(t);
    sj_vm_close(vm);

    /* sj.sleep past the deadline */
    vm = open_main();
    t = job("sleeps");
    t->deadline_ms = sj_mono_ms() + 30;
    run(vm, t, &r);
    late = sj_mono_ms() - t->deadline_ms;
    CHECK(r.outcome == SJ_OUT_TIMEOUT);
    CHECKF(late <= MS(50), "sleep timeout %lld ms late", late);
    sj_run_free(&r);
    sj_task_free(t);
    sj_vm_close(vm);

    /* a short sleep just sleeps; stop flag set before the run */
    vm = open_main();
    t = job("sleepShort");
    long long t0 = sj_mono_ms();
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_OK && sj_mono_ms() - t0 >= 20);
    CHECK(!sj_vm_needs_rebuild(vm));
    sj_run_free(&r);
    atomic_store(&t->stop, SJ_STOP_SERVER);
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_STOPPED);
    sj_run_free(&r);
    sj_task_free(t);
    sj_vm_close(vm);
}

static void test_memory(void)
{
    const char *files[] = {write_file("jobs.lua", JOBS)};
    char err[512];
    sj_vm *vm = NULL;
    sj_run r;
    size_t cap = 32u * 1024 * 1024;
    int rc = open_vm(files, 1, cap, &vm, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc != 0)
        return;
    CHECK(sj_vm_mem_used(vm) > 0 && sj_vm_mem_used(vm) < cap);

    rec_reset();
    sj_task *t = job("bomb");
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_NOMEM, "%s", sj_outcome_name(r.outcome));
    CHECKF(CONTAINS(r.message, "memory cap of 33554432 bytes"), "%s",
           r.message);
    CHECK(find_line("out of memory") != NULL);
    CHECK(sj_vm_needs_rebuild(vm));
    CHECK(sj_vm_mem_used(vm) <= cap);
    sj_run_free(&r);
    sj_task_free(t);
    sj_vm_close(vm);

    /* swallowing the memory error does not help */
    rc = open_vm(files, 1, cap, &vm, err, sizeof err);
    CHECK(rc == 0);
    t = job("bombPcall");
    run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_NOMEM, "%s", sj_outcome_name(r.outcome));
    sj_run_free(&r);
    sj_task_free(t);
    sj_vm_close(vm);

    /* a fresh VM works */
    rc = open_vm(files, 1, cap, &vm, err, sizeof err);
    CHECK(rc == 0);
    t = job("okTable");
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_OK);
    CHECK(!sj_vm_needs_rebuild(vm));
    sj_run_free(&r);
    sj_task_free(t);
    sj_vm_close(vm);

    /* a cap too small to load the files */
    rc = open_vm(files, 1, 16 * 1024, &vm, err, sizeof err);
    CHECKF(rc == SJ_ENOMEM && vm == NULL, "%d %s", rc, err);
    sj_vm_close(vm);
    CHECKF(CONTAINS(err, "out of memory") || CONTAINS(err, "cap"), "%s", err);
}

static void test_open_errors(void)
{
    char err[512];
    sj_vm *vm = (sj_vm *)1;
    int rc;

    const char *a = write_file("dup_a.lua", "local sj = require 'snailjob'\n"
                                            "sj.job('dup', function() end)\n");
    const char *b = write_file("dup_b.lua", "local sj = require 'snailjob'\n"
                                            "\n"
                                            "sj.map('dup')\n");
    const char *dup[] = {a, b};
    rc = open_vm(dup, 2, 0, &vm, err, sizeof err);
    CHECK(rc == SJ_ELUA && vm == NULL);
    CHECKF(CONTAINS(err, "executor 'dup' is declared twice") &&
               CONTAINS(err, "dup_a.lua:2") && CONTAINS(err, "dup_b.lua:3"),
           "%s", err);

    const char *syn = write_file("syntax.lua", "local sj = require "
                                               "'snailjob'\n"
                                               "sj.job('x', function()\n"
                                               "  return +\n"
                                               "end)\n");
    const char *s1[] = {syn};
    rc = open_vm(s1, 1, 0, &vm, err, sizeof err);
    CHECK(rc == SJ_ELUA);
    CHECKF(CONTAINS(err, "syntax.lua:3:"), "%s", err);

    const char *rt = write_file("runtime.lua", "local x = nil\n"
                                               "x.y = 1\n");
    const char *s2[] = {rt};
    rc = open_vm(s2, 1, 0, &vm, err, sizeof err);
    CHECK(rc == SJ_ELUA);
    CHECKF(CONTAINS(err, "runtime.lua:2:") && !CONTAINS(err, "traceback"), "%s",
           err);

    const char *bad = write_file("badjob.lua", "local sj = require 'snailjob'\n"
                                               "sj.job('x', 42)\n");
    const char *s3[] = {bad};
    rc = open_vm(s3, 1, 0, &vm, err, sizeof err);
    CHECK(rc == SJ_ELUA);
    CHECKF(CONTAINS(err, "badjob.lua:2: sj.job: handler must be a function"),
           "%s", err);

    const char *s4[] = {"/nonexistent/x.lua"};
    rc = open_vm(s4, 1, 0, &vm, err, sizeof err);
    CHECK(rc == SJ_ELUA);
    CHECKF(CONTAINS(err, "cannot open /nonexistent/x.lua"), "%s", err);

    /* `snailjob` is not a global */
    const char *g =
        write_file("global.lua",
                   "assert(snailjob == nil)\n"
                   "assert(sj == nil)\n"
                   "assert(not pcall(debug.sethook))\n"
                   "assert(not pcall(os.exit, 3))\n"
                   "assert(select(2, pcall(os.exit)):find('not available'))\n"
                   "local sj = require 'snailjob'\n"
                   "assert(package.loaded.snailjob == sj)\n"
                   "assert(rawget(_G, 'snailjob') == nil)\n");
    const char *s5[] = {g};
    rc = open_vm(s5, 1, 0, &vm, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    CHECK(sj_vm_executor_count(vm) == 0);
    sj_task *t = job("x");
    sj_run r;
    run(vm, t, &r);
    CHECK(r.outcome == SJ_OUT_NO_EXECUTOR);
    CHECKF(CONTAINS(r.message, "none registered"), "%s", r.message);
    sj_run_free(&r);
    sj_task_free(t);
    sj_vm_close(vm);
}

/* Many runs on one VM leave nothing behind. */
static void test_steady(sj_vm *vm)
{
    size_t before = 0;
    for (int i = 0; i < 2000; i++) {
        sj_task *t = job(i % 2 ? "context" : "okTable");
        t->wf_context = strdup("{\"old\":\"v0\"}");
        sj_run r;
        run(vm, t, &r);
        CHECK(r.outcome == SJ_OUT_OK);
        sj_run_free(&r);
        sj_task_free(t);
        if (i == 100)
            before = sj_vm_mem_used(vm);
    }
    CHECKF(sj_vm_mem_used(vm) < before + 256 * 1024, "%zu -> %zu", before,
           sj_vm_mem_used(vm));
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/sj-vm-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    sj_log_set_level(getenv("SJ_TEST_VERBOSE") ? SJ_LOG_DEBUG : SJ_LOG_OFF);

    sj_vm *vm = open_main();
    test_listing(vm);
    test_results(vm);
    test_args(vm);
    test_logs(vm);
    test_unknown(vm);
    test_routing(vm);
    test_steady(vm);
    sj_vm_close(vm);

    vm = open_main();
    test_mr_do_map(vm);
    sj_vm_close(vm);

    test_open_errors();
    test_preemption();
    test_memory();
    rec_reset();

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);

    if (failures) {
        fprintf(stderr, "test_vm: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_vm: ok\n");
    return 0;
}
