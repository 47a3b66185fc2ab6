/*
 * The result journal (sj_spool.h): what is appended and not acknowledged
 * comes back; a torn tail is cut and never glued to the next record; a
 * corrupt record is skipped by its checksum; journals are keyed (another
 * server's never comes back); the lock names the holder's pid; a full disk
 * (a tmpfs of 64 KB mounted here, as root) is ENOSPC, writes nothing, and
 * the journal goes on once there is room.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "sj_error.h"
#include "sj_harness.h"
#include "sj_spool.h"

#define KEY "server=127.0.0.1:1 namespace=ns group=g"
#define KEY2 "server=127.0.0.1:2 namespace=ns group=g"

typedef struct seen {
    char bodies[64][64];
    int n;
} seen;

static void collect(void *ud, uint64_t seq, const char *body)
{
    seen *s = ud;
    (void)seq;
    if (s->n < 64)
        snprintf(s->bodies[s->n++], 64, "%s", body);
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void append_raw(const char *path, const char *text)
{
    FILE *f = fopen(path, "a");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_basics(void)
{
    char tmpl[] = "/tmp/sj-spool-XXXXXX";
    char *dir = mkdtemp(tmpl), err[512], path[1100];
    sj_spool *sp, *other;
    uint64_t s1, s2, s3;
    seen got = {0};

    CHECK(sj_spool_open(dir, KEY, 1, SJ_SPOOL_BATCH, collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECK(got.n == 0);
    snprintf(path, sizeof path, "%s", sj_spool_path(sp));
    CHECK(strstr(path, "/results-1-") != NULL);
    CHECK(sj_spool_append(sp, "[{\"taskId\":1}]", &s1) == 0);
    CHECK(sj_spool_append(sp, "[{\"taskId\":2}]", &s2) == 0);
    CHECK(sj_spool_append(sp, "[{\"taskId\":3}]", &s3) == 0);
    CHECK(sj_spool_ack(sp, s2) == 0);
    CHECK(sj_spool_pending(sp) == 2);

    /* A second open of the same journal fails, naming our pid. */
    CHECK(sj_spool_open(dir, KEY, 1, SJ_SPOOL_NEVER, NULL, NULL, &other, err,
                        sizeof err) == SJ_EEXISTS);
    {
        char pid[32];
        snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
        CHECKF(strstr(err, pid) != NULL, "%s", err);
    }

    /* A torn last record (a crash mid-write): no newline, and the next
     * record written after a restart must not be glued onto it. */
    append_raw(path, "R 99 14 0badc0de [{\"taskId\":");
    sj_spool_close(sp); /* like a kill: nothing flushed specially */

    CHECK(sj_spool_open(dir, KEY, 1, SJ_SPOOL_ALWAYS, collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECK(got.n == 2);
    CHECK(strcmp(got.bodies[0], "[{\"taskId\":1}]") == 0);
    CHECK(strcmp(got.bodies[1], "[{\"taskId\":3}]") == 0);
    CHECK(sj_spool_append(sp, "[{\"taskId\":4}]", &s1) == 0);
    sj_spool_close(sp);

    /* A record whose bytes changed fails its checksum and is skipped; the
     * records after it still count. */
    {
        char *text = h_read_file(path), *p = strstr(text, "\"taskId\":3");
        CHECK(p != NULL);
        if (p != NULL) {
            p[9] = '7';
            FILE *f = fopen(path, "w");
            fputs(text, f);
            fclose(f);
        }
        free(text);
    }
    got.n = 0;
    CHECK(sj_spool_open(dir, KEY, 1, SJ_SPOOL_NEVER, collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECKF(got.n == 2, "got %d", got.n);
    CHECK(strcmp(got.bodies[0], "[{\"taskId\":1}]") == 0);
    CHECK(strcmp(got.bodies[1], "[{\"taskId\":4}]") == 0);
    sj_spool_close(sp);

    /* Another server's host never sees these records... */
    got.n = 0;
    CHECK(sj_spool_open(dir, KEY2, 2, SJ_SPOOL_NEVER, collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECK(got.n == 0);
    sj_spool_close(sp);
    CHECK(access(path, F_OK) == 0);

    /* ...but a host of the same key on another port adopts them. */
    got.n = 0;
    CHECK(sj_spool_open(dir, KEY, 3, SJ_SPOOL_NEVER, collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECK(got.n == 2);
    CHECK(access(path, F_OK) != 0); /* the orphan is gone */
    sj_spool_close(sp);

    /* An old-format journal is never replayed (a WARN names it). */
    snprintf(path, sizeof path, "%s/results-9.journal", dir);
    append_raw(path, "R 1 [{\"taskId\":5}]\n");
    got.n = 0;
    CHECK(sj_spool_open(dir, KEY, 3, SJ_SPOOL_NEVER, collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECK(got.n == 2);
    sj_spool_close(sp);
    CHECK(access(path, F_OK) == 0);
    rm_rf(dir);
}

static void test_full_disk(void)
{
    char tmpl[] = "/tmp/sj-spool-full-XXXXXX";
    char *dir = mkdtemp(tmpl), err[512], path[600], body[2048];
    sj_spool *sp;
    uint64_t seq;
    seen got = {0};
    int rc, full = 0, n = 0;

    if (mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0) {
        printf("skip test_full_disk: cannot mount a tmpfs at %s (%s); CI runs "
               "as root\n",
               dir, strerror(errno));
        rmdir(dir);
        return;
    }
    snprintf(path, sizeof path, "%s/j", dir);
    CHECK(sj_spool_open(path, KEY, 1, SJ_SPOOL_ALWAYS, collect, &got, &sp, err,
                        sizeof err) == 0);
    memset(body, 'a', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    body[0] = '[';
    body[sizeof body - 2] = ']';
    /* Append until the disk is full: ENOSPC, and nothing half-written. */
    for (int i = 0; i < 200 && !full; i++) {
        rc = sj_spool_append(sp, body, &seq);
        if (rc == SJ_ENOSPC)
            full = 1;
        else if (rc == 0)
            n++;
        else
            CHECKF(0, "append: %s", sj_strerror(rc));
    }
    CHECKF(full, "no ENOSPC after %d records of 2 KB on a 64 KB tmpfs", n);
    h_fill_disk(dir);
    CHECK(sj_spool_append(sp, body, &seq) == SJ_ENOSPC);
    sj_spool_close(sp);

    /* It opens on a full disk, with every record that was written. */
    got.n = 0;
    CHECK(sj_spool_open(path, KEY, 1, SJ_SPOOL_ALWAYS, collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECKF(got.n == (n < 64 ? n : 64), "recovered %d of %d", got.n, n);
    /* Room again: it goes on. */
    snprintf(body, sizeof body, "%s/filler", dir);
    unlink(body);
    CHECK(sj_spool_append(sp, "[{\"taskId\":42}]", &seq) == 0);
    sj_spool_close(sp);
    got.n = 0;
    CHECK(sj_spool_open(path, KEY, 1, SJ_SPOOL_NEVER, collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECKF(got.n == (n + 1 < 64 ? n + 1 : 64), "recovered %d", got.n);
    sj_spool_close(sp);
    CHECK(umount(dir) == 0);
    rmdir(dir);
}

int main(void)
{
    RUN(test_basics);
    RUN(test_full_disk);
    if (h_failures == 0)
        printf("test_spool: all checks passed\n");
    return h_failures != 0;
}
