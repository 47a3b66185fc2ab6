#include "sj_spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sj_error.h"
#include "sj_log.h"

/* Compact when everything is acknowledged and the file is this large. */
#define SPOOL_COMPACT_BYTES (4 * 1024 * 1024)
#define SYNC_EVERY_MS 100

struct sj_spool {
    pthread_mutex_t lock;
    int fd;
    int lock_fd;
    char path[1024];
    char lock_path[1100];
    char *key;
    uint64_t next_seq;
    size_t pending;
    off_t size;
    sj_spool_sync sync;
    /* batch mode's syncing thread */
    pthread_t syncer;
    int has_syncer;
    pthread_cond_t cond;
    int dirty;
    int closing;
};

sj_spool_sync sj_spool_sync_parse(const char *name)
{
    if (name != NULL && strcmp(name, "always") == 0)
        return SJ_SPOOL_ALWAYS;
    if (name != NULL && strcmp(name, "never") == 0)
        return SJ_SPOOL_NEVER;
    return SJ_SPOOL_BATCH;
}

/* ---- CRC-32C (Castagnoli), table driven -------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;

    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    while (len-- > 0)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- frames -------------------------------------------------------------- */

/* "<kind> <seq> <len> <crc> <body>\n" as one malloc'd buffer. */
static char *frame(char kind, uint64_t seq, const char *body, size_t *outlen)
{
    size_t blen = body != NULL ? strlen(body) : 0;
    char head[64];
    int h = snprintf(head, sizeof head, "%c %" PRIu64 " %zu", kind, seq, blen);
    uint32_t crc = crc32c(crc32c(0, head, (size_t)h), body ? body : "", blen);
    char *buf = malloc((size_t)h + blen + 16);
    int n;

    if (buf == NULL)
        return NULL;
    n = snprintf(buf, (size_t)h + 16, "%s %08" PRIx32 " ", head, crc);
    memcpy(buf + n, body ? body : "", blen);
    buf[n + blen] = '\n';
    *outlen = (size_t)n + blen + 1;
    return buf;
}

/* Digits at *p (advanced) into *v; 0 if none or over 20. */
static int number(const char **p, const char *end, int base,
                  unsigned long long *v)
{
    const char *q = *p;
    int n = 0;

    *v = 0;
    for (; q < end && n < 20; q++, n++) {
        int d = *q >= '0' && *q <= '9'                 ? *q - '0'
                : base == 16 && *q >= 'a' && *q <= 'f' ? *q - 'a' + 10
                                                       : -1;
        if (d < 0)
            break;
        *v = *v * (unsigned)base + (unsigned)d;
    }
    *p = q;
    return n;
}

/* Parse the frame at p (up to end). Returns its total length with the
 * record in kind, seq, body and blen, or 0 if it does not check. */
static size_t unframe(const char *p, const char *end, char *kind, uint64_t *seq,
                      const char **body, size_t *blen)
{
    const char *q = p + 2, *head_end;
    unsigned long long s, l, crc;

    if (end - p < 16 || (p[0] != 'H' && p[0] != 'R' && p[0] != 'A') ||
        p[1] != ' ')
        return 0;
    if (number(&q, end, 10, &s) == 0 || q >= end || *q++ != ' ' ||
        number(&q, end, 10, &l) == 0)
        return 0;
    head_end = q;
    if (q >= end || *q++ != ' ' || number(&q, end, 16, &crc) != 8 || q >= end ||
        *q++ != ' ')
        return 0;
    if (l >= (unsigned long long)(end - q) || q[l] != '\n')
        return 0;
    if (crc32c(crc32c(0, p, (size_t)(head_end - p)), q, (size_t)l) !=
        (uint32_t)crc)
        return 0;
    *kind = p[0];
    *seq = s;
    *body = q;
    *blen = (size_t)l;
    return (size_t)(q - p) + (size_t)l + 1;
}

static int write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == ENOSPC || errno == EDQUOT ? SJ_ENOSPC : SJ_EIO;
        if (n == 0)
            return SJ_EIO;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Append one frame; on a failed or short write the file is cut back to
 * where it was, so no torn record stays in front of the next one. Lock
 * held (or single-threaded at open). */
static int append_frame(sj_spool *sp, char kind, uint64_t seq, const char *body)
{
    size_t len;
    char *buf = frame(kind, seq, body, &len);
    int rc;

    if (buf == NULL)
        return SJ_ENOMEM;
    rc = write_all(sp->fd, buf, len);
    free(buf);
    if (rc != 0) {
        if (ftruncate(sp->fd, sp->size) != 0)
            SJ_ERROR("journal %s: cannot cut a partial record: %s", sp->path,
                     strerror(errno));
        return rc;
    }
    sp->size += (off_t)len;
    sp->dirty = 1;
    return 0;
}

/* ---- reading ------------------------------------------------------------- */

typedef struct rec {
    uint64_t seq;
    char *body;
    int acked;
} rec;

typedef struct recs {
    rec *v;
    size_t n, cap;
    uint64_t max_seq;
    char *key;  /* the H record's body, if any */
    off_t good; /* end of the last valid record */
    long bad;   /* bytes that did not check */
    int old;    /* an old-format (unframed) journal */
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
    free(r->key);
    memset(r, 0, sizeof *r);
}

/* Walk the frames of buf[0..size): valid ones go to cb; after a bad one,
 * the next line that checks is looked for (a torn record's tail). Returns
 * the bytes skipped; *good gets the end of the last valid frame. */
static long walk(const char *buf, size_t size, sj_spool_record_cb cb, void *ud,
                 off_t *good)
{
    const char *p = buf, *end = buf + size;
    long bad = 0;

    *good = 0;
    while (p < end) {
        char kind;
        uint64_t seq;
        const char *body;
        size_t blen, n = unframe(p, end, &kind, &seq, &body, &blen);
        if (n > 0) {
            cb(ud, kind, seq, body, blen);
            p += n;
            *good = (off_t)(p - buf);
            continue;
        }
        /* Resynchronise at the next byte that starts a valid frame. */
        const char *q = p + 1;
        while (q < end && unframe(q, end, &kind, &seq, &body, &blen) == 0)
            q++;
        bad += (long)(q - p);
        p = q;
    }
    return bad;
}

static void collect(void *ud, char kind, uint64_t seq, const char *body,
                    size_t len)
{
    recs *r = ud;

    if (kind == 'H' && r->key == NULL)
        r->key = strndup(body, len);
    else if (kind == 'R') {
        recs_add(r, seq, body, len);
        if (seq > r->max_seq)
            r->max_seq = seq;
    } else if (kind == 'A')
        recs_ack(r, seq);
}

static char *slurp(int fd, size_t *size)
{
    struct stat st;
    char *buf;

    if (fstat(fd, &st) != 0)
        return NULL;
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
        return NULL;
    if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
        free(buf);
        return NULL;
    }
    buf[st.st_size] = '\0';
    *size = (size_t)st.st_size;
    return buf;
}

/* Read a whole journal into `r` (pending and acked). */
static int read_journal(int fd, recs *r)
{
    size_t size = 0;
    char *buf = slurp(fd, &size);

    if (buf == NULL)
        return SJ_EIO;
    if (size > 0 && buf[0] != 'H') {
        r->old = 1; /* written before frames and keys: never replayed */
        free(buf);
        return 0;
    }
    r->bad = walk(buf, size, collect, r, &r->good);
    free(buf);
    return 0;
}

long sj_spool_scan(const char *path, sj_spool_record_cb cb, void *ud)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t size = 0;
    char *buf;
    off_t good;
    long bad;

    if (fd < 0)
        return SJ_EIO;
    buf = slurp(fd, &size);
    close(fd);
    if (buf == NULL)
        return SJ_EIO;
    bad = walk(buf, size, cb, ud, &good);
    free(buf);
    return bad;
}

/* ---- locking ------------------------------------------------------------- */

/* Lock `lock_path` (created if needed); 0 with *fd, or SJ_EEXISTS with the
 * holder's pid in *pid (0 if unknown). */
static int take_lock(const char *lock_path, int *fd, long *pid)
{
    char text[32];
    int l = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ssize_t n;

    *pid = 0;
    if (l < 0)
        return errno == ENOSPC ? SJ_ENOSPC : SJ_EIO;
    if (flock(l, LOCK_EX | LOCK_NB) != 0) {
        n = pread(l, text, sizeof text - 1, 0);
        if (n > 0) {
            text[n] = '\0';
            *pid = strtol(text, NULL, 10);
        }
        close(l);
        return SJ_EEXISTS;
    }
    n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(l, 0) != 0 || pwrite(l, text, (size_t)n, 0) != n) {
        /* The pid is only for the other host's message. */
    }
    *fd = l;
    return 0;
}

/* ---- adopting orphans ---------------------------------------------------- */

/* "results-<port>.journal": written before journals had keys. */
static int is_old_name(const char *name)
{
    size_t len = strlen(name);
    return len > 16 && strncmp(name, "results-", 8) == 0 &&
           strcmp(name + len - 8, ".journal") == 0 &&
           strchr(name + 8, '-') == NULL;
}

static void warn_old(const char *path)
{
    SJ_WARN("journal %s is of the old format (no server, namespace or group "
            "recorded): its results are not replayed; delete it once they "
            "no longer matter",
            path);
}

void sj_spool_warn_old(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL)
        if (is_old_name(e->d_name)) {
            char path[1100];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            warn_old(path);
        }
    closedir(d);
}

/* Orphans taken in: locked until the compaction that holds their records
 * stands, then removed; left as they were if it fails. */
typedef struct orphans {
    char path[16][1100];
    int lock_fd[16];
    int n;
} orphans;

static void orphans_done(orphans *o, int remove)
{
    for (int i = 0; i < o->n; i++) {
        char lock[1200];
        snprintf(lock, sizeof lock, "%s.lock", o->path[i]);
        if (remove) {
            unlink(o->path[i]);
            unlink(lock);
        }
        close(o->lock_fd[i]);
    }
    o->n = 0;
}

/* Lock and take in the pending records of same-key journals no live
 * process holds (at most 16 a start); warn about old-format ones. */
static void adopt_orphans(const char *dir, const char *ours, const char *key,
                          const char *hash, recs *r, orphans *o)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL && o->n < 16) {
        char path[1100], lock[1200];
        size_t len = strlen(e->d_name);
        int fd, lfd;
        long pid;

        if (len < 9 || strcmp(e->d_name + len - 8, ".journal") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strcmp(path, ours) == 0)
            continue;
        if (strstr(e->d_name, hash) == NULL) {
            /* Another key's, or an old-format journal. */
            if (is_old_name(e->d_name))
                warn_old(path);
            continue;
        }
        snprintf(lock, sizeof lock, "%s.lock", path);
        if (take_lock(lock, &lfd, &pid) != 0)
            continue; /* a live host has it */
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
            close(lfd);
            continue;
        }
        recs x = {0};
        if (read_journal(fd, &x) == 0 && x.key != NULL &&
            strcmp(x.key, key) == 0) {
            size_t took = 0;
            for (size_t i = 0; i < x.n; i++)
                if (!x.v[i].acked && recs_add(r, ++r->max_seq, x.v[i].body,
                                              strlen(x.v[i].body)) == 0)
                    took++;
            if (took > 0)
                SJ_INFO("journal: adopting %zu result(s) of %s from a host "
                        "that is gone",
                        took, path);
            snprintf(o->path[o->n], sizeof o->path[0], "%s", path);
            o->lock_fd[o->n++] = lfd;
        } else {
            close(lfd);
        }
        recs_free(&x);
        close(fd);
    }
    closedir(d);
}

/* ---- life cycle ---------------------------------------------------------- */

/* Rewrite the journal as the key and the pending records, renumbered;
 * `each` is not called. On failure nothing changed. */
static int compact(sj_spool *sp, recs *r)
{
    char tmp[1100];
    int fd, rc = 0, old = sp->fd;
    off_t old_size = sp->size;

    snprintf(tmp, sizeof tmp, "%s.tmp", sp->path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == ENOSPC ? SJ_ENOSPC : SJ_EIO;
    sp->fd = fd;
    sp->size = 0;
    rc = append_frame(sp, 'H', 0, sp->key);
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        if (r->v[i].acked)
            continue;
        r->v[i].seq = i + 1;
        rc = append_frame(sp, 'R', r->v[i].seq, r->v[i].body);
    }
    if (rc == 0 && fdatasync(fd) != 0)
        rc = errno == ENOSPC ? SJ_ENOSPC : SJ_EIO;
    if (rc == 0 && rename(tmp, sp->path) != 0)
        rc = SJ_EIO;
    if (rc != 0) {
        close(fd);
        unlink(tmp);
        sp->fd = old;
        sp->size = old_size;
        return rc;
    }
    close(old);
    sp->next_seq = r->n + 1;
    return 0;
}

static void *syncer_thread(void *arg)
{
    sj_spool *sp = arg;

    sj_log_thread_name("journal");
    pthread_mutex_lock(&sp->lock);
    while (!sp->closing) {
        struct timespec ts;
        long long until = sj_mono_ms() + SYNC_EVERY_MS;
        ts.tv_sec = until / 1000;
        ts.tv_nsec = (until % 1000) * 1000000;
        pthread_cond_timedwait(&sp->cond, &sp->lock, &ts);
        if (sp->dirty) {
            int fd = sp->fd;
            sp->dirty = 0;
            /* Writers go on meanwhile; the fd is never replaced after open
             * (the ack-time truncation keeps it). */
            pthread_mutex_unlock(&sp->lock);
            fdatasync(fd);
            pthread_mutex_lock(&sp->lock);
        }
    }
    pthread_mutex_unlock(&sp->lock);
    return NULL;
}

/* mkdir -p */
static int make_dirs(const char *dir)
{
    char path[1024];
    size_t n = strlen(dir);

    if (n >= sizeof path)
        return -1;
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(path, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

int sj_spool_open(const char *dir, const char *key, int port,
                  sj_spool_sync sync, sj_spool_each each, void *ud,
                  sj_spool **out, char *err, size_t errlen)
{
    sj_spool *sp;
    recs r = {0};
    char hash[24];
    long pid;
    int rc;

    if (make_dirs(dir) != 0) {
        snprintf(err, errlen, "journal directory '%s': %s", dir,
                 strerror(errno));
        return errno == ENOSPC ? SJ_ENOSPC : SJ_EIO;
    }
    if ((sp = calloc(1, sizeof *sp)) == NULL)
        return SJ_ENOMEM;
    if ((sp->key = strdup(key)) == NULL) {
        free(sp);
        return SJ_ENOMEM;
    }
    pthread_mutex_init(&sp->lock, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&sp->cond, &ca);
        pthread_condattr_destroy(&ca);
    }
    sp->sync = sync;
    sp->fd = sp->lock_fd = -1;
    snprintf(hash, sizeof hash, "-%08" PRIx32 ".journal",
             crc32c(0, key, strlen(key)));
    snprintf(sp->path, sizeof sp->path, "%s/results-%d%s", dir, port, hash);
    snprintf(sp->lock_path, sizeof sp->lock_path, "%s.lock", sp->path);
    rc = take_lock(sp->lock_path, &sp->lock_fd, &pid);
    if (rc == SJ_EEXISTS) {
        snprintf(err, errlen,
                 "journal %s is in use by another snailjob-lua (pid %ld, "
                 "same server, namespace, group and host_port)",
                 sp->path, pid);
        goto fail;
    } else if (rc != 0) {
        snprintf(err, errlen, "journal lock %s: %s", sp->lock_path,
                 rc == SJ_ENOSPC ? "no space left on device (ENOSPC)"
                                 : strerror(errno));
        goto fail;
    }
    sp->fd = open(sp->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (sp->fd < 0) {
        rc = errno == ENOSPC ? SJ_ENOSPC : SJ_EIO;
        snprintf(err, errlen, "journal %s: %s", sp->path, strerror(errno));
        goto fail_lock;
    }
    if ((rc = read_journal(sp->fd, &r)) != 0) {
        snprintf(err, errlen, "journal %s: %s", sp->path, sj_strerror(rc));
        goto fail_fd;
    }
    if (r.old || (r.key != NULL && strcmp(r.key, key) != 0)) {
        snprintf(err, errlen,
                 "journal %s was not written for %s: move it away (its "
                 "results are not replayed to another server)",
                 sp->path, key);
        rc = SJ_EIO;
        goto fail_fd;
    }
    if (r.bad > 0)
        SJ_WARN("journal %s: %ld byte(s) of torn or corrupt records cut",
                sp->path, r.bad);
    size_t own = r.n;
    orphans o = {.n = 0};
    adopt_orphans(dir, sp->path, key, hash, &r, &o);
    sp->size = lseek(sp->fd, 0, SEEK_END);
    rc = compact(sp, &r);
    orphans_done(&o, rc == 0);
    if (rc != 0) {
        /* The orphans stay where they are, for a later start. */
        while (r.n > own)
            free(r.v[--r.n].body);
        /* A full disk must not keep the host from starting: go on with the
         * file as it is (its torn tail cut), records keep their numbers. */
        SJ_ERROR("journal %s: cannot rewrite it (%s); appending to it as it "
                 "is",
                 sp->path,
                 rc == SJ_ENOSPC ? "no space left on device (ENOSPC)"
                                 : sj_strerror(rc));
        if (r.good < sp->size && ftruncate(sp->fd, r.good) == 0)
            sp->size = r.good;
        if (sp->size == 0 && append_frame(sp, 'H', 0, sp->key) != 0)
            SJ_ERROR("journal %s: cannot write its key (ENOSPC?)", sp->path);
        sp->next_seq = r.max_seq + 1;
    }
    for (size_t i = 0; i < r.n; i++)
        if (!r.v[i].acked) {
            sp->pending++;
            if (each != NULL)
                each(ud, r.v[i].seq, r.v[i].body);
        }
    recs_free(&r);
    if (sync == SJ_SPOOL_BATCH) {
        if (pthread_create(&sp->syncer, NULL, syncer_thread, sp) == 0)
            sp->has_syncer = 1;
        else
            sp->sync = SJ_SPOOL_ALWAYS; /* never less safe than asked */
    }
    *out = sp;
    return 0;

fail_fd:
    close(sp->fd);
fail_lock:
    close(sp->lock_fd);
fail:
    recs_free(&r);
    pthread_cond_destroy(&sp->cond);
    pthread_mutex_destroy(&sp->lock);
    free(sp->key);
    free(sp);
    return rc;
}

int sj_spool_append(sj_spool *sp, const char *body, uint64_t *seq)
{
    int rc = 0;

    pthread_mutex_lock(&sp->lock);
    if (sp->size == 0) /* truncated when all was acked: the key first */
        rc = append_frame(sp, 'H', 0, sp->key);
    if (rc == 0) {
        *seq = sp->next_seq;
        rc = append_frame(sp, 'R', *seq, body);
    }
    if (rc == 0) {
        sp->next_seq++;
        sp->pending++;
        /* A failed sync leaves the record written (counted, delivered as
         * journaled): the kernel keeps trying to write it back. */
        if (sp->sync == SJ_SPOOL_ALWAYS && fdatasync(sp->fd) != 0)
            SJ_DEBUG("journal %s: fdatasync: %s", sp->path, strerror(errno));
    }
    pthread_mutex_unlock(&sp->lock);
    return rc;
}

int sj_spool_ack(sj_spool *sp, uint64_t seq)
{
    int rc;

    pthread_mutex_lock(&sp->lock);
    rc = append_frame(sp, 'A', seq, NULL);
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

void sj_spool_sync_now(sj_spool *sp)
{
    if (sp == NULL || sp->sync == SJ_SPOOL_NEVER)
        return;
    pthread_mutex_lock(&sp->lock);
    sp->dirty = 0;
    fdatasync(sp->fd);
    pthread_mutex_unlock(&sp->lock);
}

size_t sj_spool_pending(sj_spool *sp)
{
    size_t n;
    pthread_mutex_lock(&sp->lock);
    n = sp->pending;
    pthread_mutex_unlock(&sp->lock);
    return n;
}

const char *sj_spool_path(const sj_spool *sp)
{
    return sp->path;
}

void sj_spool_close(sj_spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->has_syncer) {
        pthread_mutex_lock(&sp->lock);
        sp->closing = 1;
        pthread_cond_signal(&sp->cond);
        pthread_mutex_unlock(&sp->lock);
        pthread_join(sp->syncer, NULL);
    }
    sj_spool_sync_now(sp);
    close(sp->fd);
    close(sp->lock_fd); /* the lock goes with it; the file stays */
    pthread_cond_destroy(&sp->cond);
    pthread_mutex_destroy(&sp->lock);
    free(sp->key);
    free(sp);
}
