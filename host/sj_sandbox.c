/*
 * sj_sandbox.c - the executor sandbox. See sj_sandbox.h for the contract.
 */
#include "sj_sandbox.h"

#include <stdbool.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

/* Is `name` one of the ","-separated names of `list`? */
static bool allowed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p != NULL && *p != '\0';) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p = end;
    }
    return false;
}

static char k_files; /* array of the module files the Lua searcher found */

/* A function that raises: upvalue 1 is the message. */
static int refuse(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    return lua_error(L);
}

/* t[field] = a function raising `msg` (t at the top). */
static void set_refusal(lua_State *L, const char *field, const char *msg)
{
    lua_pushstring(L, msg);
    lua_pushcclosure(L, refuse, 1);
    lua_setfield(L, -2, field);
}

/* load(chunk [, chunkname [, mode [, env]]]) and loadfile(name [, mode [,
 * env]]): the original (upvalue 1) with mode "t" at argument `modearg`, so
 * a binary chunk is refused with Lua's own message. An absent env stays
 * absent (the originals tell nil from none). */
static int text_only(lua_State *L)
{
    int modearg = (int)lua_tointeger(L, lua_upvalueindex(2));
    if (lua_gettop(L) < modearg)
        lua_settop(L, modearg);
    lua_pushliteral(L, "t");
    lua_replace(L, modearg);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void wrap_text_only(lua_State *L, const char *name, int modearg)
{
    lua_getglobal(L, name);
    lua_pushinteger(L, modearg);
    lua_pushcclosure(L, text_only, 2);
    lua_setglobal(L, name);
}

/* dofile([name]): text only. */
static int dofile_text(lua_State *L)
{
    const char *fname = luaL_optstring(L, 1, NULL);
    lua_settop(L, 1);
    if (luaL_loadfilex(L, fname, "t") != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, LUA_MULTRET);
    return lua_gettop(L) - 1;
}

/* require's Lua searcher, text only: upvalue 1 the package table, 2 the
 * original package.searchpath. */
static int searcher_lua(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, 1);
    if (lua_getfield(L, lua_upvalueindex(1), "path") != LUA_TSTRING)
        return luaL_error(L, "'package.path' must be a string");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2))
        return 1; /* the "no file ..." text */
    lua_pop(L, 1);
    const char *filename = lua_tostring(L, -1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_files);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
    if (luaL_loadfilex(L, filename, "t") != LUA_OK)
        return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                          name, filename, lua_tostring(L, -1));
    lua_pushvalue(L, -2);
    return 2; /* the loader and the file name */
}

/* require's C searchers: the original (upvalue 1) run with package.cpath
 * set to the configured value (upvalue 2), whatever the script set. */
static int searcher_c(lua_State *L)
{
    lua_settop(L, 1);
    lua_getfield(L, lua_upvalueindex(3), "cpath");
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setfield(L, lua_upvalueindex(3), "cpath");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2);
    lua_pushvalue(L, 2); /* the script's cpath, back */
    lua_setfield(L, lua_upvalueindex(3), "cpath");
    return 2;
}

static void sandbox_package(lua_State *L)
{
    lua_getglobal(L, LUA_LOADLIBNAME);
    int pkg = lua_gettop(L);
    lua_pushnil(L);
    lua_setfield(L, pkg, "loadlib");
    lua_getfield(L, pkg, "searchers");
    int searchers = lua_gettop(L);
    /* [1] preload, [2] Lua, [3] C, [4] C root (loadlib.c) */
    lua_pushvalue(L, pkg);
    lua_getfield(L, pkg, "searchpath");
    lua_pushcclosure(L, searcher_lua, 2);
    lua_rawseti(L, searchers, 2);
    for (int i = 3; i <= 4; i++) {
        lua_rawgeti(L, searchers, i);
        lua_getfield(L, pkg, "cpath");
        lua_pushvalue(L, pkg);
        lua_pushcclosure(L, searcher_c, 3);
        lua_rawseti(L, searchers, i);
    }
    lua_pop(L, 2);
}

static void sandbox_debug(lua_State *L, bool full)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_DBLIBNAME);
    if (full) {
        set_refusal(L, "sethook",
                    "debug.sethook is not available to executors: the "
                    "host's hook enforces stop and timeout");
    } else {
        lua_createtable(L, 0, 2);
        lua_getfield(L, -2, "traceback");
        lua_setfield(L, -2, "traceback");
        lua_getfield(L, -2, "getinfo");
        lua_setfield(L, -2, "getinfo");
        lua_remove(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, LUA_DBLIBNAME);
    }
    lua_setglobal(L, LUA_DBLIBNAME);
    lua_pop(L, 1);
}

void sj_sandbox_push_module_files(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_files);
}

void sj_sandbox_apply(lua_State *L, const char *allow)
{
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_files);
    sandbox_package(L);
    wrap_text_only(L, "load", 3);
    wrap_text_only(L, "loadfile", 2);
    lua_pushcfunction(L, dofile_text);
    lua_setglobal(L, "dofile");
    sandbox_debug(L, allowed(allow, "debug"));

    lua_getglobal(L, LUA_OSLIBNAME);
    set_refusal(L, "exit",
                "os.exit is not available to executors: it would end every "
                "worker of the host (return or raise an error instead)");
    if (!allowed(allow, "os.execute"))
        set_refusal(L, "execute",
                    "os.execute is off in snailjob-lua: use sj.exec, or give "
                    "it back with lua_allow = \"os.execute\"");
    lua_pop(L, 1);
    if (!allowed(allow, "io.popen")) {
        lua_getglobal(L, LUA_IOLIBNAME);
        set_refusal(L, "popen",
                    "io.popen is off in snailjob-lua: use sj.exec, or give it "
                    "back with lua_allow = \"io.popen\"");
        lua_pop(L, 1);
    }
}
