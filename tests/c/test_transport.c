/* Transport: both directions over real gRPC on loopback. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sj_codec.h"
#include "sj_error.h"
#include "sj_log.h"
#include "sj_transport.h"

static int failures;
#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #c);                                                       \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static atomic_int handled;

/* Timing bounds scale under valgrind and sanitizers (SJ_TIME_FACTOR=10). */
static long long factor(void)
{
    const char *f = getenv("SJ_TIME_FACTOR");
    return f != NULL && atoi(f) > 0 ? atoi(f) : 1;
}
#define MS(x) ((x)*factor())

/* Echo: the reply's data is the body, the message is the uri. */
static void echo(void *ud, const sj_request *req, sj_reply *reply)
{
    (void)ud;
    atomic_fetch_add(&handled, 1);
    if (req->uri != NULL && strcmp(req->uri, "/slow") == 0)
        usleep(300 * 1000);
    sj_reply_set(reply, req->req_id, SJ_STATUS_YES, req->uri, req->body);
}

static void make_req(sj_request *r, int64_t id, const char *uri,
                     const char *body)
{
    memset(r, 0, sizeof *r);
    r->req_id = id;
    sj_wire_set(&r->uri, uri);
    sj_wire_set(&r->body, body);
    sj_request_add_header(r, "host-id", "c-1");
}

static atomic_int async_done, async_ok;

static void on_done(void *ud, int err, const char *detail,
                    const sj_reply *reply)
{
    intptr_t want = (intptr_t)ud;
    (void)detail;
    if (err == 0 && reply->req_id == want)
        atomic_fetch_add(&async_ok, 1);
    atomic_fetch_add(&async_done, 1);
}

/* One loop under a server and channels (as the host runs its own): calls
 * between them complete; a channel closed with calls in flight on a slow
 * peer returns once each callback ran, on the loop's thread, which the
 * slow handler (on the peer's own loop) does not hold; the server and then
 * the loop stop. */
static void test_shared_loop(void)
{
    sj_loop *lp = NULL;
    sj_server *a = NULL, *b = NULL;
    sj_channel *to_a = NULL, *to_b = NULL;
    sj_channel_options on_lp = {.loop = NULL};
    sj_request req;
    char target[64];
    int port_a = 0, port_b = 0;

    atomic_store(&async_done, 0);
    atomic_store(&async_ok, 0);
    CHECK(sj_loop_start("test-loop", &lp) == 0);
    on_lp.loop = lp;
    CHECK(sj_server_start_on(lp, "127.0.0.1:0", echo, NULL, &a, &port_a) == 0);
    snprintf(target, sizeof target, "127.0.0.1:%d", port_a);
    CHECK(sj_channel_open(target, &on_lp, &to_a) == 0);
    for (intptr_t i = 1; i <= 100; i++) {
        make_req(&req, i, "/x", "[]");
        CHECK(sj_channel_call(to_a, &req, (int)(5000 * factor()), on_done,
                              (void *)i) == 0);
        sj_request_free(&req);
    }
    for (int i = 0; i < 500 * factor() && atomic_load(&async_done) < 100; i++)
        usleep(10 * 1000);
    CHECK(atomic_load(&async_done) == 100);
    CHECK(atomic_load(&async_ok) == 100);

    /* a slow peer on a loop of its own; the channel to it on lp */
    CHECK(sj_server_start("127.0.0.1:0", echo, NULL, &b, &port_b) == 0);
    snprintf(target, sizeof target, "127.0.0.1:%d", port_b);
    CHECK(sj_channel_open(target, &on_lp, &to_b) == 0);
    atomic_store(&async_done, 0);
    atomic_store(&async_ok, 0);
    for (intptr_t i = 1; i <= 5; i++) {
        make_req(&req, i, "/slow", "[]");
        CHECK(sj_channel_call(to_b, &req, (int)(5000 * factor()), on_done,
                              (void *)i) == 0);
        sj_request_free(&req);
    }
    long long t0 = sj_mono_ms();
    sj_channel_close(to_b);
    CHECK(atomic_load(&async_done) == 5); /* each delivered, cancelled */
    CHECK(atomic_load(&async_ok) == 0);
    CHECK(sj_mono_ms() - t0 < MS(1000));
    sj_server_stop(b);

    /* the loop still serves a and to_a after to_b went */
    make_req(&req, 77, "/after", "[]");
    sj_reply rep;
    CHECK(sj_channel_call_sync(to_a, &req, (int)(5000 * factor()), NULL, &rep,
                               NULL, 0) == 0 &&
          rep.req_id == 77);
    sj_reply_free(&rep);
    sj_request_free(&req);
    sj_server_stop(a);
    sj_channel_close(to_a);
    sj_loop_stop(lp);
}

int main(void)
{
    sj_server *srv = NULL;
    sj_channel *ch = NULL;
    sj_request req;
    sj_reply rep;
    char target[64], detail[256];
    int port = 0, rc;

    sj_log_set_level(SJ_LOG_ERROR);
    rc = sj_server_start("127.0.0.1:0", echo, NULL, &srv, &port);
    CHECK(rc == 0 && port > 0);
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    CHECK(sj_channel_open(target, NULL, &ch) == 0);

    /* A plain call: every field survives both codecs. */
    make_req(&req, 9007199254740993LL, "/beat", "[\"PING\"]");
    rc = sj_channel_call_sync(ch, &req, 20000, NULL, &rep, detail,
                              sizeof detail);
    if (rc != 0)
        fprintf(stderr, "first call: %s (%s)\n", sj_strerror(rc), detail);
    CHECK(rc == 0);
    CHECK(rep.req_id == 9007199254740993LL);
    CHECK(rep.status == SJ_STATUS_YES);
    CHECK(rep.message && strcmp(rep.message, "/beat") == 0);
    CHECK(rep.data && strcmp(rep.data, "[\"PING\"]") == 0);
    sj_reply_free(&rep);
    sj_request_free(&req);

    /* Many calls in flight on the one channel. */
    for (intptr_t i = 1; i <= 200; i++) {
        make_req(&req, i, "/x", "[]");
        CHECK(sj_channel_call(ch, &req, (int)(5000 * factor()), on_done,
                              (void *)i) == 0);
        sj_request_free(&req);
    }
    for (int i = 0; i < 500 * factor() && atomic_load(&async_done) < 200; i++)
        usleep(10 * 1000);
    CHECK(atomic_load(&async_done) == 200);
    CHECK(atomic_load(&async_ok) == 200);

    /* Garbage bytes on the real method: answered in-band, status 0. */
    {
        const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02};
        uint8_t *out = NULL;
        size_t out_len = 0;
        int st = -1;
        rc = sj_channel_call_raw(ch, SJ_METHOD, junk, sizeof junk, 2000, &st,
                                 &out, &out_len);
        CHECK(rc == 0 && st == SJ_GRPC_OK);
        CHECK(out != NULL);
        if (out != NULL) {
            CHECK(sj_codec_decode_reply(out, out_len, &rep) == 0);
            CHECK(rep.status == SJ_STATUS_NO);
            CHECK(rep.message && strstr(rep.message, "malformed protobuf"));
            sj_reply_free(&rep);
        }
        free(out);
    }

    /* An unknown method: UNIMPLEMENTED, at once. */
    {
        uint8_t *out = NULL;
        size_t out_len = 0;
        int st = -1;
        long long t0 = sj_mono_ms();
        rc = sj_channel_call_raw(ch, "/snailjob.UnaryRequest/unaryRequest",
                                 (const uint8_t *)"", 0, 5000, &st, &out,
                                 &out_len);
        CHECK(rc == 0 && st == SJ_GRPC_UNIMPLEMENTED);
        CHECK(sj_mono_ms() - t0 < MS(1000));
        free(out);
    }

    /* Cancellation of a blocking call through the flag. */
    {
        atomic_int cancel = 1;
        make_req(&req, 5, "/slow", "[]");
        long long t0 = sj_mono_ms();
        rc = sj_channel_call_sync(ch, &req, 5000, &cancel, &rep, NULL, 0);
        CHECK(rc == SJ_ECANCELED);
        CHECK(sj_mono_ms() - t0 < MS(250));
        sj_request_free(&req);
    }

    /* Deadline. */
    make_req(&req, 6, "/slow", "[]");
    rc = sj_channel_call_sync(ch, &req, 50, NULL, &rep, NULL, 0);
    CHECK(rc == SJ_ETIMEOUT);
    sj_request_free(&req);

    /* Peer down: UNAVAILABLE quickly; back on the same port: reached again
     * within the capped reconnect backoff. */
    sj_server_stop(srv);
    srv = NULL;
    make_req(&req, 7, "/beat", "[]");
    {
        long long t0 = sj_mono_ms();
        rc = sj_channel_call_sync(ch, &req, 2000, NULL, &rep, detail,
                                  sizeof detail);
        CHECK(rc == SJ_EUNAVAILABLE);
        CHECK(sj_mono_ms() - t0 < MS(1000));
    }
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    CHECK(sj_server_start(addr, echo, NULL, &srv, NULL) == 0);
    {
        long long t0 = sj_mono_ms();
        do {
            rc = sj_channel_call_sync(ch, &req, 500, NULL, &rep, NULL, 0);
            if (rc != 0)
                usleep(50 * 1000);
        } while (rc != 0 && sj_mono_ms() - t0 < MS(3000));
        CHECK(rc == 0);
        CHECK(sj_mono_ms() - t0 < MS(1500));
        if (rc == 0)
            sj_reply_free(&rep);
    }
    sj_request_free(&req);

    sj_channel_close(ch);
    sj_server_stop(srv);
    test_shared_loop();
    if (failures == 0)
        printf("test_transport: all checks passed\n");
    return failures != 0;
}
