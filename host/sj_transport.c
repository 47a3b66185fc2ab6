#include "sj_transport.h"

#include <dlfcn.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_codec.h"
#include "sj_error.h"
#include "sj_log.h"

#define SRV_REGISTERED_SLOTS 8 /* concurrent calls waiting for a dispatch */
#define SRV_GENERIC_SLOTS 2    /* slots that answer UNIMPLEMENTED */

/* ---- shared helpers -------------------------------------------------- */

/*
 * Debian builds abseil without NDEBUG, so every absl::Mutex operation
 * inside gRPC runs deadlock detection (GraphCycles::GetId/InsertEdge):
 * 3-4 % of the host's CPU per job in `perf record` (BENCHMARKS.md). It is
 * switched off through abseil's public absl::SetMutexDeadlockDetectionMode
 * (kIgnore = 0), once, before gRPC takes its first lock. That is a C++
 * function, so it is looked up by its mangled name; when the name is not
 * there (another abseil build or version) detection stays as it is.
 * Nothing else changes: it is debug bookkeeping only.
 */
static void absl_deadlock_detection_off(void)
{
    static const char *const names[] = {
        "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_"
        "15OnDeadlockCycleE",
        "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_"
        "15OnDeadlockCycleE",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *sym = dlsym(RTLD_DEFAULT, names[i]);
        if (sym != NULL) {
            void (*set_mode)(int);
            memcpy(&set_mode, &sym, sizeof set_mode);
            set_mode(0); /* absl::OnDeadlockCycle::kIgnore */
            return;
        }
    }
}

static pthread_once_t absl_once = PTHREAD_ONCE_INIT;

/* gRPC's own log lines go through the host log (one format, one line
 * each, the token masked), at DEBUG: what matters is said again by our
 * own error, e.g. a port in use. */
static void grpc_log_to_host(gpr_log_func_args *args)
{
    sj_log(SJ_LOG_DEBUG, "grpc %s:%d: %s", args->file ? args->file : "?",
           args->line, args->message ? args->message : "");
}

void sj_transport_init(void)
{
    pthread_once(&absl_once, absl_deadlock_detection_off);
    gpr_set_log_function(grpc_log_to_host);
    grpc_init();
}

void sj_transport_shutdown(void)
{
    grpc_shutdown();
}

static gpr_timespec deadline_in(int ms)
{
    if (ms <= 0)
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static grpc_byte_buffer *bytes_to_bb(const uint8_t *buf, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* Flatten a received byte buffer into a malloc'd copy (NULL if len 0). */
static int bb_to_bytes(grpc_byte_buffer *bb, uint8_t **out, size_t *len)
{
    grpc_byte_buffer_reader r;
    grpc_slice s;

    *out = NULL;
    *len = 0;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return SJ_EPROTO;
    s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    *len = GRPC_SLICE_LENGTH(s);
    if (*len > 0) {
        *out = malloc(*len);
        if (*out == NULL) {
            grpc_slice_unref(s);
            return SJ_ENOMEM;
        }
        memcpy(*out, GRPC_SLICE_START_PTR(s), *len);
    }
    grpc_slice_unref(s);
    return 0;
}

/* Argument list shared by both directions: Java's 10 MiB limits, and a
 * server that tolerates the Java channel's 30 s keepalive pings. */
static grpc_channel_args *make_args(grpc_arg *a, int n_extra,
                                    grpc_channel_args *holder)
{
    a[0].type = GRPC_ARG_INTEGER;
    a[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    a[0].value.integer = SJ_MAX_MESSAGE;
    a[1].type = GRPC_ARG_INTEGER;
    a[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    a[1].value.integer = SJ_MAX_MESSAGE;
    holder->num_args = (size_t)(2 + n_extra);
    holder->args = a;
    return holder;
}

static void set_int_arg(grpc_arg *a, const char *key, int v)
{
    a->type = GRPC_ARG_INTEGER;
    a->key = (char *)key;
    a->value.integer = v;
}

/* ---- loop ------------------------------------------------------------- */

/* Every tag on a loop's queue starts with its kind. */
enum tag_kind {
    SRV_WAIT_REGISTERED, /* slot waiting for a call on SJ_METHOD */
    SRV_WAIT_GENERIC,    /* slot waiting for a call on any other path */
    SRV_REPLYING,        /* reply batch in flight */
    SRV_SHUTDOWN,        /* the server's shutdown notification */
    CHAN_DONE            /* an outgoing call finished */
};

struct sj_loop {
    grpc_completion_queue *cq;
    pthread_t thread;
    char name[16];
};

typedef struct srv_call srv_call;
typedef struct chan_call chan_call;

/* Set a tag's kind, after everything else the tag carries was written
 * and before gRPC gets it. */
static void tag_publish(atomic_int *kind, int value)
{
    atomic_store_explicit(kind, value, memory_order_release);
}

static void srv_event(srv_call *c, int ok);
static void chan_complete(chan_call *c, int ok);

static void *loop_thread(void *arg)
{
    sj_loop *lp = arg;

    sj_log_thread_name(lp->name);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            lp->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        /* The acquire pairs with the release that published the tag
         * (tag_publish): what the starting thread wrote is seen here,
         * TSan included, which cannot see gRPC's own hand-over. */
        if (atomic_load_explicit((atomic_int *)ev.tag, memory_order_acquire) ==
            CHAN_DONE)
            chan_complete(ev.tag, ev.success);
        else
            srv_event(ev.tag, ev.success);
    }
    return NULL;
}

int sj_loop_start(const char *name, sj_loop **out)
{
    sj_loop *lp = calloc(1, sizeof *lp);

    if (lp == NULL)
        return SJ_ENOMEM;
    snprintf(lp->name, sizeof lp->name, "%s", name);
    sj_transport_init();
    lp->cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&lp->thread, NULL, loop_thread, lp) != 0) {
        /* Nothing was ever queued: the shutdown event is the only one. */
        grpc_completion_queue_shutdown(lp->cq);
        grpc_completion_queue_next(lp->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                   NULL);
        grpc_completion_queue_destroy(lp->cq);
        sj_transport_shutdown();
        free(lp);
        return SJ_ENOMEM;
    }
    *out = lp;
    return 0;
}

void sj_loop_stop(sj_loop *lp)
{
    if (lp == NULL)
        return;
    grpc_completion_queue_shutdown(lp->cq);
    pthread_join(lp->thread, NULL);
    grpc_completion_queue_destroy(lp->cq);
    sj_transport_shutdown();
    free(lp);
}

/* ---- server ----------------------------------------------------------- */

struct srv_call {
    atomic_int kind; /* enum tag_kind; first, as in every tag */
    sj_server *s;
    int generic;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details;
    grpc_byte_buffer *payload;
    grpc_byte_buffer *reply_bb;
    grpc_slice status_details;
    int cancelled;
};

struct sj_server {
    grpc_server *server;
    sj_loop *lp;
    int own_loop;
    void *method;
    sj_server_handler handler;
    void *ud;
    atomic_int stopping;
    srv_call shutdown_tag;
    /* what sj_server_stop waits for: the shutdown tag, and every call
     * object (slot or reply in flight) freed */
    pthread_mutex_t lock;
    pthread_cond_t settled;
    size_t calls;
    int shut;
};

static void srv_call_free(srv_call *c)
{
    sj_server *s = c->s;

    grpc_metadata_array_destroy(&c->md);
    if (c->generic)
        grpc_call_details_destroy(&c->details);
    if (c->payload != NULL)
        grpc_byte_buffer_destroy(c->payload);
    if (c->reply_bb != NULL)
        grpc_byte_buffer_destroy(c->reply_bb);
    grpc_slice_unref(c->status_details);
    if (c->call != NULL)
        grpc_call_unref(c->call);
    free(c);
    pthread_mutex_lock(&s->lock);
    if (--s->calls == 0)
        pthread_cond_broadcast(&s->settled);
    pthread_mutex_unlock(&s->lock);
}

static int srv_request_slot(sj_server *s, int generic)
{
    srv_call *c = calloc(1, sizeof *c);
    grpc_call_error e;

    if (c == NULL)
        return SJ_ENOMEM;
    pthread_mutex_lock(&s->lock);
    s->calls++;
    pthread_mutex_unlock(&s->lock);
    c->s = s;
    c->generic = generic;
    c->status_details = grpc_empty_slice();
    grpc_metadata_array_init(&c->md);
    tag_publish(&c->kind, generic ? SRV_WAIT_GENERIC : SRV_WAIT_REGISTERED);
    if (generic) {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md,
                                     s->lp->cq, s->lp->cq, c);
    } else {
        e = grpc_server_request_registered_call(
            s->server, s->method, &c->call, &c->deadline, &c->md, &c->payload,
            s->lp->cq, s->lp->cq, c);
    }
    if (e != GRPC_CALL_OK) {
        srv_call_free(c);
        return SJ_ETRANSPORT;
    }
    return 0;
}

/* Decode, run the handler, encode: always yields a GrpcResult. */
static void srv_answer(sj_server *s, srv_call *c, sj_reply *reply)
{
    sj_request req;
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc;

    if (c->payload == NULL) {
        sj_reply_set(reply, 0, SJ_STATUS_NO,
                     "malformed request: the call carried no message", "null");
        SJ_WARN("inbound call without a message: answered with a failure");
        return;
    }
    rc = bb_to_bytes(c->payload, &bytes, &len);
    if (rc == 0)
        rc = sj_codec_decode_request(bytes, len, &req);
    free(bytes);
    if (rc != 0) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "malformed protobuf: %zu bytes are not a "
                 "GrpcSnailJobRequest (%s)",
                 len, sj_strerror(rc));
        sj_reply_set(reply, 0, SJ_STATUS_NO, msg, "null");
        SJ_WARN("inbound call rejected: %s", msg);
        return;
    }
    s->handler(s->ud, &req, reply);
    if (reply->status == SJ_STATUS_NO && reply->message == NULL)
        sj_reply_set(reply, req.req_id, SJ_STATUS_NO,
                     "internal error: no reply", "null");
    if (reply->req_id == 0)
        reply->req_id = req.req_id;
    sj_request_free(&req);
}

static void srv_handle_call(sj_server *s, srv_call *c)
{
    grpc_op ops[4];
    grpc_status_code code = GRPC_STATUS_OK;
    size_t n = 0;

    memset(ops, 0, sizeof ops);
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    if (c->generic) {
        code = GRPC_STATUS_UNIMPLEMENTED;
        c->status_details = grpc_slice_from_static_string(
            "unknown method: only " SJ_METHOD " is served");
    } else {
        sj_reply reply = {0};
        uint8_t *out = NULL;
        size_t len = 0;

        srv_answer(s, c, &reply);
        if (sj_codec_encode_reply(&reply, &out, &len) == 0) {
            c->reply_bb = bytes_to_bb(out, len);
            free(out);
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n].data.send_message.send_message = c->reply_bb;
            n++;
        } else {
            code = GRPC_STATUS_RESOURCE_EXHAUSTED;
            c->status_details = grpc_slice_from_static_string("out of memory");
        }
        sj_reply_free(&reply);
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.status_details = &c->status_details;
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
    n++;
    atomic_store_explicit(&c->kind, SRV_REPLYING, memory_order_relaxed);
    if (grpc_call_start_batch(c->call, ops, n, c, NULL) != GRPC_CALL_OK) {
        SJ_ERROR("could not start the reply batch of an inbound call");
        srv_call_free(c);
    }
}

/* Loop thread: one of the server's tags completed. */
static void srv_event(srv_call *c, int ok)
{
    sj_server *s = c->s;

    switch (atomic_load_explicit(&c->kind, memory_order_relaxed)) {
    case SRV_SHUTDOWN:
        pthread_mutex_lock(&s->lock);
        s->shut = 1;
        pthread_cond_broadcast(&s->settled);
        pthread_mutex_unlock(&s->lock);
        break;
    case SRV_WAIT_REGISTERED:
    case SRV_WAIT_GENERIC:
        if (!ok) { /* the server is shutting down */
            srv_call_free(c);
            break;
        }
        if (!atomic_load(&s->stopping) && srv_request_slot(s, c->generic) != 0)
            SJ_ERROR("could not re-arm an inbound call slot");
        srv_handle_call(s, c);
        break;
    case SRV_REPLYING:
        srv_call_free(c);
        break;
    default:
        break;
    }
}

/* Shut the started server down, wait until the loop has seen the last of
 * it, and destroy it (srv_free then frees the rest, its own loop too). */
static void srv_finish(sj_server *s)
{
    atomic_store(&s->stopping, 1);
    grpc_server_shutdown_and_notify(s->server, s->lp->cq, &s->shutdown_tag);
    grpc_server_cancel_all_calls(s->server);
    pthread_mutex_lock(&s->lock);
    while (!s->shut || s->calls > 0)
        pthread_cond_wait(&s->settled, &s->lock);
    pthread_mutex_unlock(&s->lock);
    grpc_server_destroy(s->server);
}

static void srv_free(sj_server *s)
{
    if (s->own_loop)
        sj_loop_stop(s->lp);
    pthread_cond_destroy(&s->settled);
    pthread_mutex_destroy(&s->lock);
    sj_transport_shutdown();
    free(s);
}

int sj_server_start(const char *addr, sj_server_handler handler, void *ud,
                    sj_server **out, int *port)
{
    return sj_server_start_on(NULL, addr, handler, ud, out, port);
}

int sj_server_start_on(sj_loop *lp, const char *addr, sj_server_handler handler,
                       void *ud, sj_server **out, int *port)
{
    grpc_arg a[5];
    grpc_channel_args args;
    grpc_server_credentials *creds;
    sj_server *s;
    int bound, rc = SJ_EIO;

    s = calloc(1, sizeof *s);
    if (s == NULL)
        return SJ_ENOMEM;
    s->handler = handler;
    s->ud = ud;
    s->shutdown_tag.s = s;
    tag_publish(&s->shutdown_tag.kind, SRV_SHUTDOWN);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->settled, NULL);
    sj_transport_init();
    if (lp == NULL) {
        if ((rc = sj_loop_start("grpc-server", &lp)) != 0) {
            s->lp = NULL;
            srv_free(s);
            return rc;
        }
        s->own_loop = 1;
    }
    s->lp = lp;
    /* The Java server's channel pings every 30 s during calls; never answer
     * it with GOAWAY too_many_pings. */
    set_int_arg(&a[2], GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                10000);
    set_int_arg(&a[3], GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    /* gRPC sets SO_REUSEPORT by default: a second host on a port in use
     * would then bind as well and the kernel would split the server's
     * connections between two processes. A port in use must fail. */
    set_int_arg(&a[4], GRPC_ARG_ALLOW_REUSEPORT, 0);
    make_args(a, 3, &args);

    s->server = grpc_server_create(&args, NULL);
    grpc_server_register_completion_queue(s->server, lp->cq, NULL);
    s->method = grpc_server_register_method(
        s->server, SJ_METHOD, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
        0);
    creds = grpc_insecure_server_credentials_create();
    bound = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (s->method == NULL || bound <= 0) {
        grpc_server_destroy(s->server); /* never started, nothing queued */
        srv_free(s);
        return SJ_EIO;
    }
    grpc_server_start(s->server);
    for (int i = 0; i < SRV_REGISTERED_SLOTS + SRV_GENERIC_SLOTS; i++)
        if ((rc = srv_request_slot(s, i >= SRV_REGISTERED_SLOTS)) != 0) {
            srv_finish(s);
            srv_free(s);
            return rc;
        }
    if (port != NULL)
        *port = bound;
    *out = s;
    return 0;
}

void sj_server_stop(sj_server *s)
{
    if (s == NULL)
        return;
    srv_finish(s);
    srv_free(s);
}

/* ---- channel ---------------------------------------------------------- */

/* How a finished call is delivered: to a callback, or to a waiter. */
typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int err;
    int grpc_status;
    sj_reply reply;
    uint8_t *raw;
    size_t raw_len;
    char detail[256];
} waiter;

struct chan_call {
    atomic_int kind; /* CHAN_DONE; first, as in every tag */
    sj_channel *ch;
    grpc_call *call;
    uint64_t id;
    int raw; /* deliver raw bytes to `w` instead of decoding */
    grpc_byte_buffer *send_bb;
    grpc_byte_buffer *recv_bb;
    grpc_metadata_array init_md;
    grpc_metadata_array trail_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    sj_call_cb cb;
    void *ud;
    waiter *w;
    chan_call *prev, *next;
};

struct sj_channel {
    grpc_channel *channel;
    sj_loop *lp;
    int own_loop;
    pthread_mutex_t lock; /* guards calls, active, closing, next_id */
    pthread_cond_t settled;
    chan_call *calls; /* in flight */
    size_t active;    /* started and not yet delivered */
    int closing;
    uint64_t next_id;
    char target[256];
};

static void chan_call_free(chan_call *c)
{
    if (c->send_bb != NULL)
        grpc_byte_buffer_destroy(c->send_bb);
    if (c->recv_bb != NULL)
        grpc_byte_buffer_destroy(c->recv_bb);
    grpc_metadata_array_destroy(&c->init_md);
    grpc_metadata_array_destroy(&c->trail_md);
    grpc_slice_unref(c->details);
    if (c->error_string != NULL)
        gpr_free((void *)c->error_string);
    if (c->call != NULL)
        grpc_call_unref(c->call);
    free(c);
}

static int map_status(grpc_status_code st)
{
    switch (st) {
    case GRPC_STATUS_OK:
        return 0;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return SJ_ETIMEOUT;
    case GRPC_STATUS_UNAVAILABLE:
        return SJ_EUNAVAILABLE;
    case GRPC_STATUS_CANCELLED:
        return SJ_ECANCELED;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return SJ_ETOOBIG;
    default:
        return SJ_ETRANSPORT;
    }
}

static void waiter_finish(waiter *w, int err, int grpc_status,
                          const char *detail)
{
    pthread_mutex_lock(&w->lock);
    w->err = err;
    w->grpc_status = grpc_status;
    if (detail != NULL)
        snprintf(w->detail, sizeof w->detail, "%s", detail);
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Loop thread: a call finished; decode and deliver it. The call was
 * started under ch->lock, so taking the lock first is what makes its
 * fields visible here (gRPC's own hand-over is invisible to TSan). */
static void chan_complete(chan_call *c, int ok)
{
    sj_channel *ch = c->ch;
    char detail[256] = "";
    sj_reply reply = {0};
    uint8_t *bytes = NULL;
    size_t len = 0;
    int err;

    pthread_mutex_lock(&ch->lock);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ch->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&ch->lock);

    err = ok ? map_status(c->status) : SJ_ETRANSPORT;
    if (err != 0) {
        int dl = (int)GRPC_SLICE_LENGTH(c->details);
        snprintf(detail, sizeof detail, "%s: gRPC status %d%s%.*s", ch->target,
                 (int)c->status, dl ? ": " : "", dl,
                 (const char *)GRPC_SLICE_START_PTR(c->details));
    } else if (c->recv_bb == NULL) {
        err = SJ_EPROTO;
        snprintf(detail, sizeof detail, "%s: reply carried no message",
                 ch->target);
    } else if ((err = bb_to_bytes(c->recv_bb, &bytes, &len)) == 0 && !c->raw) {
        err = sj_codec_decode_reply(bytes, len, &reply);
        if (err != 0)
            snprintf(detail, sizeof detail,
                     "%s: reply is not a GrpcResult (%zu bytes)", ch->target,
                     len);
    }

    if (c->raw) {
        if (c->recv_bb == NULL || !ok)
            err = 0; /* a raw call reports the gRPC status itself */
        c->w->raw = bytes;
        c->w->raw_len = len;
        bytes = NULL;
        waiter_finish(c->w, ok ? 0 : SJ_ETRANSPORT, (int)c->status, detail);
    } else if (c->w != NULL) {
        c->w->reply = reply; /* moves ownership */
        memset(&reply, 0, sizeof reply);
        waiter_finish(c->w, err, (int)c->status, detail);
    } else {
        c->cb(c->ud, err, err ? detail : NULL, &reply);
    }
    sj_reply_free(&reply);
    free(bytes);
    chan_call_free(c);
    pthread_mutex_lock(&ch->lock);
    if (--ch->active == 0)
        pthread_cond_broadcast(&ch->settled);
    pthread_mutex_unlock(&ch->lock);
}

int sj_channel_open(const char *target, const sj_channel_options *opts,
                    sj_channel **out)
{
    grpc_arg a[7];
    grpc_channel_args args;
    grpc_channel_credentials *creds;
    int max_ms = opts != NULL && opts->max_reconnect_ms > 0
                     ? opts->max_reconnect_ms
                     : 1000;
    int min_ms = max_ms < 100 ? max_ms : 100;
    sj_channel *ch;

    ch = calloc(1, sizeof *ch);
    if (ch == NULL)
        return SJ_ENOMEM;
    snprintf(ch->target, sizeof ch->target, "%s", target);
    if (pthread_mutex_init(&ch->lock, NULL) != 0) {
        free(ch);
        return SJ_ENOMEM;
    }
    set_int_arg(&a[2], GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_ms);
    set_int_arg(&a[3], GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, min_ms);
    /* In the C core this "minimum backoff" is the connect timeout: keep it
     * long, or a slow handshake (a loaded 2-core box) never completes. A
     * refused connection still fails at once. */
    set_int_arg(&a[4], GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20000);
    /* Retrying is the caller's business (results are spooled and resent). */
    set_int_arg(&a[5], GRPC_ARG_ENABLE_RETRIES, 0);
    /* Channels must not share connections: each has its own peer life. */
    set_int_arg(&a[6], GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    make_args(a, 5, &args);

    sj_transport_init();
    creds = grpc_insecure_credentials_create();
    ch->channel = grpc_channel_create(target, creds, &args);
    grpc_channel_credentials_release(creds);
    pthread_cond_init(&ch->settled, NULL);
    ch->lp = opts != NULL ? opts->loop : NULL;
    if (ch->lp == NULL) {
        int rc = sj_loop_start("grpc-client", &ch->lp);
        if (rc != 0) {
            grpc_channel_destroy(ch->channel);
            pthread_cond_destroy(&ch->settled);
            pthread_mutex_destroy(&ch->lock);
            sj_transport_shutdown();
            free(ch);
            return rc;
        }
        ch->own_loop = 1;
    }
    *out = ch;
    return 0;
}

void sj_channel_close(sj_channel *ch)
{
    if (ch == NULL)
        return;
    pthread_mutex_lock(&ch->lock);
    ch->closing = 1;
    for (chan_call *c = ch->calls; c != NULL; c = c->next)
        grpc_call_cancel(c->call, NULL);
    /* Every cancelled call is still delivered, on the loop's thread. */
    while (ch->active > 0)
        pthread_cond_wait(&ch->settled, &ch->lock);
    pthread_mutex_unlock(&ch->lock);
    grpc_channel_destroy(ch->channel);
    if (ch->own_loop)
        sj_loop_stop(ch->lp);
    pthread_cond_destroy(&ch->settled);
    pthread_mutex_destroy(&ch->lock);
    sj_transport_shutdown();
    free(ch);
}

/* Start one call carrying `bytes`; takes nothing; returns the call id. */
static int chan_start(sj_channel *ch, const char *method, const uint8_t *bytes,
                      size_t len, int timeout_ms, chan_call *c, uint64_t *id)
{
    grpc_op ops[6];
    grpc_slice path = grpc_slice_from_copied_string(method);
    grpc_call_error e;
    int rc = 0;

    c->ch = ch;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->init_md);
    grpc_metadata_array_init(&c->trail_md);
    c->send_bb = bytes_to_bb(bytes, len);
    tag_publish(&c->kind, CHAN_DONE);

    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trail_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    ops[5].data.recv_status_on_client.error_string = &c->error_string;

    /* The lock makes "not closing" and "on the list" one fact for close. */
    pthread_mutex_lock(&ch->lock);
    if (ch->closing) {
        rc = SJ_ECLOSED;
        goto out;
    }
    c->call = grpc_channel_create_call(
        ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, ch->lp->cq, path, NULL,
        deadline_in(timeout_ms), NULL);
    e = grpc_call_start_batch(c->call, ops, 6, c, NULL);
    if (e != GRPC_CALL_OK) {
        rc = SJ_ETRANSPORT;
        goto out;
    }
    ch->active++;
    c->id = ++ch->next_id;
    *id = c->id;
    c->next = ch->calls;
    if (ch->calls != NULL)
        ch->calls->prev = c;
    ch->calls = c;
out:
    pthread_mutex_unlock(&ch->lock);
    grpc_slice_unref(path);
    if (rc != 0)
        chan_call_free(c);
    return rc;
}

static void chan_cancel(sj_channel *ch, uint64_t id)
{
    pthread_mutex_lock(&ch->lock);
    for (chan_call *c = ch->calls; c != NULL; c = c->next)
        if (c->id == id)
            grpc_call_cancel(c->call, NULL);
    pthread_mutex_unlock(&ch->lock);
}

static int chan_start_request(sj_channel *ch, const sj_request *req,
                              int timeout_ms, chan_call *c, uint64_t *id)
{
    uint8_t *bytes;
    size_t len;
    int rc = sj_codec_encode_request(req, &bytes, &len);

    if (rc != 0) {
        free(c);
        return rc;
    }
    if (len > SJ_MAX_MESSAGE) {
        free(bytes);
        free(c);
        return SJ_ETOOBIG;
    }
    rc = chan_start(ch, SJ_METHOD, bytes, len, timeout_ms, c, id);
    free(bytes);
    return rc;
}

int sj_channel_call(sj_channel *ch, const sj_request *req, int timeout_ms,
                    sj_call_cb cb, void *ud)
{
    chan_call *c = calloc(1, sizeof *c);
    uint64_t id;

    if (c == NULL)
        return SJ_ENOMEM;
    c->cb = cb;
    c->ud = ud;
    return chan_start_request(ch, req, timeout_ms, c, &id);
}

static void waiter_init(waiter *w)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
}

static void waiter_destroy(waiter *w)
{
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}

/* Wait for the call to finish, cancelling it once *cancel turns non-zero. */
static void waiter_wait(waiter *w, sj_channel *ch, uint64_t id,
                        const atomic_int *cancel)
{
    int cancelled = 0;

    pthread_mutex_lock(&w->lock);
    while (!w->done) {
        if (cancel == NULL) {
            pthread_cond_wait(&w->cond, &w->lock);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        if (!w->done && !cancelled && atomic_load(cancel)) {
            cancelled = 1;
            pthread_mutex_unlock(&w->lock);
            chan_cancel(ch, id);
            pthread_mutex_lock(&w->lock);
        }
    }
    pthread_mutex_unlock(&w->lock);
    if (cancelled && w->err == 0) {
        /* The reply won the race; the caller asked to stop all the same. */
        sj_reply_free(&w->reply);
        w->err = SJ_ECANCELED;
    } else if (cancelled) {
        w->err = SJ_ECANCELED;
    }
}

int sj_channel_call_sync(sj_channel *ch, const sj_request *req, int timeout_ms,
                         const atomic_int *cancel, sj_reply *out, char *detail,
                         size_t detail_len)
{
    chan_call *c = calloc(1, sizeof *c);
    waiter w;
    uint64_t id;
    int rc;

    memset(out, 0, sizeof *out);
    if (c == NULL)
        return SJ_ENOMEM;
    waiter_init(&w);
    c->w = &w;
    rc = chan_start_request(ch, req, timeout_ms, c, &id);
    if (rc == 0) {
        waiter_wait(&w, ch, id, cancel);
        rc = w.err;
        if (rc == 0)
            *out = w.reply;
        if (detail != NULL && detail_len > 0)
            snprintf(detail, detail_len, "%s", w.detail);
    } else if (detail != NULL && detail_len > 0) {
        snprintf(detail, detail_len, "%s: %s", ch->target, sj_strerror(rc));
    }
    waiter_destroy(&w);
    return rc;
}

int sj_channel_call_raw(sj_channel *ch, const char *method,
                        const uint8_t *bytes, size_t len, int timeout_ms,
                        int *grpc_status, uint8_t **out, size_t *out_len)
{
    chan_call *c = calloc(1, sizeof *c);
    waiter w;
    uint64_t id;
    int rc;

    *out = NULL;
    *out_len = 0;
    if (c == NULL)
        return SJ_ENOMEM;
    waiter_init(&w);
    c->w = &w;
    c->raw = 1;
    rc = chan_start(ch, method, bytes, len, timeout_ms, c, &id);
    if (rc == 0) {
        waiter_wait(&w, ch, id, NULL);
        rc = w.err;
        *grpc_status = w.grpc_status;
        *out = w.raw;
        *out_len = w.raw_len;
    }
    waiter_destroy(&w);
    return rc;
}
