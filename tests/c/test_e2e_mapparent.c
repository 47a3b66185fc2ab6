/*
 * The fan-out race of protocol.md §6.6, end to end: the real snailjob-lua
 * binary (SJ_BINARY) against the in-process emulator over loopback gRPC,
 * with sj_srv_config.complete_on_nonleaf = 0 (the Java server's rule: a
 * non-leaf MAP task's own report never completes its batch).
 *
 * A parent's children run on this same host (SNAIL_WORKERS=2, parallelNum
 * 2) while it waits for its map report's reply. Without the host's report
 * barrier (sj_upstream_hold, sj_upstream.h) their results can all reach
 * the server before the parent's own one; the batch then stays RUNNING,
 * and as every task is SUCCESS even the server's timeout cannot settle
 * it. Every other round trips that race on purpose: the emulator holds
 * the map report's reply for HOLD_MS (on its listener thread), so every
 * child has finished before the parent has its answer (without the
 * barrier each such round hangs; the others often report out of order).
 * The checks read the emulator's request records: for every batch, each
 * leaf's result arrives after the results of all its ancestors.
 *
 * Interrupted parents: children's reports held when the parent
 *   - times out on the host are delivered then (they are true results of
 *     finished tasks, exactly what a client without a barrier would have
 *     sent; the batch ends STOP by the server's timeout either way);
 *   - is stopped by the server (/job/stop/v1) are dropped, marked done in
 *     the journal: §7.1, nothing is reported for a stopped batch (a late
 *     FAIL could even start a retry);
 *   - dies with the host (kill -9) were journaled at once and are
 *     delivered by the next start (recovered reports are never held).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "sj_harness.h"

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_log.h"
#include "sj_srv.h"

#define MAP_URI "/batch/report/job/map/task/v1"
#define RESULT_URI "/report/dispatch/result"
#define ROUNDS 20
#define HOLD_MS 100 /* map report reply held in odd rounds */

static const char EXECUTORS[] =
    "local sj = require 'snailjob'\n"
    "local function upto(n)\n"
    "  local l = {}\n"
    "  for i = 1, n do l[i] = i end\n"
    "  return l\n"
    "end\n"
    "\n"
    "-- ROOT_MAP -> job_params trivial children\n"
    "local flat = sj.map('mpFlat')\n"
    "flat:map(function(args)\n"
    "  return sj.mr_do_map(upto(math.tointeger(tonumber(args.job_params))), "
    "'C')\n"
    "end)\n"
    "flat:map('C', function(args) return sj.success(args.map_result) end)\n"
    "\n"
    "-- 20 children, then the reduce stage (2 reduce tasks + merge)\n"
    "local mr = sj.map_reduce('mpReduce')\n"
    "mr:map(function(args) return sj.mr_do_map(upto(20), 'C') end)\n"
    "mr:map('C', function(args) return args.map_result * 2 end)\n"
    "mr:reduce(function(args)\n"
    "  local s = 0\n"
    "  for _, x in ipairs(args.map_result) do s = s + tonumber(x) end\n"
    "  return s\n"
    "end)\n"
    "mr:merge(function(args)\n"
    "  local s = 0\n"
    "  for _, x in ipairs(args.reduces) do s = s + tonumber(x) end\n"
    "  return s\n"
    "end)\n"
    "\n"
    "-- two levels: ROOT_MAP -> 4 x L2 (each fans out) -> 5 x L3 leaves\n"
    "local nest = sj.map('mpNested')\n"
    "nest:map(function(args) return sj.mr_do_map(upto(4), 'L2') end)\n"
    "nest:map('L2', function(args)\n"
    "  local b = args.map_result * 10\n"
    "  return sj.mr_do_map({ b + 1, b + 2, b + 3, b + 4, b + 5 }, 'L3')\n"
    "end)\n"
    "nest:map('L3', function(args) return args.map_result end)\n"
    "\n"
    "-- a parent that outlives its deadline (or a stop) after fanning out\n"
    "local late = sj.map('mpLateParent')\n"
    "late:map(function(args)\n"
    "  sj.mr_do_map(upto(5), 'C')\n"
    "  sj.sleep(30)\n"
    "  return 'never'\n"
    "end)\n"
    "late:map('C', function(args)\n"
    "  sj.hostlog.info('mp child %d done', args.map_result)\n"
    "  return args.map_result\n"
    "end)\n";

#define CHECK_INT_EQ(a, b)                                                     \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        CHECKF(a_ == b_, "%lld != %lld", a_, b_);                              \
    } while (0)

/* ---- the world: one emulator, one host --------------------------------- */

static sj_emu *emu;
static sj_srv *srv;
static h_host host;
static int64_t next_job_id = 500;

/* Holding map report replies: on the emulator's listener thread, after
 * sj_srv answered (children already dispatched), before the reply leaves. */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static long long hold_ms;

static void on_request(void *ud, const sj_request *req, const sj_reply *reply)
{
    long long ms;
    (void)ud;
    (void)reply;
    if (req->uri == NULL || strcmp(req->uri, MAP_URI) != 0)
        return;
    pthread_mutex_lock(&hold_mu);
    ms = hold_ms;
    pthread_mutex_unlock(&hold_mu);
    if (ms > 0)
        h_sleep_ms(ms);
}

static void hold_map(long long ms)
{
    pthread_mutex_lock(&hold_mu);
    hold_ms = ms;
    pthread_mutex_unlock(&hold_mu);
}

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

static int wait_registered(void)
{
    long long until = h_now() + H_MS(15000);
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
    fprintf(stderr, "the host did not register\n");
    return -1;
}

static int world_up(void)
{
    sj_emu_config cfg;
    int port = 0;

    memset(&cfg, 0, sizeof cfg);
    cfg.srv.beat_apply_ms = 0;
    cfg.srv.complete_on_nonleaf = 0; /* Java's rule, the point here */
    cfg.on_request = on_request;
    if (sj_emu_open(&cfg, "127.0.0.1:0", &emu, &port) != 0) {
        fprintf(stderr, "cannot start the emulator\n");
        return -1;
    }
    srv = sj_emu_srv(emu);
    h_host_dir(&host);
    h_write_file(host.dir, "executors/mapparent.lua", EXECUTORS);
    h_host_start(&host, port, NULL);
    return wait_registered();
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
    j.executor_timeout = 5;
    j.parallel_num = 2;
    return j;
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

static const sj_srv_task_info *task_by_id(const tasks *t, int64_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].task_id == id)
            return &t->v[i];
    return NULL;
}

/* The results that reached the server for `batch`, in arrival order. */
typedef struct arrivals {
    size_t n;
    int64_t id[512];
    long long at[512]; /* receive time, sj_mono_ms */
} arrivals;

static void arrivals_of(int64_t batch, arrivals *a)
{
    size_t n = sj_srv_request_count(srv, RESULT_URI);
    a->n = 0;
    for (size_t i = 0; i < n && a->n < 512; i++) {
        sj_request r;
        long long at = 0;
        if (sj_srv_request_get(srv, RESULT_URI, i, &r, &at) != 0)
            continue;
        json_t *body = json_loads(r.body ? r.body : "", 0, NULL);
        json_t *o = json_array_get(body, 0);
        if (json_integer_value(json_object_get(o, "taskBatchId")) == batch) {
            a->id[a->n] = json_integer_value(json_object_get(o, "taskId"));
            a->at[a->n++] = at;
        }
        json_decref(body);
        sj_request_free(&r);
    }
}

static long pos_of(const arrivals *a, int64_t id)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->id[i] == id)
            return (long)i;
    return -1;
}

/* Every task reported exactly once, and every MAP-stage leaf after all of
 * its ancestors (the barrier's promise). Returns the check count failed. */
static int check_order(int64_t batch, const char *what, int round)
{
    int before = h_failures;
    tasks t = tasks_of(batch);
    arrivals a;

    arrivals_of(batch, &a);
    CHECKF(a.n == t.n, "%s round %d: %zu results for %zu tasks", what, round,
           a.n, t.n);
    for (size_t i = 0; i < t.n; i++) {
        const sj_srv_task_info *x = &t.v[i], *p;
        long px = pos_of(&a, x->task_id);
        CHECKF(px >= 0, "%s round %d: task %" PRId64 " (%s) never reported",
               what, round, x->task_id, x->name);
        if (!x->leaf || x->mr_stage > SJ_SRV_STAGE_MAP)
            continue;
        for (p = task_by_id(&t, x->parent_id); p != NULL;
             p = task_by_id(&t, p->parent_id)) {
            long pp = pos_of(&a, p->task_id);
            CHECKF(pp >= 0 && pp < px,
                   "%s round %d: leaf %" PRId64 " (%s) arrived #%ld, before "
                   "its ancestor %" PRId64 " (%s) #%ld",
                   what, round, x->task_id, x->name, px, p->task_id, p->name,
                   pp);
        }
    }
    sj_srv_tasks_free(t.v, t.n);
    return h_failures - before;
}

static size_t count_status(const tasks *t, const char *name, int status)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        n += strcmp(t->v[i].name, name) == 0 && t->v[i].status == status;
    return n;
}

/* 1 if both texts are the same JSON value (or the same text); arrays are
 * compared as multisets (leaf ids follow the order the parents fanned
 * out in, which varies). */
static int same_json(const char *a, const char *b)
{
    json_t *x = json_loads(a, JSON_DECODE_ANY, NULL);
    json_t *y = json_loads(b, JSON_DECODE_ANY, NULL);
    int same;

    if (json_is_array(x) && json_is_array(y)) {
        size_t n = json_array_size(x);
        char used[512] = {0};
        same = n == json_array_size(y) && n <= sizeof used;
        for (size_t i = 0; same && i < n; i++) {
            size_t k = 0;
            while (k < n && (used[k] || !json_equal(json_array_get(x, i),
                                                    json_array_get(y, k))))
                k++;
            same = k < n;
            if (same)
                used[k] = 1;
        }
    } else {
        same = x != NULL && y != NULL ? json_equal(x, y) : strcmp(a, b) == 0;
    }
    json_decref(x);
    json_decref(y);
    return same;
}

/* ROUNDS batches of `j` one after another, every other one with the map
 * reply held; each must succeed with `want` as its result and keep the
 * order. Stops early after 3 failed rounds (a hang costs 8 s). */
static void rounds(sj_srv_job j, const char *want, size_t n_tasks)
{
    int failed = 0;
    long long t_all = h_now(), worst = 0;

    for (int round = 0; round < ROUNDS && failed < 3; round++) {
        int64_t id = 0;
        long long t0 = h_now();
        int st, before = h_failures;
        char *res = NULL;

        hold_map(round % 2 ? HOLD_MS : 0);
        j.job_id = next_job_id++;
        CHECK_INT_EQ(sj_srv_trigger(srv, &j, &id), 0);
        st = sj_srv_wait_batch(srv, id, (int)H_MS(8000));
        hold_map(0);
        if (h_now() - t0 > worst)
            worst = h_now() - t0;
        CHECKF(st == SJ_SRV_SUCCESS, "%s round %d: status %d after %lld ms",
               j.executor_info, round, st, h_now() - t0);
        if (st == SJ_SRV_SUCCESS) {
            CHECK_INT_EQ(sj_srv_batch_result(srv, id, &res), 0);
            CHECKF(res != NULL && same_json(res, want),
                   "%s round %d: result %s", j.executor_info, round,
                   res ? res : "(null)");
            free(res);
        } else {
            /* A hung batch: every task SUCCESS but the batch RUNNING, which
             * the server's one-shot timeout cannot settle. Clear it. */
            sj_srv_stop_batch(srv, id);
            h_sleep_ms(100);
        }
        {
            tasks t = tasks_of(id);
            CHECKF(t.n == n_tasks, "%s round %d: %zu tasks", j.executor_info,
                   round, t.n);
            sj_srv_tasks_free(t.v, t.n);
        }
        check_order(id, j.executor_info, round);
        failed += h_failures != before;
    }
    printf("  %s: %d rounds, %lld ms per batch on average, worst %lld ms\n",
           j.executor_info, ROUNDS, (h_now() - t_all) / ROUNDS, worst);
}

/* ---- the races ----------------------------------------------------------- */

static void test_map_20_children(void)
{
    char want[512];
    size_t n = 0;

    n += (size_t)snprintf(want, sizeof want, "[");
    for (int i = 1; i <= 20; i++)
        n += (size_t)snprintf(want + n, sizeof want - n, "%s\"%d\"",
                              i > 1 ? "," : "", i);
    snprintf(want + n, sizeof want - n, "]");
    rounds(job(SJ_SRV_MAP, "mpFlat", "20"), want, 21);
}

static void test_map_reduce_20_children(void)
{
    sj_srv_job j = job(SJ_SRV_MAP_REDUCE, "mpReduce", NULL);
    j.shard_num = 2;
    /* 2 * (1 + ... + 20); root + 20 children + 2 reduce + merge */
    rounds(j, "420", 24);
}

static void test_nested_map(void)
{
    /* leaves 11..15, 21..25, 31..35, 41..45 */
    char want[512];
    size_t n = (size_t)snprintf(want, sizeof want, "[");
    for (int a = 1; a <= 4; a++)
        for (int b = 1; b <= 5; b++)
            n += (size_t)snprintf(want + n, sizeof want - n, "%s\"%d\"",
                                  a + b > 2 ? "," : "", a * 10 + b);
    snprintf(want + n, sizeof want - n, "]");
    rounds(job(SJ_SRV_MAP, "mpNested", NULL), want, 1 + 4 + 20);
}

/* ---- interrupted parents ------------------------------------------------- */

/* Trigger mpLateParent and wait until its 5 children ran here; returns the
 * batch (0 on failure). */
static int64_t late_parent(int executor_timeout, long long *t0)
{
    sj_srv_job j = job(SJ_SRV_MAP, "mpLateParent", NULL);
    int base = log_count("mp child "), done = 0;
    int64_t id = 0;
    long long until;

    j.executor_timeout = executor_timeout;
    *t0 = sj_mono_ms();
    CHECK_INT_EQ(sj_srv_trigger(srv, &j, &id), 0);
    until = h_now() + H_MS(3000);
    while (h_now() < until && (done = log_count("mp child ") - base) < 5)
        h_sleep_ms(5);
    CHECK_INT_EQ(done, 5);
    return id;
}

/*
 * The parent times out on the host after its children finished: their
 * reports were held until then and are delivered right after (decision in
 * the header comment); the parent itself is not reported (§7.2) and the
 * server's batch timeout stops the batch.
 */
static void test_parent_timeout_delivers_held(void)
{
    long long t0, until;
    int64_t id = late_parent(1, &t0), root = 0;
    arrivals a;
    tasks t;

    if (id == 0)
        return;
    t = tasks_of(id);
    for (size_t i = 0; i < t.n; i++)
        if (t.v[i].parent_id == 0)
            root = t.v[i].task_id;
    sj_srv_tasks_free(t.v, t.n);
    /* children done, parent still inside its deadline: nothing went out */
    arrivals_of(id, &a);
    if (sj_mono_ms() - t0 < 900)
        CHECKF(a.n == 0, "%zu results before the parent's deadline", a.n);
    until = h_now() + H_MS(4000);
    while (h_now() < until && (arrivals_of(id, &a), a.n < 5))
        h_sleep_ms(10);
    CHECK_INT_EQ(a.n, 5);
    for (size_t i = 0; i < a.n; i++) {
        CHECKF(a.id[i] != root, "the timed-out parent reported");
        /* held until the host's 1 s deadline of the parent */
        CHECKF(a.at[i] - t0 >= 990, "child result #%zu after only %lld ms", i,
               a.at[i] - t0);
    }
    CHECK_INT_EQ(sj_srv_wait_batch(srv, id, (int)H_MS(3000)), SJ_SRV_STOP);
    h_sleep_ms(100);
    arrivals_of(id, &a);
    CHECK_INT_EQ(a.n, 5);
    t = tasks_of(id);
    CHECK_INT_EQ(count_status(&t, "C", SJ_SRV_SUCCESS), 5);
    CHECK_INT_EQ(count_status(&t, "ROOT_MAP", SJ_SRV_STOP), 1);
    sj_srv_tasks_free(t.v, t.n);
    CHECK(log_count("executor timeout of 1 s exceeded") >= 1);
}

/* 1 if the host's journal has a result record for task `id` and (acked
 * = 1) an acknowledgement of it, or (acked = 0) none. */
static int journal_has(int64_t id, int acked)
{
    char path[700], needle[64];
    int pending, done = 0;

    h_journal_path(&host, NULL, path, sizeof path);
    snprintf(needle, sizeof needle, "\"taskId\":%" PRId64 ",", id);
    pending = h_journal_count(path, needle, &done);
    return acked ? done == 1 && pending == 0 : pending == 1;
}

static void child_ids(int64_t batch, int64_t *ids, size_t *n)
{
    tasks t = tasks_of(batch);
    *n = 0;
    for (size_t i = 0; i < t.n && *n < 8; i++)
        if (t.v[i].parent_id != 0)
            ids[(*n)++] = t.v[i].task_id;
    sj_srv_tasks_free(t.v, t.n);
}

/*
 * The server stops the batch while its children's reports are held: the
 * host drops them (§7.1) and marks them done in its journal, so no later
 * start resends them; the parent is interrupted and not reported.
 */
static void test_parent_stopped_drops_held(void)
{
    long long t0, until;
    int64_t id = late_parent(30, &t0), kids[8];
    size_t nk = 0;
    int dropped = 0;
    arrivals a;

    if (id == 0)
        return;
    child_ids(id, kids, &nk);
    CHECK_INT_EQ(nk, 5);
    h_sleep_ms(H_MS(200));
    arrivals_of(id, &a);
    CHECKF(a.n == 0, "%zu results while the parent runs", a.n);
    for (size_t i = 0; i < nk; i++)
        CHECKF(journal_has(kids[i], 0), "child %zu not journaled while held",
               i);

    CHECK_INT_EQ(sj_srv_stop_batch(srv, id), 0);
    until = h_now() + H_MS(3000);
    while (h_now() < until &&
           !(dropped = log_count("5 held result(s) dropped")))
        h_sleep_ms(10);
    CHECK_INT_EQ(dropped, 1);
    h_sleep_ms(H_MS(300));
    arrivals_of(id, &a);
    CHECKF(a.n == 0, "%zu results reported for a stopped batch", a.n);
    CHECK_INT_EQ(sj_srv_batch_status(srv, id), SJ_SRV_STOP);
    for (size_t i = 0; i < nk; i++)
        CHECKF(journal_has(kids[i], 1), "child %zu not acked in the journal",
               i);
}

/*
 * The host dies (kill -9) while the reports are held: they were journaled
 * at once, and the next start delivers them without holding.
 */
static void test_held_survive_kill(void)
{
    long long t0, until;
    int64_t id = late_parent(30, &t0), kids[8];
    size_t nk = 0;
    arrivals a;

    if (id == 0)
        return;
    child_ids(id, kids, &nk);
    CHECK_INT_EQ(nk, 5);
    arrivals_of(id, &a);
    CHECKF(a.n == 0, "%zu results while the parent runs", a.n);
    until = h_now() + H_MS(2000);
    for (size_t i = 0; i < nk; i++) {
        while (h_now() < until && !journal_has(kids[i], 0))
            h_sleep_ms(10);
        CHECKF(journal_has(kids[i], 0), "child %zu not journaled while held",
               i);
    }
    CHECK_INT_EQ(h_host_stop(&host, SIGKILL), 128 + SIGKILL);
    h_host_start(&host, sj_emu_port(emu), NULL);
    until = h_now() + H_MS(10000);
    while (h_now() < until && (arrivals_of(id, &a), a.n < nk))
        h_sleep_ms(20);
    CHECK_INT_EQ(a.n, nk);
    for (size_t i = 0; i < nk; i++)
        CHECKF(pos_of(&a, kids[i]) >= 0, "child %zu lost", i);
    CHECK(log_count("result(s) from an earlier run will be delivered") >= 1);
    sj_srv_stop_batch(srv, id); /* the dead parent never reports */
    CHECK_INT_EQ(wait_registered(), 0);
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
    RUN(test_map_20_children);
    RUN(test_map_reduce_20_children);
    RUN(test_nested_map);
    RUN(test_parent_timeout_delivers_held);
    RUN(test_parent_stopped_drops_held);
    RUN(test_held_survive_kill);
    world_down();
    if (h_failures) {
        fprintf(stderr, "e2e_mapparent: %d check(s) failed\n", h_failures);
        return 1;
    }
    printf("e2e_mapparent: all checks passed\n");
    return 0;
}
