/*
 * sj_exec.c - `sj.exec`: a program without a shell, its output streamed to
 * the task log, its process group ended on stop. See sj_exec.h.
 */
#include "sj_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>

#include "sj_bytes.h"
#include "sj_limits.h"
#include "sj_log.h"
#include "sj_lualib.h"
#include "sj_opts.h"

#define SLICE_MS 10
#define LINE_MAX_BYTES 65536
#define DEFAULT_MAX_OUTPUT (1024.0 * 1024)
#define AFTER_KILL_MS 2000 /* how long SIGKILLed members may take to go */

extern char **environ;

/* One output stream of the child. */
typedef struct stream {
    int fd; /* -1 once at EOF */
    sj_bytes cap;
    sj_bytes line;
    sj_log_level level;
} stream;

/* The child and what the call holds for it; a to-be-closed userdata, so
 * an error unwinding the call (memory, the interruption) ends it too. */
typedef struct proc {
    int pidfd;  /* readable once the child exited, or -1 (no pidfd_open) */
    pid_t pid;  /* > 0 from spawn until reaped */
    pid_t pgid; /* the child's group (= its pid) */
    int status; /* wait status once reaped */
    bool reaped;
    int in_fd; /* -1 once stdin is written or closed */
    const char *in;
    size_t in_len, in_off;
    stream s[2]; /* stdout, stderr */
} proc;

static bool group_alive(pid_t pgid)
{
    return kill(-pgid, 0) == 0 || errno == EPERM;
}

/* Reap every child of ours in the group (the leader, and members that
 * were orphaned to us as the subreaper). */
static void reap_group(proc *p)
{
    if (p->pgid <= 0)
        return;
    for (;;) {
        int st;
        pid_t w = waitpid(-p->pgid, &st, WNOHANG);
        if (w <= 0)
            break;
        if (w == p->pid) {
            p->status = st;
            p->reaped = true;
            p->pid = 0;
        }
    }
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* SIGKILL whatever is left and wait for it (bounded); free everything.
 * Idempotent. */
static void proc_end(proc *p)
{
    if (p->pgid > 0) {
        long long until = sj_mono_ms() + AFTER_KILL_MS;
        kill(-p->pgid, SIGKILL);
        do {
            reap_group(p);
            if (p->reaped && !group_alive(p->pgid))
                break;
            usleep(1000);
        } while (sj_mono_ms() < until);
        if (!p->reaped && p->pid > 0 && waitpid(p->pid, &p->status, 0) > 0)
            p->reaped = true;
        p->pgid = 0;
    }
    close_fd(&p->in_fd);
    close_fd(&p->pidfd);
    for (int i = 0; i < 2; i++) {
        close_fd(&p->s[i].fd);
        sj_bytes_free(&p->s[i].cap);
        sj_bytes_free(&p->s[i].line);
    }
}

static int proc_close(lua_State *L)
{
    proc *p = lua_touserdata(L, 1);
    if (p != NULL)
        proc_end(p);
    return 0;
}

/* ---- the run's limits: the only calls into sj_limits --------------------- */

/* The reason to end the wait now (a stop or timeout of the armed run;
 * during a __close handler's cleanup budget, only once it is spent), or
 * SJ_TRIP_NONE. */
static sj_trip run_tripped(lua_State *L)
{
    return sj_limits_due(sj_lualib_ctx_of(L));
}

/* Raise the host's uncatchable interruption for `why` (after the caller
 * released what it holds). Never returns. */
static int raise_trip(lua_State *L, sj_trip why)
{
    return sj_limits_interrupt(L, why);
}

/* ---- options --------------------------------------------------------------
 */

typedef struct opts {
    const char *cwd;
    bool clear_env, log, capture;
    double timeout; /* s; 0 = none */
    double max_output, kill_grace;
} opts;

/* A NULL-terminated char*[] of the strings of the sequence at `t`
 * (anchored in a userdata pushed here). Stack: +1. */
static char **push_vector(lua_State *L, int t, lua_Integer n)
{
    char **v = lua_newuserdatauv(L, sizeof *v * (size_t)(n + 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, t, i);
        v[i - 1] = (char *)lua_tostring(L, -1); /* anchored in t */
        lua_pop(L, 1);
    }
    v[n] = NULL;
    return v;
}

/* The argv strings, checked, as a new sequence. Stack: +1. */
static int push_argv(lua_State *L, lua_Integer *n)
{
    *n = (lua_Integer)lua_rawlen(L, 1);
    if (*n < 1)
        luaL_error(L, "sj.exec: give the program as the first element: "
                      "sj.exec{\"cmd\", \"arg\", ...}");
    lua_createtable(L, (int)*n, 0);
    for (lua_Integer i = 1; i <= *n; i++) {
        int ty = lua_rawgeti(L, 1, i);
        if (ty != LUA_TSTRING && ty != LUA_TNUMBER)
            luaL_error(L, "sj.exec: argument %d must be a string, got %s",
                       (int)i, lua_typename(L, ty));
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len)
            luaL_error(L, "sj.exec: argument %d holds a NUL byte", (int)i);
        lua_rawseti(L, -2, i);
    }
    return lua_gettop(L);
}

/* The environment as a sequence of "K=V" strings. Stack: +1. */
static int push_env(lua_State *L, bool clear_env, lua_Integer *n)
{
    lua_newtable(L); /* name -> "K=V" */
    int map = lua_gettop(L);
    if (!clear_env) {
        for (char **e = environ; e != NULL && *e != NULL; e++) {
            const char *eq = strchr(*e, '=');
            if (eq == NULL)
                continue;
            lua_pushlstring(L, *e, (size_t)(eq - *e));
            lua_pushstring(L, *e);
            lua_rawset(L, map);
        }
    }
    int ty = lua_getfield(L, 1, "env");
    if (ty == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING)
                luaL_error(L, "sj.exec: env keys must be strings");
            const char *k = lua_tostring(L, -2);
            if (k[0] == '\0' || strchr(k, '=') != NULL)
                luaL_error(L, "sj.exec: bad environment name '%s'", k);
            if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
                lua_pushvalue(L, -2);
                lua_pushnil(L);
            } else if (lua_type(L, -1) == LUA_TSTRING ||
                       lua_type(L, -1) == LUA_TNUMBER) {
                lua_pushvalue(L, -2);
                lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -2));
            } else {
                luaL_error(L,
                           "sj.exec: env value of '%s' must be a string "
                           "(or false to remove it), got %s",
                           k, luaL_typename(L, -1));
            }
            lua_rawset(L, map);
            lua_pop(L, 1);
        }
    } else if (ty != LUA_TNIL) {
        luaL_error(L, "sj.exec: option 'env' must be a table, got %s",
                   lua_typename(L, ty));
    }
    lua_pop(L, 1);
    lua_newtable(L);
    *n = 0;
    lua_pushnil(L);
    while (lua_next(L, map) != 0) {
        lua_rawseti(L, -3, ++*n);
    }
    lua_remove(L, map);
    return lua_gettop(L);
}

/* ---- output ---------------------------------------------------------------
 */

typedef struct out_ctx {
    sj_lualib_ctx *ctx;
    const opts *o;
    char where[96];
    bool truncated;
} out_ctx;

static void emit_line(out_ctx *oc, stream *s)
{
    size_t n = s->line.len;
    if (n > 0 && s->line.p[n - 1] == '\r')
        n--;
    sj_lualib_task_line(oc->ctx, s->level, n ? s->line.p : "", n, oc->where);
    s->line.len = 0;
}

/* New bytes of stream s: capture them and log each complete line. */
static void feed(out_ctx *oc, stream *s, const char *d, size_t n)
{
    if (oc->o->capture) {
        size_t room = s->cap.len < oc->o->max_output
                          ? (size_t)oc->o->max_output - s->cap.len
                          : 0;
        size_t take = n < room ? n : room;
        if (take < n)
            oc->truncated = true;
        if (take > 0 && !sj_bytes_add(&s->cap, d, take))
            oc->truncated = true;
    }
    if (!oc->o->log)
        return;
    while (n > 0) {
        const char *nl = memchr(d, '\n', n);
        size_t k = nl != NULL ? (size_t)(nl - d) : n;
        if (s->line.len + k > LINE_MAX_BYTES)
            k = LINE_MAX_BYTES - s->line.len;
        if (!sj_bytes_add(&s->line, d, k))
            s->line.len = 0; /* no memory: drop the line, keep going */
        d += k;
        n -= k;
        if (n > 0 && *d == '\n') {
            d++;
            n--;
            emit_line(oc, s);
        } else if (s->line.len >= LINE_MAX_BYTES) {
            emit_line(oc, s);
        }
    }
}

/* Read what is there (without blocking) from stream s. */
static void drain(out_ctx *oc, stream *s)
{
    char chunk[16384];
    while (s->fd >= 0) {
        ssize_t r = read(s->fd, chunk, sizeof chunk);
        if (r > 0) {
            feed(oc, s, chunk, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        close_fd(&s->fd); /* EOF or error */
        if (s->line.len > 0 && oc->o->log)
            emit_line(oc, s);
    }
}

/* write(2) to a pipe whose reader may be gone, without SIGPIPE: the
 * signal is blocked in this thread for the call and, if the write raised
 * it, taken from the pending set (the host ignores SIGPIPE, but `run`,
 * `check` and embedders may not). */
static ssize_t write_nosigpipe(int fd, const char *buf, size_t n)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t w = write(fd, buf, n);
    int err = errno;
    if (w < 0 && err == EPIPE && !sigismember(&old, SIGPIPE) &&
        sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return w;
}

static void write_stdin(proc *p)
{
    while (p->in_fd >= 0 && p->in_off < p->in_len) {
        ssize_t w =
            write_nosigpipe(p->in_fd, p->in + p->in_off, p->in_len - p->in_off);
        if (w > 0) {
            p->in_off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            break; /* EPIPE: the child closed its stdin */
        }
    }
    close_fd(&p->in_fd);
}

/* ---- spawning -------------------------------------------------------------
 */

static pthread_once_t reaper_once = PTHREAD_ONCE_INIT;

/* Members of a child's group whose parent dies are given to this process
 * (not to PID 1, which may never reap them in a container), so the call
 * can reap them: no zombie is left behind. */
static void become_subreaper(void)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L);
}

static int nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Spawn argv in a new group. 0 or an errno value. */
static int spawn(proc *p, char **argv, char **envp, const char *cwd,
                 bool has_stdin)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    int rc = 0;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;

    if (has_stdin ? pipe2(in, O_CLOEXEC) != 0
                  : (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        return errno;
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
        rc = errno;
        goto fail_pipes;
    }
    if ((rc = posix_spawn_file_actions_init(&fa)) != 0)
        goto fail_pipes;
    if ((rc = posix_spawnattr_init(&at)) != 0)
        goto fail_fa;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    if (cwd != NULL)
        posix_spawn_file_actions_addchdir_np(&fa, cwd);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP |
                                      POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, envp);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        goto fail_pipes;
    p->pid = pid;
    p->pgid = pid;
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    p->in_fd = in[1];
    p->s[0].fd = out[0];
    p->s[1].fd = err[0];
    if (p->in_fd >= 0)
        nonblock(p->in_fd);
    nonblock(out[0]);
    nonblock(err[0]);
    return 0;

fail_fa:
    posix_spawn_file_actions_destroy(&fa);
fail_pipes:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    return rc;
}

/* ---- the call -------------------------------------------------------------
 */

static void set_where(lua_State *L, char *buf, size_t n)
{
    lua_Debug ar;
    buf[0] = '\0';
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) &&
        ar.currentline > 0) {
        const char *base = strrchr(ar.short_src, '/');
        snprintf(buf, n, "%s:%d", base ? base + 1 : ar.short_src,
                 ar.currentline);
    }
}

static int exec_call(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    opts o;
    memset(&o, 0, sizeof o);
    lua_Integer nargs, nenv;
    int argt = push_argv(L, &nargs);
    const char *prog = (lua_rawgeti(L, argt, 1), lua_tostring(L, -1));
    lua_pop(L, 1); /* anchored in argt */

    if (lua_getfield(L, 1, "cwd") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "sj.exec: option 'cwd' must be a string");
        o.cwd = lua_tostring(L, -1); /* stays on the stack */
    }
    o.clear_env = sj_opts_bool(L, 1, "sj.exec", "clear_env", false);
    o.log = sj_opts_bool(L, 1, "sj.exec", "log", true);
    o.capture = sj_opts_bool(L, 1, "sj.exec", "capture", true);
    o.timeout = sj_opts_number(L, 1, "sj.exec", "timeout", 0, 0);
    o.max_output =
        sj_opts_number(L, 1, "sj.exec", "max_output", DEFAULT_MAX_OUTPUT, 0);
    o.kill_grace = sj_opts_number(L, 1, "sj.exec", "kill_grace", 5, 0);
    size_t in_len = 0;
    const char *in = NULL;
    int ty = lua_getfield(L, 1, "stdin");
    if (ty == LUA_TSTRING)
        in = lua_tolstring(L, -1, &in_len); /* stays on the stack */
    else if (ty != LUA_TNIL)
        luaL_error(L, "sj.exec: option 'stdin' must be a string, got %s",
                   lua_typename(L, ty));
    char **argv = push_vector(L, argt, nargs);
    char **envp = environ; /* as it is, unless the call changes it */
    if (o.clear_env || lua_getfield(L, 1, "env") != LUA_TNIL) {
        int envt = push_env(L, o.clear_env, &nenv);
        envp = push_vector(L, envt, nenv);
    }

    out_ctx oc = {.ctx = sj_lualib_ctx_of(L), .o = &o};
    set_where(L, oc.where, sizeof oc.where);

    sj_trip why = run_tripped(L);
    if (why != SJ_TRIP_NONE)
        return raise_trip(L, why);

    proc *p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    p->in_fd = p->s[0].fd = p->s[1].fd = p->pidfd = -1;
    p->s[0].level = SJ_LOG_INFO;
    p->s[1].level = SJ_LOG_WARN;
    p->in = in;
    p->in_len = in_len;
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, proc_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, proc_close);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "snailjob.exec_process");
    lua_setfield(L, -2, "__name");
    lua_setmetatable(L, -2);
    lua_toclose(L, -1);

    pthread_once(&reaper_once, become_subreaper);
    int rc = spawn(p, argv, envp, o.cwd, in != NULL);
    if (rc != 0) {
        if (o.cwd != NULL)
            return luaL_error(L, "sj.exec: cannot start '%s' in '%s': %s", prog,
                              o.cwd, strerror(rc));
        return luaL_error(L, "sj.exec: cannot start '%s': %s", prog,
                          strerror(rc));
    }
    if (p->in_fd >= 0 && in_len == 0)
        close_fd(&p->in_fd);

    long long start = sj_mono_ms();
    long long own_deadline =
        o.timeout > 0 ? start + (long long)(o.timeout * 1000) : 0;
    long long term_at = 0, kill_at = 0, gone_by = 0;
    bool own_timeout = false;
    long idle_us = 50;

    for (;;) {
        struct pollfd pf[4];
        int nf = 0;
        for (int i = 0; i < 2; i++)
            if (p->s[i].fd >= 0)
                pf[nf++] = (struct pollfd){.fd = p->s[i].fd, .events = POLLIN};
        if (p->in_fd >= 0)
            pf[nf++] = (struct pollfd){.fd = p->in_fd, .events = POLLOUT};
        if (p->pidfd >= 0 && !p->reaped)
            pf[nf++] = (struct pollfd){.fd = p->pidfd, .events = POLLIN};
        if (nf > 0) {
            poll(pf, (nfds_t)nf, SLICE_MS);
        } else {
            /* the pipes are closed: the child is exiting, or left running
             * without them; back off from 50 µs to one slice */
            usleep((useconds_t)idle_us);
            if (idle_us < SLICE_MS * 1000)
                idle_us *= 2;
        }
        drain(&oc, &p->s[0]);
        drain(&oc, &p->s[1]);
        write_stdin(p);
        reap_group(p);

        long long now = sj_mono_ms();
        if (term_at == 0) {
            if (why == SJ_TRIP_NONE)
                why = run_tripped(L);
            if (!own_timeout && own_deadline > 0 && now >= own_deadline)
                own_timeout = true;
            bool leftovers = p->reaped && group_alive(p->pgid);
            if (why != SJ_TRIP_NONE || own_timeout || leftovers) {
                term_at = now;
                kill_at = now + (long long)(o.kill_grace * 1000);
                kill(-p->pgid, SIGTERM);
                close_fd(&p->in_fd);
            }
        }
        if (term_at != 0 && gone_by == 0 && now >= kill_at) {
            kill(-p->pgid, SIGKILL);
            gone_by = now + AFTER_KILL_MS;
        }
        if (p->reaped && !group_alive(p->pgid)) {
            /* every writer is gone: what is left in the pipes is all */
            drain(&oc, &p->s[0]);
            drain(&oc, &p->s[1]);
            break;
        }
        if (gone_by != 0 && now >= gone_by && p->reaped) {
            sj_log(SJ_LOG_WARN,
                   "sj.exec: members of process group %d of '%s' are still "
                   "there %d ms after SIGKILL",
                   (int)p->pgid, prog, AFTER_KILL_MS);
            break;
        }
    }
    for (int i = 0; i < 2; i++) /* escaped writers may hold the pipes */
        if (p->s[i].line.len > 0 && o.log)
            emit_line(&oc, &p->s[i]);
    p->pgid = 0; /* nothing of the group is left to signal */

    if (why != SJ_TRIP_NONE) {
        proc_end(p); /* before the unwinding, which runs it again */
        return raise_trip(L, why);
    }
    if (own_timeout) {
        char secs[32];
        snprintf(secs, sizeof secs, "%g", o.timeout);
        return luaL_error(L,
                          "sj.exec: '%s' timed out after %s s (its process "
                          "group was ended)",
                          prog, secs);
    }

    lua_createtable(L, 0, 5);
    if (WIFEXITED(p->status)) {
        lua_pushinteger(L, WEXITSTATUS(p->status));
        lua_setfield(L, -2, "code");
    } else if (WIFSIGNALED(p->status)) {
        lua_pushinteger(L, WTERMSIG(p->status));
        lua_setfield(L, -2, "signal");
    }
    if (o.capture) {
        lua_pushlstring(L, p->s[0].cap.p ? p->s[0].cap.p : "", p->s[0].cap.len);
        lua_setfield(L, -2, "stdout");
        lua_pushlstring(L, p->s[1].cap.p ? p->s[1].cap.p : "", p->s[1].cap.len);
        lua_setfield(L, -2, "stderr");
    }
    lua_pushboolean(L, oc.truncated);
    lua_setfield(L, -2, "truncated");
    return 1;
}

int sj_exec_open(lua_State *L)
{
    lua_pushcfunction(L, exec_call);
    return 1;
}
