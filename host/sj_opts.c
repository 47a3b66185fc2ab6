/*
 * sj_opts.c - options tables of sj.* C functions. See sj_opts.h.
 */
#include "sj_opts.h"

#include <stdio.h>

#include <lauxlib.h>

double sj_opts_number(lua_State *L, int t, const char *fname, const char *k,
                      double dflt, double lo)
{
    double v = dflt;
    int ty = lua_getfield(L, t, k);
    if (ty == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "%s: option '%s' must be a number, got %s", fname, k,
                   lua_typename(L, ty));
    lua_pop(L, 1);
    if (!(v >= lo)) {
        char low[32];
        snprintf(low, sizeof low, "%g", lo);
        luaL_error(L, "%s: option '%s' must be at least %s", fname, k, low);
    }
    return v;
}

bool sj_opts_bool(lua_State *L, int t, const char *fname, const char *k,
                  bool dflt)
{
    bool v = dflt;
    int ty = lua_getfield(L, t, k);
    if (ty == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "%s: option '%s' must be a boolean, got %s", fname, k,
                   lua_typename(L, ty));
    lua_pop(L, 1);
    return v;
}

const char *sj_opts_string(lua_State *L, int t, const char *fname,
                           const char *k, size_t *len)
{
    int ty = lua_getfield(L, t, k);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (ty != LUA_TSTRING && ty != LUA_TNUMBER)
        luaL_error(L, "%s: option '%s' must be a string, got %s", fname, k,
                   lua_typename(L, ty));
    return lua_tolstring(L, -1, len);
}
