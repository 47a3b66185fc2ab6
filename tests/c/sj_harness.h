/*
 * sj_harness.h - end-to-end test support: run the real snailjob-lua binary
 * as a child process against the in-process emulator.
 *
 * Header-only (each test is one program). The binary comes from $SJ_BINARY
 * (CTest sets it). Each host runs in its own temporary directory, with its
 * stderr captured to <dir>/host.log for assertions.
 */
#ifndef SJ_HARNESS_H
#define SJ_HARNESS_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sj_emu.h"
#include "sj_spool.h"

static int h_failures;

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #c);                                                       \
            h_failures++;                                                      \
        }                                                                      \
    } while (0)

#define CHECKF(c, ...)                                                         \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__,   \
                    #c);                                                       \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            h_failures++;                                                      \
        }                                                                      \
    } while (0)

/* Run one test function; print "ok"/"FAIL", its name and how long it
 * took. Checks keep counting in h_failures. */
#define RUN(fn)                                                                \
    do {                                                                       \
        int before_ = h_failures;                                              \
        long long t_ = h_now();                                                \
        fn();                                                                  \
        printf("%s %s (%lld ms)\n", before_ == h_failures ? "ok  " : "FAIL",   \
               #fn, h_now() - t_);                                             \
        fflush(stdout);                                                        \
    } while (0)

/* Timing bounds scale under valgrind and sanitizers (SJ_TIME_FACTOR). */
static inline long long h_factor(void)
{
    const char *f = getenv("SJ_TIME_FACTOR");
    return f != NULL && atoi(f) > 0 ? atoi(f) : 1;
}
#define H_MS(x) ((long long)(x)*h_factor())

static inline long long h_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void h_sleep_ms(long long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A port nobody listens on right now. */
static inline int h_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static inline void h_write_file(const char *dir, const char *name,
                                const char *text)
{
    char path[1024];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

/* Whole file as a malloc'd string ("" if missing). */
static inline char *h_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    long n;

    if (f == NULL)
        return strdup("");
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    n = (long)fread(buf, 1, (size_t)n, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Remove every SNAIL_* variable from this process's environment (in a
 * child before exec, so no setting of the test's own shell leaks in). */
static inline void h_clear_snail_env(void)
{
    for (char **e = __environ; *e != NULL;) {
        if (strncmp(*e, "SNAIL_", 6) == 0) {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(strchr(*e, '=') - *e),
                     *e);
            unsetenv(name); /* shifts the rest down: look at *e again */
        } else {
            e++;
        }
    }
}

typedef struct h_host {
    pid_t pid;
    int port;
    char dir[256];
    char log[300];
} h_host;

/* A fresh working directory with executors/ inside. */
static inline void h_host_dir(h_host *h)
{
    char tmpl[] = "/tmp/sj-e2e-XXXXXX";
    char sub[300];

    memset(h, 0, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "%s", mkdtemp(tmpl));
    snprintf(sub, sizeof sub, "%s/executors", h->dir);
    mkdir(sub, 0700);
    snprintf(h->log, sizeof h->log, "%s/host.log", h->dir);
}

/*
 * Start the binary in h->dir with the given server port and extra
 * "NAME=value" settings (NULL-terminated). Executors default to
 * <dir>/executors, the beat interval to 1 s (its floor), the port to a free one
 * (h->port, kept across restarts when already set).
 */
static inline void h_host_start(h_host *h, int server_port, ...)
{
    const char *bin = getenv("SJ_BINARY");
    va_list ap;
    char buf[512];
    pid_t pid;

    if (h->port == 0)
        h->port = h_free_port();
    pid = fork();
    if (pid == 0) {
        int fd = open(h->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        dup2(fd, 1);
        if (chdir(h->dir) != 0)
            _exit(127);
        h_clear_snail_env(); /* no SNAIL_* leaks in */
        /* The default journal directory is the state dir: one per test
         * host, inside its directory. */
        unsetenv("STATE_DIRECTORY");
        snprintf(buf, sizeof buf, "%s/state", h->dir);
        setenv("XDG_STATE_HOME", buf, 1);
        setenv("SNAIL_SERVER_HOST", "127.0.0.1", 1);
        snprintf(buf, sizeof buf, "%d", server_port);
        setenv("SNAIL_SERVER_PORT", buf, 1);
        snprintf(buf, sizeof buf, "%d", h->port);
        setenv("SNAIL_HOST_PORT", buf, 1);
        setenv("SNAIL_HOST_IP", "127.0.0.1", 1);
        setenv("SNAIL_EXECUTORS", "executors", 1);
        setenv("SNAIL_BEAT_INTERVAL", "1", 1);
        setenv("SNAIL_LOG_LEVEL", "DEBUG", 1);
        setenv("SNAIL_WORKERS", "2", 1);
        va_start(ap, server_port);
        for (const char *kv; (kv = va_arg(ap, const char *)) != NULL;) {
            const char *eq = strchr(kv, '=');
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(eq - kv), kv);
            setenv(name, eq + 1, 1);
        }
        va_end(ap);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    h->pid = pid;
}

/* Signal the host and wait for it; returns its exit status (or 128+sig). */
static inline int h_host_stop(h_host *h, int sig)
{
    int status = 0;

    if (h->pid <= 0)
        return -1;
    kill(h->pid, sig);
    for (int i = 0; i < 3000; i++) { /* 30 s at most */
        if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
            h->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status)
                                     : 128 + WTERMSIG(status);
        }
        h_sleep_ms(10);
    }
    kill(h->pid, SIGKILL);
    waitpid(h->pid, &status, 0);
    h->pid = 0;
    return -1;
}

/* 1 while the host process is alive. */
static inline int h_host_alive(h_host *h)
{
    int status;
    return h->pid > 0 && waitpid(h->pid, &status, WNOHANG) == 0;
}

/* 1 if the host's log contains `needle`. */
static inline int h_log_has(h_host *h, const char *needle)
{
    char *log = h_read_file(h->log);
    int has = strstr(log, needle) != NULL;
    free(log);
    return has;
}

/* The path of the host's journal in `sub` (relative to its directory;
 * NULL: the default state dir) into buf, or "" if there is none yet. */
static inline void h_journal_path(const h_host *h, const char *sub, char *buf,
                                  size_t len)
{
    char pattern[700];
    glob_t g;

    snprintf(pattern, sizeof pattern, "%s/%s/results-%d-*.journal", h->dir,
             sub != NULL ? sub : "state/snailjob-lua", h->port);
    buf[0] = '\0';
    if (glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0)
        snprintf(buf, len, "%s", g.gl_pathv[0]);
    globfree(&g);
}

typedef struct h_jstate {
    const char *needle;
    unsigned long long open[4096];
    int n, acked;
} h_jstate;

static inline void h_jrecord(void *ud, char kind, uint64_t seq,
                             const char *body, size_t len)
{
    h_jstate *s = ud;
    if (kind == 'R' && s->n < 4096 &&
        memmem(body, len, s->needle, strlen(s->needle)) != NULL)
        s->open[s->n++] = seq;
    else if (kind == 'A')
        for (int i = 0; i < s->n; i++)
            if (s->open[i] == seq) {
                s->open[i--] = s->open[--s->n];
                s->acked++;
            }
}

/* Records of the journal at `path` whose body contains `needle`: how many
 * are pending (no acknowledgement), and in *acked how many were
 * acknowledged (may be NULL). */
static inline int h_journal_count(const char *path, const char *needle,
                                  int *acked)
{
    static h_jstate s;
    memset(&s, 0, sizeof s);
    s.needle = needle;
    if (path[0] != '\0')
        sj_spool_scan(path, h_jrecord, &s);
    if (acked != NULL)
        *acked = s.acked;
    return s.n;
}

/* VmRSS of process `pid` in kB, -1 if unreadable. */
static inline long h_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* Fill the file system holding `dir` with <dir>/filler until not one
 * byte more fits (full-disk tests on a small tmpfs). */
static inline void h_fill_disk(const char *dir)
{
    char path[600], block[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/filler", dir);
    memset(block, 'x', sizeof block);
    if ((f = fopen(path, "w")) == NULL)
        return;
    setvbuf(f, NULL, _IONBF, 0);
    while (fwrite(block, 1, sizeof block, f) == sizeof block)
        ;
    while (fwrite(block, 1, 1, f) == 1)
        ;
    fclose(f);
}

/* Occurrences of `needle` in the host's log. */
static inline int h_log_count(h_host *h, const char *needle)
{
    char *log = h_read_file(h->log);
    int n = 0;

    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(log);
    return n;
}

/* Print the last `max` bytes of the host's log to stderr, titled. */
static inline void h_log_tail(h_host *h, const char *title, size_t max)
{
    char *log = h_read_file(h->log);
    size_t len = strlen(log);
    fprintf(stderr, "---- %s log (tail) ----\n%s\n", title,
            len > max ? log + len - max : log);
    free(log);
}

/* Remove the host's directory. */
static inline void h_host_cleanup(h_host *h)
{
    char cmd[400];
    if (getenv("SJ_KEEP") != NULL) {
        fprintf(stderr, "kept %s\n", h->dir);
        return;
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", h->dir);
}

/* ---- running the binary as a command ------------------------------------ */

typedef struct h_cmd {
    int code; /* exit status, 128+sig, or -1 when it had to be killed */
    char *out;
    char *err;
    long long ms;
    long max_rss_kb; /* the child's peak resident set */
} h_cmd;

static inline void h_cmd_free(h_cmd *c)
{
    free(c->out);
    free(c->err);
    memset(c, 0, sizeof *c);
}

/*
 * Run SJ_BINARY with `args` (NULL-terminated) in `dir`, with
 * SNAIL_EXECUTORS=executors, no inherited SNAIL_*, and the extra
 * "NAME=value" settings of `env` (NULL-terminated, may be NULL). stdout and
 * stderr are captured (in dir/stdout.txt, dir/stderr.txt). SIGINT after
 * `sigint_ms` (> 0), killed after `limit_ms`.
 */
static inline void h_run_cmd(const char *dir, const char *const *args,
                             const char *const *env, long long limit_ms,
                             long long sigint_ms, h_cmd *c)
{
    int interrupted = 0;
    const char *bin = getenv("SJ_BINARY");
    char outp[400], errp[400];
    const char *argv[32];
    long long t0 = h_now();
    int status = 0, n = 0;
    struct rusage ru;
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
    memset(&ru, 0, sizeof ru);
    for (;;) {
        if (wait4(pid, &status, WNOHANG, &ru) == pid) {
            c->code = WIFEXITED(status) ? WEXITSTATUS(status)
                                        : 128 + WTERMSIG(status);
            break;
        }
        if (sigint_ms > 0 && !interrupted && h_now() - t0 > sigint_ms) {
            kill(pid, SIGINT);
            interrupted = 1;
        }
        if (h_now() - t0 > limit_ms) {
            kill(pid, SIGKILL);
            wait4(pid, &status, 0, &ru);
            break;
        }
        h_sleep_ms(5);
    }
    c->ms = h_now() - t0;
    c->max_rss_kb = ru.ru_maxrss;
    c->out = h_read_file(outp);
    c->err = h_read_file(errp);
}

/* An emulator on 127.0.0.1:*port (0: any free port, written back), its
 * ids counting from id_base (0: the emulator's default); NULL with a
 * failed check when it does not start. */
static inline sj_emu *h_emu_up(int64_t id_base, int *port)
{
    sj_emu_config cfg;
    sj_emu *emu = NULL;
    char addr[64];

    memset(&cfg, 0, sizeof cfg);
    cfg.srv.id_base = id_base;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", *port);
    if (sj_emu_open(&cfg, addr, &emu, port) != 0) {
        CHECKF(0, "emulator did not start on %s", addr);
        return NULL;
    }
    return emu;
}

/* Wait until the host `h` is a live node of `srv` and `executor` is
 * registered; 0 with a failed check after timeout_ms (scaled). */
static inline int h_wait_ready(sj_srv *srv, const h_host *h,
                               const char *executor, int timeout_ms)
{
    long long until = h_now() + H_MS(timeout_ms);

    while (h_now() < until) {
        sj_srv_node_info *nodes;
        size_t n;
        int found = 0;

        if (sj_srv_nodes(srv, &nodes, &n) == 0) {
            for (size_t i = 0; i < n; i++)
                found |= nodes[i].port == h->port && nodes[i].alive;
            sj_srv_nodes_free(nodes, n);
        }
        if (found && sj_srv_has_executor(srv, executor))
            return 1;
        h_sleep_ms(20);
    }
    CHECKF(0, "host on port %d never registered (log %s)", h->port, h->log);
    return 0;
}

/* A cluster job of `executor` with `args` for the one node `target`
 * ("ip:port"), executor timeout 20 s. The target list is static: each call
 * overwrites the previous job's. */
static inline sj_srv_job h_job_on(int64_t job_id, const char *target,
                                  const char *executor, const char *args)
{
    static const char *targets[1];
    sj_srv_job j;

    memset(&j, 0, sizeof j);
    targets[0] = target;
    j.job_id = job_id;
    j.task_type = SJ_SRV_CLUSTER;
    j.executor_info = executor;
    j.args = args;
    j.executor_timeout = 20;
    j.targets = targets;
    j.n_targets = 1;
    return j;
}

#endif
