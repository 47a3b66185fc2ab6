/*
 * sj_idset.h - a set of 64-bit ids (open addressing, linear probing).
 *
 * The pool keeps the ids of its queued tasks here, so that a dispatch is
 * checked for a duplicate in constant time: the scan of the whole queue
 * it replaces was 14 % of the host's CPU in a 5,000-way MapReduce, whose
 * leaves all wait in the queue at once (issue 14). Not thread-safe: the
 * owner's lock guards it. Start from {0}; sj_idset_free releases it.
 */
#ifndef SJ_IDSET_H
#define SJ_IDSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct sj_idset {
    int64_t *keys;
    unsigned char *state; /* 0 empty, 1 used, 2 deleted */
    size_t cap;           /* a power of two, or 0 */
    size_t used;          /* ids in the set */
    size_t filled;        /* used + deleted slots */
} sj_idset;

/* 0, or SJ_ENOMEM (the set is unchanged). Adding an id already in the
 * set is a no-op. */
int sj_idset_add(sj_idset *s, int64_t id);

/* 1 if `id` is in the set. */
int sj_idset_has(const sj_idset *s, int64_t id);

/* Remove `id` if present. */
void sj_idset_del(sj_idset *s, int64_t id);

void sj_idset_free(sj_idset *s);

#endif
