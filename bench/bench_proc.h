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

#endif
