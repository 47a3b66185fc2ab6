/*
 * sj_local_print.h - what `snailjob-lua run` and `replay` print.
 *
 * Turns sj_local reports into text for a person or one JSON object for a
 * program (snailjob.testing). Log lines are read back from the report's
 * temporary file one at a time, so printing 100,000 lines holds one line
 * in memory. Keys of every JSON object are sorted; 64-bit ids are exact
 * integers. Any thread, one report at a time (the log file has one read
 * position).
 */
#ifndef SJ_LOCAL_PRINT_H
#define SJ_LOCAL_PRINT_H

#include <stddef.h>
#include <stdio.h>

struct sj_local_report;

/* The report for a person: every task's name, status and result, the
 * final status and result, the workflow context and what changed in it,
 * any mr_do_map calls, the log lines in arrival order under their task,
 * and how many lines were dropped, if any. */
void sj_local_print(const struct sj_local_report *r, FILE *out);

/* The report as one JSON object and a newline: "status" ("SUCCESS",
 * "FAIL", "STOP" or "CANCEL"), "result" (the final result text or null),
 * "executor", "kind", "type", "batch_id", "reason", "elapsed_ms",
 * "tasks" [{"id","parent_id","name","stage","status","host_id","result",
 * "message","args"}], "wf_context" (object), "wf_changed" (the keys whose
 * value differs from the given context), "mr_do_map" [{"parent_id",
 * "task_name","list"}], "logs" [{"task_id","task_name","time","level",
 * "location","message"}], "logs_dropped". One key per line, one log line
 * per line. 0, SJ_ENOMEM or SJ_EIO. */
int sj_local_print_json(const struct sj_local_report *r, FILE *out);

/* A workflow chain (`run A --then B`) of `total` nodes of which the first
 * `n` ran: each node's report in turn, then the chain's status and final
 * context. Text: nodes separated by a heading. JSON: {"status",
 * "wf_context", "nodes": [report...]} with the status of the last node
 * that ran. */
void sj_local_print_chain(const struct sj_local_report *const *r, size_t n,
                          size_t total, FILE *out);
int sj_local_print_chain_json(const struct sj_local_report *const *r, size_t n,
                              FILE *out);

#endif
