#include "sj_logrec.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_json.h"

/* The record is built in an sj_json_buf whose p becomes NULL (and
 * stays) once memory runs out, so the writer below needs no checks. */
typedef sj_json_buf buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->p != NULL && sj_json_buf_add(b, s, n) != 0) {
        free(b->p);
        b->p = NULL;
    }
}

#define PUT_LIT(b, lit) put((b), (lit), sizeof(lit) - 1)

/* s as a JSON string (sj_json's escaper: jansson's escapes, U+FFFD for
 * bytes that are not UTF-8). */
static void put_str(buf *b, const char *s, size_t n)
{
    if (b->p != NULL && sj_json_buf_str(b, s, n) != 0) {
        free(b->p);
        b->p = NULL;
    }
}

static void put_cstr(buf *b, const char *s)
{
    put_str(b, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

/* {"name":"<name>","value":<value>}, without "value" if value is NULL. */
static void put_field(buf *b, const char *name, const char *value, size_t n)
{
    PUT_LIT(b, "{\"name\":");
    put_cstr(b, name);
    if (value != NULL) {
        PUT_LIT(b, ",\"value\":");
        put_str(b, value, n);
    }
    PUT_LIT(b, "}");
}

char *sj_logrec_text(const sj_logrec *r, size_t *len)
{
    char num[200];
    buf b = {malloc(r->message_len + 512), 0, r->message_len + 512};
    int n;

    PUT_LIT(&b, "{\"logType\":\"JOB\",\"namespaceId\":");
    put_cstr(&b, r->namespace_id);
    PUT_LIT(&b, ",\"groupName\":");
    put_cstr(&b, r->group_name);
    n = snprintf(num, sizeof num,
                 ",\"jobId\":%" PRId64 ",\"taskBatchId\":%" PRId64
                 ",\"taskId\":%" PRId64 ",\"realTime\":%lld,\"fieldList\":[",
                 r->job_id, r->task_batch_id, r->task_id, r->real_time);
    put(&b, num, (size_t)n);
    n = snprintf(num, sizeof num, "%lld", r->real_time);
    put_field(&b, "time_stamp", num, (size_t)n);
    PUT_LIT(&b, ",");
    put_field(&b, "level", r->level, strlen(r->level));
    PUT_LIT(&b, ",{\"name\":\"thread\",\"value\":\"snailjob-lua\"},");
    put_field(&b, "message", r->message != NULL ? r->message : "",
              r->message != NULL ? r->message_len : 0);
    PUT_LIT(&b, ",");
    put_field(&b, "location", r->location,
              r->location != NULL ? strlen(r->location) : 0);
    PUT_LIT(&b, ",{\"name\":\"throwable\"},");
    put_field(&b, "host", r->host != NULL ? r->host : "",
              r->host != NULL ? strlen(r->host) : 0);
    PUT_LIT(&b, ",");
    put_field(&b, "port", r->port != NULL ? r->port : "",
              r->port != NULL ? strlen(r->port) : 0);
    PUT_LIT(&b, "]}");
    if (b.p != NULL && len != NULL)
        *len = b.len;
    return b.p;
}
