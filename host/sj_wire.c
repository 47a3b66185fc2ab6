#include "sj_wire.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sj_error.h"

const char *sj_request_header(const sj_request *req, const char *key)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].key, key) == 0)
            return req->headers[i].value;
    return NULL;
}

int sj_wire_set(char **field, const char *s)
{
    char *copy = NULL;
    if (s != NULL && (copy = strdup(s)) == NULL)
        return SJ_ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

int sj_request_add_header(sj_request *req, const char *key, const char *value)
{
    sj_header *h;
    char *k, *v;

    h = realloc(req->headers, (req->n_headers + 1) * sizeof *h);
    if (h == NULL)
        return SJ_ENOMEM;
    req->headers = h;
    k = strdup(key);
    v = strdup(value != NULL ? value : "");
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        return SJ_ENOMEM;
    }
    h[req->n_headers].key = k;
    h[req->n_headers].value = v;
    req->n_headers++;
    return 0;
}

int sj_request_copy(sj_request *dst, const sj_request *src)
{
    memset(dst, 0, sizeof *dst);
    dst->req_id = src->req_id;
    if (sj_wire_set(&dst->uri, src->uri) || sj_wire_set(&dst->body, src->body))
        goto fail;
    for (size_t i = 0; i < src->n_headers; i++)
        if (sj_request_add_header(dst, src->headers[i].key,
                                  src->headers[i].value))
            goto fail;
    return 0;
fail:
    sj_request_free(dst);
    return SJ_ENOMEM;
}

int sj_reply_copy(sj_reply *dst, const sj_reply *src)
{
    memset(dst, 0, sizeof *dst);
    return sj_reply_set(dst, src->req_id, src->status, src->message, src->data);
}

void sj_request_free(sj_request *req)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        free(req->headers[i].key);
        free(req->headers[i].value);
    }
    free(req->headers);
    free(req->uri);
    free(req->body);
    memset(req, 0, sizeof *req);
}

void sj_reply_free(sj_reply *reply)
{
    free(reply->message);
    free(reply->data);
    memset(reply, 0, sizeof *reply);
}

int sj_reply_set(sj_reply *reply, int64_t req_id, int32_t status,
                 const char *message, const char *data)
{
    reply->req_id = req_id;
    reply->status = status;
    if (sj_wire_set(&reply->message, message) ||
        sj_wire_set(&reply->data, data)) {
        sj_reply_free(reply);
        return SJ_ENOMEM;
    }
    return 0;
}
