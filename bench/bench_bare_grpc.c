/*
 * bench_bare_grpc - the idle floor of a gRPC C-core peer, for bench_jobs.
 *
 * Not a benchmark of its own: bench_jobs starts it next to the host and
 * reads its RSS, so that the host's idle RSS is shown against what any
 * SnailJob client built on the C core pays before it runs a line of its
 * own code. It links only gRPC (libgrpc, libgpr) and does what every
 * client must: it listens (a server with one completion queue, served by
 * the main thread) and, given TARGET, keeps a connected channel to the
 * SnailJob server (the host's heartbeat channel), without any call.
 *
 *   bench_bare_grpc [HOST:PORT]
 *
 * Prints "ready PORT" on stdout once listening (and connected, with a
 * target), then idles until killed. Exit status 1 if it cannot start.
 */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    grpc_completion_queue *cq;
    grpc_server *srv;
    grpc_server_credentials *screds;
    grpc_channel *ch = NULL;
    grpc_call *call = NULL;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_event ev;
    int port;

    grpc_init();
    cq = grpc_completion_queue_create_for_next(NULL);
    srv = grpc_server_create(NULL, NULL);
    grpc_server_register_completion_queue(srv, cq, NULL);
    screds = grpc_insecure_server_credentials_create();
    port = grpc_server_add_http2_port(srv, "127.0.0.1:0", screds);
    grpc_server_credentials_release(screds);
    if (port <= 0) {
        fprintf(stderr, "bench_bare_grpc: cannot listen\n");
        return 1;
    }
    grpc_server_start(srv);
    grpc_call_details_init(&details);
    grpc_metadata_array_init(&md);
    if (grpc_server_request_call(srv, &call, &details, &md, cq, cq, srv) !=
        GRPC_CALL_OK) {
        fprintf(stderr, "bench_bare_grpc: cannot wait for calls\n");
        return 1;
    }
    if (argc > 1) { /* a channel to the server, connected, idle */
        grpc_channel_credentials *creds = grpc_insecure_credentials_create();
        grpc_connectivity_state st;
        ch = grpc_channel_create(argv[1], creds, NULL);
        grpc_channel_credentials_release(creds);
        for (int i = 0; i < 100; i++) {
            st = grpc_channel_check_connectivity_state(ch, 1);
            if (st == GRPC_CHANNEL_READY)
                break;
            grpc_channel_watch_connectivity_state(
                ch, st,
                gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                             gpr_time_from_millis(100, GPR_TIMESPAN)),
                cq, ch);
            do
                ev = grpc_completion_queue_next(
                    cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            while (ev.tag != ch);
        }
        if (grpc_channel_check_connectivity_state(ch, 0) !=
            GRPC_CHANNEL_READY) {
            fprintf(stderr, "bench_bare_grpc: cannot connect to %s\n", argv[1]);
            return 1;
        }
    }
    printf("ready %d\n", port);
    fflush(stdout);
    for (;;) /* serve: nothing calls; the server's tag would end the wait */
        ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                        NULL);
    return 0;
}
