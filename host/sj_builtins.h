/*
 * sj_builtins.h - the built-in executors (the files of executors/, compiled
 * into the binary): which are enabled, loading them into a state, and what the
 * host says about them.
 *
 * The four names of the Java and Python clients are served by two files:
 * executors/http.lua (snailJobHttpExecutor) and executors/script.lua
 * (snailJobShellJobExecutor, snailJobCMDJobExecutor,
 * snailJobPowerShellJobExecutor). They are written against the public
 * `sj` API only; each file gets one argument when it runs, a table
 * { enabled = { http = true, shell = true, ... }, http_allow = { "*.x.com",
 * ... }, host_allowed = fn }, and declares the executors of the enabled
 * keys. host_allowed(host) is what executors/allow.lua returns for the
 * http_allow list (it is run first). Like the Java client, the host does
 * not register the built-in names with the server (sj_upstream): the
 * console lists them on its own.
 *
 * The setting `builtins` (SNAIL_BUILTINS: "http,shell,cmd,powershell" or
 * "all"; blanks around names ignored; sj_config has checked the names)
 * enables them; none is on by default. `http_allow` (host patterns,
 * "*.example.com" or "api.example.com") restricts where the HTTP executor
 * and the script DOWNLOAD method may go.
 *
 * Threads: pure functions of their arguments, except sj_builtins_load,
 * which runs on the thread that owns `L`.
 */
#ifndef SJ_BUILTINS_H
#define SJ_BUILTINS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct lua_State; /* lua.h: only sj_builtins.c needs it */

enum {
    SJ_BUILTIN_HTTP = 1,
    SJ_BUILTIN_SHELL = 2,
    SJ_BUILTIN_CMD = 4,
    SJ_BUILTIN_POWERSHELL = 8
};

/* The enabled set of a `builtins` setting text (NULL or "" = none). */
unsigned sj_builtins_mask(const char *setting);

/*
 * Run the files of the enabled built-ins in `L` (protected mode: this
 * raises on a load error or a duplicate name). `http_allow` may be NULL.
 * Stack: unchanged.
 */
void sj_builtins_load(struct lua_State *L, unsigned mask,
                      const char *http_allow);

/* If `name` is a built-in executor that `mask` does not enable, write a
 * sentence saying how to enable it into msg and return true. */
bool sj_builtins_hint(const char *name, unsigned mask, char *msg, size_t n);

/* Is `name` one of the four built-in executor names? */
bool sj_builtins_is_executor(const char *name);

/* "http, shell" or "none" into buf. */
const char *sj_builtins_describe(unsigned mask, char *buf, size_t n);

/* The start-up lines about the built-ins (a WARN when shell, cmd or
 * powershell is on: what that lets anyone who can create jobs do). */
void sj_builtins_log_start(unsigned mask, const char *http_allow,
                           const char *group);

#endif
