/*
 * sj_luajson.h - JSON values (jansson) <-> Lua values, and `sj.json`.
 *
 * lua-cjson turns every number into a double, and SnailJob ids are 64-bit,
 * so every JSON value that enters or leaves a worker's lua_State goes
 * through this unit: dispatch arguments are pushed with sj_luajson_push,
 * handler results are read back with sj_luajson_to, and scripts get the same
 * rules through sj.json.encode / sj.json.decode (sj_luajson_open).
 *
 * Threads: any thread, but a given lua_State only from the thread that owns
 * it. The unit has no global mutable state: the null sentinel is the address
 * of a static constant, the array marker lives in each state's registry.
 *
 * JSON -> Lua (sj_luajson_push):
 *   integer -> Lua integer, exact (json_int_t and lua_Integer are 64-bit)
 *   real    -> Lua float
 *   string  -> Lua string, length-aware (embedded NULs kept)
 *   true/false -> boolean
 *   null    -> the light userdata sentinel `sj.json.null` (sj_luajson_pushnull)
 *              so that arrays with nulls keep their length; with
 *              opts.null_as_nil, object members whose value is null are left
 *              out and a top-level null pushes nil (array elements stay the
 *              sentinel, so `#` still counts them)
 *   array   -> sequence 1..n carrying the metatable `sj.json.array_mt`
 *   object  -> table with string keys
 *
 * Lua -> JSON (sj_luajson_to), tables read raw (no __index/__pairs):
 *   nil, sj.json.null -> null;  boolean -> true/false
 *   integer -> integer, exact
 *   float   -> real, except a float with an integral value inside the int64
 *              range (3.0, -0.0) -> integer; NaN and +-inf are errors
 *   string  -> string; it must be valid UTF-8 (error otherwise)
 *   table   -> array when its keys are exactly 1..n (n >= 1), or when it
 *              carries sj.json.array_mt (then its keys MUST be 1..n or none:
 *              an empty marked table is `[]`, anything else is an error);
 *              otherwise an object: an empty unmarked table is `{}`, integer
 *              keys become their decimal text (a sparse {1, 2, [5] = x}
 *              becomes {"1":..,"2":..,"5":..}), non-integral float keys
 *              their shortest round-trip text; a number key whose text
 *              collides with a string key ([1] and ["1"]) is an error;
 *              boolean/table/function/... keys are errors
 *   function, userdata (other than null), thread -> error
 *   a table inside itself -> "cycle" error
 * Error texts name the place: "cannot encode a function at
 * result.items[3]".
 *
 * Limits: containers nest at most SJ_LUAJSON_MAX_DEPTH deep both ways (the
 * outermost array/object is level 1). sj_luajson_to also stops once the
 * JSON text would exceed opts.max_size bytes (approximate: escapes are not
 * counted), a guard against runaway results built from shared subtables,
 * since jansson's memory is not under the VM's allocator cap.
 *
 * Lua errors: sj_luajson_to never raises (it allocates nothing in Lua).
 * sj_luajson_push raises nothing of its own, but Lua may raise a memory
 * error (LUA_ERRMEM) from inside lua_createtable/lua_pushlstring; call it
 * from protected code and keep `v` anchored where an unwind can free it.
 */
#ifndef SJ_LUAJSON_H
#define SJ_LUAJSON_H

#include <stddef.h>

#include <jansson.h>
#include <lua.h>

#include "sj_json.h"

/* Deepest container nesting accepted in either direction (sj_json's). */
#define SJ_LUAJSON_MAX_DEPTH SJ_JSON_MAX_DEPTH

/* Default for sj_luajson_opts.max_size (and what sj_luajson_to uses). */
#define SJ_LUAJSON_MAX_SIZE (16 * 1024 * 1024)

typedef struct sj_luajson_opts {
    /* push: leave out null object members, push a top-level null as nil. */
    int null_as_nil;
    /* to: the name of the value in error paths; NULL means "value". */
    const char *root;
    /* to: refuse values whose JSON text would exceed this many bytes;
     * 0 means SJ_LUAJSON_MAX_SIZE. */
    size_t max_size;
} sj_luajson_opts;

/*
 * Push `v` as a Lua value, nulls as the sentinel.
 * Stack: [-0, +1] on success (returns 0); [-0, +0] on failure, the stack
 * exactly as it was: SJ_EINVAL (v is NULL), SJ_ETOOBIG (nested deeper than
 * SJ_LUAJSON_MAX_DEPTH), SJ_ENOMEM (the Lua stack cannot grow).
 */
int sj_luajson_push(lua_State *L, const json_t *v);

/* sj_luajson_push with options (NULL: the defaults). Same stack effects. */
int sj_luajson_push_opts(lua_State *L, const json_t *v,
                         const sj_luajson_opts *opts);

/*
 * The Lua value at `idx` as a new JSON value the caller json_decref()s, or
 * NULL with a sentence in `err` (up to errlen bytes, always terminated when
 * errlen > 0; err may be NULL). Error paths start with "value".
 * Stack: [-0, +0], also on failure. Never raises.
 */
json_t *sj_luajson_to(lua_State *L, int idx, char *err, size_t errlen);

/* sj_luajson_to with options (NULL: the defaults). */
json_t *sj_luajson_to_opts(lua_State *L, int idx, const sj_luajson_opts *opts,
                           char *err, size_t errlen);

/*
 * `v` as compact JSON text with object keys sorted (bytewise) and reals in
 * their shortest round-trip form (0.1 -> "0.1"; jansson's json_dumps writes
 * 17 digits, "0.10000000000000001"). Integral reals keep a ".0".
 * On success *out is a malloc'd NUL-terminated string the caller free()s and
 * *len its length (may be NULL). Returns 0, SJ_ENOMEM, or SJ_ETOOBIG
 * (deeper than SJ_LUAJSON_MAX_DEPTH). Any thread; touches no Lua state.
 * The same as sj_json_dump (sj_json.h), the host's one JSON writer.
 */
int sj_luajson_dump(const json_t *v, char **out, size_t *len);

/* Push the null sentinel `sj.json.null`. [-0, +1] */
void sj_luajson_pushnull(lua_State *L);

/* 1 if the value at idx is the null sentinel, else 0. [-0, +0] */
int sj_luajson_isnull(lua_State *L, int idx);

/*
 * Push the table that becomes `sj.json`:
 *   encode(v)    -> compact JSON text, object keys sorted; raises (misuse)
 *                   with the sentence and path when v cannot be encoded
 *   decode(text) -> the value (any JSON value at the top level), or
 *                   nil, message on bad input (the message names the line
 *                   and column; an integer beyond int64 is bad input)
 *   null         -> the null sentinel
 *   array_mt     -> the metatable marking a table as an array
 *                   (setmetatable({}, sj.json.array_mt) encodes as `[]`)
 * [-0, +1]. May raise only a memory error.
 */
int sj_luajson_open(lua_State *L);

#endif
