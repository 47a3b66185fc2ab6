#include "sj_log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sj_error.h"
#include "sj_text.h"

#define MSG_MAX 4096                  /* a record's message, before escaping */
#define LINE_MAX_ (MSG_MAX * 2 + 512) /* escapes past this are cut whole */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_level = SJ_LOG_INFO;
static atomic_int log_format = SJ_LOG_TEXT;
static FILE *log_file;       /* guarded by log_lock */
static char *log_path;       /* guarded by log_lock */
static char log_secret[256]; /* guarded by log_lock */
static _Thread_local char thread_name[16] = "main";
static _Thread_local struct {
    int on;
    int64_t job, batch, task;
    char executor[128];
} task_ctx;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR",
                                          "OFF"};

int sj_log_level_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i <= SJ_LOG_OFF; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    if (strcasecmp(name, "WARNING") == 0)
        return SJ_LOG_WARN;
    if (strcasecmp(name, "CRITICAL") == 0)
        return SJ_LOG_ERROR;
    return -1;
}

const char *sj_log_level_name(sj_log_level level)
{
    return (unsigned)level <= SJ_LOG_OFF ? level_names[level] : "?";
}

void sj_log_set_level(sj_log_level level)
{
    atomic_store(&log_level, (int)level);
}

sj_log_level sj_log_get_level(void)
{
    return (sj_log_level)atomic_load(&log_level);
}

int sj_log_format_parse(const char *name)
{
    if (name != NULL && strcmp(name, "text") == 0)
        return SJ_LOG_TEXT;
    if (name != NULL && strcmp(name, "json") == 0)
        return SJ_LOG_JSON;
    return -1;
}

void sj_log_set_format(sj_log_format format)
{
    atomic_store(&log_format, (int)format);
}

void sj_log_set_secret(const char *secret)
{
    pthread_mutex_lock(&log_lock);
    snprintf(log_secret, sizeof log_secret, "%s", secret ? secret : "");
    pthread_mutex_unlock(&log_lock);
}

int sj_log_open_file(const char *path)
{
    FILE *f = NULL;
    char *copy = NULL;

    if (path != NULL) {
        if ((copy = strdup(path)) == NULL)
            return SJ_ENOMEM;
        if ((f = fopen(path, "a")) == NULL) {
            free(copy);
            return SJ_EIO;
        }
    }
    pthread_mutex_lock(&log_lock);
    if (log_file != NULL)
        fclose(log_file);
    free(log_path);
    log_file = f;
    log_path = copy;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

int sj_log_reopen(void)
{
    int rc = 0;

    pthread_mutex_lock(&log_lock);
    if (log_path != NULL) {
        FILE *f = fopen(log_path, "a");
        if (f == NULL) {
            rc = SJ_EIO;
        } else {
            fclose(log_file);
            log_file = f;
        }
    }
    pthread_mutex_unlock(&log_lock);
    return rc;
}

void sj_log_thread_name(const char *name)
{
    snprintf(thread_name, sizeof thread_name, "%s", name);
}

void sj_log_task_begin(int64_t job_id, int64_t task_batch_id, int64_t task_id,
                       const char *executor)
{
    task_ctx.on = 1;
    task_ctx.job = job_id;
    task_ctx.batch = task_batch_id;
    task_ctx.task = task_id;
    snprintf(task_ctx.executor, sizeof task_ctx.executor, "%s",
             executor ? executor : "");
}

void sj_log_task_end(void)
{
    task_ctx.on = 0;
}

long long sj_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long sj_mono_ms(void)
{
    return sj_mono_us() / 1000;
}

long long sj_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- escaping ------------------------------------------------------------ */

typedef struct out {
    char *buf;
    size_t len, cap; /* cap includes room for the terminating NUL */
} out;

/* All or nothing: a cut escape sequence would spoil the line. */
static void put(out *o, const char *s, size_t n)
{
    if (o->len + n >= o->cap)
        return;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void putf(out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void putf(out *o, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Text: control bytes as \n, \r, \t, \xNN; backslash as is. */
static void put_text(out *o, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n')
            put(o, "\\n", 2);
        else if (*p == '\r')
            put(o, "\\r", 2);
        else if (*p < 0x20 || *p == 0x7f)
            putf(o, "\\x%02x", *p);
        else
            put(o, (const char *)p, 1);
    }
}

/* The inside of a JSON string literal. */
static void put_json_body(out *o, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s), n;

    while (left > 0) {
        if (*p == '"' || *p == '\\') {
            put(o, "\\", 1);
            put(o, (const char *)p, 1);
            n = 1;
        } else if (*p == '\n') {
            put(o, "\\n", 2);
            n = 1;
        } else if (*p == '\r') {
            put(o, "\\r", 2);
            n = 1;
        } else if (*p == '\t') {
            put(o, "\\t", 2);
            n = 1;
        } else if (*p < 0x20 || *p == 0x7f) {
            putf(o, "\\u%04x", *p);
            n = 1;
        } else if ((n = sj_text_utf8_len(p, left)) == 0) {
            put(o, "\\ufffd", 6);
            n = 1;
        } else {
            put(o, (const char *)p, n);
        }
        p += n;
        left -= n;
    }
}

/* A JSON string literal, quotes included. */
static void put_json(out *o, const char *s)
{
    put(o, "\"", 1);
    put_json_body(o, s);
    put(o, "\"", 1);
}

void sj_log(sj_log_level level, const char *fmt, ...)
{
    char msg[MSG_MAX], clean[MSG_MAX], line[LINE_MAX_];
    char stamp[32];
    out o = {line, 0, sizeof line};
    struct timespec ts;
    struct tm tm;
    va_list ap;

    if ((int)level < atomic_load(&log_level) || level >= SJ_LOG_OFF)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    line[0] = '\0';

    pthread_mutex_lock(&log_lock);
    sj_text_redact(msg, log_secret, clean, sizeof clean);
    if (atomic_load(&log_format) == SJ_LOG_JSON) {
        gmtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        putf(&o, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"thread\":", stamp,
             ts.tv_nsec / 1000000, level_names[level]);
        put_json(&o, thread_name);
        if (task_ctx.on) {
            putf(&o,
                 ",\"job_id\":%" PRId64 ",\"task_batch_id\":%" PRId64
                 ",\"task_id\":%" PRId64 ",\"executor\":",
                 task_ctx.job, task_ctx.batch, task_ctx.task);
            put_json(&o, task_ctx.executor);
        } else {
            put(&o,
                ",\"job_id\":null,\"task_batch_id\":null,\"task_id\":null,"
                "\"executor\":null",
                strlen(",\"job_id\":null,\"task_batch_id\":null,\"task_id\":"
                       "null,\"executor\":null"));
        }
        put(&o, ",\"message\":\"", 12);
        /* room for the closing quote and brace even when truncated */
        o.cap -= 2;
        put_json_body(&o, clean);
        o.cap += 2;
        put(&o, "\"}", 2);
    } else {
        localtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
        putf(&o, "%s.%03ld %-5s [", stamp, ts.tv_nsec / 1000000,
             level_names[level]);
        put_text(&o, thread_name);
        if (task_ctx.on) {
            putf(&o, " job=%" PRId64 " batch=%" PRId64 " task=%" PRId64,
                 task_ctx.job, task_ctx.batch, task_ctx.task);
            put(&o, " executor=", 10);
            put_text(&o, task_ctx.executor);
        }
        put(&o, "] ", 2);
        put_text(&o, clean);
    }
    fprintf(stderr, "%s\n", line);
    if (log_file != NULL) {
        fprintf(log_file, "%s\n", line);
        fflush(log_file);
    }
    pthread_mutex_unlock(&log_lock);
}
