/* Test helper: a unix-socket server that echoes length-prefixed frames.
 *
 *   frame_echo SOCKET_PATH [--max BYTES]
 *
 * Prints "ready" once listening. Every frame is echoed back to its sender;
 * the body "quit" gets the reply "bye" and the server exits 0. A client that
 * announces a frame above --max (default 1 MiB), breaks off mid-frame or
 * cannot be written to is disconnected; the others are not affected. Drives
 * lib/loop and lib/frame the way the VMM control socket does.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/frame.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"

/* Default largest frame body accepted from a client. */
#define ECHO_DEFAULT_MAX (1u << 20)

struct echo {
	struct loop *loop;
	uint32_t max;
	int quitting;
};

struct client {
	struct echo *e;
	int fd;
	struct frame_reader rd;
	struct frame_writer wr;
};

static void client_close(struct loop *l, struct client *c, const char *why)
{
	log_info("echo", "client closed", "fd=%d why=%s", c->fd, why);
	loop_fd_del(l, c->fd, LOOP_READ | LOOP_WRITE);
	sys_close(c->fd);
	frame_reader_free(&c->rd);
	frame_writer_free(&c->wr);
	free(c);
}

/* Flush queued replies; watch for writability while some remain. 0 or -errno. */
static int client_flush(struct loop *l, struct client *c);

static void on_client(struct loop *l, int fd, unsigned mask, void *arg);

static int client_flush(struct loop *l, struct client *c)
{
	ssize_t left = frame_flush(&c->wr, c->fd);

	if (left < 0)
		return (int)left;
	if (left > 0)
		return loop_fd_add(l, c->fd, LOOP_WRITE, on_client, c);
	loop_fd_del(l, c->fd, LOOP_WRITE);
	return 0;
}

/* Answer every whole frame buffered. 0, or -errno to drop the client. */
static int client_answer(struct client *c)
{
	const uint8_t *body;
	uint32_t len;
	int rc;

	while ((rc = frame_next(&c->rd, &body, &len)) == 1) {
		if (len == 4 && memcmp(body, "quit", 4) == 0) {
			c->e->quitting = 1;
			return frame_queue(&c->wr, "bye", 3);
		}
		rc = frame_queue(&c->wr, body, len);
		if (rc < 0)
			return rc;
	}
	return rc;
}

static void on_client(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct client *c = arg;
	ssize_t n;
	int rc = 0;

	if (mask & LOOP_READ) {
		while ((n = frame_reader_fill(&c->rd, fd)) > 0) {
			rc = client_answer(c);
			if (rc < 0 || c->e->quitting)
				break;
		}
		if (rc == 0 && n == 0) {
			client_close(l, c,
				     frame_reader_pending(&c->rd) ?
					     "truncated" :
					     "eof");
			return;
		}
		if (rc == 0 && n < 0 && n != -EAGAIN)
			rc = (int)n;
	}
	if (rc == 0)
		rc = client_flush(l, c);
	if (rc < 0) {
		client_close(l, c,
			     rc == -EMSGSIZE ? "oversize" : strerror(-rc));
		return;
	}
	if (c->e->quitting && frame_writer_pending(&c->wr) == 0) {
		client_close(l, c, "quit");
		loop_stop(l);
	}
}

static void on_accept(struct loop *l, int lfd, unsigned mask, void *arg)
{
	struct echo *e = arg;
	struct client *c;
	int fd;

	while ((fd = sys_accept(lfd, 1)) >= 0) {
		c = calloc(1, sizeof(*c));
		if (!c) {
			sys_close(fd);
			continue;
		}
		c->e = e;
		c->fd = fd;
		frame_reader_init(&c->rd, e->max);
		frame_writer_init(&c->wr);
		if (loop_fd_add(l, fd, LOOP_READ, on_client, c) < 0)
			client_close(l, c, "loop");
	}
}

int main(int argc, char **argv)
{
	struct echo e = { .max = ECHO_DEFAULT_MAX };
	int lfd, rc;

	if (argc == 4 && strcmp(argv[2], "--max") == 0)
		e.max = (uint32_t)strtoul(argv[3], NULL, 0);
	else if (argc != 2)
		die("usage: frame_echo SOCKET_PATH [--max BYTES]");
	signal(SIGPIPE, SIG_IGN);
	lfd = sys_unix_listen(argv[1], 64);
	if (lfd < 0)
		die("cannot listen on %s: %s", argv[1], strerror(-lfd));
	if (sys_set_nonblock(lfd, 1) < 0 || loop_create(&e.loop) < 0 ||
	    loop_fd_add(e.loop, lfd, LOOP_READ, on_accept, &e) < 0)
		die("event loop setup failed");
	printf("ready\n");
	fflush(stdout);
	rc = loop_run(e.loop);
	loop_destroy(e.loop);
	sys_close(lfd);
	unlink(argv[1]);
	return rc < 0 ? 1 : 0;
}
