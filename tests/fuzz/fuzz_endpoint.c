/* Fuzz target: an inbound call as the server could send it, through the
 * real endpoint (token check, uri routing, dispatch parsing). Input layout:
 * byte 0 picks the uri and the token, the rest is the body. Every call must
 * be answered in-band: a status and a message or JSON data. */
#include <stdlib.h>
#include <string.h>

#include "sj_endpoint.h"
#include "sj_error.h"
#include "sj_task.h"

#define TOKEN "SJ_fuzz"

static int take(void *ud, sj_task *t, char *why, size_t whylen)
{
    (void)ud;
    (void)why;
    (void)whylen;
    /* A task that parsed must build a report for every outcome. */
    for (int o = SJ_OUT_OK; o <= SJ_OUT_SHUTDOWN; o++)
        free(sj_task_report_json(t, (sj_outcome)o, NULL, "m", NULL));
    sj_task_free(t);
    return 0;
}

static void stop(void *ud, int64_t batch)
{
    (void)ud;
    (void)batch;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const uris[] = {SJ_URI_DISPATCH, SJ_URI_STOP,
                                       SJ_URI_SYNC, "/nope", ""};
    sj_endpoint ep = {.token = TOKEN, .ops = {take, stop, NULL}};
    sj_request req = {0};
    sj_reply rep = {0};
    char *body;

    if (size == 0)
        return 0;
    body = malloc(size);
    memcpy(body, data + 1, size - 1);
    body[size - 1] = '\0';
    req.uri = strdup(uris[data[0] % 5]);
    req.body = body;
    sj_request_add_header(&req, "SJ-TOKEN", data[0] & 0x80 ? "bad" : TOKEN);
    sj_endpoint_handle(&ep, &req, &rep);
    if (rep.status != 0 && rep.status != 1)
        abort();
    if (rep.status == 0 && rep.message == NULL)
        abort();
    sj_reply_free(&rep);
    sj_request_free(&req);
    return 0;
}
