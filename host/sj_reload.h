/*
 * sj_reload.h - hot reload of the executor files (issue 5, lua-api.md
 * "Loading").
 *
 * Ties the watcher (sj_watch) to the pool's generations (sj_pool_reload)
 * and to the server registration (sj_upstream_set_executors). A reload is
 * triggered by a change of a .lua file in the directories the executor
 * setting names or holds files in, debounced, or by sj_reload_kick
 * (SIGHUP). It re-expands the setting (sj_files_expand) and asks the pool
 * for a new generation. On any failure (an entry now missing, a file that
 * cannot be read, a syntax error, an error at load, a duplicate executor
 * name) the host log gets one ERROR line "reload (<why>) failed; generation
 * G stays in force: <error naming file and line>" and nothing changes. On
 * success it logs "reload (<why>): generation G ..." and one line per
 * executor added or removed, re-registers the executor names with the
 * server if they changed, and re-targets the watcher at the directories of
 * the new file list.
 *
 * A watched directory that is deleted stops being watched; if it comes
 * back, a SIGHUP (or a change in another watched directory) reloads and
 * watches it again.
 *
 * Every reload runs on the watcher's thread, one at a time. Start/stop:
 * the main thread (after sj_pool_start, before sj_pool_stop);
 * sj_reload_kick: any thread.
 */
#ifndef SJ_RELOAD_H
#define SJ_RELOAD_H

#include "sj_pool.h"
#include "sj_upstream.h"

typedef struct sj_reload sj_reload;

typedef struct sj_reload_options {
    const char *spec; /* the executor setting; borrowed, outlives the reload */
    sj_pool *pool;    /* borrowed */
    sj_upstream *up;  /* borrowed; NULL: no registration */
    int debounce_ms;  /* 0: 50 */
} sj_reload_options;

/* Start watching. 0, SJ_ENOMEM or SJ_EIO (no thread). */
int sj_reload_start(const sj_reload_options *opts, sj_reload **out);

/* Reload now (`why`, a string literal, names the trigger in the log). */
void sj_reload_kick(sj_reload *r, const char *why);

/* Stop watching (waits for a reload in progress) and free. NULL ok. */
void sj_reload_stop(sj_reload *r);

#endif
