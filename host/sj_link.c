#include "sj_link.h"

#include <stdlib.h>

#include "sj_error.h"

typedef struct grpc_link {
    sj_link base;
    sj_channel *ch;
} grpc_link;

static int g_call(sj_link *self, const sj_request *req, int timeout_ms,
                  sj_call_cb cb, void *ud)
{
    return sj_channel_call(((grpc_link *)self)->ch, req, timeout_ms, cb, ud);
}

static int g_call_sync(sj_link *self, const sj_request *req, int timeout_ms,
                       const atomic_int *cancel, sj_reply *out, char *detail,
                       size_t detail_len)
{
    return sj_channel_call_sync(((grpc_link *)self)->ch, req, timeout_ms,
                                cancel, out, detail, detail_len);
}

static void g_close(sj_link *self)
{
    sj_channel_close(((grpc_link *)self)->ch);
    free(self);
}

int sj_link_grpc(const char *target, sj_link **out)
{
    return sj_link_grpc_opts(target, 1000, NULL, out);
}

int sj_link_grpc_opts(const char *target, int max_reconnect_ms, sj_loop *loop,
                      sj_link **out)
{
    /* Capped (1 s by default) so a restarted server is reached again
     * promptly. */
    sj_channel_options opts = {
        .max_reconnect_ms = max_reconnect_ms > 0 ? max_reconnect_ms : 1000,
        .loop = loop};
    grpc_link *l = calloc(1, sizeof *l);
    int rc;

    if (l == NULL)
        return SJ_ENOMEM;
    if ((rc = sj_channel_open(target, &opts, &l->ch)) != 0) {
        free(l);
        return rc;
    }
    l->base.call = g_call;
    l->base.call_sync = g_call_sync;
    l->base.close = g_close;
    *out = &l->base;
    return 0;
}
