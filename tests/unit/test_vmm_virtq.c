/* Unit tests for canopy-vmm's split virtqueues (host/vmm/virtq.c): valid
 * rings from a fake driver, and hostile ones that must be refused without
 * touching anything outside guest RAM (guard pages, tests/unit/vq_fake.h). */
#include <errno.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/vq_fake.h"

#define D VQF_DATA
#define HI GMEM_HIGH_START
#define W VIRTQ_DESC_F_WRITE
#define N VIRTQ_DESC_F_NEXT
#define IND VIRTQ_DESC_F_INDIRECT
/* An indirect table's place in the fake RAM. */
#define TABLE (D + 0x8000)

static struct virtq_req req; /* 16 KiB: not on the stack */

static int setup(void **state)
{
	*state = calloc(1, sizeof(struct vqf));
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	vqf_mem_free(*state);
	free(*state);
	return 0;
}

/* The default fixture: a started queue of `size` entries. */
static struct vqf *fx(void **state, uint16_t size, int indirect, int evidx)
{
	struct vqf *f = *state;

	vqf_init(f, size);
	f->q.indirect = indirect;
	f->q.event_idx = evidx;
	assert_int_equal(virtq_start(&f->q), 0);
	return f;
}

/* Offer head and pop; a refused chain is skipped (as if the device had
 * been reset) so the next case starts clean. Checks that a refusal left
 * the indices alone. */
static int pop1(struct vqf *f, uint16_t head)
{
	uint16_t la = f->q.last_avail, used = vqf_used_idx(f);
	int rc;

	vqf_avail(f, head);
	rc = virtq_pop(&f->q, &req);
	if (rc < 0) {
		assert_int_equal(f->q.last_avail, la);
		assert_int_equal(vqf_used_idx(f), used);
		f->q.last_avail = f->avail_idx;
	}
	return rc;
}

static void assert_iov(struct vqf *f, unsigned i, uint64_t gpa, size_t len)
{
	assert_ptr_equal(req.iov[i].iov_base, vqf_ptr(f, gpa, len));
	assert_int_equal(req.iov[i].iov_len, len);
}

/* ---- guest memory view ---------------------------------------------- */

static void test_gmem_ptr_bounds(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);
	const struct gmem *m = &f->m;

	assert_ptr_equal(gmem_ptr(m, 0, 1), m->ram);
	assert_ptr_equal(gmem_ptr(m, VQF_LOW - 8, 8), m->ram + VQF_LOW - 8);
	assert_ptr_equal(gmem_ptr(m, HI, VQF_HIGH), m->ram + VQF_LOW);
	assert_ptr_equal(gmem_ptr(m, HI + VQF_HIGH - 1, 1),
			 m->ram + m->ram_size - 1);
	assert_null(gmem_ptr(m, VQF_LOW - 8, 9)); /* into the gap */
	assert_null(gmem_ptr(m, VQF_LOW - 8, 16)); /* across the gap */
	assert_null(gmem_ptr(m, VQF_LOW, 1));
	assert_null(gmem_ptr(m, HI - 1, 2));
	assert_null(gmem_ptr(m, HI + VQF_HIGH, 1));
	assert_null(gmem_ptr(m, HI + VQF_HIGH - 1, 2));
	assert_null(gmem_ptr(m, UINT64_MAX, 1));
	assert_null(gmem_ptr(m, UINT64_MAX - 4, 16)); /* wraps */
	assert_null(gmem_ptr(m, 16, UINT64_MAX - 8)); /* wraps */
	assert_null(gmem_ptr(m, HI + 8, UINT64_MAX - HI)); /* wraps */
	assert_null(gmem_ptr(m, 0, m->ram_size)); /* low + high: not one */
}

/* ---- valid rings ---------------------------------------------------- */

static void test_single(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);
	uint32_t id, len;

	assert_int_equal(virtq_pop(&f->q, &req), 0); /* empty */
	vqf_desc(f, 3, D, 100, 0, 0);
	vqf_avail(f, 3);
	assert_int_equal(virtq_pending(&f->q), 1);
	assert_int_equal(virtq_pop(&f->q, &req), 1);
	assert_int_equal(req.head, 3);
	assert_int_equal(req.nr, 1);
	assert_int_equal(req.nw, 0);
	assert_int_equal(req.rlen, 100);
	assert_int_equal(req.wlen, 0);
	assert_iov(f, 0, D, 100);
	assert_int_equal(virtq_pending(&f->q), 0);
	assert_int_equal(virtq_pop(&f->q, &req), 0);
	virtq_push(&f->q, 3, 0);
	assert_int_equal(vqf_used_idx(f), 1);
	vqf_used_elem(f, 0, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 0);
}

static void test_chain_mixed(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);
	uint32_t id, len;

	vqf_desc(f, 0, D, 16, N, 5);
	vqf_desc(f, 5, HI + 64, 200, N, 2); /* high RAM */
	vqf_desc(f, 2, D + 1000, 1, W | N, 7);
	vqf_desc(f, 7, HI + VQF_HIGH - 512, 512, W, 0); /* ends at RAM end */
	assert_int_equal(pop1(f, 0), 1);
	assert_int_equal(req.head, 0);
	assert_int_equal(req.nr, 2);
	assert_int_equal(req.nw, 2);
	assert_int_equal(req.rlen, 216);
	assert_int_equal(req.wlen, 513);
	assert_iov(f, 0, D, 16);
	assert_iov(f, 1, HI + 64, 200);
	assert_iov(f, 2, D + 1000, 1);
	assert_iov(f, 3, HI + VQF_HIGH - 512, 512);
	virtq_push(&f->q, req.head, 513);
	vqf_used_elem(f, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 513);
}

static void test_chain_as_long_as_the_queue(void **state)
{
	struct vqf *f = fx(state, 4, 0, 0);

	for (uint16_t i = 0; i < 4; i++)
		vqf_desc(f, i, D + 8 * i, 8, i < 3 ? N : 0, (uint16_t)(i + 1));
	assert_int_equal(pop1(f, 0), 1);
	assert_int_equal(req.nr, 4);
	assert_int_equal(req.rlen, 32);
}

static void test_indirect(void **state)
{
	struct vqf *f = fx(state, 8, 1, 0);

	/* Entries out of order: 0 -> 2 -> 1. The WRITE flag on the
	 * descriptor that points at the table means nothing (2.7.5.3.2). */
	vqf_desc_at(f, TABLE, 0, D, 16, N, 2);
	vqf_desc_at(f, TABLE, 2, D + 64, 512, W | N, 1);
	vqf_desc_at(f, TABLE, 1, HI, 1, W, 0);
	vqf_desc(f, 6, TABLE, 48, IND | W, 0);
	assert_int_equal(pop1(f, 6), 1);
	assert_int_equal(req.head, 6);
	assert_int_equal(req.nr, 1);
	assert_int_equal(req.nw, 2);
	assert_int_equal(req.rlen, 16);
	assert_int_equal(req.wlen, 513);
	assert_iov(f, 0, D, 16);
	assert_iov(f, 1, D + 64, 512);
	assert_iov(f, 2, HI, 1);
}

static void test_req_read_write_across_segments(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);
	char buf[32] = { 0 };

	memcpy(vqf_ptr(f, D, 5), "01234", 5);
	memcpy(vqf_ptr(f, D + 100, 7), "56789ab", 7);
	memcpy(vqf_ptr(f, D + 200, 4), "cdef", 4);
	vqf_desc(f, 0, D, 5, N, 1);
	vqf_desc(f, 1, D + 100, 7, N, 2);
	vqf_desc(f, 2, D + 200, 4, N, 3);
	vqf_desc(f, 3, D + 300, 3, W | N, 4);
	vqf_desc(f, 4, D + 400, 10, W, 0);
	assert_int_equal(pop1(f, 0), 1);
	assert_int_equal(virtq_req_read(&req, 3, buf, 10), 10);
	assert_memory_equal(buf, "3456789abc", 10);
	assert_int_equal(virtq_req_read(&req, 14, buf, 10), 2); /* short */
	assert_memory_equal(buf, "ef", 2);
	assert_int_equal(virtq_req_read(&req, 16, buf, 1), 0);
	assert_int_equal(virtq_req_read(&req, UINT64_MAX, buf, 1), 0);
	/* Far past the end: nothing, and no pointer is formed out there
	 * (the sanitizer build checks). */
	assert_int_equal(virtq_req_read(&req, 1ull << 63, buf, 1), 0);
	assert_int_equal(virtq_req_write(&req, 1ull << 63, buf, 1), 0);
	assert_int_equal(virtq_req_write(&req, 0, "ABCDEFGHIJKLM", 13), 13);
	assert_memory_equal(vqf_ptr(f, D + 300, 3), "ABC", 3);
	assert_memory_equal(vqf_ptr(f, D + 400, 10), "DEFGHIJKLM", 10);
	memset(buf, 'z', sizeof(buf));
	assert_int_equal(virtq_req_write(&req, 2, buf, 20), 11); /* short */
	assert_memory_equal(vqf_ptr(f, D + 300, 3), "ABz", 3);
	assert_memory_equal(vqf_ptr(f, D + 400, 11), "zzzzzzzzzz\0", 11);
	/* Readable buffers are never written. */
	assert_memory_equal(vqf_ptr(f, D, 5), "01234", 5);
}

static void test_index_wraparound(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);
	uint32_t id, len;

	f->q.last_avail = f->q.used_idx = 65530;
	vqf_avail_idx(f, 65530);
	for (unsigned k = 0; k < 12; k++) {
		uint16_t h = (uint16_t)(k % 8);

		vqf_desc(f, h, D + 16 * k, 16, W, 0);
		vqf_avail(f, h);
		assert_int_equal(virtq_pending(&f->q), 1);
		assert_int_equal(virtq_pop(&f->q, &req), 1);
		assert_int_equal(req.head, h);
		virtq_push(&f->q, h, 100 + k);
		vqf_used_elem(f, (uint16_t)((65530 + k) % 8), &id, &len);
		assert_int_equal(id, h);
		assert_int_equal(len, 100 + k);
	}
	assert_int_equal(vqf_used_idx(f), (uint16_t)(65530 + 12));
	/* Four pending across the wrap of the driver's index. */
	f->q.last_avail = 65534;
	vqf_avail_idx(f, 2);
	assert_int_equal(virtq_pending(&f->q), 4);
}

static void test_event_idx(void **state)
{
	struct vqf *f = fx(state, 8, 0, 1);

	vqf_desc(f, 0, D, 8, W, 0);
	assert_int_equal(pop1(f, 0), 1);
	assert_int_equal(vqf_avail_event(f), 1); /* how far we have read */
	virtq_push(&f->q, 0, 8);
	assert_int_equal(virtq_should_signal(&f->q), 1); /* first: always */
	assert_int_equal(virtq_should_signal(&f->q), 0); /* nothing new */
	/* The driver wants an interrupt once entry 1 is used; flags do not
	 * matter with EVENT_IDX. */
	vqf_used_event(f, 1);
	vqf_avail_flags(f, VIRTQ_AVAIL_F_NO_INTERRUPT);
	virtq_push(&f->q, 0, 8);
	assert_int_equal(virtq_should_signal(&f->q), 1);
	vqf_used_event(f, 4);
	virtq_push(&f->q, 0, 8); /* used 3 */
	assert_int_equal(virtq_should_signal(&f->q), 0);
	virtq_push(&f->q, 0, 8); /* used 4: entry 4 not used yet */
	assert_int_equal(virtq_should_signal(&f->q), 0);
	virtq_push(&f->q, 0, 8); /* 5 */
	virtq_push(&f->q, 0, 8); /* 6: the event passed in this batch */
	assert_int_equal(virtq_should_signal(&f->q), 1);
	/* Across the 16-bit wrap. */
	f->q.used_idx = f->q.signalled_used = 65534;
	vqf_used_event(f, 65535);
	virtq_push(&f->q, 0, 8); /* 65535 */
	assert_int_equal(virtq_should_signal(&f->q), 0);
	virtq_push(&f->q, 0, 8); /* 0: entry 65535 used */
	assert_int_equal(virtq_should_signal(&f->q), 1);
}

/* With EVENT_IDX, finding the ring empty is when the driver may stop
 * notifying: avail_event must say "tell me about entry last_avail" then,
 * whatever the driver left in that word (a restore, an old value). */
static void test_event_idx_empty_ring_publishes_avail_event(void **state)
{
	struct vqf *f = fx(state, 8, 0, 1);
	uint16_t *ae = vqf_ptr(f, f->q.used_gpa + 4 + 8 * 8, 2);

	f->q.last_avail = 5;
	vqf_avail_idx(f, 5);
	*ae = 0x1234;
	assert_int_equal(virtq_pop(&f->q, &req), 0);
	assert_int_equal(vqf_avail_event(f), 5);
	/* Without EVENT_IDX the word is the driver's business. */
	f->q.event_idx = 0;
	*ae = 0x1234;
	assert_int_equal(virtq_pop(&f->q, &req), 0);
	assert_int_equal(vqf_avail_event(f), 0x1234);
}

static void test_no_interrupt_flag(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);

	vqf_desc(f, 0, D, 8, W, 0);
	assert_int_equal(pop1(f, 0), 1);
	virtq_push(&f->q, 0, 8);
	assert_int_equal(virtq_should_signal(&f->q), 1);
	vqf_avail_flags(f, VIRTQ_AVAIL_F_NO_INTERRUPT);
	virtq_push(&f->q, 0, 8);
	assert_int_equal(virtq_should_signal(&f->q), 0);
	assert_int_equal(vqf_avail_event(f), 0); /* not written without */
}

static void test_avail_idx_exactly_full(void **state)
{
	struct vqf *f = fx(state, 4, 0, 0);

	for (uint16_t i = 0; i < 4; i++) {
		vqf_desc(f, i, D + 64 * i, 64, 0, 0);
		vqf_avail(f, i);
	}
	assert_int_equal(virtq_pending(&f->q), 4);
	for (uint16_t i = 0; i < 4; i++) {
		assert_int_equal(virtq_pop(&f->q, &req), 1);
		assert_int_equal(req.head, i);
	}
	assert_int_equal(virtq_pop(&f->q, &req), 0);
}

static void test_zero_length_descriptors(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);

	/* Zero bytes: nothing to transfer, no segment, address unused. */
	vqf_desc(f, 0, UINT64_MAX, 0, N, 1);
	vqf_desc(f, 1, D, 8, 0, 0);
	assert_int_equal(pop1(f, 0), 1);
	assert_int_equal(req.nr, 1);
	assert_iov(f, 0, D, 8);
	vqf_desc(f, 2, D, 0, W, 0);
	assert_int_equal(pop1(f, 2), 1);
	assert_int_equal(req.nr + req.nw, 0);
	assert_int_equal(req.rlen + req.wlen, 0);
}

static void test_most_segments(void **state)
{
	struct vqf *f = fx(state, 1024, 1, 0);

	/* A chain of the largest queue's size, and an indirect table of
	 * VIRTQ_MAX_SEGS entries: both accepted. */
	for (uint16_t i = 0; i < 1024; i++)
		vqf_desc(f, i, D + i, 1, i < 1023 ? W | N : W,
			 (uint16_t)(i + 1));
	assert_int_equal(pop1(f, 0), 1);
	assert_int_equal(req.nw, VIRTQ_MAX_SEGS);
	assert_int_equal(req.wlen, 1024);
	for (uint16_t i = 0; i < VIRTQ_MAX_SEGS; i++)
		vqf_desc_at(f, TABLE, i, D + i, 1, i < 1023 ? N : 0,
			    (uint16_t)(i + 1));
	vqf_desc(f, 0, TABLE, 16 * VIRTQ_MAX_SEGS, IND, 0);
	assert_int_equal(pop1(f, 0), 1);
	assert_int_equal(req.nr, VIRTQ_MAX_SEGS);
	assert_iov(f, 1023, D + 1023, 1);
}

/* ---- dirty tracking of device writes -------------------------------- */

/* Pages marked in the fake RAM's dirty bitmap, as a list. */
static unsigned marked(struct vqf *f, uint64_t *pages, unsigned max)
{
	unsigned n = 0;

	for (uint64_t pg = 0; pg < f->m.ram_size / GMEM_PAGE; pg++)
		if (f->m.dirty[pg / 64] & (1ull << (pg % 64)))
			if (n < max)
				pages[n++] = pg;
	return n;
}

/* RAM page (memfd order: low RAM, then high RAM) of a GPA. */
static uint64_t page_of(uint64_t gpa)
{
	return (gpa >= HI ? VQF_LOW + (gpa - HI) : gpa) / GMEM_PAGE;
}

static void test_dirty_marks_what_the_device_writes(void **state)
{
	struct vqf *f = fx(state, 8, 0, 1);
	_Atomic uint64_t bits[(VQF_LOW + VQF_HIGH) / GMEM_PAGE / 64 + 1];
	uint64_t pages[16];
	uint8_t buf[8192] = { 0 };

	memset(bits, 0, sizeof(bits));
	f->m.dirty = bits;
	vqf_desc(f, 0, D, 4096, N, 1); /* readable: never marked */
	vqf_desc(f, 1, D + 0x3000 - 8, 16, W | N, 2); /* straddles a page */
	vqf_desc(f, 2, HI + 0x2000, 4096, W, 0);
	assert_int_equal(pop1(f, 0), 1);
	/* Not logging: nothing marked. */
	assert_int_equal(virtq_req_write(&req, 0, buf, sizeof(buf)), 4112);
	virtq_push(&f->q, req.head, 4112);
	assert_int_equal(marked(f, pages, 16), 0);
	atomic_store(&f->m.logging, 1);
	/* The first 12 bytes: the straddling segment's two pages only. */
	assert_int_equal(virtq_req_write(&req, 0, buf, 12), 12);
	assert_int_equal(marked(f, pages, 16), 2);
	assert_int_equal(pages[0], page_of(D + 0x2000));
	assert_int_equal(pages[1], page_of(D + 0x3000));
	memset(bits, 0, sizeof(bits));
	assert_int_equal(virtq_req_write(&req, 20, buf, 1), 1); /* high RAM */
	assert_int_equal(marked(f, pages, 16), 1);
	assert_int_equal(pages[0], page_of(HI + 0x2000));
	/* Completing marks the used ring; taking a chain with EVENT_IDX
	 * marks avail_event (both in the used ring's page). */
	memset(bits, 0, sizeof(bits));
	virtq_push(&f->q, req.head, 4112);
	assert_int_equal(marked(f, pages, 16), 1);
	assert_int_equal(pages[0], page_of(f->q.used_gpa));
	memset(bits, 0, sizeof(bits));
	vqf_desc(f, 3, D, 8, 0, 0);
	assert_int_equal(pop1(f, 3), 1);
	assert_int_equal(marked(f, pages, 16), 1);
	assert_int_equal(pages[0], page_of(f->q.used_gpa + 4 + 8 * 8));
	/* Outside guest RAM, or no length: nothing. */
	memset(bits, 0, sizeof(bits));
	gmem_mark(&f->m, f->m.ram - 1, 1);
	gmem_mark(&f->m, f->m.ram + f->m.ram_size, 1);
	gmem_mark(&f->m, f->m.ram + f->m.ram_size - 1, 2);
	gmem_mark(&f->m, f->m.ram, 0);
	assert_int_equal(marked(f, pages, 16), 0);
	f->m.dirty = NULL;
}

/* ---- hostile rings ---------------------------------------------------- */

/* A single descriptor (addr, len, flags) as a whole chain: refused? */
static int one(struct vqf *f, uint64_t addr, uint32_t len, uint16_t flags)
{
	vqf_desc(f, 1, addr, len, flags, 0);
	return pop1(f, 1);
}

static void test_bad_buffer_addresses(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);

	assert_int_equal(one(f, VQF_LOW, 1, 0), -EINVAL); /* the gap */
	assert_int_equal(one(f, VQF_LOW - 8, 16, W), -EINVAL); /* straddles */
	assert_int_equal(one(f, HI - 8, 16, 0), -EINVAL); /* straddles */
	assert_int_equal(one(f, HI - 1, 1, 0), -EINVAL);
	assert_int_equal(one(f, 0x80000000ull, 4096, 0), -EINVAL);
	assert_int_equal(one(f, HI + VQF_HIGH, 1, W), -EINVAL); /* past end */
	assert_int_equal(one(f, HI + VQF_HIGH - 4, 8, W), -EINVAL);
	assert_int_equal(one(f, UINT64_MAX, 1, 0), -EINVAL);
	assert_int_equal(one(f, UINT64_MAX - 10, 100, W), -EINVAL); /* wraps */
	assert_int_equal(one(f, 16, UINT32_MAX, 0), -EINVAL); /* > RAM */
	/* The same limits, just inside, are fine. */
	assert_int_equal(one(f, VQF_LOW - 8, 8, 0), 1);
	assert_int_equal(one(f, HI + VQF_HIGH - 8, 8, W), 1);
	/* A bad buffer in the middle of an otherwise good chain. */
	vqf_desc(f, 0, D, 8, N, 2);
	vqf_desc(f, 2, VQF_LOW - 4, 8, N, 3);
	vqf_desc(f, 3, D, 8, 0, 0);
	assert_int_equal(pop1(f, 0), -EINVAL);
}

static void test_bad_chain_links(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);

	vqf_desc(f, 0, D, 8, N, 1); /* 0 -> 1 -> 0 -> ... */
	vqf_desc(f, 1, D, 8, N, 0);
	assert_int_equal(pop1(f, 0), -EINVAL);
	vqf_desc(f, 2, D, 8, N, 2); /* itself */
	assert_int_equal(pop1(f, 2), -EINVAL);
	for (uint16_t i = 0; i < 8; i++) /* 0..7 then back to 3 */
		vqf_desc(f, i, D, 8, N, i < 7 ? (uint16_t)(i + 1) : 3);
	assert_int_equal(pop1(f, 0), -EINVAL);
	vqf_desc(f, 0, D, 8, N, 8); /* next >= size */
	assert_int_equal(pop1(f, 0), -EINVAL);
	vqf_desc(f, 0, D, 8, N, UINT16_MAX);
	assert_int_equal(pop1(f, 0), -EINVAL);
	vqf_desc(f, 0, D, 8, 0, 0);
	assert_int_equal(pop1(f, 8), -EINVAL); /* head >= size */
	assert_int_equal(pop1(f, UINT16_MAX), -EINVAL);
	assert_int_equal(pop1(f, 0), 1); /* the queue itself still works */
}

static void test_bad_readable_after_writable(void **state)
{
	struct vqf *f = fx(state, 8, 1, 0);

	vqf_desc(f, 0, D, 8, W | N, 1);
	vqf_desc(f, 1, D + 8, 8, 0, 0);
	assert_int_equal(pop1(f, 0), -EINVAL);
	vqf_desc_at(f, TABLE, 0, D, 8, N, 1);
	vqf_desc_at(f, TABLE, 1, D, 8, W | N, 2);
	vqf_desc_at(f, TABLE, 2, D, 8, 0, 0);
	vqf_desc(f, 0, TABLE, 48, IND, 0);
	assert_int_equal(pop1(f, 0), -EINVAL);
}

/* Offer a head descriptor pointing at TABLE with len and flags. */
static int ind(struct vqf *f, uint32_t len, uint16_t flags)
{
	vqf_desc(f, 4, TABLE, len, IND | flags, 5);
	vqf_desc(f, 5, D, 8, W, 0);
	return pop1(f, 4);
}

static void test_bad_indirect_descriptor(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);

	vqf_desc_at(f, TABLE, 0, D, 8, 0, 0);
	assert_int_equal(ind(f, 16, 0), -EINVAL); /* feature not taken */
	f->q.indirect = 1;
	assert_int_equal(ind(f, 16, 0), 1);
	assert_int_equal(ind(f, 16, N), -EINVAL); /* INDIRECT with NEXT */
	assert_int_equal(ind(f, 0, 0), -EINVAL);
	assert_int_equal(ind(f, 8, 0), -EINVAL);
	assert_int_equal(ind(f, 20, 0), -EINVAL);
	assert_int_equal(ind(f, 16 * (VIRTQ_MAX_SEGS + 1), 0), -EINVAL);
	assert_int_equal(ind(f, UINT32_MAX & ~15u, 0), -EINVAL);
	/* The table itself outside RAM, across the gap, wrapping. */
	vqf_desc(f, 4, VQF_LOW - 16, 32, IND, 0);
	assert_int_equal(pop1(f, 4), -EINVAL);
	vqf_desc(f, 4, HI + VQF_HIGH, 16, IND, 0);
	assert_int_equal(pop1(f, 4), -EINVAL);
	vqf_desc(f, 4, UINT64_MAX - 15, 32, IND, 0);
	assert_int_equal(pop1(f, 4), -EINVAL);
	/* An indirect descriptor anywhere but at the head. */
	vqf_desc(f, 3, D, 8, N, 4);
	vqf_desc(f, 4, TABLE, 16, IND, 0);
	assert_int_equal(pop1(f, 3), -EINVAL);
}

static void test_bad_indirect_table(void **state)
{
	struct vqf *f = fx(state, 8, 1, 0);

	vqf_desc_at(f, TABLE, 0, TABLE, 16, IND, 0); /* nested */
	assert_int_equal(ind(f, 16, 0), -EINVAL);
	vqf_desc_at(f, TABLE, 0, D, 8, N, 1); /* 0 -> 1 -> 0 */
	vqf_desc_at(f, TABLE, 1, D, 8, N, 0);
	assert_int_equal(ind(f, 32, 0), -EINVAL);
	vqf_desc_at(f, TABLE, 1, D, 8, N, 2); /* next >= entries */
	assert_int_equal(ind(f, 32, 0), -EINVAL);
	vqf_desc_at(f, TABLE, 1, HI + VQF_HIGH - 4, 8, 0, 0); /* buffer */
	assert_int_equal(ind(f, 32, 0), -EINVAL);
	vqf_desc_at(f, TABLE, 1, D, 8, 0, 0);
	assert_int_equal(ind(f, 32, 0), 1);
	/* A table flush against the end of RAM whose last entry points one
	 * past it: the entry past the table (a guard page) is never read. */
	vqf_desc_at(f, HI + VQF_HIGH - 32, 0, D, 8, N, 1);
	vqf_desc_at(f, HI + VQF_HIGH - 32, 1, D, 8, N, 2);
	vqf_desc(f, 4, HI + VQF_HIGH - 32, 32, IND, 0);
	assert_int_equal(pop1(f, 4), -EINVAL);
}

static void test_bad_avail_idx(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);

	for (uint16_t i = 0; i < 8; i++)
		vqf_desc(f, i, D, 8, 0, 0);
	vqf_avail_idx(f, 9); /* nine new entries in a ring of eight */
	assert_int_equal(virtq_pop(&f->q, &req), -EINVAL);
	vqf_avail_idx(f, UINT16_MAX); /* "went backwards" */
	assert_int_equal(virtq_pop(&f->q, &req), -EINVAL);
	assert_int_equal(f->q.last_avail, 0);
	vqf_avail_idx(f, 8);
	assert_int_equal(virtq_pop(&f->q, &req), 1);
}

static void test_bad_total_bytes(void **state)
{
	struct vqf *f = fx(state, 512, 1, 0);
	const uint32_t seg = VQF_LOW; /* all of low RAM, 256 KiB */
	const uint16_t fit = (uint16_t)(VIRTQ_MAX_BYTES / seg);

	/* Segments may overlap; their sum is still bounded. */
	for (uint16_t i = 0; i <= fit; i++)
		vqf_desc_at(f, TABLE, i, 0, seg, N, (uint16_t)(i + 1));
	vqf_desc_at(f, TABLE, fit - 1, 0, seg, 0, 0);
	vqf_desc(f, 0, TABLE, 16u * fit, IND, 0);
	assert_int_equal(pop1(f, 0), 1);
	assert_int_equal(req.rlen, VIRTQ_MAX_BYTES);
	vqf_desc_at(f, TABLE, fit - 1, 0, seg, N, fit);
	vqf_desc_at(f, TABLE, fit, 0, 1, 0, 0);
	vqf_desc(f, 0, TABLE, 16u * (fit + 1), IND, 0);
	assert_int_equal(pop1(f, 0), -EINVAL);
	/* The same as a direct chain, writable. */
	for (uint16_t i = 0; i <= fit; i++)
		vqf_desc(f, i, 0, i < fit ? seg : 1, i < fit ? W | N : W,
			 (uint16_t)(i + 1));
	assert_int_equal(pop1(f, 0), -EINVAL);
}

static int start_with(struct vqf *f, uint16_t size, uint64_t desc,
		      uint64_t avail, uint64_t used)
{
	vqf_rings(f, size, desc, avail, used);
	return virtq_start(&f->q);
}

static void test_bad_queue_config(void **state)
{
	struct vqf *f = fx(state, 8, 0, 0);
	const uint64_t d = 0x1000, a = 0x9000, u = 0xc000, e = HI + VQF_HIGH;

	assert_int_equal(start_with(f, 0, d, a, u), -EINVAL);
	assert_int_equal(start_with(f, 3, d, a, u), -EINVAL);
	assert_int_equal(start_with(f, 768, d, a, u), -EINVAL);
	assert_int_equal(start_with(f, 2048, d, a, u), -EINVAL);
	assert_int_equal(start_with(f, 1025, d, a, u), -EINVAL);
	assert_int_equal(start_with(f, 1, d, a, u), 0);
	assert_int_equal(start_with(f, 1024, 0x10000, a, u), 0);
	/* Misaligned: descriptors 16, avail 2, used 4. */
	assert_int_equal(start_with(f, 8, d + 8, a, u), -EINVAL);
	assert_int_equal(start_with(f, 8, d, a + 1, u), -EINVAL);
	assert_int_equal(start_with(f, 8, d, a, u + 2), -EINVAL);
	assert_int_equal(start_with(f, 8, d + 16, a + 2, u + 4), 0);
	/* Outside RAM, across the gap, past the end, wrapping. */
	assert_int_equal(start_with(f, 8, VQF_LOW - 64, a, u), -EINVAL);
	assert_int_equal(start_with(f, 8, d, HI - 16, u), -EINVAL);
	assert_int_equal(start_with(f, 8, d, a, e - 64), -EINVAL);
	assert_int_equal(start_with(f, 8, d, e, u), -EINVAL);
	assert_int_equal(start_with(f, 8, UINT64_MAX & ~15ull, a, u), -EINVAL);
	assert_int_equal(start_with(f, 8, d, a, UINT64_MAX & ~3ull), -EINVAL);
	assert_int_equal(start_with(f, 8, 0x80000000ull, a, u), -EINVAL);
	/* One word short at the end of RAM: the avail ring's used_event and
	 * the used ring's avail_event are part of the rings. */
	assert_int_equal(start_with(f, 8, d, e - (4 + 2 * 8), u), -EINVAL);
	assert_int_equal(start_with(f, 8, d, a, e - (4 + 8 * 8)), -EINVAL);
	assert_int_equal(start_with(f, 8, e - 16 * 7, a, u), -EINVAL);
}

/* Rings flush against the end of RAM (a guard page right after): using
 * them, with EVENT_IDX writing its last word, touches nothing beyond. */
static void test_rings_at_the_end_of_ram(void **state)
{
	struct vqf *f = fx(state, 8, 0, 1);
	const uint64_t e = HI + VQF_HIGH, n = 8;
	const uint64_t at[3][3] = {
		{ e - 16 * n, 0x9000, 0xc000 },
		{ 0x1000, e - (6 + 2 * n), 0xc000 },
		{ 0x1000, 0x9000, (e - (6 + 8 * n)) & ~3ull },
	};

	for (unsigned k = 0; k < 3; k++) {
		assert_int_equal(start_with(f, 8, at[k][0], at[k][1], at[k][2]),
				 0);
		f->q.event_idx = 1;
		for (uint16_t i = 0; i < 20; i++) {
			vqf_desc(f, (uint16_t)(i % 8), D, 8, W, 0);
			assert_int_equal(pop1(f, (uint16_t)(i % 8)), 1);
			virtq_push(&f->q, req.head, 8);
			vqf_used_event(f, i);
			assert_int_equal(virtq_should_signal(&f->q), 1);
		}
		assert_int_equal(vqf_avail_event(f), 20);
		assert_int_equal(vqf_used_idx(f), 20);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_gmem_ptr_bounds),
		T(test_single),
		T(test_chain_mixed),
		T(test_chain_as_long_as_the_queue),
		T(test_indirect),
		T(test_req_read_write_across_segments),
		T(test_index_wraparound),
		T(test_event_idx),
		T(test_event_idx_empty_ring_publishes_avail_event),
		T(test_no_interrupt_flag),
		T(test_avail_idx_exactly_full),
		T(test_zero_length_descriptors),
		T(test_most_segments),
		T(test_dirty_marks_what_the_device_writes),
		T(test_bad_buffer_addresses),
		T(test_bad_chain_links),
		T(test_bad_readable_after_writable),
		T(test_bad_indirect_descriptor),
		T(test_bad_indirect_table),
		T(test_bad_avail_idx),
		T(test_bad_total_bytes),
		T(test_bad_queue_config),
		T(test_rings_at_the_end_of_ram),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
