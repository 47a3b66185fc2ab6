/*
 * sj_emu.c - sj_srv on gRPC (see sj_emu.h).
 *
 * Locking: `mu` guards the started flag, the listener pointer, the channel
 * table and the count of sends in progress. It is never held while calling
 * into sj_srv or the transport, except sj_channel_open (which only creates).
 */
#include "sj_emu.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sj_error.h"
#include "sj_log.h"
#include "sj_transport.h"

#define DEF_DISPATCH_MS 3000
#define DEF_STOP_MS 1000
#define DEF_RECONNECT_MS 200
#define DEF_TICK_MS 20

typedef struct emu_chan {
    char *target;
    sj_channel *ch;
} emu_chan;

struct sj_emu {
    sj_srv *srv;
    char *host_id, *ip, *server_token, *group_token;
    int dispatch_ms, stop_ms, reconnect_ms, tick_ms;
    long long (*clock)(void *);
    void *clock_ud;
    void (*on_request)(void *, const sj_request *, const sj_reply *);
    void *on_request_ud;

    pthread_mutex_t mu;
    pthread_cond_t idle; /* active_sends dropped */
    char refused[128];   /* calls on this uri are refused; "" none */
    int started;
    int port;
    int active_sends;
    sj_server *server;
    emu_chan *chans;
    size_t n_chans, cap_chans;

    pthread_t ticker;
    int ticker_on;
    atomic_int ticker_stop;
    atomic_llong next_req_id;
};

/* One outbound call in flight. */
typedef struct emu_call {
    sj_emu *emu;
    uint64_t token;
    int is_stop;
} emu_call;

static char *dup_or(const char *s, const char *def)
{
    return strdup(s != NULL ? s : def);
}

/* The server->client headers of protocol.md §3.2. */
static int build_request(sj_emu *e, sj_request *r, const char *uri,
                         const char *body, const char *sj_token)
{
    char port[16];

    memset(r, 0, sizeof *r);
    snprintf(port, sizeof port, "%d", e->port);
    r->req_id = atomic_fetch_add(&e->next_req_id, 1) + 1;
    if (sj_wire_set(&r->uri, uri) != 0 || sj_wire_set(&r->body, body) != 0 ||
        sj_request_add_header(r, "SJ-TOKEN",
                              sj_token ? sj_token : e->group_token) != 0 ||
        sj_request_add_header(r, "host-id", e->host_id) != 0 ||
        sj_request_add_header(r, "host-ip", e->ip) != 0 ||
        sj_request_add_header(r, "host-port", port) != 0 ||
        sj_request_add_header(r, "group-name", SJ_EMU_SERVER_GROUP) != 0 ||
        sj_request_add_header(r, "namespace", SJ_SRV_DEFAULT_NAMESPACE) != 0 ||
        sj_request_add_header(r, "token", e->server_token) != 0) {
        sj_request_free(r);
        return SJ_ENOMEM;
    }
    return 0;
}

/* Channel thread: classify the reply the way GrpcClientInvokeHandlerV2 and
 * RequestClientActor do. */
static void on_reply(void *ud, int err, const char *detail,
                     const sj_reply *reply)
{
    emu_call *c = ud;
    sj_srv *srv = c->emu->srv;
    int outcome;
    const char *msg = NULL;
    json_t *data = NULL;

    if (err == SJ_ECANCELED) {
        outcome = SJ_SRV_SEND_DROPPED; /* only sj_emu_stop cancels */
    } else if (err != 0) {
        outcome = SJ_SRV_SEND_FAILED;
        msg = detail != NULL ? detail : sj_strerror(err);
    } else if (reply->data != NULL && reply->data[0] != '\0' &&
               ((data = json_loads(reply->data, JSON_DECODE_ANY, NULL)) ==
                    NULL ||
                json_is_object(data) || json_is_array(data))) {
        outcome = SJ_SRV_SEND_FAILED; /* `data` is not a Boolean (§2.3) */
        msg = "reply data is not a JSON boolean";
    } else if (c->is_stop ||
               (reply->status == SJ_STATUS_YES && json_is_true(data))) {
        outcome = SJ_SRV_SEND_ACCEPTED;
    } else {
        outcome = SJ_SRV_SEND_REJECTED;
        msg = reply->message != NULL ? reply->message : "";
    }
    if (outcome == SJ_SRV_SEND_FAILED)
        SJ_WARN("sj_emu: call to client failed: %s", msg);
    sj_srv_send_done(srv, c->token, outcome, msg);
    json_decref(data);
    free(c);
}

/* Channel to "ip:port", opened on first use; mu held. */
static sj_channel *channel_for(sj_emu *e, const char *target)
{
    sj_channel_options opts = {.max_reconnect_ms = e->reconnect_ms};
    emu_chan c;

    for (size_t i = 0; i < e->n_chans; i++)
        if (strcmp(e->chans[i].target, target) == 0)
            return e->chans[i].ch;
    if (e->n_chans == e->cap_chans) {
        size_t cap = e->cap_chans ? 2 * e->cap_chans : 8;
        emu_chan *v = realloc(e->chans, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        e->chans = v;
        e->cap_chans = cap;
    }
    if ((c.target = strdup(target)) == NULL)
        return NULL;
    if (sj_channel_open(target, &opts, &c.ch) != 0) {
        free(c.target);
        return NULL;
    }
    e->chans[e->n_chans++] = c;
    return c.ch;
}

/* sj_srv_ops.send: any thread, never with sj_srv's mutex held. */
static void emu_send(void *ud, const sj_srv_node *node, const char *uri,
                     const char *body, uint64_t token)
{
    sj_emu *e = ud;
    char target[300];
    sj_channel *ch;
    sj_request req;
    emu_call *c;
    int rc, is_stop = strcmp(uri, SJ_SRV_URI_STOP) == 0;

    snprintf(target, sizeof target, "%s:%d", node->ip, node->port);
    pthread_mutex_lock(&e->mu);
    if (!e->started) {
        pthread_mutex_unlock(&e->mu);
        sj_srv_send_done(e->srv, token, SJ_SRV_SEND_DROPPED, NULL);
        return;
    }
    ch = channel_for(e, target);
    if (ch != NULL)
        e->active_sends++;
    pthread_mutex_unlock(&e->mu);
    if (ch == NULL) {
        sj_srv_send_done(e->srv, token, SJ_SRV_SEND_FAILED,
                         "cannot open a channel");
        return;
    }

    rc = build_request(e, &req, uri, body, NULL);
    if (rc == 0 && (c = malloc(sizeof *c)) == NULL)
        rc = SJ_ENOMEM;
    if (rc == 0) {
        c->emu = e;
        c->token = token;
        c->is_stop = is_stop;
        rc = sj_channel_call(ch, &req, is_stop ? e->stop_ms : e->dispatch_ms,
                             on_reply, c);
        if (rc != 0)
            free(c);
    }
    sj_request_free(&req);
    if (rc != 0)
        sj_srv_send_done(e->srv, token, SJ_SRV_SEND_FAILED, sj_strerror(rc));

    pthread_mutex_lock(&e->mu);
    if (--e->active_sends == 0)
        pthread_cond_broadcast(&e->idle);
    pthread_mutex_unlock(&e->mu);
}

/* Listener thread. */
static void emu_handle(void *ud, const sj_request *req, sj_reply *reply)
{
    sj_emu *e = ud;
    int refuse;

    pthread_mutex_lock(&e->mu);
    refuse = e->refused[0] != '\0' && req->uri != NULL &&
             strcmp(req->uri, e->refused) == 0;
    pthread_mutex_unlock(&e->mu);
    if (refuse) {
        sj_reply_set(reply, req->req_id, SJ_STATUS_NO,
                     "refused by the emulator (sj_emu_refuse)", NULL);
        return;
    }
    /* A blank uri: Java never answers; the transport must answer
     * something, so the caller sees status 0 "internal error". */
    sj_srv_handle(e->srv, req, reply);
    if (e->on_request != NULL)
        e->on_request(e->on_request_ud, req, reply);
}

static long long emu_now(const sj_emu *e)
{
    return e->clock != NULL ? e->clock(e->clock_ud) : sj_mono_ms();
}

static void *ticker_main(void *arg)
{
    sj_emu *e = arg;
    struct timespec ts = {e->tick_ms / 1000,
                          (long)(e->tick_ms % 1000) * 1000000L};

    sj_log_thread_name("emu-tick");
    while (!atomic_load(&e->ticker_stop)) {
        sj_srv_tick(e->srv, emu_now(e));
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int sj_emu_create(const sj_emu_config *cfg, sj_emu **out)
{
    sj_emu_config def;
    sj_srv_ops ops;
    sj_emu *e;
    int rc = SJ_ENOMEM;

    if (out == NULL)
        return SJ_EINVAL;
    *out = NULL;
    memset(&def, 0, sizeof def);
    if (cfg == NULL)
        cfg = &def;
    if ((e = calloc(1, sizeof *e)) == NULL)
        return SJ_ENOMEM;
    if (pthread_mutex_init(&e->mu, NULL) != 0)
        goto fail_mutex;
    if (pthread_cond_init(&e->idle, NULL) != 0)
        goto fail_cond;
    e->host_id = dup_or(cfg->server_host_id, SJ_EMU_SERVER_HOST_ID);
    e->ip = dup_or(cfg->server_ip, "127.0.0.1");
    e->server_token = dup_or(cfg->server_token, SJ_EMU_SERVER_TOKEN);
    e->group_token = dup_or(cfg->srv.token, SJ_SRV_DEFAULT_TOKEN);
    if (!e->host_id || !e->ip || !e->server_token || !e->group_token)
        goto fail_strings;
    e->dispatch_ms = cfg->dispatch_timeout_ms > 0 ? cfg->dispatch_timeout_ms
                                                  : DEF_DISPATCH_MS;
    e->stop_ms = cfg->stop_timeout_ms > 0 ? cfg->stop_timeout_ms : DEF_STOP_MS;
    e->reconnect_ms =
        cfg->max_reconnect_ms > 0 ? cfg->max_reconnect_ms : DEF_RECONNECT_MS;
    e->tick_ms = cfg->tick_ms > 0 ? cfg->tick_ms : DEF_TICK_MS;
    e->clock = cfg->srv.clock;
    e->clock_ud = cfg->srv.clock_ud;
    e->on_request = cfg->on_request;
    e->on_request_ud = cfg->on_request_ud;

    ops.send = emu_send;
    ops.ud = e;
    if ((rc = sj_srv_create(&cfg->srv, &ops, &e->srv)) != 0)
        goto fail_strings;
    sj_transport_init();
    *out = e;
    return 0;

fail_strings:
    free(e->host_id);
    free(e->ip);
    free(e->server_token);
    free(e->group_token);
    pthread_cond_destroy(&e->idle);
fail_cond:
    pthread_mutex_destroy(&e->mu);
fail_mutex:
    free(e);
    return rc;
}

int sj_emu_start(sj_emu *e, const char *addr, int *port)
{
    sj_server *server = NULL;
    int bound = 0, rc;

    if (e == NULL || addr == NULL)
        return SJ_EINVAL;
    pthread_mutex_lock(&e->mu);
    rc = e->started ? SJ_EEXISTS : 0;
    pthread_mutex_unlock(&e->mu);
    if (rc != 0)
        return rc;

    if ((rc = sj_server_start(addr, emu_handle, e, &server, &bound)) != 0)
        return rc;
    pthread_mutex_lock(&e->mu);
    e->server = server;
    e->port = bound;
    e->started = 1;
    pthread_mutex_unlock(&e->mu);

    atomic_store(&e->ticker_stop, 0);
    if (pthread_create(&e->ticker, NULL, ticker_main, e) != 0) {
        sj_emu_stop(e);
        return SJ_ENOMEM;
    }
    e->ticker_on = 1;
    if (port != NULL)
        *port = bound;
    return 0;
}

void sj_emu_stop(sj_emu *e)
{
    emu_chan *chans;
    sj_server *server;
    size_t n;

    if (e == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    if (!e->started) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    e->started = 0; /* new sends are dropped from now on */
    while (e->active_sends > 0)
        pthread_cond_wait(&e->idle, &e->mu);
    chans = e->chans;
    n = e->n_chans;
    server = e->server;
    e->chans = NULL;
    e->n_chans = e->cap_chans = 0;
    e->server = NULL;
    pthread_mutex_unlock(&e->mu);

    if (e->ticker_on) {
        atomic_store(&e->ticker_stop, 1);
        pthread_join(e->ticker, NULL);
        e->ticker_on = 0;
    }
    sj_server_stop(server);
    /* Calls in flight complete with SJ_ECANCELED -> dropped. */
    for (size_t i = 0; i < n; i++) {
        sj_channel_close(chans[i].ch);
        free(chans[i].target);
    }
    free(chans);
    pthread_mutex_lock(&e->mu);
    e->port = 0;
    pthread_mutex_unlock(&e->mu);
}

void sj_emu_destroy(sj_emu *e)
{
    if (e == NULL)
        return;
    sj_emu_stop(e);
    sj_srv_destroy(e->srv);
    free(e->host_id);
    free(e->ip);
    free(e->server_token);
    free(e->group_token);
    pthread_cond_destroy(&e->idle);
    pthread_mutex_destroy(&e->mu);
    free(e);
    sj_transport_shutdown();
}

int sj_emu_open(const sj_emu_config *cfg, const char *addr, sj_emu **out,
                int *port)
{
    int rc = sj_emu_create(cfg, out);
    if (rc != 0)
        return rc;
    if ((rc = sj_emu_start(*out, addr, port)) != 0) {
        sj_emu_destroy(*out);
        *out = NULL;
    }
    return rc;
}

sj_srv *sj_emu_srv(sj_emu *e)
{
    return e != NULL ? e->srv : NULL;
}

void sj_emu_refuse(sj_emu *e, const char *uri)
{
    pthread_mutex_lock(&e->mu);
    snprintf(e->refused, sizeof e->refused, "%s", uri != NULL ? uri : "");
    pthread_mutex_unlock(&e->mu);
}

int sj_emu_port(sj_emu *e)
{
    int port;
    pthread_mutex_lock(&e->mu);
    port = e->port;
    pthread_mutex_unlock(&e->mu);
    return port;
}

int sj_emu_call(sj_emu *e, const char *target, const char *uri,
                const char *body, const char *sj_token, int timeout_ms,
                sj_reply *out)
{
    sj_channel_options opts = {.max_reconnect_ms = e->reconnect_ms};
    sj_channel *ch;
    sj_request req;
    char detail[256];
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = build_request(e, &req, uri, body, sj_token)) != 0)
        return rc;
    if ((rc = sj_channel_open(target, &opts, &ch)) != 0)
        goto fail_open;
    rc = sj_channel_call_sync(ch, &req, timeout_ms, NULL, out, detail,
                              sizeof detail);
    if (rc != 0)
        SJ_DEBUG("sj_emu: call to %s failed: %s", target, detail);
    sj_channel_close(ch);
fail_open:
    sj_request_free(&req);
    return rc;
}
