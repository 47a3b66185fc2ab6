/* Fuzz target: protobuf bytes from the network -> sj_request / sj_reply.
 * A message that decodes must encode again and decode to the same thing. */
#include <stdlib.h>
#include <string.h>

#include "sj_codec.h"
#include "sj_wire.h"

static int same(const char *a, const char *b)
{
    /* proto3 cannot tell "" from absent: both are "absent". */
    if (a == NULL || *a == '\0')
        return b == NULL || *b == '\0';
    return b != NULL && strcmp(a, b) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sj_request req, req2;
    sj_reply rep, rep2;
    uint8_t *buf;
    size_t len;

    if (sj_codec_decode_request(data, size, &req) == 0) {
        if (sj_codec_encode_request(&req, &buf, &len) == 0) {
            if (sj_codec_decode_request(buf, len, &req2) != 0 ||
                req2.req_id != req.req_id || !same(req.uri, req2.uri) ||
                !same(req.body, req2.body) || req2.n_headers != req.n_headers)
                abort();
            sj_request_free(&req2);
            free(buf);
        }
        sj_request_free(&req);
    }
    if (sj_codec_decode_reply(data, size, &rep) == 0) {
        if (sj_codec_encode_reply(&rep, &buf, &len) == 0) {
            if (sj_codec_decode_reply(buf, len, &rep2) != 0 ||
                rep2.status != rep.status || !same(rep.data, rep2.data) ||
                !same(rep.message, rep2.message))
                abort();
            sj_reply_free(&rep2);
            free(buf);
        }
        sj_reply_free(&rep);
    }
    return 0;
}
