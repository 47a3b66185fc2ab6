/*
 * End-to-end: record and replay, and `run` with 100,000 log lines.
 *
 * The real binary runs as a host against the emulator over gRPC with
 * SNAIL_RECORD_DIR set: every dispatch it receives is saved, the token
 * masked; `snailjob-lua replay FILE` then reruns a recorded REDUCE and a
 * recorded map task locally and gives what the production run gave. `run`
 * of a job writing 100,000 log lines prints every one of them, says none
 * was dropped, and its peak RSS is printed.
 */
#include <dirent.h>
#include <jansson.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_harness.h"
#include "sj_log.h"

#define TOKEN "SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj" /* the emulator's */

static const char EXECUTORS[] =
    "local sj = require 'snailjob'\n"
    "local mr = sj.map_reduce('wc')\n"
    "mr:map(function(args)\n"
    "  return sj.mr_do_map({ 'a b', 'c d e', 'f' }, 'LINE')\n"
    "end)\n"
    "mr:map('LINE', function(args)\n"
    "  local n = 0\n"
    "  for _ in args.map_result:gmatch('%S+') do n = n + 1 end\n"
    "  sj.log.info('%d words', n)\n"
    "  return sj.success(n)\n"
    "end)\n"
    "mr:reduce(function(args)\n"
    "  local s = 0\n"
    "  for _, x in ipairs(args.map_result) do s = s + tonumber(x) end\n"
    "  return sj.success({ words = s, params = args.job_params,\n"
    "                      ctx = args:get_wf_context('k') })\n"
    "end)\n"
    "sj.job('many', function(args)\n"
    "  local n = tonumber(args.job_params)\n"
    "  for i = 1, n do sj.log.info('line %d of %d', i, n) end\n"
    "  return sj.success(n)\n"
    "end)\n";

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The first recorded file in `rec` whose text contains `needle`
 * (malloc'd path) or NULL; *count gets the number of records. */
static char *find_record(const char *rec, const char *needle, size_t *count)
{
    DIR *d = opendir(rec);
    struct dirent *e;
    char *found = NULL, path[600];

    *count = 0;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char *text;
        if (strncmp(e->d_name, "dispatch-", 9) != 0 ||
            strstr(e->d_name, ".json") == NULL ||
            strstr(e->d_name, ".tmp") != NULL)
            continue;
        (*count)++;
        snprintf(path, sizeof path, "%s/%s", rec, e->d_name);
        text = h_read_file(path);
        if (found == NULL && strstr(text, needle) != NULL)
            found = strdup(path);
        free(text);
    }
    if (d != NULL)
        closedir(d);
    return found;
}

static void test_record_replay(void)
{
    sj_emu *emu = NULL;
    sj_emu_config ec = {.srv = {.complete_on_nonleaf = 1}};
    h_host h;
    char path[300], rec[300], *text, *reduce, *leaf;
    int port = 0;
    size_t count = 0;

    h_host_dir(&h);
    snprintf(path, sizeof path, "%s/executors", h.dir);
    h_write_file(path, "e.lua", EXECUTORS);
    snprintf(rec, sizeof rec, "%s/records", h.dir);
    CHECK(sj_emu_open(&ec, "127.0.0.1:0", &emu, &port) == 0);
    h_host_start(&h, port, "SNAIL_RECORD_DIR=records", NULL);

    sj_srv *s = sj_emu_srv(emu);
    for (long long until = h_now() + H_MS(10000);
         h_now() < until &&
         sj_srv_request_count(s, "/register/job/executors") == 0;)
        h_sleep_ms(20);
    h_sleep_ms(H_MS(200));
    sj_srv_job j = {.job_id = 9,
                    .task_type = SJ_SRV_MAP_REDUCE,
                    .executor_info = "wc",
                    .args = "P1",
                    .shard_num = 1,
                    .executor_timeout = 30,
                    .workflow_task_batch_id = 77,
                    .workflow_node_id = 5,
                    .wf_context = "{\"k\":\"from-prod\"}"};
    int64_t id = 0;
    char *result = NULL;
    CHECK(sj_srv_trigger(s, &j, &id) == 0);
    CHECKF(sj_srv_wait_batch(s, id, (int)H_MS(20000)) == SJ_SRV_SUCCESS,
           "the production batch succeeds");
    CHECK(sj_srv_batch_result(s, id, &result) == 0);
    CHECKF(result != NULL && strstr(result, "\"words\":6") != NULL,
           "production result %s", result ? result : "(null)");

    /* ROOT_MAP, three LINE tasks, one REDUCE: five dispatches, five files */
    reduce = find_record(rec, "REDUCE_TASK", &count);
    leaf = find_record(rec, "c d e", &count);
    CHECKF(count == 5, "%zu records, want 5", count);
    CHECK(reduce != NULL && leaf != NULL);
    if (reduce != NULL) {
        text = h_read_file(reduce);
        CHECKF(strstr(text, TOKEN) == NULL, "the token is masked");
        CHECK(strstr(text, "\"SJ-TOKEN\": \"***\"") != NULL);
        CHECK(strstr(text, "\"format\": \"snailjob-lua dispatch 1\"") != NULL);
        free(text);
    }
    CHECK(h_host_stop(&h, SIGTERM) == 0);

    /* Replay both on the laptop: same input, same answer. */
    if (reduce != NULL) {
        const char *args[] = {"replay", reduce, "--json", NULL};
        h_cmd c;
        json_t *o;
        h_run_cmd(h.dir, args, NULL, H_MS(30000), 0, &c);
        o = json_loads(c.out, 0, NULL);
        CHECKF(c.code == 0, "replay exit %d: %s", c.code, c.err);
        CHECKF(jstr(o, "status") && strcmp(jstr(o, "status"), "SUCCESS") == 0,
               "replay status %s", jstr(o, "status"));
        CHECKF(jstr(o, "result") && result &&
                   strcmp(jstr(o, "result"), result) == 0,
               "replay result %s, production %s", jstr(o, "result"),
               result ? result : "(null)");
        json_decref(o);
        h_cmd_free(&c);
    }
    if (leaf != NULL) {
        const char *args[] = {"replay", leaf, NULL};
        h_cmd c;
        h_run_cmd(h.dir, args, NULL, H_MS(30000), 0, &c);
        CHECKF(c.code == 0, "replay exit %d: %s", c.code, c.err);
        CHECKF(strstr(c.out, "result    3") != NULL &&
                   strstr(c.out, "LINE") != NULL &&
                   strstr(c.out, "3 words") != NULL,
               "the map task replays with its element: %s", c.out);
        h_cmd_free(&c);
    }
    {
        const char *args[] = {"replay", "no-such-file.json", NULL};
        h_cmd c;
        h_run_cmd(h.dir, args, NULL, H_MS(30000), 0, &c);
        CHECK(c.code == 2);
        CHECKF(strstr(c.err, "no-such-file.json") != NULL,
               "the error names the file: %s", c.err);
        h_cmd_free(&c);
    }
    free(reduce);
    free(leaf);
    free(result);
    sj_emu_destroy(emu);
    h_host_cleanup(&h);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static void test_run_many_lines(void)
{
    /* Sanitizers slow Lua and the host 5-20x (TSan): fewer lines keep the
     * suite in its time; the plain build runs all 100,000. */
    const char *lines = SANITIZED ? "5000" : "100000";
    const char *args[] = {"run", "many", "--params", lines, "--json", NULL};
    const char *text[] = {"run", "many", "--params", lines, NULL};
    long want = atol(lines);
    h_host h;
    h_cmd c;
    char path[300];
    json_t *o, *logs;

    if (SANITIZED)
        printf("  (sanitizer build: %s lines, no RSS bound)\n", lines);
    h_host_dir(&h);
    snprintf(path, sizeof path, "%s/executors", h.dir);
    h_write_file(path, "e.lua", EXECUTORS);
    h_run_cmd(h.dir, args, NULL, H_MS(60000), 0, &c);
    CHECKF(c.code == 0, "run exit %d: %s", c.code, c.err);
    o = json_loads(c.out, 0, NULL);
    logs = json_object_get(o, "logs");
    CHECKF((long)json_array_size(logs) == want, "%zu log lines of %ld",
           json_array_size(logs), want);
    CHECK(json_integer_value(json_object_get(o, "logs_dropped")) == 0);
    CHECK(json_is_integer(json_object_get(o, "logs_dropped")));
    if (json_array_size(logs) > 0) {
        char last[64];
        snprintf(last, sizeof last, "line %ld of %ld", want, want);
        const char *m =
            jstr(json_array_get(logs, json_array_size(logs) - 1), "message");
        CHECKF(m != NULL && strcmp(m, last) == 0, "last line '%s'",
               m ? m : "(null)");
    }
    CHECKF(strstr(c.err, "could not be delivered") == NULL, "stderr: %s",
           c.err);
    printf("  run --json, %s log lines: %.1f s, peak RSS %ld KB\n", lines,
           (double)c.ms / 1000.0, c.max_rss_kb);
    if (!SANITIZED)
        CHECKF(c.max_rss_kb < 150 * 1024, "peak RSS %ld KB", c.max_rss_kb);
    json_decref(o);
    h_cmd_free(&c);

    h_run_cmd(h.dir, text, NULL, H_MS(60000), 0, &c);
    CHECK(c.code == 0);
    {
        char last[64];
        snprintf(last, sizeof last, "line %ld of %ld\n", want, want);
        CHECK(strstr(c.out, last) != NULL);
        snprintf(last, sizeof last, "logs (%ld lines)", want);
        CHECKF(strstr(c.out, last) != NULL, "the text report counts them");
    }
    printf("  run (text), %s log lines: %.1f s, peak RSS %ld KB\n", lines,
           (double)c.ms / 1000.0, c.max_rss_kb);
    h_cmd_free(&c);
    h_host_cleanup(&h);
}

int main(void)
{
    if (getenv("SJ_BINARY") == NULL) {
        fprintf(stderr, "SJ_BINARY is not set\n");
        return 1;
    }
    sj_log_set_level(SJ_LOG_ERROR);
    RUN(test_record_replay);
    RUN(test_run_many_lines);
    return h_failures ? 1 : 0;
}
