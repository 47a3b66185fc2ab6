/*
 * test_e2e_operator.c - the operator's side, with the real binary against
 * the emulator over gRPC on loopback:
 *
 *   port_in_use     a second host on a port a running host holds exits 1,
 *                   naming the port (SO_REUSEPORT is off)
 *   check_no_node   `check` proves reachability and the token with
 *                   /sync/version and leaves no node in the emulator
 *   token_hidden    the token never appears in any output of any command
 *                   (host log, check with a refused token, --print-config,
 *                   run), only its mask
 *   metrics         /metrics counters move as jobs run (and `promtool
 *                   check metrics` accepts the text when it is installed)
 *   healthz         /healthz through start, serve, outage and drain
 *   json_logs       SNAIL_LOG_FORMAT=json: every line one JSON object, a
 *                   traceback inside its record with the task's ids
 *   text_one_line   in text, every line starts with a timestamp
 *   sigusr1         SIGUSR1 reopens log_file after a rename
 */
#include <errno.h>
#include <jansson.h>
#include <sys/types.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_harness.h"
#include "sj_log.h"
#include "sj_srv.h"

#define TOKEN "SJ_OperatorTestToken_5f3a9c1e7b2d"
#define WRONG "SJ_WrongTokenForTheTest_0a1b2c3d4e"

static sj_emu *emu;
static sj_srv *srv;
static int emu_port;

static const char *const executors_lua =
    "local sj = require 'snailjob'\n"
    "sj.job('okJob', function(args) return sj.success('fine') end)\n"
    "sj.job('failJob', function(args) return sj.failure('no') end)\n"
    "sj.job('boomJob', function(args)\n"
    "  local function inner() error('boom on purpose') end\n"
    "  inner()\n"
    "end)\n"
    "sj.job('slowJob', function(args) sj.sleep(2) return sj.success('s') "
    "end)\n";

/* ---- helpers ---------------------------------------------------------- */

/* Run the binary with `args` (NULL-terminated after the env list) in
 * h->dir with the harness's settings plus "NAME=value" pairs; output into
 * <dir>/<out>. Returns the exit status, or -1 after 60 s. */
static int run_cmd(h_host *h, const char *out, const char *const *env,
                   const char *const *args)
{
    const char *bin = getenv("SJ_BINARY");
    char path[400], buf[32];
    const char *argv[16];
    int status, n = 0;
    pid_t pid;

    snprintf(path, sizeof path, "%s/%s", h->dir, out);
    pid = fork();
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        if (chdir(h->dir) != 0)
            _exit(127);
        h_clear_snail_env();
        setenv("SNAIL_SERVER_HOST", "127.0.0.1", 1);
        snprintf(buf, sizeof buf, "%d", emu_port);
        setenv("SNAIL_SERVER_PORT", buf, 1);
        setenv("SNAIL_HOST_IP", "127.0.0.1", 1);
        setenv("SNAIL_EXECUTORS", "executors", 1);
        setenv("SNAIL_TOKEN", TOKEN, 1);
        for (; env != NULL && *env != NULL; env++) {
            const char *eq = strchr(*env, '=');
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(eq - *env), *env);
            setenv(name, eq + 1, 1);
        }
        argv[n++] = bin;
        for (; args != NULL && *args != NULL && n < 15; args++)
            argv[n++] = *args;
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 6000; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        h_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static char *read_in(h_host *h, const char *name)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", h->dir, name);
    return h_read_file(path);
}

/* run_cmd, then its output (malloc'd); *rc gets the exit status. */
static char *run_read(h_host *h, const char *out, const char *const *env,
                      const char *const *args, int *rc)
{
    *rc = run_cmd(h, out, env, args);
    return read_in(h, out);
}

/* GET http://127.0.0.1:port/path: the status code (or -1) and the body
 * (malloc'd) in *body. */
static int http_get(int port, const char *path, char **body)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    char req[256], *buf = NULL, *sep;
    size_t len = 0, cap = 0;
    int fd, code = -1;
    ssize_t r;

    *body = strdup("");
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    snprintf(req, sizeof req,
             "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(fd);
        return -1;
    }
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = (cap + 4096) * 2;
            buf = realloc(buf, cap);
        }
        r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (buf == NULL)
        return -1;
    buf[len] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
        code = -1;
    if ((sep = strstr(buf, "\r\n\r\n")) != NULL) {
        free(*body);
        *body = strdup(sep + 4);
    }
    free(buf);
    return code;
}

/* The value of the sample line starting with `series` + " ", or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

/* Scrape until `series` has `value` (the host may still be handling the
 * reply that changes it); 1 if it did within `ms`. */
static int wait_sample(int port, const char *series, double value, long long ms)
{
    long long until = h_now() + ms;
    char *body;
    double v;

    do {
        http_get(port, "/metrics", &body);
        v = sample(body, series);
        free(body);
        if (v == value)
            return 1;
        h_sleep_ms(50);
    } while (h_now() < until);
    fprintf(stderr, "  %s is %g, expected %g\n", series, v, value);
    return 0;
}

static int node_registered(int port)
{
    sj_srv_node_info *v = NULL;
    size_t n = 0;
    int found = 0;
    if (sj_srv_nodes(srv, &v, &n) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        found |= v[i].port == port;
    sj_srv_nodes_free(v, n);
    return found;
}

static int wait_ready(h_host *h)
{
    long long until = h_now() + H_MS(15000);
    while (h_now() < until && h_host_alive(h)) {
        if (node_registered(h->port) && h_log_has(h, "listening on port"))
            return 1;
        h_sleep_ms(20);
    }
    return 0;
}

static int run_job(h_host *h, const char *executor, int64_t *batch)
{
    static char target[64];
    const char *targets[1] = {target};
    sj_srv_job j;
    int64_t id = 0;

    snprintf(target, sizeof target, "127.0.0.1:%d", h->port);
    memset(&j, 0, sizeof j);
    j.job_id = 77;
    j.task_type = SJ_SRV_CLUSTER;
    j.executor_info = executor;
    j.executor_timeout = 20;
    j.targets = targets;
    j.n_targets = 1;
    if (sj_srv_trigger(srv, &j, &id) != 0)
        return -1;
    if (batch != NULL)
        *batch = id;
    return sj_srv_wait_batch(srv, id, (int)H_MS(10000));
}

static void new_host(h_host *h)
{
    char sub[400];
    h_host_dir(h);
    snprintf(sub, sizeof sub, "%s/executors", h->dir);
    h_write_file(sub, "jobs.lua", executors_lua);
}

/* ---- tests ------------------------------------------------------------ */

static void test_port_in_use(void)
{
    h_host a, b;
    int rc;
    char want[64];

    new_host(&a);
    new_host(&b);
    h_host_start(&a, emu_port, "SNAIL_TOKEN=" TOKEN,
                 "SNAIL_BIND_HOST=127.0.0.1", NULL);
    CHECK(wait_ready(&a));
    b.port = a.port; /* 0.0.0.0 (the default) overlaps 127.0.0.1 */
    h_host_start(&b, emu_port, "SNAIL_TOKEN=" TOKEN, NULL);
    rc = -1;
    for (long long i = 0; i < H_MS(10000) / 10; i++) {
        int status;
        if (waitpid(b.pid, &status, WNOHANG) == b.pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
            b.pid = 0;
            break;
        }
        h_sleep_ms(10);
    }
    if (b.pid > 0)
        h_host_stop(&b, SIGKILL);
    /* the second one failed at once (exit 1), naming the port */
    CHECKF(rc == 1, "second host exit %d", rc);
    snprintf(want, sizeof want, "port %d is in use", a.port);
    CHECKF(h_log_has(&b, want), "second host's log lacks '%s'", want);
    CHECK(!h_log_has(&b, "listening on port"));
    CHECK(h_host_alive(&a));

    /* bind_host: the same port on another loopback address is free */
    {
        h_host c;
        long long until = h_now() + H_MS(10000);
        new_host(&c);
        c.port = a.port;
        h_host_start(&c, emu_port, "SNAIL_TOKEN=" TOKEN,
                     "SNAIL_BIND_HOST=127.0.0.2", "SNAIL_HOST_IP=127.0.0.2",
                     NULL);
        while (h_now() < until && h_host_alive(&c) &&
               !h_log_has(&c, "listening on port"))
            h_sleep_ms(20);
        CHECK(h_log_has(&c, "listening on port"));
        CHECK(h_host_stop(&c, SIGTERM) == 0);
        h_host_cleanup(&c);
    }
    CHECK(h_host_stop(&a, SIGTERM) == 0);
    h_host_cleanup(&a);
    h_host_cleanup(&b);
}

static void test_check_no_node(void)
{
    h_host h;
    const char *args[] = {"check", NULL};
    size_t beats, syncs, before_nodes;
    sj_srv_node_info *v = NULL;
    char *out;
    int rc;

    new_host(&h);
    h.port = h_free_port();
    sj_srv_nodes(srv, &v, &before_nodes);
    sj_srv_nodes_free(v, before_nodes);
    beats = sj_srv_request_count(srv, "/beat");
    syncs = sj_srv_request_count(srv, "/sync/version");
    out = run_read(&h, "check.out", NULL, args, &rc);
    CHECKF(rc == 0, "check exit %d: %s", rc, out);
    CHECKF(strstr(out, "token accepted") != NULL, "%s", out);
    CHECK(sj_srv_request_count(srv, "/sync/version") == syncs + 1);
    CHECK(sj_srv_request_count(srv, "/beat") == beats); /* no beat at all */
    free(out);
    /* the emulator applies beats at once here: nothing may have appeared */
    {
        size_t n = 0;
        int phantom = 0;
        sj_srv_nodes(srv, &v, &n);
        for (size_t i = 0; i < n; i++)
            phantom |= strncmp(v[i].host_id, "check-", 6) == 0;
        sj_srv_nodes_free(v, n);
        CHECK(!phantom);
    }
    /* host_ip loopback, the server elsewhere: a warning (and no answer) */
    {
        const char *far[] = {"SNAIL_SERVER_HOST=192.0.2.1", NULL};
        out = run_read(&h, "check-far.out", far, args, &rc);
        CHECKF(rc == 1, "check against an absent server: exit %d", rc);
        CHECKF(strstr(out, "host_ip 127.0.0.1 is a loopback address") != NULL,
               "%s", out);
        free(out);
    }
    h_host_cleanup(&h);
}

/* Every output below goes through the same grep. */
static void expect_no_token(const char *what, const char *text)
{
    CHECKF(strstr(text, TOKEN) == NULL, "%s shows the token", what);
    CHECKF(strstr(text, WRONG) == NULL, "%s shows the wrong token", what);
}

static void test_token_hidden(void)
{
    h_host h, bad;
    const char *check[] = {"check", NULL};
    const char *print[] = {"--print-config", NULL};
    const char *run[] = {"run", "okJob", NULL};
    const char *wrong[] = {"SNAIL_TOKEN=" WRONG, NULL};
    const char *empty[] = {"SNAIL_TOKEN=", NULL};
    char *out;
    int rc;

    new_host(&h);
    /* check refused: the server's message repeats the token it got */
    out = run_read(&h, "check-wrong.out", wrong, check, &rc);
    CHECKF(rc == 1, "check with a wrong token exit %d", rc);
    CHECKF(strstr(out, "Token authentication failed") != NULL, "%s", out);
    CHECKF(strstr(out, "SJ_W\xe2\x80\xa6"
                       "4e") != NULL,
           "no mask in: %s", out);
    expect_no_token("check (refused)", out);
    free(out);
    out = run_read(&h, "check.out", NULL, check, &rc);
    CHECK(rc == 0);
    expect_no_token("check", out);
    free(out);
    out = run_read(&h, "print.out", NULL, print, &rc);
    CHECK(rc == 0);
    CHECKF(strstr(out, "SJ_O\xe2\x80\xa6"
                       "2d") != NULL,
           "%s", out);
    expect_no_token("--print-config", out);
    free(out);
    out = run_read(&h, "run.out", NULL, run, &rc);
    CHECKF(rc == 0, "run exit %d: %s", rc, out);
    expect_no_token("run", out);
    free(out);
    /* an empty token is a configuration error */
    out = run_read(&h, "empty.out", empty, check, &rc);
    CHECKF(rc == 2, "empty token exit %d", rc);
    CHECKF(strstr(out, "SNAIL_TOKEN: must not be empty") != NULL, "%s", out);
    free(out);

    /* a host the server refuses logs the refusal, masked */
    new_host(&bad);
    h_host_start(&bad, emu_port, "SNAIL_TOKEN=" WRONG, NULL);
    for (long long i = 0;
         i < H_MS(10000) / 10 && !h_log_has(&bad, "refused this host"); i++)
        h_sleep_ms(10);
    CHECK(h_log_has(&bad, "Token authentication failed"));
    /* inbound calls with the wrong token: one WARN for a burst */
    {
        char target[64];
        sj_reply r;
        snprintf(target, sizeof target, "127.0.0.1:%d", bad.port);
        for (int i = 0; i < 50; i++) {
            memset(&r, 0, sizeof r);
            if (sj_emu_call(emu, target, "/job/stop/v1",
                            "[{\"taskBatchId\":1}]", TOKEN, 3000, &r) == 0) {
                CHECK(r.status == 0);
                sj_reply_free(&r);
            }
        }
    }
    CHECK(h_host_stop(&bad, SIGTERM) == 0);
    out = h_read_file(bad.log);
    expect_no_token("host log", out);
    {
        int warns = 0;
        for (const char *p = out; (p = strstr(p, "refused: SJ-TOKEN")); p++)
            warns++;
        CHECKF(warns == 1, "%d WARN lines for 50 refused calls", warns);
        CHECKF(strstr(out, "49 more inbound call(s) refused") != NULL,
               "no count of the refusals");
    }
    free(out);
    h_host_cleanup(&bad);
    h_host_cleanup(&h);
}

/* Every configuration error exits 2, naming the setting; a metrics port
 * in use is a start failure (1). */
static void test_config_errors(void)
{
    h_host h;
    const char *none[] = {NULL};
    const char *check[] = {"check", NULL};
    struct {
        const char *env, *args, *says;
        int rc;
    } cases[] = {
        {"SNAIL_BEAT_INTERVAL=1e-9", "host", "SNAIL_BEAT_INTERVAL", 2},
        {"SNAIL_BEAT_INTERVAL=0.5", "check", "at least 1 s", 2},
        {"SNAIL_TOKEN=", "host", "SNAIL_TOKEN: must not be empty", 2},
        {"SNAIL_METRICS_LISTEN=9464", "host", "metrics_listen", 2},
        {"SNAIL_BIND_HOST=no.such.host.invalid", "host", "bind_host", 2},
        {"SNAIL_LOG_FORMAT=xml", "check", "SNAIL_LOG_FORMAT", 2},
    };
    char *out;
    int rc;

    new_host(&h);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *env[] = {cases[i].env, NULL};
        out = run_read(&h, "cfg.out", env,
                       strcmp(cases[i].args, "check") == 0 ? check : none, &rc);
        CHECKF(rc == cases[i].rc, "%s: exit %d: %s", cases[i].env, rc, out);
        CHECKF(strstr(out, cases[i].says) != NULL, "%s: %s", cases[i].env, out);
        free(out);
    }
    /* the metrics port taken: exit 1, naming the address */
    {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t len = sizeof a;
        char env0[64];
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              listen(fd, 1) == 0);
        getsockname(fd, (struct sockaddr *)&a, &len);
        snprintf(env0, sizeof env0, "SNAIL_METRICS_LISTEN=127.0.0.1:%d",
                 ntohs(a.sin_port));
        const char *env[] = {env0, "SNAIL_HOST_PORT=0", NULL};
        out = run_read(&h, "mport.out", env, none, &rc);
        CHECKF(rc == 1, "metrics port in use: exit %d: %s", rc, out);
        CHECKF(strstr(out, "Address already in use") != NULL, "%s", out);
        free(out);
        close(fd);
    }
    h_host_cleanup(&h);
}

static void promtool(h_host *h, const char *text)
{
    char cmd[600];
    int rc;

    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        printf("  promtool check metrics: skipped (promtool not installed; "
               "Debian package prometheus)\n");
        return;
    }
    h_write_file(h->dir, "metrics.txt", text);
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s/metrics.txt'",
             h->dir);
    rc = system(cmd);
    CHECKF(rc == 0, "promtool check metrics failed (%d)", rc);
    printf("  promtool check metrics: %s\n", rc == 0 ? "ok" : "FAILED");
}

static void test_metrics_and_health(void)
{
    h_host h;
    char env[64], *body;
    int mport = h_free_port(), code, starting = 0;
    double before, after;
    long long until;

    new_host(&h);
    /* a slow load keeps the host in "starting" for a while */
    h_write_file(h.dir, "executors/zslow.lua",
                 "local sj = require 'snailjob'\n"
                 "local t = os.clock() while os.clock() - t < 1.5 do end\n"
                 "sj.job('slowLoadJob', function() return sj.success() end)\n");
    snprintf(env, sizeof env, "SNAIL_METRICS_LISTEN=127.0.0.1:%d", mport);
    h_host_start(&h, emu_port, env, "SNAIL_TOKEN=" TOKEN, "SNAIL_WORKERS=1",
                 "SNAIL_SHUTDOWN_GRACE=1", NULL);
    until = h_now() + H_MS(10000);
    while (h_now() < until && !h_log_has(&h, "listening on port")) {
        code = http_get(mport, "/healthz", &body);
        if (code == 503 && strstr(body, "starting") != NULL)
            starting = 1;
        free(body);
        h_sleep_ms(20);
    }
    CHECK(starting);
    CHECK(wait_ready(&h));
    code = http_get(mport, "/healthz", &body);
    CHECKF(code == 200 && strstr(body, "serving"), "healthz %d %s", code, body);
    free(body);

    code = http_get(mport, "/metrics", &body);
    CHECK(code == 200);
    before = sample(body, "snailjob_tasks_finished_total{executor=\"okJob\","
                          "status=\"ok\"}");
    CHECK(before == -1); /* no task yet: no series */
    free(body);
    CHECK(wait_sample(mport, "snailjob_server_reachable", 1, H_MS(3000)));
    code = http_get(mport, "/metrics", &body);
    CHECK(sample(body, "snailjob_reload_generation") >= 1);
    CHECK(sample(body, "snailjob_lua_memory_bytes{worker=\"0\"}") > 0);
    free(body);

    CHECK(run_job(&h, "okJob", NULL) == SJ_SRV_SUCCESS);
    CHECK(run_job(&h, "okJob", NULL) == SJ_SRV_SUCCESS);
    CHECK(run_job(&h, "failJob", NULL) == SJ_SRV_FAIL);
    code = http_get(mport, "/metrics", &body);
    CHECK(code == 200);
    after = sample(body, "snailjob_tasks_finished_total{executor=\"okJob\","
                         "status=\"ok\"}");
    CHECKF(after == 2, "okJob ok = %g", after);
    CHECK(sample(body, "snailjob_tasks_finished_total{executor=\"failJob\","
                       "status=\"failed\"}") == 1);
    CHECK(sample(body, "snailjob_task_duration_seconds_count{executor="
                       "\"okJob\"}") == 2);
    CHECK(sample(body, "snailjob_task_duration_seconds_bucket{executor="
                       "\"okJob\",le=\"+Inf\"}") == 2);
    /* the worker lets go of its task just after the report */
    CHECK(wait_sample(mport, "snailjob_tasks_running", 0, H_MS(3000)));
    CHECK(wait_sample(mport, "snailjob_journal_pending", 0, H_MS(3000)));
    CHECK(sample(body, "snailjob_server_last_success_timestamp_seconds") > 0);
    promtool(&h, body);
    free(body);
    code = http_get(mport, "/nothing", &body);
    CHECK(code == 404);
    free(body);

    /* outage: unreachable for more than 3 beat intervals (3 s) */
    sj_emu_stop(emu);
    until = h_now() + H_MS(4000) + 6000;
    code = 0;
    while (h_now() < until) {
        code = http_get(mport, "/healthz", &body);
        if (code == 503 && strstr(body, "unreachable") != NULL) {
            free(body);
            break;
        }
        free(body);
        h_sleep_ms(100);
    }
    CHECKF(code == 503, "healthz during the outage: %d", code);
    code = http_get(mport, "/metrics", &body);
    CHECK(sample(body, "snailjob_server_reachable") == 0);
    free(body);
    {
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", emu_port);
        CHECK(sj_emu_start(emu, addr, NULL) == 0);
    }
    until = h_now() + H_MS(8000);
    while (h_now() < until &&
           (code = http_get(mport, "/healthz", &body)) != 200) {
        free(body);
        h_sleep_ms(100);
    }
    if (code == 200)
        free(body);
    CHECKF(code == 200, "healthz after the server's return: %d", code);

    /* drain: a running task keeps the host shutting down a while */
    {
        int64_t batch = 0;
        static char target[64];
        const char *targets[1] = {target};
        sj_srv_job j;
        int draining = 0;

        snprintf(target, sizeof target, "127.0.0.1:%d", h.port);
        memset(&j, 0, sizeof j);
        j.job_id = 78;
        j.task_type = SJ_SRV_CLUSTER;
        j.executor_info = "slowJob";
        j.executor_timeout = 20;
        j.targets = targets;
        j.n_targets = 1;
        CHECK(sj_srv_trigger(srv, &j, &batch) == 0);
        until = h_now() + H_MS(3000);
        while (h_now() < until) {
            code = http_get(mport, "/metrics", &body);
            double running = sample(body, "snailjob_tasks_running");
            free(body);
            if (running == 1)
                break;
            h_sleep_ms(20);
        }
        kill(h.pid, SIGTERM);
        until = h_now() + H_MS(3000);
        while (h_now() < until && !draining) {
            code = http_get(mport, "/healthz", &body);
            draining = code == 503 && strstr(body, "draining") != NULL;
            free(body);
            if (code < 0)
                break; /* already gone */
            h_sleep_ms(20);
        }
        CHECK(draining);
    }
    /* The drain ends by itself (shutdown_grace 1 s); a second SIGTERM
     * would cut it short (exit 1). Signal 0 only waits. */
    CHECK(h_host_stop(&h, 0) == 0);
    CHECK(http_get(mport, "/healthz", &body) == -1); /* closed with it */
    free(body);
    h_host_cleanup(&h);
}

/* A host with `env` settings runs boomJob (a traceback) and stops; its
 * whole log (malloc'd). */
static char *boom_log(h_host *h, const char *env1, const char *env2)
{
    new_host(h);
    h_host_start(h, emu_port, "SNAIL_TOKEN=" TOKEN, env1, env2, NULL);
    CHECK(wait_ready(h));
    CHECK(run_job(h, "boomJob", NULL) == SJ_SRV_FAIL);
    CHECK(h_host_stop(h, SIGTERM) == 0);
    return h_read_file(h->log);
}

static void test_json_logs(void)
{
    h_host h;
    char *log, *line, *save = NULL;
    int lines = 0, bad = 0, traceback = 0, task_fields = 0, typo = 0;

    /* a misspelt variable: its warning is a JSON record too */
    log = boom_log(&h, "SNAIL_LOG_FORMAT=json", "SNAIL_WORKRS=3");
    for (line = strtok_r(log, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        const char *keys[] = {"time",     "level",         "thread",
                              "job_id",   "task_batch_id", "task_id",
                              "executor", "message"};
        lines++;
        if (!json_is_object(o)) {
            bad++;
            fprintf(stderr, "  not a JSON object: %s\n", line);
            json_decref(o);
            continue;
        }
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (json_object_get(o, keys[k]) == NULL) {
                bad++;
                fprintf(stderr, "  no \"%s\" in: %s\n", keys[k], line);
            }
        const char *msg = json_string_value(json_object_get(o, "message"));
        if (msg != NULL && strstr(msg, "unknown setting SNAIL_WORKRS ignored "
                                       "(did you mean SNAIL_WORKERS?)"))
            typo = 1;
        if (json_is_integer(json_object_get(o, "task_id")) &&
            json_integer_value(json_object_get(o, "job_id")) == 77) {
            task_fields++;
            if (msg != NULL && strstr(msg, "boom on purpose") &&
                strstr(msg, "\nstack traceback:") &&
                strcmp(json_string_value(json_object_get(o, "executor")),
                       "boomJob") == 0)
                traceback = 1;
        }
        json_decref(o);
    }
    printf("  %d JSON lines, %d with a task's ids\n", lines, task_fields);
    CHECK(lines > 3);
    CHECK(bad == 0);
    CHECK(traceback);
    CHECK(typo);
    free(log);
    h_host_cleanup(&h);
}

static void test_text_one_line(void)
{
    h_host h;
    char *log, *line, *save = NULL;
    int lines = 0, bad = 0, ctx = 0;

    log = boom_log(&h, "SNAIL_LOG_FORMAT=text", NULL);
    for (line = strtok_r(log, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        int y, mo, d, hh, mm, ss, ms;
        lines++;
        if (sscanf(line, "%4d-%2d-%2d %2d:%2d:%2d.%3d ", &y, &mo, &d, &hh, &mm,
                   &ss, &ms) != 7) {
            bad++;
            fprintf(stderr, "  continuation line: %s\n", line);
        }
        if (strstr(line, "boom on purpose") && strstr(line, " job=77 ") &&
            strstr(line, "\\nstack traceback:"))
            ctx++;
    }
    CHECK(lines > 3);
    CHECK(bad == 0);
    CHECK(ctx >= 1);
    free(log);
    h_host_cleanup(&h);
}

static void test_sigusr1(void)
{
    h_host h;
    char path[400], rotated[400], *old_text, *new_text;

    new_host(&h);
    h_host_start(&h, emu_port, "SNAIL_TOKEN=" TOKEN,
                 "SNAIL_LOG_FILE=snailjob.log", NULL);
    CHECK(wait_ready(&h));
    snprintf(path, sizeof path, "%s/snailjob.log", h.dir);
    snprintf(rotated, sizeof rotated, "%s/snailjob.log.1", h.dir);
    CHECK(rename(path, rotated) == 0);
    kill(h.pid, SIGUSR1);
    for (long long i = 0; i < H_MS(5000) / 10; i++) {
        if (access(path, F_OK) == 0)
            break;
        h_sleep_ms(10);
    }
    CHECK(run_job(&h, "okJob", NULL) == SJ_SRV_SUCCESS);
    CHECK(h_host_stop(&h, SIGTERM) == 0);
    old_text = h_read_file(rotated);
    new_text = h_read_file(path);
    CHECK(strstr(old_text, "listening on port") != NULL);
    CHECK(strstr(old_text, "shutting down") == NULL);
    CHECK(strstr(new_text, "SIGUSR1: log file reopened") != NULL);
    CHECK(strstr(new_text, "shutting down") != NULL);
    free(old_text);
    free(new_text);
    h_host_cleanup(&h);
}

int main(void)
{
    sj_emu_config cfg;
    long long t0 = h_now();

    if (getenv("SJ_BINARY") == NULL) {
        fprintf(stderr, "test_e2e_operator: SJ_BINARY is not set\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sj_log_set_level(SJ_LOG_OFF);
    memset(&cfg, 0, sizeof cfg);
    cfg.srv.beat_apply_ms = 0;
    cfg.srv.token = TOKEN;
    if (sj_emu_open(&cfg, "127.0.0.1:0", &emu, &emu_port) != 0) {
        fprintf(stderr, "test_e2e_operator: cannot start the emulator\n");
        return 1;
    }
    srv = sj_emu_srv(emu);

    RUN(test_port_in_use);
    RUN(test_check_no_node);
    RUN(test_token_hidden);
    RUN(test_config_errors);
    RUN(test_json_logs);
    RUN(test_text_one_line);
    RUN(test_sigusr1);
    RUN(test_metrics_and_health);

    sj_emu_destroy(emu);
    printf("test_e2e_operator: %s (%lld ms)\n", h_failures ? "FAILED" : "ok",
           h_now() - t0);
    return h_failures ? 1 : 0;
}
