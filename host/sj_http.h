/*
 * sj_http.h - `sj.http`: HTTP(S) requests from a handler, on libcurl's
 * multi interface, as cancellation points like sj.sleep.
 *
 * sj.http.request{url=, method="GET", headers={}, body=nil, timeout=60,
 * connect_timeout=10, follow_redirects=true, max_body=16 MiB,
 * insecure=false} returns {status=, headers=, body=, url=} (header names
 * lower-case, repeated headers joined with ", ", `url` the effective URL
 * after redirects). sj.http.get(url [, opts]) and sj.http.post(url, body
 * [, opts]) are shorthands.
 *
 * The transfer is driven from the calling worker thread in slices of at
 * most 10 ms (curl_multi_poll); between slices the run's stop flag and
 * deadline are polled, so a stop or timeout aborts the transfer at any
 * stage (DNS, connect, TLS, upload, download) within one slice. The
 * transfer is removed and its buffers freed before the interruption is
 * raised, so nothing leaks when it unwinds the handler.
 *
 * Errors: any HTTP status is a response. A transport failure (refused,
 * DNS, TLS verification, the request's own timeout, a body over max_body,
 * a bad option) raises a catchable Lua error "sj.http: METHOD URL: cause".
 * A stop or the task's deadline raises the host's uncatchable
 * interruption (sj_lualib_interrupt).
 *
 * Ownership: each lua_State keeps one curl multi handle and one easy
 * handle (connections and DNS are reused between calls) in a registry
 * userdata freed by its __gc when the state closes. TLS is verified
 * against the system store unless insecure=true; proxies come from the
 * usual environment variables (curl's defaults). Only http and https are
 * allowed, also on redirects.
 *
 * Threads: everything runs on the thread that owns the state; libcurl is
 * loaded (sj_dl.h: it is not linked, so a host that makes no request
 * never maps it and its ~30 libraries) and initialised once,
 * thread-safely, on the first request of any state. If it cannot be
 * loaded, every sj.http call raises "sj.http: cannot load libcurl.so.4:
 * ...".
 */
#ifndef SJ_HTTP_H
#define SJ_HTTP_H

#include <lua.h>

/* Push the `sj.http` table {request, get, post}. Stack: +1. May raise
 * (memory). */
int sj_http_open(lua_State *L);

#endif
