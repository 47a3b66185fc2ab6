/*
 * sj_watch.h - a thread that notices changed executor files.
 *
 * The watcher owns one thread, an inotify instance over a set of
 * directories, and an eventfd for kicks and stop. It reacts to a "*.lua"
 * name (not starting with '.') in a watched directory that is written and
 * closed, moved in or out, deleted, or created as a symlink, and to a
 * watched directory itself being deleted or moved. A burst of such events
 * is debounced: `fire` is called once, `debounce_ms` after the last event
 * (but at most 10 debounce periods after the first), on the watcher
 * thread. A plain file's creation alone does not count: its close after
 * writing does, so a half-written file is not loaded. sj_watch_kick calls
 * `fire` promptly with the kick's reason (SIGHUP). Events that arrive
 * while `fire` runs lead to one more call afterwards.
 *
 * If inotify cannot be set up (no kernel support, watch limit reached) the
 * watcher still runs and kicks still work; the failure is logged.
 *
 * Threads: start/stop from one controlling thread; sj_watch_kick from any
 * thread; sj_watch_set_dirs only from inside `fire` (the watcher thread).
 */
#ifndef SJ_WATCH_H
#define SJ_WATCH_H

#include <stddef.h>

typedef struct sj_watch sj_watch;

/* Called on the watcher thread. `why` is the kick's reason or
 * "file change: <dir>/<name>" (the burst's first relevant event); it is
 * valid during the call. */
typedef void (*sj_watch_cb)(void *ud, const char *why);

/* Start watching `dirs` (copied; a directory that cannot be watched is
 * logged and skipped). *out is set before the thread starts, so `fire` may
 * read it. 0, SJ_ENOMEM or SJ_EIO (no thread or eventfd; *out NULL). */
int sj_watch_start(const char *const *dirs, size_t n, int debounce_ms,
                   sj_watch_cb fire, void *ud, sj_watch **out);

/* Replace the watched set: new directories are added before old ones are
 * dropped, so no event in a directory kept is missed. Returns how many
 * directories are watched. Watcher thread only (from `fire`). */
size_t sj_watch_set_dirs(sj_watch *w, const char *const *dirs, size_t n);

/* Ask for a `fire` now; `why` must be a string literal (it is kept). Any
 * thread; async-signal-safe apart from that. */
void sj_watch_kick(sj_watch *w, const char *why);

/* Stop the thread (waiting for a `fire` in progress) and free. NULL ok. */
void sj_watch_stop(sj_watch *w);

#endif
