#include "sj_text.h"

#include <ctype.h>
#include <stdint.h>
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
