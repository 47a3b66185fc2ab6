#include "sj_check.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sj_builtins.h"
#include "sj_error.h"
#include "sj_link.h"
#include "sj_log.h"
#include "sj_transport.h"
#include "sj_upstream.h"
#include "sj_vm.h"

int sj_check_executors(const sj_config *cfg, const char *const *files,
                       size_t n_files, FILE *out, char *err, size_t errlen)
{
    sj_vm_options vo = {
        .files = files, .n_files = n_files, .watch_signals = true};
    sj_vm *vm;
    size_t n;
    int rc;

    sj_vm_options_from_config(&vo, cfg);
    if ((rc = sj_vm_open(&vo, &vm, err, errlen)) != 0)
        return rc;
    char on[256];
    fprintf(
        out, "builtins: %s (setting builtins)\n",
        sj_builtins_describe(sj_builtins_mask(cfg->builtins), on, sizeof on));
    if (cfg->lua_allow != NULL && cfg->lua_allow[0] != '\0')
        fprintf(out, "sandbox: lua_allow gives back %s\n", cfg->lua_allow);
    else
        fprintf(out, "sandbox: default (no package.loadlib, text-only "
                     "loads, os.execute and io.popen off)\n");
    n = sj_vm_executor_count(vm);
    fprintf(out, "executors: %zu loaded from %zu file%s\n", n, n_files,
            n_files == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++)
        fprintf(out, "  %-40s %s\n", sj_vm_executor_name(vm, i),
                sj_vm_executor_kind(vm, i));
    sj_vm_close(vm);
    return 0;
}

/* ---- the server probe ------------------------------------------------------
 * A link that forwards to a gRPC link and records how the first /beat
 * ended, so the beat is the upstream's own, headers and all. */

typedef struct probe {
    sj_link base;
    sj_link *inner;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int have;   /* the first beat ended */
    int err;    /* its transport error, or 0 */
    int status; /* its reply status */
    char detail[1024];
} probe;

typedef struct probe_call {
    probe *p;
    sj_call_cb cb;
    void *ud;
} probe_call;

/* Channel thread. */
static void probe_done(void *ud, int err, const char *detail,
                       const sj_reply *reply)
{
    probe_call *c = ud;
    probe *p = c->p;

    pthread_mutex_lock(&p->mu);
    if (!p->have) {
        p->have = 1;
        p->err = err;
        p->status = err == 0 ? reply->status : 0;
        snprintf(p->detail, sizeof p->detail, "%s",
                 err != 0         ? (detail ? detail : sj_strerror(err))
                 : reply->message ? reply->message
                                  : "");
        pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&p->mu);
    c->cb(c->ud, err, detail, reply);
    free(c);
}

static int probe_call_async(sj_link *self, const sj_request *req,
                            int timeout_ms, sj_call_cb cb, void *ud)
{
    probe *p = (probe *)self;
    probe_call *c;
    int rc;

    if (req->uri == NULL || strcmp(req->uri, "/beat") != 0)
        return p->inner->call(p->inner, req, timeout_ms, cb, ud);
    if ((c = malloc(sizeof *c)) == NULL)
        return SJ_ENOMEM;
    c->p = p;
    c->cb = cb;
    c->ud = ud;
    if ((rc = p->inner->call(p->inner, req, timeout_ms, probe_done, c)))
        free(c);
    return rc;
}

static int probe_call_sync(sj_link *self, const sj_request *req, int timeout_ms,
                           const atomic_int *cancel, sj_reply *out,
                           char *detail, size_t detail_len)
{
    probe *p = (probe *)self;
    return p->inner->call_sync(p->inner, req, timeout_ms, cancel, out, detail,
                               detail_len);
}

static void probe_close(sj_link *self)
{
    probe *p = (probe *)self;
    p->inner->close(p->inner); /* every callback has run after this */
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int sj_check_server(const sj_config *cfg, int timeout_ms, FILE *out, char *err,
                    size_t errlen)
{
    sj_config quick = *cfg; /* shallow: only rpc_timeout differs */
    sj_log_level level = sj_log_get_level();
    sj_upstream *up = NULL;
    probe *p;
    char target[300], host_id[32];
    struct timespec until;
    int rc, have, perr, status;

    snprintf(target, sizeof target, "%s:%d", cfg->server_host,
             cfg->server_port);
    snprintf(host_id, sizeof host_id, "check-%d", (int)getpid());
    quick.rpc_timeout = timeout_ms / 1000.0;
    if ((p = calloc(1, sizeof *p)) == NULL)
        return SJ_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->base.call = probe_call_async;
    p->base.call_sync = probe_call_sync;
    p->base.close = probe_close;

    sj_transport_init();
    if ((rc = sj_link_grpc(target, &p->inner)) != 0) {
        snprintf(err, errlen, "cannot open a channel to %s: %s", target,
                 sj_strerror(rc));
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->mu);
        free(p);
        goto done;
    }
    /* The upstream's state-change lines would repeat what we print. */
    sj_log_set_level(SJ_LOG_OFF);
    sj_upstream_options uo = {.cfg = &quick,
                              .host_id = host_id,
                              .host_port = cfg->host_port,
                              .link = &p->base,
                              .no_spool = 1};
    if ((rc = sj_upstream_start(&uo, &up, err, errlen)) != 0) {
        p->base.close(&p->base);
        sj_log_set_level(level);
        goto done;
    }

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (timeout_ms + 1000) / 1000;
    pthread_mutex_lock(&p->mu);
    while (!p->have && pthread_cond_timedwait(&p->cond, &p->mu, &until) == 0)
        ;
    have = p->have;
    perr = p->err;
    status = p->status;
    if (!have)
        snprintf(err, errlen, "server %s: no answer to /beat within %d ms",
                 target, timeout_ms);
    else if (perr != 0)
        snprintf(err, errlen, "server %s unreachable: %s", target, p->detail);
    else if (status != SJ_STATUS_YES)
        snprintf(err, errlen,
                 "server %s reachable, but it refused this host "
                 "(group %s, namespace %s): %s",
                 target, cfg->group_name, cfg->namespace_id,
                 p->detail[0] ? p->detail : "status 0");
    pthread_mutex_unlock(&p->mu);
    sj_upstream_stop(up, 0); /* closes the probe link */
    sj_log_set_level(level);

    if (!have)
        rc = SJ_ETIMEOUT;
    else if (perr != 0)
        rc = perr == SJ_ETIMEOUT || perr == SJ_EUNAVAILABLE ? perr
                                                            : SJ_ETRANSPORT;
    else if (status != SJ_STATUS_YES)
        rc = SJ_EREFUSED;
    else
        fprintf(out,
                "server: %s reachable, token accepted (group %s, "
                "namespace %s)\n",
                target, cfg->group_name, cfg->namespace_id);
done:
    sj_transport_shutdown();
    return rc;
}
