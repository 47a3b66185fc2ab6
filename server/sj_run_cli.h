/*
 * sj_run_cli.h - the `run` and `replay` subcommands of snailjob-lua.
 *
 * Parses their command lines, prints their own --help, turns a workflow
 * chain (`run A --then B`) into one sj_local run per node with the context
 * passed on as the server does, turns a recorded dispatch (sj_record.h)
 * back into sj_local options, and prints the reports (sj_local_print.h).
 * Config loading stays main()'s: it is passed in as `setup`/`teardown`.
 *
 * Main thread only, before any other thread exists (signals are blocked
 * for the run). Returns the process exit status (SJ_RUN_EXIT_*).
 */
#ifndef SJ_RUN_CLI_H
#define SJ_RUN_CLI_H

#include <stdio.h>

#include "sj_config.h"
#include "sj_files.h"

enum {
    SJ_RUN_EXIT_OK = 0,       /* SUCCESS */
    SJ_RUN_EXIT_FAIL = 1,     /* FAIL or STOP, no such executor */
    SJ_RUN_EXIT_USAGE = 2,    /* bad command line or configuration */
    SJ_RUN_EXIT_EXECUTORS = 3 /* an executor file failed to load */
};

typedef struct sj_run_setup {
    /* Load config, log and executor files for subcommand `cmd`: an exit
     * status (message printed), SJ_RUN_EXIT_OK when cfg/files are set. */
    int (*setup)(const char *cmd, const char *config_file, sj_config *cfg,
                 sj_files *files);
    void (*teardown)(sj_config *cfg, sj_files *files);
} sj_run_setup;

/* argv: what follows "run" / "replay"; config_file from before it. */
int sj_run_cli(int argc, char **argv, const char *config_file,
               const sj_run_setup *s);
int sj_replay_cli(int argc, char **argv, const char *config_file,
                  const sj_run_setup *s);

void sj_run_cli_usage(FILE *out);
void sj_replay_cli_usage(FILE *out);

#endif
