/*
 * test_exec.c - sj.exec (host/sj_exec.c) in a real VM of this process,
 * running real programs (sh, cat, env, pwd, head).
 *
 * Handlers check results with assert() and return sj.success, so a failed
 * assertion is a failed run with its message. Stops come from another
 * thread as the pool sets them. "Nothing left running" is read from
 * /proc: no process of the child's process group remains (this process is
 * the subreaper of the group, so not even a zombie may stay).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sj_pgroup.h"
#include "sj_vmtest.h"

static const char handlers[] =
    "local sj = require 'snailjob'\n"
    "sj.job('codes', function(a)\n"
    "  local r = sj.exec{ 'sh', '-c', 'exit 7' }\n"
    "  assert(r.code == 7 and r.signal == nil, tostring(r.code))\n"
    "  r = sj.exec{ 'true' }\n"
    "  assert(r.code == 0 and r.stdout == '' and r.truncated == false)\n"
    "  r = sj.exec{ 'sh', '-c', 'kill -9 $$' }\n"
    "  assert(r.signal == 9 and r.code == nil, tostring(r.signal))\n"
    "  r = sj.exec{ 'sh', '-c', 'kill -TERM $$' }\n"
    "  assert(r.signal == 15, tostring(r.signal))\n"
    "  r = sj.exec{ 'sh', '-c', 'printf out; printf err >&2; exit 1' }\n"
    "  assert(r.code == 1 and r.stdout == 'out' and r.stderr == 'err')\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('io', function(a)\n"
    "  local r = sj.exec{ 'cat', stdin = 'abc\\ndef' }\n"
    "  assert(r.stdout == 'abc\\ndef', r.stdout)\n"
    "  local big = string.rep('x', 300000)\n"
    "  r = sj.exec{ 'cat', stdin = big, log = false }\n"
    "  assert(r.stdout == big, #r.stdout)\n"
    "  r = sj.exec{ 'true', stdin = string.rep('x', 1000000) }\n"
    "  assert(r.code == 0, 'stdin to a program that does not read it')\n"
    "  r = sj.exec{ 'cat' }\n"
    "  assert(r.code == 0 and r.stdout == '')\n"
    "  r = sj.exec{ 'sh', '-c', 'echo \"$FOO-$HOME-$N\"',\n"
    "               env = { FOO = 'bar', HOME = false, N = 5 } }\n"
    "  assert(r.stdout == 'bar--5\\n', r.stdout)\n"
    "  r = sj.exec{ '/usr/bin/env', clear_env = true, env = { A = '1' } }\n"
    "  assert(r.stdout == 'A=1\\n', r.stdout)\n"
    "  r = sj.exec{ 'pwd', cwd = '/tmp' }\n"
    "  assert(r.stdout == '/tmp\\n', r.stdout)\n"
    "  r = sj.exec{ 'sh', '-c', 'head -c 100000 /dev/zero; echo e >&2',\n"
    "               max_output = 1000, log = false }\n"
    "  assert(#r.stdout == 1000 and r.truncated == true, #r.stdout)\n"
    "  assert(r.stderr == 'e\\n')\n"
    "  r = sj.exec{ 'sh', '-c', 'echo hi', capture = false }\n"
    "  assert(r.code == 0 and r.stdout == nil)\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('errors', function(a)\n"
    "  local ok, e = pcall(sj.exec, { 'no-such-program-xyz' })\n"
    "  assert(not ok and e:find(\"cannot start 'no%-such%-program%-xyz'\")\n"
    "         and e:find('No such file'), e)\n"
    "  ok, e = pcall(sj.exec, { 'pwd', cwd = '/no/such/dir' })\n"
    "  assert(not ok and e:find('/no/such/dir', 1, true), e)\n"
    "  ok, e = pcall(sj.exec, { cwd = '/' })\n"
    "  assert(not ok and e:find('first element'), e)\n"
    "  ok, e = pcall(sj.exec, { 'true', env = { A = {} } })\n"
    "  assert(not ok and e:find(\"env value of 'A'\"), e)\n"
    "  local t0 = os.time()\n"
    "  ok, e = pcall(sj.exec, { 'sh', '-c', 'sleep 100 & sleep 100; wait',\n"
    "                           timeout = 0.3 })\n"
    "  assert(not ok and e:find('timed out after 0.3 s'), e)\n"
    "  return sj.success('ok')\n"
    "end)\n"
    "sj.job('lines', function(a)\n"
    "  local r = sj.exec{ 'sh', '-c',\n"
    "    'echo first; echo warn1 >&2; sleep 0.6; printf last' }\n"
    "  sj.log.info('exec returned')\n"
    "  return sj.success(r.stdout)\n"
    "end)\n"
    "sj.job('leftover', function(a)\n"
    "  local r = sj.exec{ 'sh', '-c', 'echo $$; sleep 1000 & echo done' }\n"
    "  assert(r.code == 0 and r.stdout:find('done'), r.stdout)\n"
    "  return sj.success(r.stdout:match('^(%d+)'))\n"
    "end)\n"
    "sj.job('stopme', function(a)\n"
    "  sj.exec{ 'sh', '-c', 'echo $$; sleep 1000 & sleep 1000; wait' }\n"
    "end)\n"
    "sj.job('cleanup', function(a)\n"
    "  local guard <close> = setmetatable({}, { __close = function()\n"
    "    sj.exec{ 'sh', '-c', 'echo cleaned up' }\n"
    "  end })\n"
    "  sj.exec{ 'sleep', '1000' }\n"
    "end)\n"
    "sj.job('stubborn', function(a)\n"
    "  while true do\n"
    "    pcall(sj.exec, { 'sh', '-c',\n"
    "      'trap \"\" TERM; echo $$; while true; do sleep 0.05; done',\n"
    "      kill_grace = 0.5 })\n"
    "  end\n"
    "end)\n";

static sj_vm *vm;
static char dir[64], file[128];

static void reopen(void)
{
    sj_vm_close(vm);
    vt_open(file, &vm);
}

static sj_run run_job(const char *executor)
{
    sj_task *t = vt_job(executor, "");
    sj_run r;
    sj_vm_run(vm, t, &r);
    sj_task_free(t);
    return r;
}

static void expect_ok(const char *executor)
{
    sj_run r = run_job(executor);
    CHECKF(r.outcome == SJ_OUT_OK, "%s: %s: %s", executor,
           sj_outcome_name(r.outcome), r.message ? r.message : "");
    sj_run_free(&r);
}

static void test_codes_and_io(void)
{
    expect_ok("codes");
    expect_ok("io");
    expect_ok("errors");
}

/* Each line reaches the task log as it is written, not at the end. */
static void test_lines_stream(void)
{
    vt_clear();
    long long t0 = sj_mono_ms();
    sj_run r = run_job("lines");
    CHECKF(r.outcome == SJ_OUT_OK, "lines: %s", r.message ? r.message : "");
    const vt_line *first = vt_find("first"), *warn = vt_find("warn1"),
                  *last = vt_find("last"), *ret = vt_find("exec returned");
    CHECKF(first && warn && last && ret, "missing lines (%d lines)", vt_nlines);
    if (first && warn && last && ret) {
        CHECKF(first->level == SJ_LOG_INFO, "stdout level %d", first->level);
        CHECKF(warn->level == SJ_LOG_WARN, "stderr level %d", warn->level);
        CHECKF(ret->at_ms - first->at_ms >= 500,
               "'first' logged %lld ms before the process ended",
               ret->at_ms - first->at_ms);
        CHECKF(first->at_ms - t0 < H_MS(400), "'first' logged after %lld ms",
               first->at_ms - t0);
        printf("    first line logged %lld ms after the start, %lld ms "
               "before the exit\n",
               first->at_ms - t0, ret->at_ms - first->at_ms);
    }
    sj_run_free(&r);
}

/* A background child left behind by a finished command is ended. */
static void test_leftover(void)
{
    sj_run r = run_job("leftover");
    CHECKF(r.outcome == SJ_OUT_OK, "leftover: %s", r.message ? r.message : "");
    long pgid = r.result && json_is_string(r.result)
                    ? atol(json_string_value(r.result))
                    : 0;
    CHECKF(pgid > 0, "no pgid");
    CHECKF(sj_group_members(pgid) == 0, "%d processes left in group %ld",
           sj_group_members(pgid), pgid);
    sj_run_free(&r);
}

static long pgid_from_log(void)
{
    for (int i = 0; i < vt_nlines; i++) {
        long v = atol(vt_lines[i].msg);
        if (v > 0)
            return v;
    }
    return 0;
}

/* Stop `executor` 300 ms in; check it ends STOPPED with no process of
 * its group left, and return how long after the stop flag it ended. */
static long long stop_case(const char *executor)
{
    vt_clear();
    sj_task *t = vt_job(executor, "");
    sj_run r;
    long long took = vt_run_stopped(vm, t, 300, &r);
    CHECKF(r.outcome == SJ_OUT_STOPPED, "%s: %s", executor,
           sj_outcome_name(r.outcome));
    long pgid = pgid_from_log();
    CHECKF(pgid > 0 && sj_group_members(pgid) == 0,
           "%s: %d processes left in group %ld", executor,
           sj_group_members(pgid), pgid);
    sj_run_free(&r);
    sj_task_free(t);
    reopen();
    return took;
}

/* A stop ends `sh -c 'sleep 1000 & sleep 1000; wait'` and everything it
 * started, at once (they do not ignore SIGTERM). */
static void test_stop_group(void)
{
    long long took = stop_case("stopme");
    CHECKF(took < H_MS(200), "ended %lld ms after the stop", took);
    printf("    stop: group gone %lld ms after the stop flag\n", took);
}

/* A child that ignores SIGTERM is killed kill_grace after the stop, and
 * a pcall around sj.exec does not keep the handler alive. */
static void test_kill_grace(void)
{
    long long took = stop_case("stubborn");
    CHECKF(took >= 490 && took < 500 + H_MS(300),
           "ended %lld ms after the stop (kill_grace 0.5 s)", took);
    printf("    SIGTERM ignored: group gone %lld ms after the stop\n", took);
}

/* A __close handler may still run a command within the cleanup budget
 * after the stop ended the first one. */
static void test_cleanup_exec(void)
{
    vt_clear();
    sj_task *t = vt_job("cleanup", "");
    sj_run r;
    long long took = vt_run_stopped(vm, t, 200, &r);
    CHECKF(r.outcome == SJ_OUT_STOPPED, "cleanup: %s",
           sj_outcome_name(r.outcome));
    CHECKF(vt_find("cleaned up") != NULL, "the __close command did not run");
    CHECKF(took < H_MS(500), "ended %lld ms after the stop", took);
    sj_run_free(&r);
    sj_task_free(t);
    reopen();
}

/* The task's deadline ends the command like a stop, as a timeout. */
static void test_deadline(void)
{
    vt_clear();
    sj_task *t = vt_job("stopme", "");
    sj_run r;
    t->deadline_ms = sj_mono_ms() + 300;
    sj_vm_run(vm, t, &r);
    long long late = sj_mono_ms() - t->deadline_ms;
    CHECKF(r.outcome == SJ_OUT_TIMEOUT, "stopme: %s",
           sj_outcome_name(r.outcome));
    CHECKF(late < H_MS(200), "ended %lld ms after the deadline", late);
    long pgid = pgid_from_log();
    CHECKF(pgid > 0 && sj_group_members(pgid) == 0,
           "%d processes left in group %ld", sj_group_members(pgid), pgid);
    sj_run_free(&r);
    sj_task_free(t);
    reopen();
}

int main(void)
{
    /* SIGPIPE is left at its default: sj.exec must never raise it */
    snprintf(dir, sizeof dir, "/tmp/sj-exec-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 2;
    snprintf(file, sizeof file, "%s/x.lua", dir);
    FILE *f = fopen(file, "w");
    fputs(handlers, f);
    fclose(f);
    vt_open(file, &vm);

    RUN(test_codes_and_io);
    RUN(test_lines_stream);
    RUN(test_leftover);
    RUN(test_stop_group);
    RUN(test_kill_grace);
    RUN(test_cleanup_exec);
    RUN(test_deadline);

    sj_vm_close(vm);
    vt_clear();
    unlink(file);
    rmdir(dir);
    if (h_failures == 0)
        printf("test_exec: all checks passed\n");
    else
        fprintf(stderr, "test_exec: %d check(s) failed\n", h_failures);
    return h_failures != 0;
}
