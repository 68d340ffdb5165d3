/* virtio-blk device model: request decoding and validation, I/O through a
 * blk_backend on the device's worker thread (see virtio_blk.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/vmm/le.h"
#include "host/vmm/blk_pool.h"
#include "host/vmm/virtio_blk.h"
#include "host/vmm/virtio_pci.h"
#include "lib/buf.h"
#include "lib/log.h"

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14
/* Request types and status values (5.2.6). */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_WZ_UNMAP 1

#define BLK_QUEUE_SIZE 256
#define BLK_SEG_MAX (BLK_QUEUE_SIZE - 2)
#define BLK_SECTOR 512ull
#define BLK_HDR 16u
/* Discard / write-zeroes: segments per request and sectors per segment. */
#define BLK_DZ_SEGS 16u
#define BLK_DZ_SECTORS (1u << 22)
#define BLK_CONFIG_SIZE 60u
/* Class: mass storage, "other". */
#define PCI_CLASS_STORAGE_OTHER 0x018000
#define BLK_STATE_VERSION 1
/* I/O threads of a disk whose backend takes concurrent requests. */
#define BLK_IO_THREADS 4

struct blk {
	struct virtio_dev *vd;
	struct blk_backend *b;
	char serial[BLK_SERIAL_MAX + 1];
	uint8_t config[BLK_CONFIG_SIZE];
	struct blk_pool pool; /* requests and the I/O threads */
	/* Counters, for status and tests. */
	_Atomic uint64_t reads, writes, flushes, errors, rbytes, wbytes;
};

static uint64_t blk_features(struct virtio_dev *vd)
{
	struct blk *k = vd->priv;
	uint64_t f = (1ull << VIRTIO_BLK_F_SEG_MAX) |
		     (1ull << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ull << VIRTIO_BLK_F_FLUSH);

	if (k->b->readonly)
		return f | (1ull << VIRTIO_BLK_F_RO);
	if (k->b->ops->discard)
		f |= 1ull << VIRTIO_BLK_F_DISCARD;
	if (k->b->ops->write_zeroes)
		f |= 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	return f;
}

static void build_config(struct blk *k)
{
	uint8_t *c = k->config;
	uint32_t align = k->b->block_size / BLK_SECTOR;

	memset(c, 0, sizeof(k->config));
	put64(c + 0, k->b->size / BLK_SECTOR); /* capacity */
	put32(c + 12, BLK_SEG_MAX);
	put32(c + 20, k->b->block_size);
	put16(c + 34, 1); /* num_queues */
	put32(c + 36, BLK_DZ_SECTORS); /* max_discard_sectors */
	put32(c + 40, BLK_DZ_SEGS);
	put32(c + 44, align ? align : 1);
	put32(c + 48, BLK_DZ_SECTORS); /* max_write_zeroes_sectors */
	put32(c + 52, BLK_DZ_SEGS);
	c[56] = 1; /* write_zeroes_may_unmap */
}

static void blk_config_read(struct virtio_dev *vd, uint32_t off, void *data,
			    uint32_t len)
{
	struct blk *k = vd->priv;

	memcpy(data, k->config + off, len);
}

/* Is [sector, sector + bytes) inside the disk? */
static int in_range(const struct blk *k, uint64_t sector, uint64_t bytes)
{
	uint64_t cap = k->b->size / BLK_SECTOR;

	return sector <= cap && bytes / BLK_SECTOR <= cap - sector &&
	       bytes % BLK_SECTOR == 0;
}

static uint8_t do_rw(struct blk *k, struct blk_io *io, uint32_t type,
		     uint64_t sector, uint32_t *written)
{
	const struct virtq_req *r = &io->req;
	int wr = type == VIRTIO_BLK_T_OUT;
	uint64_t len = wr ? r->rlen - BLK_HDR : r->wlen - 1;
	ssize_t got;
	int n;

	if (wr && k->b->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (!in_range(k, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = wr ? virtq_req_slice(r, 0, r->nr, BLK_HDR, len, io->iov) :
		 virtq_req_slice(r, r->nr, r->nw, 0, len, io->iov);
	got = wr ? k->b->ops->pwritev(k->b, io->iov, n, sector * BLK_SECTOR) :
		   k->b->ops->preadv(k->b, io->iov, n, sector * BLK_SECTOR);
	if (got < 0 || (uint64_t)got != len)
		return VIRTIO_BLK_S_IOERR;
	if (wr) {
		k->writes++;
		k->wbytes += len;
	} else {
		k->reads++;
		k->rbytes += len;
		*written = (uint32_t)len;
		for (int i = 0; i < n; i++) /* for the dirty log */
			gmem_mark(r->mem, io->iov[i].iov_base,
				  io->iov[i].iov_len);
	}
	return VIRTIO_BLK_S_OK;
}

/* Discard or write-zeroes: a list of 16-byte segments after the header. */
static uint8_t do_dz(struct blk *k, const struct virtq_req *r, uint32_t type)
{
	uint64_t n = (r->rlen - BLK_HDR) / 16;
	int unmapped = type == VIRTIO_BLK_T_DISCARD;
	int (*op)(struct blk_backend *, uint64_t, uint64_t) =
		unmapped ? k->b->ops->discard : k->b->ops->write_zeroes;

	if (!op || k->b->readonly)
		return k->b->readonly ? VIRTIO_BLK_S_IOERR :
					VIRTIO_BLK_S_UNSUPP;
	if (n == 0 || n > BLK_DZ_SEGS || (r->rlen - BLK_HDR) % 16)
		return VIRTIO_BLK_S_IOERR;
	for (uint64_t i = 0; i < n; i++) {
		uint8_t s[16];
		uint64_t sector;
		uint32_t count, flags;

		if (virtq_req_read(r, BLK_HDR + 16 * i, s, 16) != 16)
			return VIRTIO_BLK_S_IOERR;
		memcpy(&sector, s, 8);
		memcpy(&count, s + 8, 4);
		memcpy(&flags, s + 12, 4);
		if (count > BLK_DZ_SECTORS ||
		    !in_range(k, sector, (uint64_t)count * BLK_SECTOR) ||
		    (flags & ~(uint32_t)VIRTIO_BLK_WZ_UNMAP) ||
		    (unmapped && flags))
			return VIRTIO_BLK_S_UNSUPP;
		if (op(k->b, sector * BLK_SECTOR, count * BLK_SECTOR) < 0)
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* Carry out one request; the status byte to write and the data bytes
 * written into the guest's buffers. Worker or I/O thread. */
static uint8_t handle(struct blk *k, struct blk_io *io, uint32_t *written)
{
	const struct virtq_req *r = &io->req;
	uint8_t hdr[BLK_HDR];
	uint32_t type;
	uint64_t sector;

	*written = 0;
	virtq_req_read(r, 0, hdr, BLK_HDR);
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		return do_rw(k, io, type, sector, written);
	case VIRTIO_BLK_T_FLUSH:
		k->flushes++;
		return k->b->ops->flush(k->b) < 0 ? VIRTIO_BLK_S_IOERR :
						    VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID: {
		char id[BLK_SERIAL_MAX] = { 0 };

		memcpy(id, k->serial, strlen(k->serial));
		*written = (uint32_t)virtq_req_write(
			r, 0, id,
			r->wlen - 1 < sizeof(id) ? r->wlen - 1 : sizeof(id));
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return do_dz(k, r, type);
	}
	return VIRTIO_BLK_S_UNSUPP;
}

/* I/O thread (or worker): run the request, set its status. */
static void blk_run(struct blk_io *io)
{
	struct blk *k = io->owner;

	io->written = 0;
	io->status = handle(k, io, &io->written);
	if (io->status != VIRTIO_BLK_S_OK)
		k->errors++;
}

/* Worker: give a finished request back to the driver. */
static void blk_finish(struct blk_io *io, struct virtq *q)
{
	virtq_req_write(&io->req, io->req.wlen - 1, &io->status, 1);
	virtq_push(q, io->req.head, io->written + 1);
}

/* Reads and writes go to the I/O threads; the rest (flush, get-id,
 * discard) are quick or must not overtake: done here. */
static int offload(const struct blk *k, const struct blk_io *io)
{
	uint32_t type;

	if (!k->pool.nthreads)
		return 0;
	virtq_req_read(&io->req, 0, &type, 4);
	return type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_OUT;
}

static void blk_queue_notify(struct virtio_dev *vd, unsigned qi)
{
	struct blk *k = vd->priv;
	struct virtq *q = virtio_queue(vd, qi);
	struct blk_io *io;
	int rc, done;

	if (!q)
		return;
	done = blk_pool_reap(&k->pool, q, blk_finish);
	while ((io = blk_pool_get(&k->pool)) != NULL) {
		rc = virtq_pop(q, &io->req);
		if (rc <= 0 || io->req.rlen < BLK_HDR || io->req.wlen < 1) {
			blk_pool_put(&k->pool, io);
			/* No header or no status byte: nothing sensible to
			 * answer; the driver must reset the device. */
			if (rc != 0)
				virtio_dev_needs_reset(vd,
						       "bad descriptor chain");
			break;
		}
		if (offload(k, io)) {
			blk_pool_submit(&k->pool, io);
			continue;
		}
		blk_run(io);
		blk_finish(io, q);
		blk_pool_put(&k->pool, io);
		if (++done % 16 == 0)
			virtio_queue_signal(vd, qi); /* do not hold back */
	}
	if (done)
		virtio_queue_signal(vd, qi);
}

/* Worker: I/O threads finished requests. */
static void blk_fd_ready(struct virtio_dev *vd, unsigned idx, short revents)
{
	blk_queue_notify(vd, 0); /* reaps, then takes what waited for room */
}

/* Worker, before parking: nothing may stay in flight. */
static void blk_drain(struct virtio_dev *vd)
{
	struct blk *k = vd->priv;
	struct virtq *q = virtio_queue(vd, 0);

	blk_pool_wait_idle(&k->pool);
	if (blk_pool_reap(&k->pool, q, q ? blk_finish : NULL) && q)
		virtio_queue_signal(vd, 0);
}

static int blk_save(struct virtio_dev *vd, struct buf *out)
{
	struct blk *k = vd->priv;
	uint64_t s[2] = { BLK_STATE_VERSION, k->b->size };

	/* Requests complete before the worker parks: nothing in flight, only
	 * the disk's identity to check on load. */
	return buf_append(out, s, sizeof(s));
}

static int blk_load(struct virtio_dev *vd, const uint8_t *p, size_t len)
{
	struct blk *k = vd->priv;
	uint64_t s[2];

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(s, p, sizeof(s));
	if (s[0] != BLK_STATE_VERSION) {
		log_warn("virtio-blk", "saved state version unknown",
			 "dev=%s version=%llu", vd->name,
			 (unsigned long long)s[0]);
		return -EINVAL;
	}
	if (s[1] != k->b->size) {
		log_warn("virtio-blk", "the snapshot's disk has another size",
			 "dev=%s saved=%llu now=%llu", vd->name,
			 (unsigned long long)s[1],
			 (unsigned long long)k->b->size);
		return -EINVAL;
	}
	return 0;
}

static void blk_destroy(struct virtio_dev *vd)
{
	struct blk *k = vd->priv;

	blk_pool_destroy(&k->pool);
	k->b->ops->close(k->b);
	free(k);
}

static const struct virtio_dev_ops blk_ops = {
	.kind = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.class_code = PCI_CLASS_STORAGE_OTHER,
	.nqueues = 1,
	.queue_max = BLK_QUEUE_SIZE,
	.config_size = BLK_CONFIG_SIZE,
	.features = blk_features,
	.config_read = blk_config_read,
	.queue_notify = blk_queue_notify,
	.fd_ready = blk_fd_ready,
	.drain = blk_drain,
	.save = blk_save,
	.load = blk_load,
	.destroy = blk_destroy,
};

int virtio_blk_add(struct vm *vm, struct pci *bus, struct blk_backend *b,
		   const char *serial, char *err, size_t errlen)
{
	struct blk *k = calloc(1, sizeof(*k));
	int rc;

	if (!k) {
		b->ops->close(b);
		return -ENOMEM;
	}
	k->b = b;
	if (serial)
		snprintf(k->serial, sizeof(k->serial), "%s", serial);
	build_config(k);
	rc = blk_pool_init(&k->pool, k, b->parallel ? BLK_IO_THREADS : 0,
			   blk_run);
	if (rc < 0) {
		snprintf(err, errlen, "virtio-blk: I/O threads: %s",
			 strerror(-rc));
		b->ops->close(b);
		free(k);
		return rc;
	}
	rc = virtio_pci_add(vm, bus, &blk_ops, k, &k->vd, err, errlen);
	if (rc == 0 && k->pool.nthreads)
		rc = virtio_dev_watch(k->vd, k->pool.done_fd, POLLIN);
	if (rc < 0) {
		if (!k->vd) { /* not added: the device does not own k yet */
			blk_pool_destroy(&k->pool);
			b->ops->close(b);
			free(k);
		}
		return rc;
	}
	log_info("vmm", "disk attached",
		 "dev=%s bytes=%llu block=%u readonly=%d serial=\"%s\"",
		 k->vd->name, (unsigned long long)b->size, b->block_size,
		 b->readonly, k->serial);
	return 0;
}
