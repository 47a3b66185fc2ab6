/*
 * sj_files.h - turning the executor path setting into a list of files.
 *
 * The setting is ":"-separated; each entry is a .lua file, a directory (its
 * *.lua files, sorted, not recursive) or a glob. An entry that matches
 * nothing is an error naming it. Main thread.
 */
#ifndef SJ_FILES_H
#define SJ_FILES_H

#include <stddef.h>

typedef struct sj_files {
    char **paths;
    size_t n;
} sj_files;

/* Expand `spec` into `out` (zeroed first). Duplicates are dropped. 0, or
 * SJ_ENOENT / SJ_ENOMEM with `err` naming the entry. */
int sj_files_expand(const char *spec, sj_files *out, char *err, size_t errlen);

void sj_files_free(sj_files *f);

#endif
