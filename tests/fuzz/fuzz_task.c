/* Fuzz target: the fast dispatch parser (sj_task_parse_fast, sj_jscan)
 * against the jansson one. Whatever the fast one accepts, jansson's path
 * must accept too and make the identical task of it; a mismatch aborts.
 * The input is the dispatch body. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "sj_task.h"

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int same_tree(const json_t *a, const json_t *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && json_equal(a, b));
}

static int same_task(const sj_task *a, const sj_task *b)
{
    return a->job_id == b->job_id && a->task_batch_id == b->task_batch_id &&
           a->task_id == b->task_id &&
           a->workflow_task_batch_id == b->workflow_task_batch_id &&
           a->workflow_node_id == b->workflow_node_id &&
           a->task_type == b->task_type && a->mr_stage == b->mr_stage &&
           a->parallel_num == b->parallel_num &&
           a->executor_type == b->executor_type &&
           a->executor_timeout == b->executor_timeout &&
           a->has_sharding == b->has_sharding &&
           a->sharding_index == b->sharding_index &&
           a->sharding_total == b->sharding_total &&
           a->has_retry_count == b->has_retry_count &&
           a->retry_count == b->retry_count &&
           a->has_retry_scene == b->has_retry_scene &&
           a->retry_scene == b->retry_scene &&
           a->has_retry_status == b->has_retry_status &&
           a->retry_status == b->retry_status && a->has_retry == b->has_retry &&
           a->retry == b->retry && same_str(a->namespace_id, b->namespace_id) &&
           same_str(a->group_name, b->group_name) &&
           same_str(a->job_biz_id, b->job_biz_id) &&
           same_str(a->task_name, b->task_name) &&
           same_str(a->executor_info, b->executor_info) &&
           same_str(a->wf_context, b->wf_context) &&
           same_str(a->job_params, b->job_params) &&
           same_tree(a->maps, b->maps) && same_tree(a->reduces, b->reduces) &&
           a->args_bytes == b->args_bytes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size + 1), err[256];
    sj_task *fast = NULL, *slow = NULL;
    json_t *root;

    memcpy(body, data, size);
    body[size] = '\0';
    if (sj_task_parse_fast(body, strlen(body), &fast) == 1) {
        root = json_loads(body, JSON_DECODE_ANY, NULL);
        if (root == NULL || sj_task_from_json(root, &slow, err, sizeof err))
            abort(); /* accepted what jansson's path refuses */
        if (!same_task(fast, slow))
            abort();
        json_decref(root);
    }
    sj_task_free(fast);
    sj_task_free(slow);
    free(body);
    return 0;
}
