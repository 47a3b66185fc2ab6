/*
 * snailjob-emu, the development server: its --help documents every
 * command; against a real host over gRPC, triggers of every task type and
 * a workflow chain end in DONE lines with status names, an executor
 * timeout stops a batch, tokens never appear in what it prints, and
 * --quiet prints only batch outcomes.
 */
#include <libgen.h>

#include "sj_harness.h"

static const char EXECUTORS[] =
    "local sj = require 'snailjob'\n"
    "sj.job('echo', function(args) return sj.success(args.job_params) end)\n"
    "sj.job('bump', function(args)\n"
    "  local n = tonumber(args:get_wf_context('n')) or 0\n"
    "  args:append_context('n', n + 1)\n"
    "  return sj.success(n + 1)\n"
    "end)\n"
    "sj.job('slow', function() sj.sleep(30) end)\n"
    "local m = sj.map('fan')\n"
    "m:map(function() return sj.mr_do_map({ 'x', 'y' }, 'LEAF') end)\n"
    "m:map('LEAF', function(a) return sj.success(a.map_result) end)\n"
    "local mr = sj.map_reduce('sum')\n"
    "mr:map(function() return sj.mr_do_map({ 1, 2, 3 }, 'N') end)\n"
    "mr:map('N', function(a) return sj.success(a.map_result) end)\n"
    "mr:reduce(function(a)\n"
    "  local s = 0\n"
    "  for _, x in ipairs(a.map_result) do s = s + tonumber(x) end\n"
    "  return sj.success(s)\n"
    "end)\n"
    "mr:merge(function(a)\n"
    "  local s = 0\n"
    "  for _, x in ipairs(a.reduces) do s = s + tonumber(x) end\n"
    "  return sj.success(s)\n"
    "end)\n";

typedef struct emu_proc {
    pid_t pid;
    int in; /* its stdin */
    char out[300];
    int port;
} emu_proc;

static char emu_bin[600];

static void emu_start(emu_proc *e, const char *dir, const char *extra)
{
    int fds[2];

    memset(e, 0, sizeof *e);
    snprintf(e->out, sizeof e->out, "%s/emu-%s.out", dir,
             extra ? "quiet" : "loud");
    if (pipe(fds) != 0)
        return;
    e->pid = fork();
    if (e->pid == 0) {
        int fo = open(e->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fds[0], 0);
        dup2(fo, 1);
        dup2(fo, 2);
        close(fds[1]);
        execl(emu_bin, emu_bin, "--listen", "127.0.0.1:0", extra, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    e->in = fds[1];
    for (long long until = h_now() + H_MS(10000);
         e->port == 0 && h_now() < until;) {
        char *text = h_read_file(e->out), *p = strstr(text, "LISTENING ");
        if (p != NULL)
            e->port = atoi(p + 10);
        free(text);
        h_sleep_ms(20);
    }
}

static void emu_cmd(emu_proc *e, const char *line)
{
    size_t n = strlen(line);
    CHECK(write(e->in, line, n) == (ssize_t)n && write(e->in, "\n", 1) == 1);
}

/* Wait until the output holds `needle`; 1 if it did. */
static int emu_wait(emu_proc *e, const char *needle, long long ms)
{
    for (long long until = h_now() + H_MS(ms); h_now() < until;) {
        char *text = h_read_file(e->out);
        int has = strstr(text, needle) != NULL;
        free(text);
        if (has)
            return 1;
        h_sleep_ms(20);
    }
    return 0;
}

static void emu_stop(emu_proc *e)
{
    int status;
    close(e->in);
    kill(e->pid, SIGTERM);
    waitpid(e->pid, &status, 0);
}

/* A host directory with the executors, the emulator (with `extra`, may
 * be NULL), and a host started against it. */
static void start_both(emu_proc *e, h_host *h, const char *extra)
{
    char path[300];

    h_host_dir(h);
    snprintf(path, sizeof path, "%s/executors", h->dir);
    h_write_file(path, "e.lua", EXECUTORS);
    emu_start(e, h->dir, extra);
    CHECK(e->port > 0);
    h_host_start(h, e->port, NULL);
}

static void stop_both(emu_proc *e, h_host *h)
{
    CHECK(h_host_stop(h, SIGTERM) == 0);
    emu_stop(e);
    h_host_cleanup(h);
}

static void test_help(void)
{
    char cmd[700], *text;
    FILE *p;
    size_t n;

    snprintf(cmd, sizeof cmd, "'%s' --help", emu_bin);
    p = popen(cmd, "r");
    text = calloc(1, 16384);
    n = p ? fread(text, 1, 16383, p) : 0;
    CHECK(p != NULL && pclose(p) == 0);
    text[n] = '\0';
    const char *want[] = {"trigger TYPE EXECUTOR",
                          "workflow EXECUTOR",
                          "--timeout SECONDS",
                          "--quiet",
                          "stop BATCH",
                          "batches",
                          "nodes",
                          "DONE BATCH",
                          "tokens",
                          "SUCCESS FAIL STOP"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECKF(strstr(text, want[i]) != NULL, "--help lacks '%s'", want[i]);
    free(text);
}

static void test_triggers(void)
{
    emu_proc e;
    h_host h;
    char *text;

    start_both(&e, &h, NULL);
    CHECKF(emu_wait(&e, "REQ /register/job/executors", 10000),
           "the host registers");
    h_sleep_ms(H_MS(300));

    emu_cmd(&e, "trigger cluster echo hello world");
    emu_cmd(&e, "trigger broadcast echo b");
    emu_cmd(&e, "trigger sharding echo [\"s0\",\"s1\"]");
    emu_cmd(&e, "trigger map fan");
    emu_cmd(&e, "trigger mapreduce sum --shards 2");
    emu_cmd(&e, "workflow bump,bump,bump --wf-context {\"n\":10}");
    emu_cmd(&e, "trigger cluster slow --timeout 1");
    emu_cmd(&e, "trigger nosuchtype echo");
    CHECK(emu_wait(&e, "cluster echo SUCCESS result=hello world", 15000));
    CHECK(emu_wait(&e, "broadcast echo SUCCESS result=[\"b\"]", 15000));
    CHECK(emu_wait(&e, "sharding echo SUCCESS result=[\"s0\",\"s1\"]", 15000));
    CHECK(emu_wait(&e, "map fan SUCCESS result=[\"x\",\"y\"]", 15000));
    CHECK(emu_wait(&e, "mapreduce sum SUCCESS result=6", 15000));
    CHECK(emu_wait(&e, "node 3/3 bump", 15000));
    CHECK(emu_wait(&e, "DONE SUCCESS wf_context={\"n\":13}", 15000));
    CHECK(emu_wait(&e, "cluster slow STOP (executor timeout)", 15000));
    CHECK(emu_wait(&e, "ERR usage: trigger TYPE EXECUTOR", 1000));
    emu_cmd(&e, "batches");
    CHECK(emu_wait(&e, "BATCHES 9", 5000));

    text = h_read_file(e.out);
    CHECKF(strstr(text, "SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj") == NULL,
           "a token is printed");
    CHECK(strstr(text, "\"token\":\"***\"") != NULL);
    CHECK(strstr(text, "status 3") == NULL && strstr(text, "status=") == NULL);
    free(text);
    stop_both(&e, &h);
}

static void test_quiet(void)
{
    emu_proc e;
    h_host h;
    char *text;

    start_both(&e, &h, "--quiet");
    emu_cmd(&e, "nodes");
    for (long long until = h_now() + H_MS(10000); h_now() < until;) {
        emu_cmd(&e, "nodes");
        if (emu_wait(&e, "NODES 1", 300))
            break;
    }
    h_sleep_ms(H_MS(500));
    emu_cmd(&e, "trigger cluster echo q");
    CHECK(emu_wait(&e, "cluster echo SUCCESS result=q", 15000));
    text = h_read_file(e.out);
    CHECKF(strstr(text, "REQ ") == NULL, "--quiet prints no requests");
    free(text);
    stop_both(&e, &h);
}

int main(void)
{
    const char *bin = getenv("SJ_BINARY");
    char copy[512];

    if (bin == NULL) {
        fprintf(stderr, "SJ_BINARY is not set\n");
        return 1;
    }
    snprintf(copy, sizeof copy, "%s", bin);
    snprintf(emu_bin, sizeof emu_bin, "%s/snailjob-emu", dirname(copy));
    if (access(emu_bin, X_OK) != 0) {
        fprintf(stderr, "%s is not built\n", emu_bin);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    RUN(test_help);
    RUN(test_triggers);
    RUN(test_quiet);
    return h_failures ? 1 : 0;
}
