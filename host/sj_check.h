/*
 * sj_check.h - `snailjob-lua check`: is this host set up to work?
 *
 * Two probes, each writing what it found, one line per fact, to `out`:
 *
 *   sj_check_executors  loads every executor file into one fresh Lua state
 *                       (sj_vm_open, the same load as a worker's) and lists
 *                       the executors with their kind.
 *   sj_check_server     sends one /beat through a gRPC link with a short
 *                       deadline, built and sent by sj_upstream exactly as
 *                       the host's own heartbeat, and says whether the
 *                       server answered and accepted the token. Like any
 *                       beat, an accepted one registers the host-id
 *                       ("check-<pid>") with the server; it expires there
 *                       after ~40 s.
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

/* 0 once the server answered the beat with status 1; SJ_EUNAVAILABLE,
 * SJ_ETIMEOUT or SJ_ETRANSPORT when it could not be reached (`err` says
 * which address and why); SJ_EREFUSED when it answered but refused (`err`
 * holds the server's message, e.g. the token check). */
int sj_check_server(const sj_config *cfg, int timeout_ms, FILE *out, char *err,
                    size_t errlen);

#endif
