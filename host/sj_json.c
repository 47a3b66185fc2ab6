/*
 * sj_json.c - the one JSON writer (see sj_json.h).
 */
#include "sj_json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_error.h"
#include "sj_text.h"

/* Shortest of %.15g/%.16g/%.17g that reads back as `d` (finite), made to
 * look like a real (".0" added when it has no '.' or exponent). buf holds
 * at least 32 bytes. Returns the length. */
int sj_json_fmt_real(double d, char *buf)
{
    int n = 0;

    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, 32, "%.*g", prec, d);
        if (prec == 17 || strtod(buf, NULL) == d)
            break;
    }
    /* A locale whose decimal point is not '.' must not leak into JSON. */
    for (int i = 0; i < n; i++) {
        char ch = buf[i];
        if (!(ch >= '0' && ch <= '9') && ch != '-' && ch != '+' && ch != 'e')
            buf[i] = '.';
    }
    if (strpbrk(buf, ".e") == NULL) {
        buf[n++] = '.';
        buf[n++] = '0';
        buf[n] = '\0';
    }
    return n;
}

/* Decimal text of an integer into buf (at least 21 bytes), unterminated.
 * Returns the length. */
int sj_json_fmt_int(long long v, char *buf)
{
    char tmp[24];
    int n = 0, len = 0;
    unsigned long long u =
        v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        buf[len++] = '-';
    while (n > 0)
        buf[len++] = tmp[--n];
    return len;
}

/* sj_json_buf with how dump writes objects. */
typedef struct sbuf {
    sj_json_buf s;
    int keep_order; /* object members in insertion order, not sorted */
} sbuf;

/* Room for `more` bytes and the terminating NUL. */
static int buf_reserve(sj_json_buf *b, size_t more)
{
    size_t cap = b->cap > 0 ? b->cap : 64;
    char *p;

    if (b->p != NULL && b->len + more < b->cap)
        return 0;
    while (cap <= b->len + more) {
        if (cap > SIZE_MAX / 2)
            return SJ_ENOMEM;
        cap *= 2;
    }
    if ((p = realloc(b->p, cap)) == NULL)
        return SJ_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int sj_json_buf_add(sj_json_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n) != 0)
        return SJ_ENOMEM;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int sj_json_buf_str(sj_json_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF"; /* as jansson */
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    if (sj_json_buf_add(b, "\"", 1) != 0)
        return SJ_ENOMEM;
    while (i < n) {
        size_t run = i, seq = 0;
        unsigned char ch;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t elen = 2;

        /* a run of bytes that go out as they are: well-formed UTF-8
         * other than controls, '"' and '\\' */
        while (run < n && u[run] >= 0x20 && u[run] != '"' && u[run] != '\\' &&
               (seq = sj_text_utf8_len(u + run, n - run)) > 0)
            run += seq;
        if (run > i && sj_json_buf_add(b, s + i, run - i) != 0)
            return SJ_ENOMEM;
        if (run == n)
            break;
        ch = u[run];
        switch (ch) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            if (ch >= 0x20) { /* not UTF-8: U+FFFD */
                memcpy(esc, "\xEF\xBF\xBD", 3);
                elen = 3;
                break;
            }
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            elen = 6;
        }
        if (sj_json_buf_add(b, esc, elen) != 0)
            return SJ_ENOMEM;
        i = run + 1;
    }
    return sj_json_buf_add(b, "\"", 1);
}

typedef struct member {
    const char *key;
    size_t len;
    json_t *value;
} member;

static int member_cmp(const void *a, const void *b)
{
    const member *x = a, *y = b;
    int r = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);

    if (r != 0)
        return r;
    return (x->len > y->len) - (x->len < y->len);
}

static int dump_value(sbuf *b, const json_t *v, int depth);

static int dump_object(sbuf *b, const json_t *v, int depth)
{
    json_t *obj = (json_t *)v;
    member small[16], *m = small;
    size_t n = json_object_size(obj), i = 0;
    int rc = 0;

    if (n > sizeof small / sizeof small[0] &&
        (m = malloc(n * sizeof *m)) == NULL)
        return SJ_ENOMEM;
    for (void *it = json_object_iter(obj); it != NULL && i < n;
         it = json_object_iter_next(obj, it), i++) {
        m[i].key = json_object_iter_key(it);
        m[i].len = json_object_iter_key_len(it);
        m[i].value = json_object_iter_value(it);
    }
    n = i;
    if (!b->keep_order)
        qsort(m, n, sizeof *m, member_cmp);
    rc = sj_json_buf_add(&b->s, "{", 1);
    for (i = 0; i < n && rc == 0; i++) {
        if (i > 0)
            rc = sj_json_buf_add(&b->s, ",", 1);
        if (rc == 0)
            rc = sj_json_buf_str(&b->s, m[i].key, m[i].len);
        if (rc == 0)
            rc = sj_json_buf_add(&b->s, ":", 1);
        if (rc == 0)
            rc = dump_value(b, m[i].value, depth + 1);
    }
    if (rc == 0)
        rc = sj_json_buf_add(&b->s, "}", 1);
    if (m != small)
        free(m);
    return rc;
}

static int dump_value(sbuf *b, const json_t *v, int depth)
{
    char num[40];
    int rc;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        if (depth >= SJ_JSON_MAX_DEPTH)
            return SJ_ETOOBIG;
        return dump_object(b, v, depth);
    case JSON_ARRAY: {
        size_t n = json_array_size(v);

        if (depth >= SJ_JSON_MAX_DEPTH)
            return SJ_ETOOBIG;
        if ((rc = sj_json_buf_add(&b->s, "[", 1)) != 0)
            return rc;
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && (rc = sj_json_buf_add(&b->s, ",", 1)) != 0)
                return rc;
            if ((rc = dump_value(b, json_array_get(v, i), depth + 1)) != 0)
                return rc;
        }
        return sj_json_buf_add(&b->s, "]", 1);
    }
    case JSON_STRING:
        return sj_json_buf_str(&b->s, json_string_value(v),
                               json_string_length(v));
    case JSON_INTEGER:
        return sj_json_buf_add(
            &b->s, num, (size_t)sj_json_fmt_int(json_integer_value(v), num));
    case JSON_REAL:
        /* jansson refuses to build NaN/inf reals. */
        return sj_json_buf_add(
            &b->s, num, (size_t)sj_json_fmt_real(json_real_value(v), num));
    case JSON_TRUE:
        return sj_json_buf_add(&b->s, "true", 4);
    case JSON_FALSE:
        return sj_json_buf_add(&b->s, "false", 5);
    case JSON_NULL:
    default:
        return sj_json_buf_add(&b->s, "null", 4);
    }
}

static int dump(const json_t *v, int keep_order, char **out, size_t *len)
{
    sbuf b = {{NULL, 0, 0}, keep_order};
    int rc;

    *out = NULL;
    if (v == NULL)
        return SJ_EINVAL;
    if ((rc = dump_value(&b, v, 0)) != 0) {
        free(b.s.p);
        return rc;
    }
    *out = b.s.p;
    if (len != NULL)
        *len = b.s.len;
    return 0;
}

int sj_json_buf_value(sj_json_buf *b, const json_t *v)
{
    sbuf s = {*b, 0};
    int rc = v != NULL ? dump_value(&s, v, 0) : SJ_EINVAL;

    *b = s.s;
    return rc;
}

int sj_json_dump(const json_t *v, char **out, size_t *len)
{
    return dump(v, 0, out, len);
}

char *sj_json_text(const json_t *v)
{
    char *text = NULL;
    return sj_json_dump(v, &text, NULL) == 0 ? text : NULL;
}

char *sj_json_text_ordered(const json_t *v)
{
    char *text = NULL;
    return dump(v, 1, &text, NULL) == 0 ? text : NULL;
}
