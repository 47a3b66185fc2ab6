/*
 * sj_bytes.h - a growable byte buffer (NUL-terminated after its bytes),
 * for C code that collects data of unknown size: response bodies and
 * headers (sj_http), process output (sj_exec).
 *
 * The buffer owns its memory; zero-initialise it, add with sj_bytes_add,
 * release with sj_bytes_free. Not thread-safe: one owner at a time.
 */
#ifndef SJ_BYTES_H
#define SJ_BYTES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sj_bytes {
    char *p;    /* NULL until the first add */
    size_t len; /* bytes held (p[len] == '\0') */
    size_t cap;
} sj_bytes;

/* Append n bytes of s. false (buffer unchanged) when out of memory. */
bool sj_bytes_add(sj_bytes *b, const char *s, size_t n);

/* Free the memory and zero the buffer (a zeroed buffer is fine). */
void sj_bytes_free(sj_bytes *b);

#endif
