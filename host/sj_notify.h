/*
 * sj_notify.h - tell the service manager where the host stands (systemd's
 * notification protocol: Type=notify units).
 *
 * sj_notify("READY=1") sends the text as one datagram to the AF_UNIX
 * socket named by $NOTIFY_SOCKET (a path, or "@name" for the abstract
 * namespace), which is what sd_notify(3) documents as its protocol. It is
 * written here instead of linking libsystemd, which maps ~0.9 MB of
 * libraries (gcrypt, lz4, lzma, zstd, cap) into every host for these two
 * datagrams (BENCHMARKS.md, idle RSS). Other socket kinds (vsock) are not
 * supported.
 *
 * Owns nothing between calls (a socket per call). Any thread.
 *
 * Returns 0 when the datagram was sent or no service manager listens
 * ($NOTIFY_SOCKET unset or empty), SJ_EINVAL for an unusable
 * $NOTIFY_SOCKET (relative or too long), SJ_EIO when the send fails.
 */
#ifndef SJ_NOTIFY_H
#define SJ_NOTIFY_H

int sj_notify(const char *state);

#endif
