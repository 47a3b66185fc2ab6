/*
 * sj_http.c - `sj.http` on libcurl's multi interface. See sj_http.h.
 */
#include "sj_http.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <lauxlib.h>

#include "sj_bytes.h"
#include "sj_dl.h"
#include "sj_limits.h"
#include "sj_lualib.h"
#include "sj_opts.h"

#define SLICE_MS 10
#define DEFAULT_MAX_BODY (16.0 * 1024 * 1024)

/* libcurl, loaded on the first sj.http call (sj_dl.h): most hosts never
 * make one, and linking it maps ~30 libraries into every host. Filled
 * once under global_once, read-only after. */
#define CURL_SONAME "libcurl.so.4"
static struct curl_api {
    __typeof__(&curl_easy_cleanup) easy_cleanup;
    __typeof__(&curl_easy_getinfo) easy_getinfo;
    __typeof__(&curl_easy_init) easy_init;
    __typeof__(&curl_easy_reset) easy_reset;
    __typeof__(&curl_easy_setopt) easy_setopt;
    __typeof__(&curl_easy_strerror) easy_strerror;
    __typeof__(&curl_global_init) global_init;
    __typeof__(&curl_multi_add_handle) multi_add_handle;
    __typeof__(&curl_multi_cleanup) multi_cleanup;
    __typeof__(&curl_multi_info_read) multi_info_read;
    __typeof__(&curl_multi_init) multi_init;
    __typeof__(&curl_multi_perform) multi_perform;
    __typeof__(&curl_multi_poll) multi_poll;
    __typeof__(&curl_multi_remove_handle) multi_remove_handle;
    __typeof__(&curl_multi_strerror) multi_strerror;
    __typeof__(&curl_slist_append) slist_append;
    __typeof__(&curl_slist_free_all) slist_free_all;
} cu;

#define CU_SYM(f) SJ_DL_SYM(struct curl_api, f, "curl_" #f)
static const sj_dl_sym cu_syms[] = {
    CU_SYM(easy_cleanup),   CU_SYM(easy_getinfo),
    CU_SYM(easy_init),      CU_SYM(easy_reset),
    CU_SYM(easy_setopt),    CU_SYM(easy_strerror),
    CU_SYM(global_init),    CU_SYM(multi_add_handle),
    CU_SYM(multi_cleanup),  CU_SYM(multi_info_read),
    CU_SYM(multi_init),     CU_SYM(multi_perform),
    CU_SYM(multi_poll),     CU_SYM(multi_remove_handle),
    CU_SYM(multi_strerror), CU_SYM(slist_append),
    CU_SYM(slist_free_all),
};

static char k_agent; /* registry key of this state's agent */

/* One per lua_State: the handles, and the buffers of the transfer in
 * progress (freed by agent_reset before the next one or at __gc). */
typedef struct agent {
    CURLM *multi;
    CURL *easy;
    bool attached; /* easy is in multi */
    struct curl_slist *hdrs;
    sj_bytes body;
    sj_bytes head;   /* "name\0value\0" pairs of the final response */
    size_t max_body; /* bytes */
    bool too_big;
    bool oom;
    char errbuf[CURL_ERROR_SIZE];
} agent;

static void agent_reset(agent *a)
{
    if (a->attached) {
        cu.multi_remove_handle(a->multi, a->easy);
        a->attached = false;
    }
    cu.slist_free_all(a->hdrs);
    a->hdrs = NULL;
    sj_bytes_free(&a->body);
    sj_bytes_free(&a->head);
    a->too_big = a->oom = false;
    a->errbuf[0] = '\0';
}

static int agent_gc(lua_State *L)
{
    agent *a = lua_touserdata(L, 1);
    agent_reset(a);
    if (a->easy != NULL)
        cu.easy_cleanup(a->easy);
    if (a->multi != NULL)
        cu.multi_cleanup(a->multi);
    a->easy = NULL;
    a->multi = NULL;
    return 0;
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static char global_err[512]; /* why libcurl is unusable, "" when it is */

static void global_init(void)
{
    CURLcode rc;

    if (sj_dl_load(CURL_SONAME, cu_syms, sizeof cu_syms / sizeof cu_syms[0],
                   &cu, global_err, sizeof global_err) != 0)
        return;
    if ((rc = cu.global_init(CURL_GLOBAL_DEFAULT)) != CURLE_OK)
        snprintf(global_err, sizeof global_err, "libcurl cannot start: %s",
                 cu.easy_strerror(rc));
}

/* This state's agent, created on first use. */
static agent *get_agent(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &k_agent) == LUA_TUSERDATA) {
        agent *a = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return a;
    }
    lua_pop(L, 1);
    pthread_once(&global_once, global_init);
    if (global_err[0] != '\0')
        luaL_error(L, "sj.http: %s", global_err);
    agent *a = lua_newuserdatauv(L, sizeof *a, 0);
    memset(a, 0, sizeof *a);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, agent_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "snailjob.http_agent");
    lua_setfield(L, -2, "__name");
    lua_setmetatable(L, -2);
    a->multi = cu.multi_init();
    a->easy = cu.easy_init();
    if (a->multi == NULL || a->easy == NULL)
        luaL_error(L, "sj.http: out of memory");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_agent);
    return a;
}

/* ---- the run's limits: the only calls into sj_limits --------------------- */

/* The reason to end the wait now (a stop or timeout of the armed run;
 * during a __close handler's cleanup budget, only once it is spent), or
 * SJ_TRIP_NONE. */
static sj_trip run_tripped(lua_State *L)
{
    return sj_limits_due(sj_lualib_ctx_of(L));
}

/* Raise the host's uncatchable interruption for `why` (after the caller
 * released what it holds). Never returns. */
static int raise_trip(lua_State *L, sj_trip why)
{
    return sj_limits_interrupt(L, why);
}

/* ---- curl callbacks ------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    agent *a = ud;
    size_t len = size * n;
    if (a->body.len + len > a->max_body) {
        a->too_big = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (!sj_bytes_add(&a->body, p, len)) {
        a->oom = true;
        return 0;
    }
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    agent *a = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        a->head.len = 0; /* a new response (redirect, 100): start over */
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (colon == NULL || colon == p)
        return len; /* the blank line ending the headers, or junk */
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
                       end[-1] == '\t'))
        end--;
    char name[256];
    if (nlen >= sizeof name)
        nlen = sizeof name - 1;
    for (size_t i = 0; i < nlen; i++)
        name[i] = (char)tolower((unsigned char)p[i]);
    name[nlen] = '\0';
    if (!sj_bytes_add(&a->head, name, nlen + 1) ||
        !sj_bytes_add(&a->head, v, (size_t)(end - v)) ||
        !sj_bytes_add(&a->head, "", 1)) {
        a->oom = true;
        return 0;
    }
    return len;
}

/* ---- options ------------------------------------------------------------- */

typedef struct req {
    const char *url;
    const char *method; /* upper-case */
    const char *body;   /* NULL: none */
    size_t body_len;
    double timeout, connect_timeout;
    double max_body;
    bool follow, insecure;
} req;

/* Read the options table at `t` into r; strings stay on the stack. */
static void read_opts(lua_State *L, int t, req *r)
{
    size_t n;
    r->url = sj_opts_string(L, t, "sj.http", "url", &n);
    if (r->url == NULL || n == 0)
        luaL_error(L, "sj.http: option 'url' is required");
    if (strlen(r->url) != n)
        luaL_error(L, "sj.http: the url holds a NUL byte");
    const char *m = sj_opts_string(L, t, "sj.http", "method", &n);
    if (m == NULL || n == 0) {
        m = "GET";
        n = 3;
    }
    luaL_Buffer b;
    char *up = luaL_buffinitsize(L, &b, n);
    for (size_t i = 0; i < n; i++) {
        if (!isalpha((unsigned char)m[i]))
            luaL_error(L, "sj.http: bad method '%s'", m);
        up[i] = (char)toupper((unsigned char)m[i]);
    }
    luaL_pushresultsize(&b, n);
    r->method = lua_tostring(L, -1);
    r->body = sj_opts_string(L, t, "sj.http", "body", &r->body_len);
    r->timeout = sj_opts_number(L, t, "sj.http", "timeout", 60, 0);
    r->connect_timeout =
        sj_opts_number(L, t, "sj.http", "connect_timeout", 10, 0);
    r->max_body =
        sj_opts_number(L, t, "sj.http", "max_body", DEFAULT_MAX_BODY, 0);
    r->follow = sj_opts_bool(L, t, "sj.http", "follow_redirects", true);
    r->insecure = sj_opts_bool(L, t, "sj.http", "insecure", false);
}

/* Headers table at `t` -> a->hdrs. */
static void read_headers(lua_State *L, int t, agent *a, const req *r)
{
    int ty = lua_getfield(L, t, "headers");
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (ty != LUA_TTABLE)
        luaL_error(L, "sj.http: option 'headers' must be a table, got %s",
                   lua_typename(L, ty));
    int h = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, h) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING ||
            (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
            luaL_error(L,
                       "sj.http: %s %s: headers must map names to "
                       "strings",
                       r->method, r->url);
        lua_pushvalue(L, -2);
        lua_pushliteral(L, ": ");
        lua_pushvalue(L, -3);
        lua_concat(L, 3);
        const char *line = lua_tostring(L, -1);
        if (strpbrk(line, "\r\n") != NULL)
            luaL_error(L, "sj.http: %s %s: header '%s' holds a line break",
                       r->method, r->url, lua_tostring(L, -3));
        struct curl_slist *s = cu.slist_append(a->hdrs, line);
        if (s == NULL)
            luaL_error(L, "sj.http: out of memory");
        a->hdrs = s;
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

static void setup(agent *a, const req *r)
{
    CURL *e = a->easy;
    cu.easy_reset(e);
    cu.easy_setopt(e, CURLOPT_URL, r->url);
    cu.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    cu.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    cu.easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    cu.easy_setopt(e, CURLOPT_ERRORBUFFER, a->errbuf);
    cu.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    cu.easy_setopt(e, CURLOPT_WRITEDATA, a);
    cu.easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    cu.easy_setopt(e, CURLOPT_HEADERDATA, a);
    cu.easy_setopt(e, CURLOPT_FOLLOWLOCATION, r->follow ? 1L : 0L);
    cu.easy_setopt(e, CURLOPT_MAXREDIRS, 20L);
    cu.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->timeout * 1000));
    cu.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(r->connect_timeout * 1000));
    if (r->insecure) {
        cu.easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        cu.easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (a->hdrs != NULL)
        cu.easy_setopt(e, CURLOPT_HTTPHEADER, a->hdrs);
    if (strcmp(r->method, "HEAD") == 0)
        cu.easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(r->method, "GET") != 0 || r->body != NULL)
        cu.easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body != NULL) {
        cu.easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        cu.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "POST") == 0 ||
               strcmp(r->method, "PUT") == 0) {
        cu.easy_setopt(e, CURLOPT_POSTFIELDS, "");
        cu.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
}

/* Build {status, headers, body, url}. Stack: +1. */
static void push_response(lua_State *L, agent *a)
{
    long status = 0;
    char *eff = NULL;
    cu.easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &status);
    cu.easy_getinfo(a->easy, CURLINFO_EFFECTIVE_URL, &eff);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, a->body.p ? a->body.p : "", a->body.len);
    lua_setfield(L, -2, "body");
    if (eff != NULL) {
        lua_pushstring(L, eff);
        lua_setfield(L, -2, "url");
    }
    lua_newtable(L);
    for (size_t i = 0; i < a->head.len;) {
        const char *name = a->head.p + i;
        const char *val = name + strlen(name) + 1;
        i = (size_t)(val - a->head.p) + strlen(val) + 1;
        if (lua_getfield(L, -1, name) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushstring(L, val);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, val);
        }
        lua_setfield(L, -2, name);
    }
    lua_setfield(L, -2, "headers");
}

/* The request whose options table is at `t`. */
static int do_request(lua_State *L, int t)
{
    req r;
    memset(&r, 0, sizeof r);
    read_opts(L, t, &r);
    agent *a = get_agent(L);
    agent_reset(a); /* leftovers of a request an error unwound */
    read_headers(L, t, a, &r);
    a->max_body =
        r.max_body > (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)r.max_body;

    sj_trip why = run_tripped(L);
    if (why != SJ_TRIP_NONE) {
        agent_reset(a);
        return raise_trip(L, why);
    }
    setup(a, &r);
    if (cu.multi_add_handle(a->multi, a->easy) != CURLM_OK) {
        agent_reset(a);
        return luaL_error(L, "sj.http: %s %s: cannot start the transfer",
                          r.method, r.url);
    }
    a->attached = true;

    CURLcode done = CURLE_OK;
    bool finished = false;
    while (!finished) {
        int running = 0;
        CURLMcode mc = cu.multi_perform(a->multi, &running);
        if (mc != CURLM_OK) {
            agent_reset(a);
            return luaL_error(L, "sj.http: %s %s: %s", r.method, r.url,
                              cu.multi_strerror(mc));
        }
        int left;
        CURLMsg *msg;
        while ((msg = cu.multi_info_read(a->multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == a->easy) {
                done = msg->data.result;
                finished = true;
            }
        }
        if (finished)
            break;
        why = run_tripped(L);
        if (why != SJ_TRIP_NONE) {
            agent_reset(a); /* aborts the transfer */
            return raise_trip(L, why);
        }
        if (running > 0)
            cu.multi_poll(a->multi, NULL, 0, SLICE_MS, NULL);
    }

    if (done != CURLE_OK) {
        char cause[CURL_ERROR_SIZE + 64];
        if (a->too_big)
            snprintf(cause, sizeof cause,
                     "the response body is larger than max_body (%zu bytes)",
                     a->max_body);
        else if (a->oom)
            snprintf(cause, sizeof cause, "out of memory");
        else
            snprintf(cause, sizeof cause, "%s",
                     a->errbuf[0] ? a->errbuf : cu.easy_strerror(done));
        agent_reset(a);
        return luaL_error(L, "sj.http: %s %s: %s", r.method, r.url, cause);
    }
    push_response(L, a);
    agent_reset(a);
    return 1;
}

/* sj.http.request(opts) */
static int http_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    return do_request(L, 1);
}

/* A copy of the optional opts table at `idx` with `url` (and `body`,
 * `method`) set. Stack: +1. */
static int with_opts(lua_State *L, int idx)
{
    lua_newtable(L);
    if (!lua_isnoneornil(L, idx)) {
        luaL_checktype(L, idx, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
    }
    return lua_gettop(L);
}

/* The shorthands' request: opts table t gets url = arg 1 and, unless
 * opts names one, `method`. */
static int shorthand(lua_State *L, int t, const char *method)
{
    lua_pushvalue(L, 1);
    lua_setfield(L, t, "url");
    if (lua_getfield(L, t, "method") == LUA_TNIL) {
        lua_pushstring(L, method);
        lua_setfield(L, t, "method");
    }
    lua_pop(L, 1);
    return do_request(L, t);
}

/* sj.http.get(url [, opts]) */
static int http_get(lua_State *L)
{
    luaL_checkstring(L, 1);
    return shorthand(L, with_opts(L, 2), "GET");
}

/* sj.http.post(url, body [, opts]) */
static int http_post(lua_State *L)
{
    luaL_checkstring(L, 1);
    if (!lua_isnil(L, 2))
        luaL_checkstring(L, 2);
    int t = with_opts(L, 3);
    lua_pushvalue(L, 2);
    lua_setfield(L, t, "body");
    return shorthand(L, t, "POST");
}

int sj_http_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"request", http_request},
                                     {"get", http_get},
                                     {"post", http_post},
                                     {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
