/*
 * sj_notify.c - systemd's notification datagram. See sj_notify.h.
 */
#include "sj_notify.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sj_error.h"

int sj_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    socklen_t len;
    size_t n;
    int fd, rc = 0;

    if (path == NULL || path[0] == '\0')
        return 0;
    n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path)
        return SJ_EINVAL;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract: no trailing NUL counted */
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                      (path[0] == '/'));
    if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
        return SJ_EIO;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
               (const struct sockaddr *)&sa, len) < 0)
        rc = SJ_EIO;
    close(fd);
    return rc;
}
