#include "sj_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sj_error.h"
#include "sj_log.h"
#include "sj_text.h"

/* The server stores a node's labels in a varchar(512) (protocol.md §3.1). */
#define LABELS_JSON_MAX 512

enum kind {
    K_TEXT,      /* any string */
    K_NAME,      /* non-empty string */
    K_INT,       /* int, min <= v <= max */
    K_NUMBER,    /* double, min < v <= max */
    K_LOG_LEVEL, /* one of log_levels[] */
    K_LABELS,    /* "k:v,k:v"; the file may give a table {k = "v"} */
    K_PATHS,     /* ":"-separated; the file may give a list of strings */
    K_LIST,      /* ","-separated names; the file may give a list of strings;
                    each name one of `choices` when that is set */
    K_CHOICE     /* exactly one of `choices` */
};

struct setting {
    const char *key; /* file key and --print-config name */
    const char *env; /* environment and .env name */
    enum kind kind;
    const char *def;  /* default, as text, parsed like any other source */
    size_t offset;    /* of the field in sj_config */
    double min, max;  /* K_INT and K_NUMBER */
    bool min_ok;      /* K_NUMBER: min itself is allowed (min <= v) */
    const char *hint; /* appended to range errors, or NULL */
    const char *const *choices; /* K_LIST, K_CHOICE: NULL-terminated */
};

#define STR(k, e, kd, d, field)                                                \
    {                                                                          \
        .key = k, .env = e, .kind = kd, .def = d,                              \
        .offset = offsetof(sj_config, field)                                   \
    }
#define RANGED(k, e, kd, d, field, lo, hi, h)                                  \
    {                                                                          \
        .key = k, .env = e, .kind = kd, .def = d,                              \
        .offset = offsetof(sj_config, field), .min = lo, .max = hi, .hint = h  \
    }

#define RANGED0(k, e, d, field, lo, hi, h)                                     \
    {                                                                          \
        .key = k, .env = e, .kind = K_NUMBER, .def = d,                        \
        .offset = offsetof(sj_config, field), .min = lo, .max = hi,            \
        .min_ok = true, .hint = h                                              \
    }
#define CHOSEN(k, e, kd, d, field, list)                                       \
    {                                                                          \
        .key = k, .env = e, .kind = kd, .def = d,                              \
        .offset = offsetof(sj_config, field), .choices = list                  \
    }

static const char *const builtin_names[] = {"all", "http",       "shell",
                                            "cmd", "powershell", NULL};
static const char *const lua_allow_names[] = {"os.execute", "io.popen", "debug",
                                              NULL};
static const char *const spool_sync_names[] = {"batch", "always", "never",
                                               NULL};
static const char *const log_format_names[] = {"text", "json", NULL};

/* The one list of settings: loading, --print-config and errors follow it. */
static const struct setting settings[] = {
    STR("server_host", "SNAIL_SERVER_HOST", K_NAME, "127.0.0.1", server_host),
    RANGED("server_port", "SNAIL_SERVER_PORT", K_INT, "17888", server_port, 1,
           65535, NULL),
    STR("host_ip", "SNAIL_HOST_IP", K_NAME, "127.0.0.1", host_ip),
    RANGED("host_port", "SNAIL_HOST_PORT", K_INT, "17889", host_port, 0, 65535,
           "0 = any free port"),
    STR("namespace", "SNAIL_NAMESPACE", K_NAME,
        "764d604ec6fc45f68cd92514c40e9e1a", namespace_id),
    STR("group_name", "SNAIL_GROUP_NAME", K_NAME, "snail_job_demo_group",
        group_name),
    /* non-empty: an empty token would let empty inbound tokens pass */
    STR("token", "SNAIL_TOKEN", K_NAME, "SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj",
        token),
    STR("labels", "SNAIL_LABELS", K_LABELS, "", labels),
    STR("log_level", "SNAIL_LOG_LEVEL", K_LOG_LEVEL, "INFO", log_level),
    STR("log_file", "SNAIL_LOG_FILE", K_TEXT, "", log_file),
    STR("executors", "SNAIL_EXECUTORS", K_PATHS, "", executors),
    RANGED("workers", "SNAIL_WORKERS", K_INT, "4", workers, 1, 1024, NULL),
    RANGED0("beat_interval", "SNAIL_BEAT_INTERVAL", "10", beat_interval, 1, 30,
            "at least 1 s; the server forgets a client after 40 s without "
            "a beat"),
    RANGED("executor_type", "SNAIL_EXECUTOR_TYPE", K_INT, "2", executor_type, 1,
           3, "1 Java, 2 Python, 3 Go"),
    RANGED("queue_size", "SNAIL_QUEUE_SIZE", K_INT, "65536", queue_size, 1,
           1000000, NULL),
    RANGED("log_remote_interval", "SNAIL_LOG_REMOTE_INTERVAL", K_NUMBER, "1",
           log_remote_interval, 0, 3600, NULL),
    RANGED("log_remote_buffer_size", "SNAIL_LOG_REMOTE_BUFFER_SIZE", K_INT,
           "50", log_remote_buffer_size, 1, 100000, NULL),
    STR("spool_dir", "SNAIL_SPOOL_DIR", K_TEXT, "", spool_dir),
    RANGED("memory_limit_mb", "SNAIL_MEMORY_LIMIT_MB", K_INT, "256",
           memory_limit_mb, 1, 65536, NULL),
    STR("lua_path", "SNAIL_LUA_PATH", K_TEXT, "", lua_path),
    STR("lua_cpath", "SNAIL_LUA_CPATH", K_TEXT, "", lua_cpath),
    RANGED("rpc_timeout", "SNAIL_RPC_TIMEOUT", K_NUMBER, "10", rpc_timeout, 0,
           600, NULL),
    /* executors that touch the world (sj_http, sj_exec, executors/) */
    CHOSEN("builtins", "SNAIL_BUILTINS", K_LIST, "", builtins, builtin_names),
    CHOSEN("http_allow", "SNAIL_HTTP_ALLOW", K_LIST, "", http_allow, NULL),
    /* containment */
    CHOSEN("lua_allow", "SNAIL_LUA_ALLOW", K_LIST, "", lua_allow,
           lua_allow_names),
    RANGED("stop_grace", "SNAIL_STOP_GRACE", K_NUMBER, "3", stop_grace, 0, 3600,
           NULL),
    RANGED("load_timeout", "SNAIL_LOAD_TIMEOUT", K_NUMBER, "5", load_timeout, 0,
           3600, NULL),
    RANGED("cleanup_budget", "SNAIL_CLEANUP_BUDGET", K_NUMBER, "1",
           cleanup_budget, 0, 60, NULL),
    /* the edges: drain, journal, payload and memory bounds */
    RANGED0("shutdown_grace", "SNAIL_SHUTDOWN_GRACE", "30", shutdown_grace, 0,
            86400, "0 = interrupt at once"),
    CHOSEN("spool_sync", "SNAIL_SPOOL_SYNC", K_CHOICE, "batch", spool_sync,
           spool_sync_names),
    RANGED("log_line_max", "SNAIL_LOG_LINE_MAX", K_INT, "65536", log_line_max,
           256, 1048576, "bytes; cut above (a log batch stays under 10 MiB)"),
    RANGED("result_max", "SNAIL_RESULT_MAX", K_INT, "1048576", result_max, 1,
           9437184, "bytes; the server takes 10 MiB per message"),
    RANGED("log_queue_max_bytes", "SNAIL_LOG_QUEUE_MAX_BYTES", K_INT,
           "67108864", log_queue_max_bytes, 65536, 2147483647, "bytes"),
    RANGED("queue_max_bytes", "SNAIL_QUEUE_MAX_BYTES", K_INT, "268435456",
           queue_max_bytes, 65536, 2147483647, "bytes"),
    /* the operator's side */
    STR("bind_host", "SNAIL_BIND_HOST", K_NAME, "0.0.0.0", bind_host),
    STR("metrics_listen", "SNAIL_METRICS_LISTEN", K_TEXT, "", metrics_listen),
    CHOSEN("log_format", "SNAIL_LOG_FORMAT", K_CHOICE, "text", log_format,
           log_format_names),
    /* for executor authors */
    STR("record_dir", "SNAIL_RECORD_DIR", K_TEXT, "", record_dir),
};

#define NSETTINGS (sizeof settings / sizeof settings[0])
_Static_assert(NSETTINGS <= SJ_CONFIG__MAX_SETTINGS,
               "raise SJ_CONFIG__MAX_SETTINGS in sj_config.h");

static const char *const log_levels[] = {"DEBUG",   "INFO",  "WARN",
                                         "WARNING", "ERROR", "CRITICAL"};

/* What one sj_config_load gathers before resolving precedence. */
struct loader {
    char *err;
    size_t errlen;
    const char *file;            /* -c path or NULL */
    const char *dotenv;          /* .env path if it was read, else NULL */
    char *file_val[NSETTINGS];   /* text of each key found in the file */
    char *dotenv_val[NSETTINGS]; /* text of each variable found in .env */
    int dotenv_line[NSETTINGS];  /* where dotenv_val[i] came from */
    int rc;                      /* result of the protected file read */
    char *warnings;              /* "\n"-terminated lines, or NULL */
};

static int fail(struct loader *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(struct loader *ld, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(ld->err, ld->errlen, fmt, ap);
    va_end(ap);
    return SJ_ECONFIG;
}

static int nomem(struct loader *ld)
{
    snprintf(ld->err, ld->errlen, "configuration: %s", sj_strerror(SJ_ENOMEM));
    return SJ_ENOMEM;
}

static void loader_free(struct loader *ld)
{
    free(ld->warnings);
    for (size_t i = 0; i < NSETTINGS; i++) {
        free(ld->file_val[i]);
        free(ld->dotenv_val[i]);
    }
}

static int find_key(const char *key)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].key, key) == 0)
            return (int)i;
    return -1;
}

static int find_env(const char *env)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].env, env) == 0)
            return (int)i;
    return -1;
}

static bool is_string_kind(enum kind k)
{
    return k != K_INT && k != K_NUMBER;
}

/* ---- text helpers --------------------------------------------------- */

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static bool parse_int(const char *text, long long *out)
{
    char *end;

    errno = 0;
    *out = strtoll(text, &end, 10);
    if (end == text || errno != 0)
        return false;
    while (isspace((unsigned char)*end))
        end++;
    return *end == '\0';
}

static bool parse_number(const char *text, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(text, &end);
    if (end == text || errno != 0 || !isfinite(*out))
        return false;
    while (isspace((unsigned char)*end))
        end++;
    return *end == '\0';
}

/* Shortest of %.15g and %.17g that reads back as `d`. */
static void format_number(double d, char *buf, size_t n)
{
    snprintf(buf, n, "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, n, "%.17g", d);
}

static int suggest_index(const char *key);

/* The known key closest to `key` (case and a "snail_" prefix ignored) if
 * it is at most 2 edits away, else NULL. */
static const char *suggest(const char *key)
{
    int i = suggest_index(key);
    return i >= 0 ? settings[i].key : NULL;
}

static int suggest_index(const char *key)
{
    char low[64];
    const char *k = low;
    size_t i, d, best_d = 3;
    int best = -1;

    for (i = 0; key[i] != '\0' && i < sizeof low - 1; i++)
        low[i] = (char)tolower((unsigned char)key[i]);
    low[i] = '\0';
    if (strncmp(low, "snail_", 6) == 0)
        k += 6;
    for (i = 0; i < NSETTINGS; i++) {
        d = sj_text_distance(k, settings[i].key, 0);
        if (d < best_d) {
            best_d = d;
            best = (int)i;
        }
    }
    return best;
}

/* ---- labels ---------------------------------------------------------- */

/* Adds the labels of `text` ("k:v,k:v", blanks around items ignored) to
 * `obj`. 0, SJ_ECONFIG with the reason in `why`, or SJ_ENOMEM. */
static int labels_parse(const char *text, json_t *obj, char *why, size_t n)
{
    char *copy = strdup(text), *item, *next, *colon, *k, *v;
    int rc = 0;

    if (copy == NULL)
        return SJ_ENOMEM;
    for (item = copy; item != NULL && rc == 0; item = next) {
        next = strchr(item, ',');
        if (next != NULL)
            *next++ = '\0';
        k = trim(item);
        if (*k == '\0')
            continue;
        colon = strchr(k, ':');
        if (colon == NULL) {
            snprintf(why, n, "label '%s' is not key:value", k);
            rc = SJ_ECONFIG;
            break;
        }
        *colon = '\0';
        k = trim(k);
        v = trim(colon + 1);
        if (*k == '\0') {
            snprintf(why, n, "label ':%s' has an empty key", v);
            rc = SJ_ECONFIG;
        } else if (json_object_set_new(obj, k, json_string(v)) != 0) {
            /* validated at load, so at that point this is bad UTF-8 */
            snprintf(why, n, "label '%s' is not valid UTF-8", k);
            rc = SJ_ECONFIG;
        }
    }
    free(copy);
    return rc;
}

/* The JSON text of the labels in `text` plus "state":"up" in *out. */
static int labels_dump(const char *text, char **out, char *why, size_t n)
{
    json_t *obj = json_object();
    int rc;

    *out = NULL;
    if (obj == NULL)
        return SJ_ENOMEM;
    rc = labels_parse(text != NULL ? text : "", obj, why, n);
    if (rc == 0 && json_object_set_new(obj, "state", json_string("up")) != 0)
        rc = SJ_ENOMEM;
    if (rc == 0 &&
        (*out = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        rc = SJ_ENOMEM;
    json_decref(obj);
    return rc;
}

int sj_config_spool_dir(const sj_config *cfg, char *buf, size_t len)
{
    const char *dir = getenv("STATE_DIRECTORY"), *xdg, *home;

    if (cfg->spool_dir != NULL && cfg->spool_dir[0] != '\0')
        return snprintf(buf, len, "%s", cfg->spool_dir) < (int)len ? 0
                                                                   : SJ_EINVAL;
    if (dir != NULL && dir[0] != '\0') /* systemd: ':'-separated, the first */
        return snprintf(buf, len, "%.*s", (int)strcspn(dir, ":"), dir) <
                       (int)len
                   ? 0
                   : SJ_EINVAL;
    if ((xdg = getenv("XDG_STATE_HOME")) != NULL && xdg[0] == '/')
        return snprintf(buf, len, "%s/snailjob-lua", xdg) < (int)len
                   ? 0
                   : SJ_EINVAL;
    if ((home = getenv("HOME")) != NULL && home[0] == '/')
        return snprintf(buf, len, "%s/.local/state/snailjob-lua", home) <
                       (int)len
                   ? 0
                   : SJ_EINVAL;
    return SJ_ENOENT;
}

char *sj_config_labels_json(const sj_config *cfg)
{
    char why[256], *out;

    return labels_dump(cfg->labels, &out, why, sizeof why) == 0 ? out : NULL;
}

/* ---- the Lua config file -------------------------------------------- */

/* Message handler of the chunk's pcall: error object -> message with a
 * traceback (lua.c msghandler). */
static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);

    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)",
                              luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* [.. t] -> [.. t list sorted text]: the labels table at `t` as
 * "k:v,k:v", sorted so that --print-config is stable. */
static int labels_from_table(lua_State *L, struct loader *ld, int t)
{
    const char *k, *v, **sorted;
    int list, n = 0;
    luaL_Buffer b;

    lua_newtable(L); /* list of "k:v" strings; anchors what `sorted` holds */
    list = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t) != 0) { /* [.. list k v] */
        if (lua_type(L, -2) != LUA_TSTRING)
            return fail(ld,
                        "%s: key 'labels': label names must be strings, "
                        "got %s",
                        ld->file, luaL_typename(L, -2));
        k = lua_tostring(L, -2);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            return fail(ld,
                        "%s: key 'labels': label '%s' must be a string, "
                        "got %s",
                        ld->file, k, luaL_typename(L, -1));
        v = lua_tostring(L, -1); /* converts a number in its stack slot */
        if (*k == '\0' || strpbrk(k, ",:") != NULL)
            return fail(ld,
                        "%s: key 'labels': label name '%s' must be "
                        "non-empty and without ',' or ':'",
                        ld->file, k);
        if (strchr(v, ',') != NULL)
            return fail(ld,
                        "%s: key 'labels': label '%s' must not contain "
                        "','",
                        ld->file, k);
        lua_pushfstring(L, "%s:%s", k, v); /* [.. list k v kv] */
        lua_rawseti(L, list, ++n);         /* [.. list k v] */
        lua_pop(L, 1);                     /* [.. list k] */
    }
    sorted = lua_newuserdatauv(L, (size_t)n * sizeof *sorted, 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, list, i + 1);
        sorted[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    luaL_buffinit(L, &b);
    for (int i = 0; i < n; i++) {
        if (i > 0)
            luaL_addchar(&b, ',');
        luaL_addstring(&b, sorted[i]);
    }
    luaL_pushresult(&b);
    return 0;
}

/* [.. t] -> [.. t text]: the list of strings at `t` (setting `key`) joined
 * with `sep`. */
static int list_from_table(lua_State *L, struct loader *ld, int t,
                           const char *key, char sep)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, t), count = 0;
    luaL_Buffer b;

    lua_pushnil(L);
    while (lua_next(L, t) != 0) { /* [.. k v]: only 1..n allowed */
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
            lua_tointeger(L, -1) > n)
            return fail(ld,
                        "%s: key '%s' must be a string or a list "
                        "of strings, got a table with other keys",
                        ld->file, key);
        count++;
    }
    if (count != n)
        return fail(ld, "%s: key '%s' must be a list without holes", ld->file,
                    key);
    luaL_buffinit(L, &b);
    for (lua_Integer i = 1; i <= n; i++) {
        const char *s;
        size_t len;

        if (i > 1)
            luaL_addchar(&b, sep);
        if (lua_rawgeti(L, t, i) != LUA_TSTRING) /* [.. t buf item] */
            return fail(ld,
                        "%s: key '%s' item %lld must be a string, "
                        "got %s",
                        ld->file, key, (long long)i, luaL_typename(L, -1));
        s = lua_tolstring(L, -1, &len);
        if (len == 0 || strchr(s, sep) != NULL)
            return fail(ld,
                        "%s: key '%s' item %lld must be non-empty "
                        "and without '%c'",
                        ld->file, key, (long long)i, sep);
        luaL_addvalue(&b); /* pops the item */
    }
    luaL_pushresult(&b);
    return 0;
}

/* [.. v] -> [.. v ...]: the value of setting i found in the file, checked
 * for type and stored as text in ld->file_val[i]. The caller resets the
 * stack. */
static int file_value(lua_State *L, struct loader *ld, size_t i)
{
    const struct setting *s = &settings[i];
    int v = lua_gettop(L), type = lua_type(L, v), rc;
    const char *text;
    char num[64];
    size_t len;

    switch (s->kind) {
    case K_INT:
    case K_NUMBER:
        if (type != LUA_TNUMBER)
            return fail(ld, "%s: key '%s' must be %s, got %s", ld->file, s->key,
                        s->kind == K_INT ? "an integer" : "a number",
                        lua_typename(L, type));
        if (lua_isinteger(L, v))
            snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, v));
        else
            format_number(lua_tonumber(L, v), num, sizeof num);
        text = num;
        len = strlen(num);
        break;
    case K_LABELS:
    case K_PATHS:
    case K_LIST:
        if (type == LUA_TTABLE) {
            rc = s->kind == K_LABELS
                     ? labels_from_table(L, ld, v)
                     : list_from_table(L, ld, v, s->key,
                                       s->kind == K_PATHS ? ':' : ',');
            if (rc != 0)
                return rc;
        } else if (type != LUA_TSTRING) {
            return fail(ld, "%s: key '%s' must be %s, got %s", ld->file, s->key,
                        s->kind == K_LABELS
                            ? "a string \"k:v,k:v\" or a table {k = \"v\"}"
                            : "a string or a list of strings",
                        lua_typename(L, type));
        }
        text = lua_tolstring(L, -1, &len);
        break;
    default:
        if (type != LUA_TSTRING)
            return fail(ld, "%s: key '%s' must be a string, got %s", ld->file,
                        s->key, lua_typename(L, type));
        text = lua_tolstring(L, v, &len);
        break;
    }
    if (strlen(text) != len)
        return fail(ld, "%s: key '%s' must not contain a NUL byte", ld->file,
                    s->key);
    if ((ld->file_val[i] = strdup(text)) == NULL)
        return nomem(ld);
    return 0;
}

/* The table at `t` that the file returned -> ld->file_val[]. */
static int file_collect(lua_State *L, struct loader *ld, int t)
{
    const char *key, *hint;
    int rc, top = lua_gettop(L);

    /* Unknown keys first, so a typo is reported before the values. */
    lua_pushnil(L);
    while (lua_next(L, t) != 0) { /* [.. k v] */
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            return fail(ld, "%s: keys must be setting names, got a %s key",
                        ld->file, luaL_typename(L, -1));
        key = lua_tostring(L, -1);
        if (find_key(key) < 0) {
            hint = suggest(key);
            if (hint != NULL)
                return fail(ld, "%s: unknown key '%s' (did you mean '%s'?)",
                            ld->file, key, hint);
            return fail(ld, "%s: unknown key '%s'", ld->file, key);
        }
    }
    for (size_t i = 0; i < NSETTINGS; i++) {
        lua_pushstring(L, settings[i].key);
        if (lua_rawget(L, t) != LUA_TNIL && (rc = file_value(L, ld, i)) != 0)
            return rc;
        lua_settop(L, top);
    }
    return 0;
}

/* Runs under lua_pcall: [ld] -> []. Opens the libraries, runs the chunk
 * through msghandler and collects the table it returns. Lua memory errors
 * propagate to the caller; everything else is reported in ld->rc. */
static int file_main(lua_State *L)
{
    struct loader *ld = lua_touserdata(L, 1);
    const char *msg;
    int status;

    luaL_openlibs(L);
    lua_pushcfunction(L, msghandler);          /* [ld msgh] */
    status = luaL_loadfilex(L, ld->file, "t"); /* [ld msgh chunk|err] */
    if (status == LUA_OK)
        status = lua_pcall(L, 0, 1, 2); /* [ld msgh result|err] */
    if (status == LUA_ERRMEM) {
        ld->rc = nomem(ld);
        return 0;
    }
    if (status != LUA_OK) {
        /* Lua's message already names the file and line */
        msg = lua_tostring(L, -1);
        ld->rc = fail(ld, "%s", msg != NULL ? msg : "error in config file");
        return 0;
    }
    if (lua_type(L, 3) != LUA_TTABLE) {
        ld->rc = fail(ld, "%s: must return a table, got %s", ld->file,
                      luaL_typename(L, 3));
        return 0;
    }
    ld->rc = file_collect(L, ld, 3);
    return 0;
}

/* Evaluates ld->file in a throwaway state (lua.c's pmain pattern: the
 * only unprotected calls are the two pushes, which cannot fail). */
static int load_file(struct loader *ld)
{
    lua_State *L = luaL_newstate();
    const char *msg;
    int status, rc;

    if (L == NULL)
        return nomem(ld);
    lua_pushcfunction(L, file_main);
    lua_pushlightuserdata(L, ld);
    status = lua_pcall(L, 1, 0, 0);
    rc = ld->rc;
    if (status == LUA_ERRMEM) {
        rc = nomem(ld);
    } else if (status != LUA_OK) {
        msg = lua_tostring(L, -1);
        rc = fail(ld, "%s: %s", ld->file, msg != NULL ? msg : "Lua error");
    }
    lua_close(L);
    return rc;
}

/* ---- .env ------------------------------------------------------------ */

static char *skip_blank(char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Splits one .env line in place into *name and *value; *name is NULL for
 * a blank or comment line. Returns NULL, or what is wrong with the line. */
static const char *dotenv_line(char *line, char **name, char **value)
{
    char *p = skip_blank(line), *end, *close, *q;

    *name = *value = NULL;
    if (*p == '\0' || *p == '#')
        return NULL;
    if (strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t'))
        p = skip_blank(p + 6);
    if (!isalpha((unsigned char)*p) && *p != '_')
        return "malformed line, expected KEY=value";
    *name = p;
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    end = p;
    p = skip_blank(p);
    if (*p != '=')
        return "malformed line, expected KEY=value";
    *end = '\0';
    p = skip_blank(p + 1);
    if (*p == '"' || *p == '\'') {
        close = strchr(p + 1, *p);
        if (close == NULL)
            return "unterminated quote";
        *close = '\0';
        *value = p + 1;
        q = skip_blank(close + 1);
        if (*q != '\0' && *q != '#')
            return "unexpected text after the closing quote";
        return NULL;
    }
    /* unquoted: a '#' at the start or after a blank begins a comment */
    for (q = p; *q != '\0'; q++)
        if (*q == '#' && (q == p || q[-1] == ' ' || q[-1] == '\t'))
            break;
    *q = '\0';
    *value = trim(p);
    return NULL;
}

/* A SNAIL_* name that is no setting: a typo, most likely. A warning
 * naming the closest known one goes into ld->warnings (the variable itself
 * is not an error: other tools may share the prefix). */
static void warn_unknown(struct loader *ld, const char *name, const char *file,
                         int line)
{
    char where[300] = "", msg[600];
    size_t have = ld->warnings ? strlen(ld->warnings) : 0, len;
    char *grown;
    int i;

    if (strncmp(name, "SNAIL_", 6) != 0)
        return;
    if (file != NULL)
        snprintf(where, sizeof where, "%s:%d: ", file, line);
    i = suggest_index(name);
    if (i >= 0)
        snprintf(msg, sizeof msg,
                 "%sunknown setting %s ignored (did you mean "
                 "%s?)\n",
                 where, name, settings[i].env);
    else
        snprintf(msg, sizeof msg,
                 "%sunknown setting %s ignored "
                 "(snailjob-lua --print-config lists the settings)\n",
                 where, name);
    len = strlen(msg);
    if ((grown = realloc(ld->warnings, have + len + 1)) == NULL)
        return; /* a warning lost to ENOMEM; the load goes on */
    memcpy(grown + have, msg, len + 1);
    ld->warnings = grown;
}

static void warn_unknown_env(struct loader *ld)
{
    extern char **environ;
    char name[128];

    for (char **e = environ; e != NULL && *e != NULL; e++) {
        size_t len = strcspn(*e, "=");
        if (len >= sizeof name || strncmp(*e, "SNAIL_", 6) != 0)
            continue;
        memcpy(name, *e, len);
        name[len] = '\0';
        if (find_env(name) < 0)
            warn_unknown(ld, name, NULL, 0);
    }
}

static int load_dotenv(struct loader *ld, const char *path)
{
    FILE *f = fopen(path, "r");
    char *line = NULL, *name, *value, *dup;
    const char *why;
    size_t cap = 0, len;
    int lineno = 0, rc = 0, i;

    if (f == NULL)
        return errno == ENOENT ? 0 : fail(ld, "%s: %s", path, strerror(errno));
    ld->dotenv = path;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        len = strlen(line);
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if ((why = dotenv_line(line, &name, &value)) != NULL) {
            rc = fail(ld, "%s:%d: %s", path, lineno, why);
            break;
        }
        i = -1;
        if (name != NULL && (i = find_env(name)) < 0)
            warn_unknown(ld, name, path, lineno);
        if (name == NULL || i < 0)
            continue; /* like the environment: unknown names are not ours */
        if ((dup = strdup(value)) == NULL) {
            rc = nomem(ld);
            break;
        }
        free(ld->dotenv_val[i]);
        ld->dotenv_val[i] = dup;
        ld->dotenv_line[i] = lineno;
    }
    if (rc == 0 && ferror(f))
        rc = fail(ld, "%s: read error", path);
    free(line);
    fclose(f);
    return rc;
}

/* ---- resolving ------------------------------------------------------- */

/* Who gave setting i, as the start of an error message. */
static void describe(char *buf, size_t n, const struct loader *ld, size_t i,
                     sj_config_source src)
{
    const struct setting *s = &settings[i];

    switch (src) {
    case SJ_SRC_ENV:
        snprintf(buf, n, "%s", s->env);
        break;
    case SJ_SRC_DOTENV:
        snprintf(buf, n, "%s:%d: %s", ld->dotenv, ld->dotenv_line[i], s->env);
        break;
    case SJ_SRC_FILE:
        snprintf(buf, n, "%s: key '%s'", ld->file, s->key);
        break;
    default:
        snprintf(buf, n, "default of '%s'", s->key);
        break;
    }
}

/* K_CHOICE: `text` is one of s->choices. K_LIST: each ","-separated name
 * (blanks around it ignored, empty names refused) is one of s->choices, or
 * anything when s->choices is NULL. 0, or SJ_ECONFIG with `why`. */
static int check_choices(const struct setting *s, const char *text, char *why,
                         size_t whylen)
{
    const char *p = text;
    char all[256] = "";
    size_t len;

    for (size_t k = 0; s->choices != NULL && s->choices[k] != NULL; k++)
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s",
                 k > 0 ? ", " : "", s->choices[k]);
    if (s->kind == K_CHOICE) {
        for (size_t k = 0; s->choices[k] != NULL; k++)
            if (strcmp(text, s->choices[k]) == 0)
                return 0;
        snprintf(why, whylen, "expected one of %s, got '%s'", all, text);
        return SJ_ECONFIG;
    }
    while (*p != '\0') {
        size_t k;

        p += strspn(p, " \t");
        len = strcspn(p, ",");
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0) {
            snprintf(why, whylen, "empty name in the list '%s'", text);
            return SJ_ECONFIG;
        }
        for (k = 0; s->choices != NULL && s->choices[k] != NULL; k++)
            if (strlen(s->choices[k]) == len &&
                strncmp(p, s->choices[k], len) == 0)
                break;
        if (s->choices != NULL && s->choices[k] == NULL) {
            snprintf(why, whylen, "unknown name '%.*s' (expected %s)", (int)len,
                     p, all);
            return SJ_ECONFIG;
        }
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    return 0;
}

/* lua_path / lua_cpath: every ';'-separated entry is a template with a
 * '?' (a directory alone, the usual mistake, would fail at `require` with
 * "cannot read DIR: Is a directory"). 0, or SJ_ECONFIG with `why`. */
static int check_search_path(const struct setting *s, const char *text,
                             char *why, size_t whylen)
{
    int c = strcmp(s->key, "lua_cpath") == 0;
    const char *p = text;

    while (*p != '\0') {
        size_t len = strcspn(p, ";");
        const char *sep = len > 0 && p[len - 1] == '/' ? "" : "/";
        if (len > 0 && memchr(p, '?', len) == NULL) {
            if (c)
                snprintf(why, whylen,
                         "'%.*s' has no '?': each ';'-separated entry is a "
                         "template where '?' stands for the module name, "
                         "e.g. '%.*s%s?.so' (';;' adds Lua's default)",
                         (int)len, p, (int)len, p, sep);
            else
                snprintf(why, whylen,
                         "'%.*s' has no '?': each ';'-separated entry is a "
                         "template where '?' stands for the module name, "
                         "e.g. '%.*s%s?.lua;%.*s%s?/init.lua' (';;' adds "
                         "Lua's default)",
                         (int)len, p, (int)len, p, sep, (int)len, p, sep);
            return SJ_ECONFIG;
        }
        p += len;
        if (*p == ';')
            p++;
    }
    return 0;
}

/* Parses and checks `text` for setting i and stores it in `cfg`. */
static int apply(sj_config *cfg, struct loader *ld, size_t i, const char *text,
                 sj_config_source src)
{
    const struct setting *s = &settings[i];
    char *field = (char *)cfg + s->offset, who[512], why[256], *json;
    long long iv;
    double dv;
    size_t k;
    int rc;

    describe(who, sizeof who, ld, i, src);
    switch (s->kind) {
    case K_INT:
        if (!parse_int(text, &iv) || iv < s->min || iv > s->max)
            return fail(ld,
                        "%s: expected an integer from %.0f to %.0f, "
                        "got '%s'%s%s%s",
                        who, s->min, s->max, text, s->hint ? " (" : "",
                        s->hint ? s->hint : "", s->hint ? ")" : "");
        *(int *)(void *)field = (int)iv;
        return 0;
    case K_NUMBER:
        if (!parse_number(text, &dv) ||
            !(s->min_ok ? dv >= s->min : dv > s->min) || dv > s->max)
            return fail(ld,
                        "%s: expected a number %s %g and at "
                        "most %g, got '%s'%s%s%s",
                        who, s->min_ok ? "from" : "greater than", s->min,
                        s->max, text, s->hint ? " (" : "",
                        s->hint ? s->hint : "", s->hint ? ")" : "");
        *(double *)(void *)field = dv;
        return 0;
    case K_NAME:
        if (*text == '\0')
            return fail(ld, "%s: must not be empty", who);
        break;
    case K_LOG_LEVEL:
        for (k = 0; k < sizeof log_levels / sizeof log_levels[0]; k++)
            if (strcasecmp(text, log_levels[k]) == 0)
                break;
        if (k == sizeof log_levels / sizeof log_levels[0])
            return fail(ld,
                        "%s: expected one of DEBUG, INFO, WARN, WARNING, "
                        "ERROR, CRITICAL, got '%s'",
                        who, text);
        break;
    case K_CHOICE:
    case K_LIST:
        if ((rc = check_choices(s, text, why, sizeof why)) != 0)
            return fail(ld, "%s: %s", who, why);
        break;
    case K_LABELS:
        rc = labels_dump(text, &json, why, sizeof why);
        if (rc == SJ_ENOMEM)
            return nomem(ld);
        if (rc != 0)
            return fail(ld, "%s: %s", who, why);
        k = strlen(json);
        free(json);
        if (k > LABELS_JSON_MAX)
            return fail(ld,
                        "%s: labels take %zu bytes as JSON, the server "
                        "stores at most %d",
                        who, k, LABELS_JSON_MAX);
        break;
    default:
        if ((strcmp(s->key, "lua_path") == 0 ||
             strcmp(s->key, "lua_cpath") == 0) &&
            check_search_path(s, text, why, sizeof why) != 0)
            return fail(ld, "%s: %s", who, why);
        break;
    }
    if ((*(char **)(void *)field = strdup(text)) == NULL)
        return nomem(ld);
    return 0;
}

int sj_config_load(sj_config *cfg, const char *file, const char *dotenv,
                   char *err, size_t errlen)
{
    struct loader ld;
    const char *text;
    sj_config_source src;
    int rc;

    memset(cfg, 0, sizeof *cfg);
    memset(&ld, 0, sizeof ld);
    ld.err = err;
    ld.errlen = err != NULL ? errlen : 0;
    if (ld.errlen > 0)
        err[0] = '\0';

    if (file != NULL) {
        ld.file = file;
        if ((rc = load_file(&ld)) != 0)
            goto fail;
        if ((cfg->file_path_ = strdup(file)) == NULL)
            goto fail_nomem;
    }
    if ((rc = load_dotenv(&ld, dotenv != NULL ? dotenv : "./.env")) != 0)
        goto fail;
    if (ld.dotenv != NULL && (cfg->dotenv_path_ = strdup(ld.dotenv)) == NULL)
        goto fail_nomem;

    warn_unknown_env(&ld);
    for (size_t i = 0; i < NSETTINGS; i++) {
        src = SJ_SRC_DEFAULT;
        text = settings[i].def;
        if (getenv(settings[i].env) != NULL) {
            src = SJ_SRC_ENV;
            text = getenv(settings[i].env);
        } else if (ld.dotenv_val[i] != NULL) {
            src = SJ_SRC_DOTENV;
            text = ld.dotenv_val[i];
        } else if (ld.file_val[i] != NULL) {
            src = SJ_SRC_FILE;
            text = ld.file_val[i];
        }
        cfg->src_[i] = src;
        if ((rc = apply(cfg, &ld, i, text, src)) != 0)
            goto fail;
    }
    cfg->warnings_ = ld.warnings; /* logged by sj_config_warn */
    ld.warnings = NULL;
    loader_free(&ld);
    return 0;

fail_nomem:
    rc = nomem(&ld);
fail:
    loader_free(&ld);
    sj_config_free(cfg);
    return rc;
}

void sj_config_free(sj_config *cfg)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (is_string_kind(settings[i].kind))
            free(*(char **)(void *)((char *)cfg + settings[i].offset));
    free(cfg->file_path_);
    free(cfg->dotenv_path_);
    free(cfg->warnings_);
    memset(cfg, 0, sizeof *cfg);
}

void sj_config_warn(const sj_config *cfg)
{
    const char *p = cfg->warnings_;

    while (p != NULL && *p != '\0') {
        size_t n = strcspn(p, "\n");
        SJ_WARN("%.*s", (int)n, p);
        p += n + (p[n] == '\n');
    }
}

size_t sj_config_count(void)
{
    return NSETTINGS;
}

void sj_config_item_get(const sj_config *cfg, size_t i, sj_config_item *out)
{
    const struct setting *s;
    const char *field;

    memset(out, 0, sizeof *out);
    if (i >= NSETTINGS)
        return;
    s = &settings[i];
    field = (const char *)cfg + s->offset;
    out->key = s->key;
    out->env = s->env;
    if (s->kind == K_INT) {
        snprintf(out->value, sizeof out->value, "%d",
                 *(const int *)(const void *)field);
    } else if (s->kind == K_NUMBER) {
        format_number(*(const double *)(const void *)field, out->value,
                      sizeof out->value);
    } else if (s->offset == offsetof(sj_config, token)) {
        /* never printed whole (--print-config, logs) */
        sj_text_mask(*(char *const *)(const void *)field, out->value,
                     sizeof out->value);
    } else {
        const char *str = *(char *const *)(const void *)field;
        snprintf(out->value, sizeof out->value, "%s", str ? str : "");
    }
    out->source = cfg->src_[i];
    if (out->source == SJ_SRC_FILE)
        out->origin = cfg->file_path_;
    else if (out->source == SJ_SRC_DOTENV)
        out->origin = cfg->dotenv_path_;
}

const char *sj_config_source_name(sj_config_source src)
{
    switch (src) {
    case SJ_SRC_DEFAULT:
        return "default";
    case SJ_SRC_FILE:
        return "file";
    case SJ_SRC_DOTENV:
        return ".env";
    case SJ_SRC_ENV:
        return "env";
    case SJ_SRC_CLI:
        return "command line";
    }
    return "?";
}
