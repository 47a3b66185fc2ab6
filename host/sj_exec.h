/*
 * sj_exec.h - `sj.exec`: run a program without a shell, as a cancellation
 * point like sj.sleep.
 *
 * sj.exec{"cmd", "arg", ..., cwd=, env={}, clear_env=false, stdin="",
 * timeout=, log=true, capture=true, max_output=1 MiB, kill_grace=5}
 * returns {code=, signal=, stdout=, stderr=, truncated=}: `code` is the
 * exit status (nil when a signal ended it), `signal` the signal number
 * (nil when it exited), `truncated` true when a stream went over
 * max_output (the rest was read and dropped). "cmd" is looked up in PATH
 * when it holds no "/". `env` adds or replaces variables (a value `false`
 * removes one); `clear_env` starts from an empty environment.
 *
 * The child is spawned (posix_spawn) in a process group of its own, with
 * default signal dispositions and an empty signal mask, stdin from the
 * given string (or /dev/null when nil), stdout and stderr on pipes. The
 * calling worker thread polls the pipes in slices of at most 10 ms: with
 * log=true each complete line of stdout goes to the task's log at INFO and
 * each line of stderr at WARN as soon as it is read. Between slices the
 * run's stop flag and deadline and the call's own `timeout` are polled.
 *
 * Ending: on a stop or timeout (the task's or the call's own), the whole
 * group gets SIGTERM, then SIGKILL after kill_grace seconds; the child is
 * reaped and the call waits until no member of the group is left. When the
 * child exits by itself, members it left behind in its group are ended the
 * same way. Then a stop or the task's deadline raises the host's
 * uncatchable interruption; the call's own timeout raises a catchable
 * error. A process that calls setsid() (or setpgid) leaves the group and
 * is not followed.
 *
 * Errors (catchable): a program that cannot be started ("sj.exec: cannot
 * start 'x': No such file or directory"), bad options, the call's own
 * timeout. No file descriptor, buffer or process outlives the call, also
 * when the interruption unwinds it.
 *
 * Reaping: on first use the host process becomes a child subreaper
 * (PR_SET_CHILD_SUBREAPER), so members of a child's group whose parent
 * died are given to the host rather than to PID 1 (which may never reap
 * them in a container); each call reaps its own group with
 * waitpid(-pgid). It waits for its child's exit on a pidfd where the
 * kernel has pidfd_open, else in short sleeps.
 *
 * Threads: runs on the thread that owns the state; uses no signal
 * handlers and waits only for its own process group, so other threads'
 * children are untouched. Writing stdin to a child that closed it is an
 * EPIPE, never a SIGPIPE (blocked around the write), whatever the process
 * does with SIGPIPE.
 */
#ifndef SJ_EXEC_H
#define SJ_EXEC_H

#include <lua.h>

/* Push the `sj.exec` function. Stack: +1. */
int sj_exec_open(lua_State *L);

#endif
