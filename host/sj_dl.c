/*
 * sj_dl.c - an optional shared library, loaded on first use. See sj_dl.h.
 */
#include "sj_dl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sj_error.h"

int sj_dl_load(const char *soname, const sj_dl_sym *syms, size_t n, void *table,
               char *err, size_t errlen)
{
    void *lib, **fns;
    const char *why;

    if ((lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        why = dlerror();
        snprintf(err, errlen, "cannot load %s: %s", soname,
                 why != NULL ? why : "unknown error");
        return SJ_ENOENT;
    }
    if ((fns = calloc(n ? n : 1, sizeof *fns)) == NULL) {
        snprintf(err, errlen, "cannot load %s: out of memory", soname);
        dlclose(lib);
        return SJ_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        dlerror();
        if ((fns[i] = dlsym(lib, syms[i].name)) == NULL) {
            why = dlerror();
            snprintf(err, errlen, "cannot load %s: no symbol %s%s%s", soname,
                     syms[i].name, why != NULL ? ": " : "",
                     why != NULL ? why : "");
            free(fns);
            dlclose(lib);
            return SJ_ENOENT;
        }
    }
    /* POSIX (dlsym): a function's address converts through void *; the
     * bytes are copied, not cast, to stay within C's aliasing rules. */
    for (size_t i = 0; i < n; i++)
        memcpy((char *)table + syms[i].offset, &fns[i], sizeof fns[i]);
    free(fns);
    return 0;
}
