/*
 * Split virtqueues (virtio 1.x, section 2.7) as the device side sees them:
 * pop a validated descriptor chain, push its completion, decide whether the
 * driver wants an interrupt. Pure code over a guest-memory view (struct
 * gmem), so device models can be unit-tested against a fake guest.
 *
 * Everything read from the rings is hostile: every address and length goes
 * through gmem_ptr() with overflow-safe checks, chains are bounded by the
 * queue size, loops and nested indirect tables are refused, and device-
 * readable buffers must come before device-writable ones. A bad chain is
 * reported as -EINVAL; the caller (the device) then marks itself as needing
 * a reset. Nothing outside guest RAM is ever touched.
 *
 * Threads: one thread at a time per queue (the device's worker); the
 * transport configures a queue only while its device is not processing.
 */
#ifndef CANOPY_VMM_VIRTQ_H
#define CANOPY_VMM_VIRTQ_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>

#include "lib/compiler.h"

/* A view of guest RAM: ram_size bytes at ram; the first low_size bytes at
 * GPA 0, the rest at GMEM_HIGH_START (the VMM's layout). */
#define GMEM_HIGH_START 0x100000000ull
#define GMEM_PAGE 4096ull
struct gmem {
	uint8_t *ram;
	uint64_t ram_size, low_size;
	/* Pages devices wrote while `logging` (bit i = RAM page i in memfd
	 * order, as dirty.c's bitmaps); KVM's dirty log does not see writes
	 * made by the VMM itself. NULL: not tracked. */
	_Atomic uint64_t *dirty;
	_Atomic int logging;
};

/* Host address of guest range [gpa, gpa + len), or NULL if any byte of it
 * is outside guest RAM. Overflow-safe. */
void *gmem_ptr(const struct gmem *m, uint64_t gpa, uint64_t len);
/* A device wrote the host range [p, p + len) of guest RAM (p from
 * gmem_ptr): mark its pages dirty when logging. Any thread. */
void gmem_mark(const struct gmem *m, const void *p, uint64_t len);

/* Descriptor flags and ring flags (virtio 1.x, 2.7.5 and 2.7.6). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Feature bits the queue code implements (the transport offers them). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29

/* Largest queue we accept, and the most segments one request may have
 * (descriptors in a chain, or in an indirect table). */
#define VIRTQ_MAX_SIZE 1024u
#define VIRTQ_MAX_SEGS 1024u
/* Most bytes one request may describe, readable plus writable. */
#define VIRTQ_MAX_BYTES (64u << 20)

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct virtq {
	const struct gmem *mem;
	uint16_t size; /* entries, a power of 2, <= VIRTQ_MAX_SIZE */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	int event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
	int indirect; /* VIRTIO_F_INDIRECT_DESC negotiated */
	/* Device-side indices: next avail entry to take, next used entry. */
	uint16_t last_avail, used_idx;
	/* used_idx when the driver was last signalled (for EVENT_IDX). */
	uint16_t signalled_used;
	int signalled_valid;
	/* Host addresses, set by virtq_start. */
	struct virtq_desc *desc;
	uint16_t *avail; /* flags, idx, ring[size], used_event */
	uint8_t *used; /* flags, idx, ring[size] {id, len}, avail_event */
};

/* One request: the chain's head and its segments, readable ones first. */
struct virtq_req {
	const struct gmem *mem; /* the queue's, for dirty marking */
	uint16_t head;
	unsigned nr, nw; /* readable segments, then writable ones */
	uint64_t rlen, wlen; /* bytes in each part */
	struct iovec iov[VIRTQ_MAX_SEGS];
};

/* Check the ring addresses (alignment, inside guest RAM) and map them.
 * 0, or -EINVAL when the driver gave bad addresses or a bad size. */
CN_MUST_CHECK int virtq_start(struct virtq *q);

/* Take the next available chain. 1 with *r filled, 0 when the ring is
 * empty, -EINVAL for a bad chain or a bad avail index (the device must then
 * stop using the queue: DEVICE_NEEDS_RESET). */
CN_MUST_CHECK int virtq_pop(struct virtq *q, struct virtq_req *r);

/* Put the chain virtq_pop just returned back on the ring (the device
 * could not take it now); the next pop returns it again. */
void virtq_unpop(struct virtq *q);

/* Give back the chain that started at head, with `written` bytes written
 * into its writable part. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/* After pushes: does the driver want an interrupt now? Records that it
 * was signalled. */
int virtq_should_signal(struct virtq *q);

/* Entries the driver made available and the device has not taken. */
uint16_t virtq_pending(const struct virtq *q);

/* Copy helpers over a request's segments: from the readable part at
 * offset off, into the writable part at offset off. They return the bytes
 * copied (short when the part is shorter). */
size_t virtq_req_read(const struct virtq_req *r, uint64_t off, void *dst,
		      size_t len);
size_t virtq_req_write(const struct virtq_req *r, uint64_t off, const void *src,
		       size_t len);
/* Point out[] at len bytes from byte off of the segments [first, first +
 * count) of r (no copy); returns how many iovecs it used (at most count). */
int virtq_req_slice(const struct virtq_req *r, unsigned first, unsigned count,
		    uint64_t off, uint64_t len, struct iovec *out);

#endif
