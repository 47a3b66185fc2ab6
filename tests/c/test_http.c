/*
 * test_http.c - sj.http (host/sj_http.c) in a real VM against real
 * servers on 127.0.0.1: a small HTTP/1.1 server of this test (one thread
 * per connection), a listening socket whose backlog is full (a connect
 * that never completes), a server that accepts and then stays silent (a
 * TLS handshake and an upload that cannot go on), a closed port, and
 * `openssl s_server` with a
 * self-signed certificate made at test time.
 *
 * Handlers check what they got with assert() and return sj.success, so an
 * assertion that fails is a failed run with its message. Stop and timeout
 * are set from another thread as the pool does; the bounds scale with
 * SJ_TIME_FACTOR.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sj_httpd.h"
#include "sj_vmtest.h"

/* ---- TLS: openssl s_server with a certificate made now ------------------- */

static char dir[64];
static pid_t tls_pid;
static int tls_port;

static int start_tls(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/key.pem "
             "-out %s/cert.pem -days 1 -subj /CN=localhost >/dev/null 2>&1",
             dir, dir);
    if (system(cmd) != 0)
        return -1;
    int fd = httpd_listen(&tls_port, 1); /* reserve a free port, then free it */
    close(fd);
    char port[16], cert[128], key[128];
    snprintf(port, sizeof port, "%d", tls_port);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    tls_pid = fork();
    if (tls_pid == 0) {
        int null = open("/dev/null", 0);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execlp("openssl", "openssl", "s_server", "-quiet", "-accept", port,
               "-cert", cert, "-key", key, "-www", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* until it accepts connections */
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)tls_port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        int ok = connect(c, (struct sockaddr *)&a, sizeof a) == 0;
        close(c);
        if (ok)
            return 0;
        h_sleep_ms(20);
    }
    return -1;
}

/* ---- the VM -------------------------------------------------------------- */

static const char handlers[] =
    "local sj = require 'snailjob'\n"
    "sj.job('get', function(a)\n"
    "  local r = sj.http.get(a.job_params .. '/hello', { headers = {\n"
    "    ['X-Req'] = '1' } })\n"
    "  assert(r.status == 200, r.status)\n"
    "  assert(r.body == 'hello', r.body)\n"
    "  assert(r.headers['x-test'] == 'a, b', r.headers['x-test'])\n"
    "  assert(r.headers['content-type'] == 'text/plain')\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('post', function(a)\n"
    "  local r = sj.http.post(a.job_params .. '/echo', '{\"x\":1}', {\n"
    "    headers = { ['Content-Type'] = 'application/json', ['X-K'] = 'v' } "
    "})\n"
    "  assert(r.status == 200, r.status)\n"
    "  assert(r.body:find('^POST /echo HTTP/1.1\\r\\n'), r.body)\n"
    "  assert(r.body:find('\\r\\nX%-K: v\\r\\n'), r.body)\n"
    "  assert(r.body:find('\\r\\nContent%-Type: application/json\\r\\n'))\n"
    "  assert(r.body:sub(-7) == '{\"x\":1}', r.body)\n"
    "  local r2 = sj.http.request{ url = a.job_params .. '/echo',\n"
    "    method = 'put', body = 'payload' }\n"
    "  assert(r2.body:find('^PUT /echo'), r2.body)\n"
    "  assert(r2.body:sub(-7) == 'payload', r2.body)\n"
    "  local r3 = sj.http.request{ url = a.job_params .. '/echo' }\n"
    "  assert(r3.body:find('^GET /echo'), r3.body)\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('notfound', function(a)\n"
    "  local r = sj.http.get(a.job_params .. '/missing')\n"
    "  assert(r.status == 404, r.status)\n"
    "  assert(r.body == 'nope', r.body)\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('proxy', function(a)\n"
    "  local r = sj.http.get('http://proxied.invalid/x')\n"
    "  assert(r.status == 200, r.status)\n"
    "  assert(r.body == 'http://proxied.invalid/x', r.body)\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('refused', function(a)\n"
    "  local ok, e = pcall(sj.http.get, a.job_params)\n"
    "  assert(not ok)\n"
    "  assert(e:find(a.job_params, 1, true), e)\n"
    "  assert(e:find('onnect'), e)\n"
    "  return sj.success(e)\n"
    "end)\n"
    "sj.job('redirect', function(a)\n"
    "  local r = sj.http.get(a.job_params .. '/redirect')\n"
    "  assert(r.status == 200 and r.body == 'hello', r.status)\n"
    "  assert(r.url:find('/hello$'), r.url)\n"
    "  local r2 = sj.http.get(a.job_params .. '/redirect',\n"
    "                         { follow_redirects = false })\n"
    "  assert(r2.status == 302, r2.status)\n"
    "  assert(r2.headers.location == '/hello')\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('maxbody', function(a)\n"
    "  local r = sj.http.get(a.job_params .. '/big', { max_body = 100000 })\n"
    "  assert(#r.body == 100000, #r.body)\n"
    "  local ok, e = pcall(sj.http.get, a.job_params .. '/big',\n"
    "                      { max_body = 1000 })\n"
    "  assert(not ok and e:find('max_body'), e)\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('badopts', function(a)\n"
    "  local ok, e = pcall(sj.http.request, { method = 'GET' })\n"
    "  assert(not ok and e:find(\"'url' is required\"), e)\n"
    "  ok, e = pcall(sj.http.get, a.job_params, { timeout = 'x' })\n"
    "  assert(not ok and e:find(\"'timeout' must be a number\"), e)\n"
    "  ok, e = pcall(sj.http.get, 'ftp://127.0.0.1/x')\n"
    "  assert(not ok and e:find('ftp://127.0.0.1/x', 1, true), e)\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('owntimeout', function(a)\n"
    "  local ok, e = pcall(sj.http.get, a.job_params .. '/slow',\n"
    "                      { timeout = 0.3 })\n"
    "  assert(not ok and e:find('/slow', 1, true), e)\n"
    "  assert(e:lower():find('time'), e)\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('slow', function(a)\n"
    "  while true do\n"
    "    sj.log.info('attempt')\n"
    "    pcall(sj.http.get, a.job_params .. '/slow')\n"
    "  end\n"
    "end)\n"
    "local big = string.rep('u', 16 * 1024 * 1024) -- made before any run\n"
    "sj.job('upload', function(a)\n"
    "  while true do\n"
    "    sj.log.info('attempt')\n"
    "    pcall(sj.http.post, a.job_params, big)\n"
    "  end\n"
    "end)\n"
    "sj.job('tls', function(a)\n"
    "  local ok, e = pcall(sj.http.get, a.job_params)\n"
    "  assert(not ok, 'a self-signed certificate was accepted')\n"
    "  assert(e:find(a.job_params, 1, true) and e:find('certificate'), e)\n"
    "  local r = sj.http.get(a.job_params, { insecure = true })\n"
    "  assert(r.status == 200, r.status)\n"
    "  return sj.success('ok')\n"
    "end)\n";

static sj_vm *vm;
static char file[128];

static void open_vm(void)
{
    vt_open(file, &vm);
}

/* Run `executor` and expect success. */
static void expect_ok(const char *executor, const char *params)
{
    sj_task *t = vt_job(executor, params);
    sj_run r;
    sj_vm_run(vm, t, &r);
    CHECKF(r.outcome == SJ_OUT_OK, "%s: %s: %s", executor,
           sj_outcome_name(r.outcome), r.message ? r.message : "");
    sj_run_free(&r);
    sj_task_free(t);
    if (sj_vm_needs_rebuild(vm)) {
        sj_vm_close(vm);
        open_vm();
    }
}

static char base[64];

static void test_get_post(void)
{
    expect_ok("get", base);
    expect_ok("post", base);
    expect_ok("notfound", base);
    expect_ok("redirect", base);
    expect_ok("maxbody", base);
    expect_ok("badopts", base);
}

/* http_proxy in the environment is used, as curl does. */
static void test_proxy(void)
{
    setenv("http_proxy", base, 1);
    expect_ok("proxy", base);
    unsetenv("http_proxy");
}

static void test_refused(void)
{
    int port, fd = httpd_listen(&port, 1);
    close(fd); /* nobody listens there now */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", port);
    expect_ok("refused", url);
}

static void test_own_timeout(void)
{
    long long t0 = sj_mono_ms();
    expect_ok("owntimeout", base);
    long long took = sj_mono_ms() - t0;
    CHECKF(took >= 250 && took < H_MS(1500), "timeout=0.3 took %lld ms", took);
}

/* Task log lines saying "attempt": 1 when the request was still waiting
 * when the run ended (not failing fast in a pcall loop). */
static int attempts(void)
{
    int n = 0;
    for (int i = 0; i < vt_nlines; i++)
        n += strcmp(vt_lines[i].msg, "attempt") == 0;
    return n;
}

/* A stop while the body trickles in (and a pcall around the request)
 * ends the run within 100 ms. */
static void test_stop_mid_body(void)
{
    vt_clear();
    sj_task *t = vt_job("slow", base);
    sj_run r;
    long long took = vt_run_stopped(vm, t, 300, &r);
    CHECKF(attempts() == 1, "%d attempts", attempts());
    CHECKF(r.outcome == SJ_OUT_STOPPED, "slow: %s (%s)",
           sj_outcome_name(r.outcome), r.message ? r.message : "");
    CHECKF(took < H_MS(100), "stopped %lld ms after the flag", took);
    printf("    stop mid-body: ended %lld ms after the stop flag\n", took);
    sj_run_free(&r);
    sj_task_free(t);
    sj_vm_close(vm);
    open_vm();
}

/* The task's deadline passes during a download, and during a connect
 * that never completes (a listening socket whose backlog is full). */
static void deadline_case(const char *what, const char *executor,
                          const char *url)
{
    vt_clear();
    sj_task *t = vt_job(executor, url);
    sj_run r;
    t->deadline_ms = sj_mono_ms() + H_MS(300);
    sj_vm_run(vm, t, &r);
    long long late = sj_mono_ms() - t->deadline_ms;
    CHECKF(r.outcome == SJ_OUT_TIMEOUT, "%s: %s (%s)", what,
           sj_outcome_name(r.outcome), r.message ? r.message : "");
    CHECKF(late >= 0 && late < H_MS(100),
           "%s: ended %lld ms after the deadline", what, late);
    CHECKF(attempts() == 1, "%s: %d attempts", what, attempts());
    printf("    timeout during %s: ended %lld ms after the deadline\n", what,
           late);
    sj_run_free(&r);
    sj_task_free(t);
    sj_vm_close(vm);
    open_vm();
}

static int hold_fd, held[64], n_held;

static void *hold(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(hold_fd, NULL, NULL);
        if (c < 0)
            return NULL;
        if (n_held < 64)
            held[n_held++] = c;
        else
            close(c);
    }
}

static void test_deadline(void)
{
    deadline_case("download", "slow", base);

    int port, fd = httpd_listen(&port, 0), fill[8];
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 8; i++) { /* fill the backlog: later SYNs are lost */
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    h_sleep_ms(100);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    deadline_case("connect", "slow", url);
    for (int i = 0; i < 8; i++)
        close(fill[i]);
    close(fd);

    /* a server that accepts and then neither reads nor writes: a TLS
     * handshake waits for its answer, an upload for room to send */
    pthread_t th;
    hold_fd = httpd_listen(&port, 16);
    pthread_create(&th, NULL, hold, NULL);
    snprintf(url, sizeof url, "https://127.0.0.1:%d/", port);
    deadline_case("TLS handshake", "slow", url);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/up", port);
    deadline_case("upload", "upload", url);
    shutdown(hold_fd, SHUT_RDWR);
    close(hold_fd);
    pthread_join(th, NULL);
    for (int i = 0; i < n_held; i++)
        close(held[i]);
}

static void test_tls(void)
{
    if (start_tls() != 0) {
        printf("    SKIPPED test_tls: cannot start 'openssl s_server' "
               "(is the openssl CLI installed?)\n");
        return;
    }
    char url[64];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/", tls_port);
    expect_ok("tls", url);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* the test's servers are local: no proxy of the environment applies */
    unsetenv("http_proxy");
    unsetenv("https_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("HTTPS_PROXY");
    unsetenv("ALL_PROXY");
    unsetenv("all_proxy");
    snprintf(dir, sizeof dir, "/tmp/sj-http-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 2;
    snprintf(file, sizeof file, "%s/h.lua", dir);
    FILE *f = fopen(file, "w");
    fputs(handlers, f);
    fclose(f);

    httpd_start();
    snprintf(base, sizeof base, "http://127.0.0.1:%d", httpd_port);
    open_vm();

    RUN(test_get_post);
    RUN(test_proxy);
    RUN(test_refused);
    RUN(test_own_timeout);
    RUN(test_stop_mid_body);
    RUN(test_deadline);
    RUN(test_tls);

    sj_vm_close(vm);
    httpd_stop();
    if (tls_pid > 0) {
        kill(tls_pid, SIGTERM);
        waitpid(tls_pid, NULL, 0);
    }
    vt_clear();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    if (h_failures == 0)
        printf("test_http: all checks passed\n");
    else
        fprintf(stderr, "test_http: %d check(s) failed\n", h_failures);
    return h_failures != 0;
}
