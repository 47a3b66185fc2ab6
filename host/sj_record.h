/*
 * sj_record.h - record every dispatch the host receives (record_dir).
 *
 * With the setting record_dir, each /job/dispatch/v1 call that passed the
 * SJ-TOKEN check is saved as one JSON file in that directory, before the
 * dispatch is parsed, so that `snailjob-lua replay FILE` can rerun it on a
 * laptop. The file is one object:
 *
 *   {"format": "snailjob-lua dispatch 1", "received_ms": <epoch ms>,
 *    "uri": "/job/dispatch/v1", "headers": {name: value...},
 *    "body": <the call's argument array, as received>}
 *
 * Every header whose name contains "token" (any case) is masked as "***";
 * nothing else is changed. Files are named
 * dispatch-<taskBatchId>-<taskId>-<epoch ms>.json and written to a
 * temporary name first, then renamed, so a reader never sees half a file.
 * The directory is created if missing (one level).
 *
 * Recording never changes what the host does: a failure is logged (WARN,
 * naming the path and the cause) and the dispatch goes on. Any thread; no
 * state is kept between calls.
 */
#ifndef SJ_RECORD_H
#define SJ_RECORD_H

#include <jansson.h>

#include "sj_wire.h"

#define SJ_RECORD_FORMAT "snailjob-lua dispatch 1"

/* Save `req` (its parsed argument array `body`) under `dir`; NULL or ""
 * does nothing. 0, or a negative SJ_E... code (already logged). `path`
 * (may be NULL) gets the file written. */
int sj_record_dispatch(const char *dir, const sj_request *req,
                       const json_t *body, char *path, size_t pathlen);

#endif
