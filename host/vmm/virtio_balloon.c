/* virtio-balloon device model: inflate (pages handed back to the host with
 * MADV_REMOVE), deflate, and the statistics queue that shows how much
 * guest memory is really in use (see virtio_balloon.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "host/vmm/virtio_balloon.h"
#include "host/vmm/virtio_pci.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/sys.h"

/* Feature bits (5.5.3). */
#define BALLOON_F_STATS_VQ 1
/* Queues. */
#define BALLOON_Q_INFLATE 0
#define BALLOON_Q_DEFLATE 1
#define BALLOON_Q_STATS 2
#define BALLOON_QUEUE_SIZE 128
#define BALLOON_CONFIG_SIZE 8u
#define BALLOON_PAGE 4096ull
/* Statistics tags we keep (5.5.6.3); 10 bytes each on the wire. */
#define BALLOON_TAGS 10
#define BALLOON_STAT_LEN 10
#define BALLOON_TAG_FREE 4
#define BALLOON_TAG_TOTAL 5
#define BALLOON_TAG_AVAIL 6
/* Class: "other" (as QEMU). */
#define PCI_CLASS_OTHER 0x00ff00
#define BALLOON_STATE_VERSION 1

struct balloon {
	struct virtio_dev *vd;
	struct vm *vm;
	_Atomic uint32_t num_pages; /* target: pages the balloon should hold */
	_Atomic uint32_t actual; /* pages the driver says it holds */
	struct virtq_req req; /* worker thread only */
	/* The stats buffer the driver gave us, held until we want fresh
	 * numbers (worker thread; saved in snapshots). */
	int stats_held;
	uint16_t stats_head;
	_Atomic int stats_want;
	pthread_mutex_t lock; /* stats below */
	uint64_t stat[BALLOON_TAGS];
	uint32_t stat_seen; /* bit per tag received */
	uint64_t stat_ms; /* when they arrived (monotonic) */
	_Atomic uint64_t freed_pages, bad_pfns;
};

static uint64_t bal_features(struct virtio_dev *vd)
{
	return 1ull << BALLOON_F_STATS_VQ;
}

static void bal_config_read(struct virtio_dev *vd, uint32_t off, void *data,
			    uint32_t len)
{
	struct balloon *b = vd->priv;
	uint32_t cfg[2] = { atomic_load(&b->num_pages),
			    atomic_load(&b->actual) };

	memcpy(data, (uint8_t *)cfg + off, len);
}

static void bal_config_write(struct virtio_dev *vd, uint32_t off,
			     const void *data, uint32_t len)
{
	struct balloon *b = vd->priv;
	uint32_t v;

	if (off != 4 || len != 4)
		return; /* only `actual` is the driver's */
	memcpy(&v, data, 4);
	atomic_store(&b->actual, v);
}

/* Give the pages of one inflate request back to the host. */
static void inflate(struct balloon *b, const struct virtq_req *r)
{
	const struct gmem *m = &b->vm->gmem;
	uint64_t n = r->rlen / 4;

	for (uint64_t i = 0; i < n; i++) {
		uint32_t pfn;
		void *p;

		virtq_req_read(r, 4 * i, &pfn, 4);
		p = gmem_ptr(m, (uint64_t)pfn * BALLOON_PAGE, BALLOON_PAGE);
		if (!p) {
			b->bad_pfns++;
			continue;
		}
		/* Hugepage-backed RAM cannot drop 4 KiB: the page stays. */
		if (!b->vm->cfg.hugepages &&
		    madvise(p, BALLOON_PAGE, MADV_REMOVE) == 0) {
			b->freed_pages++;
			gmem_mark(m, p, BALLOON_PAGE); /* now reads as zeros */
		}
	}
}

/* A stats buffer came back filled: keep what it says, hold the buffer. */
static void stats_take(struct balloon *b, const struct virtq_req *r)
{
	uint64_t n = r->rlen / BALLOON_STAT_LEN;

	pthread_mutex_lock(&b->lock);
	for (uint64_t i = 0; i < n && i < 64; i++) {
		uint8_t e[BALLOON_STAT_LEN];
		uint16_t tag;

		virtq_req_read(r, BALLOON_STAT_LEN * i, e, sizeof(e));
		memcpy(&tag, e, 2);
		if (tag >= BALLOON_TAGS)
			continue; /* newer tags: ignored */
		memcpy(&b->stat[tag], e + 2, 8);
		b->stat_seen |= 1u << tag;
	}
	b->stat_ms = sys_mono_ms();
	pthread_mutex_unlock(&b->lock);
	b->stats_held = 1;
	b->stats_head = r->head;
}

static void stats_queue(struct balloon *b, struct virtq *q)
{
	int rc;

	if (b->stats_held && atomic_exchange(&b->stats_want, 0)) {
		virtq_push(q, b->stats_head, 0); /* "send me fresh ones" */
		b->stats_held = 0;
		virtio_queue_signal(b->vd, BALLOON_Q_STATS);
	}
	while ((rc = virtq_pop(q, &b->req)) != 0) {
		if (rc < 0 || b->req.nw || b->stats_held) {
			virtio_dev_needs_reset(b->vd, "bad stats request");
			return;
		}
		stats_take(b, &b->req);
	}
}

static void bal_queue_notify(struct virtio_dev *vd, unsigned qi)
{
	struct balloon *b = vd->priv;
	struct virtq *q = virtio_queue(vd, qi);
	int rc, done = 0;

	if (!q)
		return;
	if (qi == BALLOON_Q_STATS) {
		stats_queue(b, q);
		return;
	}
	while ((rc = virtq_pop(q, &b->req)) != 0) {
		/* PFN arrays only: device-readable, whole 32-bit entries. */
		if (rc < 0 || b->req.nw || b->req.rlen % 4) {
			virtio_dev_needs_reset(vd, "bad page list");
			break;
		}
		if (qi == BALLOON_Q_INFLATE)
			inflate(b, &b->req);
		/* Deflated pages come back zeroed on the guest's next touch. */
		virtq_push(q, b->req.head, 0);
		done++;
	}
	if (done)
		virtio_queue_signal(vd, qi);
}

static void bal_reset(struct virtio_dev *vd)
{
	struct balloon *b = vd->priv;

	atomic_store(&b->actual, 0);
	b->stats_held = 0;
	atomic_store(&b->stats_want, 0);
	pthread_mutex_lock(&b->lock);
	b->stat_seen = 0;
	pthread_mutex_unlock(&b->lock);
}

struct bal_state {
	uint32_t version, num_pages, actual, stats_held;
	uint32_t stats_head, pad;
};

static int bal_save(struct virtio_dev *vd, struct buf *out)
{
	struct balloon *b = vd->priv;
	struct bal_state s = {
		.version = BALLOON_STATE_VERSION,
		.num_pages = atomic_load(&b->num_pages),
		.actual = atomic_load(&b->actual),
		.stats_held = (uint32_t)b->stats_held,
		.stats_head = b->stats_head,
	};

	return buf_append(out, &s, sizeof(s));
}

static int bal_load(struct virtio_dev *vd, const uint8_t *p, size_t len)
{
	struct balloon *b = vd->priv;
	struct bal_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, p, sizeof(s));
	if (s.version != BALLOON_STATE_VERSION ||
	    s.stats_head >= BALLOON_QUEUE_SIZE)
		return -EINVAL;
	atomic_store(&b->num_pages, s.num_pages);
	atomic_store(&b->actual, s.actual);
	b->stats_held = s.stats_held != 0;
	b->stats_head = (uint16_t)s.stats_head;
	return 0;
}

static void bal_destroy(struct virtio_dev *vd)
{
	struct balloon *b = vd->priv;

	pthread_mutex_destroy(&b->lock);
	free(b);
}

static const struct virtio_dev_ops balloon_ops = {
	.kind = "virtio-balloon",
	.device_id = VIRTIO_ID_BALLOON,
	.class_code = PCI_CLASS_OTHER,
	.nqueues = 3,
	.queue_max = BALLOON_QUEUE_SIZE,
	.config_size = BALLOON_CONFIG_SIZE,
	.features = bal_features,
	.config_read = bal_config_read,
	.config_write = bal_config_write,
	.reset = bal_reset,
	.queue_notify = bal_queue_notify,
	.save = bal_save,
	.load = bal_load,
	.destroy = bal_destroy,
};

int virtio_balloon_add(struct vm *vm, struct pci *bus, char *err, size_t errlen)
{
	struct balloon *b = calloc(1, sizeof(*b));
	int rc;

	if (!b)
		return -ENOMEM;
	b->vm = vm;
	pthread_mutex_init(&b->lock, NULL);
	rc = virtio_pci_add(vm, bus, &balloon_ops, b, &b->vd, err, errlen);
	if (rc < 0) {
		pthread_mutex_destroy(&b->lock);
		free(b);
		return rc;
	}
	vm->balloon = b;
	return 0;
}

int balloon_set_target(struct vm *vm, uint64_t target_mib, char *err,
		       size_t errlen)
{
	struct balloon *b = vm->balloon;
	uint64_t pages;

	if (!b) {
		snprintf(err, errlen,
			 "balloon: this VM has no balloon device (start it "
			 "with --balloon)");
		return -ENODEV;
	}
	if (target_mib < VMM_MIN_MEM_MIB || target_mib > vm->cfg.mem_mib) {
		snprintf(err, errlen,
			 "balloon: target %llu MiB is outside %u..%llu MiB "
			 "(the VM's memory)",
			 (unsigned long long)target_mib, VMM_MIN_MEM_MIB,
			 (unsigned long long)vm->cfg.mem_mib);
		return -EINVAL;
	}
	pages = (vm->cfg.mem_mib - target_mib) * (1024 * 1024 / BALLOON_PAGE);
	atomic_store(&b->num_pages, (uint32_t)pages);
	virtio_config_changed(b->vd);
	log_info("vmm", "balloon target set", "target_mib=%llu pages=%llu",
		 (unsigned long long)target_mib, (unsigned long long)pages);
	return 0;
}

int balloon_info(struct vm *vm, struct balloon_info *out)
{
	struct balloon *b = vm->balloon;

	memset(out, 0, sizeof(*out));
	if (!b)
		return -ENODEV;
	out->target_pages = atomic_load(&b->num_pages);
	out->actual_pages = atomic_load(&b->actual);
	out->freed_pages = atomic_load(&b->freed_pages);
	pthread_mutex_lock(&b->lock);
	if (b->stat_seen & (1u << BALLOON_TAG_TOTAL)) {
		out->have_stats = 1;
		out->total_bytes = b->stat[BALLOON_TAG_TOTAL];
		out->free_bytes = b->stat[BALLOON_TAG_FREE];
		out->available_bytes =
			(b->stat_seen & (1u << BALLOON_TAG_AVAIL)) ?
				b->stat[BALLOON_TAG_AVAIL] :
				b->stat[BALLOON_TAG_FREE];
		out->age_ms = sys_mono_ms() - b->stat_ms;
	}
	pthread_mutex_unlock(&b->lock);
	/* Ask for fresh numbers for the next caller. */
	atomic_store(&b->stats_want, 1);
	virtio_queue_kick(b->vd, BALLOON_Q_STATS);
	return 0;
}
