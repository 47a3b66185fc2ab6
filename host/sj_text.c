#include "sj_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t sj_text_distance(const char *a, const char *b)
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
            size_t best = diag + (a[i - 1] != b[j - 1]);
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
