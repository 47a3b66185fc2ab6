/*
 * sj_logrec.h - one task-log record (protocol.md §4.5) as JSON text.
 *
 * The upstream queues each sj.log line as the text it is sent as: about
 * 500 bytes a line, built in one pass, instead of a jansson tree of ~5 KB
 * (record, fieldList, eight field objects) that was serialised again per
 * batch. The text is what jansson's compact dump of that tree gives: the
 * same keys in the same order, the same escapes. Bytes of the message that
 * are not UTF-8 become U+FFFD (jansson refused such a message, and the
 * record went without it).
 *
 * Writes through sj_json's buffer and string escaper (libc otherwise);
 * pure functions, any thread.
 */
#ifndef SJ_LOGREC_H
#define SJ_LOGREC_H

#include <stddef.h>
#include <stdint.h>

typedef struct sj_logrec {
    const char *namespace_id; /* NULL is written as "" */
    const char *group_name;   /* NULL is written as "" */
    int64_t job_id, task_batch_id, task_id;
    long long real_time; /* ms since the epoch: realTime and time_stamp */
    const char *level;   /* "DEBUG", "INFO", "WARN", "ERROR" */
    const char *message; /* message_len bytes, any bytes */
    size_t message_len;
    const char *location; /* NULL: the field has no value */
    const char *host;     /* the host's IP, as registered */
    const char *port;     /* the host's port, as text */
} sj_logrec;

/*
 * {"logType":"JOB","namespaceId":..,"groupName":..,"jobId":..,
 *  "taskBatchId":..,"taskId":..,"realTime":..,"fieldList":[{"name":
 *  "time_stamp","value":..},{"name":"level",..},{"name":"thread","value":
 *  "snailjob-lua"},{"name":"message",..},{"name":"location",..},{"name":
 *  "throwable"},{"name":"host",..},{"name":"port",..}]}
 * malloc'd and NUL-terminated; *len (if non-NULL) gets its length. NULL
 * when out of memory.
 */
char *sj_logrec_text(const sj_logrec *r, size_t *len);

#endif
