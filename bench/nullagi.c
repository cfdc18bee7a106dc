/*
 * nullagi: a FastAGI "daemon" that decides nothing, for bench/bench_fastagi.py's floor run.
 *
 * It does what every FastAGI daemon must do for a call and nothing more: accept the
 * connection, read the environment block up to its empty line, send one fixed
 * "EXEC MSet ..." line, read Asterisk's one-line reply and close. One thread, one epoll
 * set, no allocation per call. The same load generator against it, on the same machine in
 * the same minutes, shows the latency that the machine, the kernel's loopback TCP and the
 * load generator give a daemon that costs nothing: the floor under the real daemon's
 * figures.
 *
 * Usage: nullagi [-a 127.0.0.1] [-p 0]
 * Prints "port N\n" on stdout once listening, then serves until SIGTERM or SIGINT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONN 4096
#define BUF 16384
#define MAX_EVENTS 256

static const char MSET[] =
    "EXEC MSet CALLROUTER_ACTION=queue,CALLROUTER_TARGET=,CALLROUTER_QUEUE=support,"
    "CALLROUTER_PRIORITY=0,CALLROUTER_WAIT=0,CALLROUTER_ANNOUNCE=,CALLROUTER_OPERATOR=,"
    "CALLROUTER_REASON=new_caller,CALLROUTER_DECISION=00000000000000000000000000\n";

enum { READING_ENV, READING_REPLY };

struct conn {
    int state;
    size_t len;
    char buf[BUF];
};

static struct conn *conns[MAX_CONN];
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void drop(int epfd, int fd)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    if (fd < MAX_CONN && conns[fd])
        conns[fd]->len = 0;
}

/* Reads what came; returns 1 when the connection is done (closed here). */
static int on_readable(int epfd, int fd)
{
    struct conn *c = conns[fd];
    for (;;) {
        if (c->len == BUF) {
            drop(epfd, fd);
            return 1;
        }
        ssize_t n = read(fd, c->buf + c->len, BUF - c->len);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            drop(epfd, fd);
            return 1;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 0;  /* EAGAIN: wait for more */
        }
        c->len += (size_t)n;
        if (c->state == READING_ENV) {
            char *end = memmem(c->buf, c->len, "\n\n", 2);
            if (!end && !(c->len >= 1 && c->buf[0] == '\n'))
                continue;
            if (write(fd, MSET, sizeof MSET - 1) != (ssize_t)(sizeof MSET - 1)) {
                drop(epfd, fd);
                return 1;
            }
            size_t used = end ? (size_t)(end - c->buf) + 2 : 1;
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
            c->state = READING_REPLY;
        }
        if (c->state == READING_REPLY && memchr(c->buf, '\n', c->len)) {
            drop(epfd, fd);
            return 1;
        }
    }
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1";
    long port = 0;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:")) != -1) {
        if (opt == 'a')
            addr = optarg;
        else if (opt == 'p')
            port = strtol(optarg, NULL, 10);
        else {
            fprintf(stderr, "usage: nullagi [-a ADDR] [-p PORT]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (lfd < 0 || inet_pton(AF_INET, addr, &sin.sin_addr) != 1 ||
        bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(lfd, 1024) < 0) {
        perror("nullagi: listen");
        return 1;
    }
    socklen_t sl = sizeof sin;
    getsockname(lfd, (struct sockaddr *)&sin, &sl);
    printf("port %d\n", ntohs(sin.sin_port));
    fflush(stdout);

    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[MAX_EVENTS];
    while (!stop) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, 200);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (cfd >= MAX_CONN) {
                        close(cfd);
                        continue;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    if (!conns[cfd] && !(conns[cfd] = malloc(sizeof *conns[cfd]))) {
                        close(cfd);
                        continue;
                    }
                    conns[cfd]->state = READING_ENV;
                    conns[cfd]->len = 0;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = cfd};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &cev);
                    on_readable(epfd, cfd);  /* the block may be there already */
                }
            } else {
                on_readable(epfd, fd);
            }
        }
    }
    return 0;
}
