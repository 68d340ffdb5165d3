/* Test guest: virtio 1.x over PCI, polled split virtqueues, at CPL3. */
#include "guest/user_virtio.h"

/* virtio_pci_cap (virtio 1.x, 4.1.4) and its cfg_type values. */
#define VCAP_TYPE 3
#define VCAP_BAR 4
#define VCAP_OFFSET 8
#define VCAP_LENGTH 12
#define VCAP_NOTIFY_MULT 16 /* notify cap only */
#define VCAP_MIN_LEN 16
#define VCAP_COMMON 1
#define VCAP_NOTIFY 2
#define VCAP_ISR 3
#define VCAP_DEVICE 4
#define VCAP_MAX 32 /* vendor capabilities looked at, at most */

/* virtio_pci_common_cfg offsets. */
#define CC_DFSELECT 0
#define CC_DF 4
#define CC_GFSELECT 8
#define CC_GF 12
#define CC_MSIX 16
#define CC_NUMQ 18
#define CC_STATUS 20
#define CC_GENERATION 21
#define CC_QSELECT 22
#define CC_QSIZE 24
#define CC_QMSIX 26
#define CC_QENABLE 28
#define CC_QNOTIFYOFF 30
#define CC_QDESC 32
#define CC_QDRIVER 40
#define CC_QDEVICE 48
#define CC_LEN 56

#define VIRTIO_NO_VECTOR 0xffff
#define VIRTIO_RESET_MS 1000
#define VIRTIO_CFG_TRIES 1000 /* config reads while the generation moves */

#define R8(v, o) (*(volatile uint8_t *)((v)->common + (o)))
#define R16(v, o) (*(volatile uint16_t *)((v)->common + (o)))
#define R32(v, o) (*(volatile uint32_t *)((v)->common + (o)))

int user_mem_init(struct user_mem *m, const struct guest_boot *b)
{
	uint64_t start = (b->user_end + GUEST_PAGE - 1) & ~(GUEST_PAGE - 1);

	for (uint32_t i = 0; i < b->nmem; i++) {
		const struct guest_mem *e = &b->mem[i];
		uint64_t end = e->addr + e->size;

		if (e->type != GUEST_MEM_RAM || e->addr > start || end <= start)
			continue;
		if (end > b->map_top)
			end = b->map_top;
		m->next = start;
		m->end = end & ~(GUEST_PAGE - 1);
		return m->end > m->next ? 0 : -USER_ENOMEM;
	}
	return -USER_ENOMEM;
}

void *user_mem_alloc(struct user_mem *m, uint64_t len, uint64_t align)
{
	uint64_t a = (m->next + align - 1) & ~(align - 1);

	if (a < m->next || a > m->end || len > m->end - a)
		return NULL;
	m->next = a + len;
	memset((void *)a, 0, len);
	return (void *)a;
}

static void say(const struct user_virtio *v, const char *what)
{
	user_printf("virtio: %s %02x:%02x.%x: %s\n", v->name, v->pci.bus,
		    v->pci.dev, v->pci.fn, what);
}

static uint64_t ms_to_tsc(const struct user_virtio *v, uint64_t ms)
{
	return ms * (v->tsc_khz ? v->tsc_khz : 1000000);
}

/* The region a virtio capability points at, checked against its BAR. */
static int cap_map(struct user_virtio *v, struct user_pci *p, unsigned cap,
		   volatile uint8_t **out, uint32_t *len)
{
	unsigned bar = user_pci_read8(&v->pci, cap + VCAP_BAR);
	uint32_t off = user_pci_read32(&v->pci, cap + VCAP_OFFSET);
	uint64_t addr, size;
	int r;

	*len = user_pci_read32(&v->pci, cap + VCAP_LENGTH);
	r = user_pci_bar(p, &v->pci, bar, &addr, &size);
	if (r)
		return r;
	if (off > size || *len > size - off)
		return -USER_EINVAL;
	*out = (volatile uint8_t *)(addr + off);
	return 0;
}

static int cap_one(struct user_virtio *v, struct user_pci *p, unsigned cap)
{
	uint8_t type = user_pci_read8(&v->pci, cap + VCAP_TYPE);
	volatile uint8_t **dst = NULL;
	uint32_t len;
	int r;

	if (user_pci_read8(&v->pci, cap + 2) < VCAP_MIN_LEN)
		return 0;
	if (type == VCAP_COMMON && !v->common)
		dst = &v->common;
	else if (type == VCAP_NOTIFY && !v->notify_base)
		dst = &v->notify_base;
	else if (type == VCAP_ISR && !v->isr)
		dst = &v->isr;
	else if (type == VCAP_DEVICE && !v->devcfg)
		dst = &v->devcfg;
	if (!dst)
		return 0;
	r = cap_map(v, p, cap, dst, &len);
	if (r)
		return r;
	if (type == VCAP_NOTIFY) {
		v->notify_mult =
			user_pci_read32(&v->pci, cap + VCAP_NOTIFY_MULT);
		v->notify_len = len;
	}
	if (type == VCAP_DEVICE)
		v->devcfg_len = len;
	if (type == VCAP_COMMON && len < CC_LEN)
		return -USER_EINVAL;
	return 0;
}

/* Walks the vendor capabilities; common, notify and device config needed. */
static int caps_find(struct user_virtio *v, struct user_pci *p)
{
	unsigned cap = 0;

	for (unsigned n = 0; n < VCAP_MAX; n++) {
		int r;

		cap = user_pci_cap_next(&v->pci, cap, PCI_CAP_VENDOR);
		if (!cap)
			break;
		r = cap_one(v, p, cap);
		if (r == -USER_ENOSPC) {
			say(v, "a BAR does not fit in the MMIO hole");
			return r;
		}
		if (r) {
			say(v, "a virtio capability names a bad BAR or lies "
			       "outside it");
			return -USER_ENODEV;
		}
	}
	if (!v->common || !v->notify_base || !v->isr) {
		say(v, "no virtio 1.x capabilities (legacy-only device?)");
		return -USER_ENODEV;
	}
	return 0;
}

static int dev_find(struct user_pci *p, uint16_t type, unsigned index,
		    struct user_pci_dev *d)
{
	/* Transitional IDs 0x1000 + n of the devices we drive. */
	uint16_t trans = type == VIRTIO_ID_NET	   ? 0x1000 :
			 type == VIRTIO_ID_BLOCK   ? 0x1001 :
			 type == VIRTIO_ID_BALLOON ? 0x1002 :
						     0;
	int r = user_pci_find(p, VIRTIO_PCI_VENDOR,
			      (uint16_t)(VIRTIO_PCI_MODERN_BASE + type), index,
			      d);

	if (r && trans)
		r = user_pci_find(p, VIRTIO_PCI_VENDOR, trans, index, d);
	return r;
}

/* Writes 0 to the status and waits until the device reads back 0. */
static int reset(struct user_virtio *v)
{
	uint64_t t0 = guest_rdtsc(), lim = ms_to_tsc(v, VIRTIO_RESET_MS);

	R8(v, CC_STATUS) = 0;
	while (R8(v, CC_STATUS) != 0) {
		if (guest_rdtsc() - t0 > lim) {
			say(v, "device reset did not complete in 1000 ms");
			return -USER_ETIMEDOUT;
		}
		user_relax();
	}
	return 0;
}

int user_virtio_open(struct user_virtio *v, struct user_pci *p,
		     struct user_mem *m, uint16_t type, unsigned index,
		     uint64_t tsc_khz, const char *name)
{
	int r;

	memset(v, 0, sizeof(*v));
	v->name = name;
	v->mem = m;
	v->tsc_khz = tsc_khz;
	r = dev_find(p, type, index, &v->pci);
	if (r) {
		user_printf("virtio: %s: no virtio device of type %u (index "
			    "%u) on PCI\n",
			    name, type, index);
		return r;
	}
	r = caps_find(v, p);
	if (r)
		return r;
	user_printf("virtio: %s %02x:%02x.%x: id %04x:%04x common %p notify "
		    "%p mult %u isr %p device %p len %u\n",
		    name, v->pci.bus, v->pci.dev, v->pci.fn, v->pci.vendor,
		    v->pci.device, (const void *)v->common,
		    (const void *)v->notify_base, v->notify_mult,
		    (const void *)v->isr, (const void *)v->devcfg,
		    v->devcfg_len);
	user_pci_enable(&v->pci);
	r = reset(v);
	if (r)
		return r;
	R8(v, CC_STATUS) = VIRTIO_S_ACKNOWLEDGE;
	R8(v, CC_STATUS) = VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER;
	R16(v, CC_MSIX) = VIRTIO_NO_VECTOR;
	return 0;
}

int user_virtio_negotiate(struct user_virtio *v, uint64_t wanted)
{
	uint8_t st;

	R32(v, CC_DFSELECT) = 0;
	v->dev_features = R32(v, CC_DF);
	R32(v, CC_DFSELECT) = 1;
	v->dev_features |= (uint64_t)R32(v, CC_DF) << 32;
	if (!(v->dev_features & VIRTIO_F_VERSION_1)) {
		say(v, "device does not offer VIRTIO_F_VERSION_1");
		R8(v, CC_STATUS) |= VIRTIO_S_FAILED;
		return -USER_ENOTSUP;
	}
	v->features = v->dev_features & (wanted | VIRTIO_F_VERSION_1);
	R32(v, CC_GFSELECT) = 0;
	R32(v, CC_GF) = (uint32_t)v->features;
	R32(v, CC_GFSELECT) = 1;
	R32(v, CC_GF) = (uint32_t)(v->features >> 32);
	st = R8(v, CC_STATUS);
	R8(v, CC_STATUS) = st | VIRTIO_S_FEATURES_OK;
	if (!(R8(v, CC_STATUS) & VIRTIO_S_FEATURES_OK)) {
		say(v, "device refused our features (FEATURES_OK not set)");
		R8(v, CC_STATUS) |= VIRTIO_S_FAILED;
		return -USER_ENOTSUP;
	}
	user_printf("virtio: %s %02x:%02x.%x: features offered 0x%lx "
		    "negotiated 0x%lx\n",
		    v->name, v->pci.bus, v->pci.dev, v->pci.fn, v->dev_features,
		    v->features);
	return 0;
}

static void write64(struct user_virtio *v, unsigned off, const void *p)
{
	uint64_t a = (uint64_t)p;

	R32(v, off) = (uint32_t)a;
	R32(v, off + 4) = (uint32_t)(a >> 32);
}

/* Rings for q in fresh pages; descriptors chained into the free list. */
static int ring_alloc(struct user_virtio *v, struct user_virtq *q)
{
	uint16_t n = q->size;

	q->desc = user_mem_alloc(v->mem, 16ull * n, GUEST_PAGE);
	q->avail = user_mem_alloc(v->mem, 6ull + 2ull * n, GUEST_PAGE);
	q->used = user_mem_alloc(v->mem, 6ull + 8ull * n, GUEST_PAGE);
	q->busy = user_mem_alloc(v->mem, n, 8);
	if (!q->desc || !q->avail || !q->used || !q->busy)
		return -USER_ENOMEM;
	for (uint16_t i = 0; i + 1 < n; i++)
		q->desc[i].next = (uint16_t)(i + 1);
	q->free_head = 0;
	q->num_free = n;
	q->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	return 0;
}

int user_virtio_queue(struct user_virtio *v, unsigned qi, uint16_t want)
{
	struct user_virtq *q;
	uint16_t max, n = 1;
	uint64_t noff;

	if (qi >= VIRTIO_MAX_QUEUES || qi >= R16(v, CC_NUMQ))
		return -USER_ENODEV;
	q = &v->q[qi];
	R16(v, CC_QSELECT) = (uint16_t)qi;
	max = R16(v, CC_QSIZE);
	if (!max) {
		say(v, "queue not available (size 0)");
		return -USER_ENODEV;
	}
	while (n < want && n * 2 <= max && n * 2 <= VIRTIO_QUEUE_MAX)
		n = (uint16_t)(n * 2);
	q->index = (uint16_t)qi;
	q->size = n;
	if (ring_alloc(v, q)) {
		say(v, "no free RAM for a virtqueue");
		return -USER_ENOMEM;
	}
	R16(v, CC_QSIZE) = n;
	R16(v, CC_QMSIX) = VIRTIO_NO_VECTOR;
	noff = (uint64_t)R16(v, CC_QNOTIFYOFF) * v->notify_mult;
	if (noff > v->notify_len || v->notify_len - noff < 2) {
		say(v, "queue notify address outside the notify capability");
		return -USER_EPROTO;
	}
	q->notify = (volatile uint16_t *)(v->notify_base + noff);
	write64(v, CC_QDESC, q->desc);
	write64(v, CC_QDRIVER, (const void *)q->avail);
	write64(v, CC_QDEVICE, (const void *)q->used);
	R16(v, CC_QENABLE) = 1;
	return 0;
}

int user_virtio_start(struct user_virtio *v)
{
	uint8_t st = R8(v, CC_STATUS);

	R8(v, CC_STATUS) = st | VIRTIO_S_DRIVER_OK;
	st = R8(v, CC_STATUS);
	if (st & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)) {
		say(v, "device failed or needs reset after DRIVER_OK");
		return -USER_EIO;
	}
	return 0;
}

int user_virtio_add(struct user_virtio *v, unsigned qi,
		    const struct user_virtio_buf *b, unsigned n, uint16_t *head)
{
	struct user_virtq *q = &v->q[qi];
	uint16_t i, last = 0;

	if (n == 0 || !q->size)
		return -USER_EINVAL;
	if (n > q->num_free)
		return -USER_ENOSPC;
	*head = i = q->free_head;
	for (unsigned k = 0; k < n; k++) {
		struct vring_desc *d = &q->desc[i];

		d->addr = b[k].addr;
		d->len = b[k].len;
		d->flags = (uint16_t)((b[k].device_writes ? VRING_DESC_F_WRITE :
							    0) |
				      (k + 1 < n ? VRING_DESC_F_NEXT : 0));
		last = i;
		i = d->next;
	}
	q->free_head = q->desc[last].next;
	q->busy[*head] = 1;
	q->num_free = (uint16_t)(q->num_free - n);
	q->avail->ring[q->avail_idx & (q->size - 1)] = *head;
	user_virtio_wmb(); /* descriptors and ring entry before the index */
	q->avail_idx++;
	q->avail->idx = q->avail_idx;
	return 0;
}

void user_virtio_kick(struct user_virtio *v, unsigned qi)
{
	struct user_virtq *q = &v->q[qi];

	user_virtio_mb(); /* avail->idx visible before we read used->flags */
	if (!(q->used->flags & VRING_USED_F_NO_NOTIFY))
		*q->notify = q->index;
}

/* Puts the chain at head back on the free list. */
static int chain_free(struct user_virtq *q, uint16_t head)
{
	uint16_t i = head, n = 1;

	while (q->desc[i].flags & VRING_DESC_F_NEXT) {
		i = q->desc[i].next;
		if (i >= q->size || ++n > q->size)
			return -USER_EPROTO;
	}
	q->desc[i].next = q->free_head;
	q->free_head = head;
	q->num_free = (uint16_t)(q->num_free + n);
	return 0;
}

int user_virtio_reap(struct user_virtio *v, unsigned qi, uint16_t *head,
		     uint32_t *len)
{
	struct user_virtq *q = &v->q[qi];
	volatile struct vring_used_elem *e;
	uint32_t id;

	if (q->used->idx == q->last_used)
		return 0;
	user_virtio_rmb(); /* the index before the entry it covers */
	e = &q->used->ring[q->last_used & (q->size - 1)];
	id = e->id;
	*len = e->len;
	q->last_used++;
	if (id >= q->size || !q->busy[id] || chain_free(q, (uint16_t)id)) {
		say(v, "device returned a bad used id");
		return -USER_EPROTO;
	}
	q->busy[id] = 0;
	*head = (uint16_t)id;
	return 1;
}

int user_virtio_get(struct user_virtio *v, unsigned qi, uint64_t timeout_ms,
		    uint16_t *head, uint32_t *len)
{
	uint64_t t0 = guest_rdtsc(), check = t0, ms = ms_to_tsc(v, 1);

	for (;;) {
		int r = user_virtio_reap(v, qi, head, len);
		uint64_t now;

		if (r)
			return r < 0 ? r : 0;
		user_relax();
		now = guest_rdtsc();
		if (now - check < ms)
			continue;
		check = now;
		if (user_virtio_status(v) &
		    (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)) {
			user_printf("virtio: %s: queue %u: device status 0x%x "
				    "(DEVICE_NEEDS_RESET)\n",
				    v->name, qi, user_virtio_status(v));
			return -USER_EIO;
		}
		if (now - t0 > ms * timeout_ms) {
			user_printf("virtio: %s: queue %u: timeout after %lu "
				    "ms waiting for the device\n",
				    v->name, qi, timeout_ms);
			return -USER_ETIMEDOUT;
		}
	}
}

uint32_t user_virtio_cfg_read32(struct user_virtio *v, unsigned off)
{
	unsigned tries = VIRTIO_CFG_TRIES;
	uint8_t gen;
	uint32_t val;

	if (off + 4 > v->devcfg_len || !v->devcfg)
		return 0;
	do {
		gen = R8(v, CC_GENERATION);
		val = *(volatile uint32_t *)(v->devcfg + off);
	} while (R8(v, CC_GENERATION) != gen && --tries);
	return val;
}

uint64_t user_virtio_cfg_read64(struct user_virtio *v, unsigned off)
{
	unsigned tries = VIRTIO_CFG_TRIES;
	uint8_t gen;
	uint64_t val;

	if (off + 8 > v->devcfg_len || !v->devcfg)
		return 0;
	do {
		gen = R8(v, CC_GENERATION);
		val = *(volatile uint32_t *)(v->devcfg + off);
		val |= (uint64_t) * (volatile uint32_t *)(v->devcfg + off + 4)
		       << 32;
	} while (R8(v, CC_GENERATION) != gen && --tries);
	return val;
}

void user_virtio_cfg_write32(struct user_virtio *v, unsigned off, uint32_t val)
{
	if (off + 4 <= v->devcfg_len && v->devcfg)
		*(volatile uint32_t *)(v->devcfg + off) = val;
}

uint8_t user_virtio_status(const struct user_virtio *v)
{
	return R8(v, CC_STATUS);
}
