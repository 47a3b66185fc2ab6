/*
 * sj_json.h - the one JSON writer of every body the host sends.
 *
 * Result reports, map reports, log batches and `sj.json.encode` all write
 * their JSON through sj_json_dump, so that a value reads the same on every
 * path: object keys sorted (bytewise), reals in their shortest round-trip
 * form (0.1 is "0.1", not jansson's "0.10000000000000001"; integral reals
 * keep a ".0"), integers exact to 64 bits, strings escaped minimally
 * (controls, '"' and '\\'; UTF-8 passed through, other bytes as
 * U+FFFD). Pure functions: any thread; no state; no Lua.
 */
#ifndef SJ_JSON_H
#define SJ_JSON_H

#include <stddef.h>

#include <jansson.h>

/* Deepest container nesting written (and, in sj_luajson, read). */
#define SJ_JSON_MAX_DEPTH 200

/*
 * `v` as compact JSON text. On success *out is a malloc'd NUL-terminated
 * string the caller free()s and *len its length (len may be NULL).
 * Returns 0, SJ_EINVAL (v NULL), SJ_ENOMEM, or SJ_ETOOBIG (nested deeper
 * than SJ_JSON_MAX_DEPTH).
 */
int sj_json_dump(const json_t *v, char **out, size_t *len);

/* sj_json_dump's text, or NULL on any failure (for callers whose only
 * recovery is "cannot encode"). */
char *sj_json_text(const json_t *v);

/* sj_json_text with object members in their insertion order (the order
 * they were parsed in), as the Java server's Jackson keeps a client's
 * order; for the server emulation. */
char *sj_json_text_ordered(const json_t *v);

/* A growing text buffer for writers that build JSON without a json_t
 * (sj_logrec). Start from {0}; after a successful add, p holds len bytes
 * and a terminating NUL; the caller free()s p. On SJ_ENOMEM the buffer
 * keeps what it had. */
typedef struct sj_json_buf {
    char *p;
    size_t len, cap;
} sj_json_buf;

/* Append `n` bytes of `s`. 0 or SJ_ENOMEM. */
int sj_json_buf_add(sj_json_buf *b, const char *s, size_t n);

/* Append `s` (n bytes) as a JSON string, quotes included, escaped as
 * jansson's dump escapes it (controls as \n or \u00XX, '"', '\\'); a byte
 * that does not start well-formed UTF-8 is written as U+FFFD. The one
 * string escaper of every outbound body. 0 or SJ_ENOMEM. */
int sj_json_buf_str(sj_json_buf *b, const char *s, size_t n);

/* Append `v` as sj_json_dump writes it. 0, SJ_EINVAL (v NULL),
 * SJ_ENOMEM or SJ_ETOOBIG; on an error the buffer holds part of it. */
int sj_json_buf_value(sj_json_buf *b, const json_t *v);

/* The number formats sj_json_dump uses, for writers that build JSON
 * without a json_t (sj_luajson): `d` (finite) as the shortest of
 * %.15g/%.16g/%.17g that reads back as `d`, with ".0" when it has no '.'
 * or exponent, into buf (>= 32 bytes, terminated); `v` in decimal into
 * buf (>= 21 bytes, NOT terminated). Both return the length. */
int sj_json_fmt_real(double d, char *buf);
int sj_json_fmt_int(long long v, char *buf);

#endif
