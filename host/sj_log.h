/*
 * sj_log.h - the host's own log: stderr and, optionally, a file.
 *
 * One record is always one line, in one of two formats:
 *
 *   text  "YYYY-MM-DD HH:MM:SS.mmm LEVEL [thread] message", with
 *         "[thread job=J batch=B task=T executor=E]" while the thread runs
 *         a task; newlines, carriage returns and other control bytes in the
 *         message are written as \n, \r, \xNN (a traceback stays on its
 *         record's line).
 *   json  one object per line: {"time","level","thread","job_id",
 *         "task_batch_id","task_id","executor","message"}; the task fields
 *         are null outside a task; the message is escaped JSON text (bytes
 *         that are not UTF-8 become U+FFFD).
 *
 * Lines from different threads never interleave (one mutex around the
 * write). A secret registered with sj_log_set_secret is replaced by its
 * mask (sj_text_mask) wherever it appears in a record. This is the host
 * log only; a task's remote log lives in sj_upstream.
 *
 * Any thread, except sj_log_set_secret / sj_log_set_format (main thread,
 * before other threads start or while they do not log).
 */
#ifndef SJ_LOG_H
#define SJ_LOG_H

#include <stdint.h>

typedef enum sj_log_level {
    SJ_LOG_DEBUG = 0,
    SJ_LOG_INFO,
    SJ_LOG_WARN,
    SJ_LOG_ERROR,
    SJ_LOG_OFF
} sj_log_level;

typedef enum sj_log_format { SJ_LOG_TEXT = 0, SJ_LOG_JSON } sj_log_format;

/* Parse "DEBUG", "INFO", "WARN"/"WARNING", "ERROR"/"CRITICAL" (any case).
 * Returns the level or -1. */
int sj_log_level_parse(const char *name);
const char *sj_log_level_name(sj_log_level level);

void sj_log_set_level(sj_log_level level);
sj_log_level sj_log_get_level(void);

/* "text" or "json" -> the format, else -1. */
int sj_log_format_parse(const char *name);
void sj_log_set_format(sj_log_format format);

/* Mask `secret` (copied; NULL or "" clears) in every record from now on. */
void sj_log_set_secret(const char *secret);

/* Also append every line to `path` (NULL stops). 0 or SJ_EIO. */
int sj_log_open_file(const char *path);

/* Close and open again the file given to sj_log_open_file, by its path
 * (logrotate renamed it: new lines go to a new file at the old path).
 * 0 (also when no file is open), or SJ_EIO: then the old file is kept and
 * lines still go there. */
int sj_log_reopen(void);

/* Name the calling thread in log lines (copied, at most 15 chars). */
void sj_log_thread_name(const char *name);

/* The task the calling thread runs from now until sj_log_task_end: its
 * ids and executor go into each record (`executor` copied, truncated to
 * 127 bytes). */
void sj_log_task_begin(int64_t job_id, int64_t task_batch_id, int64_t task_id,
                       const char *executor);
void sj_log_task_end(void);

void sj_log(sj_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define SJ_DEBUG(...) sj_log(SJ_LOG_DEBUG, __VA_ARGS__)
#define SJ_INFO(...) sj_log(SJ_LOG_INFO, __VA_ARGS__)
#define SJ_WARN(...) sj_log(SJ_LOG_WARN, __VA_ARGS__)
#define SJ_ERROR(...) sj_log(SJ_LOG_ERROR, __VA_ARGS__)

/* Wall clock and monotonic clock in milliseconds; the monotonic clock in
 * microseconds. */
long long sj_now_ms(void);
long long sj_mono_ms(void);
long long sj_mono_us(void);

#endif
