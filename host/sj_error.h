/*
 * sj_error.h - the one list of error codes of snailjob-lua.
 *
 * Every fallible function returns 0 on success or one of the negative
 * SJ_E... codes below; sj_strerror() turns a code into a sentence. The list
 * is an X-macro so that the enum and the strings can never drift apart.
 * Safe to call from any thread.
 */
#ifndef SJ_ERROR_H
#define SJ_ERROR_H

#define SJ_ERRNO_MAP(XX)                                                       \
    XX(NOMEM, "out of memory")                                                 \
    XX(INVAL, "invalid argument")                                              \
    XX(PROTO, "malformed protobuf message")                                    \
    XX(JSON, "malformed JSON")                                                 \
    XX(TOOBIG, "message too large")                                            \
    XX(IO, "input/output error")                                               \
    XX(NOENT, "no such file or entry")                                         \
    XX(CONFIG, "invalid configuration")                                        \
    XX(TRANSPORT, "gRPC transport failure")                                    \
    XX(TIMEOUT, "deadline exceeded")                                           \
    XX(UNAVAILABLE, "server unavailable")                                      \
    XX(REFUSED, "refused by the peer")                                         \
    XX(CANCELED, "canceled")                                                   \
    XX(FULL, "queue is full")                                                  \
    XX(CLOSED, "already shut down")                                            \
    XX(LUA, "Lua error")                                                       \
    XX(EXISTS, "already exists")                                               \
    XX(NOSPC, "no space left on device (ENOSPC)")

typedef enum sj_errno {
    SJ_OK = 0,
#define XX(name, msg) SJ_E##name,
    SJ__ERRNO_FIRST = -1000,
    SJ_ERRNO_MAP(XX)
#undef XX
        SJ__ERRNO_LAST
} sj_errno;

/* A static string naming `err`; "unknown error" for anything else. */
const char *sj_strerror(int err);

#endif
