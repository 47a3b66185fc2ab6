/*
 * sj_config.h - the host's effective configuration and where each value
 * came from.
 *
 * Sources, strongest first: the process environment, a `.env` file in the
 * working directory, the Lua config file (`-c FILE`, a chunk returning a
 * table), built-in defaults. Every setting has one name in the config file
 * (`server_port`) and one in the environment and .env (`SNAIL_SERVER_PORT`);
 * the environment names follow the Python client (lua-api.md).
 *
 * A SNAIL_* variable (environment or .env) that names no setting is not an
 * error: it gets a warning naming the closest known one, kept in the
 * struct until sj_config_warn logs it (once the log format is known).
 *
 * The only unit that reads the environment. Called from the main thread at
 * start; the resulting struct is read-only afterwards and may be read from
 * any thread.
 */
#ifndef SJ_CONFIG_H
#define SJ_CONFIG_H

#include <stddef.h>

/* Room for the settings table in sj_config.c (checked there). */
#define SJ_CONFIG__MAX_SETTINGS 64

typedef enum sj_config_source {
    SJ_SRC_DEFAULT = 0,
    SJ_SRC_FILE,
    SJ_SRC_DOTENV,
    SJ_SRC_ENV,
    SJ_SRC_CLI
} sj_config_source;

/* The values, already parsed and checked. Strings are owned by the struct. */
typedef struct sj_config {
    char *server_host;    /* SNAIL_SERVER_HOST, "127.0.0.1" */
    int server_port;      /* SNAIL_SERVER_PORT, 17888 */
    char *host_ip;        /* SNAIL_HOST_IP, "127.0.0.1" */
    int host_port;        /* SNAIL_HOST_PORT, 17889 (0 = any free port) */
    char *namespace_id;   /* SNAIL_NAMESPACE, file key "namespace",
                             "764d604ec6fc45f68cd92514c40e9e1a" */
    char *group_name;     /* SNAIL_GROUP_NAME, "snail_job_demo_group" */
    char *token;          /* SNAIL_TOKEN, "SJ_Wyz3dmsdbDOkDujOTSSoBjGQP1BMsVnj";
                             never empty; printed masked (sj_text_mask) */
    char *labels;         /* SNAIL_LABELS, "" (k:v,k:v, e.g. "env:dev") */
    char *log_level;      /* SNAIL_LOG_LEVEL, "INFO" */
    char *log_file;       /* SNAIL_LOG_FILE, "" = stderr only */
    char *executors;      /* SNAIL_EXECUTORS, ":"-separated paths/globs */
    int workers;          /* SNAIL_WORKERS, 4 */
    double beat_interval; /* SNAIL_BEAT_INTERVAL, 10 (seconds, 1 to 30) */
    int executor_type;    /* SNAIL_EXECUTOR_TYPE, 2 (1, 2 or 3) */
    int queue_size;       /* SNAIL_QUEUE_SIZE, 1024 tasks waiting */
    double log_remote_interval; /* SNAIL_LOG_REMOTE_INTERVAL, 1 (seconds) */
    int log_remote_buffer_size; /* SNAIL_LOG_REMOTE_BUFFER_SIZE, 50 records */
    char *spool_dir;            /* SNAIL_SPOOL_DIR, "" = the state dir */
    int memory_limit_mb;        /* SNAIL_MEMORY_LIMIT_MB, 256 per Lua state */
    char *lua_path;             /* SNAIL_LUA_PATH, "" = Lua's default */
    char *lua_cpath;            /* SNAIL_LUA_CPATH, "" = Lua's default */
    double rpc_timeout;         /* SNAIL_RPC_TIMEOUT, 10 (seconds per call) */

    /* Executors that touch the world. Lists are ","-separated text. */
    char *builtins;   /* SNAIL_BUILTINS, "" (http,shell,cmd,powershell,all) */
    char *http_allow; /* SNAIL_HTTP_ALLOW, "" = any host (host patterns) */
    /* Containment. */
    char *lua_allow;       /* SNAIL_LUA_ALLOW, "" (os.execute,io.popen,debug) */
    double stop_grace;     /* SNAIL_STOP_GRACE, 3 (s) */
    double load_timeout;   /* SNAIL_LOAD_TIMEOUT, 5 (s) */
    double cleanup_budget; /* SNAIL_CLEANUP_BUDGET, 1 (s) */
    /* The edges. */
    double shutdown_grace;   /* SNAIL_SHUTDOWN_GRACE, 30 (s, 0 = at once) */
    char *spool_sync;        /* SNAIL_SPOOL_SYNC, "batch" (always, never) */
    int log_line_max;        /* SNAIL_LOG_LINE_MAX, 65536 bytes */
    int result_max;          /* SNAIL_RESULT_MAX, 1048576 bytes */
    int log_queue_max_bytes; /* SNAIL_LOG_QUEUE_MAX_BYTES, 64 MiB */
    int queue_max_bytes;     /* SNAIL_QUEUE_MAX_BYTES, 256 MiB */
    /* The operator's side. */
    char *bind_host;      /* SNAIL_BIND_HOST, "0.0.0.0" */
    char *metrics_listen; /* SNAIL_METRICS_LISTEN, "" = off (host:port) */
    char *log_format;     /* SNAIL_LOG_FORMAT, "text" (json) */
    /* For executor authors. */
    char *record_dir; /* SNAIL_RECORD_DIR, "" = off */

    /* Private to sj_config.c: where each setting came from, in
     * sj_config_item_get order, and the paths that FILE/DOTENV refer to. */
    sj_config_source src_[SJ_CONFIG__MAX_SETTINGS];
    char *file_path_;   /* the -c path, NULL without one */
    char *dotenv_path_; /* the .env path if one was read, else NULL */
    char *warnings_;    /* "\n"-terminated warning lines, or NULL */
} sj_config;

/* One row of --print-config. */
typedef struct sj_config_item {
    const char *key; /* file key, e.g. "server_port" */
    const char *env; /* env name, e.g. "SNAIL_SERVER_PORT" */
    char value[512]; /* effective value as text (the token masked) */
    sj_config_source source;
    const char *origin; /* file path for FILE/DOTENV, NULL otherwise */
} sj_config_item;

/*
 * Build the effective configuration. `file` is the -c path or NULL;
 * `dotenv` is the .env path to read if it exists (NULL = "./.env").
 * On failure returns SJ_ECONFIG (or SJ_ENOMEM) and writes into `err` a
 * sentence naming the key and what is wrong, e.g.
 *   "config.lua: unknown key 'sever_port'"
 *   "SNAIL_SERVER_PORT: expected an integer from 1 to 65535, got 'abc'"
 * The file may give `executors` as a list of strings and `labels` as a
 * table {k = "v"}. On success `cfg` must later be released with
 * sj_config_free(); on failure it holds nothing (freeing it is harmless).
 */
int sj_config_load(sj_config *cfg, const char *file, const char *dotenv,
                   char *err, size_t errlen);

/* Log (SJ_WARN, one record each) the warnings of the load: unknown
 * SNAIL_* variables, with the closest known name. */
void sj_config_warn(const sj_config *cfg);

/* Frees the strings and zeroes `cfg`; safe on a zeroed struct. */
void sj_config_free(sj_config *cfg);

/* Number of settings and the i-th one's effective value and source, for
 * --print-config. Valid after a successful sj_config_load. */
size_t sj_config_count(void);
void sj_config_item_get(const sj_config *cfg, size_t i, sj_config_item *out);

const char *sj_config_source_name(sj_config_source src);

/* Labels as a JSON object text that always includes "state":"up" (the
 * `label` header of /beat, protocol.md §3.1); a user label "state" is
 * overridden. Caller frees with free(). NULL on ENOMEM. */
char *sj_config_labels_json(const sj_config *cfg);

/* The journal directory: spool_dir if set, else the state directory -
 * $STATE_DIRECTORY (systemd; the first of a ':' list), else
 * $XDG_STATE_HOME/snailjob-lua, else ~/.local/state/snailjob-lua. 0, or
 * SJ_ENOENT when none of them is set (no HOME), SJ_EINVAL if too long. */
int sj_config_spool_dir(const sj_config *cfg, char *buf, size_t len);

#endif
