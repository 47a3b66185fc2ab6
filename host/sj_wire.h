/*
 * sj_wire.h - the two messages of the SnailJob protocol as plain C values.
 *
 * A leaf header: the codec fills these from protobuf bytes, the transport
 * carries them, the client and the emulator build and read them. Nothing
 * here knows about gRPC, protobuf-c or Lua (protocol.md §2.2).
 *
 * Ownership: every string of a message is a heap copy owned by the message;
 * sj_request_free()/sj_reply_free() release them. A NULL string means
 * "absent", which proto3 cannot tell from "" anyway.
 */
#ifndef SJ_WIRE_H
#define SJ_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* The one gRPC method of both directions (protocol.md §2.1). */
#define SJ_METHOD "/UnaryRequest/unaryRequest"

/* Java's inbound limit on both sides (protocol.md §2.5). */
#define SJ_MAX_MESSAGE (10 * 1024 * 1024)

/* GrpcResult.status values (protocol.md §2.3). */
#define SJ_STATUS_NO 0
#define SJ_STATUS_YES 1

typedef struct sj_header {
    char *key;
    char *value;
} sj_header;

typedef struct sj_request {
    int64_t req_id;
    char *uri;
    sj_header *headers;
    size_t n_headers;
    char *body; /* JSON array text of the positional arguments */
} sj_request;

typedef struct sj_reply {
    int64_t req_id;
    int32_t status; /* absent on the wire means SJ_STATUS_NO */
    char *message;
    char *data; /* JSON text of the return value */
} sj_reply;

/* Case-insensitive header lookup, as the Java server does; NULL if absent. */
const char *sj_request_header(const sj_request *req, const char *key);

/* Appends a copy of key/value. Returns 0 or SJ_ENOMEM. */
int sj_request_add_header(sj_request *req, const char *key, const char *value);

/* Sets a string field to a copy of `s` (NULL clears). 0 or SJ_ENOMEM. */
int sj_wire_set(char **field, const char *s);

/* Deep copies; 0 or SJ_ENOMEM (dst is then left empty). */
int sj_request_copy(sj_request *dst, const sj_request *src);
int sj_reply_copy(sj_reply *dst, const sj_reply *src);

/* Free everything the message owns and zero it; the struct itself stays. */
void sj_request_free(sj_request *req);
void sj_reply_free(sj_reply *reply);

/* Fill `reply` (already zeroed) with the given outcome; 0 or SJ_ENOMEM. */
int sj_reply_set(sj_reply *reply, int64_t req_id, int32_t status,
                 const char *message, const char *data);

#endif
