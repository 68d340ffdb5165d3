/* libFuzzer harness for canopy-vmm's virtio-blk request handling: the input
 * is guest RAM plus the request queue's configuration (fuzz_common.h); the
 * device model (host/vmm/virtio_blk.c, included whole for its static
 * functions) serves the queue over a 64 KiB in-memory disk whose every
 * access is checked against the disk's size. The transport functions it
 * calls are stand-ins here. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "host/vmm/virtio_blk.c"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DISK (64u << 10)

static struct fuzz_guest g;
static int needs_reset;
static uint8_t disk[DISK];

/* ---- stand-ins for the transport (virtio_pci.c) -------------------------- */

struct virtq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
	return q == 0 && !needs_reset ? &g.q : NULL;
}

void virtio_queue_signal(struct virtio_dev *vd, unsigned q)
{
	(void)virtq_should_signal(&g.q);
}

void virtio_dev_needs_reset(struct virtio_dev *vd, const char *why)
{
	needs_reset = 1;
}

int virtio_dev_watch(struct virtio_dev *vd, int fd, short events)
{
	return -ENOSPC;
}

int virtio_pci_add(struct vm *vm, struct pci *bus,
		   const struct virtio_dev_ops *ops, void *priv,
		   struct virtio_dev **out, char *err, size_t errlen)
{
	return -ENOSYS;
}

/* ---- an in-memory disk that checks every access -------------------------- */

static void in_disk(uint64_t off, uint64_t len)
{
	if (off > DISK || len > DISK - off)
		abort(); /* the model let a request past the disk's end */
}

static ssize_t mem_rw(const struct iovec *iov, int n, uint64_t off, int wr)
{
	uint64_t done = 0;

	for (int i = 0; i < n; i++) {
		if (!fuzz_inside(&g, iov[i].iov_base, iov[i].iov_len))
			abort(); /* a segment outside guest RAM */
		in_disk(off + done, iov[i].iov_len);
		if (wr)
			memcpy(disk + off + done, iov[i].iov_base,
			       iov[i].iov_len);
		else
			memcpy(iov[i].iov_base, disk + off + done,
			       iov[i].iov_len);
		done += iov[i].iov_len;
	}
	return (ssize_t)done;
}

static ssize_t mem_preadv(struct blk_backend *b, const struct iovec *iov, int n,
			  uint64_t off)
{
	return mem_rw(iov, n, off, 0);
}

static ssize_t mem_pwritev(struct blk_backend *b, const struct iovec *iov,
			   int n, uint64_t off)
{
	return mem_rw(iov, n, off, 1);
}

static int mem_flush(struct blk_backend *b)
{
	return 0;
}

static int mem_zero(struct blk_backend *b, uint64_t off, uint64_t len)
{
	in_disk(off, len);
	memset(disk + off, 0, len);
	return 0;
}

static void mem_close(struct blk_backend *b)
{
}

static const struct blk_backend_ops mem_ops = {
	.preadv = mem_preadv,
	.pwritev = mem_pwritev,
	.flush = mem_flush,
	.discard = mem_zero,
	.write_zeroes = mem_zero,
	.close = mem_close,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtio_dev vd;
	static struct blk k;
	static struct blk_backend b = {
		.ops = &mem_ops,
		.size = DISK,
		.block_size = 512,
	};

	if (fuzz_guest_init(&g, data, size) < 0)
		return 0;
	/* A device never completes more than it took: used_idx trails
	 * last_avail (by what it holds; virtio-blk holds nothing, but let it
	 * lag a little). Ahead of it, rings laid over each other would let
	 * our own used index feed the avail index for ever. */
	g.q.used_idx = (uint16_t)(g.q.last_avail - (g.q.used_idx & 7));
	if (!k.b) {
		/* Once: a disk with no I/O threads (requests run here). */
		k.vd = &vd;
		k.b = &b;
		snprintf(k.serial, sizeof(k.serial), "fuzz-disk");
		if (blk_pool_init(&k.pool, &k, 0, blk_run) < 0)
			abort();
		vd.priv = &k;
		snprintf(vd.name, sizeof(vd.name), "virtio-blk0");
	}
	/* The spare header byte picks a read-only disk. */
	b.readonly = data[14] & 1;
	build_config(&k);
	needs_reset = 0;
	if (virtq_start(&g.q) == 0)
		blk_ops.queue_notify(&vd, 0);
	if (k.pool.busy)
		abort(); /* a request left in flight without I/O threads */
	free(g.m.ram);
	return 0;
}
