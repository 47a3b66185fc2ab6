/* Fuzz target: JSON text -> Lua value -> JSON, the path every dispatch
 * argument and handler result takes, plus sj.json.decode from a script.
 * A value that converts must survive the round trip unchanged. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sj_luajson.h"

static lua_State *L;

static int has_real(const json_t *v)
{
    const char *k;
    json_t *x;
    size_t i;

    if (json_is_real(v))
        return 1;
    if (json_is_array(v)) {
        json_array_foreach(v, i, x) if (has_real(x)) return 1;
    } else if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, x) if (has_real(x)) return 1;
    }
    return 0;
}

static int decode_in_lua(lua_State *S)
{
    size_t n;
    const char *s = lua_tolstring(S, 1, &n);
    lua_getfield(S, 2, "decode");
    lua_pushlstring(S, s, n);
    lua_call(S, 1, 2);
    return 2;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *v, *back;
    char err[256];

    if (L == NULL) {
        L = luaL_newstate();
        luaL_openlibs(L);
    }
    v = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
    if (v != NULL) {
        if (sj_luajson_push(L, v) == 0) {
            back = sj_luajson_to(L, -1, err, sizeof err);
            lua_pop(L, 1);
            /* Integral reals may come back as integers (3.0 -> 3), by
             * contract; a value without reals must come back equal. */
            if (back != NULL && !has_real(v) && !json_equal(v, back))
                abort();
            json_decref(back);
        }
        json_decref(v);
    }
    /* The script's own decoder: returns a value or nil, message. */
    lua_pushcfunction(L, decode_in_lua);
    lua_pushlstring(L, (const char *)data, size);
    sj_luajson_open(L);
    if (lua_pcall(L, 2, 2, 0) != LUA_OK) {
        /* only a memory error may escape */
        lua_pop(L, 1);
    } else {
        if (lua_isnil(L, -2) && !lua_isstring(L, -1))
            abort();
        lua_pop(L, 2);
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
