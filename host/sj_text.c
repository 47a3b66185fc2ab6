#include "sj_text.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t sj_text_distance(const char *a, const char *b, int fold_case)
{
    size_t la = strlen(a), lb = strlen(b), d;
    size_t *row = malloc((lb + 1) * sizeof *row);

    if (row == NULL)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            unsigned char x = (unsigned char)a[i - 1];
            unsigned char y = (unsigned char)b[j - 1];
            size_t best =
                diag + (fold_case ? tolower(x) != tolower(y) : x != y);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    d = row[lb];
    free(row);
    return d;
}

#define MASK_MIN 12 /* shorter secrets show nothing but the ellipsis */

void sj_text_mask(const char *secret, char *out, size_t n)
{
    size_t len = secret != NULL ? strlen(secret) : 0;

    if (n == 0)
        return;
    if (len == 0)
        out[0] = '\0';
    else if (len < MASK_MIN)
        snprintf(out, n, "\xe2\x80\xa6");
    else
        snprintf(out, n, "%.4s\xe2\x80\xa6%s", secret, secret + len - 2);
}

char *sj_text_redact(const char *text, const char *secret, char *out, size_t n)
{
    char mask[32];
    size_t used = 0, slen, mlen;
    const char *p = text, *hit;

    if (n == 0)
        return out;
    if (secret == NULL || secret[0] == '\0') {
        snprintf(out, n, "%s", text);
        return out;
    }
    sj_text_mask(secret, mask, sizeof mask);
    slen = strlen(secret);
    mlen = strlen(mask);
    out[0] = '\0';
    while (used + 1 < n) {
        size_t take;

        hit = strstr(p, secret);
        take = hit != NULL ? (size_t)(hit - p) : strlen(p);
        if (take > n - 1 - used)
            take = n - 1 - used;
        memcpy(out + used, p, take);
        used += take;
        if (hit == NULL || used + 1 >= n)
            break;
        /* never a cut mask: it could end in the secret's own bytes */
        if (mlen > n - 1 - used)
            break;
        memcpy(out + used, mask, mlen);
        used += mlen;
        p = hit + slen;
    }
    out[used] = '\0';
    return out;
}

int sj_text_equal_ct(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;

    /* Walks all of `b`; `a` is read only while inside it. */
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)((i < la ? (unsigned char)a[i] : 0) ^
                                (unsigned char)b[i]);
    return diff == 0;
}

size_t sj_text_utf8_len(const unsigned char *p, size_t left)
{
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        n = 3;
        lo = p[0] == 0xE0 ? 0xA0 : 0x80;
        hi = p[0] == 0xED ? 0x9F : 0xBF;
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        n = 4;
        lo = p[0] == 0xF0 ? 0x90 : 0x80;
        hi = p[0] == 0xF4 ? 0x8F : 0xBF;
    } else
        return 0;
    if (left < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}
