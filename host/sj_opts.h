/*
 * sj_opts.h - reading the options table of an `sj.*` C function
 * (sj.http.request{...}, sj.exec{...}) with errors that name the function
 * and the option: "sj.exec: option 'timeout' must be a number, got string".
 *
 * Each reader looks up field `k` of the table at index `t` (absolute) and
 * raises a Lua error for a wrong type or range, so call them from a Lua C
 * function. A missing (nil) option gives the default. Runs on the thread
 * that owns `L`.
 */
#ifndef SJ_OPTS_H
#define SJ_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

/* A number >= lo (or dflt). Stack: unchanged. */
double sj_opts_number(lua_State *L, int t, const char *fname, const char *k,
                      double dflt, double lo);

/* A boolean (or dflt). Stack: unchanged. */
bool sj_opts_bool(lua_State *L, int t, const char *fname, const char *k,
                  bool dflt);

/* A string (a number is converted), or NULL when nil. A string is left
 * on the stack (+1) so it stays alive; nil leaves nothing. */
const char *sj_opts_string(lua_State *L, int t, const char *fname,
                           const char *k, size_t *len);

#endif
