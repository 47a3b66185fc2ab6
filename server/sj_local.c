/*
 * sj_local.c - `snailjob-lua run` (see sj_local.h).
 *
 * The "bus" is one thread with one FIFO that carries both directions:
 * host->server calls (sj_link call/call_sync) and server->host deliveries
 * (sj_srv ops.send). Neither sj_srv_handle nor sj_endpoint_handle blocks,
 * so one thread suffices, and the FIFO keeps each direction in order.
 *
 * Locking: bus.mu guards the queue, the flags and the sync items' result
 * fields. It is never held while calling sj_srv, the endpoint or a
 * callback.
 */
#include "sj_local.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sj_builtins.h"
#include "sj_emu.h"
#include "sj_endpoint.h"
#include "sj_error.h"
#include "sj_link.h"
#include "sj_log.h"
#include "sj_pool.h"
#include "sj_text.h"
#include "sj_upstream.h"

#define TICK_MS 20
#define CONNECT_WAIT_MS 5000 /* the host's first beat reaches sj_srv */
#define DRAIN_WAIT_MS 3000   /* stopped tasks end after the batch did */
#define UPSTREAM_GRACE_MS 3000
#define HARD_EXTRA_MS 15000 /* batch still open after timeout + this */
#define MAX_NODES 64
#define DEFAULT_PORT 17889 /* simulated nodes' port label */

/* ---- the bus ------------------------------------------------------------- */

typedef enum item_kind {
    IT_CALL, /* host->server, asynchronous: cb on the bus thread */
    IT_SYNC, /* host->server, a caller waits for `done` */
    IT_SEND  /* server->host delivery, outcome to sj_srv_send_done */
} item_kind;

typedef struct item {
    struct item *next;
    item_kind kind;
    sj_request req; /* owned */
    sj_call_cb cb;  /* IT_CALL */
    void *ud;
    int done, abandoned, err; /* IT_SYNC, under bus.mu */
    sj_reply reply;           /* IT_SYNC result */
    uint64_t token;           /* IT_SEND */
    int is_stop;
} item;

typedef struct bus {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* item queued / sync item done / call finished */
    item *head, *tail;
    int stopping;  /* no more deliveries: drop them */
    int link_open; /* the link accepts calls */
    int up_busy;   /* host->server items being processed */
    pthread_t thread;
    int thread_on;
    sj_srv *srv;
    sj_endpoint *ep;
    const char *token; /* SJ-TOKEN of deliveries (the group token) */
    atomic_llong next_req_id;
} bus;

static void item_free(item *it)
{
    sj_request_free(&it->req);
    sj_reply_free(&it->reply);
    free(it);
}

/* mu held */
static void push(bus *b, item *it)
{
    it->next = NULL;
    if (b->tail)
        b->tail->next = it;
    else
        b->head = it;
    b->tail = it;
    pthread_cond_broadcast(&b->cond);
}

/* mu held; 1 if `it` was still queued (and is now unlinked). */
static int unlink_item(bus *b, item *it)
{
    item *prev = NULL;
    for (item *p = b->head; p != NULL; prev = p, p = p->next) {
        if (p != it)
            continue;
        if (prev)
            prev->next = p->next;
        else
            b->head = p->next;
        if (b->tail == p)
            b->tail = prev;
        return 1;
    }
    return 0;
}

/* The server->client headers of protocol.md §3.2, as sj_emu sends them. */
static int server_request(bus *b, const char *uri, const char *body,
                          sj_request *r)
{
    memset(r, 0, sizeof *r);
    r->req_id = atomic_fetch_add(&b->next_req_id, 1) + 1;
    if (sj_wire_set(&r->uri, uri) != 0 || sj_wire_set(&r->body, body) != 0 ||
        sj_request_add_header(r, "SJ-TOKEN", b->token) != 0 ||
        sj_request_add_header(r, "host-id", SJ_EMU_SERVER_HOST_ID) != 0 ||
        sj_request_add_header(r, "host-ip", "127.0.0.1") != 0 ||
        sj_request_add_header(r, "host-port", "0") != 0 ||
        sj_request_add_header(r, "group-name", SJ_EMU_SERVER_GROUP) != 0 ||
        sj_request_add_header(r, "token", SJ_EMU_SERVER_TOKEN) != 0) {
        sj_request_free(r);
        return SJ_ENOMEM;
    }
    return 0;
}

/* The endpoint's reply classified as sj_emu does (GrpcClientInvokeHandlerV2,
 * RequestClientActor): a stop is accepted once answered; a dispatch only
 * with status 1 and data true. */
static void deliver(bus *b, item *it)
{
    sj_reply reply = {0};
    json_t *data = NULL;
    const char *msg = NULL;
    int outcome;

    sj_endpoint_handle(b->ep, &it->req, &reply);
    if (reply.data != NULL && reply.data[0] != '\0' &&
        ((data = json_loads(reply.data, JSON_DECODE_ANY, NULL)) == NULL ||
         json_is_object(data) || json_is_array(data))) {
        outcome = SJ_SRV_SEND_FAILED;
        msg = "reply data is not a JSON boolean";
    } else if (it->is_stop ||
               (reply.status == SJ_STATUS_YES && json_is_true(data))) {
        outcome = SJ_SRV_SEND_ACCEPTED;
    } else {
        outcome = SJ_SRV_SEND_REJECTED;
        msg = reply.message != NULL ? reply.message : "";
    }
    sj_srv_send_done(b->srv, it->token, outcome, msg);
    json_decref(data);
    sj_reply_free(&reply);
}

static void *bus_main(void *arg)
{
    bus *b = arg;

    sj_log_thread_name("local-link");
    pthread_mutex_lock(&b->mu);
    for (;;) {
        item *it;
        item_kind kind;
        int rc, stopping;
        sj_reply reply = {0};

        while (b->head == NULL && !b->stopping)
            pthread_cond_wait(&b->cond, &b->mu);
        if (b->head == NULL)
            break;
        it = b->head;
        unlink_item(b, it);
        stopping = b->stopping;
        kind = it->kind;
        if (kind != IT_SEND)
            b->up_busy++;
        pthread_mutex_unlock(&b->mu);

        switch (kind) {
        case IT_SEND:
            if (stopping)
                sj_srv_send_done(b->srv, it->token, SJ_SRV_SEND_DROPPED, NULL);
            else
                deliver(b, it);
            item_free(it);
            break;
        case IT_CALL:
            rc = sj_srv_handle(b->srv, &it->req, &reply);
            /* A blank uri is never answered: the caller's deadline. */
            it->cb(it->ud, rc == 0 ? 0 : SJ_ETIMEOUT,
                   rc == 0 ? NULL : "no answer (blank uri)", &reply);
            sj_reply_free(&reply);
            item_free(it);
            break;
        case IT_SYNC:
            rc = sj_srv_handle(b->srv, &it->req, &reply);
            pthread_mutex_lock(&b->mu);
            if (it->abandoned) {
                sj_reply_free(&reply);
                item_free(it);
            } else {
                it->reply = reply;
                it->err = rc == 0 ? 0 : SJ_ETIMEOUT;
                it->done = 1;
            }
            pthread_mutex_unlock(&b->mu);
            break;
        }

        pthread_mutex_lock(&b->mu);
        if (kind != IT_SEND)
            b->up_busy--;
        pthread_cond_broadcast(&b->cond);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* sj_srv_ops.send: any thread, never with sj_srv's mutex held. */
static void bus_send(void *ud, const sj_srv_node *node, const char *uri,
                     const char *body, uint64_t token)
{
    bus *b = ud;
    item *it = calloc(1, sizeof *it);
    (void)node; /* every simulated node is the one in-process pool */

    if (it == NULL || server_request(b, uri, body, &it->req) != 0) {
        free(it);
        sj_srv_send_done(b->srv, token, SJ_SRV_SEND_FAILED, "out of memory");
        return;
    }
    it->kind = IT_SEND;
    it->token = token;
    it->is_stop = strcmp(uri, SJ_SRV_URI_STOP) == 0;
    pthread_mutex_lock(&b->mu);
    if (b->stopping) {
        pthread_mutex_unlock(&b->mu);
        item_free(it);
        sj_srv_send_done(b->srv, token, SJ_SRV_SEND_DROPPED, NULL);
        return;
    }
    push(b, it);
    pthread_mutex_unlock(&b->mu);
}

static int bus_start(bus *b)
{
    pthread_condattr_t ca;

    if (pthread_mutex_init(&b->mu, NULL) != 0)
        return SJ_ENOMEM;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&b->cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&b->mu);
        return SJ_ENOMEM;
    }
    pthread_condattr_destroy(&ca);
    if (pthread_create(&b->thread, NULL, bus_main, b) != 0) {
        pthread_cond_destroy(&b->cond);
        pthread_mutex_destroy(&b->mu);
        return SJ_ENOMEM;
    }
    b->thread_on = 1;
    return 0;
}

/* After the link was closed: drop what is left, join, free. */
static void bus_stop(bus *b)
{
    if (!b->thread_on)
        return;
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    b->thread_on = 0;
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->mu);
}

/* ---- the local link (sj_link.h) ----------------------------------------- */

typedef struct local_link {
    sj_link base;
    bus *b;
} local_link;

/* A new bus item of `kind` carrying a copy of `req`; NULL on ENOMEM. */
static item *call_item(const sj_request *req, item_kind kind)
{
    item *it = calloc(1, sizeof *it);

    if (it != NULL && sj_request_copy(&it->req, req) != 0) {
        free(it);
        it = NULL;
    }
    if (it != NULL)
        it->kind = kind;
    return it;
}

static int ll_call(sj_link *self, const sj_request *req, int timeout_ms,
                   sj_call_cb cb, void *ud)
{
    bus *b = ((local_link *)self)->b;
    item *it = call_item(req, IT_CALL);
    (void)timeout_ms; /* sj_srv answers at once */

    if (it == NULL)
        return SJ_ENOMEM;
    it->cb = cb;
    it->ud = ud;
    pthread_mutex_lock(&b->mu);
    if (!b->link_open) {
        pthread_mutex_unlock(&b->mu);
        item_free(it);
        return SJ_ECLOSED;
    }
    push(b, it);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

static int ll_call_sync(sj_link *self, const sj_request *req, int timeout_ms,
                        const atomic_int *cancel, sj_reply *out, char *detail,
                        size_t detail_len)
{
    bus *b = ((local_link *)self)->b;
    long long until = sj_mono_ms() + (timeout_ms > 0 ? timeout_ms : 60000);
    item *it = call_item(req, IT_SYNC);
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (it == NULL)
        return SJ_ENOMEM;
    pthread_mutex_lock(&b->mu);
    if (!b->link_open) {
        pthread_mutex_unlock(&b->mu);
        item_free(it);
        return SJ_ECLOSED;
    }
    push(b, it);
    while (!it->done) {
        long long now = sj_mono_ms(), wake = now + 10;
        struct timespec ts = {wake / 1000, (wake % 1000) * 1000000};
        if ((cancel != NULL && atomic_load(cancel) != 0) || now >= until) {
            rc = now >= until ? SJ_ETIMEOUT : SJ_ECANCELED;
            break;
        }
        pthread_cond_timedwait(&b->cond, &b->mu, &ts);
    }
    if (it->done) {
        rc = it->err;
        if (rc == 0) {
            *out = it->reply;
            memset(&it->reply, 0, sizeof it->reply);
        }
        item_free(it);
    } else if (unlink_item(b, it)) {
        item_free(it); /* never reached the server */
    } else {
        it->abandoned = 1; /* the bus thread frees it */
    }
    pthread_mutex_unlock(&b->mu);
    if (rc != 0 && detail != NULL)
        snprintf(detail, detail_len, "local server: %s", sj_strerror(rc));
    return rc;
}

/* Cancel queued calls (their callbacks run with SJ_ECANCELED), wait for
 * the one being handled, free. Deliveries stay queued for the bus. */
static void ll_close(sj_link *self)
{
    bus *b = ((local_link *)self)->b;
    item *canceled = NULL, **tailp = &canceled, *prev = NULL, *p, *next;

    pthread_mutex_lock(&b->mu);
    b->link_open = 0;
    for (p = b->head; p != NULL; p = next) {
        next = p->next;
        if (p->kind == IT_SEND) {
            prev = p;
            continue;
        }
        if (prev)
            prev->next = next;
        else
            b->head = next;
        if (b->tail == p)
            b->tail = prev;
        if (p->kind == IT_SYNC) {
            p->err = SJ_ECANCELED;
            p->done = 1; /* its waiter frees it */
        } else {
            p->next = NULL;
            *tailp = p;
            tailp = &p->next;
        }
    }
    pthread_cond_broadcast(&b->cond);
    while (b->up_busy > 0)
        pthread_cond_wait(&b->cond, &b->mu);
    pthread_mutex_unlock(&b->mu);
    for (p = canceled; p != NULL; p = next) {
        sj_reply empty = {0};
        next = p->next;
        p->cb(p->ud, SJ_ECANCELED, "link closed", &empty);
        item_free(p);
    }
    free(self);
}

static int local_link_open(bus *b, sj_link **out)
{
    local_link *l = calloc(1, sizeof *l);

    if (l == NULL)
        return SJ_ENOMEM;
    l->base.call = ll_call;
    l->base.call_sync = ll_call_sync;
    l->base.close = ll_close;
    l->b = b;
    pthread_mutex_lock(&b->mu);
    b->link_open = 1;
    pthread_mutex_unlock(&b->mu);
    *out = &l->base;
    return 0;
}

/* ---- the host side: endpoint ops over the pool -------------------------- */

/* As main.c's host: dispatches are refused until the pool exists and once
 * it is being stopped. */
typedef struct local_host {
    _Atomic(sj_pool *) pool;
} local_host;

static int lh_dispatch(void *ud, sj_task *t, char *why, size_t whylen)
{
    sj_pool *pool = atomic_load(&((local_host *)ud)->pool);
    if (pool == NULL) {
        snprintf(why, whylen, "snailjob-lua is starting or stopping");
        return SJ_ECLOSED;
    }
    return sj_pool_dispatch(pool, t, why, whylen);
}

static void lh_stop(void *ud, int64_t batch)
{
    sj_pool *pool = atomic_load(&((local_host *)ud)->pool);
    if (pool != NULL)
        sj_pool_stop_batch(pool, batch);
}

/* ---- names ----------------------------------------------------------------
 */

static const char *const type_words[] = {NULL,       "cluster", "broadcast",
                                         "sharding", "map",     "mapreduce"};

const char *sj_local_type_name(int task_type)
{
    return task_type >= SJ_SRV_CLUSTER && task_type <= SJ_SRV_MAP_REDUCE
               ? type_words[task_type]
               : "?";
}

int sj_local_type_parse(const char *word)
{
    if (word == NULL)
        return 0;
    for (int i = SJ_SRV_CLUSTER; i <= SJ_SRV_MAP_REDUCE; i++)
        if (strcasecmp(word, type_words[i]) == 0)
            return i;
    if (strcasecmp(word, "map_reduce") == 0 ||
        strcasecmp(word, "map-reduce") == 0)
        return SJ_SRV_MAP_REDUCE;
    return 0;
}

const char *sj_local_status_name(int status)
{
    switch (status) {
    case SJ_SRV_WAITING:
        return "WAITING";
    case SJ_SRV_RUNNING:
        return "RUNNING";
    case SJ_SRV_SUCCESS:
        return "SUCCESS";
    case SJ_SRV_FAIL:
        return "FAIL";
    case SJ_SRV_STOP:
        return "STOP";
    case SJ_SRV_CANCEL:
        return "CANCEL";
    }
    return "?";
}

static const char *reason_name(int reason)
{
    switch (reason) {
    case SJ_SRV_REASON_TIMEOUT:
        return "executor timeout";
    case SJ_SRV_REASON_NOT_CLIENT:
        return "no client";
    case SJ_SRV_REASON_MANUAL_STOP:
        return "stopped";
    }
    return NULL;
}

static const char *stage_name(int stage)
{
    switch (stage) {
    case SJ_SRV_STAGE_MAP:
        return "MAP";
    case SJ_SRV_STAGE_REDUCE:
        return "REDUCE";
    case SJ_SRV_STAGE_MERGE:
        return "MERGE";
    }
    return NULL;
}

/* "no executor named 'x' ... did you mean 'y'?" into err. */
static void unknown_executor(const char *name, const char *const *names,
                             size_t n, char *err, size_t errlen)
{
    size_t best[3] = {0}, bestd[3] = {(size_t)-1, (size_t)-1, (size_t)-1};
    size_t len = strlen(name), limit = len / 3 > 2 ? len / 3 : 2, k = 0;
    int off;

    for (size_t i = 0; i < n; i++) {
        size_t d = sj_text_distance(name, names[i], 1);
        if (strcasestr(names[i], name) != NULL ||
            strcasestr(name, names[i]) != NULL)
            d = d < limit ? d : limit; /* a part of the name counts too */
        for (size_t s = 0; s < 3; s++) {
            if (d < bestd[s]) {
                for (size_t m = 2; m > s; m--) {
                    bestd[m] = bestd[m - 1];
                    best[m] = best[m - 1];
                }
                bestd[s] = d;
                best[s] = i;
                break;
            }
        }
    }
    off = snprintf(err, errlen, "no executor named '%s'", name);
    for (size_t s = 0; s < 3 && off >= 0 && (size_t)off < errlen; s++) {
        if (bestd[s] > limit)
            break;
        off += snprintf(err + off, errlen - (size_t)off, "%s'%s'",
                        k++ == 0 ? "; did you mean " : " or ", names[best[s]]);
    }
    if (off >= 0 && (size_t)off < errlen && k > 0)
        off += snprintf(err + off, errlen - (size_t)off, "?");
    if (off >= 0 && (size_t)off < errlen) {
        off += snprintf(err + off, errlen - (size_t)off,
                        n == 0 ? " (no executors are loaded)" : " (loaded: ");
        for (size_t i = 0; i < n && i < 20 && off >= 0 && (size_t)off < errlen;
             i++)
            off += snprintf(err + off, errlen - (size_t)off, "%s%s",
                            i ? ", " : "", names[i]);
        if (n > 20 && off >= 0 && (size_t)off < errlen)
            off += snprintf(err + off, errlen - (size_t)off, ", ...");
        if (n > 0 && off >= 0 && (size_t)off < errlen)
            snprintf(err + off, errlen - (size_t)off, ")");
    }
}

/* ---- the run ------------------------------------------------------------- */

static int final_status(int st)
{
    return st == SJ_SRV_SUCCESS || st == SJ_SRV_FAIL || st == SJ_SRV_STOP ||
           st == SJ_SRV_CANCEL;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Replace the value of header `key` (which the request has). */
static int set_header(sj_request *req, const char *key, const char *value)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcmp(req->headers[i].key, key) == 0)
            return sj_wire_set(&req->headers[i].value, value);
    return sj_request_add_header(req, key, value);
}

/* One /beat per extra simulated node, with the host's own headers but
 * another host-id and port. */
static int beat_extra_nodes(sj_srv *srv, sj_upstream *up, int nodes,
                            int base_port, char *err, size_t errlen)
{
    for (int i = 2; i <= nodes; i++) {
        sj_request req;
        sj_reply reply = {0};
        char id[32], port[16];
        int rc;

        snprintf(id, sizeof id, "local-%d", i);
        snprintf(port, sizeof port, "%d", base_port + i - 1);
        if ((rc = sj_upstream_request(up, "/beat", "[\"PING\"]", &req)) ||
            (rc = set_header(&req, "host-id", id)) ||
            (rc = set_header(&req, "host-port", port))) {
            sj_request_free(&req);
            snprintf(err, errlen, "cannot build a beat: %s", sj_strerror(rc));
            return rc;
        }
        rc = sj_srv_handle(srv, &req, &reply);
        if (rc == 0 && reply.status != SJ_STATUS_YES) {
            snprintf(err, errlen, "simulated node %s refused: %s", id,
                     reply.message ? reply.message : "status 0");
            rc = SJ_EREFUSED;
        }
        sj_reply_free(&reply);
        sj_request_free(&req);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_options(const sj_local_options *o, char *err, size_t errlen)
{
    if (o == NULL || o->cfg == NULL || o->executor == NULL ||
        o->executor[0] == '\0') {
        snprintf(err, errlen, "an executor name is required");
        return SJ_EINVAL;
    }
    if (o->task_type < 0 || o->task_type > SJ_SRV_MAP_REDUCE) {
        snprintf(err, errlen, "unknown task type %d", o->task_type);
        return SJ_EINVAL;
    }
    if (o->nodes > MAX_NODES) {
        snprintf(err, errlen, "--nodes: at most %d simulated nodes", MAX_NODES);
        return SJ_EINVAL;
    }
    if (o->wf_context != NULL) {
        json_error_t je;
        json_t *ctx = json_loads(o->wf_context, JSON_DECODE_ANY, &je);
        int ok = json_is_object(ctx);
        json_decref(ctx);
        if (!ok) {
            snprintf(err, errlen,
                     "--wf-context: expected a JSON object, got '%s'%s%s",
                     o->wf_context, ctx == NULL ? ": " : "",
                     ctx == NULL ? je.text : "");
            return SJ_EINVAL;
        }
    }
    if (o->task_type == SJ_SRV_SHARDING) {
        json_t *arr = o->params ? json_loads(o->params, 0, NULL) : NULL;
        int ok = json_is_array(arr) && json_array_size(arr) > 0;
        for (size_t i = 0; ok && i < json_array_size(arr); i++) {
            json_t *v = json_array_get(arr, i);
            ok = json_is_string(v) || json_is_number(v);
        }
        json_decref(arr);
        if (!ok) {
            snprintf(err, errlen,
                     "sharding: --params must be a non-empty JSON list of "
                     "strings, one per shard (e.g. '[\"a\",\"b\"]')");
            return SJ_EINVAL;
        }
    }
    return 0;
}

static void collect(sj_srv *srv, int64_t id, sj_local_report *r);

int sj_local_run(const sj_local_options *o, sj_local_report *out, char *err,
                 size_t errlen)
{
    sj_srv_config sc = {0};
    sj_srv_ops ops;
    sj_srv *srv = NULL;
    bus b;
    local_host lh;
    sj_endpoint ep;
    sj_link *link = NULL;
    sj_upstream *up = NULL;
    sj_pool *pool = NULL;
    const char *const *names = NULL, *const *kinds = NULL;
    const char *kind = NULL;
    sj_srv_job job = {0};
    sigset_t set;
    size_t n = 0, ix;
    int rc, nodes, timeout_s, base_port, st = 0;
    int64_t id = 0;
    long long t0;

    memset(out, 0, sizeof *out);
    memset(&b, 0, sizeof b);
    if ((rc = check_options(o, err, errlen)) != 0)
        return rc;
    nodes = o->nodes > 0 ? o->nodes : 1;
    timeout_s = o->timeout_s > 0 ? o->timeout_s : SJ_LOCAL_DEFAULT_TIMEOUT;
    base_port = o->cfg->host_port > 0 ? o->cfg->host_port : DEFAULT_PORT;
    if (base_port + nodes - 1 > 65535)
        base_port = DEFAULT_PORT;

    sigemptyset(&set);
    if (o->handle_signals) {
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    }

    /* The server's half: the group of the config, beats applied at once,
     * nodes that never expire during a run. */
    sc.namespace_id = o->cfg->namespace_id;
    sc.group_name = o->cfg->group_name;
    sc.token = o->cfg->token;
    sc.expire_ms = 24 * 3600 * 1000;
    sc.complete_on_nonleaf = 1;
    ops.send = bus_send;
    ops.ud = &b;
    b.token = o->cfg->token;
    atomic_init(&b.next_req_id, 0);
    if ((rc = sj_srv_create(&sc, &ops, &srv)) != 0) {
        snprintf(err, errlen, "cannot create the local server: %s",
                 sj_strerror(rc));
        goto fail_srv;
    }
    b.srv = srv;

    /* The host's half, wired as serve() wires it. */
    atomic_init(&lh.pool, NULL);
    memset(&ep, 0, sizeof ep);
    ep.token = o->cfg->token;
    ep.ops.dispatch = lh_dispatch;
    ep.ops.stop = lh_stop;
    ep.ops.ud = &lh;
    b.ep = &ep;
    if ((rc = bus_start(&b)) != 0) {
        snprintf(err, errlen, "cannot start the local link thread");
        goto fail_srv;
    }
    if ((rc = local_link_open(&b, &link)) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail_bus;
    }
    sj_upstream_options uo = {.cfg = o->cfg,
                              .host_id = "local-1",
                              .host_port = base_port,
                              .link = link,
                              .no_spool = 1};
    if ((rc = sj_upstream_start(&uo, &up, err, errlen)) != 0) {
        link->close(link);
        goto fail_bus;
    }
    sj_pool_options po = {.workers = o->cfg->workers,
                          .queue_size = o->cfg->queue_size,
                          .files = o->files,
                          .n_files = o->n_files,
                          .up = up};
    sj_pool_options_from_config(&po, o->cfg);
    if ((rc = sj_pool_start(&po, &pool, err, errlen)) != 0)
        goto fail_upstream;

    n = sj_pool_executors(pool, &names, &kinds);
    for (ix = 0; ix < n && kind == NULL; ix++)
        if (strcmp(names[ix], o->executor) == 0)
            kind = kinds[ix];
    if (kind != NULL)
        out->kind = strcmp(kind, "map") == 0          ? "map"
                    : strcmp(kind, "map_reduce") == 0 ? "map_reduce"
                                                      : "job";
    if (kind == NULL) {
        if (!sj_builtins_hint(o->executor, sj_builtins_mask(o->cfg->builtins),
                              err, errlen))
            unknown_executor(o->executor, names, n, err, errlen);
        rc = SJ_ENOENT;
        goto fail_pool;
    }
    sj_upstream_set_executors(up, names, n);
    atomic_store(&lh.pool, pool);

    /* The host registers itself by its first beat (sent at start). */
    for (long long until = sj_mono_ms() + CONNECT_WAIT_MS;
         !sj_upstream_connected(up, NULL, 0);) {
        if (sj_mono_ms() >= until) {
            char why[512];
            sj_upstream_connected(up, why, sizeof why);
            snprintf(err, errlen,
                     "the local server did not accept the "
                     "host's beat: %s",
                     why);
            rc = SJ_EREFUSED;
            goto fail_pool;
        }
        sleep_ms(2);
    }
    if ((rc = beat_extra_nodes(srv, up, nodes, base_port, err, errlen)))
        goto fail_pool;

    job.job_id = 1;
    job.task_type = o->task_type                      ? o->task_type
                    : strcmp(kind, "map") == 0        ? SJ_SRV_MAP
                    : strcmp(kind, "map_reduce") == 0 ? SJ_SRV_MAP_REDUCE
                                                      : SJ_SRV_CLUSTER;
    job.executor_info = o->executor;
    job.args = o->params;
    job.shard_num = o->shards > 0 ? o->shards : 1;
    job.executor_timeout = timeout_s;
    job.parallel_num = o->cfg->workers > 0 ? o->cfg->workers : 1;
    job.executor_type = o->cfg->executor_type;
    if (o->wf_context != NULL) {
        job.workflow_task_batch_id = 1;
        job.workflow_node_id = 1;
        job.wf_context = o->wf_context;
    }
    t0 = sj_mono_ms();
    if ((rc = sj_srv_trigger(srv, &job, &id)) != 0) {
        snprintf(err, errlen, "the local server refused the job: %s",
                 sj_strerror(rc));
        goto fail_pool;
    }
    {
        long long hard = t0 + (long long)timeout_s * 1000 + HARD_EXTRA_MS;
        int stop_sent = 0;
        while (!final_status(st = sj_srv_batch_status(srv, id))) {
            long long now = sj_mono_ms();
            sj_srv_tick(srv, now);
            if (now >= hard && !stop_sent) {
                SJ_WARN("batch still open %d s after its timeout: stopping "
                        "it",
                        HARD_EXTRA_MS / 1000);
                sj_srv_stop_batch(srv, id);
                stop_sent = 1;
            }
            if (o->handle_signals) {
                struct timespec ts = {0, TICK_MS * 1000000L};
                int sig = sigtimedwait(&set, NULL, &ts);
                if (sig > 0 && !stop_sent) {
                    SJ_WARN("%s: stopping the batch",
                            sig == SIGINT ? "SIGINT" : "SIGTERM");
                    sj_srv_stop_batch(srv, id);
                    stop_sent = 1;
                }
            } else {
                sleep_ms(TICK_MS);
            }
        }
    }
    out->elapsed_ms = sj_mono_ms() - t0;

    /* Let stopped or late tasks end (their logs say why) before the
     * shutdown interrupts them. */
    for (long long until = sj_mono_ms() + DRAIN_WAIT_MS;
         sj_mono_ms() < until;) {
        size_t queued, running;
        sj_pool_counts(pool, &queued, &running);
        if (queued == 0 && running == 0)
            break;
        sj_srv_tick(srv, sj_mono_ms());
        sleep_ms(5);
    }
    rc = 0;

fail_pool:
    atomic_store(&lh.pool, NULL);
    sj_pool_stop(pool);
fail_upstream:
    sj_upstream_stop(up, UPSTREAM_GRACE_MS); /* flushes logs, closes link */
fail_bus:
    bus_stop(&b);
    if (rc == 0) {
        out->executor = strdup(o->executor);
        out->task_type = job.task_type;
        out->nodes = nodes;
        out->status = st;
        out->wf_context_in =
            strdup(o->wf_context != NULL ? o->wf_context : "{}");
        collect(srv, id, out);
    }
fail_srv:
    sj_srv_destroy(srv);
    if (o->handle_signals)
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return rc;
}

/* ---- the report -----------------------------------------------------------
 */

static char *field_value(const json_t *fields, const char *name)
{
    size_t i;
    const json_t *f;

    json_array_foreach(fields, i, f)
    {
        const char *n = json_string_value(json_object_get(f, "name"));
        const char *v = json_string_value(json_object_get(f, "value"));
        if (n != NULL && strcmp(n, name) == 0)
            return strdup(v != NULL ? v : "");
    }
    return strdup("");
}

static void collect(sj_srv *srv, int64_t id, sj_local_report *r)
{
    sj_srv_batch_info *bv;
    size_t nb, nl = sj_srv_log_count(srv);

    r->batch_id = id;
    if (sj_srv_batches(srv, &bv, &nb) == 0) {
        for (size_t i = 0; i < nb; i++)
            if (bv[i].batch_id == id)
                r->reason = bv[i].reason;
        sj_srv_batches_free(bv, nb);
    }
    if (sj_srv_batch_tasks(srv, id, &r->tasks, &r->n_tasks) != 0) {
        r->tasks = NULL;
        r->n_tasks = 0;
    }
    if (sj_srv_batch_result(srv, id, &r->result) != 0)
        r->result = NULL;
    if (sj_srv_batch_wf_context(srv, id, &r->wf_context) != 0)
        r->wf_context = strdup("{}");

    r->logs = calloc(nl ? nl : 1, sizeof *r->logs);
    for (size_t i = 0; r->logs != NULL && i < nl; i++) {
        char *text = NULL;
        json_t *rec, *fields;
        json_int_t batch;
        sj_local_log *l;

        if (sj_srv_log_get(srv, i, &text) != 0)
            continue;
        rec = json_loads(text, 0, NULL);
        free(text);
        batch = json_integer_value(json_object_get(rec, "taskBatchId"));
        if (rec == NULL || batch != id) {
            json_decref(rec);
            continue;
        }
        fields = json_object_get(rec, "fieldList");
        l = &r->logs[r->n_logs++];
        l->task_id = json_integer_value(json_object_get(rec, "taskId"));
        l->level = field_value(fields, "level");
        l->location = field_value(fields, "location");
        l->message = field_value(fields, "message");
        {
            char *stamp = field_value(fields, "time_stamp");
            l->time_ms = stamp != NULL ? atoll(stamp) : 0;
            free(stamp);
        }
        json_decref(rec);
    }
}

void sj_local_report_free(sj_local_report *r)
{
    if (r == NULL)
        return;
    free(r->executor);
    free(r->result);
    free(r->wf_context_in);
    free(r->wf_context);
    sj_srv_tasks_free(r->tasks, r->n_tasks);
    for (size_t i = 0; i < r->n_logs; i++) {
        free(r->logs[i].level);
        free(r->logs[i].location);
        free(r->logs[i].message);
    }
    free(r->logs);
    memset(r, 0, sizeof *r);
}

/* Keys of `now` whose value differs from `before`, and keys of `before`
 * that are gone (as null). New reference. */
static json_t *changed_keys(const char *before_text, const char *now_text)
{
    json_t *before = json_loads(before_text ? before_text : "{}", 0, NULL);
    json_t *now = json_loads(now_text ? now_text : "{}", 0, NULL);
    json_t *ch = json_object(), *v;
    const char *k;

    json_object_foreach(now, k, v)
    {
        if (!json_equal(v, json_object_get(before, k)))
            json_object_set(ch, k, v);
    }
    json_object_foreach(before, k, v)
    {
        if (json_object_get(now, k) == NULL)
            json_object_set_new(ch, k, json_null());
    }
    json_decref(before);
    json_decref(now);
    return ch;
}

static size_t task_index(const sj_local_report *r, int64_t task_id)
{
    for (size_t i = 0; i < r->n_tasks; i++)
        if (r->tasks[i].task_id == task_id)
            return i;
    return (size_t)-1;
}

static void clock_text(long long ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || localtime_r(&t, &tm) == NULL) {
        snprintf(buf, len, "-");
        return;
    }
    snprintf(buf, len, "%02d:%02d:%02d.%03lld", tm.tm_hour, tm.tm_min,
             tm.tm_sec, ms % 1000);
}

void sj_local_print(const sj_local_report *r, FILE *out)
{
    const char *why = reason_name(r->reason);
    json_t *ch = changed_keys(r->wf_context_in, r->wf_context);
    char *chtext = json_dumps(ch, JSON_COMPACT);

    fprintf(out, "executor  %s (%s), run as %s on %d node%s\n", r->executor,
            r->kind ? r->kind : "?", sj_local_type_name(r->task_type), r->nodes,
            r->nodes == 1 ? "" : "s");
    fprintf(out, "batch     %" PRId64 "\n\n", r->batch_id);
    fprintf(out, "tasks (%zu)\n", r->n_tasks);
    for (size_t i = 0; i < r->n_tasks; i++) {
        const sj_srv_task_info *t = &r->tasks[i];
        const char *stage = stage_name(t->mr_stage);
        size_t parent = task_index(r, t->parent_id);
        fprintf(out, "  #%-3zu %-20s %-8s", i + 1, t->name,
                sj_local_status_name(t->status));
        if (stage != NULL)
            fprintf(out, " stage %s", stage);
        if (t->parent_id != 0 && parent != (size_t)-1)
            fprintf(out, " parent #%zu", parent + 1);
        fprintf(out, " on %s\n", t->host_id ? t->host_id : "(none)");
        if (t->result != NULL && t->result[0] != '\0')
            fprintf(out, "        result:  %s\n", t->result);
        if (t->status != SJ_SRV_SUCCESS && t->message != NULL &&
            t->message[0] != '\0')
            fprintf(out, "        message: %s\n", t->message);
    }
    fprintf(out, "\nstatus    %s", sj_local_status_name(r->status));
    if (why != NULL && r->status != SJ_SRV_SUCCESS)
        fprintf(out, " (%s)", why);
    fprintf(out, " in %.2f s\n", (double)r->elapsed_ms / 1000.0);
    fprintf(out, "result    %s\n",
            r->result && r->result[0] ? r->result : "(none)");
    fprintf(out, "wf_context %s\n", r->wf_context ? r->wf_context : "{}");
    fprintf(out, "  changed %s\n",
            json_object_size(ch) ? (chtext ? chtext : "?") : "(nothing)");

    fprintf(out, "\nlogs (%zu line%s)\n", r->n_logs, r->n_logs == 1 ? "" : "s");
    for (size_t i = 0; i < r->n_tasks; i++) {
        const sj_srv_task_info *t = &r->tasks[i];
        int header = 0;
        for (size_t j = 0; j < r->n_logs; j++) {
            const sj_local_log *l = &r->logs[j];
            char when[32];
            if (l->task_id != t->task_id)
                continue;
            if (!header++)
                fprintf(out, "  #%zu %s\n", i + 1, t->name);
            clock_text(l->time_ms, when, sizeof when);
            fprintf(out, "    %s %-5s %s%s%s\n", when, l->level,
                    l->location[0] ? l->location : "",
                    l->location[0] ? " " : "", l->message);
        }
    }
    free(chtext);
    json_decref(ch);
}

/* A string, or null for NULL. */
static json_t *text_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

int sj_local_print_json(const sj_local_report *r, FILE *out)
{
    json_t *o = json_object(), *tasks = json_array(), *logs = json_array();
    json_t *ctx = json_loads(r->wf_context ? r->wf_context : "{}", 0, NULL);
    const char *why = reason_name(r->reason);
    int rc;

    if (o == NULL || tasks == NULL || logs == NULL) {
        json_decref(o);
        json_decref(tasks);
        json_decref(logs);
        json_decref(ctx);
        return SJ_ENOMEM;
    }
    json_object_set_new(o, "status",
                        json_string(sj_local_status_name(r->status)));
    json_object_set_new(o, "result", text_or_null(r->result));
    json_object_set_new(o, "reason", why ? json_string(why) : json_null());
    json_object_set_new(o, "executor", json_string(r->executor));
    json_object_set_new(o, "kind", json_string(r->kind ? r->kind : "?"));
    json_object_set_new(o, "type",
                        json_string(sj_local_type_name(r->task_type)));
    json_object_set_new(o, "nodes", json_integer(r->nodes));
    json_object_set_new(o, "batch_id", json_integer(r->batch_id));
    json_object_set_new(o, "elapsed_ms", json_integer(r->elapsed_ms));
    for (size_t i = 0; i < r->n_tasks; i++) {
        const sj_srv_task_info *t = &r->tasks[i];
        const char *stage = stage_name(t->mr_stage);
        json_t *jt = json_object();
        json_object_set_new(jt, "id", json_integer(t->task_id));
        json_object_set_new(jt, "parent_id", json_integer(t->parent_id));
        json_object_set_new(jt, "name", json_string(t->name));
        json_object_set_new(jt, "stage",
                            stage ? json_string(stage) : json_null());
        json_object_set_new(jt, "status",
                            json_string(sj_local_status_name(t->status)));
        json_object_set_new(jt, "host_id", text_or_null(t->host_id));
        json_object_set_new(jt, "result", text_or_null(t->result));
        json_object_set_new(jt, "message", text_or_null(t->message));
        json_object_set_new(jt, "args", text_or_null(t->args_str));
        json_array_append_new(tasks, jt);
    }
    json_object_set_new(o, "tasks", tasks);
    json_object_set_new(o, "wf_context", ctx ? ctx : json_object());
    json_object_set_new(o, "wf_changed",
                        changed_keys(r->wf_context_in, r->wf_context));
    for (size_t i = 0; i < r->n_logs; i++) {
        const sj_local_log *l = &r->logs[i];
        size_t ti = task_index(r, l->task_id);
        json_t *jl = json_object();
        json_object_set_new(jl, "task_id", json_integer(l->task_id));
        json_object_set_new(jl, "task_name",
                            ti != (size_t)-1 ? json_string(r->tasks[ti].name)
                                             : json_null());
        json_object_set_new(jl, "time", json_integer(l->time_ms));
        json_object_set_new(jl, "level", json_string(l->level));
        json_object_set_new(jl, "location", json_string(l->location));
        json_object_set_new(jl, "message", json_string(l->message));
        json_array_append_new(logs, jl);
    }
    json_object_set_new(o, "logs", logs);
    rc = json_dumpf(o, out, JSON_INDENT(2)) == 0 ? 0 : SJ_ENOMEM;
    fputc('\n', out);
    json_decref(o);
    return rc;
}
