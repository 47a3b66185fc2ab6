#include "sj_reload.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sj_error.h"
#include "sj_files.h"
#include "sj_log.h"
#include "sj_metrics.h"
#include "sj_watch.h"

#define DEFAULT_DEBOUNCE_MS 50

struct sj_reload {
    sj_reload_options opts;
    sj_watch *watch;
    sj_files files; /* last good expansion; watcher thread once started */
};

/* A string list with duplicates dropped. */
typedef struct strv {
    char **v;
    size_t n;
} strv;

static void strv_add(strv *s, const char *str)
{
    char **v;

    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], str) == 0)
            return;
    if ((v = realloc(s->v, (s->n + 1) * sizeof *v)) == NULL)
        return;
    s->v = v;
    if ((s->v[s->n] = strdup(str)) != NULL)
        s->n++;
}

static void strv_free(strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static void add_dirname(strv *s, const char *path)
{
    char *copy = strdup(path);
    if (copy != NULL)
        strv_add(s, dirname(copy));
    free(copy);
}

/* What to watch: each directory entry of the setting, the directory of
 * each file or glob entry (unless that directory part is a glob itself),
 * and the directory of every file found. */
static void watch_dirs(const char *spec, const sj_files *files, sj_pool *pool,
                       strv *out)
{
    char *copy = spec ? strdup(spec) : NULL, *save = NULL, *e;
    struct stat st;

    memset(out, 0, sizeof *out);
    for (e = copy ? strtok_r(copy, ":", &save) : NULL; e != NULL;
         e = strtok_r(NULL, ":", &save)) {
        const char *slash = strrchr(e, '/');
        if (strpbrk(e, "*?[") == NULL && stat(e, &st) == 0 &&
            S_ISDIR(st.st_mode))
            strv_add(out, e);
        else if (slash == NULL || strcspn(e, "*?[") > (size_t)(slash - e))
            add_dirname(out, e);
    }
    free(copy);
    for (size_t i = 0; i < files->n; i++)
        add_dirname(out, files->paths[i]);
    /* and the directory of every module the generation's load required */
    const char *const *mods;
    size_t n = sj_pool_module_files(pool, &mods);
    for (size_t i = 0; i < n; i++)
        add_dirname(out, mods[i]);
}

static void retarget(sj_reload *r)
{
    strv dirs;
    watch_dirs(r->opts.spec, &r->files, r->opts.pool, &dirs);
    size_t n = sj_watch_set_dirs(r->watch, (const char *const *)dirs.v, dirs.n);
    SJ_DEBUG("watching %zu of %zu executor director%s", n, dirs.n,
             dirs.n == 1 ? "y" : "ies");
    strv_free(&dirs);
}

static int in_list(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

/* sj_watch_cb: the watcher thread. */
static void do_reload(void *ud, const char *why)
{
    sj_reload *r = ud;
    sj_pool *pool = r->opts.pool;
    const char *const *names, *const *kinds;
    unsigned long long before = sj_pool_generation(pool), gen = 0;
    long long t0 = sj_mono_ms();
    sj_files files;
    strv old = {0};
    char err[1024];
    size_t n;
    int rc, changed = 0;

    n = sj_pool_executors(pool, &names, &kinds);
    for (size_t i = 0; i < n; i++) /* they die with the old generation */
        strv_add(&old, names[i]);
    rc = sj_files_expand(r->opts.spec, &files, err, sizeof err);
    if (rc == 0) {
        SJ_DEBUG("reload (%s): loading %zu executor file(s)", why, files.n);
        rc = sj_pool_reload(pool, (const char *const *)files.paths, files.n,
                            &gen, err, sizeof err);
        if (rc == 0) {
            sj_files_free(&r->files);
            r->files = files;
        } else {
            sj_files_free(&files);
        }
    }
    if (rc != 0) {
        sj_metrics_reload_failed();
        SJ_ERROR("reload (%s) failed; generation %llu stays in force: %s", why,
                 before, err);
        strv_free(&old);
        retarget(r);
        return;
    }
    n = sj_pool_executors(pool, &names, &kinds);
    SJ_INFO("reload (%s): generation %llu published in %lld ms, %zu "
            "file(s), %zu executor(s)",
            why, gen, sj_mono_ms() - t0, r->files.n, n);
    for (size_t i = 0; i < n; i++)
        if (!in_list((const char *const *)old.v, old.n, names[i])) {
            SJ_INFO("  executor %s (%s) added", names[i], kinds[i]);
            changed = 1;
        }
    for (size_t i = 0; i < old.n; i++)
        if (!in_list(names, n, old.v[i])) {
            SJ_INFO("  executor %s removed", old.v[i]);
            changed = 1;
        }
    if (changed && r->opts.up != NULL &&
        sj_upstream_set_executors(r->opts.up, names, n) != 0)
        SJ_WARN("reload: cannot re-register the executor names: out of "
                "memory");
    strv_free(&old);
    retarget(r);
}

int sj_reload_start(const sj_reload_options *opts, sj_reload **out)
{
    sj_reload *r = calloc(1, sizeof *r);
    strv dirs;
    char err[1024];
    int rc;

    if (r == NULL)
        return SJ_ENOMEM;
    r->opts = *opts;
    if (r->opts.debounce_ms <= 0)
        r->opts.debounce_ms = DEFAULT_DEBOUNCE_MS;
    /* What the pool was started from, for the directories to watch. */
    if (sj_files_expand(opts->spec, &r->files, err, sizeof err) != 0)
        SJ_WARN("reload: %s", err);
    watch_dirs(opts->spec, &r->files, opts->pool, &dirs);
    rc = sj_watch_start((const char *const *)dirs.v, dirs.n,
                        r->opts.debounce_ms, do_reload, r, &r->watch);
    strv_free(&dirs);
    if (rc != 0) {
        sj_files_free(&r->files);
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void sj_reload_kick(sj_reload *r, const char *why)
{
    sj_watch_kick(r->watch, why);
}

void sj_reload_stop(sj_reload *r)
{
    if (r == NULL)
        return;
    sj_watch_stop(r->watch);
    sj_files_free(&r->files);
    free(r);
}
