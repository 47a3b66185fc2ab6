/*
 * sj_local_print.c - what `snailjob-lua run` and `replay` print (see
 * sj_local_print.h).
 */
#include "sj_local_print.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sj_error.h"
#include "sj_local.h"

#define JSON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)

/* Keys of `now` whose value differs from `before`, and keys of `before`
 * that are gone (as null). New reference. */
static json_t *changed_keys(const char *before_text, const char *now_text)
{
    json_t *before = json_loads(before_text ? before_text : "{}", 0, NULL);
    json_t *now = json_loads(now_text ? now_text : "{}", 0, NULL);
    json_t *ch = json_object(), *v;
    const char *k;

    json_object_foreach(now, k, v)
    {
        if (!json_equal(v, json_object_get(before, k)))
            json_object_set(ch, k, v);
    }
    json_object_foreach(before, k, v)
    {
        if (json_object_get(now, k) == NULL)
            json_object_set_new(ch, k, json_null());
    }
    json_decref(before);
    json_decref(now);
    return ch;
}

static size_t task_index(const sj_local_report *r, int64_t task_id)
{
    for (size_t i = 0; i < r->n_tasks; i++)
        if (r->tasks[i].task_id == task_id)
            return i;
    return (size_t)-1;
}

static void clock_text(long long ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || localtime_r(&t, &tm) == NULL) {
        snprintf(buf, len, "-");
        return;
    }
    snprintf(buf, len, "%02d:%02d:%02d.%03lld", tm.tm_hour, tm.tm_min,
             tm.tm_sec, ms % 1000);
}

void sj_local_print(const sj_local_report *r, FILE *out)
{
    const char *why = sj_local_reason_name(r->reason);
    json_t *ch = changed_keys(r->wf_context_in, r->wf_context);
    json_t *calls = json_loads(r->map_calls ? r->map_calls : "[]", 0, NULL);
    char *chtext = json_dumps(ch, JSON_FLAGS);
    size_t last = (size_t)-1, i;
    sj_local_log l;
    json_t *c;

    fprintf(out, "executor  %s (%s), run as %s on %d node%s\n", r->executor,
            r->kind ? r->kind : "?", sj_local_type_name(r->task_type), r->nodes,
            r->nodes == 1 ? "" : "s");
    fprintf(out, "batch     %" PRId64 "\n\n", r->batch_id);
    fprintf(out, "tasks (%zu)\n", r->n_tasks);
    for (i = 0; i < r->n_tasks; i++) {
        const sj_srv_task_info *t = &r->tasks[i];
        const char *stage = sj_local_stage_name(t->mr_stage);
        size_t parent = task_index(r, t->parent_id);
        fprintf(out, "  #%-3zu %-20s %-8s", i + 1, t->name,
                sj_local_status_name(t->status));
        if (stage != NULL)
            fprintf(out, " stage %s", stage);
        if (t->parent_id != 0 && parent != (size_t)-1)
            fprintf(out, " parent #%zu", parent + 1);
        fprintf(out, " on %s\n", t->host_id ? t->host_id : "(none)");
        if (t->result != NULL && t->result[0] != '\0')
            fprintf(out, "        result:  %s\n", t->result);
        if (t->status != SJ_SRV_SUCCESS && t->message != NULL &&
            t->message[0] != '\0')
            fprintf(out, "        message: %s\n", t->message);
    }
    json_array_foreach(calls, i, c)
    {
        char *list = json_dumps(json_object_get(c, "list"), JSON_FLAGS);
        fprintf(out, "mr_do_map %s -> %s\n", list ? list : "?",
                json_string_value(json_object_get(c, "task_name")));
        free(list);
    }
    fprintf(out, "\nstatus    %s", sj_local_status_name(r->status));
    if (why != NULL && r->status != SJ_SRV_SUCCESS)
        fprintf(out, " (%s)", why);
    fprintf(out, " in %.2f s\n", (double)r->elapsed_ms / 1000.0);
    fprintf(out, "result    %s\n",
            r->result && r->result[0] ? r->result : "(none)");
    fprintf(out, "wf_context %s\n", r->wf_context ? r->wf_context : "{}");
    fprintf(out, "  changed %s\n",
            json_object_size(ch) ? (chtext ? chtext : "?") : "(nothing)");

    fprintf(out, "\nlogs (%zu line%s)\n", r->n_logs, r->n_logs == 1 ? "" : "s");
    sj_local_log_rewind(r);
    while (sj_local_log_next(r, &l)) {
        size_t ti = task_index(r, l.task_id);
        char when[32];
        if (ti != last) {
            if (ti != (size_t)-1)
                fprintf(out, "  #%zu %s\n", ti + 1, r->tasks[ti].name);
            else
                fprintf(out, "  task %" PRId64 "\n", l.task_id);
            last = ti;
        }
        clock_text(l.time_ms, when, sizeof when);
        fprintf(out, "    %s %-5s %s%s%s\n", when, l.level,
                l.location[0] ? l.location : "", l.location[0] ? " " : "",
                l.message);
        sj_local_log_free(&l);
    }
    if (r->logs_dropped > 0)
        fprintf(out, "  %lu log line%s could not be delivered\n",
                r->logs_dropped, r->logs_dropped == 1 ? "" : "s");
    free(chtext);
    json_decref(ch);
    json_decref(calls);
}

/* A string, or null for NULL. */
static json_t *text_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

/* Everything but "logs", as an object. NULL on ENOMEM. */
static json_t *report_object(const sj_local_report *r)
{
    json_t *o = json_object(), *tasks = json_array();
    json_t *ctx = json_loads(r->wf_context ? r->wf_context : "{}", 0, NULL);
    json_t *calls = json_loads(r->map_calls ? r->map_calls : "[]", 0, NULL);
    const char *why = sj_local_reason_name(r->reason);

    if (o == NULL || tasks == NULL) {
        json_decref(o);
        json_decref(tasks);
        json_decref(ctx);
        json_decref(calls);
        return NULL;
    }
    json_object_set_new(o, "status",
                        json_string(sj_local_status_name(r->status)));
    json_object_set_new(o, "result", text_or_null(r->result));
    json_object_set_new(o, "reason", why ? json_string(why) : json_null());
    json_object_set_new(o, "executor", json_string(r->executor));
    json_object_set_new(o, "kind", json_string(r->kind ? r->kind : "?"));
    json_object_set_new(o, "type",
                        json_string(sj_local_type_name(r->task_type)));
    json_object_set_new(o, "nodes", json_integer(r->nodes));
    json_object_set_new(o, "batch_id", json_integer(r->batch_id));
    json_object_set_new(o, "elapsed_ms", json_integer(r->elapsed_ms));
    json_object_set_new(o, "logs_dropped",
                        json_integer((json_int_t)r->logs_dropped));
    for (size_t i = 0; i < r->n_tasks; i++) {
        const sj_srv_task_info *t = &r->tasks[i];
        const char *stage = sj_local_stage_name(t->mr_stage);
        json_t *jt = json_object();
        json_object_set_new(jt, "id", json_integer(t->task_id));
        json_object_set_new(jt, "parent_id", json_integer(t->parent_id));
        json_object_set_new(jt, "name", json_string(t->name));
        json_object_set_new(jt, "stage",
                            stage ? json_string(stage) : json_null());
        json_object_set_new(jt, "status",
                            json_string(sj_local_status_name(t->status)));
        json_object_set_new(jt, "host_id", text_or_null(t->host_id));
        json_object_set_new(jt, "result", text_or_null(t->result));
        json_object_set_new(jt, "message", text_or_null(t->message));
        json_object_set_new(jt, "args", text_or_null(t->args_str));
        json_array_append_new(tasks, jt);
    }
    json_object_set_new(o, "tasks", tasks);
    json_object_set_new(o, "wf_context", ctx ? ctx : json_object());
    json_object_set_new(o, "mr_do_map", calls ? calls : json_array());
    json_object_set_new(o, "wf_changed",
                        changed_keys(r->wf_context_in, r->wf_context));
    return o;
}

static int cmp_text(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* `"key": value` for each key of `o` in sorted order, one per line, with
 * `extra` (a key whose value `write_extra` streams) in its sorted place. */
static int write_sorted(FILE *out, json_t *o, const char *extra,
                        int (*write_extra)(FILE *, const void *),
                        const void *ud)
{
    size_t n = json_object_size(o), k = 0, i;
    const char **keys = calloc(n + 1, sizeof *keys), *key;
    json_t *v;
    int rc = 0, first = 1;

    if (keys == NULL)
        return SJ_ENOMEM;
    json_object_foreach(o, key, v)
    {
        keys[k++] = key;
    }
    keys[k++] = extra;
    qsort(keys, k, sizeof *keys, cmp_text);
    fputs("{", out);
    for (i = 0; i < k && rc == 0; i++) {
        fprintf(out, "%s\n\"%s\": ", first ? "" : ",", keys[i]);
        first = 0;
        if (strcmp(keys[i], extra) == 0) {
            rc = write_extra(out, ud);
        } else {
            char *text = json_dumps(json_object_get(o, keys[i]), JSON_FLAGS);
            if (text == NULL)
                rc = SJ_ENOMEM;
            else
                fputs(text, out);
            free(text);
        }
    }
    fputs("\n}", out);
    free(keys);
    return rc;
}

/* The "logs" array, one line per log line, read back from the file. */
static int write_logs(FILE *out, const void *ud)
{
    const sj_local_report *r = ud;
    sj_local_log l;
    size_t n = 0;
    int rc = 0;

    fputs("[", out);
    sj_local_log_rewind(r);
    while (sj_local_log_next(r, &l)) {
        size_t ti = task_index(r, l.task_id);
        json_t *jl = json_object();
        char *text;
        json_object_set_new(jl, "task_id", json_integer(l.task_id));
        json_object_set_new(jl, "task_name",
                            ti != (size_t)-1 ? json_string(r->tasks[ti].name)
                                             : json_null());
        json_object_set_new(jl, "time", json_integer(l.time_ms));
        json_object_set_new(jl, "level", json_string(l.level));
        json_object_set_new(jl, "location", json_string(l.location));
        json_object_set_new(jl, "message", json_string(l.message));
        text = json_dumps(jl, JSON_FLAGS);
        if (text == NULL)
            rc = SJ_ENOMEM;
        else
            fprintf(out, "%s\n%s", n++ ? "," : "", text);
        free(text);
        json_decref(jl);
        sj_local_log_free(&l);
    }
    fputs(n ? "\n]" : "]", out);
    return rc;
}

static int write_report(FILE *out, const void *ud)
{
    const sj_local_report *r = ud;
    json_t *o = report_object(r);
    int rc;

    if (o == NULL)
        return SJ_ENOMEM;
    rc = write_sorted(out, o, "logs", write_logs, r);
    json_decref(o);
    return rc;
}

int sj_local_print_json(const sj_local_report *r, FILE *out)
{
    int rc = write_report(out, r);
    fputc('\n', out);
    return rc == 0 && ferror(out) ? SJ_EIO : rc;
}

typedef struct chain {
    const sj_local_report *const *r;
    size_t n;
} chain;

static int write_nodes(FILE *out, const void *ud)
{
    const chain *c = ud;
    int rc = 0;

    fputs("[\n", out);
    for (size_t i = 0; i < c->n && rc == 0; i++) {
        rc = write_report(out, c->r[i]);
        fputs(i + 1 < c->n ? ",\n" : "\n", out);
    }
    fputs("]", out);
    return rc;
}

int sj_local_print_chain_json(const sj_local_report *const *r, size_t n,
                              FILE *out)
{
    const sj_local_report *last = n > 0 ? r[n - 1] : NULL;
    json_t *o = json_object();
    chain c = {r, n};
    int rc;

    if (o == NULL)
        return SJ_ENOMEM;
    json_object_set_new(
        o, "status",
        json_string(last ? sj_local_status_name(last->status) : "?"));
    json_object_set_new(
        o, "wf_context",
        json_loads(last && last->wf_context ? last->wf_context : "{}", 0,
                   NULL));
    rc = write_sorted(out, o, "nodes", write_nodes, &c);
    fputc('\n', out);
    json_decref(o);
    return rc == 0 && ferror(out) ? SJ_EIO : rc;
}

void sj_local_print_chain(const sj_local_report *const *r, size_t n,
                          size_t total, FILE *out)
{
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%s== workflow node %zu of %zu: %s ==\n\n", i ? "\n" : "",
                i + 1, total, r[i]->executor);
        sj_local_print(r[i], out);
    }
    if (n == 0)
        return;
    fprintf(out, "\nworkflow  %s", sj_local_status_name(r[n - 1]->status));
    if (n < total)
        fprintf(out, " at node %zu of %zu (%s); the rest did not run", n, total,
                r[n - 1]->executor);
    else
        fprintf(out, " after %zu node%s", n, n == 1 ? "" : "s");
    fprintf(out, ", wf_context %s\n",
            r[n - 1]->wf_context ? r[n - 1]->wf_context : "{}");
}
