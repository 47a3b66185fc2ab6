/*
 * test_luajson.c - JSON <-> Lua conversion and sj.json (sj_luajson.h).
 *
 * Standalone: prints one line per failed check and exits non-zero if any
 * failed. Every state is closed at the end, so valgrind shows no leaks.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sj_error.h"
#include "sj_luajson.h"

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

/* ---- a Lua state whose allocator can be capped --------------------------- */

typedef struct mem {
    size_t used;
    size_t limit; /* 0: no limit */
} mem;

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    mem *m = ud;
    size_t old = ptr != NULL ? osize : 0;

    if (nsize == 0) {
        free(ptr);
        m->used -= old;
        return NULL;
    }
    if (m->limit != 0 && nsize > old && m->used + (nsize - old) > m->limit)
        return NULL;
    ptr = realloc(ptr, nsize);
    if (ptr != NULL)
        m->used = m->used - old + nsize;
    return ptr;
}

/* A state with the standard libraries and the global `json` = sj.json. */
static lua_State *new_state(mem *m)
{
    lua_State *L = lua_newstate(capped_alloc, m);

    if (L == NULL) {
        fprintf(stderr, "cannot create a Lua state\n");
        exit(2);
    }
    luaL_openlibs(L);
    sj_luajson_open(L);
    lua_setglobal(L, "json");
    return L;
}

/* Run a chunk that must complete without error; it checks with assert().
 * The stack must be as before. */
static void lua_ok(lua_State *L, const char *name, const char *code)
{
    int top = lua_gettop(L);

    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK) {
        failures++;
        fprintf(stderr, "FAIL %s: %s\n", name, lua_tostring(L, -1));
        lua_settop(L, top);
        return;
    }
    CHECK(lua_gettop(L) == top, "%s: stack %d, was %d", name, lua_gettop(L),
          top);
}

/* Run a chunk that returns one value and leave that value on the stack
 * (nil, counted as a failure, if the chunk failed). [-0, +1] */
static void eval(lua_State *L, const char *code)
{
    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        failures++;
        fprintf(stderr, "FAIL eval: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

/* ---- through Lua: sj.json.encode/decode ---------------------------------- */

static void test_big_ids(lua_State *L)
{
    lua_ok(L, "big ids",
           "for _, s in ipairs{'9007199254740993', '1234567890123456789',\n"
           "    '-9223372036854775808', '9223372036854775807'} do\n"
           "  local v = assert(json.decode(s))\n"
           "  assert(math.type(v) == 'integer', s .. ' is ' .. math.type(v))\n"
           "  assert(string.format('%d', v) == s, string.format('%d', v))\n"
           "  assert(json.encode(v) == s, json.encode(v))\n"
           "end\n"
           "local text = '{\"job_id\":1234567890123456789,'..\n"
           "  '\"min\":-9223372036854775808,\"task_id\":9007199254740993}'\n"
           "local t = assert(json.decode(text))\n"
           "assert(math.type(t.job_id) == 'integer')\n"
           "assert(string.format('%d', t.job_id) == '1234567890123456789')\n"
           "assert(t.task_id == 9007199254740993)\n"
           "assert(t.task_id ~= 9007199254740992)\n"
           "assert(t.min == math.mininteger)\n"
           "assert(json.encode(t) == text, json.encode(t))\n"
           "assert(json.encode({id = 1234567890123456789}) ==\n"
           "  '{\"id\":1234567890123456789}')\n");
    lua_ok(L, "beyond int64",
           "local v, msg = json.decode('[1, 99999999999999999999]')\n"
           "assert(v == nil and type(msg) == 'string', tostring(v))\n"
           "assert(msg:find('line 1'), msg)\n"
           "v, msg = json.decode('-9223372036854775809')\n"
           "assert(v == nil and msg, tostring(v))\n");
}

static void test_tables(lua_State *L)
{
    lua_ok(L, "nested",
           "local t = {z = true, a = {b = {1, 2, {c = 'x'}}, e = {}},\n"
           "           n = json.null, f = false, s = 'é'}\n"
           "local s = json.encode(t)\n"
           "assert(s == '{\"a\":{\"b\":[1,2,{\"c\":\"x\"}],\"e\":{}},'..\n"
           "  '\"f\":false,\"n\":null,\"s\":\"é\",\"z\":true}', s)\n"
           "local back = assert(json.decode(s))\n"
           "assert(back.a.b[3].c == 'x' and back.z == true)\n"
           "assert(back.f == false and back.n == json.null)\n"
           "assert(json.encode(back) == s)\n");
    lua_ok(
        L, "empty tables",
        "assert(json.encode({}) == '{}')\n"
        "assert(json.encode(setmetatable({}, json.array_mt)) == '[]')\n"
        "assert(json.encode({list = setmetatable({}, json.array_mt)}) ==\n"
        "  '{\"list\":[]}')\n"
        "local a = assert(json.decode('[]'))\n"
        "assert(next(a) == nil and getmetatable(a) == json.array_mt)\n"
        "assert(json.encode(a) == '[]')\n"
        "assert(json.encode(assert(json.decode('{}'))) == '{}')\n"
        "assert(json.encode(assert(json.decode('{\"a\":[],\"b\":{}}'))) ==\n"
        "  '{\"a\":[],\"b\":{}}')\n"
        "local m = setmetatable({1, 2}, json.array_mt)\n"
        "assert(json.encode(m) == '[1,2]')\n"
        "m.x = 1\n"
        "local ok, err = pcall(json.encode, {m})\n"
        "assert(not ok and err:find('array_mt') and err:find('value%[1%]'),\n"
        "  err)\n");
    lua_ok(L, "nulls",
           "local a = assert(json.decode('[1,null,3,null]'))\n"
           "assert(#a == 4 and a[2] == json.null and a[4] == json.null)\n"
           "assert(json.encode(a) == '[1,null,3,null]')\n"
           "assert(json.decode('null') == json.null)\n"
           "assert(json.encode(nil) == 'null')\n"
           "assert(json.encode(json.null) == 'null')\n"
           "assert(json.encode({1, nil, 3}) == '{\"1\":1,\"3\":3}')\n"
           "assert(type(json.null) == 'userdata')\n");
    lua_ok(L, "keys",
           "assert(json.encode({[1] = 'a', [2] = 'b', [5] = 'c'}) ==\n"
           "  '{\"1\":\"a\",\"2\":\"b\",\"5\":\"c\"}')\n"
           "assert(json.encode({10, 20, x = 30}) ==\n"
           "  '{\"1\":10,\"2\":20,\"x\":30}')\n"
           "assert(json.encode({[0] = 'z'}) == '{\"0\":\"z\"}')\n"
           "assert(json.encode({[-3] = 1}) == '{\"-3\":1}')\n"
           "assert(json.encode({[1.5] = 1}) == '{\"1.5\":1}')\n"
           "assert(json.encode({b = 1, a = 2, [10] = 3, [2] = 4}) ==\n"
           "  '{\"10\":3,\"2\":4,\"a\":2,\"b\":1}')\n"
           "local ok, err = pcall(json.encode, {[1] = 'a', ['1'] = 'b'})\n"
           "assert(not ok and err:find('duplicate key \"1\"'), err)\n"
           "ok, err = pcall(json.encode, {x = {[true] = 1}})\n"
           "assert(not ok and err:find('cannot encode a boolean key at "
           "value.x'),\n"
           "  err)\n"
           "ok, err = pcall(json.encode, {[math.huge] = 1})\n"
           "assert(not ok and err:find('inf'), err)\n"
           "ok, err = pcall(json.encode, {['a b'] = {['c\"d'] = print}})\n"
           "assert(err:find('at value[\"a b\"][\"c?d\"]', 1, true), err)\n");
}

static void test_errors(lua_State *L)
{
    lua_ok(L, "NaN and inf",
           "local ok, err = pcall(json.encode, {x = 0/0})\n"
           "assert(not ok and err:find('cannot encode NaN at value.x'), err)\n"
           "ok, err = pcall(json.encode, math.huge)\n"
           "assert(not ok and err:find('cannot encode inf'), err)\n"
           "ok, err = pcall(json.encode, {1, -math.huge})\n"
           "assert(not ok and err:find('cannot encode %-inf at value%[2%]'),\n"
           "  err)\n");
    lua_ok(
        L, "function path",
        "local ok, err = pcall(json.encode, {items = {1, 2, print}})\n"
        "assert(not ok, 'encoded a function')\n"
        "assert(err:find('sj.json.encode: cannot encode a function at "
        "value.items[3]', 1, true), err)\n"
        "ok, err = pcall(json.encode, {['a b'] = {coroutine.create(print)}})"
        "\n"
        "assert(err:find('cannot encode a thread at value[\"a b\"][1]',\n"
        "  1, true), err)\n"
        "ok, err = pcall(json.encode, io.stdout)\n"
        "assert(err:find('cannot encode a userdata at value', 1, true), err)\n"
        "ok, err = pcall(json.encode)\n"
        "assert(not ok and err:find('bad argument #1'), err)\n"
        "ok, err = pcall(json.decode, {})\n"
        "assert(not ok and err:find('bad argument #1'), err)\n");
    lua_ok(L, "cycle",
           "local t = {a = {b = {}}}\n"
           "t.a.b.back = t.a\n"
           "local ok, err = pcall(json.encode, t)\n"
           "assert(not ok and err:find('cycle at value.a.b.back', 1, true),\n"
           "  err)\n"
           "local self = {}; self[1] = self\n"
           "ok, err = pcall(json.encode, self)\n"
           "assert(not ok and err:find('cycle at value[1]', 1, true), err)\n"
           "local shared = {1}\n"
           "assert(json.encode({shared, shared}) == '[[1],[1]]')\n");
    lua_ok(L, "depth",
           "local function nest(n)\n"
           "  return string.rep('[', n) .. string.rep(']', n)\n"
           "end\n"
           "local v, msg = json.decode(nest(300))\n"
           "assert(v == nil and msg:find('deeper than 200'), msg)\n"
           "v, msg = json.decode(nest(5000))\n"
           "assert(v == nil and msg, tostring(v))\n"
           "v = assert(json.decode(nest(200)))\n"
           "assert(json.encode(v) == nest(200))\n"
           "assert(json.decode(nest(201)) == nil)\n"
           "local t = {}\n"
           "for _ = 2, 300 do t = {t} end\n"
           "local ok, err = pcall(json.encode, t)\n"
           "assert(not ok and err:find('nesting deeper than 200 levels at "
           "value[1][1]', 1, true), err)\n"
           "assert(err:find('...', 1, true) and #err < 400, err)\n"
           "t = {}\n"
           "for _ = 2, 200 do t = {k = t} end\n"
           "assert(#json.encode(t) == 200 * 6 - 4)\n"
           "ok, err = pcall(json.encode, {k = t})\n"
           "assert(not ok, 'encoded 201 levels')\n");
    lua_ok(
        L, "invalid JSON",
        "for _, s in ipairs{'{bad', '', '[1,]', '{\"a\":1} x', '\"\\\\ud800\"',"
        "\n   '[1, 2', 'nul', '\"\\255\"'} do\n"
        "  local v, msg = json.decode(s)\n"
        "  assert(v == nil, s)\n"
        "  assert(type(msg) == 'string' and msg:find('line'), s)\n"
        "end\n"
        "local v, msg = json.decode('{\\n  \"a\": tru}')\n"
        "assert(msg:find('line 2'), msg)\n");
    lua_ok(
        L, "invalid UTF-8",
        "for _, s in ipairs{'\\255', 'a\\192\\128', '\\237\\160\\128',\n"
        "    '\\244\\144\\128\\128', '\\226\\130', 'ok\\128'} do\n"
        "  local ok, err = pcall(json.encode, {s = s})\n"
        "  assert(not ok and err:find('string is not valid UTF-8 at "
        "value.s', 1, true), err)\n"
        "end\n"
        "local ok, err = pcall(json.encode, {['\\255'] = 1})\n"
        "assert(not ok and err:find('key is not valid UTF-8', 1, true), err)\n"
        "assert(json.encode('\\240\\159\\152\\128\\239\\191\\191') ==\n"
        "  '\"\\240\\159\\152\\128\\239\\191\\191\"')\n");
}

static void test_scalars(lua_State *L)
{
    lua_ok(
        L, "floats",
        "assert(json.encode(3.0) == '3')\n"
        "assert(json.encode(-0.0) == '0')\n"
        "assert(json.encode(2.5) == '2.5')\n"
        "assert(json.encode(0.1) == '0.1')\n"
        "assert(json.encode(1/3) == '0.3333333333333333', json.encode(1/3))\n"
        "assert(json.encode(1e300) == '1e+300', json.encode(1e300))\n"
        "assert(json.encode(2^63) == '9.223372036854776e+18',\n"
        "  json.encode(2^63))\n"
        "assert(json.encode(-2^63) == '-9223372036854775808')\n"
        "assert(json.encode({x = 3.0, y = 2.5}) == '{\"x\":3,\"y\":2.5}')\n"
        "for _, x in ipairs{0.1, 1/3, 1e-300, 5e-324, 123456.789, 2^63,\n"
        "    1.7976931348623157e308} do\n"
        "  local back = json.decode(json.encode(x))\n"
        "  assert(back == x and math.type(back) == 'float', x)\n"
        "end\n"
        "assert(math.type(json.decode('3.0')) == 'float')\n"
        "assert(math.type(json.decode('1e2')) == 'float')\n"
        "assert(math.type(json.decode('3')) == 'integer')\n");
    lua_ok(L, "strings",
           "local s = 'a\\0b'\n"
           "assert(json.encode(s) == '\"a\\\\u0000b\"', json.encode(s))\n"
           "local back = json.decode(json.encode(s))\n"
           "assert(back == s and #back == 3)\n"
           "assert(json.decode('\"x\\\\u0000y\"') == 'x\\0y')\n"
           "local k = json.encode({['a\\0b'] = 1})\n"
           "assert(k == '{\"a\\\\u0000b\":1}', k)\n"
           "-- jansson cannot decode a NUL in an object key: bad input\n"
           "local v, msg = json.decode(k)\n"
           "assert(v == nil and msg:find('NUL byte in object key'), msg)\n"
           "local odd = 'q\"\\\\/\\n\\r\\t\\b\\f\\1\\31 é'\n"
           "local e = json.encode(odd)\n"
           "assert(e == '\"q\\\\\"\\\\\\\\/\\\\n\\\\r\\\\t\\\\b\\\\f'..\n"
           "  '\\\\u0001\\\\u001F é\"', e)\n"
           "assert(json.decode(e) == odd)\n"
           "assert(json.decode('\"\\\\u00e9\\\\ud83d\\\\ude00\"') ==\n"
           "  'é\\240\\159\\152\\128')\n"
           "assert(json.decode('  true ') == true)\n"
           "assert(json.decode('false') == false)\n"
           "assert(json.decode('\"x\"') == 'x')\n"
           "assert(json.encode(true) == 'true')\n"
           "assert(json.encode('') == '\"\"')\n");
}

/* ---- the C API ----------------------------------------------------------- */

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);

    if (v == NULL) {
        fprintf(stderr, "test JSON does not parse: %s: %s\n", text, e.text);
        exit(2);
    }
    return v;
}

static void test_c_push(lua_State *L)
{
    int top = lua_gettop(L);
    json_t *v = load("{\"id\":1234567890123456789,\"n\":null,"
                     "\"list\":[1,null,2.5,\"s\"],\"o\":{\"x\":null}}");
    sj_luajson_opts nil_opts = {.null_as_nil = 1};
    json_t *deep;
    int rc;

    rc = sj_luajson_push(L, v);
    CHECK(rc == 0 && lua_gettop(L) == top + 1, "push rc %d", rc);
    CHECK(lua_getfield(L, -1, "id") == LUA_TNUMBER && lua_isinteger(L, -1) &&
              lua_tointeger(L, -1) == 1234567890123456789LL,
          "push: id is not exact");
    lua_pop(L, 1);
    lua_getfield(L, -1, "n");
    CHECK(sj_luajson_isnull(L, -1), "push: null is not the sentinel");
    lua_pop(L, 1);
    lua_getfield(L, -1, "list");
    CHECK(lua_rawlen(L, -1) == 4, "push: list length %d",
          (int)lua_rawlen(L, -1));
    lua_pop(L, 2);
    CHECK(lua_gettop(L) == top, "stack after push");

    rc = sj_luajson_push_opts(L, v, &nil_opts);
    CHECK(rc == 0 && lua_gettop(L) == top + 1, "push_opts rc %d", rc);
    CHECK(lua_getfield(L, -1, "n") == LUA_TNIL, "null_as_nil: n present");
    lua_pop(L, 1);
    lua_getfield(L, -1, "o");
    CHECK(lua_istable(L, -1) && (lua_pushnil(L), lua_next(L, -2) == 0),
          "null_as_nil: nested object not empty");
    lua_pop(L, 1);
    lua_getfield(L, -1, "list");
    CHECK(lua_rawlen(L, -1) == 4 && lua_rawgeti(L, -1, 2) &&
              sj_luajson_isnull(L, -1),
          "null_as_nil: array nulls must stay the sentinel");
    lua_pop(L, 3);
    CHECK(lua_gettop(L) == top, "stack after push_opts");
    json_decref(v);

    v = json_null();
    CHECK(sj_luajson_push_opts(L, v, &nil_opts) == 0 && lua_isnil(L, -1),
          "null_as_nil: top-level null is not nil");
    lua_pop(L, 1);
    CHECK(sj_luajson_push(L, NULL) == SJ_EINVAL && lua_gettop(L) == top,
          "push NULL");

    /* 300 levels: fails with the stack as it was. */
    deep = json_array();
    for (int i = 1; i < 300; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, deep);
        deep = outer;
    }
    rc = sj_luajson_push(L, deep);
    CHECK(rc == SJ_ETOOBIG && lua_gettop(L) == top, "deep push: rc %d top %d",
          rc, lua_gettop(L));
    json_decref(deep);
}

static void test_c_to(lua_State *L)
{
    int top = lua_gettop(L);
    char err[256];
    json_t *v;
    sj_luajson_opts named = {.root = "result"};
    sj_luajson_opts small = {.max_size = 1000};

    eval(L, "return {id = 1234567890123456789, x = 3.0, y = 0.5, "
            "s = 'a\\0b', l = {1, json.null, 3}}");
    v = sj_luajson_to(L, -1, err, sizeof err);
    CHECK(v != NULL, "to: %s", err);
    CHECK(lua_gettop(L) == top + 1, "stack after to");
    if (v != NULL) {
        json_t *l = json_object_get(v, "l");
        CHECK(json_integer_value(json_object_get(v, "id")) ==
                  1234567890123456789LL,
              "to: id");
        CHECK(json_is_integer(json_object_get(v, "x")), "to: 3.0");
        CHECK(json_is_real(json_object_get(v, "y")), "to: 0.5");
        CHECK(json_string_length(json_object_get(v, "s")) == 3, "to: NUL");
        CHECK(json_array_size(l) == 3 && json_is_null(json_array_get(l, 1)),
              "to: array with null");
    }
    json_decref(v);
    lua_pop(L, 1);

    eval(L, "return {items = {1, 2, function() end}}");
    v = sj_luajson_to_opts(L, -1, &named, err, sizeof err);
    CHECK(v == NULL && strcmp(err, "cannot encode a function at "
                                   "result.items[3]") == 0,
          "to error: %s", err);
    CHECK(lua_gettop(L) == top + 1, "stack after failed to");
    lua_pop(L, 1);

    /* A small err buffer is terminated; no buffer at all is fine. */
    eval(L, "return {f = print}");
    v = sj_luajson_to(L, -1, err, 8);
    CHECK(v == NULL && strlen(err) == 7, "short err: '%s'", err);
    v = sj_luajson_to(L, -1, NULL, 0);
    CHECK(v == NULL, "to without err buffer");
    lua_pop(L, 1);

    /* Shared subtables blow up: the size guard stops them. */
    eval(L, "local t = {string.rep('x', 4096)}\n"
            "for _ = 1, 40 do t = {t, t} end\n"
            "return t");
    v = sj_luajson_to_opts(L, -1, &small, err, sizeof err);
    CHECK(v == NULL && strstr(err, "too large") != NULL, "size guard: %s", err);
    v = sj_luajson_to(L, -1, err, sizeof err);
    CHECK(v == NULL && strstr(err, "too large") != NULL, "default guard: %s",
          err);
    lua_pop(L, 1);
    CHECK(lua_gettop(L) == top, "stack after size guard");

    /* The estimate tracks the real text: "[1,2,...,100]" is 293 bytes. */
    eval(L, "local t = {} for i = 1, 100 do t[i] = i end return t");
    small.max_size = 300;
    v = sj_luajson_to_opts(L, -1, &small, err, sizeof err);
    CHECK(v != NULL, "size guard at 300: %s", err);
    json_decref(v);
    small.max_size = 250;
    v = sj_luajson_to_opts(L, -1, &small, err, sizeof err);
    CHECK(v == NULL && strstr(err, "over 250 bytes") != NULL,
          "size guard at 250: %s", err);
    lua_pop(L, 1);

    lua_pushnumber(L, 0.0 / 0.0);
    v = sj_luajson_to(L, -1, err, sizeof err);
    CHECK(v == NULL && strcmp(err, "cannot encode NaN at value") == 0,
          "NaN: %s", err);
    lua_pop(L, 1);
}

/* ---- property: random values survive push -> to, and dump -> load -------- */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void rnd_text(char *buf, size_t *len, int allow_nul)
{
    static const char *const parts[] = {"a",
                                        "Z",
                                        "_",
                                        "0",
                                        " ",
                                        "\"",
                                        "\\",
                                        "\n",
                                        "\x01",
                                        "\x1f",
                                        "/",
                                        "\xc3\xa9",
                                        "\xe2\x82\xac",
                                        "\xf0\x9f\x98\x80",
                                        "\x7f",
                                        "\0"};
    size_t n = rnd() % 8, k = 0;
    size_t nparts = sizeof parts / sizeof parts[0] - (allow_nul ? 0 : 1);

    for (size_t i = 0; i < n; i++) {
        const char *p = parts[rnd() % nparts];
        size_t pl = *p == '\0' ? 1 : strlen(p);
        memcpy(buf + k, p, pl);
        k += pl;
    }
    *len = k;
}

/* Object keys never hold NUL: jansson can neither parse nor compare them. */
static json_t *rnd_json(int depth)
{
    char buf[64];
    size_t len;
    int kind = (int)(rnd() % (depth < 4 ? 9 : 7));

    switch (kind) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(rnd() & 1);
    case 2: {
        static const json_int_t edge[] = {
            0,         -1,       9007199254740993LL, 1234567890123456789LL,
            INT64_MIN, INT64_MAX};
        return json_integer(rnd() & 1 ? edge[rnd() % 6] : (json_int_t)rnd());
    }
    case 3: {
        double d;
        uint64_t bits;
        do {
            bits = rnd();
            memcpy(&d, &bits, sizeof d);
        } while (isnan(d) || isinf(d) || (fabs(d) < 1e19 && d == floor(d)));
        if (rnd() & 1)
            d = (double)(rnd() % 100000) / 64.0 + 1.0 / 128.0;
        return json_real(d);
    }
    case 4:
    case 5:
    case 6:
        rnd_text(buf, &len, 1);
        return json_stringn(buf, len);
    case 7: {
        json_t *a = json_array();
        for (int i = (int)(rnd() % 5); i > 0; i--)
            json_array_append_new(a, rnd_json(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (int i = (int)(rnd() % 5); i > 0; i--) {
            rnd_text(buf, &len, 0);
            json_object_setn_new(o, buf, len, rnd_json(depth + 1));
        }
        return o;
    }
    }
}

static int has_real(const json_t *v)
{
    const char *key;
    json_t *x;
    size_t i;

    if (json_is_real(v))
        return 1;
    if (json_is_array(v)) {
        json_array_foreach(v, i, x)
        {
            if (has_real(x))
                return 1;
        }
    }
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, x)
        {
            if (has_real(x))
                return 1;
        }
    }
    return 0;
}

static void test_random(lua_State *L)
{
    int top = lua_gettop(L), compared = 0;

    for (int i = 0; i < 3000; i++) {
        json_t *v = rnd_json(0), *back, *loaded;
        char err[256], *text = NULL, *ref;
        size_t len = 0;
        json_error_t jerr;

        CHECK(sj_luajson_push(L, v) == 0, "random push %d", i);
        back = sj_luajson_to(L, -1, err, sizeof err);
        lua_pop(L, 1);
        CHECK(back != NULL && json_equal(v, back), "random %d: push/to: %s", i,
              back == NULL ? err : "values differ");

        CHECK(sj_luajson_dump(v, &text, &len) == 0 && strlen(text) <= len,
              "random dump %d", i);
        loaded = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        CHECK(loaded != NULL && json_equal(v, loaded), "random %d: %s: %s", i,
              text, loaded == NULL ? jerr.text : "values differ");

        /* Without reals, byte-identical to jansson's output. */
        ref = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (!has_real(v)) {
            compared++;
            CHECK(strcmp(text, ref) == 0, "random %d: %s vs jansson %s", i,
                  text, ref);
        }
        free(ref);
        free(text);
        json_decref(loaded);
        json_decref(back);
        json_decref(v);
    }
    CHECK(compared > 500, "only %d texts compared with jansson's", compared);
    CHECK(lua_gettop(L) == top, "stack after random");
}

/* ---- memory errors inside Lua leak nothing (valgrind checks) ------------- */

static void test_memory_errors(void)
{
    mem m = {0, 0};
    lua_State *L = new_state(&m);
    int outcomes[2] = {0, 0};

    eval(L, "big = {}\n"
            "for i = 1, 40 do big[i] = {id = i, name = 'n' .. i,\n"
            "  tags = {'a', 'b', json.null}, r = i / 7} end\n"
            "text = json.encode(big)");
    lua_gc(L, LUA_GCCOLLECT);
    for (size_t extra = 0; extra < 64 * 1024; extra += 256) {
        for (int which = 0; which < 2; which++) {
            int top = lua_gettop(L), rc;

            lua_getglobal(L, "json");
            lua_getfield(L, -1, which == 0 ? "encode" : "decode");
            lua_getglobal(L, which == 0 ? "big" : "text");
            m.limit = m.used + extra;
            rc = lua_pcall(L, 1, 1, 0);
            m.limit = 0;
            CHECK(rc == LUA_OK || rc == LUA_ERRMEM, "memory: rc %d: %s", rc,
                  lua_tostring(L, -1));
            outcomes[rc == LUA_OK]++;
            lua_settop(L, top);
            lua_gc(L, LUA_GCCOLLECT);
        }
    }
    CHECK(outcomes[0] > 0 && outcomes[1] > 0,
          "memory: %d failed, %d passed: the cap did not bite", outcomes[0],
          outcomes[1]);
    lua_close(L);
}

int main(void)
{
    mem m = {0, 0};
    lua_State *L = new_state(&m);

    test_big_ids(L);
    test_tables(L);
    test_errors(L);
    test_scalars(L);
    test_c_push(L);
    test_c_to(L);
    test_random(L);
    CHECK(lua_gettop(L) == 0, "final stack %d", lua_gettop(L));
    lua_close(L);
    test_memory_errors();

    if (failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_luajson: all checks passed\n");
    return 0;
}
