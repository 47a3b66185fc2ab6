#include "sj_idset.h"

#include <stdlib.h>

#include "sj_error.h"

enum { EMPTY = 0, USED = 1, DELETED = 2 };

/* Task ids come from one counter on the server: consecutive, so a plain
 * multiplicative hash spreads them well. */
static size_t slot_of(int64_t id, size_t cap)
{
    return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ULL) >> 17) & (cap - 1);
}

/* Where `id` is, or the first free slot of its probe (the first deleted
 * one met, else the empty one that ends it). cap > 0. */
static size_t find(const sj_idset *s, int64_t id, int *found)
{
    size_t i = slot_of(id, s->cap), free_at = (size_t)-1;

    for (;;) {
        if (s->state[i] == EMPTY) {
            *found = 0;
            return free_at != (size_t)-1 ? free_at : i;
        }
        if (s->state[i] == USED && s->keys[i] == id) {
            *found = 1;
            return i;
        }
        if (s->state[i] == DELETED && free_at == (size_t)-1)
            free_at = i;
        i = (i + 1) & (s->cap - 1);
    }
}

static int resize(sj_idset *s, size_t cap)
{
    sj_idset n = {0};

    n.keys = malloc(cap * sizeof *n.keys);
    n.state = calloc(cap, 1);
    if (n.keys == NULL || n.state == NULL) {
        free(n.keys);
        free(n.state);
        return SJ_ENOMEM;
    }
    n.cap = cap;
    for (size_t i = 0; i < s->cap; i++)
        if (s->state[i] == USED) {
            int found;
            size_t at = find(&n, s->keys[i], &found);
            n.keys[at] = s->keys[i];
            n.state[at] = USED;
            n.used++;
        }
    n.filled = n.used;
    sj_idset_free(s);
    *s = n;
    return 0;
}

int sj_idset_add(sj_idset *s, int64_t id)
{
    int found;
    size_t at;

    /* At most half full, deleted slots included, so probes stay short and
     * always end at an empty slot. */
    if ((s->filled + 1) * 2 > s->cap &&
        resize(s, s->cap == 0                  ? 64
                  : (s->used + 1) * 4 > s->cap ? s->cap * 2
                                               : s->cap) != 0)
        return SJ_ENOMEM;
    at = find(s, id, &found);
    if (found)
        return 0;
    if (s->state[at] == EMPTY)
        s->filled++;
    s->keys[at] = id;
    s->state[at] = USED;
    s->used++;
    return 0;
}

int sj_idset_has(const sj_idset *s, int64_t id)
{
    int found;

    if (s->cap == 0)
        return 0;
    find(s, id, &found);
    return found;
}

void sj_idset_del(sj_idset *s, int64_t id)
{
    int found;
    size_t at;

    if (s->cap == 0)
        return;
    at = find(s, id, &found);
    if (found) {
        s->state[at] = DELETED;
        s->used--;
    }
}

void sj_idset_free(sj_idset *s)
{
    free(s->keys);
    free(s->state);
    s->keys = NULL;
    s->state = NULL;
    s->cap = s->used = s->filled = 0;
}
