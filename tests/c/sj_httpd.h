/*
 * sj_httpd.h - a small HTTP/1.1 server for tests, on 127.0.0.1 (one
 * thread per connection, kept alive unless the client says "Connection:
 * close"; /slow always closes). Routes:
 *   /hello     200 "hello", Content-Type text/plain, X-Test: a, X-Test: b
 *   /echo      200, the whole request as received (request line, headers,
 *              body) as the body
 *   /created   201 "made"
 *   /script    200, a one-line shell script
 *   /redirect  302 to /hello
 *   /big       200, 100000 bytes
 *   /slow      200 promising 1 MB, sending 10 bytes every 50 ms
 *   http://... (a proxy request) 200, the URL as the body
 *   other      404 "nope"
 * httpd_start() listens on a free port (httpd_port); httpd_stop() closes
 * the listener and joins its thread.
 *
 * Header-only; include it from exactly one file of a test program.
 */
#ifndef SJ_HTTPD_H
#define SJ_HTTPD_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void httpd_sleep_ms(long long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int httpd_listen(int *port, int backlog)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(fd, backlog) != 0) {
        perror("listen");
        exit(2);
    }
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void reply(int fd, const char *status, const char *extra,
                  const char *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Length: %zu\r\n%s\r\n", status,
                     len, extra);
    if (send_all(fd, head, (size_t)n) == 0)
        send_all(fd, body, len);
}

/* Read and answer one request; 1 to keep the connection for the next. */
static int serve_one(int fd)
{
    static __thread char req[65536];
    size_t got = 0;
    char *end = NULL;
    req[0] = '\0';
    while (got < sizeof req - 1 && (end = strstr(req, "\r\n\r\n")) == NULL) {
        ssize_t r = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (r <= 0)
            return 0;
        got += (size_t)r;
        req[got] = '\0';
    }
    if (end == NULL)
        return 0;
    size_t head_len = (size_t)(end - req) + 4, clen = 0;
    const char *cl = strcasestr(req, "\r\nContent-Length:");
    if (cl != NULL && cl < end)
        clen = strtoul(cl + 17, NULL, 10);
    while (got < head_len + clen && got < sizeof req - 1) {
        ssize_t r = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    req[got] = '\0';
    char path[256] = "";
    sscanf(req, "%*s %255s", path);

    if (strcmp(path, "/hello") == 0) {
        reply(fd, "200 OK",
              "Content-Type: text/plain\r\nX-Test: a\r\nX-Test: b\r\n", "hello",
              5);
    } else if (strcmp(path, "/echo") == 0) {
        reply(fd, "200 OK", "", req, got);
    } else if (strncmp(path, "http://", 7) == 0) {
        /* a request for a full URL: we were used as a proxy */
        reply(fd, "200 OK", "", path, strlen(path));
    } else if (strcmp(path, "/created") == 0) {
        reply(fd, "201 Created", "", "made", 4);
    } else if (strcmp(path, "/script") == 0) {
        const char *sh = "echo downloaded script ran\n";
        reply(fd, "200 OK", "Content-Type: text/x-sh\r\n", sh, strlen(sh));
    } else if (strcmp(path, "/redirect") == 0) {
        reply(fd, "302 Found", "Location: /hello\r\n", "", 0);
    } else if (strcmp(path, "/big") == 0) {
        static char big[100000];
        memset(big, 'b', sizeof big);
        reply(fd, "200 OK", "", big, sizeof big);
    } else if (strcmp(path, "/slow") == 0) {
        /* 10 bytes every 50 ms of a promised megabyte */
        const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
        if (send_all(fd, head, strlen(head)) == 0)
            for (int i = 0; i < 2000; i++) {
                if (send_all(fd, "0123456789", 10) != 0)
                    break;
                httpd_sleep_ms(50);
            }
        return 0;
    } else {
        reply(fd, "404 Not Found", "", "nope", 4);
    }
    return strcasestr(req, "\r\nConnection: close\r\n") == NULL;
}

static void *serve_conn(void *arg)
{
    int fd = (int)(long)arg, one = 1;
    /* head and body go out in two writes: no Nagle delay between them */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (serve_one(fd))
        ;
    close(fd);
    return NULL;
}

static int httpd_fd, httpd_port;
static pthread_t httpd_thread;

static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(httpd_fd, NULL, NULL);
        if (c < 0)
            return NULL; /* closed at the end */
        pthread_t th;
        pthread_create(&th, NULL, serve_conn, (void *)(long)c);
        pthread_detach(th);
    }
}

static void httpd_start(void)
{
    httpd_fd = httpd_listen(&httpd_port, 64);
    pthread_create(&httpd_thread, NULL, serve, NULL);
}

static void httpd_stop(void)
{
    shutdown(httpd_fd, SHUT_RDWR);
    close(httpd_fd);
    pthread_join(httpd_thread, NULL);
}

#endif
