/*
 * sj_sandbox.h - what plain Lua code in an executor may not do: end the
 * process, remove or change the hooks, load binary chunks, or call
 * arbitrary C symbols (docs/lua-api.md "Sandbox" states the trust model).
 *
 * sj_sandbox_apply() changes the standard libraries of a fresh state:
 * - package.loadlib is gone; require's C searchers use package.cpath as it
 *   was when the sandbox was applied (a script that changes package.cpath
 *   changes nothing for C modules), so only the files the operator
 *   installed on the configured paths can be loaded;
 * - load, loadfile, dofile and require's Lua searcher accept text only;
 * - debug is reduced to traceback and getinfo;
 * - os.exit raises, saying so; os.execute and io.popen raise (sj.exec is
 *   the way to run commands).
 * `allow` (the lua_allow setting, a ","-list) gives back "os.execute",
 * "io.popen" and "debug" (the whole library except sethook, which stays
 * with the host: the hook enforces stop and timeout).
 *
 * Threads: the thread that owns the state. Call once, in protected mode,
 * after luaL_openlibs and after package.path/cpath are set (it may raise
 * on memory). Stack: unchanged.
 */
#ifndef SJ_SANDBOX_H
#define SJ_SANDBOX_H

#include <lua.h>

void sj_sandbox_apply(lua_State *L, const char *allow);

/* Push the array of the files require's Lua searcher found so far, in
 * order (paths as the search path spelled them; hot reload watches them).
 * Stack: +1. */
void sj_sandbox_push_module_files(lua_State *L);

#endif
