/*
 * sj_text.h - small text helpers shared by units that talk to people.
 *
 * A leaf: depends on nothing but libc. Any thread.
 *
 * Secrets: a secret (the group token) is never printed whole. sj_text_mask
 * gives the form that is printed instead ("SJ_W…nj"); sj_text_redact
 * rewrites every occurrence of a secret inside text that came from
 * elsewhere (a server's refusal message repeats the token it refused).
 */
#ifndef SJ_TEXT_H
#define SJ_TEXT_H

#include <stddef.h>

/* Levenshtein distance between `a` and `b` (bytes; ASCII letters compared
 * without case when `fold_case`), for "did you mean" suggestions;
 * SIZE_MAX when out of memory. */
size_t sj_text_distance(const char *a, const char *b, int fold_case);

/* Length (1-4) of the well-formed UTF-8 sequence at p, with `left` bytes
 * there (at least 1), or 0 if the bytes are not one (RFC 3629: no
 * overlongs, no surrogates, at most U+10FFFF). */
size_t sj_text_utf8_len(const unsigned char *p, size_t left);

/* The printable stand-in of `secret` into `out` (always terminated):
 * its first 4 and last 2 bytes around "…" when it is at least 12 bytes
 * long (enough stays hidden), else "…" alone; "" for an empty secret. */
void sj_text_mask(const char *secret, char *out, size_t n);

/* Copy `text` into `out` (terminated, truncated to fit) with every
 * occurrence of `secret` replaced by its mask. A NULL or empty `secret`
 * copies as is. Returns `out`. */
char *sj_text_redact(const char *text, const char *secret, char *out, size_t n);

/* 1 when `a` and `b` are equal, else 0, in a time that depends on the
 * length of `b` (the expected value) only, not on where they differ. */
int sj_text_equal_ct(const char *a, const char *b);

#endif
