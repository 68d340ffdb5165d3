/*
 * Length-prefixed messages over stream sockets: each frame is a 4-byte
 * big-endian length followed by that many bytes (usually a packed protobuf
 * message). Used by the VMM control socket and anything else that speaks
 * protobuf over a unix or TCP stream.
 *
 * The reader accumulates partial input and returns whole frames; the writer
 * queues frames and flushes as far as a non-blocking socket lets it. A
 * length above the reader's maximum is an error (-EMSGSIZE) reported before
 * any of the body is buffered. Not thread-safe: one owner per reader/writer.
 */
#ifndef CANOPY_LIB_FRAME_H
#define CANOPY_LIB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "lib/buf.h"
#include "lib/compiler.h"

/* Size of the length prefix. */
#define FRAME_HDR 4
/* Default and absolute maximum body size: 16 MiB / 256 MiB. */
#define FRAME_DEFAULT_MAX (16u << 20)
#define FRAME_ABS_MAX (256u << 20)

struct frame_reader {
	struct buf in; /* bytes read but not yet returned */
	uint32_t max; /* largest acceptable body */
	size_t done; /* bytes of the last returned frame still at the front */
};

struct frame_writer {
	struct buf out; /* queued bytes not yet written */
};

/* max = 0 means FRAME_DEFAULT_MAX; values above FRAME_ABS_MAX are clamped. */
void frame_reader_init(struct frame_reader *r, uint32_t max);
void frame_reader_free(struct frame_reader *r);
/* Feed bytes (for readers that get data from elsewhere, and tests). */
CN_MUST_CHECK int frame_reader_feed(struct frame_reader *r, const void *p,
				    size_t n);
/* Take the next whole frame out of what was fed or read. Returns 1 and sets
 * *body and *len (valid until the next call on r), 0 when more input is needed,
 * -EMSGSIZE when the announced length exceeds max (the stream is then
 * unusable: close it). */
CN_MUST_CHECK int frame_next(struct frame_reader *r, const uint8_t **body,
			     uint32_t *len);
/* Read what fd has (non-blocking or blocking, one read(2) of up to 64 KiB)
 * into r. Returns bytes read (> 0), 0 on orderly EOF, -EAGAIN when nothing
 * is there, or -errno. */
CN_MUST_CHECK ssize_t frame_reader_fill(struct frame_reader *r, int fd);
/* Bytes buffered that do not form a whole frame yet (at EOF, nonzero means
 * the peer sent a truncated frame). */
size_t frame_reader_pending(const struct frame_reader *r);

void frame_writer_init(struct frame_writer *w);
void frame_writer_free(struct frame_writer *w);
/* Queue a frame with this body. -EMSGSIZE if len > FRAME_ABS_MAX. */
CN_MUST_CHECK int frame_queue(struct frame_writer *w, const void *body,
			      size_t len);
/* Queue a packed protobuf message. */
CN_MUST_CHECK int frame_queue_pb(struct frame_writer *w,
				 const ProtobufCMessage *msg);
/* Write as much as fd takes. Returns the bytes still queued (0 = all
 * written), or -errno (-EPIPE etc.; -EAGAIN is not an error: it returns the
 * remainder). */
CN_MUST_CHECK ssize_t frame_flush(struct frame_writer *w, int fd);
size_t frame_writer_pending(const struct frame_writer *w);

/* Blocking helpers for clients and tests: send one frame / one protobuf
 * message; receive one frame into a malloc'd buffer (caller frees) within
 * timeout_ms (-1 = forever). recv returns 0, -ETIMEDOUT, -EMSGSIZE,
 * -ECONNRESET (EOF in the middle of a frame), -ENODATA (clean EOF before a
 * frame) or -errno. */
CN_MUST_CHECK int frame_send(int fd, const void *body, size_t len);
CN_MUST_CHECK int frame_send_pb(int fd, const ProtobufCMessage *msg);
CN_MUST_CHECK int frame_recv(int fd, uint32_t max, int timeout_ms,
			     uint8_t **body, uint32_t *len);

#endif
