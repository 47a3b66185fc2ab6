/*
 * sj_endpoint.h - what the host answers when the server calls it.
 *
 * Routes an inbound request by its uri (protocol.md §5): dispatch, stop,
 * config sync; checks the SJ-TOKEN header on every call the way the Java
 * client does (§3.2); answers everything in-band (status 0 + a message that
 * says what was wrong), never with a gRPC error (§2.4). It runs on the
 * transport's server thread and never blocks: a dispatch is parsed and
 * handed to the pool's queue, the reply goes out at once.
 */
#ifndef SJ_ENDPOINT_H
#define SJ_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "sj_task.h"
#include "sj_wire.h"

typedef struct sj_endpoint_ops {
    /* Take a parsed task. 0 = queued (ownership taken). Otherwise the
     * task stays the caller's and `why` says why it was refused (unknown
     * executor, queue full, shutting down). */
    int (*dispatch)(void *ud, sj_task *t, char *why, size_t whylen);
    /* Stop everything of this batch; unknown batches are fine. */
    void (*stop)(void *ud, int64_t task_batch_id);
    void *ud;
} sj_endpoint_ops;

typedef struct sj_endpoint {
    const char *token; /* expected SJ-TOKEN (non-empty); borrowed */
    sj_endpoint_ops ops;
    /* Private: wrong-token refusals (server thread only). */
    long long refused_at_;          /* monotonic ms of the last WARN */
    unsigned long refused_pending_; /* refused since, not yet logged */
    unsigned long refused_total_;
} sj_endpoint;

/* Wrong-token calls are logged at most once per this many ms, with a
 * count of those in between; every one is counted in the metrics. */
#define SJ_ENDPOINT_REFUSAL_LOG_MS 10000

/* A sj_server_handler: `ud` is the sj_endpoint. The token is compared in
 * constant time (sj_text_equal_ct). */
void sj_endpoint_handle(void *ud, const sj_request *req, sj_reply *reply);

/* Once the server is stopped: log the refusals not yet reported. */
void sj_endpoint_close(sj_endpoint *ep);

#define SJ_URI_DISPATCH "/job/dispatch/v1"
#define SJ_URI_STOP "/job/stop/v1"
#define SJ_URI_SYNC "/sync/version"

#endif
