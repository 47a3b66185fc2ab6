/*
 * sj_dl.h - an optional shared library, loaded on first use.
 *
 * libcurl (sj.http) and libmicrohttpd (metrics_listen) pull ~30 libraries
 * into the process (gnutls, p11-kit, krb5, ldap, ...): ~4.4 MB of mapped
 * pages and their constructors' heap in every host, although most hosts
 * never make an HTTP request or serve /metrics (BENCHMARKS.md, idle RSS).
 * The units that use them fill a table of function pointers from the
 * library the first time they need it, instead of linking it.
 *
 * A table is a struct whose members are function pointers typed from the
 * library's own header (`__typeof__(&curl_easy_init) easy_init;`); an
 * sj_dl_sym names each member's symbol and offset (SJ_DL_SYM). A table is
 * filled completely or not at all.
 *
 * Ownership: the library stays loaded for the life of the process (never
 * dlclose'd: the library's threads and atexit handlers may outlive any
 * caller). Threads: sj_dl_load may be called from any thread, but a given
 * table must be filled once (pthread_once, or the main thread at start-up)
 * before other threads read it.
 *
 * Errors: SJ_ENOENT when the library or one of its symbols is missing,
 * with err naming the library (and the symbol) and dlerror()'s text;
 * SJ_ENOMEM.
 */
#ifndef SJ_DL_H
#define SJ_DL_H

#include <stddef.h>

typedef struct sj_dl_sym {
    const char *name; /* the library's symbol */
    size_t offset;    /* of the function pointer in the table */
} sj_dl_sym;

#define SJ_DL_SYM(table_type, member, symbol)                                  \
    {                                                                          \
        symbol, offsetof(table_type, member)                                   \
    }

/* dlopen `soname` and store each symbol of syms[0..n) into `table` at its
 * offset. 0, or SJ_ENOENT / SJ_ENOMEM with err set (table untouched). */
int sj_dl_load(const char *soname, const sj_dl_sym *syms, size_t n, void *table,
               char *err, size_t errlen);

#endif
