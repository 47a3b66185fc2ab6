/*
 * sj_transport.h - unary gRPC calls on /UnaryRequest/unaryRequest, both ways.
 *
 * The only unit that includes the gRPC C core. It owns three kinds of
 * object:
 *
 *   sj_loop     a completion queue and the thread that runs it (below).
 *
 *   sj_server   a listener on a loop; every call on SJ_METHOD is decoded
 *               and handed to the handler on the loop's thread, whose reply is
 * sent with gRPC status OK, always (protocol.md §2.4). Bytes that are not a
 * GrpcSnailJobRequest are answered in-band (status 0, "malformed protobuf ...")
 *               without reaching the handler. Any other method path gets
 *               UNIMPLEMENTED at once. Messages over SJ_MAX_MESSAGE are
 *               refused by gRPC itself (RESOURCE_EXHAUSTED).
 *
 *   sj_channel  one long-lived channel to a peer with many calls in flight.
 *               Its callbacks run on its loop's thread.
 *               Reconnection backoff is capped (max_reconnect_ms) so a peer
 *               that comes back is reached again within that time.
 *
 * sj_transport_init()/sj_transport_shutdown() bracket all use (reference
 * counted, any thread). Everything else: any thread unless noted.
 */
#ifndef SJ_TRANSPORT_H
#define SJ_TRANSPORT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sj_wire.h"

void sj_transport_init(void);
void sj_transport_shutdown(void);

/* ---- loop ------------------------------------------------------------ */

/*
 * One gRPC completion queue and the thread (named `name`) that runs it:
 * the server's handler and the channels' callbacks run there. A server and
 * a channel on one loop cost one thread, and, more to the point, the
 * thread that reads a call off the socket is the one that handles it:
 * with a queue each, the thread polling the sockets hands the other
 * queue's events over with a futex wake-up, one more thread hop on every
 * dispatch (issue 14). Stop a loop only after every server and channel on
 * it has been stopped or closed. Servers and channels started without one
 * get their own.
 */
typedef struct sj_loop sj_loop;

int sj_loop_start(const char *name, sj_loop **out);
void sj_loop_stop(sj_loop *lp); /* NULL ok */

/* ---- server ---------------------------------------------------------- */

typedef struct sj_server sj_server;

/*
 * Called on the server's loop thread for each decoded request. `reply` is
 * zeroed; the handler fills it (sj_reply_set). If it leaves `reply->status` 0
 * and `message` NULL, the transport still answers (status 0, "internal error").
 * The transport sets reply->req_id to the request's if the handler left it
 * 0. The handler must not block for long: the server's 3 s dispatch wait
 * covers the whole queue of calls behind it.
 */
typedef void (*sj_server_handler)(void *ud, const sj_request *req,
                                  sj_reply *reply);

/* Listen on `addr` ("127.0.0.1:17889", "0.0.0.0:0" for any port). On
 * success *out is running and *port (if non-NULL) holds the bound port.
 * SJ_EIO if the address cannot be bound, also when another process
 * listens on the port (SO_REUSEPORT is off). */
int sj_server_start(const char *addr, sj_server_handler handler, void *ud,
                    sj_server **out, int *port);

/* The same on `lp` (NULL: a loop of its own). */
int sj_server_start_on(sj_loop *lp, const char *addr, sj_server_handler handler,
                       void *ud, sj_server **out, int *port);

/* Stop listening, cancel calls in flight, join the thread, free. NULL ok. */
void sj_server_stop(sj_server *srv);

/* ---- channel ---------------------------------------------------------- */

typedef struct sj_channel sj_channel;

typedef struct sj_channel_options {
    int max_reconnect_ms; /* cap of reconnect backoff; 0 = 1000 */
    sj_loop *loop;        /* where callbacks run; NULL: a loop of its own */
} sj_channel_options;

/* Open a channel to "host:port". Connects lazily. opts may be NULL. */
int sj_channel_open(const char *target, const sj_channel_options *opts,
                    sj_channel **out);

/* Cancel calls in flight (their callbacks run with SJ_ECANCELED), join the
 * thread, free. NULL ok. */
void sj_channel_close(sj_channel *ch);

/*
 * Completion of an asynchronous call, on the channel's loop thread. `err` is 0
 * and `reply` holds the decoded GrpcResult, or `err` is SJ_ETIMEOUT,
 * SJ_EUNAVAILABLE, SJ_ECANCELED, SJ_ETRANSPORT (other gRPC status; `detail`
 * says which) or SJ_EPROTO (reply bytes undecodable), and `reply` is empty.
 * The callback does not own `reply`; copy what it keeps.
 */
typedef void (*sj_call_cb)(void *ud, int err, const char *detail,
                           const sj_reply *reply);

/* Start a call; `req` is encoded before return (the caller keeps it).
 * 0 or SJ_ENOMEM/SJ_ECLOSED; on error the callback is never run. */
int sj_channel_call(sj_channel *ch, const sj_request *req, int timeout_ms,
                    sj_call_cb cb, void *ud);

/*
 * Blocking call. Returns 0 with *out filled (caller frees), or an error as
 * above with *out empty. If `cancel` is non-NULL the wait polls it every
 * 10 ms and, once it is non-zero, cancels the call and returns
 * SJ_ECANCELED. `detail` (may be NULL) receives a description of a failure.
 */
int sj_channel_call_sync(sj_channel *ch, const sj_request *req, int timeout_ms,
                         const atomic_int *cancel, sj_reply *out, char *detail,
                         size_t detail_len);

/*
 * For tests and tools: send `len` raw bytes as the message of `method`
 * and wait. Returns 0 once the call completed at the gRPC level (any
 * status); *grpc_status gets the numeric gRPC status code and *out and *out_len
 * the raw reply message (malloc'd, NULL if none).
 */
int sj_channel_call_raw(sj_channel *ch, const char *method,
                        const uint8_t *bytes, size_t len, int timeout_ms,
                        int *grpc_status, uint8_t **out, size_t *out_len);

/* gRPC status codes the tests compare with (values fixed by gRPC). */
#define SJ_GRPC_OK 0
#define SJ_GRPC_UNIMPLEMENTED 12
#define SJ_GRPC_RESOURCE_EXHAUSTED 8

#endif
