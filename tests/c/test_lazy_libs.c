/*
 * The host's optional libraries (issue 14, idle RSS): libcurl and
 * libmicrohttpd are loaded on first use (sj_dl), and the service manager
 * is notified without libsystemd (sj_notify).
 *
 *   sj_dl       a table filled from a real library (libm's cos), a missing
 *               library and a missing symbol named in the error, the table
 *               untouched on failure;
 *   sj_notify   unset or empty NOTIFY_SOCKET is a no-op; a datagram on a
 *               path socket and on an abstract one; a relative name and a
 *               socket nobody listens on are errors;
 *   the host    started against the emulator, maps none of libcurl,
 *               libmicrohttpd, libsystemd or gnutls while idle; its first
 *               sj.http call maps libcurl and works; with metrics_listen
 *               set, libmicrohttpd is mapped and /metrics answers.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sj_dl.h"
#include "sj_emu.h"
#include "sj_error.h"
#include "sj_harness.h"
#include "sj_log.h"
#include "sj_notify.h"
#include "sj_srv.h"

/* ---- sj_dl ------------------------------------------------------------- */

typedef struct math_api {
    double (*cos)(double);
    double (*sqrt)(double);
} math_api;

static void test_dl_load(void)
{
    static const sj_dl_sym syms[] = {SJ_DL_SYM(math_api, cos, "cos"),
                                     SJ_DL_SYM(math_api, sqrt, "sqrt")};
    math_api m = {NULL, NULL};
    char err[256] = "";

    CHECK(sj_dl_load("libm.so.6", syms, 2, &m, err, sizeof err) == 0);
    CHECK(m.cos != NULL && m.sqrt != NULL);
    if (m.cos != NULL && m.sqrt != NULL) {
        CHECK(m.cos(0.0) == 1.0);
        CHECK(m.sqrt(16.0) == 4.0);
    }
}

static void test_dl_missing(void)
{
    static const sj_dl_sym syms[] = {
        SJ_DL_SYM(math_api, cos, "cos"),
        SJ_DL_SYM(math_api, sqrt, "sj_no_such_symbol")};
    math_api m = {NULL, NULL};
    char err[256] = "";

    CHECK(sj_dl_load("libsj-no-such-library.so.7", syms, 1, &m, err,
                     sizeof err) == SJ_ENOENT);
    CHECKF(strstr(err, "libsj-no-such-library.so.7") != NULL, "err: %s", err);
    CHECK(m.cos == NULL);

    err[0] = '\0';
    CHECK(sj_dl_load("libm.so.6", syms, 2, &m, err, sizeof err) == SJ_ENOENT);
    CHECKF(strstr(err, "sj_no_such_symbol") != NULL &&
               strstr(err, "libm.so.6") != NULL,
           "err: %s", err);
    CHECK(m.cos == NULL && m.sqrt == NULL); /* all or nothing */
}

/* ---- sj_notify --------------------------------------------------------- */

/* A datagram socket bound to `name` (a path, or "@x" abstract). */
static int dgram_bound(const char *name)
{
    struct sockaddr_un sa;
    size_t n = strlen(name);
    socklen_t len;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, name, n);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) != 0) {
        CHECKF(0, "cannot bind %s", name);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The next datagram on fd ("" if none within 2 s). */
static void received(int fd, char *buf, size_t len)
{
    struct timeval tv = {2, 0};
    ssize_t n;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    n = recv(fd, buf, len - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
}

static void test_notify(void)
{
    char dir[] = "/tmp/sj-notify-XXXXXX", path[128], abs_name[64], buf[64];
    int fd;

    CHECK(mkdtemp(dir) != NULL);
    unsetenv("NOTIFY_SOCKET");
    CHECK(sj_notify("READY=1") == 0);
    setenv("NOTIFY_SOCKET", "", 1);
    CHECK(sj_notify("READY=1") == 0);

    snprintf(path, sizeof path, "%s/notify", dir);
    if ((fd = dgram_bound(path)) >= 0) {
        setenv("NOTIFY_SOCKET", path, 1);
        CHECK(sj_notify("READY=1") == 0);
        received(fd, buf, sizeof buf);
        CHECKF(strcmp(buf, "READY=1") == 0, "got '%s'", buf);
        CHECK(sj_notify("STOPPING=1") == 0);
        received(fd, buf, sizeof buf);
        CHECKF(strcmp(buf, "STOPPING=1") == 0, "got '%s'", buf);
        close(fd);
    }
    unlink(path);

    snprintf(abs_name, sizeof abs_name, "@sj-notify-test-%d", (int)getpid());
    if ((fd = dgram_bound(abs_name)) >= 0) {
        setenv("NOTIFY_SOCKET", abs_name, 1);
        CHECK(sj_notify("READY=1") == 0);
        received(fd, buf, sizeof buf);
        CHECKF(strcmp(buf, "READY=1") == 0, "got '%s'", buf);
        close(fd);
    }

    setenv("NOTIFY_SOCKET", "relative/notify", 1);
    CHECK(sj_notify("READY=1") == SJ_EINVAL);
    setenv("NOTIFY_SOCKET", path, 1); /* removed: nobody listens */
    CHECK(sj_notify("READY=1") == SJ_EIO);
    unsetenv("NOTIFY_SOCKET");
    rmdir(dir);
}

/* ---- the host ---------------------------------------------------------- */

/* 1 if the process maps a file whose name contains `lib`. */
static int maps_lib(pid_t pid, const char *lib)
{
    char path[64], line[512];
    int found = 0;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, lib) != NULL;
    fclose(f);
    return found;
}

/* A GET to a local port nobody listens on: libcurl runs and fails. */
#define HTTP_JOB                                                               \
    "local sj = require 'snailjob'\n"                                          \
    "sj.job('httpJob', function()\n"                                           \
    "  local ok, err = pcall(sj.http.get, 'http://127.0.0.1:1/x',\n"           \
    "                        {timeout = 5})\n"                                 \
    "  if ok then return sj.failure('a response from port 1') end\n"           \
    "  return sj.success(tostring(err))\n"                                     \
    "end)\n"

static void test_host(void)
{
    static const char *const optional[] = {"libcurl", "libmicrohttpd",
                                           "libsystemd", "libgnutls"};
    int port = 0;
    sj_emu *emu = h_emu_up(0, &port);
    sj_srv *srv;
    h_host h;
    char target[64];
    int64_t batch = 0;

    if (emu == NULL)
        return;
    srv = sj_emu_srv(emu);
    h_host_dir(&h);
    h_write_file(h.dir, "executors/http.lua", HTTP_JOB);
    h_host_start(&h, port, "no_proxy=*", "NO_PROXY=*", NULL);
    if (!h_wait_ready(srv, &h, "httpJob", 10000))
        goto done;
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
        CHECKF(maps_lib(h.pid, optional[i]) == 0, "idle host maps %s",
               optional[i]);

    snprintf(target, sizeof target, "127.0.0.1:%d", h.port);
    sj_srv_job j = h_job_on(14, target, "httpJob", NULL);
    CHECK(sj_srv_trigger(srv, &j, &batch) == 0);
    {
        int st = sj_srv_wait_batch(srv, batch, (int)H_MS(10000));
        CHECKF(st == SJ_SRV_SUCCESS, "httpJob: status %d", st);
    }
    {
        sj_srv_task_info *v = NULL;
        size_t n = 0;
        if (sj_srv_batch_tasks(srv, batch, &v, &n) == 0 && n == 1)
            CHECKF(v[0].result != NULL &&
                       strstr(v[0].result, "sj.http: GET") != NULL,
                   "result %s", v[0].result ? v[0].result : "(none)");
        sj_srv_tasks_free(v, n);
    }
    CHECK(maps_lib(h.pid, "libcurl") == 1);
done:
    CHECK(h_host_stop(&h, SIGTERM) == 0);
    h_host_cleanup(&h);
    sj_emu_destroy(emu);
}

/* metrics_listen: libmicrohttpd is loaded at start and serves. */
static void test_host_metrics(void)
{
    int port = 0, mport = h_free_port();
    sj_emu *emu = h_emu_up(0, &port);
    h_host h;
    char listen[64], url[96];

    if (emu == NULL)
        return;
    h_host_dir(&h);
    h_write_file(h.dir, "executors/http.lua", HTTP_JOB);
    snprintf(listen, sizeof listen, "SNAIL_METRICS_LISTEN=127.0.0.1:%d", mport);
    h_host_start(&h, port, listen, NULL);
    if (!h_wait_ready(sj_emu_srv(emu), &h, "httpJob", 10000))
        goto done;
    CHECK(maps_lib(h.pid, "libmicrohttpd") == 1);
    CHECK(maps_lib(h.pid, "libcurl") == 0);
    {
        /* a plain HTTP GET over a socket: the test links no HTTP client */
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)mport),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        char req[] = "GET /metrics HTTP/1.0\r\n\r\n", buf[512] = "";
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        ssize_t got = -1;
        snprintf(url, sizeof url, "127.0.0.1:%d/metrics", mport);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
            write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1))
            got = read(fd, buf, sizeof buf - 1);
        if (got > 0)
            buf[got] = '\0';
        CHECKF(strncmp(buf, "HTTP/1.0 200", 12) == 0 ||
                   strncmp(buf, "HTTP/1.1 200", 12) == 0,
               "GET %s: '%.60s'", url, buf);
        if (fd >= 0)
            close(fd);
    }
done:
    CHECK(h_host_stop(&h, SIGTERM) == 0);
    h_host_cleanup(&h);
    sj_emu_destroy(emu);
}

int main(void)
{
    long long t0 = h_now();

    if (getenv("SJ_BINARY") == NULL) {
        fprintf(stderr, "test_lazy_libs: SJ_BINARY is not set\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sj_log_set_level(SJ_LOG_ERROR);
    RUN(test_dl_load);
    RUN(test_dl_missing);
    RUN(test_notify);
    RUN(test_host);
    RUN(test_host_metrics);
    printf("test_lazy_libs: %lld ms\n", h_now() - t0);
    if (h_failures == 0)
        printf("test_lazy_libs: all checks passed\n");
    else
        fprintf(stderr, "test_lazy_libs: %d check(s) failed\n", h_failures);
    return h_failures != 0;
}
