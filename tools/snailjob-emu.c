/*
 * snailjob-emu - a standalone SnailJob server emulator (server/sj_emu.h).
 *
 *   snailjob-emu [--listen ADDR] [--token T] [--namespace NS] [--group G]
 *
 * Prints every request it receives as one line on stdout:
 *   REQ <uri> <headers as a JSON object> <body>
 * and reads commands on stdin, one per line:
 *   trigger TYPE EXECUTOR [ARGS]   TYPE: 1-5 or cluster|broadcast|sharding|
 *                                  map|mapreduce; for mapreduce ARGS may be
 *                                  {"shardNum":n,"argsStr":"..."}
 *   stop BATCH | nodes | batches
 * Runs until SIGINT/SIGTERM (end of stdin does not stop it).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_log.h"

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static void print_request(void *ud, const sj_request *req,
                          const sj_reply *reply)
{
    json_t *h = json_object();
    char *hs;
    (void)ud;
    (void)reply;
    for (size_t i = 0; i < req->n_headers; i++)
        json_object_set_new(h, req->headers[i].key,
                            json_string(req->headers[i].value));
    hs = json_dumps(h, JSON_COMPACT);
    printf("REQ %s %s %s\n", req->uri ? req->uri : "", hs ? hs : "{}",
           req->body ? req->body : "");
    fflush(stdout);
    free(hs);
    json_decref(h);
}

static int parse_type(const char *s)
{
    static const char *const names[] = {"cluster", "broadcast", "sharding",
                                        "map", "mapreduce"};
    for (int i = 0; i < 5; i++)
        if (strcasecmp(s, names[i]) == 0)
            return i + 1;
    return atoi(s) >= 1 && atoi(s) <= 5 ? atoi(s) : 0;
}

static void cmd_trigger(sj_srv *srv, char *rest)
{
    char *type_s = strtok_r(rest, " \t", &rest), *exec;
    char *args = NULL;
    json_t *mr = NULL;
    sj_srv_job job;
    int64_t id;
    int rc;

    exec = type_s ? strtok_r(NULL, " \t", &rest) : NULL;
    if (exec == NULL || parse_type(type_s) == 0) {
        printf("ERR usage: trigger TYPE EXECUTOR [ARGS]\n");
        return;
    }
    while (rest != NULL && (*rest == ' ' || *rest == '\t'))
        rest++;
    if (rest != NULL && *rest != '\0')
        args = rest;

    memset(&job, 0, sizeof job);
    job.job_id = 1;
    job.task_type = parse_type(type_s);
    job.executor_info = exec;
    job.args = args;
    job.executor_timeout = 60;
    if (job.task_type == SJ_SRV_MAP_REDUCE && args != NULL &&
        (mr = json_loads(args, 0, NULL)) != NULL && json_is_object(mr)) {
        json_t *n = json_object_get(mr, "shardNum");
        json_t *a = json_object_get(mr, "argsStr");
        job.shard_num = json_is_integer(n) ? (int)json_integer_value(n) : 1;
        job.args = json_is_string(a) ? json_string_value(a) : NULL;
    }
    rc = sj_srv_trigger(srv, &job, &id);
    if (rc != 0)
        printf("ERR %s\n", sj_strerror(rc));
    else
        printf("BATCH %" PRId64 " status %d\n", id,
               sj_srv_batch_status(srv, id));
    json_decref(mr);
}

static void cmd_nodes(sj_srv *srv)
{
    sj_srv_node_info *v;
    size_t n;
    sj_srv_nodes(srv, &v, &n);
    for (size_t i = 0; i < n; i++)
        printf("NODE %s %s:%d alive=%d labels=%s\n", v[i].host_id, v[i].ip,
               v[i].port, v[i].alive, v[i].labels ? v[i].labels : "");
    printf("NODES %zu\n", n);
    sj_srv_nodes_free(v, n);
}

static void cmd_batches(sj_srv *srv)
{
    sj_srv_batch_info *v;
    size_t n;
    sj_srv_batches(srv, &v, &n);
    for (size_t i = 0; i < n; i++) {
        char *result = NULL;
        sj_srv_batch_result(srv, v[i].batch_id, &result);
        printf("BATCH %" PRId64 " type=%d executor=%s status=%d tasks=%zu "
               "result=%s\n",
               v[i].batch_id, v[i].task_type, v[i].executor_info, v[i].status,
               v[i].n_tasks, result ? result : "");
        free(result);
    }
    printf("BATCHES %zu\n", n);
    sj_srv_batches_free(v, n);
}

static void command(sj_srv *srv, char *line)
{
    char *rest, *cmd;
    line[strcspn(line, "\r\n")] = '\0';
    if ((cmd = strtok_r(line, " \t", &rest)) == NULL)
        return;
    if (strcmp(cmd, "trigger") == 0) {
        cmd_trigger(srv, rest);
    } else if (strcmp(cmd, "stop") == 0) {
        int64_t id = rest ? strtoll(rest, NULL, 10) : 0;
        int rc = sj_srv_stop_batch(srv, id);
        if (rc == 0)
            printf("OK\n");
        else
            printf("ERR %s\n", sj_strerror(rc));
    } else if (strcmp(cmd, "nodes") == 0) {
        cmd_nodes(srv);
    } else if (strcmp(cmd, "batches") == 0) {
        cmd_batches(srv);
    } else {
        printf("ERR unknown command '%s'\n", cmd);
    }
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: snailjob-emu [--listen ADDR] [--token T] "
                    "[--namespace NS] [--group G]\n");
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:17888";
    sj_emu_config cfg;
    struct sigaction sa;
    char line[8192];
    size_t len = 0;
    int stdin_open = 1, port = 0, rc;
    sj_emu *emu;

    memset(&cfg, 0, sizeof cfg);
    for (int i = 1; i < argc; i += 2) { /* --option VALUE pairs */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
            return 2;
        }
        if (strcmp(argv[i], "--listen") == 0)
            listen = v;
        else if (strcmp(argv[i], "--token") == 0)
            cfg.srv.token = v;
        else if (strcmp(argv[i], "--namespace") == 0)
            cfg.srv.namespace_id = v;
        else if (strcmp(argv[i], "--group") == 0)
            cfg.srv.group_name = v;
        else {
            usage();
            return 2;
        }
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    cfg.on_request = print_request;
    if ((rc = sj_emu_open(&cfg, listen, &emu, &port)) != 0) {
        fprintf(stderr, "snailjob-emu: cannot listen on %s: %s\n", listen,
                sj_strerror(rc));
        return 1;
    }
    printf("LISTENING %d\n", port);
    fflush(stdout);

    while (!quit) {
        struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
        ssize_t got;
        char *nl;

        if (!stdin_open) {
            poll(NULL, 0, 200);
            continue;
        }
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        got = read(STDIN_FILENO, line + len, sizeof line - 1 - len);
        if (got <= 0) {
            if (got < 0 && errno == EINTR)
                continue;
            stdin_open = 0;
            continue;
        }
        len += (size_t)got;
        line[len] = '\0';
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            command(sj_emu_srv(emu), line);
            len -= (size_t)(nl + 1 - line);
            memmove(line, nl + 1, len + 1);
        }
        if (len == sizeof line - 1)
            len = 0; /* an overlong line is dropped */
    }
    sj_emu_destroy(emu);
    return 0;
}
