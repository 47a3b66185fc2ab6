/*
 * sj_luajson.c - JSON (jansson) <-> Lua values, and `sj.json`.
 * The contract is in sj_luajson.h.
 */
#include "sj_luajson.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "sj_error.h"
#include "sj_json.h"
#include "sj_text.h"

_Static_assert(sizeof(json_int_t) == sizeof(lua_Integer),
               "json_int_t and lua_Integer must both be 64-bit");

/* The null sentinel is this address; array_mt is stored in each state's
 * registry under the address of array_mt_key. */
static const char null_key;
static const char array_mt_key;

/* ---- shared helpers ------------------------------------------------------ */

/* Length of the valid UTF-8 prefix of s[0..n) (== n when all valid).
 * Strict RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF,
 * which is exactly what jansson accepts. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t k;

        if (s[i] < 0x80) {
            /* ASCII fast path, eight bytes at a time. */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            while (i < n && s[i] < 0x80)
                i++;
            continue;
        }
        if ((k = sj_text_utf8_len(s + i, n - i)) == 0)
            return i;
        i += k;
    }
    return n;
}

/* An integral float inside the int64 range, as that integer. */
static int float_as_int(lua_Number d, lua_Integer *out)
{
    /* -2^63 <= d < 2^63, both bounds exact as doubles. */
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
        (lua_Number)(lua_Integer)d == d) {
        *out = (lua_Integer)d;
        return 1;
    }
    return 0;
}

void sj_luajson_pushnull(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&null_key);
}

int sj_luajson_isnull(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA &&
           lua_touserdata(L, idx) == (void *)&null_key;
}

/* Push this state's array_mt, creating it on first use. [-0, +1] */
static void push_array_mt(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "sj.json.array");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &array_mt_key);
}

/* ---- JSON -> Lua --------------------------------------------------------- */

typedef struct push_ctx {
    lua_State *L;
    int null_as_nil;
    int mt; /* absolute index of array_mt, 0 when v holds no container */
} push_ctx;

/* Push v; `depth` containers enclose it. On failure the caller resets the
 * stack. [-0, +1] on success. */
static int push_value(push_ctx *c, const json_t *v, int depth)
{
    lua_State *L = c->L;

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        json_t *obj = (json_t *)v; /* jansson's iterators are not const */
        size_t n = json_object_size(obj);

        if (depth >= SJ_LUAJSON_MAX_DEPTH)
            return SJ_ETOOBIG;
        if (!lua_checkstack(L, 3))
            return SJ_ENOMEM;
        lua_createtable(L, 0, n > INT_MAX ? INT_MAX : (int)n);
        for (void *it = json_object_iter(obj); it != NULL;
             it = json_object_iter_next(obj, it)) {
            json_t *val = json_object_iter_value(it);
            int rc;

            if (c->null_as_nil && json_is_null(val))
                continue;
            lua_pushlstring(L, json_object_iter_key(it),
                            json_object_iter_key_len(it));
            if ((rc = push_value(c, val, depth + 1)) != 0)
                return rc;
            lua_rawset(L, -3);
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);

        if (depth >= SJ_LUAJSON_MAX_DEPTH)
            return SJ_ETOOBIG;
        if (!lua_checkstack(L, 3))
            return SJ_ENOMEM;
        lua_createtable(L, n > INT_MAX ? INT_MAX : (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            int rc = push_value(c, json_array_get(v, i), depth + 1);
            if (rc != 0)
                return rc;
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_pushvalue(L, c->mt);
        lua_setmetatable(L, -2);
        return 0;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        return 0;
    case JSON_REAL:
        lua_pushnumber(L, (lua_Number)json_real_value(v));
        return 0;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        return 0;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        return 0;
    case JSON_NULL:
    default:
        sj_luajson_pushnull(L);
        return 0;
    }
}

int sj_luajson_push_opts(lua_State *L, const json_t *v,
                         const sj_luajson_opts *opts)
{
    push_ctx c = {L, opts != NULL && opts->null_as_nil, 0};
    int base = lua_gettop(L);
    int rc;

    if (v == NULL)
        return SJ_EINVAL;
    if (!lua_checkstack(L, 3))
        return SJ_ENOMEM;
    if (json_is_null(v) && c.null_as_nil) {
        lua_pushnil(L);
        return 0;
    }
    if (!json_is_array(v) && !json_is_object(v))
        return push_value(&c, v, 0); /* scalars cannot fail */

    /* Stack while building: [base] array_mt value */
    push_array_mt(L);
    c.mt = base + 1;
    if ((rc = push_value(&c, v, 0)) != 0) {
        lua_settop(L, base);
        return rc;
    }
    lua_remove(L, c.mt);
    return 0;
}

int sj_luajson_push(lua_State *L, const json_t *v)
{
    return sj_luajson_push_opts(L, v, NULL);
}

/* ---- Lua -> JSON --------------------------------------------------------- */

/* How a value was reached from its container, for error paths. */
enum { FR_ROOT, FR_INT, FR_NUM, FR_STR };

typedef struct frame {
    int kind;
    union {
        lua_Integer i; /* FR_INT: array index or integer key */
        lua_Number n;  /* FR_NUM: float key */
        struct {       /* FR_STR: string key, anchored in the table */
            const char *p;
            size_t len;
        } s;
    } u;
    const void *table; /* the table at this level, for cycle checks */
} frame;

typedef struct to_ctx {
    lua_State *L;
    const char *root;
    size_t max_size;
    size_t size;          /* JSON text so far (approximate) */
    const void *array_mt; /* this state's array_mt, or NULL */
    char *err;
    size_t errlen;
    frame fr[SJ_LUAJSON_MAX_DEPTH + 1]; /* fr[d]: how level d was reached */
} to_ctx;

/* One path component ("[3]", ".name", "[\"a b\"]") into buf (>= 48
 * bytes). Returns its length. */
static size_t fmt_component(const frame *f, char *buf)
{
    size_t n = 0;

    switch (f->kind) {
    case FR_INT:
        buf[n++] = '[';
        n += (size_t)sj_json_fmt_int(f->u.i, buf + n);
        buf[n++] = ']';
        break;
    case FR_NUM: {
        char tmp[40];
        sj_json_fmt_real(f->u.n, tmp);
        n = (size_t)snprintf(buf, 48, "[%s]", tmp);
        break;
    }
    case FR_STR: {
        const unsigned char *p = (const unsigned char *)f->u.s.p;
        size_t len = f->u.s.len, show = len > 24 ? 24 : len;
        int ident = len > 0 && !(p[0] >= '0' && p[0] <= '9');

        for (size_t i = 0; i < len && ident; i++)
            ident = (p[i] >= 'a' && p[i] <= 'z') ||
                    (p[i] >= 'A' && p[i] <= 'Z') ||
                    (p[i] >= '0' && p[i] <= '9') || p[i] == '_';
        if (ident && len <= 32) {
            buf[n++] = '.';
            memcpy(buf + n, p, len);
            n += len;
            break;
        }
        buf[n++] = '[';
        buf[n++] = '"';
        for (size_t i = 0; i < show; i++)
            buf[n++] =
                (p[i] < 0x20 || p[i] == '"' || p[i] == '\\' || p[i] >= 0x7F)
                    ? '?'
                    : (char)p[i];
        if (show < len) {
            memcpy(buf + n, "...", 3);
            n += 3;
        }
        buf[n++] = '"';
        buf[n++] = ']';
        break;
    }
    default:
        break;
    }
    buf[n] = '\0';
    return n;
}

/* The path of level `depth` into out (outsz >= 256): the root name, then
 * the components; the middle of a long path is elided as "...". */
static void fmt_path(const to_ctx *c, int depth, char *out, size_t outsz)
{
    enum { HEAD = 48, TAIL = 120 };
    char comp[48];
    size_t n = 0, total = 0, headlen = 0, taillen = 0;
    int head = 0, tail = depth + 1; /* components 1..head, tail..depth */

    n = (size_t)snprintf(out, outsz, "%.40s", c->root);
    for (int d = 1; d <= depth; d++)
        total += fmt_component(&c->fr[d], comp);
    if (total <= HEAD + TAIL) {
        head = depth;
    } else {
        while (tail > 1) {
            size_t k = fmt_component(&c->fr[tail - 1], comp);
            if (taillen + k > TAIL)
                break;
            taillen += k;
            tail--;
        }
        while (head + 1 < tail) {
            size_t k = fmt_component(&c->fr[head + 1], comp);
            if (headlen + k > HEAD)
                break;
            headlen += k;
            head++;
        }
    }
    for (int d = 1; d <= depth; d++) {
        size_t k;
        if (d > head && d < tail) {
            if (d == head + 1 && n + 3 < outsz) {
                memcpy(out + n, "...", 3);
                n += 3;
            }
            continue;
        }
        k = fmt_component(&c->fr[d], comp);
        if (n + k >= outsz)
            break;
        memcpy(out + n, comp, k);
        n += k;
    }
    out[n < outsz ? n : outsz - 1] = '\0';
}

/* Record "<what> at <path of level depth>" and return NULL. */
static json_t *fail(to_ctx *c, int depth, const char *fmt, ...)
{
    char path[256];
    va_list ap;
    int n;

    if (c->err == NULL || c->errlen == 0)
        return NULL;
    va_start(ap, fmt);
    n = vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= c->errlen)
        return NULL;
    fmt_path(c, depth, path, sizeof path);
    snprintf(c->err + n, c->errlen - (size_t)n, " at %s", path);
    return NULL;
}

static json_t *to_value(to_ctx *c, int idx, int depth);

/* Characters of the decimal text of v. */
static size_t int_text_len(lua_Integer v)
{
    unsigned long long u =
        v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    size_t n = v < 0 ? 2 : 1;

    while (u >= 10) {
        u /= 10;
        n++;
    }
    return n;
}

/* Account for `n` more bytes of JSON text at level `depth` (with its comma;
 * a real counts as 8, escapes are not counted). */
static int grow(to_ctx *c, size_t n, int depth)
{
    c->size += n;
    if (c->size > c->max_size) {
        fail(c, depth, "value too large to encode (over %zu bytes of JSON)",
             c->max_size);
        return -1;
    }
    return 0;
}

/* The table at idx (absolute) is a sequence 1..n: convert it. */
static json_t *to_array(to_ctx *c, int idx, lua_Integer n, int depth)
{
    lua_State *L = c->L;
    json_t *arr = json_array();

    if (arr == NULL)
        return fail(c, depth, "out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        json_t *child;

        lua_rawgeti(L, idx, i);
        c->fr[depth + 1].kind = FR_INT;
        c->fr[depth + 1].u.i = i;
        child = to_value(c, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (child == NULL)
            goto fail_arr;
        if (json_array_append_new(arr, child) != 0) { /* steals child */
            fail(c, depth, "out of memory");
            goto fail_arr;
        }
    }
    return arr;

fail_arr:
    json_decref(arr);
    return NULL;
}

/* The table at idx (absolute) as an object. Stack on failure: the caller
 * (sj_luajson_to_opts) resets it. */
static json_t *to_object(to_ctx *c, int idx, int depth)
{
    lua_State *L = c->L;
    json_t *obj = json_object();
    int numeric_seen = 0;

    if (obj == NULL)
        return fail(c, depth, "out of memory");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        /* Stack: ... key value. Never lua_tolstring a number key in place:
         * that would change the key and break lua_next. */
        char num[48];
        const char *k;
        size_t klen;
        int check_dup;
        frame *f = &c->fr[depth + 1];
        json_t *child;

        switch (lua_type(L, -2)) {
        case LUA_TSTRING:
            k = lua_tolstring(L, -2, &klen);
            f->kind = FR_STR;
            f->u.s.p = k;
            f->u.s.len = klen;
            if (utf8_valid_prefix((const unsigned char *)k, klen) != klen) {
                fail(c, depth + 1, "key is not valid UTF-8");
                goto fail_obj;
            }
            check_dup = numeric_seen;
            break;
        case LUA_TNUMBER:
            if (lua_isinteger(L, -2)) {
                f->kind = FR_INT;
                f->u.i = lua_tointeger(L, -2);
                klen = (size_t)sj_json_fmt_int(f->u.i, num);
            } else {
                f->kind = FR_NUM;
                f->u.n = lua_tonumber(L, -2);
                if (isinf(f->u.n)) { /* NaN cannot be a key */
                    fail(c, depth, "cannot encode the key %sinf",
                         f->u.n < 0 ? "-" : "");
                    goto fail_obj;
                }
                klen = (size_t)sj_json_fmt_real(f->u.n, num);
            }
            k = num;
            check_dup = 1;
            numeric_seen = 1;
            break;
        default:
            fail(c, depth, "cannot encode a %s key", luaL_typename(L, -2));
            goto fail_obj;
        }
        if (check_dup && json_object_getn(obj, k, klen) != NULL) {
            fail(c, depth, "duplicate key \"%.*s\" (a number and a string)",
                 (int)(klen > 40 ? 40 : klen), k);
            goto fail_obj;
        }
        if (grow(c, klen + 4, depth) != 0)
            goto fail_obj;
        child = to_value(c, lua_gettop(L), depth + 1);
        if (child == NULL)
            goto fail_obj;
        /* steals child, also on failure */
        if (json_object_setn_new_nocheck(obj, k, klen, child) != 0) {
            fail(c, depth, "out of memory");
            goto fail_obj;
        }
        lua_pop(L, 1); /* the value; the key stays for lua_next */
    }
    return obj;

fail_obj:
    json_decref(obj);
    return NULL;
}

static json_t *to_table(to_ctx *c, int idx, int depth)
{
    lua_State *L = c->L;
    const void *self = lua_topointer(L, idx);
    lua_Integer count = 0, maxk = 0;
    int seq = 1, marked = 0;

    if (depth >= SJ_LUAJSON_MAX_DEPTH)
        return fail(c, depth, "nesting deeper than %d levels",
                    SJ_LUAJSON_MAX_DEPTH);
    for (int d = 0; d < depth; d++)
        if (c->fr[d].table == self)
            return fail(c, depth, "cycle");
    c->fr[depth].table = self;
    if (!lua_checkstack(L, 4))
        return fail(c, depth, "out of Lua stack");
    if (c->array_mt != NULL && lua_getmetatable(L, idx)) {
        marked = lua_topointer(L, -1) == c->array_mt;
        lua_pop(L, 1);
    }
    if (grow(c, 2, depth) != 0)
        return NULL;

    /* Keys exactly 1..n <=> all keys are positive integers, the largest
     * equals the count. Stop at the first key that is not. */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_Integer k;
        count++;
        if (!lua_isinteger(L, -2) || (k = lua_tointeger(L, -2)) < 1) {
            seq = 0;
            lua_pop(L, 2);
            break;
        }
        if (k > maxk)
            maxk = k;
        lua_pop(L, 1);
    }
    if (seq && maxk == count && (count > 0 || marked))
        return to_array(c, idx, count, depth);
    if (marked)
        return fail(c, depth,
                    "table marked with array_mt has keys other "
                    "than 1..n");
    return to_object(c, idx, depth);
}

/* Convert the value at idx (absolute); `depth` containers enclose it and
 * c->fr[depth] says how it was reached. [-0, +0] on success. */
static json_t *to_value(to_ctx *c, int idx, int depth)
{
    lua_State *L = c->L;
    json_t *v = NULL;

    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        if (grow(c, 5, depth) != 0)
            return NULL;
        v = json_null();
        break;
    case LUA_TBOOLEAN:
        if (grow(c, 6, depth) != 0)
            return NULL;
        v = json_boolean(lua_toboolean(L, idx));
        break;
    case LUA_TNUMBER: {
        lua_Integer i;
        lua_Number d;

        if (lua_isinteger(L, idx)) {
            i = lua_tointeger(L, idx);
            if (grow(c, int_text_len(i) + 1, depth) != 0)
                return NULL;
            v = json_integer((json_int_t)i);
            break;
        }
        d = lua_tonumber(L, idx);
        if (isnan(d))
            return fail(c, depth, "cannot encode NaN");
        if (isinf(d))
            return fail(c, depth, "cannot encode %sinf", d < 0 ? "-" : "");
        if (float_as_int(d, &i)) {
            if (grow(c, int_text_len(i) + 1, depth) != 0)
                return NULL;
            v = json_integer((json_int_t)i);
        } else {
            if (grow(c, 8, depth) != 0)
                return NULL;
            v = json_real(d);
        }
        break;
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);

        if (grow(c, len + 3, depth) != 0)
            return NULL;
        if (utf8_valid_prefix((const unsigned char *)s, len) != len)
            return fail(c, depth, "string is not valid UTF-8");
        v = json_stringn_nocheck(s, len);
        break;
    }
    case LUA_TTABLE:
        return to_table(c, idx, depth);
    case LUA_TLIGHTUSERDATA:
        if (sj_luajson_isnull(L, idx)) {
            if (grow(c, 5, depth) != 0)
                return NULL;
            v = json_null();
            break;
        }
        return fail(c, depth, "cannot encode a userdata");
    default:
        return fail(c, depth, "cannot encode a %s", luaL_typename(L, idx));
    }
    if (v == NULL)
        return fail(c, depth, "out of memory");
    return v;
}

json_t *sj_luajson_to_opts(lua_State *L, int idx, const sj_luajson_opts *opts,
                           char *err, size_t errlen)
{
    to_ctx c;
    int base = lua_gettop(L);
    json_t *v;

    idx = lua_absindex(L, idx);
    c.L = L;
    c.root = opts != NULL && opts->root != NULL ? opts->root : "value";
    c.max_size = opts != NULL && opts->max_size != 0 ? opts->max_size
                                                     : SJ_LUAJSON_MAX_SIZE;
    c.size = 0;
    c.err = err;
    c.errlen = errlen;
    c.fr[0].kind = FR_ROOT;
    c.fr[0].table = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (!lua_checkstack(L, 2)) {
        fail(&c, 0, "out of Lua stack");
        return NULL;
    }
    /* lua_rawgetp allocates nothing; array_mt stays anchored in the
     * registry, so its address is stable while we run. */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
    c.array_mt = lua_istable(L, -1) ? lua_topointer(L, -1) : NULL;
    lua_pop(L, 1);

    v = to_value(&c, idx, 0);
    lua_settop(L, base);
    return v;
}

json_t *sj_luajson_to(lua_State *L, int idx, char *err, size_t errlen)
{
    return sj_luajson_to_opts(L, idx, NULL, err, errlen);
}

/* ---- JSON text ----------------------------------------------------------- */

int sj_luajson_dump(const json_t *v, char **out, size_t *len)
{
    return sj_json_dump(v, out, len);
}

/* ---- sj.json ------------------------------------------------------------- */

/* What encode/decode hold in C memory while Lua may raise (a memory error
 * from lua_pushlstring/lua_createtable): a userdata whose __gc frees it. */
typedef struct box {
    json_t *json;
    char *text;
} box;

static int box_gc(lua_State *L)
{
    box *b = lua_touserdata(L, 1);

    json_decref(b->json);
    free(b->text);
    b->json = NULL;
    b->text = NULL;
    return 0;
}

/* A new empty box with the metatable in upvalue 1. [-0, +1] */
static box *new_box(lua_State *L)
{
    box *b = lua_newuserdatauv(L, sizeof *b, 0);

    b->json = NULL;
    b->text = NULL;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    return b;
}

/* encode(v) -> text; raises when v cannot be encoded. */
static int l_encode(lua_State *L)
{
    char err[320];
    size_t len = 0;
    box *b;
    int rc;

    luaL_checkany(L, 1);
    lua_settop(L, 1);
    b = new_box(L);
    if ((b->json = sj_luajson_to(L, 1, err, sizeof err)) == NULL)
        return luaL_error(L, "sj.json.encode: %s", err);
    rc = sj_luajson_dump(b->json, &b->text, &len);
    json_decref(b->json);
    b->json = NULL;
    if (rc != 0)
        return luaL_error(L, "sj.json.encode: %s", sj_strerror(rc));
    lua_pushlstring(L, b->text, len);
    free(b->text);
    b->text = NULL;
    return 1;
}

/* decode(text) -> value, or nil, message. */
static int l_decode(lua_State *L)
{
    json_error_t jerr;
    size_t len;
    const char *text;
    box *b;
    int rc;

    luaL_checktype(L, 1, LUA_TSTRING);
    text = lua_tolstring(L, 1, &len);
    lua_settop(L, 1);
    b = new_box(L);
    b->json = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (b->json == NULL) {
        lua_pushnil(L);
        lua_pushfstring(L, "invalid JSON at line %d, column %d: %s", jerr.line,
                        jerr.column, jerr.text);
        return 2;
    }
    rc = sj_luajson_push(L, b->json);
    json_decref(b->json);
    b->json = NULL;
    if (rc != 0) {
        lua_pushnil(L);
        if (rc == SJ_ETOOBIG)
            lua_pushfstring(L, "invalid JSON: nesting deeper than %d levels",
                            SJ_LUAJSON_MAX_DEPTH);
        else
            lua_pushstring(L, sj_strerror(rc));
        return 2;
    }
    return 1;
}

int sj_luajson_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"encode", l_encode},
        {"decode", l_decode},
        {NULL, NULL},
    };

    lua_createtable(L, 0, 4);
    /* the box metatable, shared as upvalue 1 by encode and decode */
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    luaL_setfuncs(L, funcs, 1);
    sj_luajson_pushnull(L);
    lua_setfield(L, -2, "null");
    push_array_mt(L);
    lua_setfield(L, -2, "array_mt");
    return 1;
}
