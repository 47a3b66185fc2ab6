/*
 * sj_pgroup.h - for tests of process-group cleanup: how many processes of
 * a process group exist, read from /proc (any state, zombies included).
 *
 * Header-only; include it from exactly one file of a test program.
 */
#ifndef SJ_PGROUP_H
#define SJ_PGROUP_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>

/* Processes whose process group is `pgid`, any state (zombies too). */
static int sj_group_members(long pgid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[300], buf[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')'); /* comm may hold spaces */
        char state;
        long ppid, pg;
        if (rp != NULL &&
            sscanf(rp + 2, "%c %ld %ld", &state, &ppid, &pg) == 3 && pg == pgid)
            n++;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

#endif
