#include "sj_logrec.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_text.h"

/* A growing buffer; p becomes NULL (and stays) when memory runs out. */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->p == NULL)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            free(b->p);
            b->p = NULL;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

#define PUT_LIT(b, lit) put((b), (lit), sizeof(lit) - 1)

/* s as a JSON string, escaped as jansson's dump escapes it. */
static void put_str(buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF"; /* as jansson */
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0, i = 0;

    PUT_LIT(b, "\"");
    while (i < n) {
        unsigned char c = u[i];
        size_t seq = c >= 0x20 && c != '"' && c != '\\'
                         ? sj_text_utf8_len(u + i, n - i)
                         : 1;
        if (c >= 0x20 && c != '"' && c != '\\' && seq > 0) {
            i += seq;
            continue;
        }
        put(b, s + run, i - run);
        switch (c) {
        case '"':
            PUT_LIT(b, "\\\"");
            break;
        case '\\':
            PUT_LIT(b, "\\\\");
            break;
        case '\b':
            PUT_LIT(b, "\\b");
            break;
        case '\f':
            PUT_LIT(b, "\\f");
            break;
        case '\n':
            PUT_LIT(b, "\\n");
            break;
        case '\r':
            PUT_LIT(b, "\\r");
            break;
        case '\t':
            PUT_LIT(b, "\\t");
            break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                put(b, esc, sizeof esc);
            } else {
                PUT_LIT(b, "\xEF\xBF\xBD"); /* not UTF-8: U+FFFD */
            }
        }
        i++;
        run = i;
    }
    put(b, s + run, n - run);
    PUT_LIT(b, "\"");
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
