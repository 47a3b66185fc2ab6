/*
 * sj_spool.h - a crash-safe journal on disk of results not yet
 * acknowledged.
 *
 * Every result report is appended here before it is first sent and marked
 * acknowledged once the server said so; a host that is killed and started
 * again resends what was pending (protocol.md §4.3: the Java client would
 * lose it).
 *
 * Keyed: a journal belongs to one server address, namespace and group
 * (`key`, e.g. "server=10.0.0.5:17888 namespace=ns group=g") and one host
 * port. Its file is "<dir>/results-<port>-<hash of key>.journal" and its
 * first record names the key, so a record is never replayed to another
 * server, namespace or group. Journals of the same key left by hosts that
 * are gone (another port, a crash) are adopted at open; others are left
 * alone. Old-format journals (lines "R <seq> <json>" without a key, from
 * before this format) are never replayed: a WARN names them.
 *
 * Locked: "<journal>.lock" is flock'ed for the life of the process and
 * holds its pid; a second process on the same journal gets SJ_EEXISTS and
 * an `err` naming that pid.
 *
 * Framed records, one text line each:
 *   "<kind> <seq> <len> <crc> <body>\n"
 * kind H (the key, first), R (a result body, one line of JSON) or A (an
 * acknowledgement of seq, empty body); len is the body's byte count and
 * crc the CRC-32C (hex) of "<kind> <seq> <len>" and the body. A record
 * that does not check is cut: a torn tail (a crash mid-write) is dropped
 * at open and never glued onto the next record; a failed or short write
 * (a full disk) is truncated away at once.
 *
 * Syncing (`sync`): SJ_SPOOL_BATCH fdatasyncs from a background thread at
 * most every 100 ms when something was written (a power loss loses at most
 * the last 100 ms; no caller waits); SJ_SPOOL_ALWAYS syncs each result
 * before sj_spool_append returns; SJ_SPOOL_NEVER leaves it to the kernel.
 *
 * Full disk: sj_spool_append returns SJ_ENOSPC and writes nothing; the
 * journal stays usable. sj_spool_open starts on a full disk too: if the
 * journal cannot be rewritten it goes on appending to the file as it is.
 *
 * Thread-safe.
 */
#ifndef SJ_SPOOL_H
#define SJ_SPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct sj_spool sj_spool;

typedef enum sj_spool_sync {
    SJ_SPOOL_BATCH = 0,
    SJ_SPOOL_ALWAYS,
    SJ_SPOOL_NEVER
} sj_spool_sync;

/* "batch", "always", "never" -> the mode; anything else: batch. */
sj_spool_sync sj_spool_sync_parse(const char *name);

/* Called once per pending record at open, oldest first. `body` is only
 * valid during the call. */
typedef void (*sj_spool_each)(void *ud, uint64_t seq, const char *body);

/* Create `dir` (and its parents) if needed, lock the journal of `key` and
 * `port`, recover pending records (ours and same-key orphans') through
 * `each`, compact. SJ_EIO / SJ_ENOSPC with `err` on failure, SJ_EEXISTS
 * (err names the pid) if another live process holds the journal. */
int sj_spool_open(const char *dir, const char *key, int port,
                  sj_spool_sync sync, sj_spool_each each, void *ud,
                  sj_spool **out, char *err, size_t errlen);

/* Append a record (a single line of JSON); *seq receives its number.
 * SJ_ENOSPC (disk full) or SJ_EIO: nothing was written. */
int sj_spool_append(sj_spool *sp, const char *body, uint64_t *seq);

/* Mark record `seq` acknowledged. */
int sj_spool_ack(sj_spool *sp, uint64_t seq);

/* fdatasync now (at shutdown). */
void sj_spool_sync_now(sj_spool *sp);

/* Records appended and not yet acknowledged. */
size_t sj_spool_pending(sj_spool *sp);

/* The journal's path (valid until close). */
const char *sj_spool_path(const sj_spool *sp);

void sj_spool_close(sj_spool *sp);

/* WARN about each old-format journal in `dir` (the previous default was
 * "./.snailjob-spool"); they are never read. */
void sj_spool_warn_old(const char *dir);

/* Read any journal file for tests and tools: `cb` gets each valid record
 * (kind 'H', 'R' or 'A'), in file order; returns the number of bytes that
 * did not check (torn or corrupt), or SJ_EIO. */
typedef void (*sj_spool_record_cb)(void *ud, char kind, uint64_t seq,
                                   const char *body, size_t len);
long sj_spool_scan(const char *path, sj_spool_record_cb cb, void *ud);

#endif
