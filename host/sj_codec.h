/*
 * sj_codec.h - protobuf bytes <-> sj_request / sj_reply.
 *
 * The only unit that includes protobuf-c. Decoding never trusts its input:
 * bytes that are not a valid message, or that exceed SJ_MAX_MESSAGE, give
 * SJ_EPROTO / SJ_ETOOBIG and leave the output zeroed. Any thread.
 */
#ifndef SJ_CODEC_H
#define SJ_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "sj_wire.h"

/* Encode into a malloc'd buffer the caller frees. 0 or SJ_ENOMEM. */
int sj_codec_encode_request(const sj_request *req, uint8_t **out, size_t *len);
int sj_codec_encode_reply(const sj_reply *reply, uint8_t **out, size_t *len);

/* Decode `len` bytes into `out` (overwritten). 0, SJ_EPROTO, SJ_ETOOBIG or
 * SJ_ENOMEM. A missing field gets its proto3 default (status 0). */
int sj_codec_decode_request(const uint8_t *buf, size_t len, sj_request *out);
int sj_codec_decode_reply(const uint8_t *buf, size_t len, sj_reply *out);

#endif
