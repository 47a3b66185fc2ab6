/*
 * Map and MapReduce end to end (issue 4): the real snailjob-lua binary
 * (SJ_BINARY) as a child process against the in-process emulator (sj_emu)
 * over real gRPC on loopback. One host with SNAIL_WORKERS=2 serves every
 * scenario; each scenario has its own executor name (see EXECUTORS).
 *
 * The emulator is Java-faithful: a non-leaf MAP task's own report never
 * completes a batch (protocol.md §6.6), dispatches wait for the client's
 * reply for DISPATCH_MS, and the reply to a map report can be held back
 * (hold_map) to reproduce the fan-out trap of §4.4.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "sj_harness.h"

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_srv.h"

#define MAP_URI "/batch/report/job/map/task/v1"
#define RESULT_URI "/report/dispatch/result"
#define BIG 1234567890123456789LL
#define NEG (-9007199254740993LL) /* -(2^53 + 1): not a double */

static const char EXECUTORS[] =
    "local sj = require 'snailjob'\n"
    "local BIG = 1234567890123456789\n"
    "\n"
    "-- the seed's two examples (lua-api.md)\n"
    "local m = sj.map('testMyMapExecutor')\n"
    "m:map(function(args)\n"
    "  assert(args.task_name == sj.ROOT_MAP, 'task_name ' .. "
    "tostring(args.task_name))\n"
    "  assert(args.map_result == nil, 'map_result at ROOT_MAP')\n"
    "  return sj.mr_do_map({ '1', '2', '3', '4' }, 'TWO_MAP')\n"
    "end)\n"
    "m:map('TWO_MAP', function(args)\n"
    "  return sj.success(args.map_result)\n"
    "end)\n"
    "\n"
    "local mr = sj.map_reduce('testMapReduceJobExecutor')\n"
    "mr:map(function(args)\n"
    "  return sj.mr_do_map({ 1, 2, 3, 4, 5, 6 }, 'MONTH_MAP')\n"
    "end)\n"
    "mr:map('MONTH_MAP', function(args)\n"
    "  return sj.success(tonumber(args.map_result) * 2)\n"
    "end)\n"
    "mr:reduce(function(args)\n"
    "  local sum = 0\n"
    "  for _, x in ipairs(args.map_result) do sum = sum + tonumber(x) end\n"
    "  return sj.success(sum)\n"
    "end)\n"
    "mr:merge(function(args)\n"
    "  local sum = 0\n"
    "  for _, x in ipairs(args.reduces) do sum = sum + tonumber(x) end\n"
    "  return sj.success(sum)\n"
    "end)\n"
    "\n"
    "-- three levels: ROOT_MAP -> L2 (fans out again) -> L3 leaves\n"
    "local n3 = sj.map_reduce('nested3')\n"
    "n3:map(function(args) return sj.mr_do_map({ 1, 2 }, 'L2') end)\n"
    "n3:map('L2', function(args)\n"
    "  local base = args.map_result * 10\n"
    "  local r = sj.mr_do_map({ base + 1, base + 2, base + 3 }, 'L3')\n"
    "  assert(sj.is_result(r) and r.status == 'success')\n"
    "  return sj.success('not-a-leaf')\n"
    "end)\n"
    "n3:map('L3', function(args) return sj.success(args.map_result) end)\n"
    "n3:reduce(function(args)\n"
    "  local sum = 0\n"
    "  for _, x in ipairs(args.map_result) do sum = sum + tonumber(x) end\n"
    "  return sj.success(#args.map_result .. ' leaves, sum ' .. sum)\n"
    "end)\n"
    "\n"
    "-- job_params = number of sub-tasks\n"
    "local fan = sj.map('fanout')\n"
    "fan:map(function(args)\n"
    "  local list = {}\n"
    "  for i = 1, math.tointeger(tonumber(args.job_params)) do list[i] = i "
    "end\n"
    "  return sj.mr_do_map(list, 'CHILD')\n"
    "end)\n"
    "fan:map('CHILD', function(args) return sj.success(args.map_result) "
    "end)\n"
    "\n"
    "-- misuse of sj.mr_do_map, chosen by job_params\n"
    "local bad = sj.map('badMap')\n"
    "bad:map(function(args)\n"
    "  local p = args.job_params\n"
    "  if p == 'empty_name' then return sj.mr_do_map({ 1 }, '') end\n"
    "  if p == 'blank_name' then return sj.mr_do_map({ 1 }, ' \\t ') end\n"
    "  if p == 'root_name' then return sj.mr_do_map({ 1 }, sj.ROOT_MAP) end\n"
    "  if p == 'no_name' then return sj.mr_do_map({ 1 }) end\n"
    "  if p == 'not_list' then return sj.mr_do_map('abc', 'X') end\n"
    "  error('unknown case ' .. p)\n"
    "end)\n"
    "sj.job('jobCallsMap', function(args) return sj.mr_do_map({ 1 }, 'X') "
    "end)\n"
    "local rm = sj.map_reduce('reduceCallsMap')\n"
    "rm:map(function(args) return sj.mr_do_map({ 1 }, 'C') end)\n"
    "rm:map('C', function(args) return args.map_result end)\n"
    "rm:reduce(function(args) return sj.mr_do_map({ 1 }, 'AGAIN') end)\n"
    "\n"
    "-- missing handlers\n"
    "local nr = sj.map_reduce('noReduce')\n"
    "nr:map(function(args) return sj.mr_do_map({ 1, 2 }, 'C') end)\n"
    "nr:map('C', function(args) return args.map_result end)\n"
    "local nm = sj.map_reduce('noMerge')\n"
    "nm:map(function(args) return sj.mr_do_map({ 1, 2 }, 'C') end)\n"
    "nm:map('C', function(args) return args.map_result end)\n"
    "nm:reduce(function(args) return #args.map_result end)\n"
    "local ns = sj.map('noStage')\n"
    "ns:map(function(args) return sj.mr_do_map({ 1 }, 'MISSING') end)\n"
    "ns:map('OTHER', function(args) return 1 end)\n"
    "local nroot = sj.map('noRoot')\n"
    "nroot:map('ONLY', function(args) return 1 end)\n"
    "\n"
    "-- one failing sub-task\n"
    "local of = sj.map_reduce('oneFails')\n"
    "of:map(function(args) return sj.mr_do_map({ 1, 2, 3, 4, 5 }, 'C') end)\n"
    "of:map('C', function(args)\n"
    "  if args.map_result == 3 then return sj.failure('element 3 is bad') "
    "end\n"
    "  return args.map_result\n"
    "end)\n"
    "of:reduce(function(args) return 'reduced' end)\n"
    "\n"
    "-- tables and 64-bit integers through map, reduce and merge\n"
    "local vals = sj.map_reduce('values')\n"
    "vals:map(function(args)\n"
    "  return sj.mr_do_map({ { a = 1, b = { 'x', 2 }, big = BIG }, BIG, "
    "'str', 7,\n"
    "    -9007199254740993 }, 'V')\n"
    "end)\n"
    "vals:map('V', function(args)\n"
    "  local v = args.map_result\n"
    "  local t = type(v)\n"
    "  if t == 'table' then\n"
    "    assert(math.type(v.a) == 'integer' and v.b[1] == 'x' and v.b[2] == "
    "2\n"
    "      and v.big == BIG, 'table element')\n"
    "  elseif t == 'number' then\n"
    "    assert(math.type(v) == 'integer', 'integer element ' .. "
    "tostring(v))\n"
    "  else\n"
    "    assert(t == 'string' and v == 'str', 'string element')\n"
    "  end\n"
    "  return sj.success(v)\n"
    "end)\n"
    "vals:reduce(function(args)\n"
    "  local out = {}\n"
    "  for i, x in ipairs(args.map_result) do\n"
    "    assert(type(x) == 'string', 'reduce input ' .. i .. ' is a ' .. "
    "type(x))\n"
    "    local v = sj.json.decode(x)\n"
    "    if v == nil then v = x end -- a string result arrives as is\n"
    "    out[i] = v\n"
    "  end\n"
    "  return sj.success(out)\n"
    "end)\n"
    "vals:merge(function(args)\n"
    "  local all = {}\n"
    "  for i, x in ipairs(args.reduces) do\n"
    "    assert(type(x) == 'string', 'merge input ' .. i .. ' is a ' .. "
    "type(x))\n"
    "    for _, v in ipairs(assert(sj.json.decode(x))) do all[#all + 1] = v "
    "end\n"
    "  end\n"
    "  assert(math.type(all[1].big) == 'integer' and all[1].big == BIG, "
    "'table big')\n"
    "  assert(math.type(all[2]) == 'integer' and all[2] == BIG, 'big')\n"
    "  assert(all[3] == 'str' and all[4] == 7, 'str, 7')\n"
    "  assert(all[5] == -9007199254740993, 'neg')\n"
    "  return sj.success({ count = #all, big = all[2], tbl = all[1], neg = "
    "all[5] })\n"
    "end)\n"
    "\n"
    "-- sleeping sub-tasks, for the stop\n"
    "local sl = sj.map('sleepy')\n"
    "sl:map(function(args) return sj.mr_do_map({ 1, 2, 3, 4, 5, 6 }, 'S') "
    "end)\n"
    "sl:map('S', function(args)\n"
    "  sj.hostlog.info('sub-task %d sleeping', args.map_result)\n"
    "  sj.sleep(30)\n"
    "  return sj.success('woke')\n"
    "end)\n"
    "\n"
    "-- a stop while waiting for the map report's answer\n"
    "local hm = sj.map('holdMap')\n"
    "hm:map(function(args)\n"
    "  sj.mr_do_map({ 1 }, 'C')\n"
    "  return sj.success('fanned out')\n"
    "end)\n"
    "hm:map('C', function(args) return 1 end)\n"
    "\n"
    "-- workflows\n"
    "local wmr = sj.map_reduce('wfMapReduce')\n"
    "wmr:map(function(args)\n"
    "  assert(args.wf_context.k == 'v', 'root sees the workflow context')\n"
    "  args:append_context('root', 'r')\n"
    "  return sj.mr_do_map({ 1, 2 }, 'W')\n"
    "end)\n"
    "wmr:map('W', function(args)\n"
    "  assert(args:get_wf_context('k') == 'v', 'child sees the context')\n"
    "  args:append_context('c' .. args.map_result, args.map_result)\n"
    "  return args.map_result\n"
    "end)\n"
    "wmr:reduce(function(args)\n"
    "  assert(args.wf_context.k == 'v', 'reduce sees the context')\n"
    "  args:append_context('reduce', 'done')\n"
    "  local s = 0\n"
    "  for _, x in ipairs(args.map_result) do s = s + tonumber(x) end\n"
    "  return s\n"
    "end)\n"
    "local wm = sj.map('wfMap')\n"
    "wm:map(function(args)\n"
    "  assert(args.wf_context.k == 'v', 'root sees the workflow context')\n"
    "  args:append_context('root', 'm')\n"
    "  return sj.mr_do_map({ 'a' }, 'W')\n"
    "end)\n"
    "wm:map('W', function(args)\n"
    "  assert(args.wf_context.k == 'v', 'child sees the context')\n"
    "  args:append_context('child', args.map_result)\n"
    "  return 'ok'\n"
    "end)\n";

#define CHECK_INT_EQ(a, b)                                                     \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        CHECKF(a_ == b_, "%lld != %lld", a_, b_);                              \
    } while (0)
#define CHECK_STR_EQ(a, b)                                                     \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        CHECKF(a_ != NULL && b_ != NULL && strcmp(a_, b_) == 0,                \
               "got '%s', expected '%s'", a_ ? a_ : "(null)",                  \
               b_ ? b_ : "(null)");                                            \
    } while (0)
#define CHECK_HAS(hay, needle)                                                 \
    do {                                                                       \
        const char *h_ = (hay), *n_ = (needle);                                \
        CHECKF(h_ != NULL && strstr(h_, n_) != NULL, "'%s' not in '%s'", n_,   \
               h_ ? h_ : "(null)");                                            \
    } while (0)

/* ---- the world: one emulator, one host --------------------------------- */

static sj_emu *emu;
static sj_srv *srv;
static h_host host;
static int64_t next_job_id = 100;

/* Holding map-report replies (on the emulator's listener thread, after
 * sj_srv answered, before the reply leaves). */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static long long hold_ms; /* > 0: hold each map-report reply this long */
static int hold_release;  /* 1: let held replies go now */
static int holding;       /* replies being held right now */

static void on_request(void *ud, const sj_request *req, const sj_reply *reply)
{
    struct timespec until;
    (void)ud;
    (void)reply;
    if (req->uri == NULL || strcmp(req->uri, MAP_URI) != 0)
        return;
    pthread_mutex_lock(&hold_mu);
    if (hold_ms > 0) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += hold_ms / 1000;
        until.tv_nsec += (hold_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        holding++;
        pthread_cond_broadcast(&hold_cv);
        while (!hold_release &&
               pthread_cond_timedwait(&hold_cv, &hold_mu, &until) != ETIMEDOUT)
            ;
        holding--;
    }
    pthread_mutex_unlock(&hold_mu);
}

static void hold_map(long long ms)
{
    pthread_mutex_lock(&hold_mu);
    hold_ms = ms;
    hold_release = 0;
    pthread_mutex_unlock(&hold_mu);
}

static void release_map(void)
{
    pthread_mutex_lock(&hold_mu);
    hold_ms = 0;
    hold_release = 1;
    pthread_cond_broadcast(&hold_cv);
    pthread_mutex_unlock(&hold_mu);
}

/* 1 if one line of the host's log has both a and b, in that order. */
static int log_line_has(const char *a, const char *b)
{
    char *log = h_read_file(host.log), *p = log, *q, *nl;
    int found = 0;
    while (!found && (q = strstr(p, a)) != NULL) {
        nl = strchr(q, '\n');
        if (nl != NULL)
            *nl = '\0';
        found = strstr(q, b) != NULL;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    free(log);
    return found;
}

/* Occurrences of `needle` in the host's log. */
static int log_count(const char *needle)
{
    char *log = h_read_file(host.log), *p = log;
    int n = 0;
    while ((p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    free(log);
    return n;
}

static int world_up(void)
{
    sj_emu_config cfg;
    int port = 0;
    long long until;

    memset(&cfg, 0, sizeof cfg);
    cfg.srv.beat_apply_ms = 0;
    cfg.dispatch_timeout_ms = (int)H_MS(1500);
    cfg.on_request = on_request;
    if (sj_emu_open(&cfg, "127.0.0.1:0", &emu, &port) != 0) {
        fprintf(stderr, "cannot start the emulator\n");
        return -1;
    }
    srv = sj_emu_srv(emu);
    h_host_dir(&host);
    h_write_file(host.dir, "executors/mapreduce.lua", EXECUTORS);
    h_host_start(&host, port, NULL);
    until = h_now() + H_MS(15000);
    while (h_now() < until && h_host_alive(&host)) {
        sj_srv_node_info *nodes;
        size_t n = 0;
        if (sj_srv_nodes(srv, &nodes, &n) == 0) {
            sj_srv_nodes_free(nodes, n);
            if (n > 0 && sj_srv_executor_count(srv) > 0)
                return 0;
        }
        h_sleep_ms(20);
    }
    fprintf(stderr, "the host did not register; its log:\n%s\n",
            h_read_file(host.log));
    return -1;
}

static void world_down(void)
{
    CHECK(h_host_alive(&host));
    CHECK_INT_EQ(h_host_stop(&host, SIGTERM), 0);
    sj_emu_destroy(emu);
    if (h_failures)
        fprintf(stderr, "---- host log ----\n%s\n", h_read_file(host.log));
    h_host_cleanup(&host);
}

/* ---- helpers ----------------------------------------------------------- */

static sj_srv_job job(int type, const char *executor, const char *args)
{
    sj_srv_job j;
    memset(&j, 0, sizeof j);
    j.job_id = next_job_id++;
    j.task_type = type;
    j.executor_info = executor;
    j.args = args;
    j.executor_timeout = 30;
    j.parallel_num = 1;
    return j;
}

/* Trigger, wait for the final status (into *status), return the batch. */
static int64_t run(const sj_srv_job *j, int timeout_ms, int *status)
{
    int64_t id = 0;
    int rc = sj_srv_trigger(srv, j, &id);
    CHECKF(rc == 0, "trigger %s: %d", j->executor_info, rc);
    *status = sj_srv_wait_batch(srv, id, (int)H_MS(timeout_ms));
    return id;
}

typedef struct tasks {
    sj_srv_task_info *v;
    size_t n;
} tasks;

static tasks tasks_of(int64_t batch)
{
    tasks t = {NULL, 0};
    CHECK_INT_EQ(sj_srv_batch_tasks(srv, batch, &t.v, &t.n), 0);
    return t;
}

static void tasks_free(tasks *t)
{
    sj_srv_tasks_free(t->v, t->n);
    t->v = NULL;
    t->n = 0;
}

static size_t count_named(const tasks *t, const char *name, int status)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        n += strcmp(t->v[i].name, name) == 0 &&
             (status == 0 || t->v[i].status == status);
    return n;
}

static const sj_srv_task_info *first_named(const tasks *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].name, name) == 0)
            return &t->v[i];
    return NULL;
}

static char *result_of(int64_t batch)
{
    char *res = NULL;
    if (sj_srv_batch_result(srv, batch, &res) != 0)
        return strdup("(no result)");
    return res;
}

/* The body's first argument of every request on `uri` whose taskBatchId is
 * `batch`, as a JSON array (new reference). */
static json_t *requests_for(const char *uri, int64_t batch)
{
    json_t *out = json_array();
    size_t n = sj_srv_request_count(srv, uri);
    for (size_t i = 0; i < n; i++) {
        sj_request r;
        if (sj_srv_request_get(srv, uri, i, &r, NULL) != 0)
            continue;
        json_t *body = json_loads(r.body ? r.body : "", 0, NULL);
        json_t *a = json_array_get(body, 0);
        if (json_is_object(a) &&
            json_integer_value(json_object_get(a, "taskBatchId")) == batch)
            json_array_append(out, a);
        json_decref(body);
        sj_request_free(&r);
    }
    return out;
}

/* Dispatch bodies sent for `batch`, as DispatchJobRequest objects. */
static json_t *dispatches_for(int64_t batch)
{
    json_t *out = json_array();
    size_t n = sj_srv_sent_count(srv, SJ_SRV_URI_DISPATCH);
    for (size_t i = 0; i < n; i++) {
        char *body = NULL;
        if (sj_srv_sent_get(srv, SJ_SRV_URI_DISPATCH, i, &body, NULL) != 0)
            continue;
        json_t *arr = json_loads(body, 0, NULL);
        json_t *d = json_array_get(arr, 0);
        if (json_integer_value(json_object_get(d, "taskBatchId")) == batch)
            json_array_append(out, d);
        json_decref(arr);
        free(body);
    }
    return out;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static long long jint(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* The JSON value of `text` (new reference; NULL if not JSON). */
static json_t *parse(const char *text)
{
    return text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
}

/* ---- the seed's examples ------------------------------------------------ */

static void test_my_map_executor(void)
{
    sj_srv_job j = job(SJ_SRV_MAP, "testMyMapExecutor", "seed");
    int st;
    int64_t id = run(&j, 10000, &st);
    tasks t = tasks_of(id);
    char *res = result_of(id);
    json_t *maps = requests_for(MAP_URI, id), *m = json_array_get(maps, 0);
    json_t *ds = dispatches_for(id), *d;
    size_t i;

    CHECK_INT_EQ(st, SJ_SRV_SUCCESS);
    CHECK_INT_EQ(t.n, 5);
    CHECK_STR_EQ(res, "[\"1\",\"2\",\"3\",\"4\"]");
    /* the map report of protocol.md §4.4 */
    CHECK_INT_EQ(json_array_size(maps), 1);
    CHECK_INT_EQ(jint(m, "jobId"), j.job_id);
    CHECK_INT_EQ(jint(m, "parentId"), t.n ? t.v[0].task_id : -1);
    CHECK_STR_EQ(jstr(m, "taskName"), "TWO_MAP");
    CHECK_STR_EQ(jstr(m, "wfContext"), "{}");
    CHECK(json_object_get(m, "workflowTaskBatchId") == NULL);
    {
        char *sub = json_dumps(json_object_get(m, "subTask"), JSON_COMPACT);
        CHECK_STR_EQ(sub, "[\"1\",\"2\",\"3\",\"4\"]");
        free(sub);
    }
    /* ROOT_MAP, then one TWO_MAP child per element with its element */
    CHECK_INT_EQ(json_array_size(ds), 5);
    json_array_foreach(ds, i, d)
    {
        json_t *a = parse(jstr(d, "argsStr"));
        CHECK_STR_EQ(jstr(d, "taskName"), i == 0 ? "ROOT_MAP" : "TWO_MAP");
        CHECK_INT_EQ(jint(d, "mrStage"), 1);
        if (i == 0) {
            CHECK_STR_EQ(jstr(a, "maps"), "");
        } else {
            char want[8];
            snprintf(want, sizeof want, "%zu", i);
            CHECK_STR_EQ(jstr(a, "maps"), want);
        }
        json_decref(a);
    }
    for (i = 1; i < t.n; i++) {
        CHECK_INT_EQ(t.v[i].parent_id, t.v[0].task_id);
        CHECK_INT_EQ(t.v[i].status, SJ_SRV_SUCCESS);
        CHECK_INT_EQ(t.v[i].leaf, 1);
    }
    if (t.n > 0) {
        CHECK_INT_EQ(t.v[0].leaf, 0);
        CHECK_INT_EQ(t.v[0].status, SJ_SRV_SUCCESS); /* it reported too */
    }
    json_decref(maps);
    json_decref(ds);
    free(res);
    tasks_free(&t);
}

static void check_42(int shard_num)
{
    sj_srv_job j = job(SJ_SRV_MAP_REDUCE, "testMapReduceJobExecutor", "x");
    int st;
    j.shard_num = shard_num;
    int64_t id = run(&j, 10000, &st);
    tasks t = tasks_of(id);
    char *res = result_of(id);

    CHECKF(st == SJ_SRV_SUCCESS, "shardNum %d: status %d", shard_num, st);
    CHECK_STR_EQ(res, "42");
    CHECK_INT_EQ(count_named(&t, "MONTH_MAP", SJ_SRV_SUCCESS), 6);
    CHECK_INT_EQ(count_named(&t, "REDUCE_TASK", SJ_SRV_SUCCESS),
                 shard_num > 1 ? shard_num : 1);
    CHECK_INT_EQ(count_named(&t, "MERGE_REDUCE_TASK", 0), shard_num > 1);
    for (size_t i = 0; i < t.n; i++) {
        const sj_srv_task_info *ti = &t.v[i];
        if (strcmp(ti->name, "REDUCE_TASK") == 0)
            CHECK_STR_EQ(ti->args_str,
                         shard_num > 1
                             ? (ti == first_named(&t, "REDUCE_TASK")
                                    ? "{\"jobParams\":\"x\",\"maps\":"
                                      "[\"2\",\"4\",\"6\"]}"
                                    : "{\"jobParams\":\"x\",\"maps\":"
                                      "[\"8\",\"10\",\"12\"]}")
                             : "{\"jobParams\":\"x\",\"maps\":[\"2\",\"4\","
                               "\"6\",\"8\",\"10\",\"12\"]}");
        if (strcmp(ti->name, "MERGE_REDUCE_TASK") == 0) {
            CHECK_STR_EQ(ti->args_str,
                         "{\"jobParams\":\"x\",\"reduces\":[\"12\",\"30\"]}");
            CHECK_STR_EQ(ti->result, "42");
        }
    }
    free(res);
    tasks_free(&t);
}

static void test_map_reduce_42(void)
{
    check_42(2);
    check_42(1);
}

/* ---- nesting and sizes -------------------------------------------------- */

static void test_nested_three_levels(void)
{
    sj_srv_job j = job(SJ_SRV_MAP_REDUCE, "nested3", NULL);
    int st;
    int64_t id = run(&j, 10000, &st);
    tasks t = tasks_of(id);
    char *res = result_of(id);
    const sj_srv_task_info *root = first_named(&t, "ROOT_MAP");

    CHECK_INT_EQ(st, SJ_SRV_SUCCESS);
    CHECK_STR_EQ(res, "6 leaves, sum 102"); /* 11+12+13+21+22+23 */
    CHECK_INT_EQ(count_named(&t, "L2", SJ_SRV_SUCCESS), 2);
    CHECK_INT_EQ(count_named(&t, "L3", SJ_SRV_SUCCESS), 6);
    for (size_t i = 0; i < t.n && root != NULL; i++) {
        const sj_srv_task_info *ti = &t.v[i];
        if (strcmp(ti->name, "L2") == 0) {
            CHECK_INT_EQ(ti->parent_id, root->task_id);
            CHECK_INT_EQ(ti->leaf, 0);
            CHECK_STR_EQ(ti->result, "not-a-leaf");
        } else if (strcmp(ti->name, "L3") == 0) {
            /* the parent is an L2 task */
            int found = 0;
            for (size_t k = 0; k < t.n; k++)
                found |= t.v[k].task_id == ti->parent_id &&
                         strcmp(t.v[k].name, "L2") == 0;
            CHECK(found);
            CHECK_INT_EQ(ti->leaf, 1);
        }
    }
    free(res);
    tasks_free(&t);
}

/*
 * 200 children of one parent, all on this host (2 workers, parallelNum
 * 2): the reply to the map report is held past the dispatch deadline, so
 * every child is dispatched - and must be acknowledged - while the parent
 * still waits for it (§4.4), and the children run and finish meanwhile.
 */
static void test_fanout_200_one_host(void)
{
    sj_srv_job j = job(SJ_SRV_MAP, "fanout", "200");
    int st;
    long long t0 = h_now();
    int64_t id;
    tasks t;
    json_t *ds;

    j.parallel_num = 2;
    hold_map(H_MS(2000));
    id = run(&j, 30000, &st);
    release_map();
    t = tasks_of(id);
    ds = dispatches_for(id);
    CHECKF(st == SJ_SRV_SUCCESS, "status %d after %lld ms", st, h_now() - t0);
    CHECK_INT_EQ(json_array_size(ds), 201);
    CHECK_INT_EQ(count_named(&t, "CHILD", SJ_SRV_SUCCESS), 200);
    CHECK_INT_EQ(count_named(&t, "ROOT_MAP", SJ_SRV_SUCCESS), 1);
    {
        char *res = result_of(id);
        json_t *r = parse(res);
        CHECK_INT_EQ(json_array_size(r), 200);
        CHECK_STR_EQ(json_string_value(json_array_get(r, 199)), "200");
        json_decref(r);
        free(res);
    }
    json_decref(ds);
    tasks_free(&t);
}

/* A refused sj.mr_do_map fails its task with a message naming the
 * problem, and the batch with it. */
static void check_refused(int type, const char *executor, const char *args,
                          const char *task_name, const char *want)
{
    sj_srv_job j = job(type, executor, args);
    int st;
    int64_t id = run(&j, 10000, &st);
    tasks t = tasks_of(id);
    const sj_srv_task_info *ti = first_named(&t, task_name);

    CHECKF(st == SJ_SRV_FAIL, "%s(%s): status %d", executor, args ? args : "",
           st);
    CHECK(ti != NULL);
    if (ti != NULL) {
        CHECK_INT_EQ(ti->status, SJ_SRV_FAIL);
        CHECK_HAS(ti->message, want);
    }
    tasks_free(&t);
}

static void test_refusals(void)
{
    size_t before = sj_srv_request_count(srv, MAP_URI);
    check_refused(SJ_SRV_MAP, "fanout", "201", "ROOT_MAP",
                  "sj.mr_do_map: the list has 201 elements; at most 200");
    check_refused(SJ_SRV_MAP, "fanout", "0", "ROOT_MAP",
                  "sj.mr_do_map: the list is empty");
    check_refused(SJ_SRV_MAP, "badMap", "empty_name", "ROOT_MAP",
                  "next_task_name must be a non-empty string");
    check_refused(SJ_SRV_MAP, "badMap", "blank_name", "ROOT_MAP",
                  "next_task_name must be a non-empty string");
    check_refused(SJ_SRV_MAP, "badMap", "no_name", "ROOT_MAP",
                  "next_task_name must be a non-empty string");
    check_refused(SJ_SRV_MAP, "badMap", "root_name", "ROOT_MAP",
                  "next_task_name must not be ROOT_MAP");
    check_refused(SJ_SRV_MAP, "badMap", "not_list", "ROOT_MAP",
                  "the list must be a table");
    check_refused(SJ_SRV_CLUSTER, "jobCallsMap", NULL, "CLUSTER_TASK",
                  "called outside a map stage");
    check_refused(SJ_SRV_MAP_REDUCE, "reduceCallsMap", NULL, "REDUCE_TASK",
                  "called outside a map stage");
    /* the refusals happened in the host: the only map reports are the
     * one of reduceCallsMap's ROOT_MAP */
    CHECK_INT_EQ(sj_srv_request_count(srv, MAP_URI) - before, 1);
}

static void test_missing_handlers(void)
{
    check_refused(SJ_SRV_MAP_REDUCE, "noReduce", NULL, "REDUCE_TASK",
                  "executor 'noReduce' has no reduce handler (stage REDUCE, "
                  "task 'REDUCE_TASK')");
    {
        sj_srv_job j = job(SJ_SRV_MAP_REDUCE, "noMerge", NULL);
        int st;
        j.shard_num = 2;
        int64_t id = run(&j, 10000, &st);
        tasks t = tasks_of(id);
        const sj_srv_task_info *ti = first_named(&t, "MERGE_REDUCE_TASK");
        CHECK_INT_EQ(st, SJ_SRV_FAIL);
        CHECK_INT_EQ(count_named(&t, "REDUCE_TASK", SJ_SRV_SUCCESS), 2);
        CHECK(ti != NULL);
        if (ti != NULL)
            CHECK_HAS(ti->message, "executor 'noMerge' has no merge handler "
                                   "(stage MERGE_REDUCE, task "
                                   "'MERGE_REDUCE_TASK')");
        tasks_free(&t);
    }
    check_refused(SJ_SRV_MAP, "noStage", NULL, "MISSING",
                  "executor 'noStage' has no map handler for task 'MISSING' "
                  "(stage MAP)");
    check_refused(SJ_SRV_MAP, "noRoot", NULL, "ROOT_MAP",
                  "executor 'noRoot' has no map handler for task 'ROOT_MAP' "
                  "(stage MAP)");
}

static void test_one_failure_fails_batch(void)
{
    sj_srv_job j = job(SJ_SRV_MAP_REDUCE, "oneFails", NULL);
    int st;
    int64_t id = run(&j, 10000, &st);
    tasks t = tasks_of(id);

    CHECK_INT_EQ(st, SJ_SRV_FAIL);
    CHECK_INT_EQ(count_named(&t, "C", SJ_SRV_SUCCESS), 4);
    CHECK_INT_EQ(count_named(&t, "C", SJ_SRV_FAIL), 1);
    CHECK_INT_EQ(count_named(&t, "REDUCE_TASK", 0), 0); /* never opened */
    for (size_t i = 0; i < t.n; i++)
        if (t.v[i].status == SJ_SRV_FAIL)
            CHECK_STR_EQ(t.v[i].message, "element 3 is bad");
    tasks_free(&t);
}

/* ---- values ------------------------------------------------------------- */

static void test_values_exact(void)
{
    sj_srv_job j = job(SJ_SRV_MAP_REDUCE, "values", NULL);
    int st;
    j.shard_num = 2;
    int64_t id = run(&j, 10000, &st);
    tasks t = tasks_of(id);
    char *res = result_of(id);
    json_t *r = parse(res), *maps = requests_for(MAP_URI, id);

    CHECK_INT_EQ(st, SJ_SRV_SUCCESS);
    /* the map report carries the elements with exact integers */
    {
        json_t *sub = json_object_get(json_array_get(maps, 0), "subTask");
        CHECK_INT_EQ(json_array_size(sub), 5);
        CHECK_INT_EQ(json_integer_value(json_array_get(sub, 1)), BIG);
        CHECK_INT_EQ(
            json_integer_value(json_object_get(json_array_get(sub, 0), "big")),
            BIG);
        CHECK_INT_EQ(json_integer_value(json_array_get(sub, 4)), NEG);
    }
    /* what the server delivered to reduce: strings (raw string, or the
     * JSON text of any other result) */
    {
        const sj_srv_task_info *r0 = first_named(&t, "REDUCE_TASK");
        json_t *a = parse(r0 ? r0->args_str : NULL);
        json_t *in = json_object_get(a, "maps"), *v;
        size_t i;
        CHECK_INT_EQ(json_array_size(in), 3);
        json_array_foreach(in, i, v) CHECK(json_is_string(v));
        CHECK_STR_EQ(json_string_value(json_array_get(in, 1)),
                     "1234567890123456789");
        CHECK_STR_EQ(json_string_value(json_array_get(in, 2)), "str");
        json_t *tbl = parse(json_string_value(json_array_get(in, 0)));
        CHECK_INT_EQ(jint(tbl, "big"), BIG);
        CHECK_INT_EQ(jint(tbl, "a"), 1);
        json_decref(tbl);
        json_decref(a);
    }
    {
        const sj_srv_task_info *mg = first_named(&t, "MERGE_REDUCE_TASK");
        json_t *a = parse(mg ? mg->args_str : NULL);
        json_t *in = json_object_get(a, "reduces");
        CHECK_INT_EQ(json_array_size(in), 2);
        CHECK(json_is_string(json_array_get(in, 0)));
        json_decref(a);
    }
    /* merge decoded everything back exactly (its asserts) and says so */
    CHECKF(json_is_object(r), "result %s", res);
    CHECK_INT_EQ(jint(r, "count"), 5);
    CHECK_INT_EQ(jint(r, "big"), BIG);
    CHECK_INT_EQ(jint(r, "neg"), NEG);
    CHECK_INT_EQ(jint(json_object_get(r, "tbl"), "big"), BIG);
    CHECK_STR_EQ(json_string_value(json_array_get(
                     json_object_get(json_object_get(r, "tbl"), "b"), 0)),
                 "x");
    json_decref(r);
    json_decref(maps);
    free(res);
    tasks_free(&t);
}

/* ---- stops --------------------------------------------------------------- */

static void test_stop_during_map_phase(void)
{
    sj_srv_job j = job(SJ_SRV_MAP, "sleepy", NULL);
    int64_t id = 0;
    long long until, t0;
    int sleeping = 0, interrupted = 0;
    size_t reports_before;

    j.parallel_num = 2;
    CHECK_INT_EQ(sj_srv_trigger(srv, &j, &id), 0);
    until = h_now() + H_MS(10000);
    while (h_now() < until && (sleeping = log_count("sleeping")) < 2)
        h_sleep_ms(20);
    CHECK_INT_EQ(sleeping, 2); /* two workers, two sub-tasks running */
    reports_before = sj_srv_request_count(srv, RESULT_URI);

    t0 = h_now();
    CHECK_INT_EQ(sj_srv_stop_batch(srv, id), 0);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_STOP);
    until = h_now() + H_MS(3000);
    while (h_now() < until &&
           (interrupted = log_count("interrupted: stopped by the server")) < 2)
        h_sleep_ms(10);
    CHECK_INT_EQ(interrupted, 2);
    CHECKF(h_now() - t0 < H_MS(2000), "stop took %lld ms", h_now() - t0);
    /* the queued four never start, and no stopped task reports */
    h_sleep_ms(H_MS(300));
    CHECK_INT_EQ(log_count("sleeping"), 2);
    CHECK_INT_EQ(sj_srv_request_count(srv, RESULT_URI), reports_before);
    CHECK(log_count("2 running task(s) interrupted, 4 queued dropped") == 1);
    /* the workers are free again */
    {
        sj_srv_job k = job(SJ_SRV_MAP, "testMyMapExecutor", NULL);
        int st;
        run(&k, 5000, &st);
        CHECK_INT_EQ(st, SJ_SRV_SUCCESS);
    }
}

/* A stop reaches a task blocked in sj.mr_do_map waiting for the answer. */
static void test_stop_while_waiting_for_map_reply(void)
{
    sj_srv_job j = job(SJ_SRV_MAP, "holdMap", NULL);
    int64_t id = 0;
    long long until;
    int n = 0;
    char needle[96];
    tasks t;

    hold_map(H_MS(5000));
    CHECK_INT_EQ(sj_srv_trigger(srv, &j, &id), 0);
    CHECK_INT_EQ(sj_srv_wait_requests(srv, MAP_URI,
                                      sj_srv_request_count(srv, MAP_URI) + 1,
                                      (int)H_MS(5000)),
                 0);
    t = tasks_of(id);
    snprintf(needle, sizeof needle, "[holdMap #%" PRId64 "]",
             t.n > 0 ? t.v[0].task_id : (int64_t)-1);
    tasks_free(&t);
    h_sleep_ms(H_MS(100));
    CHECK_INT_EQ(sj_srv_stop_batch(srv, id), 0);
    until = h_now() + H_MS(2000);
    while (h_now() < until &&
           !(n = log_line_has(needle, "interrupted: stopped by the server")))
        h_sleep_ms(10);
    pthread_mutex_lock(&hold_mu);
    CHECK_INT_EQ(holding, 1); /* the reply was still held meanwhile */
    pthread_mutex_unlock(&hold_mu);
    release_map();
    CHECKF(n == 1, "no '%s' in the host log", needle);
    /* The line names the executor's own file, not the module's. */
    CHECK(log_line_has(needle, "mapreduce.lua:"));
    CHECK(!log_line_has(needle, "snailjob.lua:"));
}

/* The executor timeout also ends that wait. */
static void test_timeout_while_waiting_for_map_reply(void)
{
    sj_srv_job j = job(SJ_SRV_MAP, "holdMap", NULL);
    int64_t id = 0;
    long long until, t0;
    int n = 0;
    char needle[96];
    tasks t;

    j.executor_timeout = 1;
    hold_map(H_MS(5000));
    t0 = h_now();
    CHECK_INT_EQ(sj_srv_trigger(srv, &j, &id), 0);
    t = tasks_of(id);
    snprintf(needle, sizeof needle, "[holdMap #%" PRId64 "]",
             t.n > 0 ? t.v[0].task_id : (int64_t)-1);
    tasks_free(&t);
    until = h_now() + H_MS(3000);
    while (h_now() < until &&
           !(n = log_line_has(needle, "interrupted: executor timeout of 1 s "
                                      "exceeded")))
        h_sleep_ms(10);
    CHECKF(n == 1, "no timeout for %s in the host log", needle);
    CHECKF(h_now() - t0 < H_MS(1500), "interrupted after %lld ms",
           h_now() - t0);
    pthread_mutex_lock(&hold_mu);
    CHECK_INT_EQ(holding, 1);
    pthread_mutex_unlock(&hold_mu);
    release_map();
    /* the server's own timeout then stops the batch */
    CHECK_INT_EQ(sj_srv_wait_batch(srv, id, (int)H_MS(3000)), SJ_SRV_STOP);
}

/* ---- workflows ----------------------------------------------------------- */

static void check_workflow(int type, const char *executor)
{
    sj_srv_job j = job(type, executor, NULL);
    int st;
    j.workflow_task_batch_id = 777000 + type;
    j.workflow_node_id = 55;
    j.wf_context = "{\"k\":\"v\"}";
    int64_t id = run(&j, 10000, &st);
    json_t *maps = requests_for(MAP_URI, id), *m = json_array_get(maps, 0);
    json_t *ds = dispatches_for(id), *reps = requests_for(RESULT_URI, id);
    json_t *d, *wf;
    char *ctx = NULL;
    size_t i;

    CHECKF(st == SJ_SRV_SUCCESS, "%s: status %d", executor, st);
    /* the map report echoes the workflow ids and the root's changes */
    CHECK_INT_EQ(jint(m, "workflowTaskBatchId"), j.workflow_task_batch_id);
    CHECK_INT_EQ(jint(m, "workflowNodeId"), 55);
    wf = parse(jstr(m, "wfContext"));
    CHECK_STR_EQ(jstr(wf, "root"), type == SJ_SRV_MAP ? "m" : "r");
    CHECK(json_object_get(wf, "k") == NULL); /* changes only */
    json_decref(wf);
    /* every dispatch (children, reduce) carries the workflow context */
    CHECK(json_array_size(ds) >= 2);
    json_array_foreach(ds, i, d)
    {
        CHECK_INT_EQ(jint(d, "workflowTaskBatchId"), j.workflow_task_batch_id);
        CHECK_STR_EQ(jstr(d, "wfContext"), "{\"k\":\"v\"}");
    }
    /* every result report echoes the ids */
    json_array_foreach(reps, i, d)
        CHECK_INT_EQ(jint(d, "workflowTaskBatchId"), j.workflow_task_batch_id);
    /* the merged context has every task's changes */
    CHECK_INT_EQ(sj_srv_batch_wf_context(srv, id, &ctx), 0);
    wf = parse(ctx);
    CHECK_STR_EQ(jstr(wf, "k"), "v");
    if (type == SJ_SRV_MAP) {
        CHECK_STR_EQ(jstr(wf, "root"), "m");
        CHECK_STR_EQ(jstr(wf, "child"), "a");
    } else {
        CHECK_STR_EQ(jstr(wf, "root"), "r");
        CHECK_INT_EQ(jint(wf, "c1"), 1);
        CHECK_INT_EQ(jint(wf, "c2"), 2);
        CHECK_STR_EQ(jstr(wf, "reduce"), "done");
        char *res = result_of(id);
        CHECK_STR_EQ(res, "3");
        free(res);
    }
    json_decref(wf);
    free(ctx);
    json_decref(maps);
    json_decref(ds);
    json_decref(reps);
}

static void test_workflow_context(void)
{
    check_workflow(SJ_SRV_MAP, "wfMap");
    check_workflow(SJ_SRV_MAP_REDUCE, "wfMapReduce");
}

int main(void)
{
    if (getenv("SJ_BINARY") == NULL) {
        fprintf(stderr, "SJ_BINARY is not set\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (world_up() != 0) {
        world_down();
        return 1;
    }
    RUN(test_my_map_executor);
    RUN(test_map_reduce_42);
    RUN(test_nested_three_levels);
    RUN(test_values_exact);
    RUN(test_refusals);
    RUN(test_missing_handlers);
    RUN(test_one_failure_fails_batch);
    RUN(test_workflow_context);
    RUN(test_fanout_200_one_host);
    RUN(test_stop_during_map_phase);
    RUN(test_stop_while_waiting_for_map_reply);
    RUN(test_timeout_while_waiting_for_map_reply);
    world_down();
    if (h_failures) {
        fprintf(stderr, "e2e_mapreduce: %d check(s) failed\n", h_failures);
        return 1;
    }
    printf("e2e_mapreduce: all checks passed\n");
    return 0;
}
