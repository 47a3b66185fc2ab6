/*
 * sj_vmtest.h - support for suites that run handlers in a real VM of this
 * process (test_http.c, test_exec.c): a task log recorder, task
 * construction and a thread that stops a task later; checks, RUN and time
 * scaling come from sj_harness.h.
 *
 * Header-only; include it from exactly one file of a test program.
 */
#ifndef SJ_VMTEST_H
#define SJ_VMTEST_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sj_harness.h"
#include "sj_log.h"
#include "sj_task.h"
#include "sj_vm.h"

/* Every task log line, with its level and when it arrived. */
typedef struct vt_line {
    sj_log_level level;
    long long at_ms;
    char *msg;
} vt_line;

static vt_line vt_lines[512];
static int vt_nlines;
static pthread_mutex_t vt_mu = PTHREAD_MUTEX_INITIALIZER;

static void vt_task_log(void *ud, const sj_task *t, sj_log_level level,
                        const char *msg, size_t len, const char *location)
{
    (void)ud, (void)t, (void)location;
    pthread_mutex_lock(&vt_mu);
    if (vt_nlines < 512)
        vt_lines[vt_nlines++] =
            (vt_line){level, sj_mono_ms(), strndup(msg, len)};
    pthread_mutex_unlock(&vt_mu);
}

/* The first line containing `sub` (NULL if none). */
static inline const vt_line *vt_find(const char *sub)
{
    for (int i = 0; i < vt_nlines; i++)
        if (strstr(vt_lines[i].msg, sub) != NULL)
            return &vt_lines[i];
    return NULL;
}

static inline void vt_clear(void)
{
    for (int i = 0; i < vt_nlines; i++)
        free(vt_lines[i].msg);
    vt_nlines = 0;
}

static inline int vt_open(const char *file, sj_vm **vm)
{
    const char *files[] = {file};
    sj_vm_options o = {.files = files,
                       .n_files = 1,
                       .task_log = vt_task_log,
                       .cleanup_ms = 1000}; /* the setting's default */
    char err[512];
    int rc = sj_vm_open(&o, vm, err, sizeof err);
    CHECKF(rc == 0, "sj_vm_open: %s", err);
    return rc;
}

static inline sj_task *vt_job(const char *executor, const char *params)
{
    sj_task *t = calloc(1, sizeof *t);
    t->job_id = 1;
    t->task_batch_id = 2;
    t->task_id = 3;
    t->task_type = SJ_TYPE_CLUSTER;
    t->executor_info = strdup(executor);
    t->job_params = strdup(params);
    t->task_name = strdup("CLUSTER_TASK");
    t->executor_timeout = 60;
    atomic_init(&t->stop, SJ_STOP_NONE);
    return t;
}

/* Sets t->stop to SJ_STOP_SERVER after delay_ms; set_at is when. */
typedef struct vt_stopper {
    sj_task *t;
    long long delay_ms;
    long long set_at;
    pthread_t th;
} vt_stopper;

static void *vt_stop_later(void *arg)
{
    vt_stopper *s = arg;
    h_sleep_ms(s->delay_ms);
    s->set_at = sj_mono_ms();
    atomic_store(&s->t->stop, SJ_STOP_SERVER);
    return NULL;
}

static inline void vt_stop_after(vt_stopper *s, sj_task *t, long long ms)
{
    s->t = t;
    s->delay_ms = ms;
    s->set_at = 0;
    pthread_create(&s->th, NULL, vt_stop_later, s);
}

/* Run t on vm and stop it (SJ_STOP_SERVER) from another thread after
 * delay_ms; *r gets the run. Returns the ms from the stop flag to the end
 * of the run. */
static inline long long vt_run_stopped(sj_vm *vm, sj_task *t,
                                       long long delay_ms, sj_run *r)
{
    vt_stopper s;
    vt_stop_after(&s, t, delay_ms);
    sj_vm_run(vm, t, r);
    long long done = sj_mono_ms();
    pthread_join(s.th, NULL);
    return done - s.set_at;
}

#endif
