/*
 * snailjob-lua: a SnailJob job client whose executors are Lua scripts.
 *
 * main() wires the units together and owns the process's life: signals,
 * start-up order (listener before the first heartbeat, workers loaded
 * before the first dispatch is accepted) and orderly shutdown.
 */
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sj_builtins.h"
#include "sj_check.h"
#include "sj_config.h"
#include "sj_endpoint.h"
#include "sj_error.h"
#include "sj_files.h"
#include "sj_limits.h"
#include "sj_link.h"
#include "sj_log.h"
#include "sj_metrics.h"
#include "sj_notify.h"
#include "sj_pool.h"
#include "sj_reload.h"
#include "sj_run_cli.h"
#include "sj_transport.h"
#include "sj_upstream.h"
#include "sj_vm.h"

/* Exit codes (documented in --help and README). */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,     /* a run failed, or the host could not start */
    EXIT_USAGE = 2,    /* bad command line or configuration */
    EXIT_EXECUTORS = 3 /* an executor file failed to load */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: snailjob-lua [-c FILE] [--print-config]\n"
            "       snailjob-lua [-c FILE] run EXECUTOR [run options]\n"
            "       snailjob-lua [-c FILE] replay FILE [--json]\n"
            "       snailjob-lua [-c FILE] check\n"
            "       snailjob-lua --help | --version\n"
            "\n"
            "Runs a SnailJob client whose job executors are Lua scripts.\n"
            "\n"
            "  -c, --config FILE  Lua config file returning a table\n"
            "      --print-config print every setting, its value and its\n"
            "                     source, then exit\n"
            "  -h, --help         this text\n"
            "  -V, --version      the version\n"
            "\n"
            "run EXECUTOR: run one executor (one stage, or a workflow chain)\n"
            "end to end with no server (snailjob-lua run --help).\n"
            "\n"
            "replay FILE: rerun a dispatch recorded under record_dir\n"
            "(snailjob-lua replay --help).\n"
            "\n"
            "check: validate the config, load every executor file, list the\n"
            "executors and their kinds and what lua_allow gives back to the\n"
            "sandbox, send one heartbeat to the server.\n"
            "  Exit status: 0 all good; 1 server unreachable or token\n"
            "  refused; 2 configuration error; 3 an executor file failed to\n"
            "  load (or did not finish within load_timeout).\n"
            "\n"
            "Settings come from SNAIL_* environment variables, then ./.env,\n"
            "then the config file, then defaults (--print-config lists "
            "them).\n"
            "\n"
            "Signals: SIGINT/SIGTERM drain: the server is told state=down,\n"
            "new dispatches are refused, queued tasks are reported FAIL,\n"
            "running ones get shutdown_grace (30 s) and are then\n"
            "interrupted and reported FAIL; exit within the grace + 2 s,\n"
            "a task stuck in a C call included. A second SIGINT/SIGTERM\n"
            "exits at once (exit status 1; what is unacknowledged stays in\n"
            "the journal). SIGHUP reloads the executor files (so does\n"
            "changing one of them or a module they require).\n"
            "SIGUSR1 reopens log_file (after logrotate renamed it).\n"
            "\n"
            "Default log level: INFO for the host, WARN for run and check\n"
            "(SNAIL_LOG_LEVEL overrides both). man snailjob-lua has more.\n"
            "\n"
            "Exit status: 0 ok; 1 could not start or run; 2 bad usage or\n"
            "configuration; 3 an executor file failed to load.\n");
}

/* "c-" + 18 random digits: new at each start, no '@' (protocol.md §3.1). */
static void make_host_id(char *buf, size_t len)
{
    unsigned char r[18];
    size_t i;

    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        for (i = 0; i < sizeof r; i++)
            r[i] = (unsigned char)(rand() ^ getpid());
    snprintf(buf, len, "c-");
    for (i = 0; i < sizeof r && i + 3 < len; i++)
        buf[2 + i] = (char)('0' + r[i] % 10);
    buf[2 + i] = '\0';
}

static void print_config(const sj_config *cfg)
{
    sj_config_item it;

    for (size_t i = 0; i < sj_config_count(); i++) {
        sj_config_item_get(cfg, i, &it);
        /* "…" (the token's mask) is 3 bytes and one column */
        int width = 36 + (strstr(it.value, "\xe2\x80\xa6") ? 2 : 0);
        printf("%-28s %-*s %-8s%s%s\n", it.env, width, it.value,
               sj_config_source_name(it.source), it.origin ? " " : "",
               it.origin ? it.origin : "");
    }
}

/* The endpoint must exist before the workers (the listener is up before
 * the first heartbeat); until they are, dispatches are refused. */
typedef struct host {
    _Atomic(sj_pool *) pool;
    sj_upstream *up; /* for the metrics collector */
} host;

/* sj_metrics_collect_fn: the values other units own, at scrape time. */
static void host_collect(void *ud, sj_metrics_snapshot *s)
{
    host *h = ud;
    sj_pool *pool = atomic_load(&h->pool);
    sj_upstream_stats st;

    if (pool != NULL) {
        sj_pool_counts(pool, &s->queued, &s->running);
        s->generation = sj_pool_generation(pool);
        s->n_workers =
            sj_pool_worker_memory(pool, s->lua_bytes, SJ_METRICS_MAX_WORKERS);
    }
    if (h->up != NULL) {
        sj_upstream_get_stats(h->up, &st);
        s->log_lines_sent = st.log_lines_sent;
        s->log_lines_dropped = st.log_lines_dropped;
        s->journal_pending = st.reports_pending;
        s->journal_oldest_age_s = st.oldest_report_age_ms / 1000.0;
        s->reachable = st.reachable;
        s->last_ok_ms = st.last_ok_ms;
    }
}

/* "host:port" for gRPC, IPv6 literals in brackets. */
static void listen_addr(char *buf, size_t n, const char *host, int port)
{
    if (strchr(host, ':') != NULL && host[0] != '[')
        snprintf(buf, n, "[%s]:%d", host, port);
    else
        snprintf(buf, n, "%s:%d", host, port);
}

static int host_dispatch(void *ud, sj_task *t, char *why, size_t whylen)
{
    sj_pool *pool = atomic_load(&((host *)ud)->pool);
    if (pool == NULL) {
        snprintf(why, whylen, "snailjob-lua is starting or stopping");
        return SJ_ECLOSED;
    }
    return sj_pool_dispatch(pool, t, why, whylen);
}

static void host_stop(void *ud, int64_t batch)
{
    sj_pool *pool = atomic_load(&((host *)ud)->pool);
    if (pool != NULL)
        sj_pool_stop_batch(pool, batch);
}

/* Wait until no task runs, `until` (monotonic ms) passes, or a second
 * SIGINT/SIGTERM arrives (returns 1). */
static int wait_running(sj_pool *pool, const sigset_t *set, long long until)
{
    while (sj_pool_running(pool) > 0 && sj_mono_ms() < until) {
        struct timespec ts = {0, 20 * 1000000};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM)
            return 1;
    }
    return 0;
}

/* A second signal while draining: leave now; what is not acknowledged
 * stays in the journal (synced) for the next start. */
static void exit_now(sj_upstream *up)
{
    size_t left = sj_upstream_flush_wait(up, 0);
    SJ_WARN("second signal: exiting at once; %zu result(s) not acknowledged "
            "stay in the journal",
            left);
    fflush(NULL);
    _exit(EXIT_FAIL);
}

/*
 * Drain (issue 11): tell the server state=down and refuse new dispatches
 * (the listener stays up to say so), report the queued tasks FAIL at
 * once, give the running ones shutdown_grace, interrupt them, and give up
 * on those that do not come back within 1 s (a worker stuck in C): they
 * are reported FAIL too, and the process exits without joining them
 * (returns 1: the caller must not free what they use). Logs and results
 * are flushed within the grace + 2 s in all.
 */
static int drain(const sj_config *cfg, sj_pool *pool, sj_upstream *up,
                 const sigset_t *set, int sig)
{
    long long t0 = sj_mono_ms(),
              grace = (long long)(cfg->shutdown_grace * 1000);
    long long end = t0 + grace + 1800; /* the exit bound, with a margin */
    size_t queued, running, stuck;

    queued = sj_pool_drain_begin(pool);
    sj_upstream_set_down(up);
    sj_notify("STOPPING=1");
    running = sj_pool_running(pool);
    SJ_INFO("%s: draining: the server is told state=down, new dispatches are "
            "refused; %zu queued task(s) reported FAIL, %zu running get %.0f "
            "s (shutdown_grace)",
            sig == SIGINT ? "SIGINT" : "SIGTERM", queued, running,
            cfg->shutdown_grace);
    if (wait_running(pool, set, t0 + grace))
        exit_now(up);
    if ((running = sj_pool_running(pool)) > 0) {
        SJ_WARN("shutdown: interrupting %zu running task(s) (reported FAIL)",
                running);
        sj_pool_interrupt(pool);
        if (wait_running(pool, set, sj_mono_ms() + 1000))
            exit_now(up);
    }
    if ((stuck = sj_pool_abandon(pool)) == 0)
        return 0;
    {
        long long left = end - sj_mono_ms();
        size_t unacked = sj_upstream_flush_wait(up, left > 0 ? (int)left : 0);
        SJ_WARN("shutdown: exiting with %zu worker(s) still stuck; %zu "
                "result(s) not acknowledged stay in the journal",
                stuck, unacked);
    }
    return 1;
}

/* Channel reconnect cap: a quarter of the beat interval, 20 ms to 1 s. */
static int reconnect_ms(const sj_config *cfg)
{
    int ms = (int)(cfg->beat_interval * 1000.0 / 4);
    return ms < 20 ? 20 : ms > 1000 ? 1000 : ms;
}

/* One load of every executor file, on this thread, under the load limits
 * (signals blocked here stay pending and end a load that loops). */
static int preload(const sj_config *cfg, const sj_files *files, char *err,
                   size_t errlen)
{
    sj_vm_options vo = {.files = (const char *const *)files->paths,
                        .n_files = files->n,
                        .watch_signals = true};
    sj_vm *vm = NULL;
    sj_vm_options_from_config(&vo, cfg);
    int rc = sj_vm_open(&vo, &vm, err, errlen);
    sj_vm_close(vm);
    return rc;
}

static int serve(const sj_config *cfg, const sj_files *files)
{
    host h = {NULL, NULL};
    sj_endpoint ep = {.token = cfg->token,
                      .record_dir = cfg->record_dir,
                      .ops = {host_dispatch, host_stop, &h}};
    sj_loop *loop = NULL;
    sj_server *srv = NULL;
    sj_link *link = NULL;
    sj_upstream *up = NULL;
    sj_pool *pool = NULL;
    char addr[300], target[300], host_id[32], err[1024];
    int port = 0, rc, code = EXIT_FAIL, sig;
    sigset_t set;

    /* Signals go to this thread only: block them before any thread. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    sj_metrics_set_state(SJ_METRICS_STARTING);
    if (cfg->metrics_listen[0] != '\0') {
        int mport = 0;
        if (sj_metrics_serve(cfg->metrics_listen, cfg->beat_interval, &mport,
                             err, sizeof err) != 0) {
            SJ_ERROR("%s", err);
            return EXIT_FAIL;
        }
        SJ_INFO("metrics: http://%s/metrics and /healthz (port %d)",
                cfg->metrics_listen, mport);
    }
    if (sj_check_host_ip(cfg, err, sizeof err))
        SJ_WARN("%s", err);
    /* Load the executor files once before listening or beating: a file
     * that fails, loops (load_timeout) or is ended by a signal stops the
     * start here, with nothing announced. */
    if ((rc = preload(cfg, files, err, sizeof err)) != 0) {
        if (rc == SJ_ECANCELED) {
            SJ_INFO("signal while loading the executor files: %s; "
                    "shutting down",
                    err);
            sj_metrics_unserve();
            return EXIT_OK;
        }
        SJ_ERROR("%s", err);
        sj_metrics_unserve();
        return rc == SJ_ELUA || rc == SJ_ENOENT ? EXIT_EXECUTORS : EXIT_FAIL;
    }
    sj_transport_init();
    make_host_id(host_id, sizeof host_id);
    listen_addr(addr, sizeof addr, cfg->bind_host, cfg->host_port);
    /* One thread takes dispatches and the server's answers alike: the one
     * that reads a dispatch off the socket handles it (sj_transport.h). */
    if ((rc = sj_loop_start("grpc", &loop)) != 0) {
        SJ_ERROR("cannot start the gRPC thread: %s", sj_strerror(rc));
        goto fail_transport;
    }
    if ((rc = sj_server_start_on(loop, addr, sj_endpoint_handle, &ep, &srv,
                                 &port))) {
        SJ_ERROR("cannot listen on %s: port %d is in use or %s is not an "
                 "address of this machine (host_port, bind_host)",
                 addr, cfg->host_port, cfg->bind_host);
        goto fail_loop;
    }
    snprintf(target, sizeof target, "%s:%d", cfg->server_host,
             cfg->server_port);
    /* Reconnect well within one heartbeat interval (at most every 1 s), so
     * the host re-registers within about one interval of the server's
     * return (issue 2). */
    if ((rc = sj_link_grpc_opts(target, reconnect_ms(cfg), loop, &link)) != 0) {
        SJ_ERROR("cannot open a channel to %s: %s", target, sj_strerror(rc));
        goto fail_server;
    }
    sj_upstream_options uo = {.cfg = cfg,
                              .host_id = host_id,
                              .host_port = port,
                              .link = link,
                              .hold_beats = 1};
    if ((rc = sj_upstream_start(&uo, &up, err, sizeof err)) != 0) {
        SJ_ERROR("%s", err);
        link->close(link);
        if (rc == SJ_EEXISTS || rc == SJ_ECONFIG)
            code = EXIT_USAGE; /* another host on this journal */
        goto fail_server;
    }
    h.up = up;
    sj_builtins_log_start(sj_builtins_mask(cfg->builtins), cfg->http_allow,
                          cfg->group_name);
    sj_pool_options po = {.workers = cfg->workers,
                          .queue_size = cfg->queue_size,
                          .files = (const char *const *)files->paths,
                          .n_files = files->n,
                          .up = up};
    sj_pool_options_from_config(&po, cfg); /* result_max, queue_max_bytes
                                              too */
    if ((rc = sj_pool_start(&po, &pool, err, sizeof err)) != 0) {
        SJ_ERROR("%s", err);
        code = rc == SJ_ELUA ? EXIT_EXECUTORS : EXIT_FAIL;
        goto fail_upstream;
    }
    {
        const char *const *names, *const *kinds;
        size_t n = sj_pool_executors(pool, &names, &kinds);
        /* Dispatches are accepted before the server hears of us. */
        atomic_store(&h.pool, pool);
        sj_upstream_set_executors(up, names, n);
        SJ_INFO("snailjob-lua %s: host %s listening on port %d, %d "
                "worker(s), %zu executor(s), server %s",
                SJ_VERSION, host_id, port, cfg->workers, n, target);
        for (size_t i = 0; i < n; i++)
            SJ_INFO("  executor %s (%s)", names[i], kinds[i]);
    }
    sj_metrics_set_collector(host_collect, &h);
    sj_metrics_set_state(SJ_METRICS_SERVING);
    if (sj_notify("READY=1") != 0)
        SJ_WARN("cannot send READY=1 to the service manager: NOTIFY_SOCKET "
                "'%s' is not an AF_UNIX datagram socket that listens",
                getenv("NOTIFY_SOCKET"));
    sj_reload_options ro = {.spec = cfg->executors, .pool = pool, .up = up};
    sj_reload *reload = NULL;
    if (sj_reload_start(&ro, &reload) != 0)
        SJ_WARN("hot reload is unavailable (cannot start the watcher)");

    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            if (reload != NULL)
                sj_reload_kick(reload, "SIGHUP");
            continue;
        }
        if (sig == SIGUSR1) {
            if (sj_log_reopen() != 0)
                SJ_ERROR("SIGUSR1: cannot reopen log_file '%s': %s; logging "
                         "on to the old file",
                         cfg->log_file, strerror(errno));
            else
                SJ_INFO("SIGUSR1: log file reopened");
            continue;
        }
        SJ_INFO("%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        sj_limits_abort_loads(); /* a reload's load that loops ends now */
        break;
    }
    code = EXIT_OK;

    sj_metrics_set_state(SJ_METRICS_DRAINING);
    sj_reload_stop(reload);
    long long end =
        sj_mono_ms() + (long long)(cfg->shutdown_grace * 1000) + 1800;
    if (drain(cfg, pool, up, &set, sig)) {
        fflush(NULL);
        _exit(code); /* stuck workers: nothing can be freed under them */
    }
    sj_metrics_set_collector(NULL, NULL); /* before what it reads goes */
    atomic_store(&h.pool, NULL);
    sj_server_stop(srv); /* no new dispatches */
    srv = NULL;
    sj_pool_stop(pool);
    {
        long long left = end - sj_mono_ms();
        sj_upstream_stop(up, left > 500 ? (int)left : 500);
    }
    up = NULL;
fail_upstream:
    sj_metrics_set_collector(NULL, NULL);
    sj_upstream_stop(up, 3000);
fail_server:
    sj_server_stop(srv);
    sj_endpoint_close(&ep);
fail_loop:
    sj_loop_stop(loop); /* after the server and the link it carries */
fail_transport:
    sj_transport_shutdown();
    sj_metrics_unserve();
    return code;
}

/* 1 when `host` (bind_host) names an address to listen on. */
static int resolvable(const char *host)
{
    struct addrinfo hints, *ai = NULL;
    int ok;

    memset(&hints, 0, sizeof hints);
    hints.ai_flags = AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    ok = getaddrinfo(host, NULL, &hints, &ai) == 0;
    if (ai != NULL)
        freeaddrinfo(ai);
    return ok;
}

/* ---- subcommands: run, check -------------------------------------------- */

/* Log format and the secret to mask, as soon as the config is known. */
static void apply_log_settings(const sj_config *cfg)
{
    sj_log_set_secret(cfg->token);
    sj_log_set_format((sj_log_format)sj_log_format_parse(cfg->log_format));
    sj_config_warn(cfg);
}

/* Config, log and executor files as the host would set them up, but quiet
 * (WARN) unless a log level was configured: their output is the report.
 * EXIT_OK or EXIT_USAGE (message printed). */
static int setup(const char *cmd, const char *file, sj_config *cfg,
                 sj_files *files)
{
    sj_config_item it;
    int level;
    char err[1024];

    memset(files, 0, sizeof *files);
    if (sj_config_load(cfg, file, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "snailjob-lua %s: config: %s\n", cmd, err);
        return EXIT_USAGE;
    }
    apply_log_settings(cfg);
    level = sj_log_level_parse(cfg->log_level);
    for (size_t i = 0; i < sj_config_count(); i++) {
        sj_config_item_get(cfg, i, &it);
        if (strcmp(it.key, "log_level") == 0 && it.source == SJ_SRC_DEFAULT)
            level = SJ_LOG_WARN;
    }
    sj_log_set_level((sj_log_level)level);
    if (cfg->log_file[0] != '\0' && sj_log_open_file(cfg->log_file) != 0) {
        fprintf(stderr, "snailjob-lua %s: config: log_file '%s': %s\n", cmd,
                cfg->log_file, strerror(errno));
        sj_config_free(cfg);
        return EXIT_USAGE;
    }
    if (sj_files_expand(cfg->executors, files, err, sizeof err) != 0) {
        fprintf(stderr, "snailjob-lua %s: config: %s\n", cmd, err);
        sj_log_open_file(NULL);
        sj_config_free(cfg);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static void teardown(sj_config *cfg, sj_files *files)
{
    sj_files_free(files);
    sj_log_open_file(NULL);
    sj_config_free(cfg);
}

static const sj_run_setup run_setup = {setup, teardown};

static void check_usage(FILE *out)
{
    fprintf(out,
            "usage: snailjob-lua [-c FILE] check\n"
            "\n"
            "Validates the config, loads every executor file, lists the\n"
            "executors and their kinds and what lua_allow gives back to the\n"
            "sandbox, and sends one heartbeat to the server.\n"
            "\n"
            "  -c, --config FILE  Lua config file returning a table\n"
            "\n"
            "Exit status: 0 all good; 1 server unreachable or token refused;\n"
            "2 configuration error; 3 an executor file failed to load (or\n"
            "did not finish within load_timeout).\n");
}

/* argv: what follows "check". */
static int cmd_check(int argc, char **argv, const char *file)
{
    sj_config cfg;
    sj_files files;
    char err[2048];
    int code, rc;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) &&
            i + 1 < argc) {
            file = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            file = a + 9;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            check_usage(stdout);
            return EXIT_OK;
        } else {
            fprintf(stderr, "snailjob-lua check: unknown argument '%s'\n\n", a);
            check_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if ((code = setup("check", file, &cfg, &files)) != EXIT_OK)
        return code;
    printf("config: ok (%s)\n", file != NULL ? file : "no config file");
    if (files.n == 0) {
        fprintf(stderr, "snailjob-lua check: config: no executor files "
                        "configured (SNAIL_EXECUTORS / executors)\n");
        teardown(&cfg, &files);
        return EXIT_USAGE;
    }
    rc = sj_check_executors(&cfg, (const char *const *)files.paths, files.n,
                            stdout, err, sizeof err);
    if (rc != 0) {
        fflush(stdout);
        fprintf(stderr, "snailjob-lua check: executors: %s\n", err);
        teardown(&cfg, &files);
        return EXIT_EXECUTORS;
    }
    if (sj_check_host_ip(&cfg, err, sizeof err))
        printf("warning: %s\n", err);
    rc = sj_check_server(&cfg, 3000, stdout, err, sizeof err);
    fflush(stdout);
    if (rc != 0) {
        fprintf(stderr, "snailjob-lua check: %s\n", err);
        code = EXIT_FAIL;
    } else {
        printf("check: ok\n");
    }
    teardown(&cfg, &files);
    return code;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int print = 0, code;
    sj_config cfg;
    sj_files files;
    char err[1024];

    /* Before any thread: one malloc arena instead of glibc's 8 per core.
     * Workers and gRPC threads otherwise each keep an arena of freed pages
     * after a burst (bench_jobs: +6 MB RSS after 100k jobs; +2.2 MB with
     * two arenas and the pool's idle malloc_trim; +2.0 MB with one). The
     * per-thread tcache serves most small allocations without the arena
     * lock, and jobs/s did not drop (BENCHMARKS.md). */
    mallopt(M_ARENA_MAX, 1);
    /* Every mode runs handlers (`run`, `check` loads them): a peer or a
     * child that goes away is an EPIPE to the writer, never the end of
     * the process (sj.http over TLS, sj.exec's stdin). */
    signal(SIGPIPE, SIG_IGN);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("snailjob-lua %s\n", SJ_VERSION);
            return EXIT_OK;
        } else if (strcmp(a, "--print-config") == 0) {
            print = 1;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) &&
                   i + 1 < argc) {
            file = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            file = a + 9;
        } else if (strcmp(a, "run") == 0) {
            return sj_run_cli(argc - i - 1, argv + i + 1, file, &run_setup);
        } else if (strcmp(a, "replay") == 0) {
            return sj_replay_cli(argc - i - 1, argv + i + 1, file, &run_setup);
        } else if (strcmp(a, "check") == 0) {
            return cmd_check(argc - i - 1, argv + i + 1, file);
        } else {
            fprintf(stderr, "snailjob-lua: unknown argument '%s'\n\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }

    if (sj_config_load(&cfg, file, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "snailjob-lua: %s\n", err);
        return EXIT_USAGE;
    }
    if (print) {
        sj_config_warn(&cfg); /* stderr: the listing stays clean */
        print_config(&cfg);
        sj_config_free(&cfg);
        return EXIT_OK;
    }
    if (cfg.metrics_listen[0] != '\0' &&
        sj_metrics_parse_listen(cfg.metrics_listen, err, sizeof err) != 0) {
        fprintf(stderr, "snailjob-lua: %s\n", err);
        sj_config_free(&cfg);
        return EXIT_USAGE;
    }
    if (!resolvable(cfg.bind_host)) {
        fprintf(stderr,
                "snailjob-lua: bind_host '%s' is not an address of this "
                "machine or a name that resolves\n",
                cfg.bind_host);
        sj_config_free(&cfg);
        return EXIT_USAGE;
    }
    apply_log_settings(&cfg);
    sj_log_set_level((sj_log_level)sj_log_level_parse(cfg.log_level));
    if (cfg.log_file[0] != '\0' && sj_log_open_file(cfg.log_file) != 0) {
        fprintf(stderr, "snailjob-lua: log_file '%s': %s\n", cfg.log_file,
                strerror(errno));
        sj_config_free(&cfg);
        return EXIT_USAGE;
    }
    if (sj_files_expand(cfg.executors, &files, err, sizeof err) != 0) {
        fprintf(stderr, "snailjob-lua: %s\n", err);
        sj_config_free(&cfg);
        return EXIT_USAGE;
    }
    if (files.n == 0)
        SJ_WARN("no executor files configured (SNAIL_EXECUTORS / "
                "executors): every dispatch will fail");
    code = serve(&cfg, &files);
    sj_files_free(&files);
    sj_log_open_file(NULL);
    sj_config_free(&cfg);
    return code;
}
