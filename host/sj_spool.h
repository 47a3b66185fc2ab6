/*
 * sj_spool.h - a journal on disk of results not yet acknowledged.
 *
 * Every result report is appended here before it is first sent and marked
 * acknowledged once the server said so; a host that is killed and started
 * again resends what was pending (protocol.md §4.3: the Java client would
 * lose it). The file is "<dir>/<name>.journal", locked with flock for the
 * life of the process; journals left by dead processes in the same
 * directory (other ports, crashed hosts) are adopted at open.
 *
 * Records are lines: "R <seq> <json>" and "A <seq>". One write() per record
 * with O_APPEND, so a crash never leaves half a record behind a whole one
 * (a torn last line is ignored). Thread-safe.
 */
#ifndef SJ_SPOOL_H
#define SJ_SPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct sj_spool sj_spool;

/* Called once per pending record at open, oldest first. `body` is only
 * valid during the call. */
typedef void (*sj_spool_each)(void *ud, uint64_t seq, const char *body);

/* Create `dir` if needed, lock the journal, recover pending records (ours
 * and orphans') through `each`, compact. SJ_EIO with `err` on failure,
 * SJ_EEXISTS if another live process holds the journal. */
int sj_spool_open(const char *dir, const char *name, sj_spool_each each,
                  void *ud, sj_spool **out, char *err, size_t errlen);

/* Append a record (a single line of JSON); *seq receives its number. */
int sj_spool_append(sj_spool *sp, const char *body, uint64_t *seq);

/* Mark record `seq` acknowledged. */
int sj_spool_ack(sj_spool *sp, uint64_t seq);

/* Records appended and not yet acknowledged. */
size_t sj_spool_pending(sj_spool *sp);

void sj_spool_close(sj_spool *sp);

#endif
