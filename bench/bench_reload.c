/*
 * bench_reload - hot reload apply time (issue 5, item 2).
 *
 * Not a test: it prints figures. The REAL snailjob-lua binary runs as a
 * child process (its host log at DEBUG in a temp dir) against the
 * in-process emulator (sj_emu) on loopback; its workers are idle. One
 * reload is: rewrite executors/v.lua in place (fopen "w", write, close,
 * as an editor's save does), then wait until every worker logged
 * "worker-N on generation G" for the new G.
 *
 * Measured per reload, from the wall clock just before the write:
 *   apply      until the last worker's switch line (every idle worker on
 *              the new generation) - the figure with the 200 ms target;
 *   published  until the "reload (...): generation G published" line
 *              (debounce + re-expansion + snapshot + scratch VM).
 * Host log lines carry the host's wall clock with millisecond resolution,
 * so each figure is good to about 1 ms.
 *
 * Usage: bench_reload [--binary PATH] [--reloads N] [--workers N]
 *                     [--files N]
 * Threads: main only, plus the emulator's and the transport's own.
 */
#include <inttypes.h>
#include <stdint.h>

#include "sj_harness.h"

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_log.h"
#include "sj_srv.h"

#ifndef SJ_BINARY_DEFAULT
#define SJ_BINARY_DEFAULT "snailjob-lua"
#endif

#define MAX_RELOADS 1000
#define MAX_WORKERS 64

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "YYYY-MM-DD HH:MM:SS.mmm" at the start of a host log line (local time,
 * as sj_log writes it) -> wall ms, or -1. */
static long long line_ms(const char *line)
{
    struct tm tm;
    int ms;

    memset(&tm, 0, sizeof tm);
    if (sscanf(line, "%d-%d-%d %d:%d:%d.%d", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    return (long long)mktime(&tm) * 1000 + ms;
}

/* Time of the log line holding `needle` (the first), or -1. */
static long long find_line(const char *log, const char *needle)
{
    const char *p = strstr(log, needle), *start;
    if (p == NULL)
        return -1;
    for (start = p; start > log && start[-1] != '\n'; start--)
        ;
    return line_ms(start);
}

static void write_v(const char *dir, int v)
{
    char text[512];
    snprintf(text, sizeof text,
             "local sj = require 'snailjob'\n"
             "local VERSION = 'v%d'\n"
             "sj.job('verJob', function() return sj.success(VERSION) end)\n",
             v);
    h_write_file(dir, "v.lua", text);
}

/* A filler executor file: a handful of declarations, like a real one. */
static void write_filler(const char *dir, int i)
{
    char name[64], text[2048];
    snprintf(name, sizeof name, "f%02d.lua", i);
    snprintf(text, sizeof text,
             "local sj = require 'snailjob'\n"
             "local cjson = require 'cjson'\n"
             "local function helper(x) return cjson.encode({ x = x }) end\n"
             "sj.job('filler%dJob', function(args)\n"
             "  return sj.success(helper(args.job_params))\n"
             "end)\n"
             "local m = sj.map('filler%dMap')\n"
             "m:map(function(args) return sj.mr_do_map({ 1, 2 }, 'LEAF') "
             "end)\n"
             "m:map('LEAF', function(args) return sj.success(1) end)\n"
             "local mr = sj.map_reduce('filler%dMapReduce')\n"
             "mr:map(function(args) return sj.mr_do_map({ 1, 2 }, 'M') end)\n"
             "mr:map('M', function(args) return sj.success(2) end)\n"
             "mr:reduce(function(args) return sj.success(3) end)\n",
             i, i, i);
    h_write_file(dir, name, text);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static void stats(const char *what, long long *v, int n)
{
    if (n == 0) {
        printf("%-10s no samples\n", what);
        return;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_ll);
    printf("%-10s p50 %lld ms, p90 %lld ms, max %lld ms, min %lld ms (%d "
           "reloads)\n",
           what, v[n / 2], v[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1], v[n - 1],
           v[0], n);
}

int main(int argc, char **argv)
{
    static long long apply[MAX_RELOADS], published[MAX_RELOADS];
    int reloads = 20, workers = 4, files = 5, port = 0, done = 0, code = 1;
    char exec_dir[400], wbuf[16];
    sj_emu *emu = NULL;
    h_host host;

    (void)h_failures; /* the harness's check counter: unused here */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--binary") == 0 && i + 1 < argc)
            setenv("SJ_BINARY", argv[++i], 1);
        else if (strcmp(argv[i], "--reloads") == 0 && i + 1 < argc)
            reloads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            workers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--files") == 0 && i + 1 < argc)
            files = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_reload [--binary PATH] [--reloads N] "
                            "[--workers N] [--files N]\n");
            return 2;
        }
    }
    if (reloads < 1 || reloads > MAX_RELOADS || workers < 1 ||
        workers > MAX_WORKERS || files < 1) {
        fprintf(stderr, "bench_reload: bad arguments\n");
        return 2;
    }
    if (getenv("SJ_BINARY") == NULL)
        setenv("SJ_BINARY", SJ_BINARY_DEFAULT, 1);
    sj_log_set_level(SJ_LOG_ERROR);
    if (sj_emu_open(NULL, "127.0.0.1:0", &emu, &port) != 0) {
        fprintf(stderr, "bench_reload: cannot start the emulator\n");
        return 1;
    }

    h_host_dir(&host);
    snprintf(exec_dir, sizeof exec_dir, "%s/executors", host.dir);
    write_v(exec_dir, 0);
    for (int i = 1; i < files; i++)
        write_filler(exec_dir, i);
    snprintf(wbuf, sizeof wbuf, "SNAIL_WORKERS=%d", workers);
    h_host_start(&host, port, wbuf, NULL);
    {
        long long until = h_now() + 10000;
        while (!h_log_has(&host, "listening on port") && h_now() < until &&
               h_host_alive(&host))
            h_sleep_ms(10);
    }
    if (!h_log_has(&host, "listening on port")) {
        fprintf(stderr, "bench_reload: the host did not start\n");
        goto done;
    }
    h_sleep_ms(300);

    for (int r = 1; r <= reloads; r++) {
        int gen = r + 1;
        long long t0, until, last = -1, pub = -1;
        char needle[96];
        int seen = 0;

        t0 = wall_ms();
        write_v(exec_dir, r);
        until = h_now() + 5000;
        while (h_now() < until) {
            char *log = h_read_file(host.log);
            seen = 0;
            last = -1;
            for (int w = 1; w <= workers; w++) {
                snprintf(needle, sizeof needle, "worker-%d on generation %d ",
                         w, gen);
                long long t = find_line(log, needle);
                if (t >= 0) {
                    seen++;
                    last = t > last ? t : last;
                }
            }
            snprintf(needle, sizeof needle, "generation %d published", gen);
            pub = find_line(log, needle);
            free(log);
            if (seen == workers && pub >= 0)
                break;
            h_sleep_ms(5);
        }
        if (seen != workers || pub < 0) {
            fprintf(stderr,
                    "bench_reload: reload %d: %d of %d workers switched\n", r,
                    seen, workers);
            break;
        }
        if (getenv("SJ_BENCH_VERBOSE") != NULL)
            printf("reload %2d: published %lld ms, apply %lld ms\n", r,
                   pub - t0, last - t0);
        apply[done] = last - t0;
        published[done] = pub - t0;
        done++;
        h_sleep_ms(150); /* idle again before the next save */
    }

    printf("bench_reload: %d worker(s), %d executor file(s), %d reload(s) "
           "by rewriting one file (debounce 50 ms)\n",
           workers, files, done);
    stats("apply", apply, done);
    stats("published", published, done);
    code = done == reloads ? 0 : 1;
done:
    if (h_host_stop(&host, SIGTERM) != 0)
        fprintf(stderr, "bench_reload: the host did not exit cleanly\n");
    h_host_cleanup(&host);
    sj_emu_destroy(emu);
    return code;
}
