/*
 * sj_jscan.h - a strict JSON scanner that builds nothing, for hot paths.
 *
 * jansson builds a tree: a malloc per value, a hash table per object, and
 * a free of each afterwards. For a dispatch body that is a third of the
 * host's instructions per job (issue 14, bench/RESULTS-perf.md). This
 * scanner walks the text in place: it validates, hands out each value as
 * a span of the text, and decodes a string only when asked.
 *
 * Contract: what it accepts, jansson (json_loads, flags 0 or
 * JSON_DECODE_ANY) accepts too, with the same values. What it does not
 * handle it declines (SJ_JS_DECLINE), also when the text may be valid:
 * real numbers, integers outside int64, "\u0000", keys written with
 * escapes, nesting deeper than SJ_JS_MAX_DEPTH. A caller falls back to
 * jansson on a decline, which then gives its own answer (a tree or an
 * error message) for every input. Invalid JSON is declined as well, never
 * accepted. tests/fuzz/fuzz_task.c checks this against jansson.
 *
 * No allocation but sj_jv_strdup's; no global state; any thread.
 */
#ifndef SJ_JSCAN_H
#define SJ_JSCAN_H

#include <stddef.h>
#include <stdint.h>

#define SJ_JS_DECLINE (-1)
#define SJ_JS_MAX_DEPTH 32

typedef enum sj_jv_type {
    SJ_JV_STRING,
    SJ_JV_INT,
    SJ_JV_TRUE,
    SJ_JV_FALSE,
    SJ_JV_NULL,
    SJ_JV_OBJECT,
    SJ_JV_ARRAY
} sj_jv_type;

/* One value, as a span of the scanned text. */
typedef struct sj_jv {
    sj_jv_type type;
    const char *start, *end; /* the value's text; a string's without its
                                quotes, escapes undecoded */
    int escaped;             /* a string that holds escapes */
    int64_t i;               /* SJ_JV_INT */
} sj_jv;

#define SJ_JS_ENTER_MAX 8 /* containers entered at once through the API */

typedef struct sj_jscan {
    const char *p, *end;
    int depth; /* containers entered and not left */
    char kind[SJ_JS_ENTER_MAX], first[SJ_JS_ENTER_MAX];
} sj_jscan;

void sj_jscan_init(sj_jscan *s, const char *text, size_t len);

/* Enter the object or array that comes next (at the top, or as the next
 * element of the array entered last): 0 or SJ_JS_DECLINE. */
int sj_jscan_object(sj_jscan *s);
int sj_jscan_array(sj_jscan *s);

/* The next member of the object entered (key and value), or the next
 * element of the array entered: 1; 0 at its end (the closing bracket is
 * consumed); SJ_JS_DECLINE. An object or array value is skipped whole,
 * validated, and given as its span. */
int sj_jscan_member(sj_jscan *s, sj_jv *key, sj_jv *val);
int sj_jscan_element(sj_jscan *s, sj_jv *val);

/* 0 if only whitespace is left, else SJ_JS_DECLINE. */
int sj_jscan_finish(sj_jscan *s);

/* 1 if string `v` (a key) is exactly `lit`; sj_jv_eq with its length
 * known (`text`, n bytes). */
int sj_jv_is(const sj_jv *v, const char *lit);
int sj_jv_eq(const sj_jv *v, const char *text, size_t n);

/* A string value decoded (escapes, surrogate pairs) into a new
 * NUL-terminated text; NULL when out of memory. */
char *sj_jv_strdup(const sj_jv *v);

#endif
