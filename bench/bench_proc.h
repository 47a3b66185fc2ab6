/*
 * bench_proc.h - what the benchmarks read about a process from /proc.
 *
 * Header-only, shared by the bench_* programs (each is one program). Any
 * thread.
 */
#ifndef BENCH_PROC_H
#define BENCH_PROC_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* A "Name:  123 kB" field of /proc/<pid>/status, -1 if unreadable. */
static inline long bp_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t len = strlen(field);
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, len) == 0 && line[len] == ':')
            kb = strtol(line + len + 1, NULL, 10);
    fclose(f);
    return kb;
}

/* utime + stime of a process in microseconds (clock-tick resolution), -1
 * if unreadable. */
static inline long long bp_cpu_us(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* after "comm) ": state(3) ... utime(14) stime(15) */
    if ((p = strrchr(buf, ')')) == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -1;
    return (long long)(ut + st) * 1000000LL / sysconf(_SC_CLK_TCK);
}

/* Where a process's resident pages are, from /proc/<pid>/smaps, in kB. */
#define BP_MAX_MAPS 160
typedef struct bp_mem {
    long rss;        /* every mapping */
    long file;       /* mapped files: libraries, the program */
    long file_dirty; /* of which written (relocated data, .data, .bss) */
    long heap;       /* [heap]: malloc's main arena */
    long anon;       /* other anonymous: thread stacks and TLS, mmaps */
    long threads;
    size_t n; /* the mapped files, by base name, Rss summed */
    struct {
        char name[64];
        long rss;
    } maps[BP_MAX_MAPS];
} bp_mem;

/* The mapped file `name` of m, -1 if absent. */
static inline long bp_mem_file(const bp_mem *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->maps[i].name, name) == 0)
            return m->maps[i].rss;
    return -1;
}

/* Fill m for pid. 0, or -1 if smaps cannot be read. */
static inline int bp_smaps(pid_t pid, bp_mem *m)
{
    char path[64], line[512], name[64] = "";
    int kind = 0; /* 1 file, 2 heap, 3 other anonymous */
    long kb;
    FILE *f;

    memset(m, 0, sizeof *m);
    m->threads = bp_status_kb(pid, "Threads");
    snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        char *p = strchr(line, ' ');
        if (p != NULL && p > line && p[-1] != ':') { /* a mapping's head */
            char *file = strchr(line, '/'), *nl;
            if ((nl = strchr(line, '\n')) != NULL)
                *nl = '\0';
            if (file != NULL) {
                const char *base = strrchr(file, '/') + 1;
                snprintf(name, sizeof name, "%s", base);
                kind = 1;
            } else {
                kind = strstr(line, "[heap]") != NULL ? 2 : 3;
            }
            continue;
        }
        if (sscanf(line, "Rss: %ld kB", &kb) == 1) {
            m->rss += kb;
            if (kind == 2)
                m->heap += kb;
            else if (kind == 3)
                m->anon += kb;
            else if (kind == 1) {
                size_t i;
                m->file += kb;
                for (i = 0; i < m->n; i++)
                    if (strcmp(m->maps[i].name, name) == 0)
                        break;
                if (i == m->n && m->n < BP_MAX_MAPS)
                    snprintf(m->maps[m->n++].name, sizeof m->maps[0].name, "%s",
                             name);
                if (i < m->n)
                    m->maps[i].rss += kb;
            }
        } else if (kind == 1 &&
                   sscanf(line, "Private_Dirty: %ld kB", &kb) == 1) {
            m->file_dirty += kb;
        }
    }
    fclose(f);
    return 0;
}

/* One line: "RSS kB: mapped files F (written D), heap H, other anonymous
 * A (thread stacks, TLS, mmaps); T threads". */
static inline void bp_mem_print(const char *indent, const bp_mem *m)
{
    printf("%s%ld kB: mapped files %ld kB (of which written: relocated "
           "data, .data, .bss %ld kB), heap %ld kB, other anonymous (thread "
           "stacks, TLS, mmaps) %ld kB; %ld threads\n",
           indent, m->rss, m->file, m->file_dirty, m->heap, m->anon,
           m->threads);
}

#endif
