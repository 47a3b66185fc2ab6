/*
 * sj_bytes.c - a growable byte buffer. See sj_bytes.h.
 */
#include "sj_bytes.h"

#include <stdlib.h>
#include <string.h>

bool sj_bytes_add(sj_bytes *b, const char *s, size_t n)
{
    if (n > (size_t)-1 / 2 - b->len)
        return false;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return false;
        b->p = p;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

void sj_bytes_free(sj_bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}
