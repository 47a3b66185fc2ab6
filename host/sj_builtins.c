/*
 * sj_builtins.c - the built-in executors: enabling, loading, messages.
 * See sj_builtins.h.
 */
#include "sj_builtins.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "sj_log.h"

extern const char sj_embed_builtin_http_lua[];
extern const size_t sj_embed_builtin_http_lua_len;
extern const char sj_embed_builtin_allow_lua[];
extern const size_t sj_embed_builtin_allow_lua_len;
extern const char sj_embed_builtin_script_lua[];
extern const size_t sj_embed_builtin_script_lua_len;

typedef struct builtin {
    const char *key;      /* name in the setting */
    unsigned bit;         /* SJ_BUILTIN_* */
    const char *executor; /* the console's name */
} builtin;

static const builtin builtins[] = {
    {"http", SJ_BUILTIN_HTTP, "snailJobHttpExecutor"},
    {"shell", SJ_BUILTIN_SHELL, "snailJobShellJobExecutor"},
    {"cmd", SJ_BUILTIN_CMD, "snailJobCMDJobExecutor"},
    {"powershell", SJ_BUILTIN_POWERSHELL, "snailJobPowerShellJobExecutor"},
};
#define N_BUILTINS (sizeof builtins / sizeof builtins[0])

typedef struct file {
    const char *chunk; /* chunk name: tracebacks say "builtin/http.lua:12" */
    const char *text;
    const size_t *len;
    unsigned bits; /* the built-ins it declares */
} file;

static const file files[] = {
    {"@builtin/http.lua", sj_embed_builtin_http_lua,
     &sj_embed_builtin_http_lua_len, SJ_BUILTIN_HTTP},
    {"@builtin/script.lua", sj_embed_builtin_script_lua,
     &sj_embed_builtin_script_lua_len,
     SJ_BUILTIN_SHELL | SJ_BUILTIN_CMD | SJ_BUILTIN_POWERSHELL},
};

unsigned sj_builtins_mask(const char *setting)
{
    unsigned mask = 0;
    const char *p = setting;
    while (p != NULL && *p != '\0') {
        p += strspn(p, " \t");
        size_t len = strcspn(p, ",");
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 3 && strncmp(p, "all", 3) == 0)
            mask = SJ_BUILTIN_HTTP | SJ_BUILTIN_SHELL | SJ_BUILTIN_CMD |
                   SJ_BUILTIN_POWERSHELL;
        for (size_t i = 0; i < N_BUILTINS; i++)
            if (strlen(builtins[i].key) == len &&
                strncmp(p, builtins[i].key, len) == 0)
                mask |= builtins[i].bit;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    return mask;
}

/* Push the list setting `text` as a sequence of trimmed names. */
static void push_list(lua_State *L, const char *text)
{
    lua_newtable(L);
    int n = 0;
    for (const char *p = text; p != NULL && *p != '\0';) {
        p += strspn(p, " \t");
        size_t len = strcspn(p, ",");
        size_t k = len;
        while (k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t'))
            k--;
        if (k > 0) {
            lua_pushlstring(L, p, k);
            lua_rawseti(L, -2, ++n);
        }
        p += len;
        if (*p == ',')
            p++;
    }
}

void sj_builtins_load(lua_State *L, unsigned mask, const char *http_allow)
{
    if (mask == 0)
        return;
    /* the host-pattern matcher the files share */
    if (luaL_loadbufferx(L, sj_embed_builtin_allow_lua,
                         sj_embed_builtin_allow_lua_len, "@builtin/allow.lua",
                         "t") != LUA_OK)
        lua_error(L);
    push_list(L, http_allow);
    lua_call(L, 1, 1);
    int allowed = lua_gettop(L);
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        if ((files[f].bits & mask) == 0)
            continue;
        if (luaL_loadbufferx(L, files[f].text, *files[f].len, files[f].chunk,
                             "t") != LUA_OK)
            lua_error(L);
        lua_createtable(L, 0, 3);
        lua_pushvalue(L, allowed);
        lua_setfield(L, -2, "host_allowed");
        lua_createtable(L, 0, 4);
        for (size_t i = 0; i < N_BUILTINS; i++) {
            lua_pushboolean(L, (mask & builtins[i].bit) != 0);
            lua_setfield(L, -2, builtins[i].key);
        }
        lua_setfield(L, -2, "enabled");
        push_list(L, http_allow);
        lua_setfield(L, -2, "http_allow");
        lua_call(L, 1, 0);
    }
    lua_pop(L, 1);
}

bool sj_builtins_hint(const char *name, unsigned mask, char *msg, size_t n)
{
    for (size_t i = 0; name != NULL && i < N_BUILTINS; i++) {
        if (strcmp(name, builtins[i].executor) != 0)
            continue;
        if (mask & builtins[i].bit)
            return false;
        snprintf(msg, n,
                 "'%s' is a built-in executor that is not enabled on this "
                 "host: add '%s' to the setting builtins (e.g. "
                 "SNAIL_BUILTINS=%s)",
                 name, builtins[i].key, builtins[i].key);
        return true;
    }
    return false;
}

bool sj_builtins_is_executor(const char *name)
{
    for (size_t i = 0; name != NULL && i < N_BUILTINS; i++)
        if (strcmp(name, builtins[i].executor) == 0)
            return true;
    return false;
}

const char *sj_builtins_describe(unsigned mask, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_BUILTINS; i++)
        if (mask & builtins[i].bit) {
            snprintf(buf + used, n - used, "%s%s (%s)", used ? ", " : "",
                     builtins[i].key, builtins[i].executor);
            used = strlen(buf);
        }
    if (used == 0)
        snprintf(buf, n, "none");
    return buf;
}

void sj_builtins_log_start(unsigned mask, const char *http_allow,
                           const char *group)
{
    char on[256];
    if (mask == 0)
        return;
    SJ_INFO("built-in executors enabled (setting builtins): %s",
            sj_builtins_describe(mask, on, sizeof on));
    if (mask & SJ_BUILTIN_HTTP)
        SJ_INFO("built-in HTTP executor may reach %s",
                http_allow != NULL && http_allow[0] != '\0'
                    ? http_allow
                    : "any host (set http_allow to restrict it)");
    if (mask & (SJ_BUILTIN_SHELL | SJ_BUILTIN_CMD | SJ_BUILTIN_POWERSHELL))
        SJ_WARN("built-in script executors are enabled (%s): anyone who can "
                "create a job for group '%s' in the console can run any "
                "script or command on this host as this host's user "
                "(uid %d), read its local files (LOCAL_SCRIPT) and download "
                "and run scripts (DOWNLOAD)",
                on, group != NULL ? group : "?", (int)getuid());
}
