/* Length-prefixed (4-byte big-endian) message framing over stream sockets. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lib/frame.h"
#include "lib/sys.h"

/* Bytes one frame_reader_fill() asks read(2) for. */
#define FRAME_FILL_CHUNK 65536u

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void frame_reader_init(struct frame_reader *r, uint32_t max)
{
	if (max == 0)
		max = FRAME_DEFAULT_MAX;
	if (max > FRAME_ABS_MAX)
		max = FRAME_ABS_MAX;
	r->max = max;
	r->done = 0;
	/* Room for one whole frame plus one read's worth of the next. */
	buf_init(&r->in, (size_t)max + FRAME_HDR + FRAME_FILL_CHUNK);
}

void frame_reader_free(struct frame_reader *r)
{
	buf_free(&r->in);
	r->done = 0;
}

/* Drop the frame handed out by the previous frame_next(). */
static void reader_release(struct frame_reader *r)
{
	if (r->done) {
		buf_consume(&r->in, r->done);
		r->done = 0;
	}
}

int frame_reader_feed(struct frame_reader *r, const void *p, size_t n)
{
	reader_release(r);
	return buf_append(&r->in, p, n);
}

int frame_next(struct frame_reader *r, const uint8_t **body, uint32_t *len)
{
	const uint8_t *p;
	uint32_t n;

	reader_release(r);
	if (buf_len(&r->in) < FRAME_HDR)
		return 0;
	p = (const uint8_t *)buf_ptr(&r->in);
	n = get_be32(p);
	if (n > r->max)
		return -EMSGSIZE;
	if (buf_len(&r->in) - FRAME_HDR < n)
		return 0;
	*body = p + FRAME_HDR;
	*len = n;
	r->done = FRAME_HDR + (size_t)n;
	return 1;
}

ssize_t frame_reader_fill(struct frame_reader *r, int fd)
{
	char *room;
	ssize_t n;
	int err = 0;

	reader_release(r);
	room = buf_reserve(&r->in, FRAME_FILL_CHUNK, &err);
	if (!room)
		return err;
	n = sys_read(fd, room, FRAME_FILL_CHUNK);
	if (n > 0)
		buf_commit(&r->in, (size_t)n);
	return n;
}

size_t frame_reader_pending(const struct frame_reader *r)
{
	return buf_len(&r->in) - r->done;
}

void frame_writer_init(struct frame_writer *w)
{
	buf_init(&w->out, (size_t)FRAME_ABS_MAX * 2 + FRAME_HDR * 2);
}

void frame_writer_free(struct frame_writer *w)
{
	buf_free(&w->out);
}

int frame_queue(struct frame_writer *w, const void *body, size_t len)
{
	uint8_t *room;
	int err = 0;

	if (len > FRAME_ABS_MAX)
		return -EMSGSIZE;
	room = (uint8_t *)buf_reserve(&w->out, FRAME_HDR + len, &err);
	if (!room)
		return err;
	put_be32(room, (uint32_t)len);
	if (len)
		memcpy(room + FRAME_HDR, body, len);
	buf_commit(&w->out, FRAME_HDR + len);
	return 0;
}

int frame_queue_pb(struct frame_writer *w, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *room;
	int err = 0;

	if (len > FRAME_ABS_MAX)
		return -EMSGSIZE;
	room = (uint8_t *)buf_reserve(&w->out, FRAME_HDR + len, &err);
	if (!room)
		return err;
	put_be32(room, (uint32_t)len);
	if (protobuf_c_message_pack(msg, room + FRAME_HDR) != len)
		return -EPROTO;
	buf_commit(&w->out, FRAME_HDR + len);
	return 0;
}

/* One write without SIGPIPE: send(MSG_NOSIGNAL) on sockets, write(2) on
 * anything else (pipes in tests). Bytes written or -errno. */
static ssize_t out_write(int fd, const struct iovec *iov, int iovcnt)
{
	struct msghdr mh = { .msg_iov = (struct iovec *)iov,
			     .msg_iovlen = (size_t)iovcnt };
	ssize_t n;

	for (;;) {
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == ENOTSOCK)
			n = writev(fd, iov, iovcnt);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

ssize_t frame_flush(struct frame_writer *w, int fd)
{
	while (buf_len(&w->out) > 0) {
		struct iovec iov = { buf_ptr(&w->out), buf_len(&w->out) };
		ssize_t n = out_write(fd, &iov, 1);

		if (n == -EAGAIN || n == -EWOULDBLOCK)
			break;
		if (n < 0)
			return n;
		buf_consume(&w->out, (size_t)n);
	}
	return (ssize_t)buf_len(&w->out);
}

size_t frame_writer_pending(const struct frame_writer *w)
{
	return buf_len(&w->out);
}

/* Write all of iov[], waiting for POLLOUT when the fd is non-blocking. */
static int write_all(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		ssize_t n = out_write(fd, iov, iovcnt);

		if (n == -EAGAIN || n == -EWOULDBLOCK) {
			int rc = sys_wait_fd(fd, POLLOUT, -1);

			if (rc < 0)
				return rc;
			continue;
		}
		if (n < 0)
			return (int)n;
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int frame_send(int fd, const void *body, size_t len)
{
	uint8_t hdr[FRAME_HDR];
	struct iovec iov[2] = { { hdr, FRAME_HDR }, { (void *)body, len } };

	if (len > FRAME_ABS_MAX)
		return -EMSGSIZE;
	put_be32(hdr, (uint32_t)len);
	return write_all(fd, iov, len ? 2 : 1);
}

int frame_send_pb(int fd, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *p;
	int rc;

	if (len > FRAME_ABS_MAX)
		return -EMSGSIZE;
	p = malloc(len ? len : 1);
	if (!p)
		return -ENOMEM;
	if (protobuf_c_message_pack(msg, p) != len)
		rc = -EPROTO;
	else
		rc = frame_send(fd, p, len);
	free(p);
	return rc;
}

/* Wait until fd is readable or the deadline (ms on the monotonic clock,
 * 0 = none) passes: 0, -ETIMEDOUT or -errno. */
static int wait_readable(int fd, uint64_t deadline)
{
	int wait = -1, rc;

	if (deadline) {
		uint64_t now = sys_mono_ms();

		wait = now >= deadline ? 0 : (int)(deadline - now);
	}
	rc = sys_wait_fd(fd, POLLIN, wait);
	if (rc == 0)
		return -ETIMEDOUT;
	return rc < 0 ? rc : 0;
}

/* Read exactly len bytes before the deadline. Returns 0, -ETIMEDOUT,
 * -ENODATA on EOF before the first byte, -ECONNRESET on EOF after some
 * bytes, or -errno. Works on blocking and non-blocking fds. */
static int read_exact(int fd, uint8_t *p, size_t len, uint64_t deadline)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n;
		int rc = wait_readable(fd, deadline);

		if (rc < 0)
			return rc;
		n = sys_read(fd, p + got, len - got);
		if (n == -EAGAIN || n == -EWOULDBLOCK)
			continue;
		if (n < 0)
			return (int)n;
		if (n == 0)
			return got ? -ECONNRESET : -ENODATA;
		got += (size_t)n;
	}
	return 0;
}

int frame_recv(int fd, uint32_t max, int timeout_ms, uint8_t **body,
	       uint32_t *len)
{
	uint64_t deadline = 0;
	uint8_t hdr[FRAME_HDR], *p;
	uint32_t n;
	int rc;

	if (timeout_ms >= 0)
		deadline = sys_mono_ms() + (uint64_t)timeout_ms + 1;
	if (max == 0)
		max = FRAME_DEFAULT_MAX;
	if (max > FRAME_ABS_MAX)
		max = FRAME_ABS_MAX;
	rc = read_exact(fd, hdr, FRAME_HDR, deadline);
	if (rc < 0)
		return rc;
	n = get_be32(hdr);
	if (n > max)
		return -EMSGSIZE;
	p = malloc(n ? n : 1);
	if (!p)
		return -ENOMEM;
	rc = read_exact(fd, p, n, deadline);
	if (rc < 0) {
		free(p);
		return rc == -ENODATA ? -ECONNRESET : rc;
	}
	*body = p;
	*len = n;
	return 0;
}
