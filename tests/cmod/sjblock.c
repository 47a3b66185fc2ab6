/*
 * sjblock.c - a tiny C module for the containment tests (test_e2e_contain):
 * sjblock.sleep(seconds) blocks in C (nanosleep), where no Lua hook runs,
 * as a third-party module's network or database call would. Built as a
 * MODULE and not linked to liblua: the host's Lua symbols serve it.
 */
#include <errno.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

static int block_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    lua_pushboolean(L, 1);
    return 1;
}

int luaopen_sjblock(lua_State *L);

int luaopen_sjblock(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, block_sleep);
    lua_setfield(L, -2, "sleep");
    return 1;
}
