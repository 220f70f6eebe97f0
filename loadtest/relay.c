/* The least any proxy can do, as a yardstick for the load test: relay bytes between each client
 * connection and an upstream connection of its own. One thread, epoll, TCP_NODELAY, no parsing,
 * no timers, no pool. Its CPU per call and its added latency are the floor the kernel and the
 * machine set for a process in the middle: every call still wakes it twice (the request, then
 * the reply) and costs it a read and a write each way. bench.py builds it with `cc -O2`.
 *
 * usage: relay LISTEN_PORT UPSTREAM_PORT (both on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536

static int peer[MAX_FD];
static char buf[1 << 16];

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static void no_delay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* All of `len` bytes to `fd`, waiting for room when the socket is full (a big reply). */
static int write_all(int fd, const char *data, ssize_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno != EAGAIN) return -1;
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      poll(&p, 1, 1000);
      continue;
    }
    data += n;
    len -= n;
  }
  return 0;
}

/* A client connection and its upstream connection, both watched. */
static void pair_up(int ep, int client, int upstream_port) {
  int up = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in at = loopback(upstream_port);
  if (up < 0 || up >= MAX_FD || client >= MAX_FD || connect(up, (struct sockaddr *)&at, sizeof at)) {
    if (up >= 0) close(up);
    close(client);
    return;
  }
  fcntl(up, F_SETFL, O_NONBLOCK);
  no_delay(up);
  no_delay(client);
  peer[client] = up;
  peer[up] = client;
  struct epoll_event ev = {.events = EPOLLIN};
  ev.data.fd = client;
  epoll_ctl(ep, EPOLL_CTL_ADD, client, &ev);
  ev.data.fd = up;
  epoll_ctl(ep, EPOLL_CTL_ADD, up, &ev);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: relay LISTEN_PORT UPSTREAM_PORT\n");
    return 2;
  }
  int listen_port = atoi(argv[1]), upstream_port = atoi(argv[2]), one = 1;
  signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error return, not the end */
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in at = loopback(listen_port);
  if (bind(listener, (struct sockaddr *)&at, sizeof at) || listen(listener, 1024)) {
    perror("relay: listen");
    return 1;
  }
  for (int fd = 0; fd < MAX_FD; fd++) peer[fd] = -1;
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener}, ready[64];
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  for (;;) {
    int n = epoll_wait(ep, ready, 64, -1);
    for (int i = 0; i < n; i++) {
      int fd = ready[i].data.fd;
      if (fd == listener) {
        int client = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
        if (client >= 0) pair_up(ep, client, upstream_port);
        continue;
      }
      if (peer[fd] < 0) continue; /* closed earlier in this batch */
      ssize_t got = read(fd, buf, sizeof buf);
      if (got < 0 && errno == EAGAIN) continue;
      if (got <= 0 || write_all(peer[fd], buf, got)) {
        /* Either side gone: both go (closing removes them from the epoll set). */
        int other = peer[fd];
        close(other);
        close(fd);
        peer[other] = peer[fd] = -1;
      }
    }
  }
}
