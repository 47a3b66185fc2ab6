/* The result journal: what is appended and not acknowledged comes back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sj_error.h"
#include "sj_harness.h"
#include "sj_spool.h"

typedef struct seen {
    char bodies[16][64];
    int n;
} seen;

static void collect(void *ud, uint64_t seq, const char *body)
{
    seen *s = ud;
    (void)seq;
    if (s->n < 16)
        snprintf(s->bodies[s->n++], 64, "%s", body);
}

int main(void)
{
    char tmpl[] = "/tmp/sj-spool-XXXXXX";
    char *dir = mkdtemp(tmpl), err[256], path[512];
    sj_spool *sp, *other;
    uint64_t s1, s2, s3;
    seen got = {0};

    CHECK(sj_spool_open(dir, "results-1", collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECK(got.n == 0);
    CHECK(sj_spool_append(sp, "[{\"taskId\":1}]", &s1) == 0);
    CHECK(sj_spool_append(sp, "[{\"taskId\":2}]", &s2) == 0);
    CHECK(sj_spool_append(sp, "[{\"taskId\":3}]", &s3) == 0);
    CHECK(sj_spool_ack(sp, s2) == 0);
    CHECK(sj_spool_pending(sp) == 2);

    /* A second process cannot take the same journal. */
    CHECK(sj_spool_open(dir, "results-1", NULL, NULL, &other, err,
                        sizeof err) == SJ_EEXISTS);
    CHECK(strstr(err, "in use") != NULL);

    /* A torn last line (a crash mid-write) is ignored. */
    snprintf(path, sizeof path, "%s/results-1.journal", dir);
    FILE *f = fopen(path, "a");
    fputs("R 99 [{\"taskId\":", f);
    fclose(f);
    sj_spool_close(sp); /* like a kill: nothing flushed specially */

    CHECK(sj_spool_open(dir, "results-1", collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECK(got.n == 2);
    CHECK(strcmp(got.bodies[0], "[{\"taskId\":1}]") == 0);
    CHECK(strcmp(got.bodies[1], "[{\"taskId\":3}]") == 0);
    sj_spool_close(sp);

    /* A journal left by another port is adopted by whoever opens next. */
    got.n = 0;
    CHECK(sj_spool_open(dir, "results-2", collect, &got, &sp, err,
                        sizeof err) == 0);
    CHECK(got.n == 2);
    CHECK(access(path, F_OK) != 0); /* the orphan is gone */
    sj_spool_close(sp);

    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    CHECK(system(path) == 0);
    if (h_failures == 0)
        printf("test_spool: all checks passed\n");
    return h_failures != 0;
}
