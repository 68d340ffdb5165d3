/* Split virtqueue device side: validated descriptor chains, used ring,
 * interrupt suppression (see virtq.h). */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "host/vmm/virtq.h"

void *gmem_ptr(const struct gmem *m, uint64_t gpa, uint64_t len)
{
	uint64_t high = m->ram_size - m->low_size;

	if (len > m->ram_size)
		return NULL;
	if (gpa < m->low_size) {
		if (len > m->low_size - gpa)
			return NULL;
		return m->ram + gpa;
	}
	if (gpa >= GMEM_HIGH_START && gpa - GMEM_HIGH_START < high) {
		if (len > high - (gpa - GMEM_HIGH_START))
			return NULL;
		return m->ram + m->low_size + (gpa - GMEM_HIGH_START);
	}
	return NULL;
}

void gmem_mark(const struct gmem *m, const void *p, uint64_t len)
{
	uint64_t off = (uint64_t)((const uint8_t *)p - m->ram), first, last;

	if (!m->dirty || !len || !atomic_load(&m->logging) ||
	    (const uint8_t *)p < m->ram || off >= m->ram_size ||
	    len > m->ram_size - off)
		return;
	first = off / GMEM_PAGE;
	last = (off + len - 1) / GMEM_PAGE;
	for (uint64_t pg = first; pg <= last; pg++)
		atomic_fetch_or(&m->dirty[pg / 64], 1ull << (pg % 64));
}

/* Little-endian ring fields; x86 hosts only, so plain loads with the
 * ordering the virtio spec asks for (acquire on the driver's indices,
 * release on ours). */
static uint16_t load_acquire16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void store_release16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

int virtq_start(struct virtq *q)
{
	uint64_t n = q->size;

	if (n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
		return -EINVAL;
	/* Alignment: descriptors 16, avail 2, used 4 (2.7). */
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return -EINVAL;
	q->desc = gmem_ptr(q->mem, q->desc_gpa, 16 * n);
	q->avail = gmem_ptr(q->mem, q->avail_gpa, 6 + 2 * n);
	q->used = gmem_ptr(q->mem, q->used_gpa, 6 + 8 * n);
	if (!q->desc || !q->avail || !q->used)
		return -EINVAL;
	q->signalled_valid = 0;
	return 0;
}

uint16_t virtq_pending(const struct virtq *q)
{
	return (uint16_t)(load_acquire16(&q->avail[1]) - q->last_avail);
}

/* Add one descriptor's buffer to the request, enforcing the order rule. */
static int add_seg(const struct virtq *q, struct virtq_req *r,
		   const struct virtq_desc *d)
{
	unsigned n = r->nr + r->nw;
	void *p;

	if (n >= VIRTQ_MAX_SEGS)
		return -EINVAL;
	if (d->len == 0)
		return 0; /* nothing to transfer; allowed */
	p = gmem_ptr(q->mem, d->addr, d->len);
	if (!p)
		return -EINVAL;
	if (d->flags & VIRTQ_DESC_F_WRITE) {
		r->nw++;
		r->wlen += d->len;
	} else {
		if (r->nw)
			return -EINVAL; /* readable after writable */
		r->nr++;
		r->rlen += d->len;
	}
	if (r->rlen + r->wlen > VIRTQ_MAX_BYTES)
		return -EINVAL;
	r->iov[n].iov_base = p;
	r->iov[n].iov_len = d->len;
	return 0;
}

/* Walk an indirect table: count entries, no nesting, bounded chain. */
static int walk_indirect(const struct virtq *q, struct virtq_req *r,
			 const struct virtq_desc *d)
{
	const struct virtq_desc *t;
	uint32_t n = d->len / 16;
	uint32_t i = 0, steps = 0;

	if (!q->indirect || (d->flags & VIRTQ_DESC_F_NEXT) || d->len == 0 ||
	    d->len % 16 || n > VIRTQ_MAX_SEGS)
		return -EINVAL;
	t = gmem_ptr(q->mem, d->addr, d->len);
	if (!t)
		return -EINVAL;
	for (;;) {
		struct virtq_desc e;

		memcpy(&e, &t[i],
		       sizeof(e)); /* read once: the guest may race */
		if ((e.flags & VIRTQ_DESC_F_INDIRECT) || ++steps > n)
			return -EINVAL;
		if (add_seg(q, r, &e) < 0)
			return -EINVAL;
		if (!(e.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (e.next >= n)
			return -EINVAL;
		i = e.next;
	}
}

/* avail_event: tell the driver how far we have read (EVENT_IDX). */
static void set_avail_event(struct virtq *q)
{
	uint16_t *ae = (uint16_t *)(q->used + 4 + 8 * (size_t)q->size);

	store_release16(ae, q->last_avail);
	gmem_mark(q->mem, ae, 2);
}

/* The ring looked empty with EVENT_IDX on: from now on the driver only
 * notifies for entry last_avail. Publish that, make it visible before we
 * look at the avail index again (a full fence: x86 lets a load pass an
 * earlier store), and look again. Without the second look a driver that
 * added a buffer meanwhile may have read the old avail_event and not
 * notified: its buffer would wait for ever (a lost wakeup). */
static uint16_t avail_idx_recheck(struct virtq *q)
{
	set_avail_event(q);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load_acquire16(&q->avail[1]);
}

int virtq_pop(struct virtq *q, struct virtq_req *r)
{
	uint16_t avail_idx = load_acquire16(&q->avail[1]);
	uint16_t i, steps = 0;

	if (avail_idx == q->last_avail && q->event_idx)
		avail_idx = avail_idx_recheck(q);
	if (avail_idx == q->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - q->last_avail) > q->size)
		return -EINVAL; /* the driver claims more than the ring holds */
	i = q->avail[2 + (q->last_avail & (q->size - 1))];
	if (i >= q->size)
		return -EINVAL;
	r->mem = q->mem;
	r->head = i;
	r->nr = r->nw = 0;
	r->rlen = r->wlen = 0;
	for (;;) {
		struct virtq_desc d;

		memcpy(&d, &q->desc[i], sizeof(d));
		if (++steps > q->size)
			return -EINVAL; /* a loop, or longer than the ring */
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* An indirect descriptor is the whole chain (2.7.5.3). */
			if (steps != 1 || walk_indirect(q, r, &d) < 0)
				return -EINVAL;
			break;
		}
		if (add_seg(q, r, &d) < 0)
			return -EINVAL;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= q->size)
			return -EINVAL;
		i = d.next;
	}
	q->last_avail++;
	if (q->event_idx)
		set_avail_event(q);
	return 1;
}

void virtq_unpop(struct virtq *q)
{
	q->last_avail--;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	uint8_t *e = q->used + 4 + 8 * (size_t)(q->used_idx & (q->size - 1));
	uint32_t id = head;

	memcpy(e, &id, 4);
	memcpy(e + 4, &written, 4);
	q->used_idx++;
	store_release16((uint16_t *)(q->used + 2), q->used_idx);
	gmem_mark(q->mem, e, 8);
	gmem_mark(q->mem, q->used + 2, 2);
}

int virtq_should_signal(struct virtq *q)
{
	uint16_t old = q->signalled_used, now = q->used_idx;
	int valid = q->signalled_valid;

	/* Our used index must be visible before we read the driver's wish. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	q->signalled_used = now;
	q->signalled_valid = 1;
	if (!q->event_idx)
		return !(load_acquire16(&q->avail[0]) &
			 VIRTQ_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return 1;
	/* vring_need_event(used_event, new, old) (2.7.10). */
	uint16_t ev = load_acquire16(&q->avail[2 + q->size]);

	return (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
}

/* Copy between buf and the segments [first, first + count) of r, from
 * byte off of that part; to_guest marks what it writes dirty. */
static size_t copy_segs(const struct virtq_req *r, unsigned first,
			unsigned count, uint64_t off, void *buf, size_t len,
			int to_guest)
{
	size_t done = 0;

	for (unsigned i = first; i < first + count && done < len; i++) {
		const struct iovec *v = &r->iov[i];
		uint8_t *g;
		size_t n;

		if (off >= v->iov_len) {
			off -= v->iov_len;
			continue;
		}
		g = (uint8_t *)v->iov_base + off; /* only once off is inside */
		n = v->iov_len - off;
		if (n > len - done)
			n = len - done;
		if (to_guest) {
			memcpy(g, (const uint8_t *)buf + done, n);
			if (r->mem) /* a request from virtq_pop has it */
				gmem_mark(r->mem, g, n);
		} else {
			memcpy((uint8_t *)buf + done, g, n);
		}
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_req_read(const struct virtq_req *r, uint64_t off, void *dst,
		      size_t len)
{
	return copy_segs(r, 0, r->nr, off, dst, len, 0);
}

size_t virtq_req_write(const struct virtq_req *r, uint64_t off, const void *src,
		       size_t len)
{
	return copy_segs(r, r->nr, r->nw, off, (void *)src, len, 1);
}

int virtq_req_slice(const struct virtq_req *r, unsigned first, unsigned count,
		    uint64_t off, uint64_t len, struct iovec *out)
{
	const struct iovec *v = r->iov + first;
	int k = 0;

	for (unsigned i = 0; i < count && len; i++) {
		uint64_t l = v[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		l -= off;
		if (l > len)
			l = len;
		out[k].iov_base = (uint8_t *)v[i].iov_base + off;
		out[k].iov_len = l;
		k++;
		len -= l;
		off = 0;
	}
	return k;
}
