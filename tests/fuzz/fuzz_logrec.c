/* Fuzz target: task-log message bytes from Lua -> the JSON text record
 * (sj_logrec). The record must parse as JSON; a message that is UTF-8 must
 * come back byte for byte, any other keeps its length order (each bad byte
 * becomes U+FFFD) and the record stays valid. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "sj_logrec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sj_logrec r;
    json_error_t e;
    json_t *v, *msg, *probe;
    size_t len = 0;
    char *text;

    memset(&r, 0, sizeof r);
    r.namespace_id = "ns";
    r.group_name = "group";
    r.job_id = 1;
    r.task_batch_id = 2;
    r.task_id = 3;
    r.real_time = 4;
    r.level = "INFO";
    r.message = (const char *)data;
    r.message_len = size;
    r.location = size > 0 && data[0] == 'L' ? "x.lua:1" : NULL;
    r.host = "127.0.0.1";
    r.port = "17889";
    if ((text = sj_logrec_text(&r, &len)) == NULL)
        return 0; /* out of memory only */
    if (len != strlen(text))
        abort();
    if ((v = json_loadb(text, len, JSON_ALLOW_NUL, &e)) == NULL)
        abort();
    msg = json_object_get(json_array_get(json_object_get(v, "fieldList"), 3),
                          "value");
    if (!json_is_string(msg))
        abort();
    probe = json_stringn((const char *)data, size); /* NULL: not UTF-8 */
    if (probe != NULL && (json_string_length(msg) != size ||
                          memcmp(json_string_value(msg), data, size) != 0))
        abort();
    if (probe == NULL && json_string_length(msg) < size)
        abort();
    json_decref(probe);
    json_decref(v);
    free(text);
    return 0;
}
