#include "sj_jscan.h"

#include <stdlib.h>
#include <string.h>

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(sj_jscan *s)
{
    while (s->p < s->end && is_ws(*s->p))
        s->p++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (p + 4 <= end checked by the caller). */
static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* One UTF-8 sequence at p, valid as jansson checks it (no overlong form,
 * no surrogate, nothing over U+10FFFF): its length, or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned long v;

    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0) {
        n = 2;
        v = c & 0x1F;
    } else if (c < 0xF0) {
        n = 3;
        v = c & 0x0F;
    } else if (c < 0xF5) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    return n;
}

/* A string at s->p (on its opening quote). */
static int scan_string(sj_jscan *s, sj_jv *v)
{
    const char *p = s->p + 1;

    v->type = SJ_JV_STRING;
    v->escaped = 0;
    v->start = p;
    for (;;) {
        if (p >= s->end)
            return SJ_JS_DECLINE;
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c < 0x20)
            return SJ_JS_DECLINE;
        if (c == '\\') {
            v->escaped = 1;
            if (p + 1 >= s->end)
                return SJ_JS_DECLINE;
            switch (p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                continue;
            case 'u': {
                long u;
                if (s->end - p < 6 || (u = hex4(p + 2)) < 0 || u == 0)
                    return SJ_JS_DECLINE;
                p += 6;
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return SJ_JS_DECLINE; /* a lone low surrogate */
                if (u >= 0xD800 && u <= 0xDBFF) {
                    long lo;
                    if (s->end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                        (lo = hex4(p + 2)) < 0xDC00 || lo > 0xDFFF)
                        return SJ_JS_DECLINE;
                    p += 6;
                }
                continue;
            }
            default:
                return SJ_JS_DECLINE;
            }
        }
        size_t n =
            utf8_len((const unsigned char *)p, (const unsigned char *)s->end);
        if (n == 0)
            return SJ_JS_DECLINE;
        p += n;
    }
    v->end = p;
    s->p = p + 1;
    return 0;
}

/* An integer at s->p; reals and what int64 cannot hold are declined. */
static int scan_number(sj_jscan *s, sj_jv *v)
{
    const char *p = s->p;
    int neg = 0;
    uint64_t n = 0, lim;

    v->type = SJ_JV_INT;
    v->start = p;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p >= s->end || *p < '0' || *p > '9')
        return SJ_JS_DECLINE;
    if (*p == '0' && p + 1 < s->end && p[1] >= '0' && p[1] <= '9')
        return SJ_JS_DECLINE; /* a leading zero: invalid */
    lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    while (p < s->end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (n > (lim - d) / 10)
            return SJ_JS_DECLINE;
        n = n * 10 + d;
        p++;
    }
    if (p < s->end && (*p == '.' || *p == 'e' || *p == 'E'))
        return SJ_JS_DECLINE;
    v->i = neg ? (n == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)n)
               : (int64_t)n;
    v->end = p;
    s->p = p;
    return 0;
}

static int scan_literal(sj_jscan *s, sj_jv *v, const char *lit, sj_jv_type t)
{
    size_t n = strlen(lit);

    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return SJ_JS_DECLINE;
    v->type = t;
    v->start = s->p;
    v->end = s->p + n;
    s->p += n;
    return 0;
}

static int scan_value(sj_jscan *s, sj_jv *v, int depth);

/* An object or array at s->p, skipped whole and validated. */
static int skip_container(sj_jscan *s, sj_jv *v, int depth)
{
    char close = *s->p == '{' ? '}' : ']';
    int first = 1;
    sj_jv x;

    if (depth >= SJ_JS_MAX_DEPTH)
        return SJ_JS_DECLINE;
    v->type = close == '}' ? SJ_JV_OBJECT : SJ_JV_ARRAY;
    v->start = s->p++;
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end)
            return SJ_JS_DECLINE;
        if (*s->p == close && first) {
            s->p++;
            break;
        }
        if (!first) {
            if (*s->p == close) {
                s->p++;
                break;
            }
            if (*s->p != ',')
                return SJ_JS_DECLINE;
            s->p++;
            skip_ws(s);
        }
        first = 0;
        if (close == '}') {
            if (s->p >= s->end || *s->p != '"' || scan_string(s, &x) != 0)
                return SJ_JS_DECLINE;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return SJ_JS_DECLINE;
            s->p++;
            skip_ws(s);
        }
        if (scan_value(s, &x, depth + 1) != 0)
            return SJ_JS_DECLINE;
    }
    v->end = s->p;
    return 0;
}

/* Any value at s->p (whitespace skipped before it). */
static int scan_value(sj_jscan *s, sj_jv *v, int depth)
{
    skip_ws(s);
    if (s->p >= s->end)
        return SJ_JS_DECLINE;
    switch (*s->p) {
    case '"':
        return scan_string(s, v);
    case '{':
    case '[':
        return skip_container(s, v, depth);
    case 't':
        return scan_literal(s, v, "true", SJ_JV_TRUE);
    case 'f':
        return scan_literal(s, v, "false", SJ_JV_FALSE);
    case 'n':
        return scan_literal(s, v, "null", SJ_JV_NULL);
    default:
        return scan_number(s, v);
    }
}

/* ---- entered containers ------------------------------------------------ */

void sj_jscan_init(sj_jscan *s, const char *text, size_t len)
{
    memset(s, 0, sizeof *s);
    s->p = text;
    s->end = text + len;
}

/* Before the next member or element of the innermost entered container:
 * 1 if one follows (its separator consumed), 0 if the container ends here
 * (closing bracket consumed, container left), SJ_JS_DECLINE. */
static int next_item(sj_jscan *s, char kind)
{
    int d = s->depth - 1;
    char close = kind == '{' ? '}' : ']';

    if (d < 0 || s->kind[d] != kind)
        return SJ_JS_DECLINE;
    skip_ws(s);
    if (s->p >= s->end)
        return SJ_JS_DECLINE;
    if (*s->p == close) {
        s->p++;
        s->depth--;
        return 0;
    }
    if (s->first[d]) {
        s->first[d] = 0;
        return 1;
    }
    if (*s->p != ',')
        return SJ_JS_DECLINE;
    s->p++;
    skip_ws(s);
    return 1;
}

static int enter(sj_jscan *s, char open)
{
    if (s->depth >= SJ_JS_ENTER_MAX)
        return SJ_JS_DECLINE;
    if (s->depth > 0 && next_item(s, '[') != 1)
        return SJ_JS_DECLINE; /* only an array's element can be entered */
    skip_ws(s);
    if (s->p >= s->end || *s->p != open)
        return SJ_JS_DECLINE;
    s->p++;
    s->kind[s->depth] = open;
    s->first[s->depth] = 1;
    s->depth++;
    return 0;
}

int sj_jscan_object(sj_jscan *s)
{
    return enter(s, '{');
}

int sj_jscan_array(sj_jscan *s)
{
    return enter(s, '[');
}

int sj_jscan_member(sj_jscan *s, sj_jv *key, sj_jv *val)
{
    int rc = next_item(s, '{');

    if (rc != 1)
        return rc;
    /* A key written with escapes may spell a known one: decline. */
    if (s->p >= s->end || *s->p != '"' || scan_string(s, key) != 0 ||
        key->escaped)
        return SJ_JS_DECLINE;
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':')
        return SJ_JS_DECLINE;
    s->p++;
    return scan_value(s, val, s->depth) == 0 ? 1 : SJ_JS_DECLINE;
}

int sj_jscan_element(sj_jscan *s, sj_jv *val)
{
    int rc = next_item(s, '[');

    if (rc != 1)
        return rc;
    return scan_value(s, val, s->depth) == 0 ? 1 : SJ_JS_DECLINE;
}

int sj_jscan_finish(sj_jscan *s)
{
    skip_ws(s);
    return s->depth == 0 && s->p == s->end ? 0 : SJ_JS_DECLINE;
}

int sj_jv_eq(const sj_jv *v, const char *text, size_t n)
{
    return v->type == SJ_JV_STRING && !v->escaped &&
           (size_t)(v->end - v->start) == n && memcmp(v->start, text, n) == 0;
}

int sj_jv_is(const sj_jv *v, const char *lit)
{
    return sj_jv_eq(v, lit, strlen(lit));
}

/* Code point u as UTF-8 at o; returns the bytes written. */
static size_t put_utf8(char *o, unsigned long u)
{
    if (u < 0x80) {
        o[0] = (char)u;
        return 1;
    }
    if (u < 0x800) {
        o[0] = (char)(0xC0 | (u >> 6));
        o[1] = (char)(0x80 | (u & 0x3F));
        return 2;
    }
    if (u < 0x10000) {
        o[0] = (char)(0xE0 | (u >> 12));
        o[1] = (char)(0x80 | ((u >> 6) & 0x3F));
        o[2] = (char)(0x80 | (u & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (u >> 18));
    o[1] = (char)(0x80 | ((u >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((u >> 6) & 0x3F));
    o[3] = (char)(0x80 | (u & 0x3F));
    return 4;
}

char *sj_jv_strdup(const sj_jv *v)
{
    size_t n = (size_t)(v->end - v->start);
    char *out = malloc(n + 1), *o = out; /* decoding never grows it */
    const char *p = v->start;

    if (out == NULL)
        return NULL;
    if (!v->escaped) {
        memcpy(out, p, n);
        out[n] = '\0';
        return out;
    }
    while (p < v->end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            /* validated by scan_string: a pair when high, never 0 */
            unsigned long u = (unsigned long)hex4(p);
            p += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                unsigned long lo = (unsigned long)hex4(p + 2);
                p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            o += put_utf8(o, u);
            break;
        }
        default: /* '"', '\\', '/' */
            *o++ = e;
            break;
        }
    }
    *o = '\0';
    return out;
}
