/*
 * End to end, the built-in executors (issue 9): the real snailjob-lua
 * binary against the in-process emulator over gRPC, dispatched with the
 * exact jobParams JSON the console writes (shared/builtins.md §1), one
 * case per applicable line of builtins.md §6 and one per fixed bug.
 *
 * Host A enables every built-in; host B only "http", with http_allow =
 * "localhost", for the "not enabled" message and the host allow-list.
 * The HTTP executor talks to this test's own server (sj_httpd.h), whose
 * /echo route returns the request it got, so the task's result shows what
 * was sent.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_harness.h"
#include "sj_httpd.h"
#include "sj_log.h"
#include "sj_pgroup.h"
#include "sj_srv.h"

enum { JOB_ID = 77 }; /* the job id of every job this suite triggers */
static sj_emu *emu;
static sj_srv *srv;
static int emu_port;
static h_host host_a, host_b;
static char target_a[64], target_b[64];
static char base[64]; /* http://127.0.0.1:PORT */

/* ---- helpers --------------------------------------------------------------
 */

typedef struct outcome {
    int status;
    int64_t batch, task_id;
    char *result;
    char *message;
} outcome;

static void outcome_free(outcome *o)
{
    free(o->result);
    free(o->message);
    memset(o, 0, sizeof *o);
}

static outcome run_job(const sj_srv_job *j)
{
    outcome o;
    memset(&o, 0, sizeof o);
    int rc = sj_srv_trigger(srv, j, &o.batch);
    CHECKF(rc == 0, "trigger %s: %d", j->executor_info, rc);
    o.status = sj_srv_wait_batch(srv, o.batch, (int)H_MS(10000));
    sj_srv_task_info *v = NULL;
    size_t n = 0;
    if (sj_srv_batch_tasks(srv, o.batch, &v, &n) == 0 && n == 1) {
        o.task_id = v[0].task_id;
        o.result = v[0].result ? strdup(v[0].result) : NULL;
        o.message = v[0].message ? strdup(v[0].message) : NULL;
    }
    sj_srv_tasks_free(v, n);
    return o;
}

/* Run `executor` on A with `params`; check the status and that the result
 * (or, for a failure, result or message) contains each needle. */
static outcome expect(const char *target, const char *executor,
                      const char *params, int status, const char *const *has)
{
    sj_srv_job j = h_job_on(JOB_ID, target, executor, params);
    outcome o = run_job(&j);
    CHECKF(o.status == status, "%s %s: status %d, want %d (message %s)",
           executor, params, o.status, status, o.message ? o.message : "");
    for (; has != NULL && *has != NULL; has++) {
        int in_result = o.result != NULL && strstr(o.result, *has) != NULL;
        int in_message = o.message != NULL && strstr(o.message, *has) != NULL;
        CHECKF(in_result || in_message,
               "%s %s: '%s' not in result %s / message %s", executor, params,
               *has, o.result ? o.result : "(null)",
               o.message ? o.message : "(null)");
    }
    return o;
}

#define HAS(...) ((const char *const[]){__VA_ARGS__, NULL})

static const char *field_of(const json_t *rec, const char *name)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(rec, "fieldList"), i, f)
    {
        const char *n = json_string_value(json_object_get(f, "name"));
        if (n != NULL && strcmp(n, name) == 0)
            return json_string_value(json_object_get(f, "value"));
    }
    return NULL;
}

/* Wait for a remote log record of task_id containing needle; returns its
 * level ("INFO", ...) in a static buffer or NULL. */
static const char *wait_log(int64_t task_id, const char *needle,
                            long long timeout_ms)
{
    static char level[16];
    long long until = h_now() + timeout_ms;
    do {
        size_t n = sj_srv_log_count(srv);
        for (size_t i = 0; i < n; i++) {
            char *text = NULL;
            if (sj_srv_log_get(srv, i, &text) != 0)
                continue;
            json_t *rec = json_loads(text, 0, NULL);
            free(text);
            json_t *id = json_object_get(rec, "taskId");
            const char *msg = field_of(rec, "message");
            const char *lv = field_of(rec, "level");
            int hit = json_is_integer(id) &&
                      json_integer_value(id) == task_id && msg != NULL &&
                      strstr(msg, needle) != NULL;
            if (hit)
                snprintf(level, sizeof level, "%s", lv ? lv : "?");
            json_decref(rec);
            if (hit)
                return level;
        }
        h_sleep_ms(10);
    } while (h_now() < until);
    return NULL;
}

static char *http_params(const char *method, const char *url,
                         const char *headers, const char *body,
                         const char *media, const char *timeout)
{
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"method\":\"%s\",\"url\":\"%s\",\"headers\":%s,\"body\":%s,"
             "\"mediaType\":%s,\"timeout\":%s}",
             method, url, headers, body, media, timeout);
    return buf;
}

static char *script_params(const char *method, const char *script)
{
    static char buf[4096];
    json_t *o = json_pack("{s:s,s:s,s:s}", "method", method, "scriptParams",
                          script, "charset", "");
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    snprintf(buf, sizeof buf, "%s", s);
    free(s);
    json_decref(o);
    return buf;
}

/* ---- HTTP ------------------------------------------------------------------
 */

static void test_http_console_default(void)
{
    char url[128];
    snprintf(url, sizeof url, "%s/echo", base);
    /* the console's default object with only the URL filled in */
    outcome o = expect(
        target_a, "snailJobHttpExecutor",
        http_params("POST", url, "{}", "\"\"", "\"application/json\"", "60"),
        SJ_SRV_SUCCESS,
        HAS("POST /echo HTTP/1.1", "Content-Type: application/json",
            "\r\n\r\n{}"));
    CHECK(wait_log(o.task_id, "Using default request body: {}", H_MS(2000)));
    CHECK(wait_log(o.task_id, "Request timeout: 60 seconds", H_MS(2000)));
    outcome_free(&o);
}

static void test_http_methods(void)
{
    char url[128];
    snprintf(url, sizeof url, "%s/echo", base);
    /* console selects write lower case */
    outcome o = expect(target_a, "snailJobHttpExecutor",
                       http_params("get", url, "{\"X-A\":\"1\"}", "\"\"",
                                   "\"application/json\"", "60"),
                       SJ_SRV_SUCCESS, HAS("GET /echo HTTP/1.1", "X-A: 1"));
    CHECKF(o.result && !strstr(o.result, "Content-Length"),
           "GET sent a body: %s", o.result);
    outcome_free(&o);
    o = expect(target_a, "snailJobHttpExecutor",
               http_params("put", url, "{}", "\"{\\\"a\\\":1}\"", "\"\"", "5"),
               SJ_SRV_SUCCESS,
               HAS("PUT /echo", "Content-Type: application/json",
                   "\r\n\r\n{\"a\":1}"));
    outcome_free(&o);
    o = expect(target_a, "snailJobHttpExecutor",
               http_params("delete", url, "{}", "\"\"", "\"text/plain\"", "5"),
               SJ_SRV_SUCCESS,
               HAS("DELETE /echo", "Content-Type: text/plain", "\r\n\r\n{}"));
    outcome_free(&o);
    /* PATCH (and any other verb) is sent as GET, without a body */
    o = expect(target_a, "snailJobHttpExecutor",
               http_params("patch", url, "{}", "\"x\"", "\"\"", "5"),
               SJ_SRV_SUCCESS, HAS("GET /echo HTTP/1.1"));
    outcome_free(&o);
    /* a missing method is GET (Java: NullPointerException) */
    char p[256];
    snprintf(p, sizeof p, "{\"url\":\"%s\"}", url);
    o = expect(target_a, "snailJobHttpExecutor", p, SJ_SRV_SUCCESS,
               HAS("GET /echo HTTP/1.1"));
    outcome_free(&o);
}

static void test_http_url_and_timeout(void)
{
    char url[128];
    /* no scheme: http:// is added; timeout null is 60 s */
    snprintf(url, sizeof url, "127.0.0.1:%d/hello", httpd_port);
    outcome o = expect(target_a, "snailJobHttpExecutor",
                       http_params("get", url, "{}", "\"\"", "\"\"", "null"),
                       SJ_SRV_SUCCESS, HAS("hello"));
    CHECK(wait_log(o.task_id, "Request timeout: 60 seconds", H_MS(2000)));
    outcome_free(&o);
    /* a redirect is followed */
    snprintf(url, sizeof url, "%s/redirect", base);
    o = expect(target_a, "snailJobHttpExecutor",
               http_params("get", url, "{}", "\"\"", "\"\"", "5"),
               SJ_SRV_SUCCESS, HAS("hello"));
    outcome_free(&o);
    /* the timeout field is seconds: 1 s against a trickling body */
    snprintf(url, sizeof url, "%s/slow", base);
    long long t0 = h_now();
    o = expect(target_a, "snailJobHttpExecutor",
               http_params("get", url, "{}", "\"\"", "\"\"", "1"), SJ_SRV_FAIL,
               HAS("[snail-job] HTTP internal executor failed"));
    /* >= 950: curl's clock and ours start a few ms apart (999 seen) */
    CHECKF(h_now() - t0 >= 950 && h_now() - t0 < H_MS(4000),
           "timeout 1 took %lld ms", h_now() - t0);
    outcome_free(&o);
}

/* A stop from the console ends an HTTP job waiting on a slow server. */
static void test_http_stop(void)
{
    char url[128];
    snprintf(url, sizeof url, "%s/slow", base);
    sj_srv_job j =
        h_job_on(JOB_ID, target_a, "snailJobHttpExecutor",
                 http_params("get", url, "{}", "\"\"", "\"\"", "60"));
    int64_t batch = 0, task_id = 0;
    CHECK(sj_srv_trigger(srv, &j, &batch) == 0);
    sj_srv_task_info *v = NULL;
    size_t n = 0;
    if (sj_srv_batch_tasks(srv, batch, &v, &n) == 0 && n == 1)
        task_id = v[0].task_id;
    sj_srv_tasks_free(v, n);
    CHECK(wait_log(task_id, "Request URL", H_MS(3000)) != NULL);
    h_sleep_ms(200);
    long long t0 = h_now();
    CHECK(sj_srv_stop_batch(srv, batch) == 0);
    CHECK(wait_log(task_id, "interrupted: stopped by the server", H_MS(3000)));
    long long took = h_now() - t0;
    CHECKF(took < H_MS(500), "interrupted %lld ms after the stop", took);
    printf("    HTTP job stopped: interrupted line %lld ms after the stop\n",
           took);
}

static void test_http_status_and_errors(void)
{
    char url[128];
    snprintf(url, sizeof url, "%s/missing", base);
    outcome o = expect(target_a, "snailJobHttpExecutor",
                       http_params("get", url, "{}", "\"\"", "\"\"", "5"),
                       SJ_SRV_FAIL, HAS("HTTP request failed"));
    CHECK(wait_log(o.task_id, "failed with code: 404", H_MS(2000)));
    outcome_free(&o);
    snprintf(url, sizeof url, "%s/created", base);
    o = expect(target_a, "snailJobHttpExecutor",
               http_params("post", url, "{}", "\"x\"", "\"\"", "5"),
               SJ_SRV_FAIL, HAS("HTTP request failed"));
    outcome_free(&o);
    /* connection refused */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", h_free_port());
    o = expect(target_a, "snailJobHttpExecutor",
               http_params("get", url, "{}", "\"\"", "\"\"", "5"), SJ_SRV_FAIL,
               HAS("[snail-job] HTTP internal executor failed"));
    CHECK(wait_log(o.task_id, "Couldn't connect", H_MS(2000)));
    outcome_free(&o);
    o = expect(
        target_a, "snailJobHttpExecutor",
        http_params("POST", "", "{}", "\"\"", "\"application/json\"", "60"),
        SJ_SRV_FAIL, HAS("URL cannot be empty."));
    outcome_free(&o);
    o = expect(target_a, "snailJobHttpExecutor", "null", SJ_SRV_FAIL,
               HAS("HttpParams is null."));
    outcome_free(&o);
}

static void test_http_wf_context(void)
{
    char url[128];
    snprintf(url, sizeof url, "%s/echo", base);
    sj_srv_job j = h_job_on(JOB_ID, target_a, "snailJobHttpExecutor",
                            http_params("get", url, "{}", "\"\"", "\"\"", "5"));
    j.workflow_task_batch_id = 9001;
    j.workflow_node_id = 5;
    j.wf_context =
        "{\"k\":\"v\",\"o\":{\"a\":1},\"c\":\"\xe4\xb8\xad\xe6\x96\x87\"}";
    outcome o = run_job(&j);
    CHECKF(o.status == SJ_SRV_SUCCESS, "wf: status %d (%s)", o.status,
           o.message ? o.message : "");
    const char *res = o.result ? o.result : "";
    CHECKF(strstr(res, "\r\nk: v\r\n"), "k: %s", res);
    CHECKF(strstr(res, "\r\no: {\"a\":1}\r\n"), "o: %s", res);
    /* "中文" as Base64 of its UTF-8 bytes */
    CHECKF(strstr(res, "\r\nc: 5Lit5paH\r\n"), "c: %s", res);
    outcome_free(&o);
}

static void test_http_allow(void)
{
    char url[128];
    snprintf(url, sizeof url, "%s/hello", base);
    outcome o = expect(target_b, "snailJobHttpExecutor",
                       http_params("get", url, "{}", "\"\"", "\"\"", "5"),
                       SJ_SRV_FAIL, HAS("not allowed by http_allow"));
    outcome_free(&o);
    snprintf(url, sizeof url, "http://localhost:%d/hello", httpd_port);
    o = expect(target_b, "snailJobHttpExecutor",
               http_params("get", url, "{}", "\"\"", "\"\"", "5"),
               SJ_SRV_SUCCESS, HAS("hello"));
    outcome_free(&o);
}

/* ---- scripts ---------------------------------------------------------------
 */

static char work[300]; /* a directory of this test for script side effects */

static void test_shell_script_code(void)
{
    char code[1024];
    snprintf(
        code, sizeof code,
        "echo hello from \"shell\"\necho \"oo\"ps >&2\necho ran >> %s/count\n"
        "echo \"$0\" > %s/path\nstat -c %%a \"$(dirname \"$0\")\" \"$0\" "
        "> %s/mode\n",
        work, work, work);
    outcome o = expect(target_a, "snailJobShellJobExecutor",
                       script_params("SCRIPT_CODE", code), SJ_SRV_SUCCESS,
                       HAS("Script executed successfully."));
    const char *lv = wait_log(o.task_id, "hello from shell", H_MS(2000));
    CHECKF(lv != NULL && strcmp(lv, "INFO") == 0, "stdout level");
    lv = wait_log(o.task_id, "oops", H_MS(2000));
    CHECKF(lv != NULL && strcmp(lv, "WARN") == 0, "stderr level");
    outcome_free(&o);

    char p[400];
    snprintf(p, sizeof p, "%s/count", work);
    char *count = h_read_file(p);
    CHECKF(strcmp(count, "ran\n") == 0, "the script ran %s times (want once)",
           count);
    free(count);
    snprintf(p, sizeof p, "%s/path", work);
    char *path = h_read_file(p);
    path[strcspn(path, "\n")] = '\0';
    CHECKF(strstr(path, "/snailjob-script.") && strstr(path, "/shell_77.sh"),
           "script path %s", path);
    struct stat st;
    CHECKF(path[0] && stat(path, &st) != 0, "%s still exists after the run",
           path);
    char *slash = strrchr(path, '/');
    if (slash != NULL) {
        *slash = '\0';
        CHECKF(stat(path, &st) != 0, "workspace %s still exists", path);
    }
    free(path);
    snprintf(p, sizeof p, "%s/mode", work);
    char *mode = h_read_file(p);
    CHECKF(strcmp(mode, "700\n755\n") == 0, "workspace and file modes %s",
           mode);
    free(mode);
}

static void test_shell_results(void)
{
    /* the console's default object: LOCAL_SCRIPT with an empty path */
    outcome d = expect(target_a, "snailJobShellJobExecutor",
                       "{\"method\":\"LOCAL_SCRIPT\",\"scriptParams\":\"\","
                       "\"charset\":\"\"}",
                       SJ_SRV_FAIL, HAS("File not found: {}"));
    outcome_free(&d);
    outcome o = expect(target_a, "snailJobShellJobExecutor",
                       script_params("SCRIPT_CODE", "echo bad; exit 3"),
                       SJ_SRV_FAIL, HAS("Script execution failed."));
    CHECK(wait_log(o.task_id, "exit code 3", H_MS(2000)));
    outcome_free(&o);

    char local[400];
    snprintf(local, sizeof local, "%s/local.sh", work);
    h_write_file(work, "local.sh", "echo local script ran\n");
    o = expect(target_a, "snailJobShellJobExecutor",
               script_params("LOCAL_SCRIPT", local), SJ_SRV_SUCCESS,
               HAS("Script executed successfully."));
    CHECK(wait_log(o.task_id, "local script ran", H_MS(2000)));
    outcome_free(&o);
    o = expect(target_a, "snailJobShellJobExecutor",
               script_params("LOCAL_SCRIPT", "/no/such/script.sh"), SJ_SRV_FAIL,
               HAS("File not found: {/no/such/script.sh}"));
    outcome_free(&o);

    char url[128];
    snprintf(url, sizeof url, "%s/script", base);
    o = expect(target_a, "snailJobShellJobExecutor",
               script_params("DOWNLOAD", url), SJ_SRV_SUCCESS,
               HAS("Script executed successfully."));
    CHECK(wait_log(o.task_id, "downloaded script ran", H_MS(2000)));
    outcome_free(&o);
    snprintf(url, sizeof url, "%s/missing", base);
    o = expect(target_a, "snailJobShellJobExecutor",
               script_params("DOWNLOAD", url), SJ_SRV_FAIL,
               HAS("[snail-job] Script download failed"));
    outcome_free(&o);

    o = expect(target_a, "snailJobShellJobExecutor",
               script_params("RUN_IT", "echo x"), SJ_SRV_FAIL,
               HAS("[snail-job] Please correctly choose the script execution "
                   "method."));
    outcome_free(&o);
    o = expect(target_a, "snailJobShellJobExecutor",
               "{\"scriptParams\":\"echo x\",\"charset\":\"\"}", SJ_SRV_FAIL,
               HAS("Please correctly choose the script execution method."));
    outcome_free(&o);
    o = expect(target_a, "snailJobShellJobExecutor", "null", SJ_SRV_FAIL,
               HAS("ScriptParams is null."));
    outcome_free(&o);
}

/* A line reaches the server's log while the script still runs; a stop
 * ends the whole process tree at once. */
static void test_shell_stream_and_stop(void)
{
    sj_srv_job j =
        h_job_on(JOB_ID, target_a, "snailJobShellJobExecutor",
                 script_params("SCRIPT_CODE",
                               "echo pgid $$ $0\nsleep 1000 &\nsleep 1000\n"
                               "wait\n"));
    int64_t batch = 0;
    CHECK(sj_srv_trigger(srv, &j, &batch) == 0);
    int64_t task_id = 0;
    /* the batch's task may be created after the trigger returns */
    for (long long until = h_now() + H_MS(3000);
         task_id == 0 && h_now() < until; h_sleep_ms(5)) {
        sj_srv_task_info *v = NULL;
        size_t n = 0;
        if (sj_srv_batch_tasks(srv, batch, &v, &n) == 0 && n == 1)
            task_id = v[0].task_id;
        sj_srv_tasks_free(v, n);
    }
    CHECKF(task_id != 0, "batch %lld has no task", (long long)batch);
    /* read the pgid from the script's line (the record of the params,
     * which also holds "pgid ", comes first: wait for the line itself) */
    long pgid = 0;
    char script[256] = "";
    for (long long until = h_now() + H_MS(3000); pgid == 0 && h_now() < until;
         h_sleep_ms(5)) {
        for (size_t i = 0; i < sj_srv_log_count(srv) && pgid == 0; i++) {
            char *text = NULL;
            if (sj_srv_log_get(srv, i, &text) != 0)
                continue;
            json_t *rec = json_loads(text, 0, NULL);
            free(text);
            const char *msg = field_of(rec, "message");
            if (msg && strncmp(msg, "pgid ", 5) == 0 &&
                json_integer_value(json_object_get(rec, "taskId")) == task_id)
                sscanf(msg, "pgid %ld %255s", &pgid, script);
            json_decref(rec);
        }
    }
    CHECKF(pgid > 0, "no \"pgid\" line from the script of task %lld",
           (long long)task_id);
    CHECKF(sj_srv_batch_status(srv, batch) == SJ_SRV_RUNNING,
           "the line came only after the end (status %d)",
           sj_srv_batch_status(srv, batch));
    CHECKF(pgid > 0 && sj_group_members(pgid) >= 2,
           "group %ld has %d processes before the stop", pgid,
           sj_group_members(pgid));
    long long t0 = h_now();
    CHECK(sj_srv_stop_batch(srv, batch) == 0);
    CHECK(wait_log(task_id, "interrupted: stopped by the server", H_MS(3000)));
    long long took = h_now() - t0;
    int left = sj_group_members(pgid);
    CHECKF(left == 0, "%d processes of group %ld left after the stop", left,
           pgid);
    printf("    stop: interrupted and group %ld gone within %lld ms\n", pgid,
           took);
    /* the workspace is removed after the stop too (when the interrupted
     * state is closed, at the latest) */
    struct stat st;
    long long until = h_now() + H_MS(1000);
    while (script[0] == '/' && stat(script, &st) == 0 && h_now() < until)
        h_sleep_ms(10);
    CHECKF(script[0] == '/' && stat(script, &st) != 0,
           "script '%s' still there after the stop", script);
}

static void test_shell_timeout(void)
{
    sj_srv_job j = h_job_on(JOB_ID, target_a, "snailJobShellJobExecutor",
                            script_params("SCRIPT_CODE", "echo pgid $$\n"
                                                         "sleep 1000\n"));
    j.executor_timeout = 1;
    outcome o = run_job(&j);
    CHECKF(o.status != SJ_SRV_SUCCESS && o.status != SJ_ETIMEOUT,
           "timeout: status %d", o.status);
    CHECK(wait_log(o.task_id, "interrupted: executor timeout", H_MS(4000)));
    outcome_free(&o);
}

static void test_cmd_powershell(void)
{
    outcome o = expect(target_a, "snailJobCMDJobExecutor",
                       script_params("SCRIPT_CODE", "echo hi"), SJ_SRV_FAIL,
                       HAS("cmd.exe", "Windows"));
    outcome_free(&o);
    if (system("command -v pwsh >/dev/null 2>&1") == 0) {
        printf("    SKIPPED the 'pwsh missing' case: pwsh is installed\n");
        o = expect(target_a, "snailJobPowerShellJobExecutor",
                   script_params("SCRIPT_CODE", "Write-Output 'ps ran'"),
                   SJ_SRV_SUCCESS, HAS("Script executed successfully."));
        outcome_free(&o);
        return;
    }
    o = expect(target_a, "snailJobPowerShellJobExecutor",
               script_params("SCRIPT_CODE", "Write-Output 'ps ran'"),
               SJ_SRV_FAIL, HAS("'pwsh' was not found on PATH"));
    outcome_free(&o);
}

/* `check` says which built-ins are on and lists them as executors. */
static void test_check(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && SNAIL_BUILTINS=http,shell SNAIL_EXECUTORS=executors "
             "SNAIL_SERVER_PORT=%d '%s' check 2>&1",
             host_a.dir, h_free_port(), getenv("SJ_BINARY"));
    FILE *p = popen(cmd, "r");
    char out[8192];
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    if (p != NULL)
        pclose(p);
    CHECKF(strstr(out, "builtins: http (snailJobHttpExecutor), shell "
                       "(snailJobShellJobExecutor)"),
           "check: %s", out);
    CHECKF(strstr(out, "snailJobShellJobExecutor") &&
               !strstr(out, "snailJobCMDJobExecutor"),
           "check: %s", out);
}

static void test_not_enabled(void)
{
    outcome o = expect(target_b, "snailJobShellJobExecutor",
                       script_params("SCRIPT_CODE", "echo hi"), SJ_SRV_FAIL,
                       HAS("not enabled", "SNAIL_BUILTINS=shell"));
    outcome_free(&o);
    CHECK(h_log_has(&host_a, "built-in script executors are enabled"));
    /* as the Java client, the built-ins are not registered */
    CHECK(sj_srv_has_executor(srv, "ownJob"));
    CHECK(!sj_srv_has_executor(srv, "snailJobHttpExecutor"));
    CHECK(!sj_srv_has_executor(srv, "snailJobShellJobExecutor"));
    CHECK(!h_log_has(&host_b, "built-in script executors are enabled"));
}

/* ---- main ------------------------------------------------------------------
 */

static int wait_node(h_host *h)
{
    long long until = h_now() + H_MS(10000);
    while (h_now() < until && h_host_alive(h)) {
        sj_srv_node_info *v = NULL;
        size_t n = 0;
        int found = 0;
        if (sj_srv_nodes(srv, &v, &n) == 0)
            for (size_t i = 0; i < n; i++)
                found |= v[i].port == h->port && v[i].alive;
        sj_srv_nodes_free(v, n);
        if (found && h_log_has(h, "listening on port"))
            return 1;
        h_sleep_ms(20);
    }
    return 0;
}

int main(void)
{
    sj_emu_config cfg;
    long long t0 = h_now();

    if (getenv("SJ_BINARY") == NULL) {
        fprintf(stderr, "test_e2e_builtins: SJ_BINARY is not set\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sj_log_set_level(SJ_LOG_ERROR);
    memset(&cfg, 0, sizeof cfg);
    cfg.srv.beat_apply_ms = 0;
    if (sj_emu_open(&cfg, "127.0.0.1:0", &emu, &emu_port) != 0) {
        fprintf(stderr, "test_e2e_builtins: cannot start the emulator\n");
        return 1;
    }
    srv = sj_emu_srv(emu);
    httpd_start();
    snprintf(base, sizeof base, "http://127.0.0.1:%d", httpd_port);

    h_host_dir(&host_a);
    h_host_dir(&host_b);
    snprintf(work, sizeof work, "%s/work", host_a.dir);
    mkdir(work, 0700);
    /* one executor of its own (registration), the rest built in */
    h_write_file(host_a.dir, "executors/own.lua",
                 "local sj = require 'snailjob'\n"
                 "sj.job('ownJob', function() end)\n");
    h_write_file(host_b.dir, "executors/none.lua", "-- nothing\n");
    h_host_start(&host_a, emu_port, "SNAIL_BUILTINS=all",
                 "SNAIL_BEAT_INTERVAL=1", "SNAIL_LOG_REMOTE_INTERVAL=0.02",
                 "no_proxy=*", "NO_PROXY=*", NULL);
    h_host_start(&host_b, emu_port, "SNAIL_BUILTINS=http",
                 "SNAIL_HTTP_ALLOW=localhost", "SNAIL_BEAT_INTERVAL=1",
                 "SNAIL_LOG_REMOTE_INTERVAL=0.02", "no_proxy=*", "NO_PROXY=*",
                 NULL);
    snprintf(target_a, sizeof target_a, "127.0.0.1:%d", host_a.port);
    snprintf(target_b, sizeof target_b, "127.0.0.1:%d", host_b.port);
    if (!wait_node(&host_a) || !wait_node(&host_b)) {
        fprintf(stderr, "the hosts did not register (A %d, B %d)\n",
                h_host_alive(&host_a), h_host_alive(&host_b));
        h_failures++;
        goto done;
    }

    RUN(test_http_console_default);
    RUN(test_http_methods);
    RUN(test_http_url_and_timeout);
    RUN(test_http_status_and_errors);
    RUN(test_http_stop);
    RUN(test_http_wf_context);
    RUN(test_http_allow);
    RUN(test_shell_script_code);
    RUN(test_shell_results);
    RUN(test_shell_stream_and_stop);
    RUN(test_shell_timeout);
    RUN(test_cmd_powershell);
    RUN(test_not_enabled);
    RUN(test_check);
    CHECK(h_host_alive(&host_a));
    CHECK(h_host_alive(&host_b));

done:
    CHECK(h_host_stop(&host_a, SIGTERM) == 0);
    CHECK(h_host_stop(&host_b, SIGTERM) == 0);
    if (h_failures != 0) {
        char *log = h_read_file(host_a.log);
        size_t len = strlen(log);
        fprintf(stderr, "---- host A log (tail) ----\n%s\n",
                len > 6000 ? log + len - 6000 : log);
        free(log);
    }
    h_host_cleanup(&host_a);
    h_host_cleanup(&host_b);
    httpd_stop();
    sj_emu_destroy(emu);
    printf("test_e2e_builtins: %lld ms\n", h_now() - t0);
    if (h_failures == 0)
        printf("test_e2e_builtins: all checks passed\n");
    else
        fprintf(stderr, "test_e2e_builtins: %d check(s) failed\n", h_failures);
    return h_failures != 0;
}
