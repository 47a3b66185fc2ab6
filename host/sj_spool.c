#include "sj_spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sj_error.h"
#include "sj_log.h"

/* Compact when everything is acknowledged and the file is this large. */
#define SPOOL_COMPACT_BYTES (4 * 1024 * 1024)

struct sj_spool {
    pthread_mutex_t lock;
    int fd;
    char path[1024];
    uint64_t next_seq;
    size_t pending;
    off_t size;
};

/* One pending record while recovering. */
typedef struct rec {
    uint64_t seq;
    char *body;
    int acked;
} rec;

typedef struct recs {
    rec *v;
    size_t n, cap;
} recs;

static int recs_add(recs *r, uint64_t seq, const char *body, size_t len)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        rec *v = realloc(r->v, cap * sizeof *v);
        if (v == NULL)
            return SJ_ENOMEM;
        r->v = v;
        r->cap = cap;
    }
    char *b = strndup(body, len);
    if (b == NULL)
        return SJ_ENOMEM;
    r->v[r->n++] = (rec){.seq = seq, .body = b};
    return 0;
}

static void recs_ack(recs *r, uint64_t seq)
{
    /* Acks mostly follow appends closely: search from the end. */
    for (size_t i = r->n; i-- > 0;)
        if (r->v[i].seq == seq) {
            r->v[i].acked = 1;
            return;
        }
}

static void recs_free(recs *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].body);
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* Read a whole journal into `r` (pending and acked). Torn or unknown lines
 * are skipped. */
static int read_journal(int fd, recs *r)
{
    struct stat st;
    char *buf, *p, *end;

    if (fstat(fd, &st) != 0)
        return SJ_EIO;
    if (st.st_size == 0)
        return 0;
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL)
        return SJ_ENOMEM;
    if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
        free(buf);
        return SJ_EIO;
    }
    buf[st.st_size] = '\0';
    for (p = buf; p < buf + st.st_size; p = end + 1) {
        char kind;
        uint64_t seq;
        int off = 0;

        end = memchr(p, '\n', (size_t)(buf + st.st_size - p));
        if (end == NULL)
            break; /* torn last line: never acknowledged, never complete */
        *end = '\0';
        if (sscanf(p, "%c %" SCNu64 " %n", &kind, &seq, &off) < 2)
            continue;
        if (kind == 'R' && off > 0)
            recs_add(r, seq, p + off, strlen(p + off));
        else if (kind == 'A')
            recs_ack(r, seq);
    }
    free(buf);
    return 0;
}

static int write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return SJ_EIO;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

static int append_line(sj_spool *sp, char kind, uint64_t seq, const char *body)
{
    size_t blen = body != NULL ? strlen(body) : 0;
    size_t cap = blen + 40;
    char *line = malloc(cap);
    int n, rc;

    if (line == NULL)
        return SJ_ENOMEM;
    n = snprintf(line, cap, "%c %" PRIu64 "%s%s\n", kind, seq,
                 body != NULL ? " " : "", body != NULL ? body : "");
    rc = write_all(sp->fd, line, (size_t)n);
    if (rc == 0)
        sp->size += n;
    free(line);
    return rc;
}

/* Lock and take in the pending records of journals no live process holds. */
static void adopt_orphans(const char *dir, const char *ours, recs *r)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[1024];
        size_t len = strlen(e->d_name);
        int fd;

        if (len < 9 || strcmp(e->d_name + len - 8, ".journal") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strcmp(path, ours) == 0)
            continue;
        if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            size_t before = r->n;
            if (read_journal(fd, r) == 0) {
                unlink(path);
                if (r->n > before)
                    SJ_INFO("spool: adopted %s from a host that is gone", path);
            }
        }
        close(fd); /* releases the lock */
    }
    closedir(d);
}

/* Rewrite the journal with just the pending records, renumbered. */
static int compact(sj_spool *sp, recs *r, sj_spool_each each, void *ud)
{
    char tmp[1100];
    int fd, rc = 0;

    snprintf(tmp, sizeof tmp, "%s.tmp", sp->path);
    /* Locked before it has a name others look for, so the lock moves
     * with the inode when it replaces the journal. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return SJ_EIO;
    flock(fd, LOCK_EX);
    int old = sp->fd;
    sp->fd = fd;
    sp->size = 0;
    sp->next_seq = 1;
    sp->pending = 0;
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        if (r->v[i].acked)
            continue;
        uint64_t seq = sp->next_seq++;
        rc = append_line(sp, 'R', seq, r->v[i].body);
        sp->pending++;
        if (rc == 0 && each != NULL)
            each(ud, seq, r->v[i].body);
    }
    if (rc == 0 && rename(tmp, sp->path) != 0)
        rc = SJ_EIO;
    if (rc != 0) {
        close(fd);
        unlink(tmp);
        sp->fd = old;
        return rc;
    }
    close(old); /* the old inode's lock goes with it */
    return 0;
}

int sj_spool_open(const char *dir, const char *name, sj_spool_each each,
                  void *ud, sj_spool **out, char *err, size_t errlen)
{
    sj_spool *sp;
    recs r = {0};
    int rc;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "spool_dir '%s': %s", dir, strerror(errno));
        return SJ_EIO;
    }
    if ((sp = calloc(1, sizeof *sp)) == NULL)
        return SJ_ENOMEM;
    pthread_mutex_init(&sp->lock, NULL);
    snprintf(sp->path, sizeof sp->path, "%s/%s.journal", dir, name);
    sp->fd = open(sp->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (sp->fd < 0) {
        snprintf(err, errlen, "spool file '%s': %s", sp->path, strerror(errno));
        rc = SJ_EIO;
        goto fail;
    }
    if (flock(sp->fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen,
                 "spool file '%s' is in use by another snailjob-lua "
                 "(same spool_dir and host_port)",
                 sp->path);
        rc = SJ_EEXISTS;
        goto fail_fd;
    }
    if ((rc = read_journal(sp->fd, &r)) != 0) {
        snprintf(err, errlen, "spool file '%s': %s", sp->path, sj_strerror(rc));
        goto fail_fd;
    }
    adopt_orphans(dir, sp->path, &r);
    if ((rc = compact(sp, &r, each, ud)) != 0) {
        snprintf(err, errlen, "spool file '%s': cannot rewrite it", sp->path);
        goto fail_fd;
    }
    recs_free(&r);
    *out = sp;
    return 0;

fail_fd:
    close(sp->fd);
fail:
    recs_free(&r);
    pthread_mutex_destroy(&sp->lock);
    free(sp);
    return rc;
}

int sj_spool_append(sj_spool *sp, const char *body, uint64_t *seq)
{
    int rc;

    pthread_mutex_lock(&sp->lock);
    *seq = sp->next_seq++;
    rc = append_line(sp, 'R', *seq, body);
    if (rc == 0)
        sp->pending++;
    pthread_mutex_unlock(&sp->lock);
    return rc;
}

int sj_spool_ack(sj_spool *sp, uint64_t seq)
{
    int rc;

    pthread_mutex_lock(&sp->lock);
    rc = append_line(sp, 'A', seq, NULL);
    if (sp->pending > 0)
        sp->pending--;
    if (sp->pending == 0 && sp->size > SPOOL_COMPACT_BYTES &&
        ftruncate(sp->fd, 0) == 0) {
        sp->size = 0;
        sp->next_seq = 1;
    }
    pthread_mutex_unlock(&sp->lock);
    return rc;
}

size_t sj_spool_pending(sj_spool *sp)
{
    size_t n;
    pthread_mutex_lock(&sp->lock);
    n = sp->pending;
    pthread_mutex_unlock(&sp->lock);
    return n;
}

void sj_spool_close(sj_spool *sp)
{
    if (sp == NULL)
        return;
    close(sp->fd);
    pthread_mutex_destroy(&sp->lock);
    free(sp);
}
