#include "sj_endpoint.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "sj_error.h"
#include "sj_log.h"
#include "sj_metrics.h"
#include "sj_record.h"
#include "sj_text.h"

#define AUTH_FAILED                                                            \
    "Authentication failed. [Please check if the configured Token is "         \
    "correct]"

static void fail(sj_reply *reply, const sj_request *req, const char *msg)
{
    sj_reply_set(reply, req->req_id, SJ_STATUS_NO, msg, "null");
}

/* A dispatch: `t` parsed already (sj_task_parse_fast), or NULL and the
 * task is read from `body`. */
static void on_dispatch(sj_endpoint *ep, const sj_request *req,
                        const json_t *body, sj_task *t, sj_reply *reply)
{
    char why[512];
    int rc;

    if (t == NULL) {
        sj_record_dispatch(ep->record_dir, req, body, NULL, 0);
        if ((rc = sj_task_from_json(body, &t, why, sizeof why)) != 0) {
            sj_metrics_dispatch_refused(SJ_REFUSED_MALFORMED);
            SJ_WARN("dispatch refused: %s", why);
            fail(reply, req, why);
            return;
        }
    }
    why[0] = '\0';
    if ((rc = ep->ops.dispatch(ep->ops.ud, t, why, sizeof why)) != 0) {
        /* status 1 + data false: the server fails (and may retry
         * elsewhere) with our message as the reason (protocol.md §5.1). */
        SJ_WARN("dispatch of task %lld (batch %lld, executor '%s') "
                "refused: %s",
                (long long)t->task_id, (long long)t->task_batch_id,
                t->executor_info, why);
        sj_reply_set(reply, req->req_id, SJ_STATUS_YES, why, "false");
        sj_task_free(t);
        return;
    }
    sj_reply_set(reply, req->req_id, SJ_STATUS_YES, "", "true");
}

static void on_stop(sj_endpoint *ep, const sj_request *req, const json_t *body,
                    sj_reply *reply)
{
    json_t *id = json_object_get(json_array_get(body, 0), "taskBatchId");

    if (!json_is_integer(id)) {
        SJ_WARN("stop refused: body has no integer taskBatchId");
        fail(reply, req, "stop body must be [{\"taskBatchId\":<integer>,...}]");
        return;
    }
    /* DEBUG: the server sends one stop per task row, also as cleanup after
     * every batch; sj_pool_stop_batch logs at INFO what it did stop. */
    SJ_DEBUG("stop requested for batch %lld",
             (long long)json_integer_value(id));
    ep->ops.stop(ep->ops.ud, json_integer_value(id));
    sj_reply_set(reply, req->req_id, SJ_STATUS_YES, "", "true");
}

/* One WARN per SJ_ENDPOINT_REFUSAL_LOG_MS for wrong-token calls: the
 * first of a burst at once, the rest as a count (a flood of bad calls must
 * not flood the log). Server thread. */
static void refused(sj_endpoint *ep, const char *uri, int missing)
{
    long long now = sj_mono_ms();

    sj_metrics_dispatch_refused(SJ_REFUSED_TOKEN);
    ep->refused_total_++;
    if (ep->refused_at_ != 0 &&
        now - ep->refused_at_ < SJ_ENDPOINT_REFUSAL_LOG_MS) {
        ep->refused_pending_++;
        return;
    }
    if (ep->refused_pending_ > 0)
        SJ_WARN("%lu more inbound call(s) refused for a wrong or missing "
                "SJ-TOKEN in the last %lld s",
                ep->refused_pending_, (now - ep->refused_at_) / 1000);
    SJ_WARN("inbound %s refused: SJ-TOKEN %s the configured token (further "
            "refusals: one line per %d s, with a count)",
            uri[0] ? uri : "(no uri)",
            missing ? "header missing, expected" : "does not match",
            SJ_ENDPOINT_REFUSAL_LOG_MS / 1000);
    ep->refused_at_ = now;
    ep->refused_pending_ = 0;
}

void sj_endpoint_close(sj_endpoint *ep)
{
    if (ep->refused_pending_ > 0)
        SJ_WARN("%lu more inbound call(s) refused for a wrong or missing "
                "SJ-TOKEN since the last report",
                ep->refused_pending_);
    ep->refused_pending_ = 0;
}

void sj_endpoint_handle(void *ud, const sj_request *req, sj_reply *reply)
{
    sj_endpoint *ep = ud;
    const char *token = sj_request_header(req, "SJ-TOKEN");
    const char *uri = req->uri != NULL ? req->uri : "";
    json_error_t jerr;
    json_t *body;

    /* An empty configured token is a config error (sj_config); an empty
     * inbound one never passes. */
    if (token == NULL || token[0] == '\0' || ep->token[0] == '\0' ||
        !sj_text_equal_ct(token, ep->token)) {
        refused(ep, uri, token == NULL);
        fail(reply, req, AUTH_FAILED);
        return;
    }
    /* The common dispatch without a jansson tree (a third of the host's
     * instructions per job, issue 14); anything it declines, and every
     * recorded dispatch, takes the tree below. */
    if (strcmp(uri, SJ_URI_DISPATCH) == 0 && req->body != NULL &&
        (ep->record_dir == NULL || ep->record_dir[0] == '\0')) {
        sj_task *t;
        if (sj_task_parse_fast(req->body, strlen(req->body), &t) == 1) {
            on_dispatch(ep, req, NULL, t, reply);
            return;
        }
    }
    body = json_loads(req->body ? req->body : "", JSON_DECODE_ANY, &jerr);
    if (body == NULL || !json_is_array(body)) {
        char msg[300];
        if (body == NULL)
            snprintf(msg, sizeof msg,
                     "malformed JSON body for %s: %s (line %d, column %d)", uri,
                     jerr.text, jerr.line, jerr.column);
        else
            snprintf(msg, sizeof msg,
                     "malformed body for %s: expected a JSON array of "
                     "arguments",
                     uri);
        json_decref(body);
        SJ_WARN("inbound call refused: %s", msg);
        fail(reply, req, msg);
        return;
    }
    /* Parsed once here; the handlers read `body`, never req->body. */
    if (strcmp(uri, SJ_URI_DISPATCH) == 0) {
        on_dispatch(ep, req, body, NULL, reply);
    } else if (strcmp(uri, SJ_URI_STOP) == 0) {
        on_stop(ep, req, body, reply);
    } else if (strcmp(uri, SJ_URI_SYNC) == 0) {
        sj_reply_set(reply, req->req_id, SJ_STATUS_YES, "", "null");
    } else {
        char msg[300];
        snprintf(msg, sizeof msg, "unsupported uri: %s", uri);
        SJ_WARN("inbound call refused: %s", msg);
        fail(reply, req, msg);
    }
    json_decref(body);
}
