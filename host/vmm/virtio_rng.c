/* virtio-rng device model: the driver's writable buffers filled from
 * getrandom() on the device's worker thread (see virtio_rng.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "host/vmm/virtio_pci.h"
#include "host/vmm/virtio_rng.h"
#include "lib/buf.h"
#include "lib/log.h"

#define RNG_QUEUE_SIZE 64
/* Requests served per worker callback before the worker may park. */
#define RNG_BATCH RNG_QUEUE_SIZE
/* Class: "other" (as QEMU). */
#define PCI_CLASS_OTHER 0x00ff00
#define RNG_STATE_VERSION 1u

struct rng {
	struct virtio_dev *vd;
	struct virtq_req req; /* worker thread only */
	uint64_t requests; /* completed (worker thread; logged at exit) */
};

/* Fill up to want bytes of the writable segments; the bytes filled. */
static uint32_t fill(const struct virtq_req *r, uint32_t want)
{
	uint32_t done = 0;

	for (unsigned i = r->nr; i < r->nr + r->nw && done < want; i++) {
		uint8_t *p = r->iov[i].iov_base;
		size_t left = r->iov[i].iov_len;

		if (left > want - done)
			left = want - done;
		while (left) {
			ssize_t n = getrandom(p, left, 0);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return done;
			/* The VMM wrote it: KVM's dirty log cannot know. */
			gmem_mark(r->mem, p, (uint64_t)n);
			p += n;
			left -= (size_t)n;
			done += (uint32_t)n;
		}
	}
	return done;
}

int virtio_rng_serve(struct virtq *q, struct virtq_req *req, unsigned max)
{
	unsigned done = 0;

	while (done < max) {
		int rc = virtq_pop(q, req);
		uint32_t want;

		if (rc <= 0)
			return rc < 0 ? rc : (int)done;
		if (req->nr)
			return -EINVAL; /* the device must not read (5.4.6) */
		want = req->wlen < VIRTIO_RNG_MAX_REQ ? (uint32_t)req->wlen :
							VIRTIO_RNG_MAX_REQ;
		virtq_push(q, req->head, fill(req, want));
		done++;
	}
	return (int)done;
}

static void rng_queue_notify(struct virtio_dev *vd, unsigned qi)
{
	struct rng *g = vd->priv;
	struct virtq *q = virtio_queue(vd, qi);
	int n;

	if (!q)
		return;
	n = virtio_rng_serve(q, &g->req, RNG_BATCH);
	if (n < 0) {
		virtio_dev_needs_reset(vd, "bad descriptor chain or a "
					   "device-readable buffer");
		return;
	}
	if (n == 0)
		return;
	g->requests += (unsigned)n;
	virtio_queue_signal(vd, qi);
	/* More waiting: come back after the worker's gate, so a driver
	 * that keeps the queue full cannot keep the device from parking. */
	if (virtq_pending(q))
		virtio_queue_kick(vd, qi);
}

static int rng_save(struct virtio_dev *vd, struct buf *out)
{
	uint32_t v = RNG_STATE_VERSION;

	/* Requests complete within one callback: no state to carry. */
	return buf_append(out, &v, sizeof(v));
}

static int rng_load(struct virtio_dev *vd, const uint8_t *p, size_t len)
{
	uint32_t v;

	if (len != sizeof(v))
		return -EINVAL;
	memcpy(&v, p, sizeof(v));
	if (v != RNG_STATE_VERSION) {
		log_warn("virtio-rng", "saved state version unknown",
			 "dev=%s version=%u", vd->name, v);
		return -EINVAL;
	}
	return 0;
}

static void rng_destroy(struct virtio_dev *vd)
{
	struct rng *g = vd->priv;

	log_info("vmm", "entropy source removed", "dev=%s requests=%llu",
		 vd->name, (unsigned long long)g->requests);
	free(g);
}

static const struct virtio_dev_ops rng_ops = {
	.kind = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.class_code = PCI_CLASS_OTHER,
	.nqueues = 1,
	.queue_max = RNG_QUEUE_SIZE,
	.config_size = 0,
	.queue_notify = rng_queue_notify,
	.save = rng_save,
	.load = rng_load,
	.destroy = rng_destroy,
};

int virtio_rng_add(struct vm *vm, struct pci *bus, char *err, size_t errlen)
{
	struct rng *g = calloc(1, sizeof(*g));
	int rc;

	if (!g)
		return -ENOMEM;
	rc = virtio_pci_add(vm, bus, &rng_ops, g, &g->vd, err, errlen);
	if (rc < 0) {
		free(g);
		return rc;
	}
	log_info("vmm", "entropy source attached", "dev=%s", g->vd->name);
	return 0;
}
