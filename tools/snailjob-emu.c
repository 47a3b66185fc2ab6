/*
 * snailjob-emu - a SnailJob server emulator for development and tests
 * (server/sj_emu.h): point a snailjob-lua host at it, trigger jobs from
 * stdin, watch requests and batch outcomes on stdout. `snailjob-emu --help`
 * documents the options, the commands and the output lines.
 *
 * One thread reads stdin and prints; sj_emu's threads serve gRPC and call
 * print_request (stdout is locked around each line). Runs until
 * SIGINT/SIGTERM (end of stdin does not stop it).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "sj_emu.h"
#include "sj_error.h"
#include "sj_local.h"
#include "sj_log.h"

#define MAX_CHAIN 32
#define POLL_MS 50

static volatile sig_atomic_t quit;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: snailjob-emu [--listen ADDR] [--token T] [--namespace NS]\n"
        "                    [--group G] [--timeout SECONDS] [--quiet]\n"
        "\n"
        "A SnailJob server emulator for developing executors: point a\n"
        "snailjob-lua host at it (SNAIL_SERVER_PORT), trigger jobs by typing\n"
        "commands on stdin, and read what happens on stdout.\n"
        "\n"
        "  --listen ADDR      gRPC address (default 127.0.0.1:17888; port 0\n"
        "                     picks a free one)\n"
        "  --token T          the group token hosts must send (default the\n"
        "                     demo token, as snailjob-lua's default)\n"
        "  --namespace NS     namespace id (default the demo namespace)\n"
        "  --group G          group name (default snail_job_demo_group)\n"
        "  --timeout SECONDS  executor timeout of triggered jobs (default "
        "60)\n"
        "  --quiet            print only batch outcomes (no REQ lines)\n"
        "  -h, --help         this text\n"
        "\n"
        "Commands (one per line on stdin):\n"
        "  trigger TYPE EXECUTOR [--shards N] [--timeout S] [--wf-context "
        "JSON]\n"
        "          [ARGS]     run a job once. TYPE: cluster, broadcast,\n"
        "                     sharding, map, mapreduce (or 1-5). ARGS, the\n"
        "                     rest of the line, is the job parameter text\n"
        "                     (sharding: a JSON list, one element per "
        "shard).\n"
        "                     --shards: reduce tasks of a mapreduce.\n"
        "  workflow EXECUTOR[,EXECUTOR...] [--timeout S] [--wf-context JSON]\n"
        "          [ARGS]     a workflow chain of cluster jobs: each node\n"
        "                     starts when the previous one succeeded, with\n"
        "                     the merged workflow context, as the server\n"
        "                     does; ARGS go to every node.\n"
        "  stop BATCH         stop a batch, as the console's stop\n"
        "  batches            list batches: id, type, executor, status,\n"
        "                     result\n"
        "  nodes              list registered hosts\n"
        "  quiet on|off       switch the REQ lines off or on\n"
        "  help               this text, on stdout\n"
        "\n"
        "Output lines (stdout):\n"
        "  LISTENING PORT\n"
        "  REQ URI HEADERS BODY          every request a host sent (tokens\n"
        "                                masked as ***); not with --quiet\n"
        "  TRIGGERED BATCH TYPE EXECUTOR STATUS\n"
        "  DONE BATCH TYPE EXECUTOR STATUS [(REASON)] result=TEXT\n"
        "                                a batch reached its final status\n"
        "  WORKFLOW ID node I/N EXECUTOR BATCH\n"
        "  WORKFLOW ID DONE STATUS wf_context=JSON\n"
        "  BATCH ..., BATCHES N, NODE ..., NODES N, OK, ERR MESSAGE\n"
        "Statuses: WAITING RUNNING SUCCESS FAIL STOP CANCEL; reasons:\n"
        "executor timeout, no client, stopped.\n"
        "\n"
        "Example:\n"
        "  snailjob-emu --listen 127.0.0.1:0 --quiet   # prints LISTENING "
        "PORT\n"
        "  SNAIL_SERVER_PORT=PORT SNAIL_EXECUTORS=examples snailjob-lua\n"
        "  trigger mapreduce testMapReduceJobExecutor --shards 2\n"
        "  workflow testWorkflowExecutor,testWorkflowExecutor\n"
        "\n"
        "SIGINT/SIGTERM end it; the end of stdin does not.\n");
}

static atomic_int quiet; /* read by sj_emu's threads */

/* printf to stdout as one line, never interleaved with a REQ line. */
__attribute__((format(printf, 1, 2))) static void out(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&out_mu);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
}

static void print_request(void *ud, const sj_request *req,
                          const sj_reply *reply)
{
    json_t *h;
    char *hs;
    (void)ud;
    (void)reply;
    if (atomic_load(&quiet))
        return;
    h = json_object();
    for (size_t i = 0; i < req->n_headers; i++)
        json_object_set_new(
            h, req->headers[i].key,
            json_string(strcasestr(req->headers[i].key, "token") != NULL
                            ? "***"
                            : req->headers[i].value));
    hs = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    out("REQ %s %s %s\n", req->uri ? req->uri : "", hs ? hs : "{}",
        req->body ? req->body : "");
    free(hs);
    json_decref(h);
}

static int parse_type(const char *s)
{
    int t = sj_local_type_parse(s);
    if (t == 0 && s[0] >= '1' && s[0] <= '5' && s[1] == '\0')
        t = s[0] - '0';
    return t;
}

/* ---- batch outcomes and workflow chains ---------------------------------
 */

typedef struct watch {
    int64_t *done; /* batches whose outcome was printed */
    size_t n_done, cap_done;
} watch;

typedef struct chain {
    int on;
    int64_t id; /* workflow batch id */
    char *nodes[MAX_CHAIN];
    size_t n, next;
    int64_t batch; /* running node's batch */
    char *args;
    int timeout;
} chain;

static chain chains[16];
static int64_t next_wf_id = 1;
static int default_timeout = 60;

static int printed(watch *w, int64_t id)
{
    for (size_t i = 0; i < w->n_done; i++)
        if (w->done[i] == id)
            return 1;
    return 0;
}

static void mark(watch *w, int64_t id)
{
    if (w->n_done == w->cap_done) {
        size_t cap = w->cap_done ? w->cap_done * 2 : 64;
        int64_t *v = realloc(w->done, cap * sizeof *v);
        if (v == NULL)
            return;
        w->done = v;
        w->cap_done = cap;
    }
    w->done[w->n_done++] = id;
}

static int final(int st)
{
    return st == SJ_SRV_SUCCESS || st == SJ_SRV_FAIL || st == SJ_SRV_STOP ||
           st == SJ_SRV_CANCEL;
}

static int trigger(sj_srv *srv, int type, const char *exec, const char *args,
                   int shards, int timeout, int64_t wf_id, int64_t wf_node,
                   const char *wf_context, int64_t *id)
{
    sj_srv_job job;
    int rc;

    memset(&job, 0, sizeof job);
    job.job_id = 1;
    job.task_type = type;
    job.executor_info = exec;
    job.args = args;
    job.shard_num = shards;
    job.executor_timeout = timeout > 0 ? timeout : default_timeout;
    job.workflow_task_batch_id = wf_id;
    job.workflow_node_id = wf_node;
    job.wf_context = wf_context;
    if ((rc = sj_srv_trigger(srv, &job, id)) != 0)
        out("ERR cannot trigger %s: %s\n", exec, sj_strerror(rc));
    else
        out("TRIGGERED %" PRId64 " %s %s %s\n", *id, sj_local_type_name(type),
            exec, sj_local_status_name(sj_srv_batch_status(srv, *id)));
    return rc;
}

static void chain_free(chain *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->nodes[i]);
    free(c->args);
    memset(c, 0, sizeof *c);
}

/* Start node c->next with `ctx` (JSON object text). */
static void chain_step(sj_srv *srv, chain *c, const char *ctx)
{
    if (trigger(srv, SJ_SRV_CLUSTER, c->nodes[c->next], c->args, 1, c->timeout,
                c->id, (int64_t)c->next + 1, ctx, &c->batch) != 0) {
        out("WORKFLOW %" PRId64 " DONE FAIL wf_context=%s\n", c->id, ctx);
        chain_free(c);
        return;
    }
    out("WORKFLOW %" PRId64 " node %zu/%zu %s %" PRId64 "\n", c->id,
        c->next + 1, c->n, c->nodes[c->next], c->batch);
    c->next++;
}

/* Print every newly finished batch; move workflow chains on. */
static void poll_batches(sj_srv *srv, watch *w)
{
    sj_srv_batch_info *v;
    size_t n;

    if (sj_srv_batches(srv, &v, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        char *result = NULL;
        const char *why;
        if (!final(v[i].status) || printed(w, v[i].batch_id))
            continue;
        mark(w, v[i].batch_id);
        sj_srv_batch_result(srv, v[i].batch_id, &result);
        why = sj_local_reason_name(v[i].reason);
        out("DONE %" PRId64 " %s %s %s%s%s%s result=%s\n", v[i].batch_id,
            sj_local_type_name(v[i].task_type), v[i].executor_info,
            sj_local_status_name(v[i].status), why ? " (" : "", why ? why : "",
            why ? ")" : "", result ? result : "");
        free(result);
        for (size_t k = 0; k < sizeof chains / sizeof chains[0]; k++) {
            chain *c = &chains[k];
            char *ctx = NULL;
            if (!c->on || c->batch != v[i].batch_id)
                continue;
            if (sj_srv_batch_wf_context(srv, c->batch, &ctx) != 0)
                ctx = strdup("{}");
            if (v[i].status == SJ_SRV_SUCCESS && c->next < c->n) {
                chain_step(srv, c, ctx ? ctx : "{}");
            } else {
                out("WORKFLOW %" PRId64 " DONE %s wf_context=%s\n", c->id,
                    sj_local_status_name(v[i].status), ctx ? ctx : "{}");
                chain_free(c);
            }
            free(ctx);
        }
    }
    sj_srv_batches_free(v, n);
}

/* ---- commands ------------------------------------------------------------
 */

typedef struct topts {
    int shards, timeout;
    const char *wf_context;
    char *rest; /* ARGS: what follows the options, or NULL */
} topts;

/* "--shards N --timeout S --wf-context JSON" before ARGS. 0 or -1 (ERR
 * printed). */
static int trigger_options(char *rest, topts *o)
{
    memset(o, 0, sizeof *o);
    while (rest != NULL) {
        char *opt, *val;
        rest += strspn(rest, " \t");
        if (strncmp(rest, "--", 2) != 0) {
            o->rest = *rest ? rest : NULL;
            return 0;
        }
        opt = strtok_r(rest, " \t", &rest);
        val = rest ? strtok_r(NULL, " \t", &rest) : NULL;
        if (val == NULL) {
            out("ERR %s needs a value\n", opt);
            return -1;
        }
        if (strcmp(opt, "--shards") == 0 && atoi(val) > 0)
            o->shards = atoi(val);
        else if (strcmp(opt, "--timeout") == 0 && atoi(val) > 0)
            o->timeout = atoi(val);
        else if (strcmp(opt, "--wf-context") == 0)
            o->wf_context = val;
        else {
            out("ERR bad option %s %s (--shards N, --timeout SECONDS, "
                "--wf-context JSON)\n",
                opt, val);
            return -1;
        }
    }
    return 0;
}

static void cmd_trigger(sj_srv *srv, char *rest)
{
    char *type_s = strtok_r(rest, " \t", &rest), *exec;
    json_t *mr = NULL;
    const char *args;
    int64_t id, wf = 0;
    topts o;
    int type;

    exec = type_s ? strtok_r(NULL, " \t", &rest) : NULL;
    if (exec == NULL || (type = parse_type(type_s)) == 0) {
        out("ERR usage: trigger TYPE EXECUTOR [--shards N] [--timeout S] "
            "[--wf-context JSON] [ARGS] (TYPE: cluster, broadcast, "
            "sharding, map, mapreduce)\n");
        return;
    }
    if (trigger_options(rest, &o) != 0)
        return;
    args = o.rest;
    /* The older form: mapreduce {"shardNum":n,"argsStr":"..."}. */
    if (type == SJ_SRV_MAP_REDUCE && args != NULL &&
        (mr = json_loads(args, 0, NULL)) != NULL && json_is_object(mr) &&
        json_object_get(mr, "shardNum") != NULL) {
        json_t *n = json_object_get(mr, "shardNum");
        json_t *a = json_object_get(mr, "argsStr");
        o.shards = json_is_integer(n) ? (int)json_integer_value(n) : 1;
        args = json_is_string(a) ? json_string_value(a) : NULL;
    }
    if (o.wf_context != NULL)
        wf = next_wf_id++;
    trigger(srv, type, exec, args, o.shards, o.timeout, wf, wf ? 1 : 0,
            o.wf_context, &id);
    json_decref(mr);
}

static void cmd_workflow(sj_srv *srv, char *rest)
{
    char *list = strtok_r(rest, " \t", &rest), *save = NULL, *name;
    chain *c = NULL;
    topts o;

    if (list == NULL) {
        out("ERR usage: workflow EXECUTOR[,EXECUTOR...] [--timeout S] "
            "[--wf-context JSON] [ARGS]\n");
        return;
    }
    if (trigger_options(rest, &o) != 0)
        return;
    for (size_t k = 0; k < sizeof chains / sizeof chains[0] && !c; k++)
        if (!chains[k].on)
            c = &chains[k];
    if (c == NULL) {
        out("ERR too many workflows running\n");
        return;
    }
    for (name = strtok_r(list, ",", &save); name && c->n < MAX_CHAIN;
         name = strtok_r(NULL, ",", &save))
        c->nodes[c->n++] = strdup(name);
    c->on = 1;
    c->id = next_wf_id++;
    c->args = o.rest ? strdup(o.rest) : NULL;
    c->timeout = o.timeout;
    chain_step(srv, c, o.wf_context ? o.wf_context : "{}");
}

static void cmd_nodes(sj_srv *srv)
{
    sj_srv_node_info *v;
    size_t n;
    if (sj_srv_nodes(srv, &v, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++)
        out("NODE %s %s:%d %s labels=%s\n", v[i].host_id, v[i].ip, v[i].port,
            v[i].alive ? "alive" : "not-alive", v[i].labels ? v[i].labels : "");
    out("NODES %zu\n", n);
    sj_srv_nodes_free(v, n);
}

static void cmd_batches(sj_srv *srv)
{
    sj_srv_batch_info *v;
    size_t n;
    if (sj_srv_batches(srv, &v, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        char *result = NULL;
        sj_srv_batch_result(srv, v[i].batch_id, &result);
        out("BATCH %" PRId64 " %s %s %s tasks=%zu result=%s\n", v[i].batch_id,
            sj_local_type_name(v[i].task_type), v[i].executor_info,
            sj_local_status_name(v[i].status), v[i].n_tasks,
            result ? result : "");
        free(result);
    }
    out("BATCHES %zu\n", n);
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
    } else if (strcmp(cmd, "workflow") == 0) {
        cmd_workflow(srv, rest);
    } else if (strcmp(cmd, "stop") == 0) {
        int64_t id = rest ? strtoll(rest, NULL, 10) : 0;
        int rc = sj_srv_stop_batch(srv, id);
        if (rc == 0)
            out("OK\n");
        else
            out("ERR stop %" PRId64 ": %s\n", id, sj_strerror(rc));
    } else if (strcmp(cmd, "nodes") == 0) {
        cmd_nodes(srv);
    } else if (strcmp(cmd, "batches") == 0) {
        cmd_batches(srv);
    } else if (strcmp(cmd, "quiet") == 0) {
        char *v = strtok_r(NULL, " \t", &rest);
        atomic_store(&quiet, v == NULL || strcmp(v, "off") != 0);
        out("OK\n");
    } else if (strcmp(cmd, "help") == 0) {
        pthread_mutex_lock(&out_mu);
        usage(stdout);
        fflush(stdout);
        pthread_mutex_unlock(&out_mu);
    } else {
        out("ERR unknown command '%s' (help lists them)\n", cmd);
    }
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:17888";
    sj_emu_config cfg;
    struct sigaction sa;
    char line[8192];
    size_t len = 0;
    int stdin_open = 1, port = 0, rc;
    watch w = {0};
    sj_emu *emu;

    memset(&cfg, 0, sizeof cfg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--quiet") == 0) {
            atomic_store(&quiet, 1);
            continue;
        }
        if (v == NULL) {
            fprintf(stderr,
                    "snailjob-emu: %s: unknown option or missing "
                    "value (--help)\n",
                    a);
            return 2;
        }
        i++;
        if (strcmp(a, "--listen") == 0) {
            listen = v;
        } else if (strcmp(a, "--token") == 0) {
            cfg.srv.token = v;
        } else if (strcmp(a, "--namespace") == 0) {
            cfg.srv.namespace_id = v;
        } else if (strcmp(a, "--group") == 0) {
            cfg.srv.group_name = v;
        } else if (strcmp(a, "--timeout") == 0 && atoi(v) > 0) {
            default_timeout = atoi(v);
        } else {
            fprintf(stderr, "snailjob-emu: bad option %s %s (--help)\n", a, v);
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
    out("LISTENING %d\n", port);

    while (!quit) {
        struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
        ssize_t got;
        char *nl;

        poll_batches(sj_emu_srv(emu), &w);
        if (!stdin_open) {
            poll(NULL, 0, POLL_MS);
            continue;
        }
        if (poll(&pfd, 1, POLL_MS) <= 0)
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
    for (size_t k = 0; k < sizeof chains / sizeof chains[0]; k++)
        chain_free(&chains[k]);
    free(w.done);
    sj_emu_destroy(emu);
    return 0;
}
