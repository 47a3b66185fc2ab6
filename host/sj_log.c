#include "sj_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sj_error.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_level = SJ_LOG_INFO;
static FILE *log_file; /* guarded by log_lock */
static _Thread_local char thread_name[16] = "main";

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

int sj_log_open_file(const char *path)
{
    FILE *f = NULL;
    if (path != NULL && (f = fopen(path, "a")) == NULL)
        return SJ_EIO;
    pthread_mutex_lock(&log_lock);
    if (log_file != NULL)
        fclose(log_file);
    log_file = f;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void sj_log_thread_name(const char *name)
{
    snprintf(thread_name, sizeof thread_name, "%s", name);
}

long long sj_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long sj_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sj_log(sj_log_level level, const char *fmt, ...)
{
    char line[4096], stamp[32];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if ((int)level < atomic_load(&log_level) || level >= SJ_LOG_OFF)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    n = snprintf(line, sizeof line, "%s.%03ld %-5s [%s] ", stamp,
                 ts.tv_nsec / 1000000, level_names[level], thread_name);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s\n", line);
    if (log_file != NULL) {
        fprintf(log_file, "%s\n", line);
        fflush(log_file);
    }
    pthread_mutex_unlock(&log_lock);
}
