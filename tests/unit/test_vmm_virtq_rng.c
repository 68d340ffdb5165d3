/* Unit tests for canopy-vmm's virtio-rng request handling
 * (virtio_rng_serve) against a guard-paged fake guest (vq_fake.h). */
#include <errno.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/vmm/virtio_rng.h"
#include "tests/unit/vq_fake.h"

#define D VQF_DATA
#define W VIRTQ_DESC_F_WRITE
#define N VIRTQ_DESC_F_NEXT
/* What guest buffers hold before the device fills them. */
#define FILLER 0xaa

static struct virtq_req req;

static int setup(void **state)
{
	struct vqf *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	vqf_init(f, 8);
	f->q.indirect = 1;
	if (virtq_start(&f->q) < 0)
		return -1;
	memset(vqf_ptr(f, D, VQF_LOW - D), FILLER, VQF_LOW - D);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	vqf_mem_free(*state);
	free(*state);
	return 0;
}

/* Bytes of [gpa, gpa + len) that still hold FILLER, and distinct values. */
static size_t untouched(struct vqf *f, uint64_t gpa, size_t len,
			unsigned *distinct)
{
	const uint8_t *p = vqf_ptr(f, gpa, len);
	uint8_t seen[256] = { 0 };
	size_t n = 0;

	*distinct = 0;
	for (size_t i = 0; i < len; i++) {
		n += p[i] == FILLER;
		*distinct += !seen[p[i]];
		seen[p[i]] = 1;
	}
	return n;
}

static void assert_used(struct vqf *f, uint16_t slot, uint32_t id, uint32_t len)
{
	uint32_t i, l;

	vqf_used_elem(f, slot, &i, &l);
	assert_int_equal(i, id);
	assert_int_equal(l, len);
}

static void test_fills_a_buffer(void **state)
{
	struct vqf *f = *state;
	unsigned distinct;

	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), 0); /* empty */
	vqf_desc(f, 2, D, 4096, W, 0);
	vqf_avail(f, 2);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), 1);
	assert_int_equal(vqf_used_idx(f), 1);
	assert_used(f, 0, 2, 4096);
	/* Random bytes: about 16 of 4096 equal the filler, and nearly every
	 * byte value shows up. */
	assert_true(untouched(f, D, 4096, &distinct) < 64);
	assert_true(distinct > 240);
}

static void test_fills_every_segment(void **state)
{
	struct vqf *f = *state;
	unsigned d;

	vqf_desc(f, 0, D, 16, W | N, 1);
	vqf_desc(f, 1, GMEM_HIGH_START, 3000, W | N, 2);
	vqf_desc_at(f, D + 0x4000, 0, D + 0x100, 32, W, 0); /* not used */
	vqf_desc(f, 2, D + 0x200, 64, W, 0);
	vqf_avail(f, 0);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), 1);
	assert_used(f, 0, 0, 16 + 3000 + 64);
	assert_true(untouched(f, D, 16, &d) < 4);
	assert_true(untouched(f, D + 0x200, 64, &d) < 8);
	memset(vqf_ptr(f, GMEM_HIGH_START + 3000, 1), 0, 1);
	assert_true(untouched(f, GMEM_HIGH_START, 3000, &d) < 64);
	/* Bytes between the segments are not the device's. */
	assert_int_equal(untouched(f, D + 16, 0x200 - 16, &d), 0x200 - 16);
}

static void test_capped_per_request(void **state)
{
	struct vqf *f = *state;
	const uint32_t big = 2 * VIRTIO_RNG_MAX_REQ;
	unsigned d;

	vqf_desc(f, 0, D, big, W, 0);
	vqf_avail(f, 0);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), 1);
	assert_used(f, 0, 0, VIRTIO_RNG_MAX_REQ);
	assert_true(untouched(f, D, VIRTIO_RNG_MAX_REQ, &d) < 1024);
	assert_int_equal(untouched(f, D + VIRTIO_RNG_MAX_REQ,
				   big - VIRTIO_RNG_MAX_REQ, &d),
			 big - VIRTIO_RNG_MAX_REQ);
}

static void test_indirect_and_empty_requests(void **state)
{
	struct vqf *f = *state;
	unsigned d;

	vqf_desc_at(f, D + 0x4000, 0, D, 100, W | N, 1);
	vqf_desc_at(f, D + 0x4000, 1, D + 0x100, 100, W, 0);
	vqf_desc(f, 5, D + 0x4000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vqf_avail(f, 5);
	vqf_desc(f, 6, D + 0x1000, 0, W, 0); /* nothing to fill */
	vqf_avail(f, 6);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), 2);
	assert_used(f, 0, 5, 200);
	assert_used(f, 1, 6, 0);
	assert_true(untouched(f, D, 100, &d) < 8);
	assert_true(untouched(f, D + 0x100, 100, &d) < 8);
}

static void test_two_requests_differ(void **state)
{
	struct vqf *f = *state;

	vqf_desc(f, 0, D, 64, W, 0);
	vqf_desc(f, 1, D + 64, 64, W, 0);
	vqf_avail(f, 0);
	vqf_avail(f, 1);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), 2);
	assert_memory_not_equal(vqf_ptr(f, D, 64), vqf_ptr(f, D + 64, 64), 64);
}

static void test_bounded_per_call(void **state)
{
	struct vqf *f = *state;

	for (uint16_t i = 0; i < 5; i++) {
		vqf_desc(f, i, D + 16 * i, 16, W, 0);
		vqf_avail(f, i);
	}
	assert_int_equal(virtio_rng_serve(&f->q, &req, 3), 3);
	assert_int_equal(virtq_pending(&f->q), 2);
	assert_int_equal(vqf_used_idx(f), 3);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 3), 2);
	assert_int_equal(vqf_used_idx(f), 5);
	assert_used(f, 4, 4, 16);
}

/* Filled bytes are written by the VMM, not by a vCPU: their pages go in
 * the device dirty bitmap while dirty logging is on (and only they). */
static void test_marks_filled_pages_dirty(void **state)
{
	struct vqf *f = *state;
	_Atomic uint64_t bits[(VQF_LOW + VQF_HIGH) / GMEM_PAGE / 64 + 1];
	unsigned n = 0;

	memset(bits, 0, sizeof(bits));
	f->m.dirty = bits;
	atomic_store(&f->m.logging, 1);
	vqf_desc(f, 0, D + 0x1ff0, 32, W | N, 1); /* pages 0x21, 0x22 */
	vqf_desc(f, 1, GMEM_HIGH_START + 0x1000, 1, W, 0);
	vqf_avail(f, 0);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), 1);
	for (uint64_t pg = 0; pg < f->m.ram_size / GMEM_PAGE; pg++) {
		int want = pg == 0x21 || pg == 0x22 ||
			   pg == VQF_LOW / GMEM_PAGE + 1 ||
			   pg == f->q.used_gpa / GMEM_PAGE;

		n += want;
		assert_int_equal(!!(bits[pg / 64] & (1ull << (pg % 64))), want);
	}
	assert_int_equal(n, 4);
	f->m.dirty = NULL;
}

/* A request with a device-readable buffer, or a bad chain: -EINVAL,
 * nothing completed, nothing written. */
static void test_refuses_readable_and_bad_chains(void **state)
{
	struct vqf *f = *state;
	unsigned d;

	vqf_desc(f, 0, D, 64, 0, 0); /* readable only */
	vqf_avail(f, 0);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), -EINVAL);
	vqf_desc(f, 1, D + 64, 64, N, 2); /* readable, then writable */
	vqf_desc(f, 2, D + 128, 64, W, 0);
	f->q.last_avail = f->avail_idx;
	vqf_avail(f, 1);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), -EINVAL);
	vqf_desc(f, 3, VQF_LOW - 8, 64, W, 0); /* outside RAM */
	f->q.last_avail = f->avail_idx;
	vqf_avail(f, 3);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), -EINVAL);
	assert_int_equal(vqf_used_idx(f), 0);
	assert_int_equal(untouched(f, D, 192, &d), 192);
	/* A good request after a bad one in the same batch: the bad one
	 * stops the batch. */
	vqf_desc(f, 4, D, 8, W, 0);
	f->q.last_avail = f->avail_idx;
	vqf_avail(f, 4);
	vqf_avail(f, 0);
	vqf_avail(f, 4);
	assert_int_equal(virtio_rng_serve(&f->q, &req, 8), -EINVAL);
	assert_int_equal(vqf_used_idx(f), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_fills_a_buffer),
		T(test_fills_every_segment),
		T(test_capped_per_request),
		T(test_indirect_and_empty_requests),
		T(test_two_requests_differ),
		T(test_bounded_per_call),
		T(test_marks_filled_pages_dirty),
		T(test_refuses_readable_and_bad_chains),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
