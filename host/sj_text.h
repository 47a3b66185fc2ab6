/*
 * sj_text.h - small text helpers shared by units that talk to people.
 *
 * A leaf: depends on nothing but libc. Any thread.
 */
#ifndef SJ_TEXT_H
#define SJ_TEXT_H

#include <stddef.h>

/* Levenshtein distance between `a` and `b` (bytes; ASCII letters compared
 * without case when `fold_case`), for "did you mean" suggestions;
 * SIZE_MAX when out of memory. */
size_t sj_text_distance(const char *a, const char *b, int fold_case);

#endif
