/*
 * sj_check.h - `snailjob-lua check`: is this host set up to work?
 *
 * Two probes, each writing what it found, one line per fact, to `out`:
 *
 *   sj_check_executors  loads every executor file into one fresh Lua state
 *                       (sj_vm_open, the same load as a worker's) and lists
 *                       the executors with their kind.
 *   sj_check_server     sends one /sync/version (SJ_CHECK_URI) with the
 *                       host's own headers (sj_upstream_request) and a
 *                       short deadline, and says whether the server
 *                       answered and accepted the token. It has no side
 *                       effect on the server: the Java server checks the
 *                       token of every call, and this handler only reads
 *                       the group's config; only /beat registers a node
 *                       (docs/protocol.md §4.6). The token is never
 *                       printed: a refusal that repeats it is masked.
 *   sj_check_host_ip    says whether host_ip is a loopback address while
 *                       the server is on another machine.
 *
 * Config validation is sj_config_load's (main.c). Main thread only; the
 * server probe starts and joins its own threads.
 */
#ifndef SJ_CHECK_H
#define SJ_CHECK_H

#include <stddef.h>
#include <stdio.h>

#include "sj_config.h"

/* 0, or SJ_ELUA (a file failed to load; `err` names file and line), or
 * SJ_ENOMEM/SJ_EINVAL. Prints "executors: N loaded from M file(s)" and one
 * line per executor. */
int sj_check_executors(const sj_config *cfg, const char *const *files,
                       size_t n_files, FILE *out, char *err, size_t errlen);

#define SJ_CHECK_URI "/sync/version"

/* 1 with a sentence in `why` when host_ip is loopback and server_host is
 * not on this machine (the server could not call the host back); else 0
 * (also when a name does not resolve). Resolves names: may block. */
int sj_check_host_ip(const sj_config *cfg, char *why, size_t whylen);

/* 0 once the server answered with status 1; SJ_EUNAVAILABLE,
 * SJ_ETIMEOUT or SJ_ETRANSPORT when it could not be reached (`err` says
 * which address and why); SJ_EREFUSED when it answered but refused (`err`
 * holds the server's message, e.g. the token check, with the token
 * masked). */
int sj_check_server(const sj_config *cfg, int timeout_ms, FILE *out, char *err,
                    size_t errlen);

#endif
