/*
 * sj_log.h - the host's own log: stderr and, optionally, a file.
 *
 * Each line is "YYYY-MM-DD HH:MM:SS.mmm LEVEL [thread] message". Lines from
 * different threads never interleave (one mutex around the write). This is
 * the host log only; a task's remote log lives in sj_tasklog. Any thread.
 */
#ifndef SJ_LOG_H
#define SJ_LOG_H

typedef enum sj_log_level {
    SJ_LOG_DEBUG = 0,
    SJ_LOG_INFO,
    SJ_LOG_WARN,
    SJ_LOG_ERROR,
    SJ_LOG_OFF
} sj_log_level;

/* Parse "DEBUG", "INFO", "WARN"/"WARNING", "ERROR"/"CRITICAL" (any case).
 * Returns the level or -1. */
int sj_log_level_parse(const char *name);
const char *sj_log_level_name(sj_log_level level);

void sj_log_set_level(sj_log_level level);
sj_log_level sj_log_get_level(void);

/* Also append every line to `path` (NULL stops). 0 or SJ_EIO. */
int sj_log_open_file(const char *path);

/* Name the calling thread in log lines (copied, at most 15 chars). */
void sj_log_thread_name(const char *name);

void sj_log(sj_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define SJ_DEBUG(...) sj_log(SJ_LOG_DEBUG, __VA_ARGS__)
#define SJ_INFO(...) sj_log(SJ_LOG_INFO, __VA_ARGS__)
#define SJ_WARN(...) sj_log(SJ_LOG_WARN, __VA_ARGS__)
#define SJ_ERROR(...) sj_log(SJ_LOG_ERROR, __VA_ARGS__)

/* Wall clock and monotonic clock in milliseconds. */
long long sj_now_ms(void);
long long sj_mono_ms(void);

#endif
