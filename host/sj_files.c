#include "sj_files.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sj_error.h"

static int add(sj_files *f, const char *path)
{
    char **v;

    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->paths[i], path) == 0)
            return 0;
    if ((v = realloc(f->paths, (f->n + 1) * sizeof *v)) == NULL)
        return SJ_ENOMEM;
    f->paths = v;
    if ((v[f->n] = strdup(path)) == NULL)
        return SJ_ENOMEM;
    f->n++;
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_lua(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".lua") == 0 && name[0] != '.';
}

/* All *.lua files directly in `dir`, sorted. */
static int add_dir(sj_files *f, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;
    int rc = 0;

    if (d == NULL)
        return SJ_ENOENT;
    while ((e = readdir(d)) != NULL) {
        char **v;
        if (!is_lua(e->d_name))
            continue;
        if ((v = realloc(names, (n + 1) * sizeof *v)) == NULL) {
            rc = SJ_ENOMEM;
            break;
        }
        names = v;
        if ((names[n] = strdup(e->d_name)) == NULL) {
            rc = SJ_ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            rc = add(f, path);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int add_entry(sj_files *f, const char *entry, char *err, size_t errlen)
{
    struct stat st;
    int rc = 0;

    if (strpbrk(entry, "*?[") != NULL) {
        glob_t g;
        if (glob(entry, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
            snprintf(err, errlen, "executors: '%s' matches no file", entry);
            return SJ_ENOENT;
        }
        for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
            if (stat(g.gl_pathv[i], &st) == 0 && S_ISDIR(st.st_mode))
                rc = add_dir(f, g.gl_pathv[i]);
            else
                rc = add(f, g.gl_pathv[i]);
        globfree(&g);
        return rc;
    }
    if (stat(entry, &st) != 0) {
        snprintf(err, errlen, "executors: cannot read '%s': %s", entry,
                 strerror(errno));
        return SJ_ENOENT;
    }
    if (S_ISDIR(st.st_mode))
        return add_dir(f, entry);
    return add(f, entry);
}

int sj_files_expand(const char *spec, sj_files *out, char *err, size_t errlen)
{
    char *copy, *save = NULL, *entry;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (spec == NULL || spec[0] == '\0')
        return 0;
    if ((copy = strdup(spec)) == NULL)
        return SJ_ENOMEM;
    for (entry = strtok_r(copy, ":", &save); entry != NULL && rc == 0;
         entry = strtok_r(NULL, ":", &save))
        if (entry[0] != '\0')
            rc = add_entry(out, entry, err, errlen);
    free(copy);
    if (rc == SJ_ENOMEM)
        snprintf(err, errlen, "executors: out of memory");
    if (rc != 0)
        sj_files_free(out);
    return rc;
}

void sj_files_free(sj_files *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->paths[i]);
    free(f->paths);
    memset(f, 0, sizeof *f);
}
