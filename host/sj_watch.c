#include "sj_watch.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sj_error.h"
#include "sj_log.h"

#define DIR_MASK                                                               \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |    \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define MAX_DEBOUNCES 10 /* a never-ending burst still fires */

typedef struct wdir {
    int wd;
    char *path;
} wdir;

struct sj_watch {
    pthread_t thread;
    int ifd; /* inotify, or -1 */
    int efd; /* eventfd: kick or stop */
    int debounce_ms;
    sj_watch_cb fire;
    void *ud;
    atomic_int stop;
    _Atomic(const char *) kick; /* pending kick's reason, or NULL */
    wdir *dirs;                 /* watcher thread only once started */
    size_t n_dirs;
};

static int is_lua_name(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && name[0] != '.' && strcmp(name + n - 4, ".lua") == 0;
}

static const char *dir_of(sj_watch *w, int wd)
{
    for (size_t i = 0; i < w->n_dirs; i++)
        if (w->dirs[i].wd == wd)
            return w->dirs[i].path;
    return NULL;
}

size_t sj_watch_set_dirs(sj_watch *w, const char *const *dirs, size_t n)
{
    wdir *next = calloc(n ? n : 1, sizeof *next);
    size_t m = 0;

    if (next == NULL || w->ifd < 0) {
        free(next);
        return w->n_dirs;
    }
    for (size_t i = 0; i < n; i++) {
        int wd = inotify_add_watch(w->ifd, dirs[i], DIR_MASK);
        int dup = 0;
        if (wd < 0) {
            SJ_WARN("cannot watch %s for executor changes: %s", dirs[i],
                    strerror(errno));
            continue;
        }
        for (size_t j = 0; j < m; j++) /* the same inode twice */
            dup |= next[j].wd == wd;
        if (dup || (next[m].path = strdup(dirs[i])) == NULL)
            continue;
        next[m++].wd = wd;
    }
    for (size_t i = 0; i < w->n_dirs; i++) {
        int kept = 0;
        for (size_t j = 0; j < m; j++)
            kept |= next[j].wd == w->dirs[i].wd;
        if (!kept)
            inotify_rm_watch(w->ifd, w->dirs[i].wd);
        free(w->dirs[i].path);
    }
    free(w->dirs);
    w->dirs = next;
    w->n_dirs = m;
    return m;
}

/* Read what inotify has; 1 if a relevant event was seen, with the first
 * one's path in `why` if it is still empty. */
static int drain(sj_watch *w, char *why, size_t whylen)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int relevant = 0;
    ssize_t n;

    while ((n = read(w->ifd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            const char *dir = dir_of(w, ev->wd);
            int hit = 0;
            p += sizeof *ev + ev->len;
            if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW)) {
                hit = 1;
            } else if (ev->len > 0 && !(ev->mask & IN_ISDIR) &&
                       is_lua_name(ev->name) && dir != NULL) {
                hit = 1;
                if (ev->mask & IN_CREATE) { /* wait for its close */
                    char path[PATH_MAX];
                    struct stat st;
                    snprintf(path, sizeof path, "%s/%s", dir, ev->name);
                    hit = lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
                }
            }
            if (!hit)
                continue;
            if (!relevant && why[0] == '\0')
                snprintf(why, whylen, "file change: %s%s%s", dir ? dir : "?",
                         ev->len ? "/" : "", ev->len ? ev->name : "");
            relevant = 1;
        }
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        SJ_WARN("reading inotify events: %s", strerror(errno));
    return relevant;
}

/* When a pending burst fires: debounce_ms after its last event, capped. */
static long long due_ms(const sj_watch *w, long long first, long long last)
{
    long long due = last + w->debounce_ms;
    long long cap = first + (long long)w->debounce_ms * MAX_DEBOUNCES;
    return due < cap ? due : cap;
}

static void free_dirs(sj_watch *w)
{
    for (size_t i = 0; i < w->n_dirs; i++)
        free(w->dirs[i].path);
    free(w->dirs);
    w->dirs = NULL;
    w->n_dirs = 0;
}

static void *watch_thread(void *arg)
{
    sj_watch *w = arg;
    char why[PATH_MAX + 32] = "";
    long long first = 0, last = 0;
    int pending = 0;

    sj_log_thread_name("watch");
    while (!atomic_load(&w->stop)) {
        struct pollfd fds[2] = {{w->efd, POLLIN, 0}, {w->ifd, POLLIN, 0}};
        int timeout = -1;
        if (pending) {
            long long now = sj_mono_ms(), due = due_ms(w, first, last);
            timeout = due > now ? (int)(due - now) : 0;
        }
        int rc = poll(fds, w->ifd >= 0 ? 2 : 1, timeout);
        if (rc < 0 && errno != EINTR) {
            SJ_ERROR("watcher: poll: %s", strerror(errno));
            break;
        }
        if (rc > 0 && (fds[0].revents & POLLIN)) {
            uint64_t v;
            if (read(w->efd, &v, sizeof v) < 0 && errno != EAGAIN)
                SJ_WARN("watcher: eventfd: %s", strerror(errno));
            const char *kick = atomic_exchange(&w->kick, NULL);
            if (atomic_load(&w->stop))
                break;
            if (kick != NULL) {
                /* Covers the files changed so far too. */
                if (w->ifd >= 0)
                    drain(w, why, sizeof why);
                pending = 0;
                why[0] = '\0';
                w->fire(w->ud, kick);
                continue;
            }
        }
        if (rc > 0 && w->ifd >= 0 && (fds[1].revents & POLLIN) &&
            drain(w, why, sizeof why)) {
            last = sj_mono_ms();
            if (!pending)
                first = last;
            pending = 1;
        }
        /* Not only on a poll timeout: unrelated events must not starve a
         * due burst. */
        if (pending && sj_mono_ms() >= due_ms(w, first, last)) {
            pending = 0;
            w->fire(w->ud, why);
            why[0] = '\0';
        }
    }
    return NULL;
}

int sj_watch_start(const char *const *dirs, size_t n, int debounce_ms,
                   sj_watch_cb fire, void *ud, sj_watch **out)
{
    sj_watch *w = calloc(1, sizeof *w);
    int rc = SJ_EIO;

    if (w == NULL)
        return SJ_ENOMEM;
    w->debounce_ms = debounce_ms > 0 ? debounce_ms : 1;
    w->fire = fire;
    w->ud = ud;
    atomic_init(&w->stop, 0);
    atomic_init(&w->kick, NULL);
    if ((w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        SJ_ERROR("watcher: eventfd: %s", strerror(errno));
        goto fail_efd;
    }
    w->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (w->ifd < 0)
        SJ_WARN("cannot watch executor files (inotify: %s); SIGHUP still "
                "reloads",
                strerror(errno));
    else
        sj_watch_set_dirs(w, dirs, n);
    *out = w; /* before the thread: `fire` may use it at once */
    if (pthread_create(&w->thread, NULL, watch_thread, w) != 0)
        goto fail_thread;
    return 0;

fail_thread:
    *out = NULL;
    free_dirs(w);
    if (w->ifd >= 0)
        close(w->ifd);
    close(w->efd);
fail_efd:
    free(w);
    return rc;
}

void sj_watch_kick(sj_watch *w, const char *why)
{
    uint64_t one = 1;

    atomic_store(&w->kick, why);
    if (write(w->efd, &one, sizeof one) < 0) {
        /* The counter is full: a wake-up is pending anyway. */
    }
}

void sj_watch_stop(sj_watch *w)
{
    uint64_t one = 1;

    if (w == NULL)
        return;
    atomic_store(&w->stop, 1);
    if (write(w->efd, &one, sizeof one) < 0) {
        /* see sj_watch_kick */
    }
    pthread_join(w->thread, NULL);
    free_dirs(w);
    if (w->ifd >= 0)
        close(w->ifd);
    close(w->efd);
    free(w);
}
