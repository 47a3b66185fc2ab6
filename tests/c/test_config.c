/*
 * test_config.c - sj_config: sources and their precedence, reporting, and
 * the error messages for bad input. Standalone: exit status 0 on success;
 * each failed check is printed with its line.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "sj_config.h"
#include "sj_error.h"
#include "sj_log.h"
#include "sj_text.h"

extern char **environ;

static int failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#define CHECK_STR(got, want)                                                   \
    do {                                                                       \
        const char *g_ = (got), *w_ = (want);                                  \
        if (g_ == NULL || strcmp(g_, w_) != 0) {                               \
            fprintf(stderr,                                                    \
                    "%s:%d: CHECK failed: %s is \"%s\", want \"%s\"\n",        \
                    __FILE__, __LINE__, #got, g_ ? g_ : "(null)", w_);         \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* `text` must contain `part`. */
#define CHECK_HAS(text, part)                                                  \
    do {                                                                       \
        const char *t_ = (text), *p_ = (part);                                 \
        if (strstr(t_, p_) == NULL) {                                          \
            fprintf(stderr, "%s:%d: CHECK failed: \"%s\" lacks \"%s\"\n",      \
                    __FILE__, __LINE__, t_, p_);                               \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static char dir[64];
static char lua_path[128], env_path[128], none_path[128];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* Other tools use the SNAIL_ prefix too: start from a clean slate. */
static void clear_snail_env(void)
{
    char *names[256];
    size_t n = 0;

    for (char **e = environ; *e != NULL && n < 256; e++)
        if (strncmp(*e, "SNAIL_", 6) == 0)
            names[n++] = strndup(*e, strcspn(*e, "="));
    for (size_t i = 0; i < n; i++) {
        unsetenv(names[i]);
        free(names[i]);
    }
}

/* Index of `key` in the item table, or the count if absent. */
static size_t item_index(const char *key)
{
    sj_config cfg;
    sj_config_item it;
    size_t i;

    memset(&cfg, 0, sizeof cfg);
    for (i = 0; i < sj_config_count(); i++) {
        sj_config_item_get(&cfg, i, &it);
        if (strcmp(it.key, key) == 0)
            break;
    }
    return i;
}

static void item(const sj_config *cfg, const char *key, sj_config_item *out)
{
    size_t i = item_index(key);

    CHECK(i < sj_config_count());
    sj_config_item_get(cfg, i, out);
}

/* Loads with `lua` as config file (NULL = no file) and `dotenv` as .env
 * text (NULL = no .env file); expects failure whose message contains every
 * string in `parts` (NULL-terminated). */
static void expect_error(int line, const char *lua, const char *dotenv,
                         const char *const *parts)
{
    sj_config cfg;
    char err[1024];
    int rc;

    if (lua != NULL)
        write_file(lua_path, lua);
    if (dotenv != NULL)
        write_file(env_path, dotenv);
    rc = sj_config_load(&cfg, lua != NULL ? lua_path : NULL,
                        dotenv != NULL ? env_path : none_path, err, sizeof err);
    if (rc != SJ_ECONFIG) {
        fprintf(stderr, "%s:%d: CHECK failed: expected SJ_ECONFIG, got %d\n",
                __FILE__, line, rc);
        failures++;
        if (rc == 0)
            sj_config_free(&cfg);
        goto out;
    }
    for (size_t i = 0; parts[i] != NULL; i++) {
        if (strstr(err, parts[i]) == NULL) {
            fprintf(stderr, "%s:%d: CHECK failed: \"%s\" lacks \"%s\"\n",
                    __FILE__, line, err, parts[i]);
            failures++;
        }
    }
    /* a failed load leaves nothing to free */
    CHECK(cfg.server_host == NULL && cfg.file_path_ == NULL);
out:
    unlink(lua_path);
    unlink(env_path);
}

#define EXPECT_ERROR(lua, dotenv, ...)                                         \
    expect_error(__LINE__, lua, dotenv,                                        \
                 (const char *const[]){__VA_ARGS__, NULL})

static void test_defaults(void)
{
    sj_config cfg;
    sj_config_item it;
    char err[512], *json;

    CHECK(sj_config_count() == 38);
    CHECK(sj_config_load(&cfg, NULL, none_path, err, sizeof err) == 0);
    CHECK_STR(cfg.server_host, "127.0.0.1");
    CHECK(cfg.server_port == 17888);
    CHECK_STR(cfg.host_ip, "127.0.0.1");
    CHECK(cfg.host_port == 17889);
    CHECK_STR(cfg.namespace_id, "764d604ec6fc45f68cd92514c40e9e1a");
    CHECK_STR(cfg.group_name, "snail_job_demo_group");
    CHECK_STR(cfg.token, "SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj");
    CHECK_STR(cfg.labels, "");
    CHECK_STR(cfg.log_level, "INFO");
    CHECK_STR(cfg.log_file, "");
    CHECK_STR(cfg.executors, "");
    CHECK(cfg.workers == 4);
    CHECK(cfg.beat_interval == 10.0);
    CHECK(cfg.executor_type == 2);
    CHECK(cfg.queue_size == 65536);
    CHECK(cfg.log_remote_interval == 1.0);
    CHECK(cfg.log_remote_buffer_size == 50);
    CHECK_STR(cfg.spool_dir, "");
    CHECK(cfg.memory_limit_mb == 256);
    CHECK_STR(cfg.lua_path, "");
    CHECK_STR(cfg.lua_cpath, "");
    CHECK(cfg.rpc_timeout == 10.0);
    for (size_t i = 0; i < sj_config_count(); i++) {
        sj_config_item_get(&cfg, i, &it);
        CHECK(it.source == SJ_SRC_DEFAULT && it.origin == NULL);
        CHECK(strncmp(it.env, "SNAIL_", 6) == 0);
    }
    item(&cfg, "namespace", &it);
    CHECK_STR(it.env, "SNAIL_NAMESPACE");
    item(&cfg, "server_port", &it);
    CHECK_STR(it.value, "17888");
    item(&cfg, "beat_interval", &it);
    CHECK_STR(it.value, "10");
    CHECK_STR(sj_config_source_name(SJ_SRC_DEFAULT), "default");

    json = sj_config_labels_json(&cfg);
    CHECK_STR(json, "{\"state\":\"up\"}");
    free(json);
    sj_config_free(&cfg);
    sj_config_free(&cfg); /* zeroed: harmless */
}

static const char config_lua[] =
    "-- a comment, and computed values: the file is Lua\n"
    "local base = 18000\n"
    "return {\n"
    "  server_port = base,\n"
    "  host_ip = '10.0.0.5',\n"
    "  namespace = 'ns-1',\n"
    "  group_name = 'file_group',\n"
    "  token = 'file-token',\n"
    "  labels = { env = 'prod', zone = 'a', rev = 7, state = 'down' },\n"
    "  executors = { 'jobs/a.lua', 'jobs/dir', 'more/*.lua' },\n"
    "  workers = 8.0,\n"
    "  beat_interval = 1.5,\n"
    "  log_level = 'warning',\n"
    "}\n";

static void test_precedence(void)
{
    sj_config cfg;
    sj_config_item it;
    char err[512], *json;

    /* file over defaults */
    write_file(lua_path, config_lua);
    CHECK(sj_config_load(&cfg, lua_path, none_path, err, sizeof err) == 0);
    CHECK_STR(err, "");
    CHECK(cfg.server_port == 18000);
    CHECK_STR(cfg.host_ip, "10.0.0.5");
    CHECK_STR(cfg.namespace_id, "ns-1");
    CHECK_STR(cfg.executors, "jobs/a.lua:jobs/dir:more/*.lua");
    CHECK_STR(cfg.labels, "env:prod,rev:7,state:down,zone:a");
    CHECK(cfg.workers == 8);
    CHECK(cfg.beat_interval == 1.5);
    CHECK_STR(cfg.log_level, "warning");
    CHECK_STR(cfg.server_host, "127.0.0.1");
    item(&cfg, "server_port", &it);
    CHECK(it.source == SJ_SRC_FILE);
    CHECK_STR(it.origin, lua_path);
    item(&cfg, "namespace", &it);
    CHECK(it.source == SJ_SRC_FILE);
    CHECK_STR(it.value, "ns-1");
    item(&cfg, "beat_interval", &it);
    CHECK_STR(it.value, "1.5");
    item(&cfg, "server_host", &it);
    CHECK(it.source == SJ_SRC_DEFAULT && it.origin == NULL);
    json = sj_config_labels_json(&cfg);
    CHECK_STR(json, "{\"env\":\"prod\",\"rev\":\"7\",\"state\":\"up\","
                    "\"zone\":\"a\"}");
    free(json);
    sj_config_free(&cfg);

    /* .env over the file; unknown names (SNAIL_ or not) are ignored */
    write_file(env_path,
               "# deployment overrides\n"
               "\n"
               "SNAIL_SERVER_PORT=19000\n"
               "export SNAIL_GROUP_NAME=\"dot group\"  # trailing comment\n"
               "  SNAIL_TOKEN = 'tok#en'\n"
               "SNAIL_LABELS=env:dev, app : demo\n"
               "SNAIL_BEAT_INTERVAL=2.5\n"
               "SNAIL_SOMETHING_ELSE=whatever\n"
               "OTHER_TOOL=1\n"
               "SNAIL_WORKERS=3\r\n");
    CHECK(sj_config_load(&cfg, lua_path, env_path, err, sizeof err) == 0);
    CHECK_STR(err, "");
    CHECK(cfg.server_port == 19000);
    CHECK_STR(cfg.group_name, "dot group");
    CHECK_STR(cfg.token, "tok#en");
    CHECK_STR(cfg.labels, "env:dev, app : demo");
    CHECK(cfg.beat_interval == 2.5);
    CHECK(cfg.workers == 3);
    CHECK_STR(cfg.host_ip, "10.0.0.5"); /* still from the file */
    item(&cfg, "server_port", &it);
    CHECK(it.source == SJ_SRC_DOTENV);
    CHECK_STR(it.origin, env_path);
    CHECK_STR(sj_config_source_name(it.source), ".env");
    item(&cfg, "host_ip", &it);
    CHECK(it.source == SJ_SRC_FILE);
    CHECK_STR(it.origin, lua_path);
    json = sj_config_labels_json(&cfg);
    CHECK_STR(json, "{\"app\":\"demo\",\"env\":\"dev\",\"state\":\"up\"}");
    free(json);
    sj_config_free(&cfg);

    /* the environment over .env */
    setenv("SNAIL_SERVER_PORT", "20000", 1);
    setenv("SNAIL_EXECUTORS", "/opt/jobs:/srv/*.lua", 1);
    setenv("SNAIL_BEAT_INTERVAL", "1.25", 1);
    setenv("SNAIL_LOG_FILE", "", 1); /* set but empty is still set */
    setenv("SNAIL_NOT_A_SETTING", "x", 1);
    CHECK(sj_config_load(&cfg, lua_path, env_path, err, sizeof err) == 0);
    CHECK(cfg.server_port == 20000);
    CHECK_STR(cfg.executors, "/opt/jobs:/srv/*.lua");
    CHECK(cfg.beat_interval == 1.25);
    CHECK(cfg.workers == 3);
    item(&cfg, "server_port", &it);
    CHECK(it.source == SJ_SRC_ENV && it.origin == NULL);
    CHECK_STR(it.value, "20000");
    item(&cfg, "log_file", &it);
    CHECK(it.source == SJ_SRC_ENV);
    item(&cfg, "workers", &it);
    CHECK(it.source == SJ_SRC_DOTENV);
    item(&cfg, "executors", &it);
    CHECK(it.source == SJ_SRC_ENV);
    sj_config_free(&cfg);
    clear_snail_env();

    /* NULL dotenv means ./.env */
    CHECK(chdir(dir) == 0);
    CHECK(sj_config_load(&cfg, NULL, NULL, err, sizeof err) == 0);
    CHECK(cfg.server_port == 19000);
    item(&cfg, "server_port", &it);
    CHECK_STR(it.origin, "./.env");
    sj_config_free(&cfg);
    CHECK(chdir("/") == 0);

    unlink(lua_path);
    unlink(env_path);
}

static void test_file_errors(void)
{
    char err[512];
    sj_config cfg;

    EXPECT_ERROR("return { sever_port = 1 }", NULL, lua_path,
                 ": unknown key 'sever_port' (did you mean 'server_port'?)");
    EXPECT_ERROR("return { SERVER_PORT = 1 }", NULL,
                 "(did you mean 'server_port'?)");
    EXPECT_ERROR("return { namespaec = 'x' }", NULL, "'namespaec'",
                 "(did you mean 'namespace'?)");
    EXPECT_ERROR("return { frobnicate = 1 }", NULL, "unknown key 'frobnicate'");
    EXPECT_ERROR("return { 'a', 'b' }", NULL, lua_path, "number key");
    EXPECT_ERROR("return { server_port = '17888' }", NULL,
                 "key 'server_port' must be an integer, got string");
    EXPECT_ERROR("return { server_host = 5 }", NULL,
                 "key 'server_host' must be a string, got number");
    EXPECT_ERROR("return { beat_interval = '2' }", NULL,
                 "key 'beat_interval' must be a number, got string");
    EXPECT_ERROR("return { server_port = 70000 }", NULL, lua_path,
                 "'server_port'", "1 to 65535", "70000");
    EXPECT_ERROR("return { server_port = 1.5 }", NULL, "'server_port'",
                 "'1.5'");
    EXPECT_ERROR("return { workers = 0 }", NULL, "'workers'");
    EXPECT_ERROR("return { executor_type = 4 }", NULL, "'executor_type'",
                 "1 to 3");
    EXPECT_ERROR("return { beat_interval = 30.5 }", NULL, "'beat_interval'",
                 "at most 30");
    EXPECT_ERROR("return { beat_interval = -1 }", NULL, "'beat_interval'",
                 "from 1");
    EXPECT_ERROR("return { log_level = 'LOUD' }", NULL, "'log_level'", "DEBUG",
                 "'LOUD'");
    EXPECT_ERROR("return { group_name = '' }", NULL, "'group_name'", "empty");
    EXPECT_ERROR("return { labels = 'foo' }", NULL, "'labels'",
                 "label 'foo' is not key:value");
    EXPECT_ERROR("return { labels = { env = true } }", NULL, "'labels'",
                 "'env'", "boolean");
    EXPECT_ERROR("return { labels = { 'x' } }", NULL, "'labels'", "number");
    EXPECT_ERROR("return { labels = 5 }", NULL, "'labels'", "got number");
    EXPECT_ERROR("return { executors = { 'a', 5 } }", NULL, "'executors'",
                 "item 2", "got number");
    EXPECT_ERROR("return { executors = { a = 'x' } }", NULL, "'executors'");
    EXPECT_ERROR("return { executors = true }", NULL, "'executors'",
                 "got boolean");
    EXPECT_ERROR("return {\n  server_port = 1,\n  host_ip = = 'x',\n}\n", NULL,
                 lua_path, ":3:");
    EXPECT_ERROR("local t = {}\nerror('boom')\nreturn t\n", NULL, lua_path,
                 ":2: boom", "traceback");
    EXPECT_ERROR("error({})", NULL, "table value");
    EXPECT_ERROR("return 42", NULL, lua_path, "must return a table", "number");
    EXPECT_ERROR("", NULL, "must return a table, got nil");

    /* missing file */
    CHECK(sj_config_load(&cfg, none_path, none_path, err, sizeof err) ==
          SJ_ECONFIG);
    CHECK_HAS(err, none_path);

    /* a file error stays an error even if the environment sets the key */
    setenv("SNAIL_SERVER_PORT", "1", 1);
    EXPECT_ERROR("return { server_port = 'x' }", NULL, "'server_port'");
    clear_snail_env();
}

static void test_text_errors(void)
{
    sj_config cfg;
    char err[512];

    EXPECT_ERROR(NULL, "SNAIL_SERVER_PORT=abc\n", env_path,
                 ":1: SNAIL_SERVER_PORT: expected an integer from 1 to 65535, "
                 "got 'abc'");
    EXPECT_ERROR(NULL, "# ok\nSNAIL_WORKERS=2\nthis is not an assignment\n",
                 env_path, ":3:", "KEY=value");
    EXPECT_ERROR(NULL, "SNAIL_TOKEN=\"unterminated\n", ":1:", "quote");
    EXPECT_ERROR(NULL, "SNAIL_TOKEN='a' b\n", ":1:");
    EXPECT_ERROR(NULL, "\n\nSNAIL_LABELS=a:b,foo\n", ":3: SNAIL_LABELS",
                 "label 'foo' is not key:value");

    struct {
        const char *name, *value, *want;
    } cases[] = {
        {"SNAIL_SERVER_PORT", "0",
         "SNAIL_SERVER_PORT: expected an integer "
         "from 1 to 65535, got '0'"},
        {"SNAIL_SERVER_PORT", "12x", "got '12x'"},
        {"SNAIL_HOST_PORT", "65536", "0 to 65535"},
        {"SNAIL_LABELS", "foo", "SNAIL_LABELS: label 'foo' is not key:value"},
        {"SNAIL_LABELS", ":x", "empty key"},
        {"SNAIL_LABELS", "k:\xff", "UTF-8"},
        {"SNAIL_LOG_LEVEL", "TRACE", "got 'TRACE'"},
        {"SNAIL_LOG_LEVEL", "OFF", "got 'OFF'"},
        {"SNAIL_EXECUTOR_TYPE", "0", "1 to 3"},
        {"SNAIL_BEAT_INTERVAL", "0", "from 1"},
        {"SNAIL_BEAT_INTERVAL", "1e-9", "got '1e-9'"},
        {"SNAIL_BEAT_INTERVAL", "0.99", "at least 1 s"},
        {"SNAIL_TOKEN", "", "SNAIL_TOKEN: must not be empty"},
        {"SNAIL_BEAT_INTERVAL", "45", "40 s"},
        {"SNAIL_BEAT_INTERVAL", "nan", "got 'nan'"},
        {"SNAIL_BEAT_INTERVAL", "", "got ''"},
        {"SNAIL_RPC_TIMEOUT", "-2", "got '-2'"},
        {"SNAIL_WORKERS", "99999999999999999999", "SNAIL_WORKERS"},
        {"SNAIL_SERVER_HOST", "", "must not be empty"},
        {"SNAIL_NAMESPACE", "", "must not be empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv(cases[i].name, cases[i].value, 1);
        if (sj_config_load(&cfg, NULL, none_path, err, sizeof err) !=
            SJ_ECONFIG) {
            fprintf(stderr, "%s:%d: CHECK failed: %s=%s accepted\n", __FILE__,
                    __LINE__, cases[i].name, cases[i].value);
            failures++;
            sj_config_free(&cfg);
        } else {
            CHECK_HAS(err, cases[i].name); /* every message names its key */
            CHECK_HAS(err, cases[i].want);
        }
        unsetenv(cases[i].name);
    }

    /* labels that do not fit the server's varchar(512) */
    char big[700];
    memset(big, 'x', sizeof big - 1);
    memcpy(big, "k:", 2);
    big[sizeof big - 1] = '\0';
    setenv("SNAIL_LABELS", big, 1);
    CHECK(sj_config_load(&cfg, NULL, none_path, err, sizeof err) == SJ_ECONFIG);
    CHECK_HAS(err, "SNAIL_LABELS");
    CHECK_HAS(err, "512");
    clear_snail_env();

    /* accepted edge values */
    setenv("SNAIL_BEAT_INTERVAL", "30", 1);
    setenv("SNAIL_HOST_PORT", "0", 1);
    setenv("SNAIL_LOG_LEVEL", "critical", 1);
    setenv("SNAIL_LABELS", " a:1 ,, b:x:y ,", 1);
    CHECK(sj_config_load(&cfg, NULL, none_path, err, sizeof err) == 0);
    CHECK(cfg.beat_interval == 30.0 && cfg.host_port == 0);
    char *json = sj_config_labels_json(&cfg);
    CHECK_STR(json, "{\"a\":\"1\",\"b\":\"x:y\",\"state\":\"up\"}");
    free(json);
    sj_config_free(&cfg);
    clear_snail_env();

    /* an unreadable error buffer is allowed */
    setenv("SNAIL_SERVER_PORT", "x", 1);
    CHECK(sj_config_load(&cfg, NULL, none_path, NULL, 0) == SJ_ECONFIG);
    clear_snail_env();
}

/* K_LIST, K_CHOICE and a number range that includes its minimum. */
static void test_lists_and_choices(void)
{
    sj_config cfg;
    char err[512];

    write_file(lua_path, "return { builtins = {\"http\", \"shell\"},\n"
                         "  http_allow = \"*.example.com, api.local\",\n"
                         "  log_format = \"json\", shutdown_grace = 0 }\n");
    CHECK(sj_config_load(&cfg, lua_path, none_path, err, sizeof err) == 0);
    CHECK_STR(cfg.builtins, "http,shell");
    CHECK_STR(cfg.http_allow, "*.example.com, api.local");
    CHECK_STR(cfg.log_format, "json");
    CHECK(cfg.shutdown_grace == 0);
    CHECK_STR(cfg.spool_sync, "batch");
    sj_config_free(&cfg);
    unlink(lua_path);

    EXPECT_ERROR(NULL, "SNAIL_BUILTINS=http,bogus\n", "SNAIL_BUILTINS",
                 "unknown name 'bogus'", "http, shell");
    EXPECT_ERROR(NULL, "SNAIL_BUILTINS=http,,shell\n", "empty name");
    EXPECT_ERROR("return { builtins = {\"http\", 3} }", NULL,
                 "key 'builtins' item 2 must be a string");
    EXPECT_ERROR("return { lua_allow = {\"a,b\"} }", NULL,
                 "key 'lua_allow' item 1", "without ','");
    EXPECT_ERROR(NULL, "SNAIL_SPOOL_SYNC=sometimes\n",
                 "expected one of batch, always, never, got 'sometimes'");
    EXPECT_ERROR(NULL, "SNAIL_SHUTDOWN_GRACE=-1\n", "expected a number from 0");
    EXPECT_ERROR(NULL, "SNAIL_STOP_GRACE=0\n", "greater than 0");
}

/* The token: masked in the item rows, in redacted text and in the log;
 * compared in constant time; an unknown SNAIL_* variable warns with the
 * closest known name. */
static void test_secrets_and_hygiene(void)
{
    const char *tok = "SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj";
    char mask[32], red[256], logp[160], err[512], *log;
    sj_config cfg;
    sj_config_item it;
    FILE *f;

    sj_text_mask(tok, mask, sizeof mask);
    CHECK_STR(mask, "SJ_W\xe2\x80\xa6nj");
    sj_text_mask("short", mask, sizeof mask);
    CHECK_STR(mask, "\xe2\x80\xa6");
    sj_text_mask("", mask, sizeof mask);
    CHECK_STR(mask, "");
    sj_text_redact("Token authentication failed. [token:SJ_Wyz3dmsdbDOkDujOTS"
                   "SoBjGQP1BMsVnj] again SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj",
                   tok, red, sizeof red);
    CHECK_STR(red, "Token authentication failed. [token:SJ_W\xe2\x80\xa6nj] "
                   "again SJ_W\xe2\x80\xa6nj");
    /* cut short: never a prefix of the secret left behind */
    sj_text_redact("ab SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj", tok, red, 6);
    CHECK_STR(red, "ab ");
    CHECK(sj_text_equal_ct(tok, tok) == 1);
    CHECK(sj_text_equal_ct("SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnJ", tok) == 0);
    CHECK(sj_text_equal_ct("SJ_W", tok) == 0);
    CHECK(sj_text_equal_ct("", tok) == 0);
    CHECK(sj_text_equal_ct(tok, "") == 0);

    /* --print-config rows: the token masked */
    CHECK(sj_config_load(&cfg, NULL, none_path, err, sizeof err) == 0);
    item(&cfg, "token", &it);
    CHECK_STR(it.value, "SJ_W\xe2\x80\xa6nj");
    CHECK_STR(cfg.token, tok); /* the value itself is whole */
    sj_config_free(&cfg);

    /* the log masks it, and warns about a misspelt variable */
    snprintf(logp, sizeof logp, "%s/host.log", dir);
    CHECK(sj_log_open_file(logp) == 0);
    sj_log_set_secret(tok);
    SJ_WARN("server said: bad token %s", tok);
    setenv("SNAIL_BEAT_INTERVALL", "5", 1);
    setenv("SNAIL_ZZZZZZZZZZZZ", "5", 1);
    CHECK(sj_config_load(&cfg, NULL, none_path, err, sizeof err) == 0);
    CHECK(cfg.warnings_ != NULL); /* kept until the log format is known */
    sj_config_warn(&cfg);
    sj_config_free(&cfg);
    unsetenv("SNAIL_BEAT_INTERVALL");
    unsetenv("SNAIL_ZZZZZZZZZZZZ");
    /* json: a message that escapes to more than the line holds is cut
     * between escapes, and the line stays one valid object */
    {
        char big[3001];
        memset(big, '\x01', 3000);
        big[0] = '"';
        big[3000] = '\0';
        sj_log_set_format(SJ_LOG_JSON);
        SJ_WARN("%s", big);
        SJ_WARN("bad \xff byte, token %s\nsecond line", tok);
        sj_log_set_format(SJ_LOG_TEXT);
    }
    sj_log_open_file(NULL);
    sj_log_set_secret(NULL);
    f = fopen(logp, "r");
    log = calloc(1, 65536);
    if (f != NULL && log != NULL)
        log[fread(log, 1, 65535, f)] = '\0';
    if (f != NULL)
        fclose(f);
    if (log != NULL) {
        CHECK(strstr(log, tok) == NULL);
        CHECK_HAS(log, "bad token SJ_W\xe2\x80\xa6nj");
        CHECK_HAS(log, "unknown setting SNAIL_BEAT_INTERVALL ignored (did you "
                       "mean SNAIL_BEAT_INTERVAL?)");
        CHECK_HAS(log, "unknown setting SNAIL_ZZZZZZZZZZZZ ignored");
        /* the two JSON lines: the last two lines of the file */
        char *end = log + strlen(log), *l1, *l2;
        json_t *o1, *o2;
        while (end > log && end[-1] == '\n')
            *--end = '\0';
        l2 = strrchr(log, '\n');
        if (l2 != NULL) {
            *l2++ = '\0';
            l1 = strrchr(log, '\n');
            l1 = l1 ? l1 + 1 : log;
            o1 = json_loads(l1, 0, NULL);
            o2 = json_loads(l2, 0, NULL);
            CHECK(json_is_object(o1) && json_is_object(o2));
            CHECK(strlen(json_string_value(json_object_get(o1, "message"))) >
                  1000);
            CHECK_STR(json_string_value(json_object_get(o2, "message")),
                      "bad \xef\xbf\xbd byte, token SJ_W\xe2\x80\xa6nj\n"
                      "second line");
            CHECK(json_is_null(json_object_get(o2, "task_id")));
            json_decref(o1);
            json_decref(o2);
        }
        CHECK(l2 != NULL);
    }
    free(log);
    unlink(logp);
}

int main(void)
{
    char tmpl[] = "/tmp/sj_config_XXXXXX";

    clear_snail_env();
    if (mkdtemp(tmpl) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", tmpl);
    snprintf(lua_path, sizeof lua_path, "%s/config.lua", dir);
    snprintf(env_path, sizeof env_path, "%s/.env", dir);
    snprintf(none_path, sizeof none_path, "%s/absent", dir);

    test_defaults();
    test_precedence();
    test_file_errors();
    test_text_errors();
    test_lists_and_choices();
    test_secrets_and_hygiene();

    unlink(lua_path);
    unlink(env_path);
    if (rmdir(dir) != 0) {
        perror(dir);
        failures++;
    }
    if (failures != 0) {
        fprintf(stderr, "test_config: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_config: ok\n");
    return 0;
}
