/*
 * sj_link.h - the host's road to "the server", whatever carries it.
 *
 * Production uses a gRPC channel (sj_link_grpc). `snailjob-lua run` plugs
 * the embedded server emulation in through the same interface, so the
 * upstream code (beats, reports, logs, map reports) is the same in both.
 * A link is thread-safe: any thread may start calls; callbacks run on a
 * thread of the link's choosing and must not block.
 */
#ifndef SJ_LINK_H
#define SJ_LINK_H

#include <stdatomic.h>
#include <stddef.h>

#include "sj_transport.h"
#include "sj_wire.h"

typedef struct sj_link sj_link;

struct sj_link {
    /* Asynchronous call; see sj_channel_call. */
    int (*call)(sj_link *self, const sj_request *req, int timeout_ms,
                sj_call_cb cb, void *ud);
    /* Blocking call; see sj_channel_call_sync. */
    int (*call_sync)(sj_link *self, const sj_request *req, int timeout_ms,
                     const atomic_int *cancel, sj_reply *out, char *detail,
                     size_t detail_len);
    /* Cancel what is in flight (callbacks still run) and free. */
    void (*close)(sj_link *self);
};

/* A link over one long-lived gRPC channel to "host:port". */
int sj_link_grpc(const char *target, sj_link **out);

/* The same with the channel's reconnect backoff capped at max_reconnect_ms
 * (<= 0: 1000, as sj_link_grpc): a server that comes back is reached again
 * within about that time, so a host with a short heartbeat re-registers
 * within one interval. Callbacks run on `loop` (NULL: the channel's own);
 * the loop must outlive the link. */
int sj_link_grpc_opts(const char *target, int max_reconnect_ms, sj_loop *loop,
                      sj_link **out);

#endif
