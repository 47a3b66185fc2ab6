#include "sj_check.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sj_builtins.h"
#include "sj_error.h"
#include "sj_link.h"
#include "sj_log.h"
#include "sj_text.h"
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

/* ---- addresses ---------------------------------------------------------- */

static int sa_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >>
                24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(
            &((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

static int sa_same(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return 0;
}

/* 1 loopback, 0 not, -1 cannot tell (name does not resolve). With
 * `or_local`, an address of one of this machine's interfaces counts. */
static int host_is_local(const char *host, int or_local)
{
    struct addrinfo hints, *ai = NULL, *p;
    struct ifaddrs *ifs = NULL;
    int local = 0;

    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &ai) != 0)
        return -1;
    if (or_local && getifaddrs(&ifs) != 0)
        ifs = NULL;
    for (p = ai; p != NULL && !local; p = p->ai_next) {
        local = sa_loopback(p->ai_addr);
        for (struct ifaddrs *i = ifs; or_local && i != NULL && !local;
             i = i->ifa_next)
            local = i->ifa_addr != NULL && sa_same(i->ifa_addr, p->ai_addr);
    }
    if (ifs != NULL)
        freeifaddrs(ifs);
    freeaddrinfo(ai);
    return local;
}

int sj_check_host_ip(const sj_config *cfg, char *why, size_t whylen)
{
    if (host_is_local(cfg->host_ip, 0) != 1 ||
        host_is_local(cfg->server_host, 1) != 0)
        return 0;
    snprintf(why, whylen,
             "host_ip %s is a loopback address, but the server %s is on "
             "another machine: it cannot call this host back (set "
             "SNAIL_HOST_IP to an address the server reaches)",
             cfg->host_ip, cfg->server_host);
    return 1;
}

/* ---- the server probe ------------------------------------------------------
 * One /sync/version call with the host's headers (sj_upstream_request).
 * The Java server checks the token of (group, namespace) on every call
 * before it routes it (GrpcRequestHandlerActor#doProcess), and the
 * /sync/version handler (ConfigHttpRequestHandler) only reads the group's
 * config: no node is registered or refreshed, unlike /beat, the only
 * handler that registers (BeatHttpRequestHandler -> ClientRegister). The
 * upstream is started with its heartbeat held and never released. */

int sj_check_server(const sj_config *cfg, int timeout_ms, FILE *out, char *err,
                    size_t errlen)
{
    sj_log_level level = sj_log_get_level();
    sj_upstream *up = NULL;
    sj_link *link = NULL;
    sj_request req;
    sj_reply reply;
    char target[300], host_id[32], detail[1024], clean[1024];
    int rc;

    memset(&reply, 0, sizeof reply);
    snprintf(target, sizeof target, "%s:%d", cfg->server_host,
             cfg->server_port);
    snprintf(host_id, sizeof host_id, "check-%d", (int)getpid());
    sj_transport_init();
    if ((rc = sj_link_grpc(target, &link)) != 0) {
        snprintf(err, errlen, "cannot open a channel to %s: %s", target,
                 sj_strerror(rc));
        goto done;
    }
    /* The upstream's state-change lines would repeat what we print. */
    sj_log_set_level(SJ_LOG_OFF);
    sj_upstream_options uo = {.cfg = cfg,
                              .host_id = host_id,
                              .host_port = cfg->host_port,
                              .link = link,
                              .no_spool = 1,
                              .hold_beats = 1};
    if ((rc = sj_upstream_start(&uo, &up, err, errlen)) != 0) {
        link->close(link);
        sj_log_set_level(level);
        goto done;
    }
    if ((rc = sj_upstream_request(up, SJ_CHECK_URI, "null", &req)) == 0) {
        detail[0] = '\0';
        rc = link->call_sync(link, &req, timeout_ms, NULL, &reply, detail,
                             sizeof detail);
        sj_request_free(&req);
    }
    sj_upstream_stop(up, 0); /* closes the link */
    sj_log_set_level(level);

    if (rc == SJ_ENOMEM) {
        snprintf(err, errlen, "%s", sj_strerror(rc));
    } else if (rc != 0) {
        sj_text_redact(detail[0] ? detail : sj_strerror(rc), cfg->token, clean,
                       sizeof clean);
        snprintf(err, errlen, "server %s unreachable: %s", target, clean);
        rc = rc == SJ_ETIMEOUT || rc == SJ_EUNAVAILABLE ? rc : SJ_ETRANSPORT;
    } else if (reply.status != SJ_STATUS_YES) {
        /* The refusal names the token it refused. */
        sj_text_redact(reply.message && reply.message[0] ? reply.message
                                                         : "status 0",
                       cfg->token, clean, sizeof clean);
        snprintf(err, errlen,
                 "server %s reachable, but it refused this host "
                 "(group %s, namespace %s): %s",
                 target, cfg->group_name, cfg->namespace_id, clean);
        rc = SJ_EREFUSED;
    } else {
        fprintf(out,
                "server: %s reachable, token accepted (group %s, "
                "namespace %s; %s, nothing registered)\n",
                target, cfg->group_name, cfg->namespace_id, SJ_CHECK_URI);
    }
    sj_reply_free(&reply);
done:
    sj_transport_shutdown();
    return rc;
}
