/*
 * sj_run_cli.c - the `run` and `replay` subcommands (see sj_run_cli.h).
 */
#include "sj_run_cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "sj_error.h"
#include "sj_local.h"
#include "sj_record.h"

#define MAX_CHAIN 32

void sj_run_cli_usage(FILE *out)
{
    fprintf(
        out,
        "usage: snailjob-lua [-c FILE] run EXECUTOR [options]\n"
        "                                 [--then EXECUTOR [options]]...\n"
        "\n"
        "Runs one executor end to end with no server: an embedded SnailJob\n"
        "server emulation dispatches it to the host's own workers, waits\n"
        "for every log line, and prints every task, the result and the "
        "logs.\n"
        "\n"
        "  --type T             cluster|broadcast|sharding|map|mapreduce\n"
        "                       (default: as declared: job -> cluster,\n"
        "                       map -> map, map_reduce -> mapreduce)\n"
        "  --params TEXT        the job parameter text (sharding: a JSON\n"
        "                       list of strings, one per shard)\n"
        "  --shards N           reduce tasks of a mapreduce (default 1)\n"
        "  --nodes N            simulated hosts (broadcast: one task each)\n"
        "  --wf-context JSON    run as a workflow node with this context\n"
        "  --timeout SECONDS    executor/batch timeout (default 60)\n"
        "  --json               print one JSON object instead of text\n"
        "  -c, --config FILE    Lua config file returning a table\n"
        "\n"
        "One stage alone, with crafted input (map and map_reduce "
        "executors):\n"
        "  --stage map          one map task: --task-name NAME (default\n"
        "                       ROOT_MAP) and --map-result JSON, its\n"
        "                       element; an mr_do_map call is printed, not\n"
        "                       run\n"
        "  --stage reduce       one reduce task: --map-result JSON, the list\n"
        "                       of map results it gets\n"
        "  --stage merge        one merge task: --reduces JSON, the list of\n"
        "                       reduce results it gets\n"
        "  --sharding-index I --sharding-total N\n"
        "                       one shard of a sharding job (--params is\n"
        "                       that shard's parameter)\n"
        "\n"
        "A workflow chain: run A --then B --then C runs each node after the\n"
        "previous one succeeded, with the workflow context the server would\n"
        "pass on (the previous context merged with the node's changes).\n"
        "--type, --params, --shards, --nodes and the stage options apply to\n"
        "the executor they follow; the rest to the whole chain.\n"
        "\n"
        "SIGINT/SIGTERM stop the batch as the console's stop does.\n"
        "Exit status: 0 SUCCESS; 1 FAIL or STOP, or no such executor; 2 bad\n"
        "usage or configuration; 3 an executor file failed to load.\n");
}

void sj_replay_cli_usage(FILE *out)
{
    fprintf(out,
            "usage: snailjob-lua [-c FILE] replay FILE [--json] "
            "[--timeout SECONDS]\n"
            "\n"
            "Reruns one dispatch the host recorded (setting record_dir,\n"
            "SNAIL_RECORD_DIR) with the executor files configured now,\n"
            "through run's embedded server, and prints what run prints:\n"
            "the same executor, task type, stage, task name, parameters,\n"
            "map or reduce input, shard and workflow context as in\n"
            "production. A map task's mr_do_map call is printed, not run.\n"
            "\n"
            "  --json               print one JSON object instead of text\n"
            "  --timeout SECONDS    executor timeout (default: the "
            "recorded one)\n"
            "  -c, --config FILE    Lua config file returning a table\n"
            "\n"
            "Exit status: as run's.\n");
}

/* A whole number from `lo` to `max` for `opt`, or -1 (message printed). */
static int number(const char *cmd, const char *opt, const char *text, int lo,
                  int max)
{
    char *end;
    long v = strtol(text, &end, 10);

    if (text[0] == '\0' || *end != '\0' || v < lo || v > max) {
        fprintf(stderr,
                "snailjob-lua %s: %s: expected a number from %d to %d, "
                "got '%s'\n",
                cmd, opt, lo, max, text);
        return -1;
    }
    return (int)v;
}

static int is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* Run each node of the chain; print; the exit status. */
static int run_chain(const char *cmd, sj_local_options *nodes, size_t n,
                     int json, const char *config_file, const sj_run_setup *s)
{
    sj_local_report reports[MAX_CHAIN];
    const sj_local_report *done[MAX_CHAIN];
    sj_config cfg;
    sj_files files;
    char err[2048], *ctx = NULL;
    size_t ran = 0;
    int code, rc = 0;

    if ((code = s->setup(cmd, config_file, &cfg, &files)) != SJ_RUN_EXIT_OK)
        return code;
    if (files.n == 0) {
        fprintf(stderr,
                "snailjob-lua %s: no executor files configured "
                "(SNAIL_EXECUTORS / executors)\n",
                cmd);
        s->teardown(&cfg, &files);
        return SJ_RUN_EXIT_USAGE;
    }
    for (size_t i = 0; i < n; i++) {
        nodes[i].cfg = &cfg;
        nodes[i].files = (const char *const *)files.paths;
        nodes[i].n_files = files.n;
        nodes[i].handle_signals = 1;
        if (n > 1) {
            nodes[i].wf_node_id = (int64_t)i + 1;
            if (i > 0)
                nodes[i].wf_context = ctx;
            else if (nodes[i].wf_context == NULL)
                nodes[i].wf_context = "{}";
        }
        rc = sj_local_run(&nodes[i], &reports[i], err, sizeof err);
        if (rc != 0) {
            if (n > 1)
                fprintf(stderr,
                        "snailjob-lua %s: workflow node %zu of %zu (%s): "
                        "%s\n",
                        cmd, i + 1, n, nodes[i].executor, err);
            else
                fprintf(stderr, "snailjob-lua %s: %s\n", cmd, err);
            break;
        }
        done[ran++] = &reports[i];
        ctx = reports[i].wf_context;
        if (reports[i].status != SJ_SRV_SUCCESS)
            break;
    }
    if (ran > 0) {
        if (n == 1 && json)
            sj_local_print_json(done[0], stdout);
        else if (n == 1)
            sj_local_print(done[0], stdout);
        else if (json)
            sj_local_print_chain_json(done, ran, stdout);
        else
            sj_local_print_chain(done, ran, n, stdout);
        fflush(stdout);
    }
    if (rc != 0)
        code = rc == SJ_EINVAL ? SJ_RUN_EXIT_USAGE
               : rc == SJ_ELUA ? SJ_RUN_EXIT_EXECUTORS
                               : SJ_RUN_EXIT_FAIL;
    else
        code = ran == n && done[ran - 1]->status == SJ_SRV_SUCCESS
                   ? SJ_RUN_EXIT_OK
                   : SJ_RUN_EXIT_FAIL;
    for (size_t i = 0; i < ran; i++)
        sj_local_report_free(&reports[i]);
    s->teardown(&cfg, &files);
    return code;
}

int sj_run_cli(int argc, char **argv, const char *file, const sj_run_setup *s)
{
    static const char *const takes[] = {
        "--type",           "--params",         "--shards",     "--nodes",
        "--wf-context",     "--timeout",        "-c",           "--config",
        "--stage",          "--task-name",      "--map-result", "--reduces",
        "--sharding-index", "--sharding-total", "--then"};
    sj_local_options nodes[MAX_CHAIN];
    sj_local_options *o = &nodes[0];
    int reduces[MAX_CHAIN] = {0}; /* the input came as --reduces */
    const char *wf_context = NULL;
    size_t n = 1;
    int json = 0, timeout = 0;

    memset(nodes, 0, sizeof nodes);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        for (size_t k = 0; k < sizeof takes / sizeof takes[0]; k++)
            if (is(a, takes[k]) && v == NULL) {
                fprintf(stderr, "snailjob-lua run: %s needs a value\n", a);
                return SJ_RUN_EXIT_USAGE;
            }
        if (is(a, "--json")) {
            json = 1;
            continue;
        }
        if (is(a, "-h") || is(a, "--help")) {
            sj_run_cli_usage(stdout);
            return SJ_RUN_EXIT_OK;
        }
        if (strncmp(a, "--config=", 9) == 0) {
            file = a + 9;
            continue;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (o->executor != NULL) {
                fprintf(stderr,
                        "snailjob-lua run: one executor at a time ('%s' and "
                        "'%s'); chain them with --then\n",
                        o->executor, a);
                return SJ_RUN_EXIT_USAGE;
            }
            o->executor = a;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr,
                    "snailjob-lua run: unknown option '%s' (--help "
                    "lists them)\n",
                    a);
            return SJ_RUN_EXIT_USAGE;
        }
        i++;
        if (is(a, "--then")) {
            if (o->executor == NULL) {
                fprintf(stderr, "snailjob-lua run: --then follows an "
                                "executor\n");
                return SJ_RUN_EXIT_USAGE;
            }
            if (n == MAX_CHAIN) {
                fprintf(stderr, "snailjob-lua run: at most %d nodes\n",
                        MAX_CHAIN);
                return SJ_RUN_EXIT_USAGE;
            }
            o = &nodes[n++];
            o->executor = v;
        } else if (is(a, "--type")) {
            if ((o->task_type = sj_local_type_parse(v)) == 0) {
                fprintf(stderr,
                        "snailjob-lua run: --type: expected cluster, "
                        "broadcast, sharding, map or mapreduce, got '%s'\n",
                        v);
                return SJ_RUN_EXIT_USAGE;
            }
        } else if (is(a, "--stage")) {
            if ((o->stage = sj_local_stage_parse(v)) == 0) {
                fprintf(stderr,
                        "snailjob-lua run: --stage: expected map, reduce or "
                        "merge, got '%s'\n",
                        v);
                return SJ_RUN_EXIT_USAGE;
            }
        } else if (is(a, "--params")) {
            o->params = v;
        } else if (is(a, "--task-name")) {
            o->stage_task_name = v;
        } else if (is(a, "--map-result") || is(a, "--reduces")) {
            if (o->stage_input != NULL) {
                fprintf(stderr, "snailjob-lua run: --map-result and "
                                "--reduces: one input per stage\n");
                return SJ_RUN_EXIT_USAGE;
            }
            o->stage_input = v;
            reduces[o - nodes] = is(a, "--reduces");
        } else if (is(a, "--wf-context")) {
            wf_context = v;
        } else if (is(a, "--shards")) {
            if ((o->shards = number("run", a, v, 1, 1000)) < 0)
                return SJ_RUN_EXIT_USAGE;
        } else if (is(a, "--nodes")) {
            if ((o->nodes = number("run", a, v, 1, 64)) < 0)
                return SJ_RUN_EXIT_USAGE;
        } else if (is(a, "--timeout")) {
            if ((timeout = number("run", a, v, 1, 86400)) < 0)
                return SJ_RUN_EXIT_USAGE;
        } else if (is(a, "--sharding-index")) {
            if ((o->shard_index = number("run", a, v, 0, 100000)) < 0)
                return SJ_RUN_EXIT_USAGE;
        } else if (is(a, "--sharding-total")) {
            if ((o->shard_total = number("run", a, v, 1, 100000)) < 0)
                return SJ_RUN_EXIT_USAGE;
        } else if (is(a, "-c") || is(a, "--config")) {
            file = v;
        } else {
            fprintf(stderr,
                    "snailjob-lua run: unknown option '%s' (--help lists "
                    "them)\n",
                    a);
            return SJ_RUN_EXIT_USAGE;
        }
    }
    for (size_t i = 0; i < n; i++) {
        sj_local_options *p = &nodes[i];
        if (p->executor == NULL) {
            fprintf(stderr, "snailjob-lua run: which executor? (snailjob-lua "
                            "check lists them; --help for the options)\n");
            return SJ_RUN_EXIT_USAGE;
        }
        if (p->stage_input != NULL &&
            (p->stage == 0 ||
             (reduces[i] != (p->stage == SJ_SRV_STAGE_MERGE)))) {
            fprintf(stderr, "snailjob-lua run: %s: %s\n",
                    reduces[i] ? "--reduces" : "--map-result",
                    reduces[i] ? "needs --stage merge"
                               : "needs --stage map or --stage reduce");
            return SJ_RUN_EXIT_USAGE;
        }
        if (p->stage == SJ_SRV_STAGE_MERGE && p->stage_input == NULL) {
            fprintf(stderr, "snailjob-lua run: --stage merge needs "
                            "--reduces JSON (the reduce results)\n");
            return SJ_RUN_EXIT_USAGE;
        }
        if (p->stage == SJ_SRV_STAGE_REDUCE && p->stage_input == NULL) {
            fprintf(stderr, "snailjob-lua run: --stage reduce needs "
                            "--map-result JSON (the list of map results)\n");
            return SJ_RUN_EXIT_USAGE;
        }
        if (p->shard_total > 0 && p->task_type == 0)
            p->task_type = SJ_SRV_SHARDING;
        p->timeout_s = timeout;
        if (i == 0)
            p->wf_context = wf_context;
    }
    return run_chain("run", nodes, n, json, file, s);
}

/* ---- replay --------------------------------------------------------------
 */

static char *slurp(const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    char *text;

    if (j == NULL) {
        snprintf(err, errlen, "%s: %s (line %d)", path, je.text, je.line);
        return NULL;
    }
    text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return text;
}

/* Options from a recorded dispatch object `d`; the strings they point to
 * live in `keep` (an array this adds to). 0 or SJ_EINVAL (err set). */
static int options_from(json_t *d, json_t *keep, sj_local_options *o, char *err,
                        size_t errlen)
{
    const char *args = json_string_value(json_object_get(d, "argsStr"));
    json_t *holder = args ? json_loads(args, 0, NULL) : NULL, *v;
    int stage = (int)json_integer_value(json_object_get(d, "mrStage"));
    int type = (int)json_integer_value(json_object_get(d, "taskType"));
    const char *wf = json_string_value(json_object_get(d, "wfContext"));
    char *text;

#define KEEP(s)                                                                \
    (json_array_append_new(keep, json_string(s)),                              \
     json_string_value(json_array_get(keep, json_array_size(keep) - 1)))
    o->executor = json_string_value(json_object_get(d, "executorInfo"));
    if (o->executor == NULL || type < SJ_SRV_CLUSTER ||
        type > SJ_SRV_MAP_REDUCE) {
        snprintf(err, errlen,
                 "the record's dispatch has no executorInfo or "
                 "no known taskType (1-5)");
        json_decref(holder);
        return SJ_EINVAL;
    }
    o->task_type = type; /* BROADCAST: one node, one task */
    if ((v = json_object_get(holder, "jobParams")) && json_is_string(v))
        o->params = KEEP(json_string_value(v));
    if (json_is_integer(json_object_get(d, "executorTimeout")))
        o->timeout_s =
            (int)json_integer_value(json_object_get(d, "executorTimeout"));
    if (wf != NULL && wf[0] != '\0')
        o->wf_context = wf;
    if (type == SJ_SRV_SHARDING &&
        json_is_integer(json_object_get(d, "shardingTotal"))) {
        o->shard_index =
            (int)json_integer_value(json_object_get(d, "shardingIndex"));
        o->shard_total =
            (int)json_integer_value(json_object_get(d, "shardingTotal"));
    } else if (type == SJ_SRV_SHARDING) {
        /* A retried shard carries no index: run it as shard 0 of 1. */
        o->shard_total = 1;
    }
    if (type == SJ_SRV_MAP || type == SJ_SRV_MAP_REDUCE) {
        o->stage = stage >= SJ_SRV_STAGE_MAP && stage <= SJ_SRV_STAGE_MERGE
                       ? stage
                       : SJ_SRV_STAGE_MAP;
        o->stage_task_name = json_string_value(json_object_get(d, "taskName"));
        v = json_object_get(holder, o->stage == SJ_SRV_STAGE_MERGE ? "reduces"
                                                                   : "maps");
        if (v != NULL && !(json_is_string(v) && o->stage == SJ_SRV_STAGE_MAP &&
                           json_string_length(v) == 0)) {
            text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            o->stage_input = KEEP(text);
            free(text);
        } else if (o->stage != SJ_SRV_STAGE_MAP) {
            o->stage_input = "[]";
        }
    }
#undef KEEP
    json_decref(holder);
    return 0;
}

int sj_replay_cli(int argc, char **argv, const char *file,
                  const sj_run_setup *s)
{
    const char *path = NULL;
    int json = 0, timeout = 0, rc;
    char err[1024], *text;
    json_t *rec, *d, *keep;
    sj_local_options o;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (is(a, "-h") || is(a, "--help")) {
            sj_replay_cli_usage(stdout);
            return SJ_RUN_EXIT_OK;
        } else if (is(a, "--json")) {
            json = 1;
        } else if ((is(a, "-c") || is(a, "--config")) && v != NULL) {
            file = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            file = a + 9;
        } else if (is(a, "--timeout") && v != NULL) {
            if ((timeout = number("replay", a, argv[++i], 1, 86400)) < 0)
                return SJ_RUN_EXIT_USAGE;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr,
                    "snailjob-lua replay: unknown option '%s' (--help)\n", a);
            return SJ_RUN_EXIT_USAGE;
        } else if (path == NULL) {
            path = a;
        } else {
            fprintf(stderr, "snailjob-lua replay: one file at a time\n");
            return SJ_RUN_EXIT_USAGE;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "snailjob-lua replay: which file? (a dispatch "
                        "recorded under record_dir; --help)\n");
        return SJ_RUN_EXIT_USAGE;
    }
    if ((text = slurp(path, err, sizeof err)) == NULL) {
        fprintf(stderr, "snailjob-lua replay: %s\n", err);
        return SJ_RUN_EXIT_USAGE;
    }
    rec = json_loads(text, 0, NULL);
    free(text);
    d = json_array_get(json_object_get(rec, "body"), 0);
    if (!json_is_object(d)) {
        fprintf(stderr,
                "snailjob-lua replay: %s: not a recorded dispatch (expected "
                "{\"format\": \"%s\", \"body\": [{...}]})\n",
                path, SJ_RECORD_FORMAT);
        json_decref(rec);
        return SJ_RUN_EXIT_USAGE;
    }
    memset(&o, 0, sizeof o);
    keep = json_array();
    if ((rc = options_from(d, keep, &o, err, sizeof err)) != 0) {
        fprintf(stderr, "snailjob-lua replay: %s: %s\n", path, err);
        rc = SJ_RUN_EXIT_USAGE;
    } else {
        if (timeout > 0)
            o.timeout_s = timeout;
        rc = run_chain("replay", &o, 1, json, file, s);
    }
    json_decref(keep);
    json_decref(rec);
    return rc;
}
