/*
 * bench_world.c - the cost of sj.http and sj.exec over their floors, in
 * the same run (issue 9):
 *
 *   - HTTP GET round trips to a local keep-alive HTTP/1.1 server
 *     (tests/c/sj_httpd.h, /hello) from a handler looping on
 *     sj.http.get, against a bare libcurl loop (one easy handle,
 *     curl_easy_perform) on the same server. Target: ≤ 1.2× its time per
 *     call.
 *   - sj.exec{"/bin/true"} from a handler, against a bare
 *     posix_spawn + waitpid loop. Target: ≤ 1.5× its time per call.
 *
 * The handlers run in a real VM of this process through sj_vm_run, armed
 * as in production (stop and deadline polled). Usage:
 *   bench_world [--http N] [--exec N] [--rounds R]
 * Each figure is the best of R rounds (default 3) of N calls.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "sj_httpd.h"
#include "sj_log.h"
#include "sj_task.h"
#include "sj_vm.h"

extern char **environ;

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static size_t sink(char *p, size_t size, size_t n, void *ud)
{
    (void)p, (void)ud;
    return size * n;
}

static double bare_curl(const char *url, int n)
{
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(e); /* connect once, as the VM's agent does */
    long long t0 = now_us();
    for (int i = 0; i < n; i++)
        if (curl_easy_perform(e) != CURLE_OK) {
            fprintf(stderr, "curl failed\n");
            exit(1);
        }
    long long t = now_us() - t0;
    curl_easy_cleanup(e);
    return (double)t / n;
}

static double bare_spawn(int n)
{
    char *argv[] = {"/bin/true", NULL};
    long long t0 = now_us();
    for (int i = 0; i < n; i++) {
        pid_t pid;
        int st;
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0) {
            fprintf(stderr, "posix_spawn failed\n");
            exit(1);
        }
        waitpid(pid, &st, 0);
    }
    return (double)(now_us() - t0) / n;
}

static const char handlers[] =
    "local sj = require 'snailjob'\n"
    "sj.job('get', function(a)\n"
    "  local url, n = a.job_params:match('^(%S+) (%d+)$')\n"
    "  sj.http.get(url)\n"
    "  for i = 1, tonumber(n) do\n"
    "    local r = sj.http.get(url)\n"
    "    if r.status ~= 200 then error('status ' .. r.status) end\n"
    "  end\n"
    "end)\n"
    "sj.job('exec', function(a)\n"
    "  for i = 1, tonumber(a.job_params) do\n"
    "    local r = sj.exec{ '/bin/true' }\n"
    "    if r.code ~= 0 then error('code ' .. tostring(r.code)) end\n"
    "  end\n"
    "end)\n";

/* Run executor with params; returns µs per call over n calls. */
static double in_vm(sj_vm *vm, const char *executor, const char *params, int n)
{
    sj_task *t = calloc(1, sizeof *t);
    t->job_id = t->task_batch_id = t->task_id = 1;
    t->task_type = SJ_TYPE_CLUSTER;
    t->executor_info = strdup(executor);
    t->job_params = strdup(params);
    t->task_name = strdup("CLUSTER_TASK");
    t->executor_timeout = 600;
    t->deadline_ms = sj_mono_ms() + 600000;
    atomic_init(&t->stop, SJ_STOP_NONE);
    sj_run r;
    long long t0 = now_us();
    sj_vm_run(vm, t, &r);
    long long took = now_us() - t0;
    if (r.outcome != SJ_OUT_OK) {
        fprintf(stderr, "%s: %s: %s\n", executor, sj_outcome_name(r.outcome),
                r.message ? r.message : "");
        exit(1);
    }
    sj_run_free(&r);
    sj_task_free(t);
    return (double)took / n;
}

static double min2(double a, double b)
{
    return a < b ? a : b;
}

int main(int argc, char **argv)
{
    int nh = 5000, ne = 1000, rounds = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--http") == 0)
            nh = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--exec") == 0)
            ne = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
    }
    signal(SIGPIPE, SIG_IGN);
    sj_log_set_level(SJ_LOG_WARN);
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    httpd_start();
    char url[64], params[96], dir[] = "/tmp/sj-bench-world-XXXXXX", file[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", httpd_port);
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(file, sizeof file, "%s/w.lua", dir);
    FILE *f = fopen(file, "w");
    fputs(handlers, f);
    fclose(f);
    const char *files[] = {file};
    sj_vm_options o = {.files = files, .n_files = 1};
    sj_vm *vm;
    char err[256];
    if (sj_vm_open(&o, &vm, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    double curl_us = 1e18, http_us = 1e18, spawn_us = 1e18, exec_us = 1e18;
    snprintf(params, sizeof params, "%s %d", url, nh);
    for (int r = 0; r < rounds; r++) {
        curl_us = min2(curl_us, bare_curl(url, nh));
        http_us = min2(http_us, in_vm(vm, "get", params, nh));
    }
    snprintf(params, sizeof params, "%d", ne);
    for (int r = 0; r < rounds; r++) {
        spawn_us = min2(spawn_us, bare_spawn(ne));
        exec_us = min2(exec_us, in_vm(vm, "exec", params, ne));
    }
    printf("bench_world: best of %d rounds\n", rounds);
    printf("  HTTP GET, keep-alive, %d calls: bare libcurl %.1f µs/call "
           "(%.0f/s), sj.http.get %.1f µs/call (%.0f/s): %.2fx (target "
           "<= 1.2x: %s)\n",
           nh, curl_us, 1e6 / curl_us, http_us, 1e6 / http_us,
           http_us / curl_us, http_us / curl_us <= 1.2 ? "met" : "MISSED");
    printf("  /bin/true, %d runs: bare posix_spawn+waitpid %.1f µs/run, "
           "sj.exec %.1f µs/run: %.2fx (target <= 1.5x: %s)\n",
           ne, spawn_us, exec_us, exec_us / spawn_us,
           exec_us / spawn_us <= 1.5 ? "met" : "MISSED");

    sj_vm_close(vm);
    unlink(file);
    rmdir(dir);
    httpd_stop();
    curl_global_cleanup();
    return 0;
}
