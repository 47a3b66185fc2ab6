#include "sj_codec.h"

#include <stdlib.h>
#include <string.h>

#include "sj_error.h"
#include "snail_job.pb-c.h"

/* protobuf-c uses protobuf_c_empty_string for absent proto3 strings; the C
 * side uses NULL for "absent" and a copy for anything else. */
static int copy_str(char **dst, const char *src)
{
    if (src == NULL || src[0] == '\0') {
        *dst = NULL;
        return 0;
    }
    return (*dst = strdup(src)) == NULL ? SJ_ENOMEM : 0;
}

static char *or_empty(const char *s)
{
    return (char *)(s != NULL ? s : "");
}

static int pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL)
        return SJ_ENOMEM;
    *len = protobuf_c_message_pack(msg, buf);
    *out = buf;
    return 0;
}

int sj_codec_encode_request(const sj_request *req, uint8_t **out, size_t *len)
{
    GrpcSnailJobRequest msg = GRPC_SNAIL_JOB_REQUEST__INIT;
    Metadata meta = METADATA__INIT;
    Metadata__HeadersEntry *entries = NULL, **ptrs = NULL;
    int rc = SJ_ENOMEM;

    if (req->n_headers > 0) {
        entries = calloc(req->n_headers, sizeof *entries);
        ptrs = calloc(req->n_headers, sizeof *ptrs);
        if (entries == NULL || ptrs == NULL)
            goto out;
    }
    for (size_t i = 0; i < req->n_headers; i++) {
        metadata__headers_entry__init(&entries[i]);
        entries[i].key = or_empty(req->headers[i].key);
        entries[i].value = or_empty(req->headers[i].value);
        ptrs[i] = &entries[i];
    }
    meta.uri = or_empty(req->uri);
    meta.n_headers = req->n_headers;
    meta.headers = ptrs;
    msg.reqid = req->req_id;
    msg.metadata = &meta;
    msg.body = or_empty(req->body);
    rc = pack(&msg.base, out, len);
out:
    free(entries);
    free(ptrs);
    return rc;
}

int sj_codec_encode_reply(const sj_reply *reply, uint8_t **out, size_t *len)
{
    GrpcResult msg = GRPC_RESULT__INIT;

    msg.reqid = reply->req_id;
    msg.status = reply->status;
    msg.message = or_empty(reply->message);
    msg.data = or_empty(reply->data);
    return pack(&msg.base, out, len);
}

int sj_codec_decode_request(const uint8_t *buf, size_t len, sj_request *out)
{
    GrpcSnailJobRequest *msg;
    int rc = SJ_ENOMEM;

    memset(out, 0, sizeof *out);
    if (len > SJ_MAX_MESSAGE)
        return SJ_ETOOBIG;
    msg = grpc_snail_job_request__unpack(NULL, len, buf);
    if (msg == NULL)
        return SJ_EPROTO;
    out->req_id = msg->reqid;
    if (copy_str(&out->body, msg->body))
        goto fail;
    if (msg->metadata != NULL) {
        const Metadata *m = msg->metadata;
        if (copy_str(&out->uri, m->uri))
            goto fail;
        for (size_t i = 0; i < m->n_headers; i++)
            if (sj_request_add_header(out, m->headers[i]->key,
                                      m->headers[i]->value))
                goto fail;
    }
    rc = 0;
    goto done;
fail:
    sj_request_free(out);
done:
    grpc_snail_job_request__free_unpacked(msg, NULL);
    return rc;
}

int sj_codec_decode_reply(const uint8_t *buf, size_t len, sj_reply *out)
{
    GrpcResult *msg;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (len > SJ_MAX_MESSAGE)
        return SJ_ETOOBIG;
    msg = grpc_result__unpack(NULL, len, buf);
    if (msg == NULL)
        return SJ_EPROTO;
    out->req_id = msg->reqid;
    out->status = msg->status;
    if (copy_str(&out->message, msg->message) ||
        copy_str(&out->data, msg->data)) {
        sj_reply_free(out);
        rc = SJ_ENOMEM;
    }
    grpc_result__free_unpacked(msg, NULL);
    return rc;
}
