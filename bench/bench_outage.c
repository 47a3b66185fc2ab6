/*
 * bench_outage - RSS of the real snailjob-lua during and after a server
 * outage under logging load (issue 11). Not a test: it prints figures.
 *
 * The host runs against the in-process emulator (sj_emu) over gRPC on
 * loopback. A task logs RATE lines of SIZE bytes a second; after a warm-up
 * with the server up, the emulator goes away for OUTAGE seconds while the
 * task keeps logging, then comes back. Printed: RSS before (idle after the
 * warm-up), the peak and the last value during the outage, and RSS once
 * the backlog is delivered (+2 s and +5 s), with the lines delivered and
 * the lines the bounded queue dropped (counted by the host's notices).
 *
 *   bench_outage [--outage S] [--rate N] [--size B] [--queue-bytes B]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_emu.h"
#include "sj_harness.h"
#include "sj_log.h"
#include "sj_srv.h"

#ifndef SJ_BINARY_DEFAULT
#define SJ_BINARY_DEFAULT "snailjob-lua"
#endif

static const char *const EXECUTORS =
    "local sj = require 'snailjob'\n"
    "-- job_params: '<lines a second> <bytes a line> <seconds>'\n"
    "sj.job('logLoad', function(args)\n"
    "  local rate, size, secs = args.job_params:match('(%S+) (%S+) (%S+)')\n"
    "  rate, size, secs = tonumber(rate), tonumber(size), tonumber(secs)\n"
    "  local line = string.rep('b', size)\n"
    "  for tick = 1, secs * 10 do\n"
    "    for i = 1, rate // 10 do sj.log.info(line) end\n"
    "    sj.sleep(0.1)\n"
    "  end\n"
    "  return sj.success('done')\n"
    "end)\n";

static void logs_seen(sj_srv *srv, size_t *lines, unsigned long *dropped)
{
    size_t n = sj_srv_log_count(srv);

    *lines = 0;
    *dropped = 0;
    for (size_t i = 0; i < n; i++) {
        char *json = NULL, *p;
        if (sj_srv_log_get(srv, i, &json) != 0)
            continue;
        if (strstr(json, "bbbbbbbbbbbbbbbb") != NULL)
            (*lines)++;
        if ((p = strstr(json, "snailjob-lua: ")) != NULL &&
            strstr(p, "log lines dropped") != NULL)
            *dropped += strtoul(p + 14, NULL, 10);
        free(json);
    }
}

static int64_t trigger(sj_srv *srv, const char *args)
{
    sj_srv_job j;
    int64_t id = 0;

    memset(&j, 0, sizeof j);
    j.job_id = 1;
    j.task_type = SJ_SRV_CLUSTER;
    j.executor_info = "logLoad";
    j.args = args;
    j.executor_timeout = 3600;
    sj_srv_trigger(srv, &j, &id);
    return id;
}

/* Wait until the emulator's log count stops growing for 2 s. */
static void settle(sj_srv *srv, int max_s)
{
    long long until = h_now() + max_s * 1000LL, since = h_now();
    size_t last = sj_srv_log_count(srv);

    while (h_now() < until && h_now() - since < 2000) {
        h_sleep_ms(200);
        size_t n = sj_srv_log_count(srv);
        if (n != last) {
            last = n;
            since = h_now();
        }
    }
}

int main(int argc, char **argv)
{
    int outage = 60, rate = 2000, size = 1000, port = 0;
    const char *qbytes = NULL;
    char args[64], addr[64], qset[64];
    sj_emu *emu;
    sj_srv *srv;
    h_host h;
    long before, peak = 0, last = 0, after2, after5;
    size_t lines;
    unsigned long dropped;
    int64_t b;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--outage") == 0)
            outage = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rate") == 0)
            rate = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            size = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--queue-bytes") == 0)
            qbytes = argv[i + 1];
    }
    (void)h_failures;
    if (getenv("SJ_BINARY") == NULL)
        setenv("SJ_BINARY", SJ_BINARY_DEFAULT, 1);
    sj_log_set_level(SJ_LOG_ERROR);
    if (sj_emu_open(NULL, "127.0.0.1:0", &emu, &port) != 0) {
        fprintf(stderr, "bench_outage: the emulator did not start\n");
        return 1;
    }
    srv = sj_emu_srv(emu);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    snprintf(qset, sizeof qset, "SNAIL_LOG_QUEUE_MAX_BYTES=%s",
             qbytes ? qbytes : "67108864");
    h_host_dir(&h);
    h_write_file(h.dir, "executors/load.lua", EXECUTORS);
    h_host_start(&h, port, "SNAIL_LOG_LEVEL=WARN", "SNAIL_BEAT_INTERVAL=1",
                 qset, NULL);
    for (int i = 0; i < 500 && !sj_srv_has_executor(srv, "logLoad"); i++)
        h_sleep_ms(20);

    /* Warm-up: 5 s of the same load with the server up. */
    snprintf(args, sizeof args, "%d %d 5", rate, size);
    b = trigger(srv, args);
    sj_srv_wait_batch(srv, b, 30000);
    settle(srv, 30);
    h_sleep_ms(2000);
    before = h_rss_kb(h.pid);

    /* The outage, under load. */
    snprintf(args, sizeof args, "%d %d %d", rate, size, outage + 10);
    b = trigger(srv, args);
    h_sleep_ms(1000);
    sj_emu_stop(emu);
    for (int s = 0; s < outage; s++) {
        h_sleep_ms(1000);
        last = h_rss_kb(h.pid);
        peak = last > peak ? last : peak;
    }
    sj_emu_start(emu, addr, NULL);
    sj_srv_wait_batch(srv, b, 60000);
    settle(srv, 120);
    h_sleep_ms(2000);
    after2 = h_rss_kb(h.pid);
    h_sleep_ms(3000);
    after5 = h_rss_kb(h.pid);
    logs_seen(srv, &lines, &dropped);

    printf("outage %d s, %d lines/s of %d bytes, log_queue_max_bytes %s\n",
           outage, rate, size, qbytes ? qbytes : "67108864 (default)");
    printf("  RSS before   %6ld kB (idle after a 5 s warm-up)\n", before);
    printf("  RSS outage   %6ld kB peak, %ld kB at its end (+%ld kB)\n", peak,
           last, last - before);
    printf("  RSS after    %6ld kB 2 s after delivery (%+ld kB), %ld kB at "
           "+5 s (%+ld kB)\n",
           after2, after2 - before, after5, after5 - before);
    printf("  lines        %zu delivered, %lu dropped (notices), of %d "
           "logged\n",
           lines, dropped, rate * (outage + 10 + 5));
    h_host_stop(&h, SIGTERM);
    h_host_cleanup(&h);
    sj_emu_destroy(emu);
    return 0;
}
