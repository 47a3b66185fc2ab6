/*
 * sj_record.c - record every dispatch the host receives (see sj_record.h).
 */
#include "sj_record.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "sj_error.h"
#include "sj_log.h"

static int secret_header(const char *key)
{
    return key != NULL && strcasestr(key, "token") != NULL;
}

static long long epoch_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int sj_record_dispatch(const char *dir, const sj_request *req,
                       const json_t *body, char *path, size_t pathlen)
{
    json_t *rec, *headers, *d = json_array_get(body, 0);
    char file[4096], tmp[4200];
    long long now = epoch_ms();
    int rc = 0;

    if (dir == NULL || dir[0] == '\0')
        return 0;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        SJ_WARN("record_dir '%s': cannot create it: %s (dispatch not "
                "recorded)",
                dir, strerror(errno));
        return SJ_EIO;
    }
    snprintf(file, sizeof file, "%s/dispatch-%lld-%lld-%lld.json", dir,
             (long long)json_integer_value(json_object_get(d, "taskBatchId")),
             (long long)json_integer_value(json_object_get(d, "taskId")), now);
    snprintf(tmp, sizeof tmp, "%s.tmp", file);

    if ((rec = json_object()) == NULL || (headers = json_object()) == NULL) {
        json_decref(rec);
        return SJ_ENOMEM;
    }
    for (size_t i = 0; i < req->n_headers; i++)
        json_object_set_new(headers, req->headers[i].key,
                            json_string(secret_header(req->headers[i].key)
                                            ? "***"
                                            : req->headers[i].value));
    json_object_set_new(rec, "format", json_string(SJ_RECORD_FORMAT));
    json_object_set_new(rec, "received_ms", json_integer(now));
    json_object_set_new(rec, "uri", json_string(req->uri ? req->uri : ""));
    json_object_set_new(rec, "headers", headers);
    json_object_set(rec, "body", (json_t *)body);
    if (json_dump_file(rec, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
        SJ_WARN("record_dir: cannot write '%s': %s (dispatch not recorded)",
                tmp, strerror(errno));
        unlink(tmp);
        rc = SJ_EIO;
    } else if (rename(tmp, file) != 0) {
        SJ_WARN("record_dir: cannot rename '%s': %s (dispatch not recorded)",
                tmp, strerror(errno));
        unlink(tmp);
        rc = SJ_EIO;
    } else if (path != NULL) {
        snprintf(path, pathlen, "%s", file);
    }
    json_decref(rec);
    return rc;
}
