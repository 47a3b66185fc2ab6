/*
 * sj_emu.h - a SnailJob server emulator on real gRPC: sj_srv behind an
 * sj_server listener, with one sj_channel per client node for the calls
 * the server makes (protocol.md §1, §3.2, §5, §11).
 *
 * It owns the sj_srv (sj_emu_srv() lends it out; use the sj_srv API for
 * jobs, records and waits), the listener, the outbound channels (keyed by
 * "ip:port", opened on first use with a short reconnect backoff) and a
 * ticker thread that drives sj_srv_tick() every tick_ms while started.
 *
 * Outbound calls carry the server->client headers of §3.2 and wait 3000 ms
 * (dispatch) or 1000 ms (stop); a transport error, a deadline or a `data`
 * that is not JSON is a failure (the node is flagged not alive, §2.4).
 * Stops are sent once (Java retries them twice more; the result is ignored
 * either way).
 *
 * sj_emu_stop() stops listening, closes the channels and pauses the timers
 * but keeps the sj_srv state (batches, registry, records), so a test can
 * "kill" the server and sj_emu_start() it again on the same address.
 *
 * Threads: create/start/stop/destroy from one controlling thread; the
 * sj_srv obtained from sj_emu_srv() and sj_emu_call() from any thread.
 */
#ifndef SJ_EMU_H
#define SJ_EMU_H

#include "sj_srv.h"
#include "sj_wire.h"

/* Informational values the Java server sends (§3.2). */
#define SJ_EMU_SERVER_GROUP "DEFAULT_SERVER"
#define SJ_EMU_SERVER_TOKEN "SJ_H9HGGmrX3QBVTfsAAG2mcKH3SR7bCLsK"
#define SJ_EMU_SERVER_HOST_ID "1893045723423412224"

typedef struct sj_emu sj_emu;

typedef struct sj_emu_config {
    sj_srv_config srv;          /* job-side settings, see sj_srv.h */
    const char *server_host_id; /* host-id header; NULL: the default above */
    const char *server_ip;      /* host-ip header; NULL: "127.0.0.1" */
    const char *server_token;   /* token header; NULL: the default above */
    int dispatch_timeout_ms;    /* 0: 3000 */
    int stop_timeout_ms;        /* 0: 1000 */
    int max_reconnect_ms;       /* channel backoff cap; 0: 200 */
    int tick_ms;                /* 0: 20 */
    /* Called on the listener thread after each request was answered
     * (reply is empty for a blank uri). May be NULL. */
    void (*on_request)(void *ud, const sj_request *req, const sj_reply *reply);
    void *on_request_ud;
} sj_emu_config;

/* Create the emulator (not listening yet). cfg may be NULL. 0/SJ_ENOMEM. */
int sj_emu_create(const sj_emu_config *cfg, sj_emu **out);

/* Listen on `addr` ("127.0.0.1:0" picks a port, put into *port if
 * non-NULL) and start the timers. SJ_EIO if the address cannot be bound,
 * SJ_EEXISTS if already started. */
int sj_emu_start(sj_emu *emu, const char *addr, int *port);

/* Stop listening, close channels (calls in flight are forgotten), pause
 * timers. The sj_srv state is kept. No-op if not started. */
void sj_emu_stop(sj_emu *emu);

/* Stop if needed and free everything. NULL ok. */
void sj_emu_destroy(sj_emu *emu);

/* create + start. */
int sj_emu_open(const sj_emu_config *cfg, const char *addr, sj_emu **out,
                int *port);

sj_srv *sj_emu_srv(sj_emu *emu);

/* For tests of a server that refuses one kind of call: from now on calls
 * on `uri` are answered in-band with status 0 ("refused by the emulator")
 * and never reach the sj_srv (nor on_request); NULL answers every call
 * again. Any thread. */
void sj_emu_refuse(sj_emu *emu, const char *uri);

/* The bound port while started, else 0. */
int sj_emu_port(sj_emu *emu);

/*
 * For tests sending crafted calls: a synchronous server->client call to
 * `target` ("ip:port") on `uri` with `body`, carrying the §3.2 headers;
 * `sj_token` overrides the SJ-TOKEN value (NULL: the group token). 0 with
 * *out filled (caller frees), or an sj_channel_call_sync() error.
 */
int sj_emu_call(sj_emu *emu, const char *target, const char *uri,
                const char *body, const char *sj_token, int timeout_ms,
                sj_reply *out);

#endif
