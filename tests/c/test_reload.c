/*
 * Hot reload units in-process: the watcher (sj_watch: which events count,
 * debouncing, kicks, stop) and the pool's generations (sj_pool_reload:
 * publish, refuse and keep, every worker switching while idle).
 * No tasks run here (the pool has no upstream); test_e2e_reload covers
 * tasks across reloads through the real binary.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sj_error.h"
#include "sj_log.h"
#include "sj_pool.h"
#include "sj_reload.h"
#include "sj_test.h"
#include "sj_watch.h"

static long long factor(void)
{
    const char *f = getenv("SJ_TIME_FACTOR");
    return f != NULL && atoi(f) > 0 ? atoi(f) : 1;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void put(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* ---- sj_watch ------------------------------------------------------------ */

/* What the last fire saw: written by the watcher thread, read by main. */
static pthread_mutex_t fire_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int fires;
static char fired_why[512];
static long long fired_ms;

static void on_fire(void *ud, const char *why)
{
    (void)ud;
    pthread_mutex_lock(&fire_lock);
    snprintf(fired_why, sizeof fired_why, "%s", why);
    fired_ms = sj_mono_ms();
    pthread_mutex_unlock(&fire_lock);
    atomic_fetch_add(&fires, 1);
}

/* Copies of the last fire's reason and time (main thread). */
static char last_why[512];
static long long last_fire_ms;

static void take_last(void)
{
    pthread_mutex_lock(&fire_lock);
    memcpy(last_why, fired_why, sizeof last_why);
    last_fire_ms = fired_ms;
    pthread_mutex_unlock(&fire_lock);
}

/* Wait until `n` fires happened, then a quiet moment; returns the count. */
static int settle(int n)
{
    long long until = sj_mono_ms() + 2000 * factor();
    while (atomic_load(&fires) < n && sj_mono_ms() < until)
        sleep_ms(5);
    sleep_ms(150 * factor()); /* nothing more should come */
    take_last();
    return atomic_load(&fires);
}

static void test_watch(void)
{
    char tmpl[] = "/tmp/sj-watch-XXXXXX", path[600], path2[600];
    const char *dir = mkdtemp(tmpl);
    const char *dirs[1] = {dir};
    sj_watch *w = NULL;
    long long t0;
    int fd;

    CHECK(dir != NULL);
    if (dir == NULL)
        return;
    atomic_store(&fires, 0);
    CHECK_INT_EQ(
        sj_watch_start(dirs, 1, (int)(30 * factor()), on_fire, NULL, &w), 0);
    if (w == NULL)
        return;

    /* A burst of saves is one reload, named after its first file. */
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%d.lua", i);
        put(dir, name, "return 1\n");
    }
    CHECK_INT_EQ(settle(1), 1);
    snprintf(path, sizeof path, "file change: %s/f0.lua", dir);
    CHECK_STR_EQ(last_why, path);

    /* Not executors: other names, dot files, directories. */
    put(dir, "notes.txt", "x");
    put(dir, ".hidden.lua", "x");
    put(dir, "backup.lua~", "x");
    snprintf(path, sizeof path, "%s/sub.lua", dir);
    CHECK_INT_EQ(mkdir(path, 0700), 0);
    CHECK_INT_EQ(settle(1), 1);

    /* A created file counts when closed after writing, not before. */
    snprintf(path, sizeof path, "%s/new.lua", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    sleep_ms(100 * factor());
    CHECK_INT_EQ(atomic_load(&fires), 1);
    CHECK_INT_EQ(write(fd, "return 2\n", 9), 9);
    close(fd);
    CHECK_INT_EQ(settle(2), 2);

    /* Renamed in, renamed away, deleted, symlinked: one reload each. */
    snprintf(path, sizeof path, "%s/.tmp", dir);
    snprintf(path2, sizeof path2, "%s/moved.lua", dir);
    put(dir, ".tmp", "return 3\n");
    CHECK_INT_EQ(rename(path, path2), 0);
    CHECK_INT_EQ(settle(3), 3);
    CHECK_INT_EQ(rename(path2, path), 0);
    CHECK_INT_EQ(settle(4), 4);
    snprintf(path, sizeof path, "%s/f1.lua", dir);
    CHECK_INT_EQ(unlink(path), 0);
    CHECK_INT_EQ(settle(5), 5);
    snprintf(path, sizeof path, "%s/f2.lua", dir);
    snprintf(path2, sizeof path2, "%s/link.lua", dir);
    CHECK_INT_EQ(symlink(path, path2), 0);
    CHECK_INT_EQ(settle(6), 6);

    /* A kick fires at once (no debounce) with its reason. */
    t0 = sj_mono_ms();
    sj_watch_kick(w, "SIGHUP");
    CHECK_INT_EQ(settle(7), 7);
    CHECK_STR_EQ(last_why, "SIGHUP");
    CHECK(last_fire_ms - t0 < 25 * factor());

    /* Debounce: fires 30 ms (scaled) after the last event, not the first. */
    t0 = sj_mono_ms();
    for (int i = 0; i < 4; i++) {
        put(dir, "f3.lua", "return 4\n");
        sleep_ms(15);
    }
    CHECK_INT_EQ(settle(8), 8);
    CHECK(last_fire_ms - t0 >= 60);

    sj_watch_stop(w);
    /* Stopped: nothing fires any more. */
    put(dir, "f4.lua", "return 5\n");
    sleep_ms(100);
    CHECK_INT_EQ(atomic_load(&fires), 8);
    rm_rf(dir);
}

/* A watcher without directories still takes kicks; stop right away. */
static void test_watch_kick_only(void)
{
    sj_watch *w = NULL;
    atomic_store(&fires, 0);
    CHECK_INT_EQ(sj_watch_start(NULL, 0, 50, on_fire, NULL, &w), 0);
    sj_watch_kick(w, "SIGHUP");
    CHECK_INT_EQ(settle(1), 1);
    sj_watch_stop(w);
    CHECK_INT_EQ(sj_watch_start(NULL, 0, 50, on_fire, NULL, &w), 0);
    sj_watch_stop(w);
    sj_watch_stop(NULL);
}

/* ---- sj_pool generations ------------------------------------------------- */

/* Wait until every worker shows generation g. */
static int all_on(sj_pool *pool, unsigned long long g)
{
    unsigned long long v[8];
    long long until = sj_mono_ms() + 2000 * factor();
    for (;;) {
        size_t n = sj_pool_worker_generations(pool, v, 8), ok = 0;
        for (size_t i = 0; i < n; i++)
            ok += v[i] == g;
        if (ok == n)
            return 1;
        if (sj_mono_ms() >= until)
            return 0;
        sleep_ms(2);
    }
}

static void test_pool_generations(void)
{
    char tmpl[] = "/tmp/sj-gen-XXXXXX", a[600], b[600], err[1024];
    const char *dir = mkdtemp(tmpl);
    const char *files[2];
    const char *const *names, *const *kinds;
    sj_pool *pool = NULL;
    unsigned long long g = 0;
    long long t0;

    CHECK(dir != NULL);
    if (dir == NULL)
        return;
    snprintf(a, sizeof a, "%s/a.lua", dir);
    snprintf(b, sizeof b, "%s/b.lua", dir);
    files[0] = a;
    files[1] = b;
    put(dir, "a.lua",
        "local sj = require 'snailjob'\nsj.job('aJob', function() end)\n");
    put(dir, "b.lua",
        "#!/usr/bin/env lua\n"
        "local sj = require 'snailjob'\nsj.map('bMap')\n");
    sj_pool_options po = {
        .workers = 3, .queue_size = 10, .files = files, .n_files = 2};
    CHECK_INT_EQ(sj_pool_start(&po, &pool, err, sizeof err), 0);
    if (pool == NULL) {
        fprintf(stderr, "%s\n", err);
        rm_rf(dir);
        return;
    }
    CHECK_INT_EQ(sj_pool_generation(pool), 1);
    CHECK(all_on(pool, 1));
    CHECK_INT_EQ(sj_pool_executors(pool, &names, &kinds), 2);

    /* A good reload: published, every idle worker switches promptly. */
    put(dir, "b.lua",
        "local sj = require 'snailjob'\n"
        "sj.job('bJob', function() end)\nsj.map_reduce('cMr')\n");
    t0 = sj_mono_ms();
    CHECK_INT_EQ(sj_pool_reload(pool, files, 2, &g, err, sizeof err), 0);
    CHECK_INT_EQ(g, 2);
    CHECK(all_on(pool, 2));
    CHECK(sj_mono_ms() - t0 < 200 * factor());
    CHECK_INT_EQ(sj_pool_executors(pool, &names, &kinds), 3);
    CHECK_STR_EQ(names[0], "aJob");
    CHECK_STR_EQ(names[1], "bJob");
    CHECK_STR_EQ(names[2], "cMr");
    CHECK_STR_EQ(kinds[2], "map_reduce");

    /* Refused: syntax error (file and line), error at load, duplicate
     * name, unreadable file. Generation 2 stays everywhere. */
    put(dir, "b.lua", "local sj = require 'snailjob'\n\nsj.job('x', )\n");
    g = 0;
    CHECK_INT_EQ(sj_pool_reload(pool, files, 2, &g, err, sizeof err), SJ_ELUA);
    CHECK(strstr(err, "b.lua:3: unexpected symbol near ')'") != NULL);
    CHECK_INT_EQ(g, 0);
    put(dir, "b.lua", "error('no thanks')\n");
    CHECK_INT_EQ(sj_pool_reload(pool, files, 2, NULL, err, sizeof err),
                 SJ_ELUA);
    CHECK(strstr(err, "b.lua:1: no thanks") != NULL);
    put(dir, "b.lua",
        "local sj = require 'snailjob'\nsj.job('aJob', function() end)\n");
    CHECK_INT_EQ(sj_pool_reload(pool, files, 2, NULL, err, sizeof err),
                 SJ_ELUA);
    CHECK(strstr(err, "declared twice") != NULL);
    CHECK_INT_EQ(unlink(b), 0);
    CHECK_INT_EQ(sj_pool_reload(pool, files, 2, NULL, err, sizeof err),
                 SJ_ENOENT);
    CHECK(strstr(err, "b.lua") != NULL);
    sleep_ms(20);
    CHECK_INT_EQ(sj_pool_generation(pool), 2);
    CHECK(all_on(pool, 2));
    CHECK_INT_EQ(sj_pool_executors(pool, &names, &kinds), 3);

    /* Fewer files: their executors are gone. */
    CHECK_INT_EQ(sj_pool_reload(pool, files, 1, &g, err, sizeof err), 0);
    CHECK_INT_EQ(g, 3);
    CHECK(all_on(pool, 3));
    CHECK_INT_EQ(sj_pool_executors(pool, &names, &kinds), 1);

    /* Many reloads in a row: the workers end on the last one. */
    for (int i = 0; i < 20; i++)
        CHECK_INT_EQ(sj_pool_reload(pool, files, 1, &g, err, sizeof err), 0);
    CHECK_INT_EQ(g, 23);
    CHECK(all_on(pool, 23));

    sj_pool_stop(pool);
    rm_rf(dir);
}

/* ---- sj_reload: watcher + pool together -----------------------------------
 */

static int wait_gen(sj_pool *pool, unsigned long long g)
{
    long long until = sj_mono_ms() + 3000 * factor();
    while (sj_pool_generation(pool) < g && sj_mono_ms() < until)
        sleep_ms(5);
    return sj_pool_generation(pool) == g && all_on(pool, g);
}

static void test_reload_glue(void)
{
    char tmpl[] = "/tmp/sj-rl-XXXXXX", path[600], err[1024];
    const char *dir = mkdtemp(tmpl);
    const char *const *names, *const *kinds;
    const char *files[1];
    sj_pool *pool = NULL;
    sj_reload *r = NULL;

    CHECK(dir != NULL);
    if (dir == NULL)
        return;
    snprintf(path, sizeof path, "%s/a.lua", dir);
    files[0] = path;
    put(dir, "a.lua",
        "local sj = require 'snailjob'\nsj.job('aJob', function() end)\n");
    sj_pool_options po = {
        .workers = 2, .queue_size = 10, .files = files, .n_files = 1};
    CHECK_INT_EQ(sj_pool_start(&po, &pool, err, sizeof err), 0);
    if (pool == NULL) {
        rm_rf(dir);
        return;
    }
    sj_reload_options ro = {.spec = dir, .pool = pool, .debounce_ms = 20};
    CHECK_INT_EQ(sj_reload_start(&ro, &r), 0);

    /* A new file in the directory: generation 2 with both executors. */
    put(dir, "b.lua",
        "local sj = require 'snailjob'\nsj.job('bJob', function() end)\n");
    CHECK(wait_gen(pool, 2));
    CHECK_INT_EQ(sj_pool_executors(pool, &names, &kinds), 2);
    /* A broken file: refused, generation 2 stays. */
    put(dir, "b.lua", "this is not lua\n");
    sleep_ms(200 * factor());
    CHECK_INT_EQ(sj_pool_generation(pool), 2);
    /* The directory itself is the setting: deleting b.lua drops bJob. */
    snprintf(path, sizeof path, "%s/b.lua", dir);
    CHECK_INT_EQ(unlink(path), 0);
    CHECK(wait_gen(pool, 3));
    CHECK_INT_EQ(sj_pool_executors(pool, &names, &kinds), 1);
    /* A kick reloads without any change. */
    sj_reload_kick(r, "SIGHUP");
    CHECK(wait_gen(pool, 4));
    /* The setting's entry vanishes: refused, generation 4 stays. */
    rm_rf(dir);
    sleep_ms(200 * factor());
    sj_reload_kick(r, "SIGHUP");
    sleep_ms(100 * factor());
    CHECK_INT_EQ(sj_pool_generation(pool), 4);
    CHECK(all_on(pool, 4));

    sj_reload_stop(r);
    sj_pool_stop(pool);
}

int main(void)
{
    sj_log_set_level(SJ_LOG_OFF);
    SJ_TEST_RUN(test_watch);
    SJ_TEST_RUN(test_watch_kick_only);
    SJ_TEST_RUN(test_pool_generations);
    SJ_TEST_RUN(test_reload_glue);
    return SJ_TEST_DONE("reload");
}
